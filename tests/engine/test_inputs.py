"""The input rules: dtypes, shapes, 28x28 padding, any strides, byte order, read-only and
unaligned buffers, normalization from metadata, empty batches, NaN images."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from fastlenet import reference

from _helpers import (LOGIT_TOL, _session_weights, forward_direct, images, make_net, ref_logits)

MNIST_META = {"mean": 0.1307, "std": 0.3081}


@functools.lru_cache(maxsize=None)
def _u8(n: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(size)
    a = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    a.flags.writeable = False
    return a


@functools.lru_cache(maxsize=None)
def _ref(kind: str, meta: tuple = ()) -> np.ndarray:
    """Reference logits of small fixed inputs (cached: the reference is slow)."""
    x = {"u8": _u8(3), "28": images(3, size=28), "u8_28": _u8(3, 28)}[kind]
    return reference.logits(_session_weights(), x, **dict(meta))


# ---- dtypes -------------------------------------------------------------------------------------
def test_float64_input_equals_float32_input(isa):
    net = make_net(isa=isa)
    x = images(9)
    np.testing.assert_array_equal(net.logits(x.astype(np.float64)), net.logits(x))
    np.testing.assert_allclose(net.logits(x.astype(np.float64)), ref_logits()[:9], rtol=0,
                               atol=LOGIT_TOL)


def test_float64_values_are_rounded_to_float32(isa):
    net = make_net(isa=isa)
    x = np.random.default_rng(3).random((4, 32, 32))  # float64, not float32-representable
    np.testing.assert_array_equal(net.logits(x), net.logits(x.astype(np.float32)))


def test_uint8_means_pixels_over_255(isa):
    net = make_net(isa=isa)
    x = _u8(3)
    out = net.logits(x)
    np.testing.assert_allclose(out, _ref("u8"), rtol=0, atol=LOGIT_TOL)
    np.testing.assert_allclose(out, net.logits(x / 255.0), rtol=0, atol=1e-5)


# ---- shapes -----------------------------------------------------------------------------------
def test_single_image_is_a_batch_of_one(isa):
    net = make_net(isa=isa)
    x = images(1)
    for method in ("logits", "predict_proba", "features", "predict"):
        one = getattr(net, method)(x[0])
        assert one.shape[0] == 1
        np.testing.assert_array_equal(one, getattr(net, method)(x))


@pytest.mark.parametrize("layout", ["N1HW", "NHW1"])
def test_channel_axis_layouts(isa, layout):
    net = make_net(isa=isa)
    x = images(7)
    x4 = x[:, None] if layout == "N1HW" else x[..., None]
    np.testing.assert_array_equal(net.logits(x4), net.logits(x))
    np.testing.assert_array_equal(net.predict(x4), net.predict(x))


def test_28x28_is_zero_padded_like_the_reference(isa):
    net = make_net(isa=isa)
    x28 = images(3, size=28)
    np.testing.assert_allclose(net.logits(x28), _ref("28"), rtol=0, atol=LOGIT_TOL)
    x32 = np.pad(x28, ((0, 0), (2, 2), (2, 2)))
    np.testing.assert_array_equal(net.logits(x28), net.logits(x32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("layout", ["HW", "NHW", "N1HW", "NHW1"])
def test_28x28_variants_equal_padded_32x32(isa, dtype, layout):
    """Every shape and dtype of a 28x28 batch gives what its explicit zero padding gives, also
    with a normalization (the border is a normalized 0, not a raw 0)."""
    x28 = (_u8(5, 28) if dtype == np.uint8 else images(5, size=28).astype(dtype))
    x32 = np.pad(x28, ((0, 0), (2, 2), (2, 2)))
    shape = {"HW": lambda a: a[0], "NHW": lambda a: a, "N1HW": lambda a: a[:, None],
             "NHW1": lambda a: a[..., None]}[layout]
    for meta in (None, MNIST_META):
        net = make_net(meta=meta, isa=isa)
        np.testing.assert_array_equal(net.logits(shape(x28)), net.logits(shape(x32)))


def test_normalization_from_metadata(isa):
    net = make_net(meta=MNIST_META, isa=isa)
    assert (net.meta["mean"], net.meta["std"]) == (0.1307, 0.3081)
    meta = tuple(MNIST_META.items())
    np.testing.assert_allclose(net.logits(_u8(3)), _ref("u8", meta), rtol=0, atol=LOGIT_TOL)
    np.testing.assert_allclose(net.logits(_u8(3, 28)), _ref("u8_28", meta), rtol=0,
                               atol=LOGIT_TOL)
    # float input: the same as normalizing by hand and running an identity-normalized Net
    x = images(6)
    manual = make_net(isa=isa).logits((x - 0.1307) / 0.3081)
    np.testing.assert_allclose(net.logits(x), manual, rtol=0, atol=1e-5)
    # ... and the reference honours a Net's own metadata
    np.testing.assert_allclose(net.logits(_u8(3)), reference.logits(net, _u8(3)), rtol=0,
                               atol=LOGIT_TOL)


# ---- strides, order, byte order, ownership ------------------------------------------------------
def _contiguous(x):
    return np.ascontiguousarray(x)


def _views():
    base = images(40)
    big = np.random.default_rng(5).random((12, 3, 64, 64), dtype=np.float32)
    return {
        "transposed": base[:9].transpose(0, 2, 1),
        "sliced_batch": base[::2],
        "negative_rows": base[:9, ::-1],
        "negative_cols": base[:9, :, ::-1],
        "negative_batch": base[::-3],
        "fortran": np.asfortranarray(base[:9]),
        "fortran_4d": np.asfortranarray(base[:9, None]),
        "strided_pixels": big[:, 1, ::2, ::2],
        "channel_slice_NHW1": big.transpose(0, 2, 3, 1)[:, 10:42, 20:52, 1:2],
        "channel_slice_N1HW": big[:, 2:3, 5:37, 7:39],
        "batch_broadcast": np.broadcast_to(base[3], (6, 32, 32)),
        "u8_transposed": _u8(5).transpose(0, 2, 1),
        "u8_sliced": _u8(5)[::2, ::-1],
        "f64_fortran": np.asfortranarray(base[:5].astype(np.float64)),
        "f64_negative": base[:5].astype(np.float64)[:, ::-1, ::-1],
    }


@pytest.mark.parametrize("name", list(_views()))
def test_any_strides(isa, name):
    x = _views()[name]
    net = make_net(isa=isa)
    expected = net.logits(_contiguous(x))
    np.testing.assert_array_equal(net.logits(x), expected)
    np.testing.assert_array_equal(net.features(x), net.features(_contiguous(x)))


def test_strided_input_matches_reference(isa):
    net = make_net(isa=isa)
    x = np.ascontiguousarray(images(9).transpose(0, 2, 1)).transpose(0, 2, 1)
    assert not x.flags.c_contiguous
    np.testing.assert_allclose(net.logits(x), ref_logits()[:9], rtol=0, atol=LOGIT_TOL)


def test_read_only_input(isa):
    x = images(8).copy()
    x.flags.writeable = False
    net = make_net(isa=isa)
    np.testing.assert_array_equal(net.logits(x), net.logits(images(8).copy()))
    u = _u8(3)
    assert not u.flags.writeable
    net.logits(u)


@pytest.mark.parametrize("dtype", [">f4", ">f8", "<f4", "<f8", "=u1", "|u1"])
def test_byte_order(isa, dtype):
    x = images(5)
    if "u1" in dtype:
        x = _u8(5)
    net = make_net(isa=isa)
    other = x.astype(dtype)
    assert other.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(net.logits(other), net.logits(x.astype(other.dtype.newbyteorder("="))))
    assert other.dtype == np.dtype(dtype)  # the caller's array is untouched


def test_unaligned_float32_buffer(isa):
    """A float32 array at an odd byte address (legal in NumPy) is read correctly."""
    x = images(6)
    raw = np.zeros(x.nbytes + 1, np.uint8)
    un = np.frombuffer(raw.data, dtype=np.float32, count=x.size, offset=1).reshape(x.shape)
    un[...] = x
    assert not un.flags.aligned
    net = make_net(isa=isa)
    np.testing.assert_array_equal(net.logits(un), net.logits(x))


def test_list_input(isa):
    net = make_net(isa=isa)
    x = images(3)
    np.testing.assert_array_equal(net.logits(x.tolist()), net.logits(x))
    np.testing.assert_array_equal(net.logits(x[0].tolist()), net.logits(x[:1]))


def test_input_is_not_modified(isa):
    net = make_net(meta=MNIST_META, isa=isa)
    x = images(20).copy()
    before = x.copy()
    net.logits(x)
    net.predict_proba(x)
    np.testing.assert_array_equal(x, before)


# ---- empty batches ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(0, 32, 32), (0, 1, 32, 32), (0, 32, 32, 1), (0, 28, 28)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_empty_batch(isa, shape, dtype):
    net = make_net(isa=isa)
    x = np.zeros(shape, dtype)
    for method, oshape, odtype in [("logits", (0, 10), np.float32),
                                   ("predict_proba", (0, 10), np.float32),
                                   ("predict", (0,), np.int64),
                                   ("features", (0, 84), np.float32)]:
        out = getattr(net, method)(x)
        assert out.shape == oshape and out.dtype == odtype, method


# ---- NaN and inf in the images ------------------------------------------------------------------
@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid", "scaled_tanh"])
def test_nan_image_is_isolated(isa, act, pool):
    """A NaN pixel makes that image's logits all NaN and its prediction -1; every other image
    is bit-identical to the NaN-free run (also across thread chunks)."""
    net = make_net(meta={"activation": act, "pool": pool}, isa=isa, num_threads=2)
    x = images(40).copy()
    clean_logits, clean_pred = net.logits(x), net.predict(x)
    bad = [0, 17, 39]
    for i, (r, c) in zip(bad, [(0, 0), (31, 5), (16, 31)]):
        x[i, r, c] = np.nan
    logits, pred, proba = net.logits(x), net.predict(x), net.predict_proba(x)
    feats = net.features(x)
    ok = np.setdiff1d(np.arange(40), bad)
    assert np.isnan(logits[bad]).all()
    assert np.isnan(proba[bad]).all()
    assert np.isnan(feats[bad]).all()
    np.testing.assert_array_equal(pred[bad], -1)
    assert np.isfinite(logits[ok]).all()
    np.testing.assert_array_equal(logits[ok], clean_logits[ok])
    np.testing.assert_array_equal(pred[ok], clean_pred[ok])


@pytest.mark.parametrize("dtype", [np.float64, ">f4"])
def test_nan_image_other_dtypes(isa, dtype):
    net = make_net(isa=isa)
    x = images(5).astype(dtype)
    x[2, 7, 9] = np.nan
    pred = net.predict(x)
    np.testing.assert_array_equal(pred == -1, [False, False, True, False, False])
    assert np.isnan(net.logits(x)[2]).all()


def test_infinite_pixel_saturates(isa):
    """One +inf pixel: every conv output touching it is +-inf, tanh saturates, the logits stay
    finite and match a direct-correlation float64 forward pass."""
    w = _session_weights()
    net = make_net(isa=isa)
    x = images(2).copy()
    x[0, 10, 10] = np.inf
    out = net.logits(x)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0], forward_direct(w, x[0].astype(np.float64)), rtol=0,
                               atol=LOGIT_TOL)


def test_reference_handles_extreme_pixels_locally():
    """Regression: the reference used FFT correlation (scipy's method='auto' for 32x32), so
    one huge or infinite pixel corrupted every output of the ground truth."""
    w = _session_weights()
    x = images(1).copy()
    x[0, 10, 10] = 1e30
    expected = forward_direct(w, x[0].astype(np.float64))
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(reference.logits(w, x)[0], expected, rtol=0, atol=LOGIT_TOL)


def test_reference_agrees_on_an_infinite_pixel(isa):
    """Engine and reference agree that one +inf pixel saturates instead of poisoning the image."""
    net = make_net(isa=isa)
    x = images(1).copy()
    x[0, 3, 29] = np.inf
    with np.errstate(all="ignore"):
        ref = reference.logits(_session_weights(), x)
    np.testing.assert_allclose(net.logits(x), ref, rtol=0, atol=LOGIT_TOL)
