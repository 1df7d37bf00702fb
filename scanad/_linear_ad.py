"""Derivatives of ``linear_scan`` over its three inputs ``(a, b, h0)``.

``vjp``, ``jvp``, ``grad``, ``vjp_jvp``, ``hvp`` and ``check_grads`` (in
``_autodiff``) hand ``linear_scan`` here: its primal is the tuple
``(a, b, h0)`` (``h0`` may be None) and its cotangents and tangents are
tuples too (docs/derivatives.md, "linear_scan").  The first order is one C
kernel each (``_scanad.linear_scan_jvp`` / ``linear_scan_vjp``); the second
order composes them:

- ``lam`` (the cotangent of the states, ``b_bar``) is ``O^H g`` for the
  output map ``O`` of the flags; its tangent is ``O^H g_dot`` plus
  ``E^H (conj(a_dot) lam)``, where ``E`` maps ``b`` to the states before
  each step (the exclusive output, whose adjoint also feeds ``h0``);
- ``a_bar = conj(h_prev) lam`` differentiates by the product rule, with
  ``h_prev`` and its tangent from the exclusive JVP.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _scanad as _C
from ._linear import _result_dtype

OPTIONS = ("axis", "reverse", "inclusive", "log_a", "return_final", "dtype", "cu_seqlens",
           "chunk_size")
NAMES = ("a", "b", "h0")


@dataclass
class _Call:
    """The primals as the kernels take them, and how to give results back."""

    a: np.ndarray          # a in the result dtype, over the rows (flattened with axis None)
    b: np.ndarray
    h0: Optional[np.ndarray]
    shapes: Tuple[Tuple[int, ...], ...]   # the inputs' own shapes
    dtypes: Tuple[np.dtype, ...]          # the dtypes their cotangents are returned in
    rows: Tuple[int, ...]                 # the broadcast shape of a and b
    flat: bool                            # axis None: the rows scanned flattened
    axis: int
    rt: np.dtype
    kw: Dict[str, Any]

    @property
    def scanned(self) -> Tuple[int, ...]:
        """The shape the kernels scan: the rows, flattened with axis None."""
        return (int(np.prod(self.rows, dtype=np.int64)),) if self.flat else self.rows

    def reduce(self, k: int, full: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """A cotangent over the rows (k 0, 1) or the state shape (k 2) summed
        back to input k's shape and dtype."""
        if full is None:
            return None
        if k < 2 and self.flat:
            # a_bar summed in the kernel has one element
            n = int(np.prod(self.rows, dtype=np.int64))
            full = full.reshape(self.rows if full.size == n else (1,) * len(self.rows))
        out = _sum_to(full, self.shapes[k])
        dtype = self.dtypes[k]
        if dtype.kind != "c" and out.dtype.kind == "c":
            if self.rt.kind == "c":
                out = out.real  # a real input's cotangent is the real part
            else:
                # complex cotangents of real primals: J^T g, complex
                dtype = np.result_type(dtype, np.complex64)
        return np.asarray(out.astype(dtype, copy=False))

    def args(self) -> Tuple[Any, ...]:
        kw = self.kw
        return (kw.get("reverse", False), kw.get("inclusive", True), kw.get("log_a", False))

    def segments(self) -> Tuple[Any, Any]:
        return self.kw.get("cu_seqlens"), self.kw.get("chunk_size")


def _flatten(x: np.ndarray, rows: Tuple[int, ...]) -> np.ndarray:
    """x broadcast over rows, in C order; one element stays a zero stride."""
    n = int(np.prod(rows, dtype=np.int64))
    if x.size == 1:
        return np.broadcast_to(x.reshape(1), (n,))
    return np.broadcast_to(x, rows).reshape(n)


def _sum_to(x: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """x summed over the axes it has beyond shape or where shape has 1."""
    lead = x.ndim - len(shape)
    if lead > 0:
        x = x.sum(axis=tuple(range(lead)))
    axes = tuple(d for d, n in enumerate(shape) if n == 1 and x.shape[d] != 1)
    if axes:
        x = x.sum(axis=axes, keepdims=True)
    return x.reshape(shape)


def _unpack(primals: Any, what: str) -> Tuple[Any, Any, Any]:
    if not isinstance(primals, tuple) or len(primals) != 3:
        raise TypeError(f"{what} of linear_scan: the primal must be a tuple (a, b, h0) (h0 may "
                        f"be None); got {type(primals).__name__}")
    return primals[0], primals[1], primals[2]


def _broadcast_shapes(first: Tuple[int, ...], second: Tuple[int, ...]) -> Tuple[int, ...]:
    """np.broadcast_shapes without its 32-dimension limit (arrays have up to 64)."""
    nd = max(len(first), len(second))
    padded = [(1,) * (nd - len(s)) + tuple(s) for s in (first, second)]
    rows = []
    for m, n in zip(*padded):
        if m != n and m != 1 and n != 1:
            raise ValueError(f"shapes {first} and {second} do not broadcast")
        rows.append(n if m == 1 else m)
    return tuple(rows)


def prepare(primals: Any, kwargs: Dict[str, Any], what: str) -> _Call:
    """Check the options and lay the primals out for the kernels."""
    unknown = sorted(set(kwargs) - set(OPTIONS))
    if unknown:
        raise TypeError(f"{what} of linear_scan: unexpected keyword arguments {unknown}; "
                        f"accepted: {', '.join(OPTIONS)}")
    a, b, h0 = _unpack(primals, what)
    rt = _result_dtype(a, b, h0, kwargs.get("dtype"))
    arrays = [None if v is None else np.asarray(v) for v in (a, b, h0)]
    # a Python scalar or an integer input takes the result dtype; cotangents
    # come back in native byte order, as every result does
    dtypes = tuple(v.dtype.newbyteorder("=") if isinstance(p, (np.ndarray, np.generic))
                   and v is not None and v.dtype.kind in "fc" else rt
                   for p, v in zip((a, b, h0), arrays))
    A, B = (np.asarray(v).astype(rt, copy=False) for v in arrays[:2])
    H0 = None if arrays[2] is None else arrays[2].astype(rt, copy=False)
    try:
        rows = _broadcast_shapes(A.shape, B.shape)
    except ValueError:
        raise ValueError(f"linear_scan: a with shape {A.shape} does not broadcast against b "
                         f"with shape {B.shape}") from None
    axis_arg = kwargs.get("axis")
    flat = axis_arg is None or len(rows) == 0
    axis = 0
    if flat:
        A, B = _flatten(A, rows), _flatten(B, rows)
    else:
        if not isinstance(axis_arg, (int, np.integer)) or isinstance(axis_arg, bool):
            raise TypeError(f"linear_scan: axis must be an integer or None; got {axis_arg!r}")
        axis = int(axis_arg)
        if not -len(rows) <= axis < len(rows):
            raise ValueError(f"linear_scan: axis {axis} is out of bounds for the result's "
                             f"{len(rows)} dimensions")
        axis %= len(rows)
    shapes = tuple(() if v is None else v.shape for v in arrays)
    return _Call(A, B, H0, shapes, dtypes, tuple(rows), flat, axis, rt, dict(kwargs))


def _state_shape(c: _Call) -> Tuple[int, ...]:
    """The shape of a state (h0, h_final): one per segment, then the rows
    without the axis."""
    rest = tuple(n for d, n in enumerate(c.scanned) if d != c.axis)
    cu = c.kw.get("cu_seqlens")
    return ((len(np.asarray(cu)) - 1,) if cu is not None else ()) + rest


def _empty_segments(c: _Call) -> Optional[np.ndarray]:
    """Which segments are empty (their final state is h0), or None for none."""
    cu = c.kw.get("cu_seqlens")
    if cu is not None:
        empty = np.diff(np.asarray(cu)) == 0
        return empty if empty.any() else None
    return np.array(True) if c.scanned[c.axis] == 0 else None


def _forward(c: _Call, inclusive: bool) -> np.ndarray:
    reverse, _, log_a = c.args()
    cu, chunk = c.segments()
    h = _C.linear_scan(c.a, c.b, c.h0, c.axis, reverse, inclusive, log_a, False, c.rt, None, cu,
                       chunk)
    return np.asarray(h)


def _a_broadcast_on_axis(c: _Call) -> bool:
    """Whether a's own shape is broadcast along the axis (absent or 1 there):
    then its cotangent is the sum along it.  An a given at full size is one
    input per position, even when its strides repeat one value."""
    shape = c.shapes[0]
    if c.flat:
        return int(np.prod(shape, dtype=np.int64)) == 1
    d = c.axis - (len(c.rows) - len(shape))
    return d < 0 or shape[d] == 1


def _kernel_vjp(c: _Call, y: np.ndarray, g: np.ndarray, g_final: Optional[np.ndarray],
                inclusive: bool, sum_a: bool = False
                ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(a_bar, b_bar, h0_bar) over the rows and the state shape.  With sum_a,
    an a constant along the axis gets a_bar summed along it in the kernel
    (then with 1 at the axis), which saves writing it whole."""
    reverse, _, log_a = c.args()
    cu, chunk = c.segments()
    ab, bb, h0b = _C.linear_scan_vjp(c.a, y, c.h0, g, g_final, c.axis, reverse, inclusive, log_a,
                                     c.rt, cu, chunk, sum_a and y.size > 0)
    if ab.shape != y.shape:
        ab = np.expand_dims(ab.sum(axis=0) if cu is not None else ab, c.axis)
    if h0b is not None and g_final is not None:
        empty = _empty_segments(c)
        if empty is not None:
            # an empty segment's final state is its h0
            gf = np.broadcast_to(g_final, h0b.shape)
            h0b[empty] += gf[empty]
    return ab, bb, h0b


def _cotangents(c: _Call, g: Any, what: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """g (and g_final with return_final) checked against the outputs."""
    g_final = None
    if c.kw.get("return_final", False):
        if not isinstance(g, (tuple, list)) or len(g) != 2:
            raise TypeError(f"{what} of linear_scan with return_final=True: the cotangent must "
                            f"be a pair (g, g_final) (g_final may be None); got "
                            f"{type(g).__name__}")
        g, g_final = g
    shape = c.scanned
    # (None, g_final): a cotangent of the final state alone
    g = np.zeros(shape, c.rt) if g is None else np.asarray(g)
    if g.shape != shape:
        raise ValueError(f"{what} of linear_scan: the cotangent g must have the output's shape "
                         f"{shape}; got {g.shape}")
    gf = None
    if g_final is not None:
        gf = np.asarray(g_final)
        fshape = _state_shape(c)
        if gf.shape != fshape:
            raise ValueError(f"{what} of linear_scan: the cotangent g_final must have the final "
                             f"state's shape {fshape}; got {gf.shape}")
    return g, gf


def _real_parts(fn: Callable[[Callable[[Any], Any]], Any], complex_in: bool, real_out: bool
                ) -> Any:
    """fn(take) for a map linear over the real numbers: with complex
    arguments of a real primal, its real and imaginary parts apart."""
    if not (complex_in and real_out):
        return fn(lambda v: v)
    re = fn(lambda v: None if v is None else np.ascontiguousarray(np.real(v)))
    im = fn(lambda v: None if v is None else np.ascontiguousarray(np.imag(v)))
    return _combine(re, im)


def _combine(re: Any, im: Any) -> Any:
    if re is None:
        return None
    if isinstance(re, tuple):
        return tuple(_combine(r, i) for r, i in zip(re, im))
    return re + 1j * im


def _is_complex(*vs: Any) -> bool:
    return any(v is not None and np.iscomplexobj(v) for v in vs)


def vjp(primals: Any, kwargs: Dict[str, Any]) -> Any:
    c = prepare(primals, kwargs, "vjp")
    reverse, inclusive, log_a = c.args()
    cu, chunk = c.segments()
    want_final = c.kw.get("return_final", False)
    out = _C.linear_scan(c.a, c.b, c.h0, c.axis, reverse, inclusive, log_a, want_final, c.rt,
                         None, cu, chunk)
    h, hf = (out if want_final else (out, None))
    y = (h, hf) if want_final else h

    def pullback(g: Any) -> Tuple[Any, ...]:
        gv, gf = _cotangents(c, g, "vjp")

        def run(take: Callable[[Any], Any]) -> Tuple[Any, ...]:
            ab, bb, h0b = _kernel_vjp(c, h, take(gv), take(gf), inclusive,
                                      sum_a=_a_broadcast_on_axis(c))
            return ab, bb, h0b

        full = _real_parts(run, _is_complex(gv, gf), c.rt.kind != "c")
        return tuple(c.reduce(k, full[k]) for k in range(3))

    return y, pullback


def _tangents(c: _Call, tangents: Any, what: str) -> List[Optional[np.ndarray]]:
    if not isinstance(tangents, (tuple, list)) or len(tangents) != 3:
        raise TypeError(f"{what} of linear_scan: the tangents must be a tuple (a_dot, b_dot, "
                        f"h0_dot); got {type(tangents).__name__}")
    out: List[Optional[np.ndarray]] = []
    for k, (name, t) in enumerate(zip(NAMES, tangents)):
        if t is None:
            out.append(None)
            continue
        if k == 2:
            if c.h0 is None:
                raise ValueError(f"{what} of linear_scan: h0 is None, so its tangent h0_dot must "
                                 "be None too")
            t = np.asarray(t)
            if t.shape != c.shapes[2]:
                raise ValueError(f"{what} of linear_scan: the tangent h0_dot must have the shape "
                                 f"of h0, {c.shapes[2]}; got {t.shape}")
            out.append(t)
        else:
            tv = np.asarray(t)
            if tv.shape != c.shapes[k]:
                raise ValueError(f"{what} of linear_scan: the tangent {name}_dot must have the "
                                 f"shape of {name}, {c.shapes[k]}; got {tv.shape}")
            out.append(tv)
    return out


def _rows_tangent(c: _Call, t: Optional[np.ndarray]) -> Optional[np.ndarray]:
    if t is None:
        return None
    t = t.astype(c.rt, copy=False)
    return _flatten(t, c.rows) if c.flat else t


def _kernel_jvp(c: _Call, ts: Sequence[Optional[np.ndarray]], inclusive: bool, want_final: bool
                ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    reverse, _, log_a = c.args()
    cu, chunk = c.segments()
    ad, bd, h0d = ts
    return _C.linear_scan_jvp(c.a, c.b, c.h0, _rows_tangent(c, ad), _rows_tangent(c, bd),
                              None if h0d is None else h0d.astype(c.rt, copy=False), c.axis,
                              reverse, inclusive, log_a, want_final, c.rt, cu, chunk)


def jvp(primals: Any, tangents: Any, kwargs: Dict[str, Any]) -> Any:
    c = prepare(primals, kwargs, "jvp")
    ts = _tangents(c, tangents, "jvp")
    inclusive = c.kw.get("inclusive", True)
    want_final = c.kw.get("return_final", False)

    primal: List[Any] = []  # (h, h_final), from the first run: not linear in the tangents

    def run(take: Callable[[Any], Any]) -> Tuple[Any, ...]:
        h, hd, hf, hdf = _kernel_jvp(c, [take(t) for t in ts], inclusive, want_final)
        if not primal:
            primal.extend((h, hf))
        return hd, hdf

    hd, hdf = _real_parts(run, _is_complex(*ts), c.rt.kind != "c")
    h, hf = primal
    if want_final:
        return (h, hf), (hd, hdf)
    return h, hd


def grad(primals: Any, cotangent: Any, kwargs: Dict[str, Any]) -> Any:
    y, pullback = vjp(primals, kwargs)
    if cotangent is None:
        if kwargs.get("return_final", False):
            cotangent = (np.ones_like(y[0]), np.ones_like(y[1]))
        else:
            cotangent = np.ones_like(y)
    return pullback(cotangent)


# the dtypes the kernels accumulate float16, float32 and complex64 in
_WIDER: Dict[np.dtype, np.dtype] = {
    np.dtype(np.float16): np.dtype(np.float32), np.dtype(np.float32): np.dtype(np.float64),
    np.dtype(np.complex64): np.dtype(np.complex128)}


def _widened(c: _Call) -> _Call:
    """c computed in the kernels' accumulation dtype: the second order chains
    five kernel passes and products between them, which would otherwise round
    to the result dtype at every step.  Results still come back in the inputs'
    dtypes (c.dtypes)."""
    wide = _WIDER.get(c.rt)
    if wide is None:
        return c
    return replace(c, a=c.a.astype(wide), b=c.b.astype(wide),
                   h0=None if c.h0 is None else c.h0.astype(wide), rt=wide)


def vjp_jvp(primals: Any, g: Any, tangents: Any, g_dot: Any, kwargs: Dict[str, Any]) -> Any:
    c = _widened(prepare(primals, kwargs, "vjp_jvp"))
    ts = _tangents(c, tangents, "vjp_jvp")
    if c.rt.kind != "c" and _is_complex(*ts):
        raise TypeError("vjp_jvp of linear_scan: the tangents of real primals must be real")
    reverse, inclusive, log_a = c.args()
    # the states before each step and their tangents (the exclusive JVP)
    hp, hpd, _, _ = _kernel_jvp(c, ts, False, False)
    y = hp if not inclusive else _forward(c, True)
    gv, gf = _cotangents(c, g, "vjp_jvp")
    gdv, gdf = (None, None) if g_dot is None else _cotangents(c, g_dot, "vjp_jvp")
    ad = _rows_tangent(c, ts[0])

    def run(take: Callable[[Any], Any]) -> Tuple[Tuple[Any, ...], Tuple[Any, ...]]:
        ab, lam, h0b = _kernel_vjp(c, y, take(gv), take(gf), inclusive)
        if gdv is not None:
            abd1, lamd, h0bd = _kernel_vjp(c, y, take(gdv), take(gdf), inclusive)
        else:
            lamd, h0bd = np.zeros_like(lam), None if h0b is None else np.zeros_like(h0b)
        a_rel = None
        if ad is not None:
            a_eff = ad
            if log_a:
                a_rel = np.exp(c.a)
                a_eff = a_rel * ad
            # the tangent of the output map's adjoint: E^H (conj(a_dot) lam),
            # whose h0 part is the conj(a_dot_0) lam_0 of each restart
            _, lam2, h0b2 = _kernel_vjp(c, hp, np.conj(a_eff) * lam, None, False)
            lamd = lamd + lam2
            if h0bd is not None and h0b2 is not None:
                h0bd = h0bd + h0b2
        abd = np.conj(hpd) * lam + np.conj(hp) * lamd
        if log_a:
            a = np.exp(c.a) if a_rel is None else a_rel
            abd = np.conj(a) * abd
            if ad is not None:
                abd = abd + np.conj(ad) * ab
        return (ab, lam, h0b), (abd, lamd, h0bd)

    complex_g = _is_complex(gv, gf, gdv, gdf)
    x_bar, x_bar_dot = _real_parts(run, complex_g, c.rt.kind != "c")
    return (tuple(c.reduce(k, x_bar[k]) for k in range(3)),
            tuple(c.reduce(k, x_bar_dot[k]) for k in range(3)))


def hvp(primals: Any, tangents: Any, cotangent: Any, kwargs: Dict[str, Any]) -> Any:
    if cotangent is None:
        c = prepare(primals, kwargs, "hvp")
        h = np.ones(c.scanned, c.rt)
        if kwargs.get("return_final", False):
            cotangent = (h, np.ones(_state_shape(c), c.rt))
        else:
            cotangent = h
    return vjp_jvp(primals, cotangent, tangents, None, kwargs)[1]
