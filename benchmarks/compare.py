"""fastlenet against its peers, interleaved, several rounds, medians and ratios.

    python benchmarks/compare.py                       # all engines installed here, 5 rounds
    python benchmarks/compare.py --rounds 3 --batches 1 8192 --plot docs/throughput.png

Every engine runs the same LeNet-5 (random weights, tanh, average pooling) on the same float32
(N, 1, 32, 32) batch, timed from the Python call to the numpy result. The int8 rows:
fastlenet-int8 (Net.quantize: fixed tanh scales) and onnxruntime-int8 (static QDQ quantization,
per-channel, MinMax-calibrated on 1,000 MNIST training digits, or the bundled sample without
../shared). Engines are interleaved
within each round, so a noisy neighbour slows them all alike; the table shows the median over
rounds of each engine's median call time, as images/s, and its ratio to fastlenet. Peers need
`pip install ".[peers]"`; missing ones are listed and skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys

import numpy as np

import fastlenet
from fastlenet import bench

TARGETS = """\
Targets (issue: speed), checked on the medians above:
  batch 8192, 2 threads: >= 150,000 img/s and >= 2x the best float32 peer
  batch 8192, 1 thread:  >= 80,000 img/s
  batch 1 latency:       <= 12 us and <= 1/3 of ONNX Runtime's
  batch 64, 2 threads:   >= 2x ONNX Runtime
  2 threads vs 1 at batch 8192: >= 1.8x
Targets (issue 19: int8 on a VNNI CPU), as ratios to fastlenet fp32 in the same run:
  batch 8192, 2 threads: >= 2.5x    batch 64: >= 1.5x    batch-1 latency: <= 5 us"""


def measure(engines, batches, threads, rounds, seconds, weights, meta):
    """{(engine, batch, threads): [seconds per call, one per round]}"""
    rng = np.random.default_rng(1)
    inputs = {b: rng.standard_normal((b, 1, 32, 32)).astype(np.float32) for b in batches}
    runners = {}
    for t in threads:
        for e in engines:
            kind, _, isa = e.partition("@")
            kwargs = {"isa": isa} if isa else {}
            runners[(e, t)] = bench.ENGINES[kind](weights, meta, t, **kwargs)
    times = {}
    for r in range(rounds):
        for b in batches:
            for t in threads:
                for e in engines:
                    if e.startswith("reference") and b > 1:
                        continue  # about 20 images/s
                    run = runners[(e, t)]
                    times.setdefault((e, b, t), []).append(bench.time_call(run, inputs[b], seconds))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    return times


def table(times, engines, batches, threads):
    lines = []
    header = f"{'engine':<18}" + "".join(f"{f'b{b} t{t}':>14}" for b in batches for t in threads)
    lines += [header, "-" * len(header)]
    med = {k: statistics.median(v) for k, v in times.items()}
    for e in engines:
        row = f"{e:<18}"
        for b in batches:
            for t in threads:
                s = med.get((e, b, t))
                row += f"{b / s:>14,.0f}" if s else f"{'-':>14}"
        lines.append(row)
    lines.append("")
    lines.append("ratio fastlenet / engine (higher = fastlenet faster):")
    for e in engines[1:]:
        row = f"{e:<18}"
        for b in batches:
            for t in threads:
                s, f = med.get((e, b, t)), med.get((engines[0], b, t))
                row += f"{s / f:>14.2f}" if s and f else f"{'-':>14}"
        lines.append(row)
    if 1 in batches:
        lines.append("")
        lines.append("batch-1 latency, median (us): " + ", ".join(
            f"{e} {med[(e, 1, threads[0])] * 1e6:.1f}" for e in engines if (e, 1, threads[0]) in med))
    return "\n".join(lines), med


def plot(med, engines, batches, threads, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 4.5), squeeze=False)
    width = 0.8 / len(engines)
    for ax, t in zip(axes[0], threads):
        for i, e in enumerate(engines):
            ys = [batches[j] / med[(e, b, t)] if (e, b, t) in med else 0
                  for j, b in enumerate(batches)]
            ax.bar(np.arange(len(batches)) + i * width, ys, width, label=e)
        ax.set_xticks(np.arange(len(batches)) + 0.4 - width / 2, [f"batch {b}" for b in batches])
        ax.set_yscale("log")
        ax.set_ylabel("images / s (log)")
        ax.set_title(f"LeNet-5 float32, {t} thread{'s' if t > 1 else ''}")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(engines), fontsize=8)
    fig.suptitle(f"{platform.processor() or platform.machine()}, fastlenet {fastlenet.__version__} "
                 f"({fastlenet.default_isa()})", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024, 8192])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=0.2, help="time per engine per round")
    ap.add_argument("--all-isas", action="store_true", help="fastlenet at every ISA level")
    ap.add_argument("--torch-compile", action="store_true", help="also torch.compile (slow)")
    ap.add_argument("--no-int8", dest="int8", action="store_false",
                    help="leave out the int8 rows (fastlenet-int8, onnxruntime-int8)")
    ap.add_argument("--reference", action="store_true", help="also the SciPy reference (batch 1)")
    ap.add_argument("--only", nargs="+", metavar="ENGINE",
                    help="measure only these engines besides fastlenet (e.g. onnxruntime torch.compile)")
    ap.add_argument("--plot", help="write a bar chart (PNG) here")
    ap.add_argument("--json", help="write the raw timings here")
    args = ap.parse_args(argv)

    engines = ["fastlenet", "fastlenet-int8"]
    if args.all_isas:
        engines += [f"fastlenet@{isa}" for isa in fastlenet.available_isas()[::-1][1:]]
    engines += ["numpy"] + (["reference"] if args.reference else [])
    for peer in bench.PEERS:
        if peer == "torch.compile" and not args.torch_compile:
            continue
        why = bench.unavailable(peer)
        if why:
            print(f"skipping {peer}: {why}", file=sys.stderr)
        else:
            engines.append(peer)

    if not args.int8:
        engines = [e for e in engines if not e.endswith("-int8")]
    if args.only:
        engines = [e for e in engines if e.startswith("fastlenet") or e in args.only]
        engines += [e for e in args.only if e not in engines and not bench.unavailable(e)]
    weights, meta = bench.random_weights(0), {"activation": "tanh", "pool": "avg"}
    times = measure(engines, args.batches, args.threads, args.rounds, args.seconds, weights, meta)
    text, med = table(times, engines, args.batches, args.threads)
    print(f"fastlenet {fastlenet.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"ISA {fastlenet.default_isa()}, medians of {args.rounds} rounds (img/s)\n")
    print(text)
    print()
    print(TARGETS)
    if args.plot:
        plot(med, engines, args.batches, args.threads, args.plot)
        print(f"plot: {args.plot}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{e}|{b}|{t}": v for (e, b, t), v in times.items()}, f, indent=1)


if __name__ == "__main__":
    main()
