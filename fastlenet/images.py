"""Bytes -> pixels: image files (Pillow), IDX files; and the 0.1.0 NumPy preprocessing.

    decode(data, max_pixels)       image bytes -> 2-D uint8 (uint16 for 16-bit files), refusing
                                   more pixels than max_pixels from the header (bombs)
    read_image(path)               an image file -> 2-D uint8 (uint16 for 16-bit files)
    read_idx(path)                 an IDX file (gzipped or not) -> ndarray, read in pieces
    to_model_input(img, size=28)   0.1.0's preprocessing, kept for compatibility: use
                                   fastlenet.preprocess (C, batched, reads real scans)

Listing and reading sources lives in fastlenet/sources.py, the pipeline in pipeline.py.

How to_model_input (0.1.0) makes a model input (MNIST's own recipe, LeCun et al.):
1. grayscale in [0, 1]; colour by ITU-R 601 luma, transparency composited on white (a drawing
   exported with a transparent background is dark ink on "paper");
2. polarity: ``invert="auto"`` looks at the border (the median of a thin frame, the background
   in any sensible picture of one digit): a light border means dark ink on light paper, which is
   inverted for a model trained on light-on-dark digits (MNIST); ``"yes"``/``"no"`` force it;
3. an image that is already 28x28 or 32x32 is taken as is (zero-padded 28 -> 32, or its 2-pixel
   frame cropped 32 -> 28): it is assumed to be prepared like MNIST already;
4. any other size: background subtracted and contrast stretched, cropped to the bounding box of
   the ink, padded to a square, resized (area averaging) so the digit fits in 20x20, and placed
   in the size x size frame so that its centre of mass is at the centre.
"""
from __future__ import annotations

import gzip
import io
import os
import stat
from struct import error as struct_error
from typing import Optional

import numpy as np


FOREGROUNDS = ("light-on-dark", "dark-on-light")
INVERT_CHOICES = ("auto", "yes", "no")
PILLOW_HINT = "reading image files needs Pillow: pip install 'fastlenet[cli]'"

# MNIST digits fit in a 20x20 box inside the 28x28 frame (the 32x32 LeNet input is that frame
# zero-padded by 2, so the digit box is 20 there too).
DIGIT_BOX = 20
# A pixel counts as ink for the bounding box when it is this far from the background towards
# the darkest/brightest ink (after contrast stretching): high enough to ignore paper texture and
# JPEG ringing, low enough to keep thin strokes.
INK_THRESHOLD = 0.3
# Faint residue below this (paper texture, JPEG noise) is set to background.
NOISE_FLOOR = 0.1


# ---- arrays -> model input ------------------------------------------------------------------
def to_gray(img) -> np.ndarray:
    """Any 2-D image, or HxWx1/3/4 (gray/RGB/RGBA) -> float32 2-D in [0, 1].

    Value range by dtype: uint8 /255, uint16 /65535, bool 0/1; other numbers are taken as [0, 1]
    when they fit there and as 0..255 otherwise (0..65535 above 255). Alpha composites on white.
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
        top = float(g.max())
        g = g / (1 if top <= 1 else 255 if top <= 255 else 65535)
        g = np.clip(g, 0, 1)
    else:
        raise ValueError(f"expected numeric pixels; got dtype {a.dtype}")
    if channels in (3, 4):
        luma = g[..., 0] * 0.299 + g[..., 1] * 0.587 + g[..., 2] * 0.114
        g = luma if channels == 3 else luma * g[..., 3] + (1 - g[..., 3])
    elif channels == 1:
        g = g[..., 0]
    return np.ascontiguousarray(g, dtype=np.float32)


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
    if foreground not in FOREGROUNDS:
        raise ValueError(f"foreground: expected one of {', '.join(FOREGROUNDS)}; got "
                         f"{foreground!r}")
    invert = {True: "yes", False: "no"}.get(invert, invert)
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert: expected one of {', '.join(INVERT_CHOICES)}; got {invert!r}")
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


# ---- files ----------------------------------------------------------------------------------
def read_image(path) -> np.ndarray:
    """An image file (a path or a binary file object) -> 2-D grayscale array: uint8, or uint16
    for 16-bit grayscale files.

    Pillow reads it (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM...); the first frame of an animation;
    EXIF orientation applied (phone photos); transparency composited on white; colour -> luma.
    Raises OSError for a missing or unreadable file, ValueError for anything that is not a
    decodable image, ImportError when Pillow is missing.
    """
    if hasattr(path, "read"):
        return np.array(_decode(path))
    with open(os.fspath(path), "rb") as f:  # OSError names the path
        return np.array(_decode(f))


# Formats whose files commonly carry an EXIF orientation (phone photos).
_EXIF_FORMATS = frozenset(("JPEG", "MPO", "TIFF", "WEBP", "HEIF"))
_PIL = None


def _pillow():
    global _PIL
    if _PIL is None:
        try:
            from PIL import Image, ImageOps
        except ImportError:
            raise ImportError(PILLOW_HINT) from None
        _PIL = Image, ImageOps
    return _PIL


# Images above this many pixels are refused from their header, before decoding (Pillow's own
# limit, about 89 million, lets a 32 KB PNG of 12000x12000 take 1.9 GB). A page scanned at
# 600 dpi is about 35 million; a digit needs a few thousand. Configurable per call.
MAX_PIXELS = 40_000_000


def decode(data, max_pixels: Optional[int] = MAX_PIXELS) -> np.ndarray:
    """Image bytes (or a binary file object) -> 2-D grayscale array (uint8; uint16 for 16-bit
    files), as read_image. ValueError for anything that is not a decodable image or has more
    than max_pixels pixels (None: no limit of ours)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        head = bytes(data[:8])
        if head == _PNG_MAGIC:
            a = _png_gray8(data, max_pixels)
            if a is not None:
                return a
        return _decode(io.BytesIO(data), max_pixels, head)
    return _decode(data, max_pixels)


_CHUNK = None


def _png_gray8(data, max_pixels: Optional[int]) -> Optional[np.ndarray]:
    """The commonest scanned-digit file, an 8-bit grayscale non-interlaced PNG without
    transparency, decoded by Pillow's PNG pixel decoder ("zip"): the chunks are walked here
    with every CRC checked, skipping PngImageFile's per-chunk Python (measured: 45 -> 22 us
    per 28x28 file). None for anything else or anything odd (a bad CRC, a chunk past the end,
    too few pixels, above max_pixels): the caller then takes Pillow's own path, which decodes
    or reports the file exactly as before."""
    found = _png_gray8_data(data, max_pixels)
    if found is None:
        return None
    out = [None]
    try:
        _decode_on_canvas([(0, *found)], out)
    except ImportError:
        raise
    except Exception:  # Pillow's own path decides
        return None
    return out[0]


def _png_gray8_data(data, max_pixels: Optional[int]):
    """((width, height), compressed pixel data) of an 8-bit grayscale non-interlaced PNG
    without transparency whose chunks are all whole and whose CRCs all match; else None."""
    global _CHUNK
    import struct
    import zlib

    if _CHUNK is None:
        _CHUNK = struct.Struct(">I4s").unpack_from
    end, pos = len(data), 8
    idat = []
    size = None
    done = False
    try:
        while True:
            if pos + 12 > end:
                return None
            length, kind = _CHUNK(data, pos)
            stop = pos + 12 + length
            if stop > end or zlib.crc32(data[pos + 4:stop - 4]) != \
                    int.from_bytes(data[stop - 4:stop], "big"):
                return None
            if size is None:  # IHDR comes first: 8-bit gray (type 0), deflate, no interlace
                if kind != b"IHDR" or length != 13 or data[pos + 16:pos + 21] != b"\x08\0\0\0\0":
                    return None
                w, h = struct.unpack_from(">II", data, pos + 8)
                if not (0 < w < 1 << 24 and 0 < h < 1 << 24) or \
                        (max_pixels is not None and w * h > max_pixels):
                    return None
                size = (w, h)
            elif kind == b"IDAT":
                if done:  # image data split by another chunk: not a valid PNG
                    return None
                idat.append(data[pos + 8:stop - 4])
            elif kind == b"IEND":
                break
            elif kind in (b"tRNS", b"PLTE", b"acTL"):  # transparency, palette, animation
                return None
            else:
                done = bool(idat)
            pos = stop
    except struct.error:
        return None
    if not idat:
        return None
    return size, idat[0] if len(idat) == 1 else b"".join(idat)


# Small gray PNGs of one task share a Pillow image per width (decode_many): below this many
# pixels each, the per-image Image objects and tobytes() cost more than the decoding itself.
_CANVAS_MAX_PIXELS = 1 << 16


def decode_many(blobs: list, max_pixels: Optional[int] = MAX_PIXELS) -> list:
    """decode() over a list of image bytes -> a list holding, per blob, its 2-D array or the
    exception that decode() raises for it. Small 8-bit gray PNGs (scanned digits) are decoded
    by Pillow's PNG pixel decoder, each into its own rows of one shared image, which is copied
    out once (measured on 28x28 files: 20 -> 9 us per file); the arrays returned for them are
    read-only views of that copy. Everything else, and any file the shared decode refuses,
    goes through decode() one by one, so that it is decoded or reported exactly as alone."""
    out: list = [None] * len(blobs)
    small = []  # (index, (w, h), compressed data)
    for i, data in enumerate(blobs):
        if isinstance(data, (bytes, bytearray)) and data[:8] == _PNG_MAGIC:
            found = _png_gray8_data(data, max_pixels)
            if found is not None and found[0][0] * found[0][1] <= _CANVAS_MAX_PIXELS:
                small.append((i, found[0], found[1]))
    by_width: dict = {}
    for item in small:
        by_width.setdefault(item[1][0], []).append(item)
    for group in by_width.values():
        try:
            _decode_on_canvas(group, out)
        except Exception:  # each file alone, below, as decode() reports it
            pass
    for i, data in enumerate(blobs):
        if out[i] is None:
            try:
                out[i] = decode(data, max_pixels)
            except Exception as e:  # the caller reports it, as decode() would have raised it
                out[i] = e
    return out


def _decode_on_canvas(group: list, out: list) -> None:
    """Decodes each (index, (w, h), data) of one width w into its rows of one "L" image and
    sets out[index] to its pixels; images the decoder refuses stay None. Raises whatever Pillow
    raises (no Pillow, a decoder interface of another version): the caller then decodes each
    file alone."""
    Image, _ = _pillow()
    width = group[0][1][0]
    tops, y = [], 0
    for _, (_, h), _ in group:
        tops.append(y)
        y += h
    canvas = Image.new("L", (width, y))
    ok = []
    for (_, (w, h), data), top in zip(group, tops):
        d = Image._getdecoder("L", "zip", ("L",))
        d.setimage(canvas.im, (0, top, w, top + h))
        # as Image.frombytes: consumed < 0 means the image is complete, status 0 no error
        consumed, status = d.decode(data)[:2]
        d.cleanup()
        ok.append(consumed < 0 and status == 0)
    pixels = np.frombuffer(canvas.tobytes(), np.uint8).reshape(y, width)
    for (i, (_, h), _), top, good in zip(group, tops, ok):
        if good:
            out[i] = pixels[top:top + h]


def read_file_bytes(path, max_bytes: int) -> bytes:
    """The bytes of a regular file, refused above max_bytes. Opened non-blocking and checked to
    be a regular file first, so that a FIFO or a device never hangs or floods the reader;
    os.read avoids a buffered file object's cost (a fifth of a small PNG's decode time)."""
    fd = os.open(path, _READ_FLAGS)
    try:
        st = os.fstat(fd)
        if not _S_ISREG(st.st_mode):
            kind = "a folder" if _S_ISDIR(st.st_mode) else "not a regular file"
            raise ValueError(f"{kind} (expected an image file)")
        size = st.st_size
        if size > max_bytes:
            raise ValueError(f"file of {size:,} bytes (the limit is {max_bytes:,})")
        data = os.read(fd, size)  # one read for a file that does not change meanwhile
        if len(data) == size:
            return data
        parts, left = [data], size - len(data)
        while left > 0 and data:
            data = os.read(fd, left)
            parts.append(data)
            left -= len(data)
        return b"".join(parts)
    finally:
        os.close(fd)


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_S_ISREG, _S_ISDIR = stat.S_ISREG, stat.S_ISDIR


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


_DIRECT = None


def _direct_plugins():
    global _DIRECT
    if _DIRECT is None:
        from PIL import JpegImagePlugin, PngImagePlugin

        _DIRECT = (PngImagePlugin.PngImageFile, JpegImagePlugin.JpegImageFile)
    return _DIRECT


def _open_image(f, Image, head: Optional[bytes] = None):
    """Image.open, except that PNG and JPEG, recognised by their magic bytes, go straight to
    their plugin: Image.open's plugin search costs more than decoding a small PNG."""
    if head is not None:
        png, jpeg = _direct_plugins()
        if head == _PNG_MAGIC:
            return png(f)
        if head[:3] == b"\xff\xd8\xff":
            return jpeg(f)
    return Image.open(f)


def _decode(f, max_pixels: Optional[int] = MAX_PIXELS, head: Optional[bytes] = None,
            to=None) -> np.ndarray:
    """Decode with Pillow within the pixel limit; `to(im, Image)` converts the loaded image
    (default: 2-D grayscale pixels)."""
    Image, ImageOps = _pillow()
    try:
        with _open_image(f, Image, head) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise _TooLarge(f"image of {w}x{h} = {w * h:,} pixels is above the limit of "
                                f"{max_pixels:,} (a decompression bomb?); raise it with "
                                f"max_pixels= or --max-pixels")
            im.load()
            if im.format in _EXIF_FORMATS:
                im = ImageOps.exif_transpose(im)
            return (to or _pil_to_gray)(im, Image)
    except _TooLarge as e:
        raise ValueError(str(e)) from None
    except Image.UnidentifiedImageError:
        raise ValueError("not an image file (expected PNG, JPEG, BMP... , .npy or IDX)") \
            from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot decode the image ({e}); the file is truncated or "
                         f"corrupt") from None
    except (MemoryError, RecursionError, ArithmeticError, KeyError, IndexError, TypeError,
            AttributeError, struct_error) as e:  # what Pillow's plugins raise on odd files
        raise ValueError(f"cannot decode the image ({type(e).__name__}: {e})") from None


class _TooLarge(Exception):
    pass


def _pil_to_gray(im, Image) -> np.ndarray:
    if im.mode == "L" and "transparency" not in im.info:  # the common case first
        return np.frombuffer(im.tobytes(), np.uint8).reshape(im.size[1], im.size[0])
    if im.mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if im.mode == "I":  # 32-bit integer; 16-bit PNGs open like this in some Pillow versions
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
    if im.mode == "F":
        return to_gray(np.asarray(im, np.float32))
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("L"))
    if im.mode != "L":
        im = im.convert("L")
    # tobytes + frombuffer: half the cost of np.asarray(im) for small images (read-only)
    return np.frombuffer(im.tobytes(), np.uint8).reshape(im.size[1], im.size[0])


# IDX: magic 0x00 0x00 <type> <ndim>, then ndim big-endian uint32 sizes, then the data.
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
# Refuse headers that declare absurd sizes (a corrupt or hostile file) before allocating.
IDX_MAX_BYTES = 1 << 34


def _open_idx(name: str):
    """Open an IDX file (gzip detected by its magic bytes) -> (file, dtype, shape).
    The caller closes the file. ValueError for a bad header, naming what was found."""
    with open(name, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    f = gzip.open(name, "rb") if gz else open(name, "rb")
    try:
        head = f.read(4)
        if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in IDX_TYPES or head[3] == 0:
            raise ValueError(f"not an IDX file (expected magic 0x0000TTNN with type TT in "
                             f"08/09/0B/0C/0D/0E and NN dimensions; found 0x{head.hex()})")
        ndim = head[3]
        dims = f.read(4 * ndim)
        if len(dims) < 4 * ndim:
            raise ValueError(f"truncated IDX header (declares {ndim} dimensions)")
        shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
        dtype = IDX_TYPES[head[2]]
        nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if nbytes > IDX_MAX_BYTES:
            raise ValueError(f"IDX header declares shape {shape}, {nbytes:,} bytes: corrupt?")
        if not gz:
            actual = os.fstat(f.fileno()).st_size - 4 - 4 * ndim
            if actual != nbytes:
                raise ValueError(f"IDX size mismatch: header declares shape {shape} "
                                 f"({nbytes:,} bytes of data), the file has {actual:,}"
                                 f" ({'truncated' if actual < nbytes else 'trailing bytes'})")
        return f, dtype, shape
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        f.close()
        raise ValueError(f"cannot read the gzip stream ({e}); the file is truncated or "
                         f"corrupt") from None
    except ValueError:
        f.close()
        raise
    except Exception as e:  # zlib.error from a damaged deflate stream
        f.close()
        raise ValueError(f"cannot read the gzip stream ({type(e).__name__}: {e}); the file "
                         f"is corrupt") from None
    except BaseException:
        f.close()
        raise


def read_exact(f, nbytes: int, piece: int = 1 << 20) -> bytes:
    """Up to nbytes from f, in pieces, so that memory follows the bytes that exist rather than
    what a header declares (BufferedReader.read(n) allocates n bytes first)."""
    parts, left = [], nbytes
    while left > 0:
        b = f.read(min(piece, left))
        if not b:
            break
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


def read_idx_data(f, nbytes: int) -> bytes:
    """read_exact on an IDX stream, whose damage (a truncated or corrupt gzip stream, zlib.error)
    becomes one ValueError."""
    try:
        return read_exact(f, nbytes)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"cannot read the gzip stream ({e}); the file is truncated or "
                         f"corrupt") from None
    except Exception as e:  # zlib.error
        raise ValueError(f"cannot read the gzip stream ({type(e).__name__}: {e}); the "
                         f"file is corrupt") from None


def read_idx(path) -> np.ndarray:
    """An IDX file (MNIST's format; gzipped or not, detected by content) -> ndarray with the
    header's shape and native-endian dtype. ValueError names what is wrong (magic, truncation,
    trailing bytes, corrupt gzip); OSError for a missing or unreadable file."""
    name = os.fspath(path)
    f, dtype, shape = _open_idx(name)
    with f:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        data = read_idx_data(f, nbytes)  # never f.read(n): it allocates n up front
        extra = read_idx_data(f, 1)
    if len(data) != nbytes or extra:
        raise ValueError(f"IDX size mismatch: header declares shape {shape} ({nbytes:,} bytes "
                         f"of data), found {len(data) + len(extra):,}"
                         f"{'+' if extra else ''} ({'trailing bytes' if extra else 'truncated'})")
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


# ---- colour models (3 input channels) ---------------------------------------------------------
def to_rgb_input(img, size: int = 32, max_pixels: Optional[int] = MAX_PIXELS) -> np.ndarray:
    """A colour image -> uint8 (size, size, 3) RGB input for a 3-channel model (net.in_channels
    == 3: CIFAR-10, traffic signs). The whole picture is resized with Pillow's antialiased
    bilinear filter (what torchvision's Resize does); no crop, no inversion, none of the
    MNIST-style digit preprocessing. `img`: a path or binary file object (EXIF orientation
    applied, transparency composited on white, grayscale replicated to RGB), a PIL image, or an
    array (H, W), (H, W, 3) or (H, W, 4), uint8 or float in [0, 1]. Net.predict takes the
    result as it is (uint8 is divided by 255, then the model's mean/std apply). Image bytes
    are decoded as by decode(), within max_pixels."""
    Image, _ = _pillow()
    if isinstance(img, (bytes, bytearray, memoryview)):
        im = _decode(io.BytesIO(img), max_pixels, bytes(img[:8]), to=_pil_to_rgb)
    elif hasattr(img, "read"):
        im = _decode(img, max_pixels, to=_pil_to_rgb)
    elif isinstance(img, (str, os.PathLike)):
        with open(os.fspath(img), "rb") as f:  # OSError names the path
            im = _decode(f, max_pixels, to=_pil_to_rgb)
    elif isinstance(img, Image.Image):
        im = img
    else:
        a = np.asarray(img)
        if a.dtype.kind == "f":
            a = np.clip(np.nan_to_num(a) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        elif a.dtype != np.uint8:
            raise TypeError(f"img: expected uint8 or float pixels; got {a.dtype}")
        if a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4)):
            im = Image.fromarray(np.ascontiguousarray(a))
        else:
            raise ValueError(f"img: expected (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}")
    im = _pil_to_rgb(im, Image)
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def _pil_to_rgb(im, Image):
    """RGB, transparency drawn on white paper (a PIL image, not yet resized)."""
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return im.convert("RGB")
