"""PyTorch adapter: scanad's scans as differentiable functions of CPU tensors.

``import scanad.torch as st`` gives ``cumsum``, ``cumprod``, ``cummax``,
``cummin``, ``logcumsumexp``, ``chunk_local_cumsum`` and ``chunk_global_cumsum``
taking and returning ``torch.Tensor``.  Each is differentiable by ``backward``
(first and second order), forward-mode AD, ``torch.func`` (``grad``, ``jvp``,
``vjp``, ``jacrev``, ``jacfwd``, ``hessian``, ``vmap``) and runs scanad's C kernels:
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
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ._linear import linear_scan as _linear_scan
from ._registry import OPS

__all__ = [
    "chunk_global_cumsum",
    "chunk_local_cumsum",
    "cummax",
    "cummin",
    "cumprod",
    "cumsum",
    "logcumsumexp",
]

Tensor = torch.Tensor
Kw = Dict[str, Any]

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
    """``function.apply(*args)``, typed (torch leaves ``apply`` untyped)."""
    return function.apply(*args)


def _as_numpy(t: Tensor) -> np.ndarray:
    """The tensor's memory as an array: no copy unless t is a conj/neg view."""
    return t.detach().resolve_conj().resolve_neg().numpy()


def _as_tensor(a: Any) -> Tensor:
    """The array's memory as a tensor, no copy (scanad's results are fresh and writable)."""
    a = np.asarray(a)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a)


def _check_tensor(name: str, arg: str, x: Any) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"scanad.torch.{name}: {arg} must be a torch.Tensor; "
                        f"got {type(x).__name__}")
    if x.device.type != "cpu":
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
        return _as_tensor(_vjp(name, _as_numpy(x), ya, _as_numpy(g), kw)).to(x.dtype)

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


class _VjpJvp(torch.autograd.Function):
    """The JVP of the pullback, x_bar_dot = vjp_jvp(x, g, t, g_dot): second order."""

    @staticmethod
    def forward(x: Tensor, g: Tensor, t: Tensor, g_dot: Optional[Tensor], name: str,
                kw: Kw) -> Tensor:
        gd = None if g_dot is None else _as_numpy(g_dot)
        out = _vjp_jvp(name, _as_numpy(x), _as_numpy(g), _as_numpy(t), gd, kw)
        return _as_tensor(out).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        ctx.name = inputs[4]

    @staticmethod
    def backward(ctx: Any, *_: Any) -> Any:
        raise _no_third_order(ctx.name)

    @staticmethod
    def jvp(ctx: Any, *_: Any) -> Any:
        raise _no_third_order(ctx.name)

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], x: Tensor, g: Tensor, t: Tensor,
             g_dot: Optional[Tensor], name: str, kw: Kw) -> Tuple[Tensor, int]:
        b = _Batch(name, kw, x, in_dims[0], info.batch_size)
        out = _apply(_VjpJvp, b.put(x, in_dims[0], True), b.put(g, in_dims[1], False),
                     b.put(t, in_dims[2], True), b.put(g_dot, in_dims[3], False), name, b.kw)
        return b.take(out, True), 0


class _JvpJvp(torch.autograd.Function):
    """The second derivative of cumprod along s and t (forward over forward)."""

    @staticmethod
    def forward(x: Tensor, s: Tensor, t: Tensor, name: str, kw: Kw) -> Tensor:
        return _as_tensor(_cumprod_jvp_jvp(_as_numpy(x), _as_numpy(s), _as_numpy(t), kw))

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        ctx.name = inputs[3]

    @staticmethod
    def backward(ctx: Any, *_: Any) -> Any:
        raise _no_third_order(ctx.name)

    @staticmethod
    def jvp(ctx: Any, *_: Any) -> Any:
        raise _no_third_order(ctx.name)

    @staticmethod
    def vmap(info: Any, in_dims: Tuple[Any, ...], x: Tensor, s: Tensor, t: Tensor, name: str,
             kw: Kw) -> Tuple[Tensor, int]:
        b = _Batch(name, kw, x, in_dims[0], info.batch_size)
        out = _apply(_JvpJvp, b.put(x, in_dims[0], True), b.put(s, in_dims[1], True),
                     b.put(t, in_dims[2], True), name, b.kw)
        return b.take(out, False), 0


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
    return _as_tensor(_vjp(op, _as_numpy(x), ya, _as_numpy(g), kw)).to(x.dtype)


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
    return _as_tensor(out).to(x.dtype)


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


def _vjp_jvp_op_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
    ctx.op = inputs[4]


def _vjp_jvp_op_backward(ctx: Any, *_: Any) -> Any:
    raise _no_third_order(ctx.op)


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
_vjp_jvp_op.register_autograd(_vjp_jvp_op_backward, setup_context=_vjp_jvp_op_context)
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
