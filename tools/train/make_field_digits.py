#!/usr/bin/env python3
"""Write tests/data/fields/mnist_train_digits.npz: 1,000 MNIST *training* digits (every fifth of
train indices 55,000-59,999) that the field synthesizer (tests/_fields.py) composes into fields
for the tests, so that a fresh clone's tests need no ../shared data.

Arrays: images uint8 (1000, 28, 28) (white digit on black, as in MNIST), labels uint8 (1000,),
indices int32 (1000,) into the MNIST training set. np.savez_compressed, no pickled objects.

MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, CC BY-SA 3.0.

Usage (from the project root; numpy only):
    python tools/train/make_field_digits.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_mnist import DEFAULT_DATA_DIR, PROJECT_ROOT, load_mnist  # noqa: E402

# The last 5,000 training digits: the tail that train_mnist.py's recipe can hold out, and far
# from the test set the benchmarks draw from. Every fifth keeps all writers of that range.
INDICES = np.arange(55_000, 60_000, 5, dtype=np.int32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out", type=Path,
                    default=PROJECT_ROOT / "tests" / "data" / "fields" / "mnist_train_digits.npz")
    args = ap.parse_args()

    images, labels = load_mnist(args.data_dir, "train")
    images, labels = images[INDICES].copy(), labels[INDICES].copy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images=images, labels=labels, indices=INDICES)
    with np.load(args.out, allow_pickle=False) as z:
        assert np.array_equal(z["images"], images) and np.array_equal(z["labels"], labels)
    counts = np.bincount(labels, minlength=10)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); label counts {counts.tolist()}")


if __name__ == "__main__":
    main()
