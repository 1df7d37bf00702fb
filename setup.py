"""Builds scanad's C extension.

Portable baseline code plus AVX2 and AVX-512 variants chosen at import
(csrc/dispatch.c); never -march=native.  SCANAD_SANITIZE=1 builds with
AddressSanitizer and UndefinedBehaviorSanitizer for CI.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCES = [
    "csrc/module.c",
    "csrc/binding_args.c",
    "csrc/binding_output.c",
    "csrc/binding_info.c",
    "csrc/bind_scan.c",
    "csrc/bind_linear_scan.c",
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
# bound by them (docs/performance.md, "cumprod derivatives on lines").
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



class build_ext_beside_sources(build_ext):
    """Builds the sources in parallel, then also copies the extension into the
    source package.

    ``python -m scanad`` run from a checkout's root imports ``./scanad`` (the
    current directory comes first on ``sys.path``), so after ``pip install .``
    the checkout must hold the same extension the installed package has.
    """

    def build_extensions(self) -> None:
        # the ISA variants are large independent units: compile them side by side
        compile_serial = self.compiler.compile

        def compile_parallel(sources, *args, **kwargs):
            with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
                parts = pool.map(lambda s: compile_serial([s], *args, **kwargs), sources)
                return [obj for objects in parts for obj in objects]

        self.compiler.compile = compile_parallel
        super().build_extensions()

    def run(self) -> None:
        super().run()
        if self.inplace:
            return
        for ext in self.extensions:
            built = self.get_ext_fullpath(ext.name)
            self.inplace = True
            try:
                beside_sources = self.get_ext_fullpath(ext.name)
            finally:
                self.inplace = False
            package_dir = os.path.dirname(beside_sources)
            # only a source checkout (not, say, an unpacked sdist in a read-only place)
            if os.path.isfile(os.path.join(package_dir, "__init__.py")) and os.access(
                    package_dir, os.W_OK):
                self.copy_file(built, beside_sources)


setup(
    cmdclass={"build_ext": build_ext_beside_sources},
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
