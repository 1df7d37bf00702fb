"""``linear_scan``: the first-order linear recurrence h_t = a_t h_{t-1} + b_t.

A thin wrapper over ``_scanad.linear_scan`` (csrc/bind_linear_scan.c): the result dtype
is resolved here with ``np.result_type`` (NumPy's rules for Python scalars:
``linear_scan(0.5, x32)`` is float32), the C binding does the rest.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _scanad as _C

ArrayLike = Any

_SCALARS = (bool, int, float, complex)

#: the dtypes linear_scan has kernels for, per mode, as the C extension reports them
KERNEL_DTYPES = _C.linear_scan_dtypes()


def _result_dtype(a: Any, b: Any, h0: Any, dtype: Any) -> np.dtype:
    """np.result_type of the inputs (integers and bool -> float64), or dtype=."""
    for name, v in (("a", a), ("b", b)):
        if v is None:
            raise TypeError(f"linear_scan: {name} must be a numeric array or scalar; got None")
    parts = [v if isinstance(v, (*_SCALARS, np.ndarray, np.generic)) else np.asarray(v)
             for v in (a, b, h0) if v is not None]
    try:
        rt = np.result_type(*parts)
    except TypeError as e:
        raise TypeError(f"linear_scan: a, b and h0 must be numeric arrays or scalars ({e})"
                        ) from None
    if rt.kind in "biu":
        rt = np.dtype(np.float64)
    if rt.name not in KERNEL_DTYPES["forward"]:
        raise TypeError("linear_scan: a, b and h0 must be numeric (bool, integer, "
                        f"float16/32/64 or complex64/128); got dtype {rt}")
    if dtype is None:
        return rt
    want = np.dtype(dtype)
    if want.name not in KERNEL_DTYPES["forward"]:
        raise TypeError(f"linear_scan: dtype must be float16/32/64 or complex64/128; got {want}")
    if not np.can_cast(rt, want, "same_kind"):
        raise TypeError(f"linear_scan: cannot compute the {rt} inputs in dtype {want} "
                        "(same_kind casting)")
    return want


def accepts_dtype(name: str) -> bool:
    """Whether a, b and h0 may all have dtype ``name``: the result-dtype rule
    maps it onto a dtype with a forward kernel."""
    x = np.empty(0, dtype=name)
    try:
        _result_dtype(x, x, None, None)
    except TypeError:
        return False
    return True


def linear_scan(
    a: ArrayLike,
    b: ArrayLike,
    axis: Optional[int] = None,
    *,
    h0: Optional[ArrayLike] = None,
    reverse: bool = False,
    inclusive: bool = True,
    log_a: bool = False,
    return_final: bool = False,
    dtype: Any = None,
    out: Optional[np.ndarray] = None,
    cu_seqlens: Optional[ArrayLike] = None,
    chunk_size: Optional[int] = None,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """The linear recurrence ``h[t] = a[t] * h[t-1] + b[t]`` along ``axis``.

    ``a`` broadcasts against ``b`` (a scalar: an EMA or LTI filter; one value
    per channel; or the full shape: a gated / selective recurrence) and the
    result has their broadcast shape.  ``axis=None`` scans the broadcast
    operands flattened in C order.  ``h[-1] = h0`` (default 0): ``h0`` has the
    result's shape without ``axis`` (broadcastable), or with ``cu_seqlens``
    a leading axis of one entry per segment (or is a scalar).

    - ``reverse=True``: the suffix recurrence ``h[t] = a[t] h[t+1] + b[t]``.
    - ``inclusive=False``: each output is the state before its step
      (``h0`` first).
    - ``log_a=True``: ``a`` holds log-decays, ``a[t] = exp(log_a[t])``.
    - ``a[t] == 0`` resets exactly: ``h[t] = b[t]`` whatever came before.
    - ``cu_seqlens`` restarts at each segment (at its ``h0`` entry),
      ``chunk_size`` every ``chunk_size`` steps from each segment's start.
    - ``return_final=True`` returns ``(h, h_final)``, the state after the
      last step of each line (or segment; an empty segment's is its ``h0``),
      whatever ``inclusive``.

    The result dtype is ``np.result_type(a, b, h0)`` (integers -> float64),
    or ``dtype``; float32 accumulates in float64, complex64 in complex128,
    float16 in float32.

    An exponential moving average, ``h = 0.9 h + 0.1 x``:

    >>> import numpy as np
    >>> import scanad as sa
    >>> x = np.array([1.0, 2.0, 3.0, 4.0])
    >>> sa.linear_scan(0.9, 0.1 * x)
    array([0.1   , 0.29  , 0.561 , 0.9049])

    A gated recurrence over two packed sequences of lengths 3 and 2, each
    starting from its own state, with the final states:

    >>> gate = np.array([0.5, 0.5, 0.5, 0.0, 2.0])
    >>> h, last = sa.linear_scan(gate, np.ones(5), h0=[10.0, 1.0],
    ...                          cu_seqlens=[0, 3, 5], return_final=True)
    >>> h
    array([6., 4., 3., 1., 3.])
    >>> last
    array([3., 3.])
    """
    rt = _result_dtype(a, b, h0, dtype)
    return _C.linear_scan(a, b, h0, axis, reverse, inclusive, log_a, return_final, rt, out,
                          cu_seqlens, chunk_size)
