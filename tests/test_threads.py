"""Threads: the kernels' pool, Python threads calling at once, and fork.

Results must not depend on the number of kernel threads or on other Python
threads running kernels at the same time: every comparison here is bit for
bit (the work split never changes the order of any line's arithmetic).
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
