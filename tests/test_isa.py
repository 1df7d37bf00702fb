"""Kernel tables: SCANAD_ISA / SCANAD_FORCE_BASELINE at import, and agreement
between every table this host can run.

The table is chosen once, when the extension is imported, so every case runs
in a fresh interpreter (``sys.executable -c ...`` with its own environment).

The tables compile the same C source for different targets.  With no FMA in
the baseline and FMA in avx2/avx512 (``-ffp-contract=fast`` and vmath.h's
explicit ``VM_FMA``), results that involve a multiply feeding an add may
differ in the last bits; everything else is the same arithmetic in the same
order (vector extensions of fixed width, no reassociation), so it must agree
bit for bit:

* bitwise: cumsum (forward, VJP, JVP, VJP_JVP: additions only), cummax/cummin
  (all modes: compares, selects and the VJPs' additions), the cumprod forward
  of real dtypes (multiplications only), and every first-order float16
  result (float32/float64 arithmetic rounded to 11 bits); the float16 second
  order of cumprod and logcumsumexp within one half ulp;
* within a few ulp: cumprod's VJP/JVP/VJP_JVP and complex forward (products
  added to products) and logcumsumexp (exp/log polynomials and the sums they
  feed).
  Measured on AMD Zen (baseline against avx2): float64/complex128 up to
  6e-15 relative in the forwards and 3e-13 of an element (7e-14 of the
  largest) in the derivatives; float32/complex64 came out bitwise (double
  arithmetic rounded to float), but a near-tie may round apart, so they are
  held to 2 ulp.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

import scanad as sa

pytestmark = pytest.mark.quick

ROOT = Path(__file__).resolve().parent.parent
ALL_ISAS = ("baseline", "avx2", "avx512")
SUPPORTED: List[str] = list(sa.build_info()["isas_supported"])
UNSUPPORTED = [isa for isa in ALL_ISAS if isa not in SUPPORTED]


def _run(code: str, *args: str, **env: Optional[str]) -> subprocess.CompletedProcess:
    """Runs code (with args as sys.argv[1:]) in a fresh interpreter importing
    this tree's scanad, with the ISA variables taken from env only (None: unset)."""
    full = {k: v for k, v in os.environ.items()
            if k not in ("SCANAD_ISA", "SCANAD_FORCE_BASELINE")}
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get(
        "PYTHONPATH")] if p])
    full.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([sys.executable, "-c", code, *args], env=full, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def _info(**env: Optional[str]) -> Dict[str, object]:
    proc = _run("import json, scanad; print(json.dumps(scanad.build_info()))", **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _import_error(**env: Optional[str]) -> str:
    """The ImportError message of `import scanad` under env."""
    code = ("try:\n    import scanad\nexcept ImportError as e:\n    print(e)\n"
            "else:\n    raise SystemExit('imported with ' + scanad.build_info()['isa'])")
    proc = _run(code, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def test_supported_list_is_ordered_and_holds_the_default() -> None:
    assert SUPPORTED[0] == "baseline"
    assert SUPPORTED == [isa for isa in ALL_ISAS if isa in SUPPORTED]
    info = _info()
    assert info["isas_supported"] == SUPPORTED
    assert info["isa"] == SUPPORTED[-1]  # the best, without SCANAD_ISA


@pytest.mark.parametrize("isa", SUPPORTED)
def test_each_supported_table_imports_and_reports_itself(isa: str) -> None:
    info = _info(SCANAD_ISA=isa)
    assert info["isa"] == isa
    assert info["isas_supported"] == SUPPORTED


def test_empty_isa_means_default() -> None:
    assert _info(SCANAD_ISA="")["isa"] == SUPPORTED[-1]


@pytest.mark.parametrize("name", ["sse2", "AVX2", "native", "avx-512", " baseline"])
def test_unknown_name_lists_the_valid_ones(name: str) -> None:
    msg = _import_error(SCANAD_ISA=name)
    assert f"SCANAD_ISA={name}" in msg and "not a kernel table" in msg, msg
    assert "baseline, avx2, avx512" in msg, msg


@pytest.mark.skipif(not UNSUPPORTED, reason="this host runs every table")
@pytest.mark.parametrize("isa", UNSUPPORTED)
def test_table_the_host_cannot_run_is_refused_with_the_reason(isa: str) -> None:
    msg = _import_error(SCANAD_ISA=isa)
    assert msg.startswith(f"scanad: SCANAD_ISA={isa} but "), msg
    # the missing CPU features by name, or the OS state that is not saved
    assert "this CPU lacks" in msg or "does not save" in msg or "not for x86-64" in msg, msg
    if "this CPU lacks" in msg:
        lacks = msg.split("this CPU lacks ")[1].split(";")[0].split("/")
        assert lacks and set(lacks) <= {"avx", "avx2", "fma", "f16c", "avx512f", "avx512dq",
                                        "avx512bw"}, msg
    assert "this host can run: " + ", ".join(SUPPORTED) in msg, msg


@pytest.mark.parametrize("value", ["1", "yes"])
def test_force_baseline_is_an_alias(value: str) -> None:
    assert _info(SCANAD_FORCE_BASELINE=value)["isa"] == "baseline"
    assert _info(SCANAD_FORCE_BASELINE=value, SCANAD_ISA="baseline")["isa"] == "baseline"


@pytest.mark.parametrize("value", ["0", ""])
def test_force_baseline_off(value: str) -> None:
    assert _info(SCANAD_FORCE_BASELINE=value)["isa"] == SUPPORTED[-1]
    assert _info(SCANAD_FORCE_BASELINE=value, SCANAD_ISA="baseline")["isa"] == "baseline"


@pytest.mark.parametrize("isa", [isa for isa in ALL_ISAS if isa != "baseline"])
def test_force_baseline_disagreeing_with_isa_is_an_error(isa: str) -> None:
    msg = _import_error(SCANAD_FORCE_BASELINE="1", SCANAD_ISA=isa)
    assert "SCANAD_FORCE_BASELINE=1" in msg and f"SCANAD_ISA={isa}" in msg, msg


# ---------- the same results from every table ----------

# (op, dtype, modes that must agree bit for bit; the others within RTOL ulp-ish)
_DTYPES = ("float16", "float32", "float64", "complex64", "complex128")
# float16 second order of cumprod/logcumsumexp: float32 products added to
# products (fused on avx2) may round to the neighbouring half: 2^-10
_RTOL = {"float16": 2.0**-10, "float32": 2.4e-7, "float64": 1e-14, "complex64": 2.4e-7,
         "complex128": 1e-14}

# Runs in each table's interpreter: every (op, dtype, case, mode) result, saved
# to an .npz.  Shapes cover the one-line kernels (1-D, long enough for the
# vector loops and their tails), lanes (axis 0) and reverse/exclusive scans.
_COMPUTE = r"""
import sys
import numpy as np
import scanad as sa
out = {}
rng = np.random.default_rng(2024)
rng2 = np.random.default_rng(2025)
cases = [((1003,), dict()), ((37, 61), dict(axis=0)), ((9, 130), dict(axis=1, reverse=True)),
         ((5, 7, 33), dict(axis=2, inclusive=False))]
for name in ("cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"):
    spec = sa.OPS[name]
    for dt in sys.argv[2].split(","):
        if dt not in spec.dtypes_derivative:
            continue
        for k, (shape, kw) in enumerate(cases):
            def draw():
                # cumprod: factors near 1 so that the products neither vanish nor overflow
                if name == "cumprod":
                    v = rng.uniform(0.8, 1.25, shape)
                else:
                    v = rng.standard_normal(shape)
                if dt.startswith("complex"):
                    v = v + 1j * rng.uniform(-0.3, 0.3, shape)
                return v.astype(dt)
            x, t, g = draw(), draw(), draw()
            y, pullback = sa.vjp(spec.fn, x, **kw)
            _, y_dot = sa.jvp(spec.fn, x, t, **kw)
            key = f"{name}|{dt}|{k}"
            out[key + "|forward"] = np.asarray(y)
            out[key + "|vjp"] = pullback(g.astype(np.asarray(y).dtype))
            out[key + "|jvp"] = y_dot
            # its own generator: the first-order cases keep their data
            g_dot = (rng2.standard_normal(shape) + (1j * rng2.uniform(-0.3, 0.3, shape)
                     if dt.startswith("complex") else 0)).astype(dt)
            x_bar, x_bar_dot = sa.vjp_jvp(spec.fn, x, g, t, g_dot, **kw)
            out[key + "|vjp_jvp"] = x_bar
            out[key + "|vjp_jvp_dot"] = x_bar_dot
np.savez(sys.argv[1], **out)
"""


def _bitwise(name: str, dtype: str, mode: str) -> bool:
    """Whether the tables must agree bit for bit (the module docstring)."""
    if name in ("cumsum", "cummax", "cummin"):
        return True
    if name == "cumprod":
        return mode == "forward" and not dtype.startswith("complex")
    return False


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Dict[str, np.ndarray]]:
    out = {}
    for isa in SUPPORTED:
        path = tmp_path_factory.mktemp("isa") / f"{isa}.npz"
        proc = _run(_COMPUTE, str(path), ",".join(_DTYPES), SCANAD_ISA=isa)
        assert proc.returncode == 0, proc.stderr
        with np.load(path) as z:
            out[isa] = {k: z[k] for k in z.files}
    return out


@pytest.mark.skipif(len(SUPPORTED) < 2, reason="one table on this host")
@pytest.mark.parametrize("isa", SUPPORTED[1:])
def test_tables_agree(results: Dict[str, Dict[str, np.ndarray]], isa: str) -> None:
    base, other = results["baseline"], results[isa]
    assert sorted(base) == sorted(other)
    assert len(base) > 100
    failures = []
    for key in sorted(base):
        name, dtype, _, mode = key.split("|")
        a, b = base[key], other[key]
        assert a.dtype == b.dtype and a.shape == b.shape, key
        if _bitwise(name, dtype, mode) or (dtype == "float16" and not mode.startswith("vjp_jvp")):
            # float16 results are rounded from float32 arithmetic: a last-bit
            # difference there would need a float32 difference at a rounding tie
            ok = np.array_equal(a.view(np.uint8), b.view(np.uint8))
        else:
            scale = np.maximum(np.abs(a), np.abs(b))
            if mode != "forward":
                # derivatives are sums of terms of either sign: relative to the largest term
                scale = np.maximum(scale, np.max(np.abs(a)))
            with np.errstate(invalid="ignore"):  # -inf - -inf where exclusive lse starts
                close = (a == b) | (np.abs(a - b) <= _RTOL[dtype] * scale)
            ok = bool(np.all(close | (np.isnan(a) & np.isnan(b))))
        if not ok:
            failures.append(key)
    assert not failures, failures
