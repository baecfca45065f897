"""Pixels -> model inputs: the stage between decoding and the engine.

    preprocess(images)       pictures of single digits -> float32 (N, size, size), in C
                             (csrc/preprocess.c, batched, GIL released): fastlenet.preprocess
    prepare_arrays(x, cfg)   a chunk of an IDX/.npy file or of decoded files -> model inputs, as
                             the pipeline's settings say (passthrough, MNIST recipe, colour)
    to_model_input(img)      0.1.0's NumPy preprocessing, kept for compatibility

The pipeline's settings (`cfg`) carry size, invert, light (light ink on dark?), mode
(auto | mnist | none), threads and channels; Settings below.

How to_model_input (0.1.0) makes a model input (MNIST's own recipe, LeCun et al.):
1. grayscale in [0, 1]; colour by ITU-R 601 luma, transparency composited on white;
2. polarity: ``invert="auto"`` looks at the border (the median of a thin frame): a light border
   means dark ink on light paper, which is inverted for a light-on-dark model (MNIST);
3. an image that is already 28x28 or 32x32 is taken as is (zero-padded 28 -> 32, or its 2-pixel
   frame cropped 32 -> 28);
4. any other size: background subtracted and contrast stretched, cropped to the bounding box of
   the ink, padded to a square, resized (area averaging) so the digit fits in 20x20, and placed
   in the size x size frame so that its centre of mass is at the centre.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from fastlenet import _engine
from fastlenet.io.decode import to_rgb_input
from fastlenet.pixels import (FOREGROUNDS, check_foreground, full_scale, invert_choice, to_gray,
                              unit_scale)

# MNIST digits fit in a 20x20 box inside the 28x28 frame (the 32x32 LeNet input is that frame
# zero-padded by 2, so the digit box is 20 there too).
DIGIT_BOX = 20
# A pixel counts as ink for the bounding box when it is this far from the background towards
# the darkest/brightest ink (after contrast stretching): high enough to ignore paper texture and
# JPEG ringing, low enough to keep thin strokes.
INK_THRESHOLD = 0.3
# Faint residue below this (paper texture, JPEG noise) is set to background.
NOISE_FLOOR = 0.1


class Settings(NamedTuple):
    """How one pipeline task reads and prepares its inputs (it travels to the workers)."""
    size: int
    invert: str
    light: bool
    mode: str            # auto | mnist | none
    max_pixels: Optional[int]
    max_bytes: int
    threads: int         # threads of the C preprocessing inside one task
    channels: int = 1    # 3: a colour model (whole pictures resized, no digit preprocessing)
    fields: Optional[tuple] = None  # (min, max) digits: each image is a field (fastlenet.fields)


# ---- fastlenet.preprocess ------------------------------------------------------------------
def _as_gray(img, where: str) -> np.ndarray:
    """A 2-D array the C code reads: uint8, uint16, float32 or float64, native byte order.
    Colour (HxWx3/4) becomes luma, alpha composited on white paper."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        a = to_gray(a)
    if a.ndim != 2:
        raise ValueError(f"{where}: expected a 2-D image (or HxWx1/3/4); got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{where}: empty image (shape {a.shape})")
    if a.dtype == np.bool_:
        a = a.view(np.uint8) * np.uint8(255)
    elif a.dtype.kind in "iu" and a.dtype not in (np.uint8, np.uint16):
        if a.min() < 0 or a.max() > 65535:
            raise ValueError(f"{where}: integer pixels must be in 0..65535; found "
                             f"{a.min()}..{a.max()}")
        top = a.max() if a.size else 0
        # the full-scale rule of pixels.full_scale: 0/1 integers are a mask, like bool
        a = (a.astype(np.uint8) * np.uint8(255) if top <= 1 else
             a.astype(np.uint16 if top > 255 else np.uint8))
    elif a.dtype.kind == "f" and a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    elif a.dtype.kind not in "uif":
        raise TypeError(f"{where}: expected numeric pixels; got dtype {a.dtype}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{where}: image has NaN or infinite values")
    return a


def preprocess(images, *, size: int = 28, invert: str = "auto",
               foreground: str = "light-on-dark", num_threads: Optional[int] = None
               ) -> np.ndarray:
    """Pictures of single digits -> float32 (N, size, size) model input in [0, 1], as MNIST
    was made: Otsu threshold, polarity (``invert``: "auto" decides per image from its frame;
    "yes"/"no" invert the values or keep them), the digit's ink without stray specks, strokes
    thickened when thin, its box scaled into 20x20 (aspect kept, anti-aliased) and centred by
    centre of mass; light ink on dark (or ``foreground="dark-on-light"``). The same for every
    image size, 28x28 and 32x32 included. Runs in C (csrc/preprocess.c) with the GIL released,
    on up to ``num_threads`` threads (default: the engine's default).

    images: a list of 2-D arrays of any sizes (uint8, uint16, bool, float in [0, 1] or 0..255;
    HxWx3/4 colour becomes luma), or an array: (N, H, W) is N grayscale images, (N, H, W, C)
    N colour images.
    """
    invert = invert_choice(invert)
    check_foreground(foreground)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 20 <= size <= 4096:
        raise ValueError(f"size: expected an integer in 20..4096; got {size!r}")
    threads = _engine.DEFAULT_THREADS if num_threads is None else int(num_threads)
    light = foreground == "light-on-dark"
    if isinstance(images, np.ndarray) and images.ndim == 3:  # (N, H, W): one C call, no copy
        a = images
        if a.shape[1] == 0 or a.shape[2] == 0:
            raise ValueError(f"images: empty images (shape {a.shape})")
        if a.dtype in (np.uint8, np.uint16, np.float32, np.float64) and a.dtype.isnative:
            if a.dtype.kind == "f":
                if not np.isfinite(a).all():
                    raise ValueError("images: NaN or infinite values")
                tops = a.reshape(len(a), -1).max(axis=1) if len(a) else ()
                scales = [1 / full_scale(t) for t in tops]
            else:
                scales = unit_scale(a)
            return _engine._preprocess(a, scales, int(size), invert, light, threads)
    if isinstance(images, np.ndarray) and images.ndim == 2:
        raise ValueError("images: expected a list of 2-D images or an (N, H, W) array; got one "
                         "2-D image (wrap it in a list)")
    arrays = [_as_gray(im, f"images[{i}]") for i, im in enumerate(images)]
    scales = [unit_scale(a) for a in arrays]
    return _engine._preprocess(arrays, scales, int(size), invert, light, threads)


# ---- the pipeline's chunks ----------------------------------------------------------------
def model_geometry(net):
    """(input size, light-on-dark?) from the model's metadata."""
    meta = net.meta
    size = meta.get("input_size") or 32
    fg = meta.get("foreground") or "light-on-dark"
    if size not in (28, 32) or fg not in FOREGROUNDS:
        raise ValueError(f"the model's metadata has input_size={size!r}, foreground={fg!r}; "
                         f"expected 28 or 32 and one of {', '.join(FOREGROUNDS)}")
    return int(size), fg == "light-on-dark"


def _passthrough(x: np.ndarray, cfg: Settings) -> np.ndarray:
    """(m, H, W) images already prepared as model inputs (28 or 32 square) -> float32 (m, size,
    size) in [0, 1]: scaled by dtype, polarity from the frame when invert="auto" (a light
    frame means dark ink on light paper), padded or cropped to the model's size."""
    m, h, w = x.shape
    if h != w or h not in (28, 32):
        raise ValueError(f"preprocess='none' takes 28x28 or 32x32 images (model inputs); found "
                         f"{h}x{w}: use preprocess='auto'")
    if x.dtype == np.uint8:  # kept as uint8: the engine then sees exactly what net.predict would
        g = np.array(x)
        if cfg.invert == "auto":
            t = max(1, h // 20)
            frame = np.concatenate([g[:, :t].reshape(m, -1), g[:, -t:].reshape(m, -1),
                                    g[:, t:-t, :t].reshape(m, -1),
                                    g[:, t:-t, -t:].reshape(m, -1)], axis=1)
            k = frame.shape[1] // 2
            flip = (np.partition(frame, k, axis=1)[:, k] > 127) == cfg.light
        else:
            flip = np.full(m, cfg.invert == "yes")
        if flip.any():
            g[flip] = 255 - g[flip]
        return _fit(g, cfg, 0 if cfg.light else 255)
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise ValueError("image has NaN or infinite values")
        tops = x.reshape(m, -1).max(axis=1)
        scale = 1 / full_scale(tops)
        g = np.clip(x * scale[:, None, None].astype(np.float32), 0, 1).astype(np.float32)
    else:
        g = x.astype(np.float32)
        g *= np.float32(1 / 65535 if x.dtype == np.uint16 else 1 / 255)
        if x.dtype.kind == "b":
            g = x.astype(np.float32)
    if cfg.invert == "auto":
        t = max(1, h // 20)
        frame = np.concatenate([g[:, :t].reshape(m, -1), g[:, -t:].reshape(m, -1),
                                g[:, t:-t, :t].reshape(m, -1), g[:, t:-t, -t:].reshape(m, -1)],
                               axis=1)
        k = frame.shape[1] // 2
        light_paper = np.partition(frame, k, axis=1)[:, k] > 0.5
        flip = light_paper == cfg.light
    else:
        flip = np.full(m, cfg.invert == "yes")
    if flip.any():
        g[flip] = 1 - g[flip]
    return _fit(g, cfg, 0.0 if cfg.light else 1.0)


def _fit(g: np.ndarray, cfg: Settings, paper) -> np.ndarray:
    """(m, n, n) with n 28 or 32 -> (m, size, size): pad with paper, or crop, equally."""
    h = g.shape[1]
    if h == cfg.size:
        return g
    if h < cfg.size:
        lo = (cfg.size - h) // 2
        return np.pad(g, ((0, 0), (lo, cfg.size - h - lo), (lo, cfg.size - h - lo)),
                      constant_values=paper)
    lo = (h - cfg.size) // 2
    return np.ascontiguousarray(g[:, lo:lo + cfg.size, lo:lo + cfg.size])


def prepare_arrays(x: np.ndarray, cfg: Settings, decoded: bool) -> np.ndarray:
    """A chunk (m, H, W) -> model input. Image files (decoded=True) are always preprocessed
    (unless preprocess="none"); IDX/.npy arrays of the model's input size pass through under
    "auto" (they are datasets in model format already)."""
    if cfg.channels == 3:  # colour models: each picture resized whole, gray ones replicated
        x = x[..., 0] if x.ndim == 4 and x.shape[-1] == 1 else x
        return prepare_list([to_rgb_input(im, cfg.size) for im in x], cfg)
    if x.ndim == 4:  # colour (N, H, W, C) arrays: luma, alpha on white paper
        x = np.stack([to_gray(im) for im in x]) if len(x) else x[..., 0].astype(np.float32)
    if cfg.mode == "none" or (cfg.mode == "auto" and not decoded and x.shape[1] == x.shape[2]
                              and x.shape[1] in (28, 32)):
        return _passthrough(x, cfg)
    fg = "light-on-dark" if cfg.light else "dark-on-light"
    return preprocess(x, size=cfg.size, invert=cfg.invert, foreground=fg,
                      num_threads=cfg.threads)


def prepare_list(arrays: list, cfg: Settings) -> np.ndarray:
    if cfg.channels == 3:  # (size, size, 3) uint8 pictures from to_rgb_input
        return np.stack(arrays) if arrays else np.zeros((0, cfg.size, cfg.size, 3), np.uint8)
    if not arrays:
        return np.zeros((0, cfg.size, cfg.size), np.float32)
    if cfg.mode == "none":
        parts = [_passthrough(a[None], cfg) for a in arrays]
        if len({p.dtype for p in parts}) > 1:
            parts = [p.astype(np.float32) / 255 if p.dtype == np.uint8 else p for p in parts]
        return np.concatenate(parts)
    return preprocess_decoded(arrays, cfg)


def preprocess_decoded(arrays: list, cfg: Settings) -> np.ndarray:
    """preprocess(arrays) for what images.decode returns (2-D native uint8, uint16 or float32
    in [0, 1]), without preprocess()'s per-image checks (~5 us of Python per image in the
    workers); the same C call with the same scales, so the same result bit for bit."""
    if all(a.dtype.char == "B" for a in arrays):
        scales = 1 / 255
    else:
        scales = [unit_scale(a) for a in arrays]
    return _engine._preprocess(arrays, scales, cfg.size, cfg.invert, cfg.light, cfg.threads)


# ---- 0.1.0 --------------------------------------------------------------------------------
def _border(g: np.ndarray) -> float:
    """Median brightness of a thin frame around the image: its background."""
    h, w = g.shape
    if min(h, w) < 3:
        return float(np.median(g))
    t = max(1, min(h, w) // 20)
    ring = np.concatenate([g[:t].ravel(), g[-t:].ravel(), g[t:-t, :t].ravel(),
                           g[t:-t, -t:].ravel()])
    k = len(ring) // 2  # the (upper) median, without np.median's overhead
    return float(np.partition(ring, k)[k])


def is_light_background(img) -> bool:
    """True for dark ink on a light background (the border is mostly bright)."""
    return _border(to_gray(img)) > 0.5


def to_model_input(img, size: int = 28, invert="auto",
                   foreground: str = "light-on-dark") -> np.ndarray:
    """An image of one digit (any size, gray or colour) -> uint8 (size, size), in the polarity
    the model was trained on (``foreground``). See the module docstring for the recipe.

    invert: "auto" (decide from the image's border), "yes"/True (invert the pixel values),
    "no"/False (keep them).
    """
    check_foreground(foreground)
    invert = invert_choice(invert)
    if not isinstance(size, (int, np.integer)) or size < DIGIT_BOX:
        raise ValueError(f"size: expected an integer >= {DIGIT_BOX}; got {size!r}")
    a = np.asarray(img)
    if a.dtype == np.uint8 and a.shape in ((28, 28), (32, 32)):
        return _fast_uint8(a, size, invert, foreground)
    g = to_gray(a)
    model_light_ink = foreground == "light-on-dark"
    if invert == "auto":
        flip = (_border(g) > 0.5) == model_light_ink
    else:
        flip = invert == "yes"
    if flip:
        g = 1 - g
    # Work with bright ink on a dark background; turn back at the end for a dark-on-light model.
    ink = g if model_light_ink else 1 - g
    if g.shape in ((28, 28), (32, 32)):
        out = _fit_frame(ink, size)
    else:
        out = _mnistify(ink, size)
    if not model_light_ink:
        out = 1 - out
    return np.rint(out * 255).astype(np.uint8)


def _fast_uint8(a: np.ndarray, size: int, invert: str, foreground: str) -> np.ndarray:
    """The common case (MNIST-like uint8 28/32 pictures), exactly and without a float copy."""
    if invert == "auto":
        flip = (_border(a) > 127.5) == (foreground == "light-on-dark")
    else:
        flip = invert == "yes"
    out = 255 - a if flip else a
    if a.shape[0] == size:
        return np.array(out, dtype=np.uint8)
    background = 0 if foreground == "light-on-dark" else 255
    n, lo = a.shape[0], abs(size - a.shape[0]) // 2
    if n < size:
        return np.pad(out, lo, constant_values=background)
    return np.array(out[lo:lo + size, lo:lo + size], dtype=np.uint8)


def _fit_frame(ink: np.ndarray, size: int) -> np.ndarray:
    """A prepared 28/32 image -> size x size: zero-pad or crop the frame equally on all sides."""
    n = ink.shape[0]
    if n < size:
        lo = (size - n) // 2
        return np.pad(ink, ((lo, size - n - lo), (lo, size - n - lo)))
    lo = (n - size) // 2
    return ink[lo:lo + size, lo:lo + size]


def _mnistify(ink: np.ndarray, size: int) -> np.ndarray:
    """Bright ink on a dark background of any size -> the MNIST recipe in a size x size frame."""
    bg, peak = _border(ink), float(ink.max())
    if peak - bg < 1e-3:  # blank: nothing to centre
        return np.zeros((size, size), np.float32)
    x = np.clip((ink - bg) / (peak - bg), 0, 1)
    rows = np.flatnonzero((x > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((x > INK_THRESHOLD).any(axis=0))
    x = x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    x = np.clip((x - NOISE_FLOOR) / (1 - NOISE_FLOOR), 0, 1)
    h, w = x.shape
    side = max(h, w)
    square = np.zeros((side, side), np.float32)
    square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = x
    box = min(DIGIT_BOX, size)
    r = resize_matrix(side, box)
    digit = np.clip(r @ square @ r.T, 0, 1)
    total = float(digit.sum())
    ys, xs = np.arange(box), np.arange(box)
    cy = float(digit.sum(axis=1) @ ys) / total if total > 0 else (box - 1) / 2
    cx = float(digit.sum(axis=0) @ xs) / total if total > 0 else (box - 1) / 2
    top = int(np.clip(round((size - 1) / 2 - cy), 0, size - box))
    left = int(np.clip(round((size - 1) / 2 - cx), 0, size - box))
    out = np.zeros((size, size), np.float32)
    out[top:top + box, left:left + box] = digit
    return out


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) resampling matrix: area averaging when shrinking (every input pixel counts,
    so thin strokes survive), linear interpolation between pixel centres when enlarging."""
    if n_out <= n_in:
        edges = np.linspace(0, n_in, n_out + 1)
        j = np.arange(n_in)
        overlap = (np.minimum(edges[1:, None], j + 1) - np.maximum(edges[:-1, None], j))
        return (np.clip(overlap, 0, None) * (n_out / n_in)).astype(np.float32)
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = (pos - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), i0] += 1 - f
    m[np.arange(n_out), i1] += f
    return m
