"""scanad: cumulative scans over NumPy arrays, with exact derivatives.

``cumsum``, ``cumprod``, ``cummax``, ``cummin`` and ``logcumsumexp`` along any
axis, in either direction, inclusive or exclusive, segmented by
``cu_seqlens``/``chunk_size``; the linear-attention wrappers
``chunk_local_cumsum`` and ``chunk_global_cumsum``; and their VJPs and JVPs
through ``vjp``, ``jvp``, ``grad`` and ``check_grads``, and their second
order through ``vjp_jvp`` and ``hvp``.  The kernels are C.

>>> import scanad as sa
>>> sa.cumsum([1, 2, 3], reverse=True)
array([6, 5, 3])
"""

from __future__ import annotations

from typing import Any, Dict

from ._source_tree import missing_extension_error

try:
    from . import _scanad as _scanad
except ImportError as _error:
    _missing = missing_extension_error()
    if _missing is None:  # built, but failed to load: that error is the one to see
        raise
    raise _missing from _error
from ._autodiff import check_grads, grad, hvp, jvp, vjp, vjp_jvp
from ._chunk import chunk_global_cumsum, chunk_local_cumsum
from ._linear import linear_scan
from ._ops import cummax, cummin, cumprod, cumsum, logcumsumexp
from ._registry import OPS, OpSpec
from ._version import __version__

__all__ = [
    "__version__",
    "OPS",
    "OpSpec",
    "build_info",
    "check_grads",
    "chunk_global_cumsum",
    "chunk_local_cumsum",
    "cummax",
    "cummin",
    "cumprod",
    "cumsum",
    "get_num_threads",
    "grad",
    "hvp",
    "jvp",
    "linear_scan",
    "logcumsumexp",
    "set_num_threads",
    "vjp",
    "vjp_jvp",
]


def build_info() -> Dict[str, Any]:
    """The kernel table chosen at import (``isa``), the tables this host can
    run (``isas_supported``: ``"baseline"`` first, the best last, e.g.
    ``["baseline", "avx2"]``), the CPU features seen, the thread count and the
    compiler.

    Without ``SCANAD_ISA`` the best supported table is used.
    ``SCANAD_ISA=baseline|avx2|avx512`` in the environment before import picks
    one; a name that is unknown or that this CPU or OS cannot run makes the
    import fail with ImportError saying why.  ``SCANAD_FORCE_BASELINE=1`` is
    the same as ``SCANAD_ISA=baseline`` (setting both to disagree is an
    ImportError).  The table is chosen once; calls pay nothing for it.

    >>> import scanad as sa
    >>> info = sa.build_info()
    >>> info["isas_supported"][0]
    'baseline'
    >>> info["isa"] in info["isas_supported"]
    True
    """
    info = dict(_scanad.build_info())
    info["version"] = __version__
    return info


def set_num_threads(n: int) -> None:
    """Set how many threads the kernels may use (default: ``SCANAD_NUM_THREADS``
    or the number of CPUs).

    Independent lines and lanes are split between threads without changing
    any result.  A single float32/float64 line of at least 2**18 elements is
    scanned in pieces from carries: cummax/cummin are unchanged, sums,
    products and logcumsumexp's sums of exponentials are reassociated at the
    piece boundaries (last-bit differences; logcumsumexp carries its running
    max and sum exactly, so infinities, NaN and ties are as on one thread;
    its first piece is shorter, scanned while the next one's total is
    taken, as the total costs about half a scan).  A line whose
    pieces could overflow or underflow where the scan in order would not
    (float64 sums with elements beyond 2**960, products with elements outside
    2**+-32, zeros, inf or NaN, or partial products leaving 2**+-90, as any
    product drifting away from 1 soon does) runs on one thread instead.

    >>> import scanad as sa
    >>> sa.set_num_threads(1); sa.get_num_threads()
    1
    """
    _scanad.set_num_threads(n)


def get_num_threads() -> int:
    """How many threads the kernels may use.

    >>> import scanad as sa
    >>> sa.get_num_threads() >= 1
    True
    """
    return int(_scanad.get_num_threads())
