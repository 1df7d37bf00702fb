"""Long single lines: the path where a scan runs along one contiguous line.

The other tests use short axes, where every kernel walks element by element.
Lines longer than a tile (256 elements) take the tiled, vectorised line
kernels, which reassociate the work; these tests cross that path against the
NumPy reference and against the row-streaming panel path (the same data as a
column of a two-column array), forward and in both derivative modes, with
infinities, NaN and ties placed in later tiles, both directions, both
inclusive choices, contiguous and strided.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import scanad as sa
from scanad import _reference as ref
from scanad._registry import SCANS

LENGTHS = [255, 256, 257, 1000, 3001]


def _line(rng: np.random.Generator, n: int, dtype: str, special: str) -> np.ndarray:
    x = rng.standard_normal(n) * 3
    if special == "ties":
        x = np.round(x)
    elif special == "inf":
        x[rng.integers(0, n, 3)] = -np.inf
        x[n // 2 + rng.integers(0, n - n // 2, 2)] = np.inf
    elif special == "neginf_prefix":
        x[: n // 2] = -np.inf
    elif special == "nan":
        x[n // 2 + 7 if n > 300 else n - 1] = np.nan
    return x.astype(dtype)


def _strided(x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "contiguous":
        return x
    wide = np.zeros(2 * x.size, x.dtype)
    wide[::2] = x
    return wide[::2]


def _tolerance(dtype: np.dtype, n: int) -> tuple:
    # Both paths accumulate in double and round once per output; the line
    # kernels reassociate (log-step within vectors, tiles of 256), which moves
    # the double partial results by at most ~n/16 double ulp here, far below a
    # float32 ulp and a few float64 ulp times log2(n) for float64.
    eps = float(np.finfo(dtype).eps)
    if dtype == np.float32:
        return 4 * eps, 4 * eps
    return 16 * eps * np.log2(n), 16 * eps * np.log2(n)


def _close(got: np.ndarray, want: np.ndarray, dtype: np.dtype, n: int) -> None:
    rtol, atol = _tolerance(dtype, n)
    finite = want[np.isfinite(want)]
    scale = max(1.0, float(np.max(np.abs(finite), initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, equal_nan=True)


def _column(fn, x: np.ndarray, **kw):
    """The same scan through the panel path: x as column 0 of (n, 2)."""
    return fn(_stack(x), axis=0, **kw)


@pytest.mark.parametrize("special", ["none", "ties", "inf", "neginf_prefix", "nan"])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", SCANS)
def test_long_line_forward(name: str, dtype: str, layout: str, special: str) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{name}{dtype}{layout}{special}".encode()))
    fn = sa.OPS[name].fn
    for n in LENGTHS:
        x = _strided(_line(rng, n, dtype, special), layout)
        for reverse in (False, True):
            for inclusive in (False, True):
                kw = dict(reverse=reverse, inclusive=inclusive)
                got = fn(x, **kw)
                want = getattr(ref, name)(x, **kw)
                if name in ("cummax", "cummin"):
                    assert np.array_equal(got, want, equal_nan=True), (name, n, kw)
                    gi = fn(x, return_indices=True, **kw)[1]
                    wi = getattr(ref, name)(x, return_indices=True, **kw)[1]
                    assert np.array_equal(gi, wi), (name, n, kw)
                    col = _column(fn, x, **kw)[:, 0]
                    assert np.array_equal(got, col, equal_nan=True)
                    continue
                col = _column(fn, x, **kw)[:, 0]
                _close(got, want, np.dtype(dtype), n)
                _close(got, col, np.dtype(dtype), n)


def _extreme_line(rng: np.random.Generator, n: int, name: str, dtype: str) -> np.ndarray:
    """A line whose running sum or product leaves the range and comes back:
    clusters of huge and of tiny magnitudes, zeros, an inf, on moderate noise."""
    huge = float(np.finfo(dtype).max) / 4
    tiny = float(np.finfo(dtype).tiny) * 4
    x = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n)
    for start in rng.integers(0, n - 12, 8):
        x[start:start + rng.integers(1, 12)] = huge * rng.choice([-1.0, 1.0])
    if name == "cumprod":
        for start in rng.integers(0, n - 12, 8):
            x[start:start + rng.integers(1, 12)] = tiny
        x[rng.integers(0, n, 3)] = 0.0
        x[rng.integers(n // 2, n)] = 1e-300 if dtype == "float64" else 1e-30
    return x.astype(dtype)


def _same_specials_and_close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    # zeros, infinities (with their signs) and NaN where the one-at-a-time
    # scan has them, and the numbers within rtol of its numbers
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[np.isinf(want)], want[np.isinf(want)])
    assert np.array_equal(got == 0, want == 0)
    num = np.isfinite(want) & (want != 0)
    np.testing.assert_allclose(got[num], want[num], rtol=rtol, atol=0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["cumsum", "cumprod"])
def test_long_line_leaving_the_range_matches_the_panel_path(name: str, dtype: str,
                                                            threads: int) -> None:
    """The line kernels combine groups of elements before the running result
    and split long lines between threads; neither may turn a result into inf,
    0 or NaN that the one-at-a-time scan (the panel path) keeps a number, or
    the other way round (0 * 1e200 * 1e200 grouped is NaN, 1e308 + 1e308 -
    1e308 - 1e308 grouped is NaN)."""
    rng = np.random.default_rng(zlib.crc32(f"{name}{dtype}{threads}x".encode()))
    fn = sa.OPS[name].fn
    before = sa.get_num_threads()
    sa.set_num_threads(threads)
    try:
        for n in [1000, 3001] + ([1 << 19] if threads > 1 else []):
            x = _extreme_line(rng, n, name, dtype)
            for reverse in (False, True):
                for inclusive in (False, True):
                    kw = dict(reverse=reverse, inclusive=inclusive)
                    with np.errstate(over="ignore", invalid="ignore"):
                        got = fn(x, **kw)
                        col = _column(fn, x, **kw)[:, 0]
                        # in place, where a block cannot be done again from
                        # x: the same operations, so the same bits
                        inplace = x.copy()
                        fn(inplace, out=inplace, **kw)
                    np.testing.assert_array_equal(inplace, got)
                    if name == "cumsum":
                        # sums: only the specials; the numbers are checked
                        # on the scale of the line by test_long_line_forward
                        inf = np.isinf(col)
                        assert np.array_equal(np.isnan(got), np.isnan(col))
                        assert np.array_equal(got[inf], col[inf])
                        continue
                    # products: each rounding is relative, so per element;
                    # reassociating n factors moves a double by ~sqrt(n)
                    # ulp typically and n ulp at worst
                    rtol = 4 * float(np.finfo(dtype).eps) if dtype == "float32" else n * 2e-16
                    _same_specials_and_close(got, col, rtol)
    finally:
        sa.set_num_threads(before)


@pytest.mark.parametrize("special", ["none", "ties", "inf", "neginf_prefix", "nan"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", SCANS)
def test_long_line_derivatives_match_the_panel_path(name: str, dtype: str, special: str) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{name}{dtype}{special}d".encode()))
    fn = sa.OPS[name].fn
    for n in LENGTHS:
        x = _line(rng, n, dtype, special)
        t = rng.standard_normal(n).astype(dtype)
        g = rng.standard_normal(n).astype(dtype)
        for reverse in (False, True):
            for inclusive in (False, True):
                kw = dict(reverse=reverse, inclusive=inclusive)
                y, ydot = sa.jvp(fn, x, t, **kw)
                x2, t2, g2 = _stack(x), _stack(t), _stack(g)
                y2, ydot2 = sa.jvp(fn, x2, t2, axis=0, **kw)
                _close(ydot, ydot2[:, 0], np.dtype(dtype), n)
                _, pullback = sa.vjp(fn, x, **kw)
                _, pullback2 = sa.vjp(fn, x2, axis=0, **kw)
                _close(pullback(g), pullback2(g2)[:, 0], np.dtype(dtype), n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cumprod_jvp_line_tiles_match_the_panel_path(dtype: str) -> None:
    """The float32 cumprod JVP of a line runs tiles of 256 elements as eight
    chunks side by side and falls back to the log-step groups for a tile
    whose factors leave [2^-16, 2^16] (0 allowed), whose tangents pass 2^64,
    or whose chunk carries pass 2^100.  Each of those edges sits in its own
    tile here, on factors whose product stays near 1, so the tiles around
    them run chunked; all must give the one-at-a-time (panel) results."""
    rng = np.random.default_rng(zlib.crc32(f"jvp-tiles{dtype}".encode()))
    n = 256 * 40 + 77
    x = rng.uniform(0.8, 1.25, n) * rng.choice([-1.0, 1.0], n)
    t = rng.standard_normal(n)
    x[3 * 256 + 5] = 2.0**17  # factor just beyond the chunks' range
    x[5 * 256 + 200] = 2.0**-17
    x[6 * 256 + 9], x[6 * 256 + 100] = 2.0**16, 2.0**-16  # at the edges: chunked
    x[8 * 256 + 31] = 0.0  # a zero restarts the product, chunked
    x[9 * 256 + 32] = -0.0
    t[10 * 256 + 64] = 2.0**65
    x[12 * 256 + 10: 12 * 256 + 130] = 2.5  # the carry passes 2^100 mid-tile ...
    x[14 * 256 + 10: 14 * 256 + 130] = 0.4  # ... and comes back
    # the carry falls to ~2^-1000 and climbs back within one chunk (the last
    # of its tile): a chunk's local product of those factors overflows
    x[20 * 256: 20 * 256 + 10] = 2.0**-100
    x[21 * 256 + 230: 21 * 256 + 240] = 2.0**120
    x[23 * 256: 23 * 256 + 2] = 2.0**-100
    x[39 * 256 + 3] = np.inf
    t[39 * 256 + 100] = np.nan
    x, t = x.astype(dtype), t.astype(dtype)
    eps = float(np.finfo(dtype).eps)
    for reverse in (False, True):
        for inclusive in (False, True):
            kw = dict(reverse=reverse, inclusive=inclusive)
            xs, ts = (x[::-1].copy(), t[::-1].copy()) if reverse else (x, t)
            with np.errstate(over="ignore", invalid="ignore"):
                y, ydot = sa.jvp(sa.cumprod, xs, ts, **kw)
                y2, ydot2 = sa.jvp(sa.cumprod, _stack(xs), _stack(ts), axis=0, **kw)
                # the same sum with every term positive: the scale of the
                # rounding in a sum with cancellation
                _, scale = sa.jvp(sa.cumprod, _stack(np.abs(xs)), _stack(np.abs(ts)),
                                  axis=0, **kw)
            # products round relatively: within a few ulp of T (float32 is
            # rounded once from double; float64 reassociates ~8-element
            # groups, ~sqrt(n) ulp typically, n at worst)
            rtol = 4 * eps if dtype == "float32" else n * 2e-16
            _same_specials_and_close(y, y2[:, 0], rtol)
            _same_sum_within_rounding(ydot, ydot2[:, 0], scale[:, 0], kw)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cumprod_vjp_line_tiles_match_the_panel_path(dtype: str) -> None:
    """The float32 cumprod VJP of a line runs its backwards recurrence in
    the same chunked tiles, with the same fallbacks (factors outside
    [2^-16, 2^16] but 0, cotangents past 2^64, carries past 2^100); here
    also a chunk of huge factors where the cotangents above are 0, whose
    chunked product would overflow to inf and give inf * 0 = NaN where the
    one-at-a-time recurrence keeps 0."""
    rng = np.random.default_rng(zlib.crc32(f"vjp-tiles{dtype}".encode()))
    n = 256 * 40 + 77
    x = rng.uniform(0.8, 1.25, n) * rng.choice([-1.0, 1.0], n)
    g = rng.standard_normal(n)
    x[3 * 256 + 5] = 2.0**17
    x[5 * 256 + 200] = 2.0**-17
    x[6 * 256 + 9], x[6 * 256 + 100] = 2.0**16, 2.0**-16
    x[8 * 256 + 31] = 0.0
    x[9 * 256 + 32] = -0.0
    g[10 * 256 + 64] = 2.0**65
    # walking down, the carry passes 2^100 after this run and comes back
    x[14 * 256 + 10: 14 * 256 + 130] = 2.5
    x[12 * 256 + 10: 12 * 256 + 130] = 0.4
    # tiles run down from i = n - 1, so the last chunk of a tile (where a
    # non-finite local product meets no later chunk carry) starts at
    # i = n % 256 + 256 m
    g[30 * 256:] = 0.0
    x[31 * 256 + 80: 31 * 256 + 100] = 2.0**120
    g[150], g[100] = np.inf, np.nan
    x, g = x.astype(dtype), g.astype(dtype)
    for reverse in (False, True):
        for inclusive in (False, True):
            kw = dict(reverse=reverse, inclusive=inclusive)
            xs, gs = (x[::-1].copy(), g[::-1].copy()) if reverse else (x, g)
            with np.errstate(over="ignore", invalid="ignore"):
                got = sa.vjp(sa.cumprod, xs, **kw)[1](gs)
                want = sa.vjp(sa.cumprod, _stack(xs), axis=0, **kw)[1](_stack(gs))[:, 0]
                bound = sa.vjp(sa.cumprod, _stack(np.abs(xs)), axis=0, **kw)[1](
                    _stack(np.abs(gs)))[:, 0]
            assert np.isfinite(want).sum() > n // 2  # the edges leave most of the line
            _same_sum_within_rounding(got, want, bound, kw)


def _same_sum_within_rounding(got: np.ndarray, want: np.ndarray, bound: np.ndarray,
                              kw: dict) -> None:
    """A derivative (a sum of products) against the one-at-a-time one: the
    same specials, and the numbers within one rounding to T plus the double
    sums' drift, at most ~n double ulp of `bound`, the sum with every term
    positive."""
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[np.isinf(want)], want[np.isinf(want)])
    num = np.isfinite(want)
    g, w, b = (a[num].astype(float) for a in (got, want, bound))
    err = np.abs(g - w)
    tol = 2 * float(np.finfo(got.dtype).eps) * np.abs(w) + got.size * 2.3e-16 * b
    assert np.all(err <= tol), (kw, np.flatnonzero(~(err <= tol))[:5])


def _stack(v: np.ndarray) -> np.ndarray:
    """v as column 0 of an (n, 2) array: the panel path, one element at a time."""
    return np.stack([v, v[::-1]], axis=1)


@pytest.mark.parametrize("lanes", [4, 8, 12, 16])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_narrow_panels(lanes: int, dtype: str) -> None:
    # 4, 8 and 16 contiguous lanes keep the cumsum state in registers (the
    # heads of a [B, T, H] gate tensor); 12 takes the general panel.
    rng = np.random.default_rng(lanes)
    x = (rng.standard_normal((3, 300, lanes)) * 3).astype(dtype)
    for reverse in (False, True):
        for inclusive in (False, True):
            kw = dict(reverse=reverse, inclusive=inclusive)
            want = ref.cumsum(x, axis=1, **kw)
            _close(sa.cumsum(x, axis=1, **kw), want, np.dtype(dtype), 300)
            _close(sa.cumsum(x, axis=1, chunk_size=7, **kw),
                   ref.cumsum(x, axis=1, chunk_size=7, **kw), np.dtype(dtype), 7)
            inplace = x.copy()
            assert sa.cumsum(inplace, axis=1, out=inplace, **kw) is inplace
            _close(inplace, want, np.dtype(dtype), 300)
            g = rng.standard_normal(x.shape).astype(dtype)
            _, pullback = sa.vjp(sa.cumsum, x, axis=1, **kw)
            _close(pullback(g), ref.cumsum(g, axis=1, reverse=not reverse, inclusive=inclusive),
                   np.dtype(dtype), 300)


def _lse_lines(rng: np.random.Generator, n: int) -> dict:
    """Lines whose tiles keep their sums on a reference other than the running
    max (the finite-tile path of the line kernel: above it, or below it when a
    tile keeps an earlier reference) in every way it can be off: a rise within
    a tile, a slow rise, small and large offsets, a sum that grows to many
    times its largest term, elements at and past the span, lines rising too
    fast for one reference, and the plain random line."""
    return {
        "uniform": rng.uniform(-4.0, 0.0, n),
        "rising": np.linspace(-3.0, 3.0, n) + rng.standard_normal(n) * 0.1,
        "normal": rng.standard_normal(n) * 3,
        "offset_small": rng.uniform(-40.0, -36.0, n),
        "offset_large": 1e3 + rng.uniform(-4.0, 0.0, n),
        "sawtooth": (np.arange(n) % 300) / 75.0 - 2.0,
        "many_terms": -2.0 * np.log(np.arange(1, n + 1)),
        # tiles kept on an earlier reference: elements exactly the span
        # above it (4 for float64 results, 64 for float32 ones), just past
        # it, -inf among them; and lines rising too fast for one reference
        "span_edges": _span_edges(rng.uniform(-4.0, 0.0, n)),
        "climb": np.arange(n) * 0.03 + rng.uniform(-1.0, 0.0, n),
        "steep": np.arange(n) * 0.5 + rng.uniform(-1.0, 0.0, n),
    }


def _span_edges(x: np.ndarray) -> np.ndarray:
    # tiles of 256 from a reference 0; a failed tile ends speculation for the
    # rest of this line, so each dtype's failure comes after its kept edges
    x[0] = 0.0
    x[600] = 4.0  # the float64 span above the reference: kept by both
    x[900] = -np.inf  # inside a kept tile
    x[1100] = 4.0 + 2.0**-20  # just past the float64 span
    x[1200] = 64.0  # the float32 span: kept by float32
    x[1500] = 64.0 + 2.0**-17  # just past it (one float32 ulp)
    x[1501] = -np.inf
    x[2500] = 1000.0  # past the range of exp(x - 64) itself
    return x


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logcumsumexp_line_accuracy_per_element(dtype: str) -> None:
    """Each output against logaddexp in long double, on its own scale.

    The other tests scale their absolute tolerance by the largest output,
    which would hide an error that only matters for an output much smaller
    than the rest.  The bound here is per element: float32 results are the
    long-double value rounded once (<= 1/2 ulp, and the double arithmetic adds
    ~1e-8 ulp); float64 results carry the rounding of the partial sums S_i
    (relative error ~ a few eps, passed on as an absolute error of log S_i)
    and of M + log S_i, <= 8 eps * max(1, |y_i|) on these lines (the largest,
    6 eps, is the many-terms line, the same in the element-by-element path)."""
    rng = np.random.default_rng(11)
    eps = float(np.finfo(dtype).eps)
    bound = 1.0 * eps if dtype == "float32" else 8.0 * eps
    for label, line in _lse_lines(rng, 3001).items():
        x = line.astype(dtype)
        for reverse in (False, True):
            for inclusive in (False, True):
                xs = x[::-1] if reverse else x
                exact = np.logaddexp.accumulate(xs.astype(np.longdouble))
                if not inclusive:
                    exact = np.concatenate([[-np.inf], exact[:-1]])
                if reverse:
                    exact = exact[::-1]
                got = sa.logcumsumexp(x, reverse=reverse, inclusive=inclusive)
                finite = np.isfinite(exact)
                assert np.array_equal(np.isfinite(got), finite), label
                err = np.abs(got[finite].astype(np.longdouble) - exact[finite])
                scale = np.maximum(1.0, np.abs(exact[finite]))
                worst = float(np.max(err / scale)) / eps
                assert worst <= bound / eps, (label, reverse, inclusive, worst)
