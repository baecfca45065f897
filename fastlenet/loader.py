"""Weight files -> canonical LeNet-5 weights and metadata. Pure Python and NumPy.

Weight files are untrusted input: they are read member by member from the zip archive with
numpy's header parser, object arrays are refused before any byte of them is read, and nothing is
ever unpickled (no allow_pickle anywhere). Every error names the file, the key, what was expected
and what was found.

Canonical layout (PyTorch conventions, float32), C = 1 or 3 input channels, K >= 2 classes:
    c1.weight (6, C, 5, 5)   c1.bias (6,)      c3.weight (16, 6, 5, 5)  c3.bias (16,)
    c5.weight (120, 16, 5, 5) c5.bias (120,)   f6.weight (84, 120)      f6.bias (84,)
    output.weight (K, 84)    output.bias (K,)
plus an optional ``fastlenet_meta``: a JSON string (activation, pool, mean, std, classes, ...).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import zipfile
from typing import Any, Mapping, Optional

import numpy as np

from fastlenet import formats
from fastlenet.formats import ACTIVATIONS, CANONICAL_SHAPES, META_KEY, POOLS, FormatError

# The one error for weights that cannot become LeNet-5 (a ValueError); both names work.
WeightsError = FormatError
# LeNet-5's largest array has 48,000 values; anything far larger is not a LeNet weight and is
# refused before it is read (a hostile header can declare any size).
MAX_ARRAY_ELEMENTS = 1 << 24


# ---- reading files --------------------------------------------------------------------------
def read_npz(path) -> dict[str, np.ndarray]:
    """All arrays of an .npz, read safely. OSError for an unreadable file, WeightsError for
    anything that is not a zip of plain .npy arrays (pickles, torch.save files, truncation)."""
    name = os.fspath(path)
    with open(name, "rb") as f:  # OSError (missing, unreadable, a directory) names the path
        head = f.read(8)
    if head.startswith(b"\x93NUMPY"):
        raise FormatError(f"{name}: a single .npy array, not a weights archive; save the "
                           f"weights with np.savez(path, **arrays)")
    if head[:1] == b"\x80":
        raise FormatError(f"{name}: a Python pickle (e.g. torch.save or pickle.dump); fastlenet "
                           f"never unpickles files. Export the weights with np.savez(path, **{{k: "
                           f"v.numpy() for k, v in model.state_dict().items()}})")
    if not head.startswith(b"PK"):
        raise FormatError(f"{name}: not an .npz file (expected a zip archive of .npy arrays as "
                           f"written by numpy.savez; found {head[:8]!r} at the start)")
    try:
        with zipfile.ZipFile(name) as zf:
            members = zf.infolist()
            pickled = [m.filename for m in members if m.filename.endswith(".pkl")]
            if pickled:
                raise FormatError(f"{name}: a torch.save checkpoint (it holds {pickled[0]}); "
                                   f"fastlenet never unpickles files. Export with np.savez(path, "
                                   f"**{{k: v.numpy() for k, v in model.state_dict().items()}})")
            return {m.filename[:-4] if m.filename.endswith(".npy") else m.filename:
                    _read_member(zf, m, name) for m in members if not m.is_dir()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise FormatError(f"{name}: not a readable .npz archive ({e}); the file is truncated "
                          f"or corrupt") from None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
    where = f"{name}: key {key!r}"
    if not info.filename.endswith(".npy"):
        raise FormatError(f"{where}: not an .npy array (an .npz holds only .npy members)")
    try:
        with zf.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
            else:
                raise FormatError(f"{where}: unsupported .npy format version {version}")
            if dtype.hasobject:
                raise FormatError(f"{where}: holds a pickled object array ({dtype}); fastlenet "
                                   f"never unpickles. Store plain numeric arrays")
            count = math.prod(shape)
            if count > MAX_ARRAY_ELEMENTS:
                raise FormatError(f"{where}: declares shape {shape} ({count} values), far larger "
                                   f"than any LeNet-5 weight")
            data = fp.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise FormatError(f"{where}: truncated (expected {count * dtype.itemsize} bytes "
                                   f"of {dtype} for shape {shape}, found {len(data)})")
    except WeightsError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise FormatError(f"{where}: cannot be read ({e}); the file is truncated or "
                          f"corrupt") from None
    except (RuntimeError, NotImplementedError) as e:  # encrypted member, unknown compression
        raise FormatError(f"{where}: cannot be read ({e}); numpy.savez writes plain or deflated, "
                          f"unencrypted members") from None
    arr = np.frombuffer(data, dtype=dtype)
    order = "F" if fortran else "C"
    return arr.reshape(shape[::-1]).T if order == "F" else arr.reshape(shape)


# ---- conversion -----------------------------------------------------------------------------
def read_weights(path) -> dict[str, np.ndarray]:
    """The arrays of a weights file: an .npz, an .onnx model (needs the `onnx` extra), a
    .safetensors file, a Keras .keras archive or .h5 / .weights.h5 file (needs the `keras`
    extra: h5py). Chosen by suffix, else by the file's first bytes."""
    name = os.fspath(path).lower()
    if name.endswith(".onnx"):
        return formats.onnx_arrays(path)
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


def inspect(source, layout: str = "auto", strict: bool = True) -> formats.Conversion:
    """How a file or mapping maps to the canonical layout (framework, key -> name, ignored)."""
    if isinstance(source, Mapping):
        return formats.convert(source, layout=layout, strict=strict, source="weights")
    return formats.convert(read_weights(source), layout=layout, strict=strict,
                           source=os.fspath(source))


def convert(arrays: Mapping[str, Any], layout: str = "auto", strict: bool = True,
            source: str = "weights") -> tuple[dict[str, np.ndarray], dict]:
    """Any supported layout -> (canonical float32 read-only weights, checked metadata)."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"{source}: expected a mapping of weight name -> array; found "
                        f"{type(arrays).__name__}")
    conv = formats.convert(arrays, layout=layout, strict=strict, source=source)
    for arr in conv.weights.values():
        arr.flags.writeable = False
    return conv.weights, check_meta(conv.meta, f"{source}: key {META_KEY!r}",
                                    num_classes=conv.num_classes, in_channels=conv.in_channels)


def load(path, layout: str = "auto", strict: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """A weights file -> (canonical weights, metadata)."""
    return convert(read_weights(path), layout=layout, strict=strict, source=os.fspath(path))


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
    except (TypeError, json.JSONDecodeError) as e:
        raise FormatError(f"{source}: metadata is not valid JSON ({e})") from None
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
        is_list = isinstance(v, (list, tuple))
        vs = list(v) if is_list else [v]
        if (len(vs) not in (1, in_channels or 3) or
                any(isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real) or
                    not math.isfinite(x) for x in vs)):
            per = (f" (or a list of {in_channels}, one per input channel)"
                   if in_channels and in_channels > 1 else
                   "" if in_channels == 1 else " (or a list of one per input channel)")
            raise FormatError(f"{source}: {key} must be a finite number; found {v!r}{per}")
        vs = [float(x) for x in vs]
        out[key] = vs if len(vs) > 1 else vs[0]
    stds = out["std"] if isinstance(out["std"], list) else [out["std"]]
    if any(x <= 0 for x in stds):
        raise FormatError(f"{source}: std must be positive; found {out['std']!r}")
    classes = out.get("classes")
    want = f"{num_classes}" if num_classes else "2 or more"
    if classes is not None and (not isinstance(classes, list) or len(classes) < 2 or
                                (num_classes and len(classes) != num_classes)):
        raise FormatError(f"{source}: classes must be a list of {want} names (one per output); "
                          f"found {classes!r}")
    if classes is not None:
        out["classes"] = [str(c) for c in classes]
    return out


def override_meta(meta: Mapping[str, Any], **overrides: Any) -> dict:
    """Keyword arguments (activation=, pool=, mean=, std=) win over the file's metadata."""
    out = dict(meta)
    out.update({k: v for k, v in overrides.items() if v is not None})
    return check_meta(out, "arguments")
