"""LeNet-5s of other shapes: K classes (2 .. 65,536) and 1 or 3 input channels, through the engine
(every ISA), the reference, the loader's layout detection, persistence and pickling."""
from __future__ import annotations

import functools
import io
import pickle

import numpy as np
import pytest

import fastlenet
from fastlenet import reference
from fastlenet.weights import layout

from _helpers import ISA_TOL, LOGIT_TOL, SEED, assert_predictions_match, conv5x5_direct, \
    pool2x2_np, ACT64

CLASSES = (2, 10, 26, 43, 47, 100, 1000)
CHANNELS = (1, 3)
N_REF = 5  # images compared with the (slow) reference per (C, K)


@functools.lru_cache(maxsize=None)
def weights(c: int, k: int, salt: int = 0) -> dict:
    rng = np.random.default_rng([SEED, 11, c, k, salt])
    out = {}
    for key, shape in layout.canonical_shapes(c, k).items():
        if key.endswith(".weight"):
            out[key] = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
        else:
            out[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        out[key].flags.writeable = False
    return out


@functools.lru_cache(maxsize=None)
def rgb_images(n: int, salt: int = 0) -> np.ndarray:
    """n uint8 RGB images, NHWC (as Pillow and most data loaders give them), read-only."""
    a = np.random.default_rng([SEED, 12, n, salt]).integers(0, 256, (n, 32, 32, 3), np.uint8)
    a.flags.writeable = False
    return a


def gray_images(n: int) -> np.ndarray:
    return np.random.default_rng([SEED, 13, n]).random((n, 32, 32), dtype=np.float32)


def inputs(c: int, n: int) -> np.ndarray:
    return rgb_images(n) if c == 3 else gray_images(n)


META = {1: {"mean": 0.1307, "std": 0.3081},
        3: {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}}


@functools.lru_cache(maxsize=None)
def ref(c: int, k: int) -> np.ndarray:
    return reference.logits(weights(c, k), inputs(c, N_REF), **META[c])


def net_for(c, k, isa=None, **kw):
    net = fastlenet.Net(weights(c, k), META[c], **kw)
    if isa:
        net.isa = isa
    return net


# ---- the engine against the reference ------------------------------------------------------
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("k", CLASSES)
def test_logits_proba_predict_match_reference(isa, c, k):
    net = net_for(c, k, isa)
    assert (net.num_classes, net.in_channels) == (k, c)
    x = inputs(c, N_REF)
    lg = net.logits(x)
    assert lg.shape == (N_REF, k) and lg.dtype == np.float32
    np.testing.assert_allclose(lg, ref(c, k), rtol=0, atol=LOGIT_TOL)
    z = ref(c, k)
    e = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(net.predict_proba(x), e / e.sum(1, keepdims=True), rtol=0,
                               atol=1e-5)
    assert_predictions_match(net.predict(x), z)
    assert net.features(x).shape == (N_REF, 84)


@pytest.mark.parametrize("c,k", [(1, 47), (3, 10), (3, 1000)])
def test_isas_agree_on_a_ragged_batch(isa, c, k):
    x = inputs(c, 37)
    scalar = net_for(c, k, "scalar").logits(x)
    np.testing.assert_allclose(net_for(c, k, isa).logits(x), scalar, rtol=0, atol=ISA_TOL)


@pytest.mark.parametrize("c,k", [(1, 26), (3, 43), (3, 1000)])
def test_thread_count_does_not_change_results(isa, c, k):
    x = inputs(c, 97)
    outs = [net_for(c, k, isa, num_threads=t) for t in (1, 2, 3)]
    for mode in ("logits", "predict_proba", "predict"):
        first = getattr(outs[0], mode)(x)
        for net in outs[1:]:
            np.testing.assert_array_equal(getattr(net, mode)(x), first)


def test_many_classes_in_one_image_and_the_largest_k():
    """K far past one output block (128 classes) and the engine's limit: argmax across blocks,
    softmax over all of them."""
    for k in (129, 257, 3000):
        w = dict(weights(1, k))
        out_w = np.array(w["output.weight"])
        out_w[k - 1] *= 0  # the last class: bias only, made the largest
        w["output.weight"] = out_w
        w["output.bias"] = np.zeros(k, np.float32)
        w["output.bias"][k - 1] = 1e3
        net = fastlenet.Net(w)
        x = gray_images(3)
        assert (net.predict(x) == k - 1).all()
        p = net.predict_proba(x)
        assert p.shape == (3, k) and np.allclose(p.sum(1), 1, atol=1e-5) and (p[:, -1] > 0.99).all()
    k = layout.MAX_CLASSES
    net = fastlenet.Net(weights(1, k))
    x = gray_images(2)
    np.testing.assert_allclose(net.logits(x), reference.logits(weights(1, k), x), rtol=0,
                               atol=LOGIT_TOL)


def test_k_outside_the_engine_range_is_refused():
    for k, in ((1,), (layout.MAX_CLASSES + 1,)):
        w = dict(weights(1, 10))
        w["output.weight"] = np.zeros((k, 84), np.float32)
        w["output.bias"] = np.zeros(k, np.float32)
        with pytest.raises(ValueError, match=r"output\.weight.*\(K, 84\)|output"):
            fastlenet.Net(w)


def test_a_nan_logit_in_a_later_block_predicts_minus_one():
    k = 300
    w = dict(weights(1, k))
    b = np.zeros(k, np.float32)
    w["output.bias"] = b
    net = fastlenet.Net(w)
    x = gray_images(2).copy()
    assert (net.predict(x) >= 0).all()
    x[1, 0, 0] = np.nan
    pred = net.predict(x)
    assert pred[0] >= 0 and pred[1] == -1


# ---- C1 over three channels, kernel level -----------------------------------------------------
@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("pool", ["avg", "max"])
def test_c1_rgb_kernel_matches_scipy(isa, act, pool):
    from fastlenet import _engine

    w = weights(3, 10)
    net = fastlenet.Net(w, {"activation": act, "pool": pool})
    img = np.random.default_rng([SEED, 14]).uniform(-1, 1, (3, 32, 32)).astype(np.float32)
    got = _engine._kernel_c1(isa, net, img)
    want = pool2x2_np(ACT64[act](conv5x5_direct(img, w["c1.weight"], w["c1.bias"])), pool)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


# ---- RGB inputs: layouts, strides, dtypes -----------------------------------------------------
def _rgb_variants(x):
    """The same RGB batch in every accepted layout and memory order."""
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    big = np.zeros((x.shape[0] * 2, 40, 41, 5), x.dtype)
    big[::2, 3:35, 4:36, 1:4] = x
    flipped = np.ascontiguousarray(x[:, ::-1, ::-1, ::-1])[:, ::-1, ::-1, ::-1]
    return {
        "nhwc": x,
        "nchw": nchw,
        "fortran": np.asfortranarray(x),
        "nchw_fortran": np.asfortranarray(nchw),
        "sliced": big[::2, 3:35, 4:36, 1:4],
        "negative": flipped,
        "bgr_view": x[..., ::-1][..., ::-1],
        "float32": x.astype(np.float32) / 255,
        "float64": x.astype(np.float64) / 255,
    }


def test_rgb_layouts_and_strides_agree(isa):
    net = net_for(3, 43, isa)
    x = rgb_images(9)
    want = net.logits(x)
    for name, v in _rgb_variants(x).items():
        np.testing.assert_allclose(net.logits(v), want, rtol=0, atol=2e-6, err_msg=name)
    np.testing.assert_array_equal(net.logits(x[4]), want[4:5])  # one HWC image
    np.testing.assert_array_equal(net.logits(x[4].transpose(2, 0, 1)), want[4:5])  # CHW


def test_rgb_input_is_never_copied_nor_modified():
    net = net_for(3, 10)
    x = rgb_images(4)
    before = x.copy()
    net.logits(x)  # read-only, and a copy would have shown in tracemalloc below
    np.testing.assert_array_equal(x, before)
    import tracemalloc

    big = np.asfortranarray(rgb_images(64))
    net.logits(big)
    tracemalloc.start()
    net.logits(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < big.nbytes / 2  # the output (64 x 10 floats) and nothing of the input's size


def test_rgb_28x28_is_padded_like_the_reference(isa):
    net = net_for(3, 26, isa)
    x = rgb_images(3)[:, 2:30, 2:30]
    np.testing.assert_allclose(net.logits(x), reference.logits(net, x), rtol=0, atol=LOGIT_TOL)


def test_per_channel_normalization_is_applied(isa):
    w = weights(3, 10)
    x = rgb_images(3)
    a = fastlenet.Net(w, META[3])
    a.isa = isa
    b = fastlenet.Net(w)  # no normalization: feed the normalized floats ourselves
    mean, std = (np.array(META[3][k], np.float64)[:, None, None] for k in ("mean", "std"))
    xn = ((x.transpose(0, 3, 1, 2) / 255.0 - mean) / std).astype(np.float32)
    np.testing.assert_allclose(a.logits(x), b.logits(xn), rtol=0, atol=1e-5)


def test_channel_count_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"x: this model takes 3-channel \(RGB\) input.*got shape \(2, 32, 32\)"):
        net_for(3, 10).logits(gray_images(2))
    with pytest.raises(ValueError, match=r"x: expected an image .* got shape \(2, 32, 32, 3\)"):
        net_for(1, 10).logits(rgb_images(2))


def test_empty_rgb_batch():
    net = net_for(3, 47)
    assert net.logits(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, 47)
    assert net.predict(np.zeros((0, 3, 32, 32), np.float32)).shape == (0,)


# ---- metadata: classes, mean/std per channel ---------------------------------------------------
def test_classes_default_and_from_metadata():
    assert net_for(1, 26).classes == [str(i) for i in range(26)]
    letters = [chr(ord("a") + i) for i in range(26)]
    net = fastlenet.Net(weights(1, 26), {"classes": letters})
    assert net.classes == letters and net.num_classes == 26
    with pytest.raises(ValueError, match=r"classes must be a list of 26 names"):
        fastlenet.Net(weights(1, 26), {"classes": letters[:10]})


def test_per_channel_mean_needs_three_channels():
    with pytest.raises(ValueError, match=r"mean must be a finite number"):
        fastlenet.Net(weights(1, 10), {"mean": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match=r"std must be a finite number.*list of 3"):
        fastlenet.Net(weights(3, 10), {"std": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r"std must be positive"):
        fastlenet.Net(weights(3, 10), {"std": [0.1, 0.0, 0.3]})


# ---- persistence ------------------------------------------------------------------------------
@pytest.mark.parametrize("c,k", [(3, 43), (1, 47), (3, 1000)])
def test_save_load_and_pickle_keep_k_and_c(tmp_path, c, k):
    meta = dict(META[c], classes=[f"class {i}" for i in range(k)])
    net = fastlenet.Net(weights(c, k), meta)
    x = inputs(c, 4)
    want = net.logits(x)
    net.save(tmp_path / "m.npz")
    back = fastlenet.load(tmp_path / "m.npz")
    again = pickle.loads(pickle.dumps(net))
    for other in (back, again):
        assert (other.num_classes, other.in_channels) == (k, c)
        assert other.classes == meta["classes"] and other.meta["mean"] == net.meta["mean"]
        np.testing.assert_array_equal(other.logits(x), want)


# ---- layout detection for other shapes ---------------------------------------------------------
def _torch_named(w):
    return {"conv1.weight": w["c1.weight"], "conv1.bias": w["c1.bias"],
            "conv2.weight": w["c3.weight"], "conv2.bias": w["c3.bias"],
            "fc1.weight": w["c5.weight"].reshape(120, 400), "fc1.bias": w["c5.bias"],
            "fc2.weight": w["f6.weight"], "fc2.bias": w["f6.bias"],
            "fc3.weight": w["output.weight"], "fc3.bias": w["output.bias"]}


def _keras_path(w):
    # Keras: HWIO kernels, (in, out) dense, C5 as Dense after Flatten (H, W, C order)
    c5 = w["c5.weight"].transpose(0, 2, 3, 1).reshape(120, 400).T
    return {"seq/conv2d/kernel": w["c1.weight"].transpose(2, 3, 1, 0), "seq/conv2d/bias": w["c1.bias"],
            "seq/conv2d_1/kernel": w["c3.weight"].transpose(2, 3, 1, 0), "seq/conv2d_1/bias": w["c3.bias"],
            "seq/dense/kernel": c5, "seq/dense/bias": w["c5.bias"],
            "seq/dense_1/kernel": w["f6.weight"].T, "seq/dense_1/bias": w["f6.bias"],
            "seq/dense_2/kernel": w["output.weight"].T, "seq/dense_2/bias": w["output.bias"]}


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("k", [2, 6, 16, 43, 84, 120, 1000])
@pytest.mark.parametrize("family", ["torch", "keras", "positional"])
def test_layouts_detect_c_and_k(c, k, family):
    """K equal to another layer's width (6, 16, 84, 120) makes biases or matrices fit two slots;
    names, the family's orientation or the file order must still place every array."""
    w = weights(c, k)
    if family == "torch":
        arrays = _torch_named(w)
    elif family == "keras":
        arrays = _keras_path(w)
    else:
        arrays = {f"arr_{i}": v for i, v in enumerate(_keras_path(w).values())}
    conv = layout.convert(arrays)
    assert (conv.in_channels, conv.num_classes) == (c, k)
    for key, v in w.items():
        np.testing.assert_array_equal(conv.weights[key], v, err_msg=key)


def test_output_bias_must_match_the_output_weight():
    arrays = _torch_named(weights(1, 43))
    arrays["fc3.bias"] = np.zeros(42, np.float32)
    with pytest.raises(ValueError, match=r"output bias \(43,\)"):
        layout.convert(arrays)


def test_canonical_with_other_k_and_c_loads(tmp_path):
    w = weights(3, 100)
    np.savez(tmp_path / "w.npz", **w)
    net = fastlenet.load(tmp_path / "w.npz")
    assert (net.num_classes, net.in_channels) == (100, 3)
    bad = dict(w)
    bad["c1.weight"] = np.zeros((6, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"'c1\.weight' has shape \(6, 2, 5, 5\)"):
        fastlenet.Net(bad)


def test_reference_rgb_input_rules():
    x = rgb_images(2)
    a = reference.images(x, channels=3)
    assert a.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(a, reference.images(x.transpose(0, 3, 1, 2), channels=3))
    np.testing.assert_array_equal(a[:1], reference.images(x[0], channels=3))
    with pytest.raises(ValueError, match="x: expected"):
        reference.images(gray_images(2), channels=3)


def test_per_channel_mean_std_as_keywords(tmp_path):
    np.savez(tmp_path / "w.npz", **weights(3, 10))
    x = rgb_images(3)
    a = fastlenet.load(tmp_path / "w.npz", mean=META[3]["mean"], std=tuple(META[3]["std"]))
    b = fastlenet.Net(weights(3, 10), META[3])
    np.testing.assert_array_equal(a.logits(x), b.logits(x))
    assert a.meta["std"] == META[3]["std"]
