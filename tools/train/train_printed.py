#!/usr/bin/env python3
"""Train the default pretrained LeNet-5 ("digits"): MNIST handwriting plus digits rendered from
many font families, augmented like scans, every rendered picture passed through exactly the
preprocessing `fastlenet predict` applies to a decoded image file.

    pip install torch==2.13.0
    python tools/train/train_printed.py --out fastlenet/pretrained/lenet5_digits.npz

A separate recipe from tools/train/train_mnist.py (whose model stays available as
fastlenet.pretrained("mnist") and must stay reproducible): same network, same export format and
the same float64 numpy re-check of the exported weights (imported from there), but a different
data pipeline. Runs from scratch, seeded; installs the font packages it needs (tools/
digit_fonts.py, as root with apt-get) when they are missing.

Data (all as 28x28 model inputs, light ink on dark):
  * MNIST training digits 0..54,999 as they are (the IDX path: arrays given to the Net are taken
    as model inputs), random shifts of +-2 px;
  * the same MNIST digits drawn as scans (render_printed_digits.compose: size, stroke weight,
    rotation, shear, aspect, paper and ink levels, uneven light, blur, noise, salt and pepper,
    JPEG, low resolution scaled up, neighbouring strokes) and passed through
    fastlenet.preprocess, as `fastlenet predict` does with an image file;
  * digits 0-9 from every face of the TRAINING font families (tools/train/digit_fonts.py), drawn the
    same way, through the same preprocessing.
Validation (chooses the settings; the test split is never read here): MNIST 55,000..59,999 as
arrays, as scans and at low resolution, and the VALIDATION font families under every condition
of tools/train/render_printed_digits.py. Test figures come from tools/train/render_printed_digits.py
--eval (test fonts), tools/train/uci_digits.py and the MNIST test set, once, after training.

The preprocessing is fastlenet's own (C, csrc/preprocess.c), so retrain when it changes.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digit_fonts  # noqa: E402
import render_printed_digits as R  # noqa: E402
from train_mnist import (PAD, PARAM_KEYS, PARAM_SHAPES, build_model, recipe_record,  # noqa: E402
                         load_mnist, numpy_accuracy, preprocess as pad_normalize,
                         random_shift, seeded_torch)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = PROJECT_ROOT / ".." / "shared" / "data" / "mnist"
N_VAL = 5000
CHUNK = 500  # images per generation task; each task has its own seed, whatever the pool size


# ---------------------------------------------------------------- random scan conditions
def random_conditions(rng: np.random.Generator, mnist: bool) -> dict:
    """compose() arguments for one training picture: a draw over what scans, crops and photos
    of digits bring. mnist: the mask is a whole 28x28 MNIST frame (the digit is 20/28 of it)."""
    c = {}
    r = rng.random()
    if r < 0.12:    # low resolution, scaled up (thumbnails, 8x8 UCI-like scans, faxes)
        height = rng.uniform(28, 96)
        c["lowres"] = height / rng.uniform(6, 14)
        c["upsample"] = ("nearest", "bilinear", "bicubic")[int(rng.integers(0, 3))]
        if rng.random() < 0.4:
            c["levels"] = 17
        c["margin"] = (0.0, 0.25)
    elif r < 0.30:  # small: a few pixels per stroke
        height = rng.uniform(8, 18)
    elif r < 0.42:  # a 28 or 32 px canvas, digit about MNIST's size
        side = 28 if rng.random() < 0.5 else 32
        height = rng.uniform(16, 26) * (28 / 20 if mnist else 1)
        c["canvas"] = (side, side)
        c["offset"] = 2
    else:
        height = rng.uniform(18, 80)
    c["height"] = height
    if "margin" not in c:
        c["margin"] = (0.03, rng.uniform(0.1, 0.8))
    a = rng.random()
    c["angle"] = rng.normal(0, 4) if a < 0.6 else rng.uniform(-16, 16) if a < 0.85 else 0.0
    if rng.random() < 0.35:
        c["shear"] = rng.uniform(-0.3, 0.3)
    c["aspect"] = float(np.exp(rng.uniform(-0.25, 0.25)))
    if rng.random() < 0.5:
        c["weight"] = rng.uniform(-0.035, 0.07) if not mnist else rng.uniform(-0.03, 0.05)
    p = rng.random()
    if p < 0.45:
        paper, ink = rng.uniform(215, 255), rng.uniform(0, 70)
    elif p < 0.65:
        paper, ink = rng.uniform(130, 215), rng.uniform(0, 60)
    elif p < 0.8:
        paper, ink = rng.uniform(60, 135), rng.uniform(0, 30)
    else:
        paper, ink = rng.uniform(0, 90), rng.uniform(150, 255)
    c["paper"], c["ink"] = paper, ink
    contrast = abs(paper - ink)
    if rng.random() < 0.3:
        c["gradient"] = rng.uniform(0, 0.25) * contrast
    # degradations scale with the digit's size: a 10 px digit under a 2 px blur or noise at
    # a third of the contrast is gone for any reader, and would only teach the model noise
    small = min(1.0, height / 36)
    if rng.random() < 0.3:
        c["blur"] = rng.uniform(0.3, 0.3 + 2.2 * small)
    if rng.random() < 0.35:
        c["noise"] = rng.uniform(2, 2 + 0.25 * contrast * small)
    if rng.random() < 0.08 and height >= 20:
        c["salt"] = rng.uniform(0.005, 0.05)
    if rng.random() < 0.25:
        c["jpeg"] = int(rng.integers(8, 90))
    if rng.random() < 0.05:
        c["neighbour"] = rng.uniform(0.02, 0.12)
    return c


def _mnist_mask(img: np.ndarray) -> np.ndarray:
    """A 28x28 MNIST digit -> a 112x112 coverage mask (bilinear 4x), so stroke weight and affine
    changes work at a finer scale than the digit's own pixels."""
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((112, 112), Image.BILINEAR), np.float32) / 255


def _task(args):
    """Worker: one chunk of pictures -> uint8 (n, 28, 28) preprocessed model inputs."""
    kind, seed, items = args
    import fastlenet

    rng = np.random.default_rng(seed)
    pics = []
    for it in items:
        if kind == "mnist":
            mask = _mnist_mask(it)
        else:
            path, index, digit = it
            mask = R.glyph(path, index, digit)
        pics.append(R.compose(mask, rng, **random_conditions(rng, kind == "mnist")))
    x = fastlenet.preprocess(pics, size=28, num_threads=1)
    return np.rint(x * 255).astype(np.uint8)


def generate(kind: str, items: list, seed: int, pool) -> np.ndarray:
    tasks = [(kind, [seed, i], items[s:s + CHUNK])
             for i, s in enumerate(range(0, len(items), CHUNK))]
    it = pool.imap(_task, tasks) if pool is not None else map(_task, tasks)
    return np.concatenate(list(it)) if tasks else np.zeros((0, 28, 28), np.uint8)


def lowres_like_uci(images: np.ndarray) -> list:
    """MNIST digits the way the UCI optdigits were made (a 32x32 binary bitmap of the digit
    counted in 4x4 blocks: 8x8 with levels 0..16), then enlarged to 64x64 bilinearly: a
    validation proxy for low-resolution handwriting that does not touch the UCI data."""
    from PIL import Image

    out = []
    for img in images:
        ys, xs = np.nonzero(img > 40)
        crop = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        h, w = crop.shape
        s = 32 / max(h, w)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        big = np.asarray(Image.fromarray(crop).resize((nw, nh), Image.BILINEAR)) > 127
        bmp = np.zeros((32, 32), bool)
        bmp[(32 - nh) // 2:(32 - nh) // 2 + nh, (32 - nw) // 2:(32 - nw) // 2 + nw] = big
        counts = bmp.reshape(8, 4, 8, 4).sum(axis=(1, 3))
        small = np.uint8(np.rint(counts * 255 / 16))
        out.append(np.asarray(Image.fromarray(small).resize((64, 64), Image.BILINEAR)))
    return out


def mnist_as_files(images: np.ndarray) -> list:
    """MNIST digits saved the way a user's PNG of a handwritten digit looks: dark on light,
    enlarged 3x."""
    from PIL import Image

    return [np.asarray(Image.fromarray(255 - im).resize((84, 84), Image.BILINEAR))
            for im in images]


# ----------------------------------------------------------------------------- training
def torch_predict(model, x_u8: np.ndarray, mean: float, std: float, batch: int = 2000):
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x_u8), batch):
            xb = pad_normalize(x_u8[i:i + batch], mean, std)
            out.append(model(torch.from_numpy(xb)).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x) * 255).astype(np.uint8)


def build_validation(val_u8, val_y, fonts_val, seed):
    """{category: (uint8 (n,28,28) model inputs, labels)}: the validation sets, preprocessed
    by fastlenet as predict would."""
    import fastlenet

    sets = {"mnist_val (arrays)": (val_u8, val_y.astype(np.int64))}
    sets["mnist_val (PNG-like, dark on light, 84 px)"] = (
        to_u8(fastlenet.preprocess(mnist_as_files(val_u8))), val_y.astype(np.int64))
    sets["mnist_val (UCI-like 8x8 -> 64x64)"] = (
        to_u8(fastlenet.preprocess(lowres_like_uci(val_u8))), val_y.astype(np.int64))
    for cond in R.CONDITIONS:
        rng = np.random.default_rng([seed, sum(map(ord, cond)), len(cond), 1])
        pics, ys = [], []
        for face in fonts_val:
            for d in range(10):
                pics.append(R.render_condition(face, d, cond, rng))
                ys.append(d)
        sets[f"printed_val {cond}"] = (to_u8(fastlenet.preprocess(pics)), np.array(ys))
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path,
                    default=PROJECT_ROOT / "fastlenet" / "pretrained" / "lenet5_digits.npz")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--font-copies", type=int, default=24,
                    help="augmented pictures per (training face, digit)")
    ap.add_argument("--mnist-copies", type=int, default=1,
                    help="augmented scan pictures per MNIST training digit")
    ap.add_argument("--scan-per-epoch", type=float, default=0.6,
                    help="fraction of the MNIST scan pictures used per epoch")
    ap.add_argument("--font-per-epoch", type=float, default=0.5,
                    help="fraction of the font pictures used per epoch")
    ap.add_argument("--mnist-repeat", type=int, default=2,
                    help="times each MNIST array digit is seen per epoch (other shifts)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine a second thread spent "
                         "its time at barriers, 10x slower; see the model card)")
    ap.add_argument("--workers", type=int, default=2, help="processes drawing the pictures")
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep the generated training pictures here (an .npz) and reuse them")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    import fastlenet

    rng = seeded_torch(args.seed, args.threads)

    t0 = time.time()
    digit_fonts.ensure_packages(quiet=True)
    fonts_train = digit_fonts.faces("train")
    fonts_val = digit_fonts.faces("val")
    print(f"fonts: {len(fonts_train)} training faces, {len(fonts_val)} validation faces",
          flush=True)
    all_u8, all_y = load_mnist(args.data_dir, "train")
    mn_u8, mn_y = all_u8[:-N_VAL], all_y[:-N_VAL].astype(np.int64)
    val_u8, val_y = all_u8[-N_VAL:], all_y[-N_VAL:]

    key = dict(seed=args.seed, font_copies=args.font_copies, mnist_copies=args.mnist_copies,
               faces=[f"{f.path}:{f.index}" for f in fonts_train], v=1)
    cached = None
    if args.cache and args.cache.exists():
        with np.load(args.cache, allow_pickle=False) as z:
            if str(z["key"]) == json.dumps(key):
                cached = {k: z[k] for k in ("scan_x", "scan_y", "font_x", "font_y")}
    if cached is None:
        tg = time.time()
        font_items = [(f.path, f.index, d) for f in fonts_train for d in range(10)
                      for _ in range(args.font_copies)]
        font_y = np.array([it[2] for it in font_items], np.int64)
        scan_src = np.concatenate([mn_u8] * args.mnist_copies)
        scan_y = np.concatenate([mn_y] * args.mnist_copies)
        ctx = mp.get_context("fork")
        with ctx.Pool(args.workers) if args.workers > 1 else _NoPool() as pool:
            font_x = generate("font", font_items, args.seed * 1000 + 1, pool)
            print(f"  {len(font_x)} font pictures ({time.time() - tg:.0f}s)", flush=True)
            scan_x = generate("mnist", list(scan_src), args.seed * 1000 + 2, pool)
        print(f"generated {len(font_x)} font and {len(scan_x)} MNIST scan pictures in "
              f"{time.time() - tg:.0f}s", flush=True)
        cached = dict(scan_x=scan_x, scan_y=scan_y, font_x=font_x, font_y=font_y)
        if args.cache:
            args.cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(args.cache, key=np.array(json.dumps(key)), **cached)
    scan_x, scan_y = cached["scan_x"], cached["scan_y"]
    font_x, font_y = cached["font_x"], cached["font_y"]
    gen_time = time.time() - t0

    tv = time.time()
    val_sets = build_validation(val_u8, val_y, fonts_val, args.seed)
    print(f"validation sets built in {time.time() - tv:.0f}s", flush=True)

    # Normalization as tools/train/train_mnist.py: over the padded MNIST training digits.
    padded = np.pad(mn_u8, ((0, 0), (PAD, PAD), (PAD, PAD))).astype(np.float64) / 255.0
    mean, std = float(padded.mean()), float(padded.std())
    del padded

    model = build_model()
    assert sum(p.numel() for p in model.parameters()) == 61706
    n_scan = int(round(args.scan_per_epoch * len(scan_x)))
    n_font = int(round(args.font_per_epoch * len(font_x)))
    n_mnist = args.mnist_repeat * len(mn_u8)
    per_epoch = n_mnist + n_scan + n_font
    steps_per_epoch = (per_epoch + args.batch_size - 1) // args.batch_size
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch)
    print(f"{per_epoch} pictures per epoch: {n_mnist} MNIST arrays, {n_scan} MNIST scans, "
          f"{n_font} font pictures", flush=True)

    tt = time.time()
    history = []
    for epoch in range(args.epochs):
        model.train()
        te = time.time()
        scan_pick = rng.permutation(len(scan_x))[:n_scan]
        font_pick = rng.permutation(len(font_x))[:n_font]
        # source 0: MNIST arrays (shift +-2), 1: scans, 2: fonts (shift +-1: preprocessed
        # inputs are centred by their centre of mass already)
        src = np.concatenate([np.zeros(n_mnist, np.int8), np.ones(n_scan, np.int8),
                              np.full(n_font, 2, np.int8)])
        idx = np.concatenate([np.tile(np.arange(len(mn_u8)), args.mnist_repeat), scan_pick,
                              font_pick])
        order = rng.permutation(per_epoch)
        src, idx = src[order], idx[order]
        total = 0.0
        for s in range(steps_per_epoch):
            sl = slice(s * args.batch_size, (s + 1) * args.batch_size)
            bs, bi = src[sl], idx[sl]
            raw = np.empty((len(bs), 28, 28), np.uint8)
            yb = np.empty(len(bs), np.int64)
            for k, (xs, ys) in enumerate(((mn_u8, mn_y), (scan_x, scan_y), (font_x, font_y))):
                m = bs == k
                raw[m] = xs[bi[m]]
                yb[m] = ys[bi[m]]
            shifted = np.empty((len(bs), 32, 32), np.uint8)
            m0 = bs == 0
            if m0.any():
                shifted[m0] = random_shift(raw[m0], rng, 2)
            if (~m0).any():
                shifted[~m0] = random_shift(raw[~m0], rng, 1)
            xb = torch.from_numpy(((shifted.astype(np.float32) / 255.0 - mean) / std)[:, None]
                                  .astype(np.float32))
            loss = F.cross_entropy(model(xb), torch.from_numpy(yb))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(bs)
        accs = {k: float((torch_predict(model, x, mean, std) == y).mean())
                for k, (x, y) in val_sets.items()}
        printed = np.mean([v for k, v in accs.items() if k.startswith("printed_val")])
        history.append(accs)
        print(f"epoch {epoch + 1:2d}/{args.epochs} loss {total / per_epoch:.4f}  mnist_val "
              f"{accs['mnist_val (arrays)']:.4f}  uci-like "
              f"{accs['mnist_val (UCI-like 8x8 -> 64x64)']:.4f}  printed_val {printed:.4f}  "
              f"({time.time() - te:.0f}s)", flush=True)
    train_time = time.time() - tt

    state = model.state_dict()
    params = {k: state[k].detach().cpu().numpy().astype(np.float32) for k in PARAM_KEYS}
    for k in PARAM_KEYS:
        assert params[k].shape == PARAM_SHAPES[k], (k, params[k].shape)
    test_u8, test_y = load_mnist(args.data_dir, "t10k")
    np_acc = numpy_accuracy(params, pad_normalize(test_u8, mean, std, dtype=np.float64), test_y)

    meta = {
        "activation": "tanh", "pool": "avg", "mean": mean, "std": std,
        "input_size": 28, "pad": PAD, "classes": [str(i) for i in range(10)],
        "foreground": "light-on-dark", "source": "fastlenet pretrained",
        "name": "digits",
        "trained_on": "MNIST training digits 0..54,999 (as arrays and drawn as scans) + digits "
                      f"rendered from {len(fonts_train)} faces of "
                      f"{len({f.family for f in fonts_train})} font families, augmented like "
                      "scans, through fastlenet.preprocess",
        "provenance": {
            "script": "tools/train/train_printed.py", "seed": args.seed, "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": f"Adam lr={args.lr}, cosine decay per step",
            "font_copies": args.font_copies, "mnist_copies": args.mnist_copies,
            "scan_per_epoch": args.scan_per_epoch, "font_per_epoch": args.font_per_epoch,
            "mnist_repeat": args.mnist_repeat, "threads": args.threads,
            **recipe_record(fonts_train, gen_time, train_time, fonts_val),
        },
        "validation": {k: round(v, 4) for k, v in history[-1].items()},
        "test_accuracy": np_acc,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **params, fastlenet_meta=np.array(json.dumps(meta)))

    # The shipped file through fastlenet itself: validation per category.
    net = fastlenet.load(args.out)
    print(f"\nMNIST test (10,000, numpy float64 re-check): {np_acc:.4f}; through fastlenet: "
          f"{(net.predict(test_u8) == test_y).mean():.4f}")
    print(f"{'validation category':<46} accuracy (fastlenet engine)")
    for k, (x, y) in val_sets.items():
        print(f"{k:<46} {(net.predict(x) == y).mean():.4f}  (n={len(y)})")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); picture generation "
          f"{gen_time:.0f}s, training {train_time:.0f}s, total {time.time() - t0:.0f}s")


class _NoPool:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


if __name__ == "__main__":
    main()
