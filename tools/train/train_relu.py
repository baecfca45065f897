#!/usr/bin/env python3
"""Train a small ReLU + max-pool LeNet-5 on MNIST: the fixture of the int8 calibration contract
(tests/data/relu_max_mnist.npz; tests/engine/test_int8.py calibrates it on 1,000 training digits
and checks agreement with fp32 on the committed MNIST sample).

    python tools/train/train_relu.py --epochs 2 --out tests/data/relu_max_mnist.npz

Trains on MNIST training digits 0..54,999 (../shared/data/mnist), Adam 2e-3, batch 128, 2 CPU
threads (about a minute an epoch on 2 cores). Needs torch; writes a plain .npz (no pickles) in
fastlenet's canonical layout with fastlenet_meta (relu, max, mean 0, std 1).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "relu_max_mnist.npz")
    args = ap.parse_args()
    import torch
    from torch import nn

    import sys
    sys.path.insert(0, str(ROOT))
    from fastlenet.io import containers

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    x = containers.read_idx(args.data / "train-images-idx3-ubyte.gz")[:55000]
    y = containers.read_idx(args.data / "train-labels-idx1-ubyte.gz")[:55000].astype(np.int64)
    xt = torch.from_numpy(np.pad(x, ((0, 0), (2, 2), (2, 2))).astype(np.float32)[:, None] / 255)
    yt = torch.from_numpy(y)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(), nn.Linear(120, 84),
        nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 128):
            idx = perm[i:i + 128]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch}: last loss {loss.item():.4f}", flush=True)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    names = ["c1", "c3", "c5", "f6", "output"]
    convs = ["0", "3", "6", "9", "11"]
    params = {}
    for n, c in zip(names, convs):
        params[f"{n}.weight"], params[f"{n}.bias"] = sd[f"{c}.weight"], sd[f"{c}.bias"]
    meta = {"activation": "relu", "pool": "max", "mean": 0.0, "std": 1.0, "name": "relu_max_mnist",
            "source": f"tools/train/train_relu.py --epochs {args.epochs} --seed {args.seed}"}
    np.savez(args.out, **params, fastlenet_meta=np.array(json.dumps(meta)))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
