"""``python -m scanad``'s self-check: it passes, and it notices a broken op."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

import scanad as sa
from scanad import __main__ as entry


@pytest.mark.quick
def test_self_check_passes(capsys: pytest.CaptureFixture) -> None:
    assert entry.main(["--no-timing"]) == 0
    assert "self-check: every op" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(sa.OPS))
def test_self_check_covers_every_op(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = sa.OPS[name]

    def off_by_a_bit(*args: Any, **kwargs: Any) -> Any:
        out = spec.fn(*args, **kwargs)
        first = out[0] if isinstance(out, tuple) else out
        with np.errstate(all="ignore"):  # inf and NaN elements stay as they are
            return np.asarray(first) * 1.001 + 1

    monkeypatch.setitem(sa.OPS, name, dataclasses.replace(spec, fn=off_by_a_bit))
    failures = entry._self_check(np.random.default_rng(0))
    assert failures and all(f.startswith(name) for f in failures)
