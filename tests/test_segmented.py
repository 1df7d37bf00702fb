"""Segmented scans: ``cu_seqlens=`` and ``chunk_size=`` on the five scan ops
(docs/semantics.md, "Segmented and chunked scans").

The contract: the scan restarts at every segment start ``cu[k]`` and every
``chunk_size`` elements counted from the segment start; ``reverse`` and
``inclusive`` apply within each piece; so a segmented scan equals the op
applied to each piece separately.  cummax/cummin indices are positions along
the full scan axis (piece index + piece offset), and the exclusive first
element of each piece gets index -1 and the identity as value.  Derivatives
follow piece by piece.

Oracles: the unsegmented op applied to each piece (itself tested against the
NumPy reference elsewhere) and, for real float64 values, NumPy's ufunc
``accumulate`` applied to each piece, written here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scanad as sa

SCANS = [name for name, spec in sa.OPS.items() if spec.rule not in ("chunk", "linear")]
TEST_DTYPES = ("int64", "float32", "float64", "complex128")
INDEXED = ("cummax", "cummin")


def _dtypes(name, candidates=TEST_DTYPES):
    return [d for d in candidates if d in sa.OPS[name].dtypes_forward]


FWD_CASES = [(n, d) for n in SCANS for d in _dtypes(n)]
DERIV_CASES = [(n, d) for n in SCANS for d in ("float64", "complex128")
               if d in sa.OPS[n].dtypes_derivative]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def pieces(n, cu_seqlens=None, chunk_size=None):
    """[start, stop) of every non-empty piece along an axis of length n."""
    segs = [(0, n)] if cu_seqlens is None else [
        (int(cu_seqlens[k]), int(cu_seqlens[k + 1])) for k in range(len(cu_seqlens) - 1)]
    out = []
    for a, b in segs:
        step = (b - a) if chunk_size is None else chunk_size
        for s in range(a, b, max(step, 1)):
            out.append((s, min(s + step, b)))
    return out


def _take(x, axis, a, b):
    sl = [slice(None)] * x.ndim
    sl[axis] = slice(a, b)
    return tuple(sl)


def make_x(rng, name, dtype, shape):
    """Inputs that keep every op finite and exercise ties (ints, max/min)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iub":
        lo = -2 if dtype.kind == "i" else 0
        return rng.integers(lo, 3, size=shape).astype(dtype)   # |prod| <= 2**n fits int64
    if name == "cumprod":
        mag = rng.uniform(0.6, 1.5, size=shape)
        x = mag * rng.choice([-1.0, 1.0], size=shape)
        if dtype.kind == "c":
            x = x * np.exp(1j * rng.uniform(-np.pi, np.pi, size=shape))
        return x.astype(dtype)
    x = rng.standard_normal(shape)
    if name in INDEXED:
        x = np.round(x * 2) / 2          # ties
    if dtype.kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


def call(name, x, axis=None, **kw):
    fn = sa.OPS[name].fn
    if name in INDEXED:
        kw = {**kw, "return_indices": True}
    return fn(x, axis=axis, **kw)


def piecewise(name, x, axis, cu_seqlens=None, chunk_size=None, **kw):
    """The op applied to each piece, assembled (indices shifted by the piece start)."""
    if axis is None:
        x, axis = np.ravel(x), 0
    axis = axis % x.ndim
    full = call(name, x, axis, **kw)       # dtype/shape template
    if name in INDEXED:
        vals, idx = np.empty_like(full[0]), np.empty_like(full[1])
    else:
        vals, idx = np.empty_like(full), None
    for a, b in pieces(x.shape[axis], cu_seqlens, chunk_size):
        sl = _take(x, axis, a, b)
        r = call(name, x[sl], axis, **kw)
        if name in INDEXED:
            vals[sl] = r[0]
            idx[sl] = np.where(r[1] == -1, -1, r[1] + a)
        else:
            vals[sl] = r
    return vals if idx is None else (vals, idx)


def _tolerances(name, x, axis, n):
    """(atol, rtol) for comparing two evaluations of a floating op.

    The two sides may associate differently (a segmented kernel vs a short
    line, a log-step scan vs a sequential one): a sum of n terms then differs
    by at most ~n*eps*sum|x| (atol), a product of n factors by ~n*eps
    relative, logcumsumexp by ~n*eps*(1+|y|); 4x slack.  cummax/cummin and
    integer scans are exact.  float32 sums accumulate in float64 and round
    once (docs/semantics.md): one float32 ulp on the output is covered by rtol.
    """
    dt = np.asarray(x).dtype
    if dt.kind not in "fc" or name in INDEXED:
        return 0.0, 0.0
    eps = np.finfo(dt).eps
    m = max(n, 1)
    if name == "cumsum":
        # NaN inputs are compared exactly (non-finite entries), not via the bound
        s = float(np.max(np.nansum(np.abs(x), axis=axis), initial=0.0)) if x.size else 0.0
        return 4 * m * eps * max(s, 1.0), 4 * m * eps
    if name == "cumprod":
        return np.finfo(dt).tiny, 4 * m * eps
    return 4 * m * eps, 4 * m * eps   # logcumsumexp


def assert_close(name, got, want, atol, rtol, what=""):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    if atol == 0 and rtol == 0:
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    g = got.astype(np.complex128)
    w = want.astype(np.complex128)
    fin = np.isfinite(w)
    # non-finite entries (the exclusive identity -inf, overflow) must match exactly
    np.testing.assert_array_equal(g[~fin], w[~fin], err_msg=what)
    d = g[fin] - w[fin]
    if name == "logcumsumexp" and np.iscomplexobj(want):
        # imaginary parts are angles: compare modulo 2*pi (docs/semantics.md)
        d = d.real + 1j * np.angle(np.exp(1j * d.imag))
    err = np.abs(d)
    bound = atol + rtol * np.abs(w[fin])
    bad = ~(err <= bound)
    assert not bad.any(), (f"{what}: {int(bad.sum())} entries off, max err "
                           f"{err[bad].max():.3g} (bound {bound[bad].min():.3g})")


def assert_matches(name, got, want, x, axis, n, what=""):
    if name in INDEXED:
        np.testing.assert_array_equal(got[0], want[0], err_msg=what)   # NaN == NaN here
        np.testing.assert_array_equal(got[1], want[1], err_msg=what)
        assert got[1].dtype == np.int64
    else:
        atol, rtol = _tolerances(name, x, axis, n)
        assert_close(name, got, want, atol, rtol, what)


# --------------------------------------------------------------------------
# forward: segmented == per piece
# --------------------------------------------------------------------------

SEGMENTATIONS = [
    # (cu_seqlens as a function of the axis length n, chunk_size)
    (lambda n: None, 4),
    (lambda n: None, 1),
    (lambda n: None, 100),                            # larger than n
    (lambda n: [0, n], None),
    (lambda n: [0, 0, 3, 3, n // 2, n, n], None),     # empty segments first/middle/last
    (lambda n: [0, 1, 2, n - 1, n], 3),
    (lambda n: [0, 0, 5, n], 2),
    (lambda n: [0, n // 3, n // 3, n], 7),
]

SHAPES_AXES = [((23,), 0), ((5, 17, 3), 1), ((19, 4), 0), ((3, 2, 21), -1), ((4, 13), None)]


@pytest.mark.parametrize("name,dtype", FWD_CASES)
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
def test_segmented_equals_pieces(name, dtype, shape, axis):
    rng = np.random.default_rng([len(name), len(dtype), *shape])
    x = make_x(rng, name, dtype, shape)
    n = x.size if axis is None else x.shape[axis]
    for cu_fn, chunk in SEGMENTATIONS:
        cu = cu_fn(n)
        for reverse in (False, True):
            for inclusive in (True, False):
                kw = dict(reverse=reverse, inclusive=inclusive)
                got = call(name, x, axis, cu_seqlens=cu, chunk_size=chunk, **kw)
                want = piecewise(name, x, axis, cu, chunk, **kw)
                assert_matches(name, got, want, x, axis if axis is not None else None,
                               n if chunk is None else min(chunk, n),
                               f"{name} {dtype} {shape} axis={axis} cu={cu} chunk={chunk} {kw}")


def _np_piece(name, p, axis, reverse, inclusive):
    """Independent NumPy oracle for one real float64 piece (values only)."""
    uf = {"cumsum": np.add, "cumprod": np.multiply, "cummax": np.maximum,
          "cummin": np.minimum, "logcumsumexp": np.logaddexp}[name]
    ident = {"cumsum": 0.0, "cumprod": 1.0, "cummax": -np.inf, "cummin": np.inf,
             "logcumsumexp": -np.inf}[name]
    if reverse:
        p = np.flip(p, axis)
    y = uf.accumulate(p, axis=axis)
    if not inclusive:
        y = np.roll(y, 1, axis=axis)
        y[_take(y, axis, 0, 1)] = ident
    if reverse:
        y = np.flip(y, axis)
    return y


@pytest.mark.parametrize("name", SCANS)
@pytest.mark.parametrize("shape,axis", [((30,), 0), ((4, 26, 3), 1), ((26, 5), 0)])
def test_segmented_against_numpy(name, shape, axis):
    rng = np.random.default_rng(5)
    x = make_x(rng, name, "float64", shape)
    n = x.shape[axis]
    for cu, chunk in [([0, 4, 4, 11, n], None), ([0, 9, n], 4), (None, 5), ([0, 0, n], 1)]:
        for reverse in (False, True):
            for inclusive in (True, False):
                want = np.empty_like(x)
                for a, b in pieces(n, cu, chunk):
                    sl = _take(x, axis, a, b)
                    want[sl] = _np_piece(name, x[sl], axis, reverse, inclusive)
                got = sa.OPS[name].fn(x, axis=axis, reverse=reverse, inclusive=inclusive,
                                      cu_seqlens=cu, chunk_size=chunk)
                atol, rtol = _tolerances(name, x, axis, n)
                assert_close(name, got, want, atol, rtol,
                             f"{name} cu={cu} chunk={chunk} rev={reverse} inc={inclusive}")


@pytest.mark.parametrize("name", INDEXED)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("inclusive", [True, False])
def test_indices_are_full_axis_positions(name, reverse, inclusive):
    rng = np.random.default_rng(8)
    x = rng.integers(0, 4, size=(3, 40, 2)).astype(np.float64)   # many ties
    cu, chunk = [0, 0, 9, 9, 30, 40], 6
    vals, idx = sa.OPS[name].fn(x, axis=1, reverse=reverse, inclusive=inclusive,
                                return_indices=True, cu_seqlens=cu, chunk_size=chunk)
    ident = -np.inf if name == "cummax" else np.inf
    for a, b in pieces(40, cu, chunk):
        first = b - 1 if reverse else a
        piece_idx = idx[:, a:b]
        ok = piece_idx != -1
        if inclusive:
            assert ok.all()
        else:
            # the exclusive first element of each piece: index -1, value = identity
            assert (idx[:, first] == -1).all() and (vals[:, first] == ident).all()
            ok_expected = np.ones_like(ok)
            ok_expected[:, first - a] = False
            np.testing.assert_array_equal(ok, ok_expected)
        # every owner lies inside its piece, on the scan side of the position
        pos = np.arange(a, b)[None, :, None]
        assert ((piece_idx[ok] >= a) & (piece_idx[ok] < b)).all()
        if reverse:
            assert (np.broadcast_to(pos, piece_idx.shape)[ok] <= piece_idx[ok]).all()
        else:
            assert (np.broadcast_to(pos, piece_idx.shape)[ok] >= piece_idx[ok]).all()
    # take_along_axis with the indices recovers the values
    safe = np.where(idx == -1, 0, idx)
    rec = np.take_along_axis(x, safe, axis=1)
    np.testing.assert_array_equal(np.where(idx == -1, vals, rec), vals)


@pytest.mark.parametrize("name", SCANS)
def test_nan_does_not_leak_across_pieces(name):
    x = np.arange(1.0, 13.0) / 4
    x[2] = np.nan                   # in segment [0, 5)
    cu, chunk = [0, 5, 12], 4       # pieces [0,4) [4,5) [5,9) [9,12)
    for reverse in (False, True):
        for inclusive in (True, False):
            kw = dict(reverse=reverse, inclusive=inclusive)
            got = call(name, x, 0, cu_seqlens=cu, chunk_size=chunk, **kw)
            want = piecewise(name, x, 0, cu, chunk, **kw)
            v = got[0] if name in INDEXED else got
            assert not np.isnan(v[4:]).any(), (name, kw, v)
            assert_matches(name, got, want, x, 0, 4, f"{name} {kw}")


def test_axis_none_flattens_then_segments():
    x = np.arange(12.0).reshape(3, 4)
    got = sa.cumsum(x, cu_seqlens=[0, 5, 12], chunk_size=4)
    assert got.shape == (12,)
    flat = np.arange(12.0)
    want = np.concatenate([np.cumsum(flat[0:4]), np.cumsum(flat[4:5]), np.cumsum(flat[5:9]),
                           np.cumsum(flat[9:12])])
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="cu_seqlens"):
        sa.cumsum(x, cu_seqlens=[0, 4])           # the flattened length is 12


def test_non_contiguous_input_and_out():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((30, 8))
    x = base[::-2, ::3]          # (15, 3), negative and positive strides
    cu, chunk = [0, 2, 2, 15], 4
    for name in SCANS:
        want = piecewise(name, np.ascontiguousarray(x), 0, cu, chunk, reverse=True)
        got = call(name, x, 0, cu_seqlens=cu, chunk_size=chunk, reverse=True)
        assert_matches(name, got, want, x, 0, 4, name)
        if name in INDEXED:
            out = (np.empty((15, 3)), np.empty((15, 3), np.int64))
            r = sa.OPS[name].fn(x, axis=0, reverse=True, return_indices=True, out=out,
                                cu_seqlens=cu, chunk_size=chunk)
            assert r[0] is out[0] and r[1] is out[1]
            np.testing.assert_array_equal(out[0], want[0])
            np.testing.assert_array_equal(out[1], want[1])
        else:
            out = np.empty((15, 3))
            r = sa.OPS[name].fn(x, axis=0, reverse=True, out=out, cu_seqlens=cu,
                                chunk_size=chunk)
            assert r is out
            assert_matches(name, out, want, x, 0, 4, name + " out=")


def test_cumsum_dtype_with_segments():
    # dtype= casts first, then accumulates in that dtype, wrapping like NumPy
    x = np.full(40, 100, np.int64)
    cu = [0, 3, 40]
    got = sa.cumsum(x, dtype=np.int8, cu_seqlens=cu)
    want = np.concatenate([np.cumsum(x[:3].astype(np.int8), dtype=np.int8),
                           np.cumsum(x[3:].astype(np.int8), dtype=np.int8)])
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want)
    got = sa.cumprod(np.arange(1, 9), dtype=np.float32, chunk_size=3)
    np.testing.assert_array_equal(got, np.array([1, 2, 6, 4, 20, 120, 7, 56], np.float32))


def test_exact_restart_no_global_prefix():
    # the scan restarts: no subtraction of a global prefix in any direction
    x = np.array([1e17] * 8 + [1.0] * 8)
    np.testing.assert_array_equal(sa.cumsum(x, cu_seqlens=[0, 8, 16])[8:], np.arange(1.0, 9))
    np.testing.assert_array_equal(sa.cumsum(x, chunk_size=8)[8:], np.arange(1.0, 9))
    np.testing.assert_array_equal(sa.cumsum(x[::-1], cu_seqlens=[0, 8, 16], reverse=True)[:8],
                                  np.arange(8.0, 0, -1))
    np.testing.assert_array_equal(sa.cumsum(x, reverse=True, chunk_size=16)[8:],
                                  np.arange(8.0, 0, -1))
    np.testing.assert_array_equal(sa.cumsum(x, reverse=True, inclusive=False, chunk_size=16)[8:],
                                  np.arange(7.0, -1, -1))


# --------------------------------------------------------------------------
# hypothesis: random segmentations, chunk sizes, shapes, axes
# --------------------------------------------------------------------------

@st.composite
def seg_cases(draw, names=tuple(SCANS), dtypes=TEST_DTYPES, derivative=False):
    name = draw(st.sampled_from(names))
    spec = sa.OPS[name]
    allowed = [d for d in dtypes
               if d in (spec.dtypes_derivative if derivative else spec.dtypes_forward)]
    dtype = draw(st.sampled_from(allowed))
    ndim = draw(st.integers(1, 3))
    axis = draw(st.integers(-ndim, ndim - 1))
    shape = [draw(st.integers(1, 4)) for _ in range(ndim)]
    n = draw(st.integers(0, 40))
    shape[axis] = n
    use_cu = draw(st.booleans())
    cu = None
    if use_cu:
        cuts = draw(st.lists(st.integers(0, n), max_size=7))
        cu = [0] + sorted(cuts) + [n]
        if draw(st.booleans()):
            cu = [0] + cu          # an empty first segment
    chunk = draw(st.one_of(st.none(), st.integers(1, 12), st.just(n + 1)))
    reverse = draw(st.booleans())
    inclusive = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return name, dtype, tuple(shape), axis, cu, chunk, reverse, inclusive, seed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seg_cases())
def test_property_segmented_equals_pieces(case):
    name, dtype, shape, axis, cu, chunk, reverse, inclusive, seed = case
    x = make_x(np.random.default_rng(seed), name, dtype, shape)
    kw = dict(reverse=reverse, inclusive=inclusive)
    got = call(name, x, axis, cu_seqlens=cu, chunk_size=chunk, **kw)
    want = piecewise(name, x, axis, cu, chunk, **kw)
    n = shape[axis]
    assert_matches(name, got, want, x, axis, n if chunk is None else min(chunk, n), str(case))


# --------------------------------------------------------------------------
# derivatives: segmented == per piece
# --------------------------------------------------------------------------

def make_smooth(rng, name, dtype, shape):
    """Inputs away from kinks: distinct values for max/min, no zeros for prod."""
    x = rng.standard_normal(shape)
    if name == "cumprod":
        x = rng.uniform(0.6, 1.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


def _rand_like(rng, a):
    a = np.asarray(a)
    r = rng.standard_normal(a.shape)
    if a.dtype.kind == "c":
        r = r + 1j * rng.standard_normal(a.shape)
    return r.astype(a.dtype)


def _deriv_piecewise(name, x, t, g, axis, cu, chunk, reverse, inclusive):
    axis = axis % x.ndim
    y_dot = np.zeros(x.shape, dtype=x.dtype)
    x_bar = np.zeros(x.shape, dtype=x.dtype)
    for a, b in pieces(x.shape[axis], cu, chunk):
        sl = _take(x, axis, a, b)
        _, yd = sa.jvp(name, x[sl], t[sl], axis=axis, reverse=reverse, inclusive=inclusive)
        _, pb = sa.vjp(name, x[sl], axis=axis, reverse=reverse, inclusive=inclusive)
        y_dot[sl] = yd
        x_bar[sl] = pb(g[sl])
    return y_dot, x_bar


def _deriv_tol(x, n, *arrays):
    # each derivative entry is a sum of at most n terms, each a product of
    # recurrence factors whose partial results are bounded by ~n*max|.| here;
    # summing them in another order costs at most n*eps*(n*max|.|); 4x slack.
    # (float64/complex128 only.)  A segmentation error is O(max|.|), far above.
    eps = np.finfo(x.dtype).eps
    m = max([1.0] + [float(np.max(np.abs(a), initial=0.0)) for a in arrays])
    return 4 * max(n, 1) ** 2 * eps * m


def _check_derivs(name, x, axis, cu, chunk, reverse, inclusive, seed):
    rng = np.random.default_rng(seed)
    t = _rand_like(rng, x)
    g = _rand_like(rng, x)
    kw = dict(axis=axis, reverse=reverse, inclusive=inclusive, cu_seqlens=cu, chunk_size=chunk)
    y, y_dot = sa.jvp(name, x, t, **kw)
    y2, pullback = sa.vjp(name, x, **kw)
    x_bar = pullback(g)
    want_dot, want_bar = _deriv_piecewise(name, x, t, g, axis, cu, chunk, reverse, inclusive)
    n = x.shape[axis]
    tol = _deriv_tol(x, n, x, t, g, want_dot, want_bar)
    what = (f"{name} {x.dtype} {x.shape} axis={axis} cu={cu} chunk={chunk} rev={reverse} "
            f"inc={inclusive}")
    assert y_dot.shape == x.shape and x_bar.shape == x.shape and x_bar.dtype == x.dtype, what
    assert np.max(np.abs(y_dot - want_dot), initial=0.0) <= tol, what + " jvp"
    assert np.max(np.abs(x_bar - want_bar), initial=0.0) <= tol, what + " vjp"
    # adjoint identity vdot(g, J t) == vdot(J^H g, t) (docs/derivatives.md)
    lhs, rhs = np.vdot(g, y_dot), np.vdot(x_bar, t)
    mag = np.linalg.norm(g) * np.linalg.norm(y_dot) + np.linalg.norm(x_bar) * np.linalg.norm(t)
    assert abs(lhs - rhs) <= 64 * max(n, 1) * np.finfo(x.dtype).eps * max(mag, 1.0), what


@pytest.mark.parametrize("name,dtype", DERIV_CASES)
@pytest.mark.parametrize("shape,axis", [((25,), 0), ((3, 22, 2), 1), ((20, 3), 0)])
def test_segmented_derivatives_equal_pieces(name, dtype, shape, axis):
    rng = np.random.default_rng([len(name), len(dtype), *shape])
    x = make_smooth(rng, name, dtype, shape)
    n = x.shape[axis]
    for cu, chunk in [([0, 0, 6, 6, n], None), (None, 4), ([0, 1, 13, n], 5), ([0, n, n], 1)]:
        for reverse in (False, True):
            for inclusive in (True, False):
                _check_derivs(name, x, axis, cu, chunk, reverse, inclusive, seed=n)


@pytest.mark.parametrize("name,dtype", DERIV_CASES)
def test_segmented_check_grads(name, dtype):
    rng = np.random.default_rng(17)
    x = make_smooth(rng, name, dtype, (4, 18))
    for cu, chunk, rev in [([0, 5, 5, 18], None, False), (None, 4, True), ([0, 7, 18], 3, True)]:
        for inc in (True, False):
            # "rev" (the adjoint identity) for every flag combination
            sa.check_grads(name, x, modes=("rev",), axis=1, cu_seqlens=cu, chunk_size=chunk,
                           reverse=rev, inclusive=inc)
        sa.check_grads(name, x, axis=1, cu_seqlens=cu, chunk_size=chunk, reverse=rev,
                       inclusive=True)


@pytest.mark.parametrize("name,dtype", DERIV_CASES)
def test_segmented_check_grads_fwd_exclusive(name, dtype):
    # exclusive scans put the identity at the first element of every piece;
    # for cummax/cummin/logcumsumexp that is -inf, a constant output whose
    # derivative is 0 (docs/derivatives.md, "Edges").  check_grads' central
    # differences must not turn -inf - (-inf) into a NaN failure there.
    rng = np.random.default_rng(18)
    x = make_smooth(rng, name, dtype, (4, 18))
    for cu, chunk, rev in [([0, 5, 5, 18], None, False), (None, 4, True), ([0, 7, 18], 3, True)]:
        sa.check_grads(name, x, modes=("fwd",), axis=1, cu_seqlens=cu, chunk_size=chunk,
                       reverse=rev, inclusive=False)


def test_cumprod_zeros_segmented_derivatives():
    # zeros inside pieces: exact per piece (docs/derivatives.md), and a zero must not
    # affect the derivatives of any other piece
    x = np.array([2.0, 0.0, 3.0, 0.0, 0.0, 5.0, 1.5, 0.0, -2.0, 4.0])
    for cu, chunk in [([0, 2, 2, 10], 3), (None, 4), ([0, 5, 10], None)]:
        for rev in (False, True):
            for inc in (True, False):
                _check_derivs("cumprod", x, 0, cu, chunk, rev, inc, seed=3)
                _, pb = sa.vjp(sa.cumprod, x, cu_seqlens=cu, chunk_size=chunk, reverse=rev,
                               inclusive=inc)
                assert np.isfinite(pb(np.ones(10))).all()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seg_cases(dtypes=("float64", "complex128"), derivative=True))
def test_property_segmented_derivatives(case):
    name, dtype, shape, axis, cu, chunk, reverse, inclusive, seed = case
    x = make_smooth(np.random.default_rng(seed), name, dtype, shape)
    _check_derivs(name, x, axis, cu, chunk, reverse, inclusive, seed + 1)


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------

BAD_CU = [
    ([[0, 40]], "not 1-D"),
    (np.array([0.0, 40.0]), "float dtype"),
    ([1, 40], "not starting at 0"),
    ([0, 30, 20, 40], "decreasing"),
    ([0, 39], "not ending at n"),
    ([0, 41], "past n"),
    ([0, 2**62, 40], "huge"),
    ([0, -5, 40], "negative"),
    ([0, 2**63 - 1], "int64 max"),
    ([-(2**63), 40], "int64 min"),
    (np.array([0, 2**64 - 1, 40], np.uint64), "uint64 max"),
    ([0, 2**70, 40], "beyond int64"),
    ([0], "ends at 0"),
    ([], "empty"),
    ([0, 6], "length of another axis"),
]


@pytest.mark.parametrize("name", SCANS)
@pytest.mark.parametrize("cu,why", BAD_CU, ids=[w for _, w in BAD_CU])
def test_bad_cu_seqlens(name, cu, why):
    x = np.ones((6, 40))
    fn = sa.OPS[name].fn
    with pytest.raises((ValueError, TypeError), match="cu_seqlens"):
        fn(x, axis=1, cu_seqlens=cu)
    with pytest.raises((ValueError, TypeError), match="cu_seqlens"):
        fn(x, axis=-1, cu_seqlens=cu, chunk_size=4)
    with pytest.raises((ValueError, TypeError), match="cu_seqlens"):
        sa.vjp(fn, x, axis=1, cu_seqlens=cu)[1](x)
    with pytest.raises((ValueError, TypeError), match="cu_seqlens"):
        sa.jvp(fn, x, x, axis=1, cu_seqlens=cu)


@pytest.mark.parametrize("name", SCANS)
def test_bad_cu_seqlens_error_kinds(name):
    fn = sa.OPS[name].fn
    x = np.ones(40)
    with pytest.raises(TypeError, match="cu_seqlens"):
        fn(x, cu_seqlens=np.array([0.0, 40.0]))
    for cu in ([[0, 40]], [1, 40], [0, 30, 20, 40], [0, 39], [0, 2**62, 40], [0, -5, 40], [],
               np.array([], np.int64)):
        with pytest.raises(ValueError, match="cu_seqlens"):
            fn(x, cu_seqlens=cu)
    # the segments apply along the scan axis: a (40, 6) array scanned on axis 1
    with pytest.raises(ValueError, match="cu_seqlens"):
        fn(np.ones((40, 6)), axis=1, cu_seqlens=[0, 40])
    fn(np.ones((40, 6)), axis=0, cu_seqlens=[0, 40])


@pytest.mark.parametrize("name", SCANS)
def test_bad_chunk_size(name):
    fn = sa.OPS[name].fn
    x = np.ones((3, 8))
    for c in (0, -1, -2**62):
        with pytest.raises(ValueError, match="chunk_size"):
            fn(x, axis=1, chunk_size=c)
        with pytest.raises(ValueError, match="chunk_size"):
            sa.jvp(fn, x, x, axis=1, chunk_size=c)
    for c in (2.5, 4.0, "4", True, [4], np.float64(2.0)):
        with pytest.raises(TypeError, match="chunk_size"):
            fn(x, axis=1, chunk_size=c)
        with pytest.raises(TypeError, match="chunk_size"):
            sa.vjp(fn, x, axis=1, chunk_size=c)[1](x)
    for c in (np.int64(3), np.int32(3), np.uint16(3)):
        np.testing.assert_array_equal(np.asarray(call(fn.__name__, x, 1, chunk_size=c)[0]),
                                      np.asarray(call(fn.__name__, x, 1, chunk_size=3)[0]))


@pytest.mark.parametrize("name", SCANS)
def test_cu_seqlens_integer_dtypes(name):
    x = make_x(np.random.default_rng(2), name, "float64", (50,))
    cu = [0, 10, 10, 33, 50]
    want = call(name, x, 0, cu_seqlens=np.array(cu, np.int64), chunk_size=6)
    for dt in (np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.uint64):
        got = call(name, x, 0, cu_seqlens=np.array(cu, dt), chunk_size=6)
        assert_matches(name, got, want, x, 0, 6, f"{name} cu_seqlens dtype {np.dtype(dt)}")


# Overflowing restart tables (segment start + chunk_size past INT64_MAX) may
# corrupt memory: run them in a child interpreter so a crash fails this test
# instead of killing the run.
_HUGE_CHUNK_SCRIPT = """
import numpy as np, scanad as sa
x = np.arange(1.0, 9.0) / 8
for name in [n for n, s in sa.OPS.items() if s.rule not in ("chunk", "linear")]:
    fn = sa.OPS[name].fn
    for c in (2**31, 2**62, 2**63 - 8, 2**63 - 2, 2**63 - 1):
        for cu in (None, [0, 8], [0, 3, 8], [0, 3, 3, 7, 8]):
            for rev in (False, True):
                got = fn(x, reverse=rev, cu_seqlens=cu, chunk_size=c)
                want = fn(x, reverse=rev, cu_seqlens=cu)
                assert np.array_equal(got, want), (name, c, cu, rev, got, want)
                _, yd = sa.jvp(fn, x, x, reverse=rev, cu_seqlens=cu, chunk_size=c)
                _, yd2 = sa.jvp(fn, x, x, reverse=rev, cu_seqlens=cu)
                assert np.array_equal(yd, yd2), ("jvp", name, c, cu, rev)
                xb = sa.vjp(fn, x, reverse=rev, cu_seqlens=cu, chunk_size=c)[1](x)
                xb2 = sa.vjp(fn, x, reverse=rev, cu_seqlens=cu)[1](x)
                assert np.array_equal(xb, xb2), ("vjp", name, c, cu, rev)
print("ok")
"""


def test_huge_chunk_size_is_one_chunk_per_segment():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", _HUGE_CHUNK_SCRIPT], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (
        f"exit {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-2000:]}")
