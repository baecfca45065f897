"""Synthetic fields of digits (issue 18): ZIP codes, amounts, IDs and comb boxes, with their
ground truth. One owner: the tests, benchmarks/fields.py and the training tools import it
(benchmarks and tools put tests/ on sys.path).

    samples = make_fields("touching", 500, mnist_train_digits(), np.random.default_rng(0))
    write_fields(samples, "out/touching")        # PNG files + labels.csv (path,text)

    python tests/_fields.py OUT [--per-style 100] [--digits subset|test|train]   # folders

Every sample is a FieldSample(image, text, boxes, style): a 2-D uint8 image with dark ink on
light paper (as a scan), the digits as a string (leading zeros kept), and one ink box
(x0, y0, x1, y1) per digit in image pixels, exclusive ends, in reading order. Boxes are where each
digit's ink lies before any degradation; after a rotation (scanned styles) a box is the bounding
box of the rotated ink box, so it may be a little loose.

Styles (the issue's table):
  handwritten_spaced  1-10 MNIST digits, ink boxes apart by 2-10 px per 28 px of digit height
  touching            neighbours placed by their ink contours to overlap 0-4 px: ink touches
  scanned             spaced handwriting, then gray paper, uneven light, rotation, blur,
                      low resolution, noise and JPEG
  comb                one digit per printed box; digits may cross the box lines; up to two boxes
                      left empty at the END of the row, which are not in the text (an empty box
                      is layout, not content, as `Field.text` defines it)
  printed_clean       digits from fonts of digit_fonts.py's "test" split (never in training)
  printed_scanned     printed, degraded as `scanned`
  printed_tight       printed with negative tracking: neighbouring glyphs touch
  page                a handwritten or printed field on a page 3-5x its size, a rule line through
                      the digits' lower part, and specks away from the field

Digit heights are drawn per field (20-60 px of ink for handwriting); all sizes scale with it.
Everything is drawn from the `rng` passed in: the same seed gives the same fields, bit for bit.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import os
import pathlib
import sys
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent
TRAIN_DIGITS = TESTS / "data" / "fields" / "mnist_train_digits.npz"
# The shared MNIST copy beside the project (see tools/train/train_mnist.py); overridable.
MNIST_DIR = pathlib.Path(os.environ.get("FASTLENET_MNIST_DIR", ROOT.parent / "shared" / "data"
                                        / "mnist"))

HANDWRITTEN_STYLES = ("handwritten_spaced", "touching", "scanned", "comb")
PRINTED_STYLES = ("printed_clean", "printed_scanned", "printed_tight")
STYLES = HANDWRITTEN_STYLES + PRINTED_STYLES + ("page",)

Box = Tuple[int, int, int, int]
INK = 0.25  # a pixel of at least this ink (0-1) belongs to a digit's box


class FieldSample(NamedTuple):
    image: np.ndarray          # uint8 (H, W), dark ink on light paper
    text: str                  # the digits, left to right
    boxes: List[Box]           # one (x0, y0, x1, y1) per digit, exclusive ends
    style: str


class DigitSource(NamedTuple):
    images: np.ndarray         # uint8 (N, 28, 28), white digit on black (MNIST)
    labels: np.ndarray         # uint8 (N,)
    name: str


class NoTestFonts(RuntimeError):
    """No face of digit_fonts.py's test split is installed (tests skip with this message)."""


# ----------------------------------------------------------------------------- digit sources
def mnist_train_digits() -> DigitSource:
    """The 1,000 MNIST training digits committed with the tests (tools/train/make_field_digits.py)."""
    with np.load(TRAIN_DIGITS, allow_pickle=False) as z:
        return DigitSource(z["images"], z["labels"], "mnist-train-subset")


def mnist_digits(split: str, data_dir=None, indices=None) -> DigitSource:
    """MNIST digits of `split` ("t10k" or "train") from the gzipped IDX files, optionally only
    `indices` of them. FileNotFoundError when the shared copy is absent."""
    from fastlenet.io.containers import read_idx

    d = pathlib.Path(data_dir) if data_dir else MNIST_DIR
    images = read_idx(str(d / f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(str(d / f"{split}-labels-idx1-ubyte.gz"))
    if indices is not None:
        images, labels = images[indices], labels[indices]
    return DigitSource(np.ascontiguousarray(images, np.uint8), labels.astype(np.uint8),
                       f"mnist-{split}")


def mnist_test_digits(data_dir=None) -> DigitSource:
    """All 10,000 MNIST test digits: the benchmarks' source (the bundled model never saw them)."""
    return mnist_digits("t10k", data_dir)


def mnist_training_digits(data_dir=None) -> DigitSource:
    """MNIST training digits 0-54,999 for training tools: all but the tail the committed test
    subset (mnist_train_digits) is drawn from, so a model trained on fields never saw the
    tests' digits."""
    return mnist_digits("train", data_dir, np.arange(55_000))


@functools.lru_cache(maxsize=None)
def _digit_fonts():
    sys.path.insert(0, str(ROOT / "tools" / "train"))
    try:
        import digit_fonts
    finally:
        sys.path.remove(str(ROOT / "tools" / "train"))
    return digit_fonts


@functools.lru_cache(maxsize=None)
def test_fonts() -> tuple:
    """The installed faces of digit_fonts.py's "test" split, in its fixed order: fonts the
    bundled model was not trained on nor tuned with."""
    return tuple(_digit_fonts().faces("test"))


def require_test_fonts() -> tuple:
    faces = test_fonts()
    if not faces:
        pkgs = " ".join(_digit_fonts().packages("test"))
        raise NoTestFonts("no font of digit_fonts.py's test split is installed "
                          f"(apt-get install {pkgs})")
    return faces


# ----------------------------------------------------------------------------- building blocks
def _lengths(n: int, rng, lo: int = 1, hi: int = 10) -> np.ndarray:
    """Field lengths in lo..hi, about 6 on average (ZIP codes, amounts and IDs)."""
    return np.clip(np.rint(rng.normal(6.3, 2.3, n)), lo, hi).astype(int)


def _crop(ink: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(ink.max(axis=1) >= INK)
    cols = np.flatnonzero(ink.max(axis=0) >= INK)
    if rows.size == 0:
        return ink[:1, :1]
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _resize(ink: np.ndarray, h: int, w: int) -> np.ndarray:
    im = Image.fromarray(np.clip(ink * 255.0, 0, 255).astype(np.uint8))
    return np.asarray(im.resize((max(1, w), max(1, h)), Image.BILINEAR), np.float32) / 255.0


def _mnist_ink(src: DigitSource, text: str, height: float, rng, scale=(0.8, 1.2)):
    """One ink array (0-1) per digit of `text`, cropped to its ink and scaled so that a digit's
    ink is about `height` px tall times a per-digit factor."""
    by_label = _by_label(src)
    out = []
    for ch in text:
        pool = by_label[int(ch)]
        img = src.images[pool[rng.integers(pool.size)]].astype(np.float32) / 255.0
        g = _crop(img)
        # MNIST digits are normalized to a 20 px box: 20 px of ink is "height".
        f = height / 20.0 * rng.uniform(*scale)
        out.append(_crop(_resize(g, round(g.shape[0] * f), round(g.shape[1] * f))))
    return out


_BY_LABEL = {}


def _by_label(src: DigitSource):
    key = id(src.labels)
    hit = _BY_LABEL.get(key)
    if hit is None or hit[0] is not src.labels:
        hit = (src.labels, [np.flatnonzero(src.labels == d) for d in range(10)])
        _BY_LABEL[key] = hit
    return hit[1]


def _profiles(ink: np.ndarray):
    """(first, last) ink column per row; rows without ink get (+big, -big)."""
    m = ink >= INK
    any_ = m.any(axis=1)
    first = np.where(any_, m.argmax(axis=1), 1 << 20)
    last = np.where(any_, ink.shape[1] - 1 - m[:, ::-1].argmax(axis=1), -(1 << 20))
    return first, last


def _lay_out(inks: Sequence[np.ndarray], tops: Sequence[int], gaps: Sequence[float],
             by_contour: bool, margin: Tuple[int, int, int, int]):
    """Place ink arrays left to right on one canvas -> (canvas ink 0-1, boxes).

    by_contour=False: ink BOXES are `gap` px apart (a vertical line separates them).
    by_contour=True: the closest ink of neighbouring digits in any row is `gap` px apart, so
    gap <= 0 makes the ink overlap (touch) where the two digits come closest."""
    top_min = min(tops)
    tops = [t - top_min for t in tops]
    height = max(t + g.shape[0] for t, g in zip(tops, inks))
    ml, mt, mr, mb = margin
    width = sum(g.shape[1] for g in inks) + int(sum(max(0.0, g) for g in gaps)) + ml + mr + 2
    canvas = np.zeros((height + mt + mb, width), np.float32)
    right = np.full(canvas.shape[0], -(1 << 20))   # rightmost ink column so far, per row
    boxes, x_prev_end = [], ml
    for i, (g, t) in enumerate(zip(inks, tops)):
        y = t + mt
        h, w = g.shape
        if i == 0:
            x = ml
        else:
            gap = int(round(gaps[i - 1]))
            x = x_prev_end + gap
            if by_contour:
                first, _ = _profiles(g)
                both = (first < (1 << 20)) & (right[y:y + h] > -(1 << 20))
                if both.any():
                    # the smallest horizontal distance between the two inks is gap + 1 columns
                    x = int(np.max(right[y:y + h][both] - first[both])) + 1 + gap
            x = max(0, x)
        if x + w > canvas.shape[1]:
            canvas = np.pad(canvas, ((0, 0), (0, x + w - canvas.shape[1] + mr)))
        np.maximum(canvas[y:y + h, x:x + w], g, out=canvas[y:y + h, x:x + w])
        _, last = _profiles(g)
        np.maximum(right[y:y + h], np.where(last > -(1 << 20), last + x, -(1 << 20)),
                   out=right[y:y + h])
        boxes.append((x, y, x + w, y + h))
        x_prev_end = max(x_prev_end, x + w)
    canvas = canvas[:, :x_prev_end + mr]
    return canvas, boxes


def _on_paper(ink: np.ndarray, rng, paper=(225, 255), ink_level=(0, 60)) -> np.ndarray:
    """Ink (0-1) -> a float image of dark ink on light paper."""
    p = rng.uniform(*paper)
    k = rng.uniform(*ink_level)
    return p - ink * (p - k)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _rotate(img: np.ndarray, boxes: List[Box], angle: float, fill: float):
    """Rotate counter-clockwise by `angle` degrees, expanding the canvas; boxes become the
    bounding boxes of their rotated corners."""
    h, w = img.shape
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.float32), mode="F")
    out = np.asarray(im.rotate(angle, Image.BILINEAR, expand=True, fillcolor=float(fill)))
    H, W = out.shape
    a = np.deg2rad(angle)
    c, s = np.cos(a), np.sin(a)
    new = []
    for x0, y0, x1, y1 in boxes:
        xs = np.array([x0, x1, x1, x0], float) - w / 2
        ys = np.array([y0, y0, y1, y1], float) - h / 2
        # image coordinates have y down, so a counter-clockwise turn on screen is this matrix
        xr = c * xs + s * ys + W / 2
        yr = -s * xs + c * ys + H / 2
        new.append((max(0, int(np.floor(xr.min()))), max(0, int(np.floor(yr.min()))),
                    min(W, int(np.ceil(xr.max()))), min(H, int(np.ceil(yr.max())))))
    return out, new


def _lighting(img: np.ndarray, rng, depth=(0.0, 0.25)) -> np.ndarray:
    """Uneven light: the image times a smooth ramp from 1 down to 1 - depth across a random
    direction (a page lit from one side, a phone's shadow)."""
    h, w = img.shape
    a = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (np.cos(a) * xx / max(w, 1) + np.sin(a) * yy / max(h, 1))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return img * (1.0 - rng.uniform(*depth) * t)


def _jpeg(img_u8: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img_u8).save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L"))


def _scan(img: np.ndarray, boxes: List[Box], rng):
    """Degrade a clean float field as a cheap scan: gray paper is already in `img`; uneven
    light, a small rotation, blur, a lower resolution scaled back up, sensor noise, JPEG."""
    img = _lighting(img, rng)
    fill = float(np.percentile(img, 90))
    img, boxes = _rotate(img, boxes, rng.uniform(-3.0, 3.0), fill)
    img = ndimage.gaussian_filter(img, rng.uniform(0.3, 1.0))
    h, w = img.shape
    f = rng.uniform(1.2, 2.0)                       # scanned at 1/f of the resolution
    small = Image.fromarray(img.astype(np.float32), mode="F").resize(
        (max(1, round(w / f)), max(1, round(h / f))), Image.BILINEAR)
    img = np.asarray(small.resize((w, h), Image.BILINEAR))
    img = img + rng.normal(0.0, rng.uniform(2.0, 10.0), img.shape)
    return _jpeg(_to_u8(img), rng.integers(30, 81)), boxes


def _margin(height: float, rng) -> Tuple[int, int, int, int]:
    return tuple(int(v) for v in rng.uniform(0.1, 0.45, 4) * height + 1)


# ----------------------------------------------------------------------------- handwriting
def _handwritten(text: str, src: DigitSource, rng, touching: bool):
    height = rng.uniform(20, 60)
    inks = _mnist_ink(src, text, height, rng)
    px = height / 28.0                               # gaps are stated at 28 px of digit height
    if touching:
        gaps = rng.uniform(-4.0, 0.0, len(text)) * px
    else:
        gaps = rng.uniform(2.0, 10.0, len(text)) * px
    # centred on a common line, each digit jittered vertically by up to 8% of the height
    tops = [int(round(-g.shape[0] / 2 + rng.uniform(-0.08, 0.08) * height)) for g in inks]
    return _lay_out(inks, tops, gaps, touching, _margin(height, rng)), height


def _field_handwritten(text, src, rng, touching=False):
    (ink, boxes), _ = _handwritten(text, src, rng, touching)
    return _to_u8(_on_paper(ink, rng)), boxes


def _field_scanned(text, src, rng):
    (ink, boxes), _ = _handwritten(text, src, rng, False)
    img = _on_paper(ink, rng, paper=(150, 225), ink_level=(10, 80))
    return _scan(img, boxes, rng)


def _field_comb(text, src, rng):
    """One digit per printed box, boxes `cell` wide, lines 1-3 px, up to two empty boxes at
    the end. A quarter of the digits are drawn 5-30% taller than the box's inside, and every
    digit is jittered, so digits often touch or cross the lines."""
    height = rng.uniform(20, 60)
    cell_w = int(round(height * rng.uniform(1.0, 1.4)))
    cell_h = int(round(height * rng.uniform(1.2, 1.5)))
    line = int(rng.integers(1, 4))
    empty = int(rng.choice([0, 0, 1, 2])) if len(text) < 10 else 0
    n_cells = len(text) + empty
    ml, mt, mr, mb = _margin(height, rng)
    H = cell_h + mt + mb
    W = n_cells * cell_w + line + ml + mr
    ink = np.zeros((H, W), np.float32)
    lines = np.zeros((H, W), np.float32)
    # a row of boxes sharing their vertical lines, as printed on forms
    lines[mt:mt + line, ml:ml + n_cells * cell_w + line] = 1.0
    lines[mt + cell_h - line:mt + cell_h, ml:ml + n_cells * cell_w + line] = 1.0
    for i in range(n_cells + 1):
        x = ml + i * cell_w
        lines[mt:mt + cell_h, x:x + line] = 1.0
    inks = _mnist_ink(src, text, height, rng, scale=(0.85, 1.05))
    boxes = []
    for i, g in enumerate(inks):
        if rng.random() < 0.25:      # written too big for its box: crosses the lines
            f = (cell_h - 2 * line) * rng.uniform(1.05, 1.3) / max(g.shape[0], 1)
            # ...but not wider than a little more than its cell, nor than the canvas
            f = min(f, 1.1 * cell_w / g.shape[1], H / g.shape[0], W / g.shape[1])
            g = _crop(_resize(g, round(g.shape[0] * f), round(g.shape[1] * f)))
        h, w = g.shape
        cx = ml + i * cell_w + cell_w / 2 + rng.uniform(-0.15, 0.15) * cell_w
        cy = mt + cell_h / 2 + rng.uniform(-0.12, 0.12) * cell_h
        x = int(np.clip(round(cx - w / 2), 0, W - w))
        y = int(np.clip(round(cy - h / 2), 0, H - h))
        np.maximum(ink[y:y + h, x:x + w], g, out=ink[y:y + h, x:x + w])
        boxes.append((x, y, x + w, y + h))
    p = rng.uniform(220, 255)
    k = rng.uniform(0, 60)
    line_k = rng.uniform(0, 90)                  # box lines: printed, may be lighter than ink
    img = p - lines * (p - line_k)
    img = np.minimum(img, p - ink * (p - k))
    return _to_u8(img), boxes


# ----------------------------------------------------------------------------- print
_GLYPHS = {}


def _glyph(face, size: int, ch: str):
    """(ink 0-1, top offset from the line's ascender) of one glyph, cropped to its ink."""
    key = (face.path, face.index, size, ch)
    hit = _GLYPHS.get(key)
    if hit is None:
        font = ImageFont.truetype(face.path, size, index=face.index)
        l, t, r, b = font.getbbox(ch)
        im = Image.new("L", (max(1, r - l), max(1, b - t)), 0)
        ImageDraw.Draw(im).text((-l, -t), ch, fill=255, font=font)
        ink = np.asarray(im, np.float32) / 255.0
        rows = np.flatnonzero(ink.max(axis=1) >= INK)
        top = t + (int(rows[0]) if rows.size else 0)
        hit = (_crop(ink), top, font.getlength(ch), l)
        _GLYPHS[key] = hit
    return hit


def _printed(text: str, rng, tight: bool, faces):
    face = faces[rng.integers(len(faces))]
    size = int(rng.integers(22, 80))                 # digits about 16-58 px tall
    glyphs = [_glyph(face, size, ch) for ch in text]
    height = max(g[0].shape[0] for g in glyphs)
    if tight:
        # negative tracking: the closest ink of neighbours overlaps 0-6% of the digit height
        gaps = rng.uniform(-0.06, 0.0, len(text)) * height - 0.5
    else:
        # the font's own spacing (advance minus ink widths) plus 0-15% of the height tracking
        gaps = []
        for a, b in zip(glyphs, glyphs[1:]):
            gaps.append(a[2] - a[3] - a[0].shape[1] + b[3] + rng.uniform(0.0, 0.15) * height)
        gaps.append(0.0)
        gaps = np.maximum(np.array(gaps), 1.0)       # never touching in clean print
    tops = [g[1] for g in glyphs]                    # a shared baseline
    return _lay_out([g[0] for g in glyphs], tops, gaps, tight, _margin(height, rng)), height


def _field_printed(text, rng, faces, tight=False, scanned=False):
    (ink, boxes), _ = _printed(text, rng, tight, faces)
    if scanned:
        return _scan(_on_paper(ink, rng, paper=(150, 225), ink_level=(10, 80)), boxes, rng)
    return _to_u8(_on_paper(ink, rng, paper=(235, 255), ink_level=(0, 40))), boxes


# ----------------------------------------------------------------------------- page
def _field_page(text, src, rng, faces):
    """A field on a page 3-5x its size: a rule line through the lower part of the digits
    (touching them, as a field written on a form's line), specks away from the field."""
    if faces and rng.random() < 0.5:
        (ink, boxes), height = _printed(text, rng, False, faces)
    else:
        (ink, boxes), height = _handwritten(text, src, rng, False)
    h, w = ink.shape
    H = int(h * rng.uniform(3, 5))
    W = int(w * rng.uniform(3, 5))
    y0 = int(rng.integers(0, H - h + 1))
    x0 = int(rng.integers(0, W - w + 1))
    page = np.zeros((H, W), np.float32)
    page[y0:y0 + h, x0:x0 + w] = ink
    boxes = [(a + x0, b + y0, c + x0, d + y0) for a, b, c, d in boxes]
    # the rule: between 70% and 100% down the digits' common ink, 1-3 px, most of the page wide
    top = min(b[1] for b in boxes)
    bottom = max(b[3] for b in boxes)
    ry = int(top + (bottom - top) * rng.uniform(0.7, 1.0))
    thick = int(rng.integers(1, 4))
    rx0 = int(rng.uniform(0, 0.3) * min(x0, W))
    rx1 = W - int(rng.uniform(0, 0.3) * min(W - x0 - w, W))
    page[ry:ry + thick, min(rx0, x0):max(rx1, x0 + w)] = np.maximum(
        page[ry:ry + thick, min(rx0, x0):max(rx1, x0 + w)], rng.uniform(0.6, 1.0))
    # specks: 5-40 dots of 1-3 px outside the field's box (dust, toner)
    fx0, fy0 = min(b[0] for b in boxes), top
    fx1, fy1 = max(b[2] for b in boxes), bottom
    n = int(rng.integers(5, 41))
    ys = rng.integers(0, H, n)
    xs = rng.integers(0, W, n)
    rs = rng.integers(1, 4, n)
    for y, x, r in zip(ys, xs, rs):
        if fx0 - 4 <= x <= fx1 + 4 and fy0 - 4 <= y <= fy1 + 4:
            continue
        page[max(0, y - r // 2):y + (r + 1) // 2, max(0, x - r // 2):x + (r + 1) // 2] = 1.0
    return _to_u8(_on_paper(page, rng, paper=(215, 255), ink_level=(0, 60))), boxes


# ----------------------------------------------------------------------------- the face
def make_fields(style: str, n: int, digits_source: Optional[DigitSource], rng, *,
                faces=None, lengths=None) -> List[FieldSample]:
    """`n` fields of one style. digits_source: MNIST digits for the handwritten styles and for
    half of the page fields (mnist_train_digits() in tests and training, mnist_test_digits()
    in benchmarks); faces: fonts for the printed styles (default: the test split; NoTestFonts
    when none is installed; page fields then are all handwritten). lengths: an int or a
    (lo, hi) range of digits per field instead of 1-10."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}; got {style!r}")
    if style in PRINTED_STYLES:
        faces = tuple(faces) if faces is not None else require_test_fonts()
    elif style == "page" and faces is None:
        faces = test_fonts()
    if style not in PRINTED_STYLES and digits_source is None:
        raise ValueError(f"style {style!r} needs a digits_source (MNIST digits)")
    if lengths is None:
        lens = _lengths(n, rng)
    elif isinstance(lengths, (int, np.integer)):
        lens = np.full(n, int(lengths))
    else:
        lens = rng.integers(int(lengths[0]), int(lengths[1]) + 1, n)
    out = []
    for k in lens:
        text = "".join(map(str, rng.integers(0, 10, int(k))))
        if style == "handwritten_spaced":
            img, boxes = _field_handwritten(text, digits_source, rng)
        elif style == "touching":
            img, boxes = _field_handwritten(text, digits_source, rng, touching=True)
        elif style == "scanned":
            img, boxes = _field_scanned(text, digits_source, rng)
        elif style == "comb":
            img, boxes = _field_comb(text, digits_source, rng)
        elif style == "printed_clean":
            img, boxes = _field_printed(text, rng, faces)
        elif style == "printed_scanned":
            img, boxes = _field_printed(text, rng, faces, scanned=True)
        elif style == "printed_tight":
            img, boxes = _field_printed(text, rng, faces, tight=True)
        else:
            img, boxes = _field_page(text, digits_source, rng, faces)
        out.append(FieldSample(img, text, [tuple(int(v) for v in b) for b in boxes], style))
    return out


def write_fields(samples: Sequence[FieldSample], folder) -> pathlib.Path:
    """PNG files 00000.png... in `folder`, `labels.csv` (path relative to it, text; every
    value quoted so that a reader keeps "00501" a string) and `boxes.json` (path -> boxes).
    Returns the CSV's path."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, boxes = [], {}
    for i, s in enumerate(samples):
        name = f"{i:05d}.png"
        Image.fromarray(s.image).save(folder / name, compress_level=1)
        rows.append((name, s.text))
        boxes[name] = [list(b) for b in s.boxes]
    path = folder / "labels.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(("path", "text"))
        w.writerows(rows)
    (folder / "boxes.json").write_text(json.dumps(boxes))
    return path


def read_labels(csv_path) -> List[Tuple[str, str]]:
    """(absolute path, text) rows of a labels.csv, text always a string."""
    csv_path = pathlib.Path(csv_path)
    with open(csv_path, newline="") as f:
        r = csv.DictReader(f)
        return [(str(csv_path.parent / row["path"]), str(row["text"])) for row in r]


def main(argv=None) -> int:
    """Write fields for a person or a tuning script: one folder per style with labels.csv."""
    import argparse

    ap = argparse.ArgumentParser(description="Write synthetic fields of digits (issue 18).")
    ap.add_argument("out")
    ap.add_argument("--per-style", type=int, default=100)
    ap.add_argument("--styles", default=",".join(STYLES))
    ap.add_argument("--digits", choices=("subset", "test", "train"), default="subset",
                    help="MNIST digits: the committed training subset (tests), the test set "
                         "(benchmarks) or training digits 0-54,999 (training)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    src = {"subset": mnist_train_digits, "test": mnist_test_digits,
           "train": mnist_training_digits}[args.digits]()
    for i, style in enumerate(s.strip() for s in args.styles.split(",")):
        try:
            samples = make_fields(style, args.per_style, src, np.random.default_rng([args.seed, i]))
        except NoTestFonts as e:
            print(f"{style}: skipped: {e}")
            continue
        print(write_fields(samples, pathlib.Path(args.out) / style))
    return 0


if __name__ == "__main__":
    sys.exit(main())
