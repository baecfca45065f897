"""The .npz reader (and the canonical .npz writer): a zip of .npy members, read member by member
within the budget, never through np.load's pickle-capable path."""
from __future__ import annotations

import bz2
import io
import json
import lzma
import os
import struct
import zipfile
import zlib
from typing import Any, Mapping

import numpy as np

from fastlenet.weights.checks import MAX_MEMBERS, MAX_WEIGHT_BYTES, META_KEY, Budget, FormatError
from fastlenet.weights.layout import CANONICAL_SHAPES

# Decompression works in steps of this many compressed bytes, each step's output bounded too.
_CHUNK = 1 << 16
# Every .npy header fits in this many bytes (numpy's own limit is 10,000 for the dict).
_NPY_HEADER_MAX = 10_000 + 12

_PICKLE_ADVICE = ("fastlenet never unpickles files. Export the weights with np.savez(path, "
                  "**{k: v.numpy() for k, v in model.state_dict().items()})")
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated",
            zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
# Kinds of .npy dtypes worth reading: numbers, bools and strings (the metadata). Object,
# structured/void and datetime arrays are refused from the header.
_NPY_KINDS = "biufcSU"


def read_npz(path) -> dict[str, np.ndarray]:
    """All arrays of an .npz, read within the budget. OSError for an unreadable file,
    FormatError for anything that is not a zip of plain .npy arrays (pickles, torch.save files,
    truncation, corruption, declarations beyond the budget).

    Order of work, so that a hostile file costs little: the zip's central directory is parsed
    and checked (member count, duplicate names, encryption, compression methods, every member's
    extent inside the file, no overlaps), then every member's .npy header is decompressed and
    checked against the budget, and only then are the members decompressed, in bounded steps,
    each to exactly its declared size and CRC."""
    name = os.fspath(path)
    with open(name, "rb") as f:  # OSError (missing, unreadable, a directory) names the path
        head = f.read(8)
        if head.startswith(b"\x93NUMPY"):
            raise FormatError(f"{name}: a single .npy array, not a weights archive; save the "
                              f"weights with np.savez(path, **arrays)")
        if head[:1] == b"\x80":
            raise FormatError(f"{name}: a Python pickle (e.g. torch.save or pickle.dump); "
                              f"{_PICKLE_ADVICE}")
        if not head.startswith(b"PK"):
            raise FormatError(f"{name}: not an .npz file (expected a zip archive of .npy arrays "
                              f"as written by numpy.savez; found {head[:8]!r} at the start)")
        members = _zip_directory(f, name)
        budget = Budget(name)
        headers = [_npy_header(f, m, name, budget) for m in members]
        return {key: _npy_data(f, m, name, key, *hdr) for m, (key, *hdr) in zip(members, headers)}


def _zip_directory(f, name: str) -> list[_Member]:
    """The checked members of the zip in `f`, by position in the file."""
    try:
        zf = zipfile.ZipFile(f)
        infos = zf.infolist()
        start_dir = zf.start_dir
    except Exception as e:  # zipfile raises many types on hostile directories: one error here
        raise FormatError(f"{name}: not a readable .npz archive ({type(e).__name__}: {e}); the "
                          f"file is truncated or corrupt") from None
    if len(infos) > MAX_MEMBERS:
        raise FormatError(f"{name}: the zip directory lists {len(infos):,} members; a LeNet-5 "
                          f"weights file holds about 10 to 20 (at most {MAX_MEMBERS})")
    pickled = [m.filename for m in infos if m.filename.endswith(".pkl")]
    if pickled:
        raise FormatError(f"{name}: a torch.save checkpoint (it holds {pickled[0]}); "
                          f"{_PICKLE_ADVICE}")
    seen: set[str] = set()
    members = []
    for m in infos:
        where = f"{name}: member {m.filename!r}"
        if m.filename in seen:
            raise FormatError(f"{where}: appears twice in the zip directory; expected each "
                              f"array once (which copy would be the weights?)")
        seen.add(m.filename)
        if m.filename.endswith("/"):  # a directory entry (ZipInfo.is_dir fails on "")
            continue
        if not m.filename.endswith(".npy"):
            raise FormatError(f"{name}: key {m.filename!r}: not an .npy array (an .npz holds "
                              f"only .npy members)")
        if m.flag_bits & 0x1:
            raise FormatError(f"{where}: encrypted; numpy.savez writes plain or deflated, "
                              f"unencrypted members")
        if m.compress_type not in _METHODS:
            raise FormatError(f"{where}: compression method {m.compress_type} cannot be read; "
                              f"expected stored or deflated as numpy.savez writes (bzip2 and "
                              f"lzma are read too)")
        if m.file_size > MAX_WEIGHT_BYTES + _NPY_HEADER_MAX or \
                m.compress_size > MAX_WEIGHT_BYTES + _NPY_HEADER_MAX:
            raise FormatError(f"{where}: declares {m.file_size:,} bytes ({m.compress_size:,} "
                              f"compressed), more than the {MAX_WEIGHT_BYTES:,} bytes a LeNet-5 "
                              f"weights file may hold")
        members.append(m)
    # Every member's local header and data lie inside the file, before the central directory,
    # and no two members share bytes (a directory of thousands of entries pointing at one
    # large member would otherwise be decompressed thousands of times).
    end = 0
    data_at: dict[str, int] = {}
    for m in sorted(members, key=lambda m: m.header_offset):
        where = f"{name}: member {m.filename!r}"
        if m.header_offset < end:
            raise FormatError(f"{where}: overlaps the member before it (starts at byte "
                              f"{m.header_offset:,}, before byte {end:,}); a zip whose entries "
                              f"share data is refused")
        data_at[m.filename] = _data_offset(f, m, name)
        end = data_at[m.filename] + m.compress_size
        if end > start_dir:
            raise FormatError(f"{where}: its data ({m.compress_size:,} bytes from byte "
                              f"{data_at[m.filename]:,}) runs past the end of the archive's data; the "
                              f"file is truncated or corrupt")
    return [_Member(m, data_at[m.filename]) for m in members]


class _Member:
    """A checked zip member: its directory entry and where its compressed bytes start."""
    __slots__ = ("filename", "compress_type", "compress_size", "file_size", "CRC", "data_at")

    def __init__(self, info: zipfile.ZipInfo, data_at: int):
        for k in self.__slots__[:-1]:
            setattr(self, k, getattr(info, k))
        self.data_at = data_at


def _data_offset(f, m, name: str) -> int:
    """Where member m's compressed bytes start (after its local header)."""
    f.seek(m.header_offset)
    local = f.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise FormatError(f"{name}: member {m.filename!r}: no local header at byte "
                          f"{m.header_offset:,}; the file is truncated or corrupt")
    method, = struct.unpack("<H", local[8:10])
    n_name, n_extra = struct.unpack("<HH", local[26:30])
    local_name = f.read(n_name)
    central_name = m.orig_filename.encode("utf-8" if m.flag_bits & 0x800 else "cp437",
                                          "surrogateescape")
    # Tools that read the local header would see another member than the directory says.
    if local_name != central_name or method != m.compress_type:
        raise FormatError(f"{name}: member {m.filename!r}: its local header names "
                          f"{local_name!r} (method {method}) but the directory "
                          f"{central_name!r} (method {m.compress_type}); the file is corrupt")
    return m.header_offset + 30 + n_name + n_extra


def _decompressor(m, f, name: str):
    method = m.compress_type
    if method == zipfile.ZIP_DEFLATED:
        return zlib.decompressobj(-15)
    if method == zipfile.ZIP_BZIP2:
        return bz2.BZ2Decompressor()
    # LZMA in zip: a 4-byte header (version, size of the properties), then the properties of a
    # raw LZMA1 stream (APPNOTE 5.8.8).
    head = f.read(4)
    if len(head) != 4:
        raise FormatError(f"{name}: member {m.filename!r}: truncated lzma header")
    props = f.read(struct.unpack("<H", head[2:4])[0])
    try:
        filt = lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)  # type: ignore
    except Exception as e:
        raise FormatError(f"{name}: member {m.filename!r}: bad lzma properties ({e})") from None
    # The dictionary is allocated up front at the size the header names (up to 4 GiB); no
    # match can reach further back than the member's declared size, so that is enough.
    filt["dict_size"] = min(filt.get("dict_size", 1 << 23), max(m.file_size, 4096))
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt])


def _inflate(f, m, name: str, want: int) -> bytes:
    """At most `want` bytes of member m, decompressed in steps of _CHUNK compressed bytes with
    each step's output capped: work and memory follow `want`, never the compression ratio."""
    f.seek(m.data_at)
    left = m.compress_size
    if m.compress_type == zipfile.ZIP_STORED:
        return f.read(min(want, left))
    start = f.tell()
    d = _decompressor(m, f, name)
    left -= f.tell() - start
    out = bytearray()
    pending = b""
    while len(out) < want and not d.eof:
        if not pending and (m.compress_type == zipfile.ZIP_DEFLATED or d.needs_input):
            if left <= 0:
                break
            pending = f.read(min(_CHUNK, left))
            left -= len(pending)
            if not pending:
                break
        room = want - len(out)
        if m.compress_type == zipfile.ZIP_DEFLATED:
            out += d.decompress(pending, room)
            pending = d.unconsumed_tail
        else:
            out += d.decompress(pending, room)
            pending = b""
    return bytes(out)


def _npy_header(f, m, name: str, budget: Budget):
    """(key, shape, fortran, dtype, data offset) of member m, from its first bytes only."""
    key = m.filename[:-4]
    where = f"{name}: key {key!r}"
    try:
        head = io.BytesIO(_inflate(f, m, name, min(m.file_size, _NPY_HEADER_MAX)))
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise FormatError(f"{where}: unsupported .npy format version {version}; expected "
                              f"1.0 or 2.0 as numpy.save writes for numeric arrays")
    except FormatError:
        raise
    except Exception as e:  # numpy's header parser and the decompressors raise many types
        raise FormatError(f"{where}: cannot be read ({type(e).__name__}: {e}); the file is "
                          f"truncated or corrupt") from None
    if dtype.hasobject:
        raise FormatError(f"{where}: holds a pickled object array ({dtype}); fastlenet never "
                          f"unpickles. Store plain numeric arrays")
    if dtype.kind not in _NPY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise FormatError(f"{where}: dtype {dtype} cannot be a weight; expected float arrays "
                          f"(and a string for {META_KEY!r})")
    nbytes = budget.take(key, shape, dtype)
    offset = head.tell()
    if m.file_size != offset + nbytes:
        found = m.file_size - offset
        raise FormatError(f"{where}: truncated or padded (expected {nbytes:,} bytes of {dtype} "
                          f"for shape {shape}, found {found:,}); the file is truncated or "
                          f"corrupt" if found < nbytes else
                          f"{where}: holds {found - nbytes:,} bytes after its {nbytes:,} bytes "
                          f"of {dtype} for shape {shape}; the file is corrupt")
    return key, shape, fortran, dtype, offset


def _npy_data(f, m, name: str, key: str, shape, fortran, dtype, offset) -> np.ndarray:
    where = f"{name}: key {key!r}"
    try:
        raw = _inflate(f, m, name, m.file_size + 1)
    except FormatError:
        raise
    except Exception as e:
        raise FormatError(f"{where}: cannot be read ({type(e).__name__}: {e}); the file is "
                          f"truncated or corrupt") from None
    if len(raw) != m.file_size:
        raise FormatError(f"{where}: truncated (expected {m.file_size:,} bytes, found "
                          f"{len(raw):,}); the file is truncated or corrupt")
    if zlib.crc32(raw) != m.CRC:
        raise FormatError(f"{where}: CRC mismatch (the data does not match its checksum); the "
                          f"file is truncated or corrupt")
    arr = np.frombuffer(raw, dtype=dtype, offset=offset)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)



def save(path, weights: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """The canonical .npz: float32 arrays and fastlenet_meta as a plain unicode string."""
    arrays = {k: np.asarray(weights[k], dtype=np.float32) for k in CANONICAL_SHAPES}
    arrays[META_KEY] = np.array(json.dumps(dict(meta), sort_keys=True))
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    # np.savez appends .npz to names without it; write exactly the path the user gave.
    with open(os.fspath(path), "wb") as f:
        np.savez(f, **arrays)

