"""0.1.0's module paths keep working for one release, with a DeprecationWarning, and a Net
pickled by 0.1.0 loads and computes the same logits."""
from __future__ import annotations

import importlib
import pickle
import sys

import numpy as np
import pytest

import fastlenet
from _helpers import TESTS

OLD = {
    "fastlenet.loader": ["load", "convert", "inspect", "save", "parse_meta", "check_meta",
                         "override_meta", "read_weights", "read_npz", "read_onnx", "Budget",
                         "check_declared_size", "CANONICAL_SHAPES", "FormatError",
                         "WeightsError", "MAX_WEIGHT_BYTES"],
    "fastlenet.formats": ["convert", "Conversion", "FormatError", "CANONICAL_SHAPES", "LAYOUTS",
                          "META_KEY", "onnx_arrays", "natural_key", "canonical_shapes",
                          "geometry", "MAX_CLASSES", "ACTIVATIONS", "POOLS"],
    "fastlenet.formats.safetensors": ["read", "looks_like_safetensors"],
    "fastlenet.formats.keras_files": ["read_keras", "read_h5", "is_keras_archive"],
    "fastlenet.sources": ["expand", "kind", "sniff", "count", "iter_idx", "open_npy",
                          "iter_shard", "iter_tar", "safe_name", "IMAGE_EXTENSIONS",
                          "MAX_FILE_BYTES"],
    "fastlenet.images": ["to_gray", "is_light_background", "to_model_input", "resize_matrix",
                         "read_image", "decode", "decode_many", "read_idx", "to_rgb_input",
                         "MAX_PIXELS", "FOREGROUNDS", "INVERT_CHOICES", "DIGIT_BOX"],
    "fastlenet.reference_preprocess": ["preprocess", "preprocess_one", "otsu", "to_unit"],
}


@pytest.mark.parametrize("name", sorted(OLD))
def test_old_module_paths_warn_and_hold_their_names(name):
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]  # import afresh, so that the warning fires here
    with pytest.warns(DeprecationWarning, match=name.replace(".", r"\.")):
        module = importlib.import_module(name)
    missing = [n for n in OLD[name] if not hasattr(module, n)]
    assert not missing, f"{name} lost {missing}"


def test_old_modules_as_attributes_of_the_package():
    sys.modules.pop("fastlenet.images", None)
    fastlenet.__dict__.pop("images", None)  # set by an earlier import of the submodule
    with pytest.warns(DeprecationWarning):
        assert fastlenet.images.read_idx is importlib.import_module(
            "fastlenet.io.containers").read_idx


def test_a_net_pickled_by_0_1_0_loads():
    blob = (TESTS / "data" / "pickles" / "net-0.1.0-mnist-threads2.pickle").read_bytes()
    net = pickle.loads(blob)
    assert isinstance(net, fastlenet.Net) and net.num_threads == 2
    with np.load(fastlenet.PRETRAINED_PATH.parent.parent / "data" / "mnist_sample.npz") as z:
        x = z["images"][:16]
    want = np.load(TESTS / "data" / "pickles" / "net-0.1.0-mnist-logits16.npy")
    # same weights, same ISA rules: 0.1.0 computed these at the best ISA of the machine that
    # made them; here at this machine's best, so the ISA tolerance applies, predictions exact
    np.testing.assert_allclose(net.logits(x), want, rtol=0, atol=1e-4)
    assert (net.predict(x) == want.argmax(axis=1)).all()
