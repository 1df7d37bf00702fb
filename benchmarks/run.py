"""scanad benchmark runner: writes benchmarks/results.md (and results.png).

    python benchmarks/run.py [--quick] [--headline] [--linear] [--adapters] [--dask]
                             [--isas] [--second] [--threads N] [--ops cumsum,cummax]
                             [--out PATH] [--plot PATH] [--readme README.md]

Every table in results.md comes from one run of this script; nothing in it is
edited by hand.  Each scan is timed against ``np.copyto`` of the same array,
NumPy, PyTorch and JAX (where installed), all measured in the same run with
the same thread count.  Times are medians of 7 runs after a warm-up (3 runs
for calls slower than 1 s; the copy gets 21, since whole rows divide by it).
Timings are reported, never asserted.

--headline   only the README's small table (float32, cumsum, cumprod, cummax and
             logcumsumexp on a 2^24 line and on (4096, 4096) along axis 0),
             printed; results.md and the plot are left alone.
--linear     only the linear_scan and the adapter tables, printed; results.md
             and the plot are left alone.
--adapters   only the adapter table (scanad.torch, scanad.jax), printed.
--readme F   also write the headline table into F between the lines
             '<!-- headline:begin -->' and '<!-- headline:end -->'.
--dask       only the scanad.dask table (a LocalCluster of two single-threaded
             worker processes against dask.array's own scans), printed and written
             into the results file as its "On Dask" section (replaced or appended);
             too slow for the full run, which leaves that section out.
--isas       scanad's cells (the main table's, hvp and linear_scan's) on the two best
             kernel tables this host runs (e.g. avx2 and avx512; SCANAD_ISA in three
             child processes each, the tables alternated, a cell the median of its
             three; glibc keeps freed memory there, so no output is page-faulted),
             side by side, printed and written into the results file as its
             "Kernel tables side by side" section; the full run leaves it out.
--second     only the second-order table, printed and written into the results
             file in place of its section (the full run measures it too; its two
             torch calls on a line with a zero take most of the full run's time).
--quick      tiny shapes, a smoke test of every table in seconds; writes to the
             temporary directory unless --out/--plot are given.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

# the checkout this file sits in, when it is built in place (setup.py build_ext
# --inplace); otherwise the installed scanad
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(ROOT, "scanad", "_scanad*")):
    sys.path.insert(0, ROOT)

import scanad as sa  # noqa: E402
from scanad.__main__ import NUMPY_OPS, _median_time  # noqa: E402
from scanad._registry import SCANS  # noqa: E402

try:
    import torch
except ImportError:  # torch is optional here
    torch = None

jax: Any = None  # imported by load_jax(), after XLA_FLAGS is set

# jax.lax's name for each scan
JAX_OPS = {"cumsum": "cumsum", "cumprod": "cumprod", "cummax": "cummax", "cummin": "cummin",
           "logcumsumexp": "cumlogsumexp"}

HEADLINE_OPS = ("cumsum", "cumprod", "cummax", "logcumsumexp")
BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"

REPEAT = 7
SLOW_CALL = 1.0  # seconds: calls slower than this are timed REPEAT_SLOW times
REPEAT_SLOW = 3


def median_time(fn: Callable[[], object], repeat: int = REPEAT) -> float:
    """Median wall time of ``fn()`` in seconds, after one warm-up call; a call
    slower than SLOW_CALL is repeated only REPEAT_SLOW times."""
    return _median_time(fn, repeat, SLOW_CALL, REPEAT_SLOW)


def copy_destination(src: np.ndarray) -> np.ndarray:
    """An empty C-contiguous array like src that starts half a page from src
    modulo 4 KiB.  glibc's memcpy (``rep movsb``) is many times slower on AMD
    Zen 3 when the destination starts a few bytes past the source modulo
    4 KiB, which two arrays allocated one after the other often do; np.copyto
    is the reference every ratio divides by (docs/performance.md)."""
    buf = np.empty(src.nbytes + 4096, np.uint8)
    skew = (src.ctypes.data + 2048 - buf.ctypes.data) % 4096
    return buf[skew:skew + src.nbytes].view(src.dtype).reshape(src.shape)


def alternated_medians(fns: Sequence[Callable[[], object]], rounds: int = 3 * REPEAT
                       ) -> List[float]:
    """Median wall time of each fn in seconds, timed one call each per round
    in rotating order, so that drift in the machine's speed (another process,
    the clock) falls on all of them alike and their ratios stay steady."""
    for fn in fns:
        fn()
    times: List[List[float]] = [[] for _ in fns]
    for r in range(rounds):
        for k in range(len(fns)):
            j = (k + r) % len(fns)
            start = time.perf_counter()
            fns[j]()
            times[j].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def load_jax(threads: int) -> Optional[str]:
    """Import JAX on the CPU with float64 enabled; with one thread, XLA's
    Eigen thread pool is turned off.  Returns a note for the header, or None
    when JAX is not installed."""
    global jax
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()
    try:
        import jax as jax_module
    except ImportError:
        return None
    jax = jax_module
    jax.config.update("jax_enable_x64", True)
    how = "one thread (XLA_FLAGS)" if threads == 1 else "XLA's default threads"
    return f"JAX {jax.__version__} (jitted jax.lax scans, CPU, {how})"


def torch_call(name: str, x: np.ndarray, axis: int) -> Optional[Callable[[], object]]:
    """torch.<op>(x, axis) on a tensor sharing x's memory, or None without torch."""
    if torch is None:
        return None
    t = torch.from_numpy(x)
    fn = getattr(torch, name)
    return lambda: fn(t, axis)


def jax_call(name: str, x: np.ndarray, axis: int) -> Optional[Callable[[], object]]:
    """The jitted jax.lax scan of x (already on the device), waited for; None
    without JAX."""
    if jax is None:
        return None
    f = jax.jit(lambda a: getattr(jax.lax, JAX_OPS[name])(a, axis=axis, reverse=False))
    xj = jax.device_put(x)
    return lambda: f(xj).block_until_ready()


def maybe_time(fn: Optional[Callable[[], object]]) -> Optional[float]:
    """median_time(fn), or None where fn is None (a library not installed)."""
    return None if fn is None else median_time(fn)


def fmt(t: Optional[float], ref: float) -> str:
    """'ms (ratio to ref)', or 'n/a'."""
    return "n/a" if t is None else f"{t * 1e3:.2f} ({t / ref:.1f}x)"


def speedup(t: Optional[float], ref: float) -> str:
    """How many times slower t is than ref, or 'n/a'."""
    return "n/a" if t is None else f"{t / ref:.1f}x"


@dataclass
class Row:
    """One op, dtype and shape of the main table, in seconds."""
    name: str
    dtype: str
    shape: Tuple[int, ...]
    axis: int
    copy: float
    out: float
    alloc: float
    vjp: float
    jvp: float
    numpy: float
    torch: Optional[float]
    jax: Optional[float]

    def markdown(self) -> str:
        """The row of the main table."""
        cells = [self.name, self.dtype, f"{self.shape}, {self.axis}", f"{self.copy * 1e3:.2f}",
                 fmt(self.out, self.copy), fmt(self.alloc, self.copy),
                 fmt(self.vjp, self.alloc), fmt(self.jvp, self.alloc),
                 fmt(self.numpy, self.copy), fmt(self.torch, self.copy)]
        if jax is not None:
            cells.append(fmt(self.jax, self.copy))
        return "| " + " | ".join(cells) + " |"


def forward_and_derivative_times(fn: Callable, x: np.ndarray, axis: int
                                 ) -> Tuple[float, float, float]:
    """The allocating forward, the pullback alone and the JVP (cotangent and
    tangent all ones), in seconds."""
    t_new = median_time(lambda: fn(x, axis=axis))
    y, pullback = sa.vjp(fn, x, axis=axis)
    g = np.ones_like(y)
    t_vjp = median_time(lambda: pullback(g))
    t_jvp = median_time(lambda: sa.jvp(fn, x, g, axis=axis))
    return t_new, t_vjp, t_jvp


def measure_rows(ops: Sequence[str], dtypes: Sequence[type],
                 cases: Sequence[Tuple[Tuple[int, ...], int]], derivatives: bool = True,
                 frameworks: bool = True) -> List[Row]:
    """Every op on every dtype and case; without derivatives their times are
    NaN, without frameworks NumPy's is NaN and torch's and JAX's None."""
    rows = []
    rng = np.random.default_rng(0)
    for dtype in dtypes:
        for shape, axis in cases:
            x = rng.standard_normal(shape).astype(dtype)
            dst = copy_destination(x)
            # every ratio in the row divides by this one, so it gets more runs
            t_copy = median_time(lambda: np.copyto(dst, x), 3 * REPEAT)
            for name in ops:
                fn = sa.OPS[name].fn
                t_out = median_time(lambda: fn(x, axis=axis, out=dst))
                if derivatives:
                    t_new, t_vjp, t_jvp = forward_and_derivative_times(fn, x, axis)
                else:
                    t_new, t_vjp, t_jvp = median_time(lambda: fn(x, axis=axis)), np.nan, np.nan
                row = Row(name, np.dtype(dtype).name, shape, axis, t_copy, t_out, t_new, t_vjp,
                          t_jvp, np.nan, None, None)
                if frameworks:
                    row.numpy = median_time(lambda: NUMPY_OPS[name](x, axis))
                    row.torch = maybe_time(torch_call(name, x, axis))
                    row.jax = maybe_time(jax_call(name, x, axis))
                rows.append(row)
                print(row.markdown(), flush=True)
    return rows


def op_table(rows: List[Row]) -> List[str]:
    """The main table: every op, dtype and shape, forward and derivatives."""
    head = ("| op | dtype | shape, axis | copy ms | scanad out= | scanad alloc "
            "| VJP (x alloc) | JVP (x alloc) | NumPy | torch |")
    ncol = 10
    if jax is not None:
        head += " JAX |"
        ncol += 1
    return [head, "|" + "---|" * ncol] + [r.markdown() for r in rows]


def headline_table(rows: List[Row]) -> List[str]:
    """The README's table: scanad's out= call against a copy into an existing
    array, and NumPy, torch and JAX (which allocate their results) against
    scanad's allocating call."""
    head = "| op | float32 shape, axis | copy ms | scanad ms (x copy) | NumPy | torch |"
    ncol = 6
    if jax is not None:
        head += " JAX |"
        ncol += 1
    out = [head, "|" + "---|" * ncol]
    for r in rows:
        cells = [r.name, f"{r.shape}, {r.axis}", f"{r.copy * 1e3:.2f}", fmt(r.out, r.copy),
                 f"{speedup(r.numpy, r.alloc)} slower", f"{speedup(r.torch, r.alloc)} slower"]
        if jax is not None:
            cells.append(f"{speedup(r.jax, r.alloc)} slower")
        out.append("| " + " | ".join(cells) + " |")
    return out


def headline_rows(rows: List[Row], cases: Sequence[Tuple[Tuple[int, ...], int]]) -> List[Row]:
    """The float32 headline ops on the first two cases, in that order."""
    keep = {(shape, axis) for shape, axis in cases[:2]}
    return [r for r in rows if r.dtype == "float32" and r.name in HEADLINE_OPS
            and (r.shape, r.axis) in keep]


def torch_hvp_call(name: str, x: np.ndarray, axis: int) -> Optional[Callable[[], object]]:
    """torch's double backward: the forward, x_bar = grad(y, x, g,
    create_graph=True), then grad(x_bar, x, t): the Hessian of <g, op(x)>
    times t (g = t = ones), or None without torch."""
    if torch is None:
        return None
    op = {"cummax": lambda a: torch.cummax(a, axis).values,
          "cummin": lambda a: torch.cummin(a, axis).values}.get(
        name, lambda a: getattr(torch, name)(a, axis))
    ones = torch.ones(x.shape, dtype=torch.from_numpy(x).dtype)

    def run() -> object:
        xt = torch.from_numpy(x).requires_grad_(True)
        (xb,) = torch.autograd.grad(op(xt), xt, ones, create_graph=True)
        if not xb.requires_grad:  # a linear op: torch knows its Hessian is 0
            return torch.zeros_like(xb)
        return torch.autograd.grad(xb, xt, ones, allow_unused=True)

    return run


def once_or_median(fn: Optional[Callable[[], object]]) -> Optional[float]:
    """One timed call when it takes over SLOW_CALL (torch's quadratic cumprod
    double backward: minutes), else median_time; None for None."""
    if fn is None:
        return None
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return once if once > SLOW_CALL else median_time(fn)


SECOND_HEAD = "## Second order: hvp against the VJP and torch's double backward"
SECOND_NOTE = ("`VJP` times the pullback alone, `hvp` the whole `sa.hvp` call (x, t and g all "
               "given, ones; factors exp(1e-3 N(0,1)) so cumprod stays finite); torch the "
               "forward and two `autograd.grad` calls, once where that takes over "
               f"{SLOW_CALL:g} s. `one 0`: the same factors with the middle one set to 0, "
               "which sends torch's cumprod double backward down its quadratic path.")


def second_order_table(ops: Sequence[str], quick: bool) -> List[str]:
    """hvp (the whole call: forward, JVP and the fused backward) against the
    pullback alone, and against torch's double backward (the whole call)."""
    head = ["| op | dtype | shape, axis | VJP ms | hvp ms | hvp / VJP | torch double "
            "backward ms | torch / hvp |", "|" + "---|" * 8]
    if quick:
        cases = [((1 << 14,), 0), ((128, 128), 0), ((4, 2048), 1)]
    else:
        cases = [((1 << 20,), 0), ((1024, 1024), 0), ((4, 8192), 1), ((1 << 16,), 0)]
    lines = list(head)
    print("\n".join(head), flush=True)
    rng = np.random.default_rng(4)
    # torch's cumprod double backward is quadratic once its input holds a zero
    zero_case = ((1 << (10 if quick else 16),), 0)
    for dtype in (np.float32, np.float64):
        for (shape, axis), with_zero in [(c, False) for c in cases] + [(zero_case, True)]:
            # factors near 1: cumprod stays finite on the longest line
            x = np.exp(1e-3 * rng.standard_normal(shape)).astype(dtype)
            t = np.ones_like(x)
            if with_zero:
                x[shape[0] // 2] = 0
            for name in [n for n in ops if n == "cumprod" or not with_zero]:
                fn = sa.OPS[name].fn
                y, pullback = sa.vjp(fn, x, axis=axis)
                g = np.ones_like(y)
                t_vjp = median_time(lambda: pullback(g))
                t_hvp = median_time(lambda: sa.hvp(fn, x, t, g, axis=axis))
                t_torch = once_or_median(torch_hvp_call(name, x, axis))
                label = f"{name}, one 0" if with_zero else name
                row = (f"| {label} | {np.dtype(dtype).name} | {shape}, {axis} | "
                       f"{t_vjp * 1e3:.2f} | {t_hvp * 1e3:.2f} | {t_hvp / t_vjp:.2f} | "
                       + ("n/a | n/a |" if t_torch is None else
                          f"{t_torch * 1e3:.2f} | {t_torch / t_hvp:.1f} |"))
                lines.append(row)
                print(row, flush=True)
    return lines


def chunk_table(quick: bool) -> List[str]:
    """chunk_local_cumsum and chunk_global_cumsum, dense and packed (varlen),
    against a copy and the pad-and-reshape idiom in NumPy, torch and JAX."""
    rows = ["| chunk op | shape | copyto ms | scanad out= (x copyto) | copy() ms "
            "| scanad alloc (x copy()) | NumPy pad+reshape | torch reshape |"
            + (" JAX reshape |" if jax is not None else ""),
            "|" + "---|" * (9 if jax is not None else 8)]
    rng = np.random.default_rng(1)
    shapes = [(8, 1024, 16)] if quick else [(8, 4096, 16), (8, 4096, 16, 64)]
    C = 64
    for shape in shapes:
        g = rng.standard_normal(shape).astype(np.float32)
        dst = copy_destination(g)
        t_copy = median_time(lambda: np.copyto(dst, g))
        t_alloc = median_time(lambda: g.copy())
        B, T = shape[:2]
        tail = shape[2:]

        def np_local() -> np.ndarray:  # ejKernel style: pad, reshape, cumsum
            pad = (-T) % C
            gp = np.pad(g, [(0, 0), (0, pad)] + [(0, 0)] * len(tail))
            r = np.cumsum(gp.reshape((B, (T + pad) // C, C) + tail), axis=2)
            return r.reshape((B, T + pad) + tail)[:, :T]

        def torch_local() -> object:
            t = torch.from_numpy(g)
            return torch.cumsum(t.reshape((B, T // C, C) + tail), dim=2).reshape(shape)

        jax_local = jax_global = None
        if jax is not None:
            gj = jax.device_put(g)
            f_local = jax.jit(lambda a: jax.lax.cumsum(a.reshape((B, T // C, C) + tail),
                                                       axis=2).reshape(shape))
            f_global = jax.jit(lambda a: jax.lax.cumsum(a, axis=1))
            jax_local = lambda: f_local(gj).block_until_ready()  # noqa: E731
            jax_global = lambda: f_global(gj).block_until_ready()  # noqa: E731

        packed = g.reshape((1, B * T) + tail)
        pdst = dst.reshape(packed.shape)
        cu = np.concatenate([[0], np.sort(rng.choice(np.arange(1, B * T), B - 1,
                                                     replace=False)), [B * T]])
        cases = [
            ("local dense", lambda **k: sa.chunk_local_cumsum(g, C, **k), dst, np_local,
             torch_local if torch is not None else None, jax_local),
            ("global dense", lambda **k: sa.chunk_global_cumsum(g, **k), dst,
             lambda: np.cumsum(g, axis=1),
             (lambda: torch.cumsum(torch.from_numpy(g), 1)) if torch is not None else None,
             jax_global),
            ("local varlen", lambda **k: sa.chunk_local_cumsum(packed, C, cu_seqlens=cu, **k),
             pdst, None, None, None),
            ("global varlen", lambda **k: sa.chunk_global_cumsum(packed, cu_seqlens=cu, **k),
             pdst, None, None, None),
        ]
        for label, f_sa, out, f_np, f_t, f_j in cases:
            t_out = median_time(lambda: f_sa(out=out))
            t_new = median_time(f_sa)
            line = (f"| {label} | {shape} | {t_copy * 1e3:.2f} | {fmt(t_out, t_copy)} "
                    f"| {t_alloc * 1e3:.2f} | {fmt(t_new, t_alloc)} "
                    f"| {fmt(maybe_time(f_np), t_copy)} | {fmt(maybe_time(f_t), t_copy)} |")
            if jax is not None:
                line += f" {fmt(maybe_time(f_j), t_copy)} |"
            rows.append(line)
            print(line, flush=True)
    return rows


def size_sweep(ops: Sequence[str], quick: bool) -> Tuple[List[str], List[int],
                                                           Dict[str, List[Optional[float]]]]:
    """ns per element against size, float32 1-D: the table, the exponents and
    the curves."""
    exps = list(range(10, 21, 2)) if quick else list(range(10, 27, 2))
    rows = ["| op | " + " | ".join(f"2^{e}" for e in exps) + " |",
            "|" + "---|" * (len(exps) + 1)]
    rng = np.random.default_rng(3)
    impls = ["scanad", "NumPy", "torch"] + (["JAX"] if jax is not None else [])
    curves: Dict[str, List[Optional[float]]] = {}
    for name in ["copy"] + list(ops):
        for impl in (["copy"] if name == "copy" else impls):
            ns: List[Optional[float]] = []
            for e in exps:
                x = rng.standard_normal(1 << e).astype(np.float32)
                dst = copy_destination(x)
                if impl == "copy":
                    f = lambda: np.copyto(dst, x)  # noqa: E731
                elif impl == "scanad":
                    f = lambda: sa.OPS[name].fn(x, out=dst)  # noqa: E731
                elif impl == "NumPy":
                    f = lambda: NUMPY_OPS[name](x, 0)  # noqa: E731
                elif impl == "torch":
                    f = torch_call(name, x, 0)
                else:
                    f = jax_call(name, x, 0)
                ns.append(None if f is None else median_time(f) / x.size * 1e9)
            label = name if impl == "copy" else f"{name} ({impl})"
            curves[label] = ns
            rows.append(f"| {label} | " + " | ".join("n/a" if v is None else f"{v:.2f}"
                                                      for v in ns) + " |")
            print(rows[-1], flush=True)
    return rows, exps, curves


def plot_sweep(path: str, ops: Sequence[str], exps: Sequence[int],
               curves: Dict[str, List[Optional[float]]], title: str) -> str:
    """Draw the size sweep, one panel per op; returns a line for the log."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    fig, axes = plt.subplots(1, len(ops), figsize=(3.4 * len(ops), 3.4), sharey=True,
                             squeeze=False)
    for ax, name in zip(axes[0], ops):
        for label, ns in curves.items():
            if label == "copy" or label.startswith(name + " "):
                pts = [(1 << e, v) for e, v in zip(exps, ns) if v is not None]
                if pts:
                    style = "k--" if label == "copy" else "-"
                    impl = label if label == "copy" else label[len(name) + 2:-1]
                    ax.loglog(*zip(*pts), style, marker="o", markersize=3, label=impl)
        ax.set_title(name)
        ax.set_xlabel("elements (float32, 1-D)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("ns per element (lower is better)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot written to {path}"


def thread_lines(quick: bool) -> List[str]:
    """1 vs 2 kernel threads: lines split between threads (logcumsumexp of 64
    rows) and one long line scanned in pieces from carries (every scan)."""
    n = sa.get_num_threads()
    out = []

    def both(fn: Callable[[], object]) -> Tuple[float, float]:
        sa.set_num_threads(1)
        t1 = median_time(fn)
        sa.set_num_threads(2)
        t2 = median_time(fn)
        return t1, t2

    x = np.random.default_rng(2).standard_normal((64, 2**14 if quick else 2**18))
    x = x.astype(np.float32)
    t1, t2 = both(lambda: sa.logcumsumexp(x, axis=1))
    out.append(f"- logcumsumexp float32 {x.shape} axis 1: 1 thread {t1 * 1e3:.1f} ms, "
               f"2 threads {t2 * 1e3:.1f} ms, speed-up {t1 / t2:.2f}x")
    for dtype in ("float32", "float64"):
        line = np.random.default_rng(3).standard_normal(2**19 if quick else 2**24).astype(dtype)
        res = np.empty_like(line)
        for name in SCANS:
            fn = getattr(sa, name)
            t1, t2 = both(lambda: fn(line, out=res))
            out.append(f"- {name} {dtype} {line.shape} (one line, out=): "
                       f"1 thread {t1 * 1e3:.1f} ms, 2 threads {t2 * 1e3:.1f} ms, "
                       f"speed-up {t1 / t2:.2f}x")
    sa.set_num_threads(n)
    return out


def keep_freed_memory() -> bool:
    """Ask glibc to serve big blocks from its heap and keep what is freed
    (mallopt M_MMAP_THRESHOLD 1 GiB, M_TRIM_THRESHOLD 2 GiB), so that a fresh
    output reuses pages already mapped; False where that is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        # mallopt takes a C int: the largest trim threshold is 2 GiB - 1
        if not (libc.mallopt(-3, 1 << 30) and libc.mallopt(-1, (1 << 31) - 1)):
            return False
    except (OSError, AttributeError):
        return False
    # touched blocks below both thresholds, freed: the heap keeps them
    blocks = [np.ones(1 << 26) for _ in range(3)]  # 3 x 512 MiB
    del blocks
    return True


def steady_table(ops: Sequence[str], cases: Sequence[Tuple[Tuple[int, ...], int]]
                 ) -> List[str]:
    """The forward (allocating) and both derivatives again, with no page
    faults: every output reuses memory freed by the call before."""
    if not keep_freed_memory():
        return ["(no steady-state table: the allocator is not glibc)"]
    rows = ["| op | dtype | shape, axis | forward ms | VJP ms (x fwd) | JVP ms (x fwd) |",
            "|" + "---|" * 6]
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for shape, axis in cases:
            x = rng.standard_normal(shape).astype(dtype)
            for name in ops:
                t_new, t_vjp, t_jvp = forward_and_derivative_times(sa.OPS[name].fn, x, axis)
                rows.append(
                    f"| {name} | {np.dtype(dtype).name} | {shape}, {axis} | {t_new * 1e3:.2f} "
                    f"| {fmt(t_vjp, t_new)} | {fmt(t_jvp, t_new)} |")
                print(rows[-1], flush=True)
    return rows


def warm_memory(nbytes: int = 2 << 30) -> None:
    """Touch a few GiB once before timing: on a virtual machine the first use
    of guest memory can cost the host's page faults too, which would land in
    whichever measurement first allocates that much."""
    buf = np.ones(nbytes // 8)
    del buf


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """The short commit of the benchmarked scanad's checkout, and whether it
    has uncommitted changes; 'unknown' outside git."""
    here = os.path.dirname(os.path.abspath(sa.__file__))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" (with uncommitted changes)" if dirty.strip() else "")


def header(args: argparse.Namespace, jax_note: Optional[str]) -> List[str]:
    """Title and the run's conditions: date, machine, build, threads, versions."""
    info = sa.build_info()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# scanad benchmark results",
        "",
        "Written by `python benchmarks/run.py" + "".join(" " + a for a in sys.argv[1:])
        + "`; do not edit by hand.",
        "",
        f"- date: {date}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"- scanad {info['version']} ({os.path.dirname(sa.__file__)}, commit {git_commit()}): "
        f"{info['isa']} kernels "
        f"(CPU features: {info['cpu']}), {info['compiler']}",
        f"- threads: {args.threads} for scanad, torch and JAX",
        f"- Python {platform.python_version()}, NumPy {np.__version__}, torch "
        + (torch.__version__ if torch is not None else "not installed") + ", "
        + (jax_note or "JAX not installed"),
        f"- medians of {REPEAT} runs after a warm-up ({REPEAT_SLOW} for calls slower than "
        f"{SLOW_CALL:.0f} s; the copy {3 * REPEAT}); ratios are of medians",
    ]
    if args.quick:
        lines.append("- **--quick**: smoke-test shapes, not for comparison")
    return lines


def replace_headline(path: str, table: List[str]) -> None:
    """Write the headline table between BEGIN and END in path."""
    with open(path) as f:
        text = f.read()
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise SystemExit(f"{path}: no '{BEGIN}' ... '{END}' block to replace")
    text = text[:start + len(BEGIN)] + "\n" + "\n".join(table) + "\n" + text[stop:]
    with open(path, "w") as f:
        f.write(text)
    print(f"headline table written into {path}")


def linear_framework_calls(a: np.ndarray, b: np.ndarray, axis: int
                           ) -> Dict[str, Optional[Callable[[], object]]]:
    """The other CPU paths to h_t = a_t h_{t-1} + b_t (None where absent):
    scipy's lfilter (a scalar a only), jax.lax.scan and associative_scan."""
    calls: Dict[str, Optional[Callable[[], object]]] = {"lfilter": None, "jax.lax.scan": None,
                                                        "associative_scan": None}
    try:
        from scipy.signal import lfilter
    except ImportError:
        lfilter = None
    if lfilter is not None and a.size == 1:
        coef = float(a.reshape(-1)[0])
        calls["lfilter"] = lambda: lfilter([1.0], [1.0, -coef], b, axis=axis)
    if jax is not None:
        jnp = jax.numpy
        aj = jax.device_put(np.broadcast_to(a, b.shape).copy())
        bj = jax.device_put(b)

        def step(h: Any, ab: Any) -> Tuple[Any, Any]:
            h = ab[0] * h + ab[1]
            return h, h

        def by_scan(x: Any, y: Any) -> Any:
            xs, ys = jnp.moveaxis(x, axis, 0), jnp.moveaxis(y, axis, 0)
            return jnp.moveaxis(jax.lax.scan(step, jnp.zeros_like(ys[0]), (xs, ys))[1], 0, axis)

        def combine(p: Any, q: Any) -> Tuple[Any, Any]:
            return q[0] * p[0], q[0] * p[1] + q[1]

        f_scan = jax.jit(by_scan)
        f_assoc = jax.jit(lambda x, y: jax.lax.associative_scan(combine, (x, y), axis=axis)[1])
        calls["jax.lax.scan"] = lambda: f_scan(aj, bj).block_until_ready()
        calls["associative_scan"] = lambda: f_assoc(aj, bj).block_until_ready()
    return calls


def adapter_table(quick: bool) -> List[str]:
    """The cost of going through scanad.torch / scanad.jax: forward + backward
    of a float32 line against scanad's own forward + VJP on the NumPy array,
    and the per-call time on 16 elements next to the framework's own op."""
    rng = np.random.default_rng(4)
    n = 1 << (14 if quick else 20)
    lines = ["| op | n | scanad fwd+VJP ms | scanad.torch fwd+bwd | torch's own fwd+bwd "
             "| scanad.jax grad (jit) | JAX's own grad (jit) |", "|" + "---|" * 7]
    for name in ("cumsum", "cumprod", "logcumsumexp"):
        for size in (n, 16):
            x = (rng.uniform(0.999, 1.001, size) if name == "cumprod"
                 else rng.standard_normal(size)).astype(np.float32)
            g = np.ones_like(x)
            fn = sa.OPS[name].fn

            def own() -> object:
                _, pullback = sa.vjp(fn, x, axis=0)
                return pullback(g)

            # None where the framework is absent; the rest timed in alternation
            calls: List[Optional[Callable[[], object]]] = [own, None, None, None, None]
            if torch is not None:
                import scanad.torch as st

                xt, gt = torch.from_numpy(x.copy()).requires_grad_(), torch.from_numpy(g)

                def through(f: Callable[..., Any]) -> Callable[[], object]:
                    def run() -> object:
                        xt.grad = None
                        f(xt, 0).backward(gt)
                        return xt.grad
                    return run

                calls[1:3] = [through(getattr(st, name)), through(getattr(torch, name))]
            if jax is not None:
                import scanad.jax as sj

                xj = jax.device_put(x)
                mine = jax.jit(jax.grad(lambda v: getattr(sj, name)(v, 0).sum()))
                native = jax.jit(jax.grad(lambda v: getattr(jax.lax, JAX_OPS[name])(v, 0).sum()))
                calls[3:5] = [lambda: mine(xj).block_until_ready(),
                              lambda: native(xj).block_until_ready()]
            present = [c for c in calls if c is not None]
            timed = iter(alternated_medians(present))
            t = [None if c is None else next(timed) for c in calls]
            t_own = t[0]
            assert t_own is not None
            cells = [name, str(size), f"{t_own * 1e3:.3f}"] + [fmt(v, t_own) for v in t[1:]]
            lines.append("| " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    return lines


def linear_table(quick: bool) -> List[str]:
    """linear_scan: forward, JVP and VJP against a copy of b, lfilter and JAX."""
    rng = np.random.default_rng(3)
    if quick:
        cases = [((1 << 16,), 0), ((256, 256), 0), ((256, 256), 1)]
    else:
        cases = [((1 << 24,), 0), ((4096, 4096), 0), ((4096, 4096), 1)]
    extra = ["lfilter", "jax.lax.scan", "associative_scan"]
    lines = ["| dtype | shape, axis | a | copy ms | forward out= | forward | JVP (x fwd) "
             "| VJP (x fwd) | " + " | ".join(extra) + " |", "|" + "---|" * (8 + len(extra))]
    for dtype in (np.float32, np.float64):
        for shape, axis in cases:
            b = rng.standard_normal(shape).astype(dtype)
            dst = copy_destination(b)
            t_copy = median_time(lambda: np.copyto(dst, b), 3 * REPEAT)
            for kind in ("scalar", "same shape"):
                a = (np.asarray(0.999, dtype) if kind == "scalar"
                     else rng.uniform(0.9, 1.0, shape).astype(dtype))
                t_out = median_time(lambda: sa.linear_scan(a, b, axis, out=dst))
                t_fwd = median_time(lambda: sa.linear_scan(a, b, axis))
                ones = np.ones_like(b)
                t_jvp = median_time(lambda: sa.jvp(sa.linear_scan, (a, b, None),
                                                   (None, ones, None), axis=axis))
                _, pullback = sa.vjp(sa.linear_scan, (a, b, None), axis=axis)
                t_vjp = median_time(lambda: pullback(ones))
                others = linear_framework_calls(a, b, axis)
                cells = [np.dtype(dtype).name, f"{shape}, {axis}", kind, f"{t_copy * 1e3:.2f}",
                         fmt(t_out, t_copy), fmt(t_fwd, t_copy), fmt(t_jvp, t_fwd),
                         fmt(t_vjp, t_fwd)]
                cells += [fmt(maybe_time(others[k]), t_fwd) for k in extra]
                lines.append("| " + " | ".join(cells) + " |")
                print(lines[-1], flush=True)
    return lines


DASK_HEAD = "## On Dask: scanad.dask against dask.array"


def _scan_input(op: str, n: int, chunk: Optional[int] = None) -> Any:
    """The benchmark's input: made on the workers in blocks of ``chunk``
    (a dask array), or in this process (a NumPy array) when chunk is None."""
    if chunk is None:
        x = np.random.default_rng(0).standard_normal(n)
    else:
        import dask.array as da
        x = da.random.default_rng(0).standard_normal(n, chunks=chunk)
    # factors near 1 keep a product of 2^26 of them finite
    return 1.0 + 1e-9 * x if op == "cumprod" else x


def _dask_times(client: Any, op: str, n: int, chunk: int, repeat: int) -> Tuple[float, float]:
    """Seconds to compute ``.sum()`` of scanad.dask's scan and of dask.array's
    sequential one, on n elements made and persisted on the workers in blocks
    of chunk (a NumPy array in the graph would ship it through the scheduler).
    dask.array's method="blelloch" is left out: on the distributed scheduler it
    never finished, and its scheduler spun at full CPU, growing by gigabytes,
    where no timeout could stop it."""
    import dask.array as da
    import distributed

    import scanad.dask as sad

    x = client.persist(_scan_input(op, n, chunk))
    distributed.wait(x)
    return (_median_time(lambda: getattr(sad, op)(x).sum().compute(), repeat),
            _median_time(lambda: getattr(da, op)(x, method="sequential").sum().compute(),
                         repeat))


def dask_table(quick: bool) -> List[str]:
    """scanad.dask's cumsum/cumprod against dask.array's on the same blocks, on a
    LocalCluster of two single-threaded worker processes, and the per-block cost."""
    import distributed

    n, nblocks = (1 << 16, 4) if quick else (1 << 26, 16)
    repeat = 3
    lines = [f"float64, {n} elements (2^{n.bit_length() - 1}) in {nblocks} blocks, on "
             "`LocalCluster(n_workers=2, threads_per_worker=1, processes=True)` with "
             "`SCANAD_NUM_THREADS=1` in the workers. The input is made (`dask.array.random`) "
             "and persisted on the workers first; a timing is graph building, scheduling and "
             f"computing `.sum()` of the scan (medians of {repeat} after a warm-up). In "
             "brackets: against scanad.dask; "
             "`in memory` is scanad's scan of a NumPy array of the same size and values' "
             "distribution in this process, one thread, without the sum. dask.array's "
             "`method=\"blelloch\"` is left out: on the distributed scheduler it never "
             "finished (the scheduler's process spinning at full CPU).", "",
             "| op | scanad.dask ms | dask.array sequential | in memory |", "|---|---|---|---|"]
    print("\n".join(lines[-2:]), flush=True)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, env={"SCANAD_NUM_THREADS": "1"}
                                  ) as cluster, distributed.Client(cluster) as client:
        for op in ("cumsum", "cumprod"):
            t = _dask_times(client, op, n, n // nblocks, repeat)
            mine = t[0]
            host = _scan_input(op, n)
            local = _median_time(lambda: getattr(sa, op)(host), repeat)
            lines.append(f"| {op} | {mine * 1e3:.0f} | {fmt(t[1], mine)} | {fmt(local, mine)} |")
            print(lines[-1], flush=True)
        # per-block cost: the same elements in more and more blocks
        m = 1 << (12 if quick else 20)
        counts = (4, 16, 64) if quick else (16, 64, 256)
        lines += ["", f"Per-block cost: cumsum of {m} float64 elements (2^{m.bit_length() - 1}) "
                  "in more and more blocks, `.sum()` computed as above; ms, and the slope "
                  "between the last two rows in ms per block.", "",
                  "| blocks | scanad.dask ms | dask.array sequential ms |", "|---|---|---|"]
        print("\n".join(lines[-3:]), flush=True)
        per: List[Tuple[int, float, float]] = []
        for blocks in counts:
            t = _dask_times(client, "cumsum", m, m // blocks, repeat)
            per.append((blocks, t[0], t[1]))
            lines.append(f"| {blocks} | {t[0] * 1e3:.1f} | {t[1] * 1e3:.1f} |")
            print(lines[-1], flush=True)
        (b0, m0, s0), (b1, m1, s1) = per[-2], per[-1]
        lines.append(f"| per block | {(m1 - m0) / (b1 - b0) * 1e3:.2f} | "
                     f"{(s1 - s0) / (b1 - b0) * 1e3:.2f} |")
        print(lines[-1], flush=True)
    return lines


ISA_HEAD = "## Kernel tables side by side"
ISA_ROUNDS = 3


def isa_cells(ops: Sequence[str], cases: Sequence[Tuple[Tuple[int, ...], int]]
              ) -> List[Dict[str, Any]]:
    """scanad's cells of the benchmark on the table SCANAD_ISA chose: the main
    table's out=, VJP and JVP, hvp where the op has a second-order kernel
    (inputs near 1, as in the second-order table), and linear_scan's forward
    out=, VJP and JVP; one dict per row, times in seconds."""
    rows = measure_rows(ops, [np.float32, np.float64], cases, frameworks=False)
    cells: List[Dict[str, Any]] = [
        {"op": r.name, "dtype": r.dtype, "where": f"{tuple(r.shape)}, {r.axis}",
         "out=": r.out, "VJP": r.vjp, "JVP": r.jvp} for r in rows]
    rng = np.random.default_rng(4)
    by_key = {(c["op"], c["dtype"], c["where"]): c for c in cells}
    for dtype in (np.float32, np.float64):
        for shape, axis in cases:
            x = np.exp(1e-3 * rng.standard_normal(shape)).astype(dtype)
            t = np.ones_like(x)
            for name in [n for n in ops if sa.OPS[n].shape == "curved"]:
                fn = sa.OPS[name].fn
                cell = by_key[(name, np.dtype(dtype).name, f"{shape}, {axis}")]
                cell["hvp"] = median_time(lambda: sa.hvp(fn, x, t, axis=axis))
            b = rng.standard_normal(shape).astype(dtype)
            dst, ones = copy_destination(b), np.ones_like(b)
            for kind in ("scalar", "same shape"):
                a = (np.asarray(0.999, dtype) if kind == "scalar"
                     else rng.uniform(0.9, 1.0, shape).astype(dtype))
                _, pullback = sa.vjp(sa.linear_scan, (a, b, None), axis=axis)
                cells.append({
                    "op": f"linear_scan, a {kind}", "dtype": np.dtype(dtype).name,
                    "where": f"{shape}, {axis}",
                    "out=": median_time(lambda: sa.linear_scan(a, b, axis, out=dst)),
                    "VJP": median_time(lambda: pullback(ones)),
                    "JVP": median_time(lambda: sa.jvp(sa.linear_scan, (a, b, None),
                                                      (None, ones, None), axis=axis))})
    return cells


def isa_rows(ops: Sequence[str], cases: Sequence[Tuple[Tuple[int, ...], int]]) -> None:
    """isa_cells, one JSON line per row after a line "rows:" (read by isa_table).
    glibc keeps freed memory first: page faults cost both tables alike, but
    they vary from one process to the next by more than the tables differ.
    A line "kept: 1" (or 0 where the allocator is not glibc) comes first."""
    kept = keep_freed_memory()
    cells = isa_cells(ops, cases)
    print(f"kept: {int(kept)}")
    print("rows:")
    for c in cells:
        print(json.dumps(c), flush=True)


ISA_MODES = ("out=", "VJP", "JVP", "hvp")
ISA_SLOWER = 1.05  # new / old above this: the newer table's cell is listed as slower


def isa_table(ops: Sequence[str], quick: bool, threads: int) -> List[str]:
    """Every supported kernel table but the baseline on scanad's cells
    (isa_cells), each in a child process (SCANAD_ISA is read at import); the
    best table's times against the next best's."""
    isas = [i for i in sa.build_info()["isas_supported"] if i != "baseline"]
    if len(isas) < 2:
        return [f"This host runs only {', '.join(isas) or 'the baseline'}: nothing to compare."]
    old, new = isas[-2], isas[-1]
    # the machine's speed drifts over minutes: each table runs in ISA_ROUNDS
    # child processes, the two alternated, and a cell is the median of its rounds
    runs: Dict[str, List[List[Dict[str, Any]]]] = {old: [], new: []}
    kept = True  # every child kept freed memory (no page faults)
    for r in range(ISA_ROUNDS):
        for isa in ((old, new) if r % 2 == 0 else (new, old)):
            cmd = [sys.executable, os.path.abspath(__file__), "--isa-rows", "--ops",
                   ",".join(ops), "--threads", str(threads)] + (["--quick"] if quick else [])
            out = subprocess.run(cmd, env=dict(os.environ, SCANAD_ISA=isa), check=True,
                                 capture_output=True, text=True).stdout
            head, body = out.split("rows:\n", 1)
            kept = kept and "kept: 1" in head
            runs[isa].append([json.loads(line) for line in body.splitlines()])
    times = {isa: [{mode: float(np.median([rows[i][mode] for rows in rounds]))
                    for mode in ISA_MODES if mode in rounds[0][i]}
                   for i in range(len(rounds[0]))]
             for isa, rounds in runs.items()}
    lines = [f"scanad's cells of the benchmark on the `{old}` and the `{new}` kernel table "
             f"(`SCANAD_ISA`, {ISA_ROUNDS} child processes each, the two tables "
             f"alternated; a cell is the median of its {ISA_ROUNDS}; "
             + ("glibc keeps freed memory, so no output is page-faulted" if kept
                else "page faults included: the allocator is not glibc")
             + "): the main table's "
             "`out=`, VJP and JVP, `hvp` where the op has a second-order kernel (inputs "
             "near 1, cotangent and tangent all ones) and linear_scan's forward `out=`, VJP "
             f"and JVP. ms, and `{new}` / `{old}`: below 1 the `{new}` table is faster.", "",
             "| op | dtype | shape, axis | " + " | ".join(
                 f"{m} {isa}" for m in ISA_MODES for isa in (old, new)) + " |",
             "|" + "---|" * (3 + 2 * len(ISA_MODES))]
    slower = []
    for c, t_old, t_new in zip(runs[old][0], times[old], times[new]):
        cells = [c["op"], c["dtype"], c["where"]]
        for mode in ISA_MODES:
            if mode not in t_old:
                cells += ["", ""]
                continue
            cells += [f"{t_old[mode] * 1e3:.2f}", fmt(t_new[mode], t_old[mode])]
            if t_new[mode] > ISA_SLOWER * t_old[mode]:
                slower.append(f"{c['op']} {c['dtype']} {c['where']} {mode}: "
                              f"{t_new[mode] / t_old[mode]:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    lines += ["", f"Cells where `{new}` took more than {ISA_SLOWER}x `{old}`'s time: "
              + ("; ".join(slower) if slower else "none") + "."]
    print(lines[-1], flush=True)
    return lines


def section_span(text: str, head: str) -> Optional[Tuple[int, int]]:
    """Where the section titled ``head`` starts in text and where the next
    ``## `` section (or the text) begins; None if there is none."""
    start = text.find(head)
    if start < 0:
        return None
    stop = text.find("\n## ", start + len(head))
    return start, stop if stop >= 0 else len(text)


def read_section(path: str, head: str) -> Optional[str]:
    """The section titled ``head`` in path, or None."""
    text = open(path).read() if os.path.exists(path) else ""
    span = section_span(text, head)
    return None if span is None else text[span[0]:span[1]].rstrip("\n") + "\n"


def replace_section(path: str, head: str, body: List[str], full_run_keeps: bool = True
                    ) -> None:
    """Replace the section titled ``head`` in path, or append it; a line under
    the title says when, from which commit and whether the full run keeps it."""
    text = open(path).read() if os.path.exists(path) else ""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    fate = ("the full run keeps this section as it is" if full_run_keeps
            else "the full run measures this section again")
    section = (head + "\n\n" + f"Measured {when}, commit {git_commit()}; {fate}.\n\n"
               + "\n".join(body) + "\n")
    span = section_span(text, head)
    if span is None:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    else:
        text = text[:span[0]] + section + text[span[1]:]
    with open(path, "w") as f:
        f.write(text)
    print(f"{head[3:]} written into {path}")


def main(argv: Optional[List[str]] = None) -> int:
    """Measure every table and write results.md and the plot (see the module
    docstring for the options)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke test")
    p.add_argument("--headline", action="store_true", help="only the README's table, printed")
    p.add_argument("--linear", action="store_true",
                   help="only the linear_scan and adapter tables, printed")
    p.add_argument("--adapters", action="store_true", help="only the adapter table, printed")
    p.add_argument("--dask", action="store_true",
                   help="only the scanad.dask table, printed and written into --out")
    p.add_argument("--isas", action="store_true",
                   help="only the kernel tables side by side, printed and written into --out")
    p.add_argument("--second", action="store_true",
                   help="only the second-order table, printed and written into --out")
    p.add_argument("--isa-rows", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ops", default=",".join(SCANS))
    p.add_argument("--out", default=None,
                   help="results file (default benchmarks/results.md; --quick: a temp file)")
    p.add_argument("--plot", default=None,
                   help="PNG of the size sweep (default benchmarks/results.png; --quick: a "
                        "temp file; '' for none; needs matplotlib)")
    p.add_argument("--readme", default=None, help="also put the headline table into this file")
    args = p.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    tmp = tempfile.gettempdir()
    if args.out is None:
        args.out = (os.path.join(tmp, "scanad-quick-results.md") if args.quick
                    else os.path.join(here, "results.md"))
    if args.plot is None:
        args.plot = (os.path.join(tmp, "scanad-quick-results.png") if args.quick
                     else os.path.join(here, "results.png"))

    sa.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    jax_note = load_jax(args.threads)
    ops = [o for o in args.ops.split(",") if o]
    if args.quick:
        cases = [((1 << 16,), 0), ((256, 256), 0), ((256, 256), 1)]
    else:
        cases = [((1 << 24,), 0), ((4096, 4096), 0), ((4096, 4096), 1), ((256, 256, 256), 1)]
    head = header(args, jax_note)
    print("\n".join(head[4:]), flush=True)
    headline_note = ("scanad's `out=` call against `np.copyto` into an existing array; NumPy, "
                     "torch and JAX (which allocate their results) against scanad's allocating "
                     "call: how many times slower they are.")

    if args.headline:
        rows = measure_rows([o for o in HEADLINE_OPS if o in ops], [np.float32], cases[:2],
                            derivatives=False)
        table = headline_table(rows)
        print()
        print("\n".join(table))
        if args.readme:
            replace_headline(args.readme, table)
        return 0

    if args.isa_rows:
        isa_rows(ops, cases)
        return 0

    if args.isas:
        print()
        table = isa_table(ops, args.quick, args.threads)
        replace_section(args.out, ISA_HEAD, table)
        return 0

    if args.dask:
        print()
        table = dask_table(args.quick)
        replace_section(args.out, DASK_HEAD, table)
        return 0

    if args.second:
        print()
        table = second_order_table(ops, args.quick)
        replace_section(args.out, SECOND_HEAD, [SECOND_NOTE, ""] + table, full_run_keeps=False)
        return 0

    if args.linear or args.adapters:
        if args.linear:
            print()
            linear_table(args.quick)
        print()
        adapter_table(args.quick)
        return 0

    if not args.quick:
        warm_memory()
    lines = head + ["", "## Every op: forward, derivatives, NumPy, torch"
                    + (", JAX" if jax is not None else ""), "",
                    "Times in ms; in brackets the ratio to `np.copyto` of the same array into an "
                    "existing one (VJP and JVP: to scanad's allocating forward, since they "
                    "allocate their results too). `VJP` times the pullback alone, `JVP` the "
                    "whole `jvp` call; cotangent and tangent are all ones.", ""]
    rows = measure_rows(ops, [np.float32, np.float64], cases)
    hl = headline_table(headline_rows(rows, cases))
    lines += op_table(rows)
    lines += ["", "## Headline (the README's table)", "", headline_note, ""] + hl

    lines += ["", "## Chunk cumsums of linear attention (float32, chunk 64)", "",
              "scanad with `out=` against `np.copyto`, the allocating call against "
              "`g.copy()`; NumPy, torch and JAX against `np.copyto`. `varlen`: 8 sequences "
              "of random lengths packed into one (`cu_seqlens`).", ""]
    lines += chunk_table(args.quick)

    lines += ["", "## linear_scan: h[t] = a[t] h[t-1] + b[t]", "",
              "`forward out=` against `np.copyto` of b; the allocating forward against the same "
              "copy; JVP (tangent of b), VJP (the pullback alone, cotangents of a and b) and the "
              "other paths against scanad's allocating forward. `a` is a scalar (0.999: an EMA) "
              "or has b's shape (uniform in [0.9, 1]). lfilter takes a scalar `a` only; the JAX "
              "columns are jitted `jax.lax.scan` and `jax.lax.associative_scan`.", ""]
    lines += linear_table(args.quick)

    lines += ["", "## Inside the frameworks: the adapters' overhead", "",
              "float32, one thread. scanad's own forward and pullback on the NumPy array, "
              "against the same through `scanad.torch` (forward and `backward`) and "
              "`scanad.jax` (a jitted `jax.grad` of the sum), and the frameworks' own ops "
              "the same way; in brackets the ratio to scanad's own.", ""]
    lines += adapter_table(args.quick)

    drawn = f" Drawn in `{os.path.basename(args.plot)}`." if args.plot else ""
    lines += ["", "## Size sweep (float32, 1-D)", "",
              "ns per element; scanad with `out=`." + drawn, ""]
    sweep, exps, curves = size_sweep(ops, args.quick)
    lines += sweep
    if args.plot:
        title = (f"scanad {sa.build_info()['isa']}, {cpu_model()}, {args.threads} thread(s)"
                 + (" [--quick]" if args.quick else ""))
        print(plot_sweep(args.plot, ops, exps, curves, title), flush=True)

    lines += ["", SECOND_HEAD, "", SECOND_NOTE, ""]
    lines += second_order_table(ops, args.quick)

    lines += ["", "## One thread against two (scanad)", "",
              "Lines are split between threads; one long float32/float64 line is scanned "
              "in pieces from carries (a cumprod line whose partial products leave 2^+-90, as "
              "normal data's do, stays on one thread).", ""]
    threads = thread_lines(args.quick)
    lines += threads
    print("\n".join(threads), flush=True)

    # last: it changes how the rest of the process allocates
    lines += ["", "## Derivatives without page faults (scanad)", "",
              "The allocating forward and both derivatives again, with glibc keeping freed "
              "memory (`mallopt`), so no result is page-faulted: the kernels' own cost.", ""]
    lines += steady_table(ops, cases)

    # the sections only their own options measure (too slow for this run)
    kept = [read_section(args.out, h) for h in (DASK_HEAD, ISA_HEAD)]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
        for section in kept:
            if section is not None:
                f.write("\n" + section)
    print(f"written to {args.out}")
    if args.readme:
        replace_headline(args.readme, hl)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
