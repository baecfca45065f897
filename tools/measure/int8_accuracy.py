#!/usr/bin/env python3
"""The int8 accuracy contract, measured in full (README "Precision"; tests/engine/test_int8.py
checks the same on the committed samples):

    python tools/measure/int8_accuracy.py            # needs ../shared/data/mnist

For each bundled model on the 10,000 MNIST test digits and on the printed sample
(tests/data/printed_sample, through predict_files as files are read): top-1 agreement of int8
with fp32, both accuracies, the flips with their fp32 top-2 margins, and the largest softmax
deviation. Then the ReLU fixture (tests/data/relu_max_mnist.npz) calibrated on 1,000 MNIST
training digits (59,000..59,999), its agreement on the test digits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import fastlenet
from fastlenet.io import containers

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
PRINTED = ROOT / "tests" / "data" / "printed_sample"


def report(what, fp, q, x, y):
    pf, pq = fp.predict(x), q.predict(x)
    prf, prq = fp.predict_proba(x), q.predict_proba(x)
    flips = np.flatnonzero(pf != pq)
    top2 = np.sort(prf, axis=1)[:, -2:]
    margins = (top2[flips, 1] - top2[flips, 0]) if len(flips) else np.array([])
    print(f"{what}: n={len(x)}  agreement {np.mean(pf == pq):.4%} ({len(flips)} flips, fp32 "
          f"top-2 margins {[round(float(m), 3) for m in margins]})  accuracy fp32 {np.mean(pf == y):.4%} "
          f"int8 {np.mean(pq == y):.4%}  max |d softmax| {np.abs(prf - prq).max():.4f}")


def main() -> None:
    x = containers.read_idx(MNIST / "t10k-images-idx3-ubyte.gz")
    y = containers.read_idx(MNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    files = sorted(PRINTED.rglob("*.png"))
    labels = np.array([int(p.parent.name) for p in files])
    for name in ("digits", "mnist"):
        fp = fastlenet.pretrained(name)
        q = fp.quantize()
        report(f"{name} MNIST test", fp, q, x, y)
        rf = [r.label for r in fastlenet.predict_files([str(p) for p in files], net=fp)]
        rq = [r.label for r in fastlenet.predict_files([str(p) for p in files], net=q)]
        rf, rq = np.array(rf).astype(int), np.array(rq).astype(int)
        print(f"{name} printed sample: n={len(files)}  agreement {np.mean(rf == rq):.4%}  "
              f"accuracy fp32 {np.mean(rf == labels):.4%} int8 {np.mean(rq == labels):.4%}")
    relu = fastlenet.load(ROOT / "tests" / "data" / "relu_max_mnist.npz")
    calib = containers.read_idx(MNIST / "train-images-idx3-ubyte.gz")[59000:60000]
    q = relu.quantize(calib)
    print(f"relu fixture act_max (min-max over 1,000 training digits): {q.meta['int8']['act_max']}")
    report("relu_max_mnist MNIST test", relu, q, x, y)


if __name__ == "__main__":
    main()
