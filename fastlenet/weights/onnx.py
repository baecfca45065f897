"""The .onnx reader: a model's initializers (and its activation and pooling, read from the
graph's nodes), within the budget. Needs the optional `onnx` package."""
from __future__ import annotations

import json
import os
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



def onnx_arrays(path) -> Dict[str, np.ndarray]:
    """Read the initializers of an ONNX model file, ordered by first use in the graph.

    Requires the optional ``onnx`` package (``pip install fastlenet[onnx]``).
    Initializers never used by a node come last.  The result can be passed to :func:`convert` (``layout="onnx"`` or
    ``"auto"``).
    """
    return read_onnx(path, meta=False)
