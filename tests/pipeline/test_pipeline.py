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
import sys
import tarfile
import zipfile

import numpy as np
import pytest

import fastlenet
from fastlenet.io import containers, kinds, sources
from fastlenet.pipeline import Prediction, predict_batches, predict_files
from _helpers import ROOT, idx_bytes, png_bytes  # noqa: E402

Image = pytest.importorskip("PIL.Image")

SHARED = os.path.join(str(ROOT), "..", "shared", "data", "mnist")





def write_idx(path, arr, gz=False):
    arr = np.asarray(arr, np.uint8)
    data = idx_bytes(arr)
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
    assert kinds.kind("x/a.PNG") == "image" and kinds.kind("s.tar.gz") == "shard"
    assert kinds.kind("t10k-images-idx3-ubyte.gz") == "idx" and kinds.kind("b.npy") == "npy"
    assert kinds.kind("scans/idx_0001.PNG") == "image" and kinds.kind(".png") == "unknown"
    np.save(tmp_path / "noext", sample[0][:2])
    os.rename(tmp_path / "noext.npy", tmp_path / "noext")
    assert kinds.sniff(str(tmp_path / "noext")) == "npy"


# ---- the PNG fast path (decode._png_gray8) decodes exactly as Pillow's PNG plugin ----------
def _decode_both(data):
    """(Pillow's own path, decode.decode): each ("ok", array) or ("error", message)."""
    from fastlenet.io import decode as images

    out = []
    for f in (lambda: images._decode(io.BytesIO(data), images.MAX_PIXELS, data[:8]),
              lambda: images.decode(data)):
        try:
            out.append(("ok", f()))
        except ValueError as e:
            out.append(("error", str(e)))
    return out


def _bad_idat(data: bytes, rng) -> bytes:
    """data with one byte of its first IDAT flipped and the chunk's CRC made to match: only
    the pixel decoder can tell."""
    import zlib

    i = data.find(b"IDAT")
    if i < 0:
        return data
    n = int.from_bytes(data[i - 4:i], "big")
    m = bytearray(data)
    m[i + 4 + int(rng.integers(0, max(n, 1)))] ^= 0xFF
    m[i + 4 + n:i + 8 + n] = zlib.crc32(bytes(m[i:i + 4 + n])).to_bytes(4, "big")
    return bytes(m)


def _check_decode_many(blobs, rng):
    """decode.decode_many, on shuffled batches, gives per blob what decode() gives alone."""
    from fastlenet.io import decode as images

    order = rng.permutation(len(blobs))
    for part in np.array_split(order, 7):
        batch = [blobs[i] for i in part]
        for data, got in zip(batch, images.decode_many(batch)):
            try:
                want = images.decode(data)
            except ValueError as e:
                assert isinstance(got, ValueError) and str(got) == str(e)
                continue
            assert not isinstance(got, Exception), got
            assert got.dtype == want.dtype and np.array_equal(got, want)


def test_png_fast_path_equals_pillow_plugin(monkeypatch):
    from PIL import PngImagePlugin

    from fastlenet.io import decode as images

    rng = np.random.default_rng(8)
    fast = 0
    blobs = []
    for trial in range(120):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        if trial % 2:
            a = (a > 200).astype(np.uint8) * 255
        mode = ["L", "L", "L", "LA", "RGB", "P", "I;16", "1"][trial % 8]
        im = Image.fromarray(a.astype(np.uint16) * 257) if mode == "I;16" else \
            Image.fromarray(a).convert(mode)
        kw = {"compress_level": trial % 10}
        if trial % 5 == 0:
            kw["pnginfo"] = PngImagePlugin.PngInfo()
            kw["pnginfo"].add_text("scanner", "x" * trial)
        if mode == "L" and trial % 3 == 0:
            kw["transparency"] = 0  # tRNS: composited on white, so not the fast path
        buf = io.BytesIO()
        im.save(buf, "PNG", **kw)
        data = buf.getvalue()
        fast += images._png_gray8(data, images.MAX_PIXELS) is not None
        variants = [data]
        for k in range(4):  # damaged copies: byte flips and cuts
            m = bytearray(data)
            if k % 2:
                m[int(rng.integers(8, len(m)))] ^= int(rng.integers(1, 256))
            else:
                m = m[:int(rng.integers(8, len(m)))]
            variants.append(bytes(m))
        blobs += variants
        for v in variants:
            (ka, va), (kb, vb) = _decode_both(v)
            assert ka == kb, (mode, kw, ka, kb)
            if ka == "ok":
                assert va.dtype == vb.dtype and np.array_equal(va, vb)
            else:
                assert va == vb
    assert fast >= 20  # the fast path was exercised
    _check_decode_many(blobs + [_bad_idat(b, rng) for b in blobs[::5]], rng)
    # a task of scanned digits: one width, a few damaged, shared decoding exercised
    digits = []
    for k in range(40):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (28 + k % 3, 28), dtype=np.uint8)).save(buf, "PNG")
        digits.append(buf.getvalue())
    digits += [_bad_idat(d, rng) for d in digits[:5]] + [digits[0][:120]]
    shared = []
    real = images._decode_on_canvas
    monkeypatch.setattr(images, "_decode_on_canvas",
                        lambda group, out: (shared.append(len(group)), real(group, out)))
    _check_decode_many(digits, rng)
    assert sum(shared) >= 30
    # several IDAT chunks (Pillow writes 64 KB pieces), and the pixel cap from the header
    big = Image.fromarray(rng.integers(0, 256, (300, 300), dtype=np.uint8))
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=0)
    data = buf.getvalue()
    assert data.count(b"IDAT") > 1 and images._png_gray8(data, None) is not None
    assert np.array_equal(images.decode(data), np.asarray(big))
    with pytest.raises(ValueError, match="above the limit"):
        images.decode(data, max_pixels=1000)


# ---- every source kind, equal to the API on arrays ------------------------------------------
@pytest.mark.parametrize("workers,pool", [(0, None), (2, "process"), (2, "thread")])
def test_folder_equals_preprocess_then_predict(folder, net, sample, workers, pool):
    rows = list(predict_files(folder, net, workers=workers, pool=pool, batch_size=16))
    paths = list(sources.expand(folder))
    assert [p.source for p in rows] == paths
    arrays = [np.asarray(Image.open(p)) for p in paths]
    check_rows(rows, expected(arrays, net))
    assert all(p.member is None and p.index is None for p in rows)


def _scored_parts(monkeypatch):
    """A list that collects, per batch the pipeline emits, how many parts came classified by
    the workers and how many as model inputs."""
    from fastlenet.pipeline import run as pipeline

    seen = []
    real = pipeline._emit

    def spy(net, slots, xs, top_k, inputs):
        seen.append((sum(sc for _, sc in xs), sum(not sc for _, sc in xs)))
        return real(net, slots, xs, top_k, inputs)

    monkeypatch.setattr(pipeline, "_emit", spy)
    return seen


@pytest.mark.parametrize("method", ["fork", "forkserver"])
@pytest.mark.parametrize("isa", fastlenet.available_isas())
def test_worker_processes_classify_with_the_callers_isa(folder, net, isa, method, monkeypatch):
    """Worker processes run a copy of the Net on their chunks: with the caller's ISA level
    (each level rounds differently; a pickled Net, as forkserver and spawn send it, would take
    the best one) and its results bit for bit, whatever its thread count."""
    from fastlenet.pipeline import pool as pipeline

    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} here")
    monkeypatch.setattr(pipeline, "_start_method", lambda: method)
    mine = fastlenet.Net(net.weights, net.meta, num_threads=2)
    mine.isa = isa
    seen = _scored_parts(monkeypatch)
    rows = list(predict_files(folder, mine, workers=2, pool="process", batch_size=16))
    check_rows(rows, expected([np.asarray(Image.open(p)) for p in sources.expand(folder)],
                              mine))
    assert mine.isa == isa and mine.num_threads == 2
    assert sum(w for w, _ in seen) > 0 and sum(m for _, m in seen) == 0  # all by the workers
    # model inputs asked for (eval --plot): the workers send them, the caller classifies
    seen.clear()
    for got, x in predict_batches(folder, mine, workers=2, batch_size=16, inputs=True):
        check_rows(got, mine.predict_proba(x))
    assert sum(w for w, _ in seen) == 0 and sum(m for _, m in seen) > 0


class _Uniform(fastlenet.Net):
    """A subclass whose own method a copy in a worker must not replace."""

    def predict_proba(self, x):
        return np.full((len(x), 10), 0.1, np.float32)


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_net_subclass_runs_in_the_calling_process(folder, net, method, monkeypatch):
    from fastlenet.pipeline import pool as pipeline

    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} here")
    monkeypatch.setattr(pipeline, "_start_method", lambda: method)
    seen = _scored_parts(monkeypatch)
    rows = list(predict_files(folder, _Uniform(net.weights, net.meta), workers=2,
                              batch_size=16))
    assert rows and all(p.error is None and p.confidence == np.float32(0.1) for p in rows)
    assert sum(w for w, _ in seen) == 0


def test_without_pillow_each_image_file_is_one_error(tmp_path, net, sample, monkeypatch):
    from fastlenet.io import decode as images

    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(sample[0][i]))
    np.save(tmp_path / "x.npy", sample[0][:2])

    def no_pillow():
        raise ImportError(images.PILLOW_HINT)

    monkeypatch.setattr(images, "_pillow", no_pillow)
    rows = list(predict_files(tmp_path, net, workers=0))
    assert [p.error == images.PILLOW_HINT for p in rows] == [True] * 3 + [False] * 2


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
    from fastlenet.io.containers import read_idx

    y = read_idx(os.path.join(SHARED, "t10k-labels-idx1-ubyte.gz"))
    assert np.mean([p.label for p in rows] == y) == pytest.approx(net.meta["test_accuracy"],
                                                                 abs=1e-4)


@pytest.mark.parametrize("fmt", ["gnu", "pax", "ustar"])
@pytest.mark.parametrize("gz", [False, True])
def test_tar_walk_reads_what_tarfile_reads(tmp_path, fmt, gz, sample):
    """Long names (GNU 'L' records, pax 'path', ustar prefix), non-ASCII names, directories,
    links and non-image members, against tarfile's own reading of the same archive."""
    x, _ = sample
    fmt_code = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT,
                "ustar": tarfile.USTAR_FORMAT}[fmt]
    names = ["a.png", "deep/" * 25 + "long.png", "dir/b.png", "notes.txt",
             "pfx/" * 30 + "c.png"]
    if fmt != "ustar":
        names.append("dir/caf\u00e9-" + "x" * 120 + ".png")
    path = tmp_path / ("t.tar.gz" if gz else "t.tar")
    with tarfile.open(path, "w:gz" if gz else "w", format=fmt_code) as t:
        d = tarfile.TarInfo("dir")
        d.type = tarfile.DIRTYPE
        t.addfile(d)
        for i, n in enumerate(names):
            data = png_bytes(x[i]) if n.endswith(".png") else b"text"
            info = tarfile.TarInfo(n)
            info.size = len(data)
            info.mtime = 1.5e9 + 0.25  # a float mtime: pax writes a record for it
            t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "a.png"
        t.addfile(link)
    ours = [(m, d) for m, d, e in containers.iter_shard(str(path))]
    with tarfile.open(path) as t:
        theirs = [(m.name, t.extractfile(m).read()) for m in t
                  if m.isfile() and kinds.kind(m.name) == "image"]
    assert ours == theirs and len(ours) == len(names) - 1


def test_tar_bad_checksum_is_an_error(tmp_path, sample):
    data = bytearray()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for i in range(3):
            blob = png_bytes(sample[0][i])
            info = tarfile.TarInfo(f"{i}.png")
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    data = bytearray(buf.getvalue())
    second = data.index(b"1.png")
    data[second + 10] ^= 0x55  # inside the second header's name field
    (tmp_path / "bad.tar").write_bytes(bytes(data))
    got = list(predict_files(tmp_path / "bad.tar", workers=0))
    assert got[0].error is None and got[0].member == "0.png"
    assert "checksum" in got[1].error and len(got) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux") or sys.version_info >= (3, 12),
                    reason="the test plants the crash before fork (the pool forks on Linux, "
                           "Python < 3.12)")
def test_a_worker_that_dies_costs_one_input(tmp_path, net, sample, monkeypatch):
    """A decoder crash (simulated: the worker process exits on one file) is one error row; the
    pool restarts and every other input is predicted, in order."""
    from fastlenet.io import decode as images

    real = images.decode_many

    def crashy(blobs, max_pixels=None):
        if any(b"CRASH" in data for data in blobs):
            os._exit(3)
        return real(blobs, max_pixels)

    monkeypatch.setattr(images, "decode_many", crashy)  # the fork workers inherit it
    for i in range(40):
        data = png_bytes(sample[0][i])
        (tmp_path / f"{i:02d}.png").write_bytes(data + (b"CRASH" if i == 13 else b""))
    rows = list(predict_files(tmp_path, net, workers=2, pool="process", batch_size=8))
    assert [os.path.basename(p.source) for p in rows] == [f"{i:02d}.png" for i in range(40)]
    assert [i for i, p in enumerate(rows) if p.error] == [13]
    assert "died" in rows[13].error
    good = [p for p in rows if p.error is None]
    check_rows(good, expected([sample[0][i] for i in range(40) if i != 13], net))


def test_npy_colour_and_big_endian_arrays(tmp_path, net, sample):
    x, _ = sample
    np.save(tmp_path / "rgb.npy", np.stack([np.dstack([im] * 3) for im in x[:6]]))
    np.save(tmp_path / "be.npy", (x[6:12].astype(np.float64) / 255).astype(">f8"))
    np.save(tmp_path / "big.npy", np.stack([np.pad(im, 6) for im in x[12:18]]))  # 40x40
    rows = list(predict_files([tmp_path / "rgb.npy", tmp_path / "be.npy", tmp_path / "big.npy"],
                              net, workers=0))
    assert all(p.error is None for p in rows) and len(rows) == 18
    np.testing.assert_array_equal([p.label for p in rows[:6]], net.predict(x[:6]))
    np.testing.assert_array_equal([p.label for p in rows[6:12]], net.predict(x[6:12] / 255))
    big = fastlenet.preprocess([np.pad(im, 6) for im in x[12:18]])  # not 28/32: preprocessed
    check_rows(rows[12:], net.predict_proba(big))


def test_mutated_files_never_raise(tmp_path, net, sample, rng):
    """Seeded byte flips and cuts of a gzipped IDX, a tar.gz, a zip, a PNG and a JPEG: every
    run ends with rows (an error or a prediction each), never an exception."""
    x, _ = sample
    originals = {"m-idx3-ubyte.gz": gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", 6, 28,
                                                                               28)
                                                  + x[:6].tobytes()),
                 "m.png": png_bytes(x[0]), "m.jpg": png_bytes(x[1], "JPEG", quality=90)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for i in range(4):
            b = png_bytes(x[i])
            info = tarfile.TarInfo(f"{i}.png")
            info.size = len(b)
            t.addfile(info, io.BytesIO(b))
    originals["m.tar.gz"] = buf.getvalue()
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(4):
            z.writestr(f"{i}.png", png_bytes(x[i]))
    originals["m.zip"] = zbuf.getvalue()
    for name, data in originals.items():
        for k in range(25):
            b = bytearray(data)
            if k % 5 == 4:
                b = b[: int(rng.integers(1, len(b)))]
            else:
                for _ in range(int(rng.integers(1, 4))):
                    b[int(rng.integers(0, len(b)))] ^= int(rng.integers(1, 256))
            path = tmp_path / f"{k}-{name}"
            path.write_bytes(bytes(b))
            rows = list(predict_files(path, net, workers=0))
            assert rows and all(isinstance(p, Prediction) for p in rows), (name, k)
            assert all((p.error is None) == (p.label >= 0) for p in rows)
