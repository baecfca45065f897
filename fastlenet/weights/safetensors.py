"""Read .safetensors files (Hugging Face's format: what model hubs publish) without any framework.

The format: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (offsets into the byte buffer that follows the
header) plus an optional "__metadata__" object of strings, then the buffer.

Our own reader rather than the `safetensors` package: the package's numpy API reads the whole
file before anything can be checked, cannot return bfloat16 (numpy has no such dtype; PyTorch
exports often use it) and reports problems in its own words. Here the file is untrusted input:
the header's declared length, every tensor's shape, dtype and byte range are checked against the
file size and the loader's size budget before a single tensor byte is read, and overlapping,
duplicate or out-of-bounds tensors are refused (as the format's specification requires).
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict

import numpy as np

from fastlenet.weights.checks import META_KEY, FormatError

MAGIC_HINT = "a .safetensors file (8-byte header length, JSON header, tensor bytes)"
# The specification caps the JSON header at 100 MB; a LeNet-5's header is under 2 KB.
MAX_HEADER_BYTES = 100 * 1000 * 1000

# safetensors dtype names -> numpy dtypes (little-endian, as the format stores them). BF16 is
# read as uint16 and widened to float32 below.
DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}


def looks_like_safetensors(head: bytes) -> bool:
    """The first 9+ bytes: a plausible header length, then the JSON object's '{'."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= MAX_HEADER_BYTES and head[8:9] == b"{"


def read(path, max_elements: int) -> Dict[str, np.ndarray]:
    """All tensors of a .safetensors file, in the file's byte order, as numpy arrays (BF16 as
    float32). The header's ``__metadata__`` may carry fastlenet's metadata JSON under
    ``fastlenet_meta``; it is returned under that key. OSError for an unreadable file,
    FormatError for anything that is not a well-formed safetensors file."""
    name = os.fspath(path)
    with open(name, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise FormatError(f"{name}: too short for {MAGIC_HINT} ({size} bytes)")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise FormatError(f"{name}: declares a {n}-byte header but the file has {size} "
                              f"bytes; expected {MAGIC_HINT}; the file is truncated or not "
                              f"safetensors")
        raw = f.read(n)
        header = _parse_header(raw, name)
        data_start = 8 + n
        buffer_len = size - data_start
        entries = []
        total = 0
        for key, spec in header.items():
            if key == "__metadata__":
                continue
            dtype, shape, begin, end = _check_entry(key, spec, name, buffer_len)
            count = math.prod(shape)
            if count > max_elements:
                raise FormatError(f"{name}: tensor {key!r} declares shape {tuple(shape)} "
                                  f"({count} values), far larger than any LeNet-5 weight")
            total += count
            if total > 4 * max_elements:
                raise FormatError(f"{name}: the tensors declare {total} values in all, far more "
                                  f"than a LeNet-5 holds")
            entries.append((begin, end, key, dtype, shape))
        entries.sort()
        for (b0, e0, k0, _, _), (b1, e1, k1, _, _) in zip(entries, entries[1:]):
            if b1 < e0:
                raise FormatError(f"{name}: tensors {k0!r} (bytes {b0}..{e0}) and {k1!r} "
                                  f"(bytes {b1}..{e1}) overlap; a safetensors file stores each "
                                  f"tensor in its own byte range")
        out: Dict[str, np.ndarray] = {}
        for begin, end, key, dtype, shape in entries:
            f.seek(data_start + begin)
            buf = f.read(end - begin)
            if len(buf) != end - begin:
                raise FormatError(f"{name}: tensor {key!r}: truncated (expected {end - begin} "
                                  f"bytes, found {len(buf)})")
            arr = np.frombuffer(buf, dtype=np.dtype(DTYPES[dtype])).reshape(shape)
            if dtype == "BF16":  # the high half of a float32
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            out[key] = arr
    meta = header.get("__metadata__")
    if isinstance(meta, dict) and META_KEY in meta:
        out[META_KEY] = np.array(meta[META_KEY])
    return out


def _no_duplicates(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise FormatError(f"the header names {k!r} twice")
        seen[k] = v
    return seen


def _parse_header(raw: bytes, name: str) -> dict:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except FormatError as e:
        raise FormatError(f"{name}: {e}; each tensor must appear once") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{name}: the header is not valid JSON ({e}); expected "
                          f"{MAGIC_HINT}") from None
    if not isinstance(header, dict):
        raise FormatError(f"{name}: the header is a JSON {type(header).__name__}; expected an "
                          f"object of tensor name -> dtype, shape, data_offsets")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and
                                 all(isinstance(v, str) for v in meta.values())):
        raise FormatError(f"{name}: __metadata__ must map names to strings; found {meta!r:.80}")
    return header


def _check_entry(key: str, spec, name: str, buffer_len: int):
    where = f"{name}: tensor {key!r}"
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(f"{where}: expected an object with dtype, shape and data_offsets; "
                          f"found {spec!r:.120}")
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if dtype not in DTYPES:
        raise FormatError(f"{where}: unsupported dtype {dtype!r} (expected one of "
                          f"{', '.join(DTYPES)})")
    if (not isinstance(shape, list) or len(shape) > 8 or
            not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise FormatError(f"{where}: shape must be a list of non-negative integers; found "
                          f"{shape!r:.80}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or
            not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise FormatError(f"{where}: data_offsets must be [begin, end]; found {offsets!r:.80}")
    begin, end = offsets
    if not 0 <= begin <= end <= buffer_len:
        raise FormatError(f"{where}: bytes {begin}..{end} lie outside the file's {buffer_len}-byte "
                          f"data section; the file is truncated or corrupt")
    nbytes = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
    if end - begin != nbytes:
        raise FormatError(f"{where}: shape {tuple(shape)} of {dtype} takes {nbytes} bytes but "
                          f"data_offsets span {end - begin}")
    return dtype, shape, begin, end
