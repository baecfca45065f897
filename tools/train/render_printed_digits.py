#!/usr/bin/env python3
"""Render a printed-digit test set as image files, from fonts that training never saw, under the
conditions scans bring; optionally score a model on it through `fastlenet eval`.

    python tools/train/render_printed_digits.py --out printed-test            # test font families
    python tools/train/render_printed_digits.py --out printed-val --split val
    python tools/train/render_printed_digits.py --out printed-test --eval     # + `fastlenet eval` per
                                                                       #   condition, a table
    fastlenet eval printed-test/noise                                  # one condition by hand

Layout: OUT/<condition>/<digit>/<font>-<style>.png, one image per (face, digit, condition),
so `fastlenet eval OUT/<condition>` reads the labels from the subfolder names. The font families
of each split are fixed in tools/train/digit_fonts.py (missing Debian packages are installed when
running as root). Seeded: the same command writes the same pixels.

The renderer (glyph masks, affine distortion, stroke weight, paper and ink, blur, noise, JPEG,
low resolution) is also what tools/train/train_printed.py draws its augmented training digits with.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digit_fonts  # noqa: E402

GLYPH_PX = 128  # font size of the cached glyph masks: digits about 90 px tall


@lru_cache(maxsize=None)
def glyph(path: str, index: int, digit: int, px: int = GLYPH_PX) -> np.ndarray:
    """The digit's anti-aliased coverage, float32 in [0, 1], tight box with a 2 px margin."""
    f = ImageFont.truetype(path, px, index=index)
    text = str(digit)
    x0, y0, x1, y1 = f.getbbox(text)
    img = Image.new("L", (x1 - x0 + 4, y1 - y0 + 4), 0)
    ImageDraw.Draw(img).text((2 - x0, 2 - y0), text, font=f, fill=255)
    a = np.asarray(img, np.float32) / 255
    ys, xs = np.nonzero(a > 0.02)
    return np.ascontiguousarray(a[max(0, ys.min() - 2):ys.max() + 3,
                                  max(0, xs.min() - 2):xs.max() + 3])


def _affine(mask: np.ndarray, angle: float, shear: float, aspect: float) -> Image.Image:
    """Shear (x += shear * y), horizontal stretch by `aspect` and rotation by `angle` degrees
    about the centre, on a canvas that holds the whole result."""
    img = Image.fromarray(np.uint8(np.clip(mask * 255 + 0.5, 0, 255)))
    if shear or aspect != 1:
        h, w = mask.shape
        nw = int(np.ceil(w * aspect + abs(shear) * h)) + 2
        off = (min(0.0, shear * h)) - 1
        # output (u, v) <- input (x, y): x = (u + off - shear*(v)) / aspect ... inverted map
        coeffs = (1 / aspect, -shear / aspect, off / aspect, 0, 1, 0)
        img = img.transform((nw, h), Image.AFFINE, coeffs, resample=Image.BICUBIC)
    if angle:
        img = img.rotate(angle, resample=Image.BICUBIC, expand=True)
    return img


def _weight(img: Image.Image, delta: int) -> Image.Image:
    """Bolder (delta > 0) or lighter (delta < 0) strokes by a max/min filter of 2|delta|+1."""
    if delta > 0:
        return img.filter(ImageFilter.MaxFilter(2 * delta + 1))
    if delta < 0:
        return img.filter(ImageFilter.MinFilter(-2 * delta + 1))
    return img


def compose(mask: np.ndarray, rng: np.random.Generator, *, height: float,
            canvas=None, margin=(0.15, 0.6), angle=0.0, shear=0.0, aspect=1.0, weight=0.0,
            ink=0, paper=255, gradient=0.0, blur=0.0, noise=0.0, salt=0.0, jpeg=0,
            lowres=1.0, levels=0, upsample="bilinear", offset=2, neighbour=0.0) -> np.ndarray:
    """A glyph mask -> a picture of the digit, uint8 2-D, as a scan or photo would give it.

    height: the digit's height in output pixels; canvas: (w, h) or None for the digit's box plus
    a random margin (fractions of the height, per side); weight: stroke weight change as a
    fraction of the glyph height (+ bolder, - lighter); ink/paper: gray levels (ink lighter than
    paper for light-on-dark); gradient: uneven lighting (gray levels across the canvas);
    lowres > 1: drawn that many times smaller and scaled back up with `upsample` (a low-
    resolution scan or an enlarged thumbnail); levels: quantise the coverage to that many levels
    before upsampling (e.g. 17 for counts of 0..16); offset: random shift of the digit (px);
    neighbour: coverage fraction of a neighbouring stroke cut by the frame at a side.
    """
    img = _affine(mask, angle, shear, aspect)
    if weight:
        img = _weight(img, int(round(weight * mask.shape[0])))
    s = height / mask.shape[0] / max(lowres, 1.0)
    w, h = max(1, round(img.width * s)), max(1, round(img.height * s))
    a = np.asarray(img.resize((w, h), Image.BOX if s < 1 else Image.BICUBIC), np.float32) / 255
    # the canvas, in the (possibly low-resolution) drawing scale
    if canvas is None:
        lo, hi = margin
        mh = [rng.uniform(lo, hi) * height / max(lowres, 1.0) for _ in range(4)]
        cw, ch = w + int(mh[0] + mh[1]) + 1, h + int(mh[2] + mh[3]) + 1
        ox, oy = int(mh[0]), int(mh[2])
    else:
        cw, ch = (max(1, round(c / max(lowres, 1.0))) for c in canvas)
        ox = (cw - w) // 2 + (int(rng.integers(-offset, offset + 1)) if offset else 0)
        oy = (ch - h) // 2 + (int(rng.integers(-offset, offset + 1)) if offset else 0)
    cov = np.zeros((ch, cw), np.float32)
    sy0, sx0, dy0, dx0 = max(0, -oy), max(0, -ox), max(0, oy), max(0, ox)
    hh, ww = min(h - sy0, ch - dy0), min(w - sx0, cw - dx0)
    if hh > 0 and ww > 0:
        cov[dy0:dy0 + hh, dx0:dx0 + ww] = a[sy0:sy0 + hh, sx0:sx0 + ww]
    if neighbour > 0:  # the edge of a neighbouring character, cut by the frame
        side = int(rng.integers(0, 2))
        k = max(1, int(round(neighbour * cw)))
        band = np.zeros((ch, k), np.float32)
        y0, y1 = sorted(rng.integers(0, ch, size=2))
        band[y0:y1 + 1, :] = 1.0
        if side:
            cov[:, -k:] = np.maximum(cov[:, -k:], band)
        else:
            cov[:, :k] = np.maximum(cov[:, :k], band)
    if levels:
        cov = np.round(cov * (levels - 1)) / (levels - 1)
    if lowres > 1:
        full = canvas if canvas is not None else (round(cw * lowres), round(ch * lowres))
        res = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR,
               "bicubic": Image.BICUBIC}[upsample]
        cov = np.clip(np.asarray(Image.fromarray(cov).resize(full, res), np.float32), 0, 1)
    ch, cw = cov.shape
    bg = np.full((ch, cw), float(paper), np.float32)
    if gradient:
        gy, gx = np.meshgrid(np.linspace(-0.5, 0.5, ch), np.linspace(-0.5, 0.5, cw),
                             indexing="ij")
        th = rng.uniform(0, 2 * np.pi)
        bg += gradient * (np.cos(th) * gx + np.sin(th) * gy)
    img = bg + (ink - bg) * cov
    if blur:
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, blur, mode="nearest")
    if noise:
        img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    if salt:
        r = rng.random(img.shape)
        img = np.where(r < salt / 2, 0, np.where(r > 1 - salt / 2, 255, img))
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if jpeg:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, "JPEG", quality=int(jpeg))
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
    return out


# The evaluation's conditions: what a user's scans and crops bring. Each is a dict of compose()
# arguments; "angle" is a magnitude (the sign is random per image).
CONDITIONS = {
    "clean": dict(height=48, canvas=(64, 72)),
    "noise": dict(height=40, canvas=(64, 64), noise=30),
    "salt_pepper": dict(height=40, canvas=(64, 64), salt=0.04),
    "blur": dict(height=40, canvas=(64, 64), blur=2.0),
    "rotation": dict(height=40, canvas=(64, 64), angle=12),
    "jpeg": dict(height=36, canvas=(56, 56), jpeg=15, paper=225, ink=35),
    "gray_paper": dict(height=40, canvas=(60, 60), ink=40, paper=170),
    "dark_paper": dict(height=40, canvas=(60, 60), ink=15, paper=95),
    "light_on_dark": dict(height=40, canvas=(60, 60), ink=230, paper=30),
    "tiny": dict(height=9, canvas=(14, 13), offset=1),
    "canvas28": dict(height=20, canvas=(28, 28), offset=1),
    "canvas32": dict(height=22, canvas=(32, 32), paper=200, ink=20, offset=1),
}


def render_condition(face, digit: int, cond: str, rng) -> np.ndarray:
    c = dict(CONDITIONS[cond])
    if c.get("angle"):
        c["angle"] = c["angle"] * (1 if rng.random() < 0.5 else -1)
    return compose(glyph(face.path, face.index, digit), rng, **c)


def face_id(face) -> str:
    name = f"{face.family}-{face.style}-{os.path.basename(face.path)}-{face.index}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def render_set(out: str, split: str, conditions, seed: int = 0) -> int:
    fs = digit_fonts.faces(split)
    n = 0
    for cond in conditions:
        rng = np.random.default_rng([seed, sum(map(ord, cond)), len(cond)])
        for face in fs:
            fid = face_id(face)
            for d in range(10):
                img = render_condition(face, d, cond, rng)
                folder = os.path.join(out, cond, str(d))
                os.makedirs(folder, exist_ok=True)
                Image.fromarray(img).save(os.path.join(folder, f"{fid}.png"))
                n += 1
    return n


# The bundled sample (tests/data/printed_sample/) uses only test-split groups whose licences
# let anyone redistribute renderings without conditions beyond attribution (no GPL fonts).
SAMPLE_GROUPS = ("DejaVu / Hack", "Lato", "EB Garamond", "JetBrains Mono", "Go", "Cantarell",
                 "Charis SIL", "Courier Prime")


def render_sample(out: str, faces_per_group: int = 3, seed: int = 0) -> int:
    """A small mixed sample: a few faces of each SAMPLE_GROUPS group (spread over its styles),
    each digit once per face, the conditions taken in turn. OUT/<digit>/<face>-<cond>.png."""
    fs = digit_fonts.faces("test")
    rng = np.random.default_rng([seed, 12])
    conds = list(CONDITIONS)
    n = 0
    for g in SAMPLE_GROUPS:
        members = [f for f in fs if f.group == g]
        step = max(1, len(members) // faces_per_group)
        for face in members[::step][:faces_per_group]:
            for d in range(10):
                cond = conds[n % len(conds)]
                img = render_condition(face, d, cond, rng)
                folder = os.path.join(out, str(d))
                os.makedirs(folder, exist_ok=True)
                Image.fromarray(img).save(os.path.join(folder, f"{face_id(face)}-{cond}.png"),
                                          optimize=True)
                n += 1
    return n


def eval_folder(folder: str, weights=None) -> tuple:
    """`fastlenet eval FOLDER --format json` (labels from class subfolders) -> (correct, n)."""
    cmd = [sys.executable, "-m", "fastlenet", "eval", folder, "--format", "json"]
    if weights:
        cmd += ["--weights", weights]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    j = json.loads(r.stdout)
    return j["correct"], j["images"]


def evaluate(out: str, conditions, weights=None) -> dict:
    """eval_folder on each condition's folder -> {condition: (correct, n)}."""
    return {cond: eval_folder(os.path.join(out, cond), weights) for cond in conditions}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write (one subfolder per condition)")
    ap.add_argument("--split", choices=digit_fonts.SPLITS, default="test",
                    help="font families to render (default: test, never seen in training)")
    ap.add_argument("--conditions", nargs="*", default=list(CONDITIONS),
                    choices=list(CONDITIONS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval", action="store_true", help="run `fastlenet eval` on each condition")
    ap.add_argument("--weights", help="with --eval: a weights file (default: the bundled model)")
    ap.add_argument("--sample", action="store_true",
                    help="write the small mixed sample of tests/data/printed_sample instead")
    args = ap.parse_args(argv)
    digit_fonts.ensure_packages(args.split, quiet=True)
    if args.sample:
        n = render_sample(args.out, seed=args.seed)
        print(f"wrote {n} images to {args.out}")
        return 0
    n = render_set(args.out, args.split, args.conditions, args.seed)
    print(f"wrote {n} images for {len(digit_fonts.faces(args.split))} {args.split} faces "
          f"to {args.out}", flush=True)
    if args.eval:
        res = evaluate(args.out, args.conditions, args.weights)
        tot_ok = sum(c for c, _ in res.values())
        tot = sum(n for _, n in res.values())
        print(f"{'condition':<14} accuracy")
        for cond, (c, n) in res.items():
            print(f"{cond:<14} {c / n:8.2%}  ({c}/{n})")
        print(f"{'all':<14} {tot_ok / tot:8.2%}  ({tot_ok}/{tot})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
