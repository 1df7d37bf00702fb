"""The op registry: one entry per public op, built from the C matrix.

``_scanad.ops()`` reports each scan of ``csrc/scan_matrix.h`` with the
dtypes it has kernels for in each mode; ``vjp``, ``jvp``, ``check_grads``,
``python -m scanad`` and the tests all iterate :data:`OPS`, so a new row in
the C matrix (plus its kernels) reaches all of them with no edit here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from . import _chunk, _ops
from . import _scanad as _C

JvpRule = Callable[[np.ndarray, np.ndarray, Dict[str, Any]], Tuple[np.ndarray, np.ndarray]]
VjpRule = Callable[[np.ndarray, np.ndarray, np.ndarray, Dict[str, Any]], np.ndarray]
VjpJvpRule = Callable[[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray], Dict[str, Any]],
                      Tuple[np.ndarray, np.ndarray]]
HvpRule = Callable[[np.ndarray, np.ndarray, np.ndarray, Dict[str, Any]], np.ndarray]


@dataclass(frozen=True)
class OpSpec:
    """What scanad knows about one op.

    ``dtypes_forward`` are the dtypes ``x`` may have (those of the forward
    kernels and those the op's dtype rule casts to one of them);
    ``dtypes_derivative`` those with JVP, VJP and second-order kernels, both
    as the C matrix reports them.  ``options`` are the keyword arguments the
    derivative helpers accept and pass on; ``jvp_rule(x, t, kw)`` returns
    ``(y, y_dot)``, ``vjp_rule(x, y, g, kw)`` returns ``x_bar = J^H g`` and the
    second-order rule ``vjp_jvp_rule(x, t, g, g_dot, kw)`` returns
    ``(x_bar, x_bar_dot)``, the pullback and its JVP in direction
    ``(t, g_dot)`` (``g_dot`` None: zero), and ``hvp_rule(x, t, g, kw)``,
    where an op has one, that ``x_bar_dot`` alone with ``g_dot`` zero (None:
    ``hvp`` takes it from ``vjp_jvp_rule``).  ``shape`` is how the op
    depends on x: ``"linear"``, ``"piecewise linear"`` (a zero second-order
    term, so its ``hvp`` is zero without a kernel run) or ``"curved"``.

    >>> import scanad as sa
    >>> spec = sa.OPS["cummax"]
    >>> spec.name, spec.linear, spec.shape, "complex128" in spec.dtypes_derivative
    ('cummax', False, 'piecewise linear', False)
    >>> spec.fn([1, 3, 2]).tolist() == spec.reference([1, 3, 2]).tolist()
    True
    """

    name: str
    fn: Callable[..., Any]
    rule: str
    identity_kind: str
    dtypes_forward: Tuple[str, ...]
    dtypes_derivative: Tuple[str, ...]
    options: Tuple[str, ...]
    jvp_rule: JvpRule
    vjp_rule: VjpRule
    shape: str
    vjp_jvp_rule: VjpJvpRule
    hvp_rule: Optional[HvpRule] = None
    #: the differentiable inputs; an op of several takes and returns tuples
    #: (``linear_scan``: ``(a, b, h0)``, each rule on the tuple)
    inputs: Tuple[str, ...] = ("x",)

    @property
    def linear(self) -> bool:
        """Whether the op is linear in x (its pullback does not depend on x)."""
        return self.shape == "linear"

    @property
    def reference(self) -> Callable[..., Any]:
        """The pure-NumPy oracle for this op (``scanad._reference``)."""
        from . import _reference

        return getattr(_reference, self.name)


_SCAN_OPTIONS = ("axis", "reverse", "inclusive", "cu_seqlens", "chunk_size")


def _scan_args(kw: Dict[str, Any]) -> Tuple[Any, ...]:
    return (kw.get("axis"), kw.get("reverse", False), kw.get("inclusive", True),
            kw.get("cu_seqlens"), kw.get("chunk_size"))


def _scan_spec(index: int, name: str, rule: str, identity: str, shape: str,
               dtypes: Dict[str, Tuple[str, ...]], accepts: Tuple[str, ...]) -> OpSpec:
    fn = getattr(_ops, name)
    for mode in ("jvp", "vjp_jvp"):
        if dtypes[mode] != dtypes["vjp"]:
            raise ImportError(f"scanad: the kernel matrix gives {name} a {mode} for "
                              f"{dtypes[mode]} but a VJP for {dtypes['vjp']}; every derivative "
                              "mode must cover the same dtypes")

    def jvp_rule(x: np.ndarray, t: np.ndarray, kw: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        return _C.jvp(index, x, t, *_scan_args(kw))

    def vjp_rule(x: np.ndarray, y: np.ndarray, g: np.ndarray, kw: Dict[str, Any]) -> np.ndarray:
        axis, reverse, inclusive, cu, chunk = _scan_args(kw)
        return _C.vjp(index, x, y, g, axis, reverse, inclusive, cu, chunk)

    def vjp_jvp_rule(x: np.ndarray, t: np.ndarray, g: np.ndarray, g_dot: Optional[np.ndarray],
                     kw: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        axis, reverse, inclusive, cu, chunk = _scan_args(kw)
        return _C.vjp_jvp(index, x, t, g, g_dot, axis, reverse, inclusive, cu, chunk)

    def hvp_rule(x: np.ndarray, t: np.ndarray, g: np.ndarray, kw: Dict[str, Any]) -> np.ndarray:
        axis, reverse, inclusive, cu, chunk = _scan_args(kw)
        return _C.vjp_jvp(index, x, t, g, None, axis, reverse, inclusive, cu, chunk, False)[1]

    options = _SCAN_OPTIONS + (("dtype",) if rule == "accumulate" else ())
    return OpSpec(name, fn, rule, identity, accepts, dtypes["vjp"], options, jvp_rule,
                  vjp_rule, shape=shape, vjp_jvp_rule=vjp_jvp_rule, hvp_rule=hvp_rule)


def _chunk_spec(name: str, options: Tuple[str, ...]) -> OpSpec:
    fn = getattr(_chunk, name)

    def jvp_rule(x: np.ndarray, t: np.ndarray, kw: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        y = fn(x, **kw)
        # the tangent lives where y does: output_dtype, not x's dtype
        return y, fn(t, **{**kw, "output_dtype": y.dtype})

    def vjp_rule(x: np.ndarray, y: np.ndarray, g: np.ndarray, kw: Dict[str, Any]) -> np.ndarray:
        # the transpose of a (scaled, segmented) cumsum is the same cumsum run
        # the other way with the same segments and scale; a float g (say in a
        # wider output_dtype) is summed as it is and rounded to x's dtype once
        flipped = {**kw, "reverse": not kw.get("reverse", False), "output_dtype": x.dtype}
        g = np.asarray(g)
        return fn(g if g.dtype.name in _chunk.DTYPES else g.astype(x.dtype), **flipped)

    def vjp_jvp_rule(x: np.ndarray, t: np.ndarray, g: np.ndarray, g_dot: Optional[np.ndarray],
                     kw: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        # linear in x: the pullback does not depend on x, so its JVP is the
        # pullback of g_dot
        x_bar = vjp_rule(x, x, g, kw)
        if g_dot is None:
            return x_bar, np.zeros_like(x_bar)
        return x_bar, vjp_rule(x, x, g_dot, kw)

    return OpSpec(name, fn, "chunk", "0", _chunk.DTYPES, _chunk.DTYPES, options, jvp_rule,
                  vjp_rule, shape="linear", vjp_jvp_rule=vjp_jvp_rule)


def _linear_scan_spec(candidates: Tuple[str, ...]) -> OpSpec:
    """linear_scan's entry: its kernels' dtypes from the C extension, and of
    the candidate dtypes those its result-dtype rule accepts."""
    from . import _linear_ad
    from ._linear import KERNEL_DTYPES, accepts_dtype, linear_scan

    def jvp_rule(x: Any, t: Any, kw: Dict[str, Any]) -> Any:
        return _linear_ad.jvp(x, t, kw)

    def vjp_rule(x: Any, y: Any, g: Any, kw: Dict[str, Any]) -> Any:
        return _linear_ad.vjp(x, kw)[1](g)

    def vjp_jvp_rule(x: Any, t: Any, g: Any, g_dot: Any, kw: Dict[str, Any]) -> Any:
        return _linear_ad.vjp_jvp(x, g, t, g_dot, kw)

    accepts = tuple(name for name in candidates if accepts_dtype(name))
    return OpSpec("linear_scan", linear_scan, "linear", "0", accepts, KERNEL_DTYPES["vjp"],
                  _linear_ad.OPTIONS, jvp_rule, vjp_rule, shape="curved",
                  vjp_jvp_rule=vjp_jvp_rule, inputs=_linear_ad.NAMES)


def _build() -> Dict[str, OpSpec]:
    ops: Dict[str, OpSpec] = {}
    rows = _C.ops()
    for index, name, rule, identity, shape, dtypes, accepts in rows:
        ops[name] = _scan_spec(index, name, rule, identity, shape, dtypes, accepts)
    # every dtype the extension knows: those some scan accepts, in its order
    known = tuple(dict.fromkeys(name for row in rows for name in row[6]))
    common = ("reverse", "scale", "softmax_scale", "cu_seqlens", "head_first", "output_dtype")
    ops["chunk_local_cumsum"] = _chunk_spec("chunk_local_cumsum", ("chunk_size",) + common)
    ops["chunk_global_cumsum"] = _chunk_spec("chunk_global_cumsum", common)
    ops["linear_scan"] = _linear_scan_spec(known)
    return ops


OPS: Dict[str, OpSpec] = _build()
#: the one-input scans of the C matrix (the same signature, flags and rules)
SCANS: Tuple[str, ...] = tuple(name for name, spec in OPS.items()
                               if spec.rule not in ("chunk", "linear"))


def resolve(op: Any) -> OpSpec:
    """The registry entry for a public function or its name."""
    if isinstance(op, str):
        if op in OPS:
            return OPS[op]
    else:
        for spec in OPS.values():
            if spec.fn is op:
                return spec
    known = ", ".join(OPS)
    raise ValueError(f"op must be one of scanad's ops ({known}) or its name; got {op!r}")
