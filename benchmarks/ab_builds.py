"""Two builds of the engine in ONE process, interleaved call by call: is this build slower?

    python benchmarks/ab_builds.py OTHER_ENGINE_SO [--threads 1] [--rounds 21]

OTHER_ENGINE_SO is another build's compiled fastlenet/_engine*.so (e.g. main built in a copy:
`git archive main | tar -x -C /tmp/main && cd /tmp/main && python setup.py build_ext --inplace`).
It is loaded under another package name beside the installed fastlenet; both run the classic
net (random weights, tanh, average pooling) on the same float32 batch, alternating which goes
first each round, so a noisy neighbour slows both alike. Prints per-build medians and the median
of the per-round time ratio (this build / other; below 1 = this build faster), and checks that
both give bit-identical logits (the same kernels must give the same numbers).
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import numpy as np

import fastlenet
from fastlenet import bench


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", help="the other build's _engine*.so")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8192])
    args = ap.parse_args(argv)
    spec = importlib.util.spec_from_file_location("otherbuild._engine", args.other)
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    w, meta = bench.random_weights(0), {"activation": "tanh", "pool": "avg"}
    nets = {"this": fastlenet.Net(w, meta, num_threads=args.threads),
            "other": other.Net(w, meta, num_threads=args.threads)}
    rng = np.random.default_rng(1)
    for b in args.batches:
        x = rng.standard_normal((b, 1, 32, 32)).astype(np.float32)
        reps = max(1, 2000 // b) if b < 1000 else 3
        np.testing.assert_array_equal(nets["this"].logits(x), nets["other"].logits(x))
        t = {k: [] for k in nets}
        for r in range(args.rounds):
            for k in (list(nets) if r % 2 == 0 else list(nets)[::-1]):
                t0 = time.perf_counter()
                for _ in range(reps):
                    nets[k].logits(x)
                t[k].append((time.perf_counter() - t0) / reps)
        ratio = [a / o for a, o in zip(t["this"], t["other"])]
        q = np.percentile(ratio, [25, 75])
        print(f"batch {b}, {args.threads} thread(s), {args.rounds} rounds: "
              + ", ".join(f"{k} {b / statistics.median(v):,.0f} img/s" for k, v in t.items())
              + f"; time this/other median {statistics.median(ratio):.3f} "
                f"(quartiles {q[0]:.3f}-{q[1]:.3f})")


if __name__ == "__main__":
    main()
