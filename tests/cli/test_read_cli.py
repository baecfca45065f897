"""`fastlenet read` and `fastlenet eval --fields` (issue 18), in-process through
fastlenet.cli.main (one subprocess at the end checks `python -m fastlenet read` itself)."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import _fields as F
import numpy as np
import pytest
from _helpers import TESTS

from fastlenet.cli import main
from fastlenet.pipeline.fields import read_fields

Image = pytest.importorskip("PIL.Image")

N = 12
HEADER = "path,member,index,text,confidence,error"


@pytest.fixture(scope="module")
def fields_dir(tmp_path_factory):
    """N handwritten fields as PNGs with labels.csv (tests/_fields.write_fields)."""
    root = tmp_path_factory.mktemp("read_cli")
    samples = F.make_fields("handwritten_spaced", N, F.mnist_train_digits(),
                            np.random.default_rng(31))
    labels = F.write_fields(samples, root / "f")
    return root / "f", labels, samples


@pytest.fixture(scope="module")
def want(fields_dir):
    folder, _, _ = fields_dir
    return list(read_fields(str(folder), workers=0))


def _csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_header_and_one_row_per_file(fields_dir, want, capsys):
    folder, _, _ = fields_dir
    assert main(["read", str(folder), "--format", "csv", "--no-progress", "-j", "0"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == HEADER
    rows = _csv_rows(out)
    assert len(rows) == N == len(want)
    for r, w in zip(rows, want):
        assert r["path"] == w.source and r["member"] == "" and r["index"] == ""
        assert r["text"] == w.text and r["error"] == ""
        assert abs(float(r["confidence"]) - w.confidence) <= 1e-5


def test_csv_is_the_default_and_jobs_do_not_matter(fields_dir, capsys):
    folder, _, _ = fields_dir
    assert main(["read", str(folder), "--no-progress", "-j", "0"]) == 0
    a = capsys.readouterr().out
    assert main(["read", str(folder), "--no-progress", "-j", "2"]) == 0
    b = capsys.readouterr().out
    assert a.splitlines()[0] == HEADER
    assert [(r["path"], r["text"]) for r in _csv_rows(a)] == \
        [(r["path"], r["text"]) for r in _csv_rows(b)]


def test_jsonl_rows_have_digits(fields_dir, want, capsys):
    folder, _, _ = fields_dir
    assert main(["read", str(folder), "--format", "jsonl", "--no-progress", "-j", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == N
    for line, w in zip(lines, want):
        rec = json.loads(line)
        assert set(rec) == {"path", "member", "index", "text", "confidence", "digits", "error"}
        assert rec["path"] == w.source and rec["text"] == w.text and rec["error"] is None
        assert rec["member"] is None and rec["index"] is None
        assert len(rec["digits"]) == len(w.text)
        for d, wd in zip(rec["digits"], w.digits):
            assert d["label"] == wd.label and tuple(d["box"]) == wd.box
            assert 0 <= d["confidence"] <= 1 and len(d["alternatives"]) == len(wd.alternatives)
            assert [c for c, _ in d["alternatives"]] == [c for c, _ in wd.alternatives]
        assert "".join(str(d["label"]) for d in rec["digits"]) == rec["text"]


def test_json_parses(fields_dir, want, capsys):
    folder, _, _ = fields_dir
    assert main(["read", str(folder), "--format", "json", "--no-progress", "-j", "0"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert [r["text"] for r in recs] == [w.text for w in want]
    assert all(isinstance(r["digits"], list) for r in recs)


def test_json_of_nothing_parses(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["read", str(empty), "--format", "json", "--no-progress"]) == 1
    cap = capsys.readouterr()
    assert json.loads(cap.out) == [] and "no images found" in cap.err


def test_text_format(fields_dir, want, capsys):
    folder, _, _ = fields_dir
    assert main(["read", str(folder), "--format", "text", "--no-progress", "-j", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == N
    for line, w in zip(lines, want):
        assert line.split()[:2] == [w.source, w.text or "-"]


@pytest.mark.parametrize("arg,ok", [("3", lambda n: n == 3), ("2-4", lambda n: 2 <= n <= 4),
                                    ("0-1", lambda n: n <= 1)])
def test_length(fields_dir, capsys, arg, ok):
    folder, _, _ = fields_dir
    assert main(["read", str(folder), "--length", arg, "--no-progress", "-j", "0"]) == 0
    rows = _csv_rows(capsys.readouterr().out)
    assert len(rows) == N
    assert all(ok(len(r["text"])) for r in rows), [r["text"] for r in rows]


@pytest.mark.parametrize("bad", ["x", "3-", "-3", "a-b", "2-4-6", ""])
def test_bad_length_is_a_usage_error(fields_dir, capsys, bad):
    folder, _, _ = fields_dir
    with pytest.raises(SystemExit) as e:
        main(["read", str(folder), "--length", bad, "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "--length" in err


@pytest.mark.parametrize("bad", ["97", "4-2", "0-97"])
def test_out_of_range_length_is_refused_before_any_output(fields_dir, capsys, bad):
    """A --length that parses but is out of range (97 > the 96 bound, or 4-2) is a usage error
    before any output, as 'x' is."""
    folder, _, _ = fields_dir
    code = None
    try:
        code = main(["read", str(folder), "--length", bad, "--no-progress", "-j", "0"])
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    assert code in (1, 2) and "length" in cap.err
    assert cap.out == "", cap.out
    assert "range(" not in cap.err


def test_invert_option(fields_dir, tmp_path, capsys):
    """--invert no reads dark-on-light as auto does; a light-on-dark copy with --invert yes
    reads the same digits."""
    folder, _, samples = fields_dir
    inv = tmp_path / "inv.png"
    Image.fromarray(255 - samples[0].image).save(inv)
    good = folder / "00000.png"
    assert main(["read", str(good), "--no-progress", "-j", "0"]) == 0
    base = _csv_rows(capsys.readouterr().out)[0]["text"]
    assert main(["read", str(good), "--invert", "no", "--no-progress", "-j", "0"]) == 0
    assert _csv_rows(capsys.readouterr().out)[0]["text"] == base
    assert main(["read", str(inv), "--invert", "yes", "--no-progress", "-j", "0"]) == 0
    assert _csv_rows(capsys.readouterr().out)[0]["text"] == base


def test_plot_writes_a_png(fields_dir, tmp_path, capsys):
    folder, _, _ = fields_dir
    out = tmp_path / "plot.png"
    assert main(["read", str(folder), "--plot", str(out), "--no-progress", "-j", "0"]) == 0
    capsys.readouterr()
    with Image.open(out) as im:
        im.load()
        assert im.format == "PNG" and im.width > 220 and im.height > 16
        # red boxes were drawn
        a = np.asarray(im.convert("RGB"))
        assert ((a[..., 0] > 200) & (a[..., 1] < 40) & (a[..., 2] < 40)).sum() > 50


def test_plot_of_shard_and_npy_fields(fields_dir, tmp_path, capsys):
    """--plot decodes the fields again: shard members and .npy images too."""
    import tarfile

    _, _, samples = fields_dir
    tar = tmp_path / "s.tar"
    with tarfile.open(tar, "w") as t:
        for i in range(2):
            buf = io.BytesIO()
            Image.fromarray(samples[i].image).save(buf, format="PNG")
            info = tarfile.TarInfo(f"m{i}.png")
            info.size = buf.tell()
            buf.seek(0)
            t.addfile(info, buf)
    npy = tmp_path / "s.npy"
    h = max(s.image.shape[0] for s in samples[:2])
    w = max(s.image.shape[1] for s in samples[:2])
    stack = np.full((2, h, w), 255, np.uint8)
    for i in range(2):
        stack[i, : samples[i].image.shape[0], : samples[i].image.shape[1]] = samples[i].image
    np.save(npy, stack)
    out = tmp_path / "p.png"
    assert main(["read", str(tar), str(npy), "--plot", str(out), "--no-progress", "-j", "0"]) == 0
    cap = capsys.readouterr()
    assert "--plot" not in cap.err, cap.err
    assert len(_csv_rows(cap.out)) == 4
    with Image.open(out) as im:
        im.load()
        assert im.height > 4 * 16


def test_unreadable_input_exit_1_error_row_and_stderr(fields_dir, tmp_path, capsys):
    folder, _, _ = fields_dir
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    missing = tmp_path / "missing.png"
    good = folder / "00000.png"
    assert main(["read", str(good), str(bad), str(missing), "--no-progress", "-j", "0"]) == 1
    cap = capsys.readouterr()
    rows = _csv_rows(cap.out)
    assert [r["path"] for r in rows] == [str(good), str(bad), str(missing)]
    assert rows[0]["error"] == "" and rows[0]["text"]
    for r in rows[1:]:
        assert r["error"] and r["text"] == "" and r["confidence"] == ""
    err = cap.err.splitlines()
    assert any(line.startswith(f"fastlenet: {bad}: ") for line in err), cap.err
    assert any(line.startswith(f"fastlenet: {missing}: ") for line in err), cap.err
    assert "2 input(s) failed; 1 field(s) read" in cap.err


def test_no_images(tmp_path, capsys):
    (tmp_path / "e").mkdir()
    assert main(["read", str(tmp_path / "e"), "--no-progress"]) == 1
    assert "no images found" in capsys.readouterr().err


def test_bad_weights_one_line(fields_dir, tmp_path, capsys):
    folder, _, _ = fields_dir
    assert main(["read", str(folder), "--weights", str(tmp_path / "nope.npz"),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nope.npz" in err


def test_weights_given_twice_read_together(fields_dir, capsys):
    """--weights A --weights B reads with both (fastlenet.fields.check_net's mean); the bundled
    models named so read as the default does at the same precision; one model alone reads as
    read_fields with it."""
    import fastlenet

    folder, _, _ = fields_dir
    runs = {}
    named = ["--weights", "fields", "--weights", "fields2", "--weights", "pairs"]
    for key, extra in (("default", []), ("named", named), ("one", ["--weights", "fields2"])):
        assert main(["read", str(folder), "--no-progress", "-j", "0", "--precision", "fp32"]
                    + extra) == 0
        runs[key] = _csv_rows(capsys.readouterr().out)
    assert runs["named"] == runs["default"]
    alone = list(read_fields(str(folder), fastlenet.pretrained("fields2"), workers=0))
    assert [r["text"] for r in runs["one"]] == [f.text for f in alone]
    assert [abs(float(r["confidence"]) - f.confidence) <= 1e-5
            for r, f in zip(runs["one"], alone)] == [True] * N


def test_a_name_with_a_comma_is_quoted(fields_dir, tmp_path, capsys):
    _, _, samples = fields_dir
    p = tmp_path / 'a,b"c.png'
    Image.fromarray(samples[0].image).save(p)
    assert main(["read", str(p), "--no-progress", "-j", "0"]) == 0
    (row,) = _csv_rows(capsys.readouterr().out)
    assert row["path"] == str(p) and row["text"]


# ---- eval --fields ------------------------------------------------------------------------------
def test_eval_fields_text(fields_dir, want, capsys):
    folder, labels, samples = fields_dir
    assert main(["eval", "--fields", str(labels), "--no-progress", "-j", "0"]) == 0
    out = capsys.readouterr().out
    exact = sum(w.text == s.text for w, s in zip(want, samples))
    assert f"fields: {N}  exact strings: {exact} " in out
    assert "digits: " in out and "read right" in out
    if exact < N:
        assert "worst fields" in out


def test_eval_fields_json(fields_dir, want, capsys):
    folder, labels, samples = fields_dir
    assert main(["eval", "--fields", str(labels), "--format", "json", "--no-progress",
                 "-j", "0"]) == 0
    rep = json.loads(capsys.readouterr().out)
    exact = sum(w.text == s.text for w, s in zip(want, samples))
    assert rep["fields"] == N and rep["exact"] == exact and rep["failed"] == 0
    assert rep["string_accuracy"] == pytest.approx(exact / N)
    assert rep["digits"] == sum(len(s.text) for s in samples)
    assert 0.8 <= rep["digit_accuracy"] <= 1.0
    assert len(rep["worst"]) == N - exact
    for w in rep["worst"]:
        assert w["edits"] >= 1 and w["truth"] != w["read"]


def test_eval_fields_with_a_bad_file_and_a_bad_csv(fields_dir, tmp_path, capsys):
    folder, _, samples = fields_dir
    d = tmp_path / "ev"
    d.mkdir()
    Image.fromarray(samples[0].image).save(d / "a.png")
    (d / "b.png").write_bytes(b"junk")
    (d / "labels.csv").write_text(f"path,text\na.png,{samples[0].text}\nb.png,123\n")
    assert main(["eval", "--fields", str(d / "labels.csv"), "--format", "json",
                 "--no-progress", "-j", "0"]) == 1
    cap = capsys.readouterr()
    rep = json.loads(cap.out)
    assert rep["fields"] == 1 and rep["failed"] == 1
    assert "b.png" in cap.err
    (d / "bad.csv").write_text("path,text\na.png,12x4\n")
    assert main(["eval", "--fields", str(d / "bad.csv"), "--no-progress"]) == 1
    assert "line 2" in capsys.readouterr().err
    assert main(["eval", "--fields", str(d / "nope.csv"), "--no-progress"]) == 1
    assert "nope.csv" in capsys.readouterr().err


def test_eval_fields_spaces_in_truth_are_layout(fields_dir, tmp_path, capsys):
    _, _, samples = fields_dir
    d = tmp_path / "sp"
    d.mkdir()
    Image.fromarray(samples[0].image).save(d / "a.png")
    got = list(read_fields(str(d / "a.png"), workers=0))[0].text
    spaced = " ".join(got)
    (d / "labels.csv").write_text(f'path,text\na.png,"{spaced}"\n')
    assert main(["eval", "--fields", str(d / "labels.csv"), "--format", "json",
                 "--no-progress", "-j", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["exact"] == 1


# ---- the installed command ----------------------------------------------------------------------
def test_python_m_fastlenet_read(fields_dir, want):
    folder, _, _ = fields_dir
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-m", "fastlenet", "read", str(folder), "--no-progress"],
                       capture_output=True, text=True, timeout=120, cwd=str(TESTS), env=env)
    assert r.returncode == 0, r.stderr
    rows = _csv_rows(r.stdout)
    assert [x["text"] for x in rows] == [w.text for w in want]
