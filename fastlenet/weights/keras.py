"""Read Keras's own files without Keras: `.keras` archives, legacy `.h5` models and `.weights.h5`.

    model.save("m.keras")          zip: config.json (the architecture), model.weights.h5
    model.save("m.h5")             HDF5 (legacy): attribute model_config + group model_weights
    model.save_weights("m.weights.h5")   HDF5: layers/<name>/vars/0, 1 ... (Keras 3)
    (Keras 2 / tf.keras save_weights("m.h5"): like model_weights, at the file's root)

HDF5 is read with h5py (the `keras` extra: pip install "fastlenet[keras]"); nothing is unpickled
and no framework is imported. The files are untrusted input: only hard links inside the file are
followed (no external links, external storage or virtual datasets), every dataset's shape and
dtype are checked against the size budget before it is read, and an archive member's declared
size is checked before it is decompressed.

Layer order comes from the file's own records: the config's layer list (.keras, and the legacy
model_config), the `layer_names` / `weight_names` attributes (legacy .h5), or for a bare
`.weights.h5` the groups' creation order when the file tracks it, else Keras 3's numbering of
the layer groups (conv2d, conv2d_1, ... in model order; each carries the layer's own name). The arrays are then placed into LeNet-5's slots by
shape and by their layer groups (fastlenet.weights.layout.convert), so the order only ever breaks ties.
Optimizer state (Keras saves it beside the weights of a compiled model) is skipped: such files
load with strict=True.

Where the file records the architecture (a .keras config, a legacy model_config), the
activation and pooling come from it, and unsupported layers or settings are refused by name.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from fastlenet.names import natural_key
from fastlenet.weights.checks import META_KEY, FormatError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ARCHIVE_MEMBERS = ("config.json", "model.weights.h5")
# A config.json for LeNet-5 is a few KB; anything above this is not one.
MAX_CONFIG_BYTES = 16 << 20

_ACTS = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid", "linear": None, None: None}
_POOLS = {"AveragePooling2D": "avg", "AvgPool2D": "avg", "MaxPooling2D": "max", "MaxPool2D": "max"}
# Layers with no weights and no effect at inference.
_PASSIVE = {"InputLayer", "Flatten", "Dropout", "SpatialDropout2D", "GaussianNoise",
            "GaussianDropout", "AlphaDropout", "ActivityRegularization"}


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError("reading Keras .keras / .h5 files needs the optional 'h5py' package: "
                          "pip install \"fastlenet[keras]\"") from e
    return h5py


def is_keras_archive(path) -> bool:
    try:
        with zipfile.ZipFile(os.fspath(path)) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile):
        return False
    return all(m in names for m in ARCHIVE_MEMBERS)


# ---- .keras archives --------------------------------------------------------------------------
def read_keras(path, max_elements: int) -> Dict[str, np.ndarray]:
    """The weights of a `.keras` archive, in the config's layer order, with the activation and
    pooling from its config under fastlenet_meta."""
    name = os.fspath(path)
    try:
        with zipfile.ZipFile(name) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            missing = [m for m in ARCHIVE_MEMBERS if m not in infos]
            if missing:
                raise FormatError(f"{name}: not a Keras .keras archive (no {missing[0]}; it "
                                  f"holds {', '.join(sorted(infos)[:6]) or 'nothing'})")
            limits = {"config.json": MAX_CONFIG_BYTES, "model.weights.h5": 16 * max_elements}
            blobs = {}
            for member, limit in limits.items():
                info = infos[member]
                if info.file_size > limit:
                    raise FormatError(f"{name}: {member} declares {info.file_size} bytes, far "
                                      f"more than a LeNet-5's")
                with zf.open(info) as fp:
                    blobs[member] = fp.read(limit + 1)
                if len(blobs[member]) > limit:
                    raise FormatError(f"{name}: {member} is larger than it declares")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise FormatError(f"{name}: not a readable .keras archive ({e}); the file is truncated "
                          f"or corrupt") from None
    except (RuntimeError, NotImplementedError, ValueError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"{name}: cannot read the archive ({e})") from None
    try:
        config = json.loads(blobs["config.json"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{name}: config.json is not valid JSON ({e})") from None
    if _is_subclassed(config):  # no layer list: the weights only, keywords say the rest
        layers, meta = [], {}
    else:
        layers = _config_layers(config, f"{name}: config.json")
        meta = _architecture(layers, f"{name}: config.json")
    h5py = _h5py()
    where = f"{name}: model.weights.h5"
    with _open_h5(h5py, io.BytesIO(blobs["model.weights.h5"]), where) as f:
        found = _keras3_layers(h5py, f, where, max_elements)
    order = [lay["name"] for lay in layers if lay["name"] in found]
    order += [k for k in found if k not in order]  # nested models: not in the top-level list
    arrays: Dict[str, np.ndarray] = {}
    kinds = {lay["name"]: lay["class_name"] for lay in layers}
    for lname in order:
        for key, arr in _name_vars(lname, found[lname], kinds.get(lname)):
            arrays[key] = arr
    if meta:
        arrays[META_KEY] = np.array(json.dumps(meta))
    return arrays


def _is_subclassed(config) -> bool:
    """A subclassed keras.Model's config records no layers (only its constructor arguments)."""
    return (isinstance(config, dict) and isinstance(config.get("config"), dict) and
            "layers" not in config["config"] and
            config.get("class_name") not in ("Sequential", "Functional"))


# ---- .h5 files --------------------------------------------------------------------------------
def read_h5(path, max_elements: int) -> Dict[str, np.ndarray]:
    """The weights of a Keras HDF5 file: a legacy model.save("m.h5") (architecture in its
    model_config attribute), a Keras 2 save_weights .h5, or a Keras 3 .weights.h5."""
    name = os.fspath(path)
    h5py = _h5py()
    with open(name, "rb") as fp:  # OSError names the path
        head = fp.read(8)
    if head != HDF5_MAGIC:
        raise FormatError(f"{name}: not an HDF5 file (expected the signature {HDF5_MAGIC!r} at "
                          f"the start, found {head!r}); Keras writes .h5 and .weights.h5 as HDF5")
    with _open_h5(h5py, name, name) as f:
        meta: Dict[str, Any] = {}
        config = f.attrs.get("model_config")
        if config is not None:
            if isinstance(config, bytes):
                config = config.decode("utf-8", "replace")
            try:
                config = json.loads(str(config))
            except json.JSONDecodeError as e:
                raise FormatError(f"{name}: attribute model_config is not valid JSON ({e})") from None
            meta = _architecture(_config_layers(config, f"{name}: model_config"),
                                 f"{name}: model_config")
        if "model_weights" in f and _hard(h5py, f, "model_weights"):
            arrays = _legacy_layers(h5py, f["model_weights"], name, max_elements)
        elif "layer_names" in f.attrs:
            arrays = _legacy_layers(h5py, f, name, max_elements)
        else:
            found = _keras3_layers(h5py, f, name, max_elements)
            arrays = {}
            for lname, vars_ in found.items():
                for key, arr in _name_vars(lname, vars_, None):
                    arrays[key] = arr
    if meta:
        arrays[META_KEY] = np.array(json.dumps(meta))
    return arrays


# ---- HDF5 helpers -----------------------------------------------------------------------------
class _open_h5:
    """h5py.File for reading, with HDF5's own errors turned into FormatError."""

    def __init__(self, h5py, source, where):
        self.h5py, self.source, self.where = h5py, source, where

    def __enter__(self):
        try:
            self.f = self.h5py.File(self.source, "r")
        except OSError as e:
            if isinstance(self.source, str) and not os.path.isfile(self.source):
                raise
            raise FormatError(f"{self.where}: not a readable HDF5 file ({e}); the file is "
                              f"truncated or corrupt") from None
        return self.f

    def __exit__(self, *exc):
        self.f.close()
        if exc[0] is not None and issubclass(exc[0], (OSError, KeyError, RuntimeError)) and \
                not issubclass(exc[0], FormatError):
            raise FormatError(f"{self.where}: cannot be read ({exc[1]}); the file is truncated "
                              f"or corrupt") from None
        return False


def _hard(h5py, group, key) -> bool:
    """Only links inside this file: a soft or external link could point anywhere."""
    return isinstance(group.get(key, getlink=True), h5py.HardLink)


def _children(h5py, group) -> List[str]:
    """The group's hard-linked members in creation order when the file tracks it, else in
    Keras 3's own numbering: it names each layer's group after its class with a counter in model
    order (conv2d, conv2d_1, ..., dense_2; the layer's own name is the vars group's `name`
    attribute), so natural order is model order within each class."""
    keys = [k for k in group.keys() if _hard(h5py, group, k)]
    try:
        tracked = group.id.get_create_plist().get_link_creation_order()
    except Exception:  # pragma: no cover - very old HDF5
        tracked = 0
    if tracked:
        return keys  # h5py lists a creation-order-tracked group in that order
    return sorted(keys, key=natural_key)


def _read_dataset(h5py, ds, where: str, max_elements: int) -> np.ndarray:
    if not isinstance(ds, h5py.Dataset):
        raise FormatError(f"{where}: expected a dataset, found a {type(ds).__name__}")
    if ds.is_virtual or ds.external:
        raise FormatError(f"{where}: stored outside this file (virtual or external dataset); "
                          f"fastlenet reads only data inside the file")
    if ds.dtype.kind not in "fiub":
        raise FormatError(f"{where}: has dtype {ds.dtype}; expected numeric weights")
    count = int(np.prod(ds.shape, dtype=np.int64)) if ds.shape else 1
    if count > max_elements:
        raise FormatError(f"{where}: declares shape {ds.shape} ({count} values), far larger "
                          f"than any LeNet-5 weight")
    return np.asarray(ds[()])


# Groups at the root of a Keras 3 weights file that hold training state, not layers.
_TRAINING_STATE = ("optimizer", "metrics", "compile_metrics", "loss")


def _keras3_layers(h5py, f, where: str, max_elements: int) -> Dict[str, List[np.ndarray]]:
    """Keras 3 weights: {layer name: [vars in their index order]} for every layer with weights.
    A layer is a group with a `vars` subgroup of numbered datasets: under `layers` for Sequential
    and Functional models (nested models recurse), under the attribute names for subclassed ones
    (conv1/vars ...). The layer's own name is the vars group's `name` attribute. Optimizer and
    metric state are skipped."""
    out: Dict[str, List[np.ndarray]] = {}
    seen = set()  # hard links can make cycles (a group linked into itself): visit each once

    def walk(group, prefix, depth):
        if depth > 16:
            raise FormatError(f"{where}: layer groups nested more than 16 deep")
        for lname in _children(h5py, group):
            layer = group[lname]
            if not isinstance(layer, h5py.Group) or lname == "vars" or \
                    (depth == 0 and lname.startswith(_TRAINING_STATE)):
                continue
            info = h5py.h5o.get_info(layer.id)
            if (info.fileno, info.addr) in seen:
                continue
            seen.add((info.fileno, info.addr))
            path = f"{prefix}{lname}"
            if "vars" in layer and _hard(h5py, layer, "vars"):
                vars_ = layer["vars"]
                own = vars_.attrs.get("name")  # the layer's name, as in the model's config
                if isinstance(own, bytes):
                    own = own.decode("utf-8", "replace")
                key = f"{prefix}{own}" if isinstance(own, str) and own else path
                if key in out:
                    key = path
                idx = sorted((k for k in vars_.keys() if k.isdigit() and _hard(h5py, vars_, k)),
                             key=int)
                if idx:
                    out[key] = [_read_dataset(h5py, vars_[k], f"{where}: {path}/vars/{k}",
                                              max_elements) for k in idx]
            walk(layer, "" if lname == "layers" else path + "/", depth + 1)

    walk(f, "", 0)
    if not out:
        raise FormatError(f"{where}: no layer weights (expected Keras 3 groups such as "
                          f"layers/<name>/vars/0, 1, ...; the file holds "
                          f"{', '.join(list(f)[:6]) or 'nothing'})")
    return out


def _name_vars(lname: str, vars_: List[np.ndarray], kind: Optional[str]) -> List[Tuple[str, np.ndarray]]:
    """Keras 3 stores a Conv2D's / Dense's vars as 0 = kernel, 1 = bias."""
    if kind in ("Conv2D", "Dense") or (kind is None and len(vars_) == 2 and vars_[1].ndim == 1):
        names = ["kernel", "bias"] + [f"var{i}" for i in range(2, len(vars_))]
    else:
        names = [f"var{i}" for i in range(len(vars_))]
    return [(f"{lname}/{n}", v) for n, v in zip(names, vars_)]


def _attr_names(value) -> List[str]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            for v in np.asarray(value).reshape(-1)]


def _legacy_layers(h5py, group, where: str, max_elements: int) -> Dict[str, np.ndarray]:
    """Keras 2-style weights: the layer_names attribute lists the layers in model order; each
    layer group's weight_names attribute lists its weights (e.g. 'dense/kernel:0') in order."""
    arrays: Dict[str, np.ndarray] = {}
    for lname in _attr_names(group.attrs.get("layer_names", [])):
        if lname not in group or not _hard(h5py, group, lname):
            raise FormatError(f"{where}: layer_names lists {lname!r} but the file has no such "
                              f"group")
        layer = group[lname]
        for wname in _attr_names(layer.attrs.get("weight_names", [])):
            if wname not in layer:
                raise FormatError(f"{where}: layer {lname!r} lists weight {wname!r} but the file "
                                  f"has no such dataset")
            arrays[wname] = _read_dataset(h5py, layer[wname], f"{where}: {lname}/{wname}",
                                          max_elements)
    if not arrays:
        raise FormatError(f"{where}: the file lists no layer weights (layer_names / weight_names "
                          f"attributes are empty)")
    return arrays


# ---- the architecture from a Keras config -----------------------------------------------------
def _config_layers(config, where: str) -> List[Dict[str, Any]]:
    """[{class_name, name, config}] of a Sequential or Functional model, in model order."""
    if not isinstance(config, dict) or not isinstance(config.get("config"), (dict, list)):
        raise FormatError(f"{where}: expected a Keras model config (class_name, config)")
    # Keras <= 2.2 wrote a Sequential's config as the bare layer list
    layers = config["config"] if isinstance(config["config"], list) else \
        config["config"].get("layers")
    if not isinstance(layers, list):
        raise FormatError(f"{where}: a {config.get('class_name')!r} model without a layer list; "
                          f"fastlenet reads Sequential and Functional models (subclassed models: "
                          f"save the weights with save_weights and pass activation= and pool=)")
    out = []
    for lay in layers:
        if not isinstance(lay, dict) or not isinstance(lay.get("config"), dict):
            raise FormatError(f"{where}: malformed layer entry {lay!r:.80}")
        cfg = lay["config"]
        if lay.get("class_name") in ("Sequential", "Functional", "Model"):
            out += _config_layers(lay, where)  # a nested model: its layers, in order
            continue
        out.append({"class_name": lay.get("class_name"), "name": str(cfg.get("name") or
                                                                     lay.get("name")),
                    "config": cfg, "build_config": lay.get("build_config")})
    return out


def _activation_name(value, where) -> Optional[str]:
    if isinstance(value, dict):  # {"class_name": "function", "config": "tanh", ...}
        value = value.get("config") if isinstance(value.get("config"), str) else \
            value.get("class_name")
    if value == "softmax":
        return "softmax"
    if value not in _ACTS:
        raise FormatError(f"{where}: activation {value!r} is not one fastlenet runs (tanh, relu, "
                          f"sigmoid)")
    return _ACTS[value]


def _architecture(layers: List[Dict[str, Any]], where: str) -> Dict[str, Any]:
    """activation, pool (and input_size for a 28x28 'same'-padded C1) of a Keras LeNet-5,
    checked layer by layer: convolutions 5x5 stride 1, pooling 2x2 stride 2, one activation
    for C1, C3, C5 and F6."""
    acts: List[Optional[str]] = []  # one per weighted layer, after any Activation layers
    pools: List[str] = []
    meta: Dict[str, Any] = {"source": "keras"}
    for lay in layers:
        kind, cfg, lname = lay["class_name"], lay["config"], lay["name"]
        at = f"{where}: layer {lname!r} ({kind})"
        if kind in _PASSIVE:
            if kind == "InputLayer":
                shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
                if isinstance(shape, list) and len(shape) == 4 and shape[1] == 28:
                    meta["input_size"] = 28
            continue
        if kind in ("Conv2D", "Dense"):
            if kind == "Conv2D":
                if cfg.get("data_format", "channels_last") != "channels_last":
                    raise FormatError(f"{at}: data_format {cfg.get('data_format')!r}; fastlenet "
                                      f"reads channels_last Keras models")
                if list(cfg.get("kernel_size", [5, 5])) != [5, 5] or \
                        list(cfg.get("strides", [1, 1])) != [1, 1] or \
                        list(cfg.get("dilation_rate", [1, 1])) != [1, 1] or cfg.get("groups", 1) != 1:
                    raise FormatError(f"{at}: LeNet-5 convolutions are 5x5, stride 1; found "
                                      f"kernel_size {cfg.get('kernel_size')}, strides "
                                      f"{cfg.get('strides')}")
                pad = cfg.get("padding", "valid")
                first = not acts
                built = (lay.get("build_config") or {}).get("input_shape") \
                    if isinstance(lay.get("build_config"), dict) else None
                if first and "input_size" not in meta and isinstance(built, list) and \
                        len(built) == 4 and built[1] == 28:  # no InputLayer: the built shape
                    meta["input_size"] = 28
                if pad != "valid" and not (pad == "same" and first and meta.get("input_size") == 28):
                    raise FormatError(f"{at}: padding {pad!r}; LeNet-5 convolutions are 'valid' "
                                      f"(a 'same' first convolution only on 28x28 input)")
            if cfg.get("use_bias", True) is False:
                raise FormatError(f"{at}: use_bias=False; fastlenet's LeNet-5 has a bias in "
                                  f"every layer")
            acts.append(_activation_name(cfg.get("activation"), at))
            continue
        if kind in ("Activation", "ReLU", "Softmax"):
            a = {"ReLU": "relu", "Softmax": "softmax"}.get(kind) or \
                _activation_name(cfg.get("activation"), at)
            if kind == "ReLU" and any(cfg.get(k) not in (None, 0, 0.0) for k in
                                      ("max_value", "negative_slope", "threshold")):
                raise FormatError(f"{at}: a ReLU with max_value/negative_slope/threshold is not "
                                  f"one fastlenet runs")
            if not acts or acts[-1] is not None:
                raise FormatError(f"{at}: an activation after a layer that already has one (or "
                                  f"before any)")
            acts[-1] = a
            continue
        if kind in _POOLS:
            if list(cfg.get("pool_size", [2, 2])) != [2, 2] or \
                    list(cfg.get("strides") or [2, 2]) != [2, 2] or \
                    cfg.get("padding", "valid") != "valid":
                raise FormatError(f"{at}: LeNet-5 pools 2x2 with stride 2, 'valid'; found "
                                  f"pool_size {cfg.get('pool_size')}, strides {cfg.get('strides')}")
            pools.append(_POOLS[kind])
            continue
        raise FormatError(f"{at}: a layer fastlenet does not run (it reads Conv2D, Dense, "
                          f"AveragePooling2D / MaxPooling2D, Activation, Flatten, Dropout; "
                          f"normalization belongs in the metadata's mean and std)")
    if len(acts) != 5:
        raise FormatError(f"{where}: {len(acts)} Conv2D/Dense layers; LeNet-5 has 5 (C1, C3, C5, "
                          f"F6, output)")
    hidden = set(acts[:4])
    if len(hidden) != 1 or None in hidden or "softmax" in hidden:
        raise FormatError(f"{where}: the hidden layers' activations are {acts[:4]}; fastlenet "
                          f"runs one activation (tanh, relu or sigmoid) after C1, C3, C5 and F6")
    if len(set(pools)) != 1 or len(pools) != 2:
        raise FormatError(f"{where}: pooling layers {pools}; LeNet-5 has two of one kind")
    meta["activation"] = acts[0]
    meta["pool"] = pools[0]
    if acts[4] not in (None, "softmax"):
        meta["output_activation"] = acts[4]  # predict_proba is a softmax of the logits
    return meta
