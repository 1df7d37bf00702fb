"""More than 2**31 elements: 64-bit indexing everywhere (indices, offsets,
segment boundaries).  Each test holds two 2 GiB int8 arrays (indices would
need 16 GiB more, so values carry the proof: each one is read from an
offset past 2**31); marked slow so the sanitizer run can leave them out."""

from __future__ import annotations

import numpy as np
import pytest

import scanad as sa

N = 2**31 + 4099  # past every 32-bit boundary, not a power of two


@pytest.mark.slow
def test_int8_cummax_past_2_31_elements() -> None:
    try:
        x = np.zeros(N, dtype=np.int8)
    except MemoryError:  # pragma: no cover - depends on the machine
        pytest.skip("not enough memory for a 2 GiB input")
    # a few increasing values placed beyond 2**31 so values and indices
    # must come from 64-bit offsets
    marks = {5: 1, 2**31 - 1: 2, 2**31 + 7: 3, N - 2: 4}
    for pos, val in marks.items():
        x[pos] = val
    values = sa.cummax(x)
    assert values.dtype == np.int8 and values.shape == (N,)
    assert values[4] == 0
    for pos, val in marks.items():
        assert values[pos - 1] == val - 1 and values[pos] == val and values[pos + 1] == val
    assert values[-1] == 4
    del values
    values = sa.cummax(x, reverse=True)
    assert values[0] == 4 and values[N - 2] == 4 and values[N - 1] == 0
    assert values[2**31 + 8] == 4 and values[2**31 + 7] == 4


@pytest.mark.slow
def test_segments_past_2_31_elements() -> None:
    try:
        x = np.ones(N, dtype=np.int8)
    except MemoryError:  # pragma: no cover
        pytest.skip("not enough memory")
    cu = np.array([0, 2**31 - 3, 2**31 + 5, N], dtype=np.int64)
    # dtype=int8 keeps the output at 2 GiB; the running count wraps mod 256
    y = sa.cumsum(x, cu_seqlens=cu, dtype=np.int8)
    assert y.dtype == np.int8

    def wrapped(count: int) -> int:
        return (count + 128) % 256 - 128

    assert y[2**31 - 4] == wrapped(2**31 - 3)
    assert y[2**31 - 3] == 1 and y[2**31 + 4] == 8
    assert y[2**31 + 5] == 1 and y[-1] == wrapped(N - (2**31 + 5))
