"""fastlenet.dask.predict_files and `fastlenet predict --scheduler` on a real cluster (a
LocalCluster of worker processes on 127.0.0.1): the same rows as the in-process
fastlenet.predict_files bit for bit, corrupt files as error rows, a worker killed mid-job,
small tasks, Parquet and CSV output. Array inputs: test_dask.py."""
from __future__ import annotations

import collections
import gzip
import io
import math
import os
import tarfile

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastlenet.pipeline")  # the file pipeline (issue 8) this builds on

from _cluster import (client, kill_worker_mid_job, wait_for_two_workers,  # noqa: E402,F401
                      worker_totals)
from distributed.protocol.pickle import dumps as task_dumps  # noqa: E402

from _helpers import idx_bytes, png_bytes
import fastlenet  # noqa: E402
from fastlenet import cli  # noqa: E402
from fastlenet.io import sources  # noqa: E402
from fastlenet.io.kinds import is_container  # noqa: E402
from fastlenet import dask as fld  # noqa: E402
from fastlenet.cli.bench import _sample  # noqa: E402

TASK_LIMIT = 10_000




@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folder of PNGs (nested, natural-order names, a corrupt and an empty file), a tar shard
    with a corrupt member, an .npy batch, a gzipped IDX file and a path that does not exist."""
    root = tmp_path_factory.mktemp("dask_files")
    x, _ = _sample()
    # Digits on canvases of a few sizes, dark on light in part: the pipeline preprocesses them.
    pngs = root / "pngs"
    for sub, start in (("a", 0), ("b", 20)):
        (pngs / sub).mkdir(parents=True)
        for i in range(20):
            img = x[start + i]
            if i % 3 == 1:
                img = np.pad(255 - img, 5, constant_values=255)
            (pngs / sub / f"img{i}.png").write_bytes(png_bytes(img))
    (pngs / "b" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    (pngs / "b" / "empty.png").write_bytes(b"")
    shard = root / "shard.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(12):
            payload = png_bytes(x[100 + i]) if i != 5 else b"not an image at all"
            info = tarfile.TarInfo(f"member{i}.png" if i != 5 else "bad.png")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    npy = root / "batch.npy"
    np.save(npy, x[200:230])
    idx = root / "t10k-images-idx3-ubyte.gz"
    idx.write_bytes(gzip.compress(idx_bytes(x[300:325])))
    missing = root / "does-not-exist.png"
    return {"root": root, "sources": [str(pngs), str(shard), str(npy), str(idx), str(missing)],
            "pngs": pngs, "bad": {str(pngs / "b" / "corrupt.png"), str(pngs / "b" / "empty.png"),
                                  str(missing)}}


def _rows_equal(frame: pd.DataFrame, preds, top_k: int) -> None:
    """The DataFrame holds exactly the in-process Predictions, in order, bit for bit."""
    assert len(frame) == len(preds)
    assert list(frame["source"]) == [p.source for p in preds]
    assert [None if v is pd.NA else v for v in frame["member"]] == [p.member for p in preds]
    assert [None if v is pd.NA else int(v) for v in frame["index"]] == [p.index for p in preds]
    np.testing.assert_array_equal(frame["label"].to_numpy(), [p.label for p in preds])
    conf = frame["confidence"].to_numpy()
    assert np.array_equal(conf, np.array([p.confidence for p in preds], np.float64),
                          equal_nan=True)
    assert [None if v is pd.NA else v for v in frame["error"]] == [p.error for p in preds]
    for j in range(2, top_k + 1):
        for row, p in zip(frame[[f"label_{j}", f"confidence_{j}"]].itertuples(index=False), preds):
            want = p.top_k[j - 1] if len(p.top_k) >= j else (-1, math.nan)
            assert row[0] == want[0]
            assert row[1] == want[1] or (math.isnan(row[1]) and math.isnan(want[1]))


def test_same_rows_as_in_process(client, data):
    """Folders, a shard, .npy, IDX and a missing path, in partitions of 7 files, top-3: the
    cluster's rows are the in-process fastlenet.predict_files rows, in order, bit for bit."""
    net = fastlenet.pretrained()
    df = fld.predict_files(data["sources"], net, files_per_partition=7, top_k=3)
    assert list(df.columns) == ["source", "member", "index", "label", "confidence", "error",
                                "label_2", "confidence_2", "label_3", "confidence_3"]
    got = df.compute()
    want = list(fastlenet.predict_files(data["sources"], net, top_k=3))
    _rows_equal(got.reset_index(drop=True), want, 3)
    assert len(got) == 40 + 2 + 12 + 30 + 25 + 1


def test_corrupt_inputs_are_error_rows(client, data):
    got = fld.predict_files(data["sources"], files_per_partition=5).compute()
    bad = got[got["error"].notna()]
    assert set(bad["source"]) >= data["bad"]
    assert (bad["label"] == -1).all() and bad["confidence"].isna().all()
    assert list(bad[bad["member"].notna()]["member"]) == ["bad.png"]
    good = got[got["error"].isna()]
    assert len(good) == 40 + 11 + 30 + 25
    assert good["label"].between(0, 9).all() and good["confidence"].between(0, 1).all()


def test_partitions(data):
    files = [os.fspath(p) for p in sources.expand(data["sources"])]
    parts = fld.partition_sources(data["sources"], 7)
    assert [f for part in parts for f in part] == files
    for part in parts:
        if any(is_container(f) for f in part):
            assert len(part) == 1
        else:
            assert 1 <= len(part) <= 7
    assert fld.predict_files(data["sources"], files_per_partition=7).npartitions == len(parts)
    with pytest.raises(ValueError, match="files_per_partition: expected a positive integer"):
        fld.partition_sources(data["sources"], 0)


def test_file_tasks_are_small(data):
    """Each task carries its own file list and a reference to the Net's key, nothing more."""
    df = fld.predict_files(data["sources"], files_per_partition=7)
    graph = dict(df.__dask_graph__())
    parts = fld.partition_sources(data["sources"], 7)
    tasks = [v for k, v in graph.items() if isinstance(k, str) and k.startswith("fastlenet-files-")]
    assert len(tasks) == len(parts)
    net_keys = [k for k in graph if isinstance(k, str) and k.startswith(fld.NET_KEY_PREFIX)]
    assert len(net_keys) == 1
    own = max(len(task_dumps(p)) for p in parts)
    extra = max(len(task_dumps(t)) for t in tasks) - own
    print(f"largest file list {own} bytes; a task carries at most {extra} bytes more")
    assert extra < TASK_LIMIT


def test_worker_killed_mid_job_on_files(client, data, tmp_path):
    """6,000 paths in 120 tasks; one worker SIGKILLed after a tenth of them: the job completes
    and every input appears exactly once, in input order, with the in-process result."""
    pngs = sorted(p for p in data["pngs"].rglob("img*.png"))
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(6000):  # hard links: 6,000 inputs without 6,000 encodes
        os.link(pngs[i % len(pngs)], folder / f"d{i:05d}.png")
    net = fastlenet.pretrained()
    want = list(fastlenet.predict_files([str(folder)], net))
    fut = client.compute(fld.predict_files([str(folder)], net, files_per_partition=50))
    killed = kill_worker_mid_job(client, fut, 6000, fraction=0.1)
    got = fut.result(timeout=300).reset_index(drop=True)
    counts = collections.Counter(got["source"])
    assert len(counts) == 6000 and set(counts.values()) == {1}
    _rows_equal(got, want, 1)
    wait_for_two_workers(client, killed)


def test_non_utf8_file_name(client, data, tmp_path):
    """A file name that is not UTF-8 is read, and its row holds the name with \\xNN escapes
    (Arrow and Parquet store UTF-8 only) instead of failing the task."""
    folder = tmp_path / "names"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.png")
    with open(raw, "wb") as f:
        f.write((data["pngs"] / "a" / "img0.png").read_bytes())
    got = fld.predict_files([str(folder)]).compute()
    assert list(got["source"]) == [os.path.join(str(folder), "caf\\xe9.png")]
    assert got["error"].isna().all() and 0 <= got["label"].iloc[0] <= 9
    got.to_parquet(tmp_path / "names.parquet")


# ---- the command line --------------------------------------------------------------------------
def test_cli_parquet_on_a_running_cluster(client, data, tmp_path, capsys):
    out = tmp_path / "results.parquet"
    argv = ["predict", *data["sources"], "--scheduler", client.scheduler.address,
            "--output", str(out), "--files-per-partition", "9", "--top-k", "2"]
    before = worker_totals(client)["tasks"]
    assert cli.main(argv) == 1  # some inputs failed: reported, the rest written
    # One pass: each partition read once for the file, the error lines and the count.
    assert worker_totals(client)["tasks"] - before == len(fld.partition_sources(
        data["sources"], 9))
    err = capsys.readouterr().err
    for path in data["bad"]:
        assert f"fastlenet: {path}: " in err
    assert ":bad.png: " in err  # a shard member, named as in-process: src:member
    assert "input(s) failed" in err
    got = pd.read_parquet(out)
    want = list(fastlenet.predict_files(data["sources"], fastlenet.pretrained(), top_k=2))
    _rows_equal(got, want, 2)


def test_cli_csv_local_cluster_and_threads(data, tmp_path, capsys):
    """--scheduler local starts its own cluster; --output alone runs on Dask's threads here.
    Both give the same one-file CSV; a folder without errors exits 0. --weights takes a bundled
    model's name there as in-process (one rule: fastlenet.models.open_net)."""
    folder = str(data["pngs"] / "a")
    want = list(fastlenet.predict_files([folder], fastlenet.pretrained("mnist")))
    for extra in (["--scheduler", "local"], []):
        out = tmp_path / f"r{len(extra)}.csv"
        assert cli.main(["predict", folder, "--weights", "mnist", "--output", str(out),
                         *extra]) == 0
        assert "wrote 20 prediction(s)" in capsys.readouterr().err
        got = pd.read_csv(out, dtype={"member": "string", "error": "string"})
        assert list(got["source"]) == [p.source for p in want]
        np.testing.assert_array_equal(got["label"], [p.label for p in want])
        np.testing.assert_allclose(got["confidence"], [p.confidence for p in want], rtol=1e-15)


def test_cli_no_inputs(client, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "r.parquet"
    assert cli.main(["predict", str(empty), "--scheduler", client.scheduler.address,
                     "--output", str(out)]) == 1
    assert "no inputs found" in capsys.readouterr().err
