"""Tests for fastlenet.formats: weights exported by real frameworks -> canonical LeNet-5.

Runs with numpy + scipy + pytest only.  The fixtures in tests/data/frameworks/
were made by tools/fixtures/make_fixtures.py with the real PyTorch / Keras / Flax / ONNX.
"""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from fastlenet.names import natural_key
from fastlenet.weights.checks import FormatError
from fastlenet.weights.layout import CANONICAL_SHAPES, Conversion, convert
from fastlenet.weights.onnx import onnx_arrays

import _fwref
from _helpers import TESTS  # noqa: E402

DATA = TESTS / "data" / "frameworks"
FIXTURES = sorted(p.name[: -len(".npz")] for p in DATA.glob("*.npz") if not p.name.endswith(".expect.npz"))
TOL = 1e-4


def load(name):
    with np.load(DATA / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def expect(name):
    with np.load(DATA / f"{name}.expect.npz", allow_pickle=False) as z:
        return {k: (str(z[k]) if z[k].dtype.kind == "U" else z[k]) for k in z.files}


def canonical(seed=0):
    rng = np.random.default_rng(seed)
    return {k: (0.2 * rng.standard_normal(s)).astype(np.float32) for k, s in CANONICAL_SHAPES.items()}


def torch_named(w):
    """Canonical weights renamed as a PyTorch model with conv1 conv2 conv3 fc1 fc2."""
    names = dict(c1="conv1", c3="conv2", c5="conv3", f6="fc1", output="fc2")
    return {f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in w.items()}


# ----------------------------------------------------------------------------- fixtures

def test_fixture_set_is_complete():
    must = {"torch_sequential", "torch_nested_relu_max", "torch_named_conv", "torch_named_linear",
            "torch_dataparallel", "torch_named_sigmoid", "keras_path_conv", "keras_path_dense",
            "keras_positional", "keras_tf2_names", "flax_conv", "flax_dense", "onnx_dynamo", "onnx_legacy"}
    assert must <= set(FIXTURES)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_matches_framework(name):
    arrays = load(name)
    exp = expect(name)
    conv = convert(arrays, source=f"{name}.npz")
    assert isinstance(conv, Conversion)
    assert conv.framework == exp["framework"]
    assert conv.layout == exp["layout"]
    assert list(conv.weights) == list(CANONICAL_SHAPES)
    for k, s in CANONICAL_SHAPES.items():
        w = conv.weights[k]
        assert w.shape == s and w.dtype == np.float32 and w.flags.c_contiguous, k
    assert len(conv.mapping) == 10
    assert {m[0] for m in conv.mapping} | set(conv.ignored) == set(arrays)

    logits, feats = _fwref.forward(conv.weights, exp["x"], exp["activation"], exp["pool"], return_features=True)
    assert exp["logits"].shape == (8, 10) and exp["features"].shape == (8, 84)
    # the outputs are not degenerate (a wrong reorder would then go unnoticed)
    assert np.std(exp["logits"]) > 1e-2 and np.std(exp["features"]) > 1e-2
    np.testing.assert_allclose(logits, exp["logits"], rtol=0, atol=TOL)
    np.testing.assert_allclose(feats, exp["features"], rtol=0, atol=TOL)


@pytest.mark.parametrize("name", ["torch_named_linear", "keras_path_dense", "flax_dense", "keras_positional"])
def test_c5_flatten_order_matters(name):
    """Reading a dense C5 in the other flatten order must give different outputs."""
    arrays = load(name)
    exp = expect(name)
    conv = convert(arrays)
    w = dict(conv.weights)
    c5 = w["c5.weight"]
    # pretend the flatten order was the other one
    if conv.framework in ("keras", "flax"):
        w["c5.weight"] = c5.transpose(0, 2, 3, 1).reshape(120, 400).reshape(120, 16, 5, 5)
    else:
        w["c5.weight"] = c5.reshape(120, 400).reshape(120, 5, 5, 16).transpose(0, 3, 1, 2)
    logits = _fwref.forward(w, exp["x"], exp["activation"], exp["pool"])
    assert np.abs(logits - exp["logits"]).max() > 1e-2
    notes = [m[3] for m in conv.mapping if m[1] == "c5.weight"]
    assert "C,H,W" in notes[0] or "H,W,C" in notes[0]


def test_npzfile_can_be_passed_directly():
    with np.load(DATA / "keras_tf2_names.npz", allow_pickle=False) as z:
        conv = convert(z, source="keras_tf2_names.npz")
    assert conv.layout == "keras-tf2"
    ref = convert(load("keras_tf2_names")).weights
    for k in ref:
        np.testing.assert_array_equal(conv.weights[k], ref[k])


def test_forward_accepts_nchw_and_nhwc():
    exp = expect("torch_sequential")
    conv = convert(load("torch_sequential"))
    a = _fwref.forward(conv.weights, exp["x"])
    b = _fwref.forward(conv.weights, exp["x"].transpose(0, 2, 3, 1))
    c = _fwref.forward(conv.weights, exp["x"][0, 0])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:1], c)


def test_reference_conv_is_cross_correlation():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 7))
    w = rng.standard_normal((3, 2, 5, 5))
    b = rng.standard_normal(3)
    got = _fwref.conv_valid(x, w, b)
    want = np.zeros((3, 3, 3))
    for o in range(3):
        for i in range(3):
            for j in range(3):
                want[o, i, j] = np.sum(x[:, i:i + 5, j:j + 5] * w[o]) + b[o]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_mapping_notes_and_names():
    conv = convert(load("torch_named_linear"))
    m = {dst: (src, shape, note) for src, dst, shape, note in conv.mapping}
    assert m["c5.weight"][0] == "fc1.weight" and m["c5.weight"][1] == (120, 400)
    assert "C5 Linear(400,120) -> conv" in m["c5.weight"][2]
    assert m["f6.weight"][0] == "fc2.weight"
    assert m["output.weight"][0] == "fc3.weight"

    conv = convert(load("torch_named_conv"))
    m = {dst: src for src, dst, _, _ in conv.mapping}
    assert m["c5.weight"] == "conv3.weight" and m["f6.weight"] == "fc1.weight"  # fc1 is F6 here

    conv = convert(load("keras_path_conv"))
    m = {dst: (src, note) for src, dst, _, note in conv.mapping}
    assert "transposed HWIO->OIHW" in m["c1.weight"][1]
    # counters past 9: conv2d_9 is C1, conv2d_10 is C3, conv2d_11 is C5 (string sort would disagree)
    assert re.search(r"conv2d_9/kernel$", m["c1.weight"][0])
    assert re.search(r"conv2d_10/kernel$", m["c3.weight"][0])
    assert re.search(r"conv2d_11/kernel$", m["c5.weight"][0])

    conv = convert(load("flax_dense"))
    m = {dst: src for src, dst, _, _ in conv.mapping}
    assert m["c5.weight"] == "params/Dense_0/kernel" and m["f6.weight"] == "params/Dense_1/kernel"


def test_natural_sort():
    names = ["arr_10", "arr_2", "arr_1", "conv2d_10/kernel", "conv2d_9/kernel"]
    assert sorted(names, key=natural_key) == ["arr_1", "arr_2", "arr_10", "conv2d_9/kernel", "conv2d_10/kernel"]


def test_positional_order_does_not_matter():
    arrays = load("keras_positional")
    ref = convert(arrays).weights
    # shuffle the positions and add arr_10.. names: slots come from shapes
    vals = [arrays[k] for k in sorted(arrays, key=natural_key)]
    perm = [3, 9, 0, 7, 1, 8, 2, 5, 6, 4]
    shuffled = {f"arr_{i + 3}": vals[j] for i, j in enumerate(perm)}
    conv = convert(shuffled)
    assert conv.layout == "keras-positional"
    for k in ref:
        np.testing.assert_array_equal(conv.weights[k], ref[k])


# ----------------------------------------------------------------------------- explicit layouts

def test_explicit_layouts():
    for name, layout in [("torch_sequential", "pytorch"), ("torch_dataparallel", "pytorch"),
                         ("keras_path_dense", "keras"), ("keras_tf2_names", "keras"),
                         ("keras_positional", "keras"), ("flax_dense", "flax"), ("flax_conv", "keras"),
                         ("onnx_dynamo", "onnx"), ("onnx_legacy", "onnx"),
                         ("torch_named_linear", "positional"), ("keras_path_dense", "positional")]:
        auto = convert(load(name)).weights
        conv = convert(load(name), layout=layout)
        for k in auto:
            np.testing.assert_array_equal(conv.weights[k], auto[k], err_msg=f"{name} {layout} {k}")


def test_explicit_family_rejects_other_family():
    with pytest.raises(FormatError, match=r"keras_path_conv\.npz: .*conv2d_9/kernel' has shape \(5, 5, 1, 6\)"):
        convert(load("keras_path_conv"), layout="pytorch", source="keras_path_conv.npz")
    with pytest.raises(FormatError, match=r"'conv1\.weight' has shape \(6, 1, 5, 5\); expected C1 kernel"):
        convert(load("torch_named_conv"), layout="keras")


def test_explicit_onnx_flatten_is_chw_even_for_in_out_matrices():
    conv = convert(load("onnx_legacy"), layout="onnx")
    m = {dst: (src, shape) for src, dst, shape, _ in conv.mapping}
    assert m["c5.weight"][0].startswith("onnx::MatMul_") and m["c5.weight"][1] == (400, 120)


def test_canonical_layout_and_meta():
    w = canonical()
    meta = {"activation": "relu", "pool": "max", "mean": 0.1307, "std": 0.3081,
            "classes": list("0123456789"), "source": "test"}
    arrays = dict(w, fastlenet_meta=np.array(json.dumps(meta)))
    conv = convert(arrays)
    assert conv.framework == "canonical" and conv.layout == "canonical"
    assert conv.meta == meta
    for k in w:
        np.testing.assert_array_equal(conv.weights[k], w[k])
        assert not np.shares_memory(conv.weights[k], w[k])  # never aliases the input
    conv = convert(arrays, layout="canonical")
    assert conv.meta == meta
    # meta survives an npz round trip
    conv = convert(dict(torch_named(w), fastlenet_meta=np.array(json.dumps(meta))))
    assert conv.meta == meta and conv.framework == "pytorch"


def test_canonical_layout_is_strict_about_names_and_shapes():
    w = canonical()
    w["c3.weight"] = w["c3.weight"].transpose(2, 3, 1, 0)
    with pytest.raises(FormatError, match=re.escape("key 'c3.weight' has shape (5, 5, 6, 16); expected (16, 6, 5, 5)")):
        convert(w, layout="canonical")
    with pytest.raises(FormatError, match=r"missing 'c1\.weight'"):
        convert(torch_named(canonical()), layout="canonical")


def test_float64_is_cast():
    w = {k: v.astype(np.float64) for k, v in canonical().items()}
    conv = convert(torch_named(w))
    assert all(v.dtype == np.float32 for v in conv.weights.values())
    assert all("cast float64->float32" in m[3] for m in conv.mapping)


def test_unknown_layout():
    with pytest.raises(FormatError, match="unknown layout 'tensorflow'"):
        convert(canonical(), layout="tensorflow")


# ----------------------------------------------------------------------------- errors

def test_missing_layer_names_layer_and_present_shapes():
    arrays = load("torch_named_conv")
    del arrays["conv2.weight"]
    with pytest.raises(FormatError) as ei:
        convert(arrays, source="weights.npz")
    msg = str(ei.value)
    assert msg.startswith("weights.npz: ")
    assert "missing C3 kernel (16, 6, 5, 5) (OIHW) or (5, 5, 6, 16) (HWIO)" in msg
    assert "'conv1.weight' (6, 1, 5, 5)" in msg and "'conv2.bias' (16,)" in msg  # what was present

    arrays = load("keras_path_dense")
    del arrays[[k for k in arrays if k.endswith("dense_10/bias")][0]]
    with pytest.raises(FormatError, match=re.escape("missing output bias (10,)")):
        convert(arrays)


def test_impossible_shape_message():
    arrays = torch_named(canonical())
    arrays["conv2.weight"] = np.zeros((16, 5, 5, 5), np.float32)
    with pytest.raises(FormatError, match=re.escape(
            "weights.npz: key 'conv2.weight' has shape (16, 5, 5, 5); "
            "expected C3 kernel (16, 6, 5, 5) (OIHW) or (5, 5, 6, 16) (HWIO)")):
        convert(arrays, source="weights.npz")


def test_kernel_in_no_known_layout():
    arrays = torch_named(canonical())
    arrays["conv1.weight"] = arrays["conv1.weight"].transpose(0, 2, 3, 1).copy()  # OHWI
    with pytest.raises(FormatError, match=re.escape(
            "key 'conv1.weight' has shape (6, 5, 5, 1); expected C1 kernel (6, 1, 5, 5) (OIHW) or (5, 5, 1, 6) (HWIO)")):
        convert(arrays)
    arrays = torch_named(canonical())
    arrays["fc1.weight"] = np.zeros((84, 100), np.float32)
    with pytest.raises(FormatError, match=re.escape(
            "key 'fc1.weight' has shape (84, 100); expected F6 weight (84, 120) (out,in) or (120, 84) (in,out)")):
        convert(arrays)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(bad):
    arrays = load("torch_named_linear")
    arrays["fc2.weight"] = arrays["fc2.weight"].copy()
    arrays["fc2.weight"][3, 4] = bad
    with pytest.raises(FormatError, match=r"w\.npz: key 'fc2\.weight' \(shape \(84, 120\)\) contains non-finite"):
        convert(arrays, source="w.npz")


def test_object_arrays_are_rejected(tmp_path):
    path = tmp_path / "obj.npz"
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = np.zeros(3), "x"
    np.savez(path, **torch_named(canonical()), evil=obj)
    with np.load(path, allow_pickle=False) as z:
        with pytest.raises(ValueError):
            z["evil"]
    # the opened NpzFile itself can be passed: the refusal becomes a FormatError naming the key
    with np.load(path, allow_pickle=False) as z:
        with pytest.raises(FormatError, match=r"obj\.npz: key 'evil' cannot be read without unpickling"):
            convert(z, strict=False, source="obj.npz")
    arrays = dict(torch_named(canonical()), evil=obj)
    with pytest.raises(FormatError, match=r"key 'evil' is an object array"):
        convert(arrays, strict=False)
    arrays = torch_named(canonical())
    arrays["conv1.weight"] = arrays["conv1.weight"].astype(object)
    with pytest.raises(FormatError, match=r"key 'conv1\.weight' is an object array"):
        convert(arrays)


def test_non_float_weights():
    arrays = torch_named(canonical())
    arrays["conv1.weight"] = (arrays["conv1.weight"] * 100).astype(np.int32)
    with pytest.raises(FormatError, match=re.escape("key 'conv1.weight' has dtype int32 (shape (6, 1, 5, 5)); "
                                                    "weights must be floating point")):
        convert(arrays)
    arrays = torch_named(canonical())
    arrays["fc2.bias"] = np.array(["a"] * 10)
    with pytest.raises(FormatError, match="key 'fc2.bias' has dtype <U1"):
        convert(arrays)


def test_extra_array_strict_and_lenient():
    arrays = dict(torch_named(canonical()), **{"bn1.running_mean": np.zeros(6, np.float32),
                                             "head.weight": np.zeros((3, 7), np.float32),
                                             "bn1.num_batches_tracked": np.array(5)})
    with pytest.raises(FormatError) as ei:
        convert(arrays, source="x.npz")
    msg = str(ei.value)
    assert "'bn1.running_mean' (6,)" in msg and "'head.weight' (3, 7)" in msg
    assert "'bn1.num_batches_tracked'" in msg and "strict=False" in msg
    conv = convert(arrays, strict=False)
    assert conv.ignored == ["bn1.num_batches_tracked", "bn1.running_mean", "head.weight"]
    # the running mean (6,) did not steal C1's bias: the bias paired by prefix/leaf wins
    np.testing.assert_array_equal(conv.weights["c1.bias"], canonical()["c1.bias"])


def test_ambiguity_is_an_error_even_lenient():
    arrays = torch_named(canonical())
    arrays["conv1b.weight"] = arrays["conv1.weight"] + 1
    for strict in (True, False):
        with pytest.raises(FormatError, match=re.escape(
                "ambiguous: 2 arrays fit C1 kernel (6, 1, 5, 5) (OIHW) or (5, 5, 1, 6) (HWIO): "
                "'conv1.weight' (6, 1, 5, 5), 'conv1b.weight' (6, 1, 5, 5)")):
            convert(arrays, strict=strict)
    # C5 present both as conv and as dense
    arrays = torch_named(canonical())
    arrays["fc0.weight"] = np.zeros((120, 400), np.float32)
    with pytest.raises(FormatError, match=r"ambiguous: 2 arrays fit C5 kernel.*'conv3\.weight' \(120, 16, 5, 5\), "
                                          r"'fc0\.weight' \(120, 400\)"):
        convert(arrays, strict=False)
    # positional: names cannot decide at all
    vals = [v for v in canonical().values()] + [canonical(1)["f6.bias"]]
    with pytest.raises(FormatError, match=r"ambiguous: 2 arrays fit F6 bias \(84,\): 'arr_7' \(84,\), 'arr_10' \(84,\)"):
        convert({f"arr_{i}": v for i, v in enumerate(vals)}, strict=False)


def test_mixed_kernel_layouts_positional():
    w = canonical()
    vals = list(w.values())
    vals[0] = w["c1.weight"].transpose(2, 3, 1, 0)  # HWIO while the others are OIHW
    with pytest.raises(FormatError, match="mix OIHW and HWIO"):
        convert({f"arr_{i}": v for i, v in enumerate(vals)})


@pytest.mark.parametrize("text, pattern", [
    ("{not json", r"key 'fastlenet_meta' is not valid JSON"),
    ("[1, 2]", r"key 'fastlenet_meta' must hold a JSON object"),
    ('{"activation": "gelu"}', r"activation must be one of .*; found 'gelu'"),
    ('{"pool": "median"}', r"pool must be one of avg, max; found 'median'"),
])
def test_malformed_meta(text, pattern):
    arrays = dict(canonical(), fastlenet_meta=np.array(text))
    with pytest.raises(FormatError, match=r"^m\.npz: .*" + pattern):
        convert(arrays, source="m.npz")


def test_meta_as_bytes_and_uint8():
    meta = {"activation": "sigmoid"}
    for v in (np.array(json.dumps(meta).encode()), np.frombuffer(json.dumps(meta).encode(), np.uint8)):
        assert convert(dict(canonical(), fastlenet_meta=v)).meta == meta


def test_onnx_integer_constants_ignored_only_for_onnx():
    conv = convert(load("onnx_dynamo"))
    assert conv.framework == "onnx" and conv.ignored == ["val_3"]
    # an int array in a keras export is not a shape constant: strict -> error
    arrays = dict(load("keras_path_conv"), **{"sequential/seed_generator/state": np.zeros(2, np.uint32)})
    with pytest.raises(FormatError, match=r"extra array 'sequential/seed_generator/state' \(dtype uint32, shape \(2,\)\)"):
        convert(arrays)
    assert convert(arrays, strict=False).ignored == ["sequential/seed_generator/state"]


def test_error_is_value_error():
    assert issubclass(FormatError, ValueError)


# ----------------------------------------------------------------------------- ONNX files

@pytest.mark.parametrize("name", ["onnx_dynamo", "onnx_legacy"])
def test_onnx_file_direct(name):
    pytest.importorskip("onnx")
    arrays = onnx_arrays(DATA / f"{name}.onnx")
    kernels = [k for k, v in arrays.items() if v.ndim >= 2]
    # graph (node) order: the C1 kernel is used first, the output matrix last
    assert arrays[kernels[0]].shape == (6, 1, 5, 5)
    assert arrays[kernels[-1]].shape in ((10, 84), (84, 10))
    conv = convert(arrays, source=f"{name}.onnx")
    ref = convert(load(name)).weights
    for k in ref:
        np.testing.assert_array_equal(conv.weights[k], ref[k])
    exp = expect(name)
    logits = _fwref.forward(conv.weights, exp["x"], exp["activation"], exp["pool"])
    np.testing.assert_allclose(logits, exp["logits"], rtol=0, atol=TOL)


def test_onnx_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=re.escape("pip install fastlenet[onnx]")):
        onnx_arrays(DATA / "onnx_dynamo.onnx")
