#!/usr/bin/env python3
"""Train the fastlenet pretrained LeNet-5 on MNIST and export it as a plain .npz.

Network (classic LeNet-5 with tanh and average pooling), input 1x32x32:
    C1 Conv2d(1, 6, 5) + tanh      -> 6x28x28
    S2 AvgPool2d(2, 2)             -> 6x14x14
    C3 Conv2d(6, 16, 5) + tanh     -> 16x10x10
    S4 AvgPool2d(2, 2)             -> 16x5x5
    C5 Conv2d(16, 120, 5) + tanh   -> 120
    F6 Linear(120, 84) + tanh      -> 84
    output Linear(84, 10)          -> 10 logits (softmax applied outside)
61,706 parameters.

Preprocessing: 28x28 uint8 digit -> zero-pad 2 px each side to 32x32 -> /255
-> (x - mean) / std, where mean/std are computed over the padded 32x32 training
images (so the border becomes -mean/std).

Usage (from the project root):
    pip install torch==2.13.0
    python tools/train/train_mnist.py --epochs 20 --seed 0 --out fastlenet/pretrained/lenet5_mnist.npz

Defaults: Adam lr 2e-3 with per-step cosine decay to 0, batch 64, random
shifts of +-2 px (pad-and-crop), 2 CPU threads; about 3-7 minutes on 2 cores.

After training, the exported float32 arrays are re-checked with a pure numpy
float64 forward pass over the 10,000 test digits; that figure is the one
recorded as "test_accuracy" in the file's metadata.

The output file is written with np.savez and holds no pickled objects: load it
with np.load(path, allow_pickle=False).
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import json
import struct
import time
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = PROJECT_ROOT / ".." / "shared" / "data" / "mnist"
TORCH_VERSION = "2.13.0"
PAD = 2
PARAM_KEYS = [
    "c1.weight", "c1.bias", "c3.weight", "c3.bias", "c5.weight", "c5.bias",
    "f6.weight", "f6.bias", "output.weight", "output.bias",
]
PARAM_SHAPES = {
    "c1.weight": (6, 1, 5, 5), "c1.bias": (6,),
    "c3.weight": (16, 6, 5, 5), "c3.bias": (16,),
    "c5.weight": (120, 16, 5, 5), "c5.bias": (120,),
    "f6.weight": (84, 120), "f6.bias": (84,),
    "output.weight": (10, 84), "output.bias": (10,),
}


# --------------------------------------------------------------------------- data
def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read a gzipped IDX file of unsigned bytes (magic 0x0000080N, N = ndim)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        raise ValueError(f"{path}: file too short")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: bad IDX magic (expected unsigned byte data)")
    if ndim != expected_ndim:
        raise ValueError(f"{path}: expected {expected_ndim} dims, file has {ndim}")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims))
    if len(raw) - header != count:
        raise ValueError(f"{path}: expected {count} data bytes, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def recipe_record(fonts_train, gen_time: float, train_time: float, fonts_val=None) -> dict:
    """The provenance entries every recipe on MNIST and the training fonts records: versions,
    the data's licence, the font families, the date and the time spent."""
    import fastlenet

    out = {"torch": TORCH_VERSION, "fastlenet": fastlenet.__version__,
           "dataset": "MNIST (LeCun, Cortes, Burges), CC BY-SA 3.0; fonts: see "
                      "fastlenet/pretrained/README.md",
           "font_families_train": sorted({f.family for f in fonts_train})}
    if fonts_val is not None:
        out["font_families_val"] = sorted({f.family for f in fonts_val})
    out.update(trained=datetime.date.today().isoformat(), generation_seconds=round(gen_time),
               training_seconds=round(train_time))
    return out


def seeded_torch(seed: int, threads: int) -> np.random.Generator:
    """torch on `threads` threads, seeded and deterministic (a recipe rebuilds its file bit for
    bit) -> the numpy generator of the same seed. Warns when torch is not TORCH_VERSION."""
    import torch

    if not torch.__version__.startswith(TORCH_VERSION):
        print(f"warning: expected torch {TORCH_VERSION}, running {torch.__version__}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    return np.random.default_rng(seed)


def load_mnist(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (N,28,28), labels uint8 (N,)) for split 'train' or 't10k'."""
    images = read_idx(data_dir / f"{split}-images-idx3-ubyte.gz", 3)
    labels = read_idx(data_dir / f"{split}-labels-idx1-ubyte.gz", 1)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{split}: images are {images.shape[1:]}, expected (28, 28)")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.max() > 9:
        raise ValueError(f"{split}: label out of range 0-9")
    return images, labels


def preprocess(images: np.ndarray, mean: float, std: float, dtype=np.float32) -> np.ndarray:
    """uint8 (N,28,28) -> normalized (N,1,32,32): pad first, then scale and normalize."""
    x = np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD))).astype(np.float64) / 255.0
    return ((x - mean) / std).astype(dtype)[:, None, :, :]


# ------------------------------------------------------------- numpy reference
def _conv2d_valid(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x (N,C,H,W), w (O,C,k,k) -> (N,O,H-k+1,W-k+1); cross-correlation like torch."""
    k = w.shape[-1]
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # N,C,Ho,Wo,k,k
    return np.einsum("nchwij,ocij->nohw", win, w, optimize=True) + b[None, :, None, None]


def _avgpool2(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def numpy_forward(params: dict, x: np.ndarray) -> np.ndarray:
    """float64 LeNet-5 forward pass; x (N,1,32,32) normalized -> logits (N,10)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    x = np.asarray(x, dtype=np.float64)
    x = _avgpool2(np.tanh(_conv2d_valid(x, p["c1.weight"], p["c1.bias"])))
    x = _avgpool2(np.tanh(_conv2d_valid(x, p["c3.weight"], p["c3.bias"])))
    x = np.tanh(_conv2d_valid(x, p["c5.weight"], p["c5.bias"])).reshape(x.shape[0], 120)
    x = np.tanh(x @ p["f6.weight"].T + p["f6.bias"])
    return x @ p["output.weight"].T + p["output.bias"]


def numpy_accuracy(params: dict, x: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    correct = 0
    for i in range(0, len(x), batch):
        logits = numpy_forward(params, x[i:i + batch])
        correct += int((logits.argmax(axis=1) == labels[i:i + batch]).sum())
    return correct / len(x)


# ----------------------------------------------------------------------- torch
def build_model():
    import torch.nn as nn

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 6, 5)
            self.c3 = nn.Conv2d(6, 16, 5)
            self.c5 = nn.Conv2d(16, 120, 5)
            self.f6 = nn.Linear(120, 84)
            self.output = nn.Linear(84, 10)
            self.pool = nn.AvgPool2d(2, 2)
            self.act = nn.Tanh()

        def forward(self, x):
            x = self.pool(self.act(self.c1(x)))
            x = self.pool(self.act(self.c3(x)))
            x = self.act(self.c5(x)).flatten(1)
            x = self.act(self.f6(x))
            return self.output(x)

    return LeNet5()


def random_shift(batch_u8: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Pad uint8 (B,28,28) to 32x32 with a random offset of +-max_shift px in y and x.

    The digit is placed in a zero canvas of (32 + 2*max_shift) px and a 32x32
    window is cropped, so pixels shifted past the edge are lost (as with a
    pad-and-crop augmentation). Output is still raw uint8 (B,32,32).
    """
    b = batch_u8.shape[0]
    m = max_shift
    canvas = np.zeros((b, 32 + 2 * m, 32 + 2 * m), dtype=np.uint8)
    canvas[:, PAD + m:PAD + m + 28, PAD + m:PAD + m + 28] = batch_u8
    oy = rng.integers(0, 2 * m + 1, size=b)
    ox = rng.integers(0, 2 * m + 1, size=b)
    rows = oy[:, None] + np.arange(32)[None, :]
    cols = ox[:, None] + np.arange(32)[None, :]
    return canvas[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def torch_accuracy(model, x: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
    import torch
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = model(torch.from_numpy(x[i:i + batch]))
            correct += int((logits.argmax(1).numpy() == labels[i:i + batch]).sum())
    return correct / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "fastlenet" / "pretrained" / "lenet5_mnist.npz")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--shift", type=int, default=2, help="max random shift in px (0 = no augmentation)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    rng = seeded_torch(args.seed, args.threads)

    t0 = time.time()
    train_u8, train_y = load_mnist(args.data_dir, "train")
    test_u8, test_y = load_mnist(args.data_dir, "t10k")
    print(f"train {train_u8.shape}, test {test_u8.shape}")

    # Mean/std of the training set after zero-padding to 32x32 and scaling to [0, 1].
    padded = np.pad(train_u8, ((0, 0), (PAD, PAD), (PAD, PAD))).astype(np.float64) / 255.0
    mean, std = float(padded.mean()), float(padded.std())
    del padded
    print(f"normalization on padded 32x32 training images: mean={mean!r} std={std!r}")
    test_x = preprocess(test_u8, mean, std)

    model = build_model()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 61706, n_params
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = (len(train_u8) + args.batch_size - 1) // args.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch)

    for epoch in range(args.epochs):
        model.train()
        te = time.time()
        order = rng.permutation(len(train_u8))
        total_loss = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * args.batch_size:(s + 1) * args.batch_size]
            if args.shift > 0:
                raw = random_shift(train_u8[idx], rng, args.shift)
            else:
                raw = np.pad(train_u8[idx], ((0, 0), (PAD, PAD), (PAD, PAD)))
            xb = torch.from_numpy(((raw.astype(np.float32) / 255.0 - mean) / std)[:, None].astype(np.float32))
            yb = torch.from_numpy(train_y[idx].astype(np.int64))
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
        acc = torch_accuracy(model, test_x, test_y)
        print(f"epoch {epoch + 1:2d}/{args.epochs}  loss {total_loss / len(train_u8):.4f}  "
              f"test acc {acc:.4f}  ({time.time() - te:.1f}s)", flush=True)

    train_time = time.time() - t0
    torch_acc = torch_accuracy(model, test_x, test_y)

    # Export float32 arrays with canonical keys; re-check them with numpy float64.
    state = model.state_dict()
    params = {k: state[k].detach().cpu().numpy().astype(np.float32) for k in PARAM_KEYS}
    for k in PARAM_KEYS:
        assert params[k].shape == PARAM_SHAPES[k], (k, params[k].shape)
    np_acc = numpy_accuracy(params, preprocess(test_u8, mean, std, dtype=np.float64), test_y)
    print(f"test accuracy: torch float32 {torch_acc:.4f}, numpy float64 {np_acc:.4f}")

    meta = {
        "activation": "tanh",
        "pool": "avg",
        "mean": mean,
        "std": std,
        "input_size": 28,
        "pad": PAD,
        "classes": [str(i) for i in range(10)],
        "foreground": "light-on-dark",
        "source": "fastlenet pretrained",
        "provenance": {
            "script": "tools/train/train_mnist.py",
            "seed": args.seed,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": f"Adam lr={args.lr}, cosine decay per step",
            "augmentation": f"random shift +-{args.shift} px" if args.shift > 0 else "none",
            "torch": TORCH_VERSION,
            "dataset": "MNIST (LeCun, Cortes, Burges), CC BY-SA 3.0",
            "trained": datetime.date.today().isoformat(),
            "torch_test_accuracy": torch_acc,
        },
        "test_accuracy": np_acc,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **params, fastlenet_meta=np.array(json.dumps(meta)))

    # Round-trip check: the file must load without pickle and reproduce the accuracy.
    with np.load(args.out, allow_pickle=False) as z:
        loaded = {k: z[k] for k in PARAM_KEYS}
        meta_back = json.loads(str(z["fastlenet_meta"]))
    assert all(loaded[k].dtype == np.float32 for k in PARAM_KEYS)
    assert meta_back == meta
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); training wall time {train_time:.1f}s")


if __name__ == "__main__":
    main()
