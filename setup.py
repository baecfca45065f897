"""Builds fastlenet._engine: fastlenet/_engine.pyx plus the C engine in csrc/.

The extension is compiled for the baseline ISA of the target; AVX2/AVX-512 code is confined to
csrc/kernels/avx2.c and avx512.c by target pragmas and chosen at run time, so no -march flag is
needed. FASTLENET_NATIVE=1 adds -march=native for a local experiment only.
OpenMP is used when the compiler accepts -fopenmp (probed below); otherwise the engine builds
single-threaded and says so.
FASTLENET_DEBUG=1 turns Cython's bounds and initialization checks back on.
"""
import os
import shutil
import sys
import tempfile
import warnings
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _compiler_accepts(compiler, flags, code):
    tmp = tempfile.mkdtemp(prefix="fastlenet-probe-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=flags)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPENMP_PROBE = """
#include <omp.h>
int main(void) {
    int n = 0;
#pragma omp parallel num_threads(2) reduction(+ : n)
    n += omp_get_num_threads() > 0;
    return n > 0 ? 0 : 1;
}
"""


class BuildExt(build_ext):
    def build_extensions(self):
        # GCC-style flags for gcc/clang, including MinGW-w64 on Windows ("mingw32"); MSVC's
        # own otherwise (MSVC lacks the vector extensions: it builds the scalar level only).
        unix = self.compiler.compiler_type in ("unix", "mingw32", "cygwin")
        cflags = ["-O3", "-std=gnu11", "-fno-math-errno"] if unix else ["/O2"]
        native = os.environ.get("FASTLENET_NATIVE") == "1" and unix
        cflags += ["-march=native"] if native else []  # opt-in only: FASTLENET_NATIVE=1
        omp = ["-fopenmp"] if unix else ["/openmp"]
        if os.environ.get("FASTLENET_NO_OPENMP") != "1" and _compiler_accepts(
            self.compiler, omp, OPENMP_PROBE
        ):
            cflags += omp
            ldflags = omp
        else:
            ldflags = []
            warnings.warn(
                "fastlenet: the C compiler does not support OpenMP (-fopenmp); building a "
                "single-threaded engine. Install a compiler with OpenMP (e.g. gcc, or "
                "clang with libomp) and rebuild for multi-threaded inference.",
                stacklevel=1,
            )
            print("WARNING: fastlenet is built WITHOUT OpenMP: single-threaded.", file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args = cflags
            ext.extra_link_args = ldflags
        super().build_extensions()


debug = os.environ.get("FASTLENET_DEBUG") == "1"
directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": debug,
    "initializedcheck": debug,
    "cdivision": True,
    "embedsignature": True,
}

ext = Extension(
    "fastlenet._engine",
    sources=["fastlenet/_engine.pyx"] + sorted(glob("csrc/*.c")) + sorted(glob("csrc/kernels/*.c")),
    include_dirs=["csrc", np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    depends=sorted(glob("csrc/*.h")) + sorted(glob("csrc/kernels/*.h")) + sorted(glob("fastlenet/*.pxi")),
)

setup(
    ext_modules=cythonize([ext], compiler_directives=directives),
    cmdclass={"build_ext": BuildExt},
)
