"""fastlenet.load on weights exported by real frameworks (tests/data/frameworks, made by
tools/fixtures/make_fixtures.py) reproduces each framework's own logits and F6 features, at every ISA,
for NCHW and NHWC input."""
from pathlib import Path

import numpy as np
import pytest

import fastlenet
from _helpers import TESTS  # noqa: E402

DATA = TESTS / "data" / "frameworks"
# .npz exports (the framework's own files, .safetensors / .keras / .h5: tests/weights/test_file_formats.py)
FIXTURES = sorted(p.name[: -len(".expect.npz")] for p in DATA.glob("*.expect.npz")
                  if (DATA / p.name.replace(".expect.npz", ".npz")).exists())


def _expect(name):
    with np.load(DATA / f"{name}.expect.npz", allow_pickle=False) as e:
        return {k: e[k] if e[k].dtype.kind == "f" else str(e[k]) for k in e.files}


def test_fixtures_present():
    assert len(FIXTURES) >= 16


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("isa", ["scalar", "generic", "avx2", "avx512"])
def test_matches_framework(name, isa):
    if isa not in fastlenet.available_isas():
        pytest.skip(f"{isa} not available on this CPU")
    e = _expect(name)
    net = fastlenet.load(DATA / f"{name}.npz", activation=e["activation"], pool=e["pool"])
    net.isa = isa
    np.testing.assert_allclose(net.logits(e["x"]), e["logits"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(net.features(e["x"]), e["features"], rtol=0, atol=1e-4)
    nhwc = np.ascontiguousarray(e["x"].transpose(0, 2, 3, 1))
    np.testing.assert_allclose(net.logits(nhwc), e["logits"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", [n for n in FIXTURES if (DATA / f"{n}.onnx").exists()])
def test_onnx_file_loads_directly(name):
    pytest.importorskip("onnx")
    e = _expect(name)
    net = fastlenet.load(DATA / f"{name}.onnx", activation=e["activation"], pool=e["pool"])
    np.testing.assert_allclose(net.logits(e["x"]), e["logits"], rtol=0, atol=1e-4)


def test_onnx_file_without_onnx_package_says_how_to_fix(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ImportError, match=r"fastlenet\[onnx\]"):
        fastlenet.load(DATA / "onnx_legacy.onnx")


def test_layout_override_is_honoured():
    e = _expect("torch_named_linear")
    # Reading a PyTorch Linear C5 with Keras's H,W,C flatten order gives different logits.
    good = fastlenet.load(DATA / "torch_named_linear.npz", layout="pytorch")
    np.testing.assert_allclose(good.logits(e["x"]), e["logits"], atol=1e-4)
    with pytest.raises(ValueError, match="HWIO kernels"):
        fastlenet.load(DATA / "torch_named_linear.npz", layout="keras")
