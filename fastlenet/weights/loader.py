"""A weights file or mapping -> canonical weights and checked metadata: which reader a file
needs, and the conversion every Net is built through."""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from fastlenet.weights import layout as _layout
from fastlenet.weights.checks import MAX_ARRAY_ELEMENTS, META_KEY, FormatError, check_meta

def read_weights(path) -> dict[str, np.ndarray]:
    """The arrays of a weights file: an .npz, an .onnx model (needs the `onnx` extra), a
    .safetensors file, a Keras .keras archive or .h5 / .weights.h5 file (needs the `keras`
    extra: h5py). Chosen by suffix, else by the file's first bytes."""
    name = os.fspath(path).lower()
    if name.endswith(".onnx"):
        from fastlenet.weights.onnx import read_onnx

        return read_onnx(path)
    kind = _sniff(path) if not name.endswith((".npz", ".pt", ".pth")) else "npz"
    if kind == "safetensors":
        from fastlenet.weights import safetensors

        return safetensors.read(path, MAX_ARRAY_ELEMENTS)
    if kind in ("keras", "h5"):
        from fastlenet.weights import keras as keras_files

        read = keras_files.read_keras if kind == "keras" else keras_files.read_h5
        return read(path, MAX_ARRAY_ELEMENTS)
    from fastlenet.weights.npz import read_npz

    return read_npz(path)


def _sniff(path) -> str:
    """'safetensors', 'keras', 'h5' or 'npz' (whose reader explains anything else)."""
    from fastlenet.weights import keras as keras_files, safetensors

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


def inspect(source, layout: str = "auto", strict: bool = True) -> _layout.Conversion:
    """How a file or mapping maps to the canonical layout (framework, key -> name, ignored)."""
    name = "weights" if isinstance(source, Mapping) else os.fspath(source)
    arrays = source if isinstance(source, Mapping) else read_weights(source)
    layout = _file_layout(name, layout) if not isinstance(source, Mapping) else layout
    with np.errstate(over="ignore"):  # casts beyond float32 are reported by _checked
        return _checked(_layout.convert(arrays, layout=layout, strict=strict, source=name),
                        name)


class Canonical(dict):
    """What convert returns: canonical float32 weights, checked and read-only, so that a Net
    built from them takes them as they are instead of converting and copying them again."""


def convert(arrays: Mapping[str, Any], layout: str = "auto", strict: bool = True,
            source: str = "weights") -> tuple[dict[str, np.ndarray], dict]:
    """Any supported layout -> (canonical float32 read-only weights, checked metadata)."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"{source}: expected a mapping of weight name -> array; found "
                        f"{type(arrays).__name__}")
    with np.errstate(over="ignore"):  # casts beyond float32 are reported by _checked
        conv = _checked(_layout.convert(arrays, layout=layout, strict=strict, source=source),
                        source)
    for arr in conv.weights.values():
        arr.flags.writeable = False
    return Canonical(conv.weights), check_meta(conv.meta, f"{source}: key {META_KEY!r}",
                                    num_classes=conv.num_classes, in_channels=conv.in_channels)


def _checked(conv: _layout.Conversion, source: str) -> _layout.Conversion:
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

