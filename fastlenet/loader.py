"""Deprecated: the 0.1.0 module path of the weights loader; it moved to fastlenet.weights. Kept for one release."""
import warnings as _warnings

from fastlenet.weights import *  # noqa: F401,F403
from fastlenet.weights import __all__  # noqa: F401
from fastlenet.weights.npz import read_npz  # noqa: F401
from fastlenet.weights.onnx import read_onnx  # noqa: F401

_warnings.warn("fastlenet.loader is deprecated; import from fastlenet.weights instead", DeprecationWarning, stacklevel=2)
