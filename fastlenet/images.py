"""Deprecated: the 0.1.0 module path of the image readers; it moved to fastlenet.io.decode, fastlenet.io.containers and fastlenet.prepare. Kept for one release."""
import warnings as _warnings

from fastlenet.io.containers import (IDX_MAX_BYTES, IDX_TYPES, read_exact, read_idx,  # noqa: F401
                                     read_idx_data)
from fastlenet.io.decode import (MAX_PIXELS, PILLOW_HINT, decode, decode_many,  # noqa: F401
                                 read_file_bytes, read_image, to_rgb_input)
from fastlenet.pixels import FOREGROUNDS, INVERT_CHOICES, to_gray  # noqa: F401
from fastlenet.prepare import (DIGIT_BOX, INK_THRESHOLD, NOISE_FLOOR,  # noqa: F401
                               is_light_background, resize_matrix, to_model_input)

_warnings.warn("fastlenet.images is deprecated; import from fastlenet.io.decode, fastlenet.io.containers and fastlenet.prepare instead", DeprecationWarning, stacklevel=2)
