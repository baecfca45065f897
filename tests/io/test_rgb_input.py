"""fastlenet.io.decode.to_rgb_input: colour pictures -> uint8 (32, 32, 3) input for a 3-channel model, and the
CLI's --top-k limit of K."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import fastlenet
from fastlenet.io import decode as images
from _helpers import TESTS  # noqa: E402

PIL = pytest.importorskip("PIL.Image")
DATA = TESTS / "data" / "frameworks"


def _picture(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full((h, w), 128)], -1).astype(np.uint8)


def test_array_and_file_give_the_same_input(tmp_path):
    a = _picture()
    PIL.fromarray(a).save(tmp_path / "p.png")
    got = images.to_rgb_input(tmp_path / "p.png")
    assert got.shape == (32, 32, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, images.to_rgb_input(a))
    np.testing.assert_array_equal(got, images.to_rgb_input(io.BytesIO((tmp_path / "p.png").read_bytes())))
    want = np.asarray(PIL.fromarray(a).resize((32, 32), PIL.BILINEAR))
    np.testing.assert_array_equal(got, want)  # the whole picture, resized: no crop, no invert


def test_modes_alpha_gray_float():
    a = _picture(32, 32)
    np.testing.assert_array_equal(images.to_rgb_input(a), a)  # already 32x32: untouched
    rgba = np.concatenate([a, np.zeros((32, 32, 1), np.uint8)], -1)  # fully transparent
    assert (images.to_rgb_input(rgba) == 255).all()  # composited on white
    g = a[..., 0]
    out = images.to_rgb_input(g)
    assert (out == g[..., None]).all()
    np.testing.assert_array_equal(images.to_rgb_input(a / 255.0), a)
    with pytest.raises(ValueError, match=r"img: expected \(H, W\)"):
        images.to_rgb_input(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="not an image file"):
        images.to_rgb_input(io.BytesIO(b"not an image"))


def test_feeds_a_colour_model(tmp_path):
    with np.load(DATA / "torch_cifar10.expect.npz") as e:
        x = e["x"]
    net = fastlenet.load(DATA / "torch_cifar10.safetensors", activation="relu", pool="max")
    pics = [(np.transpose(img, (1, 2, 0)) * 255 + 0.5).astype(np.uint8) for img in x]
    batch = np.stack([images.to_rgb_input(p) for p in pics])
    np.testing.assert_allclose(net.logits(batch), net.logits(x), atol=0.05)  # uint8 rounding only


def test_cli_top_k_goes_up_to_k(tmp_path, capsys):
    from fastlenet import cli

    w = fastlenet.pretrained().weights
    rng = np.random.default_rng(0)
    w["output.weight"] = rng.standard_normal((26, 84)).astype(np.float32)
    w["output.bias"] = np.zeros(26, np.float32)
    letters = [chr(65 + i) for i in range(26)]
    fastlenet.Net(w, {"classes": letters}).save(tmp_path / "letters.npz")
    np.save(tmp_path / "x.npy", rng.integers(0, 255, (2, 28, 28), np.uint8))
    rc = cli.main(["predict", str(tmp_path / "x.npy"), "--weights", str(tmp_path / "letters.npz"),
                   "--top-k", "40", "--format", "jsonl", "--no-progress"])
    assert rc == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and all(len(r["top"]) == 26 for r in rows)
    assert {t["label"] for t in rows[0]["top"]} == set(letters)


def _colour_files(tmp_path):
    rng = np.random.default_rng(1)
    pics = [rng.integers(0, 256, (40 + 3 * i, 50, 3), np.uint8) for i in range(5)]
    for i, p in enumerate(pics):
        PIL.fromarray(p).save(tmp_path / f"p{i}.png")
    (tmp_path / "p5.png").write_bytes(b"not a picture")
    return pics


def test_predict_files_reads_colour_pictures_for_a_colour_model(tmp_path):
    net = fastlenet.load(DATA / "torch_cifar10.safetensors", activation="relu", pool="max")
    pics = _colour_files(tmp_path)
    for workers in (0, 2):
        got = list(fastlenet.predict_files(tmp_path, net, workers=workers, top_k=3))
        assert [p.error is None for p in got] == [True] * 5 + [False]
        want = net.predict_proba(np.stack([images.to_rgb_input(p) for p in pics]))
        np.testing.assert_array_equal([p.label for p in got[:5]], want.argmax(1))
        np.testing.assert_array_equal([p.confidence for p in got[:5]], want.max(1))
        assert all(len(p.top_k) == 3 for p in got[:5])
    np.save(tmp_path / "batch.npy", np.stack(pics[:1] * 3))  # (3, 40, 50, 3) colour batch
    rows = list(fastlenet.predict_files(tmp_path / "batch.npy", net, workers=0))
    want = net.predict(images.to_rgb_input(pics[0])[None])[0]
    assert [(r.index, r.label) for r in rows] == [(0, want), (1, want), (2, want)]


def test_cli_predicts_colour_files(tmp_path, capsys):
    from fastlenet import cli

    _colour_files(tmp_path)
    rc = cli.main(["predict", str(tmp_path), "--weights", str(DATA / "torch_cifar10.safetensors"),
                   "--format", "jsonl", "--no-progress", "--threads", "1"])
    cap = capsys.readouterr()
    out = [json.loads(line) for line in cap.out.splitlines()]
    assert rc == 1  # the one bad file: one line on stderr, the five pictures predicted
    assert len(out) == 5 and all(0 <= r["class"] < 10 for r in out)
    assert "p5.png" in cap.err and "not an image file" in cap.err
