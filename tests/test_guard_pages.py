"""No kernel reads or writes outside its operands, without a sanitizer.

Every operand (and ``out=``) is copied next to a page the process may not
touch: ending at its first byte (the reads past the end of a forward walk),
or starting right after it (the reads before the start of a reverse walk).
An access outside the operand is a segmentation fault, so each op's cases
run in a child process; the child prints each case before running it, and
the last line printed names the one that crashed.  The results must equal
those on ordinary copies of the same values, bit for bit.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy as np
import pytest

import scanad as sa

PAGE = mmap.PAGESIZE
LENGTHS = list(range(1, 19)) + [23, 24, 25, 31, 32, 33, 63, 64, 65]
DTYPES = [np.float32, np.float64]


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def guarded(a: np.ndarray, at_end: bool) -> np.ndarray:
    """A C-contiguous copy of ``a`` whose last byte is followed (at_end) or
    whose first byte is preceded by an inaccessible page."""
    a = np.array(a, order="C")  # (ascontiguousarray makes a 0-d array 1-d)
    data_pages = max(1, -(-a.nbytes // PAGE))
    mm = mmap.mmap(-1, (data_pages + 2) * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    libc = _libc()
    for page in (0, data_pages + 1):
        if libc.mprotect(base + page * PAGE, PAGE, 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed")
    # the array keeps the mapping alive (its buffer's base) and unmaps it when freed
    start = PAGE + (data_pages * PAGE - a.nbytes if at_end else 0)
    view = np.frombuffer(mm, dtype=np.uint8, count=a.nbytes, offset=start)
    out = view.view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _positive(rng: np.random.Generator, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
    # positive values: no cancellation, every path's result well defined
    return rng.uniform(0.5, 1.5, shape).astype(dtype)


def _shapes() -> Iterator[Tuple[Tuple[int, ...], int]]:
    for n in LENGTHS:
        yield (n,), 0
    for n in (1, 7, 9, 33):
        yield (n, 5), 0
        yield (n, 5), 1
        yield (5, n), 1
        yield (3, n, 2), 1


FLAGS = [dict(reverse=r, inclusive=i) for r in (False, True) for i in (True, False)]
Run = Callable[[Callable], Any]


def _derivative_runs(op: Callable[..., Any], primals: Callable[[Callable], Any],
                     tangents: Callable[[Callable], Any], g: np.ndarray,
                     kw: Dict[str, Any]) -> List[Tuple[str, Run]]:
    """op's VJP, JVP and vjp_jvp (g_dot = g) at primals(place), along
    tangents(place), with cotangent g."""
    def vjp(place: Callable) -> Any:
        return sa.vjp(op, primals(place), **kw)[1](place(g))

    def jvp(place: Callable) -> Any:
        return sa.jvp(op, primals(place), tangents(place), **kw)[1]

    def vjp_jvp(place: Callable) -> Any:
        return sa.vjp_jvp(op, primals(place), place(g), tangents(place), place(g), **kw)

    return [("vjp", vjp), ("jvp", jvp), ("vjp_jvp", vjp_jvp)]


def _scan_cases(op: Callable[..., Any]) -> Iterator[Tuple[str, Run]]:
    """(label, run) pairs; run(place) makes every operand with place()."""
    rng = np.random.default_rng(0)
    for dtype in DTYPES:
        for shape, axis in _shapes():
            x = _positive(rng, shape, dtype)
            g = _positive(rng, shape, dtype)
            t = _positive(rng, shape, dtype)
            for flags in FLAGS:
                kw: Dict[str, Any] = dict(axis=axis, **flags)
                label = f"{np.dtype(dtype).name} {shape} {kw}"

                def fwd(place, x=x, kw=kw):
                    out = place(np.zeros_like(x))
                    op(place(x), out=out, **kw)
                    return out

                derivatives = _derivative_runs(op, lambda place, x=x: place(x),
                                               lambda place, t=t: place(t), g, kw)
                for mode, run in [("forward", fwd)] + derivatives:
                    yield f"{op.__name__} {mode} {label}", run
            if len(shape) == 1 and shape[0] >= 3:
                cu = np.array([0, 1, shape[0] // 2, shape[0]], dtype=np.int64)

                def seg(place, x=x, cu=cu):
                    return op(place(x), cu_seqlens=place(cu), reverse=True)

                yield f"{op.__name__} segmented {label}", seg


def _linear_cases() -> Iterator[Tuple[str, Run]]:
    rng = np.random.default_rng(1)
    for dtype in DTYPES:
        for shape, axis in _shapes():
            a = _positive(rng, shape, dtype)
            b = _positive(rng, shape, dtype)
            g = _positive(rng, shape, dtype)
            lane_shape = shape[:axis] + shape[axis + 1:]
            h0 = _positive(rng, lane_shape, dtype)
            for flags in FLAGS:
                for a_kind in ("same", "scalar"):
                    kw: Dict[str, Any] = dict(axis=axis, **flags)
                    label = f"{np.dtype(dtype).name} {shape} a={a_kind} {kw}"
                    aa = a if a_kind == "same" else a.reshape(-1)[:1].reshape((1,) * a.ndim)

                    def fwd(place, aa=aa, b=b, h0=h0, kw=kw):
                        out = place(np.zeros_like(b))
                        sa.linear_scan(place(aa), place(b), out=out, h0=place(h0), **kw)
                        return out

                    def primals(place, aa=aa, b=b, h0=h0):
                        return place(aa), place(b), place(h0)

                    # the tangents take the primals' values
                    derivatives = _derivative_runs(sa.linear_scan, primals, primals, g, kw)
                    for mode, run in [("forward", fwd)] + derivatives:
                        yield f"linear_scan {mode} {label}", run
                for log_a in (False, True):
                    def logs(place, a=a, b=b, kw=kw, log_a=log_a):
                        return sa.linear_scan(place(a), place(b), log_a=log_a,
                                              return_final=True, **kw)

                    yield f"linear_scan return_final log_a={log_a} {label}", logs
            if len(shape) == 1 and shape[0] >= 3:
                cu = np.array([0, 1, shape[0] // 2, shape[0]], dtype=np.int64)
                hs = _positive(rng, (3,), dtype)

                def seg(place, a=a, b=b, cu=cu, hs=hs):
                    return sa.linear_scan(place(a), place(b), cu_seqlens=place(cu), h0=place(hs),
                                          reverse=True, return_final=True)

                yield f"linear_scan segmented {label}", seg


def _chunk_cases() -> Iterator[Tuple[str, Run]]:
    rng = np.random.default_rng(2)
    for dtype in DTYPES:
        for n in LENGTHS:
            g = _positive(rng, (1, n, 2, 3), dtype)
            for reverse in (False, True):
                def local(place, g=g, reverse=reverse):
                    return sa.chunk_local_cumsum(place(g), 4, reverse=reverse)

                def glob(place, g=g, reverse=reverse):
                    return sa.chunk_global_cumsum(place(g), reverse=reverse)

                yield f"chunk_local_cumsum {n} reverse={reverse}", local
                yield f"chunk_global_cumsum {n} reverse={reverse}", glob


def _cases(name: str) -> Iterator[Tuple[str, Run]]:
    if name == "linear_scan":
        return _linear_cases()
    if name == "chunk":
        return _chunk_cases()
    return _scan_cases(getattr(sa, name))


def _same(got: Any, want: Any) -> None:
    if isinstance(got, tuple):
        for u, v in zip(got, want):
            _same(u, v)
    elif got is not None:
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def child(name: str) -> None:
    """Runs every case of ``name`` on guarded and on ordinary operands."""
    for label, run in _cases(name):
        for at_end in (True, False):
            print(f"{label} at_end={at_end}", flush=True)
            got = run(lambda a, at_end=at_end: guarded(np.asarray(a), at_end))
            want = run(lambda a: np.array(a, copy=True))
            _same(got, want)
    print("all cases passed", flush=True)


NAMES = ["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp", "linear_scan", "chunk"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect through ctypes")
@pytest.mark.parametrize("name", NAMES)
def test_operands_end_at_guard_pages(name: str) -> None:
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    proc = subprocess.run([sys.executable, __file__, name], capture_output=True, text=True,
                          env=env, timeout=600)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, (
        f"exit {proc.returncode} in case: {lines[-1] if lines else '(none)'}\n"
        f"{proc.stderr[-3000:]}")
    assert lines[-1] == "all cases passed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect through ctypes")
@pytest.mark.parametrize("at_end, offset", [(True, 24), (False, -8)])
def test_guard_pages_fault(at_end: bool, offset: int) -> None:
    """The guard is real: the element past (before) a guarded array kills the child."""
    here = os.path.dirname(__file__)
    code = (f"import numpy as np, ctypes, sys; sys.path.insert(0, {here!r}); "
            "from test_guard_pages import guarded; "
            f"a = guarded(np.ones(3), {at_end}); "
            f"ctypes.c_double.from_address(a.ctypes.data + {offset}).value")
    env = dict(os.environ)
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        # under CI's sanitizer build they would catch this deliberate fault and report it
        env[var] = ":".join(filter(None, [env.get(var), "handle_segv=0"]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, env=env)
    assert proc.returncode == -11, proc


if __name__ == "__main__":
    child(sys.argv[1])
