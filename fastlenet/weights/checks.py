"""What every weights reader checks: the byte budget, the one error type, the one metadata
validator.

Weight files are untrusted input. What a file declares is checked against a byte budget (a small
multiple of LeNet-5's size, see MAX_* below) before anything is decompressed or allocated; nothing
is ever unpickled (no allow_pickle anywhere). Every failure is a FormatError (a ValueError) or an
OSError from opening the file, and names the file, the key, what was expected and what was found.

Metadata (key ``fastlenet_meta``, a JSON object string: activation, pool, mean, std, classes, ...)
is read from whatever the file holds by `meta_from_array` and checked by `check_meta`, the only
place that knows which values the engine accepts.
"""
from __future__ import annotations

import json
import math
import numbers
from typing import Any, Dict, Mapping, Optional

import numpy as np

META_KEY = "fastlenet_meta"
ACTIVATIONS = ("tanh", "relu", "sigmoid", "scaled_tanh")
POOLS = ("avg", "max")


class FormatError(ValueError):
    """The arrays are not a LeNet-5 in any layout fastlenet understands."""


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



# ---- metadata ------------------------------------------------------------------------------
def meta_from_array(value, source: str) -> Dict[str, Any]:
    a = np.asarray(value)
    if a.dtype == object:
        raise FormatError(f"{source}: key {META_KEY!r} is an object array; expected a JSON string")
    try:
        if a.dtype.kind == "U":
            # numpy stores UCS-4 code units unchecked: one above U+10FFFF would make a str that
            # Python's own functions reject with SystemError, so they are refused here first
            units = np.frombuffer(a.tobytes(), a.dtype.byteorder.replace("|", "=") + "u4")
            if units.size and int(units.max()) > 0x10FFFF:
                raise FormatError(f"{source}: key {META_KEY!r} holds the code point "
                                  f"{int(units.max()):#x}, beyond Unicode's U+10FFFF; expected "
                                  f"a JSON string")
            text = str(a.reshape(-1)[0]) if a.size == 1 else "".join(a.reshape(-1).tolist())
        elif a.dtype.kind == "S":
            text = (a.reshape(-1)[0] if a.size == 1 else b"".join(a.reshape(-1).tolist())).decode("utf-8")
        elif a.dtype == np.uint8 and a.ndim == 1:
            text = a.tobytes().decode("utf-8")
        else:
            raise FormatError(
                f"{source}: key {META_KEY!r} has dtype {a.dtype} and shape {tuple(int(d) for d in a.shape)}; "
                "expected a JSON string")
    except UnicodeDecodeError as e:
        raise FormatError(f"{source}: key {META_KEY!r} is not valid UTF-8: {e}") from None
    except FormatError:
        raise
    except Exception as e:  # code points beyond U+10FFFF in a 'U' array raise SystemError/ValueError
        raise FormatError(f"{source}: key {META_KEY!r} is not a readable string "
                          f"({type(e).__name__}: {e}); expected a JSON string") from None
    if len(text) > MAX_META_BYTES:
        raise FormatError(f"{source}: key {META_KEY!r} holds {len(text):,} characters; expected "
                          f"a JSON object of at most {MAX_META_BYTES:,}")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError, SystemError) as e:  # JSONDecodeError, digit limits,
        # deep nesting; SystemError: a str no Python function should have been given
        raise FormatError(f"{source}: key {META_KEY!r} is not valid JSON "
                          f"({type(e).__name__}: {str(e)[:200]}): {text[:80]!r}") from None
    if not isinstance(meta, dict):
        raise FormatError(f"{source}: key {META_KEY!r} must hold a JSON object, found {type(meta).__name__}")
    check_meta(meta, f"{source}: key {META_KEY!r}")  # the file's own values, checked once here
    return meta



def parse_meta(text: str, source: str) -> dict:
    """A JSON object string -> checked metadata."""
    try:
        meta = json.loads(text)
    except (TypeError, ValueError, RecursionError, SystemError) as e:  # deep nesting, digits
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
    _check_precision(out, source)
    classes = out.get("classes")
    want = f"{num_classes}" if num_classes else "2 or more"
    if classes is not None and (not isinstance(classes, list) or len(classes) < 2 or
                                (num_classes and len(classes) != num_classes)):
        raise FormatError(f"{source}: classes must be a list of {want} names (one per output); "
                          f"found {classes!r}")
    if classes is not None:
        out["classes"] = [str(c) for c in classes]
    return out


def _check_precision(out: dict, source: str) -> None:
    """precision ("fp32" or "int8", absent = fp32) and the int8 block: {"act_max": three
    positive finite float32 numbers, the calibrated ranges of C1, C3, C5}, required for relu
    models in int8 and meaningless otherwise (fastlenet/weights/int8.py uses them)."""
    prec = out.get("precision", "fp32")
    if prec not in ("fp32", "int8"):
        raise FormatError(f"{source}: precision must be 'fp32' or 'int8'; found {_short(prec)}")
    block = out.get("int8")
    if block is None:
        if prec == "int8" and out["activation"] == "relu":
            raise FormatError(f"{source}: precision int8 with activation relu needs the "
                              f"calibrated ranges int8.act_max (three positive numbers, for "
                              f"C1, C3, C5); found none")
        return
    if not isinstance(block, Mapping) or set(block) - {"act_max"}:
        raise FormatError(f"{source}: int8 must be an object with the key act_max; found "
                          f"{_short(block)}")
    am = block.get("act_max")
    if am is None:
        if prec == "int8" and out["activation"] == "relu":
            raise FormatError(f"{source}: precision int8 with activation relu needs int8.act_max "
                              f"(three positive numbers, for C1, C3, C5); found none")
        out["int8"] = {"act_max": None}
        return
    try:
        with np.errstate(over="ignore"):
            ok = isinstance(am, (list, tuple)) and len(am) == 3 and all(
                not isinstance(v, (bool, np.bool_)) and isinstance(v, numbers.Real) and
                math.isfinite(float(v)) and float(v) > 0 and math.isfinite(np.float32(255.0 / float(v)))
                and np.float32(float(v)) < np.float32(3e38) for v in am)
    except (OverflowError, ValueError, TypeError):
        ok = False
    if not ok:
        raise FormatError(f"{source}: int8.act_max must be a list of three positive finite "
                          f"numbers (the calibrated ranges of C1, C3, C5); found {_short(am)}")
    out["int8"] = {"act_max": [float(v) for v in am]}


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:40] + f"... ({len(text)} characters)"


def override_meta(meta: Mapping[str, Any], **overrides: Any) -> dict:
    """Keyword arguments (activation=, pool=, mean=, std=) win over the file's metadata."""
    out = dict(meta)
    out.update({k: v for k, v in overrides.items() if v is not None})
    return check_meta(out, "arguments")
