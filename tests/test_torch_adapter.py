"""scanad.torch: the PyTorch adapter (docs/torch.md).

Oracles: torch's numerical gradcheck/gradgradcheck (first and second order,
backward and forward mode), scanad's own NumPy API (sa.jvp, sa.vjp, sa.vjp_jvp,
which run the same kernels, so those comparisons are exact), torch's own scans
where their semantics agree, and Python loops for vmap.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from typing import Any, Callable, Dict, List

import numpy as np
import pytest

import scanad as sa

torch = pytest.importorskip("torch")
from torch.autograd import gradcheck, gradgradcheck  # noqa: E402
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vjp, vmap  # noqa: E402

import scanad.torch as st  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F64, C128 = torch.float64, torch.complex128
SCANS = ["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"]
FLAGS = list(itertools.product([False, True], [True, False]))  # (reverse, inclusive)
LAYOUTS: List[Dict[str, Any]] = [
    {"dim": 1},
    {"dim": None, "cu_seqlens": [0, 5, 5, 12], "chunk_size": 2},
]


def values(name: str, **kw: Any) -> Callable[[Any], Any]:
    """The op as a one-tensor function (cummax/cummin: the values)."""
    f = getattr(st, name)
    if name in ("cummax", "cummin"):
        return lambda x: f(x, **kw)[0]
    return lambda x: f(x, **kw)


def finite_part(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """f without its -inf outputs (logcumsumexp's exclusive identity), where
    central differences would take inf - inf."""
    def g(x: Any) -> Any:
        y = f(x)
        return y[torch.isfinite(y.detach())]
    return g


def sample(dtype: Any, shape: Any = (4, 3), seed: int = 0) -> Any:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, dtype=dtype, generator=gen)
    return x * 0.5 + 1.0  # away from 0 so cumprod's values are not tiny


def sa_kw(kw: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(kw)
    out["axis"] = out.pop("dim", None)
    return out


# ------------------------------------------------------- gradcheck, all flags


# complex numbers have no order: cummax/cummin are real only
OP_DTYPES = [pytest.param(name, dtype, id=f"{name}-{tag}") for name in SCANS
             for dtype, tag in ((F64, "f64"), (C128, "c128"))
             if not (dtype.is_complex and name in ("cummax", "cummin"))]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["dim1", "segments"])
@pytest.mark.parametrize("reverse,inclusive", FLAGS)
@pytest.mark.parametrize("name,dtype", OP_DTYPES)
def test_gradcheck_and_gradgradcheck(name: str, dtype: Any, reverse: bool, inclusive: bool,
                                     layout: Dict[str, Any]) -> None:
    f = finite_part(values(name, reverse=reverse, inclusive=inclusive, **layout))
    x = sample(dtype).requires_grad_()
    assert gradcheck(f, (x,), check_forward_ad=True)
    assert gradgradcheck(f, (x,), check_fwd_over_rev=True)


@pytest.mark.parametrize("kw", [{}, {"reverse": True, "scale": 0.5, "cu_seqlens": [0, 3, 7]},
                                {"head_first": True}], ids=["plain", "segments", "head_first"])
@pytest.mark.parametrize("name", ["chunk_local_cumsum", "chunk_global_cumsum"])
def test_chunk_gradcheck(name: str, kw: Dict[str, Any]) -> None:
    f = getattr(st, name)
    if name == "chunk_local_cumsum":
        kw = {**kw, "chunk_size": 2}
    x = sample(F64, (1, 7, 2, 3)).requires_grad_()
    assert gradcheck(lambda v: f(v, **kw), (x,), check_forward_ad=True)
    assert gradgradcheck(lambda v: f(v, **kw), (x,), check_fwd_over_rev=True)
    np.testing.assert_array_equal(f(x, **kw).detach().numpy(),
                                  getattr(sa, name)(x.detach().numpy(), **kw))


# ------------------------------------------------------------------ edges


@pytest.mark.parametrize("dtype", [F64, C128], ids=["f64", "c128"])
def test_cumprod_two_zeros(dtype: Any) -> None:
    for zeros in ([1, 2], [0, 4]):
        x = sample(dtype, (6,))
        x[zeros] = 0
        x.requires_grad_()
        assert gradcheck(lambda v: st.cumprod(v, 0), (x,), check_forward_ad=True)
        assert gradgradcheck(lambda v: st.cumprod(v, 0), (x,), check_fwd_over_rev=True)
        xa = x.detach().numpy()
        # the gradient of Re(sum(y)) is J^H ones, scanad's pullback of ones
        (g,) = torch.autograd.grad(st.cumprod(x, 0).sum().real, x)
        np.testing.assert_array_equal(g.numpy(), sa.grad(sa.cumprod, xa))


def test_cumprod_zeros_hessian_matches_scanad() -> None:
    x = torch.tensor([2.0, 0.0, 0.0, 3.0], dtype=F64)
    h = hessian(lambda v: st.cumprod(v).sum())(x)
    eye = np.eye(4)
    want = np.stack([sa.hvp(sa.cumprod, x.numpy(), eye[i]) for i in range(4)], axis=1)
    np.testing.assert_array_equal(h.numpy(), want)
    assert h[0].tolist() == [0.0, 1.0, 0.0, 0.0]  # d2/dx0 dx1 of 2 x1 + 2 x1 x2 + ...: y1 only


def test_logcumsumexp_minus_inf_prefix() -> None:
    x = torch.tensor([-np.inf, -np.inf, 0.0, 1.0], dtype=F64, requires_grad=True)
    y = st.logcumsumexp(x, 0)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    np.testing.assert_array_equal(g.detach().numpy(), sa.grad(sa.logcumsumexp, x.detach()))
    assert np.isfinite(g.detach().numpy()).all()
    t = torch.tensor([1.0, 0.0, 0.5, -1.0], dtype=F64)
    (hv,) = torch.autograd.grad(g, x, t)
    np.testing.assert_array_equal(hv.numpy(), sa.hvp(sa.logcumsumexp, x.detach().numpy(),
                                                     t.numpy()))
    assert np.isfinite(hv.numpy()).all()
    # central differences leave -inf where it is, so gradcheck applies to the finite outputs
    f = finite_part(lambda v: st.logcumsumexp(v, 0))
    assert gradcheck(f, (x,), check_forward_ad=True)
    assert gradgradcheck(f, (x,), check_fwd_over_rev=True)


def test_cummax_ties_follow_torch() -> None:
    x = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0], dtype=F64, requires_grad=True)
    values_, indices = st.cummax(x, 0)
    want_v, want_i = torch.cummax(x.detach(), 0)
    assert torch.equal(values_.detach(), want_v) and torch.equal(indices, want_i)
    assert indices.dtype == torch.int64 and not indices.requires_grad
    (g,) = torch.autograd.grad(values_.sum(), x)
    xt = x.detach().clone().requires_grad_()
    (g_torch,) = torch.autograd.grad(torch.cummax(xt, 0)[0].sum(), xt)
    assert g.tolist() == g_torch.tolist() == [1.0, 1.0, 2.0, 0.0, 1.0]
    h = hessian(lambda v: st.cummax(v, 0)[0].sum())(x.detach())
    assert torch.count_nonzero(h) == 0


@pytest.mark.parametrize("name", ["cumsum", "cumprod", "logcumsumexp"])
def test_values_match_torch(name: str) -> None:
    x = sample(F64, (3, 5))
    for dim in (0, 1, -1):
        got = getattr(st, name)(x, dim)
        torch.testing.assert_close(got, getattr(torch, name)(x, dim), rtol=1e-15, atol=0)


# ------------------------------------------------------------- torch.func


OPS_2 = ["cumsum", "cumprod", "cummax", "logcumsumexp"]


@pytest.mark.parametrize("name", OPS_2)
def test_func_jvp_and_jacfwd_match_scanad(name: str) -> None:
    kw = {"dim": None, "reverse": True, "cu_seqlens": [0, 4, 12], "chunk_size": 3}
    f = values(name, **kw)
    x, t = sample(F64, (3, 4), 1), sample(F64, (3, 4), 2)
    y, y_dot = jvp(f, (x,), (t,))
    want_y, want_dot = sa.jvp(name, x.numpy(), t.numpy(), **sa_kw(kw))
    np.testing.assert_array_equal(y.numpy(), want_y)
    np.testing.assert_array_equal(y_dot.numpy(), want_dot)
    jac = jacfwd(f)(x)
    eye = np.eye(12).reshape(12, 3, 4)
    cols = [sa.jvp(name, x.numpy(), e, **sa_kw(kw))[1] for e in eye]
    np.testing.assert_array_equal(jac.reshape(12, 12).numpy(), np.stack(cols, axis=1))


@pytest.mark.parametrize("name", OPS_2)
def test_hessian_and_jacrev_jacrev_match_scanad(name: str) -> None:
    kw = {"dim": 0, "inclusive": False, "chunk_size": 3}
    g = sample(F64, (7, 2), 3)

    def loss(v: Any) -> Any:
        return (values(name, **kw)(v) * g).sum()

    x = sample(F64, (7, 2), 4)
    eye = np.eye(14).reshape(14, 7, 2)
    cols = [sa.vjp_jvp(name, x.numpy(), g.numpy(), e, **sa_kw(kw))[1] for e in eye]
    # hessian (forward over reverse) builds H column by column, jacrev(jacrev) row
    # by row: each is the kernel's H e_k, exactly
    columns = np.stack(cols, axis=-1).reshape(7, 2, 7, 2)
    rows = np.stack(cols, axis=0).reshape(7, 2, 7, 2)
    np.testing.assert_array_equal(hessian(loss)(x).numpy(), columns)
    np.testing.assert_array_equal(jacrev(jacrev(loss))(x).numpy(), rows)


@pytest.mark.parametrize("name", ["cumsum", "cumprod", "logcumsumexp"])
def test_complex_second_order_matches_vjp_jvp(name: str) -> None:
    # torch's forward-over-reverse on complex input is the JVP of the pullback
    kw = {"dim": 1, "reverse": True}
    x, t = sample(C128, (2, 5), 5), sample(C128, (2, 5), 6)
    g, g_dot = sample(C128, (2, 5), 7), sample(C128, (2, 5), 8)
    f = values(name, **kw)

    def pullback(v: Any, w: Any) -> Any:
        return vjp(f, v)[1](w)[0]

    x_bar, x_bar_dot = jvp(pullback, (x, g), (t, g_dot))
    want = sa.vjp_jvp(name, x.numpy(), g.numpy(), t.numpy(), g_dot.numpy(), **sa_kw(kw))
    np.testing.assert_array_equal(x_bar_dot.numpy(), want[1])
    # x_bar comes from the VJP kernel, vjp_jvp's from its own fused pass: a few ulp apart
    np.testing.assert_allclose(x_bar.numpy(), want[0], rtol=4e-15, atol=0)


@pytest.mark.parametrize("name", ["cumprod", "logcumsumexp", "cumsum", "cummin"])
def test_forward_over_forward(name: str) -> None:
    # jacfwd(jacfwd) runs the JVP's own JVP; jacrev(jacrev) the vjp_jvp kernel
    kw = {"dim": None, "cu_seqlens": [0, 3, 8], "reverse": True, "inclusive": False}
    f = values(name, **kw)
    x = sample(F64, (2, 4), 9)
    x[0, 1] = 0.0  # a zero for cumprod
    fwd = jacfwd(jacfwd(f))(x)
    rev = jacrev(jacrev(f))(x)
    # the two orders of differentiation round differently (a few ulp of O(1) entries)
    torch.testing.assert_close(fwd, rev, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("dtype", [F64, C128], ids=["f64", "c128"])
@pytest.mark.parametrize("name", ["cumprod", "logcumsumexp"])
def test_forward_over_forward_adjoint(name: str, dtype: Any) -> None:
    # the second derivative d2f[s, t] (the JVP of the JVP) satisfies
    # vdot(w, d2f[s, t]) == vdot(vjp_jvp(x, w, s), t), vjp_jvp being (d J[s])^H w
    kw = {"dim": 0, "reverse": True, "inclusive": False, "cu_seqlens": [0, 4, 4, 9]}
    f = values(name, **kw)
    x, s, t, w = (sample(dtype, (9, 2), k) for k in (24, 25, 26, 27))
    x[3, 0] = 0.0  # a zero for cumprod

    def jvp_t(v: Any) -> Any:
        return jvp(f, (v,), (t,))[1]

    second = jvp(jvp_t, (x,), (s,))[1]
    lhs = torch.vdot(w.flatten(), second.flatten()).item()
    x_bar_dot = sa.vjp_jvp(name, x.numpy(), w.numpy(), s.numpy(), **sa_kw(kw))[1]
    rhs = np.vdot(x_bar_dot, t.numpy())
    # two different kernels summing O(10) terms of size O(1): rounding only
    assert abs(lhs - rhs) <= 1e-13 * max(1.0, abs(rhs))


@pytest.mark.parametrize("name", SCANS + ["chunk_local_cumsum"])
def test_vmap_matches_loop(name: str) -> None:
    if name == "chunk_local_cumsum":
        xs = sample(F64, (3, 1, 6, 2), 10)
        f: Callable[[Any], Any] = lambda v: st.chunk_local_cumsum(v, 4, reverse=True)  # noqa: E731
    else:
        xs = sample(F64, (3, 4, 5), 10)
        f = values(name, dim=-1, inclusive=False, chunk_size=2)
    batched = vmap(f)(xs)
    assert torch.equal(batched, torch.stack([f(v) for v in xs]))
    for in_dims in (1, 2):
        moved = xs.movedim(0, in_dims)
        assert torch.equal(vmap(f, in_dims=in_dims)(moved), batched)

    def loss(v: Any) -> Any:
        return (f(v) ** 2).sum()

    assert torch.equal(vmap(grad(loss))(xs), torch.stack([grad(loss)(v) for v in xs]))


def test_vmap_flattened_and_indices() -> None:
    xs = sample(F64, (3, 2, 4), 11)
    vals, idx = vmap(lambda v: st.cummax(v, cu_seqlens=[0, 5, 8]))(xs)
    for k in range(3):
        want = sa.cummax(xs[k].numpy(), cu_seqlens=[0, 5, 8], return_indices=True)
        np.testing.assert_array_equal(vals[k].numpy(), want[0])
        np.testing.assert_array_equal(idx[k].numpy(), want[1])
    h = vmap(hessian(lambda v: st.logcumsumexp(v).sum()))(xs)
    for k in range(3):
        assert torch.equal(h[k], hessian(lambda v: st.logcumsumexp(v).sum())(xs[k]))


def test_third_order_raises() -> None:
    x = torch.tensor([0.5, 2.0, -1.0], dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(st.logcumsumexp(x).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g[1], x, create_graph=True)
    with pytest.raises(RuntimeError, match="third-order derivatives of logcumsumexp"):
        torch.autograd.grad(h.sum(), x)
    # the piecewise-linear ops have no second-order kernel to stop at
    (g,) = torch.autograd.grad((st.cumsum(x) ** 3).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    (k,) = torch.autograd.grad(h.sum(), x)
    assert k.tolist() == [84.0, 78.0, 54.0]  # sum over j >= i of 6 (j + 1)^2


# ------------------------------------------------- layouts, views and copies


def test_views_and_layouts() -> None:
    base = sample(C128, (4, 6), 12)
    for view in (base.conj(), -base, torch._neg_view(base), base.flip(1), base.t(),
                 base[:, ::2], base.conj().t()):
        for name in ("cumsum", "cumprod", "logcumsumexp"):
            got = getattr(st, name)(view, 0)
            want = getattr(sa, name)(view.resolve_conj().resolve_neg().numpy(), 0)
            np.testing.assert_array_equal(got.numpy(), want)
    x = base.real.t().requires_grad_()  # non-contiguous leaf
    y = st.cumprod(x, 1)
    (g,) = torch.autograd.grad(y.sum(), x)
    np.testing.assert_array_equal(g.numpy(), sa.grad(sa.cumprod, x.detach().numpy(), axis=1))


def test_input_is_not_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: List[np.ndarray] = []
    real = st._fwd

    def spy(name: str, x: np.ndarray, kw: Dict[str, Any]) -> Any:
        seen.append(x)
        return real(name, x, kw)

    monkeypatch.setattr(st, "_fwd", spy)
    base = sample(F64, (5, 6), 13)
    for view in (base, base.t(), base[1:, ::3], base.unsqueeze(0).expand(3, 5, 6)):
        st.cumsum(view.requires_grad_() if view is base else view, -1)
        assert np.shares_memory(seen[-1], base.detach().numpy())
    y = st.cumsum(base.detach(), 0)
    assert y.numpy().ctypes.data == y.data_ptr()  # the kernel's result, not a copy


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.complex64])
def test_low_precision_keeps_dtype(dtype: Any) -> None:
    x = (torch.rand(3, 6, dtype=dtype, generator=torch.Generator().manual_seed(23)) + 0.5)
    x.requires_grad_()
    wide = C128 if dtype.is_complex else F64
    xw = x.detach().to(wide).requires_grad_()
    for name in ("cumprod", "logcumsumexp"):
        y = getattr(st, name)(x, 1)
        (g,) = torch.autograd.grad(y.sum().real, x, create_graph=True)
        (h,) = torch.autograd.grad(g.sum().real, x)
        assert y.dtype == g.dtype == h.dtype == dtype
        yw = getattr(st, name)(xw, 1)
        (gw,) = torch.autograd.grad(yw.sum().real, xw, create_graph=True)
        (hw,) = torch.autograd.grad(gw.sum().real, xw)
        # each result is rounded once to dtype from a wider accumulation; the bound
        # is a few units of dtype's epsilon relative to the largest entry
        eps = torch.finfo(dtype).eps
        for low, ref in ((y, yw), (g, gw), (h, hw)):
            err = (low.detach().to(wide) - ref.detach()).abs().max().item()
            assert err <= 8 * eps * max(1.0, ref.abs().max().item())


def test_integer_forward() -> None:
    x = torch.tensor([[1, 2, 3], [4, 5, 6]], dtype=torch.int32)
    y = st.cumsum(x, 1)
    assert y.dtype == torch.int64 and y.tolist() == [[1, 3, 6], [4, 9, 15]]
    assert st.cumprod(x, 0).tolist() == [[1, 2, 3], [4, 10, 18]]
    assert st.cummax(x, None)[1].tolist() == [0, 1, 2, 3, 4, 5]
    assert st.logcumsumexp(torch.tensor([0, 0]), 0).dtype == torch.float64


def test_errors() -> None:
    with pytest.raises(TypeError, match="device 'meta'"):
        st.cumsum(torch.zeros(3, device="meta"))
    with pytest.raises(TypeError, match=r"bfloat16.*float32"):
        st.logcumsumexp(torch.zeros(3, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match=r"bfloat16.*float32"):
        st.chunk_global_cumsum(torch.zeros(1, 3, 2, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        st.cumsum(np.zeros(3))
    with pytest.raises(TypeError, match="dim must be an integer or None"):
        st.cumsum(torch.zeros(3), True)
    with pytest.raises(TypeError, match="cu_seqlens must be a 1-D integer"):
        st.cumsum(torch.zeros(3), cu_seqlens=torch.tensor([0.0, 3.0]))
    with pytest.raises(TypeError, match="complex"):
        st.cummax(torch.zeros(3, dtype=C128))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_is_refused() -> None:
    with pytest.raises(TypeError, match="device 'cuda"):
        st.cumsum(torch.zeros(3, device="cuda"))


# ------------------------------------------------------------------ a model


def test_training_a_decay_rate() -> None:
    # y_t = sum_{s<=t} a^(t-s) x_s, an exponential moving sum, as logcumsumexp
    # of log(x_s) - s log(a) shifted back by t log(a); learn log(a) by SGD
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 32, dtype=F64, generator=gen) + 0.1
    steps = torch.arange(32, dtype=F64)

    def model(log_a: Any) -> Any:
        decay = st.cumsum(log_a.expand(32), 0, inclusive=False)  # t log(a)
        return st.logcumsumexp(x.log() - decay, 1) + decay

    target = model(torch.tensor(np.log(0.8), dtype=F64)).detach()
    assert torch.allclose(target, torch.log(torch.stack(
        [(x[:, : t + 1] * 0.8 ** (t - steps[: t + 1])).sum(1) for t in range(32)], 1)))
    log_a = torch.tensor(np.log(0.3), dtype=F64, requires_grad=True)
    opt = torch.optim.SGD([log_a], lr=0.05)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = ((model(log_a) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:]))


def test_import_scanad_does_not_import_torch() -> None:
    code = "import sys, scanad; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_forward_ad_dual_numbers() -> None:
    import torch.autograd.forward_ad as fwAD

    x, t = sample(C128, (3, 4), 14), sample(C128, (3, 4), 15)
    with fwAD.dual_level():
        y = st.logcumsumexp(fwAD.make_dual(x, t), 0, reverse=True)
        y_dot = fwAD.unpack_dual(y).tangent
    want = sa.jvp(sa.logcumsumexp, x.numpy(), t.numpy(), axis=0, reverse=True)[1]
    np.testing.assert_array_equal(y_dot.numpy(), want)


def test_forward_ad_under_no_grad() -> None:
    # without grad mode the adapter skips making graph nodes, but forward AD
    # works under no_grad too: an open dual level must still get its tangents
    import torch.autograd.forward_ad as fwAD

    x, t = sample(F64, (3, 4), 16), sample(F64, (3, 4), 17)
    a, a_dot, b = sample(F64, (5, 2), 18) * 0.5, sample(F64, (5, 2), 19), sample(F64, (5, 2), 20)
    with torch.no_grad(), fwAD.dual_level():
        y_dot = fwAD.unpack_dual(st.cumprod(fwAD.make_dual(x, t), 1)).tangent
        h_dot = fwAD.unpack_dual(st.linear_scan(fwAD.make_dual(a, a_dot), b, 0)).tangent
    np.testing.assert_array_equal(y_dot.numpy(),
                                  sa.jvp(sa.cumprod, x.numpy(), t.numpy(), axis=1)[1])
    want = sa.jvp(sa.linear_scan, (a.numpy(), b.numpy(), None), (a_dot.numpy(), None, None),
                  axis=0)[1]
    np.testing.assert_array_equal(h_dot.numpy(), want)


# ------------------------------------------------- custom ops, torch.compile

OPCHECK_CASES = [
    ("scan", lambda x, g, t: (x, "cumprod", 1, False, True, None, None)),
    ("scan", lambda x, g, t: (x, "logcumsumexp", None, True, False, [0, 5, 12], 2)),
    ("scan", lambda x, g, t: (torch.arange(6, dtype=torch.int32), "cumsum", 0, False, True,
                              None, None)),
    ("scan_indexed", lambda x, g, t: (x, "cummax", 0, False, True, None, 2)),
    ("scan_vjp", lambda x, g, t: (x, g, None, "cumprod", None, False, True, None, None)),
    ("scan_jvp", lambda x, g, t: (x, t, "logcumsumexp", None, False, True, None, None)),
    # its backward would be third order, which raises: opcheck it without grad
    ("scan_vjp_jvp", lambda x, g, t: (x.detach(), g, t, None, "cumprod", None, False, True,
                                      None, None)),
    ("chunk_cumsum", lambda x, g, t: (x.reshape(1, 6, 2), "chunk_local_cumsum", 4, True, 0.5,
                                      [0, 2, 6], False, torch.float32)),
]


@pytest.mark.parametrize("op,make", OPCHECK_CASES, ids=[c[0] for c in OPCHECK_CASES])
def test_custom_ops_opcheck(op: str, make: Callable[..., Any]) -> None:
    x = sample(F64, (3, 4), 16).requires_grad_()
    g, t = sample(F64, (12,), 17), sample(F64, (3, 4), 18)
    result = torch.library.opcheck(getattr(torch.ops.scanad, op), make(x, g, t))
    assert set(result.values()) == {"SUCCESS"}


def test_custom_ops_second_order_and_vmap() -> None:
    x = sample(F64, (3, 4), 19).requires_grad_()
    for name in ("cumprod", "logcumsumexp", "cummin"):
        op = torch.ops.scanad.scan_indexed if name == "cummin" else torch.ops.scanad.scan

        def f(v: Any, op: Any = op, name: str = name) -> Any:
            out = op(v, name, None, True, True, [0, 7, 12], 3)
            return out[0] if name == "cummin" else out

        assert gradcheck(f, (x,))
        assert gradgradcheck(f, (x,))
        xs = torch.stack([x.detach(), 2 * x.detach(), x.detach() - 1])

        assert torch.equal(vmap(f)(xs), torch.stack([f(v) for v in xs]))
        # torch.func.grad does not run custom ops' autograd (PyTorch's limit): the
        # pullback op is batched directly
        gs = sample(F64, (3, 12), 22)

        def pullback(v: Any, w: Any, name: str = name) -> Any:
            return torch.ops.scanad.scan_vjp(v, w, None, name, None, True, True, [0, 7, 12], 3)

        assert torch.equal(vmap(pullback)(xs, gs),
                           torch.stack([pullback(v, w) for v, w in zip(xs, gs)]))


def test_torch_compile_fullgraph() -> None:
    def f(x: Any, w: Any) -> Any:
        a = st.cumprod(x, 1, reverse=True)
        b = st.logcumsumexp(x * w, None, cu_seqlens=[0, 5, 12], chunk_size=2)
        v, i = st.cummax(x, 0)
        c = st.chunk_local_cumsum(x.reshape(1, 3, 4), 2, scale=0.5)
        return a.sum() + b.sum() + v.sum() + c.sum() + i.sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for shape in ((3, 4), (3, 4)):
        x = sample(F64, shape, 20).requires_grad_()
        w = sample(F64, shape, 21)
        eager = f(x, w)
        (g_eager,) = torch.autograd.grad(eager, x)
        fast = compiled(x, w)
        (g_fast,) = torch.autograd.grad(fast, x)
        assert fast.item() == eager.item()
        assert torch.equal(g_fast, g_eager)


# ------------------------------------------------------------- linear_scan


def linear_inputs(dtype: Any, seed: int = 0, length: int = 4, state: Any = (2,)) -> Any:
    """(a, b, h0) requiring grad; |a| in [0.3, 0.8] keeps the states O(1).

    The gradchecks below run in fast mode (random projections of the
    Jacobians) to keep the many flag combinations quick."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(length, 2, dtype=dtype, generator=gen) * 0.5 + 0.3
    b = torch.randn(length, 2, dtype=dtype, generator=gen)
    h0 = torch.randn(*state, dtype=dtype, generator=gen)
    return a.requires_grad_(), b.requires_grad_(), h0.requires_grad_()


def summed(out: Any) -> Any:
    """h, or h + h_final broadcast: gradcheck then draws g and g_final at
    random and independently, since h_final feeds only the second term."""
    if isinstance(out, tuple):
        return torch.cat([out[0].reshape(-1), out[1].reshape(-1)])
    return out


@pytest.mark.parametrize("log_a,return_final", list(itertools.product([False, True], repeat=2)),
                         ids=["plain", "final", "log", "log-final"])
@pytest.mark.parametrize("reverse,inclusive", FLAGS)
@pytest.mark.parametrize("dtype", [F64, C128], ids=["f64", "c128"])
def test_linear_scan_gradcheck(dtype: Any, reverse: bool, inclusive: bool, log_a: bool,
                               return_final: bool) -> None:
    kw = {"reverse": reverse, "inclusive": inclusive, "log_a": log_a,
          "return_final": return_final}
    x = linear_inputs(dtype)
    f = lambda a, b, h0: summed(st.linear_scan(a, b, 0, h0=h0, **kw))  # noqa: E731
    assert gradcheck(f, x, check_forward_ad=True, fast_mode=True)
    assert gradgradcheck(f, x, check_fwd_over_rev=True, fast_mode=True)


@pytest.mark.parametrize("dtype", [F64, C128], ids=["f64", "c128"])
def test_linear_scan_segments_gradcheck(dtype: Any) -> None:
    # an empty middle segment (its final state is its h0) and chunk restarts
    a, b, h0 = linear_inputs(dtype, seed=1, length=7, state=(3, 2))
    kw = {"cu_seqlens": torch.tensor([0, 3, 3, 7]), "chunk_size": 2, "return_final": True}
    for flags in ({}, {"reverse": True, "inclusive": False}):
        f = lambda a, b, h0: summed(st.linear_scan(a, b, 0, h0=h0, **kw, **flags))  # noqa
        assert gradcheck(f, (a, b, h0), check_forward_ad=True, fast_mode=True)
        assert gradgradcheck(f, (a, b, h0), check_fwd_over_rev=True, fast_mode=True)
    h, last = st.linear_scan(a, b, 0, h0=h0, **kw)
    ref = sa.linear_scan(a.detach().numpy(), b.detach().numpy(), 0, h0=h0.detach().numpy(),
                         cu_seqlens=[0, 3, 3, 7], chunk_size=2, return_final=True)
    np.testing.assert_array_equal(h.detach().numpy(), ref[0])
    np.testing.assert_array_equal(last.detach().numpy(), ref[1])
    assert torch.equal(last[1], h0[1])


@pytest.mark.parametrize("dtype", [F64, C128], ids=["f64", "c128"])
def test_linear_scan_broadcast_a_and_no_h0(dtype: Any) -> None:
    _, b, _ = linear_inputs(dtype, seed=2)
    scalar = torch.tensor(0.7, dtype=dtype, requires_grad=True)
    channel = torch.tensor([0.4, 0.9], dtype=dtype, requires_grad=True)
    for a, dim in ((scalar, 0), (channel, 0), (scalar, None)):
        def f(a: Any, b: Any, dim: Any = dim) -> Any:
            return st.linear_scan(a, b, dim, log_a=dim is None)

        assert gradcheck(f, (a, b), check_forward_ad=True, fast_mode=True)
        assert gradgradcheck(f, (a, b), check_fwd_over_rev=True, fast_mode=True)
        (a_bar,) = torch.autograd.grad(f(a, b).abs().sum(), a)
        assert a_bar.shape == a.shape
    # a Python number (not differentiable) and h0=None
    assert gradgradcheck(lambda b: st.linear_scan(0.5, b, 0), (b,))
    y = st.linear_scan(0.5, b, 0, inclusive=False)
    assert torch.equal(y[0].detach(), torch.zeros(2, dtype=dtype))


def test_linear_scan_matches_scanad_jvp_and_vjp_jvp() -> None:
    a, b, h0 = (v.detach() for v in linear_inputs(F64, seed=3, length=6))
    gen = torch.Generator().manual_seed(4)
    ta, tb, th = (torch.randn(v.shape, dtype=F64, generator=gen) for v in (a, b, h0))
    np_x = (a.numpy(), b.numpy(), h0.numpy())
    kw = {"reverse": True, "inclusive": False, "log_a": True, "return_final": True}
    _, (hd, hfd) = jvp(lambda a, b, h0: st.linear_scan(a, b, 0, h0=h0, **kw), (a, b, h0),
                       (ta, tb, th))
    _, (hd_ref, hfd_ref) = sa.jvp(sa.linear_scan, np_x, (ta.numpy(), tb.numpy(), th.numpy()),
                                  axis=0, **kw)
    np.testing.assert_array_equal(hd.numpy(), hd_ref)  # the same kernel
    np.testing.assert_array_equal(hfd.numpy(), hfd_ref)
    jac = jacfwd(lambda b: st.linear_scan(a, b, 0, h0=h0, **kw)[0])(b)
    np.testing.assert_allclose(jac.reshape(12, 12).numpy() @ tb.numpy().reshape(-1),
                               sa.jvp(sa.linear_scan, np_x, (None, tb.numpy(), None), axis=0,
                                      **kw)[1][0].reshape(-1), rtol=1e-14, atol=1e-15)

    # loss <b, h(a)>: its Hessian in a times ta is the JVP of the pullback of g = b
    def loss(a: Any) -> Any:
        return (st.linear_scan(a, b, 0, h0=h0, log_a=True) * b).sum()

    _, (ref, _, _) = sa.vjp_jvp(sa.linear_scan, np_x, b.numpy(), (ta.numpy(), None, None), None,
                                axis=0, log_a=True)
    for second in (hessian(loss), jacrev(jacrev(loss)), jacfwd(jacfwd(loss))):
        hv = second(a).reshape(12, 12) @ ta.reshape(-1)
        # the matrix product sums 12 terms in another order than the kernels
        np.testing.assert_allclose(hv.numpy(), ref.reshape(-1), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("kw", [{"dim": 1}, {"dim": None, "log_a": True},
                                {"dim": 0, "cu_seqlens": [0, 2, 2, 6], "return_final": True}],
                         ids=["dim1", "flat", "segments"])
def test_linear_scan_vmap_matches_loop(kw: Dict[str, Any]) -> None:
    gen = torch.Generator().manual_seed(5)
    a = torch.rand(3, 6, 2, dtype=F64, generator=gen) * 0.5 + 0.3
    b = torch.randn(3, 6, 2, dtype=F64, generator=gen)
    h0 = torch.randn(3, *((3, 2) if "cu_seqlens" in kw else (6,) if kw["dim"] == 1 else ()),
                     dtype=F64, generator=gen)

    def f(a: Any, b: Any, h0: Any) -> Any:
        return summed(st.linear_scan(a, b, h0=h0, **kw))

    for in_dims in ((0, 0, 0), (None, 0, None), (0, None, 0)):
        args = [v if d == 0 else v[0] for v, d in zip((a, b, h0), in_dims)]
        loop = torch.stack([f(*[v[i] if d == 0 else v for v, d in zip(args, in_dims)])
                            for i in range(3)])
        assert torch.equal(vmap(f, in_dims=in_dims)(*args), loop)
    # per-example gradients and Hessian-vector products in one call each
    g = grad(lambda a, b, h0: (f(a, b, h0) ** 2).sum(), argnums=(0, 1, 2))
    batched = vmap(g)(a, b, h0)
    looped = [g(a[i], b[i], h0[i]) for i in range(3)]
    for k in range(3):
        torch.testing.assert_close(batched[k], torch.stack([v[k] for v in looped]),
                                   rtol=0, atol=0)
    hs = vmap(hessian(lambda a, b: f(a, b, h0[0]).sum()))(a, b)
    assert torch.equal(hs, torch.stack([hessian(lambda a, bi=bi: f(a, bi, h0[0]).sum())(ai)
                                        for ai, bi in zip(a, b)]))


def test_linear_scan_third_order_raises() -> None:
    a, b, h0 = linear_inputs(F64, seed=6)
    (g,) = torch.autograd.grad((st.linear_scan(a, b, 0, h0=h0) ** 2).sum(), a, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), a, create_graph=True)
    with pytest.raises(RuntimeError, match="third-order derivatives of linear_scan"):
        torch.autograd.grad(h.sum(), a)


def test_linear_scan_reset_is_exact() -> None:
    # a zero decay cuts the recurrence: nothing before it reaches later outputs
    a = torch.tensor([0.5, 2.0, 0.0, 3.0], dtype=F64, requires_grad=True)
    b = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=F64, requires_grad=True)
    h0 = torch.tensor(5.0, dtype=F64, requires_grad=True)
    h = st.linear_scan(a, b, 0, h0=h0)
    assert h.tolist() == [3.5, 8.0, 1.0, 4.0]
    a_bar, b_bar, h0_bar = torch.autograd.grad(h[3], (a, b, h0), create_graph=True)
    assert a_bar.tolist() == [0.0, 0.0, 24.0, 1.0]  # 3 * h[1], h[2]
    assert b_bar.tolist() == [0.0, 0.0, 3.0, 1.0]
    assert h0_bar.item() == 0.0
    (hess_row,) = torch.autograd.grad(a_bar[2], a)
    assert hess_row.tolist() == [30.0, 10.5, 0.0, 8.0]  # d(3 (a1 (a0 * 5 + 1) + 1))/da


def test_linear_scan_errors() -> None:
    b = torch.ones(3, 2)
    with pytest.raises(TypeError, match="b must be a torch.Tensor"):
        st.linear_scan(0.5, [1.0, 2.0])
    with pytest.raises(TypeError, match="a must be a torch.Tensor or a Python number"):
        st.linear_scan("0.5", b)
    with pytest.raises(ValueError, match="a with shape"):
        st.linear_scan(torch.ones(3), b, 0)
    with pytest.raises(ValueError, match="h0 with shape"):
        st.linear_scan(0.5, b, 0, h0=torch.ones(3))
    with pytest.raises(ValueError, match="dim 2 is out of range"):
        st.linear_scan(0.5, b, 2)
    with pytest.raises(TypeError, match="dim must be an integer"):
        st.linear_scan(0.5, b, 0.0)  # type: ignore[arg-type]


def test_training_a_learnable_decay() -> None:
    # recover a per-channel log-decay from the states it produced
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 16, 3, dtype=F64, generator=gen)
    true = torch.tensor([-0.3, -0.7, -2.0], dtype=F64)
    target = st.linear_scan(true, x, 1, log_a=True)
    log_a = torch.full((3,), -1.0, dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([log_a], lr=0.05)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = ((st.linear_scan(log_a, x, 1, log_a=True) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0]
    # Adam has not converged in 40 steps: a loose bound on the parameters
    assert (log_a.detach() - true).abs().max() < 0.05


LINEAR_OPTS = (0, True, False, True, [0, 1, 1, 4], 2)  # dim, reverse, inclusive, log_a, cu, chunk


def test_linear_scan_custom_ops_opcheck() -> None:
    a, b, h0 = linear_inputs(F64, seed=8, state=(3, 2))
    gen = torch.Generator().manual_seed(9)
    g, gf = torch.randn(4, 2, dtype=F64, generator=gen), torch.randn(3, 2, dtype=F64, generator=gen)
    t = [torch.randn(v.shape, dtype=F64, generator=gen) for v in (a, b, h0)]
    detached = [v.detach() for v in (a, b, h0)]
    cases = [
        ("linear_scan", (a, b, h0)),
        ("linear_scan_vjp", (a, b, h0, g, gf)),
        ("linear_scan_jvp", (a, b, h0, t[0], None, t[2])),
        # its backward would be third order, which raises: opcheck it without grad
        ("linear_scan_vjp_jvp", (*detached, g, gf, *t, g, None)),
    ]
    for op, args in cases:
        result = torch.library.opcheck(getattr(torch.ops.scanad, op), (*args, *LINEAR_OPTS))
        assert set(result.values()) == {"SUCCESS"}, op


def test_linear_scan_custom_ops_match_functions() -> None:
    a, b, h0 = linear_inputs(F64, seed=10, state=(3, 2))
    kw = {"reverse": True, "inclusive": False, "log_a": True, "cu_seqlens": [0, 1, 1, 4],
          "chunk_size": 2, "return_final": True}

    def eager(a: Any, b: Any, h0: Any) -> Any:
        return summed(st.linear_scan(a, b, 0, h0=h0, **kw))

    def op(a: Any, b: Any, h0: Any) -> Any:
        return summed(torch.ops.scanad.linear_scan(a, b, h0, *LINEAR_OPTS))

    w = torch.linspace(-1.0, 1.0, 14, dtype=F64)
    # the same kernels: first and second order agree exactly
    for f in (eager, op):
        assert torch.equal(f(a, b, h0), eager(a, b, h0))
    first = [torch.autograd.grad((f(a, b, h0) * w).pow(2).sum(), (a, b, h0), create_graph=True)
             for f in (eager, op)]
    for u, v in zip(*first):
        assert torch.equal(u, v)
    second = [torch.autograd.grad(sum(v.sum() for v in grads), (a, b, h0)) for grads in first]
    for u, v in zip(*second):
        assert torch.equal(u, v)
    assert gradgradcheck(op, (a, b, h0), fast_mode=True)
    xs = [torch.stack([v.detach() * s for s in (1.0, 0.5)]) for v in (a, b, h0)]
    assert torch.equal(vmap(op)(*xs), torch.stack([op(*[v[i] for v in xs]) for i in range(2)]))


def test_linear_scan_torch_compile_fullgraph() -> None:
    def f(a: Any, h0: Any, x: Any) -> Any:
        h, last = st.linear_scan(a[:, None], x, 0, h0=h0, log_a=True, return_final=True)
        return (h ** 2).sum() + last.sum() + st.linear_scan(0.5, x, None).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    a, x, h0 = linear_inputs(F64, seed=11)
    eager = f(a, h0, x)
    fast = compiled(a, h0, x)
    assert fast.item() == eager.item()
    for u, v in zip(torch.autograd.grad(fast, (a, h0, x)), torch.autograd.grad(eager, (a, h0, x))):
        assert torch.equal(u, v)


def test_linear_scan_forward_over_forward_all_inputs() -> None:
    # jacfwd(jacfwd) runs the forward-over-forward Function, hessian runs
    # vjp_jvp: two derivations of the same symmetric matrix
    a, b, h0 = (v.detach() for v in linear_inputs(F64, seed=12, length=7, state=(3, 2)))
    w = torch.linspace(-1.0, 1.0, 20, dtype=F64)
    kw = {"log_a": True, "return_final": True, "cu_seqlens": [0, 3, 3, 7], "chunk_size": 2}

    def loss(v: Any) -> Any:
        out = summed(st.linear_scan(v[:14].reshape(7, 2), v[14:28].reshape(7, 2), 0,
                                    h0=v[28:].reshape(3, 2), **kw))
        return (out * w).sum() + (out ** 2).sum()

    v = torch.cat([a.reshape(-1), b.reshape(-1), h0.reshape(-1)])
    fwd, rev = jacfwd(jacfwd(loss))(v), hessian(loss)(v)
    # entries up to ~80 (a few ulp there is ~1e-14); the two sum in different orders
    torch.testing.assert_close(fwd, rev, rtol=0, atol=1e-13)
    torch.testing.assert_close(rev, rev.T, rtol=0, atol=1e-13)
