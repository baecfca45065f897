"""Issue 10, hostile files: each defect of the review has a test here that failed before the
bounded loader and passes now. Memory is asserted with tracemalloc (every byte the loader
decompresses is a Python allocation), never with a clock."""
from __future__ import annotations

import bz2
import io
import json
import lzma
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import fastlenet
from fastlenet.weights import checks as loader
from fastlenet.weights.checks import FormatError

from _helpers import images
from _hostile import (aliased_directory, entry, many_zero_members, npy_bytes, npy_of, raw_zip,
                      void_bomb)

MIB = 1 << 20


def _write(tmp_path, data: bytes, name: str = "hostile.npz"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _refused(path, *parts: str, peak_mib: float = 8.0) -> str:
    """Loading `path` raises FormatError naming the file and each of `parts`, and the attempt
    allocates less than `peak_mib` MiB."""
    tracemalloc.start()
    try:
        with pytest.raises(FormatError) as info:
            fastlenet.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert str(path) in msg, msg
    for p in parts:
        assert p in msg, (p, msg)
    assert peak < peak_mib * MIB, f"peak {peak / MIB:.1f} MiB for {path.name}: {msg}"
    return msg


def _canonical_entries(weights, method="deflated"):
    return [entry(k + ".npy", npy_of(v), method) for k, v in weights.items()]


# ---- denial of service from small files ---------------------------------------------------------
def test_void_dtype_bomb_is_refused_from_its_header(tmp_path):
    """A few-hundred-byte bzip2 member whose header declares 2**24 x 256-byte voids (4 GiB): it
    used to decompress everything it held before failing."""
    msg = _refused(_write(tmp_path, void_bomb(mib=64)), "c1.weight")
    assert "declares" in msg


def test_declared_bytes_not_elements_are_budgeted(tmp_path, rand_weights):
    """2**20 elements fit the element cap; 2**20 x 64-byte complex... x itemsize does not."""
    header = npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (1 << 19, 5)})
    path = _write(tmp_path, raw_zip(_canonical_entries(rand_weights) +
                                    [entry("extra.npy", header + bytes(1 << 20))]))
    _refused(path, "key 'extra'", "declares shape")


def test_header_that_lies_about_its_size_costs_nothing(tmp_path, rand_weights):
    """The directory says 1 KB, the .npy header says 512 MiB: refused from the header, before the
    data is inflated."""
    header = npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (1 << 27,)})
    path = _write(tmp_path, raw_zip([entry("c1.weight.npy", header + bytes(4 * MIB), size=1024)]
                                    + _canonical_entries(rand_weights)[1:]))
    _refused(path, "c1.weight", "declares shape")


def test_many_large_members_are_refused_before_any_is_inflated(tmp_path):
    """100 deflated members of 64 MiB of zeros (6.5 MB): 6.5 GB and 25 s, then 'missing C1'."""
    path = _write(tmp_path, many_zero_members(count=100, mib=64))
    _refused(path, "a0.npy", "declares", "more than")


def test_members_within_the_budget_one_by_one_but_not_together(tmp_path):
    """Twenty members of 1 MiB each pass every per-array check; their sum does not."""
    path = _write(tmp_path, many_zero_members(count=20, mib=1))
    _refused(path, "bytes in all")


def test_a_directory_of_thousands_of_aliases_is_refused_at_once(tmp_path):
    """3000 central-directory entries pointing at one 8 MiB member (173 KB): over two minutes."""
    _refused(_write(tmp_path, aliased_directory(count=3000, mib=8)), "3,000 members")


def test_duplicate_member_names_are_refused(tmp_path, rand_weights):
    """The last duplicate used to win silently."""
    entries = _canonical_entries(rand_weights)
    other = entry("c1.weight.npy", npy_of(np.zeros((6, 1, 5, 5), np.float32)))
    path = _write(tmp_path, raw_zip(entries + [other]))
    _refused(path, "'c1.weight.npy'", "appears twice")


def test_overlapping_members_are_refused(tmp_path, rand_weights):
    """Member B's local header lies inside member A's (stored) data: both would read the same
    bytes. Names match their local headers, so only the overlap check can catch it."""
    inner = entry("b.npy", npy_of(np.zeros(8, np.float32)), "stored")
    nb = inner[0].encode()
    local_b = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, inner[3],
                          len(inner[2]), inner[4], len(nb), 0) + nb + inner[2]
    outer_data = npy_bytes({"descr": "|u1", "fortran_order": False, "shape": (len(local_b),)},
                           local_b)
    outer = ("a.npy", "stored", outer_data, zlib.crc32(outer_data), len(outer_data))
    data = bytearray(raw_zip([outer]))
    # a second central entry for b.npy at the offset of b's header inside a's data
    cd = data.index(b"PK\x01\x02")
    b_at = 30 + len(b"a.npy") + outer_data.index(b"PK\x03\x04")
    central_b = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, inner[3],
                            len(inner[2]), inner[4], len(nb), 0, 0, 0, 0, 0, b_at) + nb
    eocd = data.index(b"PK\x05\x06")
    cd_bytes = bytes(data[cd:eocd]) + central_b
    out = bytes(data[:cd]) + cd_bytes + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 2, 2,
                                                    len(cd_bytes), cd, 0)
    path = _write(tmp_path, out)
    with zipfile.ZipFile(path) as zf:  # zipfile itself reads both
        assert zf.read("b.npy") == inner[2]
    _refused(path, "'b.npy'", "overlaps")


def test_too_many_members(tmp_path):
    entries = [entry(f"a{i}.npy", npy_of(np.zeros(1, np.float32))) for i in range(600)]
    _refused(_write(tmp_path, raw_zip(entries)), "600 members")


@pytest.mark.parametrize("method", ["stored", "deflated", "bzip2"])
def test_every_zip_method_reads_the_weights_exactly(tmp_path, rand_weights, method):
    path = _write(tmp_path, raw_zip(_canonical_entries(rand_weights, method)))
    np.testing.assert_array_equal(fastlenet.load(path).logits(images(3)),
                                  fastlenet.Net(rand_weights).logits(images(3)))


def test_lzma_members_are_read_too(tmp_path, rand_weights):
    path = tmp_path / "lzma.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_LZMA) as zf:
        for k, v in rand_weights.items():
            zf.writestr(k + ".npy", npy_of(v))
    np.testing.assert_array_equal(fastlenet.load(path).logits(images(3)),
                                  fastlenet.Net(rand_weights).logits(images(3)))


def test_a_member_that_inflates_beyond_its_declared_size(tmp_path, rand_weights):
    """The directory's size is the cap: a stream that goes on is corrupt, and never read past
    that size plus one byte."""
    e = list(entry("c1.weight.npy", npy_of(rand_weights["c1.weight"]) + bytes(4 * MIB)))
    e[4] = len(npy_of(rand_weights["c1.weight"]))  # declared: the true .npy only
    e[3] = zlib.crc32(npy_of(rand_weights["c1.weight"]))
    path = _write(tmp_path, raw_zip([tuple(e)] + _canonical_entries(rand_weights)[1:]))
    _refused(path, "c1.weight", peak_mib=4)


# ---- exceptions nobody documented ------------------------------------------------------------
def _npz_with_member(tmp_path, rand_weights, name, comp, method, size, crc=0):
    entries = _canonical_entries(rand_weights)[1:] + [(name, method, comp, crc, size)]
    return _write(tmp_path, raw_zip(entries))


def test_corrupt_deflate_stream_is_a_format_error(tmp_path, rand_weights):
    """zlib.error used to escape."""
    path = _npz_with_member(tmp_path, rand_weights, "c1.weight.npy", b"\xff" * 64, "deflated",
                            500)
    _refused(path, "c1.weight", "cannot be read")


def test_corrupt_bzip2_stream_is_a_format_error(tmp_path, rand_weights):
    path = _npz_with_member(tmp_path, rand_weights, "c1.weight.npy", b"BZh9" + b"\x00" * 60,
                            "bzip2", 500)
    _refused(path, "c1.weight")


def test_corrupt_lzma_member_is_a_format_error(tmp_path, rand_weights):
    """lzma.LZMAError used to escape."""
    good = tmp_path / "lzma.npz"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_LZMA) as zf:
        for k, v in rand_weights.items():
            zf.writestr(k + ".npy", npy_of(v))
    data = bytearray(good.read_bytes())
    i = data.index(b"c1.weight.npy") + len("c1.weight.npy") + 4 + 5  # past the lzma header
    data[i:i + 40] = b"\xff" * 40
    _refused(_write(tmp_path, bytes(data), "bad_lzma.npz"), "c1.weight")


def test_zip_version_needed_beyond_zipfile(tmp_path, rand_weights):
    """NotImplementedError ('zip file version') used to escape."""
    data = bytearray(raw_zip(_canonical_entries(rand_weights)))
    i = data.index(b"PK\x01\x02")
    data[i + 6:i + 8] = struct.pack("<H", 99)  # version needed to extract: 9.9
    _refused(_write(tmp_path, bytes(data)))


@pytest.mark.parametrize("header", [
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (6, 1, 5, 5),",  # TokenError
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (6, 1, 5, 5)))}",  # SyntaxError
    b"{'descr': '<f4', 'fortran_order': False, 'shape': " + b"(" * 400 + b")" * 400 + b"}",
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (6, 1, 5, 5), 'x': 1e999999}",
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
    b"{'descr': [('a', '<f4', (1 << 40,))], 'fortran_order': False, 'shape': (1,)}",
    b"{'descr': 'O', 'fortran_order': False, 'shape': (1,)}",
    b"{'descr': '<M8[s]', 'fortran_order': False, 'shape': (6, 1, 5, 5)}",
    b"\xff\xfe{'descr'}",
])
def test_mangled_npy_headers_are_format_errors(tmp_path, rand_weights, header):
    text = header + b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + bytes(600)
    path = _npz_with_member(tmp_path, rand_weights, "c1.weight.npy", member, "stored",
                            len(member), zlib.crc32(member))
    _refused(path, "c1.weight")


def _meta_file(tmp_path, rand_weights, meta_array):
    arrays = dict(rand_weights)
    arrays["fastlenet_meta"] = meta_array
    path = tmp_path / "meta.npz"
    np.savez(path, **arrays)
    return path


def test_deeply_nested_metadata_json(tmp_path, rand_weights):
    """RecursionError used to escape."""
    path = _meta_file(tmp_path, rand_weights, np.array("[" * 100000 + "]" * 100000))
    _refused(path, "fastlenet_meta", "JSON", peak_mib=64)


@pytest.mark.parametrize("text", ['{"mean": ' + "9" * 400 + "}",
                                  '{"std": ' + "1" * 5000 + "}",
                                  '{"std": 1e-40}', '{"mean": 1e39}', '{"std": 1e300}'])
def test_metadata_numbers_beyond_float32(tmp_path, rand_weights, text):
    """OverflowError used to escape; std 1e-40 / mean 1e39 used to make every prediction -1."""
    _refused(_meta_file(tmp_path, rand_weights, np.array(text)), "fastlenet_meta")


def test_metadata_code_point_beyond_unicode(tmp_path, rand_weights):
    """A 'U' array holding U+110000 (SystemError / ValueError used to escape)."""
    raw = np.array([ord("{"), 0x110000, ord("}")], "<u4").tobytes()
    _refused(_meta_file(tmp_path, rand_weights, np.frombuffer(raw, "<U3")), "fastlenet_meta")


# ---- silent wrong answers ---------------------------------------------------------------------
def test_float64_weights_beyond_float32_are_refused_everywhere(tmp_path, rand_weights):
    """They used to be stored as inf: Net(weights), from_weights, files and unpickling."""
    import pickle

    from fastlenet import _engine

    w = {k: v.astype(np.float64) for k, v in rand_weights.items()}
    w["c3.weight"][1, 2, 3, 4] = 1e39
    for make in (lambda: fastlenet.Net(w), lambda: fastlenet.Net.from_weights(w),
                 lambda: fastlenet.Net.from_weights(w, layout="pytorch")):
        with pytest.raises(FormatError, match=r"'c3\.weight'.*float32"):
            make()
    path = tmp_path / "big.npz"
    np.savez(path, **w)
    _refused(path, "'c3.weight'", "float32")

    class Forged:
        def __reduce__(self):
            return (_engine._restore, (w, "{}"))
    with pytest.raises(FormatError, match=r"'c3\.weight'.*float32"):
        pickle.loads(pickle.dumps(Forged()))


@pytest.mark.parametrize("meta", [{"std": 1e-40}, {"mean": 1e39}, {"mean": 1e30, "std": 1e-30}])
def test_normalization_that_overflows_float32_is_refused(rand_weights, meta):
    with pytest.raises(FormatError, match="meta: "):
        fastlenet.Net(rand_weights, meta)
    with pytest.raises(FormatError):
        fastlenet.Net.from_weights(rand_weights, **meta)


# ---- the budget API other readers reuse ---------------------------------------------------------
def test_check_declared_size_and_budget():
    assert loader.check_declared_size("f", "k", (120, 16, 5, 5), "<f8") == 120 * 400 * 8
    with pytest.raises(FormatError, match=r"f: key 'k': declares shape"):
        loader.check_declared_size("f", "k", (1 << 21,), "<f4")
    with pytest.raises(FormatError, match="negative"):
        loader.check_declared_size("f", "k", (-1, 4), "<f4")
    b = loader.Budget("f")
    for i in range(loader.MAX_WEIGHT_BYTES // (4 << 20)):
        b.take(f"a{i}", (1 << 20,), "<f4")
    with pytest.raises(FormatError, match=r"f: the arrays declare .* bytes in all"):
        b.take("one more", (1,), "<f4")
    assert loader.MAX_WEIGHT_BYTES >= 8 * 16 * loader.LENET5_PARAMETERS


# ---- .onnx ----------------------------------------------------------------------------------------
onnx = pytest.importorskip("onnx")


def _lenet_onnx(weights, act="Relu", pool="MaxPool", extra_nodes=(), dup_init=False):
    """A LeNet-5 graph built from canonical weights with onnx.helper (x: N,1,32,32)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()]
    if dup_init:
        inits.append(numpy_helper.from_array(np.zeros((6,), np.float32), "c1.bias"))
    shape = numpy_helper.from_array(np.array([-1, 120], np.int64), "shape")
    nodes = []

    def add(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    pool_attrs = dict(kernel_shape=[2, 2], strides=[2, 2])
    h = add("Conv", ["x", "c1.weight", "c1.bias"], "c1", kernel_shape=[5, 5])
    h = add(pool, [add(act, [h], "a1")], "p1", **pool_attrs)
    h = add("Conv", [h, "c3.weight", "c3.bias"], "c3", kernel_shape=[5, 5])
    h = add(pool, [add(act, [h], "a3")], "p3", **pool_attrs)
    h = add("Conv", [h, "c5.weight", "c5.bias"], "c5", kernel_shape=[5, 5])
    h = add("Reshape", [add(act, [h], "a5"), "shape"], "flat")
    h = add(act, [add("Gemm", [h, "f6.weight", "f6.bias"], "f6", transB=1)], "a6")
    for op in extra_nodes:
        h = add(op, [h], f"extra_{op}")
    add("Gemm", [h, "output.weight", "output.bias"], "logits", transB=1)
    graph = helper.make_graph(
        nodes, "lenet5", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 10])],
        initializer=inits + [shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("act,pool", [("Relu", "MaxPool"), ("Sigmoid", "AveragePool"),
                                      ("Tanh", "MaxPool")])
def test_onnx_activation_and_pooling_come_from_the_graph(tmp_path, rand_weights, act, pool):
    """A Relu/MaxPool model used to load as tanh/avg: 0 of 8 predictions agreed with ONNX."""
    from onnx.reference import ReferenceEvaluator

    model = _lenet_onnx(rand_weights, act, pool)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    x = images(8)
    want = ReferenceEvaluator(model).run(None, {"x": x[:, None].astype(np.float32)})[0]
    net = fastlenet.load(path)
    assert (net.activation, net.pool) == (act.lower(), "max" if pool == "MaxPool" else "avg")
    np.testing.assert_allclose(net.logits(x), want, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(net.predict(x), want.argmax(1))


@pytest.mark.parametrize("extra", ["Mul", "BatchNormalization", "Elu"])
def test_onnx_graph_with_ops_it_does_not_understand_is_refused(tmp_path, rand_weights, extra):
    path = tmp_path / "odd.onnx"
    onnx.save(_lenet_onnx(rand_weights, extra_nodes=(extra,)), str(path))
    _refused(path, "does not understand", extra)


def test_onnx_graph_mixing_activations_is_refused(tmp_path, rand_weights):
    model = _lenet_onnx(rand_weights)
    model.graph.node[1].op_type = "Tanh"
    path = tmp_path / "mixed.onnx"
    onnx.save(model, str(path))
    _refused(path, "exactly one kind")


def test_onnx_duplicate_initializers_are_refused(tmp_path, rand_weights):
    """The last one used to win."""
    path = tmp_path / "dup.onnx"
    onnx.save(_lenet_onnx(rand_weights, dup_init=True), str(path))
    _refused(path, "'c1.bias'", "twice")


def test_onnx_initializer_declaring_a_huge_tensor(tmp_path, rand_weights):
    model = _lenet_onnx(rand_weights)
    init = model.graph.initializer[0]
    del init.dims[:]
    init.dims.extend([1 << 16, 1 << 16])
    path = tmp_path / "huge.onnx"
    path.write_bytes(model.SerializeToString())
    _refused(path, "declares shape")


def test_onnx_external_data_is_refused(tmp_path, rand_weights):
    model = _lenet_onnx(rand_weights)
    init = model.graph.initializer[0]
    init.data_location = onnx.TensorProto.EXTERNAL
    init.external_data.add(key="location", value="../../etc/passwd")
    path = tmp_path / "ext.onnx"
    path.write_bytes(model.SerializeToString())
    _refused(path, "external")


@pytest.mark.parametrize("mutate", ["truncate", "garbage", "bad_type", "bad_name", "bad_op"])
def test_onnx_corruption_is_a_format_error(tmp_path, rand_weights, mutate):
    """protobuf DecodeError, KeyError (unknown data type, non-UTF-8 names) used to escape."""
    model = _lenet_onnx(rand_weights)
    if mutate == "bad_type":
        model.graph.initializer[0].data_type = 99
    data = model.SerializeToString()
    if mutate == "truncate":
        data = data[: len(data) // 2]
    elif mutate == "garbage":
        data = bytes(range(256)) * 8
    elif mutate == "bad_op":  # found by tests/fuzz_loader.py: a TypeError escaped
        i = data.index(b"Relu")
        data = data[:i] + b"R\xfflu" + data[i + 4:]
    elif mutate == "bad_name":  # found by tests/fuzz_loader.py: a KeyError escaped
        name = b"c5.bias"
        for _ in range(data.count(name)):
            i = data.index(name)
            data = data[:i] + b"c5\x80bias" + data[i + len(name):]
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    _refused(path)


def test_cli_inspect_never_prints_a_traceback(tmp_path, rand_weights):
    """`fastlenet inspect` and `--weights` on hostile files: one line, exit 1."""
    from fastlenet import cli

    files = {"bomb.npz": void_bomb(), "alias.npz": aliased_directory(count=600, mib=1),
             "trunc.onnx": _lenet_onnx(rand_weights).SerializeToString()[:5000],
             "meta.npz": None}
    _meta_file(tmp_path, rand_weights, np.array("[" * 100000 + "]" * 100000))
    for name, data in files.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        err = io.StringIO()
        import contextlib
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(["inspect", str(path)]) == 1
        assert "Traceback" not in err.getvalue() and str(path) in err.getvalue(), err.getvalue()


@pytest.mark.parametrize("node,attr,value", [("c3", "strides", [2, 2]), ("c1", "pads", [1, 1, 1, 1]),
                                             ("c5", "group", 2), ("f6", "alpha", 2.0),
                                             ("p1", "kernel_shape", [3, 3])])
def test_onnx_layer_attributes_are_checked(tmp_path, rand_weights, node, attr, value):
    """A stride-2 Conv or a Gemm with alpha=2 is not the network fastlenet runs: refused, not
    silently computed differently (found while reading the fuzzer's loaded mutants)."""
    from onnx import helper

    model = _lenet_onnx(rand_weights)
    n = next(n for n in model.graph.node if node in n.output)
    keep = [a for a in n.attribute if a.name != attr]
    del n.attribute[:]
    n.attribute.extend(keep + [helper.make_attribute(attr, value)])
    path = tmp_path / "attrs.onnx"
    onnx.save(model, str(path))
    _refused(path, attr)


def test_zip_local_header_that_names_another_member(tmp_path, rand_weights):
    """The directory says c1.weight.npy, the local header says c9.weight.npy: refused."""
    data = bytearray(raw_zip(_canonical_entries(rand_weights)))
    i = data.index(b"c1.weight.npy")  # the first occurrence is the local header's
    data[i:i + 2] = b"c9"
    _refused(_write(tmp_path, bytes(data)), "local header")
