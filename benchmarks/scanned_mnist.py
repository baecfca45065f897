"""Accuracy of the bundled model on MNIST test digits made to look like scans of handwriting:
dark ink on paper, enlarged, on canvases of other sizes, with paper texture, blur and JPEG.

    python benchmarks/scanned_mnist.py [--n 1000] [--impl c|legacy]

Needs ../shared/data/mnist. The model saw these digits' 28x28 originals' siblings (the test
set, not the training set), so this measures what the preprocessing loses, not the model.
"""
import argparse
import io
import os
import sys

import numpy as np
from PIL import Image, ImageFilter

MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


def scans(x, rng):
    out = {k: [] for k in ("28 px as is", "dark on light 28", "32 px canvas", "x4 on paper",
                           "x4 noisy paper", "x3 blurred jpeg", "x2 gray paper")}
    for im in x:
        out["28 px as is"].append(im)
        out["dark on light 28"].append(255 - im)
        c = np.zeros((32, 32), np.uint8)
        o = rng.integers(0, 5, 2)
        c[o[0]:o[0] + 28, o[1]:o[1] + 28] = im
        out["32 px canvas"].append(255 - c)
        big = np.asarray(Image.fromarray(im).resize((112, 112), Image.BILINEAR), np.float64)
        page = np.full((160, 140), 245.0)
        y0, x0 = rng.integers(0, 48), rng.integers(0, 28)
        page[y0:y0 + 112, x0:x0 + 112] -= big * 0.85
        out["x4 on paper"].append(np.clip(page, 0, 255).astype(np.uint8))
        out["x4 noisy paper"].append(np.clip(page + rng.normal(0, 18, page.shape), 0,
                                             255).astype(np.uint8))
        mid = np.asarray(Image.fromarray(im).resize((84, 84), Image.BICUBIC), np.float64)
        p2 = np.full((100, 100), 235.0)
        p2[8:92, 8:92] -= mid * 0.8
        blurred = Image.fromarray(np.clip(p2, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(1.5))
        buf = io.BytesIO()
        blurred.save(buf, "JPEG", quality=30)
        out["x3 blurred jpeg"].append(np.asarray(Image.open(buf)))
        small = np.asarray(Image.fromarray(im).resize((56, 56), Image.BILINEAR), np.float64)
        p3 = np.full((70, 64), 170.0)
        p3[7:63, 4:60] -= small * 0.5
        out["x2 gray paper"].append(np.clip(p3, 0, 255).astype(np.uint8))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--impl", choices=("c", "legacy"), default="c")
    args = ap.parse_args(argv)
    import fastlenet
    from fastlenet.io.containers import read_idx
    from fastlenet.prepare import to_model_input

    x = read_idx(os.path.join(MNIST, "t10k-images-idx3-ubyte.gz"))[:args.n]
    y = read_idx(os.path.join(MNIST, "t10k-labels-idx1-ubyte.gz"))[:args.n]
    net = fastlenet.pretrained()
    for name, imgs in scans(x, np.random.default_rng(0)).items():
        if args.impl == "c":
            inp = fastlenet.preprocess(imgs)
        else:
            inp = np.stack([to_model_input(im) for im in imgs])
        acc = (net.predict(inp) == y).mean()
        print(f"{name:<18} {acc:7.2%}")


if __name__ == "__main__":
    sys.exit(main())
