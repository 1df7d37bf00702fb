"""Numerical edges found by differential testing.

1. complex logcumsumexp of -inf + i(+-inf or NaN): exp of it is 0 (C99
   Annex G), so it adds nothing and poisons nothing after it;
2. an output whose prefix holds exactly one finite element is that element,
   bit for bit, and float64 results stay within a few ulp of the exact value;
3. a complex tangent / cotangent with a real primal: ``J t`` and ``J^T g``;
4. inputs in the other byte order or off alignment, cu_seqlens included.
"""

from __future__ import annotations

import zlib
from typing import Any, Iterator, List, Tuple

import numpy as np
import pytest

import scanad as sa
from scanad import _reference as reference
from scanad._registry import SCANS

INF = np.inf
DEAD = (complex(-INF, INF), complex(-INF, -INF), complex(-INF, np.nan))


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = sa.get_num_threads()
    sa.set_num_threads(2)
    yield
    sa.set_num_threads(before)


# ------------------------------------------------------------------ 1. complex -inf + i inf
@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_dead_element_forward(dtype: str) -> None:
    y = sa.logcumsumexp(np.array([complex(-INF, INF), 0j], dtype))
    np.testing.assert_array_equal(y, np.array([complex(-INF, 0), 0j], dtype))
    # PyTorch's test input; exp(2.4 + i inf) is genuinely NaN
    x = np.array([complex(-INF, INF), complex(-INF, INF), complex(-INF, 1), 1.2 + 2.1j,
                  complex(2.4, INF)], dtype)
    y = sa.logcumsumexp(x)
    # the -inf outputs keep the imaginary part of the phases summed so far:
    # 0 for a prefix that adds nothing (as a lone -inf + 0i gives), 1 after
    # -inf + 1i
    np.testing.assert_array_equal(y[:3], np.array([complex(-INF, 0), complex(-INF, 0),
                                                    complex(-INF, 1)], dtype))
    np.testing.assert_allclose(y[3], x[3], rtol=np.finfo(dtype).eps)
    assert np.isnan(y[4].real) and np.isnan(y[4].imag)
    # the derivatives: the dead elements have weight 0 everywhere
    _, pullback = sa.vjp(sa.logcumsumexp, x[:4])
    x_bar = pullback(np.ones(4, dtype))
    np.testing.assert_array_equal(x_bar[:2], 0)
    np.testing.assert_allclose(x_bar[3], 1, rtol=2 * np.finfo(dtype).eps)
    _, y_dot = sa.jvp(sa.logcumsumexp, x, np.full(5, 1 + 1j, dtype))
    np.testing.assert_array_equal(y_dot[:2], 0)  # y = -inf whatever the change
    np.testing.assert_allclose(y_dot[2:4], 1 + 1j, rtol=2 * np.finfo(dtype).eps)
    # element 4 and every output after it may be NaN: exp(2.4 + i inf) is
    _, pullback = sa.vjp(sa.logcumsumexp, x)
    np.testing.assert_array_equal(pullback(np.ones(5, dtype))[:2], 0)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("inclusive", [True, False])
def test_dead_prefix(dtype: str, reverse: bool, inclusive: bool) -> None:
    core = np.array([complex(-INF, INF), complex(-INF, np.nan), complex(-INF, -INF), 0.5 - 1j])
    x = (core[::-1] if reverse else core).astype(dtype)
    y = sa.logcumsumexp(x, reverse=reverse, inclusive=inclusive)
    y = y[::-1] if reverse else y
    # nothing but dead elements before the last output (exclusive: before
    # every output): -inf + 0i, as a lone -inf + 0i gives
    last = 4 if inclusive else 3
    np.testing.assert_array_equal(y[:last - 1] if inclusive else y, complex(-INF, 0))
    if inclusive:
        np.testing.assert_array_equal(y[3], np.array(0.5 - 1j, dtype))
    assert np.all(np.isfinite(sa.jvp(sa.logcumsumexp, x, np.ones(4, dtype), reverse=reverse,
                                     inclusive=inclusive)[1]))
    _, pullback = sa.vjp(sa.logcumsumexp, x, reverse=reverse, inclusive=inclusive)
    x_bar = pullback(np.ones(4, dtype))
    x_bar = x_bar[::-1] if reverse else x_bar
    np.testing.assert_array_equal(x_bar[:3], 0)
    assert np.isfinite(x_bar[3])


def _with_dead(rng: np.random.Generator, shape: Tuple[int, ...], dtype: str
               ) -> Tuple[np.ndarray, np.ndarray]:
    """Random complex data with dead elements spread over it (never at the
    start of a line), and the same data with those replaced by -1e4 + 0i,
    whose exp is also exactly 0 next to any value above -9000."""
    x = (rng.standard_normal(shape) * 3 + 1j * rng.standard_normal(shape) * 3).astype(dtype)
    where = rng.random(shape) < 0.1
    where.reshape(shape[0], -1)[0] = False
    where.reshape(shape[0], -1)[-1] = False  # the first element of a reverse scan
    dead = x.copy()
    dead[where] = np.array(DEAD, dtype)[rng.integers(0, 3, int(where.sum()))]
    tame = x.copy()
    tame[where] = -1e4
    return dead, tame


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("case", ["line", "reverse", "exclusive", "segments", "strided",
                                  "axis0", "long"])
def test_dead_elements_every_path(dtype: str, case: str, two_threads: None) -> None:
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    n = 2**18 + 77 if case == "long" else 1000
    shape = (n, 33) if case == "axis0" else (n,)
    dead, tame = _with_dead(rng, shape, dtype)
    kw: dict = {"axis": 0}
    if case == "reverse":
        kw["reverse"] = True
    elif case == "exclusive":
        kw["inclusive"] = False
    elif case == "segments":
        kw["cu_seqlens"] = np.array([0, 300, 301, 700, n])
        for s in (300, 301, 700):  # segment starts stay finite
            dead[s] = tame[s] = 0.25j
    elif case == "strided":
        wide = np.zeros(2 * n, dtype)
        wide[::2] = dead
        dead = wide[::2]
    t = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    g = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    # the dead elements' arithmetic is the -1e4's (a zero weight, a zero
    # rescale), so the results agree bit for bit
    y, y_dot = sa.jvp(sa.logcumsumexp, dead, t, **kw)
    y2, y_dot2 = sa.jvp(sa.logcumsumexp, tame, t, **kw)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(y_dot, y_dot2)
    np.testing.assert_array_equal(sa.logcumsumexp(dead, **kw), sa.logcumsumexp(tame, **kw))
    _, pullback = sa.vjp(sa.logcumsumexp, dead, **kw)
    _, pullback2 = sa.vjp(sa.logcumsumexp, tame, **kw)
    x_bar, x_bar2 = pullback(g), pullback2(g)
    np.testing.assert_array_equal(x_bar, x_bar2)
    assert np.all(np.isfinite(x_bar)) and np.all(np.isfinite(y_dot))
    np.testing.assert_array_equal(x_bar[np.isneginf(dead.real)], 0)


# ------------------------------------------------------------------ 2. exact single elements
def _single_finite(x: np.ndarray, starts: List[int], reverse: bool, inclusive: bool
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Mask of the outputs whose prefix (in scan order, within its segment)
    holds exactly one finite element, and that element."""
    n = x.shape[0]
    mask = np.zeros(n, bool)
    want = np.zeros_like(x)
    bounds = sorted(set(starts) | {n})
    for a, b in zip(bounds[:-1], bounds[1:]):
        order = range(b - 1, a - 1, -1) if reverse else range(a, b)
        seen: List[int] = []
        for i in order:
            if not inclusive and len(seen) == 1:
                mask[i], want[i] = True, x[seen[0]]
            if np.isfinite(x[i]):
                seen.append(i)
            if inclusive and len(seen) == 1:
                mask[i], want[i] = True, x[seen[0]]
    return mask, want


REAL = ["float16", "float32", "float64"]


@pytest.mark.parametrize("dtype", REAL)
@pytest.mark.parametrize("n", [1, 3, 255, 257, 5000])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("inclusive", [True, False])
@pytest.mark.parametrize("split", ["none", "segments", "chunks"])
def test_single_finite_exact(dtype: str, n: int, reverse: bool, inclusive: bool,
                             split: str) -> None:
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3)).astype(dtype)
    x[rng.random(n) < 0.05] = -INF
    if n > 2:
        x[: rng.integers(0, 3)] = -INF
    kw: dict = {"reverse": reverse, "inclusive": inclusive}
    starts = [0]
    if split == "segments" and n > 4:
        starts = sorted({0, 1, n // 3, n // 2})
        kw["cu_seqlens"] = np.array(starts + [n])
    elif split == "chunks":
        kw["chunk_size"] = 7
        starts = list(range(0, n, 7))
    mask, want = _single_finite(x, starts, reverse, inclusive)
    for layout in ("line", "strided", "panel"):
        if layout == "line":
            y = sa.logcumsumexp(x, **kw)
        elif layout == "strided":
            wide = np.zeros(2 * n, dtype)
            wide[::2] = x
            y = sa.logcumsumexp(wide[::2], **kw)
        else:  # axis 0 of a 2-D array, beside other columns
            cols = np.stack([x, (rng.standard_normal(n) * 5).astype(dtype), x[::-1]], 1)
            y = sa.logcumsumexp(cols, axis=0, **kw)[:, 0]
        np.testing.assert_array_equal(y[mask], want[mask], err_msg=layout)


@pytest.mark.parametrize("dtype", REAL)
def test_single_finite_exact_long_split(dtype: str, two_threads: None) -> None:
    rng = np.random.default_rng(7)
    n = 2**18 + 16
    x = (rng.standard_normal(n) * 2).astype(dtype)
    # a first tile of finite values (the vectorised tile path), then a
    # finite element amid -inf (the tile path with infinities)
    for lead, gap in ((0, 0), (5, 3)):
        x[:lead] = -INF
        x[lead + 1:lead + 1 + gap] = -INF
        y = sa.logcumsumexp(x)
        np.testing.assert_array_equal(y[lead:lead + 1 + gap], x[lead])
        y = sa.logcumsumexp(x, reverse=True)
        assert y[-1] == x[-1]


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in representable numbers between two arrays of one dtype."""
    bits = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    ia, ib = a.view(bits).astype(np.int64), b.view(bits).astype(np.int64)
    low = np.iinfo(bits).min
    ia = np.where(ia < 0, low - ia, ia)
    ib = np.where(ib < 0, low - ib, ib)
    return np.abs(ia - ib)


def _ulp_lines(dtype: str) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
    """(path, result, long double reference) over random lines of several
    scales, mixed magnitudes and ties, as single lines and as a panel column."""
    rng = np.random.default_rng(11)
    # 24 lines of each kind below 3000 elements, then longer ones: a panel
    # column's roundings add up with its length
    kinds = [(kind, 24, 0) for kind in ("1e-3", "1", "1e3", "mixed", "ties")]
    kinds += [(kind, 2, 20000) for kind in ("1", "mixed", "ties")]
    for kind, lines, length in kinds:
        label = kind + " long" if length else kind
        for _ in range(lines):
            n = length or int(rng.integers(1, 3000))
            if kind == "mixed":
                x = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)
            elif kind == "ties":
                x = np.round(rng.standard_normal(n) * 2)
            else:
                x = rng.standard_normal(n) * float(kind)
            x = x.astype(dtype)
            ref = np.logaddexp.accumulate(x.astype(np.longdouble))
            yield label + " line", sa.logcumsumexp(x), ref
            yield label + " line reversed", sa.logcumsumexp(x[::-1], reverse=True)[::-1], ref
            cols = np.stack([x, rng.standard_normal(n).astype(dtype)], 1)
            yield label + " panel", sa.logcumsumexp(cols, axis=0)[:, 0], ref


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ulp_bound(dtype: str) -> None:
    # Where |y| >= 1 the error is counted in representable numbers from the
    # correctly rounded value: float32 at most 1.  float64 lines at most 2 (a
    # tile's sums are a log-step scan; the rounding of x - M and the exps
    # pass about 1 eps to y, 2 ulp where |y| < 2), and 3 at 20000 elements:
    # the carry from tile to tile is a plain sum, rounded every 8 elements.
    # A float64 panel column keeps its sum's roundings (TwoSum), so it stays
    # at 2 (x - M and the exps) at any length.  Near 0 the bound is absolute,
    # in eps: the terms' exps carry about 1 eps.
    bound = {"float32": {"line": 1, "long line": 1, "panel": 1},
             "float64": {"line": 2, "long line": 3, "panel": 2}}[dtype]
    eps = float(np.finfo(dtype).eps)
    for path, y, ref in _ulp_lines(dtype):
        rounded = ref.astype(dtype)
        big = np.abs(rounded) >= 1
        worst = _ulps(y[big], rounded[big]).max(initial=0)
        key = "panel" if "panel" in path else "long line" if "long" in path else "line"
        assert worst <= bound[key], (path, worst)
        near = np.abs(y[~big].astype(np.longdouble) - ref[~big]).max(initial=0) / eps
        assert near <= 2.0, (path, float(near))


@pytest.mark.parametrize("dtype", REAL)
def test_panel_lane_independent_of_its_neighbour(dtype: str) -> None:
    # A panel's rows take the fast step where every lane can, the exact one
    # otherwise: next to a lane that rises by 5 every row (so every row takes
    # the exact step) a lane gets the same bits as next to a constant one.
    rng = np.random.default_rng(3)
    n = 2000
    for x in (rng.standard_normal(n) * 3, np.round(rng.standard_normal(n) * 2)):
        x = x.astype(dtype)
        quiet = np.stack([x, np.zeros(n, dtype)], 1)
        rising = np.stack([x, (np.arange(n) * 5.0).astype(dtype)], 1)
        for kw in ({}, {"inclusive": False}, {"reverse": True}):
            np.testing.assert_array_equal(sa.logcumsumexp(quiet, axis=0, **kw)[:, 0],
                                          sa.logcumsumexp(rising, axis=0, **kw)[:, 0])


# ------------------------------------------------------------------ 3. complex tangent, real x
def _flags() -> List[dict]:
    return [{}, {"reverse": True}, {"inclusive": False}, {"cu_seqlens": np.array([0, 3, 9])},
            {"chunk_size": 4, "reverse": True}]


@pytest.mark.parametrize("name", SCANS)
@pytest.mark.parametrize("dtype", REAL)
@pytest.mark.parametrize("kw", _flags(), ids=lambda k: ",".join(k) or "plain")
def test_complex_tangent_real_primal(name: str, dtype: str, kw: dict) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(9).astype(dtype)
    t = rng.standard_normal(9) + 1j * rng.standard_normal(9)
    g = rng.standard_normal(9) + 1j * rng.standard_normal(9)
    y, y_dot = sa.jvp(name, x, t, **kw)
    ctype = np.result_type(dtype, np.complex64)
    assert y_dot.dtype == ctype and y.dtype == sa.jvp(name, x, t.real, **kw)[0].dtype
    # two real JVPs: the split is exact, so compare bit for bit
    np.testing.assert_array_equal(y_dot.real, sa.jvp(name, x, t.real, **kw)[1])
    np.testing.assert_array_equal(y_dot.imag, sa.jvp(name, x, t.imag, **kw)[1])
    _, pullback = sa.vjp(name, x, **kw)
    x_bar = pullback(g)
    assert x_bar.dtype == ctype
    np.testing.assert_array_equal(x_bar.real, pullback(g.real))
    np.testing.assert_array_equal(x_bar.imag, pullback(g.imag))
    np.testing.assert_array_equal(sa.grad(name, x, cotangent=g, **kw), x_bar)
    # the adjoint identity: both sides are the same sums of products in a
    # different order, each rounded in the dtype of the kernels
    lhs = np.vdot(g.astype(ctype), y_dot)
    rhs = np.vdot(x_bar, t.astype(ctype))
    scale = np.linalg.norm(g) * np.linalg.norm(y_dot) + np.linalg.norm(x_bar) * np.linalg.norm(t)
    assert abs(lhs - rhs) <= 16 * np.finfo(dtype).eps * scale
    sa.check_grads(name, x.astype(np.float64) if dtype == "float16" else x, modes=("rev",),
                   **kw)


@pytest.mark.parametrize("name", ["chunk_local_cumsum", "chunk_global_cumsum"])
def test_complex_tangent_chunk_ops(name: str) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 8, 2, 3))
    t = rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)
    kw = {"chunk_size": 4} if name == "chunk_local_cumsum" else {}
    _, y_dot = sa.jvp(name, x, t, **kw)
    np.testing.assert_array_equal(y_dot.real, sa.jvp(name, x, t.real, **kw)[1])
    np.testing.assert_array_equal(y_dot.imag, sa.jvp(name, x, t.imag, **kw)[1])
    _, pullback = sa.vjp(name, x, **kw)
    x_bar = pullback(t)
    np.testing.assert_array_equal(x_bar.imag, pullback(t.imag))
    # adjoint identity with g = t, to rounding of the two sums of products
    scale = np.linalg.norm(t) * (np.linalg.norm(y_dot) + np.linalg.norm(x_bar))
    assert abs(np.vdot(t, y_dot) - np.vdot(x_bar, t)) <= 16 * np.finfo(np.float64).eps * scale


@pytest.mark.parametrize("name", ["cumsum", "cumprod", "logcumsumexp", "cummax"])
def test_complex_tangent_matches_torch(name: str) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal(12)
    t = rng.standard_normal(12) + 1j * rng.standard_normal(12)
    fn = {"cumsum": torch.cumsum, "cumprod": torch.cumprod, "logcumsumexp": torch.logcumsumexp,
          "cummax": lambda a, d: torch.cummax(a, d).values}[name]

    def torch_jvp(v: np.ndarray) -> np.ndarray:
        return torch.func.jvp(lambda a: fn(a, 0), (torch.from_numpy(x),),
                              (torch.from_numpy(v),))[1].numpy()

    # torch.func.jvp takes the complex tangent of a real primal, but keeps
    # only its real part inside cumprod and logcumsumexp (it warns that it
    # casts); the linear cumsum and the selecting cummax carry it through
    want = torch_jvp(t.real) + 1j * torch_jvp(t.imag)
    if name in ("cumsum", "cummax"):
        np.testing.assert_array_equal(torch_jvp(t), want)
    _, got = sa.jvp(name, x, t)
    # ours against the dense reference Jacobian: the same float64 sums up to
    # reassociation
    exact = reference.jacobian(name, x) @ t
    np.testing.assert_allclose(got, exact, rtol=8 * np.finfo(np.float64).eps, atol=1e-15)
    # torch's logcumsumexp JVP goes through exp(x - y) on a shifted scale and
    # is off by up to 1.2e-12 relative (measured); the others agree to
    # rounding
    rtol = 1e-11 if name == "logcumsumexp" else 8 * np.finfo(np.float64).eps
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-15)


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_integer_primal_still_raises(dtype: str) -> None:
    with pytest.raises(TypeError):
        sa.jvp(sa.cumsum, np.arange(3).astype(dtype), np.ones(3) * 1j)
    with pytest.raises(TypeError):
        sa.vjp(sa.cumsum, np.arange(3).astype(dtype))


def test_complex_cotangent_grad_example() -> None:
    x_bar = sa.grad(sa.cumsum, np.array([1.0, 2.0, 3.0]), cotangent=np.array([1j, 0, 1]))
    np.testing.assert_array_equal(x_bar, np.array([1 + 1j, 1, 1]))


# ------------------------------------------------------------------ 4. the identity start
@pytest.mark.parametrize("layout", ["line", "strided", "panel"])
def test_sums_and_products_start_from_the_identity(layout: str) -> None:
    # documented (semantics.md, "dtypes and accumulation"): 0 + x[0] and 1 * x[0], so
    # -0.0 sums to +0.0 and complex inf+0j picks up a NaN imaginary part, on every path
    def scan(fn, x: np.ndarray) -> np.ndarray:
        if layout == "strided":
            return fn(np.repeat(x, 2)[::2])
        if layout == "panel":
            return fn(np.stack([x, x], 1), axis=0)[:, 0]
        return fn(x)

    for dtype in REAL + ["complex64", "complex128"]:
        zeros = np.full(300, -0.0, dtype)
        assert not np.signbit(scan(sa.cumsum, zeros).real).any(), dtype
        assert np.signbit(scan(sa.cumprod, zeros).real[:1]).all(), dtype  # 1 * -0.0 = -0.0
    for dtype in ("complex64", "complex128"):
        got = scan(sa.cumprod, np.array([complex(INF, 0), 1, 1], dtype))
        assert got[0].real == INF and np.isnan(got[0].imag) and np.isnan(got[1:]).all()


# ------------------------------------------------------------------ 4. byte order, alignment
def _foreign(a: np.ndarray, how: str) -> np.ndarray:
    """a's values in the other byte order, or on a buffer one byte off alignment."""
    if how == "swapped":
        return a.astype(a.dtype.newbyteorder("S"))
    buf = np.empty(a.nbytes + 1, np.uint8)
    out = buf[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _as_tuple(result: Any) -> Tuple[np.ndarray, ...]:
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.quick
@pytest.mark.parametrize("name", SCANS)
@pytest.mark.parametrize("how", ["swapped", "unaligned"])
def test_foreign_byte_order_and_unaligned_inputs_equal_native(name: str, how: str) -> None:
    """Such inputs are converted, never read raw: every mode's result equals the
    native array's bit for bit, in native byte order, as the reference's is."""
    spec = sa.OPS[name]
    rng = np.random.default_rng(zlib.crc32(f"{name} {how}".encode()))
    native_kw = {"axis": 1, "cu_seqlens": np.array([0, 5, 5, 37])}
    kw = {**native_kw, "cu_seqlens": _foreign(native_kw["cu_seqlens"], how)}
    for dt in spec.dtypes_forward:
        dtype = np.dtype(dt)
        if dtype.itemsize == 1:
            continue  # one byte has no order and no alignment
        x, t, g = (rng.standard_normal((3, 37)) + (1j * rng.standard_normal((3, 37))
                                                    if dtype.kind == "c" else 0)
                   for _ in range(3))
        x = (3 * x).round().astype(dtype) if dtype.kind in "iu" else x.astype(dtype)
        want = _as_tuple(spec.fn(x, **native_kw))
        got = _as_tuple(spec.fn(_foreign(x, how), **kw))
        expected = _as_tuple(getattr(reference, name)(_foreign(x, how), **native_kw))
        for w, o, r in zip(want, got, expected):
            assert o.dtype == w.dtype == r.dtype and o.dtype.isnative
            np.testing.assert_array_equal(o, w)
        if dt not in spec.dtypes_derivative:
            continue
        t, g = t.astype(dtype), g.astype(dtype)
        _, pullback = sa.vjp(spec.fn, x, **native_kw)
        _, foreign_pullback = sa.vjp(spec.fn, _foreign(x, how), **kw)
        pairs = [(foreign_pullback(_foreign(g, how)), pullback(g)),
                 (sa.jvp(spec.fn, _foreign(x, how), _foreign(t, how), **kw)[1],
                  sa.jvp(spec.fn, x, t, **native_kw)[1]),
                 (sa.hvp(name, _foreign(x, how), _foreign(t, how), _foreign(g, how), **kw),
                  sa.hvp(name, x, t, g, **native_kw))]
        for o, w in pairs:
            assert o.dtype == w.dtype and o.dtype.isnative
            np.testing.assert_array_equal(o, w)


@pytest.mark.quick
@pytest.mark.parametrize("how", ["swapped", "unaligned"])
def test_linear_scan_foreign_inputs_give_native_results(how: str) -> None:
    """linear_scan's value and cotangents for foreign a, b, h0 and g: the native
    call's, bit for bit, in native byte order."""
    rng = np.random.default_rng(zlib.crc32(f"linear_scan {how}".encode()))
    a, b, g = (rng.uniform(0.5, 1.0, (3, 37)).astype(np.float32) for _ in range(3))
    h0 = rng.standard_normal(3).astype(np.float32)
    kw = {"axis": 1}
    y, pullback = sa.vjp(sa.linear_scan, (a, b, h0), **kw)
    y_f, pullback_f = sa.vjp(sa.linear_scan, tuple(_foreign(v, how) for v in (a, b, h0)), **kw)
    for o, w in zip((y_f,) + tuple(pullback_f(_foreign(g, how))), (y,) + tuple(pullback(g))):
        assert o.dtype == w.dtype and o.dtype.isnative
        np.testing.assert_array_equal(o, w)
