"""Metadata strings from anywhere give only FormatError, and `fastlenet inspect` never prints a
traceback, whatever the weights file holds."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fastlenet
from _hostile import BOMBS
from fastlenet.weights.layout import CANONICAL_SHAPES


def _ucs4(codes) -> np.ndarray:
    """A numpy 'U' scalar made of raw code units, checked by nobody (as a hostile .npz holds)."""
    return np.frombuffer(np.array(codes, "<u4").tobytes(), f"<U{len(codes)}").reshape(())


def _weights():
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in CANONICAL_SHAPES.items()}


def _text(s: str) -> list:
    return [ord(c) for c in s]


HOSTILE_META = {
    "above U+10FFFF in a value": _ucs4(_text('{"name": "') + [0x110000] + _text('"}')),
    "0xFFFFFFFF in a class name": _ucs4(_text('{"classes": ["') + [0xFFFFFFFF] + _text('", "1"]}')),
    "above U+10FFFF outside a string": _ucs4(_text("{") + [0x7FFFFFFF] + _text("}")),
    "a lone surrogate": _ucs4(_text('{"name": "') + [0xD800] + _text('", "pool": "lp"}')),
    "bool": np.array(True),
    "float array": np.zeros(3),
    "nested 10,000 deep": np.array("[" * 10000 + "]" * 10000),
    "a huge integer": np.array('{"mean": ' + "9" * 5000 + "}"),
    "bytes, not UTF-8": np.array(b"\xff\xfe{}"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_META))
def test_any_metadata_string_gives_a_format_error(case, tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, **_weights(), fastlenet_meta=HOSTILE_META[case])
    with pytest.raises(fastlenet.FormatError, match="w.npz"):
        fastlenet.load(path)


def _hostile_files(tmp_path):
    w = _weights()
    files = {}
    for case, meta in HOSTILE_META.items():
        files[case] = tmp_path / f"meta-{len(files)}.npz"
        np.savez(files[case], **w, fastlenet_meta=meta)
    for key in ("c1.bias", "c1.weight", "output.weight"):
        files[f"bool {key}"] = tmp_path / f"bool-{key}.npz"
        np.savez(files[f"bool {key}"], **dict(w, **{key: np.ones(CANONICAL_SHAPES[key], bool)}))
    files["all bool"] = tmp_path / "allbool.npz"
    np.savez(files["all bool"], **{k: np.ones(s, bool) for k, s in CANONICAL_SHAPES.items()})
    files["bool extra"] = tmp_path / "boolextra.npz"
    np.savez(files["bool extra"], **w, extra=np.ones(3, bool))
    for name, make in BOMBS.items():
        files[name] = tmp_path / name
        files[name].write_bytes(make())
    files["empty"] = tmp_path / "empty.npz"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "notes.onnx"
    files["text"].write_text("not a protobuf")
    files["a folder"] = tmp_path
    return files


def test_inspect_never_prints_a_traceback(tmp_path):
    for case, path in _hostile_files(tmp_path).items():
        for extra in ([], ["--no-strict"]):
            r = subprocess.run([sys.executable, "-m", "fastlenet", "inspect", str(path), *extra],
                               capture_output=True, text=True, timeout=120)
            assert "Traceback" not in r.stderr, (case, extra, r.stderr)
            if r.returncode:
                assert r.returncode == 1 and r.stderr.startswith("fastlenet: "), (case, r.stderr)
                assert len(r.stderr.strip().splitlines()) == 1, (case, r.stderr)


def test_predict_with_hostile_weights_prints_one_line(tmp_path):
    files = _hostile_files(tmp_path)
    digit = tmp_path / "digit.npy"
    np.save(digit, np.zeros((28, 28), np.uint8))
    for case in ("above U+10FFFF in a value", "bool c1.bias", "void_bomb.npz", "text"):
        r = subprocess.run([sys.executable, "-m", "fastlenet", "predict", str(digit), "--weights",
                            str(files[case])], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (case, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and str(files[case]) in r.stderr, case
