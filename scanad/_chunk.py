"""Chunked and global cumsums of linear attention (flash-linear-attention's
``fla/ops/utils/cumsum.py`` semantics) on the segmented-scan engine.

Layouts: ``[B, T, H]`` / ``[B, T, H, S]`` with time on axis 1, or
``head_first=True`` for ``[B, H, T]`` / ``[B, H, T, S]`` with time on axis 2.
With ``cu_seqlens`` the batch holds one packed sequence (``B == 1``) and the
scan restarts at every boundary.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _scanad as _C
from ._ops import SUM

_FLOATS = (np.float16, np.float32, np.float64)
#: the dtypes the chunk functions take and return (their registry entries)
DTYPES = tuple(np.dtype(t).name for t in _FLOATS)


def _resolve_scale(name: str, scale: Optional[float], kwargs: Dict[str, Any]) -> Optional[float]:
    if "softmax_scale" in kwargs:
        alias = kwargs.pop("softmax_scale")
        if scale is not None and alias is not None:
            raise TypeError(f"{name}: pass scale or its alias softmax_scale, not both")
        scale = alias if scale is None else scale
    if kwargs:
        raise TypeError(f"{name}() got unexpected keyword arguments {sorted(kwargs)}")
    return scale


def _prepare(name: str, arg: str, g: Any, cu_seqlens: Any, head_first: bool
             ) -> Tuple[np.ndarray, int]:
    g = np.asarray(g)
    if g.ndim not in (3, 4):
        layout = "[B, H, T] or [B, H, T, S]" if head_first else "[B, T, H] or [B, T, H, S]"
        raise ValueError(f"{name}: {arg} must have layout {layout}; got {g.ndim} dimensions "
                         f"(shape {g.shape})")
    if g.dtype.type not in _FLOATS:
        raise TypeError(f"{name}: {arg} must be float16, float32 or float64; "
                        f"got dtype {g.dtype}")
    if cu_seqlens is not None and g.shape[0] != 1:
        raise ValueError(f"{name}: cu_seqlens needs a batch of one packed sequence (B == 1); "
                         f"got B = {g.shape[0]}")
    return g, (2 if head_first else 1)


def _chunk_dtypes(name: str, in_dtype: np.dtype, output_dtype: Any) -> Tuple[np.dtype, np.dtype]:
    """The result's dtype (output_dtype, default the input's, in native byte
    order as the scans' results are) and the one the sums run in: the wider
    of input and output, at least float32 (float16 sums are rounded only
    after the scale, as fla does)."""
    out_dtype = (in_dtype if output_dtype is None else np.dtype(output_dtype)).newbyteorder("=")
    if out_dtype.type not in _FLOATS:
        raise TypeError(f"{name}: output_dtype must be float16, float32 or float64; "
                        f"got {out_dtype}")
    return out_dtype, np.promote_types(np.promote_types(in_dtype, out_dtype), np.float32)


def _accumulate(name: str, g: np.ndarray, axis: int, reverse: bool, scale: Optional[float],
                cu_seqlens: Any, chunk_size: Optional[int], output_dtype: Any,
                out: Optional[np.ndarray]) -> np.ndarray:
    out_dtype, acc = _chunk_dtypes(name, g.dtype, output_dtype)
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{name}: out must be a numpy.ndarray; got {type(out).__name__}")
        if out.shape != g.shape or out.dtype.newbyteorder("=") != out_dtype:
            raise ValueError(f"{name}: out must have shape {g.shape} and dtype {out_dtype} "
                             f"(either byte order); got shape {out.shape} and dtype {out.dtype}")
    direct = out if out is not None and out.dtype == acc else None
    # errors name this wrapper, which the user called, not the cumsum it runs
    y = _C.scan(SUM, g, axis, reverse, True, acc, direct, cu_seqlens, chunk_size, False, name)
    if scale is not None:
        np.multiply(y, scale, out=y, casting="unsafe")
    if out is None:
        return y.astype(out_dtype, copy=False)
    if direct is None:
        np.copyto(out, y, casting="unsafe")
    return out


def chunk_local_cumsum(
    g: Any,
    chunk_size: int,
    reverse: bool = False,
    scale: Optional[float] = None,
    cu_seqlens: Any = None,
    head_first: bool = False,
    output_dtype: Any = None,
    out: Optional[np.ndarray] = None,
    **kwargs: Any,
) -> np.ndarray:
    """Cumulative sum of ``g`` along time within chunks of ``chunk_size``.

    Chunk boundaries count from each sequence start (``cu_seqlens``);
    ``reverse=True`` is a true suffix sum within each chunk; ``scale`` (alias
    ``softmax_scale``) multiplies the sums; the result has ``output_dtype``
    (default: g's dtype).  ``out=`` (an extension of fla's signature) takes a
    preallocated result of g's shape and the output dtype; ``out=g`` works.

    >>> import numpy as np, scanad as sa
    >>> g = np.ones((1, 6, 1), np.float32)
    >>> sa.chunk_local_cumsum(g, 4)[0, :, 0]
    array([1., 2., 3., 4., 1., 2.], dtype=float32)
    """
    scale = _resolve_scale("chunk_local_cumsum", scale, kwargs)
    g, axis = _prepare("chunk_local_cumsum", "g", g, cu_seqlens, head_first)
    if chunk_size is None or isinstance(chunk_size, bool) or not isinstance(
            chunk_size, (int, np.integer)):
        raise TypeError(f"chunk_local_cumsum: chunk_size must be a positive integer; "
                        f"got {chunk_size!r}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_local_cumsum: chunk_size must be a positive integer; "
                         f"got {chunk_size}")
    return _accumulate("chunk_local_cumsum", g, axis, reverse, scale, cu_seqlens, chunk_size,
                       output_dtype, out)


def chunk_global_cumsum(
    s: Any,
    reverse: bool = False,
    cu_seqlens: Any = None,
    scale: Optional[float] = None,
    head_first: bool = False,
    output_dtype: Any = None,
    out: Optional[np.ndarray] = None,
    **kwargs: Any,
) -> np.ndarray:
    """Cumulative sum of ``s`` along time over each whole sequence.

    Arguments as :func:`chunk_local_cumsum`, without the chunks.

    >>> import numpy as np, scanad as sa
    >>> s = np.ones((1, 5, 1))
    >>> sa.chunk_global_cumsum(s, cu_seqlens=[0, 2, 5])[0, :, 0]
    array([1., 2., 1., 2., 3.])
    """
    scale = _resolve_scale("chunk_global_cumsum", scale, kwargs)
    s, axis = _prepare("chunk_global_cumsum", "s", s, cu_seqlens, head_first)
    return _accumulate("chunk_global_cumsum", s, axis, reverse, scale, cu_seqlens, None,
                       output_dtype, out)
