"""The op registry: one entry per public op, mirroring the C op table.

``vjp``, ``jvp``, ``check_grads``, ``python -m scanad`` and the tests all
iterate :data:`OPS`, so adding an op is one row in ``csrc/module.c`` (plus
its kernels) and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from . import _chunk, _ops
from . import _scanad as _C

_INTS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_REAL_FLOATS = ("float16", "float32", "float64")
_COMPLEX = ("complex64", "complex128")

JvpRule = Callable[[np.ndarray, np.ndarray, Dict[str, Any]], Tuple[np.ndarray, np.ndarray]]
VjpRule = Callable[[np.ndarray, np.ndarray, np.ndarray, Dict[str, Any]], np.ndarray]
VjpJvpRule = Callable[[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray], Dict[str, Any]],
                      Tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class OpSpec:
    """What scanad knows about one op.

    ``options`` are the keyword arguments the derivative helpers accept and
    pass on; ``jvp_rule(x, t, kw)`` returns ``(y, y_dot)``,
    ``vjp_rule(x, y, g, kw)`` returns ``x_bar = J^H g`` and the second-order
    rule ``vjp_jvp_rule(x, t, g, g_dot, kw)`` returns ``(x_bar, x_bar_dot)``,
    the pullback and its JVP in direction ``(t, g_dot)`` (``g_dot`` None:
    zero).

    >>> import scanad as sa
    >>> spec = sa.OPS["cummax"]
    >>> spec.name, spec.linear, "complex128" in spec.dtypes_derivative
    ('cummax', False, False)
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
    linear: bool
    vjp_jvp_rule: VjpJvpRule

    @property
    def reference(self) -> Callable[..., Any]:
        """The pure-NumPy oracle for this op (``scanad._reference``)."""
        from . import _reference

        return getattr(_reference, self.name)


_SCAN_OPTIONS = ("axis", "reverse", "inclusive", "cu_seqlens", "chunk_size")


def _scan_args(kw: Dict[str, Any]) -> Tuple[Any, ...]:
    return (kw.get("axis"), kw.get("reverse", False), kw.get("inclusive", True),
            kw.get("cu_seqlens"), kw.get("chunk_size"))


def _scan_spec(index: int, name: str, rule: str, identity: str) -> OpSpec:
    fn = getattr(_ops, name)
    forward: Tuple[str, ...]
    derivative: Tuple[str, ...]
    if rule == "order":
        forward = ("bool",) + _INTS + _REAL_FLOATS
        derivative = _REAL_FLOATS
    elif rule == "log":
        forward = ("bool",) + _INTS + _REAL_FLOATS + _COMPLEX
        derivative = _REAL_FLOATS + _COMPLEX
    else:
        forward = ("bool",) + _INTS + _REAL_FLOATS + _COMPLEX
        derivative = _REAL_FLOATS + _COMPLEX

    def jvp_rule(x: np.ndarray, t: np.ndarray, kw: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        return _C.jvp(index, x, t, *_scan_args(kw))

    def vjp_rule(x: np.ndarray, y: np.ndarray, g: np.ndarray, kw: Dict[str, Any]) -> np.ndarray:
        axis, reverse, inclusive, cu, chunk = _scan_args(kw)
        return _C.vjp(index, x, y, g, axis, reverse, inclusive, cu, chunk)

    def vjp_jvp_rule(x: np.ndarray, t: np.ndarray, g: np.ndarray, g_dot: Optional[np.ndarray],
                     kw: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        axis, reverse, inclusive, cu, chunk = _scan_args(kw)
        return _C.vjp_jvp(index, x, t, g, g_dot, axis, reverse, inclusive, cu, chunk)

    options = _SCAN_OPTIONS + (("dtype",) if rule == "accumulate" else ())
    return OpSpec(name, fn, rule, identity, forward, derivative, options, jvp_rule, vjp_rule,
                  linear=(index == _ops.SUM), vjp_jvp_rule=vjp_jvp_rule)


def _chunk_spec(name: str, options: Tuple[str, ...]) -> OpSpec:
    fn = getattr(_chunk, name)

    def jvp_rule(x: np.ndarray, t: np.ndarray, kw: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        return fn(x, **kw), fn(t, **{**kw, "output_dtype": x.dtype})

    def vjp_rule(x: np.ndarray, y: np.ndarray, g: np.ndarray, kw: Dict[str, Any]) -> np.ndarray:
        # the transpose of a (scaled, segmented) cumsum is the same cumsum run
        # the other way with the same segments and scale
        flipped = {**kw, "reverse": not kw.get("reverse", False), "output_dtype": x.dtype}
        return fn(np.asarray(g, dtype=x.dtype), **flipped)

    def vjp_jvp_rule(x: np.ndarray, t: np.ndarray, g: np.ndarray, g_dot: Optional[np.ndarray],
                     kw: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        # linear in x: the pullback does not depend on x, so its JVP is the
        # pullback of g_dot
        x_bar = vjp_rule(x, x, g, kw)
        if g_dot is None:
            return x_bar, np.zeros_like(x_bar)
        return x_bar, vjp_rule(x, x, g_dot, kw)

    return OpSpec(name, fn, "chunk", "0", _REAL_FLOATS, _REAL_FLOATS, options, jvp_rule,
                  vjp_rule, linear=True, vjp_jvp_rule=vjp_jvp_rule)


def _build() -> Dict[str, OpSpec]:
    ops: Dict[str, OpSpec] = {}
    for index, name, rule, identity in _C.ops():
        ops[name] = _scan_spec(index, name, rule, identity)
    common = ("reverse", "scale", "softmax_scale", "cu_seqlens", "head_first", "output_dtype")
    ops["chunk_local_cumsum"] = _chunk_spec("chunk_local_cumsum", ("chunk_size",) + common)
    ops["chunk_global_cumsum"] = _chunk_spec("chunk_global_cumsum", common)
    return ops


OPS: Dict[str, OpSpec] = _build()
SCANS: Tuple[str, ...] = tuple(name for name, spec in OPS.items() if spec.rule != "chunk")


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
