"""Builds scanad's C extension.

Portable baseline code plus AVX2 and AVX-512 variants chosen at import
(csrc/dispatch.c); never -march=native.  SCANAD_SANITIZE=1 builds with
AddressSanitizer and UndefinedBehaviorSanitizer for CI.
"""

import os
import sys

import numpy as np
from setuptools import Extension, setup

SOURCES = [
    "csrc/module.c",
    "csrc/driver.c",
    "csrc/threads.c",
    "csrc/dispatch.c",
    "csrc/isa_baseline.c",
    "csrc/isa_avx2.c",
    "csrc/isa_avx512.c",
]

# -fno-trapping-math: FP results stay IEEE; it only lets the compiler if-convert
# the selects in the kernels (vmath.h), which is what makes them vectorise.
# -ffp-contract=fast: a * b + c may become one fused multiply-add where the
# target has it (AVX2, AVX-512, aarch64), which ISO C mode (-std=c11) turns
# off; one rounding instead of two, and fewer instructions where a kernel is
# bound by them (the float64 cumprod JVP of a line: 1.42 -> 1.28 ns per
# element in cache, 24.3 -> 23.3 ms for 2^24 elements).
compile_args = ["-std=c11", "-O3", "-fno-trapping-math", "-ffp-contract=fast", "-Wall", "-Wextra",
                "-fvisibility=hidden"]
link_args = []
libraries = []
if sys.platform != "win32":
    libraries = ["m"]
    link_args.append("-pthread")
    compile_args.append("-pthread")
# -O2 under the sanitizers: close to the -O3 code that ships (inlining,
# vectorised loops), where -O1 would check code that is not run anywhere else.
if os.environ.get("SCANAD_SANITIZE") == "1":
    sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                "-fno-sanitize-recover=undefined", "-O2", "-g"]
    compile_args += sanitize
    link_args += sanitize
if os.environ.get("SCANAD_WERROR") == "1":
    compile_args.append("-Werror")

setup(
    ext_modules=[
        Extension(
            "scanad._scanad",
            sources=SOURCES,
            include_dirs=[np.get_include(), "csrc"],
            depends=[os.path.join(root, f) for root, _, files in os.walk("csrc") for f in files],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            libraries=libraries,
        )
    ]
)
