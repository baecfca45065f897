"""The bundled models, and the one rule for turning a name or a file into a Net.

    fastlenet.pretrained()            the default bundled model ("digits")
    fastlenet.load("weights.npz")     any weights file fastlenet reads
    open_net("mnist") / open_net(path)   what --weights means: a bundled name or a file
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Optional

from fastlenet._engine import Net

# The bundled models by name (fastlenet/pretrained/README.md is their card); the first is the
# default. "digits": MNIST + printed digits from many fonts, augmented like scans; "mnist":
# 0.1.0's model, MNIST alone.
PRETRAINED = {"digits": "lenet5_digits.npz", "mnist": "lenet5_mnist.npz",
              # "digits" with an 11th class, "not a digit", for the fields search's bad cuts;
              # "fields2" the same recipe from another seed (the two read every candidate together);
              # "pairs" reads two touching digits at once (classes "00".."99", "not two digits");
              # "strips" is slid along a whole field (classes 0-9 and "between digits")
              "fields": "lenet5_fields.npz", "fields2": "lenet5_fields2.npz",
              "pairs": "lenet5_pairs.npz", "strips": "lenet5_strips.npz"}
PRETRAINED_PATH = pathlib.Path(__file__).parent / "pretrained" / PRETRAINED["digits"]


def pretrained(name: str = "digits", *, precision: str = "fp32", **kwargs: Any) -> Net:
    """A bundled LeNet-5 by name (see fastlenet/pretrained/README.md): "digits" (the default)
    reads handwriting and printed digits in many fonts from scans and files; "mnist" is the
    0.1.0 model, trained on MNIST alone; "fields" is "digits" with an 11th class, "not a digit",
    and "fields2" the same recipe from another seed; "pairs" reads two touching digits as one
    picture, and "strips" reads whole fields as a window slid along them (32x32 windows of
    the field's strip): fastlenet.read_field/read_fields read with the four
    (fastlenet.fields.MODELS).
    They take raw MNIST digits (uint8 28x28, light on dark) as they are, and image
    files through fastlenet.predict_files / fastlenet.preprocess; the metadata carries the
    normalization and what the model was trained on. precision="int8" gives the model
    quantized (all are tanh models: their int8 scales are fixed, computed at load from the fp32
    weights, no calibration; see Net.quantize). kwargs go to Net.from_npz (e.g. num_threads)."""
    if not isinstance(name, str) or name not in PRETRAINED:
        raise ValueError(f"pretrained: name must be one of {', '.join(map(repr, PRETRAINED))}; "
                         f"got {name!r}")
    if precision not in ("fp32", "int8"):
        raise ValueError(f"pretrained: precision must be 'fp32' or 'int8'; got {precision!r}")
    net = Net.from_npz(PRETRAINED_PATH.with_name(PRETRAINED[name]), **kwargs)
    return net.quantize() if precision == "int8" else net


def load(path: str | os.PathLike[str], **kwargs: Any) -> Net:
    """Load LeNet-5 weights from a file (.npz, .onnx, .safetensors, .keras, .h5):
    ``Net.from_npz(path, **kwargs)``.

    Files are untrusted input: read within a size budget, never unpickled. Raises OSError when
    the file cannot be opened, FormatError (a ValueError) when it is not LeNet-5 weights fastlenet
    can read, naming the file, what was expected and what was found; ImportError when a file
    needs a missing optional package (onnx, h5py)."""
    return Net.from_npz(path, **kwargs)


def open_net(weights: Optional[str] = None, layout: str = "auto", default: str = "digits"
             ) -> Net:
    """What a --weights value names: None the bundled model `default`, a bundled model's name
    (unless a file of that name exists), else a weights file."""
    if weights is None:
        return pretrained(default)
    if weights in PRETRAINED and not os.path.exists(weights):
        return pretrained(weights)
    return load(weights, layout=layout)
