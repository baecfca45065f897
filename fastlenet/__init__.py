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


# The bundled models by name (fastlenet/pretrained/README.md is their card); the first is the
# default. "digits": MNIST + printed digits from many fonts, augmented like scans; "mnist":
# 0.1.0's model, MNIST alone.
PRETRAINED = {"digits": "lenet5_digits.npz", "mnist": "lenet5_mnist.npz"}
PRETRAINED_PATH = __import__("pathlib").Path(__file__).parent / "pretrained" / PRETRAINED["digits"]


def pretrained(name: str = "digits", **kwargs: Any) -> Net:
    """A bundled LeNet-5 by name (see fastlenet/pretrained/README.md): "digits" (the default)
    reads handwriting and printed digits in many fonts from scans and files; "mnist" is the
    0.1.0 model, trained on MNIST alone. Both take raw MNIST digits (uint8 28x28, light on dark)
    as they are, and image files through fastlenet.predict_files / fastlenet.preprocess; the
    metadata carries the normalization and what the model was trained on. kwargs go to
    Net.from_npz (e.g. num_threads)."""
    if not isinstance(name, str) or name not in PRETRAINED:
        raise ValueError(f"pretrained: name must be one of {', '.join(map(repr, PRETRAINED))}; "
                         f"got {name!r}")
    return Net.from_npz(PRETRAINED_PATH.with_name(PRETRAINED[name]), **kwargs)


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
