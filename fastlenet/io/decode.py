"""Bytes -> pixels, with Pillow: image files and shard members to 2-D grayscale arrays (and RGB
pictures for colour models), refusing more pixels than a limit from the header (bombs).

    decode(data, max_pixels)       image bytes -> 2-D uint8 (uint16 for 16-bit files)
    decode_many(blobs, max_pixels) the same over a task's files (small gray PNGs share a canvas)
    read_image(path)               an image file -> 2-D uint8 (uint16 for 16-bit files)
    read_file_bytes(path, limit)   a regular file's bytes (never a FIFO or a device)
    to_rgb_input(img, size)        a colour picture -> uint8 (size, size, 3) model input
"""
from __future__ import annotations

import io
import os
import stat
from struct import error as struct_error
from typing import Optional

import numpy as np

from fastlenet.pixels import to_gray

PILLOW_HINT = "reading image files needs Pillow: pip install 'fastlenet[cli]'"

def quiet_pillow() -> None:
    """Silence Pillow's UserWarnings about damaged files (TIFF tags, EXIF...): each such file
    is already reported once, as an error or not at all. Called in our worker processes and by
    the command line, never on a library user's process."""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")


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
