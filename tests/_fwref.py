"""Independent float64 LeNet-5 forward pass for the format tests (numpy + scipy only).

Deliberately does not use fastlenet.reference or the C engine: it is the
yardstick the framework fixtures are compared against.
"""

import numpy as np
from scipy import signal

ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "scaled_tanh": lambda x: 1.7159 * np.tanh(2.0 * x / 3.0),
}


def conv_valid(x, w, b):
    """Cross-correlation, valid padding.  x (C,H,W), w (O,C,kh,kw), b (O,) -> (O,H',W')."""
    out = []
    for o in range(w.shape[0]):
        # correlating the (C,H,W) stack with the (C,kh,kw) filter in "valid"
        # mode sums over the channels: result has a leading axis of length 1.
        out.append(signal.correlate(x, w[o], mode="valid", method="direct")[0] + b[o])
    return np.stack(out)


def pool(x, kind):
    c, h, w = x.shape
    v = x.reshape(c, h // 2, 2, w // 2, 2)
    return v.mean(axis=(2, 4)) if kind == "avg" else v.max(axis=(2, 4))


def _as_nchw(x):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.shape[1:] == (1, 32, 32):
        return x
    if x.shape[1:] == (32, 32, 1):
        return x.transpose(0, 3, 1, 2)
    raise ValueError(f"input shape {x.shape} is neither (N,1,32,32) nor (N,32,32,1)")


def forward(weights, x, activation="tanh", pool_kind="avg", return_features=False):
    """Canonical weights dict -> logits (N,10) [and F6 features (N,84)], float64.

    ``x`` may be NCHW (N,1,32,32), NHWC (N,32,32,1), a single (1,32,32) or (32,32).
    """
    act = ACTIVATIONS[activation]
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    xs = _as_nchw(x)
    logits, feats = [], []
    for img in xs:
        h = pool(act(conv_valid(img, w["c1.weight"], w["c1.bias"])), pool_kind)
        h = pool(act(conv_valid(h, w["c3.weight"], w["c3.bias"])), pool_kind)
        h = act(conv_valid(h, w["c5.weight"], w["c5.bias"])).reshape(120)
        f = act(w["f6.weight"] @ h + w["f6.bias"])
        feats.append(f)
        logits.append(w["output.weight"] @ f + w["output.bias"])
    logits = np.array(logits)
    if return_features:
        return logits, np.array(feats)
    return logits
