"""Fields of digits: one image holding a row of digits (a ZIP code, an amount, an ID, a row of
comb boxes) -> the string it reads.

    read_field(image, net)     one 2-D array -> Field
    read_arrays(images, nets)  many -> [Field], in batches (what read_fields' workers run)
    check_net(net)             what net= means: the Nets a field is read with, as a tuple
    readers(nets)              those Nets by role: digit readers, pair readers, strip readers

How (csrc/fields.c has the details): the field is over-segmented on purpose (components,
long lines and box walls removed, least-ink cut paths through touching digits from minima of
the column profile), every run of 1-5 consecutive pieces that could be one digit is preprocessed
as a picture of one digit and scored by the engine in one large batch, and the best path of
segments (dynamic programming over the cuts, LeNet-5's own method for bank-check amounts) is
the reading. Where a blob is wide enough to hold two touching digits, a pair reader (a LeNet-5
with the 100 classes "00".."99" and "not two digits") may read a segment of it as two digits
at once, which a cut through the touching strokes often cannot. A strip reader (a LeNet-5 with
the digits and "between digits") reads the whole field without cuts, a 32x32 window every 4
columns of the field's strip, its string CTC's best path; where that string differs from the
search's, the search scores its best path reading it, and the better of the two strings by
both readers is the reading (_fuse). The work per field is bounded: at most FIELD_MAX_PIECES
pieces and 5 pieces per candidate, and a strip of at most _engine.FIELD_STRIP_MAX columns, so
a field of noise costs no more than a long field.
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
# "strips" reads the whole field without cuts, a LeNet-5 slid along it (tools/train/
# train_strips.py); where it reads another string than the search, the better of the two by
# both is the reading (_fuse).
MODELS = ("fields", "fields2", "pairs", "strips")
# the class names that make a Net a pair reader: "00".."99" first, then "not two digits"
PAIR_CLASSES = tuple(f"{i:02d}" for i in range(100))
# ... and a strip reader: the digits, then "between digits" (CTC's blank)
STRIP_CLASSES = tuple(str(i) for i in range(10)) + ("between digits",)
# a search reading at least this probable is kept without asking the strip readers
# (validation: the same strings as asking always, 4% less time; 0.9 lost 0.003)
STRIP_SURE = 0.99
# the weight of the strip readers' CTC log-likelihood against the search's path score
# (validation, 500 fields per style: 0.2 / 0.35 / 0.5 gave a mean of 0.9133 / 0.9157 / 0.9147)
STRIP_WEIGHT = 0.35


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
    (classes PAIR_CLASSES first) on the segments that may hold two touching digits, both of
    one input geometry; strip readers (classes STRIP_CLASSES, 32x32 light on dark) on every
    window of the fields' strips. One digit reader at least. The default is loaded once per
    process and shared: do not change it."""
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
    digits, pairs, strips = readers(nets)
    if not digits:
        raise ValueError(f"net: fields need a digit reader (classes 0-9 first); got only "
                         f"{len(pairs)} pair reader(s) (classes 00-99) and {len(strips)} strip "
                         f"reader(s)")
    geo = {id(n): prepare.model_geometry(n) for n in nets}  # a copy of the metadata each
    for n in strips:
        if geo[id(n)] != (STRIP_H, True):
            raise ValueError(f"net: a strip reader reads {STRIP_H}x{STRIP_H} windows of light "
                             f"ink on dark; this one's input is {geo[id(n)]} "
                             f"(size, light on dark)")
    geometry = geo[id(digits[0])]
    for role in (digits, pairs):
        for n in role:
            if n.num_classes != role[0].num_classes or geo[id(n)] != geometry:
                raise ValueError(
                    f"net: the Nets of a sequence must agree in input size and polarity, and "
                    f"those of one role (digit or pair reader) in classes; found "
                    f"{role[0].num_classes} classes {geo[id(role[0])]} and "
                    f"{n.num_classes} classes {geo[id(n)]} (the digit readers' "
                    f"geometry: {geometry})")
    return nets


def readers(nets: tuple) -> tuple:
    """check_net's Nets by role -> (digit readers, pair readers, strip readers), each a tuple
    in order."""
    role = ["pair" if tuple(n.classes[:100]) == PAIR_CLASSES else
            "strip" if tuple(n.classes) == STRIP_CLASSES else "digit" for n in nets]
    return tuple(tuple(n for n, r in zip(nets, role) if r == want)
                 for want in ("digit", "pair", "strip"))


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
    digit_nets, pair_nets, strip_nets = readers(nets)
    size, light = prepare.model_geometry(digit_nets[0])
    if threads is None:
        threads = digit_nets[0].num_threads
    out: list = []
    n = len(images)
    for start in range(0, n, FIELD_BATCH):
        part = [images[i] for i in range(start, min(n, start + FIELD_BATCH))]
        nm = [names[i] if names is not None else (None, None, None)
              for i in range(start, start + len(part))]
        out.extend(_read_batch(part, nm, digit_nets, pair_nets, strip_nets, size, light,
                               invert, lo, hi, threads))
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


def _digit(label: int, dist, box) -> Digit:
    """A Digit from a distribution over the ten digits: label's probability, and the next
    ALTERNATIVES labels by probability with theirs."""
    rest = [c for c in np.argsort(-dist[:10], kind="stable").tolist() if c != label]
    return Digit(int(label), float(dist[label]), box,
                 tuple((int(c), float(dist[c])) for c in rest[:ALTERNATIVES]))


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
    return _digit(a, first, (x0, y0, xm, y1)), _digit(b, given, (xm, y0, x1, y1))


# The strip reader (tools/train/train_strips.py): a LeNet-5 slid along the field's strip
# (csrc/fields.c fd_strip), one 32x32 window every STRIP_STRIDE columns (the stride of its
# pooled features: the model trains as one convolution over the strip), classes 0-9 and
# "between digits" (CTC's blank, the last class).
STRIP_H = _engine.FIELD_STRIP_H
STRIP_STRIDE = 4


def strip_frames(width: int) -> int:
    """Windows in a strip `width` columns wide (as field_strips pads it)."""
    return (width - STRIP_H) // STRIP_STRIDE + 1


def _pad_strip(strip, width: int):
    """A strip's first `width` columns, at least one window wide and a whole number of
    strides past it, or None without a strip (width 0): a view of the segmenter's buffer,
    whose columns past `width` are paper (FIELD_STRIP_MAX - STRIP_H is a whole number of
    strides, so the padding always fits)."""
    if width <= 0:
        return None
    w = max(STRIP_H, width)
    return strip[:, :w + -(w - STRIP_H) % STRIP_STRIDE]


def field_strips(images, invert: str = "auto", threads: int = 1) -> list:
    """2-D arrays -> each field's strip (uint8 (STRIP_H, W) light ink, padded by _pad_strip),
    or None where the segmenter found no ink; what the strip reader reads and trains on."""
    arrays = [prepare._as_gray(im, "image") for im in images]
    r = _engine._field_segments(arrays, [unit_scale(a) for a in arrays], 28,
                                invert_choice(invert), True, threads, True)
    strips, widths = r[5][:2]
    # copies: a view would keep the whole batch's buffer alive
    return [None if s is None else s.copy()
            for s in (_pad_strip(s, int(w)) for s, w in zip(strips, widths))]


def strip_windows(strip):
    """A padded strip -> its windows (T, STRIP_H, STRIP_H), a view (the engine reads any
    strides)."""
    v = np.lib.stride_tricks.sliding_window_view(strip, STRIP_H, axis=1)
    return v[:, ::STRIP_STRIDE].transpose(1, 0, 2)


def ctc_best_path(proba) -> tuple:
    """(T, 11) window probabilities -> (labels, first window of each, last window of each):
    the most likely class per window, repeats merged, "between digits" dropped (CTC's best
    path)."""
    best = proba.argmax(axis=1)
    blank = proba.shape[1] - 1
    new = np.r_[True, best[1:] != best[:-1]]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:] - 1, len(best) - 1]
    keep = best[starts] != blank
    return best[starts[keep]], starts[keep], ends[keep]


def strip_texts(images, net, invert: str = "auto") -> list:
    """What a strip reader alone reads in each field: its best path's digits."""
    out = []
    for s in field_strips(images, invert, net.num_threads):
        if s is None:
            out.append("")
            continue
        labels = ctc_best_path(net.predict_proba(strip_windows(s)))[0]
        out.append("".join(map(str, labels.tolist())))
    return out


def ctc_logp(logp, text: str) -> float:
    """log P(text) under a strip reader's window log-probabilities (T, 11), summed over every
    alignment (CTC's forward pass; the blank is the last class)."""
    blank = logp.shape[1] - 1
    ext = np.full(2 * len(text) + 1, blank, np.intp)
    ext[1::2] = [int(c) for c in text]
    # a digit may follow the digit two states back unless it repeats it
    jump = np.zeros(len(ext), bool)
    jump[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    a = np.full(len(ext), -np.inf)
    a[:2] = logp[0, ext[:2]]
    for t in range(1, len(logp)):
        b = a.copy()
        b[1:] = np.logaddexp(b[1:], a[:-1])
        b[2:] = np.where(jump[2:], np.logaddexp(b[2:], a[:-2]), b[2:])
        a = b + logp[t, ext]
    return float(np.logaddexp(a[-1], a[-2]) if len(ext) > 1 else a[-1])


def _strip_logp(strip_nets, strips, widths) -> list:
    """Each field's window log-probabilities (T, 11) from the strip readers' mean, or None
    without a strip."""
    padded = [_pad_strip(s, int(w)) for s, w in zip(strips, widths)]
    windows = [strip_windows(s) for s in padded if s is not None]
    if not windows:
        return [None] * len(padded)
    allp = np.log(np.maximum(_proba(strip_nets, np.concatenate(windows)), 1e-9))
    out, at = [], 0
    for s in padded:
        if s is None:
            out.append(None)
            continue
        t = strip_frames(s.shape[1])
        out.append(allp[at:at + t].astype(np.float64))
        at += t
    return out


def _read_batch(part, names, digit_nets, pair_nets, strip_nets, size, light, invert, lo, hi,
                threads):
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
    got = _engine._field_segments(arrays, scales, size, invert, light, threads,
                                  bool(strip_nets))
    inputs, segs, counts, _, ink = got[:5]
    proba = _proba(digit_nets, inputs) if len(inputs) else \
        np.zeros((0, digit_nets[0].num_classes), np.float32)
    pair_logp, pair_proba, pair_row = _pair_scores(pair_nets, inputs, segs)
    # the path is chosen on the search's scores; the Digits and the string's confidence keep
    # the model's own probabilities, doubt about a whole blob included (noise stays unsure)
    search_proba = _digit_proba(proba, segs["whole"] == 1)
    costs = (DIGIT_COST, SPLIT_COST, SHAPE_COST, SKIP_COST, lo, hi, pair_logp, PAIR_COST)
    path, narcs, seg_logp, skipped, met, score = _engine._field_search(segs, counts, ink,
                                                                       search_proba, *costs)
    first = np.concatenate([[0], np.cumsum(counts[:, 1])]) if len(counts) else [0]
    read = [_path_digits(path[j, :narcs[j]], int(first[j]), segs, proba, pair_proba, pair_row)
            for j in range(len(counts))]
    if strip_nets and len(counts):
        read, skipped, met = _fuse(got[5], strip_nets, segs, counts, ink, search_proba,
                                   pair_proba, pair_row, costs, first, read, skipped, met,
                                   score, seg_logp, lo, hi)
    rows, j = [], 0
    for k, err in enumerate(errors):
        src, member, index = names[k]
        if err is not None:
            rows.append(Field(src, member, index, "", math.nan, (), err))
            continue
        digits = read[j]
        text = "".join(str(d.label) for d in digits)
        # ink left unread (specks are far below a digit's) lowers the string's probability;
        # a field cut short by the bound on pieces, or whose length could not be met, has none
        ok = met[j] and not counts[j, 2]
        logp = sum(math.log(max(d.confidence, 1e-6)) for d in digits)
        conf = float(math.exp(logp - max(0.0, float(skipped[j]) - 0.25))) if ok else 0.0
        rows.append(Field(src, member, index, text, conf, digits, None))
        j += 1
    return rows


def _path_digits(arcs, base, segs, proba, pair_proba, pair_row) -> tuple:
    """One field's path through its segments (from base on) -> its Digits."""
    digits = []
    for arc in arcs.tolist():
        s = base + (arc & (_engine.FIELD_PAIR - 1))
        seg = segs[s]
        box = (int(seg["x0"]), int(seg["y0"]), int(seg["x1"]), int(seg["y1"]))
        if arc & _engine.FIELD_PAIR:
            digits.extend(_pair_digits(pair_proba[pair_row[s]], box))
            continue
        digits.append(_digit(int(np.argmax(proba[s, :10])), proba[s], box))
    return tuple(digits)


def _fuse(strip_out, strip_nets, segs, counts, ink, search_proba, pair_proba, pair_row, costs,
          first, read, skipped, met, score, seg_logp, lo, hi):
    """Where the strip readers' best path reads another string than the search (`read`, each
    field's Digits), the search is asked for its best path reading that string; of the two,
    the string with the higher search score plus STRIP_WEIGHT times its CTC log-likelihood
    is the reading. -> (each field's Digits, skipped ink, met) of the readings chosen."""
    read, skipped, met = list(read), skipped.copy(), met.copy()
    strips, widths, piece_x, piece_box = strip_out
    # not asked (the windows cost engine time): a reading the search is sure of, and a comb,
    # whose boxes say where its digits are (validation comb 0.944 -> 0.936 with the strip
    # readers asked there too)
    sure = (seg_logp >= math.log(STRIP_SURE)) & (met == 1) & (skipped < 0.25)
    comb = np.array([(segs["cell"][first[i]:first[i + 1]] >= 1).any()
                     for i in range(len(counts))], bool)
    logps = _strip_logp(strip_nets, strips, np.where(sure | comb, 0, widths))
    seg_text = ["".join(str(d.label) for d in r) for r in read]
    cand = []
    for i, lp in enumerate(logps):
        t = "" if lp is None else "".join(map(str, ctc_best_path(lp)[0].tolist()))
        ok = t != seg_text[i] and lo <= len(t) <= hi and len(t) < _engine.FIELD_TEXT
        cand.append(t if ok else "")
    if not any(cand):
        return read, skipped, met
    full_pairs = None
    if costs[6] is not None:
        full_pairs = np.zeros((len(segs), 100), np.float32)
        has = pair_row >= 0
        if has.any():
            full_pairs[has] = pair_proba[pair_row[has], :100]
    _, _, _, s2, m2, sc2 = _engine._field_search(segs, counts, ink, search_proba, *costs,
                                                 texts=cand, pair_proba=full_pairs)
    for i, t in enumerate(cand):
        if not t or not m2[i]:
            continue
        mine = sc2[i] + STRIP_WEIGHT * ctc_logp(logps[i], t)
        theirs = score[i] + STRIP_WEIGHT * ctc_logp(logps[i], seg_text[i])
        if mine > theirs:
            n = int(counts[i, 0])
            read[i] = _strip_digits(logps[i], piece_x[i, :n], piece_box[i, :n])
            skipped[i], met[i] = s2[i], m2[i]
    return read, skipped, met


def _strip_digits(logp, piece_x, piece_box) -> tuple:
    """The strip reader's best path as Digits. Each digit's confidence and alternatives are
    the window probabilities where its label peaks; its box holds the pieces whose centres lie
    nearer its windows than its neighbours' windows, so that it shows where the reader saw the
    digit (the nearest piece when none is nearer)."""
    proba = np.exp(logp)
    labels, starts, ends = ctc_best_path(proba)
    centres = STRIP_STRIDE * (starts + ends) / 2 + STRIP_H / 2
    owner = np.searchsorted((centres[1:] + centres[:-1]) / 2, piece_x)
    out = []
    for k, (label, a, e) in enumerate(zip(labels.tolist(), starts.tolist(), ends.tolist())):
        mine = np.flatnonzero(owner == k)
        if not len(mine) and len(piece_x):
            mine = [int(np.argmin(np.abs(piece_x - centres[k])))]
        b = piece_box[mine]
        box = (int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()),
               int(b[:, 3].max())) if len(b) else (0, 0, 1, 1)
        at = a + int(np.argmax(proba[a:e + 1, label]))
        # the confidence over all 11 classes, the alternatives among the digits
        d = _digit(label, proba[at, :10] / max(float(proba[at, :10].sum()), 1e-12), box)
        out.append(d._replace(confidence=float(proba[at, label])))
    return tuple(out)
