"""Second-order derivatives: vjp_jvp, hvp and check_grads(order=2)
(docs/derivatives.md "Second order").

Oracles, independent of the kernels' recurrences:
* a dense Hessian built per output from the closed-form second partials
  (cumprod: the product over the prefix without x_i and x_k; logcumsumexp:
  p_ji (delta_ik - p_jk) with p_ji = exp(x_i - y_j); sums and extremes: 0),
  in float64 on short lines, over every flag and segment layout;
* central differences of the exact first-order pullback (docs/derivatives.md's
  definition), for complex inputs too;
* torch's double backward where torch is right.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

import scanad as sa

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SCANS = [name for name, spec in sa.OPS.items() if spec.rule not in ("chunk", "linear")]
ALL_OPS = list(sa.OPS)
FLAGS = list(itertools.product([False, True], [True, False]))  # (reverse, inclusive)
LAYOUTS: List[Dict[str, Any]] = [
    {},
    {"chunk_size": 3},
    {"cu_seqlens": np.array([0, 2, 2, 7])},
    {"cu_seqlens": np.array([0, 4, 7]), "chunk_size": 2},
]


# ---------------------------------------------------------------- oracles

def prefix_sets(n: int, reverse: bool, inclusive: bool, cu: Optional[np.ndarray] = None,
                chunk: Optional[int] = None) -> List[List[int]]:
    """For each output j, the input indices it combines (docs/semantics.md)."""
    bounds = list(cu) if cu is not None else [0, n]
    sets: List[List[int]] = [[] for _ in range(n)]
    for s0, s1 in zip(bounds[:-1], bounds[1:]):
        pieces = [(c, min(c + chunk, s1)) for c in range(s0, s1, chunk)] if chunk else [(s0, s1)]
        for c0, c1 in pieces:
            order = list(range(c0, c1))[::-1] if reverse else list(range(c0, c1))
            for pos, j in enumerate(order):
                sets[j] = order[:pos + 1] if inclusive else order[:pos]
    return sets


def dense_jacobian_hessians(op: str, x: np.ndarray, sets: List[List[int]]
                            ) -> Tuple[np.ndarray, np.ndarray]:
    """J[j, i] = dy_j/dx_i and Hs[j, i, k] = d2 y_j / dx_i dx_k for a real
    line x (float64), from closed forms, by brute force."""
    n = len(x)
    J = np.zeros((n, n))
    Hs = np.zeros((n, n, n))
    for j, S in enumerate(sets):
        if not S:
            continue
        if op == "cumsum":
            J[j, S] = 1.0
        elif op == "cumprod":
            for i in S:
                J[j, i] = math.prod(x[m] for m in S if m != i)
                for k in S:
                    if k != i:
                        Hs[j, i, k] = math.prod(x[m] for m in S if m not in (i, k))
        elif op in ("cummax", "cummin"):
            owner = S[0]
            for m in S:  # ties go to the latest in scan order, NaN takes over
                if np.isnan(x[m]) or (x[m] >= x[owner] if op == "cummax" else x[m] <= x[owner]):
                    owner = m
            J[j, owner] = 1.0
        elif op == "logcumsumexp":
            v = x[S]
            top = np.max(v)
            yj = top + np.log(np.sum(np.exp(v - top)))
            p = np.zeros(n)
            p[S] = np.exp(v - yj)
            J[j] = p
            Hs[j] = np.diag(p) - np.outer(p, p)
        else:
            raise AssertionError(op)
    return J, Hs


def oracle_line(op: str, x: np.ndarray, t: np.ndarray, g: np.ndarray, gd: np.ndarray,
                sets: List[List[int]]) -> Tuple[np.ndarray, np.ndarray]:
    J, Hs = dense_jacobian_hessians(op, x, sets)
    H = np.einsum("j,jik->ik", g, Hs)
    return J.T @ g, H @ t + J.T @ gd


def oracle(op: str, x: np.ndarray, t: np.ndarray, g: np.ndarray, gd: np.ndarray, axis: int,
           **kw: Any) -> Tuple[np.ndarray, np.ndarray]:
    """The dense oracle applied line by line along axis."""
    xm, tm, gm, gdm = (np.moveaxis(a, axis, -1) for a in (x, t, g, gd))
    n = xm.shape[-1]
    sets = prefix_sets(n, kw.get("reverse", False), kw.get("inclusive", True),
                       kw.get("cu_seqlens"), kw.get("chunk_size"))
    xb = np.zeros(xm.shape)
    xbd = np.zeros(xm.shape)
    for idx in np.ndindex(*xm.shape[:-1]):
        xb[idx], xbd[idx] = oracle_line(op, xm[idx], tm[idx], gm[idx], gdm[idx], sets)
    return np.moveaxis(xb, -1, axis), np.moveaxis(xbd, -1, axis)


def pullback_fd(op: str, x: np.ndarray, t: np.ndarray, g: np.ndarray, gd: np.ndarray,
                h: float = 1e-6, **kw: Any) -> np.ndarray:
    """The definition (docs/derivatives.md, "Second order"): VJP(x, g_dot) +
    central difference of VJP(., g) along t, in float64/complex128."""
    def pb(xx: np.ndarray, v: np.ndarray) -> np.ndarray:
        return sa.vjp(op, xx, **kw)[1](v)
    return pb(x, gd) + (pb(x + h * t, g) - pb(x - h * t, g)) / (2 * h)


def rand(rng: np.random.Generator, shape: Tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def smooth_x(op: str, rng: np.random.Generator, shape: Tuple[int, ...],
             dtype: Any = np.float64) -> np.ndarray:
    """Inputs away from cummax ties; cumprod factors near +-1 so products stay O(1)."""
    x = rand(rng, shape, dtype)
    if op == "cumprod":
        x = (np.sign(x.real) * (0.6 + 0.5 * np.abs(x))).astype(dtype) if x.dtype.kind == "f" \
            else (x / np.maximum(np.abs(x), 1e-3) * (0.8 + 0.3 * rng.random(shape))).astype(dtype)
    return x


# float64: the kernels' recurrences against the closed forms differ by a few
# ulp per step of a short line (n <= 8), times the size of the terms
TOL64 = dict(rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- dense Hessian

@pytest.mark.quick
@pytest.mark.parametrize("op", SCANS)
@pytest.mark.parametrize("reverse,inclusive", FLAGS)
@pytest.mark.parametrize("layout", range(len(LAYOUTS)))
def test_dense_hessian_every_op_flag_layout(op: str, reverse: bool, inclusive: bool,
                                            layout: int) -> None:
    rng = np.random.default_rng(layout * 7 + reverse * 2 + inclusive)
    kw = {"reverse": reverse, "inclusive": inclusive, **LAYOUTS[layout]}
    x, t, g, gd = (smooth_x(op, rng, (3, 7)), rand(rng, (3, 7)), rand(rng, (3, 7)),
                   rand(rng, (3, 7)))
    for axis in (1, 0) if not LAYOUTS[layout] else (1,):
        xs, ts, gs, gds = (x, t, g, gd) if axis == 1 else (a.T.copy() for a in (x, t, g, gd))
        want_xb, want_xbd = oracle(op, xs, ts, gs, gds, axis, **kw)
        xb, xbd = sa.vjp_jvp(op, xs, gs, ts, gds, axis=axis, **kw)
        np.testing.assert_allclose(xb, want_xb, **TOL64)
        np.testing.assert_allclose(xbd, want_xbd, **TOL64)
        # hvp: g_dot = 0 is the Hessian term alone
        want_h = oracle(op, xs, ts, gs, np.zeros_like(gs), axis, **kw)[1]
        np.testing.assert_allclose(sa.hvp(op, xs, ts, gs, axis=axis, **kw), want_h, **TOL64)


@pytest.mark.quick
@pytest.mark.parametrize("op", SCANS)
def test_wide_panels_and_single_lines_agree_with_oracle(op: str) -> None:
    """Panels of many lanes (axis 0 of a wide array: the row-streaming walk),
    strided lanes and one long line (the tiled logcumsumexp walk) against
    the dense oracle on a few lines."""
    rng = np.random.default_rng(3)
    x = smooth_x(op, rng, (9, 600))
    t, g, gd = rand(rng, x.shape), rand(rng, x.shape), rand(rng, x.shape)
    for kw in ({"inclusive": True}, {"inclusive": False, "reverse": True}):
        xb, xbd = sa.vjp_jvp(op, x, g, t, gd, axis=0, **kw)
        cols = [0, 1, 257, 599]
        want_xb, want_xbd = oracle(op, x[:, cols], t[:, cols], g[:, cols], gd[:, cols], 0, **kw)
        np.testing.assert_allclose(xb[:, cols], want_xb, **TOL64)
        np.testing.assert_allclose(xbd[:, cols], want_xbd, **TOL64)
        # strided lanes (every other column) give the same numbers
        xb2, xbd2 = sa.vjp_jvp(op, x[:, ::2], g[:, ::2], t[:, ::2], gd[:, ::2], axis=0, **kw)
        np.testing.assert_allclose(xbd2, xbd[:, ::2], rtol=1e-13, atol=1e-13)
    # a single long line: the central difference of the exact pullback
    # (the dense oracle is O(n^3)); h = 1e-6 leaves ~1e-9 relative error
    n = 3000
    x1 = smooth_x(op, rng, (n,))
    t1, g1, gd1 = rand(rng, (n,)), rand(rng, (n,)), rand(rng, (n,))
    if op == "cumprod":
        x1 = np.where(rng.random(n) < 0.5, 1.0, -1.0) * np.exp(rng.standard_normal(n) * 1e-3)
    for kw in ({"inclusive": True}, {"inclusive": False, "reverse": True}):
        xb, xbd = sa.vjp_jvp(op, x1, g1, t1, gd1, **kw)
        want = pullback_fd(op, x1, t1, g1, gd1, **kw)
        scale = max(1.0, np.max(np.abs(want)))
        np.testing.assert_allclose(xbd, want, rtol=1e-6, atol=1e-6 * scale)
        np.testing.assert_allclose(xb, sa.vjp(op, x1, **kw)[1](g1), rtol=1e-12, atol=1e-12 * scale)


# ---------------------------------------------------------------- registry, order 2

@pytest.mark.quick
@pytest.mark.parametrize("op", ALL_OPS)
def test_check_grads_order2_every_registered_op(op: str) -> None:
    spec = sa.OPS[op]
    rng = np.random.default_rng(11)
    if spec.inputs != ("x",):
        # an op of several inputs: one random array per input, over its flags
        assert spec.inputs == ("a", "b", "h0")
        for dtype in spec.dtypes_derivative:
            a = smooth_x("cumprod", rng, (4, 6), dtype)
            b, h0 = rand(rng, (4, 6), dtype), rand(rng, (4,), dtype)
            for reverse, inclusive in FLAGS:
                sa.check_grads(op, (a, b, h0), order=2, axis=1, reverse=reverse,
                               inclusive=inclusive, return_final=True)
                sa.check_grads(op, (a[:, :1], b, None), order=2, axis=1, reverse=reverse,
                               inclusive=inclusive, chunk_size=4)
        return
    if spec.rule == "chunk":
        x = rand(rng, (1, 12, 2))
        kw: Dict[str, Any] = {"chunk_size": 4} if op == "chunk_local_cumsum" else {}
        sa.check_grads(op, x, order=2, reverse=True, **kw)
        sa.check_grads(op, x, order=2, scale=0.5, **kw)
        return
    for dtype in spec.dtypes_derivative:
        x = smooth_x(op, rng, (4, 6), dtype)
        for reverse, inclusive in FLAGS:
            sa.check_grads(op, x, order=2, axis=1, reverse=reverse, inclusive=inclusive)
            sa.check_grads(op, x, order=2, axis=0, reverse=reverse, inclusive=inclusive,
                           cu_seqlens=[0, 1, 4])


@pytest.mark.quick
@pytest.mark.parametrize("op", ALL_OPS)
def test_chunk_and_linear_ops_have_zero_hessian(op: str) -> None:
    spec = sa.OPS[op]
    if not spec.linear:
        pytest.skip("nonlinear op")
    rng = np.random.default_rng(5)
    x = rand(rng, (1, 10, 3))
    kw: Dict[str, Any] = {"chunk_size": 4} if op == "chunk_local_cumsum" else {}
    if spec.rule != "chunk":
        kw = {"axis": 1}
    g, gd = rand(rng, x.shape), rand(rng, x.shape)
    xb, xbd = sa.vjp_jvp(op, x, g, rand(rng, x.shape), gd, **kw)
    pb = sa.vjp(op, x, **kw)[1]
    np.testing.assert_array_equal(xb, pb(g))
    np.testing.assert_array_equal(xbd, pb(gd))
    assert not np.any(sa.hvp(op, x, rand(rng, x.shape), g, **kw))


@pytest.mark.quick
@pytest.mark.parametrize("op", SCANS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_hvp_is_the_fused_kernels_x_bar_dot(op: str, dtype: Any) -> None:
    """hvp takes a shortcut where the second-order term is zero (no kernel
    run): it must equal what the fused kernel computes, NaN and inf included."""
    spec = sa.OPS[op]
    if np.dtype(dtype).name not in spec.dtypes_derivative:
        pytest.skip("no complex derivative")
    rng = np.random.default_rng(11)
    x, t, g = (rand(rng, (5, 9), dtype) for _ in range(3))
    x[1, 2], x[3, 0], t[2, 4], t[4, 7], g[0, 3] = np.nan, np.inf, np.nan, -np.inf, np.inf
    x[2, :3] = x[2, 3]  # ties
    for reverse, inclusive in FLAGS:
        for layout in ({"axis": 1}, {"axis": 0, "cu_seqlens": [0, 2, 2, 5]},
                       {"axis": 0, "chunk_size": 2}):
            kw = {**layout, "reverse": reverse, "inclusive": inclusive}
            want = sa.vjp_jvp(op, x, g, t, **kw)[1]
            got = sa.hvp(op, x, t, g, **kw)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
    if spec.shape != "curved":
        assert not np.any(sa.hvp(op, x, t, g, axis=1))


@pytest.mark.quick
@pytest.mark.parametrize("op", SCANS)
def test_hvp_checks_its_arguments_without_a_kernel_run(op: str) -> None:
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match="cu_seqlens"):
        sa.hvp(op, x, x, x, axis=0, cu_seqlens=[0, 2])
    with pytest.raises(ValueError, match="chunk_size"):
        sa.hvp(op, x, x, x, axis=0, chunk_size=0)
    with pytest.raises(ValueError, match="axis"):
        sa.hvp(op, x, x, x, axis=2)
    with pytest.raises(ValueError, match="the cotangent g"):
        sa.hvp(op, x, x, np.ones(3), axis=0)
    with pytest.raises(ValueError, match="the tangent t"):
        sa.hvp(op, x, np.ones(2), x, axis=0)
    index = next(row[0] for row in sa._scanad.ops() if row[1] == op)
    assert sa._scanad.vjp_jvp(index, x, x, x, None, 0, False, True, None, None, False)[0] is None
    if "complex128" not in sa.OPS[op].dtypes_derivative:
        with pytest.raises(TypeError, match=op):
            sa.hvp(op, x + 1j, x + 1j, x + 1j, axis=0)


# ---------------------------------------------------------------- edges

@pytest.mark.quick
@pytest.mark.parametrize("reverse,inclusive", FLAGS)
@pytest.mark.parametrize("zeros", [[0, 1], [0, 5], [2, 3], [5, 6], [0, 3, 6], [1, 2, 3],
                                   [0, 1, 2, 3, 4, 5, 6]])
def test_cumprod_with_several_zeros_is_exact(zeros: List[int], reverse: bool,
                                             inclusive: bool) -> None:
    """Two or more zeros (first, last, adjacent): the closed forms are
    products without division, so the answer is exact in small integers."""
    x = np.array([2.0, -3.0, 0.5, 4.0, -1.0, 1.5, 3.0])
    x[zeros] = 0.0
    t = np.array([1.0, 2.0, -1.0, 0.5, 3.0, -2.0, 1.0])
    g = np.array([1.0, -1.0, 2.0, 0.0, 1.0, 0.5, -2.0])
    gd = np.array([0.5, 1.0, 0.0, -1.0, 2.0, 1.0, 1.0])
    kw = {"reverse": reverse, "inclusive": inclusive}
    want_xb, want_xbd = oracle_line("cumprod", x, t, g, gd, prefix_sets(7, reverse, inclusive))
    for axis_layout in ("line", "panel"):
        if axis_layout == "line":
            xb, xbd = sa.vjp_jvp(sa.cumprod, x, g, t, gd, **kw)
        else:
            rep = [np.repeat(a[:, None], 5, axis=1) for a in (x, g, t, gd)]
            xb, xbd = (a[:, 2] for a in sa.vjp_jvp(sa.cumprod, *rep, axis=0, **kw))
        # dyadic values: every product and sum here is exact in float64
        np.testing.assert_array_equal(xb, want_xb)
        np.testing.assert_array_equal(xbd, want_xbd)
        assert np.all(np.isfinite(xbd))


LINE_LAYOUTS: List[Dict[str, Any]] = [
    {},
    {"chunk_size": 17},
    {"cu_seqlens": np.array([0, 18, 18, 24])},
    {"cu_seqlens": np.array([0, 16, 24]), "chunk_size": 16},
]


@pytest.mark.quick
@pytest.mark.parametrize("op", ["cumprod", "logcumsumexp"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reverse,inclusive", FLAGS)
@pytest.mark.parametrize("layout", range(len(LINE_LAYOUTS)))
def test_single_lines_against_oracle(op: str, dtype: Any, reverse: bool, inclusive: bool,
                                     layout: int) -> None:
    """A line (or segment) of 16 elements or more takes the line kernels
    (cumprod: the JVP's pass, then the walk back; logcumsumexp: the tiled
    walk); cumprod with zeros first, last, adjacent and at a segment's end."""
    rng = np.random.default_rng(layout * 4 + reverse * 2 + inclusive)
    n = 24
    x = smooth_x(op, rng, (n,))
    if op == "cumprod":
        x[[0, 1, 9, 10, 11, 17, 23]] = 0.0
    x, t, g, gd = (a.astype(dtype) for a in (x, rand(rng, (n,)), rand(rng, (n,)),
                                             rand(rng, (n,))))
    kw = {"reverse": reverse, "inclusive": inclusive, **LINE_LAYOUTS[layout]}
    wide = [a.astype(np.float64) for a in (x, t, g, gd)]
    want_xb, want_xbd = oracle(op, *wide, 0, **kw)
    want_h = oracle(op, *wide[:3], np.zeros(n), 0, **kw)[1]
    xb, xbd = sa.vjp_jvp(op, x, g, t, gd, **kw)
    h = sa.hvp(op, x, t, g, **kw)
    # float64: a few ulp per step of the line; float32 rounds the parked E / y
    # and the outputs to float32 (2e-6 of the largest: a few float32 ulp)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for got, want in ((xb, want_xb), (xbd, want_xbd), (h, want_h)):
        assert got.dtype == dtype
        scale = max(1.0, np.max(np.abs(want)))
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol * scale)


@pytest.mark.quick
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cumprod_long_line_with_zeros(dtype: Any) -> None:
    """Lines long enough for the float32 JVP's tiles (256 elements), two
    adjacent zeros inside, against the central difference of the exact
    float64 pullback."""
    rng = np.random.default_rng(14)
    n = 1500
    x = np.where(rng.random(n) < 0.5, 1.0, -1.0) * np.exp(rng.standard_normal(n) * 1e-3)
    x[[700, 701]] = 0.0
    x, t, g, gd = (a.astype(dtype) for a in (x, rand(rng, (n,)), rand(rng, (n,)),
                                             rand(rng, (n,))))
    wide = [a.astype(np.float64) for a in (x, t, g, gd)]
    for kw in ({"inclusive": True}, {"inclusive": False, "reverse": True},
               {"chunk_size": 600}):
        xb, xbd = sa.vjp_jvp(sa.cumprod, x, g, t, gd, **kw)
        want = pullback_fd("cumprod", *wide, **kw)
        assert np.all(np.isfinite(xbd))
        # float64: h = 1e-6 leaves ~1e-9 of the largest; float32: the parked
        # E and the outputs rounded to float32, 2e-6 of the largest
        tol = 1e-6 if dtype == np.float64 else 2e-6
        scale = max(1.0, np.max(np.abs(want)))
        np.testing.assert_allclose(xbd.astype(np.float64), want, rtol=tol, atol=tol * scale)


def cumprod_walk(x: np.ndarray, t: np.ndarray, g: np.ndarray, gd: np.ndarray, reverse: bool,
                 inclusive: bool) -> Tuple[np.ndarray, np.ndarray]:
    """cumprod's vjp_jvp one element at a time in float64, as docs/derivatives.md
    writes it: E, E_dot forwards, then R, R_dot backwards (no division)."""
    x, t, g, gd = (np.asarray(a, np.float64)[::-1] if reverse else np.asarray(a, np.float64)
                   for a in (x, t, g, gd))
    n = len(x)
    E, Ed = np.empty(n), np.empty(n)
    xb, xbd = np.zeros(n), np.zeros(n)
    P, D = 1.0, 0.0
    R, Rd = 0.0, 0.0
    with np.errstate(all="ignore"):
        for i in range(n):
            E[i], Ed[i] = P, D
            P, D = P * x[i], D * x[i] + P * t[i]
        # exclusive: no output depends on the last x, whose entries stay 0
        for i in range(n - 1 if inclusive else n - 2, -1, -1):
            if inclusive:
                a, ad = (x[i + 1], t[i + 1]) if i + 1 < n else (0.0, 0.0)
                gi, gdi = g[i], gd[i]
            else:
                a, ad, gi, gdi = x[i + 1], t[i + 1], g[i + 1], gd[i + 1]
            R, Rd = gi + a * R, (gdi + ad * R) + a * Rd
            xb[i], xbd[i] = E[i] * R, Ed[i] * R + E[i] * Rd
    return (xb[::-1], xbd[::-1]) if reverse else (xb, xbd)


def assert_same_walk(got: np.ndarray, want: np.ndarray, tol: float) -> None:
    """The same infinities and NaNs in the same places, the finite values
    within tol of each other and of the largest."""
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[np.isinf(got)], want[np.isinf(want)])
    fin = np.isfinite(want)
    scale = max(1.0, np.max(np.abs(want[fin]), initial=0.0))
    np.testing.assert_allclose(got[fin], want[fin], rtol=tol, atol=tol * scale)


NON_FINITE = [None, ("x", 3, np.inf), ("x", -2, np.nan), ("x", 9, -np.inf), ("t", 5, np.inf),
              ("g", -4, np.inf), ("g", 12, np.nan), ("gd", 7, -np.inf), ("x0", 10, np.inf)]


@pytest.mark.quick
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [16, 17, 18, 19, 37, 130])
@pytest.mark.parametrize("reverse,inclusive", FLAGS)
@pytest.mark.parametrize("case", range(len(NON_FINITE)))
def test_cumprod_line_walk_against_one_at_a_time(dtype: Any, n: int, reverse: bool,
                                                 inclusive: bool, case: int) -> None:
    """Lines of 16 or more walk back four elements a step; the same values as
    one element at a time and, with inf or NaN in any operand (x0: a zero
    beside an inf), the same infinities and NaNs in the same places."""
    rng = np.random.default_rng(n * 40 + case * 4 + reverse * 2 + inclusive)
    ops = {"x": np.where(rng.random(n) < 0.5, 1.0, -1.0) * np.exp(rng.standard_normal(n) * 0.3),
           "t": rand(rng, (n,)), "g": rand(rng, (n,)), "gd": rand(rng, (n,))}
    ops["x"][[1, 6]] = 0.0
    if NON_FINITE[case] is not None:
        name, at, value = NON_FINITE[case]
        if name == "x0":
            ops["x"][at - 1], name = 0.0, "x"
        ops[name][at] = value
    ops = {k: v.astype(dtype) for k, v in ops.items()}
    kw = {"reverse": reverse, "inclusive": inclusive}
    got = sa.vjp_jvp(sa.cumprod, ops["x"], ops["g"], ops["t"], ops["gd"], **kw)
    want = cumprod_walk(ops["x"], ops["t"], ops["g"], ops["gd"], **kw)
    # float32: E and the outputs rounded to float32, 2e-6 of the largest;
    # float64: a few ulp of the largest term per step
    tol = 2e-6 if dtype == np.float32 else 1e-13
    for a, b in zip(got, want):
        assert a.dtype == dtype
        assert_same_walk(a, b, tol)


@pytest.mark.quick
@pytest.mark.parametrize("reverse,inclusive", FLAGS)
@pytest.mark.parametrize("top", [False, True])
def test_cumprod_float64_wild_factors_walk_one_at_a_time(reverse: bool, inclusive: bool,
                                                         top: bool) -> None:
    """float64 factors beyond 2^+-32 send the walk one element at a time.  Four
    factors from x[at] (1e-160 1e-155 1e150 1e150 inside the line; the last
    four 1 1e300 1e-160 1e-155 with g = 1e100 last), the operands beside them
    0, make the result at at - 1 a product of them and the state above:
    grouped by pairs, a pair's 1e-315 is subnormal and keeps 27 bits (at the
    top, inclusive; exclusive drops the last state)."""
    rng = np.random.default_rng(top * 4 + reverse * 2 + inclusive)
    n = 70
    x = np.exp(rng.standard_normal(n) * 0.3)
    t, g, gd = (rand(rng, (n,)) for _ in range(3))
    at = n - 4 if top else 40
    x[at:at + 4] = [1.0, 1e300, 1e-160, 1e-155] if top else [1e-160, 1e-155, 1e150, 1e150]
    t[at:at + 4] = 0.0
    g[at - 1:min(at + 4, n - 1)] = 0.0
    gd[at - 1:min(at + 4, n - 1)] = 0.0
    if top:
        g[n - 1] = 1e100
    if reverse:  # the same walk from the other end
        x, t, g, gd = (a[::-1].copy() for a in (x, t, g, gd))
    kw = {"reverse": reverse, "inclusive": inclusive}
    got = sa.vjp_jvp(sa.cumprod, x, g, t, gd, **kw)
    want = cumprod_walk(x, t, g, gd, **kw)
    k = n - at if reverse else at - 1
    for a, b in zip(got, want):
        assert abs(b[k]) > 0.0
        # no sum at element at - 1 (its operands are 0): products only, a few ulp
        np.testing.assert_allclose(a[k], b[k], rtol=1e-13, atol=0.0)
        assert_same_walk(a, b, 1e-13)


def _lse_standin(x: np.ndarray, big: float = 60.0) -> np.ndarray:
    """Finite stand-ins for infinite entries, tied values moving together:
    docs/derivatives.md's limit.  exp(-60) ~ 1e-26 leaves the result within 1e-24."""
    return np.where(x == -np.inf, -big, np.where(x == np.inf, big, x))


LSE_EDGES = [
    [-np.inf, 0.0, 1.0, -0.5],
    [-np.inf, -np.inf, 0.0, 2.0],
    [-np.inf, -np.inf, -np.inf, -np.inf],
    [0.5, -np.inf, 1.0, 2.0],
    [np.inf, 0.0, 1.0, np.inf],
    [0.0, np.inf, np.inf, 1.0],
    [1e4, -1e4, 0.0, 1e4],
    [-1e4, -1e4, 3.0, -1e4],
]


@pytest.mark.quick
@pytest.mark.parametrize("xs", LSE_EDGES)
@pytest.mark.parametrize("reverse,inclusive", FLAGS)
@pytest.mark.parametrize("layout", ["line", "panel"])
def test_logcumsumexp_edges_are_the_tied_limit(xs: List[float], reverse: bool, inclusive: bool,
                                               layout: str) -> None:
    x = np.array(xs)
    t = np.array([1.0, -2.0, 0.5, 3.0])
    g = np.array([1.0, 0.0, 2.0, 0.0])  # exact zeros in g
    gd = np.array([0.0, 1.0, -1.0, 0.5])
    kw = {"reverse": reverse, "inclusive": inclusive}
    sets = prefix_sets(4, reverse, inclusive)
    want_xb, want_xbd = oracle_line("logcumsumexp", _lse_standin(x), t, g, gd, sets)
    if layout == "line":
        xb, xbd = sa.vjp_jvp(sa.logcumsumexp, x, g, t, gd, **kw)
    else:
        rep = [np.repeat(a[:, None], 3, axis=1) for a in (x, g, t, gd)]
        xb, xbd = (a[:, 1] for a in sa.vjp_jvp(sa.logcumsumexp, *rep, axis=0, **kw))
    assert np.all(np.isfinite(xb)) and np.all(np.isfinite(xbd))
    # the weights exp(x_i - y_j) carry the rounding of x_i - y_j, up to
    # ulp(max |x|) absolute (1.8e-12 at 1e4), in both the kernel and the oracle
    tol = max(1e-13, 4 * float(np.spacing(np.max(np.abs(_lse_standin(x))))))
    np.testing.assert_allclose(xb, want_xb, rtol=tol, atol=tol)
    np.testing.assert_allclose(xbd, want_xbd, rtol=tol, atol=tol)


@pytest.mark.quick
def test_logcumsumexp_nan_propagates() -> None:
    x = np.array([0.0, np.nan, 1.0])
    xb, xbd = sa.vjp_jvp(sa.logcumsumexp, x, np.ones(3), np.ones(3))
    assert np.isnan(xbd[1])
    xb, xbd = sa.vjp_jvp(sa.logcumsumexp, np.zeros(3), np.ones(3), np.array([0.0, np.nan, 0.0]))
    assert np.isnan(xbd[:2]).all()


@pytest.mark.quick
@pytest.mark.parametrize("op", ["cummax", "cummin"])
def test_cummax_ties_and_nan_keep_the_first_order_owner(op: str) -> None:
    x = np.array([1.0, 3.0, 3.0, 2.0, np.nan, 5.0, np.nan, -0.0, 0.0])
    x = x if op == "cummax" else -x
    rng = np.random.default_rng(2)
    g, gd, t = rand(rng, x.shape), rand(rng, x.shape), rand(rng, x.shape)
    for reverse, inclusive in FLAGS:
        kw = {"reverse": reverse, "inclusive": inclusive}
        pb = sa.vjp(op, x, **kw)[1]
        xb, xbd = sa.vjp_jvp(op, x, g, t, gd, **kw)
        np.testing.assert_array_equal(xb, pb(g))
        np.testing.assert_array_equal(xbd, pb(gd))
        assert not np.any(sa.hvp(op, x, t, g, **kw))


# ---------------------------------------------------------------- complex

@pytest.mark.quick
@pytest.mark.parametrize("op", ["cumsum", "cumprod", "logcumsumexp"])
@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
@pytest.mark.parametrize("reverse,inclusive", FLAGS)
def test_complex_against_central_differences(op: str, dtype: Any, reverse: bool,
                                             inclusive: bool) -> None:
    """Conjugate-linear in t: the finite difference along x + e t of the
    exact pullback J^H g (docs/derivatives.md), lines and panels."""
    rng = np.random.default_rng(9)
    x = smooth_x(op, rng, (5, 6), dtype)
    t, g, gd = rand(rng, x.shape, dtype), rand(rng, x.shape, dtype), rand(rng, x.shape, dtype)
    for axis in (0, 1):
        kw = {"axis": axis, "reverse": reverse, "inclusive": inclusive}
        xb, xbd = sa.vjp_jvp(op, x, g, t, gd, **kw)
        want = pullback_fd(op, *(a.astype(np.complex128) for a in (x, t, g, gd)), **kw)
        # complex64 results are rounded to single precision: 2e-6 of the largest
        tol = 1e-8 if dtype == np.complex128 else 2e-6
        scale = max(1.0, np.max(np.abs(want)))
        np.testing.assert_allclose(xbd, want, rtol=tol, atol=tol * scale)
        assert xbd.dtype == dtype and xb.dtype == dtype


@pytest.mark.quick
def test_complex_is_conjugate_linear_in_t() -> None:
    rng = np.random.default_rng(4)
    x, t, g = (rand(rng, (7,), np.complex128) for _ in range(3))
    a = 0.3 - 1.7j
    h1 = sa.hvp(sa.logcumsumexp, x, a * t, g)
    h2 = np.conj(a) * sa.hvp(sa.logcumsumexp, x, t, g)
    np.testing.assert_allclose(h1, h2, rtol=1e-13, atol=1e-13)


@pytest.mark.quick
def test_real_x_with_complex_cotangent_splits() -> None:
    rng = np.random.default_rng(6)
    x, t = rand(rng, (6,)), rand(rng, (6,))
    g, gd = rand(rng, (6,), np.complex128), rand(rng, (6,), np.complex128)
    xb, xbd = sa.vjp_jvp(sa.logcumsumexp, x, g, t, gd)
    re = sa.vjp_jvp(sa.logcumsumexp, x, g.real, t, gd.real)
    im = sa.vjp_jvp(sa.logcumsumexp, x, g.imag, t, gd.imag)
    np.testing.assert_allclose(xbd, re[1] + 1j * im[1], rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(xb, re[0] + 1j * im[0], rtol=1e-15, atol=1e-15)


# ---------------------------------------------------------------- symmetry

@pytest.mark.quick
@pytest.mark.parametrize("op", SCANS)
@pytest.mark.parametrize("reverse,inclusive", FLAGS)
def test_hessian_symmetry(op: str, reverse: bool, inclusive: bool) -> None:
    """For real x: <s, H t> == <H s, t> (H is a Hessian)."""
    rng = np.random.default_rng(8)
    x = smooth_x(op, rng, (6, 5))
    s, t, g = rand(rng, x.shape), rand(rng, x.shape), rand(rng, x.shape)
    kw = {"axis": 0, "reverse": reverse, "inclusive": inclusive, "cu_seqlens": [0, 2, 6]}
    lhs = np.vdot(s, sa.hvp(op, x, t, g, **kw))
    rhs = np.vdot(sa.hvp(op, x, s, g, **kw), t)
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


# ---------------------------------------------------------------- dtypes

@pytest.mark.quick
@pytest.mark.parametrize("op", SCANS)
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float16, 4e-3)])
def test_narrow_dtypes_follow_float64(op: str, dtype: Any, tol: float) -> None:
    """float32 accumulates in float64 and rounds the parked E / y and the
    outputs to float32 (2e-6 of the largest: a few float32 ulp); float16
    rounds them to 11 bits (4e-3)."""
    rng = np.random.default_rng(12)
    x = smooth_x(op, rng, (6, 300)).astype(dtype)
    t, g, gd = (rand(rng, x.shape).astype(dtype) for _ in range(3))
    for axis in (0, 1):
        xb, xbd = sa.vjp_jvp(op, x, g, t, gd, axis=axis, inclusive=False)
        w = sa.vjp_jvp(op, *(a.astype(np.float64) for a in (x, g, t, gd)), axis=axis,
                       inclusive=False)
        assert xb.dtype == dtype and xbd.dtype == dtype
        for got, want in zip((xb, xbd), w):
            scale = max(1.0, np.max(np.abs(want)))
            np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol * scale)


# ---------------------------------------------------------------- API

@pytest.mark.quick
def test_axis_none_flattens_and_shapes_come_back() -> None:
    rng = np.random.default_rng(1)
    x, t = rand(rng, (3, 4)), rand(rng, (3, 4))
    g = rand(rng, (12,))
    xb, xbd = sa.vjp_jvp(sa.logcumsumexp, x, g, t)
    assert xb.shape == (3, 4) and xbd.shape == (3, 4)
    xb1, xbd1 = sa.vjp_jvp(sa.logcumsumexp, x.ravel(), g, t.ravel())
    np.testing.assert_array_equal(xbd.ravel(), xbd1)
    h = sa.hvp(sa.cumprod, x, t)  # default cotangent: ones of the flat output
    assert h.shape == (3, 4)


@pytest.mark.quick
def test_bad_arguments_name_themselves() -> None:
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match="the tangent t"):
        sa.vjp_jvp(sa.cumsum, x, x, np.ones(3), axis=0)
    with pytest.raises(ValueError, match="the cotangent g"):
        sa.vjp_jvp(sa.cumsum, x, np.ones(3), x, axis=0)
    with pytest.raises(ValueError, match="g_dot"):
        sa.vjp_jvp(sa.cumsum, x, x, x, np.ones(2), axis=0)
    with pytest.raises(TypeError, match="floating or complex"):
        sa.vjp_jvp(sa.cumsum, np.arange(3), np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match="tangent t of a real x"):
        sa.vjp_jvp(sa.cumsum, np.ones(3), np.ones(3), np.ones(3) * 1j)
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        sa.check_grads(sa.cumsum, np.ones(3), order=3)
    C = sa._scanad
    with pytest.raises(ValueError, match="the cotangent's tangent g_dot must have shape"):
        C.vjp_jvp(0, x, x, x, np.ones(5), 0, False, True, None, None)
    with pytest.raises(ValueError, match="the tangent t must have shape"):
        C.vjp_jvp(0, x, np.ones(2), x, None, 0, False, True, None, None)
    with pytest.raises(TypeError, match="the cotangent g of dtype complex128 cannot be cast"):
        C.vjp_jvp(0, x, x, x + 1j, None, 0, False, True, None, None)
    with pytest.raises(TypeError, match="cummax"):
        C.vjp_jvp(2, x + 1j, x + 1j, x + 1j, None, 0, False, True, None, None)
    with pytest.raises(TypeError, match="10 or 11 positional"):
        C.vjp_jvp(0, x, x, x)
    with pytest.raises(ValueError, match="cu_seqlens"):
        C.vjp_jvp(0, x, x, x, None, 0, False, True, [0, 2], None)


# ---------------------------------------------------------------- hypothesis

@pytest.mark.quick
@settings(max_examples=60, deadline=None)
@given(
    op=st.sampled_from(SCANS),
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
    axis_seed=st.integers(0, 10),
    reverse=st.booleans(),
    inclusive=st.booleans(),
    step=st.sampled_from([1, 2, -1]),
    dtype=st.sampled_from(["float64", "float32", "complex128"]),
    chunk=st.sampled_from([None, 1, 2, 5]),
    seed=st.integers(0, 2**31),
)
def test_hypothesis_against_pullback_differences(op: str, shape: Tuple[int, ...], axis_seed: int,
                                                 reverse: bool, inclusive: bool, step: int,
                                                 dtype: str, chunk: Optional[int],
                                                 seed: int) -> None:
    if op in ("cummax", "cummin") and dtype == "complex128":
        dtype = "float64"
    rng = np.random.default_rng(seed)
    axis = axis_seed % len(shape)
    big = tuple(s * abs(step) for s in shape)
    sl = tuple(slice(None, None, step) for _ in shape)
    x = smooth_x(op, rng, big, dtype)[sl]
    t, g, gd = (rand(rng, big, dtype)[sl] for _ in range(3))
    kw = {"axis": axis, "reverse": reverse, "inclusive": inclusive, "chunk_size": chunk}
    xb, xbd = sa.vjp_jvp(op, x, g, t, gd, **kw)
    wide = np.complex128 if dtype.startswith("complex") else np.float64
    want = pullback_fd(op, *(a.astype(wide) for a in (x, t, g, gd)), **kw)
    want_xb = sa.vjp(op, x.astype(wide), **kw)[1](g.astype(wide))
    # float32 outputs: a few ulp of the largest term; float64: the central
    # difference's ~1e-9 relative error
    tol = 2e-5 if dtype == "float32" else 1e-7
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(xbd, want, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(xb, want_xb, rtol=tol, atol=tol * scale)


# ---------------------------------------------------------------- threads

@pytest.mark.quick
@pytest.mark.parametrize("op", SCANS)
def test_threads_do_not_change_results(op: str) -> None:
    rng = np.random.default_rng(13)
    x = smooth_x(op, rng, (64, 3000))
    t, g, gd = rand(rng, x.shape), rand(rng, x.shape), rand(rng, x.shape)
    before = sa.get_num_threads()
    try:
        out = []
        for n in (1, 2):
            sa.set_num_threads(n)
            out.append([sa.vjp_jvp(op, x, g, t, gd, axis=a) for a in (0, 1)])
    finally:
        sa.set_num_threads(before)
    for a in range(2):
        np.testing.assert_array_equal(out[0][a][0], out[1][a][0])
        np.testing.assert_array_equal(out[0][a][1], out[1][a][1])


# ---------------------------------------------------------------- torch

torch = pytest.importorskip("torch")

TORCH_OPS = {
    "cumsum": lambda x, dim: torch.cumsum(x, dim),
    "cumprod": lambda x, dim: torch.cumprod(x, dim),
    "cummax": lambda x, dim: torch.cummax(x, dim).values,
    "cummin": lambda x, dim: torch.cummin(x, dim).values,
    "logcumsumexp": lambda x, dim: torch.logcumsumexp(x, dim),
}


def torch_vjp_jvp(op: str, x: np.ndarray, g: np.ndarray, t: np.ndarray, gd: np.ndarray,
                  dim: int) -> Tuple[np.ndarray, np.ndarray]:
    """Double backward: x_bar = grad(y, x, g, create_graph), then the
    gradient of <t, x_bar> w.r.t. x (H t, H symmetric) and w.r.t. g (J t,
    whose adjoint gives J^T g_dot through <g_dot, J t>)."""
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(g, requires_grad=True)
    y = TORCH_OPS[op](xt, dim)
    (xb,) = torch.autograd.grad(y, xt, gt, create_graph=True)
    hx, = torch.autograd.grad(xb, xt, torch.tensor(t), retain_graph=True, allow_unused=True)
    hx = torch.zeros_like(xt) if hx is None else hx
    # J^T g_dot: the first-order VJP again (torch's graph w.r.t. g is J)
    (jt_gd,) = torch.autograd.grad(y, xt, torch.tensor(gd), retain_graph=True)
    return xb.detach().numpy(), (hx + jt_gd).detach().numpy()


@pytest.mark.quick
@pytest.mark.parametrize("op", SCANS)
@pytest.mark.parametrize("dim", [0, 1])
def test_against_torch_double_backward(op: str, dim: int) -> None:
    rng = np.random.default_rng(21)
    x = smooth_x(op, rng, (7, 9))
    g, t, gd = rand(rng, x.shape), rand(rng, x.shape), rand(rng, x.shape)
    want_xb, want_xbd = torch_vjp_jvp(op, x, g, t, gd, dim)
    xb, xbd = sa.vjp_jvp(op, x, g, t, gd, axis=dim)
    np.testing.assert_allclose(xb, want_xb, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xbd, want_xbd, rtol=1e-11, atol=1e-11)
    # torch.autograd.functional.hvp of <g, op(x)>; for logcumsumexp it is
    # NaN everywhere (test_where_torch_is_wrong_functional_hvp)
    if op != "logcumsumexp":
        f = lambda xx: (TORCH_OPS[op](xx, dim) * torch.tensor(g)).sum()  # noqa: E731
        _, hv = torch.autograd.functional.hvp(f, torch.tensor(x), torch.tensor(t))
        np.testing.assert_allclose(sa.hvp(op, x, t, g, axis=dim), hv.numpy(), rtol=1e-11,
                                   atol=1e-11)


@pytest.mark.quick
def test_where_torch_is_wrong_functional_hvp() -> None:
    """torch.autograd.functional.hvp differentiates the backward at a zero
    cotangent (its double-backward trick), where torch's logcumsumexp
    backward is NaN: every entry of its HVP is NaN.  scanad's is the dense
    oracle's."""
    rng = np.random.default_rng(22)
    x, t, g = rand(rng, (6,)), rand(rng, (6,)), rand(rng, (6,))
    f = lambda xx: (torch.logcumsumexp(xx, 0) * torch.tensor(g)).sum()  # noqa: E731
    _, hv = torch.autograd.functional.hvp(f, torch.tensor(x), torch.tensor(t))
    assert np.isnan(hv.numpy()).all()  # what torch 2.13 gives
    want = oracle_line("logcumsumexp", x, t, g, np.zeros(6), prefix_sets(6, False, True))[1]
    np.testing.assert_allclose(sa.hvp(sa.logcumsumexp, x, t, g), want, **TOL64)


@pytest.mark.quick
def test_where_torch_is_wrong_neg_inf_prefix() -> None:
    """torch's Hessian of logcumsumexp is NaN at a -inf prefix; the truth is
    the limit over tied finite stand-ins, finite."""
    x = np.array([-np.inf, -np.inf, 0.0, 1.0])
    t = np.array([1.0, 2.0, -1.0, 0.5])
    g = np.ones(4)
    f = lambda xx: torch.logcumsumexp(xx, 0).sum()  # noqa: E731
    _, hv_torch = torch.autograd.functional.hvp(f, torch.tensor(x), torch.tensor(t))
    assert np.isnan(hv_torch.numpy()).any()  # what torch 2.13 gives
    want = oracle_line("logcumsumexp", _lse_standin(x), t, g, np.zeros(4), prefix_sets(4, False,
                                                                                         True))[1]
    got = sa.hvp(sa.logcumsumexp, x, t, g)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)


@pytest.mark.quick
def test_where_torch_is_wrong_cotangent_with_zeros() -> None:
    """d(backward)/dg of logcumsumexp at g = [1, 0, 1], x = [.5, 1, 2]:
    grad(x_bar, g, ones) is J ones = ones (every row of p sums to 1); torch
    gives [1, nan, 1].  scanad's vjp_jvp with t = 0 and g_dot = e_k gives
    J^T e_k, so <ones, x_bar_dot> = (J ones)_k."""
    x = np.array([0.5, 1.0, 2.0])
    g = np.array([1.0, 0.0, 1.0])
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(g, requires_grad=True)
    (xb,) = torch.autograd.grad(torch.logcumsumexp(xt, 0), xt, gt, create_graph=True)
    (dg,) = torch.autograd.grad(xb, gt, torch.ones(3))
    assert np.isnan(dg.numpy()[1])  # what torch 2.13 gives
    got = np.array([sa.vjp_jvp(sa.logcumsumexp, x, g, np.zeros(3), np.eye(3)[k])[1].sum()
                    for k in range(3)])
    np.testing.assert_allclose(got, [1.0, 1.0, 1.0], rtol=1e-15, atol=1e-15)
