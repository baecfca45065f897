"""Fields of digits: one image holding a row of digits (a ZIP code, an amount, an ID, a row of
comb boxes) -> the string it reads.

    read_field(image, net)     one 2-D array -> Field
    read_arrays(images, nets)  many -> [Field], in batches (what read_fields' workers run)
    check_net(net)             what net= means: the Nets a field is read with, as a tuple
    readers(nets)              those Nets by role: digit readers, pair readers

How (csrc/fields.c has the details): the field is over-segmented on purpose (components,
long lines and box walls removed, least-ink cut paths through touching digits from minima of
the column profile), every run of 1-5 consecutive pieces that could be one digit is preprocessed
as a picture of one digit and scored by the engine in one large batch, and the best path of
segments (dynamic programming over the cuts, LeNet-5's own method for bank-check amounts) is
the reading. Where a blob is wide enough to hold two touching digits, a pair reader (a LeNet-5
with the 100 classes "00".."99" and "not two digits") may read a segment of it as two digits
at once, which a cut through the touching strokes often cannot. The work per field is
bounded: at most FIELD_MAX_PIECES pieces and 5 pieces per candidate, so a field of noise costs
no more than a long field.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import numpy as np

from fastlenet import _engine, models, prepare
from fastlenet.names import row_name
from fastlenet.pixels import invert_choice, unit_scale

# Path scores are sums of log-probabilities; these weigh the other evidence (chosen on
# synthesized validation fields, tests/_fields.py; see benchmarks/fields.py).
DIGIT_COST = 0.2     # per digit read: a wrong cut must buy its extra digit with confidence
# per digit read from part of a blob FD_MULTI_WIDE (csrc/fields.c) digit heights wide or more
# (fl_segment.split): such a blob holds two digits or more, and the model reads two touching
# digits as one with confidence, so there the cut is what needs no buying (validation:
# touching 0.296 -> 0.315, tight print 0.609 -> 0.633, the other styles within 0.001)
SPLIT_COST = -0.1
SHAPE_COST = 1.5     # per unit of a segment's shape cost (wider than a digit is high, short)
SKIP_COST = 3.0      # per typical digit's ink left unread (specks, noise, stray marks)
PAIR_COST = 0.0      # per segment read as two digits by the pair reader
# segments narrower than this (in their own heights) are not offered to the pair reader: two
# digits are wider (the training pairs' 5th percentile: 0.71), and narrow pieces read as
# pairs cost touching fields 0.04 on validation
PAIR_MIN_WIDTH = 0.55
# Fields per C call: the segments of a batch (up to FIELD_MAX_SEGMENTS each) go through the
# engine in one call; 32 fields hold at most 15,360 candidate inputs (12 MB).
FIELD_BATCH = 32
FIELD_MAX_PIECES = _engine.FIELD_MAX_PIECES
ALTERNATIVES = 3
# The bundled models fields are read with, together: "fields" knows "not one digit" (an 11th
# class) for the search's bad cuts (tools/train/train_fields.py); "fields2" is the same recipe
# from another seed. Models trained apart err apart: the mean of their softmax reads better than
# either (validation fields, 2,000 per style: touching 0.326 -> 0.342, tight print 0.622 ->
# 0.647, every style up; a retrain from the same base gains nothing). fastlenet/pretrained/
# README.md has the recipe and the figures.
# "pairs" reads two touching digits as one picture (tools/train/train_pairs.py), on segments
# of blobs wide enough to hold two digits (fl_segment.split) and outside comb boxes.
MODELS = ("fields", "fields2", "pairs")
# the class names that make a Net a pair reader: "00".."99" first, then "not two digits"
PAIR_CLASSES = tuple(f"{i:02d}" for i in range(100))


class Digit(NamedTuple):
    """One digit read: its label (0-9), the recognizer's probability for it, its box (x0, y0,
    x1, y1) in the field image's pixels (x1, y1 exclusive) and the next most likely labels
    as ((label, probability), ...). Two digits read together by the pair reader each get
    half of the pair's box, and the second one's probabilities are given the first."""
    label: int
    confidence: float
    box: tuple
    alternatives: tuple


class Field(NamedTuple):
    """One field's reading. `text` holds the digits read, left to right (layout spaces are not
    content); `confidence` is the probability of the whole string (the product of its digits',
    lowered by ink left unread; 0 when `length` could not be met or the field has more pieces
    than FIELD_MAX_PIECES); `digits` one Digit each. A field with no digits has
    text "" and no error; an input that could not be read has `error` set and text "".
    source/member/index name the input as in fastlenet.Prediction."""
    source: Optional[str]
    member: Optional[str]
    index: Optional[int]
    text: str
    confidence: float
    digits: tuple
    error: Optional[str]

    @property
    def name(self) -> str:
        """source, source:member or source[index]: how the CLI names an input."""
        return row_name(self.source, self.member, self.index)


def length_range(length) -> tuple:
    """length= (None, an int, or a range of ints) -> (min, max) digits."""
    if length is None:
        return 0, FIELD_MAX_PIECES
    if isinstance(length, range):
        if length.step != 1 or len(length) == 0:
            raise ValueError(f"length: expected a non-empty range with step 1; got {length!r}")
        lo, hi = length.start, length.stop - 1
    elif isinstance(length, (int, np.integer)) and not isinstance(length, bool):
        lo = hi = int(length)
    else:
        raise TypeError(f"length: expected None, an int or a range; got {length!r}")
    if lo < 0 or hi > FIELD_MAX_PIECES:
        raise ValueError(f"length: expected digit counts in 0..{FIELD_MAX_PIECES}; got "
                         f"{length!r}")
    return lo, hi


def default_nets(precision: str = "auto") -> tuple:
    """The bundled models fields are read with (MODELS). precision "auto" runs them in int8
    where this CPU has int8 kernels (AVX512-VNNI, AMX: on the validation fields they read
    within 0.002 of fp32, and faster) and in fp32 elsewhere (there int8 runs its scalar
    specification, slower than fp32); "fp32" or "int8" forces one."""
    if precision not in ("auto", "fp32", "int8"):
        raise ValueError(f"precision: expected 'auto', 'fp32' or 'int8'; got {precision!r}")
    if precision == "auto":
        precision = auto_precision()
    return tuple(models.pretrained(m, precision=precision) for m in MODELS)


def auto_precision(isa: Optional[str] = None) -> str:
    """What precision "auto" means at ISA level `isa` (default: this CPU's): "int8" where the
    int8 kernels there are more than the scalar specification, else "fp32"."""
    return "fp32" if _engine.int8_kernels(isa) == "scalar" else "int8"


def members(net) -> tuple:
    """The Nets of `net` as it travels to workers: one Net, or a tuple of them (check_net's)."""
    return net if isinstance(net, tuple) else (net,)


def map_members(net, fn):
    """fn applied to each of members(net), in net's shape: a tuple for a tuple, else one."""
    out = tuple(fn(n) for n in members(net))
    return out if isinstance(net, tuple) else out[0]


def check_net(net) -> tuple:
    """What net= means, as a tuple of Nets: None the bundled models (default_nets()), one Net,
    or a sequence of Nets. The digit readers among them (grayscale models with the 10 digit
    classes first, all of one class count) are averaged on every candidate; pair readers
    (classes PAIR_CLASSES first) are averaged on the segments that may hold two touching
    digits. All must share one input geometry; one digit reader at least. The default is
    loaded once per process and shared: do not change it."""
    if net is None:
        return _cached_default()
    nets = (net,) if isinstance(net, _engine.Net) else \
        tuple(net) if isinstance(net, (tuple, list)) else None
    if not nets or not all(isinstance(n, _engine.Net) for n in nets):
        found = type(net).__name__ if nets is None else \
            "an empty sequence" if not nets else \
            f"a sequence holding {', '.join(sorted({type(n).__name__ for n in nets}))}"
        raise TypeError(f"net: expected a fastlenet.Net or a sequence of them; got {found}")
    for n in nets:
        if n.in_channels != 1 or n.num_classes < 10:
            raise ValueError(f"net: fields are read with a grayscale model of 10 or more "
                             f"classes (0-9 first); this one has {n.in_channels} channels and "
                             f"{n.num_classes} classes")
    digits, pairs = readers(nets)
    if not digits:
        raise ValueError(f"net: fields need a digit reader (classes 0-9 first); got only "
                         f"{len(pairs)} pair reader(s) (classes 00-99)")
    geometry = prepare.model_geometry(digits[0])
    for role in (digits, pairs):
        for n in role:
            if n.num_classes != role[0].num_classes or prepare.model_geometry(n) != geometry:
                raise ValueError(
                    f"net: the Nets of a sequence must agree in input size and polarity, and "
                    f"those of one role (digit or pair reader) in classes; found "
                    f"{role[0].num_classes} classes {prepare.model_geometry(role[0])} and "
                    f"{n.num_classes} classes {prepare.model_geometry(n)} (the digit readers' "
                    f"geometry: {geometry})")
    return nets


def readers(nets: tuple) -> tuple:
    """check_net's Nets by role -> (digit readers, pair readers), each a tuple in order."""
    is_pair = [tuple(n.classes[:100]) == PAIR_CLASSES for n in nets]
    return (tuple(n for n, p in zip(nets, is_pair) if not p),
            tuple(n for n, p in zip(nets, is_pair) if p))


def _proba(nets: tuple, inputs):
    """The candidates' probabilities: the mean over nets."""
    if len(nets) == 1:
        return nets[0].predict_proba(inputs)
    total = nets[0].predict_proba(inputs)
    for n in nets[1:]:
        total += n.predict_proba(inputs)
    return total / np.float32(len(nets))


def read_field(image, net=None, *, length=None, invert: str = "auto") -> Field:
    """Read one field: a 2-D array of any size (uint8, uint16, bool or float; colour HxWx3/4
    becomes luma), dark ink on light paper or light on dark (invert="auto" takes the minority
    class as ink; "yes"/"no" force light/dark ink). length: the number of digits the form
    says the field has (an int or a range), or None. net: see check_net (default: the bundled
    models)."""
    return read_arrays([image], net, length=length, invert=invert)[0]


_default: dict = {}


def _cached_default() -> tuple:
    """net=None: the bundled models, loaded once per process (a load and quantization take
    ~7 ms, more than reading a field)."""
    nets = _default.get("nets")
    if nets is None:
        nets = _default["nets"] = default_nets()
    return nets


def read_arrays(images: Sequence, nets, *, length=None, invert: str = "auto",
                names: Optional[Sequence] = None, threads: Optional[int] = None) -> list:
    """Fields for a sequence of 2-D images (or an (N, H, W) array), in order; nets: what
    check_net gives; names: (source, member, index) per image. An image that is not one
    (wrong shape, NaN) becomes a Field with its error."""
    nets = check_net(nets)
    lo, hi = length_range(length)
    invert = invert_choice(invert)
    digit_nets, pair_nets = readers(nets)
    size, light = prepare.model_geometry(digit_nets[0])
    if threads is None:
        threads = digit_nets[0].num_threads
    out: list = []
    n = len(images)
    for start in range(0, n, FIELD_BATCH):
        part = [images[i] for i in range(start, min(n, start + FIELD_BATCH))]
        nm = [names[i] if names is not None else (None, None, None)
              for i in range(start, start + len(part))]
        out.extend(_read_batch(part, nm, digit_nets, pair_nets, size, light, invert, lo, hi,
                               threads))
    return out


def _digit_proba(proba, whole):
    """The search's scores. "Not a digit" (classes past 9) speaks only against segments
    bounded by a cut or a removed line (fl_segment.whole 0): a whole blob is no mis-cut, and
    the fields model took 1.9% of true, uncut MNIST digits (thin 1s, open 6s) for one. On
    whole blobs the digits' probabilities are renormalized among themselves (specks stay cheap
    to skip by their ink)."""
    if proba.shape[1] <= 10 or not whole.any():
        return proba
    proba = proba.copy()
    digits = proba[whole, :10]
    proba[whole, :10] = digits / np.maximum(digits.sum(axis=1, keepdims=True), 1e-12)
    proba[whole, 10:] = 0
    return proba


def pair_candidates(segs) -> np.ndarray:
    """Which segments (_field_segments' records) may hold two touching digits: part of a blob
    wide enough for two (fl_segment.split), outside comb boxes, PAIR_MIN_WIDTH heights wide or
    more. The pair reader is asked, and trained, on these alone."""
    width, height = segs["x1"] - segs["x0"], np.maximum(segs["y1"] - segs["y0"], 1)
    return (segs["split"] == 1) & (segs["cell"] < 1) & (width >= PAIR_MIN_WIDTH * height)


def _pair_scores(pair_nets, inputs, segs):
    """The pair readers' mean probabilities on pair_candidates -> (log-probability of each
    segment's best pair, -inf elsewhere, or None without pair readers; the probabilities,
    one row per pair candidate; each segment's row there, -1 for the others)."""
    if not pair_nets:
        return None, None, None
    logp = np.full(len(segs), -np.inf, np.float32)
    row = np.full(len(segs), -1, np.int64)
    which = np.flatnonzero(pair_candidates(segs))
    row[which] = np.arange(len(which))
    pp = _proba(pair_nets, inputs[which]) if len(which) else None
    if len(which):
        logp[which] = np.log(np.maximum(pp[:, :100].max(axis=1), 1e-6))
    return logp, pp, row


def _pair_digits(p, box) -> tuple:
    """A segment read as two digits -> their Digits. The first digit's confidence is its
    probability over the pairs, the second's given the first, so that their product is the
    pair's probability; each gets half the segment's box (the pair reader does not say where
    the touching strokes part)."""
    joint = p[:100].reshape(10, 10)
    first = joint.sum(axis=1)
    a = int(np.argmax(joint.max(axis=1)))
    b = int(np.argmax(joint[a]))
    given = joint[a] / max(float(first[a]), 1e-12)
    x0, y0, x1, y1 = box
    xm = (x0 + x1) // 2
    out = []
    for label, dist, bx in ((a, first, (x0, y0, xm, y1)), (b, given, (xm, y0, x1, y1))):
        order = [label] + [c for c in np.argsort(-dist, kind="stable").tolist() if c != label]
        out.append(Digit(label, float(dist[label]), bx,
                         tuple((int(c), float(dist[c])) for c in order[1:1 + ALTERNATIVES])))
    return tuple(out)


def _read_batch(part, names, digit_nets, pair_nets, size, light, invert, lo, hi, threads):
    arrays, errors = [], []
    for k, im in enumerate(part):
        try:
            a = prepare._as_gray(im, "image")
            if a.ndim != 2:
                raise ValueError(f"image: expected a 2-D array; got shape {a.shape}")
            arrays.append(a)
            errors.append(None)
        except (ValueError, TypeError) as e:
            errors.append(str(e))
    scales = [unit_scale(a) for a in arrays]
    inputs, segs, counts, _, ink = _engine._field_segments(
        arrays, scales, size, invert, light, threads)
    proba = _proba(digit_nets, inputs) if len(inputs) else \
        np.zeros((0, digit_nets[0].num_classes), np.float32)
    pair_logp, pair_proba, pair_row = _pair_scores(pair_nets, inputs, segs)
    # the path is chosen on the search's scores; the Digits and the string's confidence keep
    # the model's own probabilities, doubt about a whole blob included (noise stays unsure)
    path, narcs, _, skipped, met = _engine._field_search(
        segs, counts, ink, _digit_proba(proba, segs["whole"] == 1), DIGIT_COST, SPLIT_COST,
        SHAPE_COST, SKIP_COST, lo, hi, pair_logp, PAIR_COST)
    first = np.concatenate([[0], np.cumsum(counts[:, 1])]) if len(counts) else [0]
    rows, j = [], 0
    for k, err in enumerate(errors):
        src, member, index = names[k]
        if err is not None:
            rows.append(Field(src, member, index, "", math.nan, (), err))
            continue
        digits = []
        base = int(first[j])
        for arc in path[j, :narcs[j]].tolist():
            s = base + (arc & (_engine.FIELD_PAIR - 1))
            seg = segs[s]
            box = (int(seg["x0"]), int(seg["y0"]), int(seg["x1"]), int(seg["y1"]))
            if arc & _engine.FIELD_PAIR:
                digits.extend(_pair_digits(pair_proba[pair_row[s]], box))
                continue
            p = proba[s]
            order = np.argsort(-p[:10], kind="stable")
            digits.append(Digit(int(order[0]), float(p[order[0]]), box,
                                tuple((int(c), float(p[c])) for c in order[1:1 + ALTERNATIVES])))
        text = "".join(str(d.label) for d in digits)
        # ink left unread (specks are far below a digit's) lowers the string's probability;
        # a field cut short by the bound on pieces, or whose length could not be met, has none
        ok = met[j] and not counts[j, 2]
        logp = sum(math.log(max(d.confidence, 1e-6)) for d in digits)
        conf = float(math.exp(logp - max(0.0, float(skipped[j]) - 0.25))) if ok else 0.0
        rows.append(Field(src, member, index, text, conf, tuple(digits), None))
        j += 1
    return rows
