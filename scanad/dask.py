"""scanad on ``dask.array``: blocked scans, lazy, one kernel call per block.

Each block is scanned by scanad's C kernel.  Between blocks the scan is
carried by the op's own operator in three phases, all lazy: every block's
*total* (the scan of its last piece in scan order), an exclusive prefix of
the totals over the blocks (a chain of small tasks, one per block), and each
block's rescan from its *carry*.  ``cu_seqlens`` and ``chunk_size`` are in
global coordinates along the axis; each block gets the local boundaries, and
a boundary at a block's start in scan order drops its carry.

Sums, products, log-sum-exps and linear recurrences are reassociated at the
block edges (last-bit differences from the in-memory scan); cummax/cummin are
exact, indices included (global positions along the axis).

>>> import dask.array as da, numpy as np, scanad.dask as sad
>>> x = da.from_array(np.arange(1.0, 7.0), chunks=2)
>>> sad.cumsum(x, cu_seqlens=[0, 3, 6]).compute()
array([ 1.,  3.,  6.,  4.,  9., 15.])
"""

from __future__ import annotations

import functools
import itertools
import operator
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from . import _ops
from ._chunk import _FLOATS, _chunk_dtypes, _resolve_scale
from ._linear import _result_dtype
from ._linear import linear_scan as _np_linear_scan

__all__ = ["chunk_global_cumsum", "chunk_local_cumsum", "cummax", "cummin", "cumprod", "cumsum",
           "jvp", "linear_scan", "logcumsumexp", "vjp"]

ArrayLike = Any
Carry = Any

_FUNCS: Dict[str, Callable[..., Any]] = {
    "cumsum": _ops.cumsum, "cumprod": _ops.cumprod, "cummax": _ops.cummax,
    "cummin": _ops.cummin, "logcumsumexp": _ops.logcumsumexp,
}
_WIDER = {np.dtype(np.float16): np.dtype(np.float32), np.dtype(np.float32): np.dtype(np.float64),
          np.dtype(np.complex64): np.dtype(np.complex128)}


def _acc(dtype: np.dtype) -> np.dtype:
    """The dtype scanad accumulates ``dtype`` in (carries are kept in it)."""
    wider: Any = _WIDER.get(np.dtype(dtype), np.dtype(dtype))
    return wider


def _take(x: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _at(x: np.ndarray, axis: int, i: int) -> np.ndarray:
    return np.take(x, i, axis=axis)


# --------------------------------------------------------------------------
# Segments in global coordinates, cut into blocks


class _Ctx:
    """What one block needs to know of the segmentation (not a tuple, so
    that dask does not read it as a task)."""

    def __init__(self, start: int, bounds: np.ndarray, seg_ids: np.ndarray, edge: bool,
                 reverse: bool) -> None:
        self.start = start        # global position of the block's first element
        self.bounds = bounds      # local piece boundaries, 0 and the length included
        self.seg_ids = seg_ids    # the global segment of each piece
        self.edge = edge          # a boundary at the block's start in scan order
        self.reverse = reverse
        # the carry passing through is composed only if no piece starts in here
        self.reset = edge or len(bounds) > 2
        self.final_segs = np.zeros(0, np.int64)   # linear_scan: the segments it owns

    @property
    def n(self) -> int:
        return int(self.bounds[-1]) if len(self.bounds) else 0

    def head(self) -> Tuple[int, int]:
        """The first piece in scan order: the one the carry enters."""
        b = self.bounds
        return (int(b[-2]), int(b[-1])) if self.reverse else (int(b[0]), int(b[1]))

    def tail(self) -> Tuple[int, int]:
        """The last piece in scan order: the one whose total is carried out."""
        b = self.bounds
        return (int(b[0]), int(b[1])) if self.reverse else (int(b[-2]), int(b[-1]))


def _as_int(name: str, arg: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: {arg} must be a positive integer; got {v!r}")
    if v <= 0:
        raise ValueError(f"{name}: {arg} must be a positive integer; got {v}")
    return int(v)


def _segments(name: str, length: int, cu_seqlens: Any, chunk_size: Any) -> Tuple[
        np.ndarray, Optional[int]]:
    if cu_seqlens is None:
        cu = np.array([0, length], np.int64)
    else:
        if isinstance(cu_seqlens, da.Array):
            raise TypeError(f"{name}: cu_seqlens must be a NumPy array or a sequence of "
                            "integers (it shapes the graph), not a dask array")
        raw = np.asarray(cu_seqlens)
        if raw.ndim != 1 or (raw.size and raw.dtype.kind not in "iu"):
            raise TypeError(f"{name}: cu_seqlens must be a 1-D array of integers; got "
                            f"dtype {raw.dtype} with {raw.ndim} dimensions")
        cu = raw.astype(np.int64)
        if cu.size < 2 or cu[0] != 0 or cu[-1] != length or np.any(np.diff(cu) < 0):
            raise ValueError(f"{name}: cu_seqlens must start at 0, not decrease and end at "
                             f"the scan axis' length {length}; got {raw.tolist()}")
    chunk = None if chunk_size is None else _as_int(name, "chunk_size", chunk_size)
    return cu, chunk


def _segment_of(cu: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The (non-empty) segment holding each position ``p``."""
    return np.searchsorted(cu, p, side="right") - 1


def _is_boundary(cu: np.ndarray, chunk: Optional[int], p: int) -> bool:
    if p == 0 or p == cu[-1] or np.any(cu == p):
        return True
    return chunk is not None and (p - int(cu[_segment_of(cu, np.array(p))])) % chunk == 0


def _contexts(cu: np.ndarray, chunk: Optional[int], block_sizes: Sequence[int],
              reverse: bool) -> List[_Ctx]:
    ctxs = []
    s = 0
    for n in block_sizes:
        e = s + n
        inner = [cu[(cu > s) & (cu < e)]]
        if chunk is not None and n:
            first, last = _segment_of(cu, np.array([s, e - 1]))
            for k in range(int(first), int(last) + 1):
                lo, hi = int(cu[k]), int(cu[k + 1])
                if lo == hi:
                    continue
                m0 = max(1, -(-(s + 1 - lo) // chunk))
                inner.append(np.arange(lo + m0 * chunk, min(hi, e), chunk, dtype=np.int64))
        bounds = np.unique(np.concatenate([[s, e], *inner])) - s
        seg_ids = _segment_of(cu, bounds[:-1] + s) if n else np.zeros(0, np.int64)
        edge = _is_boundary(cu, chunk, e if reverse else s)
        ctxs.append(_Ctx(s, bounds.astype(np.int64), seg_ids, edge, reverse))
        s = e
    return ctxs


# --------------------------------------------------------------------------
# The graph, written once for every op


def _blocked(name: str, arrays: Sequence[da.Array], axis: int, reverse: bool,
             ctxs: Sequence[_Ctx], total: Callable[..., Any], compose: Callable[..., Any],
             apply: Callable[..., Any], extra: Optional[da.Array] = None
             ) -> Tuple[str, Dict[Any, Any], Dict[Tuple[int, ...], Any]]:
    """Three tasks per block: its total, its carry out (the prefix of the
    totals, a chain along the axis), and its scan from the carry in.

    ``extra`` (linear_scan's h0) has one block per line of blocks, with the
    segments on a leading axis.  Returns the name of the result blocks, the
    graph and, for each line of blocks, the key of its last carry."""
    # the partials carry the op's flags (inclusive, dtypes): part of the name
    flags = [(f.func.__name__, f.args) if isinstance(f, functools.partial) else f.__name__
             for f in (total, compose, apply)]
    token = tokenize(name, flags, [a.name for a in arrays], axis, reverse,
                     None if extra is None else extra.name,
                     [(c.bounds.tolist(), c.seg_ids.tolist(), c.edge) for c in ctxs])
    out, tot, car = f"{name}-{token}", f"{name}-total-{token}", f"{name}-carry-{token}"
    numblocks = arrays[0].numblocks
    others = [range(nb) for i, nb in enumerate(numblocks) if i != axis]
    dsk: Dict[Any, Any] = {}
    finals: Dict[Tuple[int, ...], Any] = {}
    order = range(numblocks[axis] - 1, -1, -1) if reverse else range(numblocks[axis])
    for o in itertools.product(*others):
        prev: Any = None
        for k in order:
            idx = (*o[:axis], k, *o[axis:])
            keys: List[Any] = [(a.name, *idx) for a in arrays]
            if extra is not None:
                keys.append((extra.name, 0, *o))
            ctx = ctxs[k]
            carry_in = None if ctx.edge else prev
            dsk[(tot, *idx)] = (total, ctx, *keys)
            dsk[(car, *idx)] = (compose, ctx, carry_in, (tot, *idx))
            dsk[(out, *idx)] = (apply, ctx, carry_in, *keys)
            prev = (car, *idx)
        finals[o] = prev
    return out, dsk, finals


def _array(name: str, dsk: Dict[Any, Any], deps: Sequence[da.Array], like: da.Array,
           dtype: np.dtype) -> da.Array:
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=list(deps))  # type: ignore
    return da.Array(graph, name, like.chunks, meta=np.empty((0,) * like.ndim, dtype))


def _pick(src: str, part: int, like: da.Array, dsk: Dict[Any, Any], deps: Sequence[da.Array],
          dtype: np.dtype) -> da.Array:
    name = f"{src}-{part}"
    layer = dict(dsk)
    for idx in itertools.product(*(range(nb) for nb in like.numblocks)):
        layer[(name, *idx)] = (operator.getitem, (src, *idx), part)
    return _array(name, layer, deps, like, dtype)


def _prepare(name: str, x: Any, axis: Any) -> Tuple[da.Array, int]:
    x = x if isinstance(x, da.Array) else da.asarray(x)
    if axis is None:
        return x.ravel(), 0
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name}: axis must be an integer or None; got {axis!r}")
    if x.ndim == 0:
        x = x.reshape(1)
    return x, _axis(name, axis, x.ndim)


def _axis(name: str, axis: Any, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name}: axis must be an integer or None; got {axis!r}")
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(int(axis), ndim)
    return int(axis) % ndim


# --------------------------------------------------------------------------
# The five monoid scans: total, compose, apply


def _m_scan(op: str, x: np.ndarray, axis: int, reverse: bool, inclusive: bool,
            cu: Optional[np.ndarray], acc: Optional[np.dtype]) -> Any:
    f = _FUNCS[op]
    if op in ("cummax", "cummin"):
        return f(x, axis, reverse=reverse, inclusive=inclusive, return_indices=True,
                 cu_seqlens=cu)
    if op in ("cumsum", "cumprod"):
        return f(x, axis, reverse=reverse, inclusive=inclusive, dtype=acc, cu_seqlens=cu)
    return f(x, axis, reverse=reverse, inclusive=inclusive, cu_seqlens=cu)


def _m_total(op: str, axis: int, acc: np.dtype, ctx: _Ctx, x: np.ndarray) -> Carry:
    if ctx.n == 0:
        return None
    lo, hi = ctx.tail()
    r = _m_scan(op, _take(x, axis, lo, hi), axis, ctx.reverse, True, None, acc)
    last = 0 if ctx.reverse else hi - lo - 1
    if isinstance(r, tuple):
        return _at(r[0], axis, last), _at(r[1], axis, last) + (ctx.start + lo)
    return _at(r, axis, last)


def _m_compose(op: str, acc: np.dtype, ctx: _Ctx, carry: Carry, total: Carry) -> Carry:
    if total is None:
        return None if ctx.reset else carry
    if ctx.reset or carry is None:
        return total
    if isinstance(total, tuple):
        v, i = _m_scan(op, np.stack([carry[0], total[0]]), 0, False, True, None, acc)
        return v[1], np.where(i[1] == 1, total[1], carry[1])
    return _m_scan(op, np.stack([carry, total]), 0, False, True, None, acc)[1]


def _m_apply(op: str, axis: int, inclusive: bool, acc: np.dtype, out_dtype: np.dtype,
             ctx: _Ctx, carry: Carry, x: np.ndarray) -> Any:
    s, n, rev = ctx.start, ctx.n, ctx.reverse

    def finish(r: Any, offset: int) -> Any:
        if isinstance(r, tuple):
            return r[0], np.where(r[1] >= 0, r[1] + offset, r[1])
        return r.astype(out_dtype, copy=False)

    if n == 0 or carry is None:
        if n == 0:
            empty = np.empty(x.shape, out_dtype)
            return (empty, np.empty(x.shape, np.int64)) if op in ("cummax", "cummin") else empty
        return finish(_m_scan(op, x, axis, rev, inclusive, ctx.bounds, acc), s)
    lo, hi = ctx.head()
    body_lo, body_hi = (0, lo) if rev else (hi, n)
    indexed = isinstance(carry, tuple)
    cv = carry[0] if indexed else carry
    # the carry enters the head piece as an element prepended in scan order
    head = _take(x, axis, lo, hi).astype(cv.dtype, copy=False)
    cvx = np.expand_dims(cv, axis)
    xs = np.concatenate([head, cvx] if rev else [cvx, head], axis)
    r = _m_scan(op, xs, axis, rev, inclusive, None, acc)
    m = hi - lo
    keep = (0, m) if rev else (1, m + 1)
    if indexed:
        v, i = (_take(part, axis, *keep) for part in r)
        cidx = np.expand_dims(carry[1], axis)
        carry_pos = m if rev else 0
        shift = s + lo - (0 if rev else 1)
        head_r: Any = (v, np.where(i == carry_pos, cidx, np.where(i >= 0, i + shift, i)))
    else:
        head_r = finish(_take(r, axis, *keep), 0)
    if body_hi == body_lo:
        return head_r
    body_cu = ctx.bounds[:-1] if rev else ctx.bounds[1:] - hi
    body_r = finish(_m_scan(op, _take(x, axis, body_lo, body_hi), axis, rev, inclusive, body_cu,
                            acc), s + body_lo)
    if indexed:
        return tuple(np.concatenate([b, h] if rev else [h, b], axis)
                     for h, b in zip(head_r, body_r))
    return np.concatenate([body_r, head_r] if rev else [head_r, body_r], axis)


def _monoid(op: str, x: Any, axis: Any, reverse: bool, inclusive: bool, dtype: Any,
            cu_seqlens: Any, chunk_size: Any, return_indices: bool = False
            ) -> Union[da.Array, Tuple[da.Array, da.Array]]:
    xd, ax = _prepare(op, x, axis)
    # a call on a tiny sample validates the flags and dtypes and gives the result dtype
    sample = np.zeros(1, xd.dtype)
    kw: Dict[str, Any] = {"reverse": reverse, "inclusive": inclusive}
    if op in ("cumsum", "cumprod"):
        kw["dtype"] = dtype
    out_dtype = np.asarray(_FUNCS[op](sample, **kw)).dtype if op not in (
        "cummax", "cummin") else _FUNCS[op](sample, **kw).dtype
    acc = _acc(out_dtype) if op in ("cumsum", "cumprod") else out_dtype
    cu, chunk = _segments(op, xd.shape[ax], cu_seqlens, chunk_size)
    ctxs = _contexts(cu, chunk, xd.chunks[ax], reverse)
    name, dsk, _ = _blocked(
        f"scanad-{op}", [xd], ax, reverse, ctxs,
        functools.partial(_m_total, op, ax, acc),
        functools.partial(_m_compose, op, acc),
        functools.partial(_m_apply, op, ax, inclusive, acc, out_dtype))
    if op in ("cummax", "cummin"):
        values = _pick(name, 0, xd, dsk, [xd], out_dtype)
        if not return_indices:
            return values
        return values, _pick(name, 1, xd, dsk, [xd], np.dtype(np.int64))
    return _array(name, dsk, [xd], xd, out_dtype)


def cumsum(x: ArrayLike, axis: Optional[int] = None, *, reverse: bool = False,
           inclusive: bool = True, dtype: Any = None, cu_seqlens: Optional[ArrayLike] = None,
           chunk_size: Optional[int] = None) -> da.Array:
    """Lazy :func:`scanad.cumsum` of a dask array, block by block.

    >>> import dask.array as da, scanad.dask as sad
    >>> sad.cumsum(da.arange(6, chunks=4), reverse=True).compute()
    array([15, 15, 14, 12,  9,  5])
    """
    y: Any = _monoid("cumsum", x, axis, reverse, inclusive, dtype, cu_seqlens, chunk_size)
    return y


def cumprod(x: ArrayLike, axis: Optional[int] = None, *, reverse: bool = False,
            inclusive: bool = True, dtype: Any = None, cu_seqlens: Optional[ArrayLike] = None,
            chunk_size: Optional[int] = None) -> da.Array:
    """Lazy :func:`scanad.cumprod` of a dask array.

    >>> import dask.array as da, scanad.dask as sad
    >>> sad.cumprod(da.from_array([1., 2., 3., 4.], chunks=1), inclusive=False).compute()
    array([1., 1., 2., 6.])
    """
    y: Any = _monoid("cumprod", x, axis, reverse, inclusive, dtype, cu_seqlens,
                     chunk_size)
    return y


def cummax(x: ArrayLike, axis: Optional[int] = None, *, reverse: bool = False,
           inclusive: bool = True, return_indices: bool = False,
           cu_seqlens: Optional[ArrayLike] = None, chunk_size: Optional[int] = None
           ) -> Union[da.Array, Tuple[da.Array, da.Array]]:
    """Lazy :func:`scanad.cummax`; the indices are global positions along the axis.

    >>> import dask.array as da, scanad.dask as sad
    >>> v, i = sad.cummax(da.from_array([1, 3, 3, 2, 3], chunks=2), return_indices=True)
    >>> v.compute(), i.compute()
    (array([1, 3, 3, 3, 3]), array([0, 1, 2, 2, 4]))
    """
    return _monoid("cummax", x, axis, reverse, inclusive, None, cu_seqlens, chunk_size,
                   return_indices)


def cummin(x: ArrayLike, axis: Optional[int] = None, *, reverse: bool = False,
           inclusive: bool = True, return_indices: bool = False,
           cu_seqlens: Optional[ArrayLike] = None, chunk_size: Optional[int] = None
           ) -> Union[da.Array, Tuple[da.Array, da.Array]]:
    """Lazy :func:`scanad.cummin`; the indices are global positions along the axis.

    >>> import dask.array as da, scanad.dask as sad
    >>> sad.cummin(da.from_array([3., 1., 2., 0.], chunks=3)).compute()
    array([3., 1., 1., 0.])
    """
    return _monoid("cummin", x, axis, reverse, inclusive, None, cu_seqlens, chunk_size,
                   return_indices)


def logcumsumexp(x: ArrayLike, axis: Optional[int] = None, *, reverse: bool = False,
                 inclusive: bool = True, cu_seqlens: Optional[ArrayLike] = None,
                 chunk_size: Optional[int] = None) -> da.Array:
    """Lazy :func:`scanad.logcumsumexp`; blocks are joined with log-add-exp.

    >>> import dask.array as da, numpy as np, scanad.dask as sad
    >>> sad.logcumsumexp(da.zeros(4, chunks=2)).compute() - np.log([1., 2., 3., 4.])
    array([0., 0., 0., 0.])
    """
    y: Any = _monoid("logcumsumexp", x, axis, reverse, inclusive, None, cu_seqlens,
                     chunk_size)
    return y


def _chunk_cumsum(name: str, g: Any, chunk_size: Optional[int], reverse: bool,
                  scale: Optional[float], cu_seqlens: Any, head_first: bool, output_dtype: Any,
                  kwargs: Dict[str, Any]) -> da.Array:
    scale = _resolve_scale(name, scale, kwargs)
    gd = g if isinstance(g, da.Array) else da.asarray(g)
    if gd.ndim not in (3, 4):
        layout = "[B, H, T] or [B, H, T, S]" if head_first else "[B, T, H] or [B, T, H, S]"
        raise ValueError(f"{name}: g must have layout {layout}; got {gd.ndim} dimensions "
                         f"(shape {gd.shape})")
    if gd.dtype.type not in _FLOATS:
        raise TypeError(f"{name}: g must be float16, float32 or float64; got dtype {gd.dtype}")
    if cu_seqlens is not None and gd.shape[0] != 1:
        raise ValueError(f"{name}: cu_seqlens needs a batch of one packed sequence (B == 1); "
                         f"got B = {gd.shape[0]}")
    out_dtype, acc = _chunk_dtypes(name, gd.dtype, output_dtype)
    y = cumsum(gd, 2 if head_first else 1, reverse=reverse, dtype=acc, cu_seqlens=cu_seqlens,
               chunk_size=chunk_size)
    if scale is not None:
        y = y * np.asarray(scale, acc)
    return y.astype(out_dtype)


def chunk_local_cumsum(g: ArrayLike, chunk_size: int, reverse: bool = False,
                       scale: Optional[float] = None, cu_seqlens: Optional[ArrayLike] = None,
                       head_first: bool = False, output_dtype: Any = None, **kwargs: Any
                       ) -> da.Array:
    """Lazy :func:`scanad.chunk_local_cumsum` (without ``out=``); chunks may
    straddle the dask blocks.

    >>> import dask.array as da, scanad.dask as sad
    >>> g = da.ones((1, 6, 1), dtype="float32", chunks=(1, 5, 1))
    >>> sad.chunk_local_cumsum(g, 4)[0, :, 0].compute()
    array([1., 2., 3., 4., 1., 2.], dtype=float32)
    """
    if chunk_size is None or isinstance(chunk_size, bool) or not isinstance(
            chunk_size, (int, np.integer)):
        raise TypeError(f"chunk_local_cumsum: chunk_size must be a positive integer; "
                        f"got {chunk_size!r}")
    return _chunk_cumsum("chunk_local_cumsum", g, chunk_size, reverse, scale, cu_seqlens,
                         head_first, output_dtype, kwargs)


def chunk_global_cumsum(s: ArrayLike, reverse: bool = False,
                        cu_seqlens: Optional[ArrayLike] = None, scale: Optional[float] = None,
                        head_first: bool = False, output_dtype: Any = None, **kwargs: Any
                        ) -> da.Array:
    """Lazy :func:`scanad.chunk_global_cumsum` (without ``out=``).

    >>> import dask.array as da, scanad.dask as sad
    >>> s = da.ones((1, 5, 1), chunks=(1, 2, 1))
    >>> sad.chunk_global_cumsum(s, cu_seqlens=[0, 2, 5])[0, :, 0].compute()
    array([1., 2., 1., 2., 3.])
    """
    return _chunk_cumsum("chunk_global_cumsum", s, None, reverse, scale, cu_seqlens,
                         head_first, output_dtype, kwargs)


# --------------------------------------------------------------------------
# linear_scan: the carry is a state, a block's total the affine map (P, H)


def _l_total(axis: int, log_a: bool, acc: np.dtype, ctx: _Ctx, a: np.ndarray, b: np.ndarray,
             h0: np.ndarray) -> Carry:
    if ctx.n == 0:
        return None
    lo, hi = ctx.tail()
    at, bt = _take(a, axis, lo, hi), _take(b, axis, lo, hi)
    kw: Dict[str, Any] = {"reverse": ctx.reverse, "log_a": log_a, "return_final": True,
                          "dtype": acc}
    if ctx.reset:
        # the tail piece starts at a boundary, from its segment's h0
        start = h0[ctx.seg_ids[0 if ctx.reverse else -1]]
        return None, _np_linear_scan(at, bt, axis, h0=start, **kw)[1]
    p = _np_linear_scan(at, np.zeros((), acc), axis, h0=np.ones((), acc), **kw)[1]
    return p, _np_linear_scan(at, bt, axis, **kw)[1]


def _l_compose(ctx: _Ctx, carry: Carry, total: Carry) -> Carry:
    if total is None:
        return None if ctx.reset else carry
    p, h = total
    if p is None or carry is None:
        return h
    # a zero factor resets exactly, even from an infinite or NaN carry
    return np.where(p == 0, h, p * carry + h)


def _l_apply(axis: int, inclusive: bool, log_a: bool, rt: np.dtype, cu: Optional[np.ndarray],
             ctx: _Ctx, carry: Carry, a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> Any:
    """The block's states; with ``cu`` (segments' final states wanted) also the
    final states of the segments the block owns (see :func:`_final_owners`)."""
    if ctx.n == 0:
        h = np.empty(b.shape, rt)
        return h if cu is None else (h, h0[ctx.final_segs].astype(rt))
    starts = np.array(h0[ctx.seg_ids], dtype=np.result_type(h0, rt))
    if carry is not None:
        starts[-1 if ctx.reverse else 0] = carry
    out: Any = _np_linear_scan(a, b, axis, h0=starts, reverse=ctx.reverse,
                               inclusive=inclusive, log_a=log_a, dtype=rt,
                               cu_seqlens=ctx.bounds, return_final=cu is not None)
    if cu is None:
        return out
    h, piece_final = out
    # a piece ends its segment (in scan order) where the segment's last step is
    glo, ghi = ctx.start + ctx.bounds[:-1], ctx.start + ctx.bounds[1:]
    ends = (glo == cu[ctx.seg_ids]) if ctx.reverse else (ghi == cu[ctx.seg_ids + 1])
    piece_of = dict(zip(ctx.seg_ids[ends].tolist(), np.flatnonzero(ends).tolist()))
    final = h0[ctx.final_segs].astype(rt)   # an empty segment's final state is its h0
    for i, k in enumerate(ctx.final_segs.tolist()):
        if k in piece_of:
            final[i] = piece_final[piece_of[k]]
    return h, final


def _final_owners(cu: np.ndarray, block_sizes: Sequence[int], reverse: bool) -> np.ndarray:
    """The block holding each segment's last step in scan order (for an empty
    segment, a neighbouring block): non-decreasing, so each block's segments
    are a run and the final states can be blocked along the segments."""
    n = int(cu[-1])
    last = cu[:-1] if reverse else cu[1:] - 1
    q = np.where(cu[1:] > cu[:-1], last, cu[:-1] - (0 if reverse else 1))
    q = np.clip(q, 0, max(n - 1, 0))
    ends = np.cumsum(block_sizes)
    return np.minimum(np.searchsorted(ends, q, side="right"), len(block_sizes) - 1)


def _l_final(rt: np.dtype, carry: Carry, h0: np.ndarray) -> np.ndarray:
    return np.asarray(h0[0] if carry is None else carry).astype(rt)


def linear_scan(a: ArrayLike, b: ArrayLike, axis: Optional[int] = None, *,
                h0: Optional[ArrayLike] = None, reverse: bool = False, inclusive: bool = True,
                log_a: bool = False, return_final: bool = False, dtype: Any = None,
                cu_seqlens: Optional[ArrayLike] = None, chunk_size: Optional[int] = None
                ) -> Union[da.Array, Tuple[da.Array, da.Array]]:
    """Lazy :func:`scanad.linear_scan`: each block starts from its carry as ``h0``.

    ``a``, ``b`` and ``h0`` may be dask arrays, NumPy arrays or scalars; they
    are broadcast and rechunked to ``b``'s blocks (``a``'s if ``b`` is not a
    dask array).  With ``cu_seqlens``, ``return_final=True`` gives one final
    state per segment (blocked along the segments by the block holding each
    segment's last step).

    >>> import dask.array as da, numpy as np, scanad.dask as sad
    >>> x = da.from_array(np.array([1.0, 2.0, 3.0, 4.0]), chunks=1)
    >>> h, last = sad.linear_scan(0.9, 0.1 * x, return_final=True)
    >>> h.compute(), last.compute()
    (array([0.1   , 0.29  , 0.561 , 0.9049]), array(0.9049))
    """
    def sample(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, complex)):
            return v
        return np.empty((), v.dtype if hasattr(v, "dtype") else np.asarray(v).dtype)

    rt = _result_dtype(sample(a), sample(b), sample(h0), dtype)
    acc = _acc(rt)
    like = b if isinstance(b, da.Array) or not isinstance(a, da.Array) else a
    like = like if isinstance(like, da.Array) else da.asarray(like)
    ad, bd = da.broadcast_arrays(da.asarray(a), da.asarray(b))
    if axis is None:
        ad, bd, ax = ad.ravel(), bd.ravel(), 0
    else:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"linear_scan: axis must be an integer or None; got {axis!r}")
        if bd.ndim == 0:
            ad, bd = ad.reshape(1), bd.reshape(1)
        ax = _axis("linear_scan", axis, bd.ndim)
    chunks = bd.chunks if bd.shape == like.shape or axis is None else None
    bd = bd.rechunk(chunks) if chunks is not None else bd
    ad = ad.rechunk(bd.chunks)
    n = bd.shape[ax]
    cu, chunk = _segments("linear_scan", n, cu_seqlens, chunk_size)
    lines = tuple(d for i, d in enumerate(bd.shape) if i != ax)
    nseg = len(cu) - 1 if cu_seqlens is not None else 1
    h0v = da.zeros((), dtype=rt) if h0 is None else da.asarray(h0)
    if cu_seqlens is None or h0v.ndim == 0:
        h0v = h0v[None] if h0v.ndim <= len(lines) else h0v
    try:
        h0v = da.broadcast_to(h0v, (nseg, *lines))
    except ValueError:
        want = "(segments, *lines)" if cu_seqlens is not None else "the lines"
        raise ValueError(f"linear_scan: h0 of shape {h0v.shape} does not broadcast to "
                         f"{want} {(nseg, *lines)}") from None
    h0v = h0v.rechunk(((nseg,), *(c for i, c in enumerate(bd.chunks) if i != ax)))
    ctxs = _contexts(cu, chunk, bd.chunks[ax], reverse)
    seg_final = return_final and cu_seqlens is not None
    owners = _final_owners(cu, bd.chunks[ax], reverse)
    for k, ctx in enumerate(ctxs):
        ctx.final_segs = np.flatnonzero(owners == k)
    name, dsk, finals = _blocked(
        "scanad-linear_scan", [ad, bd], ax, reverse, ctxs,
        functools.partial(_l_total, ax, log_a, acc), _l_compose,
        functools.partial(_l_apply, ax, inclusive, log_a, rt, cu if seg_final else None),
        extra=h0v)
    if seg_final:
        # the blocks' tasks return (states, final states of the segments they own)
        h = _pick(name, 0, bd, dsk, [ad, bd, h0v], rt)
        counts = tuple(int(c) for c in np.bincount(owners, minlength=len(ctxs)))
        fchunks = (counts, *(c for i, c in enumerate(bd.chunks) if i != ax))
        fname = f"{name}-final"
        layer = dict(dsk)
        for idx in itertools.product(*(range(nb) for nb in bd.numblocks)):
            layer[(fname, idx[ax], *idx[:ax], *idx[ax + 1:])] = (operator.getitem,
                                                                  (name, *idx), 1)
        graph = HighLevelGraph.from_collections(fname, layer, dependencies=[ad, bd, h0v])
        return h, da.Array(graph, fname, fchunks, meta=np.empty((0,) * (1 + len(lines)), rt))
    h = _array(name, dsk, [ad, bd, h0v], bd, rt)
    if not return_final:
        return h
    fname = f"{name}-final"
    layer = dict(dsk)
    for o, key in finals.items():
        layer[(fname, *o)] = (_l_final, rt, key, (h0v.name, 0, *o))
    graph = HighLevelGraph.from_collections(fname, layer, dependencies=[ad, bd, h0v])
    fchunks = tuple(c for i, c in enumerate(bd.chunks) if i != ax)
    return h, da.Array(graph, fname, fchunks, meta=np.empty((0,) * len(lines), rt))


# --------------------------------------------------------------------------
# Derivatives, built from the blocked scans above: every rule is a linear
# scan (or a cumsum) whose carries the blocked graph already handles.

_Kw = Dict[str, Any]


def _scan_index(v: da.Array, ax: int) -> Tuple[slice, ...]:
    return (slice(None),) * ax


def _shift(v: da.Array, ax: int, step: int, fill: Any = 0) -> da.Array:
    """``v`` moved by ``step`` (+1: each position gets the next one's value,
    -1: the previous one's), ``fill`` where nothing comes in; same chunks."""
    n = v.shape[ax]
    if n == 0:
        return v
    pre = _scan_index(v, ax)
    pad = da.full_like(v[(*pre, slice(0, 1))], fill)
    if step > 0:
        moved = da.concatenate([v[(*pre, slice(1, None))], pad], axis=ax)
    else:
        moved = da.concatenate([pad, v[(*pre, slice(0, n - 1))]], axis=ax)
    return moved.rechunk(v.chunks)


def _starts_block(cu: np.ndarray, chunk: Optional[int], reverse: bool, p: np.ndarray
                  ) -> np.ndarray:
    q = p + 1 if reverse else p   # a piece starts, in scan order, after a boundary
    seg_start = cu[np.clip(_segment_of(cu, q), 0, len(cu) - 1)]
    on_cu = np.isin(q, cu)
    if chunk is None:
        return on_cu
    return on_cu | ((q - seg_start) % chunk == 0)


def _starts(v: da.Array, ax: int, cu: np.ndarray, chunk: Optional[int], reverse: bool
            ) -> da.Array:
    """True at the first element of each piece in scan order, shaped to broadcast
    against ``v`` (built lazily, block by block)."""
    pos = da.arange(v.shape[ax], chunks=(v.chunks[ax],), dtype=np.int64)
    mask = pos.map_blocks(functools.partial(_starts_block, cu, chunk, reverse), dtype=bool)
    return mask.reshape(mask.shape + (1,) * (v.ndim - ax - 1))


def _unbroadcast(v: da.Array, shape: Tuple[int, ...]) -> da.Array:
    """Sum ``v`` down to ``shape`` (the cotangent of a broadcast operand)."""
    lead = v.ndim - len(shape)
    if lead:
        v = v.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and v.shape[i] != 1)
    return v.sum(axis=axes, keepdims=True) if axes else v


def _seg_sums(v: da.Array, ax: int, cu: Optional[np.ndarray]) -> da.Array:
    """Sums along ``ax`` over the whole axis, or over each segment (leading axis)."""
    if cu is None:
        return v.sum(axis=ax)
    pre = _scan_index(v, ax)
    return da.stack([v[(*pre, slice(int(lo), int(hi)))].sum(axis=ax)
                     for lo, hi in zip(cu[:-1], cu[1:])])


class _Lin:
    """The pieces of a linear recurrence's derivative along one axis."""

    def __init__(self, a: da.Array, ax: int, kw: _Kw) -> None:
        self.a, self.ax, self.kw = a, ax, kw
        self.reverse = bool(kw.get("reverse", False))
        self.inclusive = bool(kw.get("inclusive", True))
        self.cu_given = kw.get("cu_seqlens") is not None
        self.cu, self.chunk = _segments("vjp", a.shape[ax], kw.get("cu_seqlens"),
                                        kw.get("chunk_size"))
        self.start = _starts(a, ax, self.cu, self.chunk, self.reverse)
        self.step = -1 if self.reverse else 1
        self.seg: Dict[str, Any] = {"cu_seqlens": kw.get("cu_seqlens"),
                                    "chunk_size": kw.get("chunk_size")}

    def tangent(self, b_dot: da.Array, h0_dot: Any = None, return_final: bool = False
                ) -> Any:
        """The recurrence's output for the inputs ``b_dot`` and ``h0_dot``
        (with its final states: the tangents of the final states)."""
        h: Any = linear_scan(self.a, b_dot, self.ax, h0=h0_dot, reverse=self.reverse,
                             inclusive=self.inclusive, return_final=return_final, **self.seg)
        return h

    def final_cotangent(self, g_final: Any, like: da.Array) -> da.Array:
        """``g_final`` (one per segment, or per line without ``cu_seqlens``)
        placed at each segment's last step in scan order, zero elsewhere, as
        ``like``: the cotangent it adds to the inclusive states."""
        cu, ax = self.cu, self.ax
        nseg = len(cu) - 1
        lines = tuple(d for i, d in enumerate(like.shape) if i != ax)
        gf = g_final if isinstance(g_final, da.Array) else da.asarray(g_final)
        want = (nseg, *lines) if self.cu_given else lines
        if gf.shape != want:
            raise ValueError(f"vjp of linear_scan: the cotangent g_final must have the final "
                             f"state's shape {want}; got {gf.shape}")
        gf = gf if self.cu_given else gf[None]
        block_sizes = like.chunks[ax]
        owners = _final_owners(cu, block_sizes, self.reverse)
        counts = tuple(int(c) for c in np.bincount(owners, minlength=len(block_sizes)))
        line_chunks = tuple(c for i, c in enumerate(like.chunks) if i != ax)
        gf = da.moveaxis(gf.rechunk((counts, *line_chunks)), 0, ax)
        # each block's local position of its segments' last steps (-1: empty segment)
        last = cu[:-1] if self.reverse else cu[1:] - 1
        local = np.where(cu[1:] > cu[:-1], last - np.concatenate([[0], np.cumsum(
            block_sizes)])[owners], -1)
        per_block = [local[owners == k] for k in range(len(block_sizes))]
        return da.map_blocks(functools.partial(_place, ax, per_block), gf,
                             chunks=like.chunks, dtype=gf.dtype)

    def cotangent(self, g: da.Array, g_final: Optional[da.Array] = None
                  ) -> Tuple[da.Array, da.Array]:
        """``(b_bar, direct)``: the cotangent of ``b`` and, for an exclusive scan,
        the part of ``g`` read at piece starts (where the output is ``h0``);
        ``g_final`` from :meth:`final_cotangent` joins the inclusive states."""
        direct = da.zeros_like(g)
        if not self.inclusive:
            direct = da.where(self.start, g, 0)
            g = _shift(da.where(self.start, 0, g), self.ax, self.step)
        if g_final is not None:
            g = g + g_final
        factor = da.conj(_shift(self.a, self.ax, self.step))
        lam = linear_scan(factor, g, self.ax, reverse=not self.reverse, **self.seg)
        assert isinstance(lam, da.Array)
        return lam, direct

    def h0_bar(self, lam: da.Array, direct: da.Array) -> da.Array:
        at_start = da.where(self.start, da.conj(self.a) * lam, 0) + direct
        return _seg_sums(at_start, self.ax, self.cu if self.cu_given else None)


def _place(ax: int, per_block: Sequence[np.ndarray], gf: np.ndarray,
           block_info: Any = None) -> np.ndarray:
    """One block of :meth:`_Lin.final_cotangent`: its segments' ``g_final`` rows
    (along ``ax``) written at their last steps."""
    info = block_info[None]
    out = np.zeros(info["chunk-shape"], gf.dtype)
    pos = per_block[info["chunk-location"][ax]]
    keep = pos >= 0
    index: List[Any] = [slice(None)] * out.ndim
    index[ax] = pos[keep]
    src: List[Any] = [slice(None)] * gf.ndim
    src[ax] = np.flatnonzero(keep)
    out[tuple(index)] = gf[tuple(src)]
    return out


def _kind(v: Any) -> str:
    """The dtype kind of an array or scalar (a dask array's without computing it)."""
    return str(v.dtype.kind if hasattr(v, "dtype") else np.asarray(v).dtype.kind)


def _op_name(op: Any) -> str:
    name = op
    if not isinstance(op, str):
        # scanad's own functions only: numpy.cumsum has the same name
        name = getattr(op, "__name__", None) if str(getattr(
            op, "__module__", "")).startswith("scanad") else None
    if name not in (*_FUNCS, "linear_scan"):
        raise ValueError(f"op must be one of cumsum, cumprod, cummax, cummin, logcumsumexp, "
                         f"linear_scan (a function or its name); got {op!r}")
    return str(name)


def _float_input(name: str, mode: str, x: Any, axis: Any, dtype: Any = None
                 ) -> Tuple[da.Array, int, np.dtype]:
    xd, ax = _prepare(name, x, axis)
    if xd.dtype.kind not in "fc":
        raise TypeError(f"{mode} of {name}: x must be a floating or complex array "
                        f"(derivatives of integer scans are not defined); got dtype {xd.dtype}")
    in_dtype = xd.dtype
    if dtype is not None:
        xd = xd.astype(dtype)
    return xd, ax, in_dtype


def _back(v: da.Array, dtype: np.dtype) -> da.Array:
    if dtype.kind != "c" and v.dtype.kind == "c":
        v = v.real
    return v.astype(dtype)


def _as_like(v: Any, like: da.Array, ax: int, axis: Any) -> da.Array:
    """A tangent or cotangent shaped and chunked as the (flattened) primal."""
    vd = v if isinstance(v, da.Array) else da.asarray(v)
    vd = vd.ravel() if axis is None else vd
    if vd.shape != like.shape:
        raise ValueError(f"tangents and cotangents must have the shape {like.shape}; "
                         f"got {vd.shape}")
    return vd.rechunk(like.chunks)


def _scan_rules(name: str, x: Any, axis: Any, kw: _Kw
                ) -> Tuple[Any, da.Array, int, np.dtype,
                           Callable[[da.Array], da.Array], Callable[[da.Array], da.Array]]:
    """The primal output and the JVP and VJP maps of one of the five scans."""
    kw = dict(kw)
    unknown = sorted(set(kw) - {"reverse", "inclusive", "dtype", "cu_seqlens", "chunk_size"})
    if unknown or (name not in ("cumsum", "cumprod") and "dtype" in kw):
        raise TypeError(f"derivative of {name}: unexpected keyword arguments "
                        f"{unknown or ['dtype']}")
    xd, ax, in_dtype = _float_input(name, "derivative", x, axis, kw.pop("dtype", None))
    fwd = functools.partial(_FUNCS_DASK[name], axis=ax, **kw)
    y = fwd(xd)
    if name == "cumsum":
        back = dict(kw, reverse=not kw.get("reverse", False))
        return y, xd, ax, in_dtype, fwd, functools.partial(cumsum, axis=ax, **back)
    if name in ("cummax", "cummin"):
        y, idx = _FUNCS_DASK[name](xd, ax, return_indices=True, **kw)
        rev, inc = bool(kw.get("reverse", False)), bool(kw.get("inclusive", True))
        step = -1 if rev else 1
        # runs of outputs with the same owner: each run starts where the owner changes
        run_start = idx != _shift(idx, ax, -step, fill=-2)
        same_next = (_shift(idx, ax, step, fill=-2) == idx).astype(xd.real.dtype)

        def jvp_rule(t: da.Array) -> da.Array:
            owner_t = t if inc else _shift(t, ax, -step)
            b = da.where(run_start & (idx >= 0), owner_t, 0)
            y_dot: Any = linear_scan((~run_start).astype(xd.real.dtype), b, ax, reverse=rev)
            return y_dot

        def vjp_rule(g: da.Array) -> da.Array:
            g = da.where(idx >= 0, g, 0)
            lam = linear_scan(same_next, g, ax, reverse=not rev)
            c = da.where(run_start & (idx >= 0), lam, 0)
            return c if inc else _shift(c, ax, step)

        return y, xd, ax, in_dtype, jvp_rule, vjp_rule
    if name == "cumprod":
        lin = _Lin(xd, ax, kw)
        hp = cumprod(xd, ax, **dict(kw, inclusive=False))

        def cumprod_bar(g: da.Array) -> da.Array:
            return lin.cotangent(g)[0] * da.conj(hp)

        return y, xd, ax, in_dtype, lambda t: lin.tangent(t * hp), cumprod_bar
    # logcumsumexp: y_t = w y_{t-1} + (1 - w)-weighted input, w = exp(y_prev - y)
    inc_y = y if kw.get("inclusive", True) else logcumsumexp(xd, ax, **dict(kw, inclusive=True))
    y_prev = logcumsumexp(xd, ax, **dict(kw, inclusive=False))
    finite = da.isfinite(inc_y.real)
    decay = da.where(finite, da.exp(y_prev - inc_y), 0)
    weight = da.where(finite, da.exp(xd - inc_y), 0)
    lin = _Lin(decay, ax, kw)
    return (y, xd, ax, in_dtype, lambda t: lin.tangent(weight * t),
            lambda g: da.conj(weight) * lin.cotangent(g)[0])


_FUNCS_DASK: Dict[str, Callable[..., Any]] = {
    "cumsum": cumsum, "cumprod": cumprod, "cummax": cummax, "cummin": cummin,
    "logcumsumexp": logcumsumexp,
}


def _linear_inputs(mode: str, x: Any, axis: Any, kw: _Kw
                   ) -> Tuple[Any, da.Array, Any, int, Tuple[Any, ...], _Kw]:
    """``(y, a, h0, axis, shapes, kw)``: ``y`` is ``h``, or ``(h, h_final)``
    with ``return_final`` (taken out of ``kw``: the derivative scans want no finals)."""
    if not isinstance(x, tuple) or len(x) != 3:
        raise TypeError(f"{mode} of linear_scan: x must be the tuple (a, b, h0)")
    kw = dict(kw)
    want_final = bool(kw.pop("return_final", False))
    unknown = sorted(set(kw) - {"reverse", "inclusive", "log_a", "dtype", "cu_seqlens",
                                "chunk_size"})
    if unknown:
        raise TypeError(f"{mode} of linear_scan: unexpected keyword arguments {unknown}")
    a, b, h0 = x
    y: Any = linear_scan(a, b, axis, h0=h0, return_final=want_final, **kw)
    h = y[0] if want_final else y
    shapes = tuple(None if v is None else np.shape(v) for v in x)
    ad = da.broadcast_to(da.asarray(a), h.shape if axis is not None else np.broadcast_shapes(
        np.shape(a), np.shape(b)))
    ad = (ad.ravel() if axis is None else ad).astype(h.dtype).rechunk(h.chunks)
    ax = 0 if axis is None else _axis("linear_scan", axis, h.ndim)
    return y, ad, h0, ax, shapes, kw


def vjp(op: Any, x: Any, axis: Optional[int] = None, **kw: Any
        ) -> Tuple[Any, Callable[[Any], Any]]:
    """``(y, pullback)`` with ``pullback(g) = J^H g``, all lazy.

    As :func:`scanad.vjp`, for dask arrays: ``op`` is one of the five scans or
    ``linear_scan`` (a scanad or scanad.dask function, or its name); for
    ``linear_scan`` ``x`` is ``(a, b, h0)`` and the pullback returns
    ``(a_bar, b_bar, h0_bar)`` (``h0_bar`` None when ``h0`` is None).  For
    cummax/cummin ``y`` is the values.

    >>> import dask.array as da, numpy as np, scanad.dask as sad
    >>> x = da.from_array(np.array([1.0, 2.0, 3.0]), chunks=2)
    >>> y, pullback = sad.vjp("cumprod", x)
    >>> pullback(da.ones(3, chunks=2)).compute()
    array([9., 4., 2.])
    """
    name = _op_name(op)
    if name == "linear_scan":
        y, a_eff, h0, ax, shapes, lkw = _linear_inputs("vjp", x, axis, kw)
        want_final = isinstance(y, tuple)
        h = y[0] if want_final else y
        if lkw.get("log_a"):
            a_eff = da.exp(a_eff)
        lin = _Lin(a_eff, ax, lkw)
        hp = linear_scan(x[0], x[1], axis, h0=h0, **dict(lkw, inclusive=False))
        bshape = np.broadcast_shapes(shapes[0], shapes[1])

        def lin_pullback(g: Any) -> Tuple[da.Array, da.Array, Optional[da.Array]]:
            g_final = None
            if want_final:
                if not isinstance(g, (tuple, list)) or len(g) != 2:
                    raise TypeError("vjp of linear_scan with return_final=True: the cotangent "
                                    "must be a pair (g, g_final) (g_final may be None); got "
                                    f"{type(g).__name__}")
                g, g_final = g
                if g is None:   # a cotangent of the final states alone
                    g = da.zeros(h.shape, h.dtype, chunks=h.chunks)
            gd = _as_like(g, h, ax, axis)
            placed = None if g_final is None else lin.final_cotangent(g_final, h)
            lam, direct = lin.cotangent(gd, placed)
            a_bar = lam * da.conj(hp)
            if lkw.get("log_a"):
                a_bar = a_bar * da.conj(a_eff)
            out = []
            for v, shape, src in ((a_bar, shapes[0], x[0]), (lam, shapes[1], x[1])):
                v = _unbroadcast(v.reshape(bshape) if axis is None else v, shape)
                real = _kind(src) != "c"
                out.append(v.real if real and v.dtype.kind == "c" else v)
            h0_bar = None
            if h0 is not None:
                hb = lin.h0_bar(lam, direct)
                if g_final is not None and np.any(np.diff(lin.cu) == 0):
                    # an empty segment's (or axis') final state is its h0
                    empty = (np.diff(lin.cu) == 0).reshape((-1,) + (1,) * (hb.ndim - 1))
                    gf = da.asarray(g_final)
                    hb = hb + da.where(empty if lin.cu_given else bool(empty.all()), gf, 0)
                h0_bar = _unbroadcast(hb, shapes[2]) if shapes[2] != hb.shape else hb
                if _kind(h0) != "c" and h0_bar.dtype.kind == "c":
                    h0_bar = h0_bar.real
            return out[0], out[1], h0_bar

        return y, lin_pullback
    y, xd, ax, in_dtype, _, vjp_rule = _scan_rules(name, x, axis, kw)

    def pullback(g: Any) -> da.Array:
        x_bar = vjp_rule(_as_like(g, xd, ax, axis).astype(
            np.result_type(xd.dtype, np.asarray(g).dtype if not isinstance(g, da.Array)
                           else g.dtype)))
        x_bar = _back(x_bar, in_dtype)
        return x_bar.reshape(np.shape(x)) if axis is None and np.ndim(x) != 1 else x_bar

    return y, pullback


def jvp(op: Any, x: Any, t: Any, axis: Optional[int] = None, **kw: Any) -> Tuple[Any, Any]:
    """``(y, y_dot)`` with ``y_dot = J t``, lazy; arguments as :func:`vjp`
    (for ``linear_scan`` the tangent is ``(a_dot, b_dot, h0_dot)``, Nones zero).

    >>> import dask.array as da, numpy as np, scanad.dask as sad
    >>> x = da.from_array(np.array([1.0, 3.0, 2.0]), chunks=1)
    >>> y, y_dot = sad.jvp(sad.cummax, x, da.from_array(np.array([10., 20., 30.]), chunks=1))
    >>> y_dot.compute()
    array([10., 20., 20.])
    """
    name = _op_name(op)
    if name == "linear_scan":
        y, a_eff, h0, ax, shapes, lkw = _linear_inputs("jvp", x, axis, kw)
        want_final = isinstance(y, tuple)
        h = y[0] if want_final else y
        if not isinstance(t, tuple) or len(t) != 3:
            raise TypeError("jvp of linear_scan: t must be the tuple (a_dot, b_dot, h0_dot)")
        if lkw.get("log_a"):
            a_eff = da.exp(a_eff)
        lin = _Lin(a_eff, ax, lkw)
        b_in = da.zeros(h.shape, h.dtype, chunks=h.chunks)
        if t[0] is not None:
            hp = linear_scan(x[0], x[1], axis, h0=h0, **dict(lkw, inclusive=False))
            a_dot = da.broadcast_to(da.asarray(t[0]), h.shape if axis is not None else
                                    np.broadcast_shapes(shapes[0], shapes[1]))
            a_dot = (a_dot.ravel() if axis is None else a_dot).rechunk(h.chunks)
            if lkw.get("log_a"):
                a_dot = a_dot * a_eff
            b_in = b_in + a_dot * hp
        if t[1] is not None:
            b_dot = da.broadcast_to(da.asarray(t[1]), h.shape if axis is not None else
                                    np.broadcast_shapes(shapes[0], shapes[1]))
            b_in = b_in + (b_dot.ravel() if axis is None else b_dot).rechunk(h.chunks)
        return y, lin.tangent(b_in.astype(h.dtype), t[2], want_final)
    y, xd, ax, _, jvp_rule, _ = _scan_rules(name, x, axis, kw)
    return y, jvp_rule(_as_like(t, xd, ax, axis).astype(xd.dtype))
