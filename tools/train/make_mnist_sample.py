#!/usr/bin/env python3
"""Write fastlenet/data/mnist_sample.npz: the first N MNIST *test* digits.

Arrays: images uint8 (N, 28, 28) (white digit on black, as in MNIST), labels uint8 (N,).
Compressed with np.savez_compressed; no pickled objects (np.load(..., allow_pickle=False)).

MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, CC BY-SA 3.0.

Usage (from the project root; needs only numpy):
    python tools/train/make_mnist_sample.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_mnist import DEFAULT_DATA_DIR, PROJECT_ROOT, load_mnist  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "fastlenet" / "data" / "mnist_sample.npz")
    args = ap.parse_args()

    images, labels = load_mnist(args.data_dir, "t10k")
    images, labels = images[:args.count].copy(), labels[:args.count].copy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images=images, labels=labels)

    with np.load(args.out, allow_pickle=False) as z:
        assert z["images"].dtype == np.uint8 and z["images"].shape == (args.count, 28, 28)
        assert z["labels"].dtype == np.uint8 and z["labels"].shape == (args.count,)
        assert np.array_equal(z["images"], images) and np.array_equal(z["labels"], labels)
    counts = np.bincount(labels, minlength=10)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); label counts {counts.tolist()}")


if __name__ == "__main__":
    main()
