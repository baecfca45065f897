"""The bundled pretrained model: its metadata, its accuracy through every ISA, its agreement
with the reference, and the inputs a user feeds it (raw MNIST digits, PNGs loaded directly)."""
from pathlib import Path

import numpy as np
import pytest

import fastlenet
from fastlenet import images, reference

SAMPLE = Path(fastlenet.__file__).parent / "data" / "mnist_sample.npz"
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def sample():
    with np.load(SAMPLE, allow_pickle=False) as d:
        return d["images"], d["labels"].astype(np.int64)


def test_metadata_records_how_it_was_made():
    meta = fastlenet.pretrained().meta
    assert meta["activation"] == "tanh" and meta["pool"] == "avg"
    assert meta["input_size"] == 28 and meta["pad"] == 2
    assert meta["classes"] == [str(i) for i in range(10)]
    assert meta["test_accuracy"] >= 0.99
    assert meta["provenance"]["script"] == "tools/train_mnist.py"


@pytest.mark.parametrize("isa", ["scalar", "generic", "avx2", "avx512"])
def test_accuracy_on_the_bundled_sample(sample, isa):
    if isa not in fastlenet.available_isas():
        pytest.skip(f"{isa} not available on this CPU")
    x, y = sample
    net = fastlenet.pretrained()
    net.isa = isa
    assert (net.predict(x) == y).mean() >= 0.99


def test_matches_the_reference(sample):
    x = sample[0][:40]
    net = fastlenet.pretrained()
    ref = reference.logits(net, x)
    np.testing.assert_allclose(net.logits(x), ref, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(net.predict(x), ref.argmax(axis=1))


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
    prepared = images.to_model_input(images.read_image(tmp_path / "big.png"), size=28)
    assert net.predict(prepared)[0] == net.predict(x[:1])[0]


@pytest.mark.skipif(not MNIST.is_dir(), reason="../shared/data/mnist not present")
def test_accuracy_on_the_10000_mnist_test_digits():
    x = images.read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    y = images.read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    acc = (fastlenet.pretrained().predict(x) == y).mean()
    assert acc >= 0.99
    assert acc == pytest.approx(fastlenet.pretrained().meta["test_accuracy"], abs=1e-4)
