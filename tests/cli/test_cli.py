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
from _helpers import ROOT, TESTS  # noqa: E402

Image = pytest.importorskip("PIL.Image")

KERAS_DENSE = os.path.join(ROOT, "tests", "data", "frameworks", "keras_path_dense.npz")
N_DIGITS = 40


def run(*args, cwd=None):
    """`python -m fastlenet ARGS`, from tests/ by default: never from the project root, whose
    source folder would shadow an installed (non-editable) fastlenet."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "fastlenet", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          cwd=cwd or str(TESTS), env=env)


def write_idx(path, arr, gz=False):
    arr = np.asarray(arr, np.uint8)
    data = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(data)
    return path




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


# ---- the pipeline's command line: shards, labels, hostile names and pipes --------------------
@pytest.fixture(scope="module")
def many(tmp_path_factory, sample):
    """3,000 PNG files: enough output that `| head` closes the pipe mid-run."""
    x, _ = sample
    d = tmp_path_factory.mktemp("many")
    for i in range(3000):
        Image.fromarray(x[i % len(x)]).save(d / f"{i:04d}.png")
    return d


def test_closed_pipe_exits_0_without_traceback(many):
    for jobs in ("0", "2"):
        p = subprocess.Popen([sys.executable, "-m", "fastlenet", "predict", str(many),
                              "--jobs", jobs, "--batch-size", "64"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=str(TESTS))
        first = p.stdout.readline()
        p.stdout.close()  # what `| head -1` does
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 0, err
        assert first.startswith(str(many).encode()) and "Traceback" not in err


def test_jobs_and_raw(many, tmp_path):
    out = {}
    for jobs in ("0", "1", "2"):
        r = run("predict", many, "--jobs", jobs, "--format", "csv")
        assert r.returncode == 0, r.stderr
        out[jobs] = r.stdout
    assert out["0"] == out["1"] == out["2"] and out["0"].count("\n") == 3001
    r = run("predict", os.path.join(many, "0000.png"), "--raw")
    assert r.returncode == 0 and r.stdout.split()[1] == "7"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "odd.png")
    r = run("predict", tmp_path / "odd.png", "--raw")
    assert r.returncode == 1 and "28x28 or 32x32" in r.stderr


def test_shards_in_the_cli(tmp_path, sample):
    import tarfile

    x, _ = sample
    with tarfile.open(tmp_path / "s.tar.gz", "w:gz") as t:
        for i in range(5):
            Image.fromarray(x[i]).save(tmp_path / f"{i}.png")
            t.add(tmp_path / f"{i}.png", arcname=f"m/{i}.png")
    r = run("predict", "s.tar.gz", "--format", "jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["member"] for rec in recs] == [f"m/{i}.png" for i in range(5)]
    r = run("predict", "s.tar.gz", cwd=tmp_path)
    assert r.stdout.splitlines()[0].split()[0] == "s.tar.gz:m/0.png"


def test_non_utf8_names_stay_valid_utf8(tmp_path, sample):
    bad = os.fsencode(tmp_path) + b"/d\xff,\"x\".png"
    try:
        with open(bad, "wb") as f:
            Image.fromarray(sample[0][0]).save(f, "PNG")
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses non-UTF-8 names")
    open(os.fsencode(tmp_path) + b"/broken\xfe.png", "wb").write(b"junk")
    for fmt in ("text", "csv", "json", "jsonl"):
        p = subprocess.run([sys.executable, "-m", "fastlenet", "predict", str(tmp_path),
                            "--format", fmt], capture_output=True, cwd=tmp_path,
                           env=dict(os.environ, PYTHONIOENCODING="utf-8", LC_ALL="C.UTF-8"))
        assert p.returncode == 1  # the broken file
        out = p.stdout.decode("utf-8")  # strict: must be valid UTF-8
        err = p.stderr.decode("utf-8", "replace")
        assert "Traceback" not in err and "broken\\xfe.png" in err
        if fmt == "csv":
            (row,) = list(csv.DictReader(io.StringIO(out)))
            assert row["path"].endswith('d\\xff,"x".png') and row["label"] == "7"
        elif fmt == "json":
            assert json.loads(out)[0]["path"].endswith('d\\xff,"x".png')
        elif fmt == "jsonl":
            assert json.loads(out)["label"] == "7"
        else:
            assert "d\\xff" in out


def test_eval_labelled_folder_and_csv(tmp_path, sample, net):
    x, y = sample
    root = tmp_path / "labelled"
    lines = ["path,label"]
    for i in range(40):
        d = root / str(y[i])
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - x[i]).save(d / f"{i}.png")  # dark on light: polarity is detected
        lines.append(f"labelled/{y[i]}/{i}.png,{y[i]}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    want = int((net.predict(fastlenet.preprocess(list(255 - x[:40]))) == y[:40]).sum())
    for src in (root, tmp_path / "labels.csv"):
        r = run("eval", src, "--format", "json", "--jobs", "0")
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout)
        assert rep["images"] == 40 and rep["correct"] == want
    (tmp_path / "bad.csv").write_text("a.png,3\nb.png,banana\n")
    r = run("eval", tmp_path / "bad.csv")
    assert r.returncode == 1 and "banana" in r.stderr and "Traceback" not in r.stderr


def test_eval_plot_is_written_before_stdout(idx_files, tmp_path):
    pytest.importorskip("matplotlib")
    images, labels = idx_files
    out = tmp_path / "plot.png"
    p = subprocess.Popen([sys.executable, "-m", "fastlenet", "eval", "--images", str(images),
                          "--labels", str(labels), "--plot", str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=str(TESTS))
    p.stdout.close()  # the reader is gone before the first line
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert out.read_bytes().startswith(b"\x89PNG") and "Traceback" not in err


def test_huge_idx_header_is_one_error(tmp_path):
    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x03" + struct.pack(">3I", 21_900_000, 28, 28))
    r = run("predict", path)
    assert r.returncode == 1 and "truncated" in r.stderr and "Traceback" not in r.stderr
    labels = write_idx(tmp_path / "l-idx1-ubyte", np.zeros(21_900_000 // 1000, np.uint8))
    r = run("eval", "--images", path, "--labels", labels)
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_weights_names_a_bundled_model(tmp_path, capsys, sample):
    from fastlenet import cli

    np.save(tmp_path / "x.npy", sample[0][:5])
    got = {}
    for name in ("mnist", "digits"):
        assert cli.main(["predict", str(tmp_path / "x.npy"), "--weights", name, "--format",
                         "jsonl", "--no-progress", "--jobs", "0"]) == 0
        got[name] = [json.loads(line)["confidence"] for line in capsys.readouterr().out.split("\n")
                     if line]
        want = fastlenet.pretrained(name).predict_proba(sample[0][:5]).max(1)
        np.testing.assert_allclose(got[name], want, atol=1e-6)
    assert got["mnist"] != got["digits"]
