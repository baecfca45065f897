"""Persistence: pickling, save/load round trips (bit-identical), and the Net's immutability
(weights/meta accessors return copies; the caller's arrays are copied in)."""
from __future__ import annotations

import copy
import io
import json
import pickle

import numpy as np
import pytest

import fastlenet
from fastlenet import _engine
from fastlenet.weights import CANONICAL_SHAPES, WeightsError

from _helpers import images

META = {"activation": "relu", "pool": "max", "mean": 0.1307, "std": 0.3081,
        "classes": list("ABCDEFGHIJ")}


def assert_same_weights(a: dict, b: dict) -> None:
    assert set(a) == set(b) == set(CANONICAL_SHAPES)
    for k in CANONICAL_SHAPES:
        assert a[k].dtype == b[k].dtype == np.float32, k
        assert a[k].shape == b[k].shape == CANONICAL_SHAPES[k], k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert a[k].tobytes() == b[k].tobytes(), k  # bit-identical, -0.0 included


def assert_same_net(a: fastlenet.Net, b: fastlenet.Net) -> None:
    assert_same_weights(a.weights, b.weights)
    assert a.meta == b.meta
    assert (a.activation, a.pool, a.classes) == (b.activation, b.pool, b.classes)
    x = images(37)
    for method in ("logits", "predict_proba", "predict", "features"):
        np.testing.assert_array_equal(getattr(a, method)(x), getattr(b, method)(x), err_msg=method)


@pytest.fixture(params=[None, META], ids=["default-meta", "relu-max-normalized"])
def net(request, rand_weights):
    rand_weights["c1.bias"][0] = -0.0
    return fastlenet.Net(rand_weights, request.param)


# ---- pickle ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(net, protocol):
    back = pickle.loads(pickle.dumps(net, protocol=protocol))
    assert isinstance(back, fastlenet.Net) and back is not net
    assert_same_net(back, net)


def test_copy_and_deepcopy(net):
    assert_same_net(copy.copy(net), net)
    assert_same_net(copy.deepcopy(net), net)


def test_pickle_does_not_carry_isa_or_default_threads(net):
    """The chosen ISA and the default thread count belong to the machine, not to the model."""
    net.isa = "scalar"
    for back in (pickle.loads(pickle.dumps(net)), copy.copy(net), copy.deepcopy(net)):
        assert back.isa == fastlenet.default_isa()
        assert back.num_threads == fastlenet.DEFAULT_THREADS


def test_pickle_and_copy_keep_an_explicit_num_threads(net):
    """Issue 10: an explicitly set num_threads is the user's choice and travels with the Net
    (it used to be dropped); setting it back to None drops it again."""
    net.num_threads = 3
    for back in (pickle.loads(pickle.dumps(net)), copy.copy(net), copy.deepcopy(net)):
        assert back.num_threads == (3 if fastlenet.HAS_OPENMP else 1)
        assert back.isa == fastlenet.default_isa()
    net.num_threads = None
    assert pickle.loads(pickle.dumps(net)).num_threads == fastlenet.DEFAULT_THREADS


def test_unpickling_validates_num_threads(rand_weights):
    for bad in (0, -1, 2**31, "2"):
        with pytest.raises(WeightsError, match=r"pickle: num_threads"):
            pickle.loads(pickle.dumps(_Forged3(rand_weights, "{}", bad)))


def test_pickle_payload_holds_no_pointers(net):
    """Two Nets with the same weights pickle to the same bytes (no addresses, no state)."""
    twin = fastlenet.Net(net.weights, net.meta)
    assert pickle.dumps(twin) == pickle.dumps(net)


class _Forged:
    """Pickles as a Net whose weights were tampered with."""

    def __init__(self, weights, meta_json):
        self.args = (weights, meta_json)

    def __reduce__(self):
        return (_engine._restore, self.args)


class _Forged3(_Forged):
    def __init__(self, weights, meta_json, threads):
        self.args = (weights, meta_json, threads)


def test_unpickling_validates_weights(rand_weights):
    rand_weights["f6.weight"][1, 2] = np.nan
    with pytest.raises(WeightsError, match=r"f6\.weight.*non-finite"):
        pickle.loads(pickle.dumps(_Forged(rand_weights, "{}")))
    del rand_weights["f6.weight"]
    with pytest.raises(WeightsError, match=r"f6\.weight"):
        pickle.loads(pickle.dumps(_Forged(rand_weights, "{}")))


def test_unpickling_validates_meta(rand_weights):
    with pytest.raises(WeightsError, match="activation.*'gelu'"):
        pickle.loads(pickle.dumps(_Forged(rand_weights, '{"activation": "gelu"}')))
    with pytest.raises(WeightsError, match="JSON"):
        pickle.loads(pickle.dumps(_Forged(rand_weights, "{oops")))


# ---- save / load -------------------------------------------------------------------------------
def test_save_load_round_trip(net, tmp_path):
    path = tmp_path / "model.npz"
    net.save(path)
    back = fastlenet.load(path)
    assert_same_net(back, net)
    assert_same_net(fastlenet.Net.from_npz(str(path)), net)


def test_save_load_keeps_metadata(tmp_path, rand_weights):
    net = fastlenet.Net(rand_weights, META)
    net.save(tmp_path / "m.npz")
    back = fastlenet.load(tmp_path / "m.npz")
    assert back.activation == "relu" and back.pool == "max"
    assert back.meta["mean"] == 0.1307 and back.meta["std"] == 0.3081
    assert back.classes == list("ABCDEFGHIJ")


def test_saved_file_is_a_plain_canonical_npz(net, tmp_path):
    path = tmp_path / "plain.npz"
    net.save(path)
    with np.load(path, allow_pickle=False) as z:
        files = set(z.files)
        assert files == set(CANONICAL_SHAPES) | {"fastlenet_meta"}
        for k, shape in CANONICAL_SHAPES.items():
            assert z[k].dtype == np.float32 and z[k].shape == shape
        meta = json.loads(str(z["fastlenet_meta"]))
    assert meta == net.meta


def test_save_without_npz_suffix_keeps_the_exact_path(net, tmp_path):
    for name in ("weights.bin", "weights", "weights.NPZ.backup"):
        path = tmp_path / name
        net.save(path)
        assert path.is_file()
        assert not (tmp_path / (name + ".npz")).exists()
        assert_same_net(fastlenet.load(path), net)


def test_save_to_str_path_and_file_object(net, tmp_path):
    net.save(str(tmp_path / "s.npz"))
    assert_same_net(fastlenet.load(str(tmp_path / "s.npz")), net)
    buf = io.BytesIO()
    net.save(buf)
    (tmp_path / "f.npz").write_bytes(buf.getvalue())
    assert_same_net(fastlenet.load(tmp_path / "f.npz"), net)


def test_save_overwrites(net, tmp_path, rand_weights):
    path = tmp_path / "w.npz"
    other = dict(rand_weights)
    other["output.bias"] = other["output.bias"] + 1
    fastlenet.Net(other).save(path)
    net.save(path)
    assert_same_net(fastlenet.load(path), net)


def test_load_overrides_metadata(tmp_path, rand_weights):
    fastlenet.Net(rand_weights, META).save(tmp_path / "m.npz")
    back = fastlenet.load(tmp_path / "m.npz", activation="tanh", pool="avg", mean=0.0, std=1.0)
    assert (back.activation, back.pool, back.meta["mean"], back.meta["std"]) == \
        ("tanh", "avg", 0.0, 1.0)
    np.testing.assert_array_equal(back.logits(images(5)),
                                  fastlenet.Net(rand_weights).logits(images(5)))


def test_float64_weights_save_as_float32(tmp_path, rand_weights):
    w64 = {k: v.astype(np.float64) for k, v in rand_weights.items()}
    net = fastlenet.Net(w64)
    net.save(tmp_path / "w.npz")
    assert_same_net(fastlenet.load(tmp_path / "w.npz"), fastlenet.Net(rand_weights))


# ---- immutability -------------------------------------------------------------------------------
def test_weights_returns_copies(net):
    x = images(9)
    before_logits, before_weights = net.logits(x), net.weights
    w = net.weights
    for v in w.values():
        assert v.dtype == np.float32 and v.flags.c_contiguous
        v.setflags(write=True)
        v[...] = 0.0
    w["c1.weight"] = None
    assert_same_weights(net.weights, before_weights)
    np.testing.assert_array_equal(net.logits(x), before_logits)
    assert net.weights["c3.weight"] is not net.weights["c3.weight"]


def test_meta_returns_a_copy(net):
    original = net.meta
    m = net.meta
    m["activation"] = "sigmoid"
    m.setdefault("classes", []).append("x")
    assert net.meta == original
    assert net.activation == original["activation"]


def test_net_copies_the_callers_arrays(rand_weights):
    net = fastlenet.Net(rand_weights)
    x = images(9)
    before = net.logits(x)
    for v in rand_weights.values():
        v[...] = 0.0
    np.testing.assert_array_equal(net.logits(x), before)
    assert np.abs(net.weights["output.weight"]).sum() > 0


def test_properties_are_read_only(net):
    for name in ("weights", "meta", "activation", "pool", "classes"):
        with pytest.raises(AttributeError):
            setattr(net, name, None)
