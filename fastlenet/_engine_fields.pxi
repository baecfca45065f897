# The fields search (csrc/fields.c): fields of digits -> candidate segments -> the best path.
# Included by _engine.pyx after _engine_preprocess.pxi (fl_image, _describe, INVERT_CODES).
from libc.stdint cimport int64_t

cdef extern from "fastlenet.h" nogil:
    enum:
        FL_FIELD_MAX_PIECES, FL_FIELD_MAX_SEGMENTS, FL_FIELD_PAIR, FL_FIELD_STRIP_H,
        FL_FIELD_STRIP_DIGIT, FL_FIELD_STRIP_MAX, FL_FIELD_TEXT
    ctypedef struct fl_segment:
        int p0, p1
        int x0, y0, x1, y1
        int whole, cell, split
        float shape
    ctypedef struct fl_field:
        int pieces, segments
        float height
        int ink_is_light
        int truncated
        int strip_width
        float piece_ink[FL_FIELD_MAX_PIECES]
        float piece_x[FL_FIELD_MAX_PIECES]
        int piece_box[FL_FIELD_MAX_PIECES][4]
    ctypedef struct fl_search_params:
        float digit_cost, split_cost, shape_cost, skip_cost, pair_cost
        int min_len, max_len
    int fl_field_segments(const fl_image *fields, size_t n, int size, int invert,
                          int light_on_dark, unsigned char *inputs, fl_segment *segs,
                          fl_field *info, unsigned char *strips, int num_threads)
    int fl_field_search(const fl_field *info, const fl_segment *segs, size_t n,
                        const float *proba, const float *pair_logp, const float *pair_proba,
                        const signed char *texts, const int64_t *first, int classes,
                        const fl_search_params *params, int *path, int *narcs, float *logp,
                        float *score, float *skipped, int *met)

FIELD_MAX_PIECES = FL_FIELD_MAX_PIECES
FIELD_PAIR = FL_FIELD_PAIR
FIELD_STRIP_H = FL_FIELD_STRIP_H
FIELD_STRIP_DIGIT = FL_FIELD_STRIP_DIGIT
FIELD_STRIP_MAX = FL_FIELD_STRIP_MAX
FIELD_TEXT = FL_FIELD_TEXT
# fl_segment as numpy sees it (the C struct: 9 ints and a float, no padding)
SEGMENT_DTYPE = np.dtype([("p0", np.int32), ("p1", np.int32), ("x0", np.int32),
                          ("y0", np.int32), ("x1", np.int32), ("y1", np.int32),
                          ("whole", np.int32), ("cell", np.int32), ("split", np.int32),
                          ("shape", np.float32)])
assert SEGMENT_DTYPE.itemsize == sizeof(fl_segment)


def _field_segments(list images, list scales, int size, str invert, bint light_on_dark,
                    int num_threads, bint strips=False):
    """Candidate digit segments of each field (2-D native-endian uint8/uint16/float32/float64
    arrays, checked by the caller) -> (inputs, segs, counts, heights): inputs uint8 (M, size,
    size) the segments' model inputs, field after field; segs their SEGMENT_DTYPE records;
    counts (n, 3) int32 pieces, segments and truncated (1: more blobs than the bound) per field; heights float32 (n,); ink (n, pieces)
    float32 each piece's ink in typical digits. strips=True adds (strips, widths, piece_x):
    uint8 (n, FIELD_STRIP_H, FIELD_STRIP_MAX) each field's strip of light ink, the first
    widths[i] columns of it set (0: none); float32 (n, FIELD_MAX_PIECES) each piece's centre
    of ink there; int32 (n, FIELD_MAX_PIECES, 4) each piece's box in the image's pixels."""
    cdef Py_ssize_t n = len(images), i, k, total = 0
    cdef int inv = INVERT_CODES[invert], rc
    cdef cnp.ndarray a
    cdef fl_image *desc = <fl_image *>malloc(max(n, 1) * sizeof(fl_image))
    cdef size_t plane = <size_t>size * size
    if desc == NULL:
        raise MemoryError("fields: cannot allocate the batch descriptors")
    buf = np.empty((max(n, 1) * FL_FIELD_MAX_SEGMENTS, size, size), np.uint8)
    segs = np.empty(max(n, 1) * FL_FIELD_MAX_SEGMENTS, SEGMENT_DTYPE)
    info = np.zeros(max(n, 1) * sizeof(fl_field), np.uint8)
    cdef unsigned char *bp = <unsigned char *>cnp.PyArray_DATA(buf)
    cdef fl_segment *sp = <fl_segment *>cnp.PyArray_DATA(segs)
    cdef fl_field *ip = <fl_field *>cnp.PyArray_DATA(info)
    sbuf = np.empty((max(n, 1) if strips else 0, FL_FIELD_STRIP_H, FL_FIELD_STRIP_MAX), np.uint8)
    cdef unsigned char *stp = <unsigned char *>cnp.PyArray_DATA(sbuf) if strips else NULL
    try:
        for i in range(n):
            a = <cnp.ndarray?>images[i]
            if cnp.PyArray_NDIM(a) != 2:
                raise ValueError(f"images[{i}]: expected a 2-D array; got shape {np.shape(a)}")
            _describe(&desc[i], a, 0, f"images[{i}]", <const char *>cnp.PyArray_DATA(a),
                      scales[i])
        with nogil:
            rc = fl_field_segments(desc, <size_t>n, size, inv, light_on_dark, bp, sp, ip,
                                   stp, num_threads)
    finally:
        free(desc)
    if rc == FL_ERR_NOMEM:
        raise MemoryError("fields: out of memory")
    if rc != FL_OK:
        raise ValueError(f"fields: invalid arguments (engine error {rc})")
    counts = np.empty((n, 3), np.int32)
    heights = np.empty(n, np.float32)
    ink = np.zeros((n, FL_FIELD_MAX_PIECES), np.float32)
    keep = []
    for i in range(n):
        counts[i, 0] = ip[i].pieces
        counts[i, 1] = ip[i].segments
        counts[i, 2] = ip[i].truncated
        heights[i] = ip[i].height
        for k in range(ip[i].pieces):
            ink[i, k] = ip[i].piece_ink[k]
        if ip[i].segments:
            keep.append(np.arange(i * FL_FIELD_MAX_SEGMENTS,
                                  i * FL_FIELD_MAX_SEGMENTS + ip[i].segments))
    rows = np.concatenate(keep) if keep else np.zeros(0, np.intp)
    if not strips:
        return buf[rows], segs[rows], counts, heights, ink
    widths = np.zeros(n, np.int32)
    piece_x = np.zeros((n, FL_FIELD_MAX_PIECES), np.float32)
    piece_box = np.zeros((n, FL_FIELD_MAX_PIECES, 4), np.int32)
    for i in range(n):
        widths[i] = ip[i].strip_width
        for k in range(ip[i].pieces):
            piece_x[i, k] = ip[i].piece_x[k]
            for c in range(4):
                piece_box[i, k, c] = ip[i].piece_box[k][c]
    return buf[rows], segs[rows], counts, heights, ink, (sbuf[:n], widths, piece_x, piece_box)


def _field_search(segs, counts, ink, proba, float digit_cost, float split_cost,
                  float shape_cost, float skip_cost, int min_len, int max_len, pair_logp=None,
                  float pair_cost=0, texts=None, pair_proba=None):
    """The best path through each field's segments (as _field_segments gave them, scored by
    proba: float32 (M, K); pair_logp: None, or float32 (M,) each segment's log-probability as
    two digits, -inf where it may not be read so) -> (path (n, FIELD_MAX_PIECES) int32
    indices into segs, FIELD_PAIR set on a segment read as two digits; arcs per field; logp;
    skipped ink; met; score). texts: None, or one string of digits per field that the path
    must read (then pair_proba, float32 (M, 100+), the pair readers' probabilities, is needed
    with pair_logp; min_len and max_len are not used)."""
    cdef Py_ssize_t n = len(counts), i, k, off = 0
    cdef fl_search_params prm
    prm.pair_cost = pair_cost
    prm.digit_cost = digit_cost
    prm.split_cost = split_cost
    prm.shape_cost = shape_cost
    prm.skip_cost = skip_cost
    prm.min_len = min_len
    prm.max_len = max_len
    proba = np.ascontiguousarray(proba, np.float32)
    if proba.ndim != 2 or len(proba) != len(segs):
        raise ValueError("fields: one row of probabilities per segment expected")
    if pair_logp is not None:
        pair_logp = np.ascontiguousarray(pair_logp, np.float32)
        if pair_logp.shape != (len(segs),):
            raise ValueError("fields: one pair log-probability per segment expected")
    tx = None
    if texts is not None:
        if len(texts) != n:
            raise ValueError("fields: one text per field expected")
        tx = np.full((max(n, 1), FL_FIELD_TEXT), -1, np.int8)
        for i, t in enumerate(texts):
            if len(t) >= FL_FIELD_TEXT or not (t.isdigit() or t == "") or not t.isascii():
                raise ValueError(f"fields: texts[{i}]: expected up to {FL_FIELD_TEXT - 1} "
                                 f"digits; got {t!r}")
            tx[i, :len(t)] = np.frombuffer(t.encode(), np.uint8) - 48
        if pair_logp is not None:
            if pair_proba is None:
                raise ValueError("fields: texts with pair_logp need pair_proba")
            pair_proba = np.ascontiguousarray(np.asarray(pair_proba)[:, :100], np.float32)
            if pair_proba.shape != (len(segs), 100):
                raise ValueError("fields: 100 pair probabilities per segment expected")
    counts = np.asarray(counts)
    if n and (counts[:, 0].min() < 0 or counts[:, 0].max() > FL_FIELD_MAX_PIECES
              or counts[:, 1].min() < 0 or counts[:, 1].max() > FL_FIELD_MAX_SEGMENTS
              or counts[:, 1].sum() != len(segs)):
        raise ValueError("fields: piece or segment counts out of range")
    info = np.zeros(max(n, 1) * sizeof(fl_field), np.uint8)
    full = np.zeros(max(n, 1) * FL_FIELD_MAX_SEGMENTS, SEGMENT_DTYPE)
    first = np.zeros(max(n, 1), np.int64)
    cdef fl_field *ip = <fl_field *>cnp.PyArray_DATA(info)
    for i in range(n):
        ip[i].pieces = counts[i, 0]
        ip[i].segments = counts[i, 1]
        for k in range(counts[i, 0]):
            ip[i].piece_ink[k] = ink[i, k]
        full[i * FL_FIELD_MAX_SEGMENTS:i * FL_FIELD_MAX_SEGMENTS + counts[i, 1]] = \
            segs[off:off + counts[i, 1]]
        first[i] = off
        off += counts[i, 1]
    path = np.zeros((max(n, 1), FL_FIELD_MAX_PIECES), np.int32)
    nd = np.zeros(max(n, 1), np.int32)
    lp = np.zeros(max(n, 1), np.float32)
    sk = np.zeros(max(n, 1), np.float32)
    sc = np.zeros(max(n, 1), np.float32)
    met = np.zeros(max(n, 1), np.int32)
    cdef int rc
    cdef int classes = proba.shape[1]
    cdef fl_segment *fp = <fl_segment *>cnp.PyArray_DATA(full)
    cdef const float *pp = <float *>cnp.PyArray_DATA(proba) if len(proba) else \
        <float *>cnp.PyArray_DATA(lp)
    cdef const float *plp = NULL
    if pair_logp is not None and len(pair_logp):
        plp = <float *>cnp.PyArray_DATA(pair_logp)
    cdef int64_t *firstp = <int64_t *>cnp.PyArray_DATA(first)
    cdef int *pathp = <int *>cnp.PyArray_DATA(path)
    cdef int *ndp = <int *>cnp.PyArray_DATA(nd)
    cdef int *metp = <int *>cnp.PyArray_DATA(met)
    cdef float *lpp = <float *>cnp.PyArray_DATA(lp)
    cdef float *skp = <float *>cnp.PyArray_DATA(sk)
    cdef float *scp = <float *>cnp.PyArray_DATA(sc)
    cdef const float *ppp = NULL
    cdef const signed char *txp = NULL
    if tx is not None:
        txp = <signed char *>cnp.PyArray_DATA(tx)
        if pair_proba is not None and len(pair_proba):
            ppp = <float *>cnp.PyArray_DATA(pair_proba)
    with nogil:
        rc = fl_field_search(ip, fp, <size_t>n, pp, plp, ppp, txp, firstp, classes, &prm, pathp,
                             ndp, lpp, scp, skp, metp)
    if rc == FL_ERR_NOMEM:
        raise MemoryError("fields: out of memory in the search")
    if rc != FL_OK:
        raise ValueError(f"fields: invalid search arguments (engine error {rc})")
    return path[:n], nd[:n], lp[:n], sk[:n], met[:n], sc[:n]
