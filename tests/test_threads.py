"""Threads: the kernels' pool, Python threads calling at once, and fork.

Results must not depend on the number of kernel threads or on other Python
threads running kernels at the same time: the comparisons are bit for bit,
since splitting lines or lanes between threads never changes the order of a
line's arithmetic.  The one exception is a single line of >= 2**18 elements,
which is scanned in pieces from carries: cummax/cummin stay exact, sums,
products and logcumsumexp's sums are reassociated at the piece boundaries
(the tests at the end).
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

import scanad as sa
from scanad._registry import SCANS


def _inputs() -> list:
    rng = np.random.default_rng(7)
    # big enough to cross the kernels' parallel threshold (65536 elements)
    return [
        rng.standard_normal((300, 700)),
        rng.standard_normal((700, 300)).astype(np.float32),
        rng.standard_normal((64, 4096)),
        (rng.standard_normal((40, 50, 60)) + 1j * rng.standard_normal((40, 50, 60))),
    ]


def _calls() -> list:
    calls = []
    for x in _inputs():
        for name in SCANS:
            spec = sa.OPS[name]
            if x.dtype.name not in spec.dtypes_forward:
                continue
            for axis in range(x.ndim):
                calls.append((name, x, dict(axis=axis, reverse=axis == 1)))
    return calls


def _run(call: tuple) -> list:
    name, x, kw = call
    spec = sa.OPS[name]
    y, pullback = sa.vjp(spec.fn, x, **kw)
    _, y_dot = sa.jvp(spec.fn, x, np.ones_like(x), **kw)
    return [np.asarray(y), pullback(np.ones_like(y)), y_dot]


def _same(a: list, b: list) -> bool:
    return all(np.array_equal(u, v, equal_nan=True) and u.dtype == v.dtype for u, v in zip(a, b))


@pytest.fixture
def restore_threads():
    n = sa.get_num_threads()
    yield
    sa.set_num_threads(n)


def test_thread_count_does_not_change_results(restore_threads) -> None:
    calls = _calls()
    sa.set_num_threads(1)
    serial = [_run(c) for c in calls]
    for n in (2, 3, 8):
        sa.set_num_threads(n)
        for call, want in zip(calls, serial):
            assert _same(_run(call), want), (call[0], call[2], n)


def test_eight_python_threads_agree_with_serial_calls(restore_threads) -> None:
    calls = _calls()
    sa.set_num_threads(2)
    serial = [_run(c) for c in calls]
    mismatches: list = []
    errors: list = []
    barrier = threading.Barrier(8)

    def worker(k: int) -> None:
        try:
            barrier.wait()
            order = calls[k:] + calls[:k]  # each thread starts elsewhere
            wants = serial[k:] + serial[:k]
            for call, want in zip(order, wants):
                if not _same(_run(call), want):
                    mismatches.append((k, call[0], call[2]))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not mismatches, mismatches[:5]


def test_gil_is_released_while_kernels_run(restore_threads) -> None:
    """A Python thread keeps running while another one is inside a long
    kernel: with the GIL held it could not count at all meanwhile."""
    sa.set_num_threads(1)
    x = np.random.default_rng(0).standard_normal(1 << 22)
    ticks = 0
    done = threading.Event()

    def counter() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        t = threading.Thread(target=counter)
        t.start()
        try:
            before = ticks
            for _ in range(3):
                sa.logcumsumexp(x)
            during = ticks - before
        finally:
            done.set()
            t.join()
    finally:
        sys.setswitchinterval(previous)
    assert during > 1000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_pool_works_after_fork(restore_threads) -> None:
    sa.set_num_threads(2)
    x = np.random.default_rng(1).standard_normal((512, 512))
    want = sa.cumsum(x, axis=0)  # the parent's pool now has a worker
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the pool must be rebuilt, not deadlock
        ok = np.array_equal(sa.cumsum(x, axis=0), want)
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b"1"
    assert np.array_equal(sa.cumsum(x, axis=0), want)


def test_set_num_threads_validates() -> None:
    with pytest.raises(ValueError, match="n must be between 1 and 256"):
        sa.set_num_threads(0)
    with pytest.raises(TypeError, match="n must be a positive integer"):
        sa.set_num_threads(2.5)


def _scan_order(a: np.ndarray, reverse: bool) -> np.ndarray:
    return a[::-1] if reverse else a


@pytest.mark.parametrize("special", ["none", "nan_early", "nan_late"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["cumsum", "cumprod", "cummax", "cummin"])
def test_one_long_line_split_between_threads(name: str, dtype: str, special: str,
                                             restore_threads) -> None:
    # Two threads scan one line as two pieces: the first piece's total, then
    # both pieces from their carries.  The second piece starts at n // 2 in
    # scan order; ties of the extreme value and NaN sit on both sides of it.
    n = 2**19 + 37
    rng = np.random.default_rng(len(name) * 7 + len(special) + (dtype == "float32"))
    x = rng.standard_normal(n)
    if name == "cumprod":
        x = np.exp(x * 1e-3)  # the product stays in range over the whole line
    if name in ("cummax", "cummin"):
        x = np.round(x * 4)
        peak = 40.0 if name == "cummax" else -40.0
        x[[n // 2 - 5, n // 2 + 5, n - n // 2 - 5, n - n // 2 + 5]] = peak
    if special == "nan_early":
        x[n // 4] = np.nan
    elif special == "nan_late":
        x[3 * n // 4] = np.nan
    x = x.astype(dtype)
    fn = sa.OPS[name].fn
    extra = {"return_indices": True} if name in ("cummax", "cummin") else {}
    for v in (x, x[::-1]):  # the second walks memory backwards
        for reverse in (False, True):
            for inclusive in (False, True):
                kw = dict(reverse=reverse, inclusive=inclusive, **extra)
                sa.set_num_threads(1)
                one = fn(v, **kw)
                sa.set_num_threads(2)
                two = fn(v, **kw)
                if extra:
                    assert np.array_equal(one[0], two[0], equal_nan=True), kw
                    assert np.array_equal(one[1], two[1]), kw
                    continue
                # Both are sums in double of the same terms in other orders:
                # each within the bound for summing in order, (i+1) eps
                # sum |x_j| (products: relative), so they differ by at most
                # twice that; float32 adds one rounding of the double result.
                eps = np.finfo(np.float64).eps
                rounding = np.finfo(np.float32).eps if dtype == "float32" else 0.0
                steps = np.arange(1, n + 1, dtype=np.float64)
                if name == "cumsum":
                    scale = np.nancumsum(np.abs(_scan_order(v, reverse).astype(np.float64)))
                else:
                    scale = np.abs(_scan_order(one, reverse).astype(np.float64))
                tol = (2 * steps * eps + rounding) * scale
                diff = np.abs(_scan_order(one, reverse).astype(np.float64)
                              - _scan_order(two, reverse).astype(np.float64))
                nan = np.isnan(_scan_order(one, reverse))
                assert np.array_equal(nan, np.isnan(_scan_order(two, reverse))), kw
                assert np.all(diff[~nan] <= tol[~nan]), kw
                if name == "cumsum" and dtype == "float64" and special == "none":
                    # the pieces reassociate the sum, so identical bits would
                    # mean the line was not split and the path above untested
                    assert not np.array_equal(one, two), kw


@pytest.mark.parametrize("special", ["none", "rising", "ties", "nan", "inf", "neginf_prefix"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_long_logcumsumexp_line_split_between_threads(dtype: str, special: str,
                                                          restore_threads) -> None:
    # Two threads: a short first piece (about n / 7) scanned while the
    # second's total is taken, then two equal pieces from their carries, the
    # state (max, sum on it); three threads: three equal pieces after the
    # first, two carries combined.  Each output is checked against logaddexp in
    # long double with the bound of the serial line (test_long_lines): the
    # carries only reassociate sums in double.
    n = 2**19 + 37
    rng = np.random.default_rng(len(special) * 2 + (dtype == "float32"))
    x = rng.standard_normal(n) * 3.0
    if special == "rising":  # the max keeps moving up, across both boundaries
        x += np.arange(n) * 1e-3
    elif special == "ties":  # every piece's max is the same value
        x = np.minimum(x, 2.0)
    elif special == "nan":
        x[3 * n // 4] = np.nan
    elif special == "inf":
        x[rng.integers(0, n, 5)] = -np.inf
        x[n // 2] = np.inf
    elif special == "neginf_prefix":  # -inf runs past the first boundary
        x[: n // 5] = -np.inf
    x = x.astype(dtype)
    eps = float(np.finfo(dtype).eps)
    bound = 1.0 * eps if dtype == "float32" else 8.0 * eps
    cases = [(v, reverse, inclusive, threads) for v in (x, x[::-1])  # the second walks down
             for reverse in (False, True) for inclusive in (False, True) for threads in (2, 3)]
    for v, reverse, inclusive, threads in cases:
        kw = dict(reverse=reverse, inclusive=inclusive)
        sa.set_num_threads(1)
        one = sa.logcumsumexp(v, **kw)
        sa.set_num_threads(threads)
        two = sa.logcumsumexp(v, **kw)
        kw["threads"] = threads  # for the messages below
        # in place: the first piece is written while others are read
        buf = x.copy()
        w = buf if v is x else buf[::-1]
        sa.logcumsumexp(w, out=w, reverse=reverse, inclusive=inclusive)
        assert np.array_equal(w, two, equal_nan=True), kw
        with np.errstate(invalid="ignore"):  # -inf - -inf inside logaddexp
            exact = np.logaddexp.accumulate(
                _scan_order(v, reverse).astype(np.longdouble))
        if not inclusive:
            exact = np.concatenate([[-np.inf], exact[:-1]])
        got = _scan_order(two, reverse)
        nan = np.isnan(exact)
        assert np.array_equal(np.isnan(got), nan), kw
        finite = np.isfinite(exact)
        assert np.array_equal(got[~finite & ~nan], exact[~finite & ~nan]), kw
        err = np.abs(got[finite].astype(np.longdouble) - exact[finite])
        worst = float(np.max(err / np.maximum(1.0, np.abs(exact[finite])), initial=0.0))
        assert worst <= bound, (kw, worst / eps)
        if dtype == "float64" and special == "none":
            # identical bits would mean the line was not split
            assert not np.array_equal(one, two), kw
