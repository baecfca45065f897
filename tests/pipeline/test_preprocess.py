"""fastlenet.preprocess (csrc/preprocess.c) against its NumPy/SciPy specification
(fastlenet/reference/prepare.py), and what it must do for real scans."""
from __future__ import annotations

import io

import numpy as np
import pytest

import fastlenet
from fastlenet.reference import prepare as ref

Image = pytest.importorskip("PIL.Image")
from PIL import ImageDraw, ImageFilter, ImageFont  # noqa: E402

TOL = 1e-5  # float32 output vs the float64 specification (sums round differently)




def font(size):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        pytest.skip("Pillow without FreeType: no scalable font to render digits")


def printed(digit, height=40, canvas=(64, 64), ink=0, paper=255, offset=(0, 0), angle=0):
    """A digit of about `height` px drawn with Pillow's own font, anti-aliased, on a canvas."""
    f = font(height * 4)
    text = str(digit)
    x0, y0, x1, y1 = f.getbbox(text)
    glyph = Image.new("L", (x1 - x0 + 16, y1 - y0 + 16), 0)
    ImageDraw.Draw(glyph).text((8 - x0, 8 - y0), text, font=f, fill=255)
    if angle:
        glyph = glyph.rotate(angle, resample=Image.BICUBIC, expand=True)
    s = height / (y1 - y0)
    glyph = glyph.resize((max(1, round(glyph.width * s)), max(1, round(glyph.height * s))),
                         Image.LANCZOS)
    page = Image.new("L", canvas, 0)
    page.paste(glyph, ((canvas[0] - glyph.width) // 2 + offset[0],
                       (canvas[1] - glyph.height) // 2 + offset[1]))
    alpha = np.asarray(page, np.float64) / 255
    return np.clip(np.rint(paper + (ink - paper) * alpha), 0, 255).astype(np.uint8)


def assert_matches_reference(images, **kw):
    got = fastlenet.preprocess(images, **kw)
    want = ref.preprocess(images, **{k: v for k, v in kw.items() if k != "num_threads"})
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    return got


# ---- C == specification -----------------------------------------------------------------------
def test_mnist_digits_match_reference(sample):
    assert_matches_reference(list(sample[0][:60]))
    assert_matches_reference(sample[0][60:90])  # (N, H, W): one C call, no list


@pytest.mark.parametrize("cond", ["white", "gray", "dark", "light_on_dark", "noisy", "blurred",
                                  "jpeg", "tiny", "page"])
def test_printed_digits_match_reference(cond, rng):
    imgs = []
    for d in range(10):
        if cond == "white":
            im = printed(d)
        elif cond == "gray":
            im = printed(d, ink=40, paper=170)
        elif cond == "dark":
            im = printed(d, ink=10, paper=90)
        elif cond == "light_on_dark":
            im = printed(d, ink=230, paper=25)
        elif cond == "noisy":
            im = np.clip(printed(d) + rng.normal(0, 30, (64, 64)), 0, 255).astype(np.uint8)
        elif cond == "blurred":
            im = np.asarray(Image.fromarray(printed(d)).filter(ImageFilter.GaussianBlur(2)))
        elif cond == "jpeg":
            buf = io.BytesIO()
            Image.fromarray(printed(d, ink=30, paper=220)).save(buf, "JPEG", quality=15)
            im = np.asarray(Image.open(buf))
        elif cond == "tiny":
            im = printed(d, height=8, canvas=(12, 11))
        else:
            im = printed(d, height=300, canvas=(700, 560))  # above 512 px: block-mean reduced
        imgs.append(im)
    assert_matches_reference(imgs)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "float64", "float64_255",
                                   "bool", "int32", "rgb", "rgba"])
def test_dtypes_match_reference(sample, dtype):
    x = sample[0][:8]
    conv = {
        "uint8": lambda a: a,
        "uint16": lambda a: a.astype(np.uint16) * 257,
        "float32": lambda a: a.astype(np.float32) / 255,
        "float64": lambda a: a / 255.0,
        "float64_255": lambda a: a.astype(np.float64),
        "bool": lambda a: a > 127,
        "int32": lambda a: a.astype(np.int32),
        "rgb": lambda a: np.dstack([a, a, a]),
        "rgba": lambda a: np.dstack([a, a, a, np.full_like(a, 255)]),
    }[dtype]
    imgs = [conv(a) for a in x]
    got = fastlenet.preprocess(imgs)
    base = fastlenet.preprocess(list(x))
    if dtype in ("bool",):
        assert got.shape == base.shape
        return
    np.testing.assert_allclose(got, base, atol=1e-4)


def test_strides_sizes_and_edge_cases_match_reference(rng):
    big = rng.integers(0, 256, (40, 90), dtype=np.uint8)
    imgs = [big.T, big[::2, ::3], big[:, ::-1], np.asfortranarray(big),
            rng.random((1, 1)), rng.random((1, 17)), rng.random((3, 500)),
            np.zeros((30, 30), np.uint8), np.full((5, 9), 200, np.uint8),
            (rng.random((50, 50)) > 0.5).astype(np.uint8) * 255]
    assert_matches_reference(imgs)
    for size in (28, 32):
        for fg in ("light-on-dark", "dark-on-light"):
            for inv in ("auto", "yes", "no"):
                assert_matches_reference(imgs[:6], size=size, foreground=fg, invert=inv)


def test_threads_do_not_change_results(sample):
    x = np.concatenate([sample[0][:97], 255 - sample[0][:50]])
    one = fastlenet.preprocess(x, num_threads=1)
    two = fastlenet.preprocess(x, num_threads=2)
    np.testing.assert_array_equal(one, two)


# ---- what scans need --------------------------------------------------------------------------
def best_shift_error(a, b):
    """Mean absolute difference of a and b under the best shift of up to one pixel."""
    best = np.inf
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            best = min(best, float(np.abs(np.roll(a, (dy, dx), (0, 1)) - b).mean()))
    return best


@pytest.mark.parametrize("digit", [0, 3, 7])
def test_same_digit_on_27_to_33_px_canvases(digit):
    glyph = printed(digit, height=20, canvas=(26, 26), ink=255, paper=0)
    outs = []
    for n in range(27, 34):
        canvas = np.zeros((n, n), np.uint8)
        o = (n - 26) // 2
        canvas[o:o + 26, o:o + 26] = glyph
        outs.append(fastlenet.preprocess([255 - canvas])[0])  # dark ink on white paper
    for n, out in zip(range(27, 34), outs):
        assert best_shift_error(out, outs[3]) < 0.01, n  # vs the 30 px canvas


def test_28_and_32_px_files_are_preprocessed_like_any_other(sample):
    """A digit filling a 32 px canvas off-centre is boxed and centred, not passed through."""
    d = sample[0][0]
    canvas = np.zeros((32, 32), np.uint8)
    canvas[4:32, 0:28] = d  # off-centre
    out = fastlenet.preprocess([canvas])[0]
    cy, cx = np.average(np.indices(out.shape), axis=(1, 2), weights=out)
    assert abs(cy - 14) < 0.6 and abs(cx - 14) < 0.6


def ink_box(out, level=0.3):
    rows = np.flatnonzero((out > level).any(axis=1))
    cols = np.flatnonzero((out > level).any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def test_salt_and_pepper_crops_to_the_digit(rng):
    clean = printed(4, height=50, canvas=(90, 90))
    noisy = clean.copy()
    r = rng.random(noisy.shape)
    noisy[r < 0.02] = 0      # pepper: black specks on white paper (look like ink)
    noisy[r > 0.98] = 255    # salt
    a, b = fastlenet.preprocess([clean, noisy])
    box_a, box_b = ink_box(a), ink_box(b)
    assert max(abs(u - v) for u, v in zip(box_a, box_b)) <= 1, (box_a, box_b)
    assert max(box_b[1] - box_b[0], box_b[3] - box_b[2]) + 1 <= 21  # the digit fills 20x20
    assert np.abs(a - b).mean() < 0.05


def test_stray_blot_away_from_the_digit_is_ignored():
    im = printed(2, height=40, canvas=(120, 120))
    im[5:9, 110:115] = 0  # a speck of dust in a corner
    a, b = fastlenet.preprocess([printed(2, height=40, canvas=(120, 120)), im])
    assert ink_box(a) == ink_box(b)
    np.testing.assert_allclose(a, b, atol=0.01)  # the blot shifts the ink level a little


@pytest.mark.parametrize("paper,ink", [(255, 0), (170, 40), (90, 10), (25, 230)])
def test_polarity_from_the_image(paper, ink):
    im = printed(5, ink=ink, paper=paper)
    out = fastlenet.preprocess([im])[0]
    assert out[0, 0] == 0 and out.max() == 1  # light ink on a black frame, whatever the paper
    ref_out = fastlenet.preprocess([printed(5)])[0]
    assert np.abs(out - ref_out).mean() < 0.03
    inv = fastlenet.preprocess([im], foreground="dark-on-light")[0]
    np.testing.assert_allclose(inv, 1 - out, atol=1e-6)


def test_thin_strokes_are_thickened():
    page = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(page).line([(60, 30), (140, 30), (90, 170)], fill=0, width=2)  # a thin 7
    out = fastlenet.preprocess([np.asarray(page)])[0]
    mask = out > 0.5
    p = np.pad(mask, 1)
    per = (p[:, 1:] != p[:, :-1]).sum() + (p[1:] != p[:-1]).sum()
    assert 2 * mask.sum() / per >= 1.4  # MNIST's stroke width estimate: median 1.95


def test_blank_and_uniform_images_give_blank_inputs():
    out = fastlenet.preprocess([np.full((40, 50), 255, np.uint8), np.zeros((9, 9), np.uint8),
                                np.full((28, 28), 0.5)])
    assert not out.any()
    assert (fastlenet.preprocess([np.zeros((9, 9))], foreground="dark-on-light") == 1).all()


def test_mnist_sample_accuracy_after_preprocessing(sample, net):
    x, y = sample
    acc = (net.predict(fastlenet.preprocess(x)) == y).mean()
    assert acc >= 0.98


def test_printed_digits_are_read(net, rng):
    """Pillow's own font under the conditions of scans; the full per-font figures are in
    benchmarks/printed_digits.py (several hundred fonts in the note)."""
    imgs, labels = [], []
    for d in range(10):
        imgs += [printed(d), printed(d, ink=40, paper=170), printed(d, ink=230, paper=25),
                 np.clip(printed(d) + rng.normal(0, 25, (64, 64)), 0, 255).astype(np.uint8),
                 np.asarray(Image.fromarray(printed(d)).filter(ImageFilter.GaussianBlur(1.5))),
                 printed(d, height=20, canvas=(28, 28)), printed(d, height=22, canvas=(32, 32)),
                 printed(d, angle=10), printed(d, height=9, canvas=(13, 13))]
        labels += [d] * 9
    acc = (net.predict(fastlenet.preprocess(imgs)) == np.array(labels)).mean()
    assert acc >= 0.85, acc


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, kw, err, match", [
    ([np.zeros((2, 3, 5))], {}, ValueError, "shape"),
    ([np.zeros((0, 4))], {}, ValueError, "empty"),
    ([np.array([[np.nan, 0], [0, 0]])], {}, ValueError, "NaN"),
    ([np.array([[1 + 1j, 0], [0, 0]])], {}, TypeError, "dtype"),
    ([np.full((3, 3), -1)], {}, ValueError, "0..65535"),
    (np.zeros((5, 5)), {}, ValueError, "one 2-D image"),
    ([np.zeros((5, 5))], {"invert": "maybe"}, ValueError, "invert"),
    ([np.zeros((5, 5))], {"size": 10}, ValueError, "size"),
    ([np.zeros((5, 5))], {"foreground": "blue"}, ValueError, "foreground"),
    # a broadcast view: 2**31 rows would wrap the C code's int height
    (np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (2, 2**31, 1)), {}, ValueError,
     "too large"),
    ([np.broadcast_to(np.zeros((1, 1), np.uint8), (2**31, 1))], {}, ValueError, "too large"),
])
def test_errors_name_the_argument(bad, kw, err, match):
    with pytest.raises(err, match=match):
        fastlenet.preprocess(bad, **kw)


def test_empty_batch():
    assert fastlenet.preprocess([]).shape == (0, 28, 28)
    assert fastlenet.preprocess(np.zeros((0, 5, 5), np.uint8), size=32).shape == (0, 32, 32)
