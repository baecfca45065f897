"""Deprecated: the 0.1.0 module path of the Keras reader; it moved to fastlenet.weights.keras. Kept for one release."""
import warnings as _warnings

from fastlenet.weights.keras import (ARCHIVE_MEMBERS, HDF5_MAGIC, is_keras_archive,  # noqa: F401
                                     read_h5, read_keras)

_warnings.warn("fastlenet.formats.keras_files is deprecated; import from fastlenet.weights.keras instead", DeprecationWarning, stacklevel=2)
