"""A plain NumPy implementation of every scanad op: the oracle of the tests.

Slow and obviously right: NumPy's own cumsum/cumprod in a wide dtype, flips
for ``reverse``, a shift for ``inclusive=False``, explicit loops over the
pieces of a segmented scan, and running loops over the scan axis where NumPy
has no primitive (the owner rule of cummax/cummin, complex logcumsumexp).
It follows docs/semantics.md; ``jacobian`` builds dense Jacobians from the
definitions for the derivative tests (docs/derivatives.md).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np

__all__ = [
    "chunk_global_cumsum",
    "chunk_local_cumsum",
    "cummax",
    "cummin",
    "cumprod",
    "cumsum",
    "jacobian",
    "linear_scan",
    "logcumsumexp",
]

Pieces = List[Tuple[int, int]]


# --------------------------------------------------------------------- helpers
def _axis(x: np.ndarray, axis: Optional[int]) -> Tuple[np.ndarray, int]:
    x = np.asarray(x)
    if not x.dtype.isnative:  # results are in native byte order, as scanad's are
        x = x.astype(x.dtype.newbyteorder("="))
    if axis is None or x.ndim == 0:
        return x.reshape(-1), 0
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of bounds for array of dimension {x.ndim}")
    return x, axis % x.ndim


def _pieces(n: int, cu_seqlens: Any, chunk_size: Optional[int]) -> Pieces:
    """The [start, stop) pieces a segmented scan restarts on."""
    bounds = [0, n] if cu_seqlens is None else [int(v) for v in np.asarray(cu_seqlens)]
    out: Pieces = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if chunk_size is None:
            out.append((a, b))
        else:
            for c in range(a, b, int(chunk_size)):
                out.append((c, min(b, c + int(chunk_size))))
    return out


def _apply(x: np.ndarray, axis: int, out_dtype: Any, cu_seqlens: Any, chunk_size: Optional[int],
           piece_fn: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """Runs piece_fn(piece with the scan axis last, offset) on every piece."""
    xm = np.moveaxis(x, axis, -1)
    out = np.empty(xm.shape, dtype=out_dtype)
    for a, b in _pieces(xm.shape[-1], cu_seqlens, chunk_size):
        if b > a:
            out[..., a:b] = piece_fn(xm[..., a:b], a)
    return np.moveaxis(out, -1, axis)


def _directed(piece: np.ndarray, reverse: bool, inclusive: bool, identity: Any,
              inclusive_scan: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """reverse by flipping, exclusive by shifting one step with the identity."""
    z = piece[..., ::-1] if reverse else piece
    y = inclusive_scan(z)
    if not inclusive:
        first = np.full(y.shape[:-1] + (1,), identity, dtype=y.dtype)
        y = np.concatenate([first, y[..., :-1]], axis=-1)
    return y[..., ::-1] if reverse else y


def _accumulate_dtype(x: np.ndarray, dtype: Any) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    if x.dtype.kind == "b" or (x.dtype.kind == "i" and x.dtype.itemsize < 8):
        return np.dtype(np.int64)
    if x.dtype.kind == "u" and x.dtype.itemsize < 8:
        return np.dtype(np.uint64)
    return x.dtype


def _wide(dtype: np.dtype) -> np.dtype:
    """float16 sums in float32, float32 in float64, complex64 in complex128."""
    return np.dtype({np.dtype(np.float16): np.float32, np.dtype(np.float32): np.float64,
                     np.dtype(np.complex64): np.complex128}.get(dtype, dtype))


def _check_numeric(x: np.ndarray, name: str) -> None:
    if x.dtype.kind not in "biufc":
        raise TypeError(f"{name}: x must be a numeric array; got dtype {x.dtype}")


# ------------------------------------------------------------------ sum, prod
def _sum_prod(name: str, x: Any, axis: Optional[int], reverse: bool, inclusive: bool,
              dtype: Any, cu_seqlens: Any, chunk_size: Optional[int]) -> np.ndarray:
    x, ax = _axis(np.asarray(x), axis)
    _check_numeric(x, name)
    res = _accumulate_dtype(x, dtype)
    wide = _wide(res)
    xc = x.astype(res)  # dtype= casts first (integers then wrap in res)
    scan = np.cumsum if name == "cumsum" else np.cumprod
    identity = 0 if name == "cumsum" else 1

    def piece(p: np.ndarray, _: int) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            y = _directed(p, reverse, inclusive, identity,
                          lambda z: scan(z, axis=-1, dtype=wide))
        return y.astype(res)

    with np.errstate(over="ignore", invalid="ignore"):
        return _apply(xc, ax, res, cu_seqlens, chunk_size, piece)


def cumsum(x: Any, axis: Optional[int] = None, *, reverse: bool = False, inclusive: bool = True,
           dtype: Any = None, cu_seqlens: Any = None, chunk_size: Optional[int] = None
           ) -> np.ndarray:
    """Reference cumsum (docs/semantics.md: scan order, dtypes)."""
    return _sum_prod("cumsum", x, axis, reverse, inclusive, dtype, cu_seqlens, chunk_size)


def cumprod(x: Any, axis: Optional[int] = None, *, reverse: bool = False, inclusive: bool = True,
            dtype: Any = None, cu_seqlens: Any = None, chunk_size: Optional[int] = None
            ) -> np.ndarray:
    """Reference cumprod (docs/semantics.md: scan order, dtypes)."""
    return _sum_prod("cumprod", x, axis, reverse, inclusive, dtype, cu_seqlens, chunk_size)


# -------------------------------------------------------------------- max, min
def _extreme_identity(dtype: np.dtype, is_max: bool) -> Any:
    if dtype.kind == "b":
        return not is_max
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.min if is_max else info.max
    return -np.inf if is_max else np.inf


def _owner_scan(x: Any, axis: Optional[int], reverse: bool, inclusive: bool,
                return_indices: bool, cu_seqlens: Any, chunk_size: Optional[int],
                is_max: bool) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    name = "cummax" if is_max else "cummin"
    x, ax = _axis(np.asarray(x), axis)
    _check_numeric(x, name)
    if x.dtype.kind == "c":
        raise TypeError(f"{name}: x must be real; got dtype {x.dtype}")
    identity = _extreme_identity(x.dtype, is_max)
    xm = np.moveaxis(x, ax, -1)
    vals = np.empty(xm.shape, dtype=x.dtype)
    idx = np.empty(xm.shape, dtype=np.int64)
    for a, b in _pieces(xm.shape[-1], cu_seqlens, chunk_size):
        order = range(b - 1, a - 1, -1) if reverse else range(a, b)
        cur = np.full(xm.shape[:-1], identity, dtype=x.dtype)
        own = np.full(xm.shape[:-1], -1, dtype=np.int64)
        for j in order:
            v = xm[..., j]
            if not inclusive:
                vals[..., j], idx[..., j] = cur, own
            # ties go to the latest in scan order; NaN is sticky, each new NaN takes over
            take = (v >= cur) if is_max else (v <= cur)
            if x.dtype.kind == "f":
                take = take | np.isnan(v)
            cur = np.where(take, v, cur)
            own = np.where(take, j, own)
            if inclusive:
                vals[..., j], idx[..., j] = cur, own
    vals = np.moveaxis(vals, -1, ax)
    idx = np.moveaxis(idx, -1, ax)
    return (vals, idx) if return_indices else vals


def cummax(x: Any, axis: Optional[int] = None, *, reverse: bool = False, inclusive: bool = True,
           return_indices: bool = False, cu_seqlens: Any = None,
           chunk_size: Optional[int] = None) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Reference cummax with PyTorch's owner rule (docs/semantics.md, "cummax and cummin")."""
    return _owner_scan(x, axis, reverse, inclusive, return_indices, cu_seqlens, chunk_size, True)


def cummin(x: Any, axis: Optional[int] = None, *, reverse: bool = False, inclusive: bool = True,
           return_indices: bool = False, cu_seqlens: Any = None,
           chunk_size: Optional[int] = None) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Reference cummin with PyTorch's owner rule (docs/semantics.md, "cummax and cummin")."""
    return _owner_scan(x, axis, reverse, inclusive, return_indices, cu_seqlens, chunk_size, False)


# --------------------------------------------------------------- logcumsumexp
def _lse_real(z: np.ndarray) -> np.ndarray:
    """Inclusive logcumsumexp along the last axis in long double."""
    return np.logaddexp.accumulate(z.astype(np.longdouble), axis=-1)


def _lse_complex(z: np.ndarray) -> np.ndarray:
    """log of the running sum of exp(z), scaled by the running max real part."""
    z = z.astype(np.complex128)
    out = np.empty(z.shape, dtype=np.complex128)
    m = np.full(z.shape[:-1], -np.inf)
    s = np.zeros(z.shape[:-1], dtype=np.complex128)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for j in range(z.shape[-1]):
            zr = z[..., j].real
            # exp(-inf + iy) is 0 even for y = +-inf or NaN (C99 Annex G)
            phase = np.where((zr == -np.inf) & ~np.isfinite(z[..., j].imag), 0,
                             np.exp(1j * z[..., j].imag))
            new_m = np.maximum(m, zr)
            grow = zr > m
            old_scale = np.where(grow, np.exp(m - zr), 1.0)
            term = np.where(zr == new_m, phase, np.exp(zr - new_m) * phase)
            s = s * old_scale + term
            m = np.where(grow, zr, m)
            y = m + np.log(s)
            y = np.where(y.imag == -np.pi, y.real + 1j * np.pi, y)
            out[..., j] = y
    return out


def logcumsumexp(x: Any, axis: Optional[int] = None, *, reverse: bool = False,
                 inclusive: bool = True, cu_seqlens: Any = None,
                 chunk_size: Optional[int] = None) -> np.ndarray:
    """Reference logcumsumexp: integers promote to float64 (docs/semantics.md, "dtypes")."""
    x, ax = _axis(np.asarray(x), axis)
    _check_numeric(x, "logcumsumexp")
    res = np.dtype(np.float64) if x.dtype.kind in "biu" else x.dtype
    complex_ = res.kind == "c"
    identity = complex(-np.inf, 0) if complex_ else -np.inf

    def piece(p: np.ndarray, _: int) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            y = _directed(p.astype(res), reverse, inclusive, identity,
                          _lse_complex if complex_ else _lse_real)
        return y.astype(res)

    return _apply(x, ax, res, cu_seqlens, chunk_size, piece)


# --------------------------------------------------------- linear attention
def _chunk_cumsum(name: str, g: Any, chunk_size: Optional[int], reverse: bool,
                  scale: Optional[float], cu_seqlens: Any, head_first: bool,
                  output_dtype: Any) -> np.ndarray:
    g = np.asarray(g)
    if g.ndim not in (3, 4):
        raise ValueError(f"{name}: expected a rank 3 or 4 input; got {g.ndim}")
    if cu_seqlens is not None and g.shape[0] != 1:
        raise ValueError(f"{name}: cu_seqlens needs B == 1")
    t_axis = 2 if head_first else 1
    gm = np.moveaxis(g.astype(np.float64), t_axis, -1)
    out = np.zeros(gm.shape, dtype=np.float64)
    for a, b in _pieces(gm.shape[-1], cu_seqlens, chunk_size):
        seg = gm[..., a:b]
        if reverse:
            out[..., a:b] = np.cumsum(seg[..., ::-1], axis=-1)[..., ::-1]
        else:
            out[..., a:b] = np.cumsum(seg, axis=-1)
    if scale is not None:
        out = out * scale
    out = np.moveaxis(out, -1, t_axis)
    return out.astype((g.dtype if output_dtype is None else np.dtype(output_dtype))
                      .newbyteorder("="))


def chunk_local_cumsum(g: Any, chunk_size: int, reverse: bool = False,
                       scale: Optional[float] = None, cu_seqlens: Any = None,
                       head_first: bool = False, output_dtype: Any = None) -> np.ndarray:
    """Reference chunk_local_cumsum (docs/semantics.md, "The linear-attention wrappers"),
    in float64."""
    return _chunk_cumsum("chunk_local_cumsum", g, chunk_size, reverse, scale, cu_seqlens,
                         head_first, output_dtype)


def chunk_global_cumsum(s: Any, reverse: bool = False, cu_seqlens: Any = None,
                        scale: Optional[float] = None, head_first: bool = False,
                        output_dtype: Any = None) -> np.ndarray:
    """Reference chunk_global_cumsum (docs/semantics.md, "The linear-attention wrappers"),
    in float64."""
    return _chunk_cumsum("chunk_global_cumsum", s, None, reverse, scale, cu_seqlens,
                         head_first, output_dtype)


# ------------------------------------------------------------------ Jacobians
def _linear_dtype(a: Any, b: Any, h0: Any, dtype: Any) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    scalars = (bool, int, float, complex, np.ndarray, np.generic)
    parts = [v if isinstance(v, scalars) else np.asarray(v)
             for v in (a, b, h0) if v is not None]
    rt = np.result_type(*parts)
    return np.dtype(np.float64) if rt.kind in "biu" else rt


_LINEAR_ACC = {"e": np.float32, "f": np.float64, "d": np.float64, "F": np.complex128,
               "D": np.complex128}


def _times(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """a * s, complex by its real parts (each product and sum rounded once,
    no fused multiply-add), as the kernels compute it."""
    if a.dtype.kind != "c":
        return a * s
    out = np.empty(np.broadcast(a, s).shape, dtype=a.dtype)
    out.real = a.real * s.real - a.imag * s.imag
    out.imag = a.real * s.imag + a.imag * s.real
    return out


def linear_scan(a: Any, b: Any, axis: Optional[int] = None, *, h0: Any = None,
                reverse: bool = False, inclusive: bool = True, log_a: bool = False,
                return_final: bool = False, dtype: Any = None, cu_seqlens: Any = None,
                chunk_size: Optional[int] = None
                ) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """h[t] = a[t] h[t-1] + b[t], one step at a time (docs/semantics.md):
    a, b, h0 cast to the result dtype, then widened (float16 to float32,
    float32 to float64, complex64 to complex128); a[t] == 0 resets."""
    rt = _linear_dtype(a, b, h0, dtype)
    acc = np.dtype(_LINEAR_ACC[rt.char])
    A = np.asarray(a).astype(rt).astype(acc)
    if log_a:
        A = np.exp(A.astype(np.complex128 if acc.kind == "c" else np.float64)).astype(acc)
    B = np.asarray(b).astype(rt).astype(acc)
    A, B = np.broadcast_arrays(A, B)
    if axis is None or B.ndim == 0:
        A, B, axis = A.reshape(-1), B.reshape(-1), 0
    axis = axis % B.ndim
    Am, Bm = np.moveaxis(A, axis, -1), np.moveaxis(B, axis, -1)
    n, rest = Bm.shape[-1], Bm.shape[:-1]
    segs = [0, n] if cu_seqlens is None else [int(v) for v in np.asarray(cu_seqlens)]
    nseg = len(segs) - 1
    H0 = np.zeros((), acc) if h0 is None else np.asarray(h0).astype(rt).astype(acc)
    if cu_seqlens is None:
        H0s = np.broadcast_to(H0, rest)[None]
    else:
        H0s = np.broadcast_to(H0, (nseg,) + tuple(rest))
    out = np.empty(Bm.shape, dtype=acc)
    final = np.array(H0s, dtype=acc)
    for k in range(nseg):
        s0, s1 = segs[k], segs[k + 1]
        chunks = _pieces(s1 - s0, None, chunk_size)
        for c0, c1 in (chunks[::-1] if reverse else chunks):
            idx = range(s0 + c0, s0 + c1)
            S = np.array(H0s[k], dtype=acc)
            for t in (reversed(idx) if reverse else idx):
                with np.errstate(all="ignore"):  # 0 * inf where a resets
                    nxt = np.where(Am[..., t] == 0, Bm[..., t], _times(Am[..., t], S) + Bm[..., t])
                out[..., t] = nxt if inclusive else S
                S = nxt
            final[k] = S  # the last chunk in scan order is written last
    with np.errstate(over="ignore"):  # a float32 state beyond float16: inf, as the kernel
        h = np.moveaxis(out, -1, axis).astype(rt)
        f = final.astype(rt)
    if not return_final:
        return h
    return h, (f if cu_seqlens is not None else f[0])


def _inclusive_jacobian(opname: str, z: np.ndarray) -> np.ndarray:
    """dy_j/dz_i of the forward inclusive scan, from the definitions."""
    n = z.shape[0]
    jac = np.zeros((n, n), dtype=z.dtype)
    if opname == "cumsum":
        return np.tril(np.ones((n, n), dtype=z.dtype))
    if opname == "cumprod":
        for j in range(n):
            for i in range(j + 1):
                others = np.concatenate([z[:i], z[i + 1:j + 1]])
                jac[j, i] = np.prod(others)  # no division: exact with zeros
        return jac
    if opname in ("cummax", "cummin"):
        _, owners = _owner_scan(z, 0, False, True, True, None, None, opname == "cummax")
        jac[np.arange(n), owners] = 1
        return jac
    if opname == "logcumsumexp":
        y = (_lse_complex(z) if z.dtype.kind == "c" else _lse_real(z).astype(np.float64))
        for j in range(n):
            yj = y[j]
            if z.dtype.kind != "c" and np.isinf(yj):
                equal = z[: j + 1] == yj  # the limit along a common shift: uniform
                jac[j, : j + 1] = equal / equal.sum()
            else:
                with np.errstate(invalid="ignore", over="ignore"):
                    jac[j, : j + 1] = np.exp(z[: j + 1] - yj)
                if z.dtype.kind == "c":  # exp(-inf + iy) = 0, y = +-inf or NaN too
                    dead = (z[: j + 1].real == -np.inf) & ~np.isfinite(z[: j + 1].imag)
                    jac[j, : j + 1][dead] = 0
        return jac
    raise ValueError(f"jacobian: unknown op {opname!r}")


def jacobian(opname: str, x1d: Any, reverse: bool = False, inclusive: bool = True) -> np.ndarray:
    """Dense Jacobian ``J[j, i] = d y_j / d x_i`` of a 1-D scan (float64 or
    complex128; complex: the holomorphic derivative), with the edge rules of
    docs/derivatives.md, "Edges".  ``J @ t`` is the JVP and ``J.conj().T @ g`` the VJP."""
    x = np.asarray(x1d)
    x = x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)
    n = x.shape[0]
    z = x[::-1] if reverse else x
    jac = _inclusive_jacobian(opname, z)
    if not inclusive:  # row j is the inclusive row j - 1; the first row is empty
        shifted = np.zeros_like(jac)
        shifted[1:] = jac[:-1]
        jac = shifted
    if reverse:
        p = np.arange(n)[::-1]
        jac = jac[np.ix_(p, p)]
    return jac
