"""Accuracy of the bundled model on machine-printed digits rendered with Pillow from the fonts on
this machine, under the conditions scans bring (paper, noise, blur, rotation, JPEG, size).

    python benchmarks/printed_digits.py                      # fastlenet.preprocess (C)
    python benchmarks/printed_digits.py --impl reference     # the NumPy/SciPy specification
    python benchmarks/printed_digits.py --impl legacy        # prepare.to_model_input (0.1.0)
    python benchmarks/printed_digits.py --fonts 40 --save out/   # also write the PNG files

Fonts: every outline font fc-list knows (symbol and math fonts skipped), or --font-dir. Install
more with e.g. `apt-get install fonts-liberation fonts-freefont-ttf fonts-urw-base35
fonts-noto-core fonts-texgyre`. Each (font, digit, condition) is one image, seeded, so runs are
comparable. Prints accuracy per condition.
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SKIP = ("math", "symbol", "dingbat", "emoji", "z003", "d050000l", "standardsymbols", "music")


def list_fonts(font_dir=None):
    if font_dir:
        paths = [os.path.join(r, f) for r, _, fs in os.walk(font_dir) for f in fs
                 if f.lower().endswith((".ttf", ".otf", ".pfb", ".t1"))]
    else:
        out = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True,
                             text=True).stdout
        paths = [p for p in out.splitlines() if p.lower().endswith((".ttf", ".otf"))]
    paths = sorted({p for p in paths if not any(s in p.lower() for s in SKIP)})
    good = []
    for p in paths:
        try:
            f = ImageFont.truetype(p, 40)
            if f.getbbox("0")[2] - f.getbbox("0")[0] > 4 and f.getbbox("8") != f.getbbox("1"):
                good.append(p)
        except OSError:
            pass
    return good


def render(font_path, digit, height, canvas, ink=0, paper=255, angle=0.0, rng=None):
    """A digit about `height` px tall, centred (with a random offset) on a canvas (w, h)."""
    big = 4  # render large and downsample: anti-aliased like a scan
    f = ImageFont.truetype(font_path, height * big)
    text = str(digit)
    x0, y0, x1, y1 = f.getbbox(text)
    glyph = Image.new("L", (x1 - x0 + 8 * big, y1 - y0 + 8 * big), 0)
    ImageDraw.Draw(glyph).text((4 * big - x0, 4 * big - y0), text, font=f, fill=255)
    if angle:
        glyph = glyph.rotate(angle, resample=Image.BICUBIC, expand=True)
    gw, gh = glyph.size
    scale = height / (y1 - y0)
    glyph = glyph.resize((max(1, round(gw * scale)), max(1, round(gh * scale))), Image.LANCZOS)
    cw, ch = canvas
    alpha = np.zeros((ch, cw))
    gw, gh = glyph.size
    ox = (cw - gw) // 2 + (rng.integers(-2, 3) if rng is not None else 0)
    oy = (ch - gh) // 2 + (rng.integers(-2, 3) if rng is not None else 0)
    g = np.asarray(glyph, np.float64) / 255
    sy0, sx0 = max(0, -oy), max(0, -ox)
    dy0, dx0 = max(0, oy), max(0, ox)
    hh, ww = min(gh - sy0, ch - dy0), min(gw - sx0, cw - dx0)
    alpha[dy0:dy0 + hh, dx0:dx0 + ww] = g[sy0:sy0 + hh, sx0:sx0 + ww]
    return paper + (ink - paper) * alpha


CONDITIONS = {
    # name: (height, canvas, ink, paper, extra)
    "clean": dict(height=48, canvas=(64, 72)),
    "gray paper": dict(height=40, canvas=(60, 60), ink=40, paper=170),
    "dark paper": dict(height=40, canvas=(60, 60), ink=15, paper=95),
    "light on dark": dict(height=40, canvas=(60, 60), ink=230, paper=30),
    "noisy": dict(height=40, canvas=(64, 64), noise=28),
    "salt+pepper": dict(height=40, canvas=(64, 64), salt=0.04),
    "blurred": dict(height=40, canvas=(64, 64), blur=2.0),
    "rotated": dict(height=40, canvas=(64, 64), angle=12),
    "jpeg": dict(height=36, canvas=(56, 56), jpeg=15, paper=225, ink=35),
    "tiny": dict(height=9, canvas=(14, 13)),
    "28 px canvas": dict(height=20, canvas=(28, 28)),
    "32 px canvas": dict(height=22, canvas=(32, 32), paper=200, ink=20),
    "page": dict(height=120, canvas=(300, 220), noise=10),
}


def make_image(font, digit, cond, rng):
    c = dict(CONDITIONS[cond])
    angle = c.pop("angle", 0) * (1 if rng.random() < 0.5 else -1)
    img = render(font, digit, c["height"], c["canvas"], c.get("ink", 0), c.get("paper", 255),
                 angle, rng)
    if c.get("blur"):
        img = np.asarray(Image.fromarray(img.astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(c["blur"])), np.float64)
    if c.get("noise"):
        img = img + rng.normal(0, c["noise"], img.shape)
    if c.get("salt"):
        r = rng.random(img.shape)
        img = np.where(r < c["salt"] / 2, 0, np.where(r > 1 - c["salt"] / 2, 255, img))
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if c.get("jpeg"):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=c["jpeg"])
        img = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
    return img


def prepare(impl, imgs, size=28):
    import fastlenet
    if impl == "c":
        return fastlenet.preprocess(imgs, size=size)
    if impl == "reference":
        from fastlenet.reference import prepare as reference_prepare
        return reference_prepare.preprocess(imgs, size=size)
    from fastlenet.prepare import to_model_input
    return np.stack([to_model_input(im, size) for im in imgs])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", choices=("c", "reference", "legacy"), default="c")
    ap.add_argument("--fonts", type=int, default=0, help="use at most N fonts (0: all)")
    ap.add_argument("--font-dir")
    ap.add_argument("--conditions", nargs="*", default=list(CONDITIONS))
    ap.add_argument("--save", metavar="DIR", help="also write each image as PNG here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import fastlenet
    net = fastlenet.pretrained()
    fonts = list_fonts(args.font_dir)
    if args.fonts:
        fonts = fonts[:: max(1, len(fonts) // args.fonts)][: args.fonts]
    print(f"{len(fonts)} fonts, impl={args.impl}", flush=True)
    total_ok = total = 0
    for cond in args.conditions:
        rng = np.random.default_rng([args.seed, sum(map(ord, cond))])
        imgs, labels = [], []
        for font in fonts:
            for d in range(10):
                imgs.append(make_image(font, d, cond, rng))
                labels.append(d)
        if args.save:
            d = os.path.join(args.save, cond.replace(" ", "_").replace("+", "_"))
            os.makedirs(d, exist_ok=True)
            for i, (im, lab) in enumerate(zip(imgs, labels)):
                Image.fromarray(im).save(os.path.join(d, f"{lab}_{i:05d}.png"))
        t = time.perf_counter()
        x = prepare(args.impl, imgs)
        dt = time.perf_counter() - t
        pred = net.predict(x)
        ok = int((pred == np.array(labels)).sum())
        total_ok += ok
        total += len(labels)
        print(f"{cond:<14} {ok / len(labels):7.1%}  ({ok}/{len(labels)}; preprocessing "
              f"{len(labels) / dt:,.0f} images/s)", flush=True)
    print(f"{'all':<14} {total_ok / total:7.1%}  ({total_ok}/{total})")


if __name__ == "__main__":
    sys.exit(main())
