"""Convert LeNet-5 weights exported by other frameworks to fastlenet's canonical layout.

Pure Python + numpy.  The entry point is :func:`convert`::

    from fastlenet.weights.layout import convert, Conversion
    conv = convert(arrays, layout="auto", strict=True, source="weights.npz")
    conv.weights    # {canonical name: float32 C-contiguous array}

Canonical layout (PyTorch conventions, float32), C = 1 or 3 input channels, K = 2..65,536
classes (the classic net: C = 1, K = 10)::

    c1.weight (6,C,5,5)     c1.bias (6,)
    c3.weight (16,6,5,5)    c3.bias (16,)
    c5.weight (120,16,5,5)  c5.bias (120,)
    f6.weight (84,120)      f6.bias (84,)
    output.weight (K,84)    output.bias (K,)

plus the optional ``fastlenet_meta`` key: a JSON object (string) with e.g.
``activation``, ``pool``, ``mean``, ``std``, ``classes``, ``source``.  It is
parsed into ``Conversion.meta``.

How layers are identified
-------------------------
Layer identity comes from *shapes and the network's structure*, never from
names alone: every LeNet-5 tensor has a shape that fits exactly one slot
(C1/C3/C5 kernels in OIHW or HWIO, C5 also as a dense (120,400)/(400,120)
matrix, F6 (84,120)/(120,84), output (K,84)/(84,K), biases of length
6/16/120/84/K).  K is read from the output weight, and the output bias must
have K values.  When K equals another layer's width (6, 16, 84, 120) an array
fits two slots: names decide, then the family's orientation, then (for a
bias) the array stored right after its layer's kernel.  So ``fc1`` may be C5 in one model and F6 in another, and
the key order in the file (``arr_10`` sorts before ``arr_2`` as a string,
flax dicts are not in layer order) does not matter.  Names are used only for
what shapes cannot decide:

* the framework family, which fixes the flatten order of a C5 given as a
  dense layer: PyTorch/ONNX flatten NCHW activations in (C,H,W) order,
  Keras/Flax flatten NHWC activations in (H,W,C) order;
* the orientation of a square matrix (never happens for LeNet-5, but the
  family hint is honoured: torch/onnx ``(out,in)``, keras/flax ``(in,out)``);
* breaking ties with ``strict=False`` when several arrays fit one slot
  (``kernel``/``weight`` leaves beat others, a bias sharing its kernel's name
  prefix beats other biases).  If names cannot decide: :class:`FormatError`.

``layout=`` values
------------------
``"auto"``
    Detect from the key names and shapes (default).
``"canonical"``
    Exactly the canonical key names and shapes above; nothing is reordered.
``"pytorch"``
    A ``state_dict()`` saved as npz, any module naming (``nn.Sequential``
    indices, nested ``features.0.weight``, named attributes, a DataParallel
    ``module.`` prefix).  Conv kernels OIHW, Linear weights ``(out,in)``;
    a C5 ``Linear(400,120)`` takes (C,H,W)-flattened input.
``"keras"``
    Keras 3 / Keras 2 / tf.keras: ``{w.path: w.numpy()}`` (``sequential/conv2d/kernel``),
    TF2 ``w.name`` keys with ``:0`` suffix, or ``*model.get_weights()``.
    Conv kernels HWIO, Dense kernels ``(in,out)``; a C5 ``Dense(120)`` after
    ``Flatten`` takes (H,W,C)-flattened input.
``"flax"``
    ``flax.traverse_util.flatten_dict(variables, sep="/")``
    (``params/Conv_0/kernel``, ``params/Dense_0/kernel``).  Same conventions
    as keras (HWIO, ``(in,out)``, (H,W,C) flatten).
``"onnx"``
    Initializers of an ONNX export of a PyTorch LeNet-5 (``onnx.numpy_helper.to_array``),
    names such as ``conv1.weight`` or ``onnx::MatMul_42``.  Conv kernels OIHW,
    dense matrices in either orientation (Gemm ``transB=1`` keeps ``(out,in)``,
    MatMul uses ``(in,out)``), (C,H,W) flatten.  Integer arrays (shape
    constants the exporters add) are ignored and listed in ``Conversion.ignored``.
``"positional"``
    Ignore names entirely (``np.savez(path, *arrays)`` -> ``arr_0``...).
    Slots come from shapes alone; the family (and so the C5 flatten order) is
    read from the conv kernels' orientation: OIHW -> PyTorch, HWIO -> Keras.

An explicit family layout (``pytorch``/``keras``/``flax``) also restricts the
accepted orientations to that family's conventions.

Every problem raises :class:`FormatError` (a ``ValueError``) naming the
source, the key, the expected and the found shape: missing layers, shapes
that fit no layout, NaN/Inf, object arrays (never unpickled), non-float
weights, extra arrays under ``strict=True`` and ambiguous candidates.
"""

from __future__ import annotations

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from fastlenet.names import natural_key
from fastlenet.weights.checks import META_KEY, FormatError, meta_from_array

CANONICAL_SHAPES: Dict[str, Tuple[int, ...]] = {
    "c1.weight": (6, 1, 5, 5),
    "c1.bias": (6,),
    "c3.weight": (16, 6, 5, 5),
    "c3.bias": (16,),
    "c5.weight": (120, 16, 5, 5),
    "c5.bias": (120,),
    "f6.weight": (84, 120),
    "f6.bias": (84,),
    "output.weight": (10, 84),
    "output.bias": (10,),
}

# LeNet-5s in the wild take 1 (grayscale) or 3 (RGB) input channels and have any number of
# classes K: the C1 kernel is (6, C, 5, 5) and the output layer (K, 84). CANONICAL_SHAPES above
# is the classic C = 1, K = 10 net; canonical_shapes gives the others.
IN_CHANNELS = (1, 3)
MIN_CLASSES = 2
MAX_CLASSES = 65536  # the engine's FL_MAX_CLASSES


def canonical_shapes(in_channels: int = 1, num_classes: int = 10) -> Dict[str, Tuple[int, ...]]:
    """The canonical shapes for C input channels and K classes."""
    out = dict(CANONICAL_SHAPES)
    out["c1.weight"] = (6, in_channels, 5, 5)
    out["output.weight"] = (num_classes, 84)
    out["output.bias"] = (num_classes,)
    return out


def geometry(weights: Mapping[str, Any]) -> Tuple[int, int]:
    """(in_channels, num_classes) of canonical weights."""
    return int(np.shape(weights["c1.weight"])[1]), int(np.shape(weights["output.weight"])[0])

LAYOUTS = ("auto", "canonical", "pytorch", "keras", "flax", "onnx", "positional")


_KERAS_LIKE = ("keras", "flax")

_LAYER_LABEL = {"c1": "C1", "c3": "C3", "c5": "C5", "f6": "F6", "output": "output"}



@dataclass
class Conversion:
    """Result of :func:`convert`."""

    weights: Dict[str, np.ndarray]
    framework: str
    layout: str
    mapping: List[Tuple[str, str, Tuple[int, ...], str]] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return geometry(self.weights)[0]

    @property
    def num_classes(self) -> int:
        return geometry(self.weights)[1]

    def describe(self) -> str:
        """Human-readable multi-line summary of the mapping."""
        lines = [f"framework={self.framework} layout={self.layout}"]
        for src, dst, shape, note in self.mapping:
            lines.append(f"  {src!r} {tuple(shape)} -> {dst} ({note})")
        if self.ignored:
            lines.append("  ignored: " + ", ".join(repr(k) for k in self.ignored))
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def _shape(a) -> Tuple[int, ...]:
    return tuple(int(d) for d in np.shape(a))


def _fmt(shape) -> str:
    return str(tuple(int(d) for d in shape))


def _clean_name(key: str) -> str:
    """Strip TF ``:0`` suffixes and DataParallel ``module.`` prefixes."""
    k = re.sub(r":\d+$", "", key)
    while k.startswith("module."):
        k = k[len("module."):]
    return k


def _split(key: str) -> Tuple[str, str]:
    """Split a cleaned key into (prefix, leaf) on the last '.' or '/'."""
    k = _clean_name(key)
    i = max(k.rfind("."), k.rfind("/"))
    if i < 0:
        return "", k
    return k[:i], k[i + 1:]


_KERNEL_LEAVES = ("weight", "kernel", "w")
_BIAS_LEAVES = ("bias", "b")


# --------------------------------------------------------------------------- slots
#
# A "candidate" is one way an array can fill a slot:
# (slot, transform-name, family-set, note)
# family-set says which families produce that orientation natively.

def _cands_for_shape(shape: Tuple[int, ...], any_k: bool = True):
    """Every slot an array of this shape can fill. any_k: an output layer of any K (else only the
    classic K = 10, for telling a mistyped weight from an unrelated integer array)."""
    out = []
    s = shape
    # conv kernels
    for name, o, ins in (("c1", 6, IN_CHANNELS), ("c3", 16, (6,)), ("c5", 120, (16,))):
        for i in ins:
            if s == (o, i, 5, 5):
                out.append((name + ".weight", "oihw", "torch", "as is (OIHW)"))
            if s == (5, 5, i, o):
                out.append((name + ".weight", "hwio", "keras", "transposed HWIO->OIHW"))
    # dense C5
    if s == (120, 400):
        out.append(("c5.weight", "dense_out_in", "torch", "C5 Linear(400,120) -> conv"))
    if s == (400, 120):
        out.append(("c5.weight", "dense_in_out", "keras", "C5 dense kernel (in,out) (400,120) -> conv"))
    if s == (84, 120):
        out.append(("f6.weight", "out_in", "torch", "as is (out,in)"))
    if s == (120, 84):
        out.append(("f6.weight", "in_out", "keras", "transposed (in,out)->(out,in)"))
    ks = range(MIN_CLASSES, MAX_CLASSES + 1) if any_k else (10,)
    if len(s) == 2 and s[1] == 84 and s[0] in ks:
        out.append(("output.weight", "out_in", "torch", "as is (out,in)"))
    if len(s) == 2 and s[0] == 84 and s[1] in ks:
        out.append(("output.weight", "in_out", "keras", "transposed (in,out)->(out,in)"))
    for name, n in (("c1", 6), ("c3", 16), ("c5", 120), ("f6", 84)):
        if s == (n,):
            out.append((name + ".bias", "bias", "any", "as is"))
    if len(s) == 1 and s[0] in ks:  # K is known once the output weight is placed
        out.append(("output.bias", "bias", "any", "as is"))
    return out


def _expected_text(slot: str, k: Optional[int] = None, c: Optional[int] = None) -> str:
    layer = slot.split(".")[0]
    label = _LAYER_LABEL[layer]
    if slot == "output.bias":
        return f"output bias ({k},)" if k else "output bias (K,) (one per class)"
    if slot == "output.weight":
        return (f"output weight (K, 84) (out,in) or (84, K) (in,out), K = {MIN_CLASSES}.."
                f"{MAX_CLASSES} classes")
    if slot.endswith(".bias"):
        return f"{label} bias {_fmt(CANONICAL_SHAPES[slot])}"
    if layer == "c1" and c:
        return f"{label} kernel (6, {c}, 5, 5) (OIHW) or (5, 5, {c}, 6) (HWIO)"
    if layer == "c1":
        return (f"{label} kernel (6, 1, 5, 5) (OIHW) or (5, 5, 1, 6) (HWIO), or for RGB input "
                f"(6, 3, 5, 5) / (5, 5, 3, 6)")
    if layer == "c3":
        o, i = CANONICAL_SHAPES[slot][:2]
        return f"{label} kernel {_fmt((o, i, 5, 5))} (OIHW) or {_fmt((5, 5, i, o))} (HWIO)"
    if layer == "c5":
        return ("C5 kernel (120, 16, 5, 5) (OIHW) or (5, 5, 16, 120) (HWIO) "
                "or dense (120, 400) (out,in) or (400, 120) (in,out)")
    o, i = CANONICAL_SHAPES[slot]
    return f"{label} weight {_fmt((o, i))} (out,in) or {_fmt((i, o))} (in,out)"


def _c1_channels(a) -> Optional[int]:
    s = _shape(a)
    return s[1] if len(s) == 4 and s[0] == 6 else s[2] if len(s) == 4 else None


def _kind(shape) -> str:
    return {1: "bias", 2: "matrix", 4: "kernel"}.get(len(shape), "other")


def _slot_kinds(slot: str) -> Tuple[str, ...]:
    if slot.endswith(".bias"):
        return ("bias",)
    if slot == "c5.weight":
        return ("kernel", "matrix")
    if slot in ("c1.weight", "c3.weight"):
        return ("kernel",)
    return ("matrix",)


def _apply(arr: np.ndarray, transform: str, flatten: str) -> Tuple[np.ndarray, str]:
    """Return (canonical array, extra note)."""
    a = arr
    if transform in ("oihw", "out_in", "bias"):
        return a, ""
    if transform == "hwio":
        return a.transpose(3, 2, 0, 1), ""
    if transform == "in_out":
        return a.T, ""
    if transform in ("dense_out_in", "dense_in_out"):
        m = a if transform == "dense_out_in" else a.T  # (120, 400)
        if flatten == "chw":
            return m.reshape(120, 16, 5, 5), ", input flattened C,H,W"
        return m.reshape(120, 5, 5, 16).transpose(0, 3, 1, 2), ", input flattened H,W,C (reordered to C,H,W)"
    raise AssertionError(transform)


# --------------------------------------------------------------------------- detection

def _detect(keys: Sequence[str], float_keys: Sequence[str], int_keys: Sequence[str]) -> Tuple[str, str]:
    """Return (framework, layout) guessed from the key names."""
    fk = list(float_keys)
    if fk and set(fk) <= set(CANONICAL_SHAPES):
        return "canonical", "canonical"
    if fk and all(re.fullmatch(r"arr_\d+", k) for k in fk):
        return "positional", "positional"
    if any(k.startswith("onnx::") or k.startswith("/") or "::" in k for k in keys):
        return "onnx", "onnx"
    cleaned = [_clean_name(k) for k in fk]
    leaves = [_split(k)[1] for k in fk]
    if any(k.startswith("params/") or re.search(r"(^|/)(Conv|Dense)_\d+(/|$)", c)
           for k, c in zip(fk, cleaned)):
        return "flax", "flax"
    if any(re.search(r":\d+$", k) for k in fk):
        return "keras", "keras-tf2"
    if "kernel" in leaves and any("/" in k for k in fk):
        return "keras", "keras-path"
    if "kernel" in leaves:
        return "keras", "keras-named"
    if any(l in ("weight", "bias") for l in leaves) and all("/" not in k for k in fk):
        # torch state_dict; integer arrays that are not BatchNorm counters come from ONNX
        if any(not k.endswith("num_batches_tracked") for k in int_keys):
            return "onnx", "onnx"
        if fk and all(k.startswith("module.") for k in fk):
            return "pytorch", "pytorch-dataparallel"
        if any(re.search(r"(^|\.)\d+\.", k) for k in cleaned):
            return "pytorch", "pytorch-sequential"
        return "pytorch", "pytorch-named"
    return "positional", "positional"


# --------------------------------------------------------------------------- convert

def convert(arrays: Mapping[str, np.ndarray], layout: str = "auto", strict: bool = True,
            source: str = "<mapping>") -> Conversion:
    """Map ``arrays`` (e.g. an opened npz) to canonical LeNet-5 weights.

    See the module docstring for the meaning of ``layout``.  With
    ``strict=True`` any array that is not used raises; with ``strict=False``
    it is listed in ``Conversion.ignored``.  Ambiguity is an error either way.
    """
    _check_request(arrays, layout, source)
    keys, meta, data, float_keys, int_keys, other_keys = _read_arrays(arrays, source)
    framework, lay = _family_and_layout(layout, keys, float_keys, int_keys)
    float_keys, ignored, problems = _set_aside_non_weights(data, float_keys, int_keys + other_keys,
                                                           framework, strict, source)
    _check_finite(data, float_keys, source)
    if framework == "canonical":  # exact names: nothing to match
        return _convert_canonical(data, float_keys, problems, ignored, meta, strict, source, lay)
    allowed = _allowed_families(framework, layout)
    use_names = framework != "positional"
    slot_cands = _slot_candidates(data, float_keys, allowed)
    if framework == "positional":
        framework, lay = _positional_family(slot_cands, source)
    family = "keras" if framework in _KERAS_LIKE else "torch"
    chosen, used = _assign_slots(arrays, data, slot_cands, framework, family, use_names, source)
    ignored = _check_complete(chosen, used, data, float_keys, problems, ignored, strict,
                              allowed, layout, source)
    weights, mapping = _to_canonical(chosen, data, "hwc" if family == "keras" else "chw", source)
    return Conversion(weights=weights, framework=framework, layout=lay, mapping=mapping,
                      ignored=sorted(set(ignored), key=natural_key), meta=meta)


# Kernels are assigned before biases: a bias is paired with its kernel by name prefix and file
# order, and the output bias must have as many values as the output kernel has classes.
_ASSIGN_ORDER = ("c1.weight", "c3.weight", "c5.weight", "f6.weight", "output.weight",
                 "c1.bias", "c3.bias", "c5.bias", "f6.bias", "output.bias")


def _check_request(arrays, layout: str, source: str) -> None:
    """Refuse a layout= or an `arrays` that cannot mean anything before reading a byte."""
    if layout not in LAYOUTS:
        raise FormatError(f"{source}: unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if not hasattr(arrays, "keys"):
        raise FormatError(f"{source}: expected a mapping of name -> array, got {type(arrays).__name__}")


def _read_arrays(arrays, source: str):
    """Read every array once, in natural key order, never unpickling; the metadata key is
    parsed apart. -> (keys, meta, data, float keys, integer/bool keys, other keys)."""
    keys = sorted((str(k) for k in arrays.keys()), key=natural_key)
    meta: Dict[str, Any] = {}
    data: Dict[str, np.ndarray] = {}
    float_keys: List[str] = []
    int_keys: List[str] = []
    other_keys: List[str] = []
    for k in keys:
        try:
            v = arrays[k]
        except ValueError as e:  # np.load(..., allow_pickle=False) refuses object arrays here
            raise FormatError(
                f"{source}: key {k!r} cannot be read without unpickling ({e}); "
                "object arrays are never unpickled: save plain numeric arrays") from None
        if k == META_KEY:
            meta = meta_from_array(v, source)
            continue
        if isinstance(v, np.ndarray) and v.dtype == object or (not isinstance(v, np.ndarray) and
                                                                 np.asarray(v).dtype == object):
            raise FormatError(
                f"{source}: key {k!r} is an object array (shape {_fmt(np.shape(v))}); "
                "object arrays are never unpickled: save plain numeric arrays")
        a = np.asarray(v)
        data[k] = a
        if a.dtype.kind == "f":
            float_keys.append(k)
        elif a.dtype.kind in "iub":
            int_keys.append(k)
        else:
            other_keys.append(k)
    return keys, meta, data, float_keys, int_keys, other_keys


def _family_and_layout(layout: str, keys, float_keys, int_keys) -> Tuple[str, str]:
    """(framework, layout name reported): detected for "auto"; an explicit family still names
    its key style (Keras path / TF2 / positional, PyTorch DataParallel)."""
    if layout == "auto":
        return _detect(keys, float_keys, int_keys)
    if layout == "keras":
        return "keras", ("keras-positional" if all(re.fullmatch(r"arr_\d+", k) for k in float_keys)
                         else "keras-tf2" if any(re.search(r":\d+$", k) for k in float_keys)
                         else "keras-path")
    if layout == "pytorch":
        return "pytorch", ("pytorch-dataparallel" if float_keys and all(
            k.startswith("module.") for k in float_keys) else "pytorch")
    return layout, layout


def _set_aside_non_weights(data, float_keys, non_float_keys, framework, strict, source):
    """Weights are floats: a non-float array that fits a slot is an error, exporters' constants
    are ignored, anything else is extra. -> (float keys left, ignored, problems)."""
    ignored: List[str] = []
    problems: List[str] = []
    for k in non_float_keys:
        a = data[k]
        if framework == "onnx" and a.dtype.kind in "iub" and a.ndim <= 1:
            ignored.append(k)  # shape constants / axes added by exporters
            continue
        fits = _cands_for_shape(_shape(a), any_k=False)
        if fits:
            raise FormatError(
                f"{source}: key {k!r} has dtype {a.dtype} (shape {_fmt(a.shape)}); "
                f"weights must be floating point (it fits {_expected_text(fits[0][0])})")
        if strict:
            problems.append(
                f"extra array {k!r} (dtype {a.dtype}, shape {_fmt(a.shape)}) is not a float weight of LeNet-5")
        else:
            ignored.append(k)
    if framework == "onnx":
        # scalar constants (e.g. the 1.7159 of a scaled tanh) are never weights
        scalars = [k for k in float_keys if data[k].ndim == 0]
        float_keys = [k for k in float_keys if k not in scalars]
        ignored.extend(scalars)
    return float_keys, ignored, problems


def _check_finite(data, float_keys, source: str) -> None:
    """NaN/Inf weights would classify everything as garbage: refuse them up front."""
    for k in float_keys:
        a = data[k]
        if not np.all(np.isfinite(a)):
            n_nan = int(np.isnan(a).sum())
            n_inf = int(np.isinf(a).sum())
            raise FormatError(
                f"{source}: key {k!r} (shape {_fmt(a.shape)}) contains non-finite values "
                f"({n_nan} NaN, {n_inf} Inf)")


def _allowed_families(framework: str, layout: str) -> Optional[Tuple[str, ...]]:
    """An explicit family layout= accepts only its own orientations; None accepts all."""
    if framework in ("pytorch",):
        return ("torch",) if layout == "pytorch" else None
    if framework in ("keras", "flax"):
        return ("keras",) if layout in ("keras", "flax") else None
    return None


def _slot_candidates(data, float_keys, allowed) -> Dict[str, List[Tuple[str, str, str, str]]]:
    """Every slot -> the (key, transform, family, note) of each array whose shape fits it."""
    slot_cands: Dict[str, List[Tuple[str, str, str, str]]] = {s: [] for s in CANONICAL_SHAPES}
    for k in float_keys:
        for slot, tr, fam, note in _cands_for_shape(_shape(data[k])):
            if allowed is not None and fam != "any" and fam not in allowed:
                continue
            slot_cands[slot].append((k, tr, fam, note))
    return slot_cands


def _positional_family(slot_cands, source: str) -> Tuple[str, str]:
    """Without names the family (and so the C5 flatten order) comes from the conv kernels'
    orientation, or from C5's dense orientation when no kernel has one."""
    fams = {fam for s in ("c1.weight", "c3.weight", "c5.weight") for (_, tr, fam, _) in slot_cands[s]
            if tr in ("oihw", "hwio")}
    if len(fams) == 1:
        framework = "pytorch" if fams == {"torch"} else "keras"
        return framework, ("pytorch" if framework == "pytorch" else "keras") + "-positional"
    if len(fams) > 1:
        raise FormatError(
            f"{source}: conv kernels mix OIHW and HWIO layouts; cannot tell the framework "
            "(and so the flatten order); pass layout='pytorch' or layout='keras'")
    # no conv kernel orientation to read (all C5 dense): use the dense orientation
    c5 = [tr for (_, tr, _, _) in slot_cands["c5.weight"]]
    framework = "keras" if c5 == ["dense_in_out"] else "pytorch"
    return framework, framework + "-positional"


def _assign_slots(arrays, data, slot_cands, framework, family, use_names, source):
    """Give each slot exactly one array, or none (reported as missing later).
    -> (slot -> (key, transform, note), key -> slot)."""
    chosen: Dict[str, Tuple[str, str, str]] = {}
    used: Dict[str, str] = {}
    for slot in _ASSIGN_ORDER:
        cands = _open_candidates(slot, slot_cands, used, data, chosen, framework, family)
        if not cands:
            continue
        cands = _one_orientation_each(slot, cands, family, data, source)
        if len(cands) > 1 and use_names:
            cands = _tie_break(slot, cands, chosen)
        cands = _bias_after_kernel(slot, cands, chosen, data, arrays)
        k, tr, _, note = _the_one(slot, cands, data, use_names, source)
        chosen[slot] = (k, tr, note)
        used[k] = slot
    return chosen, used


def _the_one(slot, cands, data, use_names, source):
    """Guessing between arrays that fit a slot equally would silently load the wrong net:
    more than one candidate left is an error."""
    if len(cands) > 1:
        desc = ", ".join(f"{c[0]!r} {_fmt(data[c[0]].shape)}" for c in cands)
        raise FormatError(
            f"{source}: ambiguous: {len(cands)} arrays fit "
            f"{_expected_text(slot, c=_c1_channels(data[cands[0][0]]))}: {desc}; "
            "names cannot decide which one to use" + ("" if use_names else " (positional layout)"))
    return cands[0]


def _open_candidates(slot, slot_cands, used, data, chosen, framework, family):
    """The slot's candidates not taken by an earlier slot; the output bias must match K; and
    when arrays of two orientations fit, the family's own orientation wins."""
    cands = [c for c in slot_cands[slot] if c[0] not in used]
    if slot == "output.bias":  # the bias of the output layer placed above: K values
        cands = [c for c in cands if _shape(data[c[0]]) == (_out_k(data, chosen),)] \
            if "output.weight" in chosen else []
    if len({c[0] for c in cands}) > 1 and framework not in ("positional", "onnx"):
        # arrays of two orientations fit (e.g. a 120-class output (120, 84) beside F6's
        # (84, 120)): the family's own orientation decides
        native = [c for c in cands if c[2] in (family, "any")]
        if native:
            cands = native
    return cands


def _one_orientation_each(slot, cands, family, data, source):
    """One candidate per array: an array that fits the slot twice (a square matrix) takes the
    family's native orientation, or is an error when that does not decide."""
    by_key: Dict[str, List] = {}
    for c in cands:
        by_key.setdefault(c[0], []).append(c)
    reduced = []
    for k, cs in by_key.items():
        if len(cs) > 1:
            native = [c for c in cs if c[2] == family]
            if len(native) == 1:
                cs = native
            else:
                raise FormatError(
                    f"{source}: key {k!r} with shape {_fmt(data[k].shape)} fits {_expected_text(slot)} "
                    "in more than one orientation; pass layout= to decide")
        reduced.append(cs[0])
    return reduced


def _bias_after_kernel(slot, cands, chosen, data, arrays):
    """A bias length shared with the output layer (K = 6, 16, 84 or 120) leaves two biases:
    exports write a layer's kernel, then its bias, so the one stored right after wins."""
    if (len(cands) == 2 and slot.endswith(".bias") and slot != "output.bias" and
            slot.replace("bias", "weight") in chosen and "output.weight" in chosen and
            _shape(data[cands[0][0]]) == (_out_k(data, chosen),)):
        file_order = [str(k) for k in arrays.keys()]
        after = file_order.index(chosen[slot.replace("bias", "weight")][0]) + 1
        nxt = [c for c in cands if file_order.index(c[0]) == after]
        if len(nxt) == 1:
            return nxt
    return cands


def _check_complete(chosen, used, data, float_keys, problems, ignored, strict, allowed, layout,
                    source) -> List[str]:
    """Every slot filled and (strict) every float array used, else one error listing all the
    problems. -> the ignored keys, now with the unused arrays when not strict."""
    missing = [s for s in _ASSIGN_ORDER if s not in chosen]
    unassigned = [k for k in float_keys if k not in used]
    if missing:
        k_out = _out_k(data, chosen) if "output.weight" in chosen else None
        problems = _explain_missing(missing, unassigned, data, source, allowed, layout,
                                    k_out) + problems
        raise FormatError(f"{source}: " + "; ".join(problems))
    if unassigned:
        if strict:
            problems = problems + [f"extra array {k!r} {_fmt(data[k].shape)} is not part of LeNet-5"
                                   for k in unassigned]
        else:
            ignored = ignored + unassigned
    if problems:
        raise FormatError(f"{source}: " + "; ".join(problems)
                          + ("; pass strict=False to ignore extra arrays" if strict else ""))
    return ignored


def _to_canonical(chosen, data, flatten: str, source: str):
    """Transform each chosen array into its slot's canonical float32 layout, a fresh copy, and
    check the shapes agree as one network. -> (weights, mapping)."""
    weights: Dict[str, np.ndarray] = {}
    mapping = []
    for slot in CANONICAL_SHAPES:  # the slot order; the shapes follow C and K below
        k, tr, note = chosen[slot]
        src = data[k]
        arr, extra = _apply(src, tr, flatten)
        note = note + extra
        if src.dtype != np.float32:
            note += f", cast {src.dtype}->float32"
        arr = np.array(arr, dtype=np.float32, order="C", copy=True)  # never alias the caller's arrays
        weights[slot] = arr
        mapping.append((k, slot, _shape(src), note))
    shapes = canonical_shapes(*geometry(weights))
    for slot, arr in weights.items():
        if arr.shape != shapes[slot]:  # e.g. an output bias of another length than its weight
            raise FormatError(f"{source}: {slot} has shape {_fmt(arr.shape)}; expected "
                              f"{_fmt(shapes[slot])} for this network")
    return weights, mapping


def _out_k(data, chosen) -> int:
    """K of the output weight placed in `chosen`."""
    key, tr = chosen["output.weight"][:2]
    s = _shape(data[key])
    return s[0] if tr == "out_in" else s[1]


def _tie_break(slot, cands, chosen):
    is_bias = slot.endswith(".bias")
    if is_bias:
        layer = slot.split(".")[0]
        kern = chosen.get(layer + ".weight")
        if kern is not None:
            kprefix = _split(kern[0])[0]
            same = [c for c in cands if _split(c[0])[0] == kprefix]
            if len(same) == 1:
                return same
        leaves = _BIAS_LEAVES
    else:
        leaves = _KERNEL_LEAVES
    named = [c for c in cands if _split(c[0])[1] in leaves]
    if len(named) >= 1:
        return named
    return cands


def _explain_missing(missing, unassigned, data, source, allowed, layout, k_out=None) -> List[str]:
    msgs = []
    present = ", ".join(f"{k!r} {_fmt(data[k].shape)}" for k in sorted(data, key=natural_key)) or "none"
    leftover = list(unassigned)
    for slot in missing:
        kinds = _slot_kinds(slot)
        # the unassigned array most likely meant for this slot: same kind, most matching dims
        best, best_score = None, -1
        for k in leftover:
            s = _shape(data[k])
            if _kind(s) not in kinds:
                continue
            exp = [CANONICAL_SHAPES[slot]]
            if len(CANONICAL_SHAPES[slot]) == 4:
                o, i = CANONICAL_SHAPES[slot][:2]
                exp.append((5, 5, i, o))
            elif len(CANONICAL_SHAPES[slot]) == 2:
                exp.append(CANONICAL_SHAPES[slot][::-1])
            score = max(sum(x == y for x, y in zip(s, e)) for e in exp if len(e) == len(s)) \
                if any(len(e) == len(s) for e in exp) else 0
            if score > best_score:
                best, best_score = k, score
        if best is not None:
            leftover.remove(best)
            why = ""
            if allowed is not None and _cands_for_shape(_shape(data[best])):
                conv_txt = ("OIHW kernels and (out,in) matrices" if allowed == ("torch",)
                            else "HWIO kernels and (in,out) matrices")
                why = f" (layout={layout!r} takes {conv_txt})"
            msgs.append(f"key {best!r} has shape {_fmt(data[best].shape)}; expected {_expected_text(slot, k_out)}{why}")
        else:
            msgs.append(f"missing {_expected_text(slot, k_out)}")
    if leftover or any(m.startswith("missing") for m in msgs):
        msgs.append(f"arrays present: {present}")
    return msgs


def _convert_canonical(data, float_keys, problems, ignored, meta, strict, source, lay):
    missing = [s for s in CANONICAL_SHAPES if s not in data]
    bad = []
    # C and K come from C1's and the output layer's own shapes, when those are plausible
    c1, ow = _shape(data.get("c1.weight", ())), _shape(data.get("output.weight", ()))
    c_in = c1[1] if len(c1) == 4 and c1[1] in IN_CHANNELS else 1
    k = ow[0] if len(ow) == 2 and MIN_CLASSES <= ow[0] <= MAX_CLASSES else 10
    shapes = canonical_shapes(c_in, k)
    for s in CANONICAL_SHAPES:
        if s in data:
            if data[s].dtype.kind != "f":
                bad.append(f"key {s!r} has dtype {data[s].dtype}; weights must be floating point")
            elif _shape(data[s]) != shapes[s]:
                bad.append(f"key {s!r} has shape {_fmt(data[s].shape)}; expected "
                           f"{_fmt(shapes[s])} (canonical layout"
                           + (f", {k} classes" if s.startswith("output") else "")
                           + (f", {c_in} input channel(s)" if s == "c1.weight" else "") + ")")
    if missing:
        present = ", ".join(f"{k!r} {_fmt(data[k].shape)}" for k in sorted(data, key=natural_key)) or "none"
        bad.append("missing " + ", ".join(f"{s!r} ({_expected_text(s)})" for s in missing)
                   + f"; arrays present: {present}")
    extra = [k for k in sorted(data, key=natural_key) if k not in CANONICAL_SHAPES]
    if extra and strict:
        bad.append("extra arrays " + ", ".join(f"{k!r} {_fmt(data[k].shape)}" for k in extra)
                   + " (pass strict=False to ignore them)")
    elif extra:
        ignored = sorted(set(ignored) | set(extra), key=natural_key)
    if bad:
        raise FormatError(f"{source}: " + "; ".join(bad))
    weights, mapping = {}, []
    for s in CANONICAL_SHAPES:
        src = data[s]
        note = "as is" if src.dtype == np.float32 else f"cast {src.dtype}->float32"
        weights[s] = np.array(src, dtype=np.float32, order="C", copy=True)
        mapping.append((s, s, _shape(src), note))
    return Conversion(weights=weights, framework="canonical", layout=lay, mapping=mapping,
                      ignored=list(ignored), meta=meta)
