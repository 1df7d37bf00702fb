"""Typed use of the public API: ``mypy`` checks this file (see pyproject's
``[tool.mypy]``) so that the package's annotations stay usable from typed code.
It also runs: ``python tests/typing_usage.py``."""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import numpy as np

import scanad as sa


def scans(x: np.ndarray) -> List[np.ndarray]:
    out = np.empty_like(x)
    results: List[np.ndarray] = [
        sa.cumsum(x, axis=0, reverse=True, inclusive=False),
        sa.cumprod(x, axis=-1, dtype=np.float64),
        sa.logcumsumexp(x, axis=None, out=None),
        sa.cumsum(x, axis=0, out=out),
        sa.cumsum(x.ravel(), cu_seqlens=[0, 3, x.size], chunk_size=2),
    ]
    values = sa.cummax(x, axis=0)
    assert isinstance(values, np.ndarray)
    pair = sa.cummin(x, axis=0, return_indices=True)
    assert isinstance(pair, tuple)
    results.extend(pair)
    return results


def derivatives(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, pullback = sa.vjp(sa.logcumsumexp, x, axis=0, reverse=True)
    pull: Callable[[np.ndarray], np.ndarray] = pullback
    x_bar = pull(np.ones_like(y))
    _, y_dot = sa.jvp(sa.cumprod, x, np.ones_like(x), axis=1, inclusive=False)
    gradient = sa.grad("cummax", x, axis=0)
    sa.check_grads(sa.logcumsumexp, x, modes=("fwd", "rev"), axis=0)
    return x_bar, y_dot, gradient


def chunks(g: np.ndarray) -> np.ndarray:
    local = sa.chunk_local_cumsum(g, 4, reverse=True, scale=0.5, output_dtype=np.float32)
    return sa.chunk_global_cumsum(local, cu_seqlens=np.array([0, 3, g.shape[1]]))


def info() -> Dict[str, object]:
    sa.set_num_threads(sa.get_num_threads())
    version: str = sa.__version__
    spec: sa.OpSpec = sa.OPS["cumsum"]
    return {"version": version, "op": spec.name, **sa.build_info()}


if __name__ == "__main__":
    x = np.random.default_rng(0).standard_normal((6, 5))
    print(len(scans(x)), [a.shape for a in derivatives(x)], chunks(x[None, :, :, None]).shape,
          sorted(info()))
