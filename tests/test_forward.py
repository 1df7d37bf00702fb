"""Forward scans against the NumPy reference and PyTorch: every op, dtype,
axis, direction, inclusive flag and layout; edge values; out= and dtype=;
and every bad input of docs/semantics.md, "Bad input"."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import scanad as sa
from scanad._registry import SCANS

ALL_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
              "float16", "float32", "float64", "complex64", "complex128")


def _values(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -4), min(info.max, 4)
        return rng.integers(lo, hi + 1, size=shape).astype(dtype)
    x = rng.standard_normal(shape) * 2
    if dtype.startswith("complex"):
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


def _tolerance(dtype: np.dtype, name: str) -> tuple:
    # The kernels and the reference accumulate in the same wide type and round
    # once per output, so they differ only by the rounding of the wide partial
    # results: a few output ulp, plus an absolute term for results that are
    # small next to the partial sums they came from (cancellation).
    if dtype.kind in "biu":
        return 0.0, 0.0
    eps = float(np.finfo(dtype).eps)
    if name == "logcumsumexp":
        return 8 * eps, 8 * eps
    return 4 * eps, 64 * eps


def _compare(name: str, got: object, want: object) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
    assert got.shape == want.shape
    rtol, atol = _tolerance(got.dtype, name)
    if rtol == 0:
        assert np.array_equal(got, want), name
    else:
        scale = max(1.0, float(np.max(np.abs(want[np.isfinite(want)]), initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, equal_nan=True)


layouts = st.sampled_from(["C", "F", "T", "neg", "step"])


def _layout(x: np.ndarray, kind: str) -> np.ndarray:
    if x.ndim == 0:
        return x
    if kind == "F":
        return np.asfortranarray(x)
    if kind == "T":
        return x.T
    if kind == "neg":
        return x[..., ::-1]
    if kind == "step":
        return np.repeat(x, 2, axis=-1)[..., ::2]
    return x


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(SCANS), dtype=st.sampled_from(ALL_DTYPES),
       shape=st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple),
       axis_pick=st.integers(-5, 5), use_none=st.booleans(), reverse=st.booleans(),
       inclusive=st.booleans(), layout=layouts, seed=st.integers(0, 2**16))
def test_matches_reference(name, dtype, shape, axis_pick, use_none, reverse, inclusive, layout,
                           seed) -> None:
    spec = sa.OPS[name]
    if dtype not in spec.dtypes_forward:
        return
    x = _layout(_values(np.random.default_rng(seed), shape, dtype), layout)
    ndim = max(x.ndim, 1)
    axis = None if use_none else axis_pick % ndim - (ndim if axis_pick < 0 else 0)
    kw = dict(axis=axis, reverse=reverse, inclusive=inclusive)
    _compare(name, spec.fn(x, **kw), spec.reference(x, **kw))
    if name in ("cummax", "cummin"):
        got_v, got_i = spec.fn(x, return_indices=True, **kw)
        want_v, want_i = spec.reference(x, return_indices=True, **kw)
        assert np.array_equal(got_i, want_i) and got_i.dtype == np.int64


def _torch_scan(name: str, x: np.ndarray, axis: int, reverse: bool, inclusive: bool):
    t = torch.from_numpy(np.ascontiguousarray(x))
    if reverse:
        t = torch.flip(t, [axis])
    if name in ("cummax", "cummin"):
        v, i = getattr(torch, name)(t, axis)
    else:
        v, i = getattr(torch, name)(t, axis), None
    v = v.numpy()
    i = None if i is None else i.numpy()
    if not inclusive:
        n = x.shape[axis]
        ident = {"cumsum": 0, "cumprod": 1, "cummax": -np.inf, "cummin": np.inf,
                 "logcumsumexp": -np.inf}[name]
        first = np.full_like(np.take(v, [0], axis), ident)
        v = np.concatenate([first, np.take(v, range(n - 1), axis)], axis)
        if i is not None:
            i = np.concatenate([np.full_like(np.take(i, [0], axis), -1),
                                np.take(i, range(n - 1), axis)], axis)
    if reverse:
        v = np.flip(v, axis)
        if i is not None:
            n = x.shape[axis]
            i = np.flip(np.where(i >= 0, n - 1 - i, -1), axis)
    return v, i


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(SCANS), shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
       axis_pick=st.integers(0, 2), reverse=st.booleans(), inclusive=st.booleans(),
       seed=st.integers(0, 2**16), special=st.booleans())
def test_matches_torch_values_and_indices(name, shape, axis_pick, reverse, inclusive, seed,
                                          special) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal(shape) * 2)  # rounding makes ties common
    if special:
        x.flat[rng.integers(0, x.size, size=max(1, x.size // 4))] = np.nan
    axis = axis_pick % len(shape)
    want_v, want_i = _torch_scan(name, x, axis, reverse, inclusive)
    if name in ("cummax", "cummin"):
        got_v, got_i = sa.OPS[name].fn(x, axis=axis, reverse=reverse, inclusive=inclusive,
                                      return_indices=True)
        assert np.array_equal(got_i, want_i)
    else:
        got_v = sa.OPS[name].fn(x, axis=axis, reverse=reverse, inclusive=inclusive)
    # float64 against torch's float64: same operations up to summation order
    np.testing.assert_allclose(got_v, want_v, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_design_examples() -> None:
    v, i = sa.cummax([1, np.nan, 5, np.nan, 2], return_indices=True)
    assert i.tolist() == [0, 1, 1, 3, 3] and np.isnan(v[1:]).all()
    assert sa.cummax([1, 3, 3, 2, 3], return_indices=True)[1].tolist() == [0, 1, 2, 2, 4]
    assert sa.cummax([1, 3, 3, 2, 3], return_indices=True, reverse=True)[1].tolist() == \
        [1, 1, 2, 4, 4]
    v, i = sa.cummax(np.array([-0.0, 0.0, -0.0]), return_indices=True)
    assert i.tolist() == [0, 1, 2] and np.signbit(v[2])
    assert sa.cummax([3, 1], inclusive=False, return_indices=True)[1].tolist() == [-1, 0]
    assert sa.cummax(np.array([5], np.int8), inclusive=False).tolist() == [-128]
    assert sa.cummin(np.array([True]), inclusive=False).tolist() == [True]


def test_logcumsumexp_edges() -> None:
    inf = np.inf
    assert sa.logcumsumexp([-inf, -inf]).tolist() == [-inf, -inf]
    assert sa.logcumsumexp([inf, inf, 0.0]).tolist() == [inf, inf, inf]
    y = sa.logcumsumexp([0.0, np.nan, 1.0])
    assert y[0] == 0 and np.isnan(y[1:]).all()
    y = sa.logcumsumexp(np.array([1e30, 1e30, -1e30], np.float32))
    assert np.isfinite(y).all() and y[-1] == np.float32(1e30)
    y = sa.logcumsumexp(np.array([1e308, 1e308]))
    assert np.isfinite(y).all()
    assert sa.logcumsumexp(np.arange(3)).dtype == np.float64
    z = np.array([0.0, 1j * np.pi, 1 + 2j, -3 - 1j])
    y = sa.logcumsumexp(z[1:])
    assert np.all(y.imag > -np.pi) and np.all(y.imag <= np.pi)
    np.testing.assert_allclose(np.exp(y), np.cumsum(np.exp(z[1:])), rtol=1e-13)


def test_empty_and_zero_d() -> None:
    assert sa.cumsum(np.zeros((0, 3)), axis=0).shape == (0, 3)
    assert sa.cumsum(np.zeros((3, 0)), axis=0).shape == (3, 0)
    assert sa.cumsum(np.array(5.0)).tolist() == [5.0]
    assert sa.cumsum(np.array(5.0), axis=0).tolist() == [5.0]
    assert sa.logcumsumexp(np.zeros(0)).shape == (0,)


def test_out_dtype_and_promotion() -> None:
    x = np.arange(12.0).reshape(3, 4)
    out = np.empty((4, 3)).T  # non-contiguous out
    r = sa.cumsum(x, axis=1, out=out)
    assert r is out and np.array_equal(out, np.cumsum(x, axis=1))
    y = x.copy()
    assert sa.cumsum(y, axis=0, out=y) is y and np.array_equal(y, np.cumsum(x, axis=0))
    out32 = np.empty((3, 4), np.float32)  # same_kind cast into out
    sa.cumsum(x, axis=0, out=out32)
    assert np.array_equal(out32, np.cumsum(x, axis=0).astype(np.float32))
    vals, idx = np.empty(5), np.empty(5, np.int64)
    r = sa.cummax(np.array([1.0, 3, 3, 2, 3]), return_indices=True, out=(vals, idx))
    assert r[0] is vals and r[1] is idx and idx.tolist() == [0, 1, 2, 2, 4]
    for dt in ("bool", "int8", "uint16", "int32", "uint64", "float16"):
        a = np.ones(5, dt)
        assert sa.cumsum(a).dtype == np.cumsum(a).dtype
        assert sa.cumprod(a).dtype == np.cumprod(a).dtype
    a = np.full(300, 100, np.int64)
    assert np.array_equal(sa.cumsum(a, dtype=np.int8), np.cumsum(a, dtype=np.int8))
    assert np.array_equal(sa.cumprod([1.5, 2.5], dtype=np.int8), [1, 2])
    assert np.array_equal(sa.cumsum([1, 2, 3]), [1, 3, 6])
    assert np.array_equal(sa.cumsum(torch.arange(4)), [0, 1, 3, 6])


@pytest.mark.quick
@pytest.mark.parametrize("name", ["cummax", "cummin"])
def test_index_outputs_must_not_share_memory(name: str) -> None:
    fn = getattr(sa, name)
    x = np.array([1.0, 3, 3, 2, 3])
    buf = np.zeros(10, np.int64)
    record = np.zeros(5, [("value", np.float64), ("index", np.int64)])
    for vals, idx in ((buf[:5].view(np.float64), buf[:5]),  # the same memory
                      (buf[2:7].view(np.float64), buf[:5]),  # overlapping views
                      (buf.view(np.float64)[::2], buf[::2])):  # the same strided elements
        before = buf.copy()
        with pytest.raises(ValueError, match="must not share memory"):
            fn(x, return_indices=True, out=(vals, idx))
        np.testing.assert_array_equal(buf, before)
    # interleaved but disjoint: two fields of one record array
    got = fn(x, return_indices=True, out=(record["value"], record["index"]))
    want = fn(x, return_indices=True)
    np.testing.assert_array_equal(record["value"], want[0])
    np.testing.assert_array_equal(record["index"], want[1])
    assert got[0].base is record and got[1].base is record


def _at_offset(shape: tuple, dtype: str, offset: int) -> np.ndarray:
    """An uninitialised (NaN where it can be) C-ordered array starting
    `offset` bytes after a 64-byte boundary."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dt.itemsize
    buf = np.empty(nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    a = buf[start:start + nbytes].view(dt).reshape(shape)
    a[...] = np.nan if dt.kind in "fc" else 7
    return a


# Contiguous panels run their lanes in two stretches split where the output
# row meets a 64-byte boundary, with the per-lane state shifted to match: every
# offset of x and y within a cache line, panels narrower and wider than the
# first stretch, in place and not.
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "complex64"])
@pytest.mark.parametrize("name", SCANS)
def test_panels_at_every_offset_in_a_cache_line(name: str, dtype: str) -> None:
    spec = sa.OPS[name]
    if dtype not in spec.dtypes_forward:
        pytest.skip(f"{name} has no {dtype} forward")
    size = np.dtype(dtype).itemsize
    rng = np.random.default_rng(5)
    for lanes in (3, 13, 16, 37):
        values = _values(rng, (6, lanes), dtype)
        for inclusive in (True, False):
            kw = dict(axis=0, inclusive=inclusive)
            want = spec.reference(values, **kw)
            if want.dtype != values.dtype:
                pytest.skip(f"{name} of {dtype} is {want.dtype}: out= would cast")
            for x_off in range(0, 64, max(size, 8)):
                x = _at_offset(values.shape, dtype, x_off)
                for y_off in range(0, 64, size):
                    x[...] = values
                    y = _at_offset(values.shape, dtype, y_off)
                    spec.fn(x, out=y, **kw)
                    _compare(name, y, want)
                    if x_off == y_off:
                        spec.fn(x, out=x, **kw)
                        _compare(name, x, want)
                if name in ("cummax", "cummin"):
                    x[...] = values
                    _, got_i = spec.fn(x, return_indices=True, **kw)
                    _, want_i = spec.reference(values, return_indices=True, **kw)
                    assert np.array_equal(got_i, want_i)


def test_float32_accumulates_in_float64() -> None:
    x = np.full(10_000_000, 0.1, np.float32)
    want = 1e7 * float(np.float32(0.1))
    assert abs(float(sa.cumsum(x)[-1]) - want) <= 1e-6 * want


@pytest.mark.parametrize("reverse", [False, True])
def test_float64_cumsum_error_is_within_the_recursive_bound(reverse: bool) -> None:
    # Long lines are summed eight at a time (a log-step scan within vectors),
    # not in NumPy's order, so results may differ from np.cumsum in the last
    # bits; the error must stay within the classical bound for summing in
    # order, |y_i - exact_i| <= (i + 1) eps sum_{j<=i} |x_j|.  The reference
    # is summed in long double (11 more bits).
    rng = np.random.default_rng(3)
    x = rng.standard_normal(4099) * 10.0 ** rng.integers(-3, 4, 4099)
    got = sa.cumsum(x, reverse=reverse)
    xs = x[::-1] if reverse else x
    exact = np.cumsum(xs.astype(np.longdouble))
    bound = np.arange(1, x.size + 1) * np.finfo(np.float64).eps * np.cumsum(np.abs(xs))
    err = np.abs((got[::-1] if reverse else got) - exact).astype(np.float64)
    assert np.all(err <= bound)
    assert np.array_equal(sa.cumsum(x[:5]), np.cumsum(x[:5]))  # short lines add in order


@pytest.mark.parametrize("call, exc, match", [
    (lambda: sa.cumsum(np.array(["a", "b"])), TypeError, "x must be a numeric array"),
    (lambda: sa.cumsum(np.array([1, None], object)), TypeError, "x must be a numeric array"),
    (lambda: sa.cumsum(np.ones(3), axis=1), ValueError, "axis 1 is out of bounds"),
    (lambda: sa.cumsum(np.ones(3), axis=1.5), TypeError, "axis must be an integer"),
    (lambda: sa.cumsum(np.ones(3), axis=np.array([0])), TypeError, "axis must be an integer"),
    (lambda: sa.cumsum(np.ones(3), dtype=3), TypeError, "dtype must be a numeric dtype or None"),
    (lambda: sa.cumsum(np.ones(3), dtype="float99"), TypeError, "dtype must be a numeric"),
    (lambda: sa.cumsum(np.ones(4), cu_seqlens=[]), ValueError, "cu_seqlens must hold at least"),
    (lambda: sa.cumsum(np.ones(4), chunk_size=np.array([2])), TypeError,
     "chunk_size must be a positive integer or None; got numpy.ndarray"),
    (lambda: sa.cumsum(np.ones(3), out=np.empty(4)), ValueError, "out must have"),
    (lambda: sa.cumsum(np.ones(3), out=[0, 0, 0]), TypeError, "out must be a numpy.ndarray"),
    (lambda: sa.cummax(np.ones(3) + 1j), TypeError, "real"),
    (lambda: sa.cummax(np.ones(3), dtype=np.float32), TypeError, "dtype"),
    (lambda: sa.cumsum(np.ones(3), dtype=object), TypeError, "dtype must be a numeric"),
    (lambda: sa.cumsum(np.ones(4), cu_seqlens=[[0, 4]]), ValueError, "cu_seqlens must be a 1-D"),
    (lambda: sa.cumsum(np.ones(4), cu_seqlens=[0.0, 4.0]), TypeError, "cu_seqlens"),
    (lambda: sa.cumsum(np.ones(4), cu_seqlens=[1, 4]), ValueError, "cu_seqlens must start at 0"),
    (lambda: sa.cumsum(np.ones(4), cu_seqlens=[0, 3, 2, 4]), ValueError, "non-decreasing"),
    (lambda: sa.cumsum(np.ones(4), cu_seqlens=[0, 3]), ValueError, "must end at the length"),
    (lambda: sa.cumsum(np.ones(4), chunk_size=0), ValueError, "chunk_size must be a positive"),
    (lambda: sa.cumsum(np.ones(4), chunk_size=-3), ValueError, "chunk_size must be a positive"),
])
def test_bad_input_names_the_argument(call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_zero_d_integer_arrays_are_integers() -> None:
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(sa.cumsum(x, axis=np.array(1)), np.cumsum(x, axis=1))
    np.testing.assert_array_equal(sa.cumsum(x, axis=1, chunk_size=np.array(2)),
                                  sa.cumsum(x, axis=1, chunk_size=2))


def test_read_only_out() -> None:
    out = np.empty(3)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be a writeable"):
        sa.cumsum(np.ones(3), out=out)


# ------------------------------------------------------------------ lines that run both ways
def _against(x: np.ndarray, kind: str) -> tuple:
    """x laid out so that a fresh (or the given) output runs against it, and
    the out= to pass (None: a fresh result)."""
    if kind == "input reversed":
        return x[::-1], None
    if kind == "out reversed":
        return x, np.full(x.shape, np.nan, x.dtype)[::-1]
    return x[::-1], np.full(2 * x.shape[0], np.nan, x.dtype)[::2]  # and a strided out


@pytest.mark.quick
@pytest.mark.parametrize("name", ["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["input reversed", "out reversed", "strided out"])
def test_lines_whose_output_runs_against_the_input(name: str, dtype: str, kind: str) -> None:
    """Long lines whose output runs the other way in memory (they are scanned
    in chunks through a buffer): lengths around the chunk, both flags, both
    directions, segments, chunks, indices; values that the chunks' totals
    cannot take (zeros in cumprod, float64 sums near overflow, NaN) included."""
    spec = sa.OPS[name]
    rng = np.random.default_rng(zlib.crc32(f"{name} {dtype} {kind}".encode()))
    for n in (64, 2047, 2048, 2049, 3 * 2048 + 17):
        base = rng.uniform(0.99, 1.01, n) if name == "cumprod" else rng.standard_normal(n)
        specials = {"cumsum": [1e300, -1e300], "cumprod": [0.0, 0.0], "cummax": [np.nan, np.inf],
                    "cummin": [np.nan, -np.inf], "logcumsumexp": [np.inf, -np.inf]}[name]
        wild = base.copy()
        wild[[n // 3, n - 5]] = specials
        for values in (base, wild):
            x, out = _against(values.astype(dtype), kind)
            for kw in (dict(), dict(axis=0, reverse=True), dict(axis=0, inclusive=False),
                       dict(reverse=True, inclusive=False),
                       dict(axis=0, cu_seqlens=[0, 5, n // 2, n]), dict(chunk_size=1000)):
                call = dict(kw, return_indices=True) if name in ("cummax", "cummin") else kw
                if out is not None:
                    res = (out, np.empty(out.shape, np.int64)) if "return_indices" in call else out
                    call["out"] = res
                got = spec.fn(x, **call)
                want = spec.reference(np.ascontiguousarray(x), **{k: v for k, v in call.items()
                                                                  if k != "out"})
                if name in ("cummax", "cummin"):
                    np.testing.assert_array_equal(got[0], want[0])
                    np.testing.assert_array_equal(got[1], want[1])
                    if out is not None:
                        assert got[0] is out
                else:
                    with np.errstate(invalid="ignore", over="ignore"):
                        _compare(name, got, want)
                    if out is not None:
                        assert got is out
    # several lines: [:, ::-1] scanned along axis 1
    x = np.stack([rng.standard_normal(2500).astype(dtype) for _ in range(3)])[:, ::-1]
    if kind == "input reversed":
        got = spec.fn(x, axis=1)
        want = spec.reference(np.ascontiguousarray(x), axis=1)
        with np.errstate(invalid="ignore", over="ignore"):
            _compare(name, got, want)
