#!/usr/bin/env python3
"""Train the strip reader ("strips", issue 18): a LeNet-5 slid along a whole field, which reads
the digits without cutting them apart (LeCun et al. 1998's space-displacement network, trained
with CTC as later line recognizers are).

    python tools/train/train_strips.py --out fastlenet/pretrained/lenet5_strips.npz

Why: the field search reads cut pieces. Where digits overlap (touching handwriting, tight
print) no cut parts them cleanly, and even a perfect pair reader leaves touching fields below
0.5 on validation. A reader that sees a window of the field at every position needs no cut: it
learns to name the digit centred in its window whatever of the neighbours leans in.

The model is LeNet-5 unchanged: 32x32 windows of the field's strip (the segmenter's cleaned
ink, the digits' estimated height at FIELD_STRIP_DIGIT rows; csrc/fields.c fd_strip), one
window every STRIP_STRIDE columns (fastlenet.fields.strip_windows), 11 classes: the digits
and "between digits" (CTC's blank). Trained as one convolution over the whole strip, which
computes exactly what the engine computes window by window (the pooling grid of every window
lies on the strip's). Fine-tuned from fastlenet/pretrained/lenet5_fields.npz ("not a digit"
becomes "between digits"), nothing frozen.

Data (training splits only): fields in every style of tests/_fields.py from MNIST training
digits 0..54,999 and the TRAINING font families, their strips made by the shipped segmenter
exactly as fastlenet.fields.read_arrays makes them (retrain when csrc/fields.c changes).
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
from train_fields import DEFAULT_DATA_DIR, PROJECT_ROOT, recipe_inputs  # noqa: E402
from train_mnist import PARAM_KEYS, recipe_record, seeded_torch  # noqa: E402

START = PROJECT_ROOT / "fastlenet" / "pretrained" / "lenet5_fields.npz"
BLANK = 10
CLASSES = [str(i) for i in range(10)] + ["between digits"]
# fields per style (1-10 digits each): touching handwriting and tight print weighted up
# (two thirds of these and 8 epochs read validation touching 0.588 and tight print 0.931 fused,
# against 0.621 and 0.947)
DRAWS = {"handwritten_spaced": 18000, "touching": 54000, "scanned": 18000, "comb": 18000,
         "printed_clean": 12000, "printed_scanned": 18000, "printed_tight": 45000,
         "page": 18000}
CHUNK = 1000   # fields per worker task
_TASK: dict = {}


def _strips(job):
    """(style, n, seed, chunk) -> [(strip uint8 (32, W), text)] of the fields with a strip."""
    from fastlenet import fields

    F, src, faces = _TASK["synth"], _TASK["src"], _TASK["faces"]
    style, n, seed, chunk = job
    k = list(F.STYLES).index(style)
    samples = F.make_fields(style, n, src, np.random.default_rng([seed, chunk, k, 23]),
                            faces=faces)
    strips = fields.field_strips([s.image for s in samples])
    return [(s, f.text) for s, f in zip(strips, samples) if s is not None]


def make_strips(F, src, faces, seed, workers, draws):
    jobs = [(st, min(CHUNK, n - c), seed, c) for st, n in draws.items()
            for c in range(0, n, CHUNK)]
    _TASK.update(synth=F, src=src, faces=faces)
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            res = pool.map(_strips, jobs, chunksize=1)
    else:
        res = [_strips(j) for j in jobs]
    return [r for part in res for r in part]


def build_sliding():
    """LeNet-5 as a convolution over a strip (N, 1, 32, W) -> logits (N, 11, T), T windows."""
    import torch
    import torch.nn as nn

    class Sliding(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 6, 5)
            self.c3 = nn.Conv2d(6, 16, 5)
            self.c5 = nn.Conv2d(16, 120, 5)
            self.f6 = nn.Conv2d(120, 84, 1)
            self.output = nn.Conv2d(84, len(CLASSES), 1)
            self.pool = nn.AvgPool2d(2, 2)

        def forward(self, x):
            x = self.pool(torch.tanh(self.c1(x)))
            x = self.pool(torch.tanh(self.c3(x)))
            x = torch.tanh(self.f6(torch.tanh(self.c5(x))))
            return self.output(x)[:, :, 0, :]

    return Sliding()


def load_start(model, path: Path) -> dict:
    import torch

    with np.load(path, allow_pickle=False) as z:
        p = {k: z[k] for k in PARAM_KEYS}
        meta = json.loads(str(z["fastlenet_meta"]))
    for k in ("f6.weight", "output.weight"):
        p[k] = p[k][:, :, None, None]
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v, np.float32))
                           for k, v in p.items()})
    return meta


def batch(strips, mean, std):
    """Strips of one batch -> (inputs (N, 1, 32, W) normalized, windows per strip)."""
    import torch

    from fastlenet import fields

    W = max(s.shape[1] for s in strips)
    x = np.full((len(strips), 1, strips[0].shape[0], W), -mean / std, np.float32)
    for i, s in enumerate(strips):
        x[i, 0, :, :s.shape[1]] = (s.astype(np.float32) / 255.0 - mean) / std
    return torch.from_numpy(x), torch.tensor([fields.strip_frames(s.shape[1]) for s in strips])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path,
                    default=PROJECT_ROOT / "fastlenet" / "pretrained" / "lenet5_strips.npz")
    ap.add_argument("--start", type=Path, default=START, help="the model it is fine-tuned from")
    ap.add_argument("--synth", type=Path, default=PROJECT_ROOT / "tests" / "_fields.py")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--fields-scale", type=float, default=1.0,
                    help="multiplies the fields drawn per style (DRAWS)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3, help="one-cycle peak")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="processes drawing the fields")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as Fn

    import fastlenet

    rng = seeded_torch(args.seed, args.threads)
    t0 = time.time()
    F, fonts_train, fonts_val, _, _, src_train, src_val = recipe_inputs(args.synth,
                                                                         args.data_dir)
    draws = {st: int(n * args.fields_scale) for st, n in DRAWS.items()}
    data = make_strips(F, src_train, fonts_train, args.seed, args.workers, draws)
    gen_time = time.time() - t0
    print(f"{len(data)} strips ({gen_time:.0f}s)", flush=True)

    model = build_sliding()
    start_meta = load_start(model, args.start)
    mean, std = start_meta["mean"], start_meta["std"]
    widths = np.array([s.shape[1] for s, _ in data])
    nb = len(data) // args.batch_size
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * nb)
    tt = time.time()
    for epoch in range(args.epochs):
        te = time.time()
        # batches of like widths (padding costs compute), in random order
        order = np.argsort(widths + rng.uniform(0, 24, len(widths)), kind="stable")
        chunks = [order[i * args.batch_size:(i + 1) * args.batch_size] for i in range(nb)]
        total = 0.0
        for c in rng.permutation(nb):
            part = [data[j] for j in chunks[c]]
            x, frames = batch([s for s, _ in part], mean, std)
            target = torch.tensor([int(ch) for _, t in part for ch in t], dtype=torch.long)
            lengths = torch.tensor([len(t) for _, t in part])
            logp = Fn.log_softmax(model(x), 1).permute(2, 0, 1)
            loss = Fn.ctc_loss(logp, target, frames, lengths, blank=BLANK, zero_infinity=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{args.epochs} CTC loss {total / nb:.4f} "
              f"({time.time() - te:.0f}s)", flush=True)
    train_time = time.time() - tt

    state = model.state_dict()
    params = {k: state[k].detach().cpu().numpy().astype(np.float32) for k in PARAM_KEYS}
    for k in ("f6.weight", "output.weight"):
        params[k] = np.ascontiguousarray(params[k][:, :, 0, 0])
    meta = {k: start_meta[k] for k in ("activation", "pool", "mean", "std", "source")}
    meta.update({
        "input_size": 32, "pad": 0, "foreground": "light-on-dark",
        "classes": CLASSES,
        "name": "strips",
        "trained_on": "strips the field segmenter makes of synthesized fields "
                      "(tests/_fields.py, every style) of MNIST training digits 0..54,999 "
                      "and the training font faces, with CTC against the fields' text",
        "provenance": {
            "script": "tools/train/train_strips.py", "seed": args.seed, "epochs": args.epochs,
            "start": args.start.name, "draws": draws, "strips": len(data),
            "batch_size": args.batch_size,
            "optimizer": f"Adam, one-cycle to lr={args.lr}", "loss": "CTC",
            "threads": args.threads, **recipe_record(fonts_train, gen_time, train_time),
        },
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **params, fastlenet_meta=np.array(json.dumps(meta)))

    # --- the file through fastlenet on validation fields: the strip reader alone
    from fastlenet import fields

    net = fastlenet.load(args.out)
    res = {}
    for k, st in enumerate(F.STYLES):
        samples = F.make_fields(st, 300, src_val, np.random.default_rng([args.seed, k, 57]),
                                faces=fonts_val)
        got = fields.strip_texts([s.image for s in samples], net)
        res[st] = round(float(np.mean([g == s.text for g, s in zip(got, samples)])), 4)
        print(f"  {st:<20} {res[st]:.3f}", flush=True)
    meta["validation_fields_alone"] = res
    np.savez(args.out, **params, fastlenet_meta=np.array(json.dumps(meta)))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); generation {gen_time:.0f}s, "
          f"training {train_time:.0f}s, total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
