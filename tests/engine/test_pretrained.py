"""The bundled pretrained models: names, metadata, accuracy through every ISA, agreement with the
reference, the inputs a user feeds them (raw MNIST digits, PNGs loaded directly), and the default
model's accuracy on printed digits read from image files (tests/data/printed_sample, fonts that
training never saw) and on all 10,000 MNIST test digits when ../shared is present."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastlenet
from fastlenet import prepare, reference
from fastlenet.io import containers, decode
from _helpers import TESTS, ROOT  # noqa: E402

SAMPLE = Path(fastlenet.__file__).parent / "data" / "mnist_sample.npz"
PRINTED = TESTS / "data" / "printed_sample"
MNIST = ROOT.parent / "shared" / "data" / "mnist"
NAMES = ("digits", "mnist")


@pytest.fixture(scope="module")
def sample():
    with np.load(SAMPLE, allow_pickle=False) as d:
        return d["images"], d["labels"].astype(np.int64)


@pytest.fixture(scope="module")
def mnist_test():
    if not MNIST.is_dir():
        pytest.skip("../shared/data/mnist not present")
    x = containers.read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    y = containers.read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    return x, y


def _printed_files():
    files = sorted(p for p in PRINTED.rglob("*.png"))
    return [str(p) for p in files], np.array([int(p.parent.name) for p in files])


# ---- names and metadata -----------------------------------------------------------------------
def test_default_is_the_digits_model():
    net = fastlenet.pretrained()
    assert net.meta["name"] == "digits"
    np.testing.assert_array_equal(net.weights["c1.weight"],
                                  fastlenet.pretrained("digits").weights["c1.weight"])
    assert not np.array_equal(net.weights["c1.weight"],
                              fastlenet.pretrained("mnist").weights["c1.weight"])


@pytest.mark.parametrize("bad", ["MNIST", "lenet5_mnist.npz", "", None, 0, "../pretrained"])
def test_unknown_name_is_refused_with_the_choices(bad):
    with pytest.raises(ValueError, match="pretrained: name must be one of 'digits', 'mnist'"):
        fastlenet.pretrained(bad)


def test_kwargs_reach_the_net():
    assert fastlenet.pretrained("mnist", num_threads=1).num_threads == 1


@pytest.mark.parametrize("name", NAMES)
def test_metadata_records_how_it_was_made(name):
    meta = fastlenet.pretrained(name).meta
    assert meta["activation"] == "tanh" and meta["pool"] == "avg"
    assert meta["input_size"] == 28 and meta["pad"] == 2
    assert meta["foreground"] == "light-on-dark"
    assert meta["classes"] == [str(i) for i in range(10)]
    assert meta["test_accuracy"] >= 0.992
    script = {"digits": "train_printed.py", "mnist": "train_mnist.py"}[name]
    # the path at training time; the recipe now lives in tools/train/
    assert meta["provenance"]["script"].rsplit("/", 1)[-1] == script
    assert (ROOT / "tools" / "train" / script).is_file()
    if name == "digits":
        assert "MNIST" in meta["trained_on"] and "font" in meta["trained_on"]
        # the families it saw, none of the test families the sample and the card's test use
        seen = set(meta["provenance"]["font_families_train"])
        assert len(seen) >= 40
        assert not seen & {"DejaVu Sans", "Lato", "Go", "JetBrains Mono", "EB Garamond",
                           "Cantarell", "Charis SIL", "Courier Prime"}
        assert meta["validation"]["mnist_val (arrays)"] >= 0.99


# ---- accuracy ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("isa", ["scalar", "generic", "avx2", "avx512"])
def test_accuracy_on_the_bundled_sample(sample, name, isa):
    if isa not in fastlenet.available_isas():
        pytest.skip(f"{isa} not available on this CPU")
    x, y = sample
    net = fastlenet.pretrained(name)
    net.isa = isa
    assert (net.predict(x) == y).mean() >= 0.99


@pytest.mark.parametrize("name", NAMES)
def test_matches_the_reference(sample, name):
    x = sample[0][:40]
    net = fastlenet.pretrained(name)
    ref = reference.logits(net, x)
    np.testing.assert_allclose(net.logits(x), ref, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(net.predict(x), ref.argmax(axis=1))


def test_printed_digits_from_image_files():
    """240 PNG files of printed digits in 24 faces of 8 families the model never saw, under the
    12 conditions of tools/train/render_printed_digits.py (noise, blur, rotation, JPEG, gray and dark
    paper, tiny, 28 and 32 px canvases, ...), through the file pipeline as `predict` reads
    them."""
    files, y = _printed_files()
    assert len(files) == 240 and sorted(set(y.tolist())) == list(range(10))
    preds = list(fastlenet.predict_files(files, fastlenet.pretrained(), workers=0))
    assert [p.source for p in preds] == files
    assert all(p.error is None for p in preds)
    acc = (np.array([p.label for p in preds]) == y).mean()
    assert acc >= 0.97, f"printed sample: {acc:.2%}"


def test_eval_command_on_the_printed_sample():
    """`fastlenet eval` reads the labels from the class subfolders; the default model is used."""
    r = subprocess.run([sys.executable, "-m", "fastlenet", "eval", str(PRINTED), "--format",
                        "json"], capture_output=True, text=True, cwd=str(TESTS))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["images"] == 240 and out["failed"] == 0
    assert out["accuracy"] >= 0.97


def test_mnist_test_digits_as_image_files_read_alike(sample, tmp_path):
    """A handwritten digit saved as a PNG (dark on light, enlarged) goes through the pipeline's
    preprocessing, not the pass-through, and still reads right."""
    Image = pytest.importorskip("PIL.Image")
    x, y = sample
    paths = []
    for i in range(100):
        p = tmp_path / f"{i:03d}.png"
        Image.fromarray(255 - x[i]).resize((84, 84), Image.BILINEAR).save(p)
        paths.append(str(p))
    preds = list(fastlenet.predict_files(paths, fastlenet.pretrained(), workers=0))
    acc = (np.array([p.label for p in preds]) == y[:100]).mean()
    assert acc >= 0.97


def test_png_loaded_directly(tmp_path, sample):
    Image = pytest.importorskip("PIL.Image")
    x, _ = sample
    net = fastlenet.pretrained()
    for i in range(10):
        Image.fromarray(x[i]).save(tmp_path / f"{i}.png")
    loaded = np.stack([np.asarray(Image.open(tmp_path / f"{i}.png")) for i in range(10)])
    np.testing.assert_array_equal(net.predict(loaded), net.predict(x[:10]))
    # A colour, dark-on-light, larger drawing goes through fastlenet.images first.
    big = np.kron(255 - x[0], np.ones((5, 5), np.uint8))
    Image.fromarray(np.stack([big] * 3, axis=-1)).save(tmp_path / "big.png")
    prepared = prepare.to_model_input(decode.read_image(tmp_path / "big.png"), size=28)
    assert net.predict(prepared)[0] == net.predict(x[:1])[0]


@pytest.mark.parametrize("name", NAMES)
def test_accuracy_on_the_10000_mnist_test_digits(mnist_test, name):
    """All 10,000 MNIST test digits (IDX arrays, taken as model inputs): at least 99.2% for both,
    and exactly the figure each file's metadata records (the MNIST model: 99.20%)."""
    x, y = mnist_test
    net = fastlenet.pretrained(name)
    acc = (net.predict(x) == y).mean()
    assert acc >= 0.992
    assert acc == pytest.approx(net.meta["test_accuracy"], abs=1e-4)
    if name == "mnist":
        assert round(acc, 4) == 0.9920
