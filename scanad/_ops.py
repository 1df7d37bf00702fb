"""The five scans: thin wrappers over the C binding.

Each public function hands its arguments positionally to ``_scanad.scan``,
which validates them, picks the result dtype and runs the kernel with the
GIL released; keeping this layer thin keeps the per-call overhead at NumPy's.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _scanad as _C

# op numbers as the C matrix (csrc/scan_matrix.h) has them
_INDEX = {row[1]: row[0] for row in _C.ops()}
SUM, PROD, MAX, MIN, LOGSUMEXP = (_INDEX[name] for name in
                                  ("cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"))

ArrayLike = Any
IndexedResult = Tuple[np.ndarray, np.ndarray]


def cumsum(
    x: ArrayLike,
    axis: Optional[int] = None,
    *,
    reverse: bool = False,
    inclusive: bool = True,
    dtype: Any = None,
    out: Optional[np.ndarray] = None,
    cu_seqlens: Optional[ArrayLike] = None,
    chunk_size: Optional[int] = None,
) -> np.ndarray:
    """Cumulative sum along ``axis`` (flattened when ``axis`` is None).

    ``reverse=True`` scans from the end, ``inclusive=False`` shifts by one so
    each output excludes its own element (the first one is 0).  Bool and
    integers narrower than 64 bits accumulate in int64/uint64 as in NumPy;
    float32 accumulates in float64 and rounds once per output, float16 in
    float32.  ``cu_seqlens`` restarts the scan at each segment boundary and
    ``chunk_size`` every ``chunk_size`` elements from each segment's start.

    >>> import scanad as sa
    >>> sa.cumsum([1, 2, 3, 4], reverse=True, inclusive=False)
    array([9, 7, 4, 0])
    """
    return _C.scan(SUM, x, axis, reverse, inclusive, dtype, out, cu_seqlens, chunk_size, False)


def cumprod(
    x: ArrayLike,
    axis: Optional[int] = None,
    *,
    reverse: bool = False,
    inclusive: bool = True,
    dtype: Any = None,
    out: Optional[np.ndarray] = None,
    cu_seqlens: Optional[ArrayLike] = None,
    chunk_size: Optional[int] = None,
) -> np.ndarray:
    """Cumulative product along ``axis``; flags and dtypes as :func:`cumsum`.

    >>> import scanad as sa
    >>> sa.cumprod([2.0, 0.0, 3.0], inclusive=False)
    array([1., 2., 0.])
    """
    return _C.scan(PROD, x, axis, reverse, inclusive, dtype, out, cu_seqlens, chunk_size, False)


def cummax(
    x: ArrayLike,
    axis: Optional[int] = None,
    *,
    reverse: bool = False,
    inclusive: bool = True,
    return_indices: bool = False,
    out: Union[np.ndarray, Tuple[np.ndarray, np.ndarray], None] = None,
    cu_seqlens: Optional[ArrayLike] = None,
    chunk_size: Optional[int] = None,
) -> Union[np.ndarray, IndexedResult]:
    """Running maximum along ``axis``, keeping the input dtype.

    NaN is sticky and each new NaN takes the index; ties go to the latest
    element in scan order, as in PyTorch.  With ``return_indices=True`` the
    result is ``(values, indices)``, indices int64 positions along the axis
    (-1 for the exclusive first element).

    >>> import scanad as sa
    >>> sa.cummax([1, 3, 3, 2, 3], return_indices=True)
    (array([1, 3, 3, 3, 3]), array([0, 1, 2, 2, 4]))
    """
    return _C.scan(MAX, x, axis, reverse, inclusive, None, out, cu_seqlens, chunk_size,
                   return_indices)


def cummin(
    x: ArrayLike,
    axis: Optional[int] = None,
    *,
    reverse: bool = False,
    inclusive: bool = True,
    return_indices: bool = False,
    out: Union[np.ndarray, Tuple[np.ndarray, np.ndarray], None] = None,
    cu_seqlens: Optional[ArrayLike] = None,
    chunk_size: Optional[int] = None,
) -> Union[np.ndarray, IndexedResult]:
    """Running minimum along ``axis``; conventions as :func:`cummax`.

    >>> import scanad as sa
    >>> sa.cummin([3.0, 1.0, 2.0, 1.0])
    array([3., 1., 1., 1.])
    """
    return _C.scan(MIN, x, axis, reverse, inclusive, None, out, cu_seqlens, chunk_size,
                   return_indices)


def logcumsumexp(
    x: ArrayLike,
    axis: Optional[int] = None,
    *,
    reverse: bool = False,
    inclusive: bool = True,
    out: Optional[np.ndarray] = None,
    cu_seqlens: Optional[ArrayLike] = None,
    chunk_size: Optional[int] = None,
) -> np.ndarray:
    """``log(cumsum(exp(x)))`` computed without overflow or underflow.

    Integers promote to float64; complex input gives the principal log
    (imaginary part in (-pi, pi]).

    >>> import scanad as sa
    >>> sa.logcumsumexp([-float("inf"), 0.0, 0.0])
    array([      -inf, 0.        , 0.69314718])
    """
    return _C.scan(LOGSUMEXP, x, axis, reverse, inclusive, None, out, cu_seqlens, chunk_size,
                   False)
