"""fastlenet.read_fields (issue 18) over files: folders in natural order, the process and
thread pools, error rows that let the rest go on, shards, IDX and .npy (each image one field),
the pixel cap, and hostile inputs (truncated, empty, decompression bombs, extreme shapes)."""
from __future__ import annotations

import gzip
import io
import math
import os
import struct
import tarfile

import _fields as F
import numpy as np
import pytest
from PIL import Image

from _helpers import idx_bytes, png_bytes
import fastlenet
from fastlenet import fields as FL
from fastlenet.pipeline.fields import read_field_batches, read_fields

N = 24




def _same_rows(a, b, tol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.source, x.member, x.index, x.text, x.error) == \
            (y.source, y.member, y.index, y.text, y.error)
        assert [d.box for d in x.digits] == [d.box for d in y.digits]
        if x.error is None:
            assert abs(x.confidence - y.confidence) <= tol
        else:
            assert math.isnan(x.confidence) and math.isnan(y.confidence)


@pytest.fixture(scope="module")
def samples():
    return F.make_fields("handwritten_spaced", N, F.mnist_train_digits(),
                         np.random.default_rng(21))


@pytest.fixture(scope="module")
def fnet():
    return FL.check_net(None)


@pytest.fixture(scope="module")
def direct(samples, fnet):
    """The in-memory reading of each sample: what every file route must give."""
    return FL.read_arrays([s.image for s in samples], fnet)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, samples):
    """The samples as f1.png ... f24.png (natural order differs from sorted), in two
    subfolders, plus a truncated PNG and a text file named .png."""
    root = tmp_path_factory.mktemp("field_pngs")
    names = []
    for i, s in enumerate(samples):
        sub = root / ("a" if i < N // 2 else "b")
        sub.mkdir(exist_ok=True)
        p = sub / f"f{i + 1}.png"
        p.write_bytes(png_bytes(s.image))
        names.append(str(p))
    return root, names


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory, samples):
    root = tmp_path_factory.mktemp("field_bad")
    good = png_bytes(samples[0].image)
    (root / "a_good.png").write_bytes(good)
    (root / "b_truncated.png").write_bytes(good[: len(good) // 2])
    (root / "c_empty.png").write_bytes(b"")
    (root / "d_text.png").write_bytes(b"hello, not an image")
    (root / "e_good.png").write_bytes(png_bytes(samples[1].image))
    (root / "f_bomb.png").write_bytes(_bomb_png())
    return root


def _bomb_png() -> bytes:
    """A PNG whose header says 50,000 x 50,000 (2.5 gigapixels) in a few hundred bytes."""
    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    # rewrite the IHDR's width/height (and its CRC) to 50,000 x 50,000
    import zlib
    ihdr = data[12:29]
    ihdr[4:12] = struct.pack(">II", 50_000, 50_000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


# ---- folders, order, pools ------------------------------------------------------------------
def test_folder_one_field_per_file_in_natural_order(folder, direct):
    root, names = folder
    rows = list(read_fields(str(root), workers=0))
    assert [r.source for r in rows] == names  # f1, f2, ..., f10 (not f1, f10, f11, ...)
    assert all(r.member is None and r.index is None and r.error is None for r in rows)
    for r, d in zip(rows, direct):
        assert r.text == d.text
        assert [g.box for g in r.digits] == [g.box for g in d.digits]
        assert abs(r.confidence - d.confidence) <= 1e-5


def test_exported_from_the_package(folder):
    assert fastlenet.read_fields is read_fields
    assert fastlenet.read_field is FL.read_field
    assert fastlenet.Field is FL.Field and fastlenet.Digit is FL.Digit


@pytest.mark.parametrize("kw", [{"workers": 2}, {"workers": 2, "pool": "thread"},
                                {"workers": 1}])
def test_workers_and_pools_give_the_same_rows(folder, kw):
    root, _ = folder
    base = list(read_fields(str(root), workers=0))
    _same_rows(list(read_fields(str(root), **kw)), base)


def test_a_list_of_files_and_a_glob(folder):
    root, names = folder
    rows = list(read_fields(names[::-1], workers=0))
    assert [r.source for r in rows] == names[::-1]
    rows = list(read_fields(str(root / "a" / "f*.png"), workers=0))
    assert sorted(r.source for r in rows) == sorted(names[: N // 2])


def test_batches_are_the_rows(folder):
    root, _ = folder
    flat = [r for rows in read_field_batches(str(root), workers=0) for r in rows]
    _same_rows(flat, list(read_fields(str(root), workers=0)))


def test_length_passes_through(folder, samples):
    root, names = folder
    rows = list(read_fields(names[:6], workers=0, length=3))
    assert all(len(r.text) == 3 or r.confidence == 0.0 for r in rows)
    assert all(len(r.text) == 3 for r, s in zip(rows, samples) if len(s.text) >= 3)
    with pytest.raises(ValueError, match="length"):
        list(read_fields(names[:1], workers=0, length=-2))
    with pytest.raises(TypeError, match="length"):
        list(read_fields(names[:1], workers=0, length="3"))


def test_bad_arguments(folder):
    root, _ = folder
    with pytest.raises(ValueError, match="workers"):
        list(read_fields(str(root), workers=-1))
    with pytest.raises(ValueError, match="pool"):
        list(read_fields(str(root), workers=1, pool="fork"))
    with pytest.raises(ValueError, match="invert"):
        list(read_fields(str(root), invert="sometimes"))


def test_nothing_and_a_glob_that_matches_nothing(tmp_path):
    assert list(read_fields([], workers=0)) == []
    (r,) = list(read_fields(str(tmp_path / "nomatch*.png"), workers=0))
    assert r.error and "matches nothing" in r.error and r.text == ""
    with pytest.raises(ValueError, match="workers"):
        list(read_fields(str(tmp_path), workers=True))


def test_missing_path_is_an_error_row(tmp_path, folder):
    root, names = folder
    rows = list(read_fields([names[0], str(tmp_path / "nope.png"), names[1]], workers=0))
    assert [r.error is None for r in rows] == [True, False, True]
    assert rows[1].text == "" and rows[1].digits == () and math.isnan(rows[1].confidence)


# ---- error rows and hostile files -------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_bad_files_become_error_rows(bad_folder, workers, direct):
    rows = list(read_fields(str(bad_folder), workers=workers))
    by = {os.path.basename(r.source): r for r in rows}
    assert sorted(by) == ["a_good.png", "b_truncated.png", "c_empty.png", "d_text.png",
                          "e_good.png", "f_bomb.png"]
    assert by["a_good.png"].error is None and by["a_good.png"].text == direct[0].text
    assert by["e_good.png"].error is None and by["e_good.png"].text == direct[1].text
    for name in ("b_truncated.png", "c_empty.png", "d_text.png", "f_bomb.png"):
        r = by[name]
        assert r.error and "\n" not in r.error, (name, r)
        assert r.text == "" and r.digits == () and math.isnan(r.confidence)
    assert "empty" in by["c_empty.png"].error
    assert "limit" in by["f_bomb.png"].error


def test_max_pixels_refuses_a_large_image(folder, samples):
    root, names = folder
    small = min(range(N), key=lambda i: samples[i].image.size)
    big = max(range(N), key=lambda i: samples[i].image.size)
    cap = samples[small].image.size
    assert samples[big].image.size > cap
    rows = list(read_fields([names[small], names[big]], workers=0, max_pixels=cap))
    assert rows[0].error is None
    assert rows[1].error and "limit" in rows[1].error and rows[1].text == ""


# ---- shards, IDX, .npy --------------------------------------------------------------------------
def test_tar_shard_members(tmp_path, samples, direct):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for i in range(6):
            payload = png_bytes(samples[i].image) if i != 3 else b"junk, not a png"
            info = tarfile.TarInfo(f"m{i}.png")
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    shard = tmp_path / "fields.tar"
    shard.write_bytes(buf.getvalue())
    for workers in (0, 2):
        rows = list(read_fields(str(shard), workers=workers))
        assert [r.member for r in rows] == [f"m{i}.png" for i in range(6)]
        assert all(r.source == str(shard) and r.index is None for r in rows)
        assert rows[3].error and rows[3].text == ""
        for i in (0, 1, 2, 4, 5):
            assert rows[i].error is None and rows[i].text == direct[i].text
            assert [d.box for d in rows[i].digits] == [d.box for d in direct[i].digits]


def _stack(samples, k):
    """The first k samples padded (with paper) to one (k, H, W) array."""
    h = max(s.image.shape[0] for s in samples[:k])
    w = max(s.image.shape[1] for s in samples[:k])
    out = np.full((k, h, w), 255, np.uint8)
    for i, s in enumerate(samples[:k]):
        out[i, : s.image.shape[0], : s.image.shape[1]] = s.image
    return out


@pytest.mark.parametrize("kind", ["npy", "idx", "idx.gz"])
def test_array_files_one_field_per_image(tmp_path, samples, fnet, kind):
    stack = _stack(samples, 5)
    if kind == "npy":
        path = tmp_path / "fields.npy"
        np.save(path, stack)
    elif kind == "idx":
        path = tmp_path / "fields-idx3-ubyte"
        path.write_bytes(idx_bytes(stack))
    else:
        path = tmp_path / "fields-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(idx_bytes(stack)))
    want = FL.read_arrays(stack, fnet)
    for workers in (0, 2):
        rows = list(read_fields(str(path), workers=workers))
        assert [r.index for r in rows] == list(range(5))
        assert all(r.source == str(path) and r.member is None and r.error is None
                   for r in rows)
        for r, w in zip(rows, want):
            assert r.text == w.text and [d.box for d in r.digits] == [d.box for d in w.digits]
            assert abs(r.confidence - w.confidence) <= 1e-5
    # padding with paper does not change the reading much: most read the samples' truth
    assert sum(r.text == s.text for r, s in zip(rows, samples)) >= 3


def test_truncated_idx(tmp_path, samples):
    """As predict_files: a raw IDX file whose size disagrees with its header is one error row;
    a gzipped one gives its whole images, then an error row."""
    stack = _stack(samples, 4)
    data = idx_bytes(stack)[: 16 + 2 * stack[0].size + 10]
    raw = tmp_path / "cut-idx3-ubyte"
    raw.write_bytes(data)
    (r,) = list(read_fields(str(raw), workers=0))
    assert r.error and "truncated" in r.error and r.index is None and r.text == ""
    gz = tmp_path / "cut-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(data))
    rows = list(read_fields(str(gz), workers=0))
    assert [r.index for r in rows if r.error is None] == [0, 1]
    assert rows[-1].error and "truncated" in rows[-1].error and rows[-1].index is None


# ---- hostile arrays (in memory) ---------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 100_000), (100_000, 1), (3000, 3000)])
def test_extreme_shapes_and_noise(shape):
    rng = np.random.default_rng(3)
    for a in (rng.integers(0, 256, shape).astype(np.uint8), np.full(shape, 255, np.uint8)):
        f = FL.read_field(a)
        assert f.error is None
        assert len(f.text) == len(f.digits) <= FL.FIELD_MAX_PIECES
        assert 0.0 <= f.confidence <= 1.0
        for d in f.digits:
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= shape[1] and 0 <= y0 < y1 <= shape[0]


def test_extreme_shapes_as_files(tmp_path):
    rng = np.random.default_rng(5)
    for i, shape in enumerate([(1, 100_000), (100_000, 1), (2, 2)]):
        (tmp_path / f"x{i}.png").write_bytes(png_bytes(rng.integers(0, 256, shape).astype(np.uint8)))
    for workers in (0, 2):
        rows = list(read_fields(str(tmp_path), workers=workers))
        assert len(rows) == 3 and all(r.error is None for r in rows)
        assert all(len(r.text) <= FL.FIELD_MAX_PIECES for r in rows)


def test_a_noise_file_reads_without_error(tmp_path):
    p = tmp_path / "noise.png"
    p.write_bytes(png_bytes(np.random.default_rng(4).integers(0, 256, (200, 1500)).astype(np.uint8)))
    (r,) = list(read_fields(str(p), workers=0))
    assert r.error is None and len(r.text) <= FL.FIELD_MAX_PIECES


def test_more_digits_than_the_piece_bound(samples):
    """A row of more digits than FIELD_MAX_PIECES: the reading stays bounded, and a reading cut
    short by the bound has confidence 0 (Field's docs)."""
    h = max(s.image.shape[0] for s in samples)
    picked = [s for s in samples if s.image.shape[0] >= h - 40]
    while sum(len(s.text) for s in picked) <= FL.FIELD_MAX_PIECES:
        picked = picked + picked
    row = np.concatenate([np.pad(s.image, ((0, h - s.image.shape[0]), (0, 0)),
                                 constant_values=255) for s in picked], axis=1)
    truth = "".join(s.text for s in picked)
    assert len(truth) > FL.FIELD_MAX_PIECES
    f = FL.read_field(row)
    assert f.error is None and len(f.text) <= FL.FIELD_MAX_PIECES
    # what a caller needs: a truncated reading must not look like a good one
    assert f.confidence < 0.05 or f.text == truth, (len(truth), len(f.text), f.confidence)
