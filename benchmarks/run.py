"""scanad benchmark runner.

    python benchmarks/run.py [--quick] [--threads N] [--ops cumsum,cummax]
                             [--out benchmarks/results.md] [--plot benchmarks/results.png]

Every scan, its VJP (the pullback alone) and JVP, float32 and float64, on the
issue's shapes; NumPy and torch (same thread count) beside it; each time also as
a ratio to ``np.copyto`` of the same array measured in the same run (21 runs of
the copy, since every ratio in its row divides by it).  scanad
writes into a preallocated ``out=`` like the copy does.  Medians of 7 runs
after a warm-up.  Timings are reported, never asserted.

A last table times the allocating forward and the derivatives again with
glibc keeping freed memory, so that no output is page-faulted: on a virtual
machine a fresh page can cost the guest's zeroing and the host's fault, which
weighs most on the JVP (two fresh outputs against the forward's one).
"""

from __future__ import annotations

import argparse
import ctypes
import platform
from typing import Callable, List, Optional, Tuple

import numpy as np

import scanad as sa
from scanad.__main__ import NUMPY_OPS
from scanad.__main__ import _median_time as median_time
from scanad._registry import SCANS

try:
    import torch
except ImportError:  # torch is optional here
    torch = None

def torch_call(name: str, x: np.ndarray, axis: int) -> Optional[Callable[[], object]]:
    if torch is None:
        return None
    t = torch.from_numpy(x)
    fn = getattr(torch, name)
    return lambda: fn(t, axis)


def fmt(t: Optional[float], ref: float) -> str:
    return "n/a" if t is None else f"{t * 1e3:.2f} ({t / ref:.1f}x)"


def forward_and_derivative_times(fn: Callable, x: np.ndarray, axis: int,
                                 repeat: int) -> Tuple[float, float, float]:
    """The allocating forward, the pullback alone and the JVP (cotangent and
    tangent all ones), in seconds."""
    t_new = median_time(lambda: fn(x, axis=axis), repeat)
    y, pullback = sa.vjp(fn, x, axis=axis)
    g = np.ones_like(y)
    t_vjp = median_time(lambda: pullback(g), repeat)
    t_jvp = median_time(lambda: sa.jvp(fn, x, g, axis=axis), repeat)
    return t_new, t_vjp, t_jvp


def op_table(ops: List[str], cases: list, repeat: int) -> List[str]:
    rows = ["| op | dtype | shape, axis | copy ms | scanad out= | scanad alloc | VJP (x alloc fwd) "
            "| JVP (x alloc fwd) | NumPy | torch |", "|" + "---|" * 10]
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for shape, axis in cases:
            x = rng.standard_normal(shape).astype(dtype)
            dst = np.empty_like(x)
            # every ratio in the row divides by this one, so it gets more runs
            t_copy = median_time(lambda: np.copyto(dst, x), 3 * repeat)
            for name in ops:
                fn = sa.OPS[name].fn
                t_out = median_time(lambda: fn(x, axis=axis, out=dst), repeat)
                t_new, t_vjp, t_jvp = forward_and_derivative_times(fn, x, axis, repeat)
                t_np = median_time(lambda: NUMPY_OPS[name](x, axis), repeat)
                tc = torch_call(name, x, axis)
                t_torch = None if tc is None else median_time(tc, repeat)
                rows.append(
                    f"| {name} | {np.dtype(dtype).name} | {shape}, {axis} | {t_copy * 1e3:.2f} "
                    f"| {fmt(t_out, t_copy)} | {fmt(t_new, t_copy)} "
                    f"| {fmt(t_vjp, t_new)} | {fmt(t_jvp, t_new)} "
                    f"| {fmt(t_np, t_copy)} | {fmt(t_torch, t_copy)} |")
                print(rows[-1], flush=True)
    return rows


def chunk_table(repeat: int, quick: bool) -> List[str]:
    rows = ["| chunk op | shape | copyto ms | scanad out= (x copyto) | copy() ms "
            "| scanad alloc (x copy()) | NumPy pad+reshape | torch reshape |",
            "|" + "---|" * 8]
    rng = np.random.default_rng(1)
    shapes = [(8, 1024, 16)] if quick else [(8, 4096, 16), (8, 4096, 16, 64)]
    C = 64
    for shape in shapes:
        g = rng.standard_normal(shape).astype(np.float32)
        dst = np.empty_like(g)
        t_copy = median_time(lambda: np.copyto(dst, g), repeat)
        t_alloc = median_time(lambda: g.copy(), repeat)
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

        packed = g.reshape((1, B * T) + tail)
        pdst = dst.reshape(packed.shape)
        cu = np.concatenate([[0], np.sort(rng.choice(np.arange(1, B * T), B - 1,
                                                     replace=False)), [B * T]])
        cases = [
            ("local dense", lambda **k: sa.chunk_local_cumsum(g, C, **k), dst, np_local,
             torch_local if torch is not None else None),
            ("global dense", lambda **k: sa.chunk_global_cumsum(g, **k), dst,
             lambda: np.cumsum(g, axis=1),
             (lambda: torch.cumsum(torch.from_numpy(g), 1)) if torch is not None else None),
            ("local varlen", lambda **k: sa.chunk_local_cumsum(packed, C, cu_seqlens=cu, **k),
             pdst, None, None),
            ("global varlen", lambda **k: sa.chunk_global_cumsum(packed, cu_seqlens=cu, **k),
             pdst, None, None),
        ]
        for label, f_sa, out, f_np, f_t in cases:
            t_out = median_time(lambda: f_sa(out=out), repeat)
            t_new = median_time(f_sa, repeat)
            t_np = None if f_np is None else median_time(f_np, repeat)
            t_t = None if f_t is None else median_time(f_t, repeat)
            rows.append(f"| {label} | {shape} | {t_copy * 1e3:.2f} | {fmt(t_out, t_copy)} "
                        f"| {t_alloc * 1e3:.2f} | {fmt(t_new, t_alloc)} "
                        f"| {fmt(t_np, t_copy)} | {fmt(t_t, t_copy)} |")
            print(rows[-1], flush=True)
    return rows


def size_sweep(ops: List[str], repeat: int, quick: bool, plot: Optional[str]) -> List[str]:
    """ns per element against size, float32 1-D, for each op, NumPy and torch."""
    exps = list(range(10, 21, 2)) if quick else list(range(10, 27, 2))
    rows = ["| op | " + " | ".join(f"2^{e}" for e in exps) + " |",
            "|" + "---|" * (len(exps) + 1)]
    rng = np.random.default_rng(3)
    curves = {}
    for name in ["copy"] + ops:
        for impl in (("copy",) if name == "copy" else ("scanad", "NumPy", "torch")):
            ns = []
            for e in exps:
                x = rng.standard_normal(1 << e).astype(np.float32)
                dst = np.empty_like(x)
                if impl == "copy":
                    f = lambda: np.copyto(dst, x)  # noqa: E731
                elif impl == "scanad":
                    f = lambda: sa.OPS[name].fn(x, out=dst)  # noqa: E731
                elif impl == "NumPy":
                    f = lambda: NUMPY_OPS[name](x, 0)  # noqa: E731
                else:
                    f = torch_call(name, x, 0)
                ns.append(None if f is None else median_time(f, repeat) / x.size * 1e9)
            label = name if impl == "copy" else f"{name} ({impl})"
            curves[label] = ns
            rows.append(f"| {label} | " + " | ".join("n/a" if v is None else f"{v:.2f}"
                                                      for v in ns) + " |")
            print(rows[-1], flush=True)
    if plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot")
            return rows
        fig, axes = plt.subplots(1, len(ops), figsize=(4 * len(ops), 3.5), sharey=True,
                                 squeeze=False)
        for ax, name in zip(axes[0], ops):
            for label, ns in curves.items():
                if label == "copy" or label.startswith(name + " "):
                    pts = [(1 << e, v) for e, v in zip(exps, ns) if v is not None]
                    ax.loglog(*zip(*pts), marker="o", label=label)
            ax.set_title(f"{name}, float32 1-D")
            ax.set_xlabel("elements")
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("ns per element")
        fig.tight_layout()
        fig.savefig(plot, dpi=100)
        print(f"plot written to {plot}")
    return rows


def thread_lines(repeat: int, quick: bool) -> List[str]:
    """1 vs 2 kernel threads: lines split between threads (logcumsumexp of 64
    rows) and one long line scanned in pieces from carries (every scan)."""
    n = sa.get_num_threads()
    out = []

    def both(fn: Callable[[], object]) -> tuple:
        sa.set_num_threads(1)
        t1 = median_time(fn, repeat)
        sa.set_num_threads(2)
        t2 = median_time(fn, repeat)
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


def steady_table(ops: List[str], cases: list, repeat: int) -> List[str]:
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
                t_new, t_vjp, t_jvp = forward_and_derivative_times(sa.OPS[name].fn, x, axis,
                                                                   repeat)
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


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small shapes, for a smoke test")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ops", default=",".join(SCANS))
    p.add_argument("--out", default="benchmarks/results.md")
    p.add_argument("--plot", default="benchmarks/results.png",
                   help="PNG of the size sweep (needs matplotlib; '' for none)")
    args = p.parse_args(argv)
    sa.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    ops = [o for o in args.ops.split(",") if o]
    repeat = 7
    if args.quick:
        cases = [((1 << 18,), 0), ((512, 512), 0), ((512, 512), 1)]
    else:
        warm_memory()
        cases = [((1 << 24,), 0), ((4096, 4096), 0), ((4096, 4096), 1), ((256, 256, 256), 1)]
    head = (f"scanad {sa.__version__} {sa.build_info()['isa']}, NumPy {np.__version__}, "
            f"torch {getattr(torch, '__version__', 'n/a')}, {args.threads} thread(s), "
            f"{platform.processor() or platform.machine()}")
    print(head)
    lines = [head, ""] + op_table(ops, cases, repeat) + [""] + chunk_table(repeat, args.quick)
    lines += ["", "ns per element, float32 1-D:", ""]
    lines += size_sweep(ops, repeat, args.quick, args.plot)
    threads = thread_lines(repeat, args.quick)
    lines += [""] + threads
    print("\n".join(threads))
    # last: it changes how the rest of the process allocates
    lines += ["", "Steady state (no page faults: glibc keeps freed memory for the next "
              "output), scanad alone:", ""]
    lines += steady_table(ops, cases, repeat)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
