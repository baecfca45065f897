#!/usr/bin/env python3
"""Train the pair reader ("pairs", issue 18): a LeNet-5 that reads two touching digits as one
picture, 100 classes "00".."99" and a 101st, "not two digits".

    python tools/train/train_pairs.py --out fastlenet/pretrained/lenet5_pairs.npz

Why: on touching handwriting and tight print the field search loses most fields by reading two
touching digits as one. The right cut is often among the candidates, but a cut through the
touching strokes leaves each half with a piece of its neighbour or without a piece of its own,
and the digit readers then doubt the halves more than they doubt the merged blob read as one
digit. A model that sees the two digits together needs no cut. The search
(fastlenet/fields.py, csrc/fields.c) offers the pair reading as a further arc on the segments
of blobs wide enough to hold two digits (fl_segment.split), outside comb boxes. On the
validation fields it took touching 0.343 -> 0.427 and tight print 0.645 -> 0.794 with the
other styles within 0.001 (fastlenet/pretrained/README.md has this file's figures).

Data (28x28 model inputs, light on dark, training splits only): fields synthesized in every
style of tests/_fields.py except comb (a comb box holds one digit) from MNIST training digits
0..54,999 and the TRAINING font families, cut by the shipped segmenter exactly as
fastlenet.fields.read_arrays cuts them (retrain when csrc/fields.c changes). A candidate
that covers two neighbouring digits' joint ink box (train_fields.label_candidates' rule and
tolerance, on the pair's box) is that pair; one that clearly does not is "not two digits",
kept where the search would ask the pair reader (fastlenet.fields.pair_candidates);
candidates in between are left out. Two draws: fields of 1-10 digits (touching and tight
print weighted up: they hold the pairs) and fields of 2-4 digits (many pairs per field). Per
epoch half pairs, half "not two digits"; 12 epochs of 240,000, seeded. Half the fields and 8
epochs read validation touching 0.419 and tight print 0.789, against 0.430 and 0.793.
Fine-tuned from fastlenet/pretrained/lenet5_digits.npz's features (same normalization; the
output layer is new), nothing frozen.
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
from train_fields import (BASE, DEFAULT_DATA_DIR, PROJECT_ROOT, label_candidates,  # noqa: E402
                          load_10, recipe_inputs)
from train_mnist import (PARAM_KEYS, build_model, random_shift, recipe_record,  # noqa: E402
                         seeded_torch)

NOT_A_PAIR = 100
CLASSES = [f"{i:02d}" for i in range(100)] + ["not two digits"]
# fields per style: (1-10 digits, 2-4 digits); the shipped segmenter cuts them all
DRAWS = {"touching": (18000, 48000), "printed_tight": (18000, 48000),
         "handwritten_spaced": (3000, 0), "scanned": (3000, 12000), "printed_clean": (2000, 0),
         "printed_scanned": (3000, 12000), "page": (3000, 0)}
CHUNK = 1500   # fields per worker task


def label_pairs(segs, boxes, text) -> np.ndarray:
    """One field's candidates -> 10 * a + b for the pair "ab" of neighbouring digits a
    candidate is, NOT_A_PAIR for one it clearly is not, -1 in between (left out)."""
    out = np.full(len(segs), NOT_A_PAIR, np.int64)
    if len(boxes) < 2 or not len(segs):
        return out
    joint = [(min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
             for a, b in zip(boxes[:-1], boxes[1:])]
    lab = label_candidates(segs, joint)
    digits = [int(c) for c in text]
    code = np.array([10 * a + b for a, b in zip(digits[:-1], digits[1:])])
    return np.where(lab >= 100, code[np.clip(lab - 100, 0, None)],
                    np.where(lab == -1, -1, NOT_A_PAIR))


_TASK: dict = {}


def _candidates(job):
    """(style, draw, n, seed, chunk) -> (inputs, labels) of the kept candidates."""
    from fastlenet import _engine, fields
    from fastlenet.pixels import unit_scale

    F, src, faces = _TASK["synth"], _TASK["src"], _TASK["faces"]
    style, draw, n, seed, chunk = job
    k = list(F.STYLES).index(style)
    rng = np.random.default_rng([seed, chunk, k, draw, 19])
    samples = F.make_fields(style, n, src, rng, faces=faces,
                            lengths=None if draw == 0 else (2, 4))
    ims = [s.image for s in samples]
    inputs, segs, counts, _, _ = _engine._field_segments(ims, [unit_scale(a) for a in ims], 28,
                                                         "auto", True, 1)
    labels = np.concatenate([label_pairs(segs[a:b], s.boxes, s.text) for s, a, b in
                             zip(samples, np.r_[0, np.cumsum(counts[:, 1])][:-1],
                                 np.cumsum(counts[:, 1]))]) if len(samples) else np.zeros(0)
    m = len(labels)
    keep = ((labels >= 0) & (labels < 100)) | \
        ((labels == NOT_A_PAIR) & fields.pair_candidates(segs[:m]))
    return np.ascontiguousarray(inputs[:m][keep]), labels[keep]


def make_pictures(F, src, faces, seed, workers, scale=1.0):
    """-> (inputs uint8 (M, 28, 28), labels (M,), {style: [pairs, not two digits]}); scale
    multiplies DRAWS."""
    jobs = [(st, draw, min(CHUNK, n - c), seed, c)
            for st, counts in DRAWS.items() for draw, n in enumerate(int(k * scale) for k in counts)
            for c in range(0, n, CHUNK)]
    _TASK.update(synth=F, src=src, faces=faces)
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            res = pool.map(_candidates, jobs, chunksize=1)
    else:
        res = [_candidates(j) for j in jobs]
    balance: dict = {}
    for (st, *_), (_, y) in zip(jobs, res):
        b = balance.setdefault(st, [0, 0])
        b[0] += int((y < 100).sum())
        b[1] += int((y == NOT_A_PAIR).sum())
    return np.concatenate([r[0] for r in res]), np.concatenate([r[1] for r in res]), balance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path,
                    default=PROJECT_ROOT / "fastlenet" / "pretrained" / "lenet5_pairs.npz")
    ap.add_argument("--base", type=Path, default=BASE, help="the model whose features start it")
    ap.add_argument("--synth", type=Path, default=PROJECT_ROOT / "tests" / "_fields.py")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--per-epoch", type=int, default=240000)
    ap.add_argument("--fields-scale", type=float, default=1.0,
                    help="multiplies the fields drawn per style (DRAWS)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: see train_fields.py --threads)")
    ap.add_argument("--workers", type=int, default=2, help="processes cutting the fields")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as Fn

    import fastlenet

    rng = seeded_torch(args.seed, args.threads)
    t0 = time.time()

    F, fonts_train, fonts_val, _, _, src_train, src_val = recipe_inputs(args.synth,
                                                                         args.data_dir)

    x, y, balance = make_pictures(F, src_train, fonts_train, args.seed, args.workers,
                                  args.fields_scale)
    pos, neg = np.flatnonzero(y < 100), np.flatnonzero(y == NOT_A_PAIR)
    print(f"{len(pos)} pairs, {len(neg)} 'not two digits' ({time.time() - t0:.0f}s): {balance}",
          flush=True)
    gen_time = time.time() - t0

    model = build_model()
    base_meta = load_10(model, args.base)
    mean, std = base_meta["mean"], base_meta["std"]
    model.output = torch.nn.Linear(84, len(CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.per_epoch // args.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps)
    half = args.per_epoch // 2
    tt = time.time()
    for epoch in range(args.epochs):
        model.train()
        te = time.time()
        order = np.concatenate([pos[rng.integers(0, len(pos), half)],
                                neg[rng.integers(0, len(neg), args.per_epoch - half)]])
        order = order[rng.permutation(len(order))]
        total = right = 0.0
        for s in range(steps):
            b = order[s * args.batch_size:(s + 1) * args.batch_size]
            # inputs are centred by their centre of mass already: shifts of +-1 px
            xb = random_shift(x[b], rng, 1).astype(np.float32) / 255.0
            xb = torch.from_numpy(((xb - mean) / std)[:, None].astype(np.float32))
            yb = torch.from_numpy(y[b])
            logits = model(xb)
            loss = Fn.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            right += float((logits.argmax(1) == yb).float().mean())
        print(f"epoch {epoch + 1}/{args.epochs} loss {total / steps:.4f} train accuracy "
              f"{right / steps:.4f} ({time.time() - te:.0f}s)", flush=True)
    train_time = time.time() - tt

    state = model.state_dict()
    params = {k: state[k].detach().cpu().numpy().astype(np.float32) for k in PARAM_KEYS}
    meta = {k: base_meta[k] for k in ("activation", "pool", "mean", "std", "input_size", "pad",
                                      "foreground", "source")}
    meta.update({
        "classes": CLASSES,
        "name": "pairs",
        "trained_on": "candidate segments the field segmenter cuts from synthesized fields "
                      "(tests/_fields.py, every style but comb) of MNIST training digits "
                      "0..54,999 and the training font faces, labelled against the true digit "
                      "boxes: two neighbouring digits as their pair, the rest 'not two digits'",
        "provenance": {
            "script": "tools/train/train_pairs.py", "seed": args.seed, "epochs": args.epochs,
            "base_features": args.base.name, "per_epoch": args.per_epoch,
            "draws": {k: list(v) for k, v in DRAWS.items()}, "balance": balance,
            "batch_size": args.batch_size, "optimizer": f"Adam lr={args.lr}, cosine decay",
            "threads": args.threads, **recipe_record(fonts_train, gen_time, train_time),
        },
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **params, fastlenet_meta=np.array(json.dumps(meta)))

    # --- the file through fastlenet: validation pairs, and fields with and without it
    from fastlenet import fields

    pairs = fastlenet.load(args.out)
    res = {}
    digit_nets = tuple(fastlenet.pretrained(m) for m in fields.MODELS if m != "pairs")
    for k, st in enumerate(F.STYLES):
        samples = F.make_fields(st, 300, src_val, np.random.default_rng([args.seed, k, 56]),
                                faces=fonts_val)
        ims = [s.image for s in samples]
        res[st] = [float(np.mean([g.text == s.text for g, s in
                                  zip(fields.read_arrays(ims, n), samples)]))
                   for n in (digit_nets, digit_nets + (pairs,))]
    print("validation fields, exact strings (300 per style): without / with the pair reader")
    for st, (a, b) in res.items():
        print(f"  {st:<20} {a:.3f} {b:.3f}")
    meta["validation_fields"] = {st: round(b, 4) for st, (a, b) in res.items()}
    meta["validation_fields_without"] = {st: round(a, 4) for st, (a, b) in res.items()}
    np.savez(args.out, **params, fastlenet_meta=np.array(json.dumps(meta)))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); generation {gen_time:.0f}s, "
          f"training {train_time:.0f}s, total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
