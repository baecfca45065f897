"""The float64 reference forward pass: the ground truth every kernel and Net is tested against.

Deliberately plain and independent of the C engine and of fastlenet._engine (its input rules are
written again here, so a bug in one is caught by the other): scipy.signal.correlate per image and
channel, NumPy pooling and activations, float64 throughout. About 20 images/s.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Union

import numpy as np

from fastlenet.weights.checks import override_meta
from fastlenet.weights.loader import convert

if TYPE_CHECKING:
    from fastlenet._engine import Net

# What the functions below take as `weights`: a canonical mapping (fastlenet_meta honoured) or a
# Net (its weights and metadata).
Weights = Union[Mapping[str, Any], "Net"]

ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda v: np.where(v < 0, 0.0, v),
    "sigmoid": lambda v: 0.5 * (1.0 + np.tanh(0.5 * v)),  # = 1 / (1 + e^-x), no overflow
    "scaled_tanh": lambda v: 1.7159 * np.tanh(v * (2.0 / 3.0)),
}


def images(x: Any, mean: Any = 0.0, std: Any = 1.0, channels: int = 1) -> np.ndarray:
    """Apply the input rules: any accepted shape/dtype -> float64 (N, C, 32, 32), normalized.

    One channel: (32, 32), (N, 32, 32), (N, 1, 32, 32), (N, 32, 32, 1). Three channels: (3, 32,
    32), (32, 32, 3), (N, 3, 32, 32), (N, 32, 32, 3). 28x28 is zero-padded (before
    normalization). mean and std: numbers, or one per channel."""
    a = np.asarray(x)
    if a.dtype == np.uint8:
        a = a.astype(np.float64) / 255.0
    elif a.dtype in (np.float32, np.float64):
        a = a.astype(np.float64)
    else:
        raise TypeError(f"x: expected dtype float32, float64 or uint8; got {a.dtype}")
    if channels == 1:
        if a.ndim == 2:
            a = a[None]
        elif a.ndim == 4 and a.shape[1] == 1:
            a = a[:, 0]
        elif a.ndim == 4 and a.shape[3] == 1:
            a = a[..., 0]
        if a.ndim == 3:
            a = a[:, None]
        want = "(32, 32), (N, 32, 32), (N, 1, 32, 32) or (N, 32, 32, 1)"
    else:
        if a.ndim == 3:
            a = a[None]
        if a.ndim == 4 and a.shape[1] != 3 and a.shape[3] == 3:
            a = a.transpose(0, 3, 1, 2)
        want = "(3, 32, 32), (32, 32, 3), (N, 3, 32, 32) or (N, 32, 32, 3)"
    if (a.ndim != 4 or a.shape[1] != channels or a.shape[2] != a.shape[3] or
            a.shape[2] not in (28, 32)):
        raise ValueError(f"x: expected {want} (or 28x28); got shape {np.shape(x)}")
    if a.shape[2] == 28:
        a = np.pad(a, ((0, 0), (0, 0), (2, 2), (2, 2)))
    m = np.asarray(mean, dtype=np.float64).reshape(-1)[:, None, None]
    s = np.asarray(std, dtype=np.float64).reshape(-1)[:, None, None]
    return (a - m) / s


def conv5x5(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid cross-correlation: x (C, H, W), w (O, C, 5, 5), b (O,) -> (O, H-4, W-4)."""
    from scipy.signal import correlate  # imported here: `import fastlenet` should stay fast

    out = np.empty((w.shape[0], x.shape[1] - 4, x.shape[2] - 4))
    for o in range(w.shape[0]):
        # method="direct": scipy picks FFT for large inputs, where one inf or 1e30 pixel smears
        # into every output; the ground truth must be the plain sum of products.
        out[o] = b[o] + sum(correlate(x[c], w[o, c], mode="valid", method="direct")
                            for c in range(x.shape[0]))
    return out


def pool2x2(x: np.ndarray, kind: str) -> np.ndarray:
    """2x2 window, stride 2, over (C, H, W)."""
    c, h, w = x.shape
    win = x.reshape(c, h // 2, 2, w // 2, 2)
    return win.max(axis=(2, 4)) if kind == "max" else win.mean(axis=(2, 4))


def _resolve(weights: Any, overrides: dict) -> tuple[dict[str, np.ndarray], dict]:
    if hasattr(weights, "weights") and hasattr(weights, "meta"):  # a fastlenet.Net
        w, meta = weights.weights, weights.meta
    else:
        w, meta = convert(weights, source="weights")
    meta = override_meta(meta, **overrides)
    return {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}, meta


def _forward(weights: Any, x: Any, overrides: dict) -> tuple[np.ndarray, np.ndarray]:
    w, meta = _resolve(weights, overrides)
    act, pool = ACTIVATIONS[meta["activation"]], meta["pool"]
    imgs = images(x, meta["mean"], meta["std"], channels=w["c1.weight"].shape[1])
    feats = np.empty((len(imgs), 84))
    logits = np.empty((len(imgs), w["output.weight"].shape[0]))
    for i, img in enumerate(imgs):
        s2 = pool2x2(act(conv5x5(img, w["c1.weight"], w["c1.bias"])), pool)
        s4 = pool2x2(act(conv5x5(s2, w["c3.weight"], w["c3.bias"])), pool)
        c5 = act(conv5x5(s4, w["c5.weight"], w["c5.bias"]).reshape(120))
        feats[i] = act(w["f6.weight"] @ c5 + w["f6.bias"])
        logits[i] = w["output.weight"] @ feats[i] + w["output.bias"]
    return logits, feats


def logits(weights: Weights, x: Any, *, activation=None, pool=None, mean=None,
           std=None) -> np.ndarray:
    """float64 (N, K) logits. `weights`: a canonical mapping (fastlenet_meta honoured) or a Net."""
    return _forward(weights, x, dict(activation=activation, pool=pool, mean=mean, std=std))[0]


def features(weights: Weights, x: Any, *, activation=None, pool=None, mean=None,
             std=None) -> np.ndarray:
    """float64 (N, 84) F6 activations."""
    return _forward(weights, x, dict(activation=activation, pool=pool, mean=mean, std=std))[1]


def predict_proba(weights: Weights, x: Any, **kw) -> np.ndarray:
    """float64 (N, K) softmax of the logits."""
    z = logits(weights, x, **kw)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
