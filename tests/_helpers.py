"""Helpers shared by the fastlenet tests (conftest.py registers the fixtures defined here).

Randomness: every random array derives from one seed (FASTLENET_TEST_SEED, or a fixed default),
printed in the pytest header and in the captured output of every test that draws from it, so a
failure can be replayed with ``FASTLENET_TEST_SEED=<seed> pytest ...``.

The SciPy reference is slow (tens of images/s), so its results are computed once per session on
small fixed image sets and cached here; larger batches are compared between ISAs or against the
scalar ISA, and against the cached reference on a subset.
"""
from __future__ import annotations

import functools
import os
import pathlib
import zlib

import numpy as np
import pytest
from scipy.signal import correlate

import fastlenet
from fastlenet import reference
from fastlenet.weights.layout import CANONICAL_SHAPES

# The suite's folders: tests/ (these helpers, the hostile-file writers, tests/data) and the project.
TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent

ISAS = ("scalar", "generic", "avx2", "avx512")
ACTIVATIONS = ("tanh", "relu", "sigmoid", "scaled_tanh")
POOLS = ("avg", "max")
AVAILABLE = tuple(fastlenet.available_isas())

# float32 logits vs the float64 reference (ARCHITECTURE.md "Ground truth").
LOGIT_TOL = 1e-4
# A SIMD ISA vs the scalar ISA on whole nets (both float32; FMA rounds differently). Used for
# tanh and sigmoid nets only, whose hidden values are bounded by 1: each logit is a sum of 85
# terms of |w| <= ~0.3 (random weights are normal / sqrt(fan_in)), so gamma_85 * M is about 5e-6
# times M <= ~2 per implementation, and the errors F6 passes on add less than 1e-6 * sum |w|.
# Per-kernel comparisons, ReLU ones included, use the derived bounds below (layer_bound,
# dense_bound); tools/c/kernel_check.c derives them through the whole net.
ISA_TOL = 1e-5
# Two logits closer than this in the reference may legitimately swap places.
TIE_TOL = 1e-5


def _seed_from_env() -> int:
    env = os.environ.get("FASTLENET_TEST_SEED", "").strip()
    return int(env) if env else 5_2013_1998


SEED = _seed_from_env()


def pytest_report_header(config):
    return (f"fastlenet: FASTLENET_TEST_SEED={SEED}; ISAs available here: {', '.join(AVAILABLE)} "
            f"(default {fastlenet.default_isa()}); OpenMP: {fastlenet.HAS_OPENMP}; "
            f"default threads: {fastlenet.DEFAULT_THREADS}")


# ---- randomness -------------------------------------------------------------------------------
@pytest.fixture
def rng_seed(request):
    """The suite's seed, printed (pytest shows it with any failure). Override with
    FASTLENET_TEST_SEED."""
    print(f"FASTLENET_TEST_SEED={SEED} (test {request.node.nodeid})")
    return SEED


@pytest.fixture
def rng(rng_seed, request):
    """A generator seeded by the suite seed and the test's id: deterministic, and independent of
    which other tests run or in what order."""
    return np.random.default_rng([rng_seed, zlib.crc32(request.node.nodeid.encode())])


def make_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Canonical float32 weights, normal / sqrt(fan_in) so that no layer saturates."""
    out = {}
    for key, shape in CANONICAL_SHAPES.items():
        if key.endswith(".weight"):
            fan_in = int(np.prod(shape[1:]))
            out[key] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        else:
            out[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return out


@functools.lru_cache(maxsize=None)
def _session_weights() -> dict[str, np.ndarray]:
    w = make_weights(np.random.default_rng([SEED, 1]))
    for v in w.values():
        v.flags.writeable = False
    return w


@pytest.fixture
def rand_weights(rng_seed):
    """The session's random canonical weights (a fresh dict of writeable copies per test)."""
    return {k: v.copy() for k, v in _session_weights().items()}


POOL_SIZE = 1100  # images() can hand out up to this many


@pytest.fixture(scope="module")
def sample():
    """The 500 bundled MNIST test digits (uint8 28x28) and their labels."""
    with np.load(os.path.join(os.path.dirname(fastlenet.__file__), "data", "mnist_sample.npz"),
                 allow_pickle=False) as z:
        return z["images"], z["labels"].astype(np.int64)


@pytest.fixture(scope="module")
def net():
    """The bundled pretrained Net (modules that need another define their own `net`)."""
    return fastlenet.pretrained()


@functools.lru_cache(maxsize=None)
def _image_pool(size: int, salt: int) -> np.ndarray:
    pool = np.random.default_rng([SEED, 2, size, salt]).random((POOL_SIZE, size, size),
                                                               dtype=np.float32)
    pool.flags.writeable = False
    return pool


def images(n: int, size: int = 32, salt: int = 0) -> np.ndarray:
    """n float32 images in [0, 1) (like scaled pixels), read-only; image i is the same for
    every n, so the reference results cached for a prefix serve every batch size."""
    assert n <= POOL_SIZE
    return _image_pool(size, salt)[:n]


# ---- ISA parametrization ---------------------------------------------------------------------
def require_isa(isa: str) -> None:
    if isa not in AVAILABLE:
        pytest.skip(f"ISA {isa} is not available on this machine ({', '.join(AVAILABLE)})")


@pytest.fixture(params=ISAS)
def isa(request):
    """Every ISA level; the ones this machine lacks are skipped, never failed."""
    require_isa(request.param)
    return request.param


def make_net(weights=None, meta=None, *, isa=None, num_threads=None) -> fastlenet.Net:
    net = fastlenet.Net(_session_weights() if weights is None else weights, meta,
                        num_threads=num_threads)
    if isa is not None:
        net.isa = isa
    return net


# ---- cached reference results ----------------------------------------------------------------
BANK = 17  # reference logits are cached for images(BANK); every batch test reuses them


@functools.lru_cache(maxsize=None)
def ref_logits(n: int = BANK, activation: str = "tanh", pool: str = "avg") -> np.ndarray:
    return reference.logits(_session_weights(), images(n), activation=activation, pool=pool)


@functools.lru_cache(maxsize=None)
def ref_features(n: int = 5) -> np.ndarray:
    return reference.features(_session_weights(), images(n))


# ---- float64 helpers independent of fastlenet.reference ----------------------------------------
ACT64 = {
    None: lambda v: v,
    "tanh": np.tanh,
    "relu": lambda v: np.where(v < 0, 0.0, v),
    "sigmoid": lambda v: 0.5 * (1.0 + np.tanh(0.5 * v)),
    "scaled_tanh": lambda v: 1.7159 * np.tanh(v * (2.0 / 3.0)),
}


def conv5x5_direct(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 valid cross-correlation by the direct method (no FFT: NaN/inf stay local)."""
    x, k, b = (np.asarray(a, dtype=np.float64) for a in (x, k, b))
    out = np.empty((k.shape[0], x.shape[1] - 4, x.shape[2] - 4))
    with np.errstate(invalid="ignore", over="ignore"):
        for o in range(k.shape[0]):
            acc = np.full(out.shape[1:], b[o])
            for c in range(x.shape[0]):
                acc = acc + correlate(x[c], k[o, c], mode="valid", method="direct")
            out[o] = acc
    return out


def pool2x2_np(x: np.ndarray, kind: str) -> np.ndarray:
    c, h, w = x.shape
    win = np.asarray(x, dtype=np.float64).reshape(c, h // 2, 2, w // 2, 2)
    return win.max(axis=(2, 4)) if kind == "max" else win.mean(axis=(2, 4))


def forward_direct(weights, img32: np.ndarray, act: str = "tanh", pool: str = "avg"):
    """float64 logits of one normalized 32x32 image with direct correlation (for NaN/inf)."""
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    f = ACT64[act]
    with np.errstate(invalid="ignore", over="ignore"):
        s2 = pool2x2_np(f(conv5x5_direct(img32[None], w["c1.weight"], w["c1.bias"])), pool)
        s4 = pool2x2_np(f(conv5x5_direct(s2, w["c3.weight"], w["c3.bias"])), pool)
        c5 = f(conv5x5_direct(s4, w["c5.weight"], w["c5.bias"]).reshape(120))
        f6 = f(w["f6.weight"] @ c5 + w["f6.bias"])
        return w["output.weight"] @ f6 + w["output.bias"]


def softmax64(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assert_predictions_match(pred: np.ndarray, ref: np.ndarray) -> None:
    """Identical class indices, except where the reference's top two logits tie within
    TIE_TOL (then either of the two is right)."""
    pred = np.asarray(pred)
    assert pred.dtype == np.int64 and pred.shape == (len(ref),)
    top2 = np.argsort(ref, axis=1)[:, -2:]
    gap = np.take_along_axis(ref, top2[:, 1:], 1)[:, 0] - np.take_along_axis(ref, top2[:, :1],
                                                                              1)[:, 0]
    for i, p in enumerate(pred):
        if gap[i] < TIE_TOL:
            assert p in top2[i], (i, p, ref[i])
        else:
            assert p == top2[i, 1], (i, p, ref[i])


# ---- tolerances derived from magnitudes and reduction length --------------------------------
# A float32 sum of n products in any order is within gamma_n * M of the exact sum, where
# M = |b| + sum |w x| and gamma_n = n u / (1 - n u), u = 2**-24 (Higham, Accuracy and Stability of
# Numerical Algorithms, 3.1). The activation multiplies that by its Lipschitz constant and adds its
# own approximation error (ACT_APPROX, the rational tanh's bound); pooling keeps the largest
# (max) or the mean (avg) of its window's bounds; the output rounds once more (u |y|). So two
# float32 kernels differ by at most twice the bound, one differs from float64 by at most once.
U32 = 2.0 ** -24
ACT_APPROX = 1e-6
LIPSCHITZ = {None: 1.0, "tanh": 1.0, "relu": 1.0, "sigmoid": 0.25, "scaled_tanh": 1.7159 * 2 / 3}


def gamma(n: int) -> float:
    return n * U32 / (1 - n * U32)


def _approx(act) -> float:
    return 0.0 if act in (None, "relu") else ACT_APPROX


def dense_bound(x, w, b, act=None) -> np.ndarray:
    """Each output's error bound for act(w @ x + b) computed in float32."""
    x64, w64, b64 = (np.asarray(a, np.float64) for a in (x, w, b))
    mag = np.abs(w64) @ np.abs(x64) + np.abs(b64)
    y = ACT64[act](w64 @ x64 + b64)
    return LIPSCHITZ[act] * gamma(x64.shape[-1] + 1) * mag + _approx(act) + U32 * np.abs(y)


def layer_bound(x, k, b, act, pool) -> np.ndarray:
    """Each pooled output's error bound for pool(act(conv5x5(x, k) + b)) computed in float32."""
    with np.errstate(invalid="ignore"):
        mag = conv5x5_direct(np.abs(np.asarray(x, np.float64)), np.abs(np.asarray(k, np.float64)),
                             np.abs(np.asarray(b, np.float64)))
        y = ACT64[act](conv5x5_direct(x, k, b))
    n = int(np.prod(np.shape(k)[1:])) + 1
    e = LIPSCHITZ[act] * gamma(n) * mag + _approx(act) + U32 * np.abs(y)
    return pool2x2_np(e, "max" if pool == "max" else "avg") + gamma(3) * pool2x2_np(np.abs(y), "avg")


def assert_within(got, want, bound, scale=1.0, what=""):
    """|got - want| <= scale * bound everywhere (NaN where the other is NaN)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    ok = np.isnan(want) | (got == want) | (np.abs(got - want) <= scale * np.nan_to_num(bound))
    if not ok.all():
        i = np.flatnonzero(~ok.ravel())[0]
        raise AssertionError(f"{what}: {int((~ok).sum())} value(s) beyond the derived bound; "
                             f"first at {np.unravel_index(i, ok.shape)}: got {got.ravel()[i]!r}, "
                             f"want {want.ravel()[i]!r}, bound {scale * bound.ravel()[i]:.3g}")


# ---- image files as bytes ------------------------------------------------------------------
def png_bytes(arr, fmt="PNG", **kw) -> bytes:
    """arr encoded by Pillow (PNG unless fmt says otherwise)."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def idx_bytes(arr) -> bytes:
    """arr (uint8, any rank) as an IDX file: magic 0x0000 08 <rank>, big-endian sizes, data."""
    import struct
    arr = np.asarray(arr, np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
