"""Deprecated: the 0.1.0 module path of the safetensors reader; it moved to fastlenet.weights.safetensors. Kept for one release."""
import warnings as _warnings

from fastlenet.weights.safetensors import looks_like_safetensors, read  # noqa: F401

_warnings.warn("fastlenet.formats.safetensors is deprecated; import from fastlenet.weights.safetensors instead", DeprecationWarning, stacklevel=2)
