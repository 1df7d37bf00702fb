"""No leaked references or memory, on valid and invalid calls of every public
function."""

from __future__ import annotations

import gc
import sys
import tracemalloc

import numpy as np

import scanad as sa


def _calls(x, out, cu, dt):
    """Each call is (function, expect an exception)."""
    return [
        (lambda: sa.cumsum(x, axis=0, out=out), False),
        (lambda: sa.cumprod(x, axis=1, reverse=True, dtype=dt), False),
        (lambda: sa.cummax(x, axis=0, return_indices=True), False),
        (lambda: sa.cummin(x, inclusive=False, cu_seqlens=cu), False),
        (lambda: sa.logcumsumexp(x, axis=0, chunk_size=3), False),
        (lambda: sa.vjp(sa.logcumsumexp, x, axis=0)[1](x), False),
        (lambda: sa.jvp(sa.cumprod, x, x, axis=1), False),
        (lambda: sa.grad(sa.cummax, x, axis=0), False),
        (lambda: sa.vjp_jvp(sa.logcumsumexp, x, x, x, x, axis=0), False),
        (lambda: sa.hvp(sa.cumprod, x, x, axis=1, inclusive=False), False),
        (lambda: sa._scanad.vjp_jvp(1, x, x, x, None, 0, False, True, None, 2), False),
        (lambda: sa._scanad.vjp_jvp(1, x, x, np.ones(3), None, 0, False, True, None, None),
         True),
        (lambda: sa._scanad.vjp_jvp(4, x, x, x, np.ones(2), 0, False, True, None, None), True),
        (lambda: sa.vjp_jvp(sa.cumsum, x, x, np.ones(3), axis=0), True),
        (lambda: sa.chunk_local_cumsum(x[None], 4, cu_seqlens=[0, 8]), False),
        (lambda: sa.chunk_global_cumsum(x[None], reverse=True, scale=0.5), False),
        (lambda: sa.cumsum(x, axis=5), True),
        (lambda: sa.cumsum(x, out=np.empty(3)), True),
        (lambda: sa.cumsum(x, dtype=object), True),
        (lambda: sa.cumsum(x, cu_seqlens=[0, 3]), True),
        (lambda: sa.cumsum(x, cu_seqlens=np.array([0.0, 40.0])), True),
        (lambda: sa.cumsum(x, axis=0, chunk_size=0), True),
        (lambda: sa.cummax(x + 1j), True),
        (lambda: sa.cumsum(np.array(["a"])), True),
        (lambda: sa.vjp(sa.cumsum, np.arange(3)), True),
        (lambda: sa.jvp(sa.cumsum, x, np.ones(3)), True),
        (lambda: sa.vjp(sa.cumsum, x, axis=0)[1](np.ones(3)), True),
        # linear_scan: forward, its derivative entry points, and their errors
        (lambda: sa.linear_scan(0.5, x, 0, out=out), False),
        (lambda: sa.linear_scan(x, x, 1, h0=x[:, 0], reverse=True, return_final=True), False),
        (lambda: sa.linear_scan(x[:, :1], x, 0, cu_seqlens=[0, 3, 8], h0=np.ones((2, 5)),
                                chunk_size=2, return_final=True), False),
        (lambda: sa.linear_scan(x, x, log_a=True), False),
        (lambda: sa.vjp(sa.linear_scan, (x, x, x[0]), axis=0, return_final=True)[1]((x, None)),
         False),
        (lambda: sa.jvp(sa.linear_scan, (x[:, :1], x, None), (x[:, :1], None, None), axis=1,
                        cu_seqlens=[0, 2, 5], chunk_size=2), False),
        (lambda: sa.vjp_jvp(sa.linear_scan, (x, x, x[0]), x, (x, x, x[0]), x, axis=0,
                            log_a=True), False),
        (lambda: sa._scanad.linear_scan_jvp(x, x, x[0], x, None, None, 0, True, False, False,
                                            True, dt, None, None), False),
        (lambda: sa._scanad.linear_scan_vjp(x, x, None, x, None, 0, False, True, False, dt, cu,
                                            None, True), True),
        (lambda: sa._scanad.linear_scan_vjp(x[:1], x, x[0], x, x[0], 0, False, False, True, dt,
                                            None, 3, True), False),
        (lambda: sa._scanad.linear_scan_vjp(x, x, x[0], np.ones(3), None, 0, False, True, False,
                                            dt, None, None, False), True),
        (lambda: sa.linear_scan(np.ones(3), x), True),
        (lambda: sa.linear_scan(1, x, 0, h0=np.ones(7)), True),
        (lambda: sa.linear_scan(1, x, out=np.empty(3)), True),
        (lambda: sa.linear_scan(1, x, 0, cu_seqlens=[0, 3, 8], h0=np.ones((3, 5))), True),
        (lambda: sa.vjp(sa.linear_scan, (x, x, None), axis=0)[1](np.ones(3)), True),
        (lambda: sa.jvp(sa.linear_scan, (x, x, None), (None, None, x[0]), axis=0), True),
    ]


def _run_all(calls) -> None:
    for fn, fails in calls:
        try:
            fn()
        except (TypeError, ValueError):
            assert fails
        else:
            assert not fails


def test_no_reference_leaks() -> None:
    x = np.random.default_rng(0).standard_normal((8, 5))
    out = np.empty((8, 5))
    cu = np.array([0, 10, 40])
    dt = np.dtype(np.float64)
    calls = _calls(x, out, cu, dt)
    _run_all(calls)
    # (the float64 dtype singleton is left out: every live float64 array anywhere,
    # including ones CPython keeps alive behind a raised exception, holds it)
    before = [sys.getrefcount(o) for o in (x, out, cu)]
    for _ in range(200):
        _run_all(calls)
    gc.collect()
    assert [sys.getrefcount(o) for o in (x, out, cu)] == before


def test_no_memory_growth() -> None:
    x = np.random.default_rng(1).standard_normal((8, 5))
    calls = _calls(x, np.empty((8, 5)), np.array([0, 10, 40]), np.dtype(np.float64))
    for _ in range(50):  # warm-up: caches, interned strings, hypothesis-free
        _run_all(calls)
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(2000):
        _run_all(calls)
    gc.collect()
    growth = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    # 2000 rounds x 45 calls: one leaked 40-element array per call would be
    # > 10 MB; a few kB of noise (free lists, traceback caches) is allowed.
    assert growth < 64 * 1024, growth
