"""scanad.jax: JAX's transformations of scanad's ops against scanad's own derivatives.

The adapter calls the same C kernels as ``sa.vjp`` / ``sa.jvp`` / ``sa.vjp_jvp``, so
the results agree to a few ulp (the tolerances below); the complex convention is
checked against JAX's own implementations of the same scans.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Callable, Dict, Iterator, Tuple

import numpy as np
import pytest

import scanad as sa

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
sj = pytest.importorskip("scanad.jax")

SCANS = ("cumsum", "cumprod", "cummax", "cummin", "logcumsumexp")
FLAGS = [(r, i) for r in (False, True) for i in (True, False)]
# one segment layout on the scan axis of length 7: an empty segment and chunks of 2
LAYOUTS: Dict[str, Dict[str, Any]] = {
    "plain": {},
    "segmented": {"cu_seqlens": [0, 3, 3, 7], "chunk_size": 2},
}


@pytest.fixture(autouse=True, scope="module")
def x64() -> Iterator[None]:
    # float64 needs JAX's global x64 flag; restored so that later doctests see JAX's default
    previous = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def ulps(dtype: Any, n: float = 8) -> float:
    return float(n * np.finfo(dtype).eps)


def values(op: str, kw: Dict[str, Any]) -> Callable[[Any], Any]:
    """The op's values as a function of x (cummax/cummin drop the indices)."""
    fn = getattr(sj, op)

    def f(x: Any) -> Any:
        y = fn(x, **kw)
        return y[0] if op in ("cummax", "cummin") else y
    return f


def sample(dtype: Any, shape: Tuple[int, ...] = (3, 7), seed: int = 0) -> np.ndarray:
    # distinct values away from 0: no cummax ties, smooth everywhere
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)).astype(dtype)


def close(got: Any, want: Any, dtype: Any, n: float = 8) -> None:
    want = np.asarray(want)
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(np.asarray(got), want, rtol=ulps(dtype, n),
                               atol=ulps(dtype, n) * scale)


@pytest.mark.parametrize("layout", [pytest.param("plain", marks=pytest.mark.slow), "segmented"])
@pytest.mark.parametrize("reverse,inclusive", FLAGS)
@pytest.mark.parametrize("op", SCANS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_transformations_match_scanad(op: str, reverse: bool, inclusive: bool, layout: str,
                                      dtype: Any) -> None:
    kw = {"axis": 1, "reverse": reverse, "inclusive": inclusive, **LAYOUTS[layout]}
    f = values(op, kw)
    x = sample(dtype)
    rng = np.random.default_rng(1)
    t = rng.standard_normal(x.shape).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    xj = jnp.asarray(x)

    y, y_dot = sa.jvp(op, x, t, **kw)
    y_ref, pullback = sa.vjp(op, x, **kw)
    got_y, got_dot = jax.jvp(f, (xj,), (jnp.asarray(t),))
    assert got_y.dtype == dtype and got_dot.dtype == dtype
    np.testing.assert_array_equal(np.asarray(got_y), y)
    close(got_dot, y_dot, dtype)
    np.testing.assert_array_equal(np.asarray(jax.jit(f)(xj)), y)

    _, vjp_fn = jax.vjp(f, xj)
    close(vjp_fn(jnp.asarray(g))[0], pullback(g), dtype)

    # F = <w, y> + |y|^2 / 2: grad = J^T (w + y); its JVP along t is
    # d/de J(x + e t)^T (w + y) with the cotangent's tangent J t: sa.vjp_jvp
    w = rng.standard_normal(x.shape).astype(dtype)

    def F(x: Any) -> Any:
        yy = f(x)
        return jnp.sum(jnp.asarray(w) * yy) + 0.5 * jnp.sum(yy * yy)

    cot = w + y_ref
    close(jax.grad(F)(xj), pullback(cot), dtype)
    close(jax.jit(jax.grad(F))(xj), pullback(cot), dtype)
    hvp = sa.vjp_jvp(op, x, cot, t, g_dot=y_dot, **kw)[1]
    close(jax.jvp(jax.grad(F), (xj,), (jnp.asarray(t),))[1], hvp, dtype, 64)

    # the whole Hessian, column by column from scanad's second-order kernel
    hess = np.asarray(jax.hessian(F)(xj)).reshape(x.size, x.size)
    for i in range(0, x.size, 5):
        e = np.zeros(x.size, dtype)
        e[i] = 1
        e = e.reshape(x.shape)
        e_dot = sa.jvp(op, x, e, **kw)[1]
        column = sa.vjp_jvp(op, x, cot, e, g_dot=e_dot, **kw)[1]
        # summed by XLA in the Hessian's reductions: a few more roundings
        close(hess[:, i], column.ravel(), dtype, 64)

    # vmap of grad: the batch becomes a leading axis that the kernels scan independently
    xs = np.stack([x, sample(dtype, seed=2)])
    grads = jax.vmap(jax.grad(lambda x: jnp.sum(f(x) * jnp.asarray(g))))(jnp.asarray(xs))
    for k in range(2):
        close(grads[k], sa.vjp(op, xs[k], **kw)[1](g), dtype)


@pytest.mark.parametrize("op", ("cumprod", "logcumsumexp"))
def test_reverse_over_reverse_is_the_hessian(op: str) -> None:
    x = sample(np.float64, (9,))
    t = np.linspace(-1, 1, 9)
    kw = {"reverse": True, "cu_seqlens": [0, 4, 9]}
    f = values(op, kw)
    hess = jax.jacrev(jax.jacrev(lambda x: jnp.sum(f(x))))(jnp.asarray(x))
    close(np.asarray(hess) @ t, sa.hvp(op, x, t, **kw), np.float64, 64)


@pytest.mark.parametrize("op", SCANS)
def test_axis_none_and_negative_axis_under_vmap(op: str) -> None:
    x = sample(np.float64, (2, 3, 4))
    g = np.arange(12.0).reshape(3, 4)
    for axis in (None, -1, 0):
        kw = {"axis": axis, "reverse": True}
        f = values(op, kw)
        got = jax.vmap(f)(jnp.asarray(x))
        want = np.stack([np.asarray(getattr(sa, op)(x[k], **kw)) for k in range(2)])
        np.testing.assert_array_equal(np.asarray(got), want)
        gg = g.ravel() if axis is None else g
        grads = jax.vmap(lambda x, f=f, gg=gg: jax.vjp(f, x)[1](jnp.asarray(gg))[0],
                         in_axes=1, out_axes=1)(jnp.asarray(x.transpose(1, 0, 2)))
        for k in range(2):
            close(grads[:, k], sa.vjp(op, x[k], **kw)[1](gg), np.float64)


def test_nested_vmap_of_indices() -> None:
    x = sample(np.float64, (2, 3, 5))
    values_, indices = jax.vmap(jax.vmap(lambda r: sj.cummax(r, reverse=True)))(jnp.asarray(x))
    want_v, want_i = sa.cummax(x, axis=2, reverse=True, return_indices=True)
    np.testing.assert_array_equal(np.asarray(values_), want_v)
    np.testing.assert_array_equal(np.asarray(indices), want_i)
    assert indices.dtype == np.int64


def test_integers_forward_only() -> None:
    x = np.array([[3, -1, 4], [1, 5, -9]], np.int32)
    np.testing.assert_array_equal(np.asarray(sj.cumsum(jnp.asarray(x), 1)), sa.cumsum(x, 1))
    np.testing.assert_array_equal(np.asarray(jax.jit(sj.cumprod)(jnp.asarray(x))),
                                  sa.cumprod(x))
    np.testing.assert_allclose(np.asarray(sj.logcumsumexp(jnp.asarray(x))),
                               sa.logcumsumexp(x), rtol=ulps(np.float64), atol=0)
    # an integer scan inside a differentiated function gets a zero tangent
    f = lambda v: jnp.sum(v * sj.cummax(jnp.asarray(x[0]))[0])  # noqa: E731
    np.testing.assert_array_equal(np.asarray(jax.grad(f)(jnp.ones(3))), [3.0, 3.0, 4.0])


def test_cumprod_with_zeros() -> None:
    x = np.array([2.0, 0.0, 3.0, 4.0, 0.0, 5.0])
    f = lambda v: jnp.sum(sj.cumprod(v))  # noqa: E731
    g = np.asarray(jax.grad(f)(jnp.asarray(x)))
    np.testing.assert_array_equal(g, sa.grad(sa.cumprod, x))
    np.testing.assert_array_equal(g[:4], [1.0, 32.0, 0.0, 0.0])
    hess = np.asarray(jax.hessian(f)(jnp.asarray(x)))
    for i in range(x.size):
        e = np.eye(x.size)[i]
        np.testing.assert_array_equal(hess[:, i], sa.hvp(sa.cumprod, x, e))
    assert np.isfinite(hess).all()


def test_logcumsumexp_minus_inf_prefix() -> None:
    x = np.array([-np.inf, -np.inf, 0.0, 1.0])
    f = lambda v: jnp.sum(sj.logcumsumexp(v))  # noqa: E731
    g = np.asarray(jax.grad(f)(jnp.asarray(x)))
    # scanad's limit: uniform weights over the tied -inf entries of each row
    np.testing.assert_allclose(g, sa.grad(sa.logcumsumexp, x), rtol=ulps(np.float64), atol=0)
    np.testing.assert_allclose(g[:2], [1.5, 0.5], rtol=0, atol=0)
    # JAX's own gradient is NaN here
    own = jax.grad(lambda v: jnp.sum(jax.lax.cumlogsumexp(v)))(jnp.asarray(x))
    assert np.isnan(np.asarray(own)).any()
    t = np.array([1.0, 0.0, 0.0, 0.0])
    hv = np.asarray(jax.jvp(jax.grad(f), (jnp.asarray(x),), (jnp.asarray(t),))[1])
    np.testing.assert_allclose(hv, sa.hvp(sa.logcumsumexp, x, t), rtol=ulps(np.float64),
                               atol=ulps(np.float64))
    assert np.isfinite(hv).all()


# JAX's own scans, for the complex convention (J^T, not scanad's J^H)
JAX_OWN: Dict[str, Callable[[Any], Any]] = {
    "cumsum": lambda z: jnp.cumsum(z, axis=1),
    "cumprod": lambda z: jnp.cumprod(z, axis=1),
    "logcumsumexp": lambda z: jnp.log(jnp.cumsum(jnp.exp(z), axis=1)),
}


@pytest.mark.parametrize("op", list(JAX_OWN))
def test_complex_convention_is_jax(op: str) -> None:
    rng = np.random.default_rng(3)

    def cplx(*shape: int) -> Any:
        return jnp.asarray(rng.uniform(-1, 1, shape) + 1j * rng.uniform(-1, 1, shape))

    x, t, g = cplx(2, 6) * 0.5, cplx(2, 6), cplx(2, 6)
    mine, own = values(op, {"axis": 1}), JAX_OWN[op]
    # smooth, well conditioned inputs; JAX's own goes through exp/log for logcumsumexp
    tol = 1e-13
    np.testing.assert_allclose(jax.jvp(mine, (x,), (t,))[1], jax.jvp(own, (x,), (t,))[1],
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(jax.vjp(mine, x)[1](g)[0], jax.vjp(own, x)[1](g)[0],
                               rtol=tol, atol=tol)
    # and it differs from scanad's J^H g where J is not real
    scanad_convention = sa.vjp(op, np.asarray(x), axis=1)[1](g)
    assert op == "cumsum" or not np.allclose(jax.vjp(mine, x)[1](g)[0], scanad_convention)

    def pulled(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda z: jax.vjp(f, z)[1](g)[0]

    # second order: the JVP of JAX's pullback
    np.testing.assert_allclose(jax.jvp(pulled(mine), (x,), (t,))[1],
                               jax.jvp(pulled(own), (x,), (t,))[1], rtol=tol, atol=tol)
    # and forward over forward
    s = cplx(2, 6)

    def pushed(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda z: jax.jvp(f, (z,), (t,))[1]

    np.testing.assert_allclose(jax.jvp(pushed(mine), (x,), (s,))[1],
                               jax.jvp(pushed(own), (x,), (s,))[1], rtol=tol, atol=tol)


LAX_SCANS: Dict[str, Callable[..., Any]] = {
    "cumsum": jax.lax.cumsum, "cumprod": jax.lax.cumprod, "cummax": jax.lax.cummax,
    "cummin": jax.lax.cummin, "logcumsumexp": jax.lax.cumlogsumexp,
}


@pytest.mark.parametrize("reverse", (False, True))
@pytest.mark.parametrize("op", SCANS)
def test_hessian_against_jax_own(op: str, reverse: bool) -> None:
    # an independent second order: JAX differentiating its own scans, on smooth inputs
    x = jnp.asarray(sample(np.float64, (2, 6), seed=4))
    mine = values(op, {"axis": 1, "reverse": reverse})

    def own(v: Any) -> Any:
        return LAX_SCANS[op](v, axis=1, reverse=reverse)

    def loss(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda v: jnp.sum(jnp.sin(f(v)))

    # both sides round differently (products, exp/log): a few ulp of the largest entry
    close(jax.hessian(loss(mine))(x), jax.jit(jax.hessian(loss(own)))(x), np.float64, 64)


@pytest.mark.parametrize("op", ("cummax", "cummin"))
def test_cummax_against_lax(op: str) -> None:
    x = jnp.asarray(sample(np.float64, (2, 8)))
    own = {"cummax": jax.lax.cummax, "cummin": jax.lax.cummin}[op]
    mine = values(op, {"axis": 1, "reverse": True})
    g = jnp.asarray(np.arange(16.0).reshape(2, 8))
    np.testing.assert_array_equal(mine(x), own(x, axis=1, reverse=True))
    np.testing.assert_array_equal(jax.vjp(mine, x)[1](g)[0],
                                  jax.vjp(lambda v: own(v, axis=1, reverse=True), x)[1](g)[0])


@pytest.mark.parametrize("head_first", (False, True))
@pytest.mark.parametrize("op", ("chunk_local_cumsum", "chunk_global_cumsum"))
def test_chunk_wrappers(op: str, head_first: bool) -> None:
    shape = (1, 2, 7, 3) if head_first else (1, 7, 2, 3)
    x = sample(np.float32, shape)
    kw: Dict[str, Any] = {"reverse": True, "scale": 0.5, "cu_seqlens": [0, 3, 7],
                          "head_first": head_first, "output_dtype": np.float64}
    if op == "chunk_local_cumsum":
        kw["chunk_size"] = 2
    f = lambda v: getattr(sj, op)(v, **kw)  # noqa: E731
    g = sample(np.float64, shape, seed=5)
    y, pullback = sa.vjp(op, x, **kw)
    got, vjp_fn = jax.vjp(f, jnp.asarray(x))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(np.asarray(got), y)
    x_bar = vjp_fn(jnp.asarray(g))[0]
    assert x_bar.dtype == np.float32
    # the transpose sums the float64 cotangent, then rounds once to x's float32
    flipped = {**kw, "reverse": False, "output_dtype": np.float32}
    np.testing.assert_array_equal(np.asarray(x_bar), getattr(sa, op)(g, **flipped))
    # sa.vjp rounds g to float32 before summing: within float32 rounding of that
    close(x_bar, pullback(g), np.float32)
    # linear: J t is the op applied to t, in the output's dtype
    t = g.astype(np.float32)
    np.testing.assert_array_equal(np.asarray(jax.jvp(f, (jnp.asarray(x),), (jnp.asarray(t),))[1]),
                                  getattr(sa, op)(t, **kw))
    # vmap over a leading batch of inputs and through reverse mode
    xs = np.stack([x, 2 * x])
    ys = jax.jit(jax.vmap(f))(jnp.asarray(xs))
    for k in range(2):
        np.testing.assert_array_equal(np.asarray(ys[k]), getattr(sa, op)(xs[k], **kw))
    grads = jax.vmap(jax.grad(lambda v: jnp.sum(f(v) * jnp.asarray(g))))(jnp.asarray(xs))
    np.testing.assert_array_equal(np.asarray(grads[1]), np.asarray(x_bar))
    # linear: every second derivative is zero, in any order of modes
    h = jax.hessian(lambda v: jnp.sum(f(v) ** 2))(jnp.asarray(x[..., :1]))
    hh = jax.jacfwd(jax.jacfwd(lambda v: jnp.sum(f(v) ** 2)))(jnp.asarray(x[..., :1]))
    np.testing.assert_allclose(np.asarray(h), np.asarray(hh), rtol=ulps(np.float32), atol=0)


@pytest.mark.parametrize("op", SCANS)
def test_every_order_of_modes_gives_the_hessian(op: str) -> None:
    # forward over forward uses its own host map (a linear scan for cumprod); it and
    # reverse over forward must give jax.hessian's (forward over reverse) matrix
    x = sample(np.float64, (8,), seed=6)
    x[2] = 0.0
    if op == "logcumsumexp":
        x[0] = -np.inf
    kw = {"reverse": True, "inclusive": False, "cu_seqlens": [0, 3, 8], "chunk_size": 3}
    f = values(op, kw)

    def loss(v: Any) -> Any:  # without the exclusive identities (+-inf)
        y = f(v)
        return jnp.sum(jnp.sin(jnp.where(jnp.isfinite(y), y, 0.0)))

    xj = jnp.asarray(x)
    hess = np.asarray(jax.hessian(loss)(xj))
    assert np.isfinite(hess).all()
    close(jax.jacfwd(jax.jacfwd(loss))(xj), hess, np.float64, 16)
    close(jax.jacrev(jax.jacfwd(loss))(xj), hess, np.float64, 16)
    close(jax.jacrev(jax.jacrev(loss))(xj), hess, np.float64, 16)
    if op in ("cumsum", "cummax", "cummin"):
        # piecewise linear: the third derivative is that of sin alone
        third = jax.jacfwd(jax.hessian(loss))(xj)
        close(jnp.einsum("iii->i", third), -jax.grad(loss)(xj), np.float64, 16)
    else:
        with pytest.raises(NotImplementedError, match="third derivative"):
            jax.jacfwd(jax.hessian(loss))(xj)


@pytest.mark.parametrize("op", ("cumprod", "logcumsumexp", "cummax"))
def test_traced_cu_seqlens(op: str) -> None:
    x = sample(np.float64, (2, 7))
    layouts = [[0, 3, 3, 7], [0, 1, 5, 7]]

    def loss(v: Any, cu: Any) -> Any:
        return jnp.sum(jnp.sin(values(op, {"cu_seqlens": cu, "chunk_size": 2})(v)))

    def static(k: int) -> Callable[[Any], Any]:
        return lambda v: loss(v, layouts[k])

    # a jit argument: one compilation for every layout
    hess = jax.jit(jax.hessian(loss))
    for k in range(2):
        np.testing.assert_array_equal(np.asarray(hess(jnp.asarray(x[k]),
                                                      jnp.asarray(layouts[k]))),
                                      np.asarray(jax.hessian(static(k))(jnp.asarray(x[k]))))
    # one layout per vmapped example
    grads = jax.jit(jax.vmap(jax.grad(loss)))(jnp.asarray(x), jnp.asarray(layouts))
    for k in range(2):
        np.testing.assert_array_equal(np.asarray(grads[k]),
                                      np.asarray(jax.grad(static(k))(jnp.asarray(x[k]))))
    # its values are checked when they reach the kernels
    with pytest.raises(jax.errors.JaxRuntimeError, match="cu_seqlens must end"):
        jax.jit(loss)(jnp.asarray(x[0]), jnp.array([0, 5]))


def test_traced_cu_seqlens_chunk_wrappers() -> None:
    g = sample(np.float64, (1, 7, 2))
    cu = [0, 3, 7]
    f = jax.jit(lambda g, cu: jnp.sum(sj.chunk_local_cumsum(g, 2, cu_seqlens=cu) ** 2))
    np.testing.assert_array_equal(np.asarray(jax.grad(f)(jnp.asarray(g), jnp.asarray(cu))),
                                  np.asarray(jax.grad(lambda v: f(v, cu))(jnp.asarray(g))))
    y = sa.chunk_local_cumsum(g, 2, cu_seqlens=cu)
    np.testing.assert_array_equal(
        np.asarray(jax.grad(f)(jnp.asarray(g), jnp.asarray(cu))),
        sa.vjp("chunk_local_cumsum", g, chunk_size=2, cu_seqlens=cu)[1](2 * y))


def test_errors() -> None:
    x = jnp.ones((2, 4))
    with pytest.raises(TypeError, match="cu_seqlens must be a 1-D array of integers"):
        jax.jit(lambda x, cu: sj.cumsum(x, 1, cu_seqlens=cu))(x, jnp.array([0.0, 4.0]))
    with pytest.raises(ValueError, match="cu_seqlens"):
        sj.cumsum(x, 1, cu_seqlens=[0, 3])
    with pytest.raises(TypeError, match="dtypes"):
        sj.cummax(x.astype(jnp.complex128))
    with pytest.raises(TypeError, match="dtypes"):
        sj.cumsum(x.astype(jnp.bfloat16))
    with pytest.raises(ValueError, match="axis"):
        sj.cumsum(x, 2)
    with pytest.raises(TypeError, match="axis"):
        sj.cumsum(x, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="chunk_size"):
        sj.cumsum(x, 1, chunk_size=True)
    with pytest.raises(ValueError, match="layout"):
        sj.chunk_global_cumsum(x)
    with pytest.raises(TypeError, match="softmax_scale"):
        sj.chunk_global_cumsum(jnp.ones((1, 2, 1)), scale=1.0, softmax_scale=2.0)


def test_import_scanad_does_not_import_jax() -> None:
    code = "import sys, scanad; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- linear_scan: three differentiable inputs ----------------------------------------

def ref_linear_scan(a: Any, b: Any, h0: Any, axis: int, reverse: bool, inclusive: bool,
                    log_a: bool, return_final: bool, cu_seqlens: Any = None,
                    chunk_size: Any = None) -> Any:
    """The recurrence in jax.lax.scan, one segment and chunk at a time (static layout),
    for JAX to differentiate by itself."""
    a, b = jnp.broadcast_arrays(jnp.asarray(a), jnp.asarray(b))
    a = jnp.exp(a) if log_a else a
    a, b = jnp.moveaxis(a, axis, 0), jnp.moveaxis(b, axis, 0)
    n = a.shape[0]
    cu = [0, n] if cu_seqlens is None else list(cu_seqlens)
    zero = jnp.zeros(b.shape[1:], b.dtype)
    starts = [zero] * (len(cu) - 1) if h0 is None else (
        [h0] if cu_seqlens is None else [h0[k] for k in range(len(cu) - 1)])
    pieces, finals = [], []
    for k in range(len(cu) - 1):
        step = chunk_size or max(cu[k + 1] - cu[k], 1)
        carries = [starts[k]]
        for lo in range(cu[k], cu[k + 1], step):
            hi = min(lo + step, cu[k + 1])

            def body(h: Any, ab: Any) -> Any:
                new = ab[0] * h + ab[1]
                return new, (new if inclusive else h)
            carry, ys = jax.lax.scan(body, starts[k], (a[lo:hi], b[lo:hi]), reverse=reverse)
            pieces.append(ys)
            carries.append(carry)
        # the state after the last step: the last chunk's forward, the first's reversed
        finals.append(carries[1 if reverse and len(carries) > 1 else -1])
    h = jnp.moveaxis(jnp.concatenate(pieces), 0, axis)
    if not return_final:
        return h
    return h, (jnp.stack(finals) if cu_seqlens is not None else finals[0])


# each variant on a [3, 7] b with axis 1: a's shape, h0's shape, and options
LS_VARIANTS: Dict[str, Dict[str, Any]] = {
    "plain": {"a": (3, 7), "h0": (3,), "kw": {}},
    "segmented": {"a": (3, 7), "h0": (3, 3), "kw": {"cu_seqlens": [0, 3, 3, 7],
                                                    "chunk_size": 2, "return_final": True}},
    "log_a": {"a": (3, 1), "h0": None, "kw": {"log_a": True}},
    "scalar": {"a": (), "h0": (), "kw": {"axis": None, "return_final": True}},
}


def ls_inputs(variant: str, dtype: Any, seed: int = 0) -> Tuple[np.ndarray, ...]:
    v = LS_VARIANTS[variant]
    rng = np.random.default_rng(seed)
    # decays in (0.3, 0.9) (or their logs): the states stay of order one
    a = rng.uniform(0.3, 0.9, v["a"])
    a = np.log(a) if v["kw"].get("log_a") else a
    b = rng.standard_normal((3, 7))
    h0 = None if v["h0"] is None else rng.standard_normal(v["h0"])
    return tuple(None if x is None else np.asarray(x, dtype) for x in (a, b, h0))


def ls_outputs(y: Any, final: bool) -> Tuple[Any, ...]:
    return tuple(y) if final else (y,)


def ls_cases() -> Iterator[Any]:
    # quick: every variant once in float64, each with its own flags (the rest is slow:
    # each new shape or option compiles anew)
    for dtype in (np.float64, np.float32):
        for k, variant in enumerate(LS_VARIANTS):
            for j, (reverse, inclusive) in enumerate(FLAGS):
                quick = dtype == np.float64 and j == k
                yield pytest.param(variant, reverse, inclusive, dtype,
                                   marks=() if quick else pytest.mark.slow)


@pytest.mark.parametrize("variant,reverse,inclusive,dtype", list(ls_cases()))
def test_linear_scan_matches_scanad(variant: str, reverse: bool, inclusive: bool,
                                    dtype: Any) -> None:
    kw = {"axis": 1, "reverse": reverse, "inclusive": inclusive, **LS_VARIANTS[variant]["kw"]}
    final = kw.get("return_final", False)
    x = ls_inputs(variant, dtype)
    has_h0 = x[2] is not None
    prims = x if has_h0 else x[:2]
    sizes = [p.size for p in prims]
    rng = np.random.default_rng(1)

    def unpack(z: Any) -> Tuple[Any, ...]:
        parts = jnp.split(z, np.cumsum(sizes)[:-1])
        out = [p.reshape(v.shape) for p, v in zip(parts, prims)]
        return tuple(out) + (() if has_h0 else (None,))

    def f(z: Any) -> Any:
        a, b, h0 = unpack(z)
        return sj.linear_scan(a, b, kw["axis"], h0=h0,
                              **{k: v for k, v in kw.items() if k != "axis"})

    def np_triple(z: np.ndarray) -> Tuple[Any, ...]:
        return tuple(None if v is None else np.asarray(v) for v in unpack(jnp.asarray(z)))

    z = np.concatenate([p.ravel() for p in prims])
    t = rng.standard_normal(z.size).astype(dtype)
    zj, tj = jnp.asarray(z), jnp.asarray(t)

    y, y_dot = sa.jvp(sa.linear_scan, x, np_triple(t), **kw)
    got_y, got_dot = jax.jvp(f, (zj,), (tj,))
    for got, want in zip(ls_outputs(got_y, final), ls_outputs(y, final)):
        assert got.dtype == dtype
        np.testing.assert_array_equal(np.asarray(got), want)
    for got, want in zip(ls_outputs(got_dot, final), ls_outputs(y_dot, final)):
        close(got, want, dtype)
    for got, want in zip(ls_outputs(jax.jit(f)(zj), final), ls_outputs(y, final)):
        np.testing.assert_array_equal(np.asarray(got), want)

    # F = <w, y> + |y|^2 / 2 over every output: grad = J^T (w + y), and its JVP along t
    # is sa.vjp_jvp with the cotangent's tangent J t
    ws = [rng.standard_normal(np.shape(o)).astype(dtype) for o in ls_outputs(y, final)]

    def F(z: Any) -> Any:
        return sum(jnp.sum(jnp.asarray(w) * o) + 0.5 * jnp.sum(o * o)
                   for w, o in zip(ws, ls_outputs(f(z), final)))

    cot = tuple(w + o for w, o in zip(ws, ls_outputs(y, final)))
    cot_arg = cot if final else cot[0]
    _, pullback = sa.vjp(sa.linear_scan, x, **kw)
    want_grad = np.concatenate([v.ravel() for v in pullback(cot_arg) if v is not None])
    close(jax.grad(F)(zj), want_grad, dtype)
    close(jax.jit(jax.grad(F))(zj), want_grad, dtype)

    def hvp(e: np.ndarray) -> np.ndarray:
        e_dot = sa.jvp(sa.linear_scan, x, np_triple(e), **kw)[1]
        col = sa.vjp_jvp(sa.linear_scan, x, cot_arg, np_triple(e), g_dot=e_dot, **kw)[1]
        return np.concatenate([v.ravel() for v in col if v is not None])

    # products of kernel results summed by XLA: a few more roundings than the kernels;
    # jitted, as below: one compilation rather than one per eager op
    close(jax.jit(lambda z, t: jax.jvp(jax.grad(F), (z,), (t,))[1])(zj, tj), hvp(t), dtype, 64)
    hess = np.asarray(jax.jit(jax.hessian(F))(zj))
    for i in range(0, z.size, 7):
        close(hess[:, i], hvp(np.eye(z.size, dtype=dtype)[i]), dtype, 64)

    # vmap of grad: the batch leads every operand, h0's segment axis included
    zs = np.stack([z, z[::-1].copy()])
    grads = jax.jit(jax.vmap(jax.grad(F)))(jnp.asarray(zs))
    close(grads[0], want_grad, dtype)
    x1 = np_triple(zs[1])
    y1, pullback1 = sa.vjp(sa.linear_scan, x1, **kw)
    cot1 = tuple(w + o for w, o in zip(ws, ls_outputs(y1, final)))
    want1 = pullback1(cot1 if final else cot1[0])
    close(grads[1], np.concatenate([v.ravel() for v in want1 if v is not None]), dtype)


# the reference's chunks are many small lax.scans, slow to trace and compile: one quick
# case
QUICK_LAX = {("log_a", False, True)}


@pytest.mark.parametrize("variant,reverse,inclusive", [
    pytest.param(v, r, i, marks=() if (v, r, i) in QUICK_LAX else pytest.mark.slow)
    for v in ("segmented", "log_a") for r, i in FLAGS])
def test_linear_scan_against_lax_scan(variant: str, reverse: bool, inclusive: bool) -> None:
    # an independent first and second order: JAX differentiating the recurrence itself
    kw = {"reverse": reverse, "inclusive": inclusive, **LS_VARIANTS[variant]["kw"]}
    final = kw.get("return_final", False)
    a, b, h0 = (None if v is None else jnp.asarray(v) for v in ls_inputs(variant, np.float64))

    def loss(scan: Callable[..., Any]) -> Callable[..., Any]:
        def f(a: Any, b: Any, h0: Any) -> Any:
            return sum(jnp.sum(jnp.sin(o)) for o in ls_outputs(scan(a, b, h0), final))
        return f

    def mine(a: Any, b: Any, h0: Any) -> Any:
        return sj.linear_scan(a, b, 1, h0=h0, **kw)

    def own(a: Any, b: Any, h0: Any) -> Any:
        return ref_linear_scan(a, b, h0, 1, **{"log_a": False, "return_final": False, **kw})

    for got, want in zip(ls_outputs(mine(a, b, h0), final), ls_outputs(own(a, b, h0), final)):
        close(got, want, np.float64)
    argnums = (0, 1, 2) if h0 is not None else (0, 1)
    for got, want in zip(jax.grad(loss(mine), argnums)(a, b, h0),
                         jax.jit(jax.grad(loss(own), argnums))(a, b, h0)):
        close(got, want, np.float64)
    # the scan's rounding differs from the kernels' (fused, float64 accumulation): a few
    # more ulp of the largest entry; jitted, to compile once rather than op by op
    for got, want in zip(jax.tree.leaves(jax.jit(jax.hessian(loss(mine), argnums))(a, b, h0)),
                         jax.tree.leaves(jax.jit(jax.hessian(loss(own), argnums))(a, b, h0))):
        close(got, want, np.float64, 64)


def test_linear_scan_complex_convention_is_jax() -> None:
    # complex decays, inputs and states on smooth inputs: JAX's J^T convention throughout
    rng = np.random.default_rng(7)

    def cplx(*shape: int) -> Any:
        return jnp.asarray(rng.uniform(-1, 1, shape) + 1j * rng.uniform(-1, 1, shape))

    a, b, h0 = 0.6 * cplx(2, 6), cplx(2, 6), cplx(2)
    ta, tb, th0 = cplx(2, 6), cplx(2, 6), cplx(2)
    g, gf = cplx(2, 6), cplx(2)
    kw = {"reverse": True, "inclusive": False, "log_a": True, "return_final": True}

    def mine(a: Any, b: Any, h0: Any) -> Any:
        return sj.linear_scan(a, b, 1, h0=h0, **kw)

    def own(a: Any, b: Any, h0: Any) -> Any:
        return ref_linear_scan(a, b, h0, 1, **kw)

    tol = 1e-13
    x, t = (a, b, h0), (ta, tb, th0)
    for got, want in zip(jax.jvp(mine, x, t)[1], jax.jit(lambda *x: jax.jvp(own, x, t))(*x)[1]):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    got_bar = jax.vjp(mine, *x)[1]((g, gf))
    for got, want in zip(got_bar, jax.vjp(own, *x)[1]((g, gf))):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    # and it differs from scanad's J^H g
    x_np = tuple(np.asarray(v) for v in x)
    scanad_bar = sa.vjp(sa.linear_scan, x_np, axis=1, **kw)[1]((np.asarray(g), np.asarray(gf)))
    assert not np.allclose(got_bar[0], scanad_bar[0])

    def pulled(f: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *x: jax.vjp(f, *x)[1]((g, gf))

    def pushed(f: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *x: jax.jvp(f, x, t)[1]

    # second order: the JVP of JAX's pullback, and forward over forward
    s = (cplx(2, 6), cplx(2, 6), cplx(2))
    def second(f: Callable[..., Any]) -> Any:
        return jax.jit(lambda *x: jax.jvp(f, x, s)[1])(*x)

    for f in (pulled, pushed):
        for got, want in zip(jax.tree.leaves(second(f(mine))),
                             jax.tree.leaves(second(f(own)))):
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_linear_scan_zeros_reset_exactly() -> None:
    a = np.array([0.5, 2.0, 0.0, 3.0, 0.5, 0.0, 0.25])
    b = np.array([1.0, -1.0, 2.0, 0.5, 1.0, 4.0, 2.0])
    h0 = np.array(3.0)
    x = tuple(jnp.asarray(v) for v in (a, b, h0))
    h = sa.linear_scan(a, b, h0=h0)

    def f(a: Any, b: Any, h0: Any) -> Any:
        return jnp.sum(sj.linear_scan(a, b, h0=h0) ** 2)

    want = sa.vjp(sa.linear_scan, (a, b, h0))[1](2 * h)
    for got, w in zip(jax.grad(f, (0, 1, 2))(*x), want):
        np.testing.assert_array_equal(np.asarray(got), w)

    # from the outputs after the reset at step 2, nothing flows back before it
    def after(a: Any, b: Any, h0: Any) -> Any:
        return jnp.sum(sj.linear_scan(a, b, h0=h0)[2:] ** 2)

    a_bar, b_bar, h0_bar = (np.asarray(v) for v in jax.grad(after, (0, 1, 2))(*x))
    np.testing.assert_array_equal(a_bar[:2], [0.0, 0.0])
    np.testing.assert_array_equal(b_bar[:2], [0.0, 0.0])
    assert float(h0_bar) == 0.0
    # h_1 times the cotangent of the states at step 2: lambda_2 = sum_k a_3..a_k 2 h_k
    assert a_bar[2] == h[1] * (2 * h[2] + 6 * h[3] + 3 * h[4]) == 223.0
    # the Hessian in a couples nothing across a reset but the zero decay itself
    hess = np.asarray(jax.jit(jax.hessian(f))(*x))
    np.testing.assert_array_equal(hess[:2, 3:], 0.0)
    np.testing.assert_array_equal(hess[2:5, 6:], 0.0)
    np.testing.assert_array_equal(hess, hess.T)
    assert np.all(hess[:2, 2] != 0.0)


def test_linear_scan_modes_and_third_order() -> None:
    # every order of modes gives jax.hessian's matrix; a third derivative raises
    # one row: the Jacobians' vmapped batches stay small
    a, b, h0 = (jnp.asarray(v[:1] if v.ndim == 2 and v.shape[1] == 7 else v[:, :1])
                for v in ls_inputs("segmented", np.float64))
    kw = LS_VARIANTS["segmented"]["kw"]

    def loss(a: Any) -> Any:
        h, last = sj.linear_scan(a, b, 1, h0=h0, reverse=True, **kw)
        return jnp.sum(jnp.sin(h)) + jnp.sum(last ** 2)

    # jitted: one compilation each rather than one per eager op (most of the time here)
    hess = np.asarray(jax.jit(jax.hessian(loss))(a))
    close(jax.jit(jax.jacfwd(jax.jacfwd(loss)))(a), hess, np.float64, 16)
    close(jax.jit(jax.jacrev(jax.jacfwd(loss)))(a), hess, np.float64, 16)
    close(jax.jit(jax.jacrev(jax.jacrev(loss)))(a), hess, np.float64, 16)
    with pytest.raises(NotImplementedError, match="third derivative"):
        jax.jit(jax.jacfwd(jax.hessian(loss)))(a)


def test_linear_scan_traced_cu_seqlens_under_vmap() -> None:
    # one layout per example, with one h0 entry per segment: the segment axis of h0
    # and of the final state sits after the batch axis
    a, b, h0 = ls_inputs("segmented", np.float64)
    layouts = np.array([[0, 3, 3, 7], [0, 1, 5, 7]])
    bs, h0s = np.stack([b, -b]), np.stack([h0, 2 * h0])

    def loss(b: Any, h0: Any, cu: Any) -> Any:
        h, last = sj.linear_scan(a, b, 1, h0=h0, cu_seqlens=cu, return_final=True)
        return jnp.sum(h ** 2) + jnp.sum(jnp.arange(1.0, 10.0).reshape(3, 3) * last)

    grads = jax.jit(jax.vmap(jax.grad(loss, (0, 1))))(jnp.asarray(bs), jnp.asarray(h0s),
                                                       jnp.asarray(layouts))
    for k in range(2):
        kw = {"axis": 1, "cu_seqlens": layouts[k], "return_final": True}
        y, pullback = sa.vjp(sa.linear_scan, (a, bs[k], h0s[k]), **kw)
        want = pullback((2 * y[0], np.arange(1.0, 10.0).reshape(3, 3)))
        close(grads[0][k], want[1], np.float64)
        close(grads[1][k], want[2], np.float64)
    # a traced layout is checked when its values reach the kernels
    with pytest.raises(jax.errors.JaxRuntimeError, match="cu_seqlens must end"):
        jax.jit(loss)(jnp.asarray(b), jnp.asarray(h0), jnp.array([0, 3, 3, 5]))


def test_linear_scan_errors() -> None:
    b = jnp.ones((2, 4))
    with pytest.raises(ValueError, match="h0 must broadcast"):
        sj.linear_scan(0.5, b, 1, h0=jnp.ones(3))
    with pytest.raises(ValueError, match="h0 must broadcast"):
        sj.linear_scan(0.5, b, 1, h0=jnp.ones(2), cu_seqlens=[0, 1, 4])
    with pytest.raises(ValueError, match="a with shape"):
        sj.linear_scan(jnp.ones(3), b, 1)
    with pytest.raises(TypeError, match="log_a must be a bool"):
        sj.linear_scan(0.5, b, 1, log_a=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="axis"):
        sj.linear_scan(0.5, b, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dtypes"):
        sj.linear_scan(0.5, b.astype(jnp.bfloat16), 1)
    with pytest.raises(ValueError, match="cu_seqlens"):
        sj.linear_scan(0.5, b, 1, cu_seqlens=[0, 3])
    with pytest.raises(TypeError, match="b must be"):
        sj.linear_scan(0.5, None, 1)
