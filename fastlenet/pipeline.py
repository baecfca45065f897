"""The file pipeline: sources -> decoded pixels -> preprocessing in C -> the engine -> results.

    for p in fastlenet.predict_files(["scans/", "shard-0001.tar"], net=net):
        print(p.source, p.member, p.index, p.label, p.confidence, p.error)

    x = fastlenet.preprocess(list_of_2d_arrays)      # the same preprocessing for your own decoder

See README.md ("Files") for what can be read. Work is cut into chunks of inputs; a pool of
worker processes (or threads) reads, decodes and preprocesses whole chunks, with a bounded window
of chunks in flight; the main thread runs the engine on the results in input order. A bad input
becomes a Prediction with `error` set and never stops the stream.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

INVERT_CHOICES = ("auto", "yes", "no")
FOREGROUNDS = ("light-on-dark", "dark-on-light")


class Prediction(NamedTuple):
    """One input's result. `source` is the file path given or found; `member` the name inside a
    .tar/.tar.gz/.zip shard (else None); `index` the image's position inside an IDX or .npy file
    (else None). On error, `label` is -1, `confidence` nan, `top_k` empty and `error` a one-line
    message."""
    source: str
    member: Optional[str]
    index: Optional[int]
    label: int
    confidence: float
    top_k: tuple
    error: Optional[str]

    @property
    def name(self) -> str:
        """source, source:member or source[index]: how the CLI names an input."""
        if self.member is not None:
            return f"{self.source}:{self.member}"
        if self.index is not None:
            return f"{self.source}[{self.index}]"
        return self.source


# ---- preprocessing --------------------------------------------------------------------------
def _unit_scale(a: np.ndarray) -> float:
    """The factor that maps an array's values to [0, 1]: by dtype for integers; floats as they
    are when they fit [0, 1], else /255 (or /65535 above 255)."""
    if a.dtype == np.uint8:
        return 1 / 255
    if a.dtype == np.uint16:
        return 1 / 65535
    if a.size == 0:
        return 1.0
    top = float(a.max())
    return 1.0 if top <= 1 else 1 / 255 if top <= 255 else 1 / 65535


def _as_gray(img, where: str) -> np.ndarray:
    """A 2-D array the C code reads: uint8, uint16, float32 or float64, native byte order.
    Colour (HxWx3/4) becomes luma, alpha composited on white paper."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] in (1, 3, 4):
        from fastlenet.images import to_gray

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
        a = a.astype(np.uint16 if a.max() > 255 else np.uint8)
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
    from fastlenet import _engine

    invert = {True: "yes", False: "no"}.get(invert, invert)
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert: expected one of {', '.join(INVERT_CHOICES)}; got {invert!r}")
    if foreground not in FOREGROUNDS:
        raise ValueError(f"foreground: expected one of {', '.join(FOREGROUNDS)}; got "
                         f"{foreground!r}")
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
                scales = [1.0 if t <= 1 else 1 / 255 if t <= 255 else 1 / 65535 for t in tops]
            else:
                scales = _unit_scale(a)
            return _engine._preprocess(a, scales, int(size), invert, light, threads)
    if isinstance(images, np.ndarray) and images.ndim == 2:
        raise ValueError("images: expected a list of 2-D images or an (N, H, W) array; got one "
                         "2-D image (wrap it in a list)")
    arrays = [_as_gray(im, f"images[{i}]") for i, im in enumerate(images)]
    scales = [_unit_scale(a) for a in arrays]
    return _engine._preprocess(arrays, scales, int(size), invert, light, threads)
