"""Threads: results bit-identical for any thread count; one Net serving many Python threads;
a fork child that runs the Net does not hang; the GIL is released during a batch."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastlenet

from _helpers import ISA_TOL, SEED, images, make_net
from _helpers import TESTS  # noqa: E402

RAGGED = 1003  # not a multiple of any chunk, tile or thread count


def test_thread_count_invariance(isa):
    net = make_net(isa=isa, num_threads=1)
    x = images(RAGGED)
    serial = net.logits(x)
    for threads in (2, 3):
        net.num_threads = threads
        np.testing.assert_array_equal(net.logits(x), serial, err_msg=f"{threads} threads")


@pytest.mark.parametrize("method", ["predict_proba", "predict", "features"])
def test_thread_count_invariance_other_outputs(isa, method):
    x = images(203)
    serial = getattr(make_net(isa=isa, num_threads=1), method)(x)
    for threads in (2, 8):
        np.testing.assert_array_equal(getattr(make_net(isa=isa, num_threads=threads), method)(x),
                                      serial, err_msg=f"{method} with {threads} threads")


@pytest.mark.parametrize("n", [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65])
def test_thread_count_invariance_small_batches(isa, n):
    """Around the 'small batches run serially' threshold and the chunk size."""
    net1 = make_net(isa=isa, num_threads=1)
    net2 = make_net(isa=isa, num_threads=2)
    x = images(n)
    np.testing.assert_array_equal(net2.logits(x), net1.logits(x))


def test_thread_count_invariance_with_strided_uint8_and_normalization(isa):
    x = np.random.default_rng(7).integers(0, 256, (301, 28, 28), np.uint8).transpose(0, 2, 1)
    net = make_net(meta={"mean": 0.1307, "std": 0.3081}, isa=isa, num_threads=1)
    serial = net.logits(x)
    net.num_threads = 2
    np.testing.assert_array_equal(net.logits(x), serial)


def test_many_python_threads_share_one_net(isa):
    """8 Python threads call one Net at once (each with its own inputs, dtypes and methods,
    some multi-threaded inside): every result equals the serial one."""
    net = make_net(isa=isa, num_threads=2)
    base = images(600)
    jobs = []
    for t in range(8):
        x = base[t * 70: t * 70 + 21 + 7 * t]
        if t % 4 == 1:
            x = x.astype(np.float64)
        elif t % 4 == 2:
            x = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
        elif t % 4 == 3:
            x = (x * 255).astype(np.uint8)
        method = ("logits", "predict", "features", "predict_proba")[t % 4]
        jobs.append((method, x))
    serial = [getattr(net, m)(x) for m, x in jobs]
    start = threading.Barrier(8)

    def run(job):
        method, x = job
        start.wait(timeout=30)
        return [getattr(net, method)(x) for _ in range(3)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, jobs, timeout=120))
    for (method, _), expected, got in zip(jobs, serial, results):
        for r in got:
            np.testing.assert_array_equal(r, expected, err_msg=method)


def test_threads_with_different_nets_and_isas():
    """Several Nets (different ISAs and activations) used concurrently do not interfere."""
    nets = []
    for i, isa in enumerate(fastlenet.available_isas()):
        for act in ("tanh", "relu"):
            nets.append(make_net(meta={"activation": act}, isa=isa, num_threads=1 + i % 2))
    x = images(200)
    serial = [n.logits(x) for n in nets]
    with ThreadPoolExecutor(max_workers=len(nets)) as pool:
        got = list(pool.map(lambda n: n.logits(x), nets, timeout=120))
    for a, b in zip(got, serial):
        np.testing.assert_array_equal(a, b)
    # ... and the ISAs agree with each other
    for a in serial[2::2]:
        np.testing.assert_allclose(a, serial[0], rtol=0, atol=ISA_TOL)


FORK_SCRIPT = r"""
import os, sys, time
import numpy as np
sys.path.insert(0, {tests!r})
from _helpers import images, make_net

net = make_net(num_threads=2)
x = images(500)
expected = net.logits(x)          # the parent has run an OpenMP parallel region
assert net.logits(x).shape == (500, 10)

r, w = os.pipe()
pid = os.fork()
if pid == 0:                      # child: run the Net with 2 threads, report, exit
    os.close(r)
    try:
        ok = all(np.array_equal(net.logits(x), expected) for _ in range(3))
        os.write(w, b"ok" if ok else b"mismatch")
        os._exit(0 if ok else 3)
    except BaseException as e:
        os.write(w, repr(e).encode()[:500])
        os._exit(4)
os.close(w)
deadline = time.monotonic() + {child_timeout}
while True:                       # wait, but never forever: a hang is a failure
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print("CHILD HUNG")
        sys.exit(2)
    time.sleep(0.01)
msg = os.read(r, 1000).decode()
code = os.waitstatus_to_exitcode(status)
print("child:", code, msg)
# the parent still works after the fork, with threads
assert np.array_equal(net.logits(x), expected)
sys.exit(code)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_does_not_hang():
    tests = str(TESTS)
    script = FORK_SCRIPT.format(tests=tests, child_timeout=20)
    env = dict(os.environ, FASTLENET_TEST_SEED=str(SEED))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tests)
    out = proc.stdout + proc.stderr
    assert "CHILD HUNG" not in out, out
    assert proc.returncode == 0, out
    assert "child: 0 ok" in proc.stdout, out


def test_gil_is_released_during_a_batch():
    """While one thread runs a long batch, the main thread keeps running Python code."""
    net = make_net(isa="scalar", num_threads=1)
    x = np.broadcast_to(images(1)[0], (1000, 32, 32))
    done = threading.Event()
    ticks = 0

    def work():
        net.logits(x)
        done.set()

    t0 = time.perf_counter()
    th = threading.Thread(target=work)
    th.start()
    while not done.is_set():
        time.sleep(0.002)
        ticks += 1
    th.join()
    elapsed = time.perf_counter() - t0
    if elapsed < 0.1:
        pytest.skip(f"the batch took only {elapsed:.3f} s: too short to tell")
    # With the GIL held for the whole batch the loop would tick a handful of times at most.
    assert ticks >= 10, (ticks, elapsed)
