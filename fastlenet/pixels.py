"""What pixel values mean, for every stage: the unit scale (which values are 0..1, 0..255 or
0..65535), grayscale conversion, and the polarity choices (invert=, foreground=)."""
from __future__ import annotations

import numpy as np

# invert=: "auto" decides per image from its frame; True/False mean "yes"/"no".
INVERT_CHOICES = ("auto", "yes", "no")
# The polarity a model was trained on (its metadata's "foreground").
FOREGROUNDS = ("light-on-dark", "dark-on-light")


def invert_choice(invert) -> str:
    """invert= as one of INVERT_CHOICES (True/False mean "yes"/"no"); ValueError otherwise."""
    invert = {True: "yes", False: "no"}.get(invert, invert)
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert: expected one of {', '.join(INVERT_CHOICES)}; got {invert!r}")
    return invert


def check_foreground(foreground) -> str:
    if foreground not in FOREGROUNDS:
        raise ValueError(f"foreground: expected one of {', '.join(FOREGROUNDS)}; got "
                         f"{foreground!r}")
    return foreground


def full_scale(top) -> int:
    """The value that means white for pixels whose largest value is `top` and whose dtype says
    nothing (floats, wide integers): 1 when they fit [0, 1], else 255, else 65535. Works on
    arrays of tops too."""
    if np.ndim(top):
        return np.where(top <= 1, 1, np.where(top <= 255, 255, 65535))
    return 1 if top <= 1 else 255 if top <= 255 else 65535


def unit_scale(a: np.ndarray) -> float:
    """The factor that maps an array's values to [0, 1]: by dtype for uint8 and uint16; else
    by full_scale of its largest value."""
    if a.dtype == np.uint8:
        return 1 / 255
    if a.dtype == np.uint16:
        return 1 / 65535
    if a.size == 0:
        return 1.0
    return 1 / full_scale(float(a.max()))


def to_gray(img) -> np.ndarray:
    """Any 2-D image, or HxWx1/3/4 (gray/RGB/RGBA) -> float32 2-D in [0, 1].

    Value range by dtype: uint8 /255, uint16 /65535, bool 0/1; other numbers by full_scale,
    clipped to [0, 1]. Colour by ITU-R 601 luma; alpha composites on white.
    """
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        channels = a.shape[-1]
    elif a.ndim == 2:
        channels = 0
    else:
        raise ValueError(f"expected a 2-D image or HxWx1/3/4 (gray/RGB/RGBA); got shape "
                         f"{a.shape}")
    if a.size == 0:
        raise ValueError(f"empty image (shape {a.shape})")
    if a.dtype == np.uint8:
        g = a.astype(np.float32) / 255
    elif a.dtype == np.uint16:
        g = a.astype(np.float32) / 65535
    elif a.dtype == np.bool_:
        g = a.astype(np.float32)
    elif a.dtype.kind in "iuf":
        g = a.astype(np.float32)
        if not np.isfinite(g).all():
            raise ValueError("image has NaN or infinite values")
        g = np.clip(g / full_scale(float(g.max())), 0, 1)
    else:
        raise ValueError(f"expected numeric pixels; got dtype {a.dtype}")
    if channels in (3, 4):
        luma = g[..., 0] * 0.299 + g[..., 1] * 0.587 + g[..., 2] * 0.114
        g = luma if channels == 3 else luma * g[..., 3] + (1 - g[..., 3])
    elif channels == 1:
        g = g[..., 0]
    return np.ascontiguousarray(g, dtype=np.float32)
