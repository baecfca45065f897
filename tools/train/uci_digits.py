#!/usr/bin/env python3
"""Other people's handwriting at low resolution: scikit-learn's bundled UCI digits (1,797 8x8
scans, levels 0..16, from 43 writers; sklearn ships the data, nothing is downloaded) written as
64x64 PNG files in class subfolders, then read back by `fastlenet eval`.

    pip install scikit-learn
    python tools/train/uci_digits.py --out uci64 --eval                 # bicubic (Pillow's default)
    python tools/train/uci_digits.py --out uci64 --eval --resample all  # nearest, bilinear, bicubic
    fastlenet eval uci64/bicubic

Each 8x8 image is scaled from 0..16 to 0..255 (light ink on dark, as the data is stored) and
enlarged to 64x64 with the chosen Pillow filter. Layout: OUT/<filter>/<digit>/<index>.png.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

FILTERS = ("nearest", "bilinear", "bicubic")


def write(out: str, resample: str, size: int = 64) -> int:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    filt = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR,
            "bicubic": Image.BICUBIC}[resample]
    for i, (img, y) in enumerate(zip(d.images, d.target)):
        small = Image.fromarray(np.uint8(np.rint(img * 255 / 16)))
        folder = os.path.join(out, resample, str(int(y)))
        os.makedirs(folder, exist_ok=True)
        small.resize((size, size), filt).save(os.path.join(folder, f"{i:04d}.png"))
    return len(d.target)


def evaluate(folder: str, weights=None):
    from render_printed_digits import eval_folder  # tools/, this script's folder, is on sys.path

    return eval_folder(folder, weights)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--resample", choices=FILTERS + ("all",), default="bicubic")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--eval", action="store_true", help="run `fastlenet eval` on the files")
    ap.add_argument("--weights", help="with --eval: a weights file (default: the bundled model)")
    args = ap.parse_args(argv)
    filters = FILTERS if args.resample == "all" else (args.resample,)
    for f in filters:
        n = write(args.out, f, args.size)
        line = f"{n} UCI digits as {args.size}x{args.size} PNG ({f}) in {args.out}/{f}"
        if args.eval:
            c, m = evaluate(os.path.join(args.out, f), args.weights)
            line += f": fastlenet eval {c / m:.2%} ({c}/{m})"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
