"""``python -m scanad``: build info, a self-check against the NumPy reference,
and a small timing table against NumPy and a plain copy.

The full benchmark runner is ``benchmarks/run.py`` in the source tree.
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Callable, List, Optional, Tuple

import numpy as np

import scanad as sa

# NumPy's closest equivalent of each scan, for timing comparisons
NUMPY_OPS = {
    "cumsum": lambda x, a: np.cumsum(x, axis=a),
    "cumprod": lambda x, a: np.cumprod(x, axis=a),
    "cummax": lambda x, a: np.maximum.accumulate(x, axis=a),
    "cummin": lambda x, a: np.minimum.accumulate(x, axis=a),
    "logcumsumexp": lambda x, a: np.logaddexp.accumulate(x, axis=a),
}


def _self_check(rng: np.random.Generator) -> List[str]:
    """Every scan, flag and a few dtypes on random data against the reference;
    returns the failures."""
    failures = []
    shapes = [(7,), (5, 9), (3, 4, 6)]
    for name in sa._registry.SCANS:
        spec = sa.OPS[name]
        for dtype in ("int32", "float32", "float64", "complex128"):
            if dtype not in spec.dtypes_forward:
                continue
            for shape in shapes:
                x = rng.standard_normal(shape) * 2
                if dtype.startswith("complex"):
                    x = x + 1j * rng.standard_normal(shape)
                x = x.astype(dtype)
                for axis in [None] + list(range(-len(shape), len(shape))):
                    for reverse in (False, True):
                        for inclusive in (True, False):
                            kw = dict(axis=axis, reverse=reverse, inclusive=inclusive)
                            if not _close(spec.fn(x, **kw), spec.reference(x, **kw), dtype,
                                          equal_nan=True):
                                failures.append(f"{name} {dtype} {shape} {kw}")
    failures += _check_linear_scan(rng, shapes)
    failures += _check_chunks(rng)
    return failures


def _close(got: object, want: object, dtype: str, equal_nan: bool = False) -> bool:
    """Same dtype and within float32's or float64's tolerance of the reference."""
    got, want = np.asarray(got), np.asarray(want)
    tol = 1e-5 if dtype in ("float32", "complex64") else 1e-12
    return got.dtype == want.dtype and np.allclose(got, want, rtol=tol, atol=tol,
                                                   equal_nan=equal_nan)


def _check_linear_scan(rng: np.random.Generator, shapes: List[Tuple[int, ...]]) -> List[str]:
    """linear_scan with a full decay, an initial state, every axis and flag."""
    failures = []
    spec = sa.OPS["linear_scan"]
    for dtype in ("float32", "float64", "complex128"):
        for shape in shapes:
            a = rng.uniform(0.5, 1.0, shape).astype(dtype)
            b = (rng.standard_normal(shape) * 2).astype(dtype)
            for axis in range(-len(shape), len(shape)):
                h0 = rng.standard_normal(np.delete(shape, axis)).astype(dtype)
                for reverse in (False, True):
                    for inclusive in (True, False):
                        kw = dict(axis=axis, h0=h0, reverse=reverse, inclusive=inclusive)
                        if not _close(spec.fn(a, b, **kw), spec.reference(a, b, **kw), dtype):
                            failures.append(f"linear_scan {dtype} {shape} axis={axis} "
                                            f"reverse={reverse} inclusive={inclusive}")
    return failures


def _check_chunks(rng: np.random.Generator) -> List[str]:
    """The chunked cumsums of linear attention, with and without cu_seqlens."""
    failures = []
    g = rng.standard_normal((1, 12, 3))
    for name, args in (("chunk_local_cumsum", (4,)), ("chunk_global_cumsum", ())):
        spec = sa.OPS[name]
        for reverse in (False, True):
            for cu_seqlens in (None, [0, 5, 12]):
                kw = dict(reverse=reverse, cu_seqlens=cu_seqlens)
                if not _close(spec.fn(g, *args, **kw), spec.reference(g, *args, **kw),
                              "float64"):
                    failures.append(f"{name} {kw}")
    return failures


def _median_time(fn: Callable[[], object], repeat: int = 7, slow_call: float = float("inf"),
                 repeat_slow: int = 3) -> float:
    """Median wall time of ``fn()`` in seconds, after one warm-up call; a call
    slower than ``slow_call`` seconds is repeated only ``repeat_slow`` times."""
    t0 = time.perf_counter()
    fn()
    if time.perf_counter() - t0 > slow_call:
        repeat = min(repeat, repeat_slow)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _timing_table(n: int = 1 << 22) -> str:
    """scanad vs NumPy on float32 arrays, as times and ratios to np.copyto."""
    rng = np.random.default_rng(0)
    cases = [("1-D", (n,), 0), ("axis 0", (2048, n // 2048), 0), ("axis 1", (2048, n // 2048), 1)]
    rows = ["| op | case | copy ms | scanad out= ms (x copy) | NumPy ms (x copy) |",
            "|---|---|---|---|---|"]
    for label, shape, axis in cases:
        x = rng.standard_normal(shape).astype(np.float32)
        dst = np.empty_like(x)
        t_copy = _median_time(functools.partial(np.copyto, dst, x))
        for name in sa._registry.SCANS:
            fn, ref = sa.OPS[name].fn, NUMPY_OPS[name]
            t_sa = _median_time(functools.partial(fn, x, axis=axis, out=dst))
            t_np = _median_time(functools.partial(ref, x, axis))
            rows.append(f"| {name} | {label} {shape} | {t_copy * 1e3:.2f} | "
                        f"{t_sa * 1e3:.2f} ({t_sa / t_copy:.1f}x) | "
                        f"{t_np * 1e3:.2f} ({t_np / t_copy:.1f}x) |")
    return "\n".join(rows)


def main(argv: Optional[List[str]] = None) -> int:
    """Print build info, run the self-check, print the timing table."""
    argv = sys.argv[1:] if argv is None else argv
    print(f"scanad {sa.__version__}")
    for key, value in sa.build_info().items():
        print(f"  {key}: {value}")
    failures = _self_check(np.random.default_rng(0))
    if failures:
        print(f"self-check FAILED for {len(failures)} cases:")
        for f in failures[:20]:
            print("  " + f)
        return 1
    print("self-check: every op, axis, direction and inclusive flag matches the reference")
    if "--no-timing" not in argv:
        print()
        print(_timing_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
