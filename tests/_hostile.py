"""Hostile weight files, built byte by byte: the small files of issue 10 that declare or expand
to gigabytes, zip directories that lie, and a raw zip writer that can say anything.

Used by tests/weights/test_safety_loader.py and runnable as a script to write the files for a memory
measurement: python tests/_hostile.py OUTDIR
"""
from __future__ import annotations

import bz2
import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

METHOD = {"stored": 0, "deflated": 8, "bzip2": 12}


def npy_bytes(header: dict, data: bytes = b"") -> bytes:
    """A hand-made .npy v1.0: magic, padded header dict, data."""
    text = repr(header).encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def npy_of(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def compress(data: bytes, method: str) -> bytes:
    if method == "stored":
        return data
    if method == "bzip2":
        return bz2.compress(data, 9)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def raw_zip(entries, central=None) -> bytes:
    """A zip from entries (name, method, compressed bytes, crc, file_size). `central` (default:
    one entry per local member) lists (name, index of the local member it points at) for the
    central directory, so that it can repeat or alias members."""
    out = bytearray()
    offsets = []
    for name, method, comp, crc, size in entries:
        offsets.append(len(out))
        nb = name.encode()
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, METHOD[method], 0, 0, crc,
                           len(comp), size, len(nb), 0) + nb + comp
    cd_start = len(out)
    central = central if central is not None else [(e[0], i) for i, e in enumerate(entries)]
    for name, i in central:
        _, method, comp, crc, size = entries[i]
        nb = name.encode()
        out += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, METHOD[method], 0,
                           0, crc, len(comp), size, len(nb), 0, 0, 0, 0, 0, offsets[i]) + nb
    cd_size = len(out) - cd_start
    n = len(central)
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                       cd_size, cd_start, 0)
    return bytes(out)


def entry(name: str, data: bytes, method: str = "deflated", size: int | None = None):
    """A zip entry for `data`; `size` lets the directory lie about the uncompressed size."""
    return (name, method, compress(data, method), zlib.crc32(data),
            len(data) if size is None else size)


def void_bomb(mib: int = 16) -> bytes:
    """Issue 10: one bzip2 member whose header declares 2**24 elements of a 256-byte void dtype
    (4 GiB), with `mib` MiB of zeros that bzip2 packs into a few hundred bytes per 100 MiB."""
    header = npy_bytes({"descr": "|V256", "fortran_order": False, "shape": (1 << 24,)})
    data = header + bytes(mib << 20)
    return raw_zip([entry("c1.weight.npy", data, "bzip2")])


def many_zero_members(count: int = 100, mib: int = 64) -> bytes:
    """Issue 10: `count` deflated members of `mib` MiB of zeros each (64 KiB of deflate each):
    all decompressed before any was checked, then 'missing C1 kernel'."""
    header = npy_bytes({"descr": "<f4", "fortran_order": False, "shape": ((mib << 20) // 4,)})
    data = header + bytes(mib << 20)
    comp, crc = compress(data, "deflated"), zlib.crc32(data)
    return raw_zip([(f"a{i}.npy", "deflated", comp, crc, len(data)) for i in range(count)])


def aliased_directory(count: int = 3000, mib: int = 8) -> bytes:
    """Issue 10: a central directory of `count` entries that all point at one member of `mib`
    MiB of zeros (a 'zip bomb by overlap')."""
    header = npy_bytes({"descr": "<f4", "fortran_order": False, "shape": ((mib << 20) // 4,)})
    e = entry("a.npy", header + bytes(mib << 20))
    return raw_zip([e], central=[("a.npy", 0)] * count)


BOMBS = {"void_bomb.npz": void_bomb, "zero_members.npz": many_zero_members,
         "aliased.npz": aliased_directory}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for fname, make in BOMBS.items():
        (out / fname).write_bytes(make(mib=1024) if make is void_bomb else make())
        print(fname, (out / fname).stat().st_size)
