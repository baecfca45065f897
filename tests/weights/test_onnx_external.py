"""ONNX models whose initializers live in an external data file (torch.onnx.export with
external_data=True, the dynamo exporter's default: model.onnx + model.onnx.data): read from files
beside the model only, every offset and length checked, a clear FormatError otherwise."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import fastlenet
from _helpers import TESTS

onnx = pytest.importorskip("onnx")
DATA = TESTS / "data" / "frameworks"


def _external(tmp_path, fixture="onnx_legacy", location="model.onnx.data", folder="m"):
    """The fixture saved with all tensors in one external file; -> (model path, ModelProto)."""
    d = tmp_path / folder
    d.mkdir(parents=True, exist_ok=True)
    (d / location).parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(DATA / f"{fixture}.onnx"))
    onnx.save_model(model, str(d / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location, size_threshold=0)
    return d / "model.onnx", onnx.load(str(d / "model.onnx"), load_external_data=False)


def _rewrite(path, model, **fields):
    """Sets external_data fields of the first external initializer and saves the graph only."""
    init = next(i for i in model.graph.initializer if i.external_data)
    for entry in init.external_data:
        if entry.key in fields:
            entry.value = fields.pop(entry.key)
    for key, value in fields.items():
        e = init.external_data.add()
        e.key, e.value = key, value
    path.write_bytes(model.SerializeToString())
    return init


@pytest.mark.parametrize("fixture", ["onnx_legacy", "onnx_dynamo"])
def test_external_data_loads_like_the_self_contained_model(tmp_path, fixture):
    path, model = _external(tmp_path, fixture)
    assert sum(bool(i.external_data) for i in model.graph.initializer) >= 10  # one shared file
    assert (path.parent / "model.onnx.data").stat().st_size > 200_000
    x = np.random.default_rng(0).random((8, 28, 28)).astype(np.float32)
    want = fastlenet.load(DATA / f"{fixture}.onnx")
    got = fastlenet.load(path)
    np.testing.assert_array_equal(got.logits(x), want.logits(x))
    assert got.meta["activation"] == want.meta["activation"]
    expect = np.load(DATA / f"{fixture}.expect.npz")
    ex = expect["x"]
    np.testing.assert_allclose(got.logits(ex), expect["logits"], rtol=0, atol=1e-4)


def test_a_data_file_in_a_subfolder_beside_the_model(tmp_path):
    path, _ = _external(tmp_path, location="weights/model.bin")
    assert (path.parent / "weights" / "model.bin").is_file()
    fastlenet.load(path)


HOSTILE = {
    "absolute path": ({"location": "/etc/passwd"}, "no absolute path"),
    "parent folder": ({"location": "../model.onnx.data"}, r"no '\.\.'"),
    "hidden parent": ({"location": "sub/../../x.data"}, r"no '\.\.'"),
    "backslash parent": ({"location": "..\\x.data"}, r"no '\.\.'"),
    "NUL byte": ({"location": "model.onnx.data\0x"}, "expected a file name"),
    "missing file": ({"location": "nope.data"}, "nope.data"),
    "offset past the end": ({"offset": str(10 ** 9)}, "past the end"),
    "negative offset": ({"offset": "-4"}, "non-negative integer"),
    "fractional length": ({"length": "1.5"}, "non-negative integer"),
    "huge number": ({"offset": "9" * 40}, "non-negative integer"),
    "length not the tensor's": ({"length": "4"}, "expected .* bytes"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_external_data(tmp_path, case):
    fields, message = HOSTILE[case]
    path, model = _external(tmp_path)
    _rewrite(path, model, **fields)
    with pytest.raises(fastlenet.FormatError, match=message) as e:
        fastlenet.load(path)
    assert str(path) in str(e.value) and "external data" in str(e.value)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    path, model = _external(tmp_path)
    outside = tmp_path / "elsewhere.data"
    os.replace(path.parent / "model.onnx.data", outside)
    os.symlink(outside, path.parent / "model.onnx.data")
    with pytest.raises(fastlenet.FormatError, match="leads out of the model's folder"):
        fastlenet.load(path)


def test_a_folder_or_a_fifo_as_data_file_never_hangs(tmp_path):
    path, model = _external(tmp_path)
    os.remove(path.parent / "model.onnx.data")
    (path.parent / "model.onnx.data").mkdir()
    with pytest.raises(fastlenet.FormatError, match="model.onnx.data"):
        fastlenet.load(path)
    if hasattr(os, "mkfifo"):
        os.rmdir(path.parent / "model.onnx.data")
        os.mkfifo(path.parent / "model.onnx.data")
        with pytest.raises(fastlenet.FormatError, match="not a regular file"):
            fastlenet.load(path)


def test_a_truncated_data_file(tmp_path):
    path, _ = _external(tmp_path)
    data = path.parent / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:-100])
    with pytest.raises(fastlenet.FormatError, match="past the end"):
        fastlenet.load(path)


def test_a_tensor_declared_beyond_the_budget_is_refused_before_reading(tmp_path):
    path, model = _external(tmp_path)
    init = next(i for i in model.graph.initializer if i.external_data)
    del init.dims[:]
    init.dims.extend([1 << 22, 16])  # 256 MiB of float32, declared
    path.write_bytes(model.SerializeToString())
    with pytest.raises(fastlenet.FormatError, match="far larger than any LeNet-5 weight"):
        fastlenet.load(path)


def test_a_real_torch_export_with_external_data(tmp_path):
    """torch 2.13 torch.onnx.export(dynamo=True, external_data=True) (tools/fixtures/
    make_onnx_external_fixture.py): weights in model.onnx.data, small biases inline; loads to
    torch's own logits, also from a copy elsewhere and another working directory (the location
    is relative to the model)."""
    export = DATA / "onnx_external"
    with np.load(export / "expect.npz", allow_pickle=False) as f:
        x, logits = f["x"], f["logits"]
    model = onnx.load(str(export / "model.onnx"), load_external_data=False)
    assert any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer)
    copy = shutil.copytree(export, tmp_path / "copy")
    for folder in (export, copy):
        net = fastlenet.load(folder / "model.onnx")
        assert (net.meta["activation"], net.meta["pool"]) == ("tanh", "avg")
        np.testing.assert_allclose(net.logits(x), logits, rtol=0, atol=1e-4)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        fastlenet.load(os.path.join("copy", "model.onnx"))
    finally:
        os.chdir(cwd)
    (copy / "model.onnx.data").unlink()
    with pytest.raises(fastlenet.FormatError, match="model.onnx.data"):
        fastlenet.load(copy / "model.onnx")
