"""The strip reader (issue 18): a LeNet-5 slid along the field's strip, read with CTC. The
segmenter's strip and piece boxes, the windows, CTC's best path and forward pass, the search
asked to read a given text, the fusion of the two readings, and the bundled model."""
from __future__ import annotations

import itertools
import math

import _fields as F
import numpy as np
import pytest

import fastlenet
from fastlenet import _engine
from fastlenet import fields as FL
from fastlenet.pixels import unit_scale


def _fields(style, n, seed):
    try:
        return F.make_fields(style, n, F.mnist_train_digits(), np.random.default_rng(seed))
    except F.NoTestFonts as e:
        pytest.skip(str(e))


def _segment(ims):
    return _engine._field_segments(ims, [unit_scale(a) for a in ims], 28, "auto", True, 1, True)


def test_the_strip_holds_the_fields_ink_at_the_digit_height():
    """Each field's strip is its ink, light on dark, FIELD_STRIP_H rows with the digits about
    FIELD_STRIP_DIGIT rows tall, in either polarity alike; a blank field has none."""
    samples = _fields("handwritten_spaced", 12, 3)
    ims = [s.image for s in samples]
    strips = FL.field_strips(ims)
    assert all(s is not None and s.shape[0] == FL.STRIP_H for s in strips)
    for s, smp in zip(strips, samples):
        rows = np.flatnonzero(s.max(axis=1) > 64)
        # digits are jittered up and down and scaled 0.8-1.2 against the field's height
        assert 0.7 * _engine.FIELD_STRIP_DIGIT <= len(rows) <= FL.STRIP_H
        assert (s.shape[1] - FL.STRIP_H) % FL.STRIP_STRIDE == 0
        # the strip is about as many digit heights wide as the field
        h = smp.boxes[0][3] - smp.boxes[0][1]
        span = (smp.boxes[-1][2] - smp.boxes[0][0]) / h * _engine.FIELD_STRIP_DIGIT
        assert 0.6 * span <= s.shape[1] - 24 <= 1.6 * span + 8
    light = FL.field_strips([255 - a for a in ims])
    for a, b in zip(strips, light):
        assert a.shape == b.shape and np.abs(a.astype(int) - b).max() <= 1
    assert FL.field_strips([np.full((40, 200), 255, np.uint8)]) == [None]


def test_pieces_carry_their_centres_and_boxes():
    """piece_box is each piece's box in the image: a one-piece segment's box is its piece's;
    piece_x (its centre in strip columns) rises in reading order, inside the strip."""
    ims = [s.image for s in _fields("touching", 6, 4) + _fields("handwritten_spaced", 6, 4)]
    _, segs, counts, _, _, (_, widths, piece_x, piece_box) = _segment(ims)
    at = 0
    for i, (np_, ns, _) in enumerate(counts):
        sg = segs[at:at + ns]
        at += ns
        x = piece_x[i, :np_]
        assert np.all(np.diff(x) > -FL.STRIP_H / 2) and 0 <= x.min() and x.max() < widths[i]
        one = sg[sg["p1"] - sg["p0"] == 1]
        assert len(one) >= np_ // 2
        for s in one:
            assert tuple(piece_box[i, s["p0"]]) == (s["x0"], s["y0"], s["x1"], s["y1"])


def test_windows_are_the_strips_columns_every_stride():
    strip = np.random.default_rng(0).integers(0, 256, (FL.STRIP_H, 72), dtype=np.uint8)
    win = FL.strip_windows(strip)
    assert win.shape == (FL.strip_frames(72), FL.STRIP_H, FL.STRIP_H) == (11, 32, 32)
    for t in range(len(win)):
        np.testing.assert_array_equal(win[t], strip[:, t * FL.STRIP_STRIDE:t * FL.STRIP_STRIDE + 32])


def test_ctc_best_path_and_forward_pass():
    """The best path merges repeats and drops blanks (each run's first and last window);
    ctc_logp sums every alignment (checked against all of them on a short strip)."""
    p = np.full((6, 11), 0.01)
    for t, c in enumerate([3, 3, 10, 3, 10, 7]):
        p[t, c] = 0.9
    labels, at, last = FL.ctc_best_path(p)
    assert labels.tolist() == [3, 3, 7] and at.tolist() == [0, 3, 5]
    assert last.tolist() == [1, 3, 5]
    lp = np.log(np.random.default_rng(1).dirichlet(np.ones(11), 5))
    for text in ("", "4", "12", "11", "121"):
        total = -np.inf
        for path in itertools.product(range(11), repeat=5):
            out, prev = [], None
            for c in path:
                if c != prev and c != 10:
                    out.append(str(c))
                prev = c
            if "".join(out) == text:
                total = np.logaddexp(total, sum(lp[t, c] for t, c in enumerate(path)))
        assert FL.ctc_logp(lp, text) == pytest.approx(total, abs=1e-9), text


def _search(segs, proba, pieces, texts=None, pair_logp=None, pair_proba=None):
    counts = np.array([[pieces, len(segs), 0]], np.int32)
    ink = np.ones((1, _engine.FIELD_MAX_PIECES), np.float32)
    path, narcs, logp, _, met, score = _engine._field_search(
        segs, counts, ink, proba, 0.2, -0.1, 0.0, 5.0, 0, 99, pair_logp, 0.0, texts=texts,
        pair_proba=pair_proba)
    arcs = [(int(a & (_engine.FIELD_PAIR - 1)), bool(a & _engine.FIELD_PAIR))
            for a in path[0, :narcs[0]]]
    return arcs, float(logp[0]), float(score[0]), int(met[0])


def test_the_search_reads_a_given_text():
    """texts= asks for the best path that reads those digits: each arc scored by its own
    digit's probability (a pair's by its pair's); the score is the path's less its costs; a
    text no path can read has none (met 0)."""
    segs = np.zeros(3, _engine.SEGMENT_DTYPE)
    segs["p0"], segs["p1"], segs["cell"], segs["split"] = [0, 0, 1], [1, 2, 2], -1, 1
    proba = np.full((3, 11), 0.01, np.float32)
    proba[0, 3], proba[1, 5], proba[2, 8] = 0.5, 0.6, 0.5
    free = _search(segs, proba, 2)
    assert free[0] == [(1, False)] and free[3] == 1
    assert free[2] == pytest.approx(math.log(0.6) + 0.1, abs=1e-5)
    # its own text: the same path and score
    own = _search(segs, proba, 2, texts=["5"])
    assert own[0] == free[0] and own[1:] == pytest.approx(free[1:])
    # two digits: the halves, each by its digit's own probability
    arcs, logp, score, met = _search(segs, proba, 2, texts=["38"])
    assert arcs == [(0, False), (2, False)] and met == 1
    assert logp == pytest.approx(math.log(0.25), abs=1e-5)
    assert score == pytest.approx(math.log(0.25) + 0.2, abs=1e-5)
    # a digit the model doubts is still read when asked for, at its price
    arcs, logp, _, _ = _search(segs, proba, 2, texts=["7"])
    assert arcs == [(1, False)] and logp == pytest.approx(math.log(0.01), abs=1e-5)
    # three digits from two pieces: no path
    arcs, _, score, met = _search(segs, proba, 2, texts=["123"])
    assert arcs == [] and met == 0 and score < -1e29
    # a pair arc reads its pair's probability
    pair = np.array([-np.inf, math.log(0.9), -np.inf], np.float32)
    pp = np.zeros((3, 100), np.float32)
    pp[1, 38], pp[1, 47] = 0.9, 0.05
    arcs, logp, _, _ = _search(segs, proba, 2, ["47"], pair, pp)
    assert arcs == [(1, True)] and logp == pytest.approx(math.log(0.05), abs=1e-5)
    with pytest.raises(ValueError, match="texts"):
        _search(segs, proba, 2, texts=["4a"])
    with pytest.raises(ValueError, match="pair_proba"):
        _search(segs, proba, 2, ["47"], pair)


def test_check_net_takes_strip_readers_by_their_classes():
    f, st = fastlenet.pretrained("fields"), fastlenet.pretrained("strips")
    assert tuple(st.classes) == FL.STRIP_CLASSES
    assert FL.readers(FL.check_net([st, f])) == ((f,), (), (st,))
    with pytest.raises(ValueError, match="digit reader"):
        FL.check_net(st)
    small = fastlenet.Net({k: st.weights[k] for k in st.weights},
                          dict(st.meta, input_size=28, pad=2))
    with pytest.raises(ValueError, match="strip reader"):
        FL.check_net([f, small])


def test_the_strip_reader_reads_touching_and_tight_fields_better():
    """Measured on these fields, without the strip reader and with it: touching 70 -> 96 of
    150 in int8 (95 in fp32), tight print 84 -> 95 of 100 in both (on 2,000 validation fields
    per style: 0.427 -> 0.621 and 0.794 -> 0.947, every style at least as good)."""
    nets = FL.check_net(None)
    without = FL.readers(nets)[0] + FL.readers(nets)[1]
    for style, n, gain in (("touching", 150, 10), ("printed_tight", 100, 8)):
        samples = _fields(style, n, 8)
        ims = [s.image for s in samples]
        right = [sum(f.text == s.text for f, s in zip(FL.read_arrays(ims, m), samples))
                 for m in (without, nets)]
        assert right[1] >= right[0] + gain, (style, right)


def test_fields_read_by_the_strip_reader_keep_the_field_contract():
    """Where the strip reader's text is the reading: one Digit per digit, each box inside the
    image and holding its digit's centre (the boxes come from the pieces nearest the windows
    that read it), confidences probabilities. Measured here: 21 fields read otherwise than
    without it, 11 of them now right."""
    samples = _fields("printed_tight", 40, 9) + _fields("touching", 40, 9)
    nets = FL.check_net(None)
    without = FL.readers(nets)[0] + FL.readers(nets)[1]
    got = FL.read_arrays([s.image for s in samples], nets)
    base = FL.read_arrays([s.image for s in samples], without)
    changed = right = 0
    for f, b, s in zip(got, base, samples):
        assert len(f.text) == len(f.digits) and f.error is None and 0 <= f.confidence <= 1
        h, w = s.image.shape
        for d in f.digits:
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and 0 <= d.confidence <= 1
            assert all(c != d.label and 0 <= q <= 1 for c, q in d.alternatives)
        changed += f.text != b.text
        if f.text != b.text and f.text == s.text:
            right += 1
            for d, bx in zip(f.digits, s.boxes):
                assert d.box[0] <= (bx[0] + bx[2]) / 2 < d.box[2], (d.box, bx)
    assert changed >= 10 and right >= changed // 2


def test_the_bundled_strip_reader_says_how_it_was_made_and_matches_the_reference():
    from _helpers import ROOT
    from fastlenet import reference

    net = fastlenet.pretrained("strips")
    meta = net.meta
    assert meta["name"] == "strips" and meta["classes"] == list(FL.STRIP_CLASSES)
    assert (meta["input_size"], meta["pad"], meta["foreground"]) == (32, 0, "light-on-dark")
    assert meta["provenance"]["script"] == "tools/train/train_strips.py"
    assert (ROOT / "tools" / "train" / "train_strips.py").is_file()
    assert meta["validation_fields_alone"]["printed_tight"] > 0.9
    strips = FL.field_strips([s.image for s in _fields("touching", 4, 3)])
    x = np.concatenate([FL.strip_windows(s) for s in strips])
    assert len(x) >= 40
    np.testing.assert_allclose(net.logits(x), reference.logits(net, x), rtol=0, atol=1e-4)


def test_the_engine_reads_windows_as_the_recipe_trains_the_strip():
    """The recipe trains LeNet-5 as one convolution over the whole strip: its outputs are the
    engine's, window by window."""
    torch = pytest.importorskip("torch")
    import sys

    from _helpers import ROOT
    sys.path.insert(0, str(ROOT / "tools" / "train"))
    import train_strips

    model = train_strips.build_sliding()
    meta = train_strips.load_start(model, fastlenet.models.PRETRAINED_PATH.with_name(
        fastlenet.models.PRETRAINED["strips"]))
    net = fastlenet.pretrained("strips")
    strip = FL.field_strips([_fields("touching", 1, 5)[0].image])[0]
    x, frames = train_strips.batch([strip], meta["mean"], meta["std"])
    with torch.no_grad():
        want = model(x)[0].T.numpy()
    assert want.shape == (int(frames[0]), 11)
    np.testing.assert_allclose(net.logits(FL.strip_windows(strip)), want, rtol=0, atol=1e-4)
