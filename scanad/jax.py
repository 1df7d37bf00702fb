"""scanad's scans as JAX functions, differentiable to second order.

``import scanad.jax as sj`` gives :func:`cumsum`, :func:`cumprod`, :func:`cummax`,
:func:`cummin`, :func:`logcumsumexp`, :func:`chunk_local_cumsum` and
:func:`chunk_global_cumsum` on CPU ``jax.Array`` s.  They work under ``jax.jit``,
``jax.vmap``, ``jax.grad``, ``jax.jvp``, ``jax.vjp`` and ``jax.hessian``; the
kernels are scanad's C kernels, called on the host.  :func:`linear_scan` is
differentiable in all of ``a``, ``b`` and ``h0``.

Each op is a family of JAX primitives: the forward scan, its JVP ``J t``, its
transpose ``J^T g``, the derivative of that transpose (scanad's ``vjp_jvp``
kernel) and the derivative of the JVP.  Each primitive's JVP and transpose
rules name the others, so JAX composes them into every second-order mode
without a Jacobian; ``vmap`` prepends the batch as extra leading axes that
the kernels scan independently.  Third derivatives raise NotImplementedError.

>>> import jax.numpy as jnp, scanad.jax as sj
>>> sj.cumsum(jnp.array([1.0, 2.0, 3.0]), reverse=True)
Array([6., 5., 3.], dtype=float32)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from . import _chunk, _linear_ad
from ._linear import linear_scan as _np_linear_scan
from ._registry import OPS

__all__ = [
    "chunk_global_cumsum",
    "chunk_local_cumsum",
    "cummax",
    "cummin",
    "cumprod",
    "cumsum",
    "linear_scan",
    "logcumsumexp",
]

Params = Dict[str, Any]
# JAX's untyped constructors and helpers, called through Any
_Struct: Any = jax.ShapeDtypeStruct
_undefined: Any = ad.is_undefined_primal

# the ``cu`` parameter of a cu_seqlens passed as the primitives' last operand
TRACED = "traced"
# the second-order term of these ops is zero (linear, or a locally constant owner)
_PIECEWISE_LINEAR = ("cumsum", "cummax", "cummin")


# --- host side: NumPy arrays with ``nbatch`` leading vmap axes -----------------------

def _lines(a: np.ndarray, p: Params) -> Tuple[np.ndarray, Dict[str, Any]]:
    """``a`` as scanad sees it: flattened after the batch axes when axis is None,
    and scanad's options with the axis shifted past the batch axes."""
    nb = p["nbatch"]
    if p["axis"] is None:
        a = a.reshape(a.shape[:nb] + (-1,))
        axis = nb
    else:
        axis = nb + p["axis"]
    kw = {"axis": axis, "reverse": p["reverse"], "inclusive": p["inclusive"],
          "cu_seqlens": None if p["cu"] is None else np.asarray(p["cu"], dtype=np.int64),
          "chunk_size": p["chunk"]}
    return a, kw


def _host_forward(p: Params, x: np.ndarray) -> List[np.ndarray]:
    spec = OPS[p["op"]]
    a, kw = _lines(np.asarray(x), p)
    if p["op"] in ("cummax", "cummin"):
        y, idx = spec.fn(a, **kw, return_indices=True)
        return [np.asarray(y, p["dtype"]), np.asarray(idx, p["index_dtype"])]
    return [np.asarray(spec.fn(a, **kw), p["dtype"])]


def _host_jvp(p: Params, x: np.ndarray, t: np.ndarray) -> List[np.ndarray]:
    a, kw = _lines(np.asarray(x), p)
    tt, _ = _lines(np.asarray(t), p)
    return [np.asarray(OPS[p["op"]].jvp_rule(a, tt, kw)[1], a.dtype)]


def _conj(a: np.ndarray) -> np.ndarray:
    return np.conj(a) if a.dtype.kind == "c" else a


def _host_transpose(p: Params, x: np.ndarray, ct: np.ndarray) -> List[np.ndarray]:
    # JAX transposes: J^T ct, the conjugate of scanad's J^H applied to conj(ct)
    x = np.asarray(x)
    spec = OPS[p["op"]]
    a, kw = _lines(x, p)
    y = spec.fn(a, **kw)
    x_bar = _conj(spec.vjp_rule(a, y, _conj(np.asarray(ct, a.dtype)), kw))
    return [np.asarray(x_bar, x.dtype).reshape(x.shape)]


def _host_second(p: Params, x: np.ndarray, ct: np.ndarray, s: np.ndarray,
                 *ct_dot: np.ndarray) -> List[np.ndarray]:
    # d/de (J(x + e s)^T (ct + e ct_dot)), from scanad's vjp_jvp of J^H
    x = np.asarray(x)
    a, kw = _lines(x, p)
    ss, _ = _lines(np.asarray(s), p)
    g = _conj(np.asarray(ct, a.dtype))
    g_dot = _conj(np.asarray(ct_dot[0], a.dtype)) if ct_dot else None
    x_bar_dot = _conj(OPS[p["op"]].vjp_jvp_rule(a, ss, g, g_dot, kw)[1])
    return [np.asarray(x_bar_dot, x.dtype).reshape(x.shape)]


def _host_forward_second(p: Params, x: np.ndarray, t: np.ndarray,
                         s: np.ndarray) -> List[np.ndarray]:
    # d/de J(x + e s) t, the JVP of the JVP (symmetric in t and s)
    a, kw = _lines(np.asarray(x), p)
    tt, _ = _lines(np.asarray(t), p)
    ss, _ = _lines(np.asarray(s), p)
    jvp = OPS[p["op"]].jvp_rule
    if p["op"] == "logcumsumexp":
        # from d p_ji / d x_k = p_ji (delta_ik - p_jk), p_ji = exp(x_i - y_j)
        out = jvp(a, ss * tt, kw)[1] - jvp(a, ss, kw)[1] * jvp(a, tt, kw)[1]
    elif p["op"] == "cumprod":
        # differentiating Y'_j = Y'_{j-1} x_j + Y_{j-1} t_j along s gives
        # Z_j = Z_{j-1} x_j + Y'_{j-1}[t] s_j + Y'_{j-1}[s] t_j: a linear scan
        # over the exclusive JVPs, exact with zeros (no division)
        exclusive = {**kw, "inclusive": False}
        b = jvp(a, tt, exclusive)[1] * ss + jvp(a, ss, exclusive)[1] * tt
        out = _np_linear_scan(a, b, kw["axis"], reverse=kw["reverse"], inclusive=kw["inclusive"],
                          cu_seqlens=kw["cu_seqlens"], chunk_size=kw["chunk_size"])
    else:  # linear or piecewise linear: no second-order term
        out = np.zeros(a.shape, a.dtype)
    return [np.asarray(out, a.dtype)]


def _host_chunk(p: Params, x: np.ndarray) -> List[np.ndarray]:
    # vmap axes go last, merged into the trailing lane axis the layouts allow
    x = np.asarray(x)
    nb = p["nbatch"]
    a = x
    if nb:
        batch = x.shape[:nb]
        a = np.moveaxis(x, tuple(range(nb)), tuple(range(-nb, 0)))
        core = a.shape[:x.ndim - nb]
        a = a.reshape(core + (-1,) if len(core) == 3 else core[:3] + (-1,))
    fn = getattr(_chunk, p["op"])
    kw: Dict[str, Any] = {"reverse": p["reverse"], "scale": p["scale"],
                          "cu_seqlens": None if p["cu"] is None else np.asarray(p["cu"]),
                          "head_first": p["head_first"], "output_dtype": p["dtype"]}
    if p["op"] == "chunk_local_cumsum":
        kw["chunk_size"] = p["chunk"]
    y = np.asarray(fn(a, **kw), p["dtype"])
    if nb:
        core = x.shape[nb:]
        y = y.reshape(core + batch)
        y = np.moveaxis(y, tuple(range(-nb, 0)), tuple(range(nb)))
    return [np.ascontiguousarray(y)]


def _with_cu(host: Callable[..., List[np.ndarray]]) -> Callable[..., List[np.ndarray]]:
    """``host`` taking a traced cu_seqlens as its last operand (vmap broadcasts it
    to the batch like the other operands)."""
    def run(p: Params, *args: np.ndarray) -> List[np.ndarray]:
        if p["cu"] != TRACED:
            return host(p, *args)
        *arrays, cu = args
        cu = np.asarray(cu)
        nb = p["nbatch"]
        if cu.size == 0 or nb == 0 or bool(np.all(cu == cu[(0,) * nb])):
            row = cu.reshape(-1, cu.shape[-1])[0] if cu.size else None
            return host({**p, "cu": None if row is None else tuple(int(v) for v in row)},
                        *arrays)
        # a different cu_seqlens per vmapped example: one call each
        batch = cu.shape[:nb]
        outs = [host({**p, "cu": tuple(int(v) for v in cu[i]), "nbatch": 0},
                     *(a[i] for a in arrays)) for i in np.ndindex(*batch)]
        return [np.stack([o[k] for o in outs]).reshape(batch + outs[0][k].shape)
                for k in range(len(outs[0]))]
    return run


# --- primitives ----------------------------------------------------------------------

def _out_shape(shape: Tuple[int, ...], p: Params) -> Tuple[int, ...]:
    nb = p["nbatch"]
    if p.get("axis", 0) is None:
        return tuple(shape[:nb]) + (int(np.prod(shape[nb:], dtype=np.int64)),)
    return tuple(shape)


def _make(name: str, host: Callable[..., List[np.ndarray]],
          avals: Callable[..., List[jax.ShapeDtypeStruct]]) -> Any:
    # typed Any: JAX's Primitive methods are untyped
    prim: Any = Primitive(f"scanad_{name}")
    prim.multiple_results = True
    host = _with_cu(host)

    def impl(*args: Any, **p: Any) -> List[jax.Array]:
        # eager: straight to the kernels (a callback would compile a program per call)
        return [jnp.asarray(a) for a in host(p, *(np.asarray(a) for a in args))]

    def staged(*args: Any, **p: Any) -> List[jax.Array]:
        out = avals(*args, **p)
        return list(jax.pure_callback(functools.partial(host, p), out, *args))

    def abstract(*args: Any, **p: Any) -> List[jax.core.ShapedArray]:
        return [jax.core.ShapedArray(s.shape, s.dtype) for s in avals(*args, **p)]

    def batch(args: Sequence[Any], dims: Sequence[Any], **p: Any) -> Tuple[Any, List[int]]:
        size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
        front = [jnp.broadcast_to(a, (size,) + a.shape) if d is None
                 else jnp.moveaxis(a, d, 0) for a, d in zip(args, dims)]
        out = prim.bind(*front, **{**p, "nbatch": p["nbatch"] + 1})
        return out, [0] * len(out)

    prim.def_impl(impl)
    prim.def_abstract_eval(abstract)
    batching.primitive_batchers[prim] = batch
    mlir.register_lowering(prim, mlir.lower_fun(staged, multiple_results=True), platform="cpu")
    return prim


def _same_as_first(x: Any, *_: Any, **__: Any) -> List[jax.ShapeDtypeStruct]:
    return [_Struct(x.shape, x.dtype)]


def _forward_avals(x: Any, *_: Any, **p: Any) -> List[jax.ShapeDtypeStruct]:
    out = [_Struct(_out_shape(x.shape, p), p["dtype"])]
    if p["op"] in ("cummax", "cummin"):
        out.append(_Struct(out[0].shape, p["index_dtype"]))
    return out


def _jvp_avals(x: Any, *_: Any, **p: Any) -> List[jax.ShapeDtypeStruct]:
    return [_Struct(_out_shape(x.shape, p), x.dtype)]


def _chunk_avals(x: Any, *_: Any, **p: Any) -> List[jax.ShapeDtypeStruct]:
    return [_Struct(x.shape, p["dtype"])]


forward_p = _make("scan", _host_forward, _forward_avals)
jvp_p = _make("scan_jvp", _host_jvp, _jvp_avals)
transpose_p = _make("scan_transpose", _host_transpose, _same_as_first)
second_p = _make("scan_second_order", _host_second, _same_as_first)
forward_second_p = _make("scan_forward_second_order", _host_forward_second, _jvp_avals)
chunk_p = _make("chunk_cumsum", _host_chunk, _chunk_avals)


def _zero(x: Any) -> ad.Zero:
    aval: Any = jax.core.ShapedArray(np.shape(x), x.dtype)
    return ad.Zero(aval.to_tangent_aval())


def _is_zero(t: Any) -> bool:
    return type(t) is ad.Zero


def _derivative_params(p: Params) -> Params:
    return {k: v for k, v in p.items() if k not in ("dtype", "index_dtype")}


def _split(args: Sequence[Any], p: Params) -> Tuple[List[Any], List[Any]]:
    """The array operands and the traced cu_seqlens operand (an empty list when static)."""
    n = len(args) - (1 if p["cu"] == TRACED else 0)
    return list(args[:n]), list(args[n:])


def _forward_jvp(primals: Sequence[Any], tangents: Sequence[Any], **p: Any
                 ) -> Tuple[List[Any], List[Any]]:
    (x,), cu = _split(primals, p)
    t = tangents[0]
    out = forward_p.bind(x, *cu, **p)
    if _is_zero(t) or not jnp.issubdtype(x.dtype, jnp.inexact):
        return out, [_zero(o) for o in out]
    y_dot = jvp_p.bind(x, t, *cu, **_derivative_params(p))
    return out, y_dot + [_zero(o) for o in out[1:]]


def _not_supported(p: Params, what: str) -> NotImplementedError:
    return NotImplementedError(
        f"scanad.jax.{p['op']}: {what} is not implemented (scanad has kernels up to second "
        "order: the JVP, the VJP and the JVP of the VJP, as jax.hessian uses)")


def _jvp_jvp(primals: Sequence[Any], tangents: Sequence[Any], **p: Any
             ) -> Tuple[List[Any], List[Any]]:
    (x, t), cu = _split(primals, p)
    x_dot, t_dot = tangents[:2]
    out = jvp_p.bind(x, t, *cu, **p)
    terms = []
    if not _is_zero(t_dot):
        terms.append(jvp_p.bind(x, t_dot, *cu, **p)[0])
    if not _is_zero(x_dot) and p["op"] not in _PIECEWISE_LINEAR:
        terms.append(forward_second_p.bind(x, t, x_dot, *cu, **p)[0])
    if not terms:
        return out, [_zero(out[0])]
    return out, [functools.reduce(jnp.add, terms)]


def _forward_second_jvp(primals: Sequence[Any], tangents: Sequence[Any], **p: Any
                        ) -> Tuple[List[Any], List[Any]]:
    (x, t, s), cu = _split(primals, p)
    out = forward_second_p.bind(x, t, s, *cu, **p)
    if not _is_zero(tangents[0]):
        raise _not_supported(p, "a third derivative")
    # bilinear in (t, s)
    terms = [forward_second_p.bind(x, a, b, *cu, **p)[0]
             for a, b in ((tangents[1], s), (t, tangents[2]))
             if not (_is_zero(a) or _is_zero(b))]
    if not terms:
        return out, [_zero(out[0])]
    return out, [functools.reduce(jnp.add, terms)]


def _forward_second_transpose(cts: Sequence[Any], *args: Any, **p: Any) -> List[Any]:
    # (t, s) -> sum_ik d2y/dx_i dx_k t_i s_k; for a fixed t its transpose in s maps w to
    # sum_j w_j hess(y_j) t, the second-order kernel's map (and likewise in t)
    (x, t, s), cu = _split(args, p)
    (w,) = cts
    if _undefined(x) or (_undefined(t) and _undefined(s)):
        raise _not_supported(p, "transposing the JVP of the JVP in x or in both directions")
    rest = [None] * len(cu)
    if _is_zero(w):
        return [None, None, None] + rest
    if _undefined(t):
        return [None, second_p.bind(x, w, s, *cu, **p)[0], None] + rest
    return [None, None, second_p.bind(x, w, t, *cu, **p)[0]] + rest


def _jvp_transpose(cts: Sequence[Any], *args: Any, **p: Any) -> List[Any]:
    (x, t), cu = _split(args, p)
    (ct,) = cts
    if _undefined(x):
        raise _not_supported(p, "transposing the JVP with respect to the primal")
    rest = [None] * len(cu)
    if _is_zero(ct):
        return [None, None] + rest
    return [None, transpose_p.bind(x, ct, *cu, **p)[0]] + rest


def _transpose_jvp(primals: Sequence[Any], tangents: Sequence[Any], **p: Any
                   ) -> Tuple[List[Any], List[Any]]:
    (x, ct), cu = _split(primals, p)
    x_dot, ct_dot = tangents[:2]
    out = transpose_p.bind(x, ct, *cu, **p)
    if _is_zero(x_dot) or p["op"] == "cumsum":
        if _is_zero(ct_dot):
            return out, [_zero(out[0])]
        return out, transpose_p.bind(x, ct_dot, *cu, **p)
    if _is_zero(ct_dot):
        return out, second_p.bind(x, ct, x_dot, *cu, **p)
    return out, second_p.bind(x, ct, x_dot, ct_dot, *cu, **p)


def _transpose_transpose(cts: Sequence[Any], *args: Any, **p: Any) -> List[Any]:
    (x, ct), cu = _split(args, p)
    (w,) = cts
    if _undefined(x):
        raise _not_supported(p, "transposing the VJP with respect to the primal")
    rest = [None] * len(cu)
    if _is_zero(w):
        return [None, None] + rest
    return [None, jvp_p.bind(x, w, *cu, **p)[0]] + rest


def _second_jvp(primals: Sequence[Any], tangents: Sequence[Any], **p: Any
                ) -> Tuple[List[Any], List[Any]]:
    # linear in s and ct_dot; a tangent of x or ct would be a third derivative
    core, cu = _split(primals, p)
    out = second_p.bind(*core, *cu, **p)
    # for piecewise-linear ops the map is J^T ct_dot alone: constant in x and ct
    if not (_is_zero(tangents[0]) and _is_zero(tangents[1])) \
            and p["op"] not in _PIECEWISE_LINEAR:
        raise _not_supported(p, "a third derivative")
    x, ct = core[:2]
    lin = list(tangents[2:len(core)])
    if all(_is_zero(t) for t in lin):
        return out, [_zero(out[0])]
    s_dot = jnp.zeros_like(x) if _is_zero(lin[0]) else lin[0]
    if len(lin) > 1 and not _is_zero(lin[1]):
        return out, second_p.bind(x, ct, s_dot, lin[1], *cu, **p)
    return out, second_p.bind(x, ct, s_dot, *cu, **p)


def _second_transpose(cts: Sequence[Any], *args: Any, **p: Any) -> List[Any]:
    # d/de J(x + e s)^T (ct + e ct_dot) = H s + J^T ct_dot with H = sum_j ct_j
    # hess(y_j) symmetric: the transpose maps w to (H w, J w)
    core, cu = _split(args, p)
    x, ct, s = core[:3]
    (w,) = cts
    if _undefined(x) or _undefined(ct):
        raise _not_supported(p, "transposing the second-order map in x or the cotangent")
    if _is_zero(w):
        return [None] * len(args)
    out = [None, None, second_p.bind(x, ct, w, *cu, **p)[0] if _undefined(s) else None]
    if len(core) > 3:
        out.append(jvp_p.bind(x, w, *cu, **p)[0] if _undefined(core[3]) else None)
    return out + [None] * len(cu)


def _chunk_jvp(primals: Sequence[Any], tangents: Sequence[Any], **p: Any
               ) -> Tuple[List[Any], List[Any]]:
    (x,), cu = _split(primals, p)
    t = tangents[0]
    out = chunk_p.bind(x, *cu, **p)
    if _is_zero(t):
        return out, [_zero(out[0])]
    return out, chunk_p.bind(t, *cu, **p)


def _chunk_transpose(cts: Sequence[Any], *args: Any, **p: Any) -> List[Any]:
    # a scaled segmented cumsum: its transpose runs the other way, same segments and scale
    (x,), cu = _split(args, p)
    (ct,) = cts
    rest = [None] * len(cu)
    if _is_zero(ct):
        return [None] + rest
    dtype = x.aval.dtype if _undefined(x) else x.dtype
    flipped = {**p, "reverse": not p["reverse"], "dtype": np.dtype(dtype)}
    return [chunk_p.bind(ct, *cu, **flipped)[0]] + rest


ad.primitive_jvps[forward_p] = _forward_jvp
ad.primitive_jvps[jvp_p] = _jvp_jvp
ad.primitive_transposes[jvp_p] = _jvp_transpose
ad.primitive_jvps[transpose_p] = _transpose_jvp
ad.primitive_transposes[transpose_p] = _transpose_transpose
ad.primitive_jvps[second_p] = _second_jvp
ad.primitive_jvps[forward_second_p] = _forward_second_jvp
ad.primitive_transposes[forward_second_p] = _forward_second_transpose
ad.primitive_transposes[second_p] = _second_transpose
ad.primitive_jvps[chunk_p] = _chunk_jvp
ad.primitive_transposes[chunk_p] = _chunk_transpose


# --- linear_scan: three differentiable operands --------------------------------------
#
# The public function promotes a, b and h0 to one dtype, broadcasts a and b to one
# shape (flattened for axis None) and h0 to the state shape, so the primitives see
# full arrays whose vmap axes simply lead.  Their operands come in groups:
#   x = (a, b[, h0])         h0 when p["h0"]
#   y = (h[, h_final])       h_final when p["final"]
# ls_p(x) -> y, ls_jvp_p(x, t) -> J t, ls_transpose_p(x, ct) -> J^T ct,
# ls_second_p(x, ct, s, ct_dot) -> d/de J(x + e s)^T (ct + e ct_dot) and
# ls_forward_second_p(x, t, s) -> d/de J(x + e s) t; a traced cu_seqlens comes last.
# A state array is (batch..., [segment,] rest...) here and (segment, batch..., rest...)
# in scanad, which puts the segment axis first.

def _ls_sizes(p: Params) -> Tuple[int, int]:
    return 2 + int(p["h0"]), 1 + int(p["final"])


def _ls_groups(p: Params, args: Sequence[Any], kinds: str) -> Tuple[List[List[Any]], List[Any]]:
    """args cut into the groups named by kinds ("x" or "y"), and the traced cu_seqlens."""
    nx, ny = _ls_sizes(p)
    groups, i = [], 0
    for kind in kinds:
        n = nx if kind == "x" else ny
        groups.append(list(args[i:i + n]))
        i += n
    return groups, list(args[i:])


def _ls_kw(p: Params) -> Dict[str, Any]:
    return {"axis": p["nbatch"] + p["axis"], "reverse": p["reverse"],
            "inclusive": p["inclusive"], "log_a": p["log_a"], "return_final": p["final"],
            "cu_seqlens": None if p["cu"] is None else np.asarray(p["cu"], dtype=np.int64),
            "chunk_size": p["chunk"]}


def _state_in(p: Params, s: np.ndarray) -> np.ndarray:
    if p["cu"] is None or p["nbatch"] == 0:
        return s
    return np.moveaxis(s, p["nbatch"], 0)


def _state_out(p: Params, s: np.ndarray) -> np.ndarray:
    # np.asarray(order="C"), not np.ascontiguousarray: that makes a 0-d state 1-d
    if p["cu"] is None or p["nbatch"] == 0:
        return np.asarray(s, order="C")
    return np.asarray(np.moveaxis(s, 0, p["nbatch"]), order="C")


def _triple(p: Params, xs: Sequence[Any]) -> Tuple[Any, Any, Any]:
    """An x group as scanad's (a, b, h0)."""
    v = [np.asarray(u) for u in xs]
    return v[0], v[1], _state_in(p, v[2]) if p["h0"] else None


def _cotangent(p: Params, ys: Sequence[Any]) -> Any:
    """A y group as scanad's cotangent, conjugated: JAX's J^T g is conj(J^H conj(g))."""
    g = _conj(np.asarray(ys[0]))
    return (g, _state_in(p, _conj(np.asarray(ys[1])))) if p["final"] else g


def _x_out(p: Params, bars: Sequence[Any], dtype: np.dtype) -> List[np.ndarray]:
    out = [np.asarray(_conj(np.asarray(v)), dtype) for v in bars[:2]]
    if p["h0"]:
        out.append(_state_out(p, np.asarray(_conj(np.asarray(bars[2])), dtype)))
    return out


def _y_out(p: Params, y: Any, dtype: np.dtype) -> List[np.ndarray]:
    if p["final"]:
        return [np.asarray(y[0], dtype), _state_out(p, np.asarray(y[1], dtype))]
    return [np.asarray(y, dtype)]


def _ls_host_forward(p: Params, *args: np.ndarray) -> List[np.ndarray]:
    (x,), _ = _ls_groups(p, args, "x")
    a, b, h0 = _triple(p, x)
    kw = _ls_kw(p)
    y = _np_linear_scan(a, b, kw.pop("axis"), h0=h0, **kw)
    return _y_out(p, y, a.dtype)


def _ls_host_jvp(p: Params, *args: np.ndarray) -> List[np.ndarray]:
    (x, t), _ = _ls_groups(p, args, "xx")
    xs = _triple(p, x)
    return _y_out(p, _linear_ad.jvp(xs, _triple(p, t), _ls_kw(p))[1], xs[0].dtype)


def _ls_host_transpose(p: Params, *args: np.ndarray) -> List[np.ndarray]:
    (x, ct), _ = _ls_groups(p, args, "xy")
    xs = _triple(p, x)
    _, pullback = _linear_ad.vjp(xs, _ls_kw(p))
    return _x_out(p, pullback(_cotangent(p, ct)), xs[0].dtype)


def _ls_host_second(p: Params, *args: np.ndarray) -> List[np.ndarray]:
    (x, ct, s, ct_dot), _ = _ls_groups(p, args, "xyxy")
    xs = _triple(p, x)
    _, x_bar_dot = _linear_ad.vjp_jvp(xs, _cotangent(p, ct), _triple(p, s),
                                      _cotangent(p, ct_dot), _ls_kw(p))
    return _x_out(p, x_bar_dot, xs[0].dtype)


def _ls_host_forward_second(p: Params, *args: np.ndarray) -> List[np.ndarray]:
    # J t is itself a linear scan: the states' tangent runs with the decays a from
    # h0_dot on the source a_dot h_prev + b_dot (a_dot exp(a) with log_a), h_prev the
    # state before each step (the exclusive output, restarts included); so its
    # derivative along s is that scan's JVP with the source's tangent
    (x, t, s), _ = _ls_groups(p, args, "xxx")
    a, b, h0 = _triple(p, x)
    a_dot, b_dot, h0_dot = _triple(p, t)
    s_triple = _triple(p, s)
    kw = _ls_kw(p)
    h_prev, h_prev_s = _linear_ad.jvp((a, b, h0), s_triple,
                                      {**kw, "inclusive": False, "return_final": False})
    if p["log_a"]:
        decay = np.exp(a)
        rate = decay * a_dot
        source_s = rate * (s_triple[0] * h_prev + h_prev_s)
    else:
        rate = a_dot
        source_s = rate * h_prev_s
    source = rate * h_prev + b_dot
    _, out = _linear_ad.jvp((a, source, h0_dot), (s_triple[0], source_s, None), kw)
    return _y_out(p, out, a.dtype)


def _ls_state_shape(p: Params, a: Any, cu: Sequence[Any]) -> Tuple[int, ...]:
    nb, shape = p["nbatch"], tuple(a.shape)
    rest = shape[nb:nb + p["axis"]] + shape[nb + p["axis"] + 1:]
    if p["cu"] is None:
        return shape[:nb] + rest
    nseg = cu[0].shape[-1] - 1 if p["cu"] == TRACED else len(p["cu"]) - 1
    return shape[:nb] + (nseg,) + rest


def _ls_y_avals(*args: Any, **p: Any) -> List[jax.ShapeDtypeStruct]:
    a = args[0]
    out = [_Struct(a.shape, a.dtype)]
    if p["final"]:
        cu = list(args[-1:]) if p["cu"] == TRACED else []
        out.append(_Struct(_ls_state_shape(p, a, cu), a.dtype))
    return out


def _ls_x_avals(*args: Any, **p: Any) -> List[jax.ShapeDtypeStruct]:
    return [_Struct(v.shape, v.dtype) for v in args[:_ls_sizes(p)[0]]]


ls_p = _make("linear_scan", _ls_host_forward, _ls_y_avals)
ls_jvp_p = _make("linear_scan_jvp", _ls_host_jvp, _ls_y_avals)
ls_transpose_p = _make("linear_scan_transpose", _ls_host_transpose, _ls_x_avals)
ls_second_p = _make("linear_scan_second_order", _ls_host_second, _ls_x_avals)
ls_forward_second_p = _make("linear_scan_forward_second_order", _ls_host_forward_second,
                            _ls_y_avals)


def _dense(vs: Sequence[Any]) -> List[Any]:
    """Symbolic zeros as arrays: the kernels take every operand of a group."""
    return [jnp.zeros(v.aval.shape, v.aval.dtype) if _is_zero(v) else v for v in vs]


def _all_zero(vs: Sequence[Any]) -> bool:
    return all(_is_zero(v) for v in vs)


def _zeros(vs: Sequence[Any]) -> List[Any]:
    return [jnp.zeros(np.shape(v), v.dtype) for v in vs]


def _add(terms: List[List[Any]], like: Sequence[Any]) -> List[Any]:
    if not terms:
        return [_zero(v) for v in like]
    return [functools.reduce(jnp.add, parts) for parts in zip(*terms)]


def _ls_forward_jvp(primals: Sequence[Any], tangents: Sequence[Any], **p: Any
                    ) -> Tuple[List[Any], List[Any]]:
    (x,), cu = _ls_groups(p, primals, "x")
    out = ls_p.bind(*x, *cu, **p)
    t = tangents[:len(x)]
    if _all_zero(t):
        return out, [_zero(o) for o in out]
    return out, ls_jvp_p.bind(*x, *_dense(t), *cu, **p)


def _ls_jvp_jvp(primals: Sequence[Any], tangents: Sequence[Any], **p: Any
                ) -> Tuple[List[Any], List[Any]]:
    # bilinear: linear in t, and d/de J(x + e x_dot) t along the primals
    (x, t), cu = _ls_groups(p, primals, "xx")
    (x_dot, t_dot), _ = _ls_groups(p, tangents, "xx")
    out = ls_jvp_p.bind(*x, *t, *cu, **p)
    terms = []
    if not _all_zero(t_dot):
        terms.append(ls_jvp_p.bind(*x, *_dense(t_dot), *cu, **p))
    if not _all_zero(x_dot):
        terms.append(ls_forward_second_p.bind(*x, *t, *_dense(x_dot), *cu, **p))
    return out, _add(terms, out)


def _ls_jvp_transpose(cts: Sequence[Any], *args: Any, **p: Any) -> List[Any]:
    (x, t), cu = _ls_groups(p, args, "xx")
    if any(_undefined(v) for v in x):
        raise _not_supported(p, "transposing the JVP with respect to the primals")
    if _all_zero(cts):
        return [None] * len(args)
    bars = ls_transpose_p.bind(*x, *_dense(cts), *cu, **p)
    return ([None] * len(x) + [bar if _undefined(v) else None for bar, v in zip(bars, t)]
            + [None] * len(cu))


def _ls_transpose_jvp(primals: Sequence[Any], tangents: Sequence[Any], **p: Any
                      ) -> Tuple[List[Any], List[Any]]:
    (x, ct), cu = _ls_groups(p, primals, "xy")
    (x_dot, ct_dot), _ = _ls_groups(p, tangents, "xy")
    out = ls_transpose_p.bind(*x, *ct, *cu, **p)
    if _all_zero(x_dot):
        if _all_zero(ct_dot):
            return out, [_zero(o) for o in out]
        return out, ls_transpose_p.bind(*x, *_dense(ct_dot), *cu, **p)
    return out, ls_second_p.bind(*x, *ct, *_dense(x_dot), *_dense(ct_dot), *cu, **p)


def _ls_transpose_transpose(cts: Sequence[Any], *args: Any, **p: Any) -> List[Any]:
    (x, ct), cu = _ls_groups(p, args, "xy")
    if any(_undefined(v) for v in x):
        raise _not_supported(p, "transposing the VJP with respect to the primals")
    if _all_zero(cts):
        return [None] * len(args)
    ys = ls_jvp_p.bind(*x, *_dense(cts), *cu, **p)
    return ([None] * len(x) + [y if _undefined(v) else None for y, v in zip(ys, ct)]
            + [None] * len(cu))


def _ls_second_jvp(primals: Sequence[Any], tangents: Sequence[Any], **p: Any
                   ) -> Tuple[List[Any], List[Any]]:
    # H[ct] s + J^T ct_dot: linear in (s, ct_dot) and in ct, whose direction c adds
    # H[c] s; a tangent of x would be a third derivative
    (x, ct, s, ct_dot), cu = _ls_groups(p, primals, "xyxy")
    (x_t, ct_t, s_t, ct_dot_t), _ = _ls_groups(p, tangents, "xyxy")
    out = ls_second_p.bind(*x, *ct, *s, *ct_dot, *cu, **p)
    if not _all_zero(x_t):
        raise _not_supported(p, "a third derivative")
    terms = []
    if not (_all_zero(s_t) and _all_zero(ct_dot_t)):
        terms.append(ls_second_p.bind(*x, *ct, *_dense(s_t), *_dense(ct_dot_t), *cu, **p))
    if not _all_zero(ct_t):
        terms.append(ls_second_p.bind(*x, *_dense(ct_t), *s, *_zeros(ct), *cu, **p))
    return out, _add(terms, out)


def _ls_second_transpose(cts: Sequence[Any], *args: Any, **p: Any) -> List[Any]:
    # (s, ct_dot) -> H s + J^T ct_dot with H the symmetric Hessian of <ct, y>:
    # the transpose maps w to (H w, J w)
    (x, ct, s, ct_dot), cu = _ls_groups(p, args, "xyxy")
    if any(_undefined(v) for v in (*x, *ct)):
        raise _not_supported(p, "transposing the second-order map in the primals or the "
                             "cotangent")
    if _all_zero(cts):
        return [None] * len(args)
    w = _dense(cts)
    s_bar: List[Any] = [None] * len(s)
    if any(_undefined(v) for v in s):
        hw = ls_second_p.bind(*x, *ct, *w, *_zeros(ct), *cu, **p)
        s_bar = [h if _undefined(v) else None for h, v in zip(hw, s)]
    ct_dot_bar: List[Any] = [None] * len(ct_dot)
    if any(_undefined(v) for v in ct_dot):
        jw = ls_jvp_p.bind(*x, *w, *cu, **p)
        ct_dot_bar = [j if _undefined(v) else None for j, v in zip(jw, ct_dot)]
    return [None] * (len(x) + len(ct)) + s_bar + ct_dot_bar + [None] * len(cu)


def _ls_forward_second_jvp(primals: Sequence[Any], tangents: Sequence[Any], **p: Any
                           ) -> Tuple[List[Any], List[Any]]:
    (x, t, s), cu = _ls_groups(p, primals, "xxx")
    (x_t, t_t, s_t), _ = _ls_groups(p, tangents, "xxx")
    out = ls_forward_second_p.bind(*x, *t, *s, *cu, **p)
    if not _all_zero(x_t):
        raise _not_supported(p, "a third derivative")
    terms = [ls_forward_second_p.bind(*x, *_dense(u), *_dense(v), *cu, **p)
             for u, v in ((t_t, s), (t, s_t)) if not (_all_zero(u) or _all_zero(v))]
    return out, _add(terms, out)


def _ls_forward_second_transpose(cts: Sequence[Any], *args: Any, **p: Any) -> List[Any]:
    # for a fixed t, s -> H s t has the transpose w -> H[w] t (H symmetric), and
    # likewise in t: the second-order map with the cotangent w
    (x, t, s), cu = _ls_groups(p, args, "xxx")
    t_open, s_open = any(_undefined(v) for v in t), any(_undefined(v) for v in s)
    if any(_undefined(v) for v in x) or (t_open and s_open):
        raise _not_supported(p, "transposing the JVP of the JVP in the primals or in both "
                             "directions")
    if _all_zero(cts):
        return [None] * len(args)
    w = _dense(cts)
    other, open_ = (s, t) if t_open else (t, s)
    bars = ls_second_p.bind(*x, *w, *other, *_zeros(w), *cu, **p)
    opened = [bar if _undefined(v) else None for bar, v in zip(bars, open_)]
    closed: List[Any] = [None] * len(other)
    return [None] * len(x) + (opened + closed if t_open else closed + opened) + [None] * len(cu)


ad.primitive_jvps[ls_p] = _ls_forward_jvp
ad.primitive_jvps[ls_jvp_p] = _ls_jvp_jvp
ad.primitive_transposes[ls_jvp_p] = _ls_jvp_transpose
ad.primitive_jvps[ls_transpose_p] = _ls_transpose_jvp
ad.primitive_transposes[ls_transpose_p] = _ls_transpose_transpose
ad.primitive_jvps[ls_second_p] = _ls_second_jvp
ad.primitive_transposes[ls_second_p] = _ls_second_transpose
ad.primitive_jvps[ls_forward_second_p] = _ls_forward_second_jvp
ad.primitive_transposes[ls_forward_second_p] = _ls_forward_second_transpose


# --- argument checks -----------------------------------------------------------------

def _as_array(name: str, x: Any, arg: str = "x") -> jax.Array:
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        platforms = {d.platform for d in x.devices()}
        if platforms != {"cpu"}:
            raise ValueError(f"scanad.jax.{name}: {arg} must be on the CPU (scanad's kernels run "
                             f"on the host); got an array on {sorted(platforms)}")
    return jnp.asarray(x)


def _segments(name: str, value: Any) -> Tuple[Any, List[Any]]:
    """cu_seqlens as the ``cu`` parameter (a tuple, None or TRACED) and the
    operands to pass (the traced array, or none)."""
    if value is None:
        return None, []
    if isinstance(value, (list, tuple)) and any(isinstance(v, jax.core.Tracer) for v in value):
        value = jnp.stack(value)  # e.g. a list passed through jax.jit
    a = value if isinstance(value, jax.core.Tracer) else np.asarray(value)
    if a.ndim != 1 or not jnp.issubdtype(a.dtype, jnp.integer):
        raise TypeError(f"scanad.jax.{name}: cu_seqlens must be a 1-D array of integers; got "
                        f"dtype {a.dtype} and shape {a.shape}")
    if isinstance(a, jax.core.Tracer):
        return TRACED, [a]
    return tuple(int(v) for v in a), []


@functools.lru_cache(maxsize=256)
def _checked_scan(op: str, dtype: np.dtype, length: int, reverse: bool, inclusive: bool,
                  cu: Optional[Tuple[int, ...]], chunk: Any) -> Tuple[np.dtype, np.dtype]:
    """Run scanad on one line of the scan's length, so that bad options raise
    scanad's own errors at trace time; returns the result and index dtypes."""
    probe = np.zeros(length, dtype)
    y = OPS[op].fn(probe, 0, reverse=reverse, inclusive=inclusive,
                   cu_seqlens=None if cu is None else np.asarray(cu), chunk_size=chunk)
    canon = jax.dtypes.canonicalize_dtype
    return np.dtype(canon(y.dtype)), np.dtype(canon(np.int64))


def _scan(op: str, x: Any, axis: Optional[int], reverse: bool, inclusive: bool,
          cu_seqlens: Any, chunk_size: Any) -> List[jax.Array]:
    x = _as_array(op, x)
    if x.ndim == 0:
        x = x.reshape(1)
    if axis is not None:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"scanad.jax.{op}: axis must be an integer or None; got {axis!r}")
        if not -x.ndim <= axis < x.ndim:
            raise np.exceptions.AxisError(int(axis), x.ndim)
        axis = int(axis) % x.ndim
    for arg, flag in (("reverse", reverse), ("inclusive", inclusive)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"scanad.jax.{op}: {arg} must be a bool; got {flag!r}")
    if x.dtype == jnp.bfloat16 or np.dtype(x.dtype).name not in OPS[op].dtypes_forward:
        kinds = ", ".join(OPS[op].dtypes_forward)
        raise TypeError(f"scanad.jax.{op}: x must have one of the dtypes {kinds}; "
                        f"got {x.dtype}")
    cu, operands = _segments(op, cu_seqlens)
    length = x.size if axis is None else x.shape[axis]
    # a traced cu_seqlens is checked by the kernels when the values arrive
    dtype, index_dtype = _checked_scan(op, np.dtype(x.dtype), int(length), bool(reverse),
                                       bool(inclusive), None if cu == TRACED else cu,
                                       chunk_size)
    return list(forward_p.bind(x, *operands, op=op, axis=axis, reverse=bool(reverse),
                               inclusive=bool(inclusive), cu=cu,
                               chunk=None if chunk_size is None else int(chunk_size),
                               nbatch=0, dtype=dtype, index_dtype=index_dtype))


# --- public functions ----------------------------------------------------------------

def cumsum(x: Any, axis: Optional[int] = None, *, reverse: bool = False,
           inclusive: bool = True, cu_seqlens: Any = None,
           chunk_size: Optional[int] = None) -> jax.Array:
    """Cumulative sum along ``axis`` (flattened when None), as :func:`scanad.cumsum`.

    ``reverse``, ``inclusive``, ``cu_seqlens`` (concrete) and ``chunk_size`` as in
    scanad; differentiable in every JAX mode.

    >>> import jax, jax.numpy as jnp, scanad.jax as sj
    >>> jax.grad(lambda x: sj.cumsum(x, inclusive=False).sum())(jnp.ones(3))
    Array([2., 1., 0.], dtype=float32)
    """
    return _scan("cumsum", x, axis, reverse, inclusive, cu_seqlens, chunk_size)[0]


def cumprod(x: Any, axis: Optional[int] = None, *, reverse: bool = False,
            inclusive: bool = True, cu_seqlens: Any = None,
            chunk_size: Optional[int] = None) -> jax.Array:
    """Cumulative product, as :func:`scanad.cumprod`; exact derivatives with zeros.

    >>> import jax, jax.numpy as jnp, scanad.jax as sj
    >>> jax.grad(lambda x: sj.cumprod(x).sum())(jnp.array([2.0, 0.0, 3.0, 4.0]))
    Array([ 1., 32.,  0.,  0.], dtype=float32)
    """
    return _scan("cumprod", x, axis, reverse, inclusive, cu_seqlens, chunk_size)[0]


def cummax(x: Any, axis: Optional[int] = None, *, reverse: bool = False,
           inclusive: bool = True, cu_seqlens: Any = None,
           chunk_size: Optional[int] = None) -> Tuple[jax.Array, jax.Array]:
    """Running maximum and its indices, as ``scanad.cummax(..., return_indices=True)``.

    Indices are int64 with ``jax_enable_x64``, else int32.

    >>> import jax.numpy as jnp, scanad.jax as sj
    >>> values, indices = sj.cummax(jnp.array([1.0, 3.0, 3.0, 2.0]))
    >>> values, indices
    (Array([1., 3., 3., 3.], dtype=float32), Array([0, 1, 2, 2], dtype=int32))
    """
    y, idx = _scan("cummax", x, axis, reverse, inclusive, cu_seqlens, chunk_size)
    return y, idx


def cummin(x: Any, axis: Optional[int] = None, *, reverse: bool = False,
           inclusive: bool = True, cu_seqlens: Any = None,
           chunk_size: Optional[int] = None) -> Tuple[jax.Array, jax.Array]:
    """Running minimum and its indices; conventions as :func:`cummax`.

    >>> import jax.numpy as jnp, scanad.jax as sj
    >>> sj.cummin(jnp.array([3.0, 1.0, 2.0]))[0]
    Array([3., 1., 1.], dtype=float32)
    """
    y, idx = _scan("cummin", x, axis, reverse, inclusive, cu_seqlens, chunk_size)
    return y, idx


def logcumsumexp(x: Any, axis: Optional[int] = None, *, reverse: bool = False,
                 inclusive: bool = True, cu_seqlens: Any = None,
                 chunk_size: Optional[int] = None) -> jax.Array:
    """``log(cumsum(exp(x)))``, as :func:`scanad.logcumsumexp`; finite
    derivatives at a ``-inf`` prefix.

    >>> import jax, jax.numpy as jnp, scanad.jax as sj
    >>> jax.grad(lambda x: sj.logcumsumexp(x).sum())(jnp.array([-jnp.inf, 0.0]))
    Array([1., 1.], dtype=float32)
    """
    return _scan("logcumsumexp", x, axis, reverse, inclusive, cu_seqlens, chunk_size)[0]


def _chunk_op(name: str, arg: str, g: Any, chunk_size: Optional[int], reverse: bool,
              scale: Optional[float], cu_seqlens: Any, head_first: bool, output_dtype: Any,
              kwargs: Dict[str, Any]) -> jax.Array:
    scale = _chunk._resolve_scale(name, scale, dict(kwargs))
    g = _as_array(name, g)
    cu, operands = _segments(name, cu_seqlens)
    # scanad's own checks, on a probe with g's batch and time axes and one lane (a
    # traced cu_seqlens stands in as one segment: its values are checked when they arrive)
    time = 2 if head_first else 1
    probe = np.zeros(tuple(n if i in (0, time) else 1 for i, n in enumerate(g.shape)),
                     dtype=g.dtype)
    probe_cu = cu
    if cu == TRACED:
        probe_cu = [0, probe.shape[time]] if probe.ndim > time else None
    kw: Dict[str, Any] = {"reverse": reverse, "scale": scale, "head_first": head_first,
                          "output_dtype": output_dtype,
                          "cu_seqlens": None if probe_cu is None else np.asarray(probe_cu)}
    if name == "chunk_local_cumsum":
        kw["chunk_size"] = chunk_size
    y = getattr(_chunk, name)(probe, **kw)
    return chunk_p.bind(g, *operands, op=name, chunk=chunk_size, reverse=bool(reverse),
                        scale=None if scale is None else float(scale), cu=cu,
                        head_first=bool(head_first), dtype=np.dtype(y.dtype), nbatch=0)[0]


def chunk_local_cumsum(g: Any, chunk_size: int, reverse: bool = False,
                       scale: Optional[float] = None, cu_seqlens: Any = None,
                       head_first: bool = False, output_dtype: Any = None,
                       **kwargs: Any) -> jax.Array:
    """Cumulative sum along time within chunks, as :func:`scanad.chunk_local_cumsum`
    (``[B, T, H]`` / ``[B, T, H, S]``, or head first; ``softmax_scale`` is an alias
    of ``scale``).

    >>> import jax.numpy as jnp, scanad.jax as sj
    >>> sj.chunk_local_cumsum(jnp.ones((1, 6, 1)), 4)[0, :, 0]
    Array([1., 2., 3., 4., 1., 2.], dtype=float32)
    """
    return _chunk_op("chunk_local_cumsum", "g", g, chunk_size, reverse, scale, cu_seqlens,
                     head_first, output_dtype, kwargs)


def chunk_global_cumsum(s: Any, reverse: bool = False, cu_seqlens: Any = None,
                        scale: Optional[float] = None, head_first: bool = False,
                        output_dtype: Any = None, **kwargs: Any) -> jax.Array:
    """Cumulative sum along time over each whole sequence, as
    :func:`scanad.chunk_global_cumsum`.

    >>> import jax.numpy as jnp, scanad.jax as sj
    >>> sj.chunk_global_cumsum(jnp.ones((1, 5, 1)), cu_seqlens=[0, 2, 5])[0, :, 0]
    Array([1., 2., 1., 2., 3.], dtype=float32)
    """
    return _chunk_op("chunk_global_cumsum", "s", s, None, reverse, scale, cu_seqlens,
                     head_first, output_dtype, kwargs)


_LINEAR_DTYPES = ("float16", "float32", "float64", "complex64", "complex128")


@functools.lru_cache(maxsize=256)
def _checked_linear(dtype: np.dtype, length: int, reverse: bool, inclusive: bool,
                    log_a: bool, cu: Optional[Tuple[int, ...]], chunk: Any) -> None:
    """Run scanad on one line of the scan's length, so that bad options raise
    scanad's own errors at trace time."""
    line = np.zeros(length, dtype)
    _np_linear_scan(line, line, 0, reverse=reverse, inclusive=inclusive, log_a=log_a,
                    cu_seqlens=None if cu is None else np.asarray(cu), chunk_size=chunk)


def linear_scan(a: Any, b: Any, axis: Optional[int] = None, *, h0: Any = None,
                reverse: bool = False, inclusive: bool = True, log_a: bool = False,
                return_final: bool = False, cu_seqlens: Any = None,
                chunk_size: Optional[int] = None) -> Any:
    """The linear recurrence ``h[t] = a[t] * h[t-1] + b[t]``, as :func:`scanad.linear_scan`.

    Differentiable in ``a``, ``b`` and ``h0`` in every JAX mode up to second order.
    ``a`` broadcasts against ``b``; ``h0`` has the result's shape without ``axis``
    (broadcastable), or with ``cu_seqlens`` one leading entry per segment (or is a
    scalar).  The dtype is JAX's promotion of the inputs (integers take JAX's default
    float).  Returns ``h``, or ``(h, h_final)`` with ``return_final``.

    >>> import jax, jax.numpy as jnp, scanad.jax as sj
    >>> sj.linear_scan(0.5, jnp.ones(3), h0=4.0)
    Array([3.  , 2.5 , 2.25], dtype=float32)
    >>> a = jnp.array([0.5, 0.0, 2.0])       # a[1] == 0 resets: nothing flows past step 1
    >>> jax.grad(lambda a: sj.linear_scan(a, jnp.ones(3)).sum())(a)
    Array([0., 3., 1.], dtype=float32)
    """
    name = "linear_scan"
    inputs: List[Any] = []
    for arg, v in (("a", a), ("b", b), ("h0", h0)):
        if v is None and arg != "h0":
            raise TypeError(f"scanad.jax.{name}: {arg} must be an array or a scalar; got None")
        if v is not None:
            inputs.append(v if isinstance(v, (int, float, complex)) and not isinstance(v, bool)
                          else _as_array(name, v, arg))
    dtype = np.dtype(jnp.result_type(*inputs))
    if dtype.kind in "biu":
        dtype = np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
    if dtype == jnp.bfloat16 or dtype.name not in _LINEAR_DTYPES:
        raise TypeError(f"scanad.jax.{name}: a, b and h0 must promote to one of the dtypes "
                        f"{', '.join(_LINEAR_DTYPES)}; got {dtype}")
    for arg, flag in (("reverse", reverse), ("inclusive", inclusive), ("log_a", log_a),
                      ("return_final", return_final)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"scanad.jax.{name}: {arg} must be a bool; got {flag!r}")
    A, B = (jnp.asarray(v).astype(dtype) for v in inputs[:2])
    try:
        rows = jnp.broadcast_shapes(A.shape, B.shape)
    except ValueError:
        raise ValueError(f"scanad.jax.{name}: a with shape {A.shape} does not broadcast "
                         f"against b with shape {B.shape}") from None
    A, B = jnp.broadcast_to(A, rows), jnp.broadcast_to(B, rows)
    if axis is None:
        # scanad's axis None: the broadcast operands flattened in C order
        A, B, ax = A.reshape(-1), B.reshape(-1), 0
    else:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"scanad.jax.{name}: axis must be an integer or None; got {axis!r}")
        if not -len(rows) <= axis < len(rows):
            raise np.exceptions.AxisError(int(axis), len(rows))
        ax = int(axis) % len(rows)
    cu, operands = _segments(name, cu_seqlens)
    rest = A.shape[:ax] + A.shape[ax + 1:]
    state = rest
    if cu is not None:
        nseg = operands[0].shape[0] - 1 if cu == TRACED else len(cu) - 1
        state = (nseg,) + rest
    x = [A, B]
    if h0 is not None:
        H0 = jnp.asarray(inputs[2]).astype(dtype)
        try:
            if cu is not None and H0.ndim not in (0, len(state)):
                raise ValueError
            x.append(jnp.broadcast_to(H0, state))
        except ValueError:
            want = "one entry per segment, then " if cu is not None else ""
            raise ValueError(f"scanad.jax.{name}: h0 must broadcast to {want}the result's "
                             f"shape without the axis, {state}; got shape {H0.shape}") from None
    # a traced cu_seqlens is checked by the kernels when the values arrive
    _checked_linear(dtype, int(A.shape[ax]), bool(reverse), bool(inclusive), bool(log_a),
                    None if cu == TRACED else cu, chunk_size)
    out = ls_p.bind(*x, *operands, op=name, axis=ax, reverse=bool(reverse),
                    inclusive=bool(inclusive), log_a=bool(log_a), final=bool(return_final),
                    h0=h0 is not None, cu=cu,
                    chunk=None if chunk_size is None else int(chunk_size), nbatch=0)
    return (out[0], out[1]) if return_final else out[0]
