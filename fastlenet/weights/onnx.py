"""The .onnx reader: a model's initializers (and its activation and pooling, read from the
graph's nodes), within the budget. Needs the optional `onnx` package."""
from __future__ import annotations

import json
import os
import stat
from typing import Any, Dict

import numpy as np

from fastlenet.weights.checks import (MAX_FILE_BYTES, META_KEY, Budget, FormatError,
                                      check_declared_size)

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
    graph's nodes. Initializers kept in external data files (what torch.onnx.export writes with
    external_data=True, and the dynamo exporter by default: model.onnx + model.onnx.data) are
    read from files beside the model only (see _ExternalData). FormatError for a file that is
    not an ONNX model of a LeNet-5 (corrupt protobuf, bad external data, duplicate or
    undecodable initializers, ops it does not understand); ImportError when the optional `onnx`
    package is missing."""
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
    external = None
    try:
        for init in inits:
            key = init.name
            if not isinstance(key, str):  # protobuf hands back bytes for a name that is not UTF-8
                raise FormatError(f"{name}: initializer name {key!r} is not valid UTF-8; expected "
                                  f"text names")
            if key in by_name:
                raise FormatError(f"{name}: initializer {key!r} appears twice; expected each "
                                  f"weight once (which copy would be the weights?)")
            try:
                dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
            except Exception:
                raise FormatError(f"{name}: initializer {key!r} has ONNX data type "
                                  f"{init.data_type}, which numpy cannot hold; expected float "
                                  f"weights") from None
            budget.take(key, tuple(init.dims), dtype)
            if init.data_location == onnx.TensorProto.EXTERNAL or init.external_data:
                external = external or _ExternalData(name)
                external.load_into(init, key, dtype, onnx.TensorProto.DEFAULT)
            by_name[key] = init
    finally:
        if external is not None:
            external.close()
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


class _ExternalData:
    """Reads initializers that an ONNX model keeps in external files, as untrusted input: a
    `location` must name a regular file in the model's own folder (no absolute path, no `..`,
    no symbolic link that leads out of the folder); `offset` and `length` must be whole numbers
    that lie within that file, and the length must be the tensor's own size (which the budget
    has already admitted). Each data file is opened once, non-blocking (a FIFO never hangs)."""

    def __init__(self, model: str):
        self.model = model
        self.folder = os.path.realpath(os.path.dirname(os.path.abspath(model)))
        self.files: dict = {}

    def _fail(self, key: str, what: str) -> FormatError:
        return FormatError(f"{self.model}: initializer {key!r}: external data {what}")

    def _open(self, key: str, location: str):
        if location in self.files:
            return self.files[location]
        parts = location.replace("\\", "/").split("/")
        if not location or "\0" in location or os.path.isabs(location) or location.startswith(("/", "\\")) or \
                os.path.splitdrive(location)[0] or ".." in parts:
            raise self._fail(key, f"location {location!r}: expected a file name beside the "
                                  f"model (no absolute path, no '..')")
        path = os.path.join(self.folder, *[p for p in parts if p not in ("", ".")])
        real = os.path.realpath(path)
        if os.path.commonpath([real, self.folder]) != self.folder:
            raise self._fail(key, f"location {location!r} leads out of the model's folder "
                                  f"(to {real}); expected a file beside the model")
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) |
                         getattr(os, "O_BINARY", 0))
        except OSError as e:
            raise self._fail(key, f"file {path}: {e.strerror or e}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._fail(key, f"file {path} is not a regular file")
        except BaseException:
            os.close(fd)
            raise
        self.files[location] = (fd, st.st_size, path)
        return self.files[location]

    def load_into(self, init, key: str, dtype, default_location) -> None:
        """Reads the tensor's bytes into init.raw_data and marks it self-contained."""
        info = {}
        for entry in init.external_data:
            info[entry.key] = entry.value
        fd, size, path = self._open(key, info.get("location", ""))
        want = int(np.prod(tuple(init.dims), dtype=np.int64)) * np.dtype(dtype).itemsize
        fields = {}
        for field in ("offset", "length"):
            text = info.get(field)
            if text is None:
                continue
            if not text.isdigit() or len(text) > 20:
                raise self._fail(key, f"{field} {text!r}: expected a non-negative integer")
            fields[field] = int(text)
        offset = fields.get("offset", 0)
        length = fields.get("length", want)
        if length != want:
            raise self._fail(key, f"length {length:,} in {path}: expected {want:,} bytes, the "
                                  f"size of its shape {tuple(init.dims)} of {np.dtype(dtype)}")
        if offset + length > size:
            raise self._fail(key, f"bytes {offset:,}..{offset + length:,} lie past the end of "
                                  f"{path} ({size:,} bytes); the file is truncated or not this "
                                  f"model's")
        data = os.pread(fd, length, offset) if hasattr(os, "pread") else self._read(fd, offset,
                                                                                     length)
        if len(data) != length:
            raise self._fail(key, f"{path}: read {len(data):,} of {length:,} bytes")
        init.raw_data = data
        del init.external_data[:]
        init.data_location = default_location

    @staticmethod
    def _read(fd, offset, length) -> bytes:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, length)

    def close(self) -> None:
        for fd, _, _ in self.files.values():
            os.close(fd)
        self.files.clear()


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



def onnx_arrays(path) -> Dict[str, np.ndarray]:
    """Read the initializers of an ONNX model file, ordered by first use in the graph.

    Requires the optional ``onnx`` package (``pip install fastlenet[onnx]``).
    Initializers never used by a node come last.  The result can be passed to :func:`convert` (``layout="onnx"`` or
    ``"auto"``).
    """
    return read_onnx(path, meta=False)
