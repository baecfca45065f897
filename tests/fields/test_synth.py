"""The field synthesizer itself (tests/_fields.py): its ground truth must be right before any
reader is measured on it."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import _fields as F

N = 40


@pytest.fixture(scope="module")
def digits():
    return F.mnist_train_digits()


def _make(style, digits, seed=3, n=N):
    try:
        return F.make_fields(style, n, digits, np.random.default_rng(seed))
    except F.NoTestFonts as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("style", F.STYLES)
def test_boxes_lie_inside_the_image_and_match_the_text(style, digits):
    for s in _make(style, digits):
        assert s.image.dtype == np.uint8 and s.image.ndim == 2 and s.style == style
        assert s.text.isdigit() and 1 <= len(s.text) <= 10
        assert len(s.boxes) == len(s.text)
        h, w = s.image.shape
        for x0, y0, x1, y1 in s.boxes:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (s.boxes, s.image.shape)
        # reading order: box centres go left to right
        cx = [(b[0] + b[2]) / 2 for b in s.boxes]
        assert cx == sorted(cx)
        # dark ink on light paper: the inside of the boxes is darker than the paper (by less
        # for hairline faces after a scan's blur and downsampling)
        inside = np.concatenate([s.image[y0:y1, x0:x1].ravel() for x0, y0, x1, y1 in s.boxes])
        assert inside.min() < np.median(s.image) - 40


@pytest.mark.parametrize("style", F.STYLES)
def test_a_seed_gives_the_same_fields(style, digits):
    a, b = _make(style, digits, seed=11, n=8), _make(style, digits, seed=11, n=8)
    c = _make(style, digits, seed=12, n=8)
    for x, y in zip(a, b):
        assert x.text == y.text and x.boxes == y.boxes
        np.testing.assert_array_equal(x.image, y.image)
    assert [x.text for x in a] != [x.text for x in c]


def test_lengths_average_about_six(digits):
    lens = [len(s.text) for s in F.make_fields("handwritten_spaced", 400, digits,
                                               np.random.default_rng(0))]
    assert 5.5 <= np.mean(lens) <= 6.5 and min(lens) >= 1 and max(lens) <= 10
    assert {1, 10} <= set(lens)


def _components(img):
    """8-connected ink components of a clean field (paper is light, ink dark)."""
    ink = img < (int(img.max()) + int(img.min())) // 2
    lab, n = ndimage.label(ink, structure=np.ones((3, 3)))
    return lab, n


def _touching_pairs(sample):
    """(touching, pairs): a neighbour pair touches when one ink component reaches into both
    digits' boxes and the part of it inside each box is large (not a stray pixel)."""
    lab, _ = _components(sample.image)
    touching = 0
    for a, b in zip(sample.boxes, sample.boxes[1:]):
        la = np.bincount(lab[a[1]:a[3], a[0]:a[2]].ravel(), minlength=lab.max() + 1)
        lb = np.bincount(lab[b[1]:b[3], b[0]:b[2]].ravel(), minlength=lab.max() + 1)
        la[0] = lb[0] = 0
        # the right digit's main component is also the left digit's main component
        main_b = int(np.argmax(lb))
        touching += la[main_b] >= 5 and lb[main_b] >= 5 and main_b == int(np.argmax(la))
    return touching, len(sample.boxes) - 1


def test_touching_style_really_touches_in_most_pairs(digits):
    t = p = 0
    for s in F.make_fields("touching", 200, digits, np.random.default_rng(5)):
        a, b = _touching_pairs(s)
        t, p = t + a, p + b
    assert p > 500 and t / p >= 0.8, f"{t} of {p} neighbour pairs touch"


def test_spaced_style_never_touches(digits):
    for s in F.make_fields("handwritten_spaced", 100, digits, np.random.default_rng(6)):
        for a, b in zip(s.boxes, s.boxes[1:]):
            assert b[0] - a[2] >= 1, s.boxes        # a vertical gap between ink boxes
        assert _touching_pairs(s)[0] == 0


def test_tight_print_touches_in_most_pairs(digits):
    t = p = 0
    for s in _make("printed_tight", digits, seed=7, n=150):
        a, b = _touching_pairs(s)
        t, p = t + a, p + b
    assert t / p >= 0.7, f"{t} of {p} neighbour pairs touch"


def test_comb_boxes_are_one_grid_and_empty_cells_are_not_text(digits):
    samples = F.make_fields("comb", 100, digits, np.random.default_rng(8))
    empty_seen = 0
    for s in samples:
        lab, _ = _components(s.image)
        # the box grid is one long component spanning (nearly) the whole field
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        ys, xs = np.nonzero(lab == np.argmax(sizes))
        assert xs.max() - xs.min() >= 0.8 * (s.boxes[-1][2] - s.boxes[0][0])
        # columns right of the last digit that are still inside the grid: empty cells
        empty_seen += (xs.max() - s.boxes[-1][2]) > (s.boxes[-1][3] - s.boxes[-1][1])
    assert empty_seen >= 10


def test_page_field_is_small_on_its_page(digits):
    for s in F.make_fields("page", 30, digits, np.random.default_rng(9)):
        x0 = min(b[0] for b in s.boxes)
        x1 = max(b[2] for b in s.boxes)
        assert s.image.shape[1] >= 2.5 * (x1 - x0)


def test_write_fields_keeps_leading_zeros(digits, tmp_path):
    samples = F.make_fields("handwritten_spaced", 5, digits, np.random.default_rng(0),
                            lengths=5)
    samples[0] = samples[0]._replace(text="0" + samples[0].text[1:])
    path = F.write_fields(samples, tmp_path / "f")
    rows = F.read_labels(path)
    assert [t for _, t in rows] == [s.text for s in samples] and rows[0][1].startswith("0")
    assert "\"0" in path.read_text()                 # quoted: any CSV reader keeps a string
    from PIL import Image
    for (p, _), s in zip(rows, samples):
        np.testing.assert_array_equal(np.asarray(Image.open(p)), s.image)


def test_mnist_subset_is_what_its_readme_says(digits):
    assert digits.images.shape == (1000, 28, 28) and digits.images.dtype == np.uint8
    assert set(np.unique(digits.labels)) == set(range(10))
