"""The preprocessing specification in plain NumPy/SciPy: what csrc/preprocess.c computes.

Slow (a few hundred images/s) and deliberately direct; tests/pipeline/test_preprocess.py checks the C
code against it. An image of one digit, any size, becomes an MNIST-style model input:

1. gray levels quantised to 256 bins; Otsu's threshold splits them into two classes;
2. polarity: the class that fills most of a thin frame around the image is the paper (when the
   frame is split almost evenly, the class that fills most of the image); ``invert`` overrides;
3. ink = distance from the paper's mean level towards the ink's mean level, in [0, 1], with a
   floor that removes paper texture, noise and JPEG ringing;
4. the ink pixels form 8-connected components; the heaviest one (by ink) is the digit, and other
   components join it when they are heavy enough and close enough, so stray specks, scanner dust
   and a neighbour's stroke at the edge neither widen the box nor add ink; pixels further than
   one pixel from a kept component are cleared;
5. stroke width (2 x area / perimeter of the kept ink) is estimated; strokes that would come out
   thinner than MNIST's after scaling are thickened by a max filter in the source (fonts and
   pens are often much thinner than MNIST's);
6. the kept ink's box is scaled so that its longer side is 20 pixels (keeping the aspect ratio),
   by area averaging (anti-aliased) when shrinking and bilinear interpolation when enlarging,
   and placed so that its centre of mass sits at the centre of the size x size frame (sub-pixel,
   in one resampling step); the result is stretched so that its brightest pixel is 1.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

BOX = 20                 # MNIST: digits scaled to fit a 20x20 box inside the 28x28 frame
INK_FLOOR = 0.15         # ink below this (of the paper-to-ink distance) is paper texture/noise
MIN_CONTRAST = 0.08      # ink and paper means closer than this: a blank image
KEEP_MASS = 0.10         # a component at least this heavy (vs the digit's) joins when close
KEEP_INSIDE = 0.02       # ... or at least this heavy when it touches the digit's box
KEEP_GAP = 0.5           # "close": a gap up to this fraction of the digit box's longer side
THIN_WIDTH = 1.5         # strokes thinner than this (output pixels) get thickened ...
TARGET_WIDTH = 2.0       # ... to about this (MNIST's median estimate is 1.95)
MAX_DILATE = 8           # never thicken by more than this many source pixels per side
MAX_SIDE = 512           # larger images are first reduced by an integer block mean


def otsu(hist: np.ndarray):
    """Otsu's threshold of a 256-bin histogram: bins <= t are one class. None when the image
    has a single level. Ties go to the lowest t."""
    hist = hist.astype(np.float64)
    total = hist.sum()
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    best, best_t = -1.0, None
    mt = m0[-1]
    for t in range(255):
        a, b = w0[t], total - w0[t]
        if a == 0 or b == 0:
            continue
        d = m0[t] / a - (mt - m0[t]) / b
        between = a * b * d * d
        if between > best:
            best, best_t = between, t
    return best_t


def _frame(h: int, w: int) -> np.ndarray:
    t = max(1, min(h, w) // 20)
    f = np.zeros((h, w), bool)
    f[:t] = f[-t:] = True
    f[:, :t] = f[:, -t:] = True
    return f


def _perimeter(mask: np.ndarray) -> int:
    p = np.pad(mask, 1)
    return int((p[:, 1:] != p[:, :-1]).sum() + (p[1:] != p[:-1]).sum())


def _weights(n_out: int, n_in: int, centre_in: float, centre_out: float, s: float):
    """(n_out, n_in) resampling matrix: output index r looks at source coordinate
    centre_in + (r - centre_out) / s (pixel i covers [i - 0.5, i + 0.5))."""
    m = np.zeros((n_out, n_in))
    for r in range(n_out):
        if s <= 1:  # area averaging over the output pixel's footprint
            a = centre_in + (r - 0.5 - centre_out) / s
            b = centre_in + (r + 0.5 - centre_out) / s
            for i in range(max(0, int(np.floor(a + 0.5))), min(n_in, int(np.floor(b + 0.5)) + 1)):
                ov = min(b, i + 0.5) - max(a, i - 0.5)
                if ov > 0:
                    m[r, i] = ov * s
        else:       # bilinear between source pixel centres
            y = centre_in + (r - centre_out) / s
            i0 = int(np.floor(y))
            f = y - i0
            if 0 <= i0 < n_in:
                m[r, i0] += 1 - f
            if 0 <= i0 + 1 < n_in:
                m[r, i0 + 1] += f
    return m


def preprocess_one(g, size: int = 28, invert: str = "auto", light_on_dark: bool = True):
    """One 2-D image in [0, 1] (float) -> float64 (size, size) model input."""
    g = np.asarray(g, np.float64)
    f = -(-max(g.shape) // MAX_SIDE)
    if f > 1:  # block mean over the pixels each block holds (edge blocks may be partial)
        h, w = -(-g.shape[0] // f), -(-g.shape[1] // f)
        padded = np.zeros((h * f, w * f))
        count = np.zeros((h * f, w * f))
        padded[:g.shape[0], :g.shape[1]] = g
        count[:g.shape[0], :g.shape[1]] = 1
        g = (padded.reshape(h, f, w, f).sum(axis=(1, 3))
             / count.reshape(h, f, w, f).sum(axis=(1, 3)))
    h, w = g.shape
    out = np.zeros((size, size))
    q = np.clip(np.floor(g * 255 + 0.5), 0, 255).astype(np.int64)
    t = otsu(np.bincount(q.ravel(), minlength=256))
    if t is None:
        return out if light_on_dark else 1 - out
    light = q > t
    if invert == "auto":
        frac = light[_frame(h, w)].mean()
        if 0.35 <= frac <= 0.65:
            frac = light.mean()
        ink_is_light = not frac > 0.5
    else:
        ink_is_light = light_on_dark != (invert == "yes")
    ink = light if ink_is_light else ~light
    paper_level, ink_level = g[~ink].mean(), g[ink].mean()
    if abs(ink_level - paper_level) < MIN_CONTRAST:
        return out if light_on_dark else 1 - out
    # reciprocals, as the C code multiplies by them (same rounding)
    v = ((g - paper_level) * (1.0 / (ink_level - paper_level)) - INK_FLOOR) * (1.0 / (1 - INK_FLOOR))
    v = np.clip(v, 0, 1)

    labels, n = ndimage.label(ink, structure=np.ones((3, 3)))
    mass = ndimage.sum(v, labels, index=np.arange(1, n + 1))
    boxes = ndimage.find_objects(labels)
    order = sorted(range(n), key=lambda i: (-mass[i], i))
    main = order[0]
    y0, y1 = boxes[main][0].start, boxes[main][0].stop - 1
    x0, x1 = boxes[main][1].start, boxes[main][1].stop - 1
    keep = [main]
    for i in order[1:]:
        if mass[i] < KEEP_INSIDE * mass[main]:
            break
        by, bx = boxes[i]
        gap = max(y0 - (by.stop - 1), by.start - y1, x0 - (bx.stop - 1), bx.start - x1, 0)
        side = max(y1 - y0 + 1, x1 - x0 + 1)
        if (mass[i] >= KEEP_MASS * mass[main] and gap <= KEEP_GAP * side) or gap <= 1:
            keep.append(i)
            y0, y1 = min(y0, by.start), max(y1, by.stop - 1)
            x0, x1 = min(x0, bx.start), max(x1, bx.stop - 1)
    kept = np.isin(labels, np.array(keep) + 1)
    v = v * ndimage.binary_dilation(kept, structure=np.ones((3, 3)))

    side = max(y1 - y0 + 1, x1 - x0 + 1)
    width = 2.0 * kept.sum() / _perimeter(kept)
    s = BOX / side
    if s * width < THIN_WIDTH:
        k = int(min(MAX_DILATE, max(1, np.floor((TARGET_WIDTH / s - width) / 2 + 0.5))))
        v = ndimage.maximum_filter(np.pad(v, k), size=2 * k + 1, mode="constant")
        side += 2 * k
        s = BOX / side
        origin = -k
    else:
        origin = 0
    total = v.sum()
    ys, xs = np.indices(v.shape)
    cy = (v * ys).sum() / total + origin
    cx = (v * xs).sum() / total + origin
    centre = size / 2
    ry = _weights(size, v.shape[0], cy - origin, centre, s)
    rx = _weights(size, v.shape[1], cx - origin, centre, s)
    out = np.clip(ry @ v @ rx.T, 0, 1)
    top = out.max()
    if top > 0:
        out = out / top
    return out if light_on_dark else 1 - out


def to_unit(img) -> np.ndarray:
    """A 2-D array -> float64 in [0, 1], by dtype: uint8 /255, uint16 /65535, floats as they
    are when they fit [0, 1], else /255 (or /65535 above 255)."""
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a / 255.0
    if a.dtype == np.uint16:
        return a / 65535.0
    a = a.astype(np.float64)
    top = a.max() if a.size else 0
    return np.clip(a / (1 if top <= 1 else 255 if top <= 255 else 65535), 0, 1)


def preprocess(images, size: int = 28, invert: str = "auto",
               foreground: str = "light-on-dark") -> np.ndarray:
    """A list of 2-D images (or an (N, H, W) array) -> float32 (N, size, size)."""
    light = foreground == "light-on-dark"
    out = [preprocess_one(to_unit(im), size, invert, light) for im in images]
    return np.asarray(out, np.float32).reshape(len(out), size, size)
