"""Deprecated: the 0.1.0 module path of the reference preprocessing; it moved to fastlenet.reference.prepare. Kept for one release."""
import warnings as _warnings

from fastlenet.reference.prepare import *  # noqa: F401,F403
from fastlenet.reference.prepare import otsu, preprocess, preprocess_one, to_unit  # noqa: F401

_warnings.warn("fastlenet.reference_preprocess is deprecated; import from fastlenet.reference.prepare instead", DeprecationWarning, stacklevel=2)
