"""Weights files as the frameworks write them (tests/data/frameworks, made by
tools/fixtures/make_fixtures.py's "files" family): .safetensors from PyTorch, Keras's .keras archives, legacy
.h5 models and .weights.h5, for K other than 10 and RGB input. fastlenet.load reproduces each
framework's own logits, F6 features and output probabilities at every ISA, with no keyword
arguments where the file records the activation and pooling. Also: the readers on hostile or
malformed files (size budget, overlaps, links), and `fastlenet inspect`."""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastlenet
from fastlenet.weights import loader, safetensors as st_reader
from fastlenet.weights.checks import FormatError
from _helpers import TESTS  # noqa: E402

DATA = TESTS / "data" / "frameworks"
FILE_FIXTURES = sorted(p.name[: -len(".expect.npz")] for p in DATA.glob("*.expect.npz")
                       if not (DATA / p.name.replace(".expect.npz", ".npz")).exists()
                       and not (DATA / p.name.replace(".expect.npz", ".onnx")).exists())
TOL = 1e-4


def _expect(name):
    with np.load(DATA / f"{name}.expect.npz", allow_pickle=False) as e:
        return {k: e[k] if e[k].dtype.kind in "fi" else str(e[k]) for k in e.files}


def _needs(path):
    if str(path).endswith((".keras", ".h5")):
        pytest.importorskip("h5py")


def test_the_file_fixtures_cover_each_format_and_shape():
    seen = {(Path(_expect(n)["weights_file"]).name.split(".", 1)[1], int(_expect(n)["num_classes"]),
             int(_expect(n)["in_channels"])) for n in FILE_FIXTURES}
    suffixes = {s for s, _, _ in seen}
    assert {"safetensors", "keras", "h5", "weights.h5"} <= suffixes
    assert any(k != 10 for _, k, _ in seen) and any(c == 3 for _, _, c in seen)
    assert ("keras", 47, 1) in seen and ("safetensors", 10, 3) in seen and ("keras", 43, 3) in seen


@pytest.mark.parametrize("name", FILE_FIXTURES)
@pytest.mark.parametrize("isa", ["scalar", "generic", "avx2", "avx512"])
def test_file_matches_framework(name, isa):
    if isa not in fastlenet.available_isas():
        pytest.skip(f"{isa} not available on this CPU")
    e = _expect(name)
    path = DATA / e["weights_file"]
    _needs(path)
    net = fastlenet.load(path, **json.loads(e["load_kwargs"]))
    net.isa = isa
    k, c = int(e["num_classes"]), int(e["in_channels"])
    assert (net.num_classes, net.in_channels) == (k, c)
    assert net.classes == [str(i) for i in range(k)]
    x = e["x"]
    assert np.std(e["logits"]) > 1e-2  # not degenerate: a wrong reorder would show
    np.testing.assert_allclose(net.logits(x), e["logits"], rtol=0, atol=TOL)
    np.testing.assert_allclose(net.features(x), e["features"], rtol=0, atol=TOL)
    np.testing.assert_allclose(net.predict_proba(x), e["proba"], rtol=0, atol=1e-5)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(net.logits(nhwc), e["logits"], rtol=0, atol=TOL)
    np.testing.assert_array_equal(net.predict(x), e["logits"].argmax(1))


@pytest.mark.parametrize("name", [n for n in FILE_FIXTURES if ".keras" in _expect(n)["weights_file"]
                                  or _expect(n)["weights_file"].endswith(".h5") and
                                  not _expect(n)["weights_file"].endswith(".weights.h5")])
def test_keras_files_say_their_activation_and_pooling(name):
    """A .keras config or a legacy model_config records the architecture: no keyword arguments,
    and the file's own statement is what the Net runs."""
    pytest.importorskip("h5py")
    e = _expect(name)
    assert e["load_kwargs"] == "{}"
    net = fastlenet.load(DATA / e["weights_file"])
    assert net.meta["source"] == "keras"
    wrong = "tanh" if net.activation != "tanh" else "relu"
    other = fastlenet.load(DATA / e["weights_file"], activation=wrong)  # the caller may override
    assert other.activation == wrong
    assert not np.allclose(other.logits(e["x"]), e["logits"], atol=TOL)


def test_keras_optimizer_state_loads_strictly():
    h5py = pytest.importorskip("h5py")
    with zipfile.ZipFile(DATA / "keras_emnist47.keras") as zf:
        with h5py.File(io.BytesIO(zf.read("model.weights.h5"))) as f:
            assert len(f["optimizer/vars"]) > 10  # Adam's slots are in the file
    conv = loader.inspect(DATA / "keras_emnist47.keras", strict=True)
    assert not conv.ignored and conv.framework == "keras"


def test_weights_h5_layer_names_in_no_sorted_order():
    pytest.importorskip("h5py")
    conv = loader.inspect(DATA / "keras_sigmoid.weights.h5")
    placed = {dst: src for src, dst, _, _ in conv.mapping}
    assert placed["c1.weight"] == "zeta/kernel" and placed["c3.weight"] == "alpha/kernel"
    assert placed["c5.weight"] == "mid/kernel" and placed["f6.weight"] == "c5/kernel"
    assert placed["output.weight"] == "out/kernel"


def test_safetensors_records_no_activation_so_the_caller_names_it():
    e = _expect("torch_cifar10")
    net = fastlenet.load(DATA / "torch_cifar10.safetensors")  # tanh/avg defaults: wrong model
    assert not np.allclose(net.logits(e["x"]), e["logits"], atol=TOL)


def test_torch_save_files_stay_refused_with_the_export_line(tmp_path):
    # what torch.save writes: a zip holding archive/data.pkl (made here without torch)
    with zipfile.ZipFile(tmp_path / "m.pt", "w") as zf:
        zf.writestr("m/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("m/version", b"3\n")
    with pytest.raises(FormatError, match=r"never unpickles.*state_dict"):
        fastlenet.load(tmp_path / "m.pt")
    (tmp_path / "old.pth").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(FormatError, match=r"pickle.*state_dict"):
        fastlenet.load(tmp_path / "old.pth")


# ---- safetensors: our reader against the package, and on malformed files ------------------------
def _st_bytes(tensors: dict, meta=None, raw_header=None) -> bytes:
    """A safetensors file written by hand (for malformed variants)."""
    header, blobs, off = {}, [], 0
    names = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<f2"): "F16",
             np.dtype("<i8"): "I64"}
    for k, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[k] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if meta:
        header["__metadata__"] = meta
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def _cifar_arrays():
    return loader.read_weights(DATA / "torch_cifar10.safetensors")


def test_safetensors_reader_agrees_with_the_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    ours = _cifar_arrays()
    theirs = st.load_file(str(DATA / "torch_cifar10.safetensors"))
    assert list(ours) == list(theirs) or set(ours) == set(theirs)
    for k in theirs:
        np.testing.assert_array_equal(ours[k], theirs[k])
    # dtypes the package writes: float16, float64, int64 beside the weights
    arrays = {k: v.astype(np.float64) for k, v in theirs.items()}
    arrays["num_batches_tracked"] = np.array(7, np.int64)
    st.save_file(arrays, str(tmp_path / "f64.safetensors"), metadata={"fastlenet_meta": json.dumps(
        {"activation": "relu", "pool": "max", "classes": list("abcdefghij")})})
    net = fastlenet.load(tmp_path / "f64.safetensors", strict=False)
    e = _expect("torch_cifar10")
    np.testing.assert_allclose(net.logits(e["x"]), e["logits"], atol=TOL)
    assert net.classes == list("abcdefghij") and net.activation == "relu"


def test_safetensors_bfloat16_is_widened(tmp_path):
    a = np.array([1.0, -2.5, 3.140625], np.float32)
    bits = (a.view(np.uint32) >> 16).astype("<u2")
    h = json.dumps({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    (tmp_path / "b.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + bits.tobytes())
    out = st_reader.read(tmp_path / "b.safetensors", 1 << 24)
    np.testing.assert_array_equal(out["w"], a)


def test_safetensors_is_recognised_by_its_bytes_whatever_the_suffix(tmp_path):
    data = (DATA / "torch_cifar10.safetensors").read_bytes()
    (tmp_path / "model.bin").write_bytes(data)
    assert fastlenet.load(tmp_path / "model.bin", activation="relu", pool="max").in_channels == 3


@pytest.mark.parametrize("case,pattern", [
    ("truncated_header", r"declares a \d+-byte header but the file has"),
    ("truncated_data", r"outside the file's \d+-byte data section"),
    ("overlap", r"overlap"),
    ("duplicate", r"names 'a' twice"),
    ("bad_json", r"header is not valid JSON"),
    ("shape_mismatch", r"takes 16 bytes but data_offsets span 12"),
    ("huge", r"outside the file's \d+-byte data section"),
    ("bad_dtype", r"unsupported dtype 'C64'"),
    ("not_object", r"header is a JSON list"),
    ("bad_meta", r"__metadata__ must map names to strings"),
])
def test_safetensors_malformed_files_are_refused_before_reading(tmp_path, case, pattern):
    a = np.arange(4, dtype=np.float32)
    good = {"a": a, "b": a + 1}
    if case == "truncated_header":
        data = _st_bytes(good)[:20]
    elif case == "truncated_data":
        data = _st_bytes(good)[:-4]
    elif case == "overlap":
        h = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}).encode()
        data = struct.pack("<Q", len(h)) + h + bytes(24)
    elif case == "duplicate":
        h = (b'{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, '
             b'"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}')
        data = struct.pack("<Q", len(h)) + h + bytes(32)
    elif case == "bad_json":
        data = _st_bytes(good, raw_header=b"{not json")
    elif case == "shape_mismatch":
        h = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}).encode()
        data = struct.pack("<Q", len(h)) + h + bytes(12)
    elif case == "huge":
        h = json.dumps({"a": {"dtype": "U8", "shape": [1 << 30], "data_offsets": [0, 1 << 30]}}).encode()
        data = struct.pack("<Q", len(h)) + h  # the file itself is tiny: refused on the header
        h2 = json.dumps({"a": {"dtype": "U8", "shape": [1 << 25], "data_offsets": [0, 1 << 25]}}).encode()
        p = tmp_path / "sparse.safetensors"
        with open(p, "wb") as f:  # a sparse file that really is that long
            f.write(struct.pack("<Q", len(h2)) + h2)
            f.truncate(8 + len(h2) + (1 << 25))
        with pytest.raises(FormatError, match=r"far larger than any LeNet-5 weight"):
            fastlenet.load(p)
    elif case == "bad_dtype":
        h = json.dumps({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}).encode()
        data = struct.pack("<Q", len(h)) + h + bytes(8)
    elif case == "not_object":
        data = _st_bytes(good, raw_header=b"[1, 2]")
    elif case == "bad_meta":
        data = _st_bytes(good, meta={"x": 1})
    path = tmp_path / "m.safetensors"
    path.write_bytes(data)
    with pytest.raises(FormatError, match=pattern) as ei:
        fastlenet.load(path)
    assert str(path) in str(ei.value)


# ---- Keras / HDF5: malformed and hostile files ------------------------------------------------------
def _copy_keras(tmp_path, edit_config=None, drop=None):
    src = DATA / "keras_emnist47.keras"
    dst = tmp_path / "m.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename == drop:
                continue
            data = zin.read(info)
            if info.filename == "config.json" and edit_config:
                cfg = json.loads(data)
                edit_config(cfg["config"]["layers"])
                data = json.dumps(cfg).encode()
            zout.writestr(info.filename, data)
    return dst


@pytest.mark.parametrize("edit,pattern", [
    (lambda ls: ls[1]["config"].update(activation="elu"), r"activation 'elu' is not one fastlenet runs"),
    (lambda ls: ls[3]["config"].update(activation="tanh"), r"hidden layers' activations"),
    (lambda ls: ls[2].update(class_name="AveragePooling2D"), r"pooling layers \['avg', 'max'\]"),
    (lambda ls: ls[3]["config"].update(padding="same"), r"padding 'same'"),
    (lambda ls: ls[3]["config"].update(strides=[2, 2]), r"5x5, stride 1"),
    (lambda ls: ls.insert(1, {"class_name": "Rescaling", "config": {"name": "rescaling"}}),
     r"layer 'rescaling' \(Rescaling\): a layer fastlenet does not run"),
    (lambda ls: ls[1]["config"].update(data_format="channels_first"), r"channels_last"),
])
def test_keras_architectures_fastlenet_cannot_run_are_refused_by_name(tmp_path, edit, pattern):
    pytest.importorskip("h5py")
    path = _copy_keras(tmp_path, edit)
    with pytest.raises(FormatError, match=pattern) as ei:
        fastlenet.load(path)
    assert str(path) in str(ei.value)


def test_keras_archive_without_weights(tmp_path):
    path = _copy_keras(tmp_path, drop="model.weights.h5")
    # no longer recognised as a .keras archive by its members, but the suffix says so
    with pytest.raises(FormatError, match=r"not a Keras \.keras archive \(no model\.weights\.h5"):
        fastlenet.load(path)


def test_h5_corrupt_and_not_keras(tmp_path):
    h5py = pytest.importorskip("h5py")
    data = (DATA / "keras_letters26.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(FormatError, match=r"cut\.h5"):
        fastlenet.load(tmp_path / "cut.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(FormatError, match=r"other\.h5: no layer weights"):
        fastlenet.load(tmp_path / "other.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(FormatError, match=r"not an HDF5 file"):
        fastlenet.load(tmp_path / "text.h5")


def test_h5_external_links_are_not_followed(tmp_path):
    h5py = pytest.importorskip("h5py")
    secret = tmp_path / "elsewhere.h5"
    with h5py.File(secret, "w") as f:
        f["layers/conv2d/vars/0"] = np.zeros((5, 5, 1, 6), np.float32)
    path = tmp_path / "m.weights.h5"
    with h5py.File(path, "w") as f:
        f["layers"] = h5py.ExternalLink(str(secret), "/layers")
    with pytest.raises(FormatError, match=r"no layer weights"):
        fastlenet.load(path)


def test_h5_dataset_size_is_checked_before_reading(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "big.weights.h5"
    with h5py.File(path, "w") as f:  # chunked and empty: huge declared, tiny on disk
        f.create_dataset("layers/conv2d/vars/0", shape=(1 << 26,), dtype="f4", chunks=(1024,))
    with pytest.raises(FormatError, match=r"far larger than any LeNet-5 weight"):
        fastlenet.load(path)


def test_keras_without_h5py_says_how_to_fix(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py" or name.startswith("h5py."):
            raise ImportError("No module named 'h5py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(ImportError, match=r"fastlenet\[keras\]"):
        fastlenet.load(DATA / "keras_emnist47.keras")


# ---- the command line -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FILE_FIXTURES)
def test_inspect_shows_classes_and_channels(name):
    e = _expect(name)
    _needs(DATA / e["weights_file"])
    r = subprocess.run([sys.executable, "-m", "fastlenet", "inspect", str(DATA / e["weights_file"])],
                       capture_output=True, text=True, cwd=TESTS)
    assert r.returncode == 0, r.stderr
    k, c = int(e["num_classes"]), int(e["in_channels"])
    assert f"classes: {k}" in r.stdout
    assert f"input: {c} channel" in r.stdout


def test_legacy_h5_with_a_keras_2_2_config_and_tf_weight_names(tmp_path):
    """Keras <= 2.2 stored a Sequential config as the bare layer list, and tf.keras names weights
    'conv2d/kernel:0': both read as the same model."""
    import shutil

    h5py = pytest.importorskip("h5py")
    e = _expect("keras_letters26")
    path = tmp_path / "old.h5"
    shutil.copy(DATA / "keras_letters26.h5", path)
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"] = cfg["config"]["layers"]
        f.attrs["model_config"] = json.dumps(cfg).encode()
        mw = f["model_weights"]
        for lname in [n.decode() if isinstance(n, bytes) else n for n in mw.attrs["layer_names"]]:
            g = mw[lname]
            names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
            new = []
            for n in names:
                tf_name = n.split("/", 1)[1] + ":0"  # sequential/conv2d/kernel -> conv2d/kernel:0
                g[tf_name] = g[n][()]
                del g[n]
                new.append(tf_name.encode())
            if new:
                g.attrs["weight_names"] = new
    net = fastlenet.load(path)
    assert net.activation == "tanh" and net.num_classes == 26
    np.testing.assert_allclose(net.logits(e["x"]), e["logits"], rtol=0, atol=TOL)


def test_h5_hard_link_cycles_do_not_hang(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "cycle.weights.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("layers")
        for i in range(20):  # 20 links back to itself: 20**16 paths if each were followed
            g[f"self{i}"] = g
    with pytest.raises(FormatError, match=r"no layer weights"):
        fastlenet.load(path)
