"""fastlenet.dask on a real cluster (a LocalCluster of worker processes on 127.0.0.1): arrays
bit for bit against the in-process Net, the Net sent once per worker, small tasks, the thread
policy, a worker killed mid-job, and the command line's checks. File inputs: test_dask_files.py.
"""
from __future__ import annotations

import os
import pickle

import dask
import dask.array as da
import numpy as np
import pytest
from _cluster import client, kill_worker_mid_job, wait_for_two_workers  # noqa: F401
from _helpers import make_net
from distributed.protocol.pickle import dumps as task_dumps

import fastlenet
from fastlenet import cli
from fastlenet import dask as fld

TASK_LIMIT = 10_000  # bytes a task may carry beyond its own data (issue target)


def _inputs(rng):
    """The input kinds the Net accepts, each as (name, numpy array, ragged chunks along N)."""
    n = 211
    f32 = rng.random((n, 32, 32), dtype=np.float32)
    u8 = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return [
        ("f32 (N,32,32)", f32, (1, 60, 100, 50)),
        ("u8 (N,28,28)", u8, (97, 97, 17)),
        ("f64 (N,1,32,32)", f32[:, None].astype(np.float64), (211,)),
        ("f32 (N,32,32,1)", np.ascontiguousarray(f32[..., None]), (3, 7, 201)),
        ("u8 (N,1,28,28) Fortran", np.asfortranarray(u8[:, None]), (100, 111)),
    ]


def test_arrays_bit_for_bit(client, rng):
    """Every method and input kind: the cluster's result equals the in-process Net's exactly
    (same ISA on the workers as here), with the documented dtype and shape."""
    net = make_net()
    lazy, expect = [], []
    for name, x, chunks in _inputs(rng):
        dx = da.from_array(x, chunks=(chunks,) + x.shape[1:])
        for method in fld.METHODS:
            y = fld.predict_array(dx, net, method)
            ref = getattr(net, method)(x)
            assert y.dtype == ref.dtype and y.shape == ref.shape, (name, method)
            assert y.chunks[0] == chunks, (name, method)
            lazy.append(y)
            expect.append((name, method, ref))
    got = dask.compute(*lazy)
    for (name, method, ref), out in zip(expect, got):
        assert out.dtype == ref.dtype, (name, method)
        np.testing.assert_array_equal(out, ref, err_msg=f"{name} {method}")


def test_pretrained_default_and_numpy_input(client):
    """net=None is the pretrained model; a NumPy array is wrapped in chunks of `chunks`."""
    from fastlenet.cli.bench import _sample

    x, y = _sample()
    out = fld.predict_array(x, chunks=128)
    assert out.chunks[0] == (128, 128, 128, 116)
    labels = out.compute()
    np.testing.assert_array_equal(labels, fastlenet.pretrained().predict(x))
    assert (labels == y).mean() > 0.98


def test_empty_and_unknown_chunks(client, rng):
    net = make_net()
    empty = da.zeros((0, 32, 32), dtype=np.float32, chunks=(5, 32, 32))
    assert fld.predict_array(empty, net).compute().shape == (0,)
    assert fld.predict_array(empty, net, "logits").compute().shape == (0, 10)
    # A boolean mask leaves the chunk sizes unknown (nan) until computed.
    x = rng.random((300, 32, 32), dtype=np.float32)
    keep = rng.random(300) < 0.5
    dx = da.from_array(x, chunks=(64, 32, 32))[da.from_array(keep, chunks=64)]
    assert np.isnan(dx.shape[0])
    np.testing.assert_array_equal(fld.predict_array(dx, net, "logits").compute(),
                                  net.logits(x[keep]))


def test_refuses_bad_arrays_before_running():
    net = make_net()
    x = da.zeros((64, 32, 32), dtype=np.float32, chunks=(16, 16, 32))
    with pytest.raises(ValueError, match=r"axis 1 is split.*x\.rechunk\(\{1: -1\}\)"):
        fld.predict_array(x, net)
    with pytest.raises(TypeError, match="x: expected dtype float32, float64 or uint8; got int16"):
        fld.predict_array(da.zeros((4, 32, 32), dtype=np.int16), net)
    with pytest.raises(ValueError, match=r"got shape \(4, 30, 30\)"):
        fld.predict_array(da.zeros((4, 30, 30), dtype=np.float32), net)
    with pytest.raises(ValueError, match=r"x: a batch of images chunked along N; "
                                         r"expected .*got shape \(32, 32\)"):
        fld.predict_array(da.zeros((32, 32), dtype=np.float32), net)
    with pytest.raises(ValueError, match="method: expected one of predict, predict_proba"):
        fld.predict_array(da.zeros((4, 32, 32), dtype=np.float32), net, "proba")
    with pytest.raises(ValueError, match="threads: expected a positive integer"):
        fld.predict_array(da.zeros((4, 32, 32), dtype=np.float32), net, threads=0)
    with pytest.raises(ValueError, match="isa: expected one of"):
        fld.predict_array(da.zeros((4, 32, 32), dtype=np.float32), net, isa="sse9")
    with pytest.raises(TypeError, match="net: expected a fastlenet.Net"):
        fld.predict_array(da.zeros((4, 32, 32), dtype=np.float32), net.weights)
    with pytest.raises(TypeError, match="x: expected a dask array or a NumPy array"):
        fld.predict_array([[0.0]], net)


def _our_tasks(y):
    graph = dict(y.__dask_graph__())
    return graph, {k: v for k, v in graph.items()
                   if isinstance(k, tuple) and k[0] == y.name}


def test_net_is_one_graph_key_and_tasks_are_small(rng):
    """The Net (about 250 KB pickled) is one key of the graph; each task names it and carries
    under 10 KB, serialized the way distributed sends tasks. The naive map_blocks(net.predict)
    is shown for contrast: there every task carries the whole Net."""
    net = make_net()
    x = da.from_array(rng.random((4000, 32, 32), dtype=np.float32), chunks=(250, 32, 32))
    y = fld.predict_array(x, net, "predict_proba")
    graph, tasks = _our_tasks(y)
    net_keys = [k for k in graph if isinstance(k, str) and k.startswith(fld.NET_KEY_PREFIX)]
    assert len(net_keys) == 1
    net_size = len(task_dumps(graph[net_keys[0]]))
    assert net_size > 200_000
    assert len(tasks) == 16
    sizes = [len(task_dumps(t)) for t in tasks.values()]
    print(f"Net key: {net_size:,} bytes; per task: {min(sizes)}..{max(sizes)} bytes")
    assert max(sizes) < TASK_LIMIT
    for t in tasks.values():
        assert net_keys[0] in t.dependencies
    naive = x.map_blocks(net.predict, dtype=np.int64, drop_axis=[1, 2])
    _, naive_tasks = _our_tasks(naive)
    assert min(len(task_dumps(t)) for t in naive_tasks.values()) > 200_000


def test_net_unpickled_once_per_worker(client, rng):
    """Two jobs of 24 tasks with the same weights: each worker process unpickles the Net at most
    once in all, and the tasks all ran on the workers."""
    net = make_net(meta={"classes": list("abcdefghij")})  # a token no other test uses
    x = da.from_array(rng.integers(0, 256, (2400, 28, 28), dtype=np.uint8), chunks=(100, 28, 28))
    before = client.run(fld.worker_info)
    for _ in range(2):
        np.testing.assert_array_equal(fld.predict_array(x, net).compute(), net.predict(x))
    after = client.run(fld.worker_info)
    token = fld.SharedNet.from_net(net).token
    loads = {w: after[w]["nets_loaded"] - before[w]["nets_loaded"] for w in after}
    assert sum(after[w]["tasks"] - before[w]["tasks"] for w in after) == 48
    assert all(v <= 1 for v in loads.values()), loads
    users = [w for w in after if after[w]["tasks"] > before[w]["tasks"]]
    for w in users:
        assert [token, 1, None] in after[w]["cached"]


def test_thread_policy_on_workers(client, rng):
    """The nanny sets OMP_NUM_THREADS=1, so each task's engine uses one thread; threads=
    overrides it, and the results do not depend on it."""
    assert set(client.run(lambda: os.environ.get("OMP_NUM_THREADS")).values()) == {"1"}
    assert set(client.run(fld.engine_threads).values()) == {1}
    net = make_net(meta={"classes": list("ABCDEFGHIJ")})
    x = da.from_array(rng.random((600, 32, 32), dtype=np.float32), chunks=(300, 32, 32))
    one = fld.predict_array(x, net, "logits").compute()
    two = fld.predict_array(x, net, "logits", threads=2).compute()
    np.testing.assert_array_equal(one, two)
    token = fld.SharedNet.from_net(net).token
    cached = [c for v in client.run(fld.worker_info).values() for c in v["cached"]]
    assert [token, 2, None] in cached


def test_engine_threads_policy(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert fld.engine_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert fld.engine_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert fld.engine_threads() == max(1, fastlenet.DEFAULT_THREADS)
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert fld.engine_threads() == 1
    assert fld.engine_threads(3) == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads: expected a positive integer"):
            fld.engine_threads(bad)


def test_worker_net_cache_is_bounded_and_keeps_no_thread_setting_from_the_client():
    net = make_net(num_threads=2)
    shared = fld.SharedNet.from_net(net)
    got = fld._worker_net(shared, None, None)
    assert got is fld._worker_net(shared, None, None)
    assert got.num_threads == fld.engine_threads()
    np.testing.assert_array_equal(got.weights["c1.weight"], net.weights["c1.weight"])
    for t in range(1, 2 * fld._CACHE_SIZE):
        fld._worker_net(shared, t, None)
    assert len(fld._cache) == fld._CACHE_SIZE
    # The Net's hash is its content's: equal weights and metadata, equal token.
    assert fld.SharedNet.from_net(make_net()).token == shared.token
    assert pickle.loads(pickle.dumps(shared)).token == shared.token


def test_worker_killed_mid_job(client):
    """SIGKILL one worker process while a job of 60 tasks runs: the nanny restarts it, the
    scheduler reruns what was lost, and the result equals the in-process one row for row
    (every image exactly once, in order)."""
    net = make_net()
    n, chunk = 120_000, 2_000
    # Generated on the workers from per-chunk seeds, so that nothing big travels; the same
    # graph computed here gives the same images for the reference.
    x = da.random.default_rng(20261122).integers(0, 256, size=(n, 28, 28), dtype=np.uint8,
                                                 chunks=(chunk, 28, 28))
    expect = net.logits(x.compute(scheduler="threads"))
    fut = client.compute(fld.predict_array(x, net, "logits"))
    killed = kill_worker_mid_job(client, fut, n, fraction=0.1)
    out = fut.result(timeout=300)
    np.testing.assert_array_equal(out, expect)
    wait_for_two_workers(client, killed)


# ---- the command line (what needs no pipeline) -------------------------------------------------
def test_cli_checks_output(capsys):
    assert cli.main(["predict", "x.png", "--scheduler", "local"]) == 1
    assert "--scheduler needs --output" in capsys.readouterr().err
    assert cli.main(["predict", "x.png", "--output", "results.txt"]) == 1
    assert "expected a name ending in .parquet or .csv" in capsys.readouterr().err


def test_partition_rule_for_containers():
    """Dask's partitioner asks the pipeline's own rule (fastlenet.io.kinds): an image extension
    wins, so idx_0001.png is one image file among others, not a container of its own."""
    from fastlenet.io.kinds import is_container

    for name in ("a.tar", "b.TAR.GZ", "c.tgz", "d.zip", "e.npy", "train-images-idx3-ubyte",
                 "t10k-images-idx3-ubyte.gz", "f.idx"):
        assert is_container(name), name
    for name in ("a.png", "b.jpg", "tar", "x.npz.png", "idx_0001.png", "scans/IDX_7.PNG"):
        assert not is_container(name), name
