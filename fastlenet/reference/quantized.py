"""The int8 network in NumPy: the model of the C int8 engine (csrc/kernels/int8_scalar.c).

Written from the numerics at the top of int8_scalar.c, with the parameters of the one
quantization rule (fastlenet/weights/int8.py) and the engine's tanh pieces: int64 matrix
products for the integer sums (exact), float32 arithmetic for every fp32 step. NumPy has no
fused multiply-add, so fma(a, b, c) is computed in float64 (a * b is exact there) and rounded
once more to float32: a double rounding that differs from the hardware FMA only when the
float64 sum lies within 2^-29 relative of a float32 rounding boundary. So a uint8 activation
may, rarely, differ by one step; tests/engine/test_int8.py states the tolerance that follows.
Vectorised over the batch (im2col), about 2,000 images/s.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fastlenet._engine import _int8_tanh_table
from fastlenet.weights import int8 as _int8
from fastlenet.weights.checks import check_meta
from fastlenet.weights.loader import convert

_F32 = np.float32
TANH_MAX = np.float32(3.9999)


def _fma(a, b, c) -> np.ndarray:
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)
            ).astype(_F32)


def core(pre: np.ndarray, kind: int) -> np.ndarray:
    """The int8 engine's activation on float32 pre-activations."""
    if kind == _int8.CORE_RELU:
        return np.where(pre > 0, pre, _F32(0))
    tab = _int8_tanh_table()
    xc = np.maximum(np.minimum(pre, TANH_MAX), _F32(-4))
    i = _fma(xc, _F32(4), _F32(16)).astype(np.int32)
    p = _fma(tab[3][i], xc, tab[2][i])
    p = _fma(p, xc, tab[1][i])
    return _fma(p, xc, tab[0][i])


def _quant(p: np.ndarray, inv, zp) -> np.ndarray:
    t = _fma(p, inv, zp)
    return np.rint(np.minimum(np.maximum(t, _F32(0)), _F32(255))).astype(np.int64)


def _pool(t: np.ndarray, kind: str) -> np.ndarray:
    n, c, h, w = t.shape
    a, b = t[:, :, 0::2, 0::2], t[:, :, 0::2, 1::2]
    cc, d = t[:, :, 1::2, 0::2], t[:, :, 1::2, 1::2]
    if kind == "max":
        return np.maximum(np.maximum(a, b), np.maximum(cc, d))
    return _F32(0.25) * ((a + b) + (cc + d))


def _conv_acc(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int64 (N, O, H-4, W-4): bias + valid 5x5 cross-correlation of integer maps."""
    win = sliding_window_view(x, (5, 5), axis=(2, 3))
    n, c, h, wd = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * wd, c * 25)
    acc = cols @ w.reshape(w.shape[0], -1).astype(np.int64).T + b.astype(np.int64)
    return acc.reshape(n, h, wd, -1).transpose(0, 3, 1, 2)


def _pre(acc: np.ndarray, s: np.ndarray, axis: int = 1) -> np.ndarray:
    shape = [1] * acc.ndim
    shape[axis] = -1
    return acc.astype(_F32) * s.reshape(shape)


def forward(weights: Any, x: Any, meta: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(logits float32 (N, K), features float32 (N, 84)) of the int8 network. `weights`: an
    int8 Net, or a canonical mapping with `meta` (precision int8 implied)."""
    if hasattr(weights, "weights") and hasattr(weights, "meta"):
        w, m = weights.weights, weights.meta
    else:
        w, found = convert(weights, source="weights")
        m = dict(found)
        m.update(meta or {})
    m = check_meta(dict(m, precision="int8"), "meta")
    p = _int8.params(w, m)
    q = _int8.pixels_u8(x, w["c1.weight"].shape[1], "x").astype(np.int64)
    k = p["core"]
    feats = np.empty((len(q), 84), _F32)
    for i0 in range(0, len(q), 500):
        a = q[i0:i0 + 500]
        t1 = core(_pre(_conv_acc(a, p["c1_w"], p["c1_b"]), p["c1_s"]), k)
        s2 = _quant(_pool(t1, m["pool"]), p["inv"][0], p["zp"][0])
        t3 = core(_pre(_conv_acc(s2, p["c3_w"], p["c3_b"]), p["c3_s"]), k)
        s4 = _quant(_pool(t3, m["pool"]), p["inv"][1], p["zp"][1])
        acc5 = s4.reshape(len(a), -1) @ p["c5_w"].reshape(120, -1).astype(np.int64).T + p["c5_b"]
        c5 = _quant(core(_pre(acc5, p["c5_s"]), k), p["inv"][2], p["zp"][2])
        acc6 = c5 @ p["f6_w"].astype(np.int64).T + p["f6_b"]
        feats[i0:i0 + 500] = _fma(core(_pre(acc6, p["f6_s"]), k), _F32(p["gain"]), _F32(p["offset"]))
    wo = np.asarray(w["output.weight"], _F32)
    logits = np.broadcast_to(np.asarray(w["output.bias"], _F32), (len(q), wo.shape[0])).copy()
    for j in range(84):  # one fma per term, k ascending: the engine's output layer
        logits = _fma(feats[:, j:j + 1], wo[:, j][None, :], logits)
    return logits, feats


def logits(weights: Any, x: Any, meta: Any = None) -> np.ndarray:
    return forward(weights, x, meta)[0]


def features(weights: Any, x: Any, meta: Any = None) -> np.ndarray:
    return forward(weights, x, meta)[1]


def predict_proba(weights: Any, x: Any, meta: Any = None) -> np.ndarray:
    """float64 softmax of the int8 logits."""
    z = logits(weights, x, meta).astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
