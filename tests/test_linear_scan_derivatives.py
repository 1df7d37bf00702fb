"""Derivatives of linear_scan over the primal tuple (a, b, h0): vjp, jvp, grad,
vjp_jvp, hvp and check_grads (docs/derivatives.md).

Oracles, independent of the kernels:
* the adjoint identity vdot(g, J t) == sum_k vdot(x_bar_k, t_k) (+ the final
  state's term), over every flag, layout and broadcast of a;
* torch autograd and torch.func.jvp of a plain Python loop h = a h + b;
* ``ref_derivatives`` below: the same loop in NumPy with its adjoint written
  out by hand (used for exact statements and for the size of the terms that
  set the float32/float16 tolerances);
* for the second order, central differences of the exact pullback, torch
  forward-over-reverse and the symmetry of the Hessian.
"""

from __future__ import annotations

import copy
import itertools
import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_linear_scan import _rand

import scanad as sa

OP = sa.linear_scan


def _seed(*parts: Any) -> int:
    """A per-case seed, stable across runs (hash() of a str is not)."""
    return zlib.crc32(repr(parts).encode())


# --------------------------------------------------------------------------------------
# pure-NumPy reference: forward, JVP and VJP of the loop, piece by piece
# --------------------------------------------------------------------------------------

def _pieces(s0: int, s1: int, chunk_size: Optional[int]) -> List[Tuple[int, int]]:
    if chunk_size is None:
        return [(s0, s1)] if s1 > s0 else []
    return [(c, min(c + chunk_size, s1)) for c in range(s0, s1, chunk_size)]


def _unbroadcast(x: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Sums x over the axes an array of ``shape`` was broadcast along."""
    while x.ndim > len(shape):
        x = x.sum(axis=0)
    for i, s in enumerate(shape):
        if s == 1 and x.shape[i] != 1:
            x = x.sum(axis=i, keepdims=True)
    return x


def ref_derivatives(a: Any, b: Any, h0: Any, *, tangents: Optional[Sequence[Any]] = None,
                    g: Any = None, g_final: Any = None, axis: Optional[int] = None,
                    reverse: bool = False, inclusive: bool = True, log_a: bool = False,
                    cu_seqlens: Any = None, chunk_size: Optional[int] = None
                    ) -> Dict[str, Any]:
    """h, h_final, their JVP along ``tangents`` and the adjoint (a_bar, b_bar,
    h0_bar) of (g, g_final), by the loop in float64/complex128.  The adjoint
    walks each piece backwards: lam is the cotangent of the state after a
    step, b_bar = lam, a_bar = lam conj(h_before) (times conj(a) for log_a),
    and conj(a) lam flows to the state before it; the state before a piece's
    first step is its h0 entry.  Real inputs get the real part."""
    parts = [np.asarray(v) for v in (a, b, h0) if v is not None]
    cplx = any(p.dtype.kind == "c" for p in parts)
    real_in = [v is None or np.asarray(v).dtype.kind != "c" for v in (a, b, h0)]
    wide = np.complex128 if cplx else np.float64
    a = np.asarray(a).astype(wide)
    b = np.asarray(b).astype(wide)
    A = np.exp(a) if log_a else a
    Af, Bf = np.broadcast_arrays(A, b)
    full = Bf.shape
    if tangents is None:
        tangents = (None, None, None)
    ta = np.zeros(np.shape(a), wide) if tangents[0] is None else np.asarray(tangents[0], wide)
    tb = np.zeros(np.shape(b), wide) if tangents[1] is None else np.asarray(tangents[1], wide)
    Ad = ta * A if log_a else ta
    Adf, Bdf = np.broadcast_to(Ad, full), np.broadcast_to(tb, full)
    ax = 0 if axis is None else axis % len(full)
    if axis is None:
        Af, Bf, Adf, Bdf = (v.reshape(-1) for v in (Af, Bf, Adf, Bdf))
    Am, Bm, Adm, Bdm = (np.moveaxis(v, ax, -1) for v in (Af, Bf, Adf, Bdf))
    n, rest = Bm.shape[-1], Bm.shape[:-1]
    segs = [0, n] if cu_seqlens is None else [int(v) for v in np.asarray(cu_seqlens)]
    nseg = len(segs) - 1
    lead = (nseg,) + tuple(rest) if cu_seqlens is not None else (1,) + tuple(rest)
    if h0 is None:
        H0 = np.zeros(lead, wide)
        H0d = np.zeros(lead, wide)
    else:
        h0 = np.asarray(h0).astype(wide)
        th0 = np.zeros(h0.shape, wide) if tangents[2] is None else np.asarray(tangents[2], wide)
        if cu_seqlens is None:
            H0, H0d = np.broadcast_to(h0, rest)[None], np.broadcast_to(th0, rest)[None]
        else:
            H0, H0d = np.broadcast_to(h0, lead), np.broadcast_to(th0, lead)
    G = None
    if g is not None:
        G = np.asarray(g, wide)
        G = np.moveaxis(G.reshape(-1) if axis is None else G, ax, -1)
    GF = None if g_final is None else np.asarray(g_final, wide).reshape(lead)
    Y = np.zeros(Bm.shape, wide)
    Yd = np.zeros(Bm.shape, wide)
    F = np.array(H0, dtype=wide)
    Fd = np.array(H0d, dtype=wide)
    Abar = np.zeros(Bm.shape, wide)
    Bbar = np.zeros(Bm.shape, wide)
    H0bar = np.zeros(lead, wide)
    for k in range(nseg):
        order = _pieces(segs[k], segs[k + 1], chunk_size)
        order = order[::-1] if reverse else order
        if not order and GF is not None:
            H0bar[k] += GF[k]  # an empty segment's final state is its h0
        for ci, (c0, c1) in enumerate(order):
            idx = list(range(c0, c1))[::-1] if reverse else list(range(c0, c1))
            S, Sd = H0[k], H0d[k]
            before = []
            for t in idx:
                before.append(S)
                nxt = np.where(Am[..., t] == 0, Bm[..., t], Am[..., t] * S + Bm[..., t])
                nd = Adm[..., t] * S + Am[..., t] * Sd + Bdm[..., t]
                Y[..., t] = nxt if inclusive else S
                Yd[..., t] = nd if inclusive else Sd
                S, Sd = nxt, nd
            last = ci == len(order) - 1
            if last:
                F[k], Fd[k] = S, Sd
            if G is None:
                continue
            lam_next = GF[k] if (last and GF is not None) else np.zeros(rest, wide)
            for p in range(len(idx) - 1, -1, -1):
                t = idx[p]
                lam = lam_next + G[..., t] if inclusive else lam_next
                Bbar[..., t] = lam
                Abar[..., t] = lam * np.conj(before[p])
                lam_next = np.conj(Am[..., t]) * lam
                if not inclusive:
                    lam_next = lam_next + G[..., t]
            H0bar[k] += lam_next
    out: Dict[str, Any] = {}

    def back(v: np.ndarray) -> np.ndarray:
        return np.moveaxis(v, -1, ax)

    out["h"], out["h_dot"] = back(Y), back(Yd)
    out["final"] = F if cu_seqlens is not None else F[0]
    out["final_dot"] = Fd if cu_seqlens is not None else Fd[0]
    if G is not None:
        abar = back(Abar).reshape(full)
        if log_a:
            abar = abar * np.conj(np.broadcast_to(A, full))
        bbar = back(Bbar).reshape(full)
        bars: List[Any] = [_unbroadcast(abar, np.shape(a)), _unbroadcast(bbar, np.shape(b))]
        if h0 is None:
            bars.append(None)
        else:
            hb = H0bar if cu_seqlens is not None else H0bar[0]
            bars.append(_unbroadcast(hb, np.shape(h0)))
        out["bars"] = [v.real if (v is not None and r) else v for v, r in zip(bars, real_in)]
    return out


# --------------------------------------------------------------------------------------
# cases: layouts x broadcast of a x flags
# --------------------------------------------------------------------------------------

# shape of b, scan axis, a per channel (None: no channel), h0's shape (None: no h0),
# cu_seqlens, chunk_size, and whether every operand is a negative-stride view
LAYOUTS: Dict[str, Dict[str, Any]] = {
    "1d": dict(shape=(7,), axis=None, channel=None, h0=()),
    "2d-flat": dict(shape=(3, 4), axis=None, channel=(4,), h0=None),
    "2d-axis0": dict(shape=(6, 3), axis=0, channel=(3,), h0=(3,)),
    "2d-axis1": dict(shape=(3, 6), axis=-1, channel=(3, 1), h0=(3,)),
    "3d-mid": dict(shape=(2, 5, 3), axis=1, channel=(3,), h0=(3,)),  # h0 broadcast on axis 0
    "3d-mid-noh0": dict(shape=(2, 5, 3), axis=-2, channel=(2, 1, 3), h0=None),
    "neg-stride": dict(shape=(6, 3), axis=0, channel=(3,), h0=(3,), view=True),
    "cu-empty": dict(shape=(7, 2), axis=0, channel=(2,), h0=(3, 2), cu=[0, 3, 3, 7]),
    "chunk": dict(shape=(8,), axis=0, channel=None, h0=(), chunk=3),
    "cu-chunk": dict(shape=(2, 9), axis=1, channel=(2, 1), h0=(4, 2), cu=[0, 4, 4, 4, 9],
                     chunk=2),
    "cu-leading-empty": dict(shape=(5,), axis=0, channel=None, h0=(3,), cu=[0, 0, 5, 5],
                             chunk=2),
}
BCASTS = ["scalar", "channel", "full"]
LAYOUT_BCAST = [(name, bc) for name, lay in LAYOUTS.items() for bc in BCASTS
                if not (bc == "channel" and lay["channel"] is None)]
FLAGS = list(itertools.product([False, True], repeat=4))  # reverse, inclusive, log_a, final


def _strided(x: np.ndarray) -> np.ndarray:
    """x's values as a view with negative, non-unit strides on every axis."""
    if x.ndim == 0:
        return x
    base = np.zeros(tuple(2 * s for s in x.shape), x.dtype)
    sl = tuple(slice(None, None, -2) for _ in x.shape)
    base[sl] = x
    v = base[sl]
    assert all(s < 0 for s in v.strides) and np.array_equal(v, x)
    return v


class Case:
    """Primals, tangents and cotangents for one layout, broadcast and flags."""

    def __init__(self, rng: np.random.Generator, layout: str, bcast: str, dtype: Any,
                 reverse: bool = False, inclusive: bool = True, log_a: bool = False,
                 return_final: bool = False, zeros_in_a: bool = False,
                 a_dtype: Any = None) -> None:
        lay = LAYOUTS[layout]
        dtype = np.dtype(dtype)
        a_dtype = dtype if a_dtype is None else np.dtype(a_dtype)
        shape = lay["shape"]
        a_shape = {"scalar": (), "channel": lay["channel"], "full": shape}[bcast]
        if log_a:
            # log-decays with |a| = exp(Re log_a) in (0.37, 1.35)
            a = _rand(rng, a_shape, a_dtype, -1.0, 0.3)
        else:
            a = _rand(rng, a_shape, a_dtype, -1.2, 1.2)
            if zeros_in_a and a.ndim:
                flat = a.reshape(-1)
                flat[rng.choice(flat.size, max(1, flat.size // 4), replace=False)] = 0
        self.a = a
        self.b = _rand(rng, shape, dtype)
        self.h0 = None if lay["h0"] is None else _rand(rng, lay["h0"], dtype)
        self.ta = _rand(rng, a_shape, a_dtype)
        self.tb = _rand(rng, shape, dtype)
        self.th0 = None if self.h0 is None else _rand(rng, lay["h0"], dtype)
        self.kw: Dict[str, Any] = dict(axis=lay["axis"], reverse=reverse, inclusive=inclusive,
                                       log_a=log_a, return_final=return_final)
        if "cu" in lay:
            self.kw["cu_seqlens"] = np.array(lay["cu"])
        if "chunk" in lay:
            self.kw["chunk_size"] = lay["chunk"]
        y = OP(self.a, self.b, h0=self.h0, **self.kw)
        h, hf = y if return_final else (y, None)
        self.g = _rand(rng, h.shape, dtype)
        self.g_final = None if hf is None else _rand(rng, hf.shape, dtype)
        if lay.get("view"):
            for name in ("a", "b", "h0", "ta", "tb", "th0", "g"):
                v = getattr(self, name)
                if v is not None:
                    setattr(self, name, _strided(v))

    @property
    def primals(self) -> Tuple[Any, Any, Any]:
        return (self.a, self.b, self.h0)

    @property
    def tangents(self) -> Tuple[Any, Any, Any]:
        return (self.ta, self.tb, self.th0)

    @property
    def cot(self) -> Any:
        return (self.g, self.g_final) if self.kw["return_final"] else self.g

    def ref(self, **over: Any) -> Dict[str, Any]:
        kw = {k: v for k, v in self.kw.items() if k != "return_final"}
        args = dict(tangents=self.tangents, g=self.g, g_final=self.g_final)
        args.update(over)
        return ref_derivatives(self.a, self.b, self.h0, **args, **kw)


def _vdot_sum(xs: Sequence[Any], ys: Sequence[Any]) -> Tuple[complex, float]:
    """sum_k vdot(x_k, y_k) over the non-None pairs, and sum |x_k| |y_k|
    (the size of the terms, which bounds the rounding of the sum)."""
    tot, mag = 0j, 0.0
    for x, y in zip(xs, ys):
        if x is None or y is None:
            continue
        x = np.asarray(x, np.complex128)
        y = np.asarray(y, np.complex128)
        tot += np.vdot(x, y)
        mag += float(np.sum(np.abs(x) * np.abs(y)))
    return tot, mag


def _split(y: Any, return_final: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    return (y[0], y[1]) if return_final else (y, None)


def _assert_near(got: Any, want: Any, tol: Any, what: str) -> None:
    got = np.asarray(got, np.complex128)
    want = np.asarray(want, np.complex128)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = np.abs(got - want)
    bad = ~(err <= tol)
    if np.any(bad):
        i = np.unravel_index(int(np.argmax(np.where(bad, err - tol, -np.inf))), err.shape)
        tt = np.broadcast_to(tol, err.shape)[i]
        raise AssertionError(f"{what}: {int(bad.sum())}/{err.size} entries off; worst at {i}: "
                             f"got {got[i]}, expected {want[i]}, |diff| {err[i]:.3g} > {tt:.3g}")


def _check_bar_types(bars: Sequence[Any], primals: Sequence[Any], rdtype: np.dtype) -> None:
    """Each cotangent has its primal's shape; a real primal's is real; a
    Python scalar's has the result dtype; h0 None gives None."""
    for name, bar, x in zip(("a_bar", "b_bar", "h0_bar"), bars, primals):
        if x is None:
            assert bar is None, name
            continue
        assert isinstance(bar, np.ndarray), (name, type(bar))
        assert bar.shape == np.shape(x), (name, bar.shape, np.shape(x))
        # a float input keeps its dtype (a real one's cotangent is the real
        # part); Python scalars and integer arrays get the result dtype
        want = x.dtype if isinstance(x, np.ndarray) and x.dtype.kind in "fc" else rdtype
        assert bar.dtype == want, (name, bar.dtype, want)


# --------------------------------------------------------------------------------------
# adjoint identity over (a, b, h0) jointly
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("reverse,inclusive,log_a,return_final", FLAGS)
@pytest.mark.parametrize("layout,bcast", LAYOUT_BCAST)
def test_adjoint_identity(layout: str, bcast: str, reverse: bool, inclusive: bool,
                          log_a: bool, return_final: bool, dtype: Any) -> None:
    rng = np.random.default_rng(_seed(layout, bcast, reverse, inclusive, log_a,
                                          return_final, str(dtype)))
    c = Case(rng, layout, bcast, dtype, reverse, inclusive, log_a, return_final)
    y, y_dot = sa.jvp(OP, c.primals, c.tangents, **c.kw)
    y2, pullback = sa.vjp(OP, c.primals, **c.kw)
    want = OP(c.a, c.b, h0=c.h0, **c.kw)
    # both primal outputs are the forward's, bit for bit (a float line's JVP runs the
    # forward's own line kernel for y)
    for got in (y, y2):
        for u, v in zip(_split(got, return_final), _split(want, return_final)):
            if v is not None:
                assert u.dtype == v.dtype
                np.testing.assert_array_equal(u, v)
    bars = pullback(c.cot)
    assert isinstance(bars, tuple) and len(bars) == 3
    _check_bar_types(bars, c.primals, np.dtype(dtype))
    h_dot, f_dot = _split(y_dot, return_final)
    lhs, mag_l = _vdot_sum([c.g, c.g_final], [h_dot, f_dot])
    rhs, mag_r = _vdot_sum(bars, c.tangents)
    # J t and J^H g round ~n u (lines of <= 12 steps) of terms of O(1) size and each
    # vdot ~k u (k <= 36 terms): ~60 u, times cancellation; measured <= 2 u
    assert abs(lhs - rhs) <= 1e-13 * (mag_l + mag_r), (lhs, rhs, mag_l + mag_r)


# --------------------------------------------------------------------------------------
# against torch autograd of the Python loop
# --------------------------------------------------------------------------------------

def torch_linear_scan(torch: Any, a: Any, b: Any, h0: Any, *, axis: Optional[int] = None,
                      reverse: bool = False, inclusive: bool = True, log_a: bool = False,
                      return_final: bool = False, cu_seqlens: Any = None,
                      chunk_size: Optional[int] = None) -> Any:
    """h = a h + b, one step at a time, in torch (differentiable everywhere,
    a = 0 included: 0 * h + b is b)."""
    A = torch.exp(a) if log_a else a
    A, B = torch.broadcast_tensors(A, b)
    if axis is None:
        A, B, ax = A.reshape(-1), B.reshape(-1), 0
    else:
        ax = axis % B.ndim
    Am, Bm = A.movedim(ax, -1), B.movedim(ax, -1)
    n, rest = Bm.shape[-1], tuple(Bm.shape[:-1])
    segs = [0, n] if cu_seqlens is None else [int(v) for v in cu_seqlens]
    nseg = len(segs) - 1
    lead = (nseg,) + rest if cu_seqlens is not None else (1,) + rest
    if h0 is None:
        H0 = torch.zeros(lead, dtype=B.dtype)
    elif cu_seqlens is None:
        H0 = h0.broadcast_to(rest)[None]
    else:
        H0 = h0.broadcast_to(lead)
    outs: List[Any] = [None] * n
    finals = []
    for k in range(nseg):
        order = _pieces(segs[k], segs[k + 1], chunk_size)
        fin = H0[k]
        for c0, c1 in (order[::-1] if reverse else order):
            S = H0[k]
            for t in (range(c1 - 1, c0 - 1, -1) if reverse else range(c0, c1)):
                nxt = Am[..., t] * S + Bm[..., t]
                outs[t] = nxt if inclusive else S
                S = nxt
            fin = S
        finals.append(fin)
    h = torch.stack(outs, -1).movedim(-1, ax)
    if not return_final:
        return h
    return h, (torch.stack(finals) if cu_seqlens is not None else finals[0])


def _tt(torch: Any, x: Any, grad: bool = False) -> Any:
    return torch.tensor(np.array(x), requires_grad=grad)  # a contiguous copy, 0-d kept


def _torch_derivatives(c: Case) -> Tuple[List[Any], Any]:
    """torch's (a_bar, b_bar, h0_bar) for c's cotangent and its jvp along c's tangents."""
    torch = pytest.importorskip("torch")
    kw = dict(c.kw)
    kw["cu_seqlens"] = None if kw.get("cu_seqlens") is None else list(kw["cu_seqlens"])
    rf = kw["return_final"]
    prim = [_tt(torch, v, True) for v in c.primals if v is not None]
    has_h0 = c.h0 is not None

    def f(*xs: Any) -> Any:
        return torch_linear_scan(torch, xs[0], xs[1], xs[2] if has_h0 else None, **kw)

    out = f(*prim)
    outs = list(out) if rf else [out]
    cots = [c.g, c.g_final] if rf else [c.g]
    grads = torch.autograd.grad(outs, prim, [_tt(torch, g) for g in cots], allow_unused=True)
    # an input the outputs do not depend on has a zero cotangent
    bars = [np.zeros(p.shape, p.detach().numpy().dtype) if gr is None else gr.numpy()
            for gr, p in zip(grads, prim)]
    bars = bars + [None] * (3 - len(bars))
    tans = tuple(_tt(torch, v) for v in c.tangents if v is not None)
    prim0 = tuple(p.detach() for p in prim)
    _, dots = torch.func.jvp(f, prim0, tans)
    dots = tuple(d.numpy() for d in dots) if rf else dots.numpy()
    return bars, dots


def test_torch_convention_is_the_conjugate_transpose() -> None:
    """Two steps, h = [b0, a1 b0 + b1] with a0 irrelevant (h0 = 0): d h1/d a1 = b0,
    so J^H g for a1 is conj(b0) g1 and for b0 it is g0 + conj(a1) g1.  torch's
    grad with grad_outputs=g must be that (then torch's gradients are J^H g),
    and so must scanad's pullback."""
    torch = pytest.importorskip("torch")
    a = np.array([0.5 + 0.25j, 1.0 - 2.0j])
    b = np.array([0.75 - 1.0j, 0.5 + 0.5j])
    g = np.array([1.0 + 0.5j, -0.25 + 2.0j])
    want_a = np.array([0.0, np.conj(b[0]) * g[1]])
    want_b = np.array([g[0] + np.conj(a[1]) * g[1], g[1]])
    ta, tb = _tt(torch, a, True), _tt(torch, b, True)
    h = torch_linear_scan(torch, ta, tb, None)
    ga, gb = torch.autograd.grad(h, (ta, tb), _tt(torch, g))
    _, pullback = sa.vjp(OP, (a, b, None))
    sa_a, sa_b, sa_h0 = pullback(g)
    assert sa_h0 is None
    # binary fractions: each entry is a product or a two-term sum, exact or one rounding
    for got_a, got_b in ((ga.numpy(), gb.numpy()), (sa_a, sa_b)):
        np.testing.assert_allclose(got_a, want_a, rtol=2**-52, atol=0)
        np.testing.assert_allclose(got_b, want_b, rtol=2**-52, atol=0)


_BCASTS_OF = {lay: [bc for ly, bc in LAYOUT_BCAST if ly == lay] for lay in LAYOUTS}
# every layout and flag combination; the broadcast of a cycles with the flags
TORCH_CASES = [(lay, _BCASTS_OF[lay][i % len(_BCASTS_OF[lay])], fl, dt)
               for lay in LAYOUTS for i, fl in enumerate(FLAGS)
               for dt in (np.float64, np.complex128)]


@pytest.mark.parametrize("layout,bcast,flags,dtype", TORCH_CASES)
def test_against_torch(layout: str, bcast: str, flags: Tuple[bool, ...], dtype: Any) -> None:
    reverse, inclusive, log_a, return_final = flags
    rng = np.random.default_rng(_seed(layout, bcast, flags, str(dtype)))
    # exact zeros in a full a (not log_a): the loop is differentiable there
    c = Case(rng, layout, bcast, dtype, reverse, inclusive, log_a, return_final,
             zeros_in_a=True)
    t_bars, t_dots = _torch_derivatives(c)
    _, pullback = sa.vjp(OP, c.primals, **c.kw)
    bars = pullback(c.cot)
    _, y_dot = sa.jvp(OP, c.primals, c.tangents, **c.kw)
    # lines of at most 9 steps of O(1) terms: the loop and the kernels differ by
    # a few roundings of terms of size <= max|want| (~1e3 ulp of slack)
    for name, got, want in zip(("a_bar", "b_bar", "h0_bar"), bars, t_bars):
        if want is None:
            assert got is None, name
            continue
        tol = 1e-13 * max(1.0, float(np.max(np.abs(want), initial=0)))
        _assert_near(got, want, tol, f"{name} vs torch")
    for name, got, want in zip(("h_dot", "h_final_dot"), _split(y_dot, return_final),
                               _split(t_dots, return_final)):
        if want is None:
            continue
        tol = 1e-13 * max(1.0, float(np.max(np.abs(want), initial=0)))
        _assert_near(got, want, tol, f"{name} vs torch.func.jvp")


@pytest.mark.parametrize("log_a", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_reference_helper_matches_torch(log_a: bool, dtype: Any) -> None:
    """ref_derivatives (used below for exact statements and tolerances) is
    itself the loop's adjoint: check it once against torch."""
    rng = np.random.default_rng(5)
    for layout in ("3d-mid", "cu-chunk", "cu-empty"):
        c = Case(rng, layout, "full", dtype, True, False, log_a, True, zeros_in_a=True)
        t_bars, t_dots = _torch_derivatives(c)
        r = c.ref()
        for got, want in zip(r["bars"], t_bars):
            if want is not None:
                np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(r["h_dot"], t_dots[0], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(r["final_dot"], t_dots[1], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("reverse,inclusive,log_a", list(itertools.product([False, True],
                                                                          repeat=3)))
@pytest.mark.parametrize("layout,bcast", LAYOUT_BCAST)
def test_reference_helper_forward(layout: str, bcast: str, reverse: bool, inclusive: bool,
                                  log_a: bool) -> None:
    """ref_derivatives' h and h_final are linear_scan's (its layout handling)."""
    c = Case(np.random.default_rng(_seed(layout, bcast)), layout, bcast, np.complex128,
             reverse, inclusive, log_a, True, zeros_in_a=True)
    h, hf = OP(c.a, c.b, h0=c.h0, **c.kw)
    r = c.ref()
    np.testing.assert_allclose(r["h"], h, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(r["final"], hf, rtol=1e-14, atol=1e-14)


# --------------------------------------------------------------------------------------
# API details: grad, None tangents, g_final None
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("return_final", [False, True])
@pytest.mark.parametrize("layout", ["2d-axis0", "cu-empty", "2d-flat"])
def test_grad_none_tangents_and_none_g_final(layout: str, return_final: bool) -> None:
    rng = np.random.default_rng(11)
    c = Case(rng, layout, "channel", np.float64, reverse=True, return_final=return_final)
    y, pullback = sa.vjp(OP, c.primals, **c.kw)
    h, hf = _split(y, return_final)
    ones = (np.ones_like(h), np.ones_like(hf)) if return_final else np.ones_like(h)
    for got, want in zip(sa.grad(OP, c.primals, **c.kw), pullback(ones)):
        if want is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, want)
    # the op by its name, as for the other ops
    for got, want in zip(sa.grad("linear_scan", c.primals, **c.kw), pullback(ones)):
        if want is not None:
            np.testing.assert_array_equal(got, want)
    for got, want in zip(sa.grad(OP, c.primals, cotangent=c.cot, **c.kw), pullback(c.cot)):
        if want is not None:
            np.testing.assert_array_equal(got, want)
    if return_final:
        # g_final None is a zero cotangent for the final state
        for got, want in zip(pullback((c.g, None)), pullback((c.g, np.zeros_like(hf)))):
            if want is not None:
                np.testing.assert_array_equal(got, want)
    # a None tangent is a zero tangent
    zeros = tuple(None if v is None else np.zeros_like(v) for v in c.tangents)
    partial = (None, c.tb, None)
    full_zero = (zeros[0], c.tb, zeros[2])
    y1, d1 = sa.jvp(OP, c.primals, partial, **c.kw)
    y2, d2 = sa.jvp(OP, c.primals, full_zero, **c.kw)
    for u, v in zip(_split(d1, return_final), _split(d2, return_final)):
        if v is not None:
            np.testing.assert_array_equal(u, v)
    # and the JVP in b alone is the forward on the tangent (linear in b, h0)
    want = OP(c.a, c.tb, **c.kw)
    for u, v in zip(_split(d1, return_final), _split(want, return_final)):
        if v is not None:
            np.testing.assert_allclose(u, v, rtol=1e-14, atol=1e-14)


# --------------------------------------------------------------------------------------
# check_grads on tuples
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("layout,bcast,flags", [
    ("1d", "scalar", (False, True, False, False)),
    ("2d-axis1", "channel", (True, False, False, True)),
    ("3d-mid", "full", (False, True, True, True)),
    ("3d-mid-noh0", "full", (True, True, False, False)),
    ("cu-empty", "full", (True, False, True, True)),
    ("cu-chunk", "channel", (False, False, False, True)),
])
def test_check_grads_on_tuples(layout: str, bcast: str, flags: Tuple[bool, ...],
                               dtype: Any, order: int) -> None:
    c = Case(np.random.default_rng(3), layout, bcast, dtype, *flags)
    sa.check_grads(OP, c.primals, order=order, **c.kw)


# --------------------------------------------------------------------------------------
# second order
# --------------------------------------------------------------------------------------

def _pullback_at(primals: Sequence[Any], g: Any, kw: Dict[str, Any]) -> List[Any]:
    return list(sa.vjp(OP, tuple(primals), **kw)[1](g))


SECOND_CASES = [
    ("1d", "scalar"), ("2d-axis0", "channel"), ("3d-mid", "full"), ("3d-mid-noh0", "channel"),
    ("cu-chunk", "full"), ("cu-empty", "channel"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("reverse,inclusive,log_a,return_final", FLAGS)
@pytest.mark.parametrize("layout,bcast", SECOND_CASES)
def test_vjp_jvp_against_central_differences(layout: str, bcast: str, reverse: bool,
                                             inclusive: bool, log_a: bool,
                                             return_final: bool, dtype: Any) -> None:
    rng = np.random.default_rng(_seed(layout, bcast, reverse, inclusive, log_a,
                                          return_final, str(dtype)))
    c = Case(rng, layout, bcast, dtype, reverse, inclusive, log_a, return_final)
    y = OP(c.a, c.b, h0=c.h0, **c.kw)
    h, hf = _split(y, return_final)
    g_dot = _rand(rng, h.shape, dtype)
    gf_dot = None if hf is None else _rand(rng, hf.shape, dtype)
    gd = (g_dot, gf_dot) if return_final else g_dot
    bars, dots = sa.vjp_jvp(OP, c.primals, c.cot, c.tangents, g_dot=gd, **c.kw)
    exact = _pullback_at(c.primals, c.cot, c.kw)
    _check_bar_types(dots, c.primals, np.dtype(dtype))
    eps = 1e-6
    plus = _pullback_at([None if x is None else x + eps * t
                         for x, t in zip(c.primals, c.tangents)], c.cot, c.kw)
    minus = _pullback_at([None if x is None else x - eps * t
                          for x, t in zip(c.primals, c.tangents)], c.cot, c.kw)
    lin = _pullback_at(c.primals, gd, c.kw)
    for k, name in enumerate(("a", "b", "h0")):
        if exact[k] is None:
            assert bars[k] is None and dots[k] is None
            continue
        scale = max(1.0, float(np.max(np.abs(exact[k]), initial=0)))
        # x_bar is the pullback; one kernel computes it with the JVP: a few roundings
        _assert_near(bars[k], exact[k], 1e-13 * scale, f"{name}_bar vs the pullback")
        numeric = lin[k] + (plus[k] - minus[k]) / (2 * eps)
        scale = max(1.0, float(np.max(np.abs(numeric), initial=0)))
        # central differences: truncation eps^2 |f'''| ~ 1e-12 and cancellation
        # u |f| / eps ~ 1e-10 of terms O(1)..O(10) on lines <= 9 steps; 1e-7 bounds both
        _assert_near(dots[k], numeric, 1e-7 * scale,
                     f"{name}_bar_dot vs central differences of the pullback")


def _torch_vjp_jvp(c: Case, g_dot: Any) -> List[Any]:
    """torch forward-over-reverse: the derivative of torch's J^H g along
    (t, g_dot) (torch's forward mode differentiates conj as conj, so for
    complex inputs this is the real-direction derivative of the definition)."""
    torch = pytest.importorskip("torch")
    kw = dict(c.kw)
    kw["cu_seqlens"] = None if kw.get("cu_seqlens") is None else list(kw["cu_seqlens"])
    rf = kw["return_final"]
    idx = [i for i, v in enumerate(c.primals) if v is not None]
    prim = tuple(_tt(torch, c.primals[i]) for i in idx)
    tans = tuple(_tt(torch, c.tangents[i]) for i in idx)
    cots = tuple(_tt(torch, v) for v in ((c.g, c.g_final) if rf else (c.g,)))
    cdots = tuple(_tt(torch, v) for v in (g_dot if rf else (g_dot,)))

    def f(*xs: Any) -> Any:
        full: List[Any] = [None, None, None]
        for i, v in zip(idx, xs):
            full[i] = v
        return torch_linear_scan(torch, full[0], full[1], full[2], **kw)

    def pullback(*args: Any) -> Any:
        xs, gs = args[:len(idx)], args[len(idx):]
        return torch.func.vjp(f, *xs)[1](tuple(gs) if rf else gs[0])

    _, dots = torch.func.jvp(pullback, prim + cots, tans + cdots)
    out: List[Any] = [None, None, None]
    for k, i in enumerate(idx):
        out[i] = dots[k].numpy()
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("reverse,inclusive,log_a,return_final", FLAGS[::3])
@pytest.mark.parametrize("layout,bcast", SECOND_CASES)
def test_vjp_jvp_against_torch(layout: str, bcast: str, reverse: bool, inclusive: bool,
                               log_a: bool, return_final: bool, dtype: Any) -> None:
    rng = np.random.default_rng(_seed("torch2", layout, bcast, reverse, inclusive, log_a,
                                      return_final, str(dtype)))
    c = Case(rng, layout, bcast, dtype, reverse, inclusive, log_a, return_final,
             zeros_in_a=True)
    h, hf = _split(OP(c.a, c.b, h0=c.h0, **c.kw), return_final)
    gd = (_rand(rng, h.shape, dtype), _rand(rng, hf.shape, dtype)) if return_final \
        else _rand(rng, h.shape, dtype)
    dots = sa.vjp_jvp(OP, c.primals, c.cot, c.tangents, g_dot=gd, **c.kw)[1]
    want = _torch_vjp_jvp(c, gd)
    for name, got, w in zip(("a", "b", "h0"), dots, want):
        if w is None:
            assert got is None
            continue
        if got.dtype.kind == "f":
            w = w.real
        # sums of products of O(1) terms along <= 9 steps, computed in another
        # order: a few hundred ulp of the largest entry at most
        _assert_near(got, w, 1e-13 * max(1.0, float(np.max(np.abs(w)))),
                     f"{name}_bar_dot vs torch forward-over-reverse")


@pytest.mark.parametrize("reverse,inclusive,log_a,return_final", FLAGS)
@pytest.mark.parametrize("layout,bcast", SECOND_CASES)
def test_hessian_symmetry(layout: str, bcast: str, reverse: bool, inclusive: bool,
                          log_a: bool, return_final: bool) -> None:
    """For real inputs and g_dot = 0, vjp_jvp is the Hessian of <g, f(x)>
    over the joint (a, b, h0): vdot(s, H t) == vdot(H s, t)."""
    rng = np.random.default_rng(_seed(layout, bcast, reverse, inclusive, log_a,
                                          return_final))
    c = Case(rng, layout, bcast, np.float64, reverse, inclusive, log_a, return_final)
    s = tuple(None if v is None else _rand(rng, np.shape(v), np.float64) for v in c.tangents)
    Ht = sa.vjp_jvp(OP, c.primals, c.cot, c.tangents, **c.kw)[1]
    Hs = sa.vjp_jvp(OP, c.primals, c.cot, s, **c.kw)[1]
    lhs, m1 = _vdot_sum(s, Ht)
    rhs, m2 = _vdot_sum(Hs, c.tangents)
    # sums of O(1) products along <= 9 steps: 1e-12 of their size is ample
    assert abs(lhs - rhs) <= 1e-12 * (m1 + m2), (lhs, rhs)
    # and hvp is vjp_jvp at the default cotangent (ones, ones for the final state)
    y = OP(c.a, c.b, h0=c.h0, **c.kw)
    h, hf = _split(y, return_final)
    ones = (np.ones_like(h), np.ones_like(hf)) if return_final else np.ones_like(h)
    want = sa.vjp_jvp(OP, c.primals, ones, c.tangents, **c.kw)[1]
    got = sa.hvp(OP, c.primals, c.tangents, **c.kw)
    for u, v in zip(got, want):
        if v is None:
            assert u is None
        else:
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_second_order_along_b_and_h0(dtype: Any) -> None:
    """f is linear in (b, h0) jointly and b_bar, h0_bar depend on a and g only:
    along (0, b_dot, h0_dot) with g_dot = 0 their dots are exactly 0, and
    a_bar = lam conj(h) moves by lam conj(h_dot): a_bar_dot is the a-cotangent
    of the problem with (b, h0) replaced by (b_dot, h0_dot)."""
    c = Case(np.random.default_rng(8), "cu-chunk", "full", dtype, True, False, False, True)
    dots = sa.vjp_jvp(OP, c.primals, c.cot, (None, c.tb, c.th0), **c.kw)[1]
    assert not np.any(dots[1]) and not np.any(dots[2])
    want = sa.vjp(OP, (c.a, c.tb, c.th0), **c.kw)[1](c.cot)[0]
    # the same products and sums in another kernel: a few roundings
    _assert_near(dots[0], want, 1e-13 * max(1.0, float(np.max(np.abs(want)))), "a_bar_dot")


# --------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------

def _majorants(c64: Case, states: bool = False) -> Tuple[List[Any], Any]:
    """The reference derivatives on |a|, |b|, |h0|, |t|, |g| (a = exp(log_a)
    for log_a, whose tangent is a_dot a): the size of the terms each
    derivative sums.  Returns (bars, (h_dot, final_dot)), or with
    ``states=True`` (bars, (h, final)): the size of the forward's terms."""
    kw = {k: v for k, v in c64.kw.items() if k not in ("return_final", "log_a")}
    log_a = c64.kw["log_a"]
    absA = np.abs(np.exp(np.asarray(c64.a, np.complex128)) if log_a else c64.a)
    ta = np.abs(c64.ta) * (absA if log_a else 1)
    r = ref_derivatives(absA, np.abs(c64.b), None if c64.h0 is None else np.abs(c64.h0),
                        tangents=(ta, np.abs(c64.tb),
                                  None if c64.th0 is None else np.abs(c64.th0)),
                        g=np.abs(c64.g),
                        g_final=None if c64.g_final is None else np.abs(c64.g_final), **kw)
    bars = list(r["bars"])
    if log_a:
        # a is constant along the axes it is broadcast on: the chain factor comes out
        bars[0] = bars[0] * absA
    if states:
        return bars, (r["h"], r["final"])
    return bars, (r["h_dot"], r["final_dot"])


LOW = {  # unit roundoff of the result dtype
    np.float32: 2.0**-24, np.complex64: 2.0**-24, np.float16: 2.0**-11,
}


@pytest.mark.parametrize("log_a", [False, True])
@pytest.mark.parametrize("return_final", [False, True])
@pytest.mark.parametrize("layout,bcast", [("1d", "scalar"), ("2d-axis0", "full"),
                                          ("3d-mid", "channel"), ("cu-chunk", "full"),
                                          ("2d-axis1", "full")])
@pytest.mark.parametrize("dtype", [np.float32, np.complex64, np.float16])
def test_low_precision_within_rounding_of_float64(dtype: Any, layout: str, bcast: str,
                                                  return_final: bool, log_a: bool) -> None:
    """Derivatives in float32/complex64 (accumulated in float64/complex128)
    and float16 (accumulated in float32) against the same values in
    float64/complex128.  The inputs are exact in both, so the only
    differences are: the stored low-precision states the pullback multiplies
    (a_bar = lam conj(h)), the final rounding of each result, and for float16
    the float32 accumulation (n u32 << u16).  Each is at most u of the size of
    the terms (the majorant: the same derivative on absolute values); 4 u
    of it leaves a margin for complex rounding (sqrt 2) and exp."""
    c = Case(np.random.default_rng(21), layout, bcast, dtype, True, True, log_a, return_final)
    c64 = copy.copy(c)  # the same values, widened
    wide = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    for name in ("a", "b", "h0", "ta", "tb", "th0", "g", "g_final"):
        v = getattr(c, name)
        setattr(c64, name, None if v is None else v.astype(wide))
    bars = sa.vjp(OP, c.primals, **c.kw)[1](c.cot)
    bars64 = sa.vjp(OP, c64.primals, **c64.kw)[1](c64.cot)
    y_dot = sa.jvp(OP, c.primals, c.tangents, **c.kw)[1]
    y_dot64 = sa.jvp(OP, c64.primals, c64.tangents, **c64.kw)[1]
    mbars, mdots = _majorants(c64)
    u = LOW[dtype]
    for name, got, want, m, x in zip(("a_bar", "b_bar", "h0_bar"), bars, bars64, mbars,
                                     c.primals):
        if x is None:
            assert got is None
            continue
        assert got.dtype == np.dtype(dtype), (name, got.dtype)
        _assert_near(got, want, 4 * u * np.abs(m), f"{np.dtype(dtype)} {name}")
    for name, got, want, m in zip(("h_dot", "h_final_dot"), _split(y_dot, return_final),
                                  _split(y_dot64, return_final), mdots):
        if got is None:
            continue
        assert got.dtype == np.dtype(dtype), (name, got.dtype)
        _assert_near(got, want, 4 * u * np.abs(m), f"{np.dtype(dtype)} {name}")


@pytest.mark.parametrize("log_a", [False, True])
@pytest.mark.parametrize("layout,bcast", [("1d", "scalar"), ("3d-mid", "channel"),
                                          ("cu-chunk", "full")])
def test_real_a_with_complex_b(layout: str, bcast: str, log_a: bool) -> None:
    """A real a (or log_a) with complex b: a_bar is real, the real part of the
    cotangent of the same a given as complex (J^H g for a real input is
    Re(J^H g)); the JVP with a real a_dot is that of the complex a."""
    rng = np.random.default_rng(31)
    c = Case(rng, layout, bcast, np.complex128, False, True, log_a, True,
             a_dtype=np.float64)
    assert c.a.dtype == np.float64 and c.b.dtype == np.complex128
    bars = sa.vjp(OP, c.primals, **c.kw)[1](c.cot)
    ac = c.a.astype(np.complex128)
    bars_c = sa.vjp(OP, (ac, c.b, c.h0), **c.kw)[1](c.cot)
    assert bars[0].dtype == np.float64 and bars[0].shape == c.a.shape
    scale = max(1.0, float(np.max(np.abs(bars_c[0]), initial=0)))
    # same products; only the imaginary half is dropped: a few ulp
    _assert_near(bars[0], bars_c[0].real, 4 * 2.0**-52 * scale, "real a_bar")
    for u, v in zip(bars[1:], bars_c[1:]):
        _assert_near(u, v, 4 * 2.0**-52 * scale, "b_bar, h0_bar with real a")
    d = sa.jvp(OP, c.primals, c.tangents, **c.kw)[1]
    dc = sa.jvp(OP, (ac, c.b, c.h0), (c.ta.astype(np.complex128), c.tb, c.th0), **c.kw)[1]
    for u, v in zip(d, dc):
        s = max(1.0, float(np.max(np.abs(v), initial=0)))
        _assert_near(u, v, 4 * 2.0**-52 * s, "y_dot with real a")
    # and the loop's own adjoint agrees
    r = c.ref()
    _assert_near(bars[0], r["bars"][0], 1e-13 * scale, "real a_bar vs the loop")


@pytest.mark.parametrize("return_final", [False, True])
def test_dtype_option(return_final: bool) -> None:
    """dtype= computes in that dtype and returns each cotangent in its input's
    dtype: float32 inputs with dtype=float64 are the float64 derivatives of
    the widened inputs, rounded once; float64 inputs with dtype=complex128
    take the real part of the complex derivatives."""
    c = Case(np.random.default_rng(51), "cu-chunk", "full", np.float32, True, False, True,
             return_final)
    bars = sa.vjp(OP, c.primals, dtype=np.float64, **c.kw)[1](c.cot)
    wide = tuple(np.asarray(v, np.float64) for v in c.primals)
    cot64 = (tuple(np.asarray(v, np.float64) for v in c.cot) if return_final
             else np.asarray(c.cot, np.float64))
    want = sa.vjp(OP, wide, **c.kw)[1](cot64)
    for u, v in zip(bars, want):
        assert u.dtype == np.float32
        np.testing.assert_array_equal(u, v.astype(np.float32))
    bars = sa.vjp(OP, wide, dtype=np.complex128, **c.kw)[1](cot64)
    cplx = tuple(v.astype(np.complex128) for v in wide)
    want = sa.vjp(OP, cplx, **c.kw)[1](cot64)
    for u, v in zip(bars, want):
        assert u.dtype == np.float64
        np.testing.assert_array_equal(u, v.real)


def test_python_scalars_and_integer_inputs() -> None:
    """A Python int or float a and an integer h0 are accepted; their
    cotangents have the result dtype (a scalar a: a 0-d array)."""
    rng = np.random.default_rng(41)
    b32 = _rand(rng, 6, np.float32)
    g32 = _rand(rng, 6, np.float32)
    for a, h0 in ((1, None), (0.5, 2), (-1, -0.75)):
        y, pullback = sa.vjp(OP, (a, b32, h0))
        assert y.dtype == np.float32
        a_bar, b_bar, h0_bar = pullback(g32)
        assert isinstance(a_bar, np.ndarray) and a_bar.shape == () and a_bar.dtype == np.float32
        assert b_bar.dtype == np.float32 and b_bar.shape == (6,)
        if h0 is None:
            assert h0_bar is None
        else:
            assert isinstance(h0_bar, np.ndarray) and h0_bar.shape == ()
            assert h0_bar.dtype == np.float32
        r = ref_derivatives(float(a), b32.astype(np.float64), h0, g=g32.astype(np.float64))
        m = ref_derivatives(abs(float(a)), np.abs(b32).astype(np.float64),
                            None if h0 is None else abs(h0), g=np.abs(g32).astype(np.float64))
        # float32 result of float64 sums (see test_low_precision_within_rounding_of_float64)
        for name, got, want, mm in zip(("a_bar", "b_bar", "h0_bar"), (a_bar, b_bar, h0_bar),
                                       r["bars"], m["bars"]):
            if want is not None:
                _assert_near(got, want, 4 * 2.0**-24 * mm, f"{name}, Python scalars")
    b = _rand(rng, (4, 3), np.float64)
    h0 = np.array([1, -2, 3])
    a = np.array([[2], [0], [1], [-1]])  # integer a, per row
    y, pullback = sa.vjp(OP, (a, b, h0), axis=0)
    g = _rand(rng, (4, 3), np.float64)
    a_bar, b_bar, h0_bar = pullback(g)
    assert a_bar.dtype == np.float64 and a_bar.shape == (4, 1)
    assert h0_bar.dtype == np.float64 and h0_bar.shape == (3,)
    r = ref_derivatives(a.astype(np.float64), b, h0.astype(np.float64), g=g, axis=0)
    for got, want in zip((a_bar, b_bar, h0_bar), r["bars"]):
        _assert_near(got, want, 1e-14 * max(1.0, float(np.max(np.abs(want)))), "integer inputs")


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------

def test_errors() -> None:
    a, b, h0 = np.full(5, 0.5), np.ones(5), np.array(1.0)
    _, pullback = sa.vjp(OP, (a, b, h0))
    with pytest.raises(ValueError, match=r"\bg\b"):
        pullback(np.ones(4))
    _, pullback_f = sa.vjp(OP, (a, b, h0), return_final=True)
    with pytest.raises(ValueError, match=r"\bg"):
        pullback_f((np.ones(5), np.ones(2)))  # g_final must have h_final's shape ()
    with pytest.raises(ValueError, match=r"\bg\b"):
        pullback_f((np.ones(4), None))
    with pytest.raises(ValueError, match="tangent|_dot"):
        sa.jvp(OP, (a, b, h0), (np.ones(4), None, None))
    with pytest.raises(ValueError, match="tangent|_dot"):
        sa.jvp(OP, (a, b, h0), (None, np.ones((5, 1)), None))
    with pytest.raises(ValueError, match="tangent|_dot"):
        sa.jvp(OP, (a, b, h0), (None, None, np.ones(2)))
    with pytest.raises(ValueError, match="h0"):
        sa.jvp(OP, (a, b, None), (None, None, np.ones(())))
    with pytest.raises(ValueError, match="h0"):
        sa.vjp_jvp(OP, (a, b, None), np.ones(5), (None, None, np.ones(())))
    with pytest.raises(ValueError, match=r"\bg\b"):
        sa.vjp_jvp(OP, (a, b, h0), np.ones(6), (None, b, None))
    with pytest.raises(ValueError, match="tangent|_dot"):
        sa.vjp_jvp(OP, (a, b, h0), np.ones(5), (None, np.ones(3), None))
    # a list is not the tuple either: [a, b, h0] of scalars reads as one array
    for bad in (b, (a, b), [a, b, h0]):
        for fn, args in ((sa.vjp, (bad,)), (sa.jvp, (bad, bad)), (sa.grad, (bad,)),
                         (sa.check_grads, (bad,))):
            with pytest.raises(TypeError) as info:
                fn(OP, *args)
            assert "tuple" in str(info.value) and "(a, b, h0)" in str(info.value), fn
    # the one-input form of the other ops is unchanged
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(sa.grad(sa.cumsum, x), [3.0, 2.0, 1.0])


# --------------------------------------------------------------------------------------
# exact cases
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 5, 7])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("inclusive", [True, False])
def test_a_equal_one_is_cumsum(n: int, reverse: bool, inclusive: bool) -> None:
    """linear_scan(1, x) is cumsum(x): its b-derivatives are cumsum's, bit for
    bit on short lines (each step adds g to a running sum times 1, exact)."""
    rng = np.random.default_rng(n)
    x, g, t = (rng.standard_normal(n) for _ in range(3))
    kw = dict(reverse=reverse, inclusive=inclusive)
    y, pullback = sa.vjp(OP, (1.0, x, None), **kw)
    yc, pullback_c = sa.vjp(sa.cumsum, x, **kw)
    np.testing.assert_array_equal(y, yc)
    np.testing.assert_array_equal(pullback(g)[1], pullback_c(g))
    np.testing.assert_array_equal(sa.jvp(OP, (1.0, x, None), (None, t, None), **kw)[1],
                                  sa.jvp(sa.cumsum, x, t, **kw)[1])
    # down columns too
    X, G = rng.standard_normal((n, 4)), rng.standard_normal((n, 4))
    _, pb = sa.vjp(OP, (1.0, X, None), axis=0, **kw)
    np.testing.assert_array_equal(pb(G)[1], sa.vjp(sa.cumsum, X, axis=0, **kw)[1](G))


@pytest.mark.parametrize("reverse", [False, True])
def test_zero_b_unit_h0_is_cumprod(reverse: bool) -> None:
    """linear_scan(p, 0, h0=1) is cumprod(p), and a_bar = lam conj(h_before)
    is cumprod's pullback conj(E) S term for term; E is the same product, so
    they agree to an ulp or two."""
    rng = np.random.default_rng(7)
    p = rng.uniform(0.5, 1.5, 7) + 1j * rng.uniform(-0.5, 0.5, 7)
    g = rng.standard_normal(7) + 1j * rng.standard_normal(7)
    _, pullback = sa.vjp(OP, (p, np.zeros(7, complex), np.array(1.0 + 0j)), reverse=reverse)
    want = sa.vjp(sa.cumprod, p, reverse=reverse)[1](g)
    got = pullback(g)[0]
    m = ref_derivatives(np.abs(p), np.zeros(7), np.array(1.0), g=np.abs(g),
                        reverse=reverse)["bars"][0]
    # a few roundings of terms of size m (cancellation in the sum S aside)
    _assert_near(got, want, 4 * 2.0**-53 * m, "cumprod pullback")


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("inclusive", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("chunk_size", [None, 4])
@pytest.mark.parametrize("log_a", [False, True])
def test_zero_in_a_cuts_gradient_flow(reverse: bool, inclusive: bool, dtype: Any,
                                      chunk_size: Optional[int], log_a: bool) -> None:
    """a_z == 0 at position z (in scan order) resets: h_z = b_z.  So the
    outputs from z on (inclusive; from z + 1 on exclusive, whose output z is
    the state before the reset) and h_final do not depend on a_s, b_s (s < z)
    nor, without chunks, on h0: with a cotangent only on them, a_bar, b_bar
    before z (and h0_bar) are exactly 0; with tangents only before z (and on
    h0) their JVP is exactly 0.  The derivative in a_z itself is
    lam_z conj(h_{z-1}), not 0; with log_a, a_z = exp(-inf) and the derivative
    in log_a_z is that times conj(a_z): exactly 0, and no NaN anywhere."""
    n, z = 11, 5  # with chunks of 4, z is inside the middle chunk either way
    rng = np.random.default_rng(13)
    a = _rand(rng, (n, 2), dtype, *((-1.0, 0.3) if log_a else (-1.2, 1.2)))
    b = _rand(rng, (n, 2), dtype)
    h0 = _rand(rng, (2,), dtype)
    order = np.arange(n)[::-1] if reverse else np.arange(n)  # position -> index
    a[order[z]] = -np.inf if log_a else 0
    kw = dict(axis=0, reverse=reverse, inclusive=inclusive, return_final=True,
              chunk_size=chunk_size, log_a=log_a)
    first_cut = z if inclusive else z + 1  # first position cut from the past
    g = _rand(rng, (n, 2), dtype)
    g[order[:first_cut]] = 0
    gf = _rand(rng, (2,), dtype)
    _, pullback = sa.vjp(OP, (a, b, h0), **kw)
    a_bar, b_bar, h0_bar = pullback((g, gf))
    assert not np.any(b_bar[order[:z]]) and not np.any(a_bar[order[:z]])
    if chunk_size is None:  # (the later chunks restart from h0)
        assert not np.any(h0_bar)
    r = ref_derivatives(a, b, h0, g=g, g_final=gf, **{k: v for k, v in kw.items()
                                                      if k != "return_final"})
    assert np.all(np.isfinite(a_bar)) and np.all(np.isfinite(b_bar))
    if log_a:
        assert not np.any(a_bar[order[z]])
    else:
        # the derivative at the zero itself: lam_z conj(h_{z-1}), both nonzero here
        assert np.all(a_bar[order[z]] != 0)
    for got, want in zip((a_bar, b_bar), r["bars"][:2]):
        _assert_near(got, want, 1e-13 * max(1.0, float(np.max(np.abs(want)))), "vs the loop")
    t = [_rand(rng, (n, 2), dtype), _rand(rng, (n, 2), dtype), _rand(rng, (2,), dtype)]
    for v in t[:2]:
        v[order[z:]] = 0
    if chunk_size is not None:
        t[2][:] = 0  # the later chunks restart from h0
    _, (h_dot, f_dot) = sa.jvp(OP, (a, b, h0), tuple(t), **kw)
    assert not np.any(h_dot[order[first_cut:]]) and not np.any(f_dot)
    # a tangent on the reset entry too (log_a: times exp(-inf) = 0, no NaN)
    t_a = _rand(rng, (n, 2), dtype)
    _, (h_dot, f_dot) = sa.jvp(OP, (a, b, h0), (t_a, None, None), **kw)
    want = ref_derivatives(a, b, h0, tangents=(t_a, None, None),
                           **{k: v for k, v in kw.items() if k != "return_final"})["h_dot"]
    _assert_near(h_dot, want, 1e-13 * max(1.0, float(np.max(np.abs(want)))), "h_dot at a reset")


def test_empty_segment_h0_bar_is_its_g_final() -> None:
    """An empty segment's final state is its h0 and it has no outputs: its
    h0_bar is exactly its g_final (0 without), its h0 tangent is its h_final's."""
    rng = np.random.default_rng(17)
    cu = np.array([0, 3, 3, 7, 7])
    a, b = _rand(rng, (7, 2), np.complex128), _rand(rng, (7, 2), np.complex128)
    h0 = _rand(rng, (4, 2), np.complex128)
    for inclusive in (True, False):
        kw = dict(axis=0, cu_seqlens=cu, inclusive=inclusive, chunk_size=2)
        _, pb = sa.vjp(OP, (a, b, h0), return_final=True, **kw)
        gf = _rand(rng, (4, 2), np.complex128)
        h0_bar = pb((_rand(rng, (7, 2), np.complex128), gf))[2]
        np.testing.assert_array_equal(h0_bar[[1, 3]], gf[[1, 3]])
        _, pb = sa.vjp(OP, (a, b, h0), **kw)
        assert not np.any(pb(_rand(rng, (7, 2), np.complex128))[2][[1, 3]])
        th0 = _rand(rng, (4, 2), np.complex128)
        _, (_, f_dot) = sa.jvp(OP, (a, b, h0), (None, None, th0), return_final=True, **kw)
        np.testing.assert_array_equal(f_dot[[1, 3]], th0[[1, 3]])


# --------------------------------------------------------------------------------------
# hypothesis: random shapes, axes, flags and broadcasts
# --------------------------------------------------------------------------------------

@st.composite
def linear_cases(draw: Any) -> Dict[str, Any]:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1)))
    ax = 0 if axis is None else axis % ndim
    n = int(np.prod(shape)) if axis is None else shape[ax]
    rest = () if axis is None else shape[:ax] + shape[ax + 1:]
    # a: some axes of b's shape set to 1, some leading axes dropped (scalar .. full)
    ones = draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim))
    a_shape = tuple(1 if o else s for o, s in zip(ones, shape))
    a_shape = a_shape[draw(st.integers(0, ndim)):]
    cu = None
    if draw(st.booleans()):
        cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
        cu = [0] + cuts + [n]
    chunk = draw(st.one_of(st.none(), st.integers(1, 4)))
    h0_kind = draw(st.sampled_from(["none", "scalar", "full"]))
    if h0_kind == "none":
        h0_shape = None
    elif h0_kind == "scalar":
        h0_shape = ()
    else:
        h0_shape = ((len(cu) - 1,) if cu is not None else ()) + tuple(rest)
    return dict(shape=shape, axis=axis, a_shape=a_shape, cu=cu, chunk=chunk,
                h0_shape=h0_shape,
                flags=draw(st.tuples(*[st.booleans()] * 4)),
                dtype=draw(st.sampled_from(["f8", "c16", "mixed"])),
                seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=150, deadline=None)
@given(linear_cases())
def test_adjoint_identity_hypothesis(case: Dict[str, Any]) -> None:
    rng = np.random.default_rng(case["seed"])
    reverse, inclusive, log_a, return_final = case["flags"]
    dt = {"f8": np.float64, "c16": np.complex128, "mixed": np.complex128}[case["dtype"]]
    adt = np.float64 if case["dtype"] == "mixed" else dt
    lo, hi = (-1.0, 0.3) if log_a else (-1.2, 1.2)
    a, ta = _rand(rng, case["a_shape"], adt, lo, hi), _rand(rng, case["a_shape"], adt)
    b, tb = _rand(rng, case["shape"], dt), _rand(rng, case["shape"], dt)
    h0 = th0 = None
    if case["h0_shape"] is not None:
        h0, th0 = _rand(rng, case["h0_shape"], dt), _rand(rng, case["h0_shape"], dt)
    kw: Dict[str, Any] = dict(axis=case["axis"], reverse=reverse, inclusive=inclusive,
                              log_a=log_a, return_final=return_final,
                              cu_seqlens=None if case["cu"] is None else np.array(case["cu"]),
                              chunk_size=case["chunk"])
    y, y_dot = sa.jvp(OP, (a, b, h0), (ta, tb, th0), **kw)
    h, hf = _split(y, return_final)
    g = _rand(rng, h.shape, dt)
    gf = None if hf is None else _rand(rng, hf.shape, dt)
    _, pullback = sa.vjp(OP, (a, b, h0), **kw)
    bars = pullback((g, gf) if return_final else g)
    _check_bar_types(bars, (a, b, h0), np.dtype(dt))
    lhs, m1 = _vdot_sum([g, gf], list(_split(y_dot, return_final)))
    rhs, m2 = _vdot_sum(bars, (ta, tb, th0))
    if case["dtype"] == "mixed":
        # a real a's cotangent is Re(J_a^H g): the identity holds for the real parts
        lhs, rhs = lhs.real, rhs.real
    # a line here has at most 64 steps (flattened 4x4x4) of O(1) terms
    assert abs(lhs - rhs) <= 1e-12 * (m1 + m2), (lhs, rhs, m1 + m2)
    # and the adjoint agrees with the loop's
    r = ref_derivatives(a, b, h0, g=g, g_final=gf,
                        **{k: v for k, v in kw.items() if k != "return_final"})
    for name, got, want in zip(("a_bar", "b_bar", "h0_bar"), bars, r["bars"]):
        if want is not None:
            if np.asarray(got).dtype.kind == "f":
                want = np.real(want)
            s = max(1.0, float(np.max(np.abs(want), initial=0)))
            _assert_near(got, want, 1e-12 * s, f"{name} vs the loop")


# --------------------------------------------------------------------------------------
# a bigger case, for the blocked kernels
# --------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("a_kind", ["full", "scalar"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32, np.complex64])
def test_long_lines_against_the_loop(dtype: Any, a_kind: str) -> None:
    """Lines long enough for the kernels' blocked paths, down columns and
    along rows, against the loop's adjoint and JVP in float64/complex128."""
    rng = np.random.default_rng(99)
    n, chunk = 3000, 700
    a = _rand(rng, (n, 3) if a_kind == "full" else (), dtype, -1.0, 1.0)
    b, g, t = (_rand(rng, (n, 3), dtype) for _ in range(3))
    h0, ta = _rand(rng, (3,), dtype), _rand(rng, a.shape, dtype)
    kw = dict(reverse=True, chunk_size=chunk)
    for axis in (0, 1):
        tr = (lambda v: v) if axis == 0 else (lambda v: v.T.copy())
        prim, tans = (tr(a), tr(b), h0), (tr(ta), tr(t), h0)
        bars = sa.vjp(OP, prim, axis=axis, **kw)[1](tr(g))
        y_dot = sa.jvp(OP, prim, tans, axis=axis, **kw)[1]
        r = ref_derivatives(*prim, g=tr(g), tangents=tans, axis=axis, **kw)
        m = ref_derivatives(*(np.abs(v) for v in prim), g=np.abs(tr(g)),
                            tangents=tuple(np.abs(v) for v in tans), axis=axis, **kw)
        # each entry sums <= 700 terms: 4 * 700 u64 of their size (the kernels
        # accumulate float32 in float64), plus float32 roundings (see
        # test_low_precision_within_rounding_of_float64)
        low = np.dtype(dtype) in (np.float32, np.complex64)
        u = 4 * chunk * 2.0**-53 + (4 * 2.0**-24 if low else 0)
        for name, got, want, mm in zip(("a", "b", "h0"), bars, r["bars"], m["bars"]):
            _assert_near(got, want, u * mm, f"{name}_bar, long lines, axis {axis}")
        _assert_near(y_dot, r["h_dot"], u * m["h_dot"], f"h_dot, long lines, axis {axis}")


def test_cotangent_of_the_final_state_alone() -> None:
    # (None, g_final) is the cotangent (zeros, g_final), for the pullback and for g_dot
    rng = np.random.default_rng(31)
    a, b, h0 = rng.uniform(0.5, 1.0, (4, 3)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    kw = dict(axis=0, return_final=True, cu_seqlens=[0, 1, 1, 4])
    h0 = rng.standard_normal((3, 3))
    gf, gfd = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    _, pullback = sa.vjp(OP, (a, b, h0), **kw)
    zeros = np.zeros((4, 3))
    for got, want in zip(pullback((None, gf)), pullback((zeros, gf))):
        np.testing.assert_array_equal(got, want)
    t = (rng.standard_normal((4, 3)), None, None)
    got = sa.vjp_jvp(OP, (a, b, h0), (None, gf), t, (None, gfd), **kw)
    want = sa.vjp_jvp(OP, (a, b, h0), (zeros, gf), t, (zeros, gfd), **kw)
    for u, v in zip(got[0] + got[1], want[0] + want[1]):
        np.testing.assert_array_equal(u, v)


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.0.0",
                    reason="NumPy 1.x arrays have at most 32 dimensions")
def test_more_dimensions_than_numpys_broadcast_shapes() -> None:
    # the forward takes up to 64 dimensions, and so must its derivatives
    rng = np.random.default_rng(32)
    a, b, t = (rng.uniform(0.5, 1.0, 5), rng.standard_normal(5), rng.standard_normal(5))
    deep = (1,) * 39 + (5,)
    _, pullback = sa.vjp(OP, (a, b, None), axis=0)
    _, deep_pullback = sa.vjp(OP, (a.reshape(deep), b.reshape(deep), None), axis=-1)
    (a_bar, b_bar, h0_bar), deep_bars = pullback(t), deep_pullback(t.reshape(deep))
    assert h0_bar is None and deep_bars[2] is None
    np.testing.assert_array_equal(deep_bars[0].ravel(), a_bar)
    np.testing.assert_array_equal(deep_bars[1].ravel(), b_bar)
    _, h_dot = sa.jvp(OP, (a.reshape(deep), b.reshape(deep), None), (t.reshape(deep), None, None),
                      axis=-1)
    np.testing.assert_array_equal(h_dot.ravel(), sa.jvp(OP, (a, b, None), (t, None, None),
                                                        axis=0)[1])


# --------------------------------------------------------------------------------------
# the single-line kernels: groups straight from the operands, tiles, wild values
# --------------------------------------------------------------------------------------

@pytest.mark.quick
@pytest.mark.parametrize("n", [7, 8, 263, 600])
@pytest.mark.parametrize("a_kind", ["full", "scalar", "log", "strided"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_line_kernels_against_the_loop(dtype: Any, a_kind: str, n: int) -> None:
    """One line (the kernels' single-line paths: the JVP's groups of eight
    fused with the forward's, its tiles for log_a and strided operands, the
    VJP's tiles walked from the end) for every flag, with and without a
    tangent of a, against the loop; then again with wild values that force
    each path's exact steps: a zero and a huge factor, an infinite b, a
    tangent too big to compose.  The JVP's primal is the forward's, bit
    for bit, on every path."""
    rng = np.random.default_rng(_seed(n, a_kind, np.dtype(dtype).name))
    log_a, scalar = a_kind == "log", a_kind == "scalar"
    step = 2 if a_kind == "strided" else 1  # every operand a view of every other element
    low = np.dtype(dtype) == np.float32
    for wild, reverse, inclusive, with_ta in itertools.product(
            (False, True), (False, True), (False, True), (False, True)):
        a = np.asarray(rng.uniform(0.6, 1.0)) if scalar else rng.uniform(0.6, 1.0, n * step)
        b, g, tb = (rng.standard_normal(n * step) for _ in range(3))
        if wild and n > 100:
            if not scalar:
                a[5 * step], a[n // 2 * step] = 0.0, 2.0**40  # a reset; a factor past 2^32
            b[n // 3 * step] = np.inf  # an infinite state from there (to the next reset)
            # a tangent source past the bounds (float32 has none short of inf,
            # which the reference's reset turns into 0 * inf: there the source
            # a_dot h past the infinite b is the wild one)
            tb[2 * n // 3 * step] = 1e30 if low else 1e300
        if log_a:
            with np.errstate(divide="ignore"):
                a = np.log(a)
        a, b, g, tb = (v.astype(dtype) if v.ndim == 0 else v.astype(dtype)[::step]
                       for v in (a, b, g, tb))
        ta = rng.standard_normal(a.shape).astype(dtype) if with_ta else None
        # states of the operands' dtype: a float64 h0 would make the result float64
        h0, th0 = (np.asarray(rng.standard_normal(), dtype) for _ in range(2))
        kw = dict(axis=0, reverse=reverse, inclusive=inclusive, log_a=log_a)
        h, h_dot = sa.jvp(OP, (a, b, h0), (ta, tb, th0), **kw)
        assert h.dtype == h_dot.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(h, OP(a, b, h0=h0, **kw))
        bars = sa.vjp(OP, (a, b, h0), **kw)[1](g)
        # the loop in float64, and on absolute values (a = exp(log_a), its
        # tangent a_dot a) the size of the terms each result sums
        A = np.exp(a.astype(np.float64)) if log_a else a.astype(np.float64)
        tam = None if ta is None else np.abs(ta * A) if log_a else np.abs(ta)
        # without a tangent of a, h_dot does not involve h (the reference
        # would multiply its zero tangent by an infinite h)
        b_dot_case = b if with_ta else np.zeros_like(b)
        with np.errstate(invalid="ignore", over="ignore"):  # the loop meets inf
            r = ref_derivatives(a, b, h0, g=g, **kw)
            r_dot = ref_derivatives(a, b_dot_case, h0, tangents=(ta, tb, th0), **kw)["h_dot"]
            kw_abs = dict(kw, log_a=False)
            m = ref_derivatives(np.abs(A), np.abs(b), np.abs(h0), g=np.abs(g), **kw_abs)
            m_dot = ref_derivatives(np.abs(A), np.abs(b_dot_case), np.abs(h0),
                                    tangents=(tam, np.abs(tb), np.abs(th0)), **kw_abs)["h_dot"]
            # with log_a, a_bar has the factor a itself (a is full-shape here)
            m_bars = (m["bars"][0] * (np.abs(A) if log_a else 1.0),) + tuple(m["bars"][1:])
        what = f"wild={wild} reverse={reverse} inclusive={inclusive} a_dot={with_ta}"
        for name, got, want, size in [("h_dot", h_dot, r_dot, m_dot)] + list(
                zip(("a_bar", "b_bar", "h0_bar"), bars, r["bars"], m_bars)):
            fin = np.isfinite(want)
            np.testing.assert_array_equal(np.isfinite(got), fin, f"{name}, {what}")
            want = np.where(fin, np.asarray(want).real, 0.0)
            size = np.abs(np.asarray(size))
            size = np.where(np.isfinite(size), size, 0.0)
            # float64 reassociation: a few ulp of each of up to n terms, at
            # most the majorant; float32 results: the stored float32 states
            # that a_bar multiplies and the final rounding, each at most u32
            # of the majorant (4 u32 for margin, as in the float32 test above)
            tol = (n * 2.0**-50 + (4 * 2.0**-24 if low else 0.0)) * size
            _assert_near(np.where(fin, got, 0), want, tol, f"{name}, {what}")
