"""fastlenet: LeNet-5 inference on the CPU, fast.

    import fastlenet
    net = fastlenet.pretrained()          # or fastlenet.load("weights.npz")
    net.predict(batch)                    # (N,) class indices

See README.md for the input rules and the whole API, docs/architecture.md for the layout.
This module only re-exports: library modules never import it.
"""
from __future__ import annotations

from fastlenet import reference
from fastlenet._engine import (
    DEFAULT_THREADS,
    HAS_OPENMP,
    InputRangeWarning,
    Net,
    available_isas,
    default_isa,
    detected_isa,
)
from fastlenet._version import __version__
from fastlenet.config import show_config
from fastlenet.models import PRETRAINED, PRETRAINED_PATH, load, pretrained
from fastlenet.weights.checks import FormatError

__all__ = ["Net", "load", "pretrained", "reference", "show_config", "available_isas",
           "FormatError", "InputRangeWarning", "predict_files", "preprocess", "Prediction",
           "read_field", "read_fields", "Field", "Digit", "__version__"]

# Loaded on first use, so that `import fastlenet` stays light: the file pipeline, and the
# module paths of 0.1.0 (deprecated shims, kept for one release).
_LAZY = {"predict_files": ("fastlenet.pipeline", "predict_files"),
         "Prediction": ("fastlenet.pipeline", "Prediction"),
         "preprocess": ("fastlenet.prepare", "preprocess"),
         "read_field": ("fastlenet.fields", "read_field"),
         "Field": ("fastlenet.fields", "Field"),
         "Digit": ("fastlenet.fields", "Digit"),
         "read_fields": ("fastlenet.pipeline.fields", "read_fields")}
_OLD_MODULES = ("loader", "formats", "sources", "images", "reference_preprocess")


def __getattr__(name):
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _OLD_MODULES:
        return importlib.import_module(f"fastlenet.{name}")
    raise AttributeError(f"module 'fastlenet' has no attribute {name!r}")
