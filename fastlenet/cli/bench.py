"""fastlenet demo (the bundled model on the bundled MNIST sample) and fastlenet bench (images/s
and batch-1 latency here, beside NumPy, the reference and the peers installed)."""
from __future__ import annotations

from typing import List

import numpy as np

from fastlenet import _engine, bench, models
from fastlenet._version import __version__
from fastlenet.cli.common import load_net

ASCII_RAMP = " .:-=+*#%@"


def ascii_art(img: np.ndarray) -> List[str]:
    """A uint8 light-on-dark digit -> lines of ASCII, two characters per pixel."""
    idx = (img.astype(np.int32) * (len(ASCII_RAMP) - 1) + 127) // 255
    return ["".join(ASCII_RAMP[v] * 2 for v in row) for row in idx]


def _sample():
    from importlib.resources import files

    with np.load(files("fastlenet") / "data" / "mnist_sample.npz", allow_pickle=False) as z:
        return z["images"], z["labels"]


def _throughput(net, x, seconds):
    per_batch = bench.time_call(net.logits, x, seconds)
    latency = bench.time_call(net.logits, x[:1], seconds)
    return len(x) / per_batch, latency


def cmd_demo(args) -> int:
    net = load_net(None, threads=args.threads, precision=args.precision)
    x, y = _sample()
    pred = net.predict(x)
    proba = net.predict_proba(x)
    correct = int((pred == y).sum())
    meta = net.meta
    what = ("MNIST and printed digits" if meta.get("name") == "digits" else "MNIST")
    print(f"fastlenet {__version__}: the bundled LeNet-5 (trained on {what}) on "
          f"{len(x)} MNIST test digits")
    full = meta.get("test_accuracy")
    print(f"accuracy: {correct / len(x):.2%} ({correct}/{len(x)})"
          + (f"   [full 10,000-digit test set: {full:.2%}]" if full else ""))
    print()
    print("  #  label  predicted  confidence")
    for i in range(min(args.show, len(x))):
        mark = "" if pred[i] == y[i] else "   <- wrong"
        print(f"{i:3d}  {y[i]:5d}  {pred[i]:9d}  {proba[i, pred[i]]:10.4f}{mark}")
    wrong = np.flatnonzero(pred != y)
    if args.show:
        picks = [0] + ([int(wrong[0])] if len(wrong) else [1])
        arts = [ascii_art(x[i]) for i in picks]
        print()
        titles = [f"#{i}: label {y[i]}, predicted {pred[i]}" for i in picks]
        print("    ".join(t.ljust(56) for t in titles).rstrip())
        lines = ["    ".join(rows).rstrip() for rows in zip(*arts)]
        keep = [i for i, line in enumerate(lines) if line]
        for line in lines[keep[0]:keep[-1] + 1] if keep else []:
            print(line)
    print()
    batch = np.ascontiguousarray(np.resize(x, (args.batch, 28, 28)))
    ips, lat = _throughput(net, batch, args.seconds)
    print(f"throughput on this machine ({net.precision} on {net.kernels}, {net.num_threads} thread"
          f"{'s' if net.num_threads > 1 else ''}): {ips:,.0f} images/s at batch {len(batch)}, "
          f"batch-1 latency {lat * 1e6:.1f} us")
    return 0


def cmd_bench(args) -> int:
    net = models.pretrained(precision=args.precision or "fp32")
    weights, meta = net.weights, net.meta
    name = "fastlenet" if net.precision == "fp32" else "fastlenet-int8"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 1, 32, 32)).astype(np.float32)
    threads_list = list(range(1, _engine.DEFAULT_THREADS + 1))
    rows = []

    def measure(engine, threads, label=None, isa=None, batch=None):
        xb = x if batch is None else x[:batch]
        try:
            if isa is not None:
                run = bench.make_fastlenet(weights, meta, threads, isa=isa)
            else:
                run = bench.ENGINES[engine](weights, meta, threads)
            ips = len(xb) / bench.time_call(run, xb, args.seconds)
            lat = bench.time_call(run, xb[:1], args.seconds)
        except Exception as e:  # a peer that fails to build must not end the benchmark
            print(f"{label or engine:<14} failed: {type(e).__name__}: {e}".splitlines()[0])
            return
        row = (label or engine, isa or "-", threads, len(xb), ips, lat)
        rows.append(row)
        print(f"{row[0]:<14} {row[1]:<7} {row[2]!s:>7} {row[3]:>6} {ips:>14,.0f} "
              f"{lat * 1e6:>12.1f}", flush=True)

    print(f"{'engine':<14} {'isa':<7} {'threads':>7} {'batch':>6} {'images/s':>14} "
          f"{'batch-1 (us)':>12}")
    for isa in _engine.available_isas():
        for t in threads_list:
            measure(name, t, isa=isa)
    measure("numpy", "-")
    measure("reference", 1, batch=min(args.batch, 8))
    if args.peers:
        for engine in bench.PEERS:
            if engine == "torch.compile":
                continue  # compiling takes tens of seconds per thread count
            why = bench.unavailable(engine)
            if why:
                print(f"{engine:<14} skipped: {why}")
                continue
            for t in sorted({1, threads_list[-1]}):
                measure(engine, t)
    best = max((r for r in rows if r[0] == name), key=lambda r: r[4], default=None)
    if best:
        others = [r for r in rows if r[0] != name and r[3] == best[3]]
        if others:
            print()
            print(f"{name} ({best[1]}, {best[2]} threads) at batch {best[3]}: "
                  + ", ".join(f"{best[4] / r[4]:.1f}x {r[0]}"
                            + (f" ({r[2]} thr)" if r[2] != "-" else "") for r in others))
    return 0
