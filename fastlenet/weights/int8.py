"""The int8 quantization rule: canonical fp32 weights + metadata -> the int8 network's parameters.

The one owner of how a model is quantized (the C engine runs what this computes, the NumPy model
fastlenet.reference.quantized checks it; the numerics are written down at the top of
csrc/kernels/int8_scalar.c). Deterministic: the same weights and metadata give the same bytes,
so an int8 Net saved, pickled or sent to a worker is rebuilt bit-identically from its fp32
weights and its metadata (precision "int8", and for ReLU models the calibrated ranges).

  weights   int8 symmetric per output channel: s_w = max|w| / 127, q = rint(w / s_w)
  C1 input  uint8 pixels; (x / 255 - mean) / std folded into C1's weights and bias
  tanh, scaled tanh, sigmoid outputs: fixed scales (no calibration): tanh and scaled tanh as
            u8 = rint(127 t) + 128 (t = tanh, zero point 128 folded into the next bias);
            sigmoid as u8 = rint(255 sigmoid) = rint(127.5 t + 127.5) with t = tanh(x / 2)
  relu      u8 = rint(255 a / M) with M the calibrated maximum of that layer's (pooled) output
  biases    int32 in the accumulator's unit, rint(b / (s_w s_in)) - zp sum(q)
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np

from fastlenet.weights.checks import FormatError

PRECISIONS = ("fp32", "int8")
CORE_TANH, CORE_RELU = 0, 1
# The activation's input factor (folded into the scales) and the F6 feature map t -> gain t +
# offset, by activation: sigmoid(x) = 0.5 tanh(x / 2) + 0.5; scaled tanh = 1.7159 tanh(2x / 3).
_ACT = {
    "tanh": (CORE_TANH, 1.0, 1.0, 0.0),
    "scaled_tanh": (CORE_TANH, 2.0 / 3.0, 1.7159, 0.0),
    "sigmoid": (CORE_TANH, 0.5, 0.5, 0.5),
    "relu": (CORE_RELU, 1.0, 1.0, 0.0),
}
# |bias| in accumulator units stays below this, so that bias + 400 * 255 * 127 < 2^31.
_MAX_BIAS = float(1 << 30)
# The layers whose outputs are quantized to uint8 (F6's stay fp32: they are the features).
QUANTIZED_OUTPUTS = ("c1", "c3", "c5")


def check_precision(precision: Any, source: str = "precision") -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"{source}: expected one of {', '.join(map(repr, PRECISIONS))}; got "
                         f"{precision!r}")
    return precision


def _out_quant(act: str, act_max: Optional[float]):
    """(inv, zp) that write a layer's output as uint8, and (s, zp) that read it back."""
    if act == "relu":
        return (255.0 / act_max, 0.0), (act_max / 255.0, 0.0)
    if act == "sigmoid":
        return (127.5, 127.5), (1.0 / 255.0, 0.0)
    gain = 1.7159 if act == "scaled_tanh" else 1.0
    return (127.0, 128.0), (gain / 127.0, 128.0)


def _layer(name: str, w: np.ndarray, b: np.ndarray, s_in: float, zp_in: float, pre: float):
    """One layer (w as (O, K) float64): int8 weights, int32 bias, float32 scales."""
    maxabs = np.abs(w).max(axis=1)
    # A tiny scale would push the bias past the accumulator's headroom: widen it then.
    s_w = np.maximum(maxabs / 127.0, np.abs(b) / (s_in * _MAX_BIAS))
    s_w = np.where(s_w > 0, s_w, 1.0)  # an all-zero channel (and zero bias)
    q = np.rint(w / s_w[:, None]).astype(np.int8)
    unit = s_w * s_in
    bias = np.rint(b / unit) - zp_in * q.astype(np.int64).sum(axis=1)
    with np.errstate(over="ignore", under="ignore"):
        s = (unit * pre).astype(np.float32)
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise FormatError(f"weights: layer {name}'s int8 scales leave float32's range (from "
                          f"{np.min(unit * pre):.3g} to {np.max(unit * pre):.3g}); expected "
                          f"weights and ranges an int8 engine can represent")
    return q, bias.astype(np.int32), s


def params(weights: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict:
    """The int8 network's parameters from canonical weights and checked metadata (see the
    module docstring): arrays for the C engine (fl_int8_params) and the NumPy model."""
    act = meta["activation"]
    core, pre, gain, offset = _ACT[act]
    act_max = (meta.get("int8") or {}).get("act_max")
    if act == "relu" and act_max is None:
        raise ValueError("precision int8 with activation relu needs calibrated ranges "
                         "(metadata int8.act_max): build it with net.quantize(calibration)")
    f = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    nc = f["c1.weight"].shape[1]
    mean = np.broadcast_to(np.asarray(meta["mean"], np.float64).reshape(-1), (nc,))
    std = np.broadcast_to(np.asarray(meta["std"], np.float64).reshape(-1), (nc,))
    # C1 on uint8 pixels q: (q / 255 - mean) / std = q / (255 std) - mean / std.
    w1 = f["c1.weight"] / (255.0 * std)[None, :, None, None]
    b1 = f["c1.bias"] - (f["c1.weight"].sum(axis=(2, 3)) * (mean / std)[None, :]).sum(axis=1)
    out = {"core": core, "gain": gain, "offset": offset, "inv": [], "zp": []}
    s_in, zp_in = 1.0, 0.0
    layers = [("c1", w1, b1), ("c3", f["c3.weight"], f["c3.bias"]),
              ("c5", f["c5.weight"], f["c5.bias"]), ("f6", f["f6.weight"], f["f6.bias"])]
    for li, (name, w, b) in enumerate(layers):
        q, bias, s = _layer(name.upper(), w.reshape(w.shape[0], -1), b, s_in, zp_in, pre)
        out[name + "_w"], out[name + "_b"], out[name + "_s"] = q.reshape(w.shape), bias, s
        if name in QUANTIZED_OUTPUTS:
            (inv, zp), (s_in, zp_in) = _out_quant(act, act_max[li] if act_max else None)
            out["inv"].append(inv)
            out["zp"].append(zp)
    out["inv"] = np.asarray(out["inv"], np.float32)
    out["zp"] = np.asarray(out["zp"], np.float32)
    return out


def pixels_u8(x: Any, channels: int, source: str) -> np.ndarray:
    """Model input -> uint8 (N, C, 32, 32), the int8 engine's rule: uint8 as it is, floats
    (0..1) as rint(clip(x * 255, 0, 255)) in float32; 28x28 centred in zeros. ValueError naming
    `source` for anything that is not model input (other dtypes or shapes; non-finite or
    out-of-range floats: calibration must be what the Net is given)."""
    a = np.asarray(x)
    if a.dtype not in (np.uint8, np.float32, np.float64):
        raise ValueError(f"{source}: expected model input (uint8, float32 or float64 images); "
                         f"got dtype {a.dtype}")
    if channels == 1:
        if a.ndim == 4 and a.shape[1] == 1:
            a = a[:, 0]
        elif a.ndim == 4 and a.shape[3] == 1:
            a = a[..., 0]
        a = a[:, None] if a.ndim == 3 else a
    elif a.ndim == 4 and a.shape[1] != 3 and a.shape[3] == 3:
        a = a.transpose(0, 3, 1, 2)
    if (a.ndim != 4 or a.shape[1] != channels or a.shape[2] != a.shape[3] or
            a.shape[2] not in (28, 32)):
        raise ValueError(f"{source}: expected a batch of model input images, (N, 32, 32) or "
                         f"(N, 28, 28) per channel ({channels} channel(s)); got shape "
                         f"{np.shape(x)}")
    if a.dtype != np.uint8:
        a32 = a.astype(np.float32)
        if not np.all(np.isfinite(a32)):
            raise ValueError(f"{source}: expected finite pixels; found NaN or inf")
        lo, hi = float(a32.min(initial=0.0)), float(a32.max(initial=0.0))
        if lo < -0.01 or hi > 1.01:
            raise ValueError(f"{source}: float pixels must be model input in 0..1 (uint8 for "
                             f"0..255); found values in [{lo:.4g}, {hi:.4g}]")
        t = np.clip(a32 * np.float32(255.0), 0, 255)
        a = np.rint(t).astype(np.uint8)
    if a.shape[2] == 28:
        a = np.pad(a, ((0, 0), (0, 0), (2, 2), (2, 2)))
    return np.ascontiguousarray(a)


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid 5x5 cross-correlation over a batch (N, C, H, W) in float64, as one matmul."""
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(x, (5, 5), axis=(2, 3))  # N, C, H-4, W-4, 5, 5
    n, c, h, wd = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * wd, c * 25)
    y = cols @ w.reshape(w.shape[0], -1).T + b
    return y.reshape(n, h, wd, -1).transpose(0, 3, 1, 2)


def _pool(x: np.ndarray, kind: str) -> np.ndarray:
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // 2, 2, w // 2, 2)
    return win.max(axis=(3, 5)) if kind == "max" else win.mean(axis=(3, 5))


def calibrate(weights: Mapping[str, np.ndarray], meta: Mapping[str, Any], x: Any,
              source: str = "calibration") -> list:
    """Min-max calibration of a ReLU model: the largest output of C1 and C3 (after pooling) and
    of C5 over the calibration images, run through the float64 network on the pixels the int8
    engine sees. ValueError naming `source` when a range cannot be calibrated."""
    f = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    nc = f["c1.weight"].shape[1]
    q = pixels_u8(x, nc, source)
    if len(q) == 0:
        raise ValueError(f"{source}: expected at least one image; got an empty batch")
    mean = np.asarray(meta["mean"], np.float64).reshape(-1)[:, None, None]
    std = np.asarray(meta["std"], np.float64).reshape(-1)[:, None, None]
    relu, pool = (lambda v: np.maximum(v, 0.0)), meta["pool"]
    maxima = []
    for i0 in range(0, len(q), 1000):  # bounded memory: about 40 MB per 1000 images
        a = (q[i0:i0 + 1000].astype(np.float64) / 255.0 - mean) / std
        s2 = _pool(relu(_conv(a, f["c1.weight"], f["c1.bias"])), pool)
        s4 = _pool(relu(_conv(s2, f["c3.weight"], f["c3.bias"])), pool)
        c5 = relu(s4.reshape(len(s4), -1) @ f["c5.weight"].reshape(120, -1).T + f["c5.bias"])
        m = [float(v.max()) for v in (s2, s4, c5)]
        maxima = m if not maxima else [max(u, v) for u, v in zip(maxima, m)]
    for name, m in zip(QUANTIZED_OUTPUTS, maxima):
        if not (math.isfinite(m) and m > 0):
            raise ValueError(f"{source}: the relu outputs of {name.upper()} are {m} at most over "
                             f"the {len(q)} calibration images; expected a positive finite "
                             f"range to choose an int8 scale from (inputs that excite the model)")
    return maxima
