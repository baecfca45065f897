"""What a file is: the one rule, by name first (an image extension wins: idx_0001.png is an image),
by its first bytes when the name says nothing. Every stage that sorts files asks here."""
from __future__ import annotations

import os

IMAGE_EXTENSIONS = frozenset(".png .jpg .jpeg .bmp .gif .tif .tiff .webp .pgm .ppm .pbm .pnm"
                             .split())
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
# A shard member or image file larger than this is refused before it is read (a scan of one
# digit is kilobytes; a 100-megapixel RGB TIFF is 300 MB).
MAX_FILE_BYTES = 256 << 20


def kind(path: str) -> str:
    """'shard', 'npy', 'idx', 'image' by name, or 'unknown' (the content decides)."""
    return _kind_of_name(os.path.basename(path).lower())


def _kind_of_name(low: str) -> str:
    """kind() of a lower-case file name (no folder). An image extension wins over "idx" in
    the name (idx_0001.png is an image)."""
    if _is_image_name(low):
        return "image"
    if low.endswith(SHARD_SUFFIXES):
        return "shard"
    if low.endswith(".npy"):
        return "npy"
    if "idx" in low or "-ubyte" in low:
        return "idx"
    return "unknown"


def _is_image_name(low: str) -> bool:
    """A lower-case file name with an image extension (os.path.splitext's: leading dots are
    not one), without splitext's cost per file."""
    dot = low.rfind(".")
    return dot > 0 and low[dot:] in IMAGE_EXTENSIONS and low[:dot].strip(".") != ""


def sniff(path: str) -> str:
    """The kind of a file whose name says nothing, from its first bytes. OSError if it cannot
    be opened."""
    with open(path, "rb") as f:
        head = f.read(264)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "shard"
    if head[257:262] == b"ustar":
        return "shard"
    if head[:2] in (b"\x1f\x8b", b"\x00\x00"):
        return "idx"
    return "image"


# Kinds of file that hold many images (each a Dask partition of its own, for one).
CONTAINERS = ("shard", "npy", "idx")


def is_container(path: str) -> bool:
    """A file that holds many images (a shard, an .npy or IDX file), by its name: kind()."""
    return kind(path) in CONTAINERS
