"""PyTorch adapter: scanad's scans as differentiable functions of CPU tensors.

``import scanad.torch as st`` gives ``cumsum``, ``cumprod``, ``cummax``,
``cummin``, ``logcumsumexp``, ``linear_scan``, ``chunk_local_cumsum`` and
``chunk_global_cumsum`` taking and returning ``torch.Tensor``.  Each is
differentiable by ``backward`` (first and second order), forward-mode AD,
``torch.func`` (``grad``, ``jvp``, ``vjp``, ``jacrev``, ``jacfwd``, ``hessian``,
``vmap``) and runs scanad's C kernels:
the forward, VJP, JVP and the second-order ``vjp_jvp`` kernel (docs/torch.md).

Inputs are handed to scanad without a copy (``Tensor.numpy()`` shares memory;
only conj/neg views are resolved first) and results are wrapped without a copy
(``torch.from_numpy``).  ``import scanad`` does not import this module.

>>> import torch, scanad.torch as st
>>> x = torch.tensor([2.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
>>> st.cumprod(x).sum().backward()
>>> x.grad
tensor([1., 8., 0.], dtype=torch.float64)
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.autograd.forward_ad as _forward_ad

from . import _linear_ad
from ._linear import _result_dtype as _linear_result_dtype
from ._linear import linear_scan as _linear_scan
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

Tensor = torch.Tensor
Kw = Dict[str, Any]

# Function.apply's short cut (_apply) uses these torch internals; a torch
# without them takes the public path
try:
    from torch._functorch.utils import unwrap_dead_wrappers as _unwrap_dead

    _functorch_active: Optional[Callable[[], bool]] = (
        torch._C._are_functorch_transforms_active)
    _forward_ad._current_level  # noqa: B018
except (ImportError, AttributeError):  # pragma: no cover - other torch versions
    _functorch_active = None

_INDEXED = ("cummax", "cummin")
_CHUNKS = ("chunk_local_cumsum", "chunk_global_cumsum")
# ops whose pullback and JVP do not depend on x (locally: cummax's owners are
# piecewise constant), so their derivatives in x are zero and need no kernel
_FLAT = ("cumsum", "cummax", "cummin") + _CHUNKS

_THIRD_ORDER = ("scanad.torch: third-order derivatives of {name} are not available (scanad "
                "has kernels up to second order: backward of backward, forward over reverse)")


# ---------------------------------------------------------------------------
# tensors <-> arrays


def _apply(function: Any, *args: Any) -> Any:
    """``function.apply(*args)``, typed (torch leaves ``apply`` untyped).

    Outside torch.func transforms this skips ``Function.apply``'s
    ``inspect.signature`` binding, which costs more than the rest of a small
    call (every call here passes all of forward's arguments, none defaulted),
    and with nothing to record (grad mode off, no forward-AD level: a plain
    ``backward`` or ``no_grad``) it runs ``forward`` without a graph node.
    """
    if _functorch_active is None or _functorch_active():
        return function.apply(*args)
    args = _unwrap_dead(args)
    if not torch.is_grad_enabled() and _forward_ad._current_level < 0:
        return function.forward(*args)
    return super(torch.autograd.Function, function).apply(*args)


def _as_numpy(t: Tensor) -> np.ndarray:
    """The tensor's memory as an array: no copy unless t is a conj/neg view."""
    if t.requires_grad:
        t = t.detach()
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    return t.numpy()


def _as_tensor(a: Any, dtype: Optional[torch.dtype] = None) -> Tensor:
    """The array's memory as a tensor, no copy (scanad's results are fresh and
    writable); cast to ``dtype`` only if it differs."""
    a = np.asarray(a)
    if not a.flags.writeable:
        a = a.copy()
    t = torch.from_numpy(a)
    return t if dtype is None or t.dtype == dtype else t.to(dtype)


def _check_tensor(name: str, arg: str, x: Any) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"scanad.torch.{name}: {arg} must be a torch.Tensor; "
                        f"got {type(x).__name__}")
    if not x.is_cpu:
        raise TypeError(f"scanad.torch.{name}: {arg} must be a CPU tensor (scanad's kernels "
                        f"run on the CPU); got a tensor on device '{x.device}'")
    if x.dtype == torch.bfloat16:
        raise TypeError(f"scanad.torch.{name}: {arg} has dtype bfloat16, which scanad does not "
                        "support; convert it with x.float() (float32) first")


def _segments(name: str, cu_seqlens: Any) -> Optional[Tuple[int, ...]]:
    """cu_seqlens as a tuple of ints (scanad checks the values)."""
    if cu_seqlens is None:
        return None
    if isinstance(cu_seqlens, torch.Tensor):
        if cu_seqlens.dtype.is_floating_point or cu_seqlens.dtype.is_complex or \
                cu_seqlens.dtype == torch.bool or cu_seqlens.ndim != 1:
            raise TypeError(f"scanad.torch.{name}: cu_seqlens must be a 1-D integer tensor or "
                            f"sequence; got a {cu_seqlens.ndim}-D tensor of {cu_seqlens.dtype}")
        return tuple(int(v) for v in cu_seqlens.tolist())
    if isinstance(cu_seqlens, np.ndarray) and cu_seqlens.ndim == 1:
        cu_seqlens = cu_seqlens.tolist()
    # plain Python, not np.asarray, so that torch.compile traces it
    if not isinstance(cu_seqlens, (list, tuple)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in cu_seqlens):
        raise TypeError(f"scanad.torch.{name}: cu_seqlens must be a 1-D integer tensor or "
                        f"sequence; got {cu_seqlens!r}")
    return tuple(int(v) for v in cu_seqlens)


# ---------------------------------------------------------------------------
# the kernels, on arrays


def _fwd(name: str, x: np.ndarray, kw: Kw) -> Any:
    fn = OPS[name].fn
    if name in _INDEXED:
        return fn(x, return_indices=True, **kw)
    return fn(x, **kw)


def _vjp(name: str, x: np.ndarray, y: Optional[np.ndarray], g: np.ndarray, kw: Kw) -> np.ndarray:
    if y is None:
        out = _fwd(name, x, kw)
        y = out[0] if name in _INDEXED else out
    return OPS[name].vjp_rule(x, y, g, kw)


def _jvp(name: str, x: np.ndarray, t: np.ndarray, kw: Kw) -> np.ndarray:
    if name in _CHUNKS:  # linear: the op on t, in the output's dtype
        return OPS[name].fn(t, **kw)
    return OPS[name].jvp_rule(x, t, kw)[1]


def _vjp_jvp(name: str, x: np.ndarray, g: np.ndarray, t: np.ndarray, g_dot: Optional[np.ndarray],
             kw: Kw) -> np.ndarray:
    return OPS[name].vjp_jvp_rule(x, t, g, g_dot, kw)[1]


def _cumprod_jvp_jvp(x: np.ndarray, s: np.ndarray, t: np.ndarray, kw: Kw) -> Any:
    """The second derivative of cumprod in directions s and t.

    Differentiating the JVP recurrence ``y'[j] = y'[j-1] x[j] + y[j-1] t[j]``
    along s gives ``z[j] = z[j-1] x[j] + E_s'[j] t[j] + E_t'[j] s[j]`` with
    ``E'`` the JVP of the exclusive product (``y'[j-1]``, 0 at each restart):
    a linear recurrence on the same segments, without any division.
    """
    excl = {**kw, "inclusive": False}
    e_s = _jvp("cumprod", x, s, excl)
    e_t = _jvp("cumprod", x, t, excl)
    if kw.get("axis") is None:
        x, s, t = x.reshape(-1), s.reshape(-1), t.reshape(-1)
    b = e_s * t + e_t * s
    return _linear_scan(x, b, kw.get("axis"), reverse=kw.get("reverse", False),
                        inclusive=kw.get("inclusive", True), dtype=b.dtype,
                        cu_seqlens=kw.get("cu_seqlens"), chunk_size=kw.get("chunk_size"))


# ---------------------------------------------------------------------------
# vmap: the batch dimension becomes one more non-scanned axis of one call


class _Batch:
    """Moves a vmap batch dimension into the arrays one scanad call takes.

    Scans get it in front (``axis`` shifts by one; with ``axis=None`` each
    batch entry is flattened on its own); the chunk wrappers, whose layout is
    fixed, get it as (part of) the trailing feature axis.
    """

    def __init__(self, name: str, kw: Kw, x: Tensor, x_dim: Optional[int], size: int) -> None:
        self.name, self.size = name, size
        self.x_shape = tuple(x.shape) if x_dim is None else \
            tuple(x.shape[:x_dim]) + tuple(x.shape[x_dim + 1:])
        self.flat = name not in _CHUNKS and kw.get("axis") is None
        if name in _CHUNKS:
            self.kw = kw
        elif self.flat:
            self.kw = {**kw, "axis": 1}
        else:
            axis = operator.index(kw["axis"])
            ndim = max(len(self.x_shape), 1)
            if not -ndim <= axis < ndim:
                raise IndexError(f"scanad.torch.{name}: dim {axis} is out of range for a "
                                 f"{len(self.x_shape)}-D input")
            self.kw = {**kw, "axis": axis % ndim + 1}

    def put(self, t: Optional[Tensor], dim: Optional[int], like_x: bool) -> Optional[Tensor]:
        """t with the batch moved in; ``like_x``: t has x's shape, else the output's."""
        if t is None:
            return None
        if dim is None:
            t = t.unsqueeze(0).expand(self.size, *t.shape)
        else:
            t = t.movedim(dim, 0)
        if self.name in _CHUNKS:
            t = t.movedim(0, -1)
            return t if len(self.x_shape) == 3 else t.reshape(*self.x_shape[:3], -1)
        if self.flat and like_x:
            return t.reshape(self.size, -1)
        if not self.flat and t.ndim == 1:  # a 0-d x scans as shape (1,)
            return t.unsqueeze(1)
        return t

    def take(self, t: Tensor, like_x: bool) -> Tensor:
        """A result back with the batch in front."""
        if self.name in _CHUNKS:
            return t.reshape(*self.x_shape, self.size).movedim(-1, 0)
        if self.flat and like_x:
            return t.reshape(self.size, *self.x_shape)
        return t


# ---------------------------------------------------------------------------
# autograd Functions: one per kernel.  Only ``forward`` touches arrays; the
# other staticmethods call torch ops and these Functions, so that
# torch.func.jvp (whose tangents have no storage) and vmap can run them.


class _Scan(torch.autograd.Function):
    """y = op(x); backward is _Vjp, forward-mode is _Jvp."""

    @staticmethod
    def forward(x: Tensor, name: str, kw: Kw) -> Any:
        out = _fwd(name, _as_numpy(x), kw)
        if name in _INDEXED:
            return _as_tensor(out[0]), _as_tensor(out[1])
        return _as_tensor(out)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        x, name, kw = inputs
        ctx.name, ctx.kw = name, kw
        y = output
        if name in _INDEXED:
            y = output[0]
            ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(x, y)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx: Any, g: Tensor, *_: Any) -> Tuple[Optional[Tensor], None, None]:
        x, y = ctx.saved_tensors
        return _apply(_Vjp, x, g, y.detach(), ctx.name, ctx.kw), None, None

    @staticmethod
    def jvp(ctx: Any, t: Tensor, *_: Any) -> Any:
        (x,) = ctx.saved_tensors
        y_dot = _apply(_Jvp, x, t, ctx.name, ctx.kw)
        return (y_dot, None) if ctx.name in _INDEXED else y_dot

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], x: Tensor, name: str, kw: Kw
             ) -> Tuple[Any, Any]:
        b = _Batch(name, kw, x, in_dims[0], info.batch_size)
        out = _apply(_Scan, b.put(x, in_dims[0], True), name, b.kw)
        if name in _INDEXED:
            return (b.take(out[0], False), b.take(out[1], False)), (0, 0)
        return b.take(out, False), 0


class _Vjp(torch.autograd.Function):
    """x_bar = J(x)^H g.  ``y`` is op(x) when known (a cache: not differentiated)."""

    @staticmethod
    def forward(x: Tensor, g: Tensor, y: Optional[Tensor], name: str, kw: Kw) -> Tensor:
        ya = None if y is None else _as_numpy(y)
        return _as_tensor(_vjp(name, _as_numpy(x), ya, _as_numpy(g), kw), x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        x, g, y, name, kw = inputs
        ctx.name, ctx.kw = name, kw
        ctx.save_for_backward(x, g)
        ctx.save_for_forward(x, g, y)

    @staticmethod
    def backward(ctx: Any, w: Tensor) -> Tuple[Any, ...]:
        # x_bar is the (real) gradient of Re<g, op(x)>, so its derivative in x
        # is that function's real Hessian: self-adjoint, applied to w by the
        # vjp_jvp kernel.  In g it is J^H, whose adjoint is J.
        x, g = ctx.saved_tensors
        gx = gg = None
        if ctx.needs_input_grad[0] and ctx.name not in _FLAT:
            gx = _apply(_VjpJvp, x, g, w, None, ctx.name, ctx.kw)
        if ctx.needs_input_grad[1]:
            gg = _apply(_Jvp, x, w, ctx.name, ctx.kw)
        return gx, gg, None, None, None

    @staticmethod
    def jvp(ctx: Any, t: Optional[Tensor], g_dot: Optional[Tensor], *_: Any) -> Tensor:
        x, g, y = ctx.saved_tensors
        if t is None or ctx.name in _FLAT:
            if g_dot is None:
                return torch.zeros_like(x)
            return _apply(_Vjp, x, g_dot, y, ctx.name, ctx.kw)
        return _apply(_VjpJvp, x, g, t, g_dot, ctx.name, ctx.kw)

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], x: Tensor, g: Tensor, y: Optional[Tensor],
             name: str, kw: Kw) -> Tuple[Tensor, int]:
        b = _Batch(name, kw, x, in_dims[0], info.batch_size)
        out = _apply(_Vjp, b.put(x, in_dims[0], True), b.put(g, in_dims[1], False),
                     b.put(y, in_dims[2], False), name, b.kw)
        return b.take(out, True), 0


class _Jvp(torch.autograd.Function):
    """y_dot = J(x) t."""

    @staticmethod
    def forward(x: Tensor, t: Tensor, name: str, kw: Kw) -> Tensor:
        return _as_tensor(_jvp(name, _as_numpy(x), _as_numpy(t), kw))

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        x, t, name, kw = inputs
        ctx.name, ctx.kw, ctx.dtype = name, kw, output.dtype
        ctx.save_for_backward(x, t)
        ctx.save_for_forward(x, t)

    @staticmethod
    def backward(ctx: Any, w: Tensor) -> Tuple[Any, ...]:
        # J(x) t is holomorphic in x: its adjoint in x is (dJ[t])^H w, the
        # derivative of the pullback J(x)^H w along t, i.e. vjp_jvp(x, w, t)
        x, t = ctx.saved_tensors
        gx = gt = None
        if ctx.needs_input_grad[0] and ctx.name not in _FLAT:
            gx = _apply(_VjpJvp, x, w, t, None, ctx.name, ctx.kw)
        if ctx.needs_input_grad[1]:
            gt = _apply(_Vjp, x, w, None, ctx.name, ctx.kw)
        return gx, gt, None, None

    @staticmethod
    def jvp(ctx: Any, s: Optional[Tensor], t_dot: Optional[Tensor], *_: Any) -> Tensor:
        x, t = ctx.saved_tensors
        name, kw = ctx.name, ctx.kw
        out = None if t_dot is None else _apply(_Jvp, x, t_dot, name, kw)
        if s is not None and name not in _FLAT:
            if name == "logcumsumexp":
                # d/ds sum_i p_ji t_i with dp_ji/dx_k = p_ji (d_ik - p_jk)
                second = _apply(_Jvp, x, s * t, name, kw) - \
                    _apply(_Jvp, x, s, name, kw) * _apply(_Jvp, x, t, name, kw)
            else:
                second = _apply(_JvpJvp, x, s, t, name, kw)
            out = second if out is None else out + second
        if out is None:
            shape = _output_shape(name, x, kw)
            return torch.zeros(shape, dtype=ctx.dtype)
        return out

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], x: Tensor, t: Tensor, name: str, kw: Kw
             ) -> Tuple[Tensor, int]:
        b = _Batch(name, kw, x, in_dims[0], info.batch_size)
        out = _apply(_Jvp, b.put(x, in_dims[0], True), b.put(t, in_dims[1], True), name, b.kw)
        return b.take(out, False), 0


def _output_shape(name: str, x: Tensor, kw: Kw) -> Tuple[int, ...]:
    if name not in _CHUNKS and kw.get("axis") is None:
        return (x.numel(),)
    return tuple(x.shape) if x.ndim else (1,)


def _no_third_order(name: str) -> RuntimeError:
    return RuntimeError(_THIRD_ORDER.format(name=name))


class _SecondOrder(torch.autograd.Function):
    """Base of the second-order Functions (and the autograd of their custom
    ops): scanad has no third-order kernels, so differentiating one of them
    again, by backward or forward mode, raises."""

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        # the op's name is the one str among the inputs; linear_scan's take none
        ctx.name = next((v for v in inputs if isinstance(v, str)), "linear_scan")

    @staticmethod
    def backward(ctx: Any, *_: Any) -> Any:
        raise _no_third_order(ctx.name)

    @staticmethod
    def jvp(ctx: Any, *_: Any) -> Any:
        raise _no_third_order(ctx.name)


class _VjpJvp(_SecondOrder):
    """The JVP of the pullback, x_bar_dot = vjp_jvp(x, g, t, g_dot): second order."""

    @staticmethod
    def forward(x: Tensor, g: Tensor, t: Tensor, g_dot: Optional[Tensor], name: str,
                kw: Kw) -> Tensor:
        gd = None if g_dot is None else _as_numpy(g_dot)
        out = _vjp_jvp(name, _as_numpy(x), _as_numpy(g), _as_numpy(t), gd, kw)
        return _as_tensor(out, x.dtype)

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], x: Tensor, g: Tensor, t: Tensor,
             g_dot: Optional[Tensor], name: str, kw: Kw) -> Tuple[Tensor, int]:
        b = _Batch(name, kw, x, in_dims[0], info.batch_size)
        out = _apply(_VjpJvp, b.put(x, in_dims[0], True), b.put(g, in_dims[1], False),
                     b.put(t, in_dims[2], True), b.put(g_dot, in_dims[3], False), name, b.kw)
        return b.take(out, True), 0


class _JvpJvp(_SecondOrder):
    """The second derivative of cumprod along s and t (forward over forward)."""

    @staticmethod
    def forward(x: Tensor, s: Tensor, t: Tensor, name: str, kw: Kw) -> Tensor:
        return _as_tensor(_cumprod_jvp_jvp(_as_numpy(x), _as_numpy(s), _as_numpy(t), kw))

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], x: Tensor, s: Tensor, t: Tensor, name: str,
             kw: Kw) -> Tuple[Tensor, int]:
        b = _Batch(name, kw, x, in_dims[0], info.batch_size)
        out = _apply(_JvpJvp, b.put(x, in_dims[0], True), b.put(s, in_dims[1], True),
                     b.put(t, in_dims[2], True), name, b.kw)
        return b.take(out, False), 0


# ---------------------------------------------------------------------------
# linear_scan: three differentiable inputs (a, b, h0).  The public function
# broadcasts a and b to one shape, h0 to the full state shape (torch's expand
# then sums their gradients back) and flattens for dim=None, so these
# Functions always see a, b of the same shape, an integer axis and a tensor h0.


def _ls_call(a: Tensor, b: Tensor, h0: Tensor) -> Tuple[np.ndarray, ...]:
    return _as_numpy(a), _as_numpy(b), _as_numpy(h0)


def _ls_cot(kw: Kw, g: Tensor, gf: Optional[Tensor]) -> Any:
    """The cotangent as scanad takes it: g, or the pair (g, g_final)."""
    ga = _as_numpy(g)
    if kw["return_final"]:
        return ga, None if gf is None else _as_numpy(gf)
    return ga


def _ls_cot_dot(kw: Kw, g: Tensor, g_dot: Optional[Tensor], gf_dot: Optional[Tensor]) -> Any:
    """The cotangent's tangent, None for zero (a zero g part if only g_final moves)."""
    if g_dot is None and gf_dot is None:
        return None
    gd = np.zeros_like(_as_numpy(g)) if g_dot is None else _as_numpy(g_dot)
    if kw["return_final"]:
        return gd, None if gf_dot is None else _as_numpy(gf_dot)
    return gd


def _ls_tangents(*ts: Optional[Tensor]) -> Tuple[Optional[np.ndarray], ...]:
    return tuple(None if t is None else _as_numpy(t) for t in ts)


def _ls_outputs(kw: Kw, out: Any) -> Any:
    if kw["return_final"]:
        return _as_tensor(out[0]), _as_tensor(out[1])
    return _as_tensor(out)


def _ls_triple(out: Tuple[Any, ...], like: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
    """scanad's (a_bar, b_bar, h0_bar) as tensors in the inputs' dtypes."""
    return tuple(_as_tensor(v, x.dtype) for v, x in zip(out, like))


def _ls_jvp_jvp(kw: Kw, x: Tuple[np.ndarray, ...], s: Tuple[Optional[np.ndarray], ...],
                t: Tuple[Optional[np.ndarray], ...]) -> Any:
    """The second derivative of linear_scan along s and t (forward over forward).

    With alpha = a (or exp(a) with log_a), differentiating the JVP recurrence
    along s gives ``z_t = alpha_t z_{t-1} + alpha'[s] hdot^t_{t-1} +
    alpha'[t] hdot^s_{t-1} + alpha''[s, t] h_{t-1}`` from z = 0 at every
    restart: one more linear scan, whose sources come from exclusive JVPs.
    """
    a, b, h0 = x
    excl = {**kw, "inclusive": False, "return_final": False}
    hp, hp_t = _linear_ad.jvp(x, t, excl)
    _, hp_s = _linear_ad.jvp(x, s, excl)
    src = np.zeros_like(hp)
    a_s, a_t = s[0], t[0]
    alpha = np.exp(a) if kw["log_a"] else None
    if a_s is not None:
        src = src + (a_s if alpha is None else alpha * a_s) * hp_t
    if a_t is not None:
        src = src + (a_t if alpha is None else alpha * a_t) * hp_s
    if alpha is not None and a_s is not None and a_t is not None:
        src = src + alpha * a_s * a_t * hp
    return _linear_scan(a, src, kw["axis"], reverse=kw["reverse"], inclusive=kw["inclusive"],
                        log_a=kw["log_a"], return_final=kw["return_final"], dtype=src.dtype,
                        cu_seqlens=kw["cu_seqlens"], chunk_size=kw["chunk_size"])


class _LBatch:
    """Moves vmap batch dimensions into linear_scan's arrays: in front of a,
    b, their tangents and the output's cotangents (axis shifts by one), and of
    the state-shaped h0 and g_final, after the segment axis with cu_seqlens."""

    def __init__(self, kw: Kw, size: int) -> None:
        self.size, self.seg = size, kw["cu_seqlens"] is not None
        self.kw = {**kw, "axis": kw["axis"] + 1}

    def rows(self, t: Optional[Tensor], dim: Optional[int]) -> Optional[Tensor]:
        if t is None:
            return None
        if dim is None:
            return t.unsqueeze(0).expand(self.size, *t.shape)
        return t.movedim(dim, 0)

    def state(self, t: Optional[Tensor], dim: Optional[int]) -> Optional[Tensor]:
        t = self.rows(t, dim)
        return t.movedim(0, 1) if t is not None and self.seg else t

    def take_state(self, t: Tensor) -> Tensor:
        return t.movedim(1, 0) if self.seg else t

    def take_out(self, out: Any) -> Tuple[Any, Any]:
        """The scan's outputs (h, or (h, h_final)) with the batch in front."""
        if isinstance(out, tuple):
            return (out[0], self.take_state(out[1])), (0, 0)
        return out, 0

    def take_triple(self, out: Tuple[Tensor, ...]) -> Tuple[Any, Any]:
        return (out[0], out[1], self.take_state(out[2])), (0, 0, 0)


class _LScan(torch.autograd.Function):
    """h = linear_scan(a, b, h0) (or (h, h_final)); backward is _LVjp, forward-mode _LJvp."""

    @staticmethod
    def forward(a: Tensor, b: Tensor, h0: Tensor, kw: Kw) -> Any:
        A, B, H0 = _ls_call(a, b, h0)
        return _ls_outputs(kw, _linear_scan(
            A, B, kw["axis"], h0=H0, reverse=kw["reverse"], inclusive=kw["inclusive"],
            log_a=kw["log_a"], return_final=kw["return_final"], cu_seqlens=kw["cu_seqlens"],
            chunk_size=kw["chunk_size"]))

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        a, b, h0, kw = inputs
        ctx.kw = kw
        ctx.save_for_backward(a, b, h0)
        ctx.save_for_forward(a, b, h0)

    @staticmethod
    def backward(ctx: Any, g: Tensor, *gf: Any) -> Tuple[Any, ...]:
        a, b, h0 = ctx.saved_tensors
        g_final = gf[0] if ctx.kw["return_final"] else None
        return _apply(_LVjp, a, b, h0, g, g_final, ctx.kw) + (None,)

    @staticmethod
    def jvp(ctx: Any, a_dot: Optional[Tensor], b_dot: Optional[Tensor],
            h0_dot: Optional[Tensor], *_: Any) -> Any:
        a, b, h0 = ctx.saved_tensors
        return _apply(_LJvp, a, b, h0, a_dot, b_dot, h0_dot, ctx.kw)

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], a: Tensor, b: Tensor, h0: Tensor, kw: Kw
             ) -> Tuple[Any, Any]:
        bt = _LBatch(kw, info.batch_size)
        out = _apply(_LScan, bt.rows(a, in_dims[0]), bt.rows(b, in_dims[1]),
                     bt.state(h0, in_dims[2]), bt.kw)
        return bt.take_out(out)


class _LVjp(torch.autograd.Function):
    """(a_bar, b_bar, h0_bar) = J^H g, g_final None or the final state's cotangent."""

    @staticmethod
    def forward(a: Tensor, b: Tensor, h0: Tensor, g: Tensor, gf: Optional[Tensor], kw: Kw
                ) -> Tuple[Tensor, ...]:
        _, pullback = _linear_ad.vjp(_ls_call(a, b, h0), kw)
        return _ls_triple(pullback(_ls_cot(kw, g, gf)), (a, b, h0))

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        a, b, h0, g, gf, kw = inputs
        ctx.kw = kw
        ctx.save_for_backward(a, b, h0, g, gf)
        ctx.save_for_forward(a, b, h0, g, gf)

    @staticmethod
    def backward(ctx: Any, wa: Tensor, wb: Tensor, wh: Tensor) -> Tuple[Any, ...]:
        # as for _Vjp: the pullback is the gradient of Re<g, h>, so its
        # derivative in (a, b, h0) is a real Hessian, self-adjoint (vjp_jvp),
        # and in g it is J^H, whose adjoint is J (the JVP)
        a, b, h0, g, gf = ctx.saved_tensors
        kw, need = ctx.kw, ctx.needs_input_grad
        grads: List[Any] = [None] * 6
        if any(need[:3]):
            grads[:3] = _apply(_LVjpJvp, a, b, h0, g, gf, wa, wb, wh, None, None, kw)
        if need[3] or need[4]:
            out = _apply(_LJvp, a, b, h0, wa, wb, wh, kw)
            grads[3], grads[4] = (out[0], out[1] if need[4] else None) if kw["return_final"] \
                else (out, None)
        return tuple(grads)

    @staticmethod
    def jvp(ctx: Any, a_dot: Optional[Tensor], b_dot: Optional[Tensor],
            h0_dot: Optional[Tensor], g_dot: Optional[Tensor], gf_dot: Optional[Tensor],
            *_: Any) -> Any:
        a, b, h0, g, gf = ctx.saved_tensors
        if a_dot is None and b_dot is None and h0_dot is None:
            if g_dot is None and gf_dot is None:
                return torch.zeros_like(a), torch.zeros_like(b), torch.zeros_like(h0)
            # linear in the cotangent
            g_dot = torch.zeros_like(g) if g_dot is None else g_dot
            return _apply(_LVjp, a, b, h0, g_dot, gf_dot, ctx.kw)
        return _apply(_LVjpJvp, a, b, h0, g, gf, a_dot, b_dot, h0_dot, g_dot, gf_dot, ctx.kw)

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], a: Tensor, b: Tensor, h0: Tensor, g: Tensor,
             gf: Optional[Tensor], kw: Kw) -> Tuple[Any, Any]:
        bt = _LBatch(kw, info.batch_size)
        out = _apply(_LVjp, bt.rows(a, in_dims[0]), bt.rows(b, in_dims[1]),
                     bt.state(h0, in_dims[2]), bt.rows(g, in_dims[3]),
                     bt.state(gf, in_dims[4]), bt.kw)
        return bt.take_triple(out)


class _LJvp(torch.autograd.Function):
    """h_dot = J (a_dot, b_dot, h0_dot) (or (h_dot, h_final_dot)); None tangents are zero."""

    @staticmethod
    def forward(a: Tensor, b: Tensor, h0: Tensor, a_dot: Optional[Tensor],
                b_dot: Optional[Tensor], h0_dot: Optional[Tensor], kw: Kw) -> Any:
        x = _ls_call(a, b, h0)
        _, y_dot = _linear_ad.jvp(x, _ls_tangents(a_dot, b_dot, h0_dot), kw)
        return _ls_outputs(kw, y_dot)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        a, b, h0, a_dot, b_dot, h0_dot, kw = inputs
        ctx.kw = kw
        ctx.save_for_backward(a, b, h0, a_dot, b_dot, h0_dot)
        ctx.save_for_forward(a, b, h0, a_dot, b_dot, h0_dot)

    @staticmethod
    def backward(ctx: Any, w: Tensor, *wf: Any) -> Tuple[Any, ...]:
        # J t is holomorphic in (a, b, h0): its adjoint there is the derivative
        # of the pullback J^H w along t (vjp_jvp); in t it is J^H (the VJP)
        a, b, h0, a_dot, b_dot, h0_dot = ctx.saved_tensors
        kw, need = ctx.kw, ctx.needs_input_grad
        w_final = wf[0] if kw["return_final"] else None
        grads: List[Any] = [None] * 7
        if any(need[:3]):
            grads[:3] = _apply(_LVjpJvp, a, b, h0, w, w_final, a_dot, b_dot, h0_dot, None, None,
                               kw)
        if any(need[3:6]):
            grads[3:6] = _apply(_LVjp, a, b, h0, w, w_final, kw)
        return tuple(grads)

    @staticmethod
    def jvp(ctx: Any, a_s: Optional[Tensor], b_s: Optional[Tensor], h0_s: Optional[Tensor],
            a_dot_s: Optional[Tensor], b_dot_s: Optional[Tensor], h0_dot_s: Optional[Tensor],
            *_: Any) -> Any:
        a, b, h0, a_dot, b_dot, h0_dot = ctx.saved_tensors
        kw = ctx.kw
        terms = []
        if not (a_dot_s is None and b_dot_s is None and h0_dot_s is None):
            terms.append(_apply(_LJvp, a, b, h0, a_dot_s, b_dot_s, h0_dot_s, kw))
        # J is bilinear in a and (b, h0), linear in each: the second
        # derivative needs an a part in one direction and anything in the other
        s_any = not (a_s is None and b_s is None and h0_s is None)
        t_any = not (a_dot is None and b_dot is None and h0_dot is None)
        if (a_s is not None and t_any) or (a_dot is not None and s_any):
            terms.append(_apply(_LJvpJvp, a, b, h0, a_s, b_s, h0_s, a_dot, b_dot, h0_dot, kw))
        if not terms:
            return _apply(_LJvp, a, b, h0, None, None, None, kw)
        if len(terms) == 1:
            return terms[0]
        if kw["return_final"]:
            return terms[0][0] + terms[1][0], terms[0][1] + terms[1][1]
        return terms[0] + terms[1]

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], a: Tensor, b: Tensor, h0: Tensor,
             a_dot: Optional[Tensor], b_dot: Optional[Tensor], h0_dot: Optional[Tensor], kw: Kw
             ) -> Tuple[Any, Any]:
        bt = _LBatch(kw, info.batch_size)
        out = _apply(_LJvp, bt.rows(a, in_dims[0]), bt.rows(b, in_dims[1]),
                     bt.state(h0, in_dims[2]), bt.rows(a_dot, in_dims[3]),
                     bt.rows(b_dot, in_dims[4]), bt.state(h0_dot, in_dims[5]), bt.kw)
        return bt.take_out(out)


class _LVjpJvp(_SecondOrder):
    """The JVP of the pullback along (a_dot, b_dot, h0_dot) and (g_dot, g_final_dot)."""

    @staticmethod
    def forward(a: Tensor, b: Tensor, h0: Tensor, g: Tensor, gf: Optional[Tensor],
                a_dot: Optional[Tensor], b_dot: Optional[Tensor], h0_dot: Optional[Tensor],
                g_dot: Optional[Tensor], gf_dot: Optional[Tensor], kw: Kw) -> Tuple[Tensor, ...]:
        _, x_bar_dot = _linear_ad.vjp_jvp(
            _ls_call(a, b, h0), _ls_cot(kw, g, gf), _ls_tangents(a_dot, b_dot, h0_dot),
            _ls_cot_dot(kw, g, g_dot, gf_dot), kw)
        return _ls_triple(x_bar_dot, (a, b, h0))

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], a: Tensor, b: Tensor, h0: Tensor, g: Tensor,
             gf: Optional[Tensor], a_dot: Optional[Tensor], b_dot: Optional[Tensor],
             h0_dot: Optional[Tensor], g_dot: Optional[Tensor], gf_dot: Optional[Tensor],
             kw: Kw) -> Tuple[Any, Any]:
        bt = _LBatch(kw, info.batch_size)
        out = _apply(_LVjpJvp, bt.rows(a, in_dims[0]), bt.rows(b, in_dims[1]),
                     bt.state(h0, in_dims[2]), bt.rows(g, in_dims[3]), bt.state(gf, in_dims[4]),
                     bt.rows(a_dot, in_dims[5]), bt.rows(b_dot, in_dims[6]),
                     bt.state(h0_dot, in_dims[7]), bt.rows(g_dot, in_dims[8]),
                     bt.state(gf_dot, in_dims[9]), bt.kw)
        return bt.take_triple(out)


class _LJvpJvp(_SecondOrder):
    """The second derivative of linear_scan along s and t (forward over forward)."""

    @staticmethod
    def forward(a: Tensor, b: Tensor, h0: Tensor, a_s: Optional[Tensor], b_s: Optional[Tensor],
                h0_s: Optional[Tensor], a_t: Optional[Tensor], b_t: Optional[Tensor],
                h0_t: Optional[Tensor], kw: Kw) -> Any:
        x = _ls_call(a, b, h0)
        return _ls_outputs(kw, _ls_jvp_jvp(kw, x, _ls_tangents(a_s, b_s, h0_s),
                                           _ls_tangents(a_t, b_t, h0_t)))

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], a: Tensor, b: Tensor, h0: Tensor,
             *rest: Any) -> Tuple[Any, Any]:
        bt = _LBatch(rest[-1], info.batch_size)
        put = (bt.rows, bt.rows, bt.state) * 3
        args = [p(v, d) for p, v, d in zip(put, (a, b, h0) + rest[:-1], in_dims)]
        return bt.take_out(_apply(_LJvpJvp, *args, bt.kw))


# ---------------------------------------------------------------------------
# public functions


def _scan(name: str, x: Any, dim: Optional[int], reverse: bool, inclusive: bool,
          cu_seqlens: Any, chunk_size: Optional[int]) -> Any:
    _check_tensor(name, "x", x)
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer))):
        raise TypeError(f"scanad.torch.{name}: dim must be an integer or None; got {dim!r}")
    kw: Kw = {"axis": None if dim is None else int(dim), "reverse": bool(reverse),
              "inclusive": bool(inclusive), "cu_seqlens": _segments(name, cu_seqlens),
              "chunk_size": chunk_size}
    if torch.compiler.is_compiling():
        opts = _scan_opts(kw)
        if name in _INDEXED:
            return torch.ops.scanad.scan_indexed(x, name, *opts)
        return torch.ops.scanad.scan(x, name, *opts)
    return _apply(_Scan, x, name, kw)


def _scan_opts(kw: Kw) -> Tuple[Any, ...]:
    """The custom ops' arguments after ``op`` (cu_seqlens as a list: int[]?)."""
    cu = kw["cu_seqlens"]
    return (kw["axis"], kw["reverse"], kw["inclusive"], None if cu is None else list(cu),
            kw["chunk_size"])


def cumsum(x: Tensor, dim: Optional[int] = None, *, reverse: bool = False,
           inclusive: bool = True, cu_seqlens: Any = None,
           chunk_size: Optional[int] = None) -> Tensor:
    """Cumulative sum of a CPU tensor along ``dim`` (flattened when ``dim`` is None).

    Flags and dtypes as :func:`scanad.cumsum` (``reverse``, ``inclusive``,
    ``cu_seqlens``, ``chunk_size``); differentiable to second order in every
    PyTorch mode (docs/torch.md).

    >>> import torch, scanad.torch as st
    >>> st.cumsum(torch.tensor([1, 2, 3, 4]), 0, reverse=True, inclusive=False)
    tensor([9, 7, 4, 0])
    """
    return _scan("cumsum", x, dim, reverse, inclusive, cu_seqlens, chunk_size)


def cumprod(x: Tensor, dim: Optional[int] = None, *, reverse: bool = False,
            inclusive: bool = True, cu_seqlens: Any = None,
            chunk_size: Optional[int] = None) -> Tensor:
    """Cumulative product; arguments as :func:`cumsum`.  Exact derivatives with zeros.

    >>> import torch, scanad.torch as st
    >>> x = torch.tensor([2.0, 0.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    >>> y = st.cumprod(x, 0)
    >>> (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    >>> g
    tensor([1., 2., 0., 0.], dtype=torch.float64, grad_fn=<_VjpBackward>)
    """
    return _scan("cumprod", x, dim, reverse, inclusive, cu_seqlens, chunk_size)


def cummax(x: Tensor, dim: Optional[int] = None, *, reverse: bool = False,
           inclusive: bool = True, cu_seqlens: Any = None,
           chunk_size: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Running maximum: ``(values, indices)`` as ``torch.cummax``, indices int64.

    Ties go to the latest element in scan order, NaN is sticky (as PyTorch);
    the exclusive first index is -1.  Only ``values`` is differentiable.

    >>> import torch, scanad.torch as st
    >>> st.cummax(torch.tensor([1.0, 3.0, 3.0, 2.0]), 0)
    (tensor([1., 3., 3., 3.]), tensor([0, 1, 2, 2]))
    """
    values, indices = _scan("cummax", x, dim, reverse, inclusive, cu_seqlens, chunk_size)
    return values, indices


def cummin(x: Tensor, dim: Optional[int] = None, *, reverse: bool = False,
           inclusive: bool = True, cu_seqlens: Any = None,
           chunk_size: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    """Running minimum: ``(values, indices)``; conventions as :func:`cummax`.

    >>> import torch, scanad.torch as st
    >>> st.cummin(torch.tensor([3.0, 1.0, 2.0]), 0, reverse=True)
    (tensor([1., 1., 2.]), tensor([1, 1, 2]))
    """
    values, indices = _scan("cummin", x, dim, reverse, inclusive, cu_seqlens, chunk_size)
    return values, indices


def logcumsumexp(x: Tensor, dim: Optional[int] = None, *, reverse: bool = False,
                 inclusive: bool = True, cu_seqlens: Any = None,
                 chunk_size: Optional[int] = None) -> Tensor:
    """``log(cumsum(exp(x)))`` without overflow; derivatives finite at ``-inf``.

    >>> import torch, scanad.torch as st
    >>> x = torch.tensor([-float("inf"), 0.0, 0.0], requires_grad=True)
    >>> y = st.logcumsumexp(x, 0)
    >>> y.sum().backward()
    >>> y.detach(), x.grad
    (tensor([  -inf, 0.0000, 0.6931]), tensor([1.0000, 1.5000, 0.5000]))
    """
    return _scan("logcumsumexp", x, dim, reverse, inclusive, cu_seqlens, chunk_size)


def _linear_arg(arg: str, v: Any, dtype: Optional[torch.dtype]) -> Tensor:
    """a or h0 as a tensor: a Python number takes the result dtype."""
    if isinstance(v, torch.Tensor):
        _check_tensor("linear_scan", arg, v)
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float, complex)):
        raise TypeError(f"scanad.torch.linear_scan: {arg} must be a torch.Tensor or a Python "
                        f"number; got {type(v).__name__}")
    return torch.tensor(v, dtype=dtype) if dtype is not None else torch.tensor(0)


def _probe(v: Any) -> Any:
    """v for scanad's dtype rule: a tensor by its dtype alone, a number as is."""
    if isinstance(v, torch.Tensor):
        if v.dtype not in _TORCH_TO_NUMPY:
            raise TypeError(f"scanad.torch.linear_scan: dtype {v.dtype} is not supported")
        return np.empty(0, _TORCH_TO_NUMPY[v.dtype])
    return v


def _linear_rt_eager(a: Any, b: Any, h0: Any) -> torch.dtype:
    """scanad's result dtype from the inputs' dtypes (or Python numbers): a
    constant for torch.compile, which cannot trace NumPy's dtype rules."""
    pa, pb, ph = (_probe(torch.empty(0, dtype=v)) if isinstance(v, torch.dtype) else v
                  for v in (a, b, h0))
    return _NUMPY_TO_TORCH[_linear_result_dtype(pa, pb, ph, None)]


_linear_rt: Callable[[Any, Any, Any], torch.dtype] = \
    torch.compiler.assume_constant_result(_linear_rt_eager)  # type: ignore[no-untyped-call]


def _broadcast_shapes(*shapes: Any) -> Tuple[int, ...]:
    return tuple(_apply_fn(torch.broadcast_shapes, *shapes))


def _apply_fn(fn: Any, *args: Any) -> Any:
    """fn(*args) for a function torch leaves untyped."""
    return fn(*args)


def linear_scan(a: Union[Tensor, complex], b: Tensor, dim: Optional[int] = None, *,
                h0: Union[None, Tensor, complex] = None, reverse: bool = False,
                inclusive: bool = True, log_a: bool = False, return_final: bool = False,
                cu_seqlens: Any = None, chunk_size: Optional[int] = None) -> Any:
    """The linear recurrence ``h[t] = a[t] h[t-1] + b[t]`` along ``dim``, as
    :func:`scanad.linear_scan`; differentiable in ``a``, ``b`` and ``h0``.

    ``a`` (a tensor or a Python number) broadcasts against ``b``; ``h0``
    (None for 0, a number or a tensor) broadcasts to the result's shape
    without ``dim``, with a leading axis of one state per segment under
    ``cu_seqlens``.  ``dim=None`` scans the broadcast operands flattened.
    ``return_final=True`` returns ``(h, h_final)``.  Flags as scanad's
    (``reverse``, ``inclusive``, ``log_a``, ``cu_seqlens``, ``chunk_size``);
    derivatives to second order in every PyTorch mode (docs/torch.md).

    >>> import torch, scanad.torch as st
    >>> a = torch.tensor([0.5, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    >>> h = st.linear_scan(a, torch.ones(3, dtype=torch.float64), 0, h0=3.0)
    >>> h.sum().backward()
    >>> h.detach()
    tensor([2.5000, 1.0000, 3.0000], dtype=torch.float64)
    >>> a.grad                    # a[1] == 0 resets: nothing flows past step 1
    tensor([3.0000, 7.5000, 1.0000], dtype=torch.float64)
    """
    name = "linear_scan"
    _check_tensor(name, "b", b)
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer))):
        raise TypeError(f"scanad.torch.{name}: dim must be an integer or None; got {dim!r}")
    for arg, v in (("a", a), ("h0", h0)):
        if v is not None:
            _linear_arg(arg, v, None)  # the checks, before scanad's dtype rule sees v
    rt = _linear_rt(*(v.dtype if isinstance(v, torch.Tensor) else v for v in (a, b, h0)))
    a = _linear_arg("a", a, rt)
    try:
        rows = _broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(f"scanad.torch.{name}: a with shape {tuple(a.shape)} does not "
                         f"broadcast against b with shape {tuple(b.shape)}") from None
    # one shape for a and b and an integer axis: the Functions' layout (the
    # gradients of these views are summed back by torch's own expand/reshape)
    if dim is None or not rows:
        rest: Tuple[int, ...] = ()
        a, b, axis = a.expand(rows).reshape(-1), b.expand(rows).reshape(-1), 0
    else:
        axis = int(dim)
        if not -len(rows) <= axis < len(rows):
            raise ValueError(f"scanad.torch.{name}: dim {axis} is out of range for the "
                             f"{len(rows)}-D result")
        axis %= len(rows)
        a, b = a.expand(rows), b.expand(rows)
        rest = rows[:axis] + rows[axis + 1:]
    cu = _segments(name, cu_seqlens)
    state = ((len(cu) - 1,) if cu is not None else ()) + rest
    h0 = torch.zeros(state, dtype=rt) if h0 is None else _linear_arg("h0", h0, rt)
    try:
        h0 = h0.expand(state)
    except RuntimeError:
        raise ValueError(f"scanad.torch.{name}: h0 with shape {tuple(h0.shape)} does not "
                         f"broadcast to the state shape {state}") from None
    kw: Kw = {"axis": axis, "reverse": bool(reverse), "inclusive": bool(inclusive),
              "log_a": bool(log_a), "return_final": bool(return_final), "cu_seqlens": cu,
              "chunk_size": chunk_size}
    if torch.compiler.is_compiling():
        h, h_final = torch.ops.scanad.linear_scan(a, b, h0, *_lopts(kw))
        return (h, h_final) if return_final else h
    return _apply(_LScan, a, b, h0, kw)


def _chunk(name: str, x: Any, kw: Kw) -> Tensor:
    _check_tensor(name, "the input", x)
    if torch.compiler.is_compiling():
        cu = _segments(name, kw["cu_seqlens"])
        out_dtype = kw["output_dtype"]
        if out_dtype is not None and not isinstance(out_dtype, torch.dtype):
            out_dtype = _NUMPY_TO_TORCH[np.dtype(out_dtype)]
        return torch.ops.scanad.chunk_cumsum(
            x, name, kw.get("chunk_size"), kw["reverse"], kw["scale"],
            None if cu is None else list(cu), kw["head_first"], out_dtype)
    # scanad's defaults for the optional ones
    kw = {k: v for k, v in kw.items() if v is not None or k == "chunk_size"}
    if "cu_seqlens" in kw:
        kw["cu_seqlens"] = _segments(name, kw["cu_seqlens"])
    if "output_dtype" in kw:
        kw["output_dtype"] = _numpy_dtype(name, kw["output_dtype"])
    return _apply(_Scan, x, name, kw)


def _numpy_dtype(name: str, dtype: Any) -> np.dtype:
    if dtype == torch.bfloat16:
        raise TypeError(f"scanad.torch.{name}: output_dtype bfloat16 is not supported; "
                        "use torch.float32")
    if isinstance(dtype, torch.dtype):
        if dtype not in _TORCH_TO_NUMPY:
            raise TypeError(f"scanad.torch.{name}: output_dtype must be float16, float32 or "
                            f"float64; got {dtype}")
        return _TORCH_TO_NUMPY[dtype]
    return np.dtype(dtype)


def chunk_local_cumsum(g: Tensor, chunk_size: int, reverse: bool = False,
                       scale: Optional[float] = None, cu_seqlens: Any = None,
                       head_first: bool = False, output_dtype: Any = None) -> Tensor:
    """Cumulative sum along time within chunks of ``chunk_size``, as
    :func:`scanad.chunk_local_cumsum` (``[B, T, H(, S)]``, or ``head_first``).

    >>> import torch, scanad.torch as st
    >>> st.chunk_local_cumsum(torch.ones(1, 6, 1), 4)[0, :, 0]
    tensor([1., 2., 3., 4., 1., 2.])
    """
    return _chunk("chunk_local_cumsum", g, {
        "chunk_size": chunk_size, "reverse": bool(reverse), "scale": scale,
        "cu_seqlens": cu_seqlens, "head_first": bool(head_first), "output_dtype": output_dtype})


def chunk_global_cumsum(s: Tensor, reverse: bool = False, cu_seqlens: Any = None,
                        scale: Optional[float] = None, head_first: bool = False,
                        output_dtype: Any = None) -> Tensor:
    """Cumulative sum along time over each whole sequence, as
    :func:`scanad.chunk_global_cumsum`.

    >>> import torch, scanad.torch as st
    >>> st.chunk_global_cumsum(torch.ones(1, 5, 1), cu_seqlens=[0, 2, 5])[0, :, 0]
    tensor([1., 2., 1., 2., 3.])
    """
    return _chunk("chunk_global_cumsum", s, {
        "reverse": bool(reverse), "scale": scale, "cu_seqlens": cu_seqlens,
        "head_first": bool(head_first), "output_dtype": output_dtype})



# ---------------------------------------------------------------------------
# torch.library custom ops: the same kernels as opaque ops that torch.compile
# keeps in its graphs.  Under torch.compile the public functions call these;
# eagerly they use the Functions above, which also have forward-mode AD.

_TORCH_TO_NUMPY: Dict[torch.dtype, np.dtype] = {
    getattr(torch, name): np.dtype(name)
    for name in ("bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32",
                 "uint64", "float16", "float32", "float64", "complex64", "complex128")
    if hasattr(torch, name)}
_NUMPY_TO_TORCH = {v: k for k, v in _TORCH_TO_NUMPY.items()}


def _result_dtype(name: str, dtype: torch.dtype, kw: Kw) -> torch.dtype:
    """The dtype op(x) has, from scanad's rules (for fake tensors: no data)."""
    if name in _CHUNKS:
        out = kw.get("output_dtype")
        return dtype if out is None else _NUMPY_TO_TORCH[np.dtype(out)]
    probe = OPS[name].fn(np.zeros(1, _TORCH_TO_NUMPY[dtype]))
    probe = probe[0] if name in _INDEXED else probe
    return _NUMPY_TO_TORCH[probe.dtype]


def _scan_kw(dim: Optional[int], reverse: bool, inclusive: bool,
             cu_seqlens: Optional[Sequence[int]], chunk_size: Optional[int]) -> Kw:
    return {"axis": dim, "reverse": reverse, "inclusive": inclusive,
            "cu_seqlens": None if cu_seqlens is None else tuple(cu_seqlens),
            "chunk_size": chunk_size}


def _fake_like(name: str, x: Tensor, kw: Kw, like_x: bool, dtype: torch.dtype) -> Tensor:
    if like_x or name in _CHUNKS:
        return x.new_empty(x.shape, dtype=dtype)
    if kw.get("axis") is None:
        return x.new_empty((x.numel(),), dtype=dtype)
    return x.new_empty(x.shape if x.ndim else (1,), dtype=dtype)


_OPTS = "int? dim, bool reverse, bool inclusive, int[]? cu_seqlens, int? chunk_size"


@torch.library.custom_op("scanad::scan", mutates_args=(),
                         schema=f"(Tensor x, str op, {_OPTS}) -> Tensor")
def _scan_op(x: Tensor, op: str, dim: Optional[int], reverse: bool, inclusive: bool,
             cu_seqlens: Optional[Sequence[int]], chunk_size: Optional[int]) -> Tensor:
    kw = _scan_kw(dim, reverse, inclusive, cu_seqlens, chunk_size)
    return _as_tensor(_fwd(op, _as_numpy(x), kw))


@torch.library.custom_op("scanad::scan_indexed", mutates_args=(),
                         schema=f"(Tensor x, str op, {_OPTS}) -> (Tensor, Tensor)")
def _scan_indexed_op(x: Tensor, op: str, dim: Optional[int], reverse: bool, inclusive: bool,
                     cu_seqlens: Optional[Sequence[int]], chunk_size: Optional[int]
                     ) -> Tuple[Tensor, Tensor]:
    kw = _scan_kw(dim, reverse, inclusive, cu_seqlens, chunk_size)
    values, indices = _fwd(op, _as_numpy(x), kw)
    return _as_tensor(values), _as_tensor(indices)


@torch.library.custom_op("scanad::scan_vjp", mutates_args=(),
                         schema=f"(Tensor x, Tensor g, Tensor? y, str op, {_OPTS}) -> Tensor")
def _vjp_op(x: Tensor, g: Tensor, y: Optional[Tensor], op: str, dim: Optional[int],
            reverse: bool, inclusive: bool, cu_seqlens: Optional[Sequence[int]],
            chunk_size: Optional[int]) -> Tensor:
    kw = _scan_kw(dim, reverse, inclusive, cu_seqlens, chunk_size)
    ya = None if y is None else _as_numpy(y)
    return _as_tensor(_vjp(op, _as_numpy(x), ya, _as_numpy(g), kw), x.dtype)


@torch.library.custom_op("scanad::scan_jvp", mutates_args=(),
                         schema=f"(Tensor x, Tensor t, str op, {_OPTS}) -> Tensor")
def _jvp_op(x: Tensor, t: Tensor, op: str, dim: Optional[int], reverse: bool, inclusive: bool,
            cu_seqlens: Optional[Sequence[int]], chunk_size: Optional[int]) -> Tensor:
    kw = _scan_kw(dim, reverse, inclusive, cu_seqlens, chunk_size)
    return _as_tensor(_jvp(op, _as_numpy(x), _as_numpy(t), kw))


@torch.library.custom_op(
    "scanad::scan_vjp_jvp", mutates_args=(),
    schema=f"(Tensor x, Tensor g, Tensor t, Tensor? g_dot, str op, {_OPTS}) -> Tensor")
def _vjp_jvp_op(x: Tensor, g: Tensor, t: Tensor, g_dot: Optional[Tensor], op: str,
                dim: Optional[int], reverse: bool, inclusive: bool,
                cu_seqlens: Optional[Sequence[int]], chunk_size: Optional[int]) -> Tensor:
    kw = _scan_kw(dim, reverse, inclusive, cu_seqlens, chunk_size)
    gd = None if g_dot is None else _as_numpy(g_dot)
    out = _vjp_jvp(op, _as_numpy(x), _as_numpy(g), _as_numpy(t), gd, kw)
    return _as_tensor(out, x.dtype)


@torch.library.custom_op(
    "scanad::chunk_cumsum", mutates_args=(),
    schema="(Tensor x, str op, int? chunk_size, bool reverse, float? scale, int[]? cu_seqlens, "
           "bool head_first, ScalarType? output_dtype) -> Tensor")
def _chunk_op(x: Tensor, op: str, chunk_size: Optional[int], reverse: bool,
              scale: Optional[float], cu_seqlens: Optional[Sequence[int]], head_first: bool,
              output_dtype: Optional[torch.dtype]) -> Tensor:
    kw = _chunk_kw(op, chunk_size, reverse, scale, cu_seqlens, head_first, output_dtype)
    return _as_tensor(_fwd(op, _as_numpy(x), kw))


def _chunk_kw(op: str, chunk_size: Optional[int], reverse: bool, scale: Optional[float],
              cu_seqlens: Optional[Sequence[int]], head_first: bool,
              output_dtype: Optional[torch.dtype]) -> Kw:
    kw: Kw = {"reverse": reverse, "head_first": head_first}
    if op == "chunk_local_cumsum":
        kw["chunk_size"] = chunk_size
    if scale is not None:
        kw["scale"] = scale
    if cu_seqlens is not None:
        kw["cu_seqlens"] = tuple(cu_seqlens)
    if output_dtype is not None:
        kw["output_dtype"] = _TORCH_TO_NUMPY[output_dtype]
    return kw


@_scan_op.register_fake
def _(x: Tensor, op: str, *opts: Any) -> Tensor:
    kw = _scan_kw(*opts)
    return _fake_like(op, x, kw, False, _result_dtype(op, x.dtype, kw))


@_scan_indexed_op.register_fake
def _(x: Tensor, op: str, *opts: Any) -> Tuple[Tensor, Tensor]:
    kw = _scan_kw(*opts)
    return (_fake_like(op, x, kw, False, x.dtype), _fake_like(op, x, kw, False, torch.int64))


@_vjp_op.register_fake
def _(x: Tensor, *_: Any) -> Tensor:
    return torch.empty_like(x)


@_jvp_op.register_fake
def _(x: Tensor, t: Tensor, op: str, *opts: Any) -> Tensor:
    kw = _scan_kw(*opts)
    return _fake_like(op, x, kw, False, _result_dtype(op, x.dtype, kw))


@_vjp_jvp_op.register_fake
def _(x: Tensor, *_: Any) -> Tensor:
    return torch.empty_like(x)


@_chunk_op.register_fake
def _(x: Tensor, op: str, chunk_size: Optional[int], reverse: bool, scale: Optional[float],
      cu_seqlens: Optional[Sequence[int]], head_first: bool,
      output_dtype: Optional[torch.dtype]) -> Tensor:
    return torch.empty_like(x, dtype=x.dtype if output_dtype is None else output_dtype)


# autograd of the custom ops: the relations of the Functions above

def _save_x_y(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
    x, op = inputs[0], inputs[1]
    ctx.op, ctx.opts = op, inputs[2:]
    y = output[0] if isinstance(output, tuple) else output
    ctx.save_for_backward(x, y)


def _scan_op_backward(ctx: Any, g: Tensor, *_: Any) -> Tuple[Any, ...]:
    x, y = ctx.saved_tensors
    return (torch.ops.scanad.scan_vjp(x, g, y, ctx.op, *ctx.opts),) + (None,) * 6


def _save_two(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
    x, a, *rest = inputs
    if isinstance(rest[0], str):  # scan_jvp: (x, t, op, ...)
        ctx.op, ctx.opts = rest[0], tuple(rest[1:])
    else:  # scan_vjp: (x, g, y, op, ...)
        ctx.op, ctx.opts = rest[1], tuple(rest[2:])
    ctx.save_for_backward(x, a)


def _vjp_op_backward(ctx: Any, w: Tensor) -> Tuple[Any, ...]:
    x, g = ctx.saved_tensors
    gx = None
    if ctx.needs_input_grad[0] and ctx.op not in _FLAT:
        gx = torch.ops.scanad.scan_vjp_jvp(x, g, w, None, ctx.op, *ctx.opts)
    gg = torch.ops.scanad.scan_jvp(x, w, ctx.op, *ctx.opts) if ctx.needs_input_grad[1] else None
    return (gx, gg) + (None,) * 7


def _jvp_op_backward(ctx: Any, w: Tensor) -> Tuple[Any, ...]:
    x, t = ctx.saved_tensors
    gx = None
    if ctx.needs_input_grad[0] and ctx.op not in _FLAT:
        gx = torch.ops.scanad.scan_vjp_jvp(x, w, t, None, ctx.op, *ctx.opts)
    gt = None
    if ctx.needs_input_grad[1]:
        gt = torch.ops.scanad.scan_vjp(x, w, None, ctx.op, *ctx.opts)
    return (gx, gt) + (None,) * 6


def _chunk_op_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
    ctx.dtype, ctx.args = inputs[0].dtype, inputs[1:]


def _chunk_op_backward(ctx: Any, g: Tensor) -> Tuple[Any, ...]:
    # linear: the transpose is the same scaled cumsum run the other way
    op, chunk_size, reverse, scale, cu, head_first, _ = ctx.args
    gx = torch.ops.scanad.chunk_cumsum(g.to(ctx.dtype), op, chunk_size, not reverse, scale, cu,
                                       head_first, ctx.dtype)
    return (gx,) + (None,) * 7


_scan_op.register_autograd(_scan_op_backward, setup_context=_save_x_y)
_scan_indexed_op.register_autograd(_scan_op_backward, setup_context=_save_x_y)
_vjp_op.register_autograd(_vjp_op_backward, setup_context=_save_two)
_jvp_op.register_autograd(_jvp_op_backward, setup_context=_save_two)
_vjp_jvp_op.register_autograd(_SecondOrder.backward, setup_context=_SecondOrder.setup_context)
_chunk_op.register_autograd(_chunk_op_backward, setup_context=_chunk_op_context)


# vmap of the custom ops: the batch joins the one call, as for the Functions

def _batched_kw(b: _Batch) -> Tuple[Any, ...]:
    return _scan_opts(b.kw)


def _vmap_scan(info: Any, in_dims: Tuple[Any, ...], x: Tensor, op: str, *opts: Any) -> Any:
    b = _Batch(op, _scan_kw(*opts), x, in_dims[0], info.batch_size)
    return b.take(torch.ops.scanad.scan(b.put(x, in_dims[0], True), op, *_batched_kw(b)),
                  False), 0


def _vmap_scan_indexed(info: Any, in_dims: Tuple[Any, ...], x: Tensor, op: str, *opts: Any) -> Any:
    b = _Batch(op, _scan_kw(*opts), x, in_dims[0], info.batch_size)
    v, i = torch.ops.scanad.scan_indexed(b.put(x, in_dims[0], True), op, *_batched_kw(b))
    return (b.take(v, False), b.take(i, False)), (0, 0)


def _vmap_scan_vjp(info: Any, in_dims: Tuple[Any, ...], x: Tensor, g: Tensor,
                   y: Optional[Tensor], op: str, *opts: Any) -> Any:
    b = _Batch(op, _scan_kw(*opts), x, in_dims[0], info.batch_size)
    out = torch.ops.scanad.scan_vjp(b.put(x, in_dims[0], True), b.put(g, in_dims[1], False),
                                    b.put(y, in_dims[2], False), op, *_batched_kw(b))
    return b.take(out, True), 0


def _vmap_scan_jvp(info: Any, in_dims: Tuple[Any, ...], x: Tensor, t: Tensor, op: str,
                   *opts: Any) -> Any:
    b = _Batch(op, _scan_kw(*opts), x, in_dims[0], info.batch_size)
    out = torch.ops.scanad.scan_jvp(b.put(x, in_dims[0], True), b.put(t, in_dims[1], True), op,
                                    *_batched_kw(b))
    return b.take(out, False), 0


def _vmap_scan_vjp_jvp(info: Any, in_dims: Tuple[Any, ...], x: Tensor, g: Tensor, t: Tensor,
      g_dot: Optional[Tensor], op: str, *opts: Any) -> Any:
    b = _Batch(op, _scan_kw(*opts), x, in_dims[0], info.batch_size)
    out = torch.ops.scanad.scan_vjp_jvp(
        b.put(x, in_dims[0], True), b.put(g, in_dims[1], False), b.put(t, in_dims[2], True),
        b.put(g_dot, in_dims[3], False), op, *_batched_kw(b))
    return b.take(out, True), 0


def _vmap_chunk_cumsum(info: Any, in_dims: Tuple[Any, ...], x: Tensor, op: str, *args: Any) -> Any:
    b = _Batch(op, {}, x, in_dims[0], info.batch_size)
    return b.take(torch.ops.scanad.chunk_cumsum(b.put(x, in_dims[0], True), op, *args), True), 0


_VMAP_RULES: Dict[str, Callable[..., Any]] = {
    "scan": _vmap_scan, "scan_indexed": _vmap_scan_indexed, "scan_vjp": _vmap_scan_vjp,
    "scan_jvp": _vmap_scan_jvp, "scan_vjp_jvp": _vmap_scan_vjp_jvp,
    "chunk_cumsum": _vmap_chunk_cumsum}
for _op, _rule in _VMAP_RULES.items():
    torch.library.register_vmap(f"scanad::{_op}", _rule)


# linear_scan's custom ops: the final state is always returned (the public
# function drops it), so each op has a fixed number of outputs

_LOPTS = ("int dim, bool reverse, bool inclusive, bool log_a, int[]? cu_seqlens, "
          "int? chunk_size")


def _lkw(dim: int, reverse: bool, inclusive: bool, log_a: bool,
         cu_seqlens: Optional[Sequence[int]], chunk_size: Optional[int]) -> Kw:
    return {"axis": dim, "reverse": reverse, "inclusive": inclusive, "log_a": log_a,
            "return_final": True, "cu_seqlens": None if cu_seqlens is None else tuple(cu_seqlens),
            "chunk_size": chunk_size}


def _lopts(kw: Kw) -> Tuple[Any, ...]:
    cu = kw["cu_seqlens"]
    return (kw["axis"], kw["reverse"], kw["inclusive"], kw["log_a"],
            None if cu is None else list(cu), kw["chunk_size"])


@torch.library.custom_op("scanad::linear_scan", mutates_args=(),
                         schema=f"(Tensor a, Tensor b, Tensor h0, {_LOPTS}) -> (Tensor, Tensor)")
def _linear_op(a: Tensor, b: Tensor, h0: Tensor, *opts: Any) -> Tuple[Tensor, Tensor]:
    kw = _lkw(*opts)
    h, hf = _linear_scan(_as_numpy(a), _as_numpy(b), kw["axis"], h0=_as_numpy(h0),
                         reverse=kw["reverse"], inclusive=kw["inclusive"], log_a=kw["log_a"],
                         return_final=True, cu_seqlens=kw["cu_seqlens"],
                         chunk_size=kw["chunk_size"])
    return _as_tensor(h), _as_tensor(hf)


@torch.library.custom_op(
    "scanad::linear_scan_vjp", mutates_args=(),
    schema=f"(Tensor a, Tensor b, Tensor h0, Tensor g, Tensor? gf, {_LOPTS}) "
           "-> (Tensor, Tensor, Tensor)")
def _linear_vjp_op(a: Tensor, b: Tensor, h0: Tensor, g: Tensor, gf: Optional[Tensor],
                   *opts: Any) -> Tuple[Tensor, Tensor, Tensor]:
    kw = _lkw(*opts)
    _, pullback = _linear_ad.vjp(_ls_call(a, b, h0), kw)
    out = _ls_triple(pullback(_ls_cot(kw, g, gf)), (a, b, h0))
    return out[0], out[1], out[2]


@torch.library.custom_op(
    "scanad::linear_scan_jvp", mutates_args=(),
    schema=f"(Tensor a, Tensor b, Tensor h0, Tensor? a_dot, Tensor? b_dot, Tensor? h0_dot, "
           f"{_LOPTS}) -> (Tensor, Tensor)")
def _linear_jvp_op(a: Tensor, b: Tensor, h0: Tensor, a_dot: Optional[Tensor],
                   b_dot: Optional[Tensor], h0_dot: Optional[Tensor], *opts: Any
                   ) -> Tuple[Tensor, Tensor]:
    kw = _lkw(*opts)
    _, (hd, hfd) = _linear_ad.jvp(_ls_call(a, b, h0), _ls_tangents(a_dot, b_dot, h0_dot), kw)
    return _as_tensor(hd), _as_tensor(hfd)


@torch.library.custom_op(
    "scanad::linear_scan_vjp_jvp", mutates_args=(),
    schema=f"(Tensor a, Tensor b, Tensor h0, Tensor g, Tensor? gf, Tensor? a_dot, "
           f"Tensor? b_dot, Tensor? h0_dot, Tensor? g_dot, Tensor? gf_dot, {_LOPTS}) "
           "-> (Tensor, Tensor, Tensor)")
def _linear_vjp_jvp_op(a: Tensor, b: Tensor, h0: Tensor, g: Tensor, gf: Optional[Tensor],
                       a_dot: Optional[Tensor], b_dot: Optional[Tensor],
                       h0_dot: Optional[Tensor], g_dot: Optional[Tensor],
                       gf_dot: Optional[Tensor], *opts: Any) -> Tuple[Tensor, Tensor, Tensor]:
    kw = _lkw(*opts)
    _, x_bar_dot = _linear_ad.vjp_jvp(
        _ls_call(a, b, h0), _ls_cot(kw, g, gf), _ls_tangents(a_dot, b_dot, h0_dot),
        _ls_cot_dot(kw, g, g_dot, gf_dot), kw)
    out = _ls_triple(x_bar_dot, (a, b, h0))
    return out[0], out[1], out[2]


def _linear_out_dtype(a: Tensor, b: Tensor, h0: Tensor) -> torch.dtype:
    return _NUMPY_TO_TORCH[_linear_result_dtype(_probe(a), _probe(b), _probe(h0), None)]


@_linear_op.register_fake
def _(a: Tensor, b: Tensor, h0: Tensor, *_: Any) -> Tuple[Tensor, Tensor]:
    dtype = _linear_out_dtype(a, b, h0)
    return b.new_empty(b.shape, dtype=dtype), h0.new_empty(h0.shape, dtype=dtype)


@_linear_vjp_op.register_fake
def _(a: Tensor, b: Tensor, h0: Tensor, *_: Any) -> Tuple[Tensor, Tensor, Tensor]:
    return torch.empty_like(a), torch.empty_like(b), torch.empty_like(h0)


@_linear_jvp_op.register_fake
def _(a: Tensor, b: Tensor, h0: Tensor, *_: Any) -> Tuple[Tensor, Tensor]:
    dtype = _linear_out_dtype(a, b, h0)
    return b.new_empty(b.shape, dtype=dtype), h0.new_empty(h0.shape, dtype=dtype)


@_linear_vjp_jvp_op.register_fake
def _(a: Tensor, b: Tensor, h0: Tensor, *_: Any) -> Tuple[Tensor, Tensor, Tensor]:
    return torch.empty_like(a), torch.empty_like(b), torch.empty_like(h0)


def _linear_op_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
    ctx.opts = inputs[3:]
    ctx.save_for_backward(*inputs[:3])


def _linear_op_backward(ctx: Any, g: Tensor, gf: Tensor) -> Tuple[Any, ...]:
    a, b, h0 = ctx.saved_tensors
    return torch.ops.scanad.linear_scan_vjp(a, b, h0, g, gf, *ctx.opts) + (None,) * 6


def _linear_vjp_op_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
    ctx.opts = inputs[5:]
    ctx.save_for_backward(*inputs[:5])


def _linear_vjp_op_backward(ctx: Any, wa: Tensor, wb: Tensor, wh: Tensor) -> Tuple[Any, ...]:
    # the relations of _LVjp.backward
    a, b, h0, g, gf = ctx.saved_tensors
    need = ctx.needs_input_grad
    grads: List[Any] = [None] * 11
    if any(need[:3]):
        grads[:3] = torch.ops.scanad.linear_scan_vjp_jvp(a, b, h0, g, gf, wa, wb, wh, None,
                                                         None, *ctx.opts)
    if need[3] or need[4]:
        gg, ggf = torch.ops.scanad.linear_scan_jvp(a, b, h0, wa, wb, wh, *ctx.opts)
        grads[3], grads[4] = gg, ggf if need[4] else None
    return tuple(grads)


def _linear_jvp_op_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
    ctx.opts = inputs[6:]
    ctx.save_for_backward(*inputs[:6])


def _linear_jvp_op_backward(ctx: Any, w: Tensor, wf: Tensor) -> Tuple[Any, ...]:
    # the relations of _LJvp.backward
    a, b, h0, a_dot, b_dot, h0_dot = ctx.saved_tensors
    need = ctx.needs_input_grad
    grads: List[Any] = [None] * 12
    if any(need[:3]):
        grads[:3] = torch.ops.scanad.linear_scan_vjp_jvp(a, b, h0, w, wf, a_dot, b_dot, h0_dot,
                                                         None, None, *ctx.opts)
    if any(need[3:6]):
        grads[3:6] = torch.ops.scanad.linear_scan_vjp(a, b, h0, w, wf, *ctx.opts)
    return tuple(grads)


_linear_op.register_autograd(_linear_op_backward, setup_context=_linear_op_context)
_linear_vjp_op.register_autograd(_linear_vjp_op_backward, setup_context=_linear_vjp_op_context)
_linear_jvp_op.register_autograd(_linear_jvp_op_backward, setup_context=_linear_jvp_op_context)
_linear_vjp_jvp_op.register_autograd(_SecondOrder.backward,
                                     setup_context=_SecondOrder.setup_context)


def _lbatch(info: Any, opts: Tuple[Any, ...]) -> Tuple[_LBatch, Tuple[Any, ...]]:
    bt = _LBatch(_lkw(*opts), info.batch_size)
    return bt, _lopts(bt.kw)


def _vmap_linear(info: Any, in_dims: Tuple[Any, ...], a: Tensor, b: Tensor, h0: Tensor,
                 *opts: Any) -> Any:
    bt, bopts = _lbatch(info, opts)
    return bt.take_out(torch.ops.scanad.linear_scan(
        bt.rows(a, in_dims[0]), bt.rows(b, in_dims[1]), bt.state(h0, in_dims[2]), *bopts))


def _vmap_linear_vjp(info: Any, in_dims: Tuple[Any, ...], a: Tensor, b: Tensor, h0: Tensor,
                     g: Tensor, gf: Optional[Tensor], *opts: Any) -> Any:
    bt, bopts = _lbatch(info, opts)
    return bt.take_triple(torch.ops.scanad.linear_scan_vjp(
        bt.rows(a, in_dims[0]), bt.rows(b, in_dims[1]), bt.state(h0, in_dims[2]),
        bt.rows(g, in_dims[3]), bt.state(gf, in_dims[4]), *bopts))


def _vmap_linear_jvp(info: Any, in_dims: Tuple[Any, ...], *args: Any) -> Any:
    bt, bopts = _lbatch(info, args[6:])
    put = (bt.rows, bt.rows, bt.state) * 2
    return bt.take_out(torch.ops.scanad.linear_scan_jvp(
        *[p(v, d) for p, v, d in zip(put, args, in_dims)], *bopts))


def _vmap_linear_vjp_jvp(info: Any, in_dims: Tuple[Any, ...], *args: Any) -> Any:
    bt, bopts = _lbatch(info, args[10:])
    put = (bt.rows, bt.rows, bt.state, bt.rows, bt.state, bt.rows, bt.rows, bt.state, bt.rows,
           bt.state)
    return bt.take_triple(torch.ops.scanad.linear_scan_vjp_jvp(
        *[p(v, d) for p, v, d in zip(put, args, in_dims)], *bopts))


for _op, _rule in (("linear_scan", _vmap_linear), ("linear_scan_vjp", _vmap_linear_vjp),
                   ("linear_scan_jvp", _vmap_linear_jvp),
                   ("linear_scan_vjp_jvp", _vmap_linear_vjp_jvp)):
    torch.library.register_vmap(f"scanad::{_op}", _rule)
