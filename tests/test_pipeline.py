"""fastlenet.predict_files and fastlenet.sources: every source kind, order, equality with
net.predict on the same preprocessed arrays, and hostile inputs (one error each, the rest
predicted, never a crash or a hang)."""
from __future__ import annotations

import gzip
import io
import math
import multiprocessing
import os
import struct
import tarfile
import zipfile

import numpy as np
import pytest

import fastlenet
from fastlenet import sources
from fastlenet.pipeline import Prediction, predict_batches, predict_files

Image = pytest.importorskip("PIL.Image")

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


@pytest.fixture(scope="module")
def sample():
    with np.load(os.path.join(os.path.dirname(fastlenet.__file__), "data", "mnist_sample.npz"),
                 allow_pickle=False) as z:
        return z["images"], z["labels"].astype(np.int64)


@pytest.fixture(scope="module")
def net():
    return fastlenet.pretrained()


def png_bytes(arr, fmt="PNG", **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def write_idx(path, arr, gz=False):
    arr = np.asarray(arr, np.uint8)
    data = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(data)
    return str(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, sample):
    """60 PNG digits in nested folders, with names that need natural ordering."""
    x, _ = sample
    root = tmp_path_factory.mktemp("digits")
    for i in range(60):
        sub = root / ("b" if i % 2 else "a")
        sub.mkdir(exist_ok=True)
        (sub / f"img{i}.png").write_bytes(png_bytes(x[i]))
    return root


def expected(arrays, net, **kw):
    """What predict_files must return: net.predict_proba on fastlenet.preprocess output."""
    return net.predict_proba(fastlenet.preprocess(arrays, **kw))


def check_rows(rows, proba):
    assert len(rows) == len(proba)
    for p, pr in zip(rows, proba):
        assert p.error is None, p
        assert p.label == int(pr.argmax())
        assert p.confidence == float(pr.max())  # bit for bit: the same float32, as a float
        assert p.top_k[0] == (p.label, p.confidence)


# ---- sources --------------------------------------------------------------------------------
def test_expand_order_globs_and_missing(folder, tmp_path):
    got = list(sources.expand(folder))
    names = [os.path.relpath(p, folder) for p in got]
    a = [n for n in names if n.startswith("a")]
    assert a[:3] == [os.path.join("a", f"img{i}.png") for i in (0, 2, 4)]
    assert names.index(os.path.join("a", "img58.png")) < names.index(os.path.join("b",
                                                                                  "img1.png"))
    assert names.index(os.path.join("b", "img9.png")) < names.index(os.path.join("b",
                                                                                 "img11.png"))
    pattern = os.path.join(str(folder), "a", "img1*.png")
    assert [os.path.basename(p) for p in sources.expand(pattern)] == [
        "img10.png", "img12.png", "img14.png", "img16.png", "img18.png"]
    assert list(sources.expand([tmp_path / "nope.png"])) == [str(tmp_path / "nope.png")]
    assert list(sources.expand(str(tmp_path / "nothing*.png"))) == [
        str(tmp_path / "nothing*.png")]


def test_kind_by_name_and_content(tmp_path, sample):
    assert sources.kind("x/a.PNG") == "image" and sources.kind("s.tar.gz") == "shard"
    assert sources.kind("t10k-images-idx3-ubyte.gz") == "idx" and sources.kind("b.npy") == "npy"
    np.save(tmp_path / "noext", sample[0][:2])
    os.rename(tmp_path / "noext.npy", tmp_path / "noext")
    assert sources.sniff(str(tmp_path / "noext")) == "npy"


# ---- every source kind, equal to the API on arrays ------------------------------------------
@pytest.mark.parametrize("workers,pool", [(0, None), (2, "process"), (2, "thread")])
def test_folder_equals_preprocess_then_predict(folder, net, sample, workers, pool):
    rows = list(predict_files(folder, net, workers=workers, pool=pool, batch_size=16))
    paths = list(sources.expand(folder))
    assert [p.source for p in rows] == paths
    arrays = [np.asarray(Image.open(p)) for p in paths]
    check_rows(rows, expected(arrays, net))
    assert all(p.member is None and p.index is None for p in rows)


def test_idx_npy_pass_through_and_preprocess(tmp_path, net, sample):
    x, _ = sample
    idx = write_idx(tmp_path / "t-idx3-ubyte.gz", x[:50], gz=True)
    raw = write_idx(tmp_path / "raw-idx3-ubyte", x[50:70])
    np.save(tmp_path / "batch.npy", x[70:80])
    np.save(tmp_path / "one.npy", x[80])
    rows = list(predict_files([idx, raw, tmp_path / "batch.npy", tmp_path / "one.npy"], net,
                              batch_size=32))
    assert [p.index for p in rows] == list(range(50)) + list(range(20)) + list(range(10)) + [None]
    check_rows(rows, net.predict_proba(x[:81]))  # 28x28 arrays are model inputs already
    mnist = list(predict_files(idx, net, preprocess="mnist"))
    check_rows(mnist, expected(x[:50], net))


def test_shards_tar_targz_zip(tmp_path, net, sample):
    x, _ = sample
    blobs = {f"d/{i:03d}.png": png_bytes(x[i]) for i in range(30)}
    blobs["d/notes.txt"] = b"skipped: not an image by name"
    for name, mode in (("s.tar", "w"), ("s.tar.gz", "w:gz")):
        with tarfile.open(tmp_path / name, mode) as t:
            for k, v in blobs.items():
                info = tarfile.TarInfo(k)
                info.size = len(v)
                t.addfile(info, io.BytesIO(v))
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as z:
        for k, v in blobs.items():
            z.writestr(k, v)
    want = expected(list(x[:30]), net)
    for name in ("s.tar", "s.tar.gz", "s.zip"):
        rows = list(predict_files(tmp_path / name, net, batch_size=8))
        assert [p.member for p in rows] == [f"d/{i:03d}.png" for i in range(30)], name
        assert all(p.source == str(tmp_path / name) for p in rows)
        check_rows(rows, want)


def test_top_k_and_classes_follow_the_net(folder, net):
    rows = list(predict_files(folder, net, top_k=3, workers=0))
    for p in rows:
        assert len(p.top_k) == 3 and p.top_k[0][0] == p.label
        probs = [c for _, c in p.top_k]
        assert probs == sorted(probs, reverse=True)
    rows = list(predict_files(folder, net, top_k=50, workers=0))
    assert len(rows[0].top_k) == len(net.classes)  # sized from the net's outputs


def test_raw_pass_through_matches_predict(folder, net):
    paths = list(sources.expand(folder))
    rows = list(predict_files(folder, net, preprocess="none", workers=0))
    arrays = np.stack([np.asarray(Image.open(p)) for p in paths])
    check_rows(rows, net.predict_proba(arrays))


def test_prediction_fields_in_order():
    assert Prediction._fields == ("source", "member", "index", "label", "confidence", "top_k",
                                  "error")
    assert fastlenet.predict_files is predict_files and fastlenet.Prediction is Prediction


# ---- hostile inputs ---------------------------------------------------------------------------
def test_bad_files_one_error_each(tmp_path, net, sample):
    x, _ = sample
    good = png_bytes(x[0])
    (tmp_path / "a_good.png").write_bytes(good)
    (tmp_path / "b_truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "c_empty.png").write_bytes(b"")
    (tmp_path / "d_text.png").write_bytes(b"hello, not an image")
    corrupt = bytearray(png_bytes(x[1]))
    corrupt[40:60] = b"\xff" * 20
    (tmp_path / "e_corrupt.png").write_bytes(bytes(corrupt))
    (tmp_path / "f_big.png").write_bytes(png_bytes(np.zeros((120, 120), np.uint8)))
    (tmp_path / "g_bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (tmp_path / "h_good.png").write_bytes(png_bytes(x[2]))
    write_idx(tmp_path / "i_labels-idx1-ubyte", [1, 2, 3])
    (tmp_path / "j_huge-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03"
                                                 + struct.pack(">3I", 2**31, 28, 28))
    (tmp_path / "k_cube.npy").write_bytes(b"\x93NUMPY garbage")
    for workers in (0, 2):
        rows = list(predict_files(tmp_path, net, workers=workers, max_pixels=10_000))
        by = {os.path.basename(p.source): p for p in rows}
        assert len(rows) == len(by) == 11
        assert by["a_good.png"].error is None and by["h_good.png"].error is None
        for name, p in by.items():
            if name not in ("a_good.png", "h_good.png"):
                assert p.error and "\n" not in p.error, (name, p)
                assert p.label == -1 and math.isnan(p.confidence) and p.top_k == ()
        assert "limit" in by["f_big.png"].error and "14,400" in by["f_big.png"].error
        assert "empty" in by["c_empty.png"].error
        assert "labels" in by["i_labels-idx1-ubyte"].error


def test_idx_huge_header_allocates_nothing(tmp_path, net):
    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:  # 35 bytes that declare 21.9 million images
        f.write(b"\x00\x00\x08\x03" + struct.pack(">3I", 21_900_000, 28, 28) + b"\0" * 784 * 3)
    import tracemalloc

    tracemalloc.start()
    rows = list(predict_files(path, net, workers=0))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [p.index for p in rows if p.error is None] == [0, 1, 2]
    assert "truncated" in rows[-1].error and rows[-1].index is None
    assert peak < 200 << 20


def test_decompression_bomb_refused_from_the_header(tmp_path, net):
    bomb = Image.new("1", (9000, 9000))  # 81 megapixels; a small file
    bomb.save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 2 << 20
    (p,) = list(predict_files(tmp_path / "bomb.png", net, workers=0))
    assert "81,000,000 pixels" in p.error and "limit" in p.error


def test_shard_with_bad_members_and_truncation(tmp_path, net, sample):
    x, _ = sample
    members = [("0.png", png_bytes(x[0])), ("1.png", b"junk"), ("2.png", png_bytes(x[1])),
               ("3.png", png_bytes(x[2]))]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for k, v in members:
            info = tarfile.TarInfo(k)
            info.size = len(v)
            t.addfile(info, io.BytesIO(v))
    data = buf.getvalue()
    (tmp_path / "ok.tar").write_bytes(data)
    rows = list(predict_files(tmp_path / "ok.tar", net, workers=0))
    assert [p.error is None for p in rows] == [True, False, True, True]
    cut = data.index(png_bytes(x[2])[:64])  # cut inside the last member
    (tmp_path / "cut.tar").write_bytes(data[:cut + 30])
    rows = list(predict_files(tmp_path / "cut.tar", net, workers=0))
    assert [p.member for p in rows[:3]] == ["0.png", "1.png", "2.png"]
    assert rows[-1].error and rows[-1].member is None and "truncated" in rows[-1].error
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    (p,) = list(predict_files(tmp_path / "junk.zip", net, workers=0))
    assert "zip" in p.error


@pytest.mark.skipif(not hasattr(os, "symlink") or not hasattr(os, "mkfifo"), reason="POSIX")
def test_symlink_loop_fifo_and_dangling_link_are_one_error_each(tmp_path, net, sample):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.png").write_bytes(png_bytes(sample[0][0]))
    (d / "sub" / "b.png").write_bytes(png_bytes(sample[0][1]))
    os.symlink(d, d / "sub" / "loop")
    os.symlink(tmp_path / "gone.png", d / "dangling.png")
    os.mkfifo(d / "pipe.png")  # opening it blocking would hang forever
    rows = list(predict_files(d, net, workers=0))
    by = {os.path.relpath(p.source, d): p for p in rows}
    assert by["a.png"].error is None and by[os.path.join("sub", "b.png")].error is None
    assert "loop" in by[os.path.join("sub", "loop")].error
    assert by["dangling.png"].error and by["pipe.png"].error
    assert len(rows) == 5


def test_non_utf8_file_names(tmp_path, net, sample):
    name = os.fsencode(tmp_path) + b"/caf\xe9.png"
    try:
        with open(name, "wb") as f:
            f.write(png_bytes(sample[0][0]))
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses non-UTF-8 names")
    (p,) = list(predict_files(tmp_path, net, workers=0))
    assert p.error is None and os.fsencode(p.source) == name


def test_early_close_stops_the_pool(folder, net):
    it = predict_files(folder, net, workers=2, pool="process", batch_size=8)
    next(it)
    it.close()
    assert multiprocessing.active_children() == []


def test_batches_and_inputs(folder, net):
    out = list(predict_batches(folder, net, batch_size=16, inputs=True, workers=0))
    assert sum(len(r) for r, _ in out) == 60
    for rows, x in out:
        np.testing.assert_array_equal(net.predict(x), [p.label for p in rows])


@pytest.mark.parametrize("kw, match", [({"batch_size": 0}, "batch_size"),
                                       ({"top_k": 0}, "top_k"),
                                       ({"invert": "maybe"}, "invert"),
                                       ({"preprocess": "x"}, "preprocess"),
                                       ({"workers": -1}, "workers"),
                                       ({"pool": "gpu"}, "pool")])
def test_argument_errors(folder, net, kw, match):
    with pytest.raises(ValueError, match=match):
        next(predict_files(folder, net, **kw))


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="needs ../shared/data/mnist")
def test_mnist_test_idx_accuracy(net):
    rows = list(predict_files(os.path.join(SHARED, "t10k-images-idx3-ubyte.gz"), net))
    from fastlenet.images import read_idx

    y = read_idx(os.path.join(SHARED, "t10k-labels-idx1-ubyte.gz"))
    assert np.mean([p.label for p in rows] == y) == pytest.approx(net.meta["test_accuracy"],
                                                                 abs=1e-4)
