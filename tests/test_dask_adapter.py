"""scanad.dask against in-memory scanad on random chunkings and segmentations."""

from __future__ import annotations

import functools
import itertools
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
hypothesis = pytest.importorskip("hypothesis")
import dask  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import scanad as sa  # noqa: E402
import scanad.dask as sad  # noqa: E402

OPS = ["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"]
FLAGS = list(itertools.product([False, True], [False, True]))  # (reverse, inclusive)
# Sums, products, log-sum-exps and linear recurrences are reassociated at the
# block edges (the carry is combined with the block's own scan), so they agree
# with the one-pass scan to rounding, not bit for bit: a few ulp per block edge.
RTOL = 1e-12


@st.composite
def chunking(draw: Any, n: int) -> Tuple[int, ...]:
    """A partition of n: blocks of size 1, uneven blocks, one block."""
    cuts = draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=n, unique=True)) if n > 1 else []
    edges = [0, *sorted(cuts), n]
    return tuple(b - a for a, b in zip(edges, edges[1:])) or (0,)


@st.composite
def problem(draw: Any) -> Tuple[int, Tuple[int, ...], Optional[np.ndarray], Optional[int]]:
    n = draw(st.integers(0, 11))
    chunks = draw(chunking(n))
    cu = None
    if draw(st.booleans()):
        edges = np.cumsum((0,) + chunks)
        # boundaries on block edges, inside blocks, and repeated (empty segments)
        inner = draw(st.lists(st.one_of(st.sampled_from(edges.tolist()), st.integers(0, n)),
                              max_size=4))
        cu = np.array(sorted([0, n, *inner]), dtype=np.int64)
    chunk_size = draw(st.one_of(st.none(), st.integers(1, 4)))
    return n, chunks, cu, chunk_size


def _data(n: int, seed: int, ties: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, n))
    if ties:  # small integers: ties and exact sums; NaN: sticky owners
        x = np.round(2 * x)
        x[rng.random(x.shape) < 0.1] = np.nan
    return x


def _check(want: Any, got: Any, exact: bool) -> None:
    if isinstance(want, tuple):
        for w, g in zip(want, got):
            _check(w, g, exact)
        return
    assert got.shape == want.shape and got.dtype == want.dtype
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-13)


def _axes(n: int) -> List[Any]:
    return [1, -1, None] if n else [1]


@settings(max_examples=20, deadline=None)
@given(problem(), st.integers(0, 2**32 - 1), st.booleans())
def test_scans_match_in_memory(case: Any, seed: int, ties: bool) -> None:
    n, chunks, cu, chunk_size = case
    x = _data(n, seed, ties)
    xd = da.from_array(x, chunks=((1, 2), chunks))
    for op, (reverse, inclusive), axis in itertools.product(OPS, FLAGS, _axes(n)):
        if axis is None and cu is not None:
            continue  # the flattened axis has another length
        kw: dict = dict(reverse=reverse, inclusive=inclusive, cu_seqlens=cu,
                        chunk_size=chunk_size)
        if op in ("cummax", "cummin"):
            kw["return_indices"] = True
        want = getattr(sa, op)(x, axis, **kw)
        got = dask.compute(getattr(sad, op)(xd, axis, **kw))[0]
        # max/min are associative exactly (indices included); small integers sum exactly
        _check(want, got, exact=op in ("cummax", "cummin") or (ties and op == "cumsum"))


@settings(max_examples=20, deadline=None)
@given(problem(), st.integers(0, 2**32 - 1))
def test_linear_scan_matches_in_memory(case: Any, seed: int) -> None:
    n, chunks, cu, chunk_size = case
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.2, 1.2, size=(3, n))
    a[rng.random(a.shape) < 0.2] = 0.0  # exact resets, across block edges too
    b = rng.normal(size=(3, n))
    h0 = rng.normal(size=(3,) if cu is None else (len(cu) - 1, 3))
    ad, bd = (da.from_array(v, chunks=((2, 1), chunks)) for v in (a, b))
    for (reverse, inclusive), log_a, final in itertools.product(FLAGS, [False, True],
                                                                [False, True]):
        # final states per line, or per segment (empty ones: their h0)
        kw: dict = dict(h0=h0, reverse=reverse, inclusive=inclusive, log_a=log_a,
                        cu_seqlens=cu, chunk_size=chunk_size, return_final=final)
        aa, aad = (np.abs(a), abs(ad)) if log_a else (a, ad)
        want = sa.linear_scan(aa, b, 1, **kw)
        got = dask.compute(sad.linear_scan(aad, bd, 1, **kw))[0]
        _check(want, got, exact=False)


@settings(max_examples=12, deadline=None)
@given(problem(), st.integers(0, 2**32 - 1), st.booleans())
def test_derivatives_match_in_memory(case: Any, seed: int, ties: bool) -> None:
    n, chunks, cu, chunk_size = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, n))
    x = np.round(x) if ties else x  # ties decide cummax's owners
    g, t = rng.normal(size=x.shape), rng.normal(size=x.shape)
    ch = ((1, 1), chunks)
    xd, gd, td = (da.from_array(v, chunks=ch) for v in (x, g, t))
    for op, (reverse, inclusive) in itertools.product(OPS, FLAGS):
        kw = dict(axis=1, reverse=reverse, inclusive=inclusive, cu_seqlens=cu,
                  chunk_size=chunk_size)
        y, pullback = sa.vjp(getattr(sa, op), x, **kw)
        yd, pullback_d = sad.vjp(op, xd, **kw)
        _check(pullback(g), pullback_d(gd).compute(), exact=False)
        _check(sa.jvp(getattr(sa, op), x, t, **kw)[1], sad.jvp(op, xd, td, **kw)[1].compute(),
               exact=False)


@settings(max_examples=12, deadline=None)
@given(problem(), st.integers(0, 2**32 - 1))
def test_linear_scan_derivatives_match_in_memory(case: Any, seed: int) -> None:
    n, chunks, cu, chunk_size = case
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.2, 1.2, size=(2, n))
    a[rng.random(a.shape) < 0.2] = 0.0
    b, g = rng.normal(size=(2, n)), rng.normal(size=(2, n))
    h0 = rng.normal(size=(2,) if cu is None else (len(cu) - 1, 2))
    tangents = (rng.normal(size=a.shape), rng.normal(size=b.shape), rng.normal(size=h0.shape))
    ch = ((1, 1), chunks)
    ad, bd, gd = (da.from_array(v, chunks=ch) for v in (a, b, g))
    for reverse, inclusive in FLAGS:
        kw = dict(axis=1, reverse=reverse, inclusive=inclusive, cu_seqlens=cu,
                  chunk_size=chunk_size)
        _, pullback = sa.vjp(sa.linear_scan, (a, b, h0), **kw)
        _, pullback_d = sad.vjp(sad.linear_scan, (ad, bd, h0), **kw)
        _check(pullback(g), dask.compute(pullback_d(gd))[0], exact=False)
        _check(sa.jvp(sa.linear_scan, (a, b, h0), tangents, **kw)[1],
               sad.jvp("linear_scan", (ad, bd, h0), tangents, **kw)[1].compute(), exact=False)


@settings(max_examples=12, deadline=None)
@given(problem(), st.integers(0, 2**32 - 1), st.booleans())
def test_linear_scan_final_state_derivatives_match_in_memory(case: Any, seed: int,
                                                             with_h0: bool) -> None:
    n, chunks, cu, chunk_size = case
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.2, 1.2, size=(2, n))
    a[rng.random(a.shape) < 0.2] = 0.0
    b, g = rng.normal(size=(2, n)), rng.normal(size=(2, n))
    state = (2,) if cu is None else (len(cu) - 1, 2)
    h0 = rng.normal(size=state) if with_h0 else None
    g_final = rng.normal(size=state)
    tangents = (rng.normal(size=a.shape), rng.normal(size=b.shape),
                rng.normal(size=state) if with_h0 else None)
    ch = ((1, 1), chunks)
    ad, bd, gd = (da.from_array(v, chunks=ch) for v in (a, b, g))
    for reverse, inclusive in FLAGS:
        kw = dict(axis=1, reverse=reverse, inclusive=inclusive, cu_seqlens=cu,
                  chunk_size=chunk_size, return_final=True)
        y, pullback = sa.vjp(sa.linear_scan, (a, np.exp(b), h0), log_a=True, **kw)
        yd, pullback_d = sad.vjp(sad.linear_scan, (ad, da.exp(bd), h0), log_a=True, **kw)
        _check(y, dask.compute(yd)[0], exact=False)
        # g_final joins at each segment's last step; g or g_final may be None
        for cot, cot_d in (((g, g_final), (gd, g_final)), ((g, None), (gd, None)),
                           ((None, g_final), (None, da.from_array(g_final)))):
            got = dask.compute(pullback_d(cot_d))[0]
            for want, have in zip(pullback(cot), got):
                assert (want is None) == (have is None)
                if want is not None:
                    _check(want, have, exact=False)
        want_j = sa.jvp(sa.linear_scan, (a, b, h0), tangents, **kw)
        got_j = dask.compute(sad.jvp("linear_scan", (ad, bd, h0), tangents, **kw))[0]
        _check(want_j, got_j, exact=False)


def test_segment_final_states_are_blocked_by_their_last_step() -> None:
    # forward: segment k's last step is at cu[k+1] - 1; blocks [0,2) [2,3) [3,4) [4,8)
    b = da.from_array(np.arange(1.0, 9.0), chunks=(2, 1, 1, 4))
    cu = [0, 2, 2, 3, 6, 8]
    h, last = sad.linear_scan(1.0, b, cu_seqlens=cu, h0=[0, 100, 0, 0, 0], return_final=True)
    assert last.chunks == ((2, 1, 0, 2),)  # the empty segment goes with the block before it
    np.testing.assert_array_equal(last.compute(), [3, 100, 3, 15, 15])
    h, last = sad.linear_scan(1.0, b, cu_seqlens=cu, reverse=True, inclusive=False,
                              return_final=True)
    np.testing.assert_array_equal(last.compute(), [3, 0, 3, 15, 15])
    np.testing.assert_array_equal(h.compute(), [2, 0, 0, 11, 6, 0, 8, 0])


@settings(max_examples=15, deadline=None)
@given(problem(), st.integers(0, 2**32 - 1), st.sampled_from(["float16", "float32", "float64"]),
       st.booleans(), st.booleans())
def test_chunk_cumsums_match_in_memory(case: Any, seed: int, dtype: str, reverse: bool,
                                       head_first: bool) -> None:
    n, chunks, cu, chunk_size = case
    g = np.random.default_rng(seed).normal(size=(1, n, 2)).astype(dtype)
    if head_first:
        g = np.ascontiguousarray(g.transpose(0, 2, 1))
    gd = da.from_array(g, chunks=((1,), (1, 1), chunks) if head_first else ((1,), chunks, (2,)))
    kw = dict(reverse=reverse, cu_seqlens=cu, head_first=head_first, scale=0.5,
              output_dtype="float32")
    want = sa.chunk_local_cumsum(g, chunk_size or 3, **kw)
    np.testing.assert_allclose(sad.chunk_local_cumsum(gd, chunk_size or 3, **kw).compute(),
                               want, rtol=2 ** -23)  # float32 output: one rounding
    want = sa.chunk_global_cumsum(g, **kw)
    np.testing.assert_allclose(sad.chunk_global_cumsum(gd, **kw).compute(), want,
                               rtol=2 ** -23)


def test_scalar_a_broadcasts_and_its_cotangent_is_summed() -> None:
    b = np.arange(1.0, 8.0)
    _, pullback = sa.vjp(sa.linear_scan, (np.float64(0.5), b, None))
    _, pullback_d = sad.vjp(sa.linear_scan, (np.float64(0.5), da.from_array(b, chunks=3), None))
    want, got = pullback(np.ones(7)), pullback_d(np.ones(7))
    assert got[2] is None and got[0].shape == ()
    np.testing.assert_allclose(got[0].compute(), want[0], rtol=RTOL)
    np.testing.assert_allclose(got[1].compute(), want[1], rtol=RTOL)


def test_complex_linear_scan_and_flattened_cotangents_keep_their_inputs_shapes() -> None:
    rng = np.random.default_rng(7)
    a = rng.uniform(size=(3, 5)) + 0.3j
    b = rng.normal(size=(3, 5)) + 0j
    g = rng.normal(size=15) + 1j
    _, pullback = sa.vjp(sa.linear_scan, (a, b, np.array(2.0)))     # axis=None: flattened
    _, pullback_d = sad.vjp(sa.linear_scan, (da.from_array(a, chunks=2), b, np.array(2.0)))
    for want, got in zip(pullback(g), pullback_d(g)):
        # h0 is real, so is its cotangent; a and b keep their 2-D shapes
        _check(want, got.compute(), exact=False)


def test_segments_on_block_edges_and_empty_segments() -> None:
    x = da.from_array(np.arange(1, 9), chunks=(2, 1, 1, 4))   # block edges at 2, 3, 4
    cu = [0, 2, 2, 3, 6, 8]   # on edges, empty, inside a block
    np.testing.assert_array_equal(sad.cumsum(x, cu_seqlens=cu).compute(),
                                  [1, 3, 3, 4, 9, 15, 7, 15])
    np.testing.assert_array_equal(
        sad.cumsum(x, cu_seqlens=cu, reverse=True, inclusive=False).compute(),
        [2, 0, 0, 11, 6, 0, 8, 0])
    # chunks of 2 counted from each segment start, straddling block edges
    np.testing.assert_array_equal(sad.cumsum(x, cu_seqlens=cu, chunk_size=2).compute(),
                                  [1, 3, 3, 4, 9, 6, 7, 15])


def test_cummax_indices_are_global_with_nan_and_ties() -> None:
    x = np.array([1.0, 3.0, 3.0, np.nan, 2.0, np.nan, 5.0])
    v, i = sad.cummax(da.from_array(x, chunks=2), return_indices=True)
    np.testing.assert_array_equal(i.compute(), [0, 1, 2, 3, 3, 5, 5])
    np.testing.assert_array_equal(v.compute(), [1, 3, 3, np.nan, np.nan, np.nan, np.nan])
    v, i = sad.cummin(da.from_array(x[:3], chunks=1), reverse=True, inclusive=False,
                      return_indices=True)
    np.testing.assert_array_equal(i.compute(), [1, 2, -1])


class _Counting:
    """A block source that counts its reads, to see what building a graph runs."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.reads = x, 0
        self.shape, self.dtype, self.ndim = x.shape, x.dtype, x.ndim

    def __getitem__(self, index: Any) -> np.ndarray:
        self.reads += 1
        return self.x[index]


def test_building_graphs_computes_nothing() -> None:
    src = _Counting(np.linspace(0.1, 1.0, 40).reshape(4, 10))
    x = da.from_array(src, chunks=(2, 3), asarray=False)
    src.reads = 0  # from_array reads an empty slice for its meta
    ran: List[Any] = []
    with dask.callbacks.Callback(pretask=lambda key, dsk, state: ran.append(key)):
        outs = [sad.cumsum(x, 1, cu_seqlens=[0, 4, 10], chunk_size=3),
                sad.cummax(x, 0, return_indices=True)[1], sad.logcumsumexp(x),
                sad.linear_scan(x, x, 1, h0=np.ones(4), reverse=True)]
        _, pullback = sad.vjp("cumprod", x, axis=1, inclusive=False)
        outs.append(pullback(x))
        outs.append(sad.jvp(sad.linear_scan, (x, x, None), (x, None, None), axis=1)[1])
    assert src.reads == 0 and ran == []
    np.testing.assert_allclose(outs[0].compute(), sa.cumsum(src.x, 1, cu_seqlens=[0, 4, 10],
                                                            chunk_size=3), rtol=RTOL)
    assert src.reads > 0


@pytest.mark.parametrize("op", ["cumsum", "cummax", "linear_scan"])
def test_task_count_is_linear_in_blocks(op: str) -> None:
    counts = []
    for blocks in (4, 8, 16):
        x = da.ones((2, 16 * 4), chunks=(1, 4 * 16 // blocks))
        if op == "linear_scan":
            y = sad.linear_scan(x, x, 1, cu_seqlens=[0, 5, 64], chunk_size=7)
        elif op == "cummax":
            y = sad.cummax(x, 1, return_indices=True, reverse=True)[1]
        else:
            y = sad.cumsum(x, 1, inclusive=False, cu_seqlens=[0, 5, 64])
        counts.append(len(dict(y.__dask_graph__())))
    # the same number of tasks for every further block (2 lines of blocks)
    per_block = (counts[1] - counts[0]) / (2 * 4)
    assert counts[2] - counts[1] == per_block * 2 * 8
    assert per_block <= {"cumsum": 4, "cummax": 5, "linear_scan": 6}[op]


def test_errors_name_the_argument() -> None:
    x = da.ones(6, chunks=2)
    with pytest.raises(ValueError, match="cu_seqlens"):
        sad.cumsum(x, cu_seqlens=[0, 2, 5])
    with pytest.raises(TypeError, match="cu_seqlens"):
        sad.cumsum(x, cu_seqlens=da.from_array(np.array([0, 6])))
    with pytest.raises(ValueError, match="chunk_size"):
        sad.cummax(x, chunk_size=0)
    with pytest.raises(TypeError, match="axis"):
        sad.cumprod(x, axis=1.0)
    with pytest.raises(TypeError, match="x must be a floating"):
        sad.vjp("cumsum", da.ones(3, dtype=int, chunks=1))
    with pytest.raises(ValueError, match="op must be"):
        sad.vjp(np.cumsum, x)
    _, pullback = sad.vjp("linear_scan", (0.5, x, None), cu_seqlens=[0, 2, 6],
                          return_final=True)
    with pytest.raises(TypeError, match="pair"):
        pullback(x)
    with pytest.raises(ValueError, match="g_final must have the final state's shape"):
        pullback((x, np.ones(3)))


def test_integer_and_float32_dtypes_follow_scanad() -> None:
    x = np.arange(-5, 7, dtype=np.int8)
    np.testing.assert_array_equal(sad.cumsum(da.from_array(x, chunks=5)).compute(),
                                  sa.cumsum(x))
    f = np.linspace(0.1, 3.0, 13, dtype=np.float32)
    got = sad.cumprod(da.from_array(f, chunks=4)).compute()
    # float32 carries are kept in float64, as scanad accumulates: within one rounding
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, sa.cumprod(f), rtol=2 ** -23)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, env={"SCANAD_NUM_THREADS": "1"}
                                  ) as cluster, distributed.Client(cluster) as c:
        yield c


def test_on_a_local_cluster(client: Any) -> None:
    import os

    threads = client.run(lambda: (os.environ.get("SCANAD_NUM_THREADS"),
                                  __import__("scanad").get_num_threads()))
    assert sorted(threads.values()) == [("1", 1), ("1", 1)]
    x = np.random.default_rng(5).normal(size=(3, 1000))
    xd = da.from_array(x, chunks=(2, 97))
    cu = [0, 97, 500, 500, 1000]
    y, (v, i) = client.compute([sad.logcumsumexp(xd, 1, cu_seqlens=cu, reverse=True),
                                sad.cummax(xd, 1, return_indices=True, chunk_size=64)],
                               sync=True)
    np.testing.assert_allclose(y, sa.logcumsumexp(x, 1, cu_seqlens=cu, reverse=True),
                               rtol=RTOL)
    np.testing.assert_array_equal(i, sa.cummax(x, 1, return_indices=True, chunk_size=64)[1])
    _, pullback = sad.vjp(sad.linear_scan, (0.99, xd, None), axis=1)
    a_bar, b_bar, _ = client.compute(list(pullback(np.ones_like(x))[:2]), sync=True) + [None]
    want = sa.vjp(sa.linear_scan, (0.99, x, None), axis=1)[1](np.ones_like(x))
    np.testing.assert_allclose(a_bar, want[0], rtol=1e-11)
    np.testing.assert_allclose(b_bar, want[1], rtol=RTOL)


def _segment_sum_check(cu: np.ndarray, y: np.ndarray, block_info: Any = None) -> np.ndarray:
    """For a cumsum of ones: 1 where block ``y`` has the closed form's first and
    last values and sum, everywhere checked in full on blocks holding a boundary."""
    lo, hi = block_info[0]["array-location"][0]
    inner = cu[(cu > lo) & (cu < hi)]
    start = int(cu[cu <= lo][-1])
    edges = [lo, *inner.tolist(), hi]
    # piece [s, e) of the segment starting at `first` holds s-first+1 .. e-first
    firsts = [start, *inner.tolist()]
    if len(inner):
        want = np.concatenate([np.arange(s - f + 1, e - f + 1, dtype=np.float64)
                               for s, e, f in zip(edges, edges[1:], firsts)])
        return np.array([float(np.array_equal(y, want))])
    # integers below 2**53 sum exactly, so the series' sum is compared exactly
    a0, a1 = lo - start + 1, hi - start
    total = (a0 + a1) * (a1 - a0 + 1) // 2
    ok = y[0] == a0 and y[-1] == a1 and np.sum(y) == total
    return np.array([float(ok)])


def _peak_rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


@pytest.mark.slow
def test_scans_an_array_larger_than_the_workers_memory(tmp_path: Any) -> None:
    import os

    distributed = pytest.importorskip("distributed")
    # 1 GiB of float64, generated block by block (4 MiB blocks), on two workers
    # allowed 150 MB each: the array is 3.6 times the workers' total memory
    n, block, limit = 2**27, 2**19, 150 * 10**6
    cu = np.array([0, n // 3, n // 3, 2 * n // 3 + 5, n])   # across blocks, one empty
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  memory_limit=limit, dashboard_address=None,
                                  local_directory=str(tmp_path),
                                  env={"SCANAD_NUM_THREADS": "1"}) as cluster, \
            distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        y = sad.cumsum(da.ones(n, chunks=block), cu_seqlens=cu)
        checks = y.map_blocks(functools.partial(_segment_sum_check, cu), chunks=(1,),
                              dtype=np.float64)
        assert checks.min().compute() == 1.0
        # the same workers (none restarted for memory), and none went over its limit
        assert client.run(os.getpid) == pids
        # VmHWM, not ru_maxrss: a forked worker inherits its parent's ru_maxrss
        peaks = client.run(_peak_rss_kib)
        assert all(kib * 1024 < limit for kib in peaks.values()), peaks


def test_foreign_byte_order_gives_native_results() -> None:
    """The dask array's dtype says what its blocks hold: native byte order, as
    the in-memory results are."""
    g = np.random.default_rng(3).normal(size=(1, 9, 2)).astype(">f4")
    gd = da.from_array(g, chunks=(1, 4, 2))
    for got, want in [(sad.chunk_local_cumsum(gd, 3), sa.chunk_local_cumsum(g, 3)),
                      (sad.chunk_global_cumsum(gd), sa.chunk_global_cumsum(g)),
                      (sad.cumsum(gd, 1), sa.cumsum(g, 1))]:
        assert got.dtype == want.dtype and want.dtype.isnative
        computed = got.compute()
        assert computed.dtype == want.dtype
        np.testing.assert_array_equal(computed, want)
