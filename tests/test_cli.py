"""The `fastlenet` command line, run as `python -m fastlenet ...` in a subprocess.

Each subprocess pays the package's import (about a second or two), so one predict run over a tree
of every supported input kind is shared by several tests (module-scoped fixtures).
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

import fastlenet

Image = pytest.importorskip("PIL.Image")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS_DENSE = os.path.join(ROOT, "tests", "data", "frameworks", "keras_path_dense.npz")
N_DIGITS = 40


def run(*args, cwd=None):
    """`python -m fastlenet ARGS`, from tests/ by default: never from the project root, whose
    source folder would shadow an installed (non-editable) fastlenet."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "fastlenet", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          cwd=cwd or os.path.dirname(os.path.abspath(__file__)), env=env)


def write_idx(path, arr, gz=False):
    arr = np.asarray(arr, np.uint8)
    data = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(data)
    return path


@pytest.fixture(scope="module")
def sample():
    with np.load(os.path.join(os.path.dirname(fastlenet.__file__), "data", "mnist_sample.npz"),
                 allow_pickle=False) as z:
        return z["images"], z["labels"].astype(np.int64)


@pytest.fixture(scope="module")
def net():
    return fastlenet.pretrained()


@pytest.fixture(scope="module")
def correct(sample, net):
    """Indices of sample digits the pretrained model gets right with a margin (for the format
    tests, which then expect the true label)."""
    x, y = sample
    p = net.predict_proba(x)
    return [i for i in range(len(x)) if p[i].argmax() == y[i] and p[i].max() > 0.9]


@pytest.fixture(scope="module")
def tree(tmp_path_factory, sample, correct):
    """A folder of every input kind; returns (root, {relative name: expected label or None})."""
    x, y = sample
    root = tmp_path_factory.mktemp("inputs")
    expect = {}
    digits = root / "digits"
    for i in range(N_DIGITS):  # spread over nested folders
        sub = digits / ("a" if i % 3 == 0 else os.path.join("b", "deep") if i % 3 == 1 else "")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(sub / f"d{i}.png")
    c = iter(correct[N_DIGITS:])
    fmt = root / "formats"
    fmt.mkdir()

    def put(name, arr, i, **kw):
        Image.fromarray(arr).save(fmt / name, **kw)
        expect[f"formats/{name}"] = int(y[i])

    i = next(c)
    put("digit.jpg", x[i], i, quality=95)
    i = next(c)
    put("digit.bmp", x[i], i)
    i = next(c)
    put("rgb.png", np.dstack([x[i], x[i] // 2, x[i]]), i)
    i = next(c)
    put("rgba.png", np.dstack([255 - x[i]] * 3 + [np.full_like(x[i], 255)]), i)
    i = next(c)
    ink = np.zeros((28, 28, 4), np.uint8)  # black strokes on a transparent background
    ink[..., 3] = x[i]
    put("transparent.png", ink, i)
    i = next(c)
    put("sixteen.png", x[i].astype(np.uint16) * 257, i)
    big = []
    for _ in range(3):
        i = next(c)
        page = np.asarray(Image.fromarray(255 - x[i]).resize((280, 280), Image.BILINEAR))
        put(f"big{len(big)}.png", page, i)
        big.append(i)
    i = next(c)
    np.save(fmt / "single.npy", x[i])
    expect["formats/single.npy"] = int(y[i])
    batch = [next(c) for _ in range(5)]
    np.save(fmt / "batch.npy", x[batch])
    for k, j in enumerate(batch):
        expect[f"formats/batch.npy[{k}]"] = int(y[j])
    sel = [next(c) for _ in range(12)]
    write_idx(fmt / "sample-idx3-ubyte.gz", x[sel], gz=True)
    for k, j in enumerate(sel):
        expect[f"formats/sample-idx3-ubyte.gz[{k}]"] = int(y[j])
    return root, expect


@pytest.fixture(scope="module")
def predicted(tree):
    """One `predict --format json --top-k 3` run over the whole tree."""
    root, _ = tree
    r = run("predict", "digits", "formats", "--format", "json", "--top-k", "3", cwd=root)
    assert r.returncode == 0, r.stderr
    recs = json.loads(r.stdout)
    return {rec["path"] if rec["index"] is None else f"{rec['path']}[{rec['index']}]": rec
            for rec in recs}, recs


def norm(name):
    return name.replace(os.sep, "/")


# ---- predict --------------------------------------------------------------------------------
def test_predict_folder_of_pngs_matches_the_api(tree, predicted, sample, net):
    x, y = sample
    recs = {norm(k): v for k, v in predicted[0].items() if k.startswith("digits")}
    assert len(recs) == N_DIGITS
    for name, rec in recs.items():  # image files are preprocessed, whatever their size
        i = int(re.search(r"d(\d+)\.png", name).group(1))
        assert rec["class"] == int(net.predict(fastlenet.preprocess([x[i]]))[0]), name
        assert rec["label"] == str(rec["class"])
    accuracy = np.mean([rec["class"] == y[int(re.search(r"d(\d+)", n).group(1))]
                        for n, rec in recs.items()])
    assert accuracy >= 0.95


def test_predict_recursive_sorted_order(predicted):
    names = [norm(r["path"]) for r in predicted[1] if r["path"].startswith("digits")]
    assert names[0] == "digits/a/d0.png" and "digits/b/deep/d1.png" in names
    assert names.index("digits/a/d3.png") < names.index("digits/a/d12.png")  # natural order
    assert names.index("digits/a/d39.png") < names.index("digits/b/deep/d1.png")


def test_predict_every_format(tree, predicted):
    _, expect = tree
    got = {norm(k): v for k, v in predicted[0].items()}
    for name, label in expect.items():
        assert name in got, name
        assert got[name]["class"] == label, name
    assert got["formats/single.npy"]["index"] is None
    assert [got[f"formats/batch.npy[{k}]"]["index"] for k in range(5)] == list(range(5))


def test_predict_top_k(predicted):
    for rec in predicted[1]:
        top = rec["top"]
        assert len(top) == 3 and top[0]["class"] == rec["class"]
        probs = [t["confidence"] for t in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_predict_csv_threads_batch_size_same_as_default(tree, predicted):
    root, _ = tree
    r = run("predict", "digits", "formats", "--format", "csv", "--top-k", "3",
            "--batch-size", "7", "--threads", "1", cwd=root)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0]) == ["path", "member", "index", "label", "confidence", "label_2",
                             "confidence_2", "label_3", "confidence_3"]
    assert len(rows) == len(predicted[1])
    for row, rec in zip(rows, predicted[1]):
        assert row["path"] == rec["path"]
        assert row["index"] == ("" if rec["index"] is None else str(rec["index"]))
        assert row["label"] == rec["label"] and row["label_3"] == rec["top"][2]["label"]
        assert abs(float(row["confidence"]) - rec["confidence"]) < 2e-6


def test_predict_text_output(tree, sample, net):
    root, _ = tree
    r = run("predict", os.path.join("digits", "a"), cwd=root)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(range(0, N_DIGITS, 3))
    for line in lines:
        name, label, conf = line.split()
        i = int(re.search(r"d(\d+)", name).group(1))
        assert int(label) == net.predict(sample[0][i])[0]
        assert 0 < float(conf) <= 1


def test_predict_with_weights_file(tmp_path, tree, net):
    root, _ = tree
    meta = net.meta
    meta["classes"] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                       "nine"]
    path = tmp_path / "named.npz"
    fastlenet.Net(net.weights, meta).save(path)
    r = run("predict", os.path.join("digits", "a", "d0.png"), "--weights", path, cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == "seven"  # the first MNIST test digit is a 7


def test_predict_bad_inputs_reported_others_processed(tmp_path, sample):
    x = sample[0]
    Image.fromarray(x[0]).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "corrupt.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.txt").write_text("not an image")
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.fromarray(x[1]).save(folder / "fine.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    r = run("predict", "missing.png", "good.png", "notes.txt", "corrupt.png", "folder",
            cwd=tmp_path)
    assert r.returncode == 1
    out = r.stdout.splitlines()
    assert [line.split()[0] for line in out] == ["good.png", os.path.join("folder", "fine.png")]
    err = r.stderr.splitlines()
    for name in ("missing.png", "notes.txt", "corrupt.png", os.path.join("folder", "broken.jpg")):
        assert sum(line.startswith(f"fastlenet: {name}: ") for line in err) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "4 input(s) failed" in r.stderr


def test_predict_bad_weights_one_line(tmp_path, monkeypatch, capsys):
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "w.npz").write_text("garbage")
    r = run("predict", "a.png", "--weights", "w.npz", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "w.npz" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    # The same path in-process (a subprocess costs the package import): a missing file.
    from fastlenet.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["predict", "a.png", "--weights", "nope.npz"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nope.npz" in err


def test_usage_errors_exit_2(tmp_path, capsys):
    r = run("predict", "a.png", "--top-k", "0", cwd=tmp_path)
    assert r.returncode == 2
    assert "usage:" in r.stderr and "--top-k" in r.stderr and "Traceback" not in r.stderr
    from fastlenet.cli import main

    for args in (["predict", "a.png", "--invert", "maybe"], ["predict"], ["frobnicate"],
                 ["predict", "a.png", "--batch-size", "x"], ["bench", "--seconds", "-1"]):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2, args
        assert "usage:" in capsys.readouterr().err


def test_predict_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("predict", "empty", cwd=tmp_path)
    assert r.returncode == 1 and "no images found" in r.stderr


# ---- demo, eval, bench, inspect, config -----------------------------------------------------
def test_demo(tmp_path):
    r = run("demo", "--seconds", "0.05", "--batch", "200", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    acc = float(re.search(r"accuracy: ([\d.]+)%", r.stdout).group(1)) / 100
    assert acc >= 0.98
    assert re.search(r"[\d,]+ images/s", r.stdout) and "latency" in r.stdout
    assert "@@" in r.stdout  # the ASCII art


@pytest.fixture(scope="module")
def idx_files(tmp_path_factory, sample):
    x, y = sample
    d = tmp_path_factory.mktemp("idx")
    return (write_idx(d / "images-idx3-ubyte.gz", x[:200], gz=True),
            write_idx(d / "labels-idx1-ubyte", y[:200]))


def test_eval(idx_files, sample, net):
    x, y = sample
    images, labels = idx_files
    r = run("eval", "--images", images, "--labels", labels)
    assert r.returncode == 0, r.stderr
    pred = net.predict(x[:200])
    correct = int((pred == y[:200]).sum())
    assert f"({correct}/200)" in r.stdout
    assert "confusion matrix" in r.stdout
    rows = r.stdout.split("confusion matrix")[1].strip().splitlines()[2:]
    conf = np.array([[int(v) for v in row.split()[1:]] for row in rows])
    assert conf.shape == (10, 10) and conf.sum() == 200 and np.trace(conf) == correct
    r = run("eval", "--images", images, "--labels", labels, "--format", "json")
    assert json.loads(r.stdout)["correct"] == correct


def test_eval_plot(idx_files, tmp_path):
    pytest.importorskip("matplotlib")
    images, labels = idx_files
    out = tmp_path / "eval.png"
    r = run("eval", "--images", images, "--labels", labels, "--plot", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(b"\x89PNG")


def test_eval_errors(idx_files, tmp_path, sample, capsys):
    images, labels = idx_files
    short = write_idx(tmp_path / "short-labels", sample[1][:10])
    r = run("eval", "--images", images, "--labels", short)
    assert r.returncode == 1 and "200 images" in r.stderr and "10 labels" in r.stderr
    assert "Traceback" not in r.stderr
    from fastlenet.cli import main

    assert main(["eval", "--images", str(tmp_path / "missing"), "--labels", str(labels)]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["eval", "--images", str(labels), "--labels", str(labels)]) == 1
    assert "expected IDX images" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["eval", "--images", str(images)])
    assert e.value.code == 2


def test_bench():
    r = run("bench", "--seconds", "0.01", "--batch", "32", "--no-peers")
    assert r.returncode == 0, r.stderr
    for isa in fastlenet.available_isas():
        assert re.search(rf"^fastlenet\s+{isa}\s+1\s+32\s+[\d,]+", r.stdout, re.M), r.stdout
    assert re.search(r"^numpy\s", r.stdout, re.M) and re.search(r"^reference\s", r.stdout, re.M)


def test_inspect():
    r = run("inspect", KERAS_DENSE)
    assert r.returncode == 0, r.stderr
    assert "framework=keras" in r.stdout and "61,706" in r.stdout
    assert re.search(r"'sequential_4/conv2d_12/kernel' \(5, 5, 1, 6\) -> c1\.weight", r.stdout)
    assert len(re.findall(r"^  '.+' \(.*\) -> \w+\.(?:weight|bias) ", r.stdout, re.M)) == 10


def test_inspect_errors(tmp_path, capsys):
    r = run("inspect", tmp_path / "missing.npz")
    assert r.returncode == 1 and "missing.npz" in r.stderr and "Traceback" not in r.stderr
    from fastlenet.cli import main

    assert main(["inspect", KERAS_DENSE, "--layout", "pytorch"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "keras_path_dense.npz" in err


def test_config():
    r = run("config")
    assert r.returncode == 0
    assert f"ISA: {fastlenet.default_isa()}" in r.stdout and "OpenMP" in r.stdout
