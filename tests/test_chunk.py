"""chunk_local_cumsum / chunk_global_cumsum (docs/semantics.md, "The linear-attention wrappers").

The oracle is a per-chunk float64 reference written here with explicit loops
over batches, sequences and chunks, following flash-linear-attention's
``fla/ops/utils/cumsum.py``: chunk boundaries count from each sequence start
(``bos``), ``reverse`` is a suffix sum within each chunk, ``scale`` multiplies
the accumulated sum, the output has ``output_dtype`` (default: the input dtype
— docs/semantics.md), ``head_first`` moves time from axis 1 to axis 2.
"""

from __future__ import annotations

import numpy as np
import pytest

import scanad as sa

FLOATS = (np.float16, np.float32, np.float64)


# --------------------------------------------------------------------------
# reference
# --------------------------------------------------------------------------

def _sequences(T, cu_seqlens):
    if cu_seqlens is None:
        return [(0, T)]
    cu = [int(c) for c in cu_seqlens]
    return [(cu[k], cu[k + 1]) for k in range(len(cu) - 1)]


def ref_chunk_cumsum(g, chunk_size=None, reverse=False, scale=None, cu_seqlens=None,
                     head_first=False):
    """float64 per-chunk cumsum; chunk_size=None is the global (per-sequence) cumsum."""
    x = np.asarray(g, dtype=np.float64)
    if head_first:
        x = np.swapaxes(x, 1, 2)  # -> [B, T, H(, S)]
    B, T = x.shape[:2]
    y = np.zeros_like(x)
    for b in range(B):
        for bos, eos in _sequences(T, cu_seqlens):
            step = (eos - bos) if chunk_size is None else chunk_size
            if eos == bos:
                continue
            for start in range(bos, eos, step):
                stop = min(start + step, eos)
                piece = x[b, start:stop]
                if reverse:
                    y[b, start:stop] = np.cumsum(piece[::-1], axis=0)[::-1]
                else:
                    y[b, start:stop] = np.cumsum(piece, axis=0)
    if scale is not None:
        y = y * scale
    if head_first:
        y = np.swapaxes(y, 1, 2)
    return y


def _run(kind, g, chunk_size=None, **kw):
    if kind == "local":
        return sa.chunk_local_cumsum(g, chunk_size, **kw)
    return sa.chunk_global_cumsum(g, **kw)


def _check(got, g, want_dtype, chunk_size=None, reverse=False, scale=None, cu_seqlens=None,
           head_first=False):
    """Compare with the float64 reference.

    Error model (|ref_abs| = the same chunked cumsum of |g|, a bound on every
    partial sum in any summation order): accumulating n terms in precision
    eps_acc costs at most n * eps_acc * |ref_abs|; the scale multiply and the
    final rounding to the output dtype cost at most eps_out * |ref| (half an
    ulp each, doubled for the scale).  float16 accumulates in float32 and
    float32 in float64 (docs/semantics.md, "dtypes"), so eps_acc is float32's / float64's eps;
    an implementation accumulating float16 in float16 fails this bound.
    """
    assert got.dtype == np.dtype(want_dtype), (got.dtype, want_dtype)
    assert got.shape == np.shape(g)
    want = ref_chunk_cumsum(g, chunk_size, reverse, scale, cu_seqlens, head_first)
    want_abs = ref_chunk_cumsum(np.abs(np.asarray(g, np.float64)), chunk_size, reverse,
                                None if scale is None else abs(scale), cu_seqlens, head_first)
    in_dtype = np.asarray(g).dtype
    acc = np.promote_types(np.promote_types(in_dtype, want_dtype), np.float32)
    T = np.shape(g)[2 if head_first else 1]
    n = T if chunk_size is None else min(chunk_size, T)
    eps_acc = np.finfo(acc).eps
    eps_out = np.finfo(want_dtype).eps
    tol = n * eps_acc * want_abs + eps_out * np.abs(want) + np.finfo(want_dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    bad = ~(err <= tol)
    assert not bad.any(), (
        f"{int(bad.sum())} of {err.size} entries off; worst at "
        f"{np.unravel_index(np.argmax(np.where(bad, err - tol, -1)), err.shape)}: "
        f"max err {err[bad].max():.3g}")


def _layout(rng, shape_btHS, head_first, dtype=np.float64):
    """A random input in [B,T,H(,S)] order, transposed to [B,H,T(,S)] if head_first."""
    g = rng.standard_normal(shape_btHS)
    if head_first:
        g = np.ascontiguousarray(np.swapaxes(g, 1, 2))
    return g.astype(dtype)


# --------------------------------------------------------------------------
# dense shapes
# --------------------------------------------------------------------------

DENSE = [
    ((1, 63, 1), 16),
    ((1, 63, 1), 64),
    ((2, 500, 4, 60), 32),
    ((2, 500, 4), 7),
    ((2, 1000, 5, 128), 64),
    ((3, 100, 3, 5), 1),
    ((2, 37, 3), 128),       # chunk larger than T
    ((1, 64, 2, 3), 64),     # exactly one chunk
    ((2, 130, 2, 4), 16),
]


@pytest.mark.parametrize("shape,chunk", DENSE)
@pytest.mark.parametrize("head_first", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_local_dense(shape, chunk, head_first, reverse):
    rng = np.random.default_rng([*shape, chunk])
    g = _layout(rng, shape, head_first)
    y = sa.chunk_local_cumsum(g, chunk, reverse=reverse, head_first=head_first)
    _check(y, g, np.float64, chunk, reverse, None, None, head_first)


@pytest.mark.parametrize("shape", [(1, 63, 1), (2, 500, 4, 60), (2, 257, 3)])
@pytest.mark.parametrize("head_first", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_global_dense(shape, head_first, reverse):
    rng = np.random.default_rng(len(shape) * 1000 + shape[1])
    g = _layout(rng, shape, head_first)
    y = sa.chunk_global_cumsum(g, reverse=reverse, head_first=head_first)
    _check(y, g, np.float64, None, reverse, None, None, head_first)


@pytest.mark.parametrize("kind,shape,chunk", [
    ("local", (3, 1024, 6, 500), 128),   # big linear-attention shapes, used sparingly
    ("local", (4, 2048, 8, 64), 16),
])
def test_big_shapes_float32(kind, shape, chunk):
    rng = np.random.default_rng(7)
    g = rng.standard_normal(shape, dtype=np.float32)
    y = _run(kind, g, chunk, reverse=True, scale=0.25)
    _check(y, g, np.float32, chunk, True, 0.25)


# --------------------------------------------------------------------------
# varlen
# --------------------------------------------------------------------------

VARLEN = [
    [0, 15],
    [0, 256, 500, 1000],
    [0, 15, 100, 300, 1200, 2000],
    [0, 1, 100, 300, 1200, 2048],
    [0, 0, 15, 15, 15, 100, 100],          # empty segments, first and inside
    [0, 40, 40, 77, 77],                   # empty segments at the end
]


@pytest.mark.parametrize("cu", VARLEN)
@pytest.mark.parametrize("chunk", [16, 64, 7])
@pytest.mark.parametrize("head_first", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_local_varlen(cu, chunk, head_first, reverse):
    T = cu[-1]
    rng = np.random.default_rng(T + chunk)
    g = _layout(rng, (1, T, 3, 4), head_first)
    y = sa.chunk_local_cumsum(g, chunk, reverse=reverse, cu_seqlens=np.array(cu),
                              head_first=head_first)
    _check(y, g, np.float64, chunk, reverse, None, cu, head_first)


@pytest.mark.parametrize("cu", VARLEN)
@pytest.mark.parametrize("head_first", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_global_varlen(cu, head_first, reverse):
    T = cu[-1]
    rng = np.random.default_rng(T)
    g = _layout(rng, (1, T, 2), head_first)
    y = sa.chunk_global_cumsum(g, reverse=reverse, cu_seqlens=cu, head_first=head_first)
    _check(y, g, np.float64, None, reverse, None, cu, head_first)


def test_chunk_boundaries_count_from_sequence_start():
    # ones: position p of a sequence starting at bos lies in chunk (p - bos) // C,
    # so the forward local cumsum is (p - bos) % C + 1 -- not p % C + 1
    cu = [0, 5, 13, 13, 20]
    g = np.ones((1, 20, 1))
    y = sa.chunk_local_cumsum(g, 4, cu_seqlens=cu)[0, :, 0]
    want = np.concatenate([np.arange(5) % 4 + 1, np.arange(8) % 4 + 1, np.arange(7) % 4 + 1])
    np.testing.assert_array_equal(y, want)
    yr = sa.chunk_local_cumsum(g, 4, cu_seqlens=cu, reverse=True)[0, :, 0]
    # suffix counts within each chunk: [4,3,2,1,1 | 4,3,2,1,4,3,2,1 | 4,3,2,1,3,2,1]
    want_r = np.array([4, 3, 2, 1, 1, 4, 3, 2, 1, 4, 3, 2, 1, 4, 3, 2, 1, 3, 2, 1.0])
    np.testing.assert_array_equal(yr, want_r)


def test_cu_seqlens_types():
    # cu_seqlens may come as a list, a tuple, int32/int64/uint64 arrays or a torch tensor
    rng = np.random.default_rng(3)
    cu = [0, 10, 10, 33, 50]
    g = rng.standard_normal((1, 50, 2))
    want = sa.chunk_local_cumsum(g, 8, cu_seqlens=np.array(cu, np.int64))
    _check(want, g, np.float64, 8, False, None, cu)
    variants = [list(cu), tuple(cu), np.array(cu, np.int32), np.array(cu, np.uint8)]
    try:
        import torch
        variants.append(torch.tensor(cu))
    except ImportError:  # pragma: no cover
        pass
    for c in variants:
        np.testing.assert_array_equal(sa.chunk_local_cumsum(g, 8, cu_seqlens=c), want)


def test_cu_seqlens_uint64():
    # unsigned 64-bit boundaries are integers too (torch/NumPy users pass them)
    rng = np.random.default_rng(3)
    cu = [0, 10, 10, 33, 50]
    g = rng.standard_normal((1, 50, 2))
    y = sa.chunk_local_cumsum(g, 8, cu_seqlens=np.array(cu, np.uint64))
    _check(y, g, np.float64, 8, False, None, cu)


def test_zero_length():
    for hf in (False, True):
        g = np.zeros((1, 3, 0) if hf else (1, 0, 3), np.float32)
        for cu in (None, [0], [0, 0]):
            y = sa.chunk_local_cumsum(g, 4, cu_seqlens=cu, head_first=hf)
            assert y.shape == g.shape and y.dtype == np.float32
            y = sa.chunk_global_cumsum(g, cu_seqlens=cu, head_first=hf, reverse=True)
            assert y.shape == g.shape and y.dtype == np.float32


def test_non_contiguous_input():
    rng = np.random.default_rng(11)
    base = rng.standard_normal((2, 3, 90, 4))
    views = [
        base[:, :, ::-1],                       # negative stride on time
        np.swapaxes(base, 1, 2)[:, ::2],        # [B, T, H, S] view, strided time
        base[..., ::2],                         # strided S
        np.transpose(base, (0, 2, 3, 1)),       # [B, T, S, H] as [B,T,H,S]
    ]
    for hf, v in [(True, views[0]), (False, views[1]), (True, views[2]), (False, views[3])]:
        for rev in (False, True):
            y = sa.chunk_local_cumsum(v, 16, reverse=rev, head_first=hf)
            _check(y, v, np.float64, 16, rev, None, None, hf)
            y = sa.chunk_global_cumsum(v, reverse=rev, head_first=hf)
            _check(y, v, np.float64, None, rev, None, None, hf)


# --------------------------------------------------------------------------
# scale, softmax_scale, output_dtype, float16
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["local", "global"])
@pytest.mark.parametrize("head_first", [False, True])
def test_scale_and_alias(kind, head_first):
    rng = np.random.default_rng(5)
    cu = [0, 15, 100, 130]
    g = _layout(rng, (1, 130, 3, 4), head_first)
    for scale in (0.5, -3.0, 1e-3, 0.0):
        for rev in (False, True):
            y = _run(kind, g, 16, reverse=rev, scale=scale, cu_seqlens=cu, head_first=head_first)
            _check(y, g, np.float64, 16 if kind == "local" else None, rev, scale, cu, head_first)
            y2 = _run(kind, g, 16, reverse=rev, softmax_scale=scale, cu_seqlens=cu,
                      head_first=head_first)
            np.testing.assert_array_equal(y2, y)
    with pytest.raises(TypeError, match="softmax_scale"):
        _run(kind, g, 16, scale=0.5, softmax_scale=0.5, head_first=head_first)
    with pytest.raises(TypeError, match="softmax_scale"):
        _run(kind, g, 16, scale=0.5, softmax_scale=0.25, head_first=head_first)


def test_scale_applied_after_sum():
    # fla multiplies the accumulated sum once: with scale=1/3 the result is
    # round(S * (1/3)), not sum(round(x_i / 3)); pick float64 integers so S is exact
    g = np.arange(1, 65, dtype=np.float64).reshape(1, 64, 1)
    s = 1.0 / 3.0
    y = sa.chunk_local_cumsum(g, 64, scale=s)[0, :, 0]
    S = np.cumsum(np.arange(1, 65, dtype=np.float64))
    np.testing.assert_array_equal(y, S * s)


@pytest.mark.parametrize("in_dtype", FLOATS)
@pytest.mark.parametrize("out_dtype", [None, *FLOATS])
@pytest.mark.parametrize("kind", ["local", "global"])
def test_output_dtype(in_dtype, out_dtype, kind):
    rng = np.random.default_rng(9)
    cu = [0, 33, 33, 200]
    g = rng.standard_normal((1, 200, 3)).astype(in_dtype)
    y = _run(kind, g, 32, reverse=True, scale=0.5, cu_seqlens=cu, output_dtype=out_dtype)
    want = in_dtype if out_dtype is None else out_dtype   # default: the input dtype
    _check(y, g, want, 32 if kind == "local" else None, True, 0.5, cu)


def test_float16_accumulates_in_float32():
    # ones along 4096 steps: float16 accumulation stalls at 2048 (2048 + 1 rounds
    # to 2048); float32 accumulation gives k exactly, rounded once to float16 on
    # output (ties-to-even above 2048, where float16's spacing is 2).
    g = np.ones((1, 4096, 1), np.float16)
    k = np.arange(1, 4097, dtype=np.float64)
    y = sa.chunk_global_cumsum(g)[0, :, 0]
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, k.astype(np.float16))
    y = sa.chunk_global_cumsum(g, output_dtype=np.float32)[0, :, 0]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, k.astype(np.float32))
    y = sa.chunk_local_cumsum(g, 3000, reverse=True, output_dtype=np.float32)[0, :, 0]
    np.testing.assert_array_equal(y[:3000], np.arange(3000, 0, -1, dtype=np.float32))
    np.testing.assert_array_equal(y[3000:], np.arange(1096, 0, -1, dtype=np.float32))


@pytest.mark.parametrize("head_first", [False, True])
def test_float16_random(head_first):
    rng = np.random.default_rng(13)
    cu = [0, 1, 100, 300, 1200, 2048]
    g = _layout(rng, (1, 2048, 2, 3), head_first, np.float16)
    for rev in (False, True):
        y = sa.chunk_local_cumsum(g, 64, reverse=rev, cu_seqlens=cu, head_first=head_first)
        _check(y, g, np.float16, 64, rev, None, cu, head_first)
        y = sa.chunk_global_cumsum(g, reverse=rev, cu_seqlens=cu, head_first=head_first,
                                   scale=0.125)
        _check(y, g, np.float16, None, rev, 0.125, cu, head_first)


# --------------------------------------------------------------------------
# exactness of the native suffix scan (docs/semantics.md)
# --------------------------------------------------------------------------

def _big_then_ones(big, dtype):
    return np.array([big] * 32 + [1.0] * 32, dtype=dtype).reshape(1, 64, 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reverse_local_exact_tail(dtype):
    # reverse, one chunk of 64: the tail's suffix sums involve only the ones,
    # so a native suffix scan gives exactly 32, 31, ..., 1 (total-minus-prefix
    # would not).  1e8 is exact in float32 (390625 * 2**8), but 1e8 + 1 is not
    # (float32 spacing at 1e8 is 8); scanad accumulates float32 in float64
    # and rounds once per output, so the head holds the correctly rounded sums.
    g = _big_then_ones(1e8, dtype)
    y = sa.chunk_local_cumsum(g, 64, reverse=True)[0, :, 0]
    assert y.dtype == dtype
    np.testing.assert_array_equal(y[32:], np.arange(32, 0, -1, dtype=dtype))
    exact_head = 1e8 * np.arange(32, 0, -1, dtype=np.float64) + 32.0   # exact in float64
    np.testing.assert_array_equal(y[:32], exact_head.astype(dtype))


def test_reverse_local_exact_tail_beyond_float64():
    # the same in float64 with 1e17, where 1e17 + 1 is not representable:
    # this distinguishes a suffix scan from total-minus-prefix in float64 too
    g = _big_then_ones(1e17, np.float64)
    y = sa.chunk_local_cumsum(g, 64, reverse=True)[0, :, 0]
    np.testing.assert_array_equal(y[32:], np.arange(32, 0, -1, dtype=np.float64))
    y = sa.chunk_global_cumsum(g, reverse=True)[0, :, 0]
    np.testing.assert_array_equal(y[32:], np.arange(32, 0, -1, dtype=np.float64))
    # forward within chunks of 32: the second chunk restarts at 0 -> exactly 1..32
    y = sa.chunk_local_cumsum(g, 32)[0, :, 0]
    np.testing.assert_array_equal(y[32:], np.arange(1, 33, dtype=np.float64))


@pytest.mark.parametrize("big,dtype", [(1e8, np.float64), (1e8, np.float32),
                                       (1e17, np.float64)])
@pytest.mark.parametrize("head_first", [False, True])
def test_global_varlen_exact_second_sequence(big, dtype, head_first):
    g = _big_then_ones(big, dtype)
    if head_first:
        g = np.ascontiguousarray(np.swapaxes(g, 1, 2))
    y = sa.chunk_global_cumsum(g, cu_seqlens=[0, 32, 64], head_first=head_first)
    y = y[0, 0, :] if head_first else y[0, :, 0]
    np.testing.assert_array_equal(y[32:], np.arange(1, 33, dtype=dtype))
    np.testing.assert_array_equal(
        y[:32], (big * np.arange(1, 33, dtype=np.float64)).astype(dtype))
    # and the mirror image, reversed: the first sequence gets exactly 32..1
    g2 = np.ascontiguousarray(g[:, :, ::-1] if head_first else g[:, ::-1])
    y2 = sa.chunk_global_cumsum(g2, cu_seqlens=[0, 32, 64], reverse=True,
                                head_first=head_first)
    y2 = y2[0, 0, :] if head_first else y2[0, :, 0]
    np.testing.assert_array_equal(y2[:32], np.arange(32, 0, -1, dtype=dtype))


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------

BAD_CU = [
    ([[0, 40]], "not 1-D"),
    (np.array([0.0, 40.0]), "float dtype"),
    ([1, 40], "not starting at 0"),
    ([0, 30, 20, 40], "decreasing"),
    ([0, 39], "not ending at T"),
    ([0, 41], "past T"),
    ([0, 2**62, 40], "huge"),
    ([0, -5, 40], "negative"),
    ([0, 2**63 - 1], "int64 max"),
    ([-(2**63), 40], "int64 min"),
    (np.array([0, 2**64 - 1, 40], np.uint64), "uint64 max"),
    ([0, 2**70, 40], "beyond int64"),
    ([0], "ends at 0"),
    ([], "empty"),
    ("0,40", "string"),
]


@pytest.mark.parametrize("cu,why", BAD_CU, ids=[w for _, w in BAD_CU])
@pytest.mark.parametrize("kind", ["local", "global"])
@pytest.mark.parametrize("head_first", [False, True])
def test_bad_cu_seqlens(cu, why, kind, head_first):
    g = np.ones((1, 3, 40) if head_first else (1, 40, 3))
    with pytest.raises((ValueError, TypeError), match="cu_seqlens"):
        _run(kind, g, 8, cu_seqlens=cu, head_first=head_first)


def test_bad_cu_seqlens_kinds():
    g = np.ones((1, 40, 3))
    with pytest.raises(TypeError, match="^chunk_local_cumsum: cu_seqlens"):
        sa.chunk_local_cumsum(g, 8, cu_seqlens=np.array([0.0, 40.0]))
    for cu in ([[0, 40]], [1, 40], [0, 30, 20, 40], [0, 39], [0, 2**62, 40], [0, -5, 40], []):
        with pytest.raises(ValueError, match="^chunk_local_cumsum: cu_seqlens"):
            sa.chunk_local_cumsum(g, 8, cu_seqlens=cu)
        with pytest.raises(ValueError, match="^chunk_global_cumsum: cu_seqlens"):
            sa.chunk_global_cumsum(g, cu_seqlens=cu)


def test_binding_reports_the_name_it_is_given():
    from scanad import _scanad
    from scanad._ops import SUM as sum_op

    x = np.ones(4)
    for name, prefix in ((None, "cumsum"), ("chunk_local_cumsum", "chunk_local_cumsum")):
        with pytest.raises(ValueError, match=f"^{prefix}: axis 3 is out of bounds"):
            _scanad.scan(sum_op, x, 3, False, True, None, None, None, None, False, name)
    with pytest.raises(TypeError, match="name must be a str or None"):
        _scanad.scan(sum_op, x, 0, False, True, None, None, None, None, False, 5)
    with pytest.raises(TypeError, match="10 or 11 positional arguments"):
        _scanad.scan(sum_op, x, 0, False, True, None, None, None, None)


@pytest.mark.parametrize("kind", ["local", "global"])
@pytest.mark.parametrize("head_first", [False, True])
def test_cu_seqlens_needs_batch_one(kind, head_first):
    g = np.ones((2, 3, 40) if head_first else (2, 40, 3))
    with pytest.raises(ValueError, match="cu_seqlens"):
        _run(kind, g, 8, cu_seqlens=[0, 40], head_first=head_first)
    with pytest.raises(ValueError, match="cu_seqlens"):
        _run(kind, g, 8, cu_seqlens=[0, 80], head_first=head_first)


def test_head_first_cu_seqlens_uses_time_axis():
    # with head_first=True the time axis is 2: cu_seqlens must end at shape[2]
    g = np.ones((1, 5, 40))
    sa.chunk_local_cumsum(g, 8, cu_seqlens=[0, 40], head_first=True)
    with pytest.raises(ValueError, match="cu_seqlens"):
        sa.chunk_local_cumsum(g, 8, cu_seqlens=[0, 5], head_first=True)
    with pytest.raises(ValueError, match="cu_seqlens"):
        sa.chunk_local_cumsum(g, 8, cu_seqlens=[0, 40], head_first=False)


@pytest.mark.parametrize("chunk", [0, -1, -64])
def test_chunk_size_nonpositive(chunk):
    with pytest.raises(ValueError, match="chunk_size"):
        sa.chunk_local_cumsum(np.ones((1, 8, 2)), chunk)


@pytest.mark.parametrize("chunk", [2.5, 4.0, "4", None, True, [4], np.float64(4.0)])
def test_chunk_size_not_integer(chunk):
    with pytest.raises(TypeError, match="chunk_size"):
        sa.chunk_local_cumsum(np.ones((1, 8, 2)), chunk)


def test_chunk_size_numpy_integer():
    g = np.arange(8.0).reshape(1, 8, 1)
    for c in (np.int32(3), np.int64(3), np.uint8(3)):
        np.testing.assert_array_equal(sa.chunk_local_cumsum(g, c), sa.chunk_local_cumsum(g, 3))


# Run in a child interpreter: an overflow in the restart table (sequence start
# + chunk_size past INT64_MAX) can corrupt the heap and abort the process,
# which must show up as this test failing, not as the whole run dying.
_HUGE_CHUNK_SCRIPT = """
import numpy as np, scanad as sa
g = np.arange(8.0).reshape(1, 8, 1)
for c in (2**31, 2**32 + 1, 2**62, 2**63 - 8, 2**63 - 2, 2**63 - 1):
    for cu in (None, [0, 8], [0, 3, 8], [0, 3, 3, 7, 8]):
        for rev in (False, True):
            got = sa.chunk_local_cumsum(g, c, cu_seqlens=cu, reverse=rev)
            want = sa.chunk_global_cumsum(g, cu_seqlens=cu, reverse=rev)
            assert np.array_equal(got, want), (c, cu, rev, got.ravel(), want.ravel())
print("ok")
"""


def _run_isolated(script):
    import os
    import subprocess
    import sys
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)


def test_chunk_size_huge_is_one_chunk_per_sequence():
    # a chunk longer than every sequence is one chunk per sequence: no overflow
    r = _run_isolated(_HUGE_CHUNK_SCRIPT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (
        f"exit {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-2000:]}")


BAD_RANKS = [(8,), (1, 8), (1, 8, 2, 3, 4), ()]


@pytest.mark.parametrize("shape", BAD_RANKS)
@pytest.mark.parametrize("head_first", [False, True])
def test_bad_rank_local(shape, head_first):
    with pytest.raises(ValueError, match=r"\bg\b"):
        sa.chunk_local_cumsum(np.ones(shape), 4, head_first=head_first)


@pytest.mark.parametrize("shape", BAD_RANKS)
@pytest.mark.parametrize("head_first", [False, True])
def test_bad_rank_global(shape, head_first):
    with pytest.raises(ValueError, match="dimension|layout|rank"):
        sa.chunk_global_cumsum(np.ones(shape), head_first=head_first)


@pytest.mark.parametrize("head_first", [False, True])
def test_bad_rank_global_names_its_argument(head_first):
    # docs/semantics.md, "Bad input": the message names the argument; chunk_global_cumsum's is ``s``
    with pytest.raises(ValueError, match=r"\bs\b"):
        sa.chunk_global_cumsum(np.ones((1, 8)), head_first=head_first)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex128, object])
def test_bad_input_dtype(dtype):
    g = np.ones((1, 8, 2), dtype=dtype)
    with pytest.raises(TypeError, match=r"\bg\b"):
        sa.chunk_local_cumsum(g, 4)
    with pytest.raises(TypeError):
        sa.chunk_global_cumsum(g)


def test_bad_output_dtype_and_kwargs():
    g = np.ones((1, 8, 2))
    for od in (np.int64, np.complex128):
        with pytest.raises(TypeError, match="output_dtype"):
            sa.chunk_local_cumsum(g, 4, output_dtype=od)
        with pytest.raises(TypeError, match="output_dtype"):
            sa.chunk_global_cumsum(g, output_dtype=od)
    with pytest.raises(TypeError, match="bogus"):
        sa.chunk_local_cumsum(g, 4, bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        sa.chunk_global_cumsum(g, bogus=1)


# --------------------------------------------------------------------------
# derivatives
# --------------------------------------------------------------------------

DERIV_CASES = [
    # (kind, shape [B,T,H(,S)], chunk, cu_seqlens, head_first, reverse, scale)
    ("local", (1, 50, 3), 16, [0, 7, 7, 30, 50], False, True, 0.5),
    ("local", (1, 50, 2, 3), 7, [0, 0, 13, 50], True, False, None),
    ("local", (2, 33, 2), 8, None, False, False, -2.0),
    ("local", (2, 33, 2, 2), 64, None, True, True, None),
    ("global", (1, 50, 3), None, [0, 7, 7, 30, 50], False, True, 0.5),
    ("global", (1, 50, 2, 3), None, [0, 50], True, False, 3.0),
    ("global", (2, 21, 3), None, None, False, False, None),
]


def _kw(kind, chunk, cu, hf, rev, scale):
    kw = dict(reverse=rev, cu_seqlens=cu, head_first=hf, scale=scale)
    if kind == "local":
        kw["chunk_size"] = chunk
    return kw


def _op(kind):
    return sa.chunk_local_cumsum if kind == "local" else sa.chunk_global_cumsum


@pytest.mark.parametrize("case", DERIV_CASES)
def test_vjp_is_flipped_op(case):
    kind, shape, chunk, cu, hf, rev, scale = case
    rng = np.random.default_rng(21)
    x = _layout(rng, shape, hf)
    g = _layout(rng, shape, hf)
    kw = _kw(kind, chunk, cu, hf, rev, scale)
    y, pullback = sa.vjp(_op(kind), x, **kw)
    _check(y, x, np.float64, chunk, rev, scale, cu, hf)
    xb = pullback(g)
    assert xb.shape == x.shape and xb.dtype == x.dtype
    # the transpose of a scaled segmented cumsum is the same op reversed
    _check(xb, g, np.float64, chunk, not rev, scale, cu, hf)
    flipped = {**kw, "reverse": not rev}
    np.testing.assert_allclose(xb, _op(kind)(g, **flipped), rtol=1e-13, atol=1e-13)
    # by name too
    _, pb2 = sa.vjp(_op(kind).__name__, x, **kw)
    np.testing.assert_array_equal(pb2(g), xb)


@pytest.mark.parametrize("case", DERIV_CASES)
def test_jvp_and_adjoint(case):
    kind, shape, chunk, cu, hf, rev, scale = case
    rng = np.random.default_rng(22)
    x = _layout(rng, shape, hf)
    t = _layout(rng, shape, hf)
    g = _layout(rng, shape, hf)
    kw = _kw(kind, chunk, cu, hf, rev, scale)
    y, ydot = sa.jvp(_op(kind), x, t, **kw)
    _check(y, x, np.float64, chunk, rev, scale, cu, hf)
    _check(ydot, t, np.float64, chunk, rev, scale, cu, hf)   # linear: J t = op(t)
    _, pullback = sa.vjp(_op(kind), x, **kw)
    lhs = np.vdot(g, ydot)
    rhs = np.vdot(pullback(g), t)
    # both sides are sums of ~size products of O(1)*O(T) terms in float64
    mag = np.linalg.norm(g) * np.linalg.norm(ydot) + np.linalg.norm(pullback(g)) * np.linalg.norm(t)
    assert abs(lhs - rhs) <= 1e-12 * mag


@pytest.mark.parametrize("case", DERIV_CASES)
def test_check_grads(case):
    kind, shape, chunk, cu, hf, rev, scale = case
    rng = np.random.default_rng(23)
    x = _layout(rng, shape, hf)
    sa.check_grads(_op(kind), x, **_kw(kind, chunk, cu, hf, rev, scale))


@pytest.mark.parametrize("kind", ["local", "global"])
def test_derivatives_of_a_wider_output_dtype(kind):
    # float16 x, float32 output: the tangent is a float32 result like y, and a
    # float32 cotangent is summed as it is, rounded to float16 once.  The
    # values 1 + k/4096 are exact in float32 but not in float16 (11 bits), so
    # rounding each cotangent first would give other sums.
    T = 64
    k = np.arange(T, dtype=np.float64)
    x = np.ones((1, T, 1), np.float16)
    g = (1 + k / 4096).astype(np.float32).reshape(1, T, 1)
    kw = dict(output_dtype=np.float32, reverse=False)
    if kind == "local":
        kw["chunk_size"] = 16
    y, y_dot = sa.jvp(_op(kind), x, x, **kw)
    assert y.dtype == y_dot.dtype == np.float32
    _, pullback = sa.vjp(_op(kind), x, **kw)
    x_bar = pullback(g)
    assert x_bar.dtype == np.float16
    want = _op(kind)(g.astype(np.float64), **{**kw, "reverse": True, "output_dtype": None})
    np.testing.assert_array_equal(x_bar, want.astype(np.float16))


def test_derivatives_softmax_scale_and_float32():
    rng = np.random.default_rng(24)
    x = rng.standard_normal((1, 40, 3)).astype(np.float32)
    g = rng.standard_normal((1, 40, 3)).astype(np.float32)
    cu = [0, 9, 9, 40]
    y, pb = sa.vjp(sa.chunk_local_cumsum, x, chunk_size=8, cu_seqlens=cu, softmax_scale=0.5)
    xb = pb(g)
    assert xb.dtype == np.float32
    _check(xb, g, np.float32, 8, True, 0.5, cu)
    sa.check_grads(sa.chunk_local_cumsum, x, chunk_size=8, cu_seqlens=cu, softmax_scale=0.5)
    sa.check_grads(sa.chunk_global_cumsum, x, cu_seqlens=cu, reverse=True, scale=2.0)
    with pytest.raises(TypeError):
        sa.vjp(sa.chunk_local_cumsum, x, chunk_size=8, scale=0.5, softmax_scale=0.5)


def test_derivative_shape_mismatch():
    x = np.ones((1, 10, 2))
    with pytest.raises(ValueError):
        sa.jvp(sa.chunk_local_cumsum, x, np.ones((1, 9, 2)), chunk_size=4)


def test_derivative_bad_cu_seqlens():
    x = np.ones((1, 10, 2))
    with pytest.raises(ValueError, match="cu_seqlens"):
        sa.vjp(sa.chunk_local_cumsum, x, chunk_size=4, cu_seqlens=[0, 2**62, 10])
    with pytest.raises(ValueError, match="cu_seqlens"):
        sa.jvp(sa.chunk_global_cumsum, x, x, cu_seqlens=[0, 11])


# --------------------------------------------------------------------------
# cross-checks with flash-linear-attention / ejkernel when importable
# --------------------------------------------------------------------------

def test_cross_check_fla():
    try:
        import torch
        from fla.ops.utils.cumsum import chunk_global_cumsum as fla_global
        from fla.ops.utils.cumsum import chunk_local_cumsum as fla_local
    except Exception as e:  # not installed (or needs a GPU): skip, never a dependency
        pytest.skip(f"flash-linear-attention not importable: {e}")
    rng = np.random.default_rng(31)
    cu = [0, 15, 100, 300]
    g = rng.standard_normal((1, 300, 4)).astype(np.float32)
    try:
        gt = torch.from_numpy(g)
        cut = torch.tensor(cu, dtype=torch.long)
        want_l = fla_local(gt, 64, reverse=True, cu_seqlens=cut).float().cpu().numpy()
        want_g = fla_global(gt, cu_seqlens=cut).float().cpu().numpy()
    except Exception as e:
        pytest.skip(f"flash-linear-attention cannot run here: {e}")
    np.testing.assert_allclose(sa.chunk_local_cumsum(g, 64, reverse=True, cu_seqlens=cu),
                               want_l, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sa.chunk_global_cumsum(g, cu_seqlens=cu), want_g,
                               rtol=1e-5, atol=1e-4)


def test_cross_check_ejkernel():
    try:
        from ejkernel.xla_utils import cumsum as ej
    except Exception as e:
        pytest.skip(f"ejkernel not importable: {e}")
    rng = np.random.default_rng(32)
    cu = np.array([0, 15, 100, 300], np.int32)
    g = rng.standard_normal((1, 300, 4)).astype(np.float32)
    try:
        want_l = np.asarray(ej.chunk_local_cumsum(g, 64, reverse=True, cu_seqlens=cu))
        want_g = np.asarray(ej.chunk_global_cumsum(g, cu_seqlens=cu))
    except Exception as e:
        pytest.skip(f"ejkernel cannot run here: {e}")
    np.testing.assert_allclose(sa.chunk_local_cumsum(g, 64, reverse=True, cu_seqlens=cu),
                               want_l, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sa.chunk_global_cumsum(g, cu_seqlens=cu), want_g,
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("fn", ["chunk_local_cumsum", "chunk_global_cumsum"])
@pytest.mark.parametrize("dtype, output_dtype", [("float32", None), ("float16", None),
                                                 ("float16", "float32"), ("float64", "float32")])
def test_chunk_out_matches_the_allocating_call(fn, dtype, output_dtype):
    rng = np.random.default_rng(7)
    g = rng.standard_normal((1, 100, 3, 5)).astype(dtype)
    cu = np.array([0, 30, 30, 100])
    f = getattr(sa, fn)
    args = (g, 16) if fn == "chunk_local_cumsum" else (g,)
    want = f(*args, reverse=True, cu_seqlens=cu, scale=0.5, output_dtype=output_dtype)
    out = np.full(g.shape, np.nan, want.dtype)
    got = f(*args, reverse=True, cu_seqlens=cu, scale=0.5, output_dtype=output_dtype, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)
    if output_dtype is None:  # in place
        inplace = g.copy()
        f(*((inplace,) + args[1:]), reverse=True, cu_seqlens=cu, scale=0.5, out=inplace)
        np.testing.assert_array_equal(inplace, want)
    with pytest.raises(ValueError, match="out must have shape"):
        f(*args, out=np.empty(g.shape[:-1], want.dtype), output_dtype=output_dtype)
    with pytest.raises(ValueError, match="out must have shape"):
        f(*args, out=np.empty(g.shape, np.complex128), output_dtype=output_dtype)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        f(*args, out=[0.0], output_dtype=output_dtype)


def _other_order(a):
    return a.astype(a.dtype.newbyteorder("S"))


@pytest.mark.quick
@pytest.mark.parametrize("fn", ["chunk_local_cumsum", "chunk_global_cumsum"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_chunk_foreign_byte_order_in_and_out(fn, dtype):
    """g, out= or output_dtype in the other byte order: the native call's values,
    and an allocated result in native byte order, as the scans give."""
    from scanad import _reference as reference

    rng = np.random.default_rng(11)
    g = rng.standard_normal((1, 40, 2, 3)).astype(dtype)
    ct = rng.standard_normal(g.shape).astype(dtype)
    f = getattr(sa, fn)
    kw = dict(reverse=True, cu_seqlens=[0, 7, 40], scale=0.5)
    if fn == "chunk_local_cumsum":
        kw["chunk_size"] = 16
    want = f(g, **kw)
    got = f(_other_order(g), **kw)
    assert got.dtype == want.dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, want)
    assert getattr(reference, fn)(_other_order(g), **kw).dtype == want.dtype
    for out_dtype in (want.dtype, want.dtype.newbyteorder("S")):
        out = np.full(g.shape, np.nan, out_dtype)
        assert f(_other_order(g), **kw, out=out) is out
        np.testing.assert_array_equal(out, want)
    other = want.dtype.newbyteorder("S")
    assert f(g, **kw, output_dtype=other).dtype == want.dtype
    assert getattr(reference, fn)(g, **kw, output_dtype=other).dtype == want.dtype
    _, pullback = sa.vjp(f, g, **kw)
    _, foreign_pullback = sa.vjp(f, _other_order(g), **kw)
    x_bar = foreign_pullback(_other_order(ct))
    assert x_bar.dtype.isnative
    np.testing.assert_array_equal(x_bar, pullback(ct))
    np.testing.assert_array_equal(sa.jvp(f, _other_order(g), _other_order(ct), **kw)[1],
                                  sa.jvp(f, g, ct, **kw)[1])
