"""Where big outputs live: on Linux, scanad allocates outputs of 4 MiB or more
on a 2 MiB boundary (whole huge pages) through its own NumPy memory handler;
the arrays still own their data, resize and free through that handler, and
the caller's handler is left as it was."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import scanad as sa
from scanad._registry import SCANS

try:  # NumPy >= 2 moved it; both expose the handler's name since 1.22
    from numpy._core.multiarray import get_handler_name
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import get_handler_name

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the aligned allocator is Linux's")
BIG = (4 << 20) // 8  # float64 elements in 4 MiB: the threshold itself
HUGE_PAGE = 2 << 20


def _outputs(name: str, x: np.ndarray) -> list:
    """Every array one op's forward, JVP and VJP allocate for x."""
    fn = sa.OPS[name].fn
    y, pullback = sa.vjp(fn, x)
    y_fwd, y_dot = sa.jvp(fn, x, np.ones_like(x))
    outs = [fn(x), y, y_fwd, y_dot, pullback(np.ones_like(y))]
    if name in ("cummax", "cummin"):
        outs += list(fn(x, return_indices=True))
    return outs


@linux_only
@pytest.mark.parametrize("name", SCANS)
def test_big_outputs_start_on_a_huge_page_and_own_their_data(name: str) -> None:
    x = np.random.default_rng(0).standard_normal(BIG)
    before = get_handler_name()
    for out in _outputs(name, x):
        assert out.ctypes.data % HUGE_PAGE == 0
        assert out.flags.owndata and out.base is None
        assert get_handler_name(out) == "scanad_output_huge_aligned"
    assert get_handler_name() == before


@pytest.mark.parametrize("name", SCANS)
def test_small_outputs_keep_numpys_allocator(name: str) -> None:
    x = np.random.default_rng(1).standard_normal(BIG - 1)  # one element under 4 MiB
    default = get_handler_name()
    for out in _outputs(name, x):
        assert get_handler_name(out) == default


@linux_only
def test_big_output_resizes_and_frees_through_its_handler() -> None:
    x = np.random.default_rng(2).standard_normal(BIG)
    y = sa.cumsum(x)
    want = y.copy()
    y.resize(2 * BIG, refcheck=False)  # realloc: the data moves, the values stay
    assert np.array_equal(y[:BIG], want) and not y[BIG:].any()
    y.resize(10, refcheck=False)  # down below the threshold, through the same handler
    assert np.array_equal(y, want[:10])
    del y  # freed by the handler that allocated it (ASan checks the pairing)
    # and a big output outlives the input it came from
    y = sa.cumprod(np.ones(BIG))
    assert y.sum() == BIG
