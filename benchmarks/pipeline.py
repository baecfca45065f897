"""Images/s of the file pipeline beside the engine and a bare Pillow loop, in one run.

    python benchmarks/pipeline.py                   # 3 interleaved rounds, medians and ratios
    python benchmarks/pipeline.py --rounds 5 --cases png pillow --pool thread

Data comes from ../shared/data/mnist (or --mnist DIR) and is written once into --data (default
a folder in the system temp dir): the 10,000 test digits as PNG files, and a tar shard of the
same files. Cases:

    engine   net.predict_proba on the 60,000 training digits (uint8 arrays in memory), in
             batches of --batch-size: the ceiling
    idx      predict_files on train-images-idx3-ubyte.gz (60,000 digits, gzipped)
    png      predict_files on the folder of 10,000 PNG files
    tar      predict_files on the tar shard of the same files
    pillow   the baseline: one thread opening and decoding each PNG file with Pillow
             (Image.open + load), nothing else

Each round runs every case once, in turn (so that machine load hits all alike); the table shows
the median images/s, the spread (min..max) and the ratios the pipeline is judged by, and for
each case the CPU time per image (this process and its reaped children: the decode workers) and
the cores it got (CPU time / wall time). On a shared Linux machine with autogroup scheduling
(/proc/sys/kernel/sched_autogroup_enabled = 1) CPU is shared fairly between sessions, not
processes: when other sessions keep the cores busy, the pipeline's processes together get about
what the one-thread loop gets, and the images/s ratio falls to the ratio of CPU per image. The
last line projects the png/pillow ratio on two cores of our own from the CPU figures.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MNIST = os.path.join(HERE, "..", "..", "shared", "data", "mnist")


def prepare(mnist: str, data: str, n_png: int = 10000):
    """Write the PNG folder and the tar shard from the MNIST test digits (once)."""
    import numpy as np
    from PIL import Image

    from fastlenet.io.containers import read_idx

    png = os.path.join(data, f"t10k-png-{n_png}")
    tar = os.path.join(data, f"t10k-png-{n_png}.tar")
    if not os.path.isdir(png) or len(os.listdir(png)) != n_png:
        os.makedirs(png, exist_ok=True)
        x = read_idx(os.path.join(mnist, "t10k-images-idx3-ubyte.gz"))[:n_png]
        for i, im in enumerate(np.asarray(x)):
            Image.fromarray(im).save(os.path.join(png, f"{i:05d}.png"))
    if not os.path.exists(tar):
        with tarfile.open(tar + ".part", "w") as t:
            for name in sorted(os.listdir(png)):
                t.add(os.path.join(png, name), arcname=f"t10k/{name}")
        os.replace(tar + ".part", tar)
    return png, tar, os.path.join(mnist, "train-images-idx3-ubyte.gz")


def _cpu():
    """CPU seconds of this process and of its reaped children (the pool is shut down, so its
    workers are reaped, by the time a pipeline case returns)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime


def run_case(case, net, paths, args):
    """-> (images/s, CPU seconds per image, of which in this process, cores used)"""
    import fastlenet
    from fastlenet.pipeline.run import predict_batches

    png, tar, idx = paths
    m0, c0 = _cpu()
    t = time.perf_counter()
    if case == "engine":
        x = ENGINE_X[0]
        n = len(x)
        for i in range(0, n, args.batch_size):
            net.predict_proba(x[i:i + args.batch_size])
    elif case == "pillow":
        from PIL import Image

        n = 0
        for name in sorted(os.listdir(png)):
            with Image.open(os.path.join(png, name)) as im:
                im.load()
            n += 1
    else:
        src = {"idx": idx, "png": png, "tar": tar}[case]
        n = 0
        for rows in predict_batches(src, net, batch_size=args.batch_size,
                                    workers=args.workers, pool=args.pool):
            n += len(rows)
            if rows[0].error:
                raise SystemExit(f"{case}: {rows[0].error}")
    wall = time.perf_counter() - t
    m1, c1 = _cpu()
    cpu = m1 - m0 + c1 - c0
    return n / wall, cpu / n, (m1 - m0) / n, cpu / wall


ENGINE_X = []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default=DEFAULT_MNIST, help="folder of MNIST's gzipped IDX files")
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "fastlenet-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", nargs="+", default=["engine", "idx", "png", "tar", "pillow"])
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--pool", choices=("process", "thread"), default=None)
    args = ap.parse_args(argv)
    if not os.path.isdir(args.mnist):
        sys.exit(f"no MNIST data in {args.mnist} (--mnist DIR)")
    import fastlenet
    import fastlenet.pipeline
    from fastlenet.io.containers import read_idx

    os.makedirs(args.data, exist_ok=True)
    paths = prepare(args.mnist, args.data)
    ENGINE_X.append(read_idx(paths[2]))
    net = fastlenet.pretrained()
    print(f"fastlenet {fastlenet.__version__}, {net.isa}, {net.num_threads} engine threads, "
          f"workers={args.workers if args.workers is not None else fastlenet.DEFAULT_THREADS}, "
          f"pool={args.pool or 'process'}, batch {args.batch_size}; {args.rounds} interleaved "
          f"rounds", flush=True)
    try:
        with open("/proc/self/autogroup") as f:
            group = f.read().split()[0]
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            group += " (autogroup scheduling " + ("on)" if f.read().strip() == "1" else "off)")
    except OSError:
        group = "n/a"
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; {os.cpu_count()} "
          f"CPUs; session group {group}", flush=True)
    results = {c: [] for c in args.cases}
    cpu = {c: [] for c in args.cases}
    main_cpu = {c: [] for c in args.cases}
    cores = {c: [] for c in args.cases}
    for r in range(args.rounds):
        for case in args.cases:
            rate, per, main_per, used = run_case(case, net, paths, args)
            results[case].append(rate)
            cpu[case].append(per)
            main_cpu[case].append(main_per)
            cores[case].append(used)
        print(f"round {r + 1}: " + ", ".join(f"{c} {v[-1]:,.0f}" for c, v in results.items())
              + f" (load {os.getloadavg()[0]:.1f})", flush=True)
    med = {c: statistics.median(v) for c, v in results.items()}
    print()
    print(f"{'case':<8} {'images/s (median)':>18} {'min..max':>22} {'CPU us/image':>14} "
          f"{'(main)':>7} {'cores used':>11}")
    for c, v in results.items():
        print(f"{c:<8} {med[c]:>18,.0f} {min(v):>10,.0f}..{max(v):<10,.0f} "
              f"{statistics.median(cpu[c]) * 1e6:>14.1f} {statistics.median(main_cpu[c]) * 1e6:>7.1f}"
              f" {statistics.median(cores[c]):>11.2f}")
    print()
    for a, b, target in (("png", "pillow", 1.5), ("idx", "engine", 0.5), ("tar", "png", 1.0)):
        if a in med and b in med:
            # ratio per round too: the rounds share their machine load
            per = [x / y for x, y in zip(results[a], results[b])]
            print(f"{a}/{b}: {med[a] / med[b]:.2f} (per round {min(per):.2f}..{max(per):.2f}; "
                  f"target >= {target})")
    if "png" in med and "pillow" in med:
        # both CPU-bound: the loop on one core, the pipeline on all of them at best
        n = os.cpu_count() or 1
        proj = n * statistics.median(cpu["pillow"]) / statistics.median(cpu["png"])
        print(f"png/pillow projected on {n} cores of our own (CPU per image, pipeline fully "
              f"parallel): {proj:.2f}; at equal CPU shares: "
              f"{statistics.median(cpu['pillow']) / statistics.median(cpu['png']):.2f}")


if __name__ == "__main__":
    main()
