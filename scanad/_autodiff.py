"""JAX-style derivative helpers: vjp, jvp, grad, vjp_jvp, hvp and check_grads.

Conventions (docs/derivatives.md, "Conventions"): ``jvp`` returns ``J t``; the pullback of ``vjp``
returns the adjoint ``J^H g`` (PyTorch's convention), so
``np.vdot(g, jvp(t)) == np.vdot(vjp(g), t)`` for every op and flag.  ``vjp_jvp``
is the JVP of that pullback (docs/derivatives.md, "Second order").
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from . import _linear_ad
from ._linear import linear_scan
from ._registry import OpSpec, resolve


def _is_linear_scan(op: Any) -> bool:
    """linear_scan takes a tuple of primals (a, b, h0): _linear_ad's rules."""
    return op is linear_scan or (isinstance(op, str) and op == "linear_scan")


def _primal(spec: OpSpec, mode: str, x: Any, kw: Dict[str, Any]
            ) -> Tuple[np.ndarray, Dict[str, Any], Any]:
    """x as an array of a derivative dtype, the options to pass on, and the
    dtype x_bar is returned in."""
    unknown = sorted(set(kw) - set(spec.options))
    if unknown:
        raise TypeError(f"{mode} of {spec.name}: unexpected keyword arguments {unknown}; "
                        f"accepted: {', '.join(spec.options)}")
    x = np.asarray(x)
    if x.dtype.kind not in "fc":
        raise TypeError(f"{mode} of {spec.name}: x must be a floating or complex array "
                        f"(derivatives of integer scans are not defined); got dtype {x.dtype}")
    kw = dict(kw)
    dtype = kw.pop("dtype", None)
    in_dtype = x.dtype.newbyteorder("=")  # results are native, as the kernels write them
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind not in "fc":
            raise TypeError(f"{mode} of {spec.name}: dtype must be floating or complex to "
                            f"differentiate; got {dtype}")
        x = x.astype(dtype, copy=False)
    return x, kw, in_dtype


def _tangent(spec: OpSpec, mode: str, t: Any, xp: np.ndarray) -> np.ndarray:
    """t as an array of x's shape (ValueError naming it otherwise)."""
    t = np.asarray(t)
    if t.shape != xp.shape:
        raise ValueError(f"{mode} of {spec.name}: the tangent t must have x's shape {xp.shape}; "
                         f"got {t.shape}")
    return t


def _back_to(x_bar: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if x_bar.dtype == dtype:
        return x_bar
    if dtype.kind != "c" and x_bar.dtype.kind == "c":
        x_bar = x_bar.real  # a real input's cotangent is the real part
    return x_bar.astype(dtype)


def _split_complex(rule: Callable[[np.ndarray], np.ndarray], v: np.ndarray,
                   dtype: np.dtype) -> np.ndarray:
    """``L v`` for a real linear map ``L`` (``J`` or ``J^T`` of a real primal)
    and a complex ``v``: ``L Re(v) + i L Im(v)``, exact since ``L`` is real,
    in the complex dtype matching ``dtype``."""
    out_dtype = np.result_type(dtype, np.complex64)
    out = np.empty(np.shape(v), dtype=out_dtype)
    out.real = rule(np.ascontiguousarray(v.real))
    out.imag = rule(np.ascontiguousarray(v.imag))
    return out


def vjp(op: Any, x: Any, **kwargs: Any) -> Tuple[np.ndarray, Callable[[Any], np.ndarray]]:
    """Forward value and pullback: ``y, pullback = vjp(op, x, **kw)``.

    ``pullback(g)`` returns ``J^H g`` with x's shape and dtype; it keeps only
    x and y.  ``op`` is a scanad function or its name; ``kw`` are the op's
    own options (axis, reverse, inclusive, cu_seqlens, chunk_size, ...).
    A complex ``g`` for a real ``x`` gives the complex ``J^T g`` (J is real).

    >>> import numpy as np, scanad as sa
    >>> y, pullback = sa.vjp(sa.cumprod, np.array([2.0, 0.0, 3.0]))
    >>> pullback(np.ones(3))
    array([1., 8., 0.])

    ``linear_scan`` has several inputs: its primal is the tuple ``(a, b, h0)``
    (``h0`` may be None) and the pullback returns ``(a_bar, b_bar, h0_bar)``,
    each summed to its input's shape (docs/derivatives.md, "linear_scan"):

    >>> _, pullback = sa.vjp(sa.linear_scan, (0.5, np.ones(3), None))
    >>> pullback(np.ones(3))
    (array(3.), array([1.75, 1.5 , 1.  ]), None)
    """
    if _is_linear_scan(op):
        return _linear_ad.vjp(x, kwargs)
    spec = resolve(op)
    xp, kw, in_dtype = _primal(spec, "vjp", x, kwargs)
    y = spec.fn(xp, **kw)

    def pullback(g: Any) -> np.ndarray:
        g = np.asarray(g)
        if g.shape != np.shape(y):
            raise ValueError(f"vjp of {spec.name}: the cotangent g must have the output's shape "
                             f"{np.shape(y)}; got {g.shape}")
        if g.dtype.kind == "c" and xp.dtype.kind == "f":
            return _split_complex(lambda v: spec.vjp_rule(xp, y, v, kw), g, in_dtype)
        return _back_to(spec.vjp_rule(xp, y, g, kw), in_dtype)

    return y, pullback


def jvp(op: Any, x: Any, t: Any, **kwargs: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Forward value and directional derivative: ``y, y_dot = jvp(op, x, t, **kw)``.

    >>> import numpy as np, scanad as sa
    >>> y, y_dot = sa.jvp(sa.logcumsumexp, np.array([0.0, 0.0]), np.array([1.0, 0.0]))
    >>> y_dot
    array([1. , 0.5])

    A complex ``t`` for a real ``x`` gives the complex ``J t`` (J is real):

    >>> sa.jvp(sa.cumsum, np.array([1.0, 2.0]), np.array([1j, 1.0]))[1]
    array([0.+1.j, 1.+1.j])

    ``linear_scan`` takes the tuples ``(a, b, h0)`` and ``(a_dot, b_dot,
    h0_dot)`` (a None tangent is zero):

    >>> sa.jvp(sa.linear_scan, (0.5, np.ones(3), 2.0), (None, None, 1.0))[1]
    array([0.5  , 0.25 , 0.125])
    """
    if _is_linear_scan(op):
        return _linear_ad.jvp(x, t, kwargs)
    spec = resolve(op)
    xp, kw, _ = _primal(spec, "jvp", x, kwargs)
    t = _tangent(spec, "jvp", t, xp)
    if t.dtype.kind == "c" and xp.dtype.kind == "f":
        y, y_re = spec.jvp_rule(xp, np.ascontiguousarray(t.real), kw)
        y_dot = np.empty(y_re.shape, dtype=np.result_type(y_re.dtype, np.complex64))
        y_dot.real = y_re
        y_dot.imag = spec.jvp_rule(xp, np.ascontiguousarray(t.imag), kw)[1]
        return y, y_dot
    return spec.jvp_rule(xp, t, kw)


def grad(op: Any, x: Any, cotangent: Any = None, **kwargs: Any) -> np.ndarray:
    """Gradient of ``sum(op(x))`` (or of ``vdot(cotangent, op(x))``).

    >>> import numpy as np, scanad as sa
    >>> sa.grad(sa.cummax, np.array([1.0, 3.0, 3.0, 2.0]))
    array([1., 1., 2., 0.])
    """
    if _is_linear_scan(op):
        return _linear_ad.grad(x, cotangent, kwargs)
    y, pullback = vjp(op, x, **kwargs)
    g = np.ones_like(y) if cotangent is None else cotangent
    return pullback(g)


def _output_shape(spec: OpSpec, x: np.ndarray, kw: Dict[str, Any]) -> Tuple[int, ...]:
    """y's shape without computing y: a scan with axis None is flat."""
    if spec.rule != "chunk" and kw.get("axis") is None:
        return (int(x.size),)
    return tuple(x.shape)


def vjp_jvp(op: Any, x: Any, g: Any, t: Any, g_dot: Any = None,
            **kwargs: Any) -> Tuple[np.ndarray, np.ndarray]:
    """The pullback and its JVP: ``x_bar, x_bar_dot = vjp_jvp(op, x, g, t, g_dot, **kw)``.

    ``x_bar = J(x)^H g`` as ``vjp``'s pullback returns it, and ``x_bar_dot``
    its derivative along ``x + e t``, ``g + e g_dot`` at ``e = 0``
    (forward over reverse, one C kernel per op; ``g_dot`` None is zero).
    For real ``x`` and ``g_dot = 0`` that is the Hessian of ``<g, op(x)>``
    times ``t``; for complex ``x`` it is conjugate-linear in ``t``.  ``t``
    has x's shape, ``g`` and ``g_dot`` the output's; both results have x's
    shape and dtype.  A complex ``g`` / ``g_dot`` for a real ``x`` gives
    complex results (the map is real-linear in them).

    >>> import numpy as np, scanad as sa
    >>> x = np.array([2.0, 0.0, 3.0])
    >>> x_bar, x_bar_dot = sa.vjp_jvp(sa.cumprod, x, np.ones(3), np.array([0.0, 1.0, 0.0]))
    >>> x_bar, x_bar_dot
    (array([1., 8., 0.]), array([4., 0., 2.]))
    """
    if _is_linear_scan(op):
        return _linear_ad.vjp_jvp(x, g, t, g_dot, kwargs)
    x_bar, x_bar_dot = _second_order(op, "vjp_jvp", x, g, t, g_dot, kwargs)
    assert x_bar is not None
    return x_bar, x_bar_dot


def _second_order(op: Any, mode: str, x: Any, g: Any, t: Any, g_dot: Any,
                  kwargs: Dict[str, Any]) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """vjp_jvp's work for the one-input ops; mode "hvp" (g_dot None) uses the
    op's hvp_rule where it has one (which skips what is known to be zero and
    returns None for x_bar)."""
    spec = resolve(op)
    xp, kw, in_dtype = _primal(spec, mode, x, kwargs)
    t = _tangent(spec, mode, t, xp)
    y_shape = _output_shape(spec, xp, kw)
    if g is None and mode == "hvp":
        g = np.ones(y_shape, dtype=xp.dtype)
    g = np.asarray(g)
    if g.shape != y_shape:
        raise ValueError(f"{mode} of {spec.name}: the cotangent g must have the output's shape "
                         f"{y_shape}; got {g.shape}")
    if g_dot is not None:
        g_dot = np.asarray(g_dot)
        if g_dot.shape != y_shape:
            raise ValueError(f"{mode} of {spec.name}: g_dot (the cotangent's tangent) must have "
                             f"the output's shape {y_shape}; got {g_dot.shape}")
    if t.dtype.kind == "c" and xp.dtype.kind == "f":
        raise TypeError(f"{mode} of {spec.name}: the tangent t of a real x must be real; "
                        f"got dtype {t.dtype}")

    def rule(g: np.ndarray, g_dot: Optional[np.ndarray]
             ) -> Tuple[Optional[np.ndarray], np.ndarray]:
        if mode == "hvp" and spec.hvp_rule is not None:
            return None, spec.hvp_rule(xp, t, g, kw)
        return spec.vjp_jvp_rule(xp, t, g, g_dot, kw)

    if xp.dtype.kind == "f" and (g.dtype.kind == "c" or (g_dot is not None
                                                         and g_dot.dtype.kind == "c")):
        # real-linear in (g, g_dot) for a real x: the real and imaginary parts apart
        def part(take: Callable[[np.ndarray], np.ndarray]
                 ) -> Tuple[Optional[np.ndarray], np.ndarray]:
            gd = None if g_dot is None else np.ascontiguousarray(take(g_dot))
            return rule(np.ascontiguousarray(take(g)), gd)
        re, im = part(np.real), part(np.imag)
        out_dtype = np.result_type(in_dtype, np.complex64)
        x_bar = None if re[0] is None or im[0] is None else (re[0] + 1j * im[0]).astype(out_dtype)
        return x_bar, (re[1] + 1j * im[1]).astype(out_dtype)
    x_bar, x_bar_dot = rule(g, g_dot)
    return (None if x_bar is None else _back_to(x_bar, in_dtype)), _back_to(x_bar_dot, in_dtype)


def hvp(op: Any, x: Any, t: Any, cotangent: Any = None, **kwargs: Any) -> np.ndarray:
    """Hessian-vector product: the Hessian of ``<g, op(x)>`` times ``t``, with
    ``g`` the cotangent (default: ones of the output's shape).

    That is ``vjp_jvp(op, x, g, t)[1]``: for complex ``x`` the JVP of the
    pullback (conjugate-linear in ``t``).

    >>> import numpy as np, scanad as sa
    >>> sa.hvp(sa.logcumsumexp, np.array([0.0, 0.0]), np.array([1.0, 0.0]))
    array([ 0.25, -0.25])
    """
    if _is_linear_scan(op):
        return _linear_ad.hvp(x, t, cotangent, kwargs)
    return _second_order(op, "hvp", x, cotangent, t, None, kwargs)[1]


def _random_like(rng: np.random.Generator, a: np.ndarray) -> np.ndarray:
    r = rng.standard_normal(a.shape)
    if a.dtype.kind == "c":
        r = r + 1j * rng.standard_normal(a.shape)
    return r.astype(a.dtype)


def _default_tolerance(dtype: np.dtype) -> float:
    # the kernels are accurate to a few ulp; the finite differences below are
    # taken in float64, so their error (~eps^2 * f''' + ulp / eps ~ 1e-10
    # relative) is far below these.  float32/complex64 and float16 kernels
    # round their outputs to their own precision.
    return {2: 1e-2, 4: 2e-4, 8: 1e-6}[np.finfo(dtype).bits // 8]


def _assert_close(what: str, got: np.ndarray, want: np.ndarray, atol: float, rtol: float) -> None:
    got = np.asarray(got, dtype=np.complex128)
    want = np.asarray(want, dtype=np.complex128)
    err = np.abs(got - want)
    bound = atol + rtol * np.abs(want)
    bad = ~(err <= bound)
    if np.any(bad):
        i = np.unravel_index(int(np.argmax(np.where(bad, err - bound, -np.inf))), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} entries differ; worst at index {i}: "
            f"got {got[i]}, expected {want[i]} (|diff| {err[i]:.3g} > atol {atol:.3g} + "
            f"rtol {rtol:.3g} * |expected|)")


def check_grads(
    op: Any,
    x: Any,
    modes: Sequence[str] = ("fwd", "rev"),
    eps: Optional[float] = None,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    seed: int = 0,
    order: int = 1,
    **kwargs: Any,
) -> None:
    """Check jvp against central differences and vjp against jvp; with
    ``order=2`` also the second order.

    ``"fwd"`` compares ``jvp(x, t)`` with ``(f(x + eps t) - f(x - eps t)) /
    (2 eps)`` (taken in float64/complex128) along a random direction ``t``;
    ``"rev"`` checks the adjoint identity ``vdot(g, J t) == vdot(J^H g, t)``
    for random ``g`` and ``t``.  Raises AssertionError naming the worst entry.
    Pick ``x`` away from kinks (cummax ties, infinities) for ``"fwd"``.

    ``order=2`` (as ``jax.test_util.check_grads``) adds ``vjp_jvp`` against
    central differences of the exact first-order pullback,
    ``VJP(x, g_dot) + (VJP(x + eps t, g) - VJP(x - eps t, g)) / (2 eps)`` in
    float64/complex128, with its ``x_bar`` against the pullback; and with
    ``"rev"`` for a real ``x`` the symmetry of the Hessian,
    ``vdot(s, H t) == vdot(H s, t)``.

    >>> import numpy as np, scanad as sa
    >>> sa.check_grads(sa.logcumsumexp, np.linspace(-2, 2, 7), axis=0, reverse=True)
    >>> sa.check_grads(sa.cumprod, np.array([0.5, -2.0, 0.0, 3.0]), order=2)
    """
    for mode in modes:
        if mode not in ("fwd", "rev"):
            raise ValueError(f"check_grads: modes must contain only 'fwd' and 'rev'; got {mode!r}")
    if order not in (1, 2):
        raise ValueError(f"check_grads: order must be 1 or 2; got {order!r}")
    spec = resolve(op)
    if _is_linear_scan(op):
        _check_grads_tuple(x, modes, eps, atol, rtol, seed, order, kwargs)
        return
    xp, kw, _ = _primal(spec, "check_grads", x, kwargs)
    rng = np.random.default_rng(seed)
    tol = _default_tolerance(xp.dtype)
    atol = tol if atol is None else atol
    rtol = tol if rtol is None else rtol
    wide = np.complex128 if xp.dtype.kind == "c" else np.float64
    t = _random_like(rng, xp)
    y, y_dot = spec.jvp_rule(xp, t, kw)
    if "fwd" in modes:
        x64 = xp.astype(wide)
        t64 = t.astype(wide)
        h = eps if eps is not None else 1e-6 * max(1.0, float(np.max(np.abs(x64), initial=0.0)))
        plus = spec.fn(x64 + h * t64, **kw)
        minus = spec.fn(x64 - h * t64, **kw)
        plus = np.asarray(plus, dtype=wide)
        minus = np.asarray(minus, dtype=wide)
        # equal values (an exclusive first output of -inf, say) have a zero
        # difference, which inf - inf would turn into NaN
        with np.errstate(invalid="ignore"):
            numeric = np.where(plus == minus, 0, plus - minus) / (2 * h)
        scale = max(1.0, float(np.max(np.abs(numeric), initial=0.0)))
        _assert_close(f"check_grads({spec.name}, 'fwd'): jvp vs central differences",
                      y_dot, numeric, atol * scale, rtol)
    if "rev" in modes:
        g = _random_like(rng, np.asarray(y))
        y2, pullback = vjp(op, x, **kwargs)
        x_bar = pullback(g)
        lhs = np.vdot(g.astype(wide), np.asarray(y_dot, dtype=wide))
        rhs = np.vdot(np.asarray(x_bar, dtype=wide), t.astype(wide))
        mag = float(np.linalg.norm(g.astype(wide)) * np.linalg.norm(np.asarray(y_dot, wide))
                    + np.linalg.norm(np.asarray(x_bar, wide)) * np.linalg.norm(t.astype(wide)))
        _assert_close(f"check_grads({spec.name}, 'rev'): vdot(g, J t) vs vdot(J^H g, t)",
                      np.array([rhs]), np.array([lhs]), atol * max(1.0, mag), rtol)
    if order == 2:
        _check_second_order(spec, xp, kw, modes, eps, atol, rtol, rng)


def _flat_parts(vs: Any) -> np.ndarray:
    """The entries of a tuple of arrays (None: none), one complex128 vector."""
    if not isinstance(vs, (tuple, list)):
        vs = (vs,)
    return np.concatenate([np.ravel(np.asarray(v, dtype=np.complex128)) for v in vs
                           if v is not None] or [np.zeros(0, np.complex128)])


def _vdot_tuples(u: Any, v: Any) -> complex:
    return complex(np.vdot(_flat_parts(u), _flat_parts(v)))


def _check_grads_tuple(primals: Any, modes: Sequence[str], eps: Optional[float],
                       atol: Optional[float], rtol: Optional[float], seed: int, order: int,
                       kwargs: Dict[str, Any]) -> None:
    """check_grads of an op of several inputs (linear_scan's (a, b, h0)): the
    same checks over the tuple, central differences moving every input."""
    c = _linear_ad.prepare(primals, kwargs, "check_grads")
    rt = c.rt
    wide = np.complex128 if rt.kind == "c" else np.float64
    rng = np.random.default_rng(seed)
    tol = _default_tolerance(rt)
    atol = tol if atol is None else atol
    rtol = tol if rtol is None else rtol
    xs = tuple(None if p is None else np.asarray(p).astype(dt) for p, dt in zip(primals, c.dtypes))
    ts = tuple(None if x is None else _random_like(rng, x) for x in xs)
    kw = dict(kwargs)
    kw64 = {**kw, "dtype": wide}

    def f64(x: Any) -> Any:
        return linear_scan(*x[:2], h0=x[2], **kw64)

    def moved(x: Any, t: Any, h: float) -> Any:
        # t widened first: h * a float16 t would round the step to float16
        return tuple(None if v is None else np.asarray(v).astype(wide) + h * np.asarray(t, wide)
                     for v, t in zip(x, t))

    y, y_dot = jvp(linear_scan, xs, ts, **kw)
    scale0 = max(1.0, float(np.max(np.abs(np.concatenate([np.ravel(v) for v in xs
                                                          if v is not None])), initial=0.0)))
    h = eps if eps is not None else 1e-6 * scale0
    if "fwd" in modes:
        plus, minus = _flat_parts(f64(moved(xs, ts, h))), _flat_parts(f64(moved(xs, ts, -h)))
        with np.errstate(invalid="ignore"):
            numeric = np.where(plus == minus, 0, plus - minus) / (2 * h)
        scale = max(1.0, float(np.max(np.abs(numeric), initial=0.0)))
        _assert_close("check_grads(linear_scan, 'fwd'): jvp vs central differences",
                      _flat_parts(y_dot), numeric, atol * scale, rtol)
    out_like = y if isinstance(y, tuple) else (y,)
    gs = tuple(_random_like(rng, np.asarray(v)) for v in out_like)
    g: Any = gs if isinstance(y, tuple) else gs[0]
    if "rev" in modes:
        _, pullback = vjp(linear_scan, xs, **kw)
        x_bar = pullback(g)
        lhs, rhs = _vdot_tuples(g, y_dot), _vdot_tuples(x_bar, ts)
        mag = float(np.linalg.norm(_flat_parts(g)) * np.linalg.norm(_flat_parts(y_dot))
                    + np.linalg.norm(_flat_parts(x_bar)) * np.linalg.norm(_flat_parts(ts)))
        _assert_close("check_grads(linear_scan, 'rev'): vdot(g, J t) vs vdot(J^H g, t)",
                      np.array([rhs]), np.array([lhs]), atol * max(1.0, mag), rtol)
    if order != 2:
        return
    gds = tuple(_random_like(rng, np.asarray(v)) for v in out_like)
    g_dot: Any = gds if isinstance(y, tuple) else gds[0]
    x_bar, x_bar_dot = vjp_jvp(linear_scan, xs, g, ts, g_dot, **kw)

    def pullback64(x: Any, v: Any) -> np.ndarray:
        return _flat_parts(vjp(linear_scan, x, **kw64)[1](v))

    exact = pullback64(moved(xs, ts, 0.0), g)
    scale = max(1.0, float(np.max(np.abs(exact), initial=0.0)))
    _assert_close("check_grads(linear_scan, order=2): x_bar vs the pullback",
                  _flat_parts(x_bar), exact, atol * scale, rtol)
    plus, minus = pullback64(moved(xs, ts, h), g), pullback64(moved(xs, ts, -h), g)
    with np.errstate(invalid="ignore"):
        numeric = (pullback64(moved(xs, ts, 0.0), g_dot)
                   + np.where(plus == minus, 0, plus - minus) / (2 * h))
    scale = max(1.0, float(np.max(np.abs(numeric), initial=0.0)))
    _assert_close("check_grads(linear_scan, order=2): vjp_jvp vs central differences of the "
                  "pullback", _flat_parts(x_bar_dot), numeric, atol * scale, rtol)
    if "rev" in modes and rt.kind == "f":
        ss = tuple(None if x is None else _random_like(rng, x) for x in xs)
        hs = vjp_jvp(linear_scan, xs, g, ss, None, **kw)[1]
        ht = vjp_jvp(linear_scan, xs, g, ts, None, **kw)[1]
        lhs, rhs = _vdot_tuples(ss, ht), _vdot_tuples(hs, ts)
        mag = float(np.linalg.norm(_flat_parts(ss)) * np.linalg.norm(_flat_parts(ht))
                    + np.linalg.norm(_flat_parts(hs)) * np.linalg.norm(_flat_parts(ts)))
        _assert_close("check_grads(linear_scan, order=2, 'rev'): vdot(s, H t) vs vdot(H s, t)",
                      np.array([rhs]), np.array([lhs]), atol * max(1.0, mag), rtol)


def _check_second_order(spec: OpSpec, xp: np.ndarray, kw: Dict[str, Any], modes: Sequence[str],
                        eps: Optional[float], atol: float, rtol: float,
                        rng: np.random.Generator) -> None:
    wide = np.complex128 if xp.dtype.kind == "c" else np.float64
    y_shape = _output_shape(spec, xp, kw)
    t = _random_like(rng, xp)
    g = _random_like(rng, np.empty(y_shape, xp.dtype))
    g_dot = _random_like(rng, np.empty(y_shape, xp.dtype))
    x_bar, x_bar_dot = spec.vjp_jvp_rule(xp, t, g, g_dot, kw)
    x64, t64, g64, gd64 = (a.astype(wide) for a in (xp, t, g, g_dot))

    def pullback(x: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.asarray(spec.vjp_rule(x, spec.fn(x, **kw), v, kw), dtype=wide)

    exact = pullback(x64, g64)
    scale = max(1.0, float(np.max(np.abs(exact), initial=0.0)))
    _assert_close(f"check_grads({spec.name}, order=2): x_bar vs the pullback", x_bar, exact,
                  atol * scale, rtol)
    h = eps if eps is not None else 1e-6 * max(1.0, float(np.max(np.abs(x64), initial=0.0)))
    plus, minus = pullback(x64 + h * t64, g64), pullback(x64 - h * t64, g64)
    with np.errstate(invalid="ignore"):
        numeric = pullback(x64, gd64) + np.where(plus == minus, 0, plus - minus) / (2 * h)
    scale = max(1.0, float(np.max(np.abs(numeric), initial=0.0)))
    _assert_close(f"check_grads({spec.name}, order=2): vjp_jvp vs central differences of the "
                  "pullback", x_bar_dot, numeric, atol * scale, rtol)
    if "rev" in modes and xp.dtype.kind == "f":
        s = _random_like(rng, xp)
        hs = spec.vjp_jvp_rule(xp, s, g, None, kw)[1]
        ht = spec.vjp_jvp_rule(xp, t, g, None, kw)[1]
        lhs = np.vdot(s.astype(wide), np.asarray(ht, wide))
        rhs = np.vdot(np.asarray(hs, wide), t.astype(wide))
        mag = float(np.linalg.norm(s.astype(wide)) * np.linalg.norm(np.asarray(ht, wide))
                    + np.linalg.norm(np.asarray(hs, wide)) * np.linalg.norm(t.astype(wide)))
        _assert_close(f"check_grads({spec.name}, order=2, 'rev'): vdot(s, H t) vs vdot(H s, t)",
                      np.array([rhs]), np.array([lhs]), atol * max(1.0, mag), rtol)
