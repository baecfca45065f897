"""Deprecated: the 0.1.0 module path of the layout converter; it moved to fastlenet.weights.layout. Kept for one release."""
import warnings as _warnings

from fastlenet.names import natural_key  # noqa: F401
from fastlenet.weights.checks import ACTIVATIONS, META_KEY, POOLS, FormatError  # noqa: F401
from fastlenet.weights.layout import (CANONICAL_SHAPES, IN_CHANNELS, LAYOUTS,  # noqa: F401
                                      MAX_CLASSES, MIN_CLASSES, Conversion, canonical_shapes,
                                      convert, geometry)
from fastlenet.weights.onnx import onnx_arrays  # noqa: F401

_warnings.warn("fastlenet.formats is deprecated; import from fastlenet.weights.layout instead", DeprecationWarning, stacklevel=2)
