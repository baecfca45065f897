"""fastlenet.dask.read_fields and `fastlenet read --scheduler/--output` (issue 18) on a real
cluster (a LocalCluster of worker processes on 127.0.0.1): the rows of the in-process
fastlenet.read_fields, bad files as error rows, shards and .npy fields."""
from __future__ import annotations

import io
import json
import math
import tarfile

import numpy as np
import pytest

pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

import _fields as F
from _cluster import client  # noqa: F401

from _helpers import png_bytes
import fastlenet
from fastlenet import cli
from fastlenet import dask as fld



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folder of 14 field PNGs (natural-order names), a corrupt and an empty file in it; a
    tar shard of 3 fields with a junk member; an .npy of 3 fields; a missing path."""
    root = tmp_path_factory.mktemp("dask_fields")
    samples = F.make_fields("handwritten_spaced", 20, F.mnist_train_digits(),
                            np.random.default_rng(41))
    pngs = root / "pngs"
    pngs.mkdir()
    for i in range(14):
        (pngs / f"f{i + 1}.png").write_bytes(png_bytes(samples[i].image))
    (pngs / "f7b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    (pngs / "f99.png").write_bytes(b"")
    shard = root / "shard.tar"
    with tarfile.open(shard, "w") as t:
        for i, payload in enumerate([png_bytes(samples[14].image), b"junk", png_bytes(samples[15].image),
                                     png_bytes(samples[16].image)]):
            info = tarfile.TarInfo(f"m{i}.png")
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    h = max(s.image.shape[0] for s in samples[17:20])
    w = max(s.image.shape[1] for s in samples[17:20])
    stack = np.full((3, h, w), 255, np.uint8)
    for i, s in enumerate(samples[17:20]):
        stack[i, : s.image.shape[0], : s.image.shape[1]] = s.image
    npy = root / "fields.npy"
    np.save(npy, stack)
    missing = root / "missing.png"
    return {"root": root, "pngs": pngs,
            "sources": [str(pngs), str(shard), str(npy), str(missing)],
            "bad": {str(pngs / "f7b.png"), str(pngs / "f99.png"), str(missing)}}


def _na(v):
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _rows_equal(got: pd.DataFrame, want):
    got = got.reset_index(drop=True)
    assert list(got.columns) == ["source", "member", "index", "text", "confidence", "digits",
                                 "error"]
    assert len(got) == len(want)
    for i, w in enumerate(want):
        r = got.iloc[i]
        assert r["source"] == w.source
        assert (_na(r["member"]) and w.member is None) or r["member"] == w.member
        assert (_na(r["index"]) and w.index is None) or int(r["index"]) == w.index
        assert r["text"] == w.text
        if w.error is None:
            assert _na(r["error"])
            assert abs(r["confidence"] - w.confidence) <= 1e-6
            digits = json.loads(r["digits"])
            assert [d[0] for d in digits] == [d.label for d in w.digits]
            assert [tuple(d[2]) for d in digits] == [d.box for d in w.digits]
            assert [[a[0] for a in d[3]] for d in digits] == \
                [[a[0] for a in d.alternatives] for d in w.digits]
        else:
            assert r["error"] == w.error and math.isnan(r["confidence"])
            assert json.loads(r["digits"]) == []


def test_read_fields_on_the_cluster_equals_in_process(client, data):
    want = list(fastlenet.read_fields(data["sources"], workers=0))
    assert {w.source for w in want if w.error and w.member is None} == data["bad"]
    assert sum(w.error is not None for w in want) == 4  # 3 bad files + 1 bad member
    got = fld.read_fields(data["sources"], files_per_partition=5).compute()
    _rows_equal(got, want)


def test_length_and_bad_arguments(client, data):
    folder = str(data["pngs"])
    want = list(fastlenet.read_fields(folder, workers=0, length=range(2, 5)))
    got = fld.read_fields(folder, length=range(2, 5)).compute()
    _rows_equal(got, want)
    ok = got[got["error"].isna()]
    assert ok["text"].str.len().between(2, 4).all()
    with pytest.raises(ValueError, match="length"):
        fld.read_fields(folder, length=-1)
    with pytest.raises(ValueError, match="net"):
        w = {k: v for k, v in fastlenet.pretrained().weights.items()}
        w["output.weight"] = w["output.weight"][:5]
        w["output.bias"] = w["output.bias"][:5]
        fld.read_fields(folder, fastlenet.Net(w, {"mean": 0.13, "std": 0.31}))


def test_one_net_or_chosen_models_travel(client, data):
    """net= as in-process: one Net alone, or the default models in fp32 (all reach the workers:
    the rows equal fastlenet.read_fields with the same Nets); predict_files takes one Net."""
    folder = str(data["pngs"])
    for net in (fastlenet.pretrained("fields2"), fastlenet.fields.default_nets("fp32")):
        want = list(fastlenet.read_fields(folder, net, workers=0))
        _rows_equal(fld.read_fields(folder, net, files_per_partition=4).compute(), want)
    with pytest.raises(TypeError, match="net"):
        fld.predict_files(folder, fastlenet.fields.default_nets())


def test_the_pair_reader_reaches_the_workers(client, tmp_path):
    """On touching fields, where the pair reader changes readings, the cluster reads with the
    three default models as one process does."""
    for i, s in enumerate(F.make_fields("touching", 12, F.mnist_train_digits(),
                                        np.random.default_rng(7))):
        (tmp_path / f"f{i + 1}.png").write_bytes(png_bytes(s.image))
    models = fastlenet.fields.default_nets("fp32")
    want = list(fastlenet.read_fields(str(tmp_path), models, workers=0))
    alone = list(fastlenet.read_fields(str(tmp_path), models[:2], workers=0))
    assert [w.text for w in want] != [w.text for w in alone]
    _rows_equal(fld.read_fields(str(tmp_path), models, files_per_partition=4).compute(), want)


def test_the_default_models_take_each_workers_precision():
    """net=None travels as the fp32 models marked auto; a worker quantizes them where its CPU,
    at the ISA level it runs, has int8 kernels (fields.auto_precision), and never at "scalar"."""
    models = fastlenet.fields.default_nets("fp32")
    auto = fld.SharedNet.from_net(models, many=True, auto=True)
    assert auto.token != fld.SharedNet.from_net(models, many=True).token
    here = fld._worker_net(auto, 1, None)
    assert [n.precision for n in here] == [fastlenet.fields.auto_precision()] * len(models)
    assert [n.precision for n in fld._worker_net(auto, 1, "scalar")] == ["fp32"] * len(models)
    assert all(n.num_threads == 1 for n in here)


def test_isa_and_threads_options(client, data):
    """At the scalar level the workers run the default models in fp32."""
    folder = str(data["pngs"])
    want = list(fastlenet.read_fields(folder, fastlenet.fields.default_nets("fp32"), workers=0))
    got = fld.read_fields(folder, isa="scalar", threads=1, files_per_partition=4).compute()
    assert list(got["text"]) == [w.text for w in want]
    ok = got["error"].isna().to_numpy()
    np.testing.assert_allclose(got["confidence"].to_numpy()[ok],
                               [w.confidence for w in want if w.error is None], atol=1e-5)


def test_no_inputs_is_an_empty_frame(client, tmp_path):
    (tmp_path / "e").mkdir()
    got = fld.read_fields(str(tmp_path / "e")).compute()
    assert len(got) == 0 and "text" in got.columns


def test_cli_read_csv_local_cluster(data, tmp_path, capsys):
    """--scheduler local starts its own cluster; the CSV has the in-process rows, the bad
    inputs one stderr line each, exit 1."""
    want = list(fastlenet.read_fields(data["sources"], workers=0))
    out = tmp_path / "fields.csv"
    assert cli.main(["read", *data["sources"], "--scheduler", "local", "--output", str(out),
                     "--files-per-partition", "6"]) == 1
    err = capsys.readouterr().err
    for path in data["bad"]:
        assert f"fastlenet: {path}: " in err
    assert ":m1.png: " in err and "input(s) failed" in err
    got = pd.read_csv(out, dtype={"member": "string", "error": "string", "text": "string",
                                  "digits": "string"}, keep_default_na=False,
                      na_values={"confidence": [""], "index": [""]})
    assert list(got["source"]) == [w.source for w in want]
    assert [t for t in got["text"]] == [w.text for w in want]
    assert [e or None for e in got["error"]] == [w.error for w in want]
    for c, w in zip(got["confidence"], want):
        if w.error is None:
            assert abs(c - w.confidence) <= 1e-6
        else:
            assert math.isnan(c)


def test_cli_plot_is_not_silently_dropped_on_dask(client, data, tmp_path, capsys):
    """`fastlenet read ... --scheduler ADDRESS --output X --plot P`: --plot is refused rather
    than silently dropped (the fields are read by the workers)."""
    out, plot = tmp_path / "r.csv", tmp_path / "plot.png"
    try:
        code = cli.main(["read", str(data["pngs"]), "--scheduler", client.scheduler.address,
                         "--output", str(out), "--plot", str(plot)])
    except SystemExit as e:  # a usage error
        code = e.code
    err = capsys.readouterr().err
    assert plot.exists() or (code != 0 and "--plot" in err), (code, err)
