"""fastlenet.images: picture -> model input (MNIST's recipe), image/IDX/.npy readers, folder walk."""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest

import fastlenet
from fastlenet import prepare
from fastlenet.io import containers, decode
from fastlenet.io.containers import read_idx
from fastlenet.prepare import to_model_input

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def sample():
    with np.load(os.path.join(os.path.dirname(fastlenet.__file__), "data", "mnist_sample.npz"),
                 allow_pickle=False) as z:
        return z["images"], z["labels"]


@pytest.fixture(scope="module")
def net():
    return fastlenet.pretrained()


def write_idx(path, arr, gz=False, dtype_code=0x08):
    arr = np.asarray(arr)
    head = bytes([0, 0, dtype_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = head + arr.astype(containers.IDX_TYPES[dtype_code]).tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(data)
    return path


def big_dark_on_light(digit, scale=10, margin=40):
    """A sample digit scaled up (bilinear), inverted and set on a wider white page."""
    side = 28 * scale
    big = np.asarray(Image.fromarray(255 - digit).resize((side, side), Image.BILINEAR))
    return np.pad(big, ((margin, margin), (margin * 2, margin)), constant_values=255)


def centre_of_mass(img):
    w = img.astype(np.float64)
    ys, xs = np.indices(img.shape)
    return (w * ys).sum() / w.sum(), (w * xs).sum() / w.sum()


# ---- to_model_input -------------------------------------------------------------------------
def test_prepared_uint8_digits_pass_through_exactly(sample):
    x, _ = sample
    out = np.stack([to_model_input(im) for im in x[:100]])
    assert out.dtype == np.uint8 and out.shape == (100, 28, 28)
    np.testing.assert_array_equal(out, x[:100])


def test_dark_on_light_is_inverted_automatically(sample):
    x, _ = sample
    for im in x[:20]:
        np.testing.assert_array_equal(to_model_input(255 - im), im)
        np.testing.assert_array_equal(to_model_input(255 - im, invert="no"), 255 - im)
        np.testing.assert_array_equal(to_model_input(im, invert="yes"), 255 - im)
        np.testing.assert_array_equal(to_model_input(im, invert=False), im)


def test_dark_on_light_model_gets_dark_on_light(sample):
    im = sample[0][0]
    np.testing.assert_array_equal(to_model_input(im, foreground="dark-on-light"), 255 - im)
    np.testing.assert_array_equal(to_model_input(255 - im, foreground="dark-on-light"), 255 - im)
    padded = to_model_input(im, size=32, foreground="dark-on-light")
    assert padded.shape == (32, 32) and (padded[:2] == 255).all()


def test_size_28_32_pad_and_crop(sample):
    im = sample[0][0]
    p = to_model_input(im, size=32)
    assert p.shape == (32, 32)
    np.testing.assert_array_equal(p[2:30, 2:30], im)
    assert not p[:2].any() and not p[:, :2].any()
    np.testing.assert_array_equal(to_model_input(p, size=28), im)
    np.testing.assert_array_equal(to_model_input(p, size=32), p)


@pytest.mark.parametrize("kind", ["float32", "float64_255", "uint16", "rgb", "rgba_opaque", "hw1"])
def test_dtypes_and_channels_agree_with_uint8(sample, kind):
    im = sample[0][3]
    arr = {
        "float32": im.astype(np.float32) / 255,
        "float64_255": im.astype(np.float64),
        "uint16": im.astype(np.uint16) * 257,
        "rgb": np.repeat(im[..., None], 3, axis=2),
        "rgba_opaque": np.dstack([im, im, im, np.full_like(im, 255)]),
        "hw1": im[..., None],
    }[kind]
    np.testing.assert_array_equal(to_model_input(arr), im)


def test_transparent_background_is_white_paper():
    # A drawing app's export: black strokes, transparent everywhere else.
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[6:22, 12:16, 3] = 255  # opaque black bar
    out = to_model_input(rgba)
    assert out[10, 13] == 255 and out[0, 0] == 0  # inverted: bright ink on black


@pytest.mark.parametrize("shape", [(10, 10), (20, 20), (27, 29), (50, 70), (300, 200), (33, 33)])
@pytest.mark.parametrize("size", [28, 32])
def test_other_sizes_are_cropped_scaled_and_centred(shape, size):
    img = np.zeros(shape, np.float32)
    h, w = shape
    img[h // 4: 3 * h // 4, w // 3: w // 3 + max(2, w // 6)] = 1.0  # an off-centre stroke
    out = to_model_input(img, size=size)
    assert out.shape == (size, size) and out.dtype == np.uint8
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    assert rows[-1] - rows[0] + 1 <= 20 and cols[-1] - cols[0] + 1 <= 20
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 >= 19  # longest side fills the box
    cy, cx = centre_of_mass(out)
    assert abs(cy - (size - 1) / 2) <= 1 and abs(cx - (size - 1) / 2) <= 1
    assert out.max() >= 250


def test_blank_image_gives_blank_input():
    assert not to_model_input(np.full((40, 50), 255, np.uint8)).any()
    assert not to_model_input(np.zeros((40, 50), np.uint8)).any()


def test_large_dark_on_light_digits_are_classified(sample, net):
    x, y = sample
    idx = [i for i in range(40) if net.predict(x[i])[0] == y[i]][:30]
    batch = np.stack([to_model_input(big_dark_on_light(x[i])) for i in idx])
    assert (net.predict(batch) == y[idx]).mean() >= 0.95


def test_coloured_noisy_photo_is_classified(sample, net):
    x, y = sample
    rng = np.random.default_rng(7)
    ok = 0
    for i in range(10):
        ink = np.asarray(Image.fromarray(x[i]).resize((140, 140), Image.BILINEAR)) / 255.0
        ink = np.pad(ink, 30)
        paper = np.array([235, 225, 200], np.float64)  # beige
        pen = np.array([30, 40, 140], np.float64)      # blue ballpoint
        rgb = paper * (1 - ink[..., None]) + pen * ink[..., None]
        rgb += rng.normal(0, 6, rgb.shape)
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
        ok += net.predict(to_model_input(rgb))[0] == y[i]
    assert ok >= 9


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 3, 5)), "shape"),
    (np.zeros((5,)), "shape"),
    (np.zeros((0, 4)), "empty"),
    (np.array([[1 + 1j, 0], [0, 0]]), "dtype"),
    (np.array([[np.nan, 0], [0, 0]]), "NaN"),
])
def test_bad_arrays_are_value_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        to_model_input(bad)


def test_bad_options():
    with pytest.raises(ValueError, match="invert"):
        to_model_input(np.zeros((28, 28), np.uint8), invert="maybe")
    with pytest.raises(ValueError, match="foreground"):
        to_model_input(np.zeros((28, 28), np.uint8), foreground="white")
    with pytest.raises(ValueError, match="size"):
        to_model_input(np.zeros((28, 28), np.uint8), size=8)


def test_resize_matrix_preserves_mean():
    for n_in, n_out in [(100, 20), (20, 20), (7, 20), (1, 20), (21, 20)]:
        m = prepare.resize_matrix(n_in, n_out)
        assert m.shape == (n_out, n_in)
        np.testing.assert_allclose(m.sum(axis=1), 1, atol=1e-5)


# ---- read_image -----------------------------------------------------------------------------
def test_read_image_modes(tmp_path, sample):
    im = sample[0][0]
    Image.fromarray(im).save(tmp_path / "g.png")
    np.testing.assert_array_equal(decode.read_image(tmp_path / "g.png"), im)
    Image.fromarray(im.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    g16 = decode.read_image(tmp_path / "g16.png")
    assert g16.dtype == np.uint16 and g16.max() == 65535
    np.testing.assert_array_equal(to_model_input(g16), im)
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[2:5, 2:5] = (0, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    g = decode.read_image(tmp_path / "a.png")
    assert g[0, 0] == 255 and g[3, 3] == 0  # transparent -> white paper, opaque black ink
    pal = Image.fromarray(im).convert("P")
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert decode.read_image(tmp_path / "p.png").shape == (28, 28)


def test_read_image_errors(tmp_path, sample):
    Image.fromarray(sample[0][0]).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        decode.read_image(tmp_path / "cut.png")
    with pytest.raises(ValueError, match="not an image"):
        decode.read_image(tmp_path / "notes.txt")
    with pytest.raises(OSError):
        decode.read_image(tmp_path / "missing.png")


# ---- read_idx -------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, sample, gz):
    x, y = sample
    xi = read_idx(write_idx(tmp_path / "x.idx", x[:30], gz))
    yi = read_idx(write_idx(tmp_path / "y.idx", y[:30], gz))
    np.testing.assert_array_equal(xi, x[:30])
    np.testing.assert_array_equal(yi, y[:30])
    f = read_idx(write_idx(tmp_path / "f.idx", x[:2] / 255, gz, dtype_code=0x0D))
    assert f.dtype == np.float32 and f.dtype.isnative
    np.testing.assert_allclose(f, x[:2] / 255, rtol=1e-6)
    s = read_idx(write_idx(tmp_path / "s.idx", [[-3, 1000]], gz, dtype_code=0x0B))
    assert s.tolist() == [[-3, 1000]]


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_and_trailing(tmp_path, sample, gz):
    path = write_idx(tmp_path / "x.idx", sample[0][:5])
    raw = path.read_bytes()

    def put(data):
        with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
            f.write(data)
        return path

    with pytest.raises(ValueError, match="truncated"):
        read_idx(put(raw[:-10]))
    with pytest.raises(ValueError, match="trailing"):
        read_idx(put(raw + b"\0"))
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(put(raw[:9]))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(put(b"\x00\x00\x07\x03" + raw[4:]))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(put(b"\x89PNG\r\n\x1a\n"))


def test_read_idx_corrupt_gzip(tmp_path, sample):
    path = write_idx(tmp_path / "x.idx.gz", sample[0][:50], gz=True)
    raw = bytearray(path.read_bytes())
    (tmp_path / "cut.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "cut.gz")
    raw[len(raw) // 2] ^= 0xFF
    raw[len(raw) // 2 + 1] ^= 0xFF
    (tmp_path / "flip.gz").write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        read_idx(tmp_path / "flip.gz")


def test_read_idx_huge_header_refused(tmp_path):
    (tmp_path / "h.idx").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 2**31, 2**16, 2**16))
    with pytest.raises(ValueError, match="corrupt"):
        read_idx(tmp_path / "h.idx")
