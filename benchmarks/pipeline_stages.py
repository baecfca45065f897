"""Where a PNG file's time goes in the pipeline: CPU per image of each stage, in one process.

    python benchmarks/pipeline_stages.py            # the 10,000 test digits written by pipeline.py
    python benchmarks/pipeline_stages.py --files 2000 --rounds 7

Each stage runs over the same files, in tasks of tasks.TASK_FILES as the decode workers run
them, and is timed by process CPU time; a stage's figure is its best of --rounds (the others are
preemptions on a shared machine). Stages: the folder walk (main process), reading the bytes,
decoding them (decode.decode_many), the C preprocessing (one thread), the engine (one thread),
and the whole worker task (tasks._decode_task: all of these but the walk, plus the glue).
The bare Pillow loop of pipeline.py is timed alongside for scale.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def best_cpu(fn, rounds):
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def main(argv=None):
    import pipeline as bench_pipeline

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", default=bench_pipeline.DEFAULT_MNIST)
    ap.add_argument("--data", default=os.path.join(__import__("tempfile").gettempdir(),
                                                   "fastlenet-bench"))
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    import fastlenet
    from fastlenet import prepare
    from fastlenet.io import decode as images, kinds, sources
    from fastlenet.pipeline import tasks as pipeline

    png, _, _ = bench_pipeline.prepare(args.mnist, args.data)
    net = fastlenet.pretrained()
    solo = fastlenet.Net(net.weights, net.meta, num_threads=1)
    solo.isa = net.isa
    size, light = prepare.model_geometry(net)
    cfg = prepare.Settings(size, "auto", light, "auto", images.MAX_PIXELS, kinds.MAX_FILE_BYTES,
                           1, 1)
    files = list(sources.expand(png))[:args.files]
    n, step = len(files), pipeline.TASK_FILES
    tasks = [files[i:i + step] for i in range(0, n, step)]
    blobs = [[images.read_file_bytes(p, cfg.max_bytes) for p in t] for t in tasks]
    decoded = [images.decode_many(b) for b in blobs]
    x = [prepare.preprocess_decoded(d, cfg) for d in decoded]

    def pillow():
        from PIL import Image

        for p in files:
            with Image.open(p) as im:
                im.load()

    stages = [
        ("folder walk (main process)", lambda: list(pipeline._units([png], cfg, step, 1024))),
        ("read the bytes", lambda: [[images.read_file_bytes(p, cfg.max_bytes) for p in t]
                                    for t in tasks]),
        ("decode (decode.decode_many)", lambda: [images.decode_many(b) for b in blobs]),
        ("preprocess (C, 1 thread)", lambda: [prepare.preprocess_decoded(d, cfg)
                                              for d in decoded]),
        ("engine (1 thread)", lambda: [solo.predict_proba(b) for b in x]),
        ("whole worker task", lambda: [pipeline._decode_task("files", t, cfg) for t in tasks]),
        ("bare Pillow loop (open + load)", pillow),
    ]
    print(f"fastlenet {fastlenet.__version__}, {net.isa}; {n} PNG files from {png}; best of "
          f"{args.rounds} rounds, CPU time per image")
    for name, fn in stages:
        print(f"  {name:<32} {best_cpu(fn, args.rounds) / n * 1e6:7.1f} us")


if __name__ == "__main__":
    main()
