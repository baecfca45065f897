"""fastlenet: LeNet-5 inference on the CPU, fast.

    import fastlenet
    net = fastlenet.pretrained()          # or fastlenet.load("weights.npz")
    net.predict(batch)                    # (N,) class indices

See README.md for the input rules and the whole API.
"""
from __future__ import annotations

import os as _os
from typing import Any

from fastlenet import loader, reference
from fastlenet._engine import (
    DEFAULT_THREADS,
    HAS_OPENMP,
    InputRangeWarning,
    Net,
    available_isas,
    default_isa,
    detected_isa,
)
from fastlenet.formats import FormatError

__version__ = "0.1.0"
__all__ = ["Net", "load", "pretrained", "reference", "show_config", "available_isas",
           "FormatError", "InputRangeWarning", "predict_files", "preprocess", "Prediction",
           "__version__"]


PRETRAINED_PATH = __import__("pathlib").Path(__file__).parent / "pretrained" / "lenet5_mnist.npz"


def pretrained(**kwargs: Any) -> Net:
    """The bundled LeNet-5 trained on MNIST (see fastlenet/pretrained/README.md): takes raw MNIST
    digits (uint8 28x28, light on dark) as they are; its metadata carries the normalization."""
    return Net.from_npz(PRETRAINED_PATH, **kwargs)


def load(path: str | _os.PathLike[str], **kwargs: Any) -> Net:
    """Load LeNet-5 weights from a file (.npz, .onnx): ``Net.from_npz(path, **kwargs)``.

    Files are untrusted input: read within a size budget, never unpickled. Raises OSError when
    the file cannot be opened, FormatError (a ValueError) when it is not LeNet-5 weights fastlenet
    can read, naming the file, what was expected and what was found; ImportError when an .onnx
    file needs the missing `onnx` package."""
    return Net.from_npz(path, **kwargs)


def show_config(file=None):
    """Print what this build and machine run: ISA chosen and available, OpenMP, threads."""
    import os
    import platform
    import sys

    lines = [
        f"fastlenet {__version__} on {platform.machine()} ({platform.system()}), "
        f"Python {platform.python_version()}",
        f"ISA: {default_isa()} (detected {detected_isa()}; available: "
        f"{', '.join(available_isas())}; FASTLENET_ISA={os.environ.get('FASTLENET_ISA', '')!r})",
        f"OpenMP: {'yes' if HAS_OPENMP else 'no (single-threaded build)'}",
        f"default threads: {DEFAULT_THREADS}",
    ]
    print("\n".join(lines), file=file or sys.stdout)


def __getattr__(name):
    # The file pipeline loads on first use, so that `import fastlenet` stays light.
    if name in ("predict_files", "preprocess", "Prediction"):
        from fastlenet import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'fastlenet' has no attribute {name!r}")
