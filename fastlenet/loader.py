"""Weight files -> canonical LeNet-5 weights and metadata. Pure Python and NumPy.

Weight files are untrusted input. What a file declares is checked against a byte budget (a small
multiple of LeNet-5's size, see MAX_* below) before anything is decompressed or allocated; object
arrays are refused from their header; nothing is ever unpickled (no allow_pickle anywhere). Every
failure is a FormatError (a ValueError) or an OSError from opening the file, and names the file,
the key, what was expected and what was found.

Canonical layout (PyTorch conventions, float32), C = 1 or 3 input channels, K >= 2 classes:
    c1.weight (6, C, 5, 5)   c1.bias (6,)      c3.weight (16, 6, 5, 5)  c3.bias (16,)
    c5.weight (120, 16, 5, 5) c5.bias (120,)   f6.weight (84, 120)      f6.bias (84,)
    output.weight (K, 84)    output.bias (K,)
plus an optional ``fastlenet_meta``: a JSON string (activation, pool, mean, std, classes, ...).
"""
from __future__ import annotations

import bz2
import io
import json
import lzma
import math
import numbers
import os
import struct
import zipfile
import zlib
from typing import Any, Mapping, Optional

import numpy as np

from fastlenet import formats
from fastlenet.formats import ACTIVATIONS, CANONICAL_SHAPES, META_KEY, POOLS, FormatError

# The one error for weights that cannot become LeNet-5 (a ValueError); both names work.
WeightsError = FormatError

# ---- the budget -------------------------------------------------------------------------------
# A weights file is refused when what it *declares* is more than a LeNet-5 can need, before a
# byte of it is decompressed: a 3 KB file can declare gigabytes. LeNet-5 has 61,706 parameters
# (61,706 x 8 bytes = 482 KiB as float64); the limits leave room for wider heads (K classes,
# 3 input channels), extra arrays ignored with strict=False and float64 exports, and stay far
# below what could hurt a machine. Readers of other formats (.onnx, .safetensors, .h5) use the
# same numbers through `check_declared_size` and `Budget`.
LENET5_PARAMETERS = 61_706
# The largest single array: 16x all of LeNet-5 (an output layer of K=12,000 classes fits).
MAX_ARRAY_ELEMENTS = 1 << 20
# All arrays of one file together, as declared (elements x itemsize), uncompressed: 16 MiB.
MAX_WEIGHT_BYTES = 16 << 20
# Members of one archive / tensors of one file (a LeNet-5 export has 10 to 20).
MAX_MEMBERS = 512
# The metadata string (JSON).
MAX_META_BYTES = 1 << 20
# Whole files read into memory before parsing (.onnx protobufs): the arrays plus slack.
MAX_FILE_BYTES = MAX_WEIGHT_BYTES + (4 << 20)
# Decompression works in steps of this many compressed bytes, each step's output bounded too.
_CHUNK = 1 << 16
# Every .npy header fits in this many bytes (numpy's own limit is 10,000 for the dict).
_NPY_HEADER_MAX = 10_000 + 12


def check_declared_size(source: str, key: str, shape, dtype) -> int:
    """The bytes an array declares (elements x itemsize), or FormatError when the declaration
    alone is more than any LeNet-5 weight can need. Call it on a header's shape and dtype before
    reading or allocating anything; `Budget` adds the file-wide total."""
    try:
        dims = tuple(int(d) for d in shape)
        itemsize = int(np.dtype(dtype).itemsize)
    except (TypeError, ValueError, OverflowError) as e:
        raise FormatError(f"{source}: key {key!r}: expected a shape of non-negative integers "
                          f"and a numpy dtype; found shape {shape!r}, dtype {dtype!r} "
                          f"({e})") from None
    if any(d < 0 for d in dims):
        raise FormatError(f"{source}: key {key!r}: declares shape {dims} with a negative "
                          f"dimension")
    count = math.prod(dims)
    if count > MAX_ARRAY_ELEMENTS:
        raise FormatError(f"{source}: key {key!r}: declares shape {dims} ({count:,} values), "
                          f"far larger than any LeNet-5 weight (at most {MAX_ARRAY_ELEMENTS:,} "
                          f"values per array; LeNet-5 has {LENET5_PARAMETERS:,} in all)")
    nbytes = count * itemsize
    if nbytes > MAX_WEIGHT_BYTES:
        raise FormatError(f"{source}: key {key!r}: declares shape {dims} of {np.dtype(dtype)} "
                          f"({nbytes:,} bytes), more than the {MAX_WEIGHT_BYTES:,} bytes a "
                          f"LeNet-5 weights file may hold")
    return nbytes


class Budget:
    """The running total of bytes one file declares: `take` each array's declaration (or raw
    byte count) before reading it; FormatError once the file as a whole asks for more than
    MAX_WEIGHT_BYTES or holds more than MAX_MEMBERS arrays."""

    def __init__(self, source: str, limit: int = MAX_WEIGHT_BYTES):
        self.source, self.limit, self.used, self.count = source, limit, 0, 0

    def take(self, key: str, shape=None, dtype=None, nbytes: int | None = None) -> int:
        if nbytes is None:
            nbytes = check_declared_size(self.source, key, shape, dtype)
        self.count += 1
        self.used += int(nbytes)
        if self.count > MAX_MEMBERS:
            raise FormatError(f"{self.source}: more than {MAX_MEMBERS} arrays; a LeNet-5 "
                              f"weights file holds about 10 to 20")
        if self.used > self.limit:
            raise FormatError(f"{self.source}: the arrays declare {self.used:,} bytes in all "
                              f"(at key {key!r}), more than the {self.limit:,} bytes a LeNet-5 "
                              f"weights file may hold (LeNet-5 has {LENET5_PARAMETERS:,} "
                              f"parameters)")
        return int(nbytes)


# ---- reading files --------------------------------------------------------------------------
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


# ---- conversion -----------------------------------------------------------------------------
def read_weights(path) -> dict[str, np.ndarray]:
    """The arrays of a weights file: an .npz, an .onnx model (needs the `onnx` extra), a
    .safetensors file, a Keras .keras archive or .h5 / .weights.h5 file (needs the `keras`
    extra: h5py). Chosen by suffix, else by the file's first bytes."""
    name = os.fspath(path).lower()
    if name.endswith(".onnx"):
        return read_onnx(path)
    kind = _sniff(path) if not name.endswith((".npz", ".pt", ".pth")) else "npz"
    if kind == "safetensors":
        from fastlenet.formats import safetensors

        return safetensors.read(path, MAX_ARRAY_ELEMENTS)
    if kind in ("keras", "h5"):
        from fastlenet.formats import keras_files

        read = keras_files.read_keras if kind == "keras" else keras_files.read_h5
        return read(path, MAX_ARRAY_ELEMENTS)
    return read_npz(path)


def _sniff(path) -> str:
    """'safetensors', 'keras', 'h5' or 'npz' (whose reader explains anything else)."""
    from fastlenet.formats import keras_files, safetensors

    name = os.fspath(path).lower()
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".keras"):
        return "keras"
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    try:
        with open(os.fspath(path), "rb") as f:
            head = f.read(16)
    except OSError:
        return "npz"  # read_npz reports it
    if head.startswith(keras_files.HDF5_MAGIC):
        return "h5"
    if safetensors.looks_like_safetensors(head):
        return "safetensors"
    if head.startswith(b"PK") and keras_files.is_keras_archive(path):
        return "keras"
    return "npz"


# ONNX ops a LeNet-5 export may contain, by role. Anything else (a Mul of a scaled tanh, a
# BatchNormalization, a Transpose of a channels-last export...) makes the graph one fastlenet
# does not understand, and it is refused rather than run with assumed tanh/avg.
_ONNX_ACTIVATIONS = {"Tanh": "tanh", "Relu": "relu", "Sigmoid": "sigmoid"}
_ONNX_POOLS = {"AveragePool": "avg", "MaxPool": "max"}
_ONNX_PLUMBING = {"Conv", "Gemm", "MatMul", "Add", "Flatten", "Reshape", "Constant", "Identity",
                  "Dropout", "Softmax", "LogSoftmax", "Shape", "Gather", "Unsqueeze", "Squeeze",
                  "Concat", "Cast"}


def read_onnx(path, meta: bool = True) -> dict[str, np.ndarray]:
    """The initializers of an .onnx model, ordered by first use in the graph, within the budget;
    with meta=True also a fastlenet_meta entry holding the activation and pooling read from the
    graph's nodes. FormatError for a file that is not a self-contained ONNX model of a LeNet-5
    (corrupt protobuf, external data, duplicate or undecodable initializers, ops it does not
    understand); ImportError when the optional `onnx` package is missing."""
    name = os.fspath(path)
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise ImportError("reading .onnx files needs the optional 'onnx' package: pip install "
                          "fastlenet[onnx]") from e
    with open(name, "rb") as f:  # OSError names the path
        size = os.fstat(f.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise FormatError(f"{name}: {size:,} bytes, larger than the {MAX_FILE_BYTES:,} a "
                              f"LeNet-5 .onnx model may take (one is about 250 KB)")
        data = f.read(MAX_FILE_BYTES + 1) if size == 0 else f.read(size)  # size 0: a pipe
    try:
        model = onnx.load_model_from_string(data)
        graph = model.graph
        nodes = list(graph.node)
        inits = list(graph.initializer)
    except Exception as e:  # protobuf's DecodeError and friends
        raise FormatError(f"{name}: not a readable ONNX model ({type(e).__name__}: {e}); the "
                          f"file is truncated or corrupt") from None
    budget = Budget(name)
    by_name: dict[str, Any] = {}
    for init in inits:
        key = init.name
        if not isinstance(key, str):  # protobuf hands back bytes for a name that is not UTF-8
            raise FormatError(f"{name}: initializer name {key!r} is not valid UTF-8; expected "
                              f"text names")
        if key in by_name:
            raise FormatError(f"{name}: initializer {key!r} appears twice; expected each "
                              f"weight once (which copy would be the weights?)")
        if init.data_location == onnx.TensorProto.EXTERNAL or init.external_data:
            raise FormatError(f"{name}: initializer {key!r} keeps its data in an external "
                              f"file; fastlenet reads self-contained .onnx files (save with "
                              f"save_as_external_data=False)")
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
        except Exception:
            raise FormatError(f"{name}: initializer {key!r} has ONNX data type "
                              f"{init.data_type}, which numpy cannot hold; expected float "
                              f"weights") from None
        budget.take(key, tuple(init.dims), dtype)
        by_name[key] = init
    if len(graph.sparse_initializer):
        raise FormatError(f"{name}: holds sparse initializers; expected dense LeNet-5 weights")
    order = [n for node in nodes for n in node.input if n in by_name]
    order += [n for n in by_name]
    out: dict[str, np.ndarray] = {}
    for key in order:
        if key in out:
            continue
        try:
            out[key] = np.asarray(numpy_helper.to_array(by_name[key]))
        except Exception as e:
            raise FormatError(f"{name}: initializer {key!r} cannot be read ({type(e).__name__}: "
                              f"{e}); the file is truncated or corrupt") from None
        check_declared_size(name, key, out[key].shape, out[key].dtype)
    if meta:
        out[META_KEY] = np.array(json.dumps(_onnx_ops(name, nodes)))
    return out


def _onnx_attrs(name: str, node) -> dict:
    """A node's attributes as plain values (lists for repeated ints)."""
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.ints:
            out[a.name] = [int(v) for v in a.ints]
        elif a.floats:
            out[a.name] = [float(v) for v in a.floats]
        elif a.type == 2:  # INT
            out[a.name] = int(a.i)
        elif a.type == 1:  # FLOAT
            out[a.name] = float(a.f)
        elif a.type == 3:  # STRING
            out[a.name] = a.s.decode("utf-8", "replace")
    return out


def _onnx_ops(name: str, nodes) -> dict:
    """Activation and pooling of a LeNet-5 graph, from its nodes; FormatError when the graph
    holds anything else or mixes kinds."""
    acts, pools, unknown = [], [], []
    convs = 0
    for node in nodes:
        op, domain = node.op_type, node.domain
        # protobuf hands back bytes for strings that are not UTF-8: never an op we know
        op = op if isinstance(op, str) else repr(op)
        domain = domain if isinstance(domain, str) else repr(domain)
        attrs = _onnx_attrs(name, node)
        if domain not in ("", "ai.onnx"):
            unknown.append(f"{domain}.{op}")
        elif op == "Conv":
            # LeNet-5's convolutions: 5x5, stride 1, no dilation or groups, no padding (or the
            # 2-pixel padding of a C1 that takes 28x28, which equals fastlenet's zero border)
            pads = attrs.get("pads", [0, 0, 0, 0])
            ok_pads = not any(pads) or (convs == 0 and set(pads) == {2})
            if attrs.get("kernel_shape", [5, 5]) != [5, 5] or \
                    any(v != 1 for v in attrs.get("strides", [1, 1])) or \
                    any(v != 1 for v in attrs.get("dilations", [1, 1])) or \
                    attrs.get("group", 1) != 1 or not ok_pads or \
                    attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID", b"NOTSET", b"VALID"):
                raise FormatError(f"{name}: node {node.name or op!r}: Conv with {attrs}; "
                                  f"expected LeNet-5's 5x5 convolution, stride 1, no padding")
            convs += 1
        elif op == "Gemm" and (attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0
                               or attrs.get("transA", 0) != 0):
            raise FormatError(f"{name}: node {node.name or op!r}: Gemm with {attrs}; expected "
                              f"alpha=1, beta=1, transA=0 (a plain dense layer)")
        elif op in _ONNX_ACTIVATIONS:
            acts.append(_ONNX_ACTIVATIONS[op])
        elif op in _ONNX_POOLS:
            if attrs.get("kernel_shape") != [2, 2] or attrs.get("strides", [1, 1]) != [2, 2] \
                    or any(attrs.get("pads", [0])) or any(v != 1 for v in
                                                          attrs.get("dilations", [1, 1])):
                raise FormatError(f"{name}: node {node.name or op!r}: {op} with "
                                  f"{attrs}; expected 2x2 pooling with stride 2 and no padding")
            pools.append(_ONNX_POOLS[op])
        elif op not in _ONNX_PLUMBING:
            unknown.append(op)
    if unknown:
        raise FormatError(f"{name}: the graph holds ops fastlenet does not understand "
                          f"({', '.join(sorted(set(unknown)))}); expected a LeNet-5 of Conv, "
                          f"Gemm/MatMul, one activation ({', '.join(_ONNX_ACTIVATIONS)}) and "
                          f"one pooling ({', '.join(_ONNX_POOLS)})")
    if len(set(acts)) != 1 or len(set(pools)) != 1:
        raise FormatError(f"{name}: the graph has activations {sorted(set(acts)) or 'none'} and "
                          f"pooling {sorted(set(pools)) or 'none'}; expected exactly one kind "
                          f"of each (fastlenet runs one activation and one pooling throughout)")
    return {"activation": acts[0], "pool": pools[0], "source": "onnx graph"}


def inspect(source, layout: str = "auto", strict: bool = True) -> formats.Conversion:
    """How a file or mapping maps to the canonical layout (framework, key -> name, ignored)."""
    name = "weights" if isinstance(source, Mapping) else os.fspath(source)
    arrays = source if isinstance(source, Mapping) else read_weights(source)
    layout = _file_layout(name, layout) if not isinstance(source, Mapping) else layout
    with np.errstate(over="ignore"):  # casts beyond float32 are reported by _checked
        return _checked(formats.convert(arrays, layout=layout, strict=strict, source=name),
                        name)


def convert(arrays: Mapping[str, Any], layout: str = "auto", strict: bool = True,
            source: str = "weights") -> tuple[dict[str, np.ndarray], dict]:
    """Any supported layout -> (canonical float32 read-only weights, checked metadata)."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"{source}: expected a mapping of weight name -> array; found "
                        f"{type(arrays).__name__}")
    with np.errstate(over="ignore"):  # casts beyond float32 are reported by _checked
        conv = _checked(formats.convert(arrays, layout=layout, strict=strict, source=source),
                        source)
    for arr in conv.weights.values():
        arr.flags.writeable = False
    return conv.weights, check_meta(conv.meta, f"{source}: key {META_KEY!r}",
                                    num_classes=conv.num_classes, in_channels=conv.in_channels)


def _checked(conv: formats.Conversion, source: str) -> formats.Conversion:
    """Every weight finite after its cast to float32: float64 values beyond float32's range
    would otherwise become inf and every prediction -1."""
    for src, slot, shape, _ in conv.mapping:
        arr = conv.weights[slot]
        if not np.all(np.isfinite(arr)):
            raise FormatError(f"{source}: key {src!r} ({slot}, shape {tuple(shape)}) holds "
                              f"{int(np.count_nonzero(~np.isfinite(arr))):,} values beyond "
                              f"float32's range (|x| > 3.4e38); expected finite float32 "
                              f"weights")
    return conv


def load(path, layout: str = "auto", strict: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """A weights file -> (canonical weights, metadata)."""
    return convert(read_weights(path), layout=_file_layout(os.fspath(path), layout),
                   strict=strict, source=os.fspath(path))


def _file_layout(name: str, layout: str) -> str:
    """An .onnx file's arrays are ONNX initializers whatever their names (a graph may name them
    exactly like the canonical keys, beside integer shape constants)."""
    return "onnx" if layout == "auto" and name.lower().endswith(".onnx") else layout


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


# ---- metadata -------------------------------------------------------------------------------
def parse_meta(text: str, source: str) -> dict:
    """A JSON object string -> checked metadata."""
    try:
        meta = json.loads(text)
    except (TypeError, ValueError, RecursionError) as e:  # deep nesting, int digit limits
        raise FormatError(f"{source}: metadata is not valid JSON ({type(e).__name__}: "
                          f"{str(e)[:200]})") from None
    return check_meta(meta, source)


def check_meta(meta: Mapping[str, Any], source: str, num_classes: Optional[int] = None,
               in_channels: Optional[int] = None) -> dict:
    """Fill defaults (tanh, avg, mean 0, std 1) and check the fields the engine uses. mean and
    std are numbers, or lists of one number per input channel; classes holds one name per
    output. Given the model's K and C, their lengths are checked against them."""
    if not isinstance(meta, Mapping):
        raise FormatError(f"{source}: expected a JSON object / dict; found {type(meta).__name__}")
    out = dict(meta)
    out.setdefault("activation", "tanh")
    out.setdefault("pool", "avg")
    out.setdefault("mean", 0.0)
    out.setdefault("std", 1.0)
    if out["activation"] not in ACTIVATIONS:
        raise FormatError(f"{source}: activation must be one of {', '.join(ACTIVATIONS)}; "
                           f"found {out['activation']!r}")
    if out["pool"] not in POOLS:
        raise FormatError(f"{source}: pool must be one of {', '.join(POOLS)}; found "
                           f"{out['pool']!r}")
    for key in ("mean", "std"):
        v = out[key]
        vs = list(v) if isinstance(v, (list, tuple)) else [v]
        try:
            with np.errstate(over="ignore"):
                ok = len(vs) in (1, in_channels or 3) and all(
                    not isinstance(x, (bool, np.bool_)) and isinstance(x, numbers.Real) and
                    math.isfinite(float(x)) and math.isfinite(np.float32(x)) for x in vs)
        except (OverflowError, ValueError, TypeError):  # an int of 400 digits
            ok = False
        if not ok:
            per = (f", or a list of {in_channels}, one per input channel"
                   if in_channels and in_channels > 1 else
                   "" if in_channels == 1 else ", or a list of one per input channel")
            raise FormatError(f"{source}: {key} must be a finite number; found {_short(v)} "
                              f"(expected a real number within float32's range{per})")
        vs = [float(x) for x in vs]
        out[key] = vs if len(vs) > 1 else vs[0]
    stds = out["std"] if isinstance(out["std"], list) else [out["std"]]
    if any(x <= 0 for x in stds):
        raise FormatError(f"{source}: std must be positive; found {out['std']!r}")
    # The engine folds normalization into float32 scale = 1/std (1/(255 std) for uint8) and
    # shift = -mean/std: each must be a finite float32, and the scale must not round to 0.
    mean, std = out["mean"], out["std"]
    m64, s64 = np.asarray(mean, np.float64), np.asarray(std, np.float64)  # per channel or one
    with np.errstate(over="ignore", under="ignore"):
        scale, scale_u8 = 1.0 / s64 + 0 * m64, 1.0 / (255.0 * s64) + 0 * m64
        shift = -m64 / s64
        as32 = [np.asarray(v).astype(np.float32) for v in (scale, scale_u8, shift)]
    if not (all(np.all(np.isfinite(v)) for v in as32) and np.all(as32[0] > 0) and
            np.all(as32[1] > 0)):
        raise FormatError(f"{source}: mean={mean!r}, std={std!r} give the input scale 1/std = "
                          f"{np.min(scale):.3g} and shift -mean/std = "
                          f"{np.max(np.abs(shift)):.3g}; expected "
                          f"both finite and nonzero in float32 (|x| < 3.4e38, scale > 1.2e-38 "
                          f"after /255)")
    classes = out.get("classes")
    want = f"{num_classes}" if num_classes else "2 or more"
    if classes is not None and (not isinstance(classes, list) or len(classes) < 2 or
                                (num_classes and len(classes) != num_classes)):
        raise FormatError(f"{source}: classes must be a list of {want} names (one per output); "
                          f"found {classes!r}")
    if classes is not None:
        out["classes"] = [str(c) for c in classes]
    return out


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:40] + f"... ({len(text)} characters)"


def override_meta(meta: Mapping[str, Any], **overrides: Any) -> dict:
    """Keyword arguments (activation=, pool=, mean=, std=) win over the file's metadata."""
    out = dict(meta)
    out.update({k: v for k, v in overrides.items() if v is not None})
    return check_meta(out, "arguments")
