"""A real Dask cluster for the tests: a LocalCluster of 2 single-threaded worker processes on
the loopback interface, one per test module (starting one costs a few seconds)."""
from __future__ import annotations

import os
import signal
import time

import pytest
from distributed import Client, LocalCluster

from fastlenet import dask as fld


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as c:
        yield c


def worker_totals(client) -> dict:
    """Sum of fastlenet.dask.worker_info() counters over the live workers."""
    info = client.run(fld.worker_info)
    return {k: sum(v[k] for v in info.values()) for k in ("nets_loaded", "tasks", "items")}


def kill_worker_mid_job(client, future, total_items, fraction=0.25, timeout=120.0):
    """Wait until about `fraction` of the job's items are done on the workers, then SIGKILL one
    worker process (the nanny restarts it). Returns the killed pid; fails if the job ended
    before the kill, since then the test would prove nothing."""
    pids = client.run(os.getpid)
    start = worker_totals(client)["items"]
    deadline = time.monotonic() + timeout
    while worker_totals(client)["items"] - start < fraction * total_items:
        assert not future.done(), "the job ended before a worker could be killed"
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.01)
    assert not future.done(), "the job ended before a worker could be killed"
    # The worker that ran most recently is as good as any: both run tasks of this job.
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    return victim


def wait_for_two_workers(client, killed_pid, timeout=60.0):
    """After a kill: the nanny's replacement is up, and it is a new process."""
    client.wait_for_workers(2, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        pids = set(client.run(os.getpid).values())
        if len(pids) == 2 and killed_pid not in pids:
            return
        assert time.monotonic() < deadline, f"workers after the kill: {pids}"
        time.sleep(0.1)
