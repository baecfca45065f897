"""Every bad input raises a clear Python exception that names what is wrong: wrong shapes and
dtypes, bad weights, hostile or broken files, bad metadata, bad settings. Never a crash."""
from __future__ import annotations

import io
import os
import pickle
import re
import struct
import zipfile

import numpy as np
import pytest

import fastlenet
from fastlenet.weights import CANONICAL_SHAPES, WeightsError

from _helpers import images, make_net
from _helpers import TESTS  # noqa: E402


def _all(*parts: str) -> str:
    """A regex that matches a message containing every one of `parts` (regexes), in any
    order: the tests pin what a message must say, not its exact wording."""
    return "(?s)" + "".join(f"(?=.*{p})" for p in parts)


def test_weights_error_is_a_value_error():
    assert issubclass(WeightsError, ValueError)


# ---- inputs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 32, 32, 3), (32,), (4, 2, 32, 32), (4, 30, 30), (),
                                   (32, 28), (4, 32, 28), (2, 3, 1, 32, 32), (2, 32, 32, 2),
                                   (2, 1, 28, 32), (1, 1), (0,), (0, 0, 0)])
def test_wrong_shape(shape):
    net = make_net()
    x = np.zeros(shape, np.float32)
    msg = re.escape(f"got shape {shape}")
    for method in (net.logits, net.predict, net.predict_proba, net.features):
        with pytest.raises(ValueError, match=r"^x: expected an image of shape \(32, 32\).*" + msg):
            method(x)


@pytest.mark.parametrize("dtype", ["int64", "int32", "int8", "uint16", "float16", "bool",
                                   "complex64", "complex128", "longdouble", "object"])
def test_wrong_dtype(dtype):
    x = np.zeros((2, 32, 32), dtype=dtype)
    with pytest.raises(TypeError, match=rf"x: expected dtype float32, float64 or uint8; "
                                        rf"got {np.dtype(dtype)}"):
        make_net().logits(x)


def test_wrong_dtype_is_reported_before_shape():
    with pytest.raises(TypeError, match="got int64"):
        make_net().predict(np.zeros((3, 7), np.int64))


@pytest.mark.parametrize("x", [["a"] * 3, [["x"] * 32] * 32, "image", b"\x00" * 1024, None,
                               {"a": 1}])
def test_non_numeric_inputs(x):
    with pytest.raises(TypeError, match="x: expected dtype float32, float64 or uint8"):
        make_net().logits(x)


def test_ragged_list_input():
    with pytest.raises(ValueError, match="x: "):
        make_net().logits([np.zeros((32, 32)), np.zeros((28, 28))])


def test_python_int_list_is_refused_with_advice():
    with pytest.raises(TypeError, match=r"got int64\. Convert with x\.astype\(np\.float32\)"):
        make_net().logits(np.zeros((32, 32), dtype=np.int64).tolist())


# ---- weights ----------------------------------------------------------------------------------
def test_missing_weight(rand_weights):
    del rand_weights["f6.bias"]
    with pytest.raises(WeightsError, match=r"^weights: .*missing '?f6\.bias"):
        fastlenet.Net(rand_weights)
    with pytest.raises(WeightsError, match=r"missing '?f6\.bias"):
        fastlenet.Net.from_weights(rand_weights)


def test_unexpected_key(rand_weights):
    rand_weights["c7.weight"] = np.zeros(3, np.float32)
    with pytest.raises(WeightsError, match=_all(r"(extra|unexpected)", r"'c7\.weight'")):
        fastlenet.Net(rand_weights)


@pytest.mark.parametrize("key,shape", [("c3.weight", (16, 6, 3, 3)), ("c1.bias", (7,)),
                                       ("f6.weight", (120, 84)), ("output.bias", (10, 1)),
                                       ("c1.weight", (6, 5, 5))])
def test_misshapen_weight(rand_weights, key, shape):
    rand_weights[key] = np.zeros(shape, np.float32)
    with pytest.raises(WeightsError, match=_all(re.escape(f"key {key!r}"), re.escape(str(shape)),
                                                re.escape(str(CANONICAL_SHAPES[key])))):
        fastlenet.Net(rand_weights)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("key", ["c1.weight", "c5.bias", "output.weight"])
def test_non_finite_weight(rand_weights, key, bad):
    a = rand_weights[key].copy()
    a.flat[a.size // 2] = bad
    rand_weights[key] = a
    with pytest.raises(WeightsError, match=_all(re.escape(f"key {key!r}"), "non-finite")):
        fastlenet.Net(rand_weights)


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool", "complex64"])
def test_non_float_weights(rand_weights, dtype):
    rand_weights["c3.bias"] = np.ones(16, dtype)
    with pytest.raises(WeightsError, match=_all(r"key 'c3\.bias'", rf"\b{dtype}\b", "floating")):
        fastlenet.Net(rand_weights)


def test_object_weights(rand_weights):
    rand_weights["c3.bias"] = np.array([None] * 16, dtype=object)
    with pytest.raises(WeightsError, match=_all(r"key 'c3\.bias'", "object")):
        fastlenet.Net(rand_weights)


def test_float64_and_float16_weights_are_accepted(rand_weights):
    ref = fastlenet.Net(rand_weights).logits(images(3))
    w64 = {k: v.astype(np.float64) for k, v in rand_weights.items()}
    np.testing.assert_array_equal(fastlenet.Net(w64).logits(images(3)), ref)
    w16 = {k: v.astype(np.float16) for k, v in rand_weights.items()}
    assert np.isfinite(fastlenet.Net(w16).logits(images(3))).all()


@pytest.mark.parametrize("weights", [None, [1, 2], "weights.npz", np.zeros(3), 42])
def test_non_mapping_weights(weights):
    with pytest.raises(TypeError, match="weights: expected a mapping of weight name -> array"):
        fastlenet.Net(weights)
    with pytest.raises(TypeError, match="weights: expected a mapping"):
        fastlenet.Net.from_weights(weights)


# ---- weight files ------------------------------------------------------------------------------
def _valid_npz(tmp_path, weights, name="ok.npz"):
    path = tmp_path / name
    np.savez(path, **weights)
    return path


def _npy_bytes(header: dict, data: bytes = b"") -> bytes:
    """A hand-made .npy v1.0: magic, padded header dict, data."""
    text = repr(header).encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def _zip_with(path, members: dict, weights=None):
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in (weights or {}).items():
            buf = io.BytesIO()
            np.save(buf, v)
            zf.writestr(k + ".npy", buf.getvalue())
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _load_error(path, exc=WeightsError):
    with pytest.raises(exc, match=re.escape(str(path))) as info:
        fastlenet.load(path)
    return str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.npz"))):
        fastlenet.load(tmp_path / "nope.npz")
    with pytest.raises(OSError):
        fastlenet.Net.from_npz(str(tmp_path / "nope.npz"))


def test_directory(tmp_path):
    with pytest.raises(OSError, match=re.escape(str(tmp_path))):
        fastlenet.load(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    assert "not an .npz file" in _load_error(path)


def test_random_bytes(tmp_path, rng):
    path = tmp_path / "random.npz"
    data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path.write_bytes(b"\x17" + data)  # never a zip/npy/pickle signature by chance
    assert "not an .npz file" in _load_error(path)


def test_text_file(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text("c1.weight = [[0.1, 0.2]]\n" * 20)
    assert "not an .npz file" in _load_error(path)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.9, 0.99])
def test_truncated_npz(tmp_path, rand_weights, fraction):
    data = _valid_npz(tmp_path, rand_weights).read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * fraction)])
    assert "truncated or corrupt" in _load_error(path)


def test_corrupt_npz_member(tmp_path, rand_weights):
    data = bytearray(_valid_npz(tmp_path, rand_weights).read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside c5.weight's data: CRC mismatch
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(data))
    assert "truncated or corrupt" in _load_error(path)


def test_single_npy_file(tmp_path, rand_weights):
    path = tmp_path / "c1.npy"
    np.save(path, rand_weights["c1.weight"])
    assert "a single .npy array" in _load_error(path)


def test_pickle_file(tmp_path, rand_weights):
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as f:
        pickle.dump(rand_weights, f)
    assert "never unpickles" in _load_error(path)


def test_torch_save_like_zip(tmp_path, rand_weights):
    path = _zip_with(tmp_path / "model.pt", {"archive/data.pkl": pickle.dumps(rand_weights),
                                             "archive/version": b"3\n"})
    assert "torch.save" in _load_error(path)


def test_npz_with_object_array(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, a=np.array([{}], dtype=object))
    assert "pickled object array" in _load_error(path)


def test_npz_with_object_weight_among_valid_ones(tmp_path, rand_weights):
    rand_weights["c1.bias"] = np.array([{}] * 6, dtype=object)
    path = _valid_npz(tmp_path, rand_weights)
    assert "key 'c1.bias': holds a pickled object array" in _load_error(path)


@pytest.mark.parametrize("shape", [(1 << 40,), (1 << 31, 1 << 31), (120, 16, 5, 5, 1 << 20)])
def test_npz_declaring_a_huge_array(tmp_path, rand_weights, shape):
    """A hand-crafted header declares an enormous shape: refused before anything is allocated."""
    del rand_weights["c5.weight"]
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    path = _zip_with(tmp_path / "huge.npz", {"c5.weight.npy": _npy_bytes(header, b"\0" * 64)},
                     rand_weights)
    msg = _load_error(path)
    assert "key 'c5.weight'" in msg and "declares shape" in msg


def test_npz_member_shorter_than_its_header(tmp_path, rand_weights):
    del rand_weights["c1.weight"]
    header = {"descr": "<f4", "fortran_order": False, "shape": (6, 1, 5, 5)}
    path = _zip_with(tmp_path / "short.npz", {"c1.weight.npy": _npy_bytes(header, b"\0" * 100)},
                     rand_weights)
    assert "key 'c1.weight': truncated" in _load_error(path)


def test_npz_member_with_garbage_header(tmp_path, rand_weights):
    del rand_weights["c1.weight"]
    path = _zip_with(tmp_path / "garbage.npz",
                     {"c1.weight.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': <<<}\n"},
                     rand_weights)
    assert "key 'c1.weight': cannot be read" in _load_error(path)


def test_npz_with_a_non_npy_member(tmp_path, rand_weights):
    path = _zip_with(tmp_path / "extra.npz", {"README.txt": b"hello"}, rand_weights)
    assert "not an .npy array" in _load_error(path)


def test_npz_missing_a_weight(tmp_path, rand_weights):
    del rand_weights["output.bias"]
    path = _valid_npz(tmp_path, rand_weights)
    assert re.search(r"missing '?output\.bias", _load_error(path))


def test_npz_with_nan_weight_names_file_and_key(tmp_path, rand_weights):
    rand_weights["f6.weight"][3, 4] = np.nan
    path = _valid_npz(tmp_path, rand_weights)
    assert re.search(_all(r"key 'f6\.weight'", "non-finite"), _load_error(path))


def _rewrite_zip_headers(data: bytes, patch) -> bytes:
    """Apply patch(buf, offset, central) to every local and central directory header."""
    buf = bytearray(data)
    for sig, central in ((b"PK\x03\x04", False), (b"PK\x01\x02", True)):
        i = buf.find(sig)
        while i >= 0:
            patch(buf, i, central)
            i = buf.find(sig, i + 4)
    return bytes(buf)


def test_npz_with_encrypted_members(tmp_path, rand_weights):
    """Regression: zipfile's RuntimeError ('password required') used to escape."""
    def encrypt_flag(buf, i, central):
        buf[i + (8 if central else 6)] |= 0x01
    path = tmp_path / "encrypted.npz"
    path.write_bytes(_rewrite_zip_headers(_valid_npz(tmp_path, rand_weights).read_bytes(),
                                          encrypt_flag))
    _load_error(path)


def test_npz_with_unknown_compression_method(tmp_path, rand_weights):
    """Regression: zipfile's NotImplementedError used to escape."""
    def method_99(buf, i, central):
        off = i + (10 if central else 8)
        buf[off:off + 2] = struct.pack("<H", 99)
    path = tmp_path / "method99.npz"
    path.write_bytes(_rewrite_zip_headers(_valid_npz(tmp_path, rand_weights).read_bytes(),
                                          method_99))
    _load_error(path)


def test_compressed_npz_is_fine(tmp_path, rand_weights):
    path = tmp_path / "compressed.npz"
    np.savez_compressed(path, **rand_weights)
    np.testing.assert_array_equal(fastlenet.load(path).logits(images(2)),
                                  fastlenet.Net(rand_weights).logits(images(2)))


# ---- metadata ----------------------------------------------------------------------------------
@pytest.mark.parametrize("meta,match", [
    ({"activation": "gelu"}, r"activation must be one of tanh, relu, sigmoid, scaled_tanh; "
                             r"found 'gelu'"),
    ({"activation": None}, r"activation must be one of"),
    ({"pool": "median"}, r"pool must be one of avg, max; found 'median'"),
    ({"std": 0}, r"std must be positive; found 0\.0"),
    ({"std": -0.5}, r"std must be positive"),
    ({"mean": float("nan")}, r"mean must be a finite number; found nan"),
    ({"std": float("inf")}, r"std must be a finite number"),
    ({"mean": "0.1"}, r"mean must be a finite number; found '0\.1'"),
    ({"mean": True}, r"mean must be a finite number; found True"),
    ({"classes": ["a", "b"]}, r"classes must be a list of 10 names"),
])
def test_bad_metadata(rand_weights, meta, match):
    with pytest.raises(WeightsError, match="meta: " + match):
        fastlenet.Net(rand_weights, meta)
    with pytest.raises(WeightsError, match=match):
        fastlenet.Net.from_weights(rand_weights, meta=meta)


@pytest.mark.parametrize("meta", [5, "abc", [1]])
def test_meta_must_be_a_mapping(rand_weights, meta):
    """Regression: dict.update(meta) used to raise an error that did not name `meta`."""
    with pytest.raises((TypeError, ValueError), match=r"^meta: .*(dict|mapping)"):
        fastlenet.Net(rand_weights, meta)


@pytest.mark.parametrize("text,match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"activation": "gelu"}', "activation.*'gelu'"),
    ('{"std": 0}', "std must be positive"),
    ('{"mean": NaN}', "mean must be a finite number"),
])
def test_bad_metadata_in_file(tmp_path, rand_weights, text, match):
    path = tmp_path / "meta.npz"
    np.savez(path, fastlenet_meta=np.array(text), **rand_weights)
    msg = _load_error(path)
    assert "key 'fastlenet_meta'" in msg and re.search(match, msg), msg


def test_metadata_that_is_not_a_string(tmp_path, rand_weights):
    path = tmp_path / "meta.npz"
    np.savez(path, fastlenet_meta=np.arange(3.0), **rand_weights)
    assert "expected a JSON string" in _load_error(path)


def test_bad_override_arguments(tmp_path, rand_weights):
    path = _valid_npz(tmp_path, rand_weights)
    with pytest.raises(WeightsError, match="arguments: activation must be one of"):
        fastlenet.load(path, activation="gelu")
    with pytest.raises(WeightsError, match="arguments: std must be positive"):
        fastlenet.Net.from_npz(path, std=0.0)


def test_bad_layout_argument(rand_weights):
    with pytest.raises(ValueError, match=_all("layout", "'keras-ish'")):
        fastlenet.Net.from_weights(rand_weights, layout="keras-ish")


def test_numpy_scalar_mean_std_are_accepted(rand_weights):
    """Regression: only Python int/float were accepted (x.mean() of float32 data is not)."""
    net = fastlenet.Net(rand_weights, {"mean": np.float32(0.5), "std": np.float32(2.0)})
    assert (net.meta["mean"], net.meta["std"]) == (0.5, 2.0)


# ---- settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1, "2", 2.0, True, [2], np.float64(2)])
def test_bad_num_threads(rand_weights, value):
    match = re.escape(f"num_threads: expected a positive integer or None; got {value!r}")
    with pytest.raises(ValueError, match=match):
        fastlenet.Net(rand_weights, num_threads=value)
    net = make_net(num_threads=1)
    with pytest.raises(ValueError, match=match):
        net.num_threads = value
    assert net.num_threads == 1  # unchanged


def test_good_num_threads(rand_weights):
    net = fastlenet.Net(rand_weights, num_threads=np.int64(1))
    assert net.num_threads == 1
    net.num_threads = None
    assert net.num_threads == fastlenet.DEFAULT_THREADS
    net.num_threads = 10_000  # more than the batch or cores: clamped by the engine
    assert net.logits(images(3)).shape == (3, 10)


@pytest.mark.parametrize("value", ["sse9", "AVX2 ", "", None, 1, ["avx2"]])
def test_bad_isa(value):
    net = make_net()
    before = net.isa
    with pytest.raises(ValueError, match=re.escape(f"isa: expected one of "
                                                   f"{', '.join(fastlenet.available_isas())} "
                                                   f"on this machine; got {value!r}")):
        net.isa = value
    assert net.isa == before


@pytest.mark.parametrize("name", ["scalar", "generic", "avx2", "avx512"])
def test_isa_the_machine_lacks_is_refused(name):
    net = make_net()
    if name in fastlenet.available_isas():
        net.isa = name
        assert net.isa == name
    else:
        with pytest.raises(ValueError, match=f"got '{name}'"):
            net.isa = name


def test_uninitialized_net_does_not_crash():
    net = fastlenet.Net.__new__(fastlenet.Net)
    with pytest.raises(RuntimeError, match="has no weights"):
        net.logits(images(2))


def test_kernel_hooks_refuse_an_uninitialized_net():
    import subprocess
    import sys

    code = ("import numpy as np, fastlenet; from fastlenet import _engine\n"
            "net = fastlenet.Net.__new__(fastlenet.Net)\n"
            "for f, a in ((_engine._kernel_c1, np.zeros((32, 32), np.float32)),\n"
            "             (_engine._kernel_c3, np.zeros((6, 14, 14), np.float32))):\n"
            "    try:\n"
            "        f('scalar', net, a)\n"
            "    except (ValueError, TypeError, RuntimeError):\n"
            "        pass\n"
            "    else:\n"
            "        raise SystemExit(3)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=str(TESTS))
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-500:])
