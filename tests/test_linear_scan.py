"""linear_scan, h[t] = a[t] h[t-1] + b[t] (docs/semantics.md): the
exact reductions, every flag, axis, layout and dtype against the NumPy-loop
reference, segments, resets, overflow, threads, bad input and leaks.

Accuracy contract (docs/semantics.md, "linear_scan accuracy"): down columns
(panels: every lane is the plain loop) and for float16 and complex lines the
result is the reference's bit for bit; float32/float64 lines are scanned in
groups of eight composed affine maps, which differ from the loop by
rounding only:  |h - ref| <= C u (t + 1) H[t], with u the accumulator's unit
roundoff, t the step in scan order within the piece, and H the recurrence
run on |a|, |b|, |h0| (the size of the terms each output sums); plus, for a
float32 result, one float32 rounding (both round a double to float32).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_forward import _at_offset

import scanad as sa
from scanad import _reference as ref

# measured: the largest ratio over the tests below is about 2.5 (see
# test_line_error_bound_is_tight); 4 keeps a margin without hiding a bug
C_LINE = 4.0
U = {np.float16: 2.0**-24, np.float32: 2.0**-53, np.float64: 2.0**-53,
     np.complex64: 2.0**-53, np.complex128: 2.0**-53}

FLOATS = [np.float16, np.float32, np.float64, np.complex64, np.complex128]


@pytest.fixture
def restore_threads():
    n = sa.get_num_threads()
    yield
    sa.set_num_threads(n)


def _rand(rng: np.random.Generator, shape: Any, dtype: Any, lo: float = -1.0,
          hi: float = 1.0) -> np.ndarray:
    x = rng.uniform(lo, hi, shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.uniform(lo, hi, shape)
    return np.asarray(x).astype(dtype)


def _magnitude(a: Any, b: Any, axis: Optional[int], h0: Any, reverse: bool, log_a: bool,
               cu_seqlens: Any, chunk_size: Optional[int], rt: np.dtype,
               inclusive: bool = True) -> np.ndarray:
    """H: the recurrence on |a|, |b|, |h0| (float64)."""
    A = np.asarray(a).astype(rt)
    if log_a:
        A = np.exp(A.astype(np.complex128 if rt.kind == "c" else np.float64))
    A = np.abs(A.astype(np.complex128 if rt.kind == "c" else np.float64))
    B = np.abs(np.asarray(b).astype(rt)).astype(np.float64)
    H0 = None if h0 is None else np.abs(np.asarray(h0).astype(rt)).astype(np.float64)
    return ref.linear_scan(A, B, axis, h0=H0, reverse=reverse, cu_seqlens=cu_seqlens,
                           chunk_size=chunk_size, inclusive=inclusive)


def _steps(shape: tuple, axis: int, reverse: bool, cu_seqlens: Any,
           chunk_size: Optional[int]) -> np.ndarray:
    """t + 1: the step count within its piece, broadcast along axis."""
    n = shape[axis]
    t = np.zeros(n)
    bounds = [0, n] if cu_seqlens is None else list(np.asarray(cu_seqlens))
    for s0, s1 in zip(bounds[:-1], bounds[1:]):
        for c0 in range(s0, s1, chunk_size or max(s1 - s0, 1)):
            c1 = min(s1, c0 + (chunk_size or s1 - s0))
            k = np.arange(1, c1 - c0 + 1)
            t[c0:c1] = k[::-1] if reverse else k
    sh = [1] * len(shape)
    sh[axis] = n
    return t.reshape(sh)


def check(a: Any, b: Any, axis: Optional[int] = None, *, exact: bool, **kw: Any) -> np.ndarray:
    """linear_scan against the reference: bitwise when exact, else within
    the bound of the module docstring.  Returns the result."""
    got = sa.linear_scan(a, b, axis, **kw)
    want = ref.linear_scan(a, b, axis, **kw)
    if kw.get("return_final"):
        got, gf = got
        want, wf = want
        assert gf.dtype == wf.dtype and gf.shape == wf.shape
        if exact:
            np.testing.assert_array_equal(gf, wf)
        elif kw.get("inclusive", True) and kw.get("cu_seqlens") is None and got.size:
            # the final state is the last output in scan order, bit for bit
            ax = 0 if axis is None or got.ndim <= 1 else axis % got.ndim
            last = 0 if kw.get("reverse") else got.shape[ax] - 1
            flat = got.reshape(-1) if axis is None else got
            np.testing.assert_array_equal(gf, np.take(flat, last, axis=ax))
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    if exact:
        np.testing.assert_array_equal(got, want)
        return got
    rt = got.dtype
    kw2 = {k: kw.get(k) for k in ("h0", "reverse", "log_a", "cu_seqlens", "chunk_size")}
    kw2["reverse"] = bool(kw2["reverse"])
    kw2["log_a"] = bool(kw2["log_a"])
    H = _magnitude(a, b, axis, kw2["h0"], kw2["reverse"], kw2["log_a"], kw2["cu_seqlens"],
                   kw2["chunk_size"], rt, kw.get("inclusive", True))
    ax = 0 if axis is None or got.ndim == 0 else axis % got.ndim
    t = _steps(got.shape, ax, kw2["reverse"], kw2["cu_seqlens"], kw2["chunk_size"])
    with np.errstate(invalid="ignore"):  # inf - inf where both overflowed
        return _within(got, want, tol_terms=(H, t, rt, kw2["log_a"]))


def _within(got: np.ndarray, want: np.ndarray, tol_terms: tuple) -> np.ndarray:
    H, t, rt, log_a = tol_terms
    if got.dtype.type in (np.float16, np.float32, np.complex64):
        w = want.astype(np.complex128 if rt.kind == "c" else np.float64)
        extra = np.spacing(np.abs(want).astype(rt).real) * (2 if rt.kind == "c" else 1)
        extra = np.abs(extra).astype(np.float64)
    else:
        w = want
        extra = 0.0
    u = U[rt.type]
    if log_a:
        u = u * 2  # exp rounds once more, NumPy's exp and libm's may differ by an ulp
    tol = C_LINE * u * t * H + extra
    err = np.abs(got.astype(w.dtype) - w)
    fin = np.isfinite(w)
    assert np.array_equal(np.isfinite(got), fin)
    assert np.all(err[fin] <= tol[fin] + 0.0), float(np.max(err[fin] - tol[fin]))
    return got


# ------------------------------------------------------------ exact reductions
@pytest.mark.quick
def test_reduces_to_cumsum_and_cumprod_bitwise() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5001)
    assert np.array_equal(sa.linear_scan(1, x), sa.cumsum(x))
    assert np.array_equal(sa.linear_scan(1.0, x, reverse=True), sa.cumsum(x, reverse=True))
    p = rng.uniform(0.5, 1.5, 5001)
    assert np.array_equal(sa.linear_scan(p, 0, h0=1), sa.cumprod(p))
    assert np.array_equal(sa.linear_scan(p, 0, h0=1, reverse=True), sa.cumprod(p, reverse=True))
    # down columns both are the plain loop: NumPy's own
    X = rng.standard_normal((300, 40))
    assert np.array_equal(sa.linear_scan(1, X, axis=0), np.cumsum(X, axis=0))
    P = rng.uniform(0.5, 1.5, (300, 40))
    assert np.array_equal(sa.linear_scan(P, 0, axis=0, h0=1), np.cumprod(P, axis=0))


@pytest.mark.quick
def test_reverse_and_exclusive_are_flips_and_shifts() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.uniform(-1, 1, (6, 50)), rng.standard_normal((6, 50))
    h0 = rng.standard_normal(6)
    fwd = sa.linear_scan(a[:, ::-1], b[:, ::-1], axis=1, h0=h0)
    assert np.array_equal(sa.linear_scan(a, b, axis=1, h0=h0, reverse=True), fwd[:, ::-1])
    inc = sa.linear_scan(a, b, axis=1, h0=h0)
    exc = sa.linear_scan(a, b, axis=1, h0=h0, inclusive=False)
    assert np.array_equal(exc[:, 1:], inc[:, :-1]) and np.array_equal(exc[:, 0], h0)


@pytest.mark.quick
def test_result_dtype() -> None:
    x32 = np.ones(4, np.float32)
    assert sa.linear_scan(0.5, x32).dtype == np.float32
    # a NumPy scalar follows this NumPy's rules: float64 under NEP 50 (NumPy 2),
    # float32 under the value-based casting of NumPy 1.x
    assert sa.linear_scan(np.float64(0.5), x32).dtype == np.result_type(np.float64(0.5), x32)
    assert sa.linear_scan(np.arange(4), np.arange(4)).dtype == np.float64
    assert sa.linear_scan(0.5, x32, h0=1j).dtype == np.complex64  # weak Python scalars
    assert sa.linear_scan(0.5j, x32).dtype == np.complex64
    assert sa.linear_scan(True, [1, 2]).dtype == np.float64
    assert sa.linear_scan(0.5, x32, dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(sa.linear_scan(2, 1), [1.0])


# ------------------------------------------------------- against the reference
LAYOUTS = ["full", "channel", "time", "scalar"]


def _a_for(layout: str, shape: tuple, axis: int, rng: np.random.Generator, dtype: Any,
           log_a: bool) -> Any:
    lo, hi = (-0.5, 0.2) if log_a else (-1.1, 1.1)
    if layout == "full":
        return _rand(rng, shape, dtype, lo, hi)
    if layout == "scalar":
        return 0.75 if not log_a else -0.1
    sh = list(shape)
    if layout == "channel":  # constant along the axis
        sh[axis] = 1
    else:  # along the axis only
        sh = [1] * len(shape)
        sh[axis] = shape[axis]
    return _rand(rng, tuple(sh), dtype, lo, hi)


def _is_exact(dtype: Any, shape: tuple, axis: Optional[int], log_a: bool) -> bool:
    """Panels (a non-last axis of a C-ordered result) and the float16 /
    complex lines are the plain loop; float32/64 lines reassociate."""
    if log_a:
        return False
    if np.dtype(dtype).type not in (np.float32, np.float64):
        return True
    if axis is None:
        return False
    ax = axis % len(shape)
    return any(s > 1 for s in shape[ax + 1:])


@pytest.mark.quick
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_flags_axes_layouts_quick(dtype: Any, layout: str) -> None:
    rng = np.random.default_rng(2)
    shape = (37, 21)
    for axis in (0, 1, -1, None):
        ax = 0 if axis is None else axis
        b = _rand(rng, shape, dtype)
        a = _a_for(layout, shape, ax, rng, dtype, False)
        rest = shape[:ax % 2] + shape[ax % 2 + 1:]
        h0 = _rand(rng, (), dtype) if axis is None else _rand(rng, rest, dtype)
        for reverse in (False, True):
            for inclusive in (True, False):
                check(a, b, axis, exact=_is_exact(dtype, shape, axis, False), h0=h0,
                      reverse=reverse, inclusive=inclusive, return_final=True)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("log_a", [False, True])
@pytest.mark.parametrize("axis", [0, 1, 2, None])
def test_flags_axes_layouts_3d(dtype: Any, layout: str, log_a: bool, axis: Optional[int]) -> None:
    rng = np.random.default_rng(3)
    shape = (9, 33, 6)
    ax = 0 if axis is None else axis
    b = _rand(rng, shape, dtype)
    a = _a_for(layout, shape, ax, rng, dtype, log_a)
    for reverse in (False, True):
        for inclusive in (True, False):
            for h0 in (None, _rand(rng, (), dtype)):
                check(a, b, axis, exact=_is_exact(dtype, shape, axis, log_a), h0=h0,
                      reverse=reverse, inclusive=inclusive, log_a=log_a, return_final=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_strided_and_transposed_operands(dtype: Any) -> None:
    rng = np.random.default_rng(4)
    big = _rand(rng, (40, 30), dtype)
    b = big[::2, ::-3]  # negative and non-unit strides
    a = _rand(rng, (30, 40), dtype).T[::2, ::3]  # Fortran-ordered view
    for axis in (0, 1):
        for reverse in (False, True):
            check(a, b, axis, exact=_is_exact(dtype, b.shape, axis, False) and axis == 0,
                  reverse=reverse)


# ---------------------------------------------------------------- segments
@pytest.mark.quick
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("axis", [0, 1])
def test_cu_seqlens_equals_separate_calls(dtype: Any, axis: int) -> None:
    rng = np.random.default_rng(5)
    cu = np.array([0, 0, 7, 7, 20, 41, 41])
    shape = (41, 5) if axis == 0 else (5, 41)
    a, b = _rand(rng, shape, dtype), _rand(rng, shape, dtype)
    h0 = _rand(rng, (len(cu) - 1, 5), dtype)
    for reverse in (False, True):
        for inclusive in (True, False):
            for chunk in (None, 3):
                h, hf = sa.linear_scan(a, b, axis, h0=h0, cu_seqlens=cu, reverse=reverse,
                                       inclusive=inclusive, chunk_size=chunk, return_final=True)
                for k in range(len(cu) - 1):
                    sl = [slice(None)] * 2
                    sl[axis] = slice(cu[k], cu[k + 1])
                    if cu[k] == cu[k + 1]:
                        np.testing.assert_array_equal(hf[k], h0[k])  # empty: its h0
                        continue
                    hk, fk = sa.linear_scan(a[tuple(sl)], b[tuple(sl)], axis, h0=h0[k],
                                            reverse=reverse, inclusive=inclusive,
                                            chunk_size=chunk, return_final=True)
                    np.testing.assert_array_equal(h[tuple(sl)], hk)
                    np.testing.assert_array_equal(hf[k], fk)
                check(a, b, axis, exact=_is_exact(dtype, shape, axis, False), h0=h0, cu_seqlens=cu,
                      reverse=reverse, inclusive=inclusive, chunk_size=chunk, return_final=True)


@pytest.mark.quick
def test_chunks_restart_at_segment_h0_and_final_state() -> None:
    a = np.full(10, 2.0)
    b = np.ones(10)
    h, hf = sa.linear_scan(a, b, h0=[1.0, 100.0], cu_seqlens=[0, 4, 10], chunk_size=3,
                           return_final=True)
    # segment 0: chunks [0,3) [3,4); segment 1: [4,7) [7,10), each from its h0
    np.testing.assert_array_equal(h, [3, 7, 15, 3, 201, 403, 807, 201, 403, 807])
    np.testing.assert_array_equal(hf, [3, 807])
    h, hf = sa.linear_scan(a, b, h0=[1.0, 100.0], cu_seqlens=[0, 4, 10], chunk_size=3,
                           return_final=True, reverse=True)
    np.testing.assert_array_equal(h, [15, 7, 3, 3, 807, 403, 201, 807, 403, 201])
    np.testing.assert_array_equal(hf, [15, 807])
    hs, hfs = sa.linear_scan(a, b, h0=5.0, cu_seqlens=[0, 0, 10], return_final=True)
    np.testing.assert_array_equal(hfs[0], 5.0)


# ----------------------------------------------------------- resets, inf, NaN
@pytest.mark.quick
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [0, 1])
def test_zero_a_resets_exactly(dtype: Any, axis: int) -> None:
    rng = np.random.default_rng(6)
    n = 700
    shape = (n, 3) if axis == 0 else (3, n)
    a = _rand(rng, shape, dtype, 1.5, 3.0)  # grows to inf in float16, large elsewhere
    zeros = (np.arange(n) % 97 < 5) | (np.arange(n) >= 690)
    zsh = zeros[:, None] if axis == 0 else zeros[None, :]
    a = np.where(zsh, 0, a).astype(dtype)
    b = _rand(rng, shape, dtype, -2.0, 2.0)
    h = sa.linear_scan(a, b, axis, h0=np.inf)
    np.testing.assert_array_equal(h[np.broadcast_to(zsh, shape)], b[np.broadcast_to(zsh, shape)])
    assert not np.isnan(h).any()
    # even after NaN
    h = sa.linear_scan(a, b, axis, h0=np.nan)
    np.testing.assert_array_equal(h[np.broadcast_to(zsh, shape)], b[np.broadcast_to(zsh, shape)])


@pytest.mark.quick
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, 1])
def test_growth_to_inf_where_the_loop_overflows(dtype: Any, axis: int) -> None:
    n = 3000
    shape = (n, 2) if axis == 0 else (2, n)
    a = np.full(shape, 1.9, dtype)
    b = np.where(np.arange(n) % 2 == 0, 1.0, -0.5)
    b = (b[:, None] if axis == 0 else b[None, :]) * np.ones(shape)
    b = b.astype(dtype)
    got = sa.linear_scan(a, b, axis)
    want = ref.linear_scan(a, b, axis)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert np.isinf(got).any()


@pytest.mark.quick
def test_wild_values_fall_back_to_exact_steps() -> None:
    rng = np.random.default_rng(7)
    n = 4000
    a = rng.uniform(-1, 1, n)
    a[100:140] = 1e20  # factors out of the grouped range
    a[1000] = 1e-40
    b = rng.standard_normal(n)
    b[2000] = 1e300
    b[3000] = np.inf
    got = sa.linear_scan(a, b)
    want = ref.linear_scan(a, b)
    fin = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), fin)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-12, atol=0)
    # inside one group of eight: an inf b, then a reset; a NaN factor, then a
    # reset.  Composed maps would give 0 * inf = NaN up to the group's end.
    a2, b2 = rng.uniform(-1, 1, 64), rng.standard_normal(64)
    b2[10], a2[11] = np.inf, 0.0
    a2[26], a2[27] = np.nan, 0.0
    got, want = sa.linear_scan(a2, b2), ref.linear_scan(a2, b2)
    assert np.isfinite(got[11:26]).all() and np.isfinite(got[27:]).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[27:], want[27:], rtol=1e-13, atol=0)
    # factors whose partial products overflow within a group, then a reset:
    # the loop is inf, then b exactly; composed maps would give inf * 0 = NaN
    a3 = np.tile([1e100, 1e100, 1e100, 1e100, 0.0, 0.5, 0.5, 0.5], 8)
    got, want = sa.linear_scan(a3, np.ones(64)), ref.linear_scan(a3, np.ones(64))
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got, want)


@pytest.mark.quick
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("inclusive", [True, False])
def test_float32_line_groups_test_their_bounds(reverse: bool, inclusive: bool) -> None:
    """float32 lines load each group of eight straight from the operands and
    test its bounds on the float32 bits: an inf offset or a NaN factor, then
    a reset, inside one group must not become 0 * inf = NaN."""
    rng = np.random.default_rng(12)
    n = 1029  # groups of eight and a tail of five
    a = rng.uniform(-1, 1, n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    nxt = -1 if reverse else 1  # the next step in scan order
    b[10] = np.inf
    a[10 + nxt] = 0.0
    a[500] = np.nan
    a[500 + nxt] = 0.0
    kw: dict = dict(reverse=reverse, inclusive=inclusive)
    got = check(a, b, exact=False, **kw)  # inf and NaN exactly where the loop has them
    assert np.isfinite(got).sum() > n // 2  # the resets took effect
    # a broadcast factor out of 2^+-32, a zero one, and an inf offset with
    # a tame broadcast factor (inf from there on, as in the loop)
    for wild in (2.0**40, 2.0**-40, 0.0, 0.75):
        check(np.float32(wild), b, exact=False, **kw)


# ------------------------------------------------------------------ threads
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
def test_split_line_matches_one_thread(restore_threads, dtype: Any, reverse: bool) -> None:
    rng = np.random.default_rng(8)
    n = (1 << 19) + 123
    # decays slow enough that h0 still weighs ~0.3 where the second piece starts
    a = rng.uniform(0.99999, 1.0, n).astype(dtype)
    a[3 * n // 4] = 0.0  # a reset inside the second piece
    b = rng.standard_normal(n).astype(dtype)
    sa.set_num_threads(1)
    one, f1 = sa.linear_scan(a, b, h0=1e6, reverse=reverse, return_final=True)
    sa.set_num_threads(2)
    two, f2 = sa.linear_scan(a, b, h0=1e6, reverse=reverse, return_final=True)
    assert f1 == one[0 if reverse else -1] and f2 == two[0 if reverse else -1]
    # the pieces' maps reassociate the carry: the bound of a line, with H
    # computed by the kernel itself (no cancellation in it: accurate)
    sa.set_num_threads(1)
    H = sa.linear_scan(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64), h0=1e6,
                       reverse=reverse)
    t = _steps((n,), 0, reverse, None, None)
    extra = np.spacing(np.abs(one)).astype(np.float64) if dtype == np.float32 else 0.0
    assert np.all(np.abs(two.astype(np.float64) - one) <= 2 * C_LINE * 2.0**-53 * t * H + extra)


@pytest.mark.quick
@pytest.mark.parametrize("log_a", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_split_line_carries_h0_through_an_underflowed_product(restore_threads, reverse: bool,
                                                              log_a: bool) -> None:
    # The first piece's product of factors, 0.7^35 2^-1050, is below
    # double's range, yet h0 = 1.3 2^1000 still gives every later state:
    # the piece's map keeps its product as a mantissa and an exponent.
    n = (1 << 19) + 123
    a = np.ones(n)
    a[1000:1035] = 0.7 * 2.0**-30
    b = np.zeros(n)
    if reverse:
        a = a[::-1].copy()
    h0 = 1.3 * 2.0**1000
    if log_a:  # the reduce's other path: tiles
        a = np.log(a)
    sa.set_num_threads(1)
    one = sa.linear_scan(a, b, h0=h0, reverse=reverse, log_a=log_a)
    sa.set_num_threads(2)
    two = sa.linear_scan(a, b, h0=h0, reverse=reverse, log_a=log_a)
    tail = one[: n // 4] if reverse else one[-n // 4:]
    assert np.all(tail == tail[0]) and 2.0**-80 < tail[0] < 2.0**-40
    # 36 factors multiplied in two orders: each product within 36 roundings
    np.testing.assert_allclose(two, one, rtol=2 * 36 * 2.0**-53, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_line_with_everyday_decays(restore_threads, dtype: Any) -> None:
    # decays in [0.5, 1): a piece's product is far below double's range
    rng = np.random.default_rng(81)
    n = (1 << 19) + 77
    a = rng.uniform(0.5, 1.0, n).astype(dtype)
    a[n // 8] = 0.0
    b = rng.standard_normal(n).astype(dtype)
    sa.set_num_threads(1)
    one = sa.linear_scan(a, b, h0=3.0)
    sa.set_num_threads(2)
    two = sa.linear_scan(a, b, h0=3.0)
    # the bound of test_split_line_matches_one_thread
    sa.set_num_threads(1)
    H = sa.linear_scan(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64), h0=3.0)
    t = _steps((n,), 0, False, None, None)
    extra = np.spacing(np.abs(one)).astype(np.float64) if dtype == np.float32 else 0.0
    assert np.all(np.abs(two.astype(np.float64) - one) <= 2 * C_LINE * 2.0**-53 * t * H + extra)
    if dtype == np.float64:  # the line was split: its pieces' maps reassociate
        assert not np.array_equal(two, one)


# -------------------------------------------------------- hypothesis: layouts
@st.composite
def _problems(draw: Any) -> tuple:
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(0, 7), min_size=nd, max_size=nd)))
    axis = draw(st.sampled_from(list(range(-nd, nd)) + [None]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.complex128]))
    # a: a broadcastable shape (1s where it is constant, fewer dims)
    drop = draw(st.integers(0, nd))
    ash = tuple(1 if draw(st.booleans()) else s for s in shape[drop:])
    steps = tuple(draw(st.sampled_from([1, -1, 2])) for _ in shape)
    flags = draw(st.booleans()), draw(st.booleans())
    return shape, ash, axis, dtype, steps, *flags, draw(st.integers(0, 2**31))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_problems())
def test_hypothesis_layouts(problem: tuple) -> None:
    shape, ash, axis, dtype, steps, reverse, inclusive, seed = problem
    rng = np.random.default_rng(seed)
    big = _rand(rng, tuple(s * abs(k) for s, k in zip(shape, steps)), dtype)
    b = big[tuple(slice(None, None, k) for k in steps)]
    assert b.shape == shape
    a = _rand(rng, ash, dtype, -1.2, 1.2)
    check(a, b, axis, exact=False, reverse=reverse, inclusive=inclusive, return_final=True)


# -------------------------------------------------------------- out= and bad input
@pytest.mark.quick
def test_out_and_in_place() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.uniform(-1, 1, (5, 6)), rng.standard_normal((5, 6))
    want = sa.linear_scan(a, b, 0)
    out = np.empty((5, 6))
    assert sa.linear_scan(a, b, 0, out=out) is out
    np.testing.assert_array_equal(out, want)
    bb = b.copy()
    sa.linear_scan(a, bb, 0, out=bb)  # in place over b
    np.testing.assert_array_equal(bb, want)
    o32 = np.empty((5, 6), np.float32)
    sa.linear_scan(a.astype(np.float32), b.astype(np.float32), 1, out=o32)
    line = b.copy()
    sa.linear_scan(a, line, 1, out=line)
    np.testing.assert_array_equal(line, sa.linear_scan(a, b, 1))


@pytest.mark.quick
def test_out_overlapping_h0() -> None:
    """h0 a view into out= (fewer dimensions, or out's first rows read per
    segment after earlier segments wrote them) goes through a temporary."""
    b = np.arange(1.0, 19.0).reshape(6, 3)
    want = sa.linear_scan(0.5, b, axis=0, h0=b[:2].copy(), cu_seqlens=[0, 3, 6])
    out = b.copy()
    sa.linear_scan(0.5, out, axis=0, h0=out[:2], cu_seqlens=[0, 3, 6], out=out)
    np.testing.assert_array_equal(out, want)
    a = np.full((4, 3), 0.5)
    for h0_of, axis in ((lambda o: o[0], 0), (lambda o: o[:, 0], 1)):
        out = np.arange(1.0, 13.0).reshape(4, 3)
        want = sa.linear_scan(a, np.ones((4, 3)), axis=axis, h0=h0_of(out).copy())
        sa.linear_scan(a, np.ones((4, 3)), axis=axis, h0=h0_of(out), out=out)
        np.testing.assert_array_equal(out, want)
    line = np.arange(1.0, 19.0)
    want = sa.linear_scan(0.5, line, h0=np.float64(1.0))
    sa.linear_scan(0.5, line, h0=line[:1].reshape(()), out=line)
    np.testing.assert_array_equal(line, want)


@pytest.mark.quick
@pytest.mark.parametrize("call, exc, words", [
    (lambda: sa.linear_scan(np.ones(3), np.ones(4)), ValueError, "broadcast"),
    (lambda: sa.linear_scan(1, np.ones((3, 4)), 0, h0=np.ones(3)), ValueError, "h0"),
    (lambda: sa.linear_scan(1, np.ones(3), dtype=np.int32), TypeError, "dtype"),
    (lambda: sa.linear_scan(1, np.array(["a"])), TypeError, "numeric"),
    (lambda: sa.linear_scan(1, np.ones(3), out=np.empty(4)), ValueError, "out"),
    (lambda: sa.linear_scan(1, np.ones(3), out=np.broadcast_to(np.empty(3), (3,))), ValueError,
     "out"),
    (lambda: sa.linear_scan(1, np.ones(3), axis=1), ValueError, "axis"),
    (lambda: sa.linear_scan(1, np.ones(3), cu_seqlens=[0, 2]), ValueError, "cu_seqlens"),
    (lambda: sa.linear_scan(1, np.ones(3), cu_seqlens=[0, 2, 1, 3]), ValueError, "cu_seqlens"),
    (lambda: sa.linear_scan(1, np.ones(3), chunk_size=0), ValueError, "chunk_size"),
    (lambda: sa.linear_scan(1, np.ones((3, 2)), 0, cu_seqlens=[0, 1, 3], h0=np.ones((3, 2))),
     ValueError, "h0"),
    (lambda: sa.linear_scan(1, np.ones((3, 2)), 0, cu_seqlens=[0, 1, 3], h0=np.ones(2)),
     ValueError, "h0"),
    (lambda: sa.linear_scan(1j, np.ones(3), dtype=np.float64), TypeError, "dtype"),
    (lambda: sa.linear_scan(None, np.ones(3)), TypeError, "a must be a numeric array"),
    (lambda: sa.linear_scan(np.ones(3), None), TypeError, "b must be a numeric array"),
    (lambda: sa.grad(sa.linear_scan, (None, np.ones(3), None)), TypeError, "a must be a numeric"),
    (lambda: sa.vjp(sa.linear_scan, (np.ones(3), None, None)), TypeError, "b must be a numeric"),
])
def test_bad_input(call: Any, exc: type, words: str) -> None:
    with pytest.raises(exc, match=words):
        call()


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_constant_a_agrees_with_lfilter(axis: int, dtype: Any) -> None:
    # scipy's IIR filter y[t] = b[t] + a y[t-1] is the same recurrence; zi is a * h0
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(8)
    b = rng.standard_normal((300, 7)).astype(dtype)
    if np.dtype(dtype).kind == "c":
        b = b + 1j * rng.standard_normal((300, 7))
    a = np.asarray(0.97 * np.exp(0.2j) if np.dtype(dtype).kind == "c" else -0.97, dtype)
    h0 = rng.standard_normal(7 if axis == 0 else 300).astype(dtype)
    got = sa.linear_scan(a, b, axis, h0=h0)
    zi = np.expand_dims(a * h0, axis)
    want, _ = signal.lfilter([1.0], [1.0, -a], b, axis=axis, zi=zi)
    # lfilter runs the same loop in its own order of operations: a few ulp per step,
    # and |h| stays below |b| / (1 - |a|) ~ 33 max|b|
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(b).max())


@pytest.mark.quick
@pytest.mark.parametrize("a_kind", ["same", "scalar", "row"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
def test_panels_at_every_offset_in_a_cache_line(dtype: Any, a_kind: str) -> None:
    """Panels run their lanes in two stretches split where the output row
    meets a 64-byte boundary, the per-lane state shifted to match: every
    offset of b and of out= within a cache line, panels narrower and wider
    than the first stretch, in place, each lane the loop bit for bit."""
    size = np.dtype(dtype).itemsize
    rng = np.random.default_rng(8)
    for lanes in (3, 13, 16, 37):
        shape = (6, lanes)
        b = _rand(rng, shape, dtype)
        a = {"same": _rand(rng, shape, dtype, 0.5, 1.0), "scalar": np.asarray(0.75, dtype),
             "row": _rand(rng, (1, lanes), dtype, 0.5, 1.0)}[a_kind]
        h0 = _rand(rng, (lanes,), dtype)
        for inclusive in (True, False):
            kw = dict(axis=0, inclusive=inclusive, h0=h0)
            want = ref.linear_scan(a, b, **kw)
            for b_off in range(0, 64, max(size, 8)):
                bb = _at_offset(shape, dtype, b_off)
                for o_off in range(0, 64, size):
                    bb[...] = b
                    out = _at_offset(shape, dtype, o_off)
                    sa.linear_scan(a, bb, out=out, **kw)
                    np.testing.assert_array_equal(out, want, f"b at {b_off}, out at {o_off}")
                    if b_off == o_off:
                        sa.linear_scan(a, bb, out=bb, **kw)
                        np.testing.assert_array_equal(bb, want, f"in place at {b_off}")
