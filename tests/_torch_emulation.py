"""scanad's scan semantics emulated with plain PyTorch ops, for values and autograd.

PyTorch has only forward, inclusive scans.  docs/semantics.md defines the other
variants by flipping and shifting, and this module does exactly that with
differentiable torch ops, so ``backward`` / ``torch.func.jvp`` through
:func:`scan` give an independent derivative for every flag combination:

- ``reverse=True``: flip the axis, scan, flip back;
- ``inclusive=False``: scan the first ``m - 1`` elements (in scan order) and
  prepend the op's identity (a constant, so its derivative row is zero);
- ``axis=None``: flatten in C order first (``reshape(-1)``);
- ``cu_seqlens`` / ``chunk_size``: scan each segment / chunk separately and
  concatenate (docs/semantics.md: chunks count from each segment's start).

cummax/cummin differentiate the ``values`` of ``torch.cummax`` / ``torch.cummin``,
whose owner rule (NaN sticky, every new NaN takes the index, ties to the
latest in scan order) is the one scanad adopts (docs/semantics.md).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch

_IDENTITY = {
    "cumsum": 0.0,
    "cumprod": 1.0,
    "cummax": float("-inf"),
    "cummin": float("inf"),
    "logcumsumexp": float("-inf"),
}


def _inclusive(opname: str, x: torch.Tensor, dim: int) -> torch.Tensor:
    if opname == "cumsum":
        return torch.cumsum(x, dim)
    if opname == "cumprod":
        return torch.cumprod(x, dim)
    if opname == "cummax":
        return torch.cummax(x, dim).values
    if opname == "cummin":
        return torch.cummin(x, dim).values
    if opname == "logcumsumexp":
        return torch.logcumsumexp(x, dim)
    raise ValueError(f"no torch emulation for {opname!r}")


def pieces(n: int, cu_seqlens: Optional[Sequence[int]] = None,
           chunk_size: Optional[int] = None) -> List[Tuple[int, int]]:
    """The [start, stop) ranges the scan restarts on (docs/semantics.md)."""
    cu = [0, n] if cu_seqlens is None else [int(c) for c in cu_seqlens]
    out = []
    for a, b in zip(cu[:-1], cu[1:]):
        if chunk_size is None or b == a:
            out.append((a, b))
            continue
        for s in range(a, b, chunk_size):
            out.append((s, min(s + chunk_size, b)))
    return out


def _piece(fn, head, x: torch.Tensor, dim: int, reverse: bool, inclusive: bool) -> torch.Tensor:
    m = x.shape[dim]
    if m == 0:
        return x * 1
    if reverse:
        x = x.flip(dim)
    if inclusive:
        y = fn(x, dim)
    else:
        first = head(x.narrow(dim, 0, 1))
        y = first if m == 1 else torch.cat([first, fn(x.narrow(dim, 0, m - 1), dim)], dim)
    if reverse:
        y = y.flip(dim)
    return y


def _segmented(fn, head, x: torch.Tensor, dim: int, reverse: bool, inclusive: bool,
               cu_seqlens: Any, chunk_size: Optional[int]) -> torch.Tensor:
    parts = [_piece(fn, head, x.narrow(dim, a, b - a), dim, reverse, inclusive)
             for a, b in pieces(x.shape[dim], cu_seqlens, chunk_size)]
    if not parts:
        return x * 1
    return torch.cat(parts, dim) if len(parts) > 1 else parts[0]


def scan(opname: str, x: torch.Tensor, axis: Optional[int] = None, reverse: bool = False,
         inclusive: bool = True, cu_seqlens: Any = None, chunk_size: Optional[int] = None
         ) -> torch.Tensor:
    """scanad.<opname>(x, axis, reverse=, inclusive=, cu_seqlens=, chunk_size=) in torch."""
    if axis is None:
        x = x.reshape(-1)
        axis = 0
    dim = axis % x.ndim
    return _segmented(lambda a, d: _inclusive(opname, a, d),
                      lambda like: torch.full_like(like, _IDENTITY[opname]),
                      x, dim, reverse, inclusive, cu_seqlens, chunk_size)


def _lse_pair(z: torch.Tensor, d: int) -> torch.Tensor:
    """z = stack([x, t]); inclusive (y, y_dot) of logcumsumexp along d (of z),
    from the softmax form y_dot[j] = sum_i exp(x_i) t_i / sum_i exp(x_i), shifted
    by the line's largest real part.  Accurate for inputs of moderate spread
    (every weight >= e^-30 or so), with no log-domain tricks."""
    x, t = z[0], z[1]
    m = x.real.amax(d - 1, keepdim=True).to(x.dtype)
    w = torch.exp(x - m)
    s = torch.cumsum(w, d - 1)
    return torch.stack([m + torch.log(s), torch.cumsum(w * t, d - 1) / s])


def logcumsumexp_jvp_formula(x, t, axis=None, reverse=False, inclusive=True,
                             cu_seqlens=None, chunk_size=None):
    """(y, y_dot) of logcumsumexp by the softmax formula under the same flip /
    shift / segment emulation (torch.func.jvp of torch.logcumsumexp is
    inaccurate, see the tests).  numpy in, numpy out."""
    xt, tt = torch.tensor(x), torch.tensor(t)
    if axis is None:
        xt, tt = xt.reshape(-1), tt.reshape(-1)
        axis = 0
    dim = axis % xt.ndim
    z = torch.stack([xt, tt])

    def head(like):  # the exclusive first output: y = -inf, a constant (y_dot = 0)
        return torch.stack([torch.full_like(like[0], float("-inf")), torch.zeros_like(like[1])])

    out = _segmented(_lse_pair, head, z, dim + 1, reverse, inclusive, cu_seqlens, chunk_size)
    return out[0].numpy(), out[1].numpy()


def vjp(opname: str, x, g, **kw):
    """(y, x.grad) from ``backward(g)`` through :func:`scan` (numpy in, numpy out).

    For complex tensors PyTorch's ``x.grad`` after ``y.backward(g)`` is the
    conjugate-transpose product ``J^H g`` for a holomorphic map, the same
    convention as scanad's pullback (verified in the test file).
    """
    xt = torch.tensor(x, requires_grad=True)
    y = scan(opname, xt, **kw)
    if y.requires_grad:
        y.backward(torch.tensor(g))
    grad = xt.grad
    if grad is None:  # y does not depend on x at all (a single exclusive output)
        grad = torch.zeros_like(xt)
    return y.detach().numpy(), grad.numpy()


def jvp(opname: str, x, t, **kw):
    """(y, y_dot) from ``torch.func.jvp`` through :func:`scan`."""
    from torch.func import jvp as tjvp

    y, y_dot = tjvp(lambda a: scan(opname, a, **kw), (torch.tensor(x),), (torch.tensor(t),))
    return y.numpy(), y_dot.numpy()
