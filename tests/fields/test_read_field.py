"""fastlenet.read_field / fields.read_arrays (issue 18) on synthesized fields of the committed
MNIST training digits (tests/_fields.py): accuracy, the Field/Digit contract, inputs of every
dtype, polarity and shape, length=, the Net check, and determinism across batching, threads
and ISAs."""
from __future__ import annotations

import math

import _fields as F
import numpy as np
import pytest

import fastlenet
from fastlenet import fields as FL
from fastlenet.weights import layout

N = 40


@pytest.fixture(scope="module")
def digits():
    return F.mnist_train_digits()


@pytest.fixture(scope="module")
def fnet():
    return FL.check_net(None)


def _make(style, n, digits, seed=0):
    try:
        return F.make_fields(style, n, digits, np.random.default_rng(seed))
    except F.NoTestFonts as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def spaced(digits):
    return F.make_fields("handwritten_spaced", N, digits, np.random.default_rng(0))


@pytest.fixture(scope="module")
def spaced_read(spaced, fnet):
    return FL.read_arrays([s.image for s in spaced], fnet)


def _same(a, b, tol=1e-5):
    """Two Fields read the same: text, boxes and labels equal, confidences within tol."""
    assert a.text == b.text and a.error == b.error
    assert [d.box for d in a.digits] == [d.box for d in b.digits]
    assert [d.label for d in a.digits] == [d.label for d in b.digits]
    assert math.isclose(a.confidence, b.confidence, rel_tol=0, abs_tol=tol)
    for x, y in zip(a.digits, b.digits):
        assert abs(x.confidence - y.confidence) <= tol


# ---- accuracy ---------------------------------------------------------------------------------
# Measured (n=60, seeds 0-2, bundled "digits" model): handwritten_spaced 0.87-0.95,
# printed_clean 1.00. Thresholds leave margin for other CPUs' last bits.
def test_handwritten_spaced_fields_read_mostly_exactly(digits, fnet):
    samples = _make("handwritten_spaced", 60, digits, seed=1)
    rows = FL.read_arrays([s.image for s in samples], fnet)
    acc = np.mean([r.text == s.text for r, s in zip(rows, samples)])
    assert acc >= 0.75, acc
    # per digit: most digits that are read are read in their place
    right = sum(a == b for r, s in zip(rows, samples) for a, b in zip(r.text, s.text))
    assert right / sum(len(s.text) for s in samples) >= 0.85


def test_printed_clean_fields_read_exactly(digits, fnet):
    samples = _make("printed_clean", 30, digits, seed=1)
    rows = FL.read_arrays([s.image for s in samples], fnet)
    acc = np.mean([r.text == s.text for r, s in zip(rows, samples)])
    assert acc >= 0.9, acc


def _digit_accuracy(rows, samples):
    from fastlenet.cli.eval_fields import edit_distance

    right = sum(max(0, len(s.text) - edit_distance(s.text, r.text))
                for r, s in zip(rows, samples))
    return right / sum(len(s.text) for s in samples)


# style: (exact-string floor, digit floor). Measured at b4e4697 on n=60, seeds 1 and 2, and on
# the n=40, seed 3 set below (exact / digit): spaced .95-1.0/.99-1.0, touching .30-.37/.78-.81,
# scanned .92-.97/.98-1.0, comb .88-.97/.98-1.0, printed_clean 1.0/1.0, printed_scanned
# .97-.98/.97-1.0, printed_tight .57-.62/.87-.89, page .92-.95/.99. Touching, comb and tight
# print are below the targets (reported); these floors only catch regressions.
FLOORS = {"handwritten_spaced": (0.7, 0.9), "touching": (0.15, 0.7), "scanned": (0.7, 0.9),
          "comb": (0.7, 0.9), "printed_clean": (0.9, 0.95), "printed_scanned": (0.85, 0.9),
          "printed_tight": (0.4, 0.8), "page": (0.65, 0.85)}


@pytest.mark.parametrize("style", F.STYLES)
def test_accuracy_floor_per_style(style, digits, fnet):
    samples = _make(style, 40, digits, seed=3)
    rows = FL.read_arrays([s.image for s in samples], fnet)
    exact = np.mean([r.text == s.text for r, s in zip(rows, samples)])
    lo_exact, lo_digit = FLOORS[style]
    assert exact >= lo_exact, exact
    assert _digit_accuracy(rows, samples) >= lo_digit


def test_touching_digits_are_cut(digits, fnet):
    """Touching handwritten digits are cut: with length= the true number of digits, a regression
    floor under the 0.45 measured (the issue's target, 0.85 without length=, is not reached:
    see the fields section of README.md)."""
    samples = _make("touching", 40, digits, seed=1)
    ok = sum(FL.read_field(s.image, fnet, length=len(s.text)).text == s.text for s in samples)
    assert ok >= 0.3 * len(samples), ok / len(samples)


def test_boxes_lie_near_the_true_digits(spaced, spaced_read):
    """Where the right number of digits is read, each box overlaps its digit's true ink box."""
    checked = 0
    for r, s in zip(spaced_read, spaced):
        if r.text != s.text:
            continue
        for d, (x0, y0, x1, y1) in zip(r.digits, s.boxes):
            bx0, by0, bx1, by1 = d.box
            ix = min(bx1, x1) - max(bx0, x0)
            iy = min(by1, y1) - max(by0, y0)
            assert ix > 0 and iy > 0, (d.box, (x0, y0, x1, y1))
            inter = ix * iy
            union = (bx1 - bx0) * (by1 - by0) + (x1 - x0) * (y1 - y0) - inter
            assert inter / union >= 0.4, (d.box, (x0, y0, x1, y1))
            checked += 1
    assert checked >= 100


# ---- the Field / Digit contract -----------------------------------------------------------------
def test_field_and_digit_contract(spaced, spaced_read):
    assert len(spaced_read) == len(spaced)
    for r, s in zip(spaced_read, spaced):
        assert isinstance(r, fastlenet.Field) and r.error is None
        assert (r.source, r.member, r.index) == (None, None, None)
        assert r.text == "".join(str(d.label) for d in r.digits)
        assert len(r.digits) == len(r.text) and r.text.isdigit()
        assert 0.0 <= r.confidence <= 1.0
        # the whole string's probability: the product of its digits', lowered by ink left
        # unread (length is not set)
        assert r.confidence <= math.prod(d.confidence for d in r.digits) * (1 + 1e-4)
        h, w = s.image.shape
        for d in r.digits:
            assert isinstance(d, fastlenet.Digit)
            assert isinstance(d.label, int) and 0 <= d.label <= 9
            assert 0.0 <= d.confidence <= 1.0
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (d.box, s.image.shape)
            alts = d.alternatives
            assert len(alts) == FL.ALTERNATIVES
            labels = [c for c, _ in alts]
            probs = [p for _, p in alts]
            assert d.label not in labels and len(set(labels)) == len(labels)
            assert all(0 <= c <= 9 for c in labels)
            assert probs == sorted(probs, reverse=True)
            assert all(0.0 <= p <= d.confidence for p in probs)
        cx = [(d.box[0] + d.box[2]) / 2 for d in r.digits]
        assert cx == sorted(cx)


def test_name_property():
    f = fastlenet.Field("a/b.tar", "m.png", None, "1", 1.0, (), None)
    assert f.name == "a/b.tar:m.png"
    assert fastlenet.Field("x.npy", None, 3, "", 1.0, (), None).name == "x.npy[3]"


@pytest.mark.parametrize("style", F.STYLES)
def test_contract_in_every_style(style, digits, fnet):
    """Boxes inside the image and left to right, confidence the product of the digits', in
    every style, with and without length= (the truth's length: then met exactly)."""
    samples = _make(style, 12, digits, seed=2)
    for length in (None, "truth"):
        for s in samples:
            n = None if length is None else len(s.text)
            f = FL.read_field(s.image, fnet, length=n)
            assert f.error is None and f.text == "".join(str(d.label) for d in f.digits)
            if n is not None and f.confidence > 0:  # 0: the length could not be met
                assert len(f.text) == n
            # the digits' product, lowered by ink left unread (never raised)
            assert 0 <= f.confidence <= math.prod(d.confidence for d in f.digits) * (1 + 1e-4)
            h, w = s.image.shape
            for d in f.digits:
                x0, y0, x1, y1 = d.box
                assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            cx = [(d.box[0] + d.box[2]) / 2 for d in f.digits]
            assert cx == sorted(cx)


@pytest.mark.parametrize("style", F.STYLES)
def test_inverted_fields_read_the_same_in_every_style(style, digits, fnet):
    samples = _make(style, 8, digits, seed=4)
    for s in samples:
        a = FL.read_field(s.image, fnet)
        b = FL.read_field(255 - s.image, fnet)
        assert a.text == b.text and [d.box for d in a.digits] == [d.box for d in b.digits]


@pytest.mark.parametrize("factor", [0.5, 3])
def test_scale_changes_little(spaced, spaced_read, factor):
    """The same fields resized (digits 10-30 px or 60-180 px tall): most read the same."""
    from PIL import Image

    same = 0
    for s, base in zip(spaced[:20], spaced_read):
        h, w = s.image.shape
        im = np.asarray(Image.fromarray(s.image).resize(
            (max(1, round(w * factor)), max(1, round(h * factor))), Image.BILINEAR))
        f = FL.read_field(im)
        assert f.error is None
        same += f.text == base.text
    # Measured 19/20 at 0.4, 0.6, 2, 4 and 8.
    assert same >= 16


@pytest.mark.parametrize("pad", [((3000, 3000), (0, 0)), ((0, 0), (3000, 3000)),
                                 ((1000, 1000), (1000, 1000))], ids=["tall", "wide", "page"])
def test_large_canvases_are_reduced_and_boxes_are_in_source_pixels(pad, spaced, spaced_read):
    """A field on a canvas with a side above the C code's reduction limit (1600 px): mostly the
    same digits (reduced 4-5x, a 28 px digit keeps 6-7 px: some flip), their boxes moved by the
    padding (within the reduction factor)."""
    same = 0
    for s, base in zip(spaced[:20], spaced_read):
        im = np.pad(s.image, pad, constant_values=int(np.median(s.image)))
        f = FL.read_field(im)
        if f.text != base.text:
            continue
        same += 1
        dy, dx = pad[0][0], pad[1][0]
        factor = -(-max(im.shape) // 1600)
        for d, b in zip(f.digits, base.digits):
            moved = (b.box[0] + dx, b.box[1] + dy, b.box[2] + dx, b.box[3] + dy)
            # the same digit may be cut a little differently at the lower resolution; a box
            # in the reduced image's pixels would be off by thousands
            cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
            assert moved[0] - 2 * factor <= cx <= moved[2] + 2 * factor and \
                moved[1] - 2 * factor <= cy <= moved[3] + 2 * factor, (d.box, moved)
    # measured 16, 18, 19 of 20 (tall, wide, page; the "fields" model alone: 15, 17, 18)
    assert same >= 14


# ---- whole blobs and cuts -----------------------------------------------------------------------
def _segments(samples):
    from fastlenet import _engine
    from fastlenet.pixels import unit_scale
    ims = [s.image for s in samples]
    return _engine._field_segments(ims, [unit_scale(a) for a in ims], 28, "auto", True, 1)


def test_segments_say_whether_a_cut_bounds_them(digits):
    """fl_segment.whole: 1 for runs of whole blobs, 0 when a cut through a stroke bounds the run.
    Printed clean digits are one blob each, cut only where a glyph is 0.8 of the digits'
    height wide or more (FD_CUT_WIDE); touching handwriting is cut."""
    clean = _make("printed_clean", 20, digits, seed=4)
    _, segs, counts, heights, _ = _segments(clean)
    assert len(segs) and (segs["whole"] == 1).any()
    first = np.concatenate([[0], np.cumsum(counts[:, 1])])
    for f in range(len(clean)):
        sf = segs[first[f]:first[f + 1]]
        parts = sf[(sf["whole"] == 0) & (sf["p1"] - sf["p0"] == 1)]
        for s in parts:  # one piece of a cut glyph: the whole glyph is a candidate too
            whole = sf[(sf["whole"] == 1) & (sf["x0"] <= s["x0"]) & (sf["x1"] >= s["x1"])]
            # (0.6, not 0.8: italics are cut deslanted, and the boxes are the source's)
            assert len(whole) and (whole["x1"] - whole["x0"]).max() >= 0.6 * heights[f]
    _, segs, counts, _, _ = _segments(_make("touching", 20, digits, seed=4))
    assert set(np.unique(segs["whole"])) == {0, 1}
    # a run of one piece of a cut blob is never whole; the whole blob (all its pieces) is
    assert (segs["whole"][segs["p1"] - segs["p0"] == 1] == 0).any()


def test_parts_of_a_blob_wide_enough_for_two_digits_are_split(digits):
    """fl_segment.split: 1 for a run cut out of a blob at least 1.6 digit heights wide (touching
    digits), never for a whole run nor in a field of separate digits."""
    _, segs, _, _, _ = _segments(_make("printed_clean", 20, digits, seed=4))
    assert set(np.unique(segs["split"])) == {0}
    _, segs, _, _, _ = _segments(_make("touching", 20, digits, seed=4))
    assert set(np.unique(segs["split"])) == {0, 1}
    assert not (segs["split"] & segs["whole"]).any()
    # two zeros overlapping by 4 px, one blob 2 heights wide: each piece is part of it
    zero = digits.images[np.nonzero(digits.labels == 0)[0][0]]
    ink = np.zeros((40, 80), np.uint8)
    ink[6:34, 6:34] = zero
    ink[6:34, 22:50] = np.maximum(ink[6:34, 22:50], zero)
    _, segs, counts, _, _ = _segments([F.FieldSample(255 - ink, "00", [], "touching")])
    one = segs[(segs["p1"] - segs["p0"] == 1)]
    assert counts[0, 0] >= 2 and one["split"].all()


def test_a_blob_under_one_height_wide_is_cut(digits):
    """Two touching digits that overlap much make a blob under one digit height wide: it is cut
    (FD_CUT_WIDE 0.8 heights, at two profile minima at most), so the pair can be read as two
    digits. Blobs of a single digit narrower than that are never cut."""
    def narrow(label):  # the first such digit at most 0.65 of its height wide
        for i in np.nonzero(digits.labels == label)[0]:
            a = np.rint(F._crop(digits.images[i] / 255.0) * 255).astype(np.uint8)
            if a.shape[1] <= 0.65 * a.shape[0]:
                return a
        raise AssertionError(f"no narrow {label} in the subset")

    one, seven = narrow(1), narrow(7)
    h = max(one.shape[0], seven.shape[0])
    width = int(0.9 * h)
    assert seven.shape[1] < width < one.shape[1] + seven.shape[1]  # so they overlap
    ink = np.zeros((h + 16, width + 16), np.uint8)
    ink[8:8 + one.shape[0], 8:8 + one.shape[1]] = one
    x = 8 + width - seven.shape[1]
    part = ink[8:8 + seven.shape[0], x:x + seven.shape[1]]
    np.maximum(part, seven, out=part)
    alone = np.zeros_like(ink)  # the 7 by itself, as wide as it is (under 0.8 heights)
    alone[8:8 + seven.shape[0], x:x + seven.shape[1]] = seven
    _, segs, counts, heights, _ = _segments([F.FieldSample(255 - ink, "17", [], "touching"),
                                            F.FieldSample(255 - alone, "7", [], "spaced")])
    assert abs(heights[0] - h) <= 2
    assert 2 <= counts[0, 0] <= 3 and (segs[:counts[0, 1]]["whole"] == 0).any()
    assert counts[1, 0] == 1


def test_a_digit_from_a_wide_blob_costs_split_cost():
    """The search charges split_cost, not digit_cost, for a digit read from part of a wide blob:
    there, reading two touching digits as one confident digit is the error to avoid."""
    from fastlenet import _engine
    segs = np.zeros(3, _engine.SEGMENT_DTYPE)
    segs["p0"], segs["p1"] = [0, 0, 1], [1, 2, 2]
    segs["cell"] = -1
    proba = np.zeros((3, 11), np.float32)
    proba[0, 3], proba[1, 8], proba[2, 5] = 0.85, 0.8, 0.85
    counts = np.array([[2, 3, 0]], np.int32)
    ink = np.ones((1, _engine.FIELD_MAX_PIECES), np.float32)

    def read(split, digit_cost=0.2, split_cost=-0.1):
        segs["split"] = split
        path, nd, _, _, _, _ = _engine._field_search(segs, counts, ink, proba, digit_cost,
                                                  split_cost, 0.0, 5.0, 0, 99)
        return [(int(segs[k]["p0"]), int(segs[k]["p1"])) for k in path[0, :nd[0]]]
    # log 0.8 - 0.2 against log 0.85 x 0.85 - 0.4: one digit
    assert read([0, 0, 0]) == [(0, 2)]
    # the halves of a wide blob, log 0.85 x 0.85 + 0.2 against log 0.8 - 0.2: two
    assert read([1, 0, 1]) == [(0, 1), (1, 2)]
    # split_cost equal to digit_cost: as before
    assert read([1, 0, 1], split_cost=0.2) == [(0, 2)]


def test_a_blob_of_many_pieces_is_also_a_candidate_whole(digits):
    """A wide digit (an MNIST 0 drawn 1.4 times wider) is cut into more pieces than a run of
    pieces may span; the whole blob is a candidate too, so a wide 0 can be read as one."""
    from PIL import Image
    zero = digits.images[np.nonzero(digits.labels == 0)[0][0]]
    wide = np.asarray(Image.fromarray(zero).resize((int(28 * 1.4 * 1.5), 42), Image.BILINEAR))
    img = 255 - np.pad(wide, 10)
    _, segs, counts, _, _ = _segments([F.FieldSample(img, "0", [], "handwritten_spaced")])
    pieces = int(counts[0, 0])
    assert pieces > 5, pieces  # more than FL_FIELD_SPAN: the case in question
    assert ((segs["p0"] == 0) & (segs["p1"] == pieces)).sum() == 1
    assert FL.read_field(img).text == "0"


def test_not_a_digit_speaks_only_against_cut_segments():
    """fields._digit_proba: on whole blobs the garbage class is dropped and the digits
    renormalized; rows bounded by a cut, and 10-class models, are left as they are."""
    p = np.array([[0.05, 0.05, 0, 0, 0, 0, 0, 0, 0, 0, 0.9],
                  [0.05, 0.05, 0, 0, 0, 0, 0, 0, 0, 0, 0.9]], np.float32)
    q = FL._digit_proba(p, np.array([True, False]))
    assert np.allclose(q[0], [0.5, 0.5] + [0] * 9) and np.array_equal(q[1], p[1])
    assert np.array_equal(p[0, 10], np.float32(0.9))  # the caller's array is not touched
    ten = p[:, :10] / p[:, :10].sum(1, keepdims=True)
    assert FL._digit_proba(ten, np.array([True, True])) is ten


def _comb_with_a_bar(digits, picks, bar_at, cw=40, ch=52, line=2):
    """A comb of len(picks) + 1 boxes (+ len(bar_at) for a tuple): MNIST digits in all but box
    bar_at (or the boxes of the tuple), which holds a "1" as tall as the box (a vertical bar
    from its top line to its bottom line)."""
    bars = set(bar_at) if isinstance(bar_at, tuple) else {bar_at}
    n = len(picks) + len(bars)
    img = np.full((ch + 20, n * cw + line + 20), 245, np.uint8)
    img[10:10 + line, 10:10 + n * cw + line] = 30
    img[10 + ch - line:10 + ch, 10:10 + n * cw + line] = 30
    for i in range(n + 1):
        img[10:10 + ch, 10 + i * cw:10 + i * cw + line] = 30
    picks = iter(picks)
    for i in range(n):
        x = 10 + i * cw
        if i in bars:
            img[10:10 + ch, x + cw // 2 - 1:x + cw // 2 + 2] = 20
            continue
        g = digits.images[next(picks)]
        box = img[22:50, x + 6:x + 34]
        np.minimum(box, 255 - g, out=box, where=g > 40)
    return img


def test_a_one_as_tall_as_its_box_is_no_wall(digits, fnet):
    """A "1" drawn from line to line looks like a box wall, but it would split its box in two
    narrow ones where the walls are evenly spaced: it is read, not removed."""
    ok = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(digits.labels), 5, replace=False)
        at = int(rng.integers(1, 5))
        text = "".join(str(digits.labels[i]) for i in picks)
        img = _comb_with_a_bar(digits, picks, at)
        ok += FL.read_field(img, fnet).text == text[:at] + "1" + text[at:]
    assert ok >= 8, ok


def test_a_digit_on_its_box_line_is_whole_unless_it_crosses_a_wall(digits):
    """fl_segment.whole in a comb: a digit whose foot lies on the box's bottom line touches a
    removed line but is not cut by it (the model took such 1s and 7s for cuts); a digit across
    a wall is."""
    def comb(picks, drop, across=False, cw=40, ch=52, line=2):
        img = np.full((ch + 20, len(picks) * cw + line + 20), 245, np.uint8)
        img[10:10 + line, 10:-10] = 30
        img[8 + ch:10 + ch, 10:-10] = 30
        for i in range(len(picks) + 1):
            img[10:10 + ch, 10 + i * cw:10 + i * cw + line] = 30
        for i, k in enumerate(picks):
            x = 10 + i * cw + (cw // 2 if across and i == 1 else 0)
            box = img[22 + drop:50 + drop, x + 6:x + 34]
            np.minimum(box, 255 - digits.images[k], out=box, where=digits.images[k] > 40)
        return img
    picks = np.nonzero(digits.labels == 7)[0][:5]
    _, segs, counts, _, _ = _segments([F.FieldSample(comb(picks, 16), "", [], "comb")])
    assert counts[0, 0] == 5 and segs["whole"].all(), segs
    # the second digit moved half a box: it spans the wall between boxes 2 and 3
    _, segs, counts, _, _ = _segments([F.FieldSample(comb(picks, 0, True), "", [], "comb")])
    wide = segs[(segs["x0"] < 10 + 2 * 40) & (segs["x1"] > 10 + 2 * 40 + 2)]
    assert len(wide) and not wide["whole"].any(), wide


def test_two_ones_as_tall_as_their_boxes_are_no_walls(digits, fnet):
    """Two such 1s in a comb of five boxes: their walls make four of the seven gaps between
    walls half a box wide, so the box width is the upper quartile of the gaps, not the median
    (which took the half boxes for boxes and kept both 1s as walls: 0 of 10 read)."""
    ok = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(digits.labels), 3, replace=False)
        d = [str(digits.labels[i]) for i in picks]
        img = _comb_with_a_bar(digits, picks, (1, 3))
        ok += FL.read_field(img, fnet).text == d[0] + "1" + d[1] + "1" + d[2]
    assert ok >= 8, ok


def test_a_single_box_is_no_digit(digits, fnet):
    """One digit in one printed box (a comb of one, a check box): the box's lines are too short
    to be lines, but the box is a frame around a digit and is not read. Measured: 19 of 20
    (the frame read as "0" or the whole as "8" before); a dotted zero, which encloses a dot,
    is still a zero."""
    ok = 0
    for k in range(20):
        img = np.full((72, 62), 245, np.uint8)
        img[10:62, 10:52] = 30
        img[12:60, 12:50] = 245                      # a box of 2 px lines, 42 x 52
        box = img[22:50, 17:45]
        np.minimum(box, 255 - digits.images[k], out=box, where=digits.images[k] > 40)
        ok += FL.read_field(img, fnet).text == str(digits.labels[k])
    assert ok >= 17, ok
    zero = np.full((60, 50), 245, np.uint8)
    yy, xx = np.mgrid[0:60, 0:50]
    ring = np.abs(np.hypot((yy - 30) / 22.0, (xx - 25) / 15.0) - 1) < 0.12
    zero[ring | (np.hypot(yy - 30, xx - 25) < 3)] = 20
    assert FL.read_field(zero, fnet).text == "0"


def test_segments_know_their_comb_box(digits):
    """fl_segment.cell: the box of a comb holding a segment's ink (1, 2, ... in reading order),
    -1 outside combs."""
    _, segs, _, _, _ = _segments(_make("handwritten_spaced", 10, digits, seed=5))
    assert set(np.unique(segs["cell"])) == {-1}
    picks = np.arange(5)
    _, segs, counts, _, _ = _segments([F.FieldSample(_comb_with_a_bar(digits, picks, 2), "",
                                                     [], "comb")])
    one = segs[segs["p1"] - segs["p0"] == 1]
    assert sorted(one["cell"]) == [1, 2, 3, 4, 5, 6], one["cell"]


def test_a_comb_box_holds_one_digit():
    """The search reads at most one digit a comb box: two confident pieces in one box are one
    digit (the other a digit's overhang across a wall), in two boxes they are two."""
    from fastlenet import _engine
    segs = np.zeros(3, _engine.SEGMENT_DTYPE)
    segs["p0"], segs["p1"] = [0, 0, 1], [1, 2, 2]
    proba = np.zeros((3, 11), np.float32)
    proba[0, 3], proba[1, 8], proba[2, 5] = 0.99, 0.6, 0.99
    counts = np.array([[2, 3, 0]], np.int32)
    ink = np.ones((1, _engine.FIELD_MAX_PIECES), np.float32)

    def read(cells):
        segs["cell"] = cells
        path, nd, _, _, _, _ = _engine._field_search(segs, counts, ink, proba, 0.0, 0.0, 0.0, 5.0,
                                                  0, 99)
        return [int(segs[k]["p0"]) for k in path[0, :nd[0]]], [int(segs[k]["p1"]) for k
                                                                in path[0, :nd[0]]]
    assert read([-1, -1, -1]) == ([0, 1], [1, 2])   # no comb: two digits
    assert read([1, 1, 2]) == ([0, 1], [1, 2])      # two boxes: two digits
    assert read([1, 1, 1]) == ([0], [2])            # one box: one digit, the whole ink


def _rotated(img, degrees):
    """img turned counter-clockwise about its centre (a skewed scan), the canvas grown, the new
    corners filled with paper; and the map from its pixels back to img's."""
    from PIL import Image
    out = np.asarray(Image.fromarray(img).rotate(degrees, resample=Image.BILINEAR, expand=True,
                                                 fillcolor=int(np.median(img))))
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    (h, w), (h2, w2) = img.shape, out.shape

    def back(x, y):
        dx, dy = x - w2 / 2, y - h2 / 2
        return w / 2 + dx * c - dy * s, h / 2 + dx * s + dy * c
    return out, back


@pytest.mark.parametrize("style", ["comb", "page"])
def test_skewed_lines_are_straightened(style, digits, fnet):
    """A skewed scan of a comb or of a field on a rule line: the lines and walls are found
    only once the field is turned straight (they read 0.0-0.07 for combs at 2.5 degrees
    before). Measured on these 30 fields: comb 0.97 straight, 0.87-0.97 turned by -2.5, 2.5
    and 4 degrees; page 0.93, 0.87. Boxes are in the skewed image's pixels: each correctly read digit's box
    centre, mapped back, lies in its true box."""
    samples = _make(style, 30, digits, seed=6)
    straight = np.mean([r.text == s.text for r, s in
                        zip(FL.read_arrays([s.image for s in samples], fnet), samples)])
    for degrees in (2.5, -4.0):
        turned = [_rotated(s.image, degrees) for s in samples]
        rows = FL.read_arrays([t[0] for t in turned], fnet)
        exact = np.mean([r.text == s.text for r, s in zip(rows, samples)])
        assert exact >= min(0.7, straight - 0.2), (degrees, exact, straight)
        inside = total = 0
        for r, s, (_, back) in zip(rows, samples, turned):
            if r.text != s.text:
                continue
            for d, (x0, y0, x1, y1) in zip(r.digits, s.boxes):
                cx, cy = back((d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2)
                total += 1
                inside += x0 - 2 <= cx <= x1 + 2 and y0 - 2 <= cy <= y1 + 2
        assert inside >= 0.95 * total, (degrees, inside, total)


def _on_a_line(digits, picks, line_gray, thick=3):
    """MNIST digits side by side, each standing on row 40, over a printed line of `thick` rows
    ending on row 40 in gray line_gray, one or one per row (the ink, darker, wins where they
    overlap)."""
    img = np.full((60, 24 * len(picks) + 40), 240, np.uint8)
    for i, k in enumerate(picks):
        g = digits.images[k]
        y0 = 40 - np.nonzero(g.max(1) > 40)[0][-1]
        box = img[y0:y0 + 28, 20 + 24 * i:20 + 24 * i + 28]
        np.minimum(box, 255 - g, out=box, where=g > 40)
    grays = np.broadcast_to(np.asarray(line_gray, np.uint8), (thick,))
    for row, gray in zip(img[41 - thick:41], grays):
        row[row >= 128] = gray
    return img


def test_strokes_on_a_lighter_line_are_kept(digits, fnet):
    """Digits written over a printed line lighter than their ink keep the pixels they share
    with it (darker than the line's own), so their feet are not removed with the line.
    Measured on these 40 fields: a line of gray 130 reads 39 (27 before), gray 90 38 (30); a
    line as dark as the ink (gray 40) 27 (28 before deslanting, one field of slanted digits
    read otherwise)."""
    rng = np.random.default_rng(0)
    ok = {130: 0, 40: 0}
    for _ in range(40):
        picks = rng.choice(len(digits.labels), 5, replace=False)
        text = "".join(str(digits.labels[k]) for k in picks)
        for gray in ok:
            ok[gray] += FL.read_field(_on_a_line(digits, picks, gray), fnet).text == text
    assert ok[130] >= 35 and ok[40] >= 25, ok


def test_hairline_print_over_a_dark_line_is_not_broken_into_specks(digits, fnet):
    """Page fields half printed in the test split's hairline and extra-light faces: the rule
    line and the specks are far darker than those strokes, whose anti-aliased pixels straddle
    the threshold. Read with the pixels halfway to the paper that join the ink, not as dozens
    of specks. Measured on these 60 fields: 55 exact and no field of junk (48 and 4 fields
    of 3 or more digits too many before)."""
    try:
        faces = tuple(f for f in F.require_test_fonts()
                      if "Hairline" in f.path or "ExtraLight" in f.path)
    except F.NoTestFonts as e:
        pytest.skip(str(e))
    if not faces:
        pytest.skip("no hairline face of the test split is installed")
    samples = F.make_fields("page", 60, digits, np.random.default_rng(3), faces=faces)
    read = FL.read_arrays([s.image for s in samples], fnet)
    exact = sum(r.text == s.text for r, s in zip(read, samples))
    junk = sum(len(r.text) > len(s.text) + 2 for r, s in zip(read, samples))
    assert exact >= 52 and junk <= 1, (exact, junk)


def test_a_line_with_a_dark_core_is_removed_whole(digits, fnet):
    """A rule line whose core is darker than its edge rows (anti-aliased, or a row that the
    reduction's blocks share with the paper) is the core's level: its core is not kept as
    the strokes of digits darker than the line. Measured on these 40 fields: rows of gray 110,
    20, 110 read 27 (8 before, the core kept as ink joined every digit); a line of gray 20
    alone reads 25."""
    rng = np.random.default_rng(1)
    ok = 0
    for _ in range(40):
        picks = rng.choice(len(digits.labels), 5, replace=False)
        text = "".join(str(digits.labels[k]) for k in picks)
        ok += FL.read_field(_on_a_line(digits, picks, (110, 20, 110), thick=3), fnet).text == text
    assert ok >= 22, ok


def test_bold_digits_on_a_long_thin_line_keep_their_bars(digits, fnet):
    """A 1-pixel rule line far longer than the field is high gives a thousand vertical runs of
    1: the stroke width was 1, so a bold digit's bar (3-4 strokes long) was a "line" and was
    removed (11 of these 20 read before). A line is also 6 of the text's own stroke widths
    long, the runs across the line left out of that width: 19 of 20."""
    Image = pytest.importorskip("PIL.Image")
    from PIL import ImageFilter
    ok = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(digits.labels), 6, replace=False)
        img = np.full((90, 1200), 225, np.uint8)
        for i, k in enumerate(picks):
            g = Image.fromarray(digits.images[k]).resize((56, 56), Image.BILINEAR)
            g = np.asarray(g.filter(ImageFilter.MaxFilter(5)))
            box = img[10:66, 500 + 46 * i:556 + 46 * i]
            np.minimum(box, 255 - g, out=box, where=g > 60)
        img[66, 20:1180] = 72
        ok += FL.read_field(img, fnet).text == "".join(str(digits.labels[k]) for k in picks)
    assert ok >= 17, ok


def _italic(img: np.ndarray, t: float):
    """img sheared as italic print leans (tops to the right by t per row), on a wider canvas of
    its paper -> (image, x of an upright point (x, y) in it)."""
    Image = pytest.importorskip("PIL.Image")
    h, w = img.shape
    pad = int(math.ceil(t * h)) + 2
    out = Image.fromarray(img).transform((w + 2 * pad, h), Image.AFFINE,
                                         (1, t, -pad - t * h / 2, 0, 1, 0),
                                         resample=Image.BILINEAR, fillcolor=int(np.median(img)))
    return np.asarray(out), lambda x, y: x + pad + (h / 2 - y) * t


def test_italic_print_reads_as_upright(fnet):
    """Tight print sheared 10 degrees (italic): leaning glyphs share columns with their
    neighbours, so upright cuts cannot part them; the field is deslanted first. Measured on
    these 100 fields: 96 upright, 91 sheared in int8 (90 in fp32; without the strip reader
    77 and 76, without the pair reader too 63 and 61; 48 sheared before deslanting). The
    boxes are in the sheared image's pixels: each holds its glyph's centre."""
    try:
        faces = tuple(f for f in F.require_test_fonts()
                      if "Italic" not in f.path and "Oblique" not in f.path)
    except F.NoTestFonts as e:
        pytest.skip(str(e))
    samples = F.make_fields("printed_tight", 100, None, np.random.default_rng(4), faces=faces)
    t = math.tan(math.radians(10))
    sheared = [_italic(s.image, t) for s in samples]
    up = FL.read_arrays([s.image for s in samples], fnet)
    lean = FL.read_arrays([im for im, _ in sheared], fnet)
    n_up = sum(r.text == s.text for r, s in zip(up, samples))
    n_lean = sum(r.text == s.text for r, s in zip(lean, samples))
    assert n_lean >= n_up - 10 and n_up >= 65, (n_up, n_lean)
    for r, s, (im, at) in zip(lean, samples, sheared):
        if r.text != s.text:
            continue
        for d, b in zip(r.digits, s.boxes):
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= im.shape[1] and 0 <= y0 < y1 <= im.shape[0]
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            assert x0 <= at(cx, cy) < x1 and y0 <= cy < y1, (d.box, b)


def test_uneven_light_is_levelled(spaced, spaced_read, fnet):
    """A field lit from one side (darker by half towards one end): one threshold for the whole
    field loses the strokes in its dark end unless the paper is levelled first. Measured on
    these 40 fields: 38 read (14 before levelling); the negative reads the same."""
    ok = 0
    for i, s in enumerate(spaced):
        ramp = np.linspace(0.0, 1.0, s.image.shape[1])[None, :]
        img = (s.image * (1 - 0.5 * (ramp if i % 2 else ramp[:, ::-1]))).astype(np.uint8)
        f = FL.read_field(img, fnet)
        ok += f.text == s.text
        _same(f, FL.read_field(255 - img, fnet))
    assert ok >= 34, ok


def test_levelling_spares_tight_bold_crops(spaced, spaced_read, fnet):
    """A field cropped to its ink with bold strokes is mostly ink in places: those blocks are
    not taken for dark paper (a plane through the paper's blocks, refitted without the blocks
    far below it). Measured: 39 of 40 read as cropped, 35 with strokes 3 px bolder, as
    before levelling."""
    from scipy import ndimage
    ok = {0: 0, 3: 0}
    for s in spaced:
        for k in ok:
            img = ndimage.minimum_filter(s.image, k) if k else s.image
            ys, xs = np.nonzero(img < 128)
            crop = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            ok[k] += FL.read_field(crop, fnet).text == s.text
    assert ok[0] >= 36 and ok[3] >= 30, ok


# ---- blank, noise, tiny ------------------------------------------------------------------------
@pytest.mark.parametrize("value", [255, 0, 128])
def test_a_blank_image_reads_nothing(value):
    f = FL.read_field(np.full((40, 200), value, np.uint8))
    assert f.error is None and f.text == "" and f.digits == ()
    assert 0.0 <= f.confidence <= 1.0


@pytest.mark.parametrize("grain", [4.0, 10.0])
def test_grainy_blank_paper_reads_nothing(grain):
    """Paper with grain and no ink is blank, also after the smoothed second look that faint
    fields get."""
    rng = np.random.default_rng(int(grain))
    paper = np.clip(200 + rng.normal(0, grain, (80, 400)), 0, 255).astype(np.uint8)
    f = FL.read_field(paper)
    assert f.error is None and f.text == "" and f.digits == ()


def test_faint_ink_on_grainy_paper_is_read(spaced, fnet):
    """Ink 25 gray levels below the paper, in grain of 10: Otsu on the raw field splits the
    grain (class means closer than the blank rule's 8%); the 3x3 mean separates the ink.
    Measured: 0.9 of these 10 fields exact (all read "" before)."""
    rng = np.random.default_rng(11)
    ok = 0
    for s in spaced[:10]:
        ink = (255.0 - s.image) / 255.0
        img = 205.0 - 25.0 * ink + rng.normal(0, 10, ink.shape)
        ok += FL.read_field(np.clip(img, 0, 255).astype(np.uint8), fnet).text == s.text
    assert ok >= 7, ok


def test_noise_returns_within_the_bound():
    rng = np.random.default_rng(0)
    for shape in ((60, 400), (28, 28), (40, 2000)):
        f = FL.read_field(rng.integers(0, 256, shape).astype(np.uint8))
        assert f.error is None
        assert len(f.text) <= FL.FIELD_MAX_PIECES and len(f.digits) == len(f.text)
        assert 0.0 <= f.confidence <= 1.0
        # noise is not read with confidence
        if f.text:
            assert f.confidence < 0.5


@pytest.mark.parametrize("shape", [(1, 1), (1, 500), (500, 1), (3, 3), (2, 2)])
@pytest.mark.parametrize("value", [0, 128, 255])
def test_tiny_images(shape, value):
    f = FL.read_field(np.full(shape, value, np.uint8))
    assert f.error is None and f.text == ""


def test_tiny_image_with_ink():
    a = np.full((3, 3), 255, np.uint8)
    a[:, 1] = 0
    f = FL.read_field(a)
    assert f.error is None and len(f.text) <= 1
    for d in f.digits:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= 3 and 0 <= y0 < y1 <= 3


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0)])
def test_empty_image_is_an_error_field(shape):
    f = FL.read_field(np.zeros(shape, np.uint8))
    assert f.error and "empty" in f.error and f.text == "" and math.isnan(f.confidence)


# ---- dtypes and polarity ------------------------------------------------------------------------
VARIANTS = {
    "uint16": lambda im: im.astype(np.uint16) * 257,
    "float32_unit": lambda im: im.astype(np.float32) / 255,
    "float64_255": lambda im: im.astype(np.float64),
    "inverted": lambda im: 255 - im,
    "inverted_float32": lambda im: (255 - im).astype(np.float32) / 255,
    "fortran_order": lambda im: np.asfortranarray(im),
    "strided": lambda im: np.repeat(im, 2, axis=1)[:, ::2],
    "rgb": lambda im: np.stack([im] * 3, axis=-1),
    "hw1": lambda im: im[:, :, None],
    "rgba_opaque": lambda im: np.dstack([im, im, im, np.full_like(im, 255)]),
    "big_endian_uint16": lambda im: (im.astype(">u2") * 257),
    "big_endian_float64": lambda im: im.astype(">f8"),
    "int32_0_255": lambda im: im.astype(np.int32),
    "int64_0_255": lambda im: im.astype(np.int64),
    "float16_unit": lambda im: (im / 255).astype(np.float16),
    "read_only": lambda im: _read_only(im),
}


def _read_only(im):
    a = im.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_dtypes_and_polarity_read_the_same(variant, spaced, spaced_read):
    for s, base in zip(spaced[:15], spaced_read):
        _same(FL.read_field(VARIANTS[variant](s.image)), base)


def test_bool_image_reads_about_the_same(spaced, spaced_read):
    """A binarized field (True = paper) loses the gray edges: the same text on most fields."""
    same = 0
    for s, base in zip(spaced, spaced_read):
        f = FL.read_field(s.image > 128)
        assert f.error is None
        same += f.text == base.text
    assert same >= 0.8 * len(spaced)


def test_an_integer_mask_reads_like_a_bool_mask(spaced, spaced_read):
    """A 0/1 integer mask (int64, int32, uint8 as from a labelling step) reads like the same
    mask as bool or float: integers whose largest value is 1 are a mask (pixels.full_scale)."""
    s = spaced[0]
    mask = s.image > 128
    want = FL.read_field(mask).text
    assert want
    assert FL.read_field(mask.astype(np.float32)).text == want
    assert FL.read_field(np.stack([mask.astype(np.int64)] * 3, axis=-1)).text == want
    assert FL.read_field(mask.astype(np.int64)).text == want


def test_invert_forced(spaced, spaced_read):
    for s, base in zip(spaced[:10], spaced_read):
        _same(FL.read_field(s.image, invert="no"), base)
        _same(FL.read_field(255 - s.image, invert="yes"), base)
    # forced the wrong way, the paper is the ink: not the same reading
    wrong = [FL.read_field(s.image, invert="yes").text for s in spaced[:10]]
    assert wrong != [b.text for b in spaced_read[:10]]


def test_invert_refused():
    with pytest.raises(ValueError, match="invert"):
        FL.read_field(np.zeros((10, 10), np.uint8), invert="maybe")


@pytest.mark.parametrize("bad", [
    np.full((30, 30), np.nan, np.float32),
    np.where(np.eye(30, dtype=bool), np.inf, 0.5),
    np.zeros(100, np.uint8),
    np.zeros((1, 1, 28, 28), np.uint8),
    np.zeros((28, 28, 5), np.uint8),
    "not an array",
], ids=["nan", "inf", "1d", "4d", "5channels", "str"])
def test_bad_images_are_error_fields(bad):
    """read_field and read_arrays return a Field with `error` set (text "", confidence NaN),
    never raise, for an input that is not an image."""
    f = FL.read_field(bad)
    assert f.error and f.text == "" and f.digits == () and math.isnan(f.confidence)
    assert "image" in f.error


def test_bad_images_in_a_batch_do_not_disturb_the_others(spaced, spaced_read, fnet):
    batch = [spaced[0].image, np.zeros(10), spaced[1].image, np.full((5, 5), np.nan),
             spaced[2].image]
    rows = FL.read_arrays(batch, fnet)
    assert len(rows) == 5
    assert rows[1].error and rows[3].error
    for k, i in ((0, 0), (2, 1), (4, 2)):
        _same(rows[k], spaced_read[i])


def test_names_are_carried(spaced, fnet):
    names = [("f.npy", None, i) for i in range(3)]
    rows = FL.read_arrays([s.image for s in spaced[:3]], fnet, names=names)
    assert [(r.source, r.member, r.index) for r in rows] == names


def test_an_nhw_array_is_many_fields(fnet):
    a = np.full((3, 40, 120), 255, np.uint8)
    a[1, 5:35, 20:24] = 0
    rows = FL.read_arrays(a, fnet)
    assert len(rows) == 3 and rows[0].text == "" and rows[2].text == ""
    assert rows[1].error is None and len(rows[1].text) == 1


# ---- length= ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,exc", [
    (-1, ValueError), (FL.FIELD_MAX_PIECES + 1, ValueError), (range(3, 3), ValueError),
    (range(5, 2), ValueError), (range(1, 9, 2), ValueError), (range(-1, 3), ValueError),
    ("3", TypeError), (2.0, TypeError), (True, TypeError), ([3], TypeError), ((2, 4), TypeError),
])
def test_length_is_validated(bad, exc, spaced):
    with pytest.raises(exc, match="length"):
        FL.read_field(spaced[0].image, length=bad)
    with pytest.raises(exc, match="length"):
        FL.length_range(bad)


def test_length_range_values():
    assert FL.length_range(None) == (0, FL.FIELD_MAX_PIECES)
    assert FL.length_range(5) == (5, 5)
    assert FL.length_range(np.int64(5)) == (5, 5)
    assert FL.length_range(range(2, 5)) == (2, 4)


def test_length_of_the_truth_is_met(spaced, fnet):
    right = 0
    for s in spaced:
        n = len(s.text)
        f = FL.read_field(s.image, fnet, length=n)
        assert len(f.text) == n and len(f.digits) == n and f.confidence > 0
        assert FL.read_field(s.image, fnet, length=range(n, n + 1)) == f
        g = FL.read_field(s.image, fnet, length=range(max(0, n - 1), n + 2))
        assert n - 1 <= len(g.text) <= n + 1
        right += f.text == s.text
    # Measured 0.93 on these 40 (free reading: about 0.85).
    assert right >= 0.8 * len(spaced)


def test_an_impossible_length_has_confidence_zero(spaced, fnet):
    s = spaced[0]
    f = FL.read_field(s.image, fnet, length=FL.FIELD_MAX_PIECES)
    assert f.error is None and f.confidence == 0.0
    assert len(f.text) < FL.FIELD_MAX_PIECES


def test_a_blank_field_cannot_meet_a_length_of_three():
    f = FL.read_field(np.full((40, 200), 255, np.uint8), length=3)
    assert f.error is None and f.text == "" and f.confidence == 0.0


def test_length_zero_on_a_field_of_digits_is_not_confident(spaced, fnet):
    """length=0 on a field with 5+ digits of ink reads "" but not confidently: ink left unread
    lowers the string's confidence."""
    s = next(x for x in spaced if len(x.text) >= 5)
    f = FL.read_field(s.image, fnet, length=0)
    assert f.text == "" and f.error is None
    assert f.confidence < 0.5, f


# ---- the Net ------------------------------------------------------------------------------------
def _random_net(c, k, seed=0):
    rng = np.random.default_rng([seed, c, k])
    w = {}
    for key, shape in layout.canonical_shapes(c, k).items():
        if key.endswith(".weight"):
            w[key] = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
        else:
            w[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    meta = {"mean": 0.1307, "std": 0.3081} if c == 1 else {"mean": [0.5] * 3, "std": [0.25] * 3}
    return fastlenet.Net(w, meta)


def test_net_none_is_the_bundled_models(spaced, spaced_read):
    """net=None reads with fields.default_nets(): "fields" and "fields2" together, the pair
    reader "pairs" and the strip reader "strips", in int8 where this CPU has int8 kernels,
    else fp32."""
    nets = FL.check_net(None)
    assert [n.meta["name"] for n in nets] == list(FL.MODELS) == \
        ["fields", "fields2", "pairs", "strips"]
    want = "fp32" if fastlenet._engine.int8_kernels() == "scalar" else "int8"
    assert [n.precision for n in nets] == [want] * 4
    models = FL.default_nets()
    for s, base in zip(spaced[:5], spaced_read):
        _same(FL.read_field(s.image), base)
        _same(FL.read_field(s.image, models), base)
        _same(FL.read_field(s.image, list(models)), base)


def test_the_default_precision_can_be_forced():
    assert [n.precision for n in FL.default_nets("fp32")] == ["fp32"] * len(FL.MODELS)
    assert [n.precision for n in FL.default_nets("int8")] == ["int8"] * len(FL.MODELS)
    with pytest.raises(ValueError, match="precision"):
        FL.default_nets("bf16")


def test_nets_together_read_their_mean_probabilities(spaced):
    """Each digit read by a pair of Nets has, as its confidence, the mean of the two Nets'
    probabilities on the candidate it was read from, and is that mean's best digit; one Net
    given twice reads as that Net alone."""
    a, b = fastlenet.pretrained("fields"), fastlenet.pretrained("fields2")
    samples = spaced[:8]
    inputs, segs, counts, _, _ = _segments(samples)
    pa, pb = a.predict_proba(inputs), b.predict_proba(inputs)
    first = np.concatenate([[0], np.cumsum(counts[:, 1])])
    checked = 0
    for k, f in enumerate(FL.read_arrays([s.image for s in samples], (a, b))):
        sf = segs[first[k]:first[k + 1]]
        for d in f.digits:
            at = [first[k] + i for i, g in enumerate(sf)
                  if (int(g["x0"]), int(g["y0"]), int(g["x1"]), int(g["y1"])) == d.box]
            mean = [(pa[i] + pb[i]) / 2 for i in at]
            assert any(abs(m[d.label] - d.confidence) < 1e-6 and m[:10].argmax() == d.label
                       for m in mean), (d, mean)
            checked += 1
    assert checked >= 40
    for s in samples[:4]:
        _same(FL.read_field(s.image, (a, a)), FL.read_field(s.image, a), tol=1e-6)


def test_nets_that_do_not_agree_are_refused(spaced):
    with pytest.raises(ValueError, match="agree"):
        FL.check_net((fastlenet.pretrained("fields"), fastlenet.pretrained("digits")))
    with pytest.raises(TypeError, match="empty"):
        FL.read_field(spaced[0].image, ())
    with pytest.raises(TypeError, match="str"):
        FL.read_field(spaced[0].image, [fastlenet.pretrained("fields"), "fields2"])


@pytest.mark.parametrize("c,k", [(3, 10), (1, 9), (1, 2)])
def test_unfit_nets_are_refused(c, k, spaced):
    net = _random_net(c, k)
    with pytest.raises(ValueError, match="net"):
        FL.read_field(spaced[0].image, net)
    with pytest.raises(ValueError, match="net"):
        FL.check_net(net)


def test_not_a_net_is_refused(spaced):
    with pytest.raises(TypeError, match="net"):
        FL.read_field(spaced[0].image, "digits")


@pytest.mark.parametrize("k", [10, 11, 26])
def test_other_grayscale_nets_read(k, spaced):
    """Any 1-channel net of >= 10 classes reads (classes beyond 9 are not digits)."""
    net = _random_net(1, k)
    for s in spaced[:5]:
        f = FL.read_field(s.image, net)
        assert f.error is None and f.text == "".join(str(d.label) for d in f.digits)
        assert all(0 <= d.label <= 9 for d in f.digits)
        assert len(f.text) <= FL.FIELD_MAX_PIECES


# ---- determinism --------------------------------------------------------------------------------
def test_batching_does_not_change_results(digits, fnet):
    samples = _make("handwritten_spaced", FL.FIELD_BATCH + 11, digits, seed=5)
    images = [s.image for s in samples]
    batched = FL.read_arrays(images, fnet)
    assert len(batched) == len(images)
    for im, b in zip(images, batched):
        _same(FL.read_field(im, fnet), b, tol=1e-6)
    # reversed order: the same per image
    for b, r in zip(batched, reversed(FL.read_arrays(images[::-1], fnet))):
        _same(b, r, tol=1e-6)


@pytest.mark.parametrize("style", ["handwritten_spaced", "touching", "comb", "page"])
def test_threads_do_not_change_results(style, digits):
    samples = _make(style, 20, digits, seed=7)
    images = [s.image for s in samples]
    one = fastlenet.pretrained(FL.MODELS[0], num_threads=1)
    two = fastlenet.pretrained(FL.MODELS[0], num_threads=2)
    a = FL.read_arrays(images, one)
    b = FL.read_arrays(images, two)
    c = FL.read_arrays(images, one, threads=2)
    for x, y, z in zip(a, b, c):
        _same(x, y, tol=1e-6)
        _same(x, z, tol=1e-6)


@pytest.mark.parametrize("isa", fastlenet.available_isas())
def test_every_isa_reads_the_same(isa, digits):
    samples = _make("handwritten_spaced", 20, digits, seed=9) + \
        _make("touching", 10, digits, seed=9)
    images = [s.image for s in samples]
    ref = fastlenet.pretrained(FL.MODELS[0])
    ref.isa = "scalar"
    net = fastlenet.pretrained(FL.MODELS[0])
    net.isa = isa
    for x, y in zip(FL.read_arrays(images, ref), FL.read_arrays(images, net)):
        _same(x, y, tol=1e-5)


def test_concurrent_calls_on_one_net(digits, fnet):
    """read_arrays releases the GIL: calls from several Python threads on one Net give what
    each gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    sets = [[s.image for s in _make(st, 15, digits, seed=8)]
            for st in ("handwritten_spaced", "touching", "comb")]

    def key(rows):
        return [(f.text, f.confidence, [d.box for d in f.digits]) for f in rows]

    want = [key(FL.read_arrays(ims, fnet)) for ims in sets]
    with ThreadPoolExecutor(6) as ex:
        got = list(ex.map(lambda k: key(FL.read_arrays(sets[k % 3], fnet)), range(12)))
    for k, g in enumerate(got):
        assert g == want[k % 3]
