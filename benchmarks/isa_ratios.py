"""Every ISA level against the scalar specification, by CPU time per call, 1 thread.

    python benchmarks/isa_ratios.py                 # 5 interleaved rounds, batch 1 and 8192
    python benchmarks/isa_ratios.py --rounds 9 --batches 1 64 8192

On a shared machine, wall-clock times of long calls (scalar takes seconds at batch 8192) swell
with every preemption, so compare.py's ratios at large batches drift with the load. The CPU time
of the calling thread (time.thread_time) counts only the time the engine ran, which is what an
ISA level changes; with one engine thread that thread does all the work. Levels run interleaved
within each round; the table shows medians over rounds, the spread, and each level's ratio to
scalar.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fastlenet
from fastlenet import bench


def cpu_seconds_per_call(run, x, min_seconds):
    """Lowest CPU seconds per call over samples filling min_seconds (after one warm-up); a
    sample repeats short calls to last >= 5 ms, far above the CPU clock's resolution."""
    t0 = time.perf_counter()
    run(x)
    calls = max(1, int(0.005 / max(time.perf_counter() - t0, 1e-7)))
    best, spent = float("inf"), 0.0
    while spent < min_seconds or best == float("inf"):
        t0 = time.thread_time()
        for _ in range(calls):
            run(x)
        dt = time.thread_time() - t0
        best, spent = min(best, dt / calls), spent + dt
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8192])
    ap.add_argument("--seconds", type=float, default=0.3, help="CPU time per level per round")
    args = ap.parse_args(argv)
    weights, meta = bench.random_weights(0), {"activation": "tanh", "pool": "avg"}
    isas = fastlenet.available_isas()
    runners = {isa: bench.make_fastlenet(weights, meta, 1, isa=isa) for isa in isas}
    rng = np.random.default_rng(1)
    inputs = {b: rng.standard_normal((b, 1, 32, 32)).astype(np.float32) for b in args.batches}
    times = {}
    for _ in range(args.rounds):
        for b in args.batches:
            for isa in isas:
                times.setdefault((isa, b), []).append(
                    cpu_seconds_per_call(runners[isa], inputs[b], args.seconds))
    print(f"fastlenet {fastlenet.__version__}, ISA levels {', '.join(isas)}, 1 thread, "
          f"CPU time per call, medians of {args.rounds} interleaved rounds")
    print(f"{'batch':>6} {'level':<8} {'images/s':>10} {'spread':>21} {'x scalar':>9}")
    for b in args.batches:
        med = {isa: statistics.median(times[(isa, b)]) for isa in isas}
        for isa in isas:
            lo, hi = b / max(times[(isa, b)]), b / min(times[(isa, b)])
            print(f"{b:>6} {isa:<8} {b / med[isa]:>10,.0f} {f'{lo:,.0f}..{hi:,.0f}':>21} "
                  f"{med['scalar'] / med[isa]:>9.1f}")


if __name__ == "__main__":
    main()
