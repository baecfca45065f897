"""Deprecated: the 0.1.0 module path of the source listing; it moved to fastlenet.io. Kept for one release."""
import warnings as _warnings

from fastlenet.io.containers import iter_idx, iter_shard, iter_tar, open_npy  # noqa: F401
from fastlenet.io.kinds import (IMAGE_EXTENSIONS, MAX_FILE_BYTES, SHARD_SUFFIXES,  # noqa: F401
                                kind, sniff)
from fastlenet.io.sources import count, expand  # noqa: F401
from fastlenet.names import safe_name  # noqa: F401

_warnings.warn("fastlenet.sources is deprecated; import from fastlenet.io instead", DeprecationWarning, stacklevel=2)
