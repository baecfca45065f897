"""What this build and machine run: fastlenet.show_config()."""
from __future__ import annotations

import os
import platform
import sys

from fastlenet import _engine
from fastlenet._version import __version__


def show_config(file=None):
    """Print what this build and machine run: ISA chosen and available, OpenMP, threads."""
    lines = [
        f"fastlenet {__version__} on {platform.machine()} ({platform.system()}), "
        f"Python {platform.python_version()}",
        f"ISA: {_engine.default_isa()} (detected {_engine.detected_isa()}; available: "
        f"{', '.join(_engine.available_isas())}; "
        f"FASTLENET_ISA={os.environ.get('FASTLENET_ISA', '')!r})",
        f"int8 kernels: {_engine.int8_kernels()} (AVX512-VNNI+VBMI: "
        f"{'yes' if _engine.cpu_vnni()[0] else 'no'}, AMX-INT8: "
        f"{'yes' if _engine.cpu_amx() else 'no'}, AVX-VNNI: "
        f"{'yes' if _engine.cpu_vnni()[1] else 'no'}; without AVX512-VNNI int8 runs the scalar "
        f"specification; FASTLENET_INT8={os.environ.get('FASTLENET_INT8', '')!r})",
        f"OpenMP: {'yes' if _engine.HAS_OPENMP else 'no (single-threaded build)'}",
        f"default threads: {_engine.DEFAULT_THREADS}",
    ]
    print("\n".join(lines), file=file or sys.stdout)
