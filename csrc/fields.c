/* Fields of digits: an image holding a row of digits (a ZIP code, an amount, a comb of boxes)
 * -> candidate digit segments (fl_field_segments) -> the engine scores every segment (the
 * caller runs it) -> the best path of segments (fl_field_search). The method of LeNet-5's
 * paper (LeCun, Bottou, Bengio, Haffner 1998, sections V-VII): over-segment on purpose so that
 * the true cuts are among the candidates, and let the recognizer choose.
 *
 * Per field: gray levels -> Otsu threshold -> ink is the minority class (a thin stroke the
 * threshold broke into specks is mended by hysteresis) -> long straight
 * strokes (rule lines, underlines, the lines of comb boxes) removed, keeping the pixels where a
 * digit's stroke crosses them -> a slanted field (italic print, a slanted hand) deslanted ->
 * 8-connected components -> the digits' height (the median of
 * the large components), specks and line remnants dropped -> components stacked over each
 * other merged into blobs (broken digits) -> cuts through wide blobs: least-ink paths from
 * the top to the bottom near minima of the column profile, free to run sideways between two
 * rows (under an overhang, along a serif), in a comb of boxes only where a blob spans a
 * wall -> pieces in reading order -> every run of 1..FL_FIELD_SPAN pieces
 * narrow enough to be one digit, preprocessed exactly as a picture of one digit
 * (preprocess.c), so the recognizer sees what it was trained on. The search reads at most one
 * digit per comb box. On request, the pieces' ink is also resampled into the field's strip
 * (fd_strip), for a reader slid along it that needs no cuts (fastlenet/fields.py); the search
 * can then be asked for its best path reading that reader's string (fl_field_search texts).
 *
 * Bounds: at most FL_FIELD_MAX_PIECES pieces (the largest blobs kept first, then the best
 * cuts), so a field of noise costs no more preprocessing and recognition than a long field.
 * Fields with a side above FD_MAX_SIDE are block-mean reduced first (scratch ~12 bytes per
 * reduced pixel, and ~10 more per pixel of a field of noise's components). Each field is computed by one thread: results do not depend on threads.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fastlenet.h"
#include "pool.h"
#include "preprocess.h"

#define FD_MAX_SIDE 1600
/* A horizontal run this many stroke widths long, FD_LINE_BAND text heights and
 * FD_LINE_TEXT_SW of the text's own stroke widths (a bold digit's bar is 3-4) is a line. */
#define FD_LINE_SW 12.0
#define FD_LINE_BAND 2.0
#define FD_LINE_TEXT_SW 6.0
/* The text band's height (rows) above which a field is read at a coarser scale, and the
 * height that scale aims at (digits of ~30 px: well above the model's 20-pixel box). */
#define FD_BAND_MAX 64
#define FD_BAND_TARGET 40
/* The least height (reduced pixels) of digits: below it, a field's "digits" are dots and dust. */
#define FD_MIN_HEIGHT 6
/* Box walls remembered (a comb of boxes: no digit spans two boxes). */
#define FD_MAX_WALLS 256
/* A comb's box is at most this many digit heights wide (a frame around a field is no box). */
#define FD_BOX_WIDE 2.0
/* A blob of more than FL_FIELD_SPAN pieces is a candidate whole up to this many heights wide. */
#define FD_WHOLE_WIDE 1.6
/* A blob this many heights wide holds two digits or more: its parts are fl_segment.split. */
#define FD_MULTI_WIDE 1.6
/* The quantile of a block's gray levels taken as its paper (fd_flatten). */
#define FD_PAPER_Q 0.5
/* Skews of scans undone, at most (degrees), and a degree in radians. */
#define FD_MAX_SKEW 6.0
#define FD_DEGREE 0.017453292519943295
/* slants tried for italic print and slanted hands (fd_deslant), degrees */
#define FD_MAX_SLANT 12.0
#define FD_SLANT_STEP 3.0
#define FD_MIN_SLANT 5.0  /* a smaller best slant is left alone */
#define FD_SLANT_GAIN 1.1 /* and one whose score is not this much above upright's */
/* Components kept at most (by ink) before blobs are formed. */
#define FD_MAX_KEEP 128
/* taps of the strip's resampling: its scale is at least FL_FIELD_STRIP_DIGIT / FD_BAND_MAX */
#define FD_STRIP_TAPS 16
/* A field whose ink gains at least this many joins, and this share of its components, from
 * the pixels halfway to the paper is a thin stroke broken by its threshold (fd_inkmap). */
#define FD_FRAG_JOINS 5
#define FD_FRAG_SHARE 0.3
/* A cut path strays at most this many columns from where it starts. */
#define FD_CUT_R 40
/* Blobs this many heights wide get cuts from a grid as well as from the profile's minima:
 * most blobs between 1 and 1.15 heights are one wide digit, and their grid cuts were 6% of
 * all candidates and read no field better on validation */
#define FD_GRID_WIDE 1.15
/* Blobs this many heights wide are cut at all; below one height, at FD_NARROW_CUTS minima at
 * most. Two touching digits that overlap much are under one height wide: with no cut there,
 * every read of such a pair was one digit. */
#define FD_CUT_WIDE 0.8
#define FD_NARROW_CUTS 2

static int imax(int a, int b) { return a > b ? a : b; }
static int imin(int a, int b) { return a < b ? a : b; }

/* The eight bytes at p (any alignment) as one word: zero when all are. */
static uint64_t word8(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static int cmp_int(const void *a, const void *b) {
    const int p = *(const int *)a, q = *(const int *)b;
    return (p > q) - (p < q);
}

typedef struct {
    int x0, y0, x1, y1; /* inclusive */
    int count;
    double mass;
    int blob;
    int lined; /* touches a removed line or wall: the removal may have cut it */
    int frame; /* a box drawn around a digit (fd_frames) */
} fd_comp;

typedef struct {
    int blob;           /* its pixels: the blob's between two of its cuts */
    int x0, y0, x1, y1; /* their box, inclusive */
    double mass, sx;    /* ink, and ink times column (its centre: sx / mass) */
    float cx;
} fd_piece;

/* Scratch kept from field to field of a thread's run, so that a field's pages are not cleared
 * by the kernel again for the next one: per pixel, and for the cut paths. */
typedef struct {
    unsigned char *q, *m;
    uint16_t *run;
    int32_t *lab, *stack;
    size_t cap;
    int *cols;
    size_t cols_cap;
    float *dp;
    signed char *mv;
    size_t dp_cap;
} fd_buffers;

typedef struct {
    const fl_image *im;
    fd_buffers *buf;
    int H, W, f, h, w;
    size_t n;
    unsigned char *q;    /* gray, 256 levels */
    unsigned char *m;    /* 1 ink, 2 a removed line, 0 paper; at the end each pixel's piece */
    uint16_t *run;       /* horizontal run length through each ink pixel */
    int32_t *lab, *stack;
    float ink[256];      /* ink strength of each gray level */
    int thr, light;
    double sw, band;     /* stroke width, text band height */
    double text_sw;      /* the strokes' width without the runs across rule lines */
    int maxrun;          /* the longest horizontal run of ink */
    int walls[FD_MAX_WALLS], nwalls; /* columns of removed box walls, ascending */
    fd_comp *comps;
    int ncomp;
    int *keep, nkeep;    /* indices into comps */
    int nkeep_dropped;   /* more than FD_MAX_KEEP components were large enough to keep */
    int nblob;
    fd_comp blobs[FD_MAX_KEEP];
    fd_piece pieces[FL_FIELD_MAX_PIECES];
    int npieces;
    struct fd_cut_s *cuts; /* accepted first (ncuts); their columns in buf->cols */
    int ncuts;
    int truncated;
    double height, typical;
    int paper;           /* the gray level of paper */
    double skew;         /* deskewed: tan of the lines' slope (0: not), and the margins */
    int w0, h0, pv, ph;  /* added (rows, columns) around the field of w0 x h0 */
    double slant;        /* deslanted: columns moved by (y - h / 2) slant + sph (0: not) */
    int sph;
    int comb;            /* the walls make a comb of boxes about a digit wide */
    double boxw;         /* then their median width */
} fd_state;

static void fd_free(fd_state *st) { /* what one field allocated (not the fd_buffers) */
    free(st->comps); free(st->keep); free(st->cuts);
}

static double median_hist(const size_t *hist, int len, size_t total) {
    size_t acc = 0;
    for (int i = 0; i < len; i++) {
        acc += hist[i];
        if (2 * acc >= total) return i;
    }
    return len - 1;
}

/* Uneven light (a page lit from one side, a phone's shadow): one threshold for the whole field
 * loses the strokes in its dark end. On light paper (dark paper is turned over first, and
 * back after: a field and its negative read the same), each block half the field's height
 * wide gives its paper level (its FD_PAPER_Q quantile); a plane through them, fitted again
 * without the blocks far below it (mostly ink: a tight crop, a bold digit), is the light.
 * Where it varies across the field, each pixel is scaled by ref / plane so the paper is even.
 * Fills hist with the levels of q as it leaves. */
static void fd_flatten(fd_state *st, size_t *hist) {
    const int h = st->h, w = st->w, B = imax(8, h / 2);
    const int gy = (h + B - 1) / B, gx = (w + B - 1) / B, nb = gy * gx;
    /* per block row: histograms of even and odd columns apart (two counters of one level
     * are not one chain of increments: paper repeats its level) */
    uint32_t *bh = malloc((size_t)2 * gx * 256 * sizeof *bh);
    float *bv = malloc((size_t)nb * 5 * sizeof *bv); /* level, its mirror, centre x, y, kept */
    memset(hist, 0, 256 * sizeof *hist);
    if (!bh || !bv) { /* out of memory: the field as it is */
        free(bh); free(bv);
        for (size_t i = 0; i < st->n; i++) hist[st->q[i]]++;
        return;
    }
    for (int by = 0; by < gy; by++) {
        const int ye = imin(h, (by + 1) * B);
        memset(bh, 0, (size_t)2 * gx * 256 * sizeof *bh);
        for (int y = by * B; y < ye; y++) {
            const unsigned char *r = st->q + (size_t)y * w;
            for (int bx = 0; bx < gx; bx++) {
                uint32_t *h0 = bh + (size_t)bx * 512, *h1 = h0 + 256;
                int x = bx * B;
                const int xe = imin(w, x + B);
                for (; x + 1 < xe; x += 2) { h0[r[x]]++; h1[r[x + 1]]++; }
                if (x < xe) h0[r[x]]++;
            }
        }
        for (int bx = 0; bx < gx; bx++) {
            const int b = by * gx + bx, xe = imin(w, (bx + 1) * B);
            uint32_t *h0 = bh + (size_t)bx * 512;
            for (int v = 0; v < 256; v++) { h0[v] += h0[256 + v]; hist[v] += h0[v]; }
            /* the FD_PAPER_Q quantile from below (light paper) and from above (dark paper,
             * its mirror: a field's negative gets the same levels) */
            const double want = FD_PAPER_Q * (double)(ye - by * B) * (double)(xe - bx * B);
            int lo = 0, hi = 255;
            for (double acc = h0[0]; acc < want && lo < 255;) acc += h0[++lo];
            for (double acc = h0[255]; acc < want && hi > 0;) acc += h0[--hi];
            bv[5 * b] = (float)lo;
            bv[5 * b + 1] = (float)(255 - hi);
            bv[5 * b + 2] = 0.5f * (bx * B + xe) - 0.5f * w; /* centre, from the field's */
            bv[5 * b + 3] = 0.5f * (by * B + ye) - 0.5f * h;
            bv[5 * b + 4] = 1;
        }
    }
    free(bh);
    const int dark_paper = median_hist(hist, 256, st->n) < 128;
    const int flip = dark_paper ? 255 : 0; /* v ^ 255 == 255 - v */
    for (int b = 0; b < nb; b++) { /* packed: level, centre x, centre y, kept */
        bv[4 * b] = bv[5 * b + dark_paper];
        bv[4 * b + 1] = bv[5 * b + 2];
        bv[4 * b + 2] = bv[5 * b + 3];
        bv[4 * b + 3] = bv[5 * b + 4];
    }
    if (nb < 3) { free(bv); return; }
    double pa = 0, pb = 0, pc = 0; /* the plane: pa + pb (x - w/2) + pc (y - h/2) */
    int kept = nb;
    for (int it = 0; it < 3; it++) {
        double m[3][4] = {{0}};
        for (int b = 0; b < nb; b++) {
            if (!bv[4 * b + 3]) continue;
            const double u[3] = {1, bv[4 * b + 1], bv[4 * b + 2]};
            for (int i = 0; i < 3; i++) {
                for (int j = 0; j < 3; j++) m[i][j] += u[i] * u[j];
                m[i][3] += u[i] * bv[4 * b];
            }
        }
        /* one row or one column of blocks: no slope across it */
        if (gx < 2) { m[1][1] = 1; m[0][1] = m[1][0] = m[1][2] = m[2][1] = m[1][3] = 0; }
        if (gy < 2) { m[2][2] = 1; m[0][2] = m[2][0] = m[1][2] = m[2][1] = m[2][3] = 0; }
        for (int i = 0; i < 3; i++) { /* Gauss-Jordan, pivoting on the diagonal */
            if (fabs(m[i][i]) < 1e-9) { free(bv); return; }
            for (int r = 0; r < 3; r++) {
                if (r == i) continue;
                const double f = m[r][i] / m[i][i];
                for (int c = i; c < 4; c++) m[r][c] -= f * m[i][c];
            }
        }
        pa = m[0][3] / m[0][0]; pb = m[1][3] / m[1][1]; pc = m[2][3] / m[2][2];
        int changed = 0;
        for (int b = 0; b < nb; b++) {
            const int keep = bv[4 * b] >= pa + pb * bv[4 * b + 1] + pc * bv[4 * b + 2] - 10;
            if (bv[4 * b + 3] && !keep) { bv[4 * b + 3] = 0; kept--; changed = 1; }
        }
        if (!changed || kept < 3) break;
    }
    /* the blocks' levels, those mostly ink replaced by the plane's; bilinear between the
     * block centres (the light need not be a plane: a scan's corners, a fold) */
    float lo = 1e9f, hi = -1e9f;
    for (int b = 0; b < nb; b++) {
        if (!bv[4 * b + 3])
            bv[4 * b] = (float)(pa + pb * bv[4 * b + 1] + pc * bv[4 * b + 2]);
        lo = fminf(lo, bv[4 * b]);
        hi = fmaxf(hi, bv[4 * b]);
    }
    if (kept < 3 || hi - lo < 12 || pa < 16) { free(bv); return; }
    /* per column: its two block columns and weight; per row: the light, then the scale */
    int *cx = malloc((size_t)w * 2 * sizeof *cx);
    float *ax = malloc((size_t)w * 2 * sizeof *ax), *scale = ax + w;
    if (!cx || !ax) { free(cx); free(ax); free(bv); return; } /* the field as it is */
    for (int x = 0; x < w; x++) {
        const double fx = fmin(fmax((x + 0.5) / B - 0.5, 0.0), gx - 1.0);
        cx[x] = (int)fx;
        cx[w + x] = imin(gx - 1, cx[x] + 1);
        ax[x] = (float)(fx - cx[x]);
    }
    memset(hist, 0, 256 * sizeof *hist);
    for (int y = 0; y < h; y++) {
        const double fy = fmin(fmax((y + 0.5) / B - 0.5, 0.0), gy - 1.0);
        const int y0 = (int)fy, y1 = imin(gy - 1, y0 + 1);
        const float ay = (float)(fy - y0);
        const float *t0 = bv + 4 * (y0 * gx), *t1 = bv + 4 * (y1 * gx);
        for (int x = 0; x < w; x++) {
            const float a = t0[4 * cx[x]] + ax[x] * (t0[4 * cx[w + x]] - t0[4 * cx[x]]);
            const float b = t1[4 * cx[x]] + ax[x] * (t1[4 * cx[w + x]] - t1[4 * cx[x]]);
            scale[x] = (float)pa / fmaxf(8.0f, a + ay * (b - a));
        }
        unsigned char *r = st->q + (size_t)y * w;
        for (int x = 0; x < w; x++) {
            const float v = (float)(r[x] ^ flip) * scale[x];
            r[x] = (unsigned char)((v > 255.0f ? 255 : (int)(v + 0.5f)) ^ flip);
            hist[r[x]]++;
        }
    }
    free(cx); free(ax); free(bv);
}

/* Four times the share of a 2x2 window (bits: top left, bottom left, top right, bottom right)
 * in the Euler number (components less holes) of 8-connected ink: Gray's bit quads,
 * E = (Q1 - Q3 - 2 QD) / 4. */
static const signed char euler_quad[16] = {0, 1, 1, 0, 1, 0, -2, -1, 1, -2, 0, -1, 0, -1, -1, 0};

/* The ink map: the pixels on the ink's side of the threshold. A thin light stroke (a hairline
 * font, a pale pen) whose pixels straddle the threshold breaks into specks when the field
 * also holds something much darker (a rule line, dirt): Otsu's threshold then falls between
 * the paper and the dark things. Such a field is recognised by its Euler number: adding the
 * weak pixels (halfway from the threshold to the paper) takes at least FD_FRAG_JOINS
 * components, and FD_FRAG_SHARE of them, away. Then, as in hysteresis, weak pixels that touch
 * ink join it. Only then: a weak halo everywhere would bridge tight print and the noise of
 * scans, and widen every digit's box (measured: tight print -0.03, scans -0.02). */
static void fd_inkmap(fd_state *st) {
    unsigned char *m = st->m; /* locals: a store to m[i] could alias st's fields */
    const unsigned char *q = st->q;
    const int light = st->light, thr = st->thr, h = st->h, w = st->w;
    const size_t n = st->n;
    /* halfway to the paper, worked out in dark ink's levels (there a light-ink field's level
     * v is 255 - v, and ink above thr is ink at or below 254 - thr): a field and its negative
     * get the same band */
    const int td = light ? 254 - thr : thr, pd = light ? 255 - st->paper : st->paper;
    const int t2d = (int)floor(td + 0.5 * (pd - td) + 0.5), t2 = light ? 254 - t2d : t2d;
    if (light) { /* ink above thr; weak: (t2, thr] */
        for (size_t i = 0; i < n; i++) m[i] = q[i] > thr ? 1 : q[i] > t2 ? 2 : 0;
    } else {     /* ink at or below thr; weak: (thr, t2] */
        for (size_t i = 0; i < n; i++) m[i] = q[i] <= thr ? 1 : q[i] <= t2 ? 2 : 0;
    }
    /* four times the Euler number the weak pixels take away: only windows holding one count
     * (each once, from its first weak pixel in reading order) */
    long dj = 0;
    for (size_t s = 0; s < n; s++) {
        const unsigned char *hit = memchr(m + s, 2, n - s);
        if (!hit) break;
        s = (size_t)(hit - m);
        const int y = (int)(s / w), x = (int)(s % w);
        for (int wy = y - 1; wy <= y; wy++)
            for (int wx = x - 1; wx <= x; wx++) {
                unsigned char v[4]; /* top left, top right, bottom left, bottom right */
                for (int k = 0; k < 4; k++) {
                    const int yy = wy + (k >> 1), xx = wx + (k & 1);
                    v[k] = yy >= 0 && yy < h && xx >= 0 && xx < w ? m[(size_t)yy * w + xx] : 0;
                }
                const int self = (y - wy) * 2 + (x - wx); /* this pixel's place in the window */
                int first = 0;
                while (v[first] != 2) first++;
                if (first != self) continue;
                const int bs = (v[0] == 1) | (v[2] == 1) << 1 | (v[1] == 1) << 2 | (v[3] == 1) << 3;
                const int bu = (v[0] != 0) | (v[2] != 0) << 1 | (v[1] != 0) << 2 | (v[3] != 0) << 3;
                dj += euler_quad[bs] - euler_quad[bu];
            }
    }
    const long joins = dj / 4;
    long comps = 0;
    if (joins >= FD_FRAG_JOINS) { /* the ink's own Euler number, for the share */
        long es = 0;
        for (int y = -1; y < h; y++) {
            const unsigned char *r0 = y >= 0 ? m + (size_t)y * w : NULL;
            const unsigned char *r1 = y + 1 < h ? m + (size_t)(y + 1) * w : NULL;
            int ps = 0; /* the previous column's bits (top, bottom) */
            for (int x = 0; x <= w; x++) {
                const int a = x < w && r0 ? r0[x] == 1 : 0, b = x < w && r1 ? r1[x] == 1 : 0;
                const int cs = a | b << 1;
                es += euler_quad[ps | cs << 2];
                ps = cs;
            }
        }
        comps = es / 4;
    }
    if (joins >= FD_FRAG_JOINS && comps >= FD_FRAG_JOINS && joins >= FD_FRAG_SHARE * comps) {
        int32_t *stack = st->stack;
        for (size_t s = 0; s < n; s++) {
            const unsigned char *hit = memchr(m + s, 2, n - s);
            if (!hit) break;
            s = (size_t)(hit - m);
            const int y = (int)(s / w), x = (int)(s % w);
            int touch = 0;
            for (int yy = imax(0, y - 1); yy <= imin(h - 1, y + 1) && !touch; yy++)
                for (int xx = imax(0, x - 1); xx <= imin(w - 1, x + 1); xx++)
                    if (m[(size_t)yy * w + xx] == 1) { touch = 1; break; }
            if (!touch) continue;
            m[s] = 1;
            size_t sp = 0;
            stack[sp++] = (int32_t)s;
            while (sp) { /* each pixel is pushed once: the stack holds n */
                const int32_t p = stack[--sp];
                const int py = p / w, px = p % w;
                for (int yy = imax(0, py - 1); yy <= imin(h - 1, py + 1); yy++)
                    for (int xx = imax(0, px - 1); xx <= imin(w - 1, px + 1); xx++) {
                        const size_t r = (size_t)yy * w + xx;
                        if (m[r] == 2) { m[r] = 1; stack[sp++] = (int32_t)r; }
                    }
            }
        }
    }
    for (size_t i = 0; i < n; i++) m[i] = m[i] == 1;
}

/* Gray levels (block means when reduced), their histogram, the Otsu threshold and the ink
 * strength of each level. Returns 0 for a blank field. */
static int fd_gray(fd_state *st, int invert) {
    const fl_image *im = st->im;
    const int H = st->H, W = st->W, f = st->f, h = st->h, w = st->w;
    const char *base = (const char *)im->data;
    size_t hist[256]; /* filled by fd_flatten */
    if (f == 1 && im->dtype == FL_PIX_U8) { /* 256 values: a table, the same arithmetic */
        unsigned char lut[256];
        for (int v = 0; v < 256; v++) {
            const unsigned char b = (unsigned char)v;
            lut[v] = (unsigned char)(int)floor(fl_unit_pixel((const char *)&b, FL_PIX_U8,
                                                            im->scale) * 255.0 + 0.5);
        }
        int same = im->stride_w == 1; /* 8-bit pixels at the usual scale: rows as they are */
        for (int v = 0; v < 256 && same; v++) same = lut[v] == v;
        for (int y = 0; y < h; y++) {
            const unsigned char *row = (const unsigned char *)(base + y * im->stride_h);
            unsigned char *qr = st->q + (size_t)y * w;
            if (same) memcpy(qr, row, (size_t)w);
            else for (int x = 0; x < w; x++) qr[x] = lut[row[x * im->stride_w]];
        }
    } else
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double sum = 0.0;
            int cnt = 0;
            for (int yy = y * f; yy < imin(H, y * f + f); yy++)
                for (int xx = x * f; xx < imin(W, x * f + f); xx++) {
                    sum += fl_unit_pixel(base + yy * im->stride_h + xx * im->stride_w,
                                         im->dtype, im->scale);
                    cnt++;
                }
            const int qv = (int)floor(sum / cnt * 255.0 + 0.5);
            st->q[(size_t)y * w + x] = (unsigned char)qv;
        }
    fd_flatten(st, hist);
    int thr;
    size_t above, below;
    double hi, lo;
    for (int pass = 0;; pass++) {
        thr = fl_otsu(hist);
        if (thr < 0) return 0;
        above = 0;
        double s_hi = 0, s_lo = 0;
        for (int v = 0; v < 256; v++) {
            if (v > thr) { above += hist[v]; s_hi += (double)hist[v] * v; }
            else s_lo += (double)hist[v] * v;
        }
        below = st->n - above;
        hi = s_hi / (double)above;
        lo = s_lo / (double)below;
        /* on the smoothed field (below) half the contrast: its grain is a third */
        if ((hi - lo) / 255.0 >= (pass ? 0.5 : 1.0) * FL_MIN_CONTRAST) break;
        /* faint ink in grainy paper: Otsu splits the grain. Once, the 3x3 mean of the field
         * is tried (grain averages out, strokes keep most of their level); a blank field
         * stays blank, as a blank digit does */
        if (pass || h < 3 || w < 3) return 0;
        unsigned char *tmp = st->m; /* free until the ink map */
        for (int y = 0; y < h; y++) {
            const unsigned char *r = st->q + (size_t)y * w;
            for (int x = 0; x < w; x++) {
                const int a = r[x > 0 ? x - 1 : x], b = r[x], c = r[x + 1 < w ? x + 1 : x];
                tmp[(size_t)y * w + x] = (unsigned char)((a + b + c + 1) / 3);
            }
        }
        memset(hist, 0, sizeof hist);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const int a = tmp[(size_t)(y > 0 ? y - 1 : y) * w + x];
                const int b = tmp[(size_t)y * w + x];
                const int c = tmp[(size_t)(y + 1 < h ? y + 1 : y) * w + x];
                const int v = (a + b + c + 1) / 3;
                st->q[(size_t)y * w + x] = (unsigned char)v;
                hist[v]++;
            }
    }
    /* ink is what there is less of: a field is mostly paper */
    st->light = invert == FL_INVERT_AUTO ? above < below : invert == FL_INVERT_YES;
    st->thr = thr;
    const double ink_level = st->light ? hi : lo, paper = st->light ? lo : hi;
    st->paper = (int)(paper + 0.5);
    for (int v = 0; v < 256; v++) {
        double t = (v - paper) / (ink_level - paper);
        st->ink[v] = (float)(t < 0 ? 0 : t > 1 ? 1 : t);
    }
    fd_inkmap(st);
    return 1;
}

/* Stroke width (the median ink run, across and along rows and columns) and the height of the
 * text band (rows holding short runs: lines excluded). */
static void fd_measure(fd_state *st) {
    const int h = st->h, w = st->w;
    st->maxrun = 0;
    size_t hist[256] = {0}, total = 0;
    for (int y = 0; y < h; y++) {
        const unsigned char *mr = st->m + (size_t)y * w;
        uint16_t *rr = st->run + (size_t)y * w;
        const unsigned char *hit;
        for (int x = 0; x < w && (hit = memchr(mr + x, 1, (size_t)(w - x))) != NULL;) {
            x = (int)(hit - mr); /* m is 0/1 here */
            int e = x;
            while (e < w && mr[e]) e++;
            const int len = e - x;
            for (int k = x; k < e; k++) rr[k] = (uint16_t)imin(len, 65535);
            st->maxrun = imax(st->maxrun, len);
            hist[imin(len, 255)]++;
            total++;
            x = e;
        }
    }
    /* vertical runs, row by row (a run per column in progress): rows are contiguous. A run
     * whose every pixel lies in a row's run as long as the field is high crosses a rule line
     * only: it counts in sw (the walls of a comb are removed by the lines' width) but not in
     * text_sw, marked by OWN. A long 1-pixel line under bold digits gave a thousand runs of
     * 1: sw 1, and their bars were removed as lines. */
    enum { OWN = 1 << 30 };
    size_t own_hist[256], own_total = total;
    memcpy(own_hist, hist, sizeof own_hist);
    int *vr = (int *)st->lab; /* free until the components */
    memset(vr, 0, (size_t)w * sizeof *vr);
    for (int y = 0; y <= h; y++) {
        const unsigned char *mr = st->m + (size_t)(y < h ? y : 0) * w;
        const uint16_t *rr = st->run + (size_t)(y < h ? y : 0) * w;
        for (int x = 0; x < w; x++) {
            if (x + 8 <= w && (y == h || !word8(mr + x)) &&
                !(vr[x] | vr[x + 1] | vr[x + 2] | vr[x + 3] | vr[x + 4] | vr[x + 5] | vr[x + 6] |
                  vr[x + 7])) {
                x += 7; /* paper, and no run in progress: nothing to count */
                continue;
            }
            if (y < h && mr[x]) { vr[x] = (vr[x] + 1) | (rr[x] < h ? OWN : 0); continue; }
            if (vr[x]) {
                const int len = imin(vr[x] & ~OWN, 255);
                hist[len]++;
                total++;
                if (vr[x] & OWN) { own_hist[len]++; own_total++; }
                vr[x] = 0;
            }
        }
    }
    st->sw = total ? median_hist(hist, 256, total) : 1.0;
    if (st->sw < 1) st->sw = 1;
    st->text_sw = fmax(1.0, own_total ? median_hist(own_hist, 256, own_total) : 1.0);
    /* rows by their count of short-run ink; the band: rows above a fifth of the busiest */
    int *cnt = (int *)st->stack, top = 0; /* stack is free until the components */
    const int short_run = (int)(6 * st->sw) + 1;
    for (int y = 0; y < h; y++) {
        int c = 0;
        const unsigned char *mr = st->m + (size_t)y * w;
        const uint16_t *rr = st->run + (size_t)y * w;
        for (int x = 0; x < w; x++) c += mr[x] & (rr[x] <= short_run); /* no branch: SIMD */
        cnt[y] = c;
        top = imax(top, c);
    }
    int band = 0;
    for (int y = 0; y < h; y++) band += top > 0 && 5 * cnt[y] >= top;
    st->band = band;
}

static int fd_reserve(fd_buffers *b, size_t n);

/* Rows of the points pts[0..np) (x in the low 16 bits, y above) after undoing a slope of t
 * (rows y - x t): how far the fullest row stands above the rows a few stroke widths off it
 * (a line is thin; digits fill many rows alike). bins and off: scratch of h + 2 pad and w. */
static int skew_peak(const fd_state *st, const int32_t *pts, int np, double t, int *bins,
                     int *off, int pad) {
    const int nb = st->h + 2 * pad, k = (int)(2 * st->sw) + 2;
    const double c = 0.5 * st->w;
    memset(bins, 0, (size_t)nb * sizeof *bins);
    /* a column's shift once per slope, not once per point (lround is a call) */
    for (int x = 0; x < st->w; x++) off[x] = pad - (int)lround((x - c) * t);
    for (int i = 0; i < np; i++) bins[(pts[i] >> 16) + off[pts[i] & 0xffff]]++;
    int peak = 0;
    for (int y = 0; y < nb; y++) {
        const int a = y >= k ? bins[y - k] : 0, b = y + k < nb ? bins[y + k] : 0;
        peak = imax(peak, bins[y] - (a > b ? a : b));
    }
    return peak;
}

/* A level a of the way from v0 to v1 (levels ^ flip: flip 255 for light ink, so a field and
 * its negative get the same level, where rounding halves up would otherwise differ). */
static unsigned char lerp_level(double v0, double v1, double a, int flip) {
    return (unsigned char)((int)(v0 + a * (v1 - v0) + 0.5) ^ flip);
}

/* Rows of q (h x w) moved: out (h x w2) column x2 reads q's column x2 - ph - (y - h/2) t,
 * linear between the two nearest pixels (lerp_level), paper outside. */
static void shear_rows(const unsigned char *q, int h, int w, double t, int ph, int paper,
                       int flip, unsigned char *out, int w2) {
    const double pv = paper ^ flip;
    for (int y = 0; y < h; y++) {
        /* a row moves as a whole: one whole shift and one weight */
        const double off = -(y - 0.5 * h) * t - ph, fo = floor(off), a = off - fo;
        const int o = (int)fo, in0 = imax(0, imin(w2, -o)), in1 = imax(in0, imin(w2, w - 1 - o));
        const unsigned char *r = q + (size_t)y * w;
        unsigned char *d = out + (size_t)y * w2;
        for (int x2 = in0; x2 < in1; x2++) { /* both pixels inside the row */
            d[x2] = lerp_level(r[x2 + o] ^ flip, r[x2 + o + 1] ^ flip, a, flip);
        }
        for (int x2 = in0 ? 0 : in1; x2 < w2; x2 = x2 + 1 == in0 ? in1 : x2 + 1) { /* ends */
            const int x = x2 + o;
            const double v0 = x >= 0 && x < w ? r[x] ^ flip : pv;
            const double v1 = x + 1 >= 0 && x + 1 < w ? r[x + 1] ^ flip : pv;
            d[x2] = lerp_level(v0, v1, a, flip);
        }
    }
}

/* A resampled field q2 (h2 x w2, malloc'd: freed here) becomes the field: the buffers grown
 * to hold it, its ink mapped again. FL_OK or FL_ERR_NOMEM. */
static int fd_take(fd_state *st, unsigned char *q2, int h2, int w2) {
    const size_t n2 = (size_t)h2 * w2;
    const int rc = fd_reserve(st->buf, n2);
    if (rc == FL_OK) {
        fd_buffers *b = st->buf;
        memcpy(b->q, q2, n2);
        st->q = b->q; st->m = b->m; st->run = b->run; st->lab = b->lab; st->stack = b->stack;
        st->h = h2; st->w = w2; st->n = n2;
        fd_inkmap(st);
    }
    free(q2);
    return rc;
}

/* A skewed scan: rule lines, underlines and comb boxes are found only when they run along the
 * rows. The slope whose rows hold the longest line (projection profiles, 1 degree then a
 * quarter, within +-FD_MAX_SKEW degrees, of the ink in horizontal runs of every other column);
 * when it holds a line across half the field and beats the rows as they are, the field is
 * turned straight by two shears (columns, then rows), on a canvas grown to hold it. Boxes are
 * mapped back (fd_to_source). FL_OK or FL_ERR_NOMEM. */
static int fd_deskew(fd_state *st) {
    const int h = st->h, w = st->w;
    if (w > 0xffff || h > 0x7fff) return FL_OK; /* not after FD_MAX_SIDE */
    const double lim = tan(FD_MAX_SKEW * FD_DEGREE);
    const int pad = (int)ceil(lim * w * 0.5) + 2, along = (int)(2 * st->sw) + 1;
    int32_t *pts = st->lab; /* free until the components */
    int np = 0;
    for (int y = 0; y < h; y++) { /* the even columns of long runs (m is 0/1 here) */
        const unsigned char *mr = st->m + (size_t)y * w, *hit;
        for (int x = 0; x < w && (hit = memchr(mr + x, 1, (size_t)(w - x))) != NULL;) {
            x = (int)(hit - mr);
            const int len = st->run[(size_t)y * w + x];
            if (len >= along)
                for (int k = x + (x & 1); k < x + len; k += 2) pts[np++] = (int32_t)((y << 16) | k);
            x += len;
        }
    }
    if (4 * np < w) return FL_OK; /* too little to make a line across half the field */
    int *bins = malloc((size_t)(h + 2 * pad + w) * sizeof *bins), *off = bins + h + 2 * pad;
    if (!bins) return FL_ERR_NOMEM;
    const int flat = skew_peak(st, pts, np, 0.0, bins, off, pad);
    double best_t = 0;
    int best = flat;
    for (int d = -(int)FD_MAX_SKEW; d <= (int)FD_MAX_SKEW; d++) {
        const double t = tan(d * FD_DEGREE);
        const int v = d ? skew_peak(st, pts, np, t, bins, off, pad) : flat;
        if (v > best) { best = v; best_t = t; }
    }
    const double coarse = atan(best_t) * (1.0 / FD_DEGREE);
    for (double d = coarse - 0.75; d <= coarse + 0.76; d += 0.25) {
        const double t = tan(d * FD_DEGREE);
        if (fabs(t) > lim || fabs(d - coarse) < 0.1) continue;
        const int v = skew_peak(st, pts, np, t, bins, off, pad);
        if (v > best) { best = v; best_t = t; }
    }
    free(bins);
    /* every other column counted: a line across half the field fills w / 4 */
    if (fabs(best_t) < tan(0.4 * FD_DEGREE) || 4 * best < w || 10 * best < 12 * flat)
        return FL_OK;
    const double t = best_t;
    const int pv = (int)ceil(fabs(t) * w * 0.5) + 1, h1 = h + 2 * pv;
    const int ph = (int)ceil(fabs(t) * h1 * 0.5) + 1, w2 = w + 2 * ph;
    const size_t n2 = (size_t)h1 * w2;
    /* linear between the two nearest pixels at each shear: nearest ones would leave steps
     * that break a line's rows into short runs */
    unsigned char *q1 = malloc((size_t)h1 * w), *q2 = malloc(n2);
    if (!q1 || !q2) { free(q1); free(q2); return FL_ERR_NOMEM; }
    const int flip = st->light ? 255 : 0;
    const double paper = st->paper ^ flip;
    for (int x = 0; x < w; x++) { /* columns moved: rows y - (x - w/2) t */
        const double off = (x - 0.5 * w) * t - pv;
        for (int y1 = 0; y1 < h1; y1++) {
            const double ys = y1 + off, fy = floor(ys), a = ys - fy;
            const int y = (int)fy;
            const double v0 = y >= 0 && y < h ? st->q[(size_t)y * w + x] ^ flip : paper;
            const double v1 = y + 1 >= 0 && y + 1 < h ? st->q[(size_t)(y + 1) * w + x] ^ flip
                                                      : paper;
            q1[(size_t)y1 * w + x] = lerp_level(v0, v1, a, flip);
        }
    }
    /* rows moved: columns x + (y - h/2) t */
    shear_rows(q1, h1, w, t, ph, st->paper, flip, q2, w2);
    free(q1);
    const int rc = fd_take(st, q2, h1, w2);
    if (rc == FL_OK) { st->skew = t; st->w0 = w; st->h0 = h; st->pv = pv; st->ph = ph; }
    return rc;
}

/* Italic print and slanted handwriting: glyphs that lean share columns with their neighbours,
 * so upright cuts cannot part them. The slant whose columns hold the most unbroken vertical
 * strokes (the squared heights of columns whose ink is one run: Vinciarelli and Luettin 2001),
 * within +-FD_MAX_SLANT degrees, when it beats upright by a margin, is undone by moving each
 * row (rows, and so rule lines, stay whole). FL_OK or FL_ERR_NOMEM. */
static int fd_deslant(fd_state *st) {
    const int h = st->h, w = st->w;
    if (w > 0x7fff || h > 0x7fff || h < 2) return FL_OK;
    const double yc = 0.5 * h, lim = tan(FD_MAX_SLANT * FD_DEGREE);
    const int pad = (int)ceil(lim * yc) + 2, wp = w + 2 * pad;
    int32_t *pts = st->lab; /* free until the components */
    int np = 0;
    for (int y = 0; y < h; y++) {
        const unsigned char *mr = st->m + (size_t)y * w, *hit;
        for (int x = 0; x < w && (hit = memchr(mr + x, 1, (size_t)(w - x))) != NULL; x++) {
            x = (int)(hit - mr);
            pts[np++] = (int32_t)((y << 16) | x);
        }
    }
    if (np < 4 * h) return FL_OK;
    int *cnt = malloc((3 * (size_t)wp + h) * sizeof *cnt);
    if (!cnt) return FL_ERR_NOMEM;
    int *lo = cnt + wp, *hi = lo + wp, *off = hi + wp;
    double flat = 0, best = 0, best_s = 0;
    const int steps = (int)(FD_MAX_SLANT / FD_SLANT_STEP);
    for (int d = -steps; d <= steps; d++) {
        const double s = tan(d * FD_SLANT_STEP * FD_DEGREE);
        for (int y = 0; y < h; y++) off[y] = pad + (int)lround((y - yc) * s);
        memset(cnt, 0, (size_t)wp * sizeof *cnt);
        for (int i = 0; i < np; i++) { /* the points come row by row: y never falls */
            const int y = pts[i] >> 16, c = (pts[i] & 0xffff) + off[y];
            if (!cnt[c]++) lo[c] = y;
            hi[c] = y;
        }
        double sc = 0;
        for (int c = 0; c < wp; c++)
            if (cnt[c] && hi[c] - lo[c] + 1 == cnt[c]) sc += (double)cnt[c] * cnt[c];
        if (d == 0) flat = sc;
        if (sc > best) { best = sc; best_s = s; }
    }
    free(cnt);
    /* noise has unbroken columns at every slant, but short ones: their squares sum to a few
     * hundredths of its pixels (text's: several times them) */
    if (fabs(best_s) < tan(FD_MIN_SLANT * FD_DEGREE) || best < FD_SLANT_GAIN * flat ||
        best < 0.5 * np)
        return FL_OK;
    const double s = best_s;
    const int ph = (int)ceil(fabs(s) * yc) + 1, w2 = w + 2 * ph;
    const size_t n2 = (size_t)h * w2;
    unsigned char *q2 = malloc(n2);
    if (!q2) return FL_ERR_NOMEM;
    shear_rows(st->q, h, w, s, ph, st->paper, st->light ? 255 : 0, q2, w2);
    const int rc = fd_take(st, q2, h, w2);
    if (rc == FL_OK) { st->slant = s; st->sph = ph; }
    return rc;
}

/* A box of the deskewed, reduced field (before any deslant: fd_segments undoes that from the
 * pixels), x1 and y1 exclusive -> the box in the source image's pixels. */
static void fd_to_source(const fd_state *st, double bx0, double by0, double bx1, double by1,
                         int *out) {
    if (st->skew != 0) { /* the corners, sheared back */
        const double t = st->skew, h1 = st->h0 + 2 * st->pv;
        double lo_x = 1e30, lo_y = 1e30, hi_x = -1e30, hi_y = -1e30;
        for (int k = 0; k < 4; k++) {
            const double cx = k & 1 ? bx1 : bx0, cy = k & 2 ? by1 : by0;
            const double x = cx - st->ph - (cy - 0.5 * h1) * t;
            const double y = cy - st->pv + (x - 0.5 * st->w0) * t;
            lo_x = fmin(lo_x, x); hi_x = fmax(hi_x, x);
            lo_y = fmin(lo_y, y); hi_y = fmax(hi_y, y);
        }
        bx0 = lo_x; by0 = lo_y; bx1 = hi_x; by1 = hi_y;
    }
    const int ws = st->skew != 0 ? st->w0 : st->w - 2 * st->sph;
    const int hs = st->skew != 0 ? st->h0 : st->h;
    bx0 = fmax(0, floor(bx0)); by0 = fmax(0, floor(by0));
    bx1 = fmin(ws, ceil(bx1)); by1 = fmin(hs, ceil(by1));
    const int f = st->f;
    out[0] = imin(st->W - 1, (int)bx0 * f);
    out[1] = imin(st->H - 1, (int)by0 * f);
    out[2] = imax(out[0] + 1, imin(st->W, (int)bx1 * f));
    out[3] = imax(out[1] + 1, imin(st->H, (int)by1 * f));
}

/* Long horizontal strokes, then (if there were any) the vertical strokes that join them (the
 * walls of comb boxes): removed, except where a digit's stroke crosses them. */
static int fd_lines(fd_state *st) {
    const int h = st->h, w = st->w;
    unsigned char *m = st->m;
    const double min_len = fmax(fmax(FD_LINE_SW * st->sw, FD_LINE_BAND * st->band),
                                FD_LINE_TEXT_SW * st->text_sw);
    const int own = imax((int)(2 * st->sw) + 1, (int)(0.4 * min_len));
    int found = 0, marked = 0, ylo = h, yhi = -1; /* rows holding candidates */
    if (st->maxrun < own) return 0; /* no candidates: most fields have no lines */
    /* runs over three rows (a line may slope by a pixel every few dozen) */
    for (int y = 0; y < h; y++) {
        const unsigned char *up = m + (size_t)imax(0, y - 1) * w, *mid = m + (size_t)y * w;
        const unsigned char *dn = m + (size_t)imin(h - 1, y + 1) * w;
        for (int x = 0; x < w;) {
            if (x + 8 <= w && !(word8(up + x) | word8(mid + x) | word8(dn + x))) {
                x += 8;
                continue;
            }
            if (!(up[x] | mid[x] | dn[x])) { x++; continue; }
            int e = x;
            while (e < w && (up[e] | mid[e] | dn[e])) e++;
            if (e - x >= min_len)
                for (int k = x; k < e; k++) {
                    const size_t i = (size_t)y * w + k;
                    if (m[i] == 1 && st->run[i] >= own) { /* a line candidate */
                        m[i] = 3;
                        marked = 1;
                        ylo = imin(ylo, y);
                        yhi = imax(yhi, y);
                    }
                }
            x = e;
        }
    }
    if (!marked) return 0;
    /* Down the columns, but row by row (the field's rows are contiguous): per column, where
     * its current run began. */
    int *col = malloc((size_t)4 * w * sizeof *col), *start = col;
    if (!col) return 0;
    /* in each column, a band of candidates with ink just above and below is a crossing */
    int ytop = h, ybot = -1; /* the rows of the removed lines */
    for (int x = 0; x < w; x++) start[x] = -1;
    for (int y = ylo; y <= yhi + 1; y++)
        for (int x = 0; x < w; x++) {
            if (y <= yhi && m[(size_t)y * w + x] == 3) {
                if (start[x] < 0) start[x] = y;
                continue;
            }
            if (start[x] < 0) continue;
            const int y0 = start[x];
            start[x] = -1;
            const int cross = y0 > 0 && y < h && m[(size_t)(y0 - 1) * w + x] == 1 &&
                              m[(size_t)y * w + x] == 1;
            for (int k = y0; k < y; k++) m[(size_t)k * w + x] = cross ? 1 : 2;
            if (!cross) { found++; ytop = imin(ytop, y0); ybot = imax(ybot, y - 1); }
        }
    if (!found) { free(col); return 0; }
    unsigned char *wallcol = calloc((size_t)w, 1);
    if (!wallcol) { free(col); return 0; } /* no walls found: the lines are still removed */
    /* walls: vertical runs from a removed line (or the edge) to a removed line (or the edge) */
    const int thin = (int)(3 * st->sw) + 2;
    const int min_wall = (int)(0.5 * st->band);
    for (int x = 0; x < w; x++) start[x] = -1;
    for (int y = 0; y <= h; y++)
        for (int x = 0; x < w; x++) {
            if (y < h && m[(size_t)y * w + x] == 1) {
                if (start[x] < 0) start[x] = y;
                continue;
            }
            if (start[x] < 0) continue;
            const int y0 = start[x], e = y;
            start[x] = -1;
            if (e - y0 < min_wall) continue;
            int top = y0 == 0, bot = e == h;
            for (int dy = 1; dy <= 3 && !(top && bot); dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    const int xx = x + dx;
                    if (xx < 0 || xx >= w) continue;
                    if (y0 - dy >= 0 && m[(size_t)(y0 - dy) * w + xx] == 2) top = 1;
                    if (e - 1 + dy < h && m[(size_t)(e - 1 + dy) * w + xx] == 2) bot = 1;
                }
            if (top && bot) {
                for (int k = y0; k < e; k++)
                    if (st->run[(size_t)k * w + x] <= thin) m[(size_t)k * w + x] = 4;
                wallcol[x] = 1;
            }
        }
    /* and walls as columns of ink (lines included) spanning the grid from its top line to its
     * bottom line: a digit that touches a wall or crosses a line breaks the test above, not
     * this one; a digit is never as tall as its box */
    if (ybot - ytop + 1 >= min_wall && ybot > ytop) {
        const int span = ybot - ytop + 1;
        int *r = col, *rs = col + w, *best = col + 2 * w, *bs = col + 3 * w;
        memset(col, 0, (size_t)4 * w * sizeof *col);
        for (int y = ytop; y <= ybot; y++) /* each column's longest run of ink or line */
            for (int x = 0; x < w; x++) {
                const unsigned char v = m[(size_t)y * w + x];
                if (v == 1 || v == 2 || v == 4) {
                    if (!r[x]) rs[x] = y;
                    if (++r[x] > best[x]) { best[x] = r[x]; bs[x] = rs[x]; }
                } else r[x] = 0;
            }
        for (int x = 0; x < w; x++) {
            if (10 * best[x] < 9 * span) continue;
            for (int k = bs[x]; k < bs[x] + best[x]; k++)
                if (m[(size_t)k * w + x] == 1 && st->run[(size_t)k * w + x] <= thin)
                    m[(size_t)k * w + x] = 4;
            wallcol[x] = 1;
        }
    }
    /* a wall's pixels with ink just left and right of them (in their row) are a stroke that
     * crosses the wall (a digit written over its box): kept, as crossings of lines are */
    int any_wall = 0;
    for (int x = 0; x < w; x++) any_wall |= wallcol[x];
    for (int y = 0; y < h && any_wall; y++) {
        unsigned char *mr = m + (size_t)y * w;
        for (int x = 0; x < w;) {
            if (mr[x] != 4) { x++; continue; }
            int e = x;
            while (e < w && mr[e] == 4) e++;
            if (x > 0 && e < w && mr[x - 1] == 1 && mr[e] == 1)
                for (int k = x; k < e; k++) mr[k] = 1;
            x = e;
        }
    }
    /* a wall of several columns (a thick line, a slope) is one wall, at its middle */
    int wx0[FD_MAX_WALLS], wx1[FD_MAX_WALLS], nw = 0;
    for (int x = 0; x < w && nw < FD_MAX_WALLS;) {
        if (!wallcol[x]) { x++; continue; }
        int e = x;
        while (e + 1 < w && (wallcol[e + 1] || (e + 2 < w && wallcol[e + 2]))) e++;
        wx0[nw] = x; wx1[nw++] = e;
        x = e + 1;
    }
    free(wallcol);
    /* a tall 1 written from line to line looks like a wall, but splits its box in two narrow
     * parts where the walls are evenly spaced: it is put back. The box width is the upper
     * quartile of the gaps: two such 1s in five boxes make four of seven gaps half a box */
    int gaps[FD_MAX_WALLS], med = 0;
    for (int v = 1; v < nw; v++) gaps[v - 1] = (wx0[v] + wx1[v] - wx0[v - 1] - wx1[v - 1]) / 2;
    if (nw >= 4) {
        qsort(gaps, nw - 1, sizeof *gaps, cmp_int);
        med = gaps[(3 * (nw - 1)) / 4];
    }
    for (int v = 0; v < nw; v++) {
        const int c = (wx0[v] + wx1[v]) / 2;
        const int gl = v > 0 ? c - st->walls[st->nwalls - 1] : -1;
        const int gr = v + 1 < nw ? (wx0[v + 1] + wx1[v + 1]) / 2 - c : -1;
        if (med > 0 && gl > 0 && gr > 0 && 10 * imin(gl, gr) < 6 * med &&
            100 * (gl + gr) <= 135 * med) {
            for (int y = 0; y < h; y++)
                for (int x = wx0[v]; x <= wx1[v]; x++)
                    if (m[(size_t)y * w + x] == 4) m[(size_t)y * w + x] = 1;
            continue;
        }
        st->walls[st->nwalls++] = c;
    }
    /* lines printed lighter than the ink (a form's box lines often are): where a digit's
     * stroke lies on a line, its pixels are darker than the line's own; they are kept. The
     * line's own level: in each column its darkest removed pixel, the median over columns
     * (a line's edge rows are lighter than its core, and so is a row the reduction's
     * blocks share with the paper; strokes on the line darken only a few columns) */
    size_t lh[256] = {0}, nl = 0;
    int *cm = col; /* each column's darkest removed level, -1 none */
    for (int x = 0; x < w; x++) cm[x] = -1;
    for (size_t i = 0; i < st->n; i++) {
        if (i + 8 <= st->n && !word8(m + i)) { i += 7; continue; } /* paper */
        if (m[i] == 2 || m[i] == 4) {
            const int x = (int)(i % (size_t)w), lvl = st->light ? st->q[i] : 255 - st->q[i];
            if (lvl > cm[x]) cm[x] = lvl;
        }
    }
    for (int x = 0; x < w; x++)
        if (cm[x] >= 0) { lh[cm[x]]++; nl++; }
    free(col);
    int keep_lvl = 256; /* in levels of inkness (0 paper-white .. 255 black ink on white) */
    if (nl) {
        const int line_lvl = (int)median_hist(lh, 256, nl);
        const int paper = st->light ? st->paper : 255 - st->paper;
        keep_lvl = line_lvl + imax(12, (line_lvl - paper) / 3);
    }
    for (size_t i = 0; i < st->n; i++) { /* 1 ink, 2 removed */
        if (i + 8 <= st->n && !word8(m + i)) { i += 7; continue; } /* paper stays 0 */
        const int v = m[i], lvl = st->light ? st->q[i] : 255 - st->q[i];
        m[i] = v == 1 || ((v == 2 || v == 4) && lvl >= keep_lvl) ? 1 : v ? 2 : 0;
    }
    return 1;
}

/* 8-connected components of the ink, with their boxes, pixel counts and ink. */
static int fd_components(fd_state *st) {
    const int h = st->h, w = st->w;
    int cap = 64, nc = 0;
    st->comps = malloc(cap * sizeof *st->comps);
    if (!st->comps) return FL_ERR_NOMEM;
    memset(st->lab, 0, st->n * sizeof *st->lab);
    for (size_t s = 0; s < st->n; s++) {
        const unsigned char *hit = memchr(st->m + s, 1, st->n - s); /* the next ink */
        if (!hit) break;
        s = (size_t)(hit - st->m);
        if (st->lab[s]) continue;
        if (nc == cap) {
            fd_comp *c = realloc(st->comps, 2 * cap * sizeof *c);
            if (!c) return FL_ERR_NOMEM;
            st->comps = c;
            cap *= 2;
        }
        fd_comp *c = &st->comps[nc++];
        c->x0 = w; c->y0 = h; c->x1 = -1; c->y1 = -1;
        c->count = 0; c->mass = 0; c->blob = -1; c->lined = 0; c->frame = 0;
        size_t sp = 0;
        st->stack[sp++] = (int32_t)s;
        st->lab[s] = nc;
        while (sp) {
            const int32_t p = st->stack[--sp];
            const int y = p / w, x = p % w;
            c->x0 = imin(c->x0, x); c->x1 = imax(c->x1, x);
            c->y0 = imin(c->y0, y); c->y1 = imax(c->y1, y);
            c->count++;
            c->mass += st->ink[st->q[p]];
            for (int dy = -1; dy <= 1; dy++) {
                const int yy = y + dy;
                if (yy < 0 || yy >= h) continue;
                for (int dx = -1; dx <= 1; dx++) {
                    const int xx = x + dx;
                    if (xx < 0 || xx >= w) continue;
                    const size_t r = (size_t)yy * w + xx;
                    if (st->m[r] == 1 && !st->lab[r]) {
                        st->lab[r] = nc;
                        st->stack[sp++] = (int32_t)r;
                    } else if (st->m[r] == 2) {
                        c->lined = 1;
                    }
                }
            }
        }
    }
    st->ncomp = nc;
    return FL_OK;
}

typedef struct { double mass; int idx; } fd_rank;

static int cmp_rank(const void *a, const void *b) {
    const fd_rank *p = a, *q = b;
    if (p->mass != q->mass) return p->mass > q->mass ? -1 : 1;
    return p->idx - q->idx;
}

/* idx[0..n) (indices into c) by ink, most first. FL_OK or FL_ERR_NOMEM. */
static int sort_by_mass(int *idx, int n, const fd_comp *c) {
    fd_rank *r = malloc((size_t)(n > 0 ? n : 1) * sizeof *r);
    if (!r) return FL_ERR_NOMEM;
    for (int i = 0; i < n; i++) { r[i].mass = c[idx[i]].mass; r[i].idx = idx[i]; }
    qsort(r, n, sizeof *r, cmp_rank);
    for (int i = 0; i < n; i++) idx[i] = r[i].idx;
    free(r);
    return FL_OK;
}

/* A box drawn around one digit (a comb of one box, a check box) has lines too short to be
 * lines: a component whose ink lies along its own border, around another component of a
 * digit's size, is such a frame, and is read as no digit. */
static void fd_frames(fd_state *st) {
    const int nc = st->ncomp, w = st->w, d = imax(2, (int)(1.5 * st->sw) + 1);
    if (nc < 2 || nc > 4 * FD_MAX_KEEP) return; /* a field of noise has no frames */
    for (int i = 0; i < nc; i++) {
        fd_comp *c = &st->comps[i];
        const int cw = c->x1 - c->x0 + 1, ch = c->y1 - c->y0 + 1;
        if (cw < FD_MIN_HEIGHT || ch < FD_MIN_HEIGHT || 10 * c->count < 8 * (cw + ch) * 2 ||
            cw <= 4 * d || ch <= 4 * d)
            continue;
        int inside = 0;
        for (int k = 0; k < nc && !inside; k++) {
            const fd_comp *o = &st->comps[k];
            inside = k != i && o->x0 > c->x0 && o->x1 < c->x1 && o->y0 > c->y0 &&
                     o->y1 < c->y1 && 10 * (o->y1 - o->y0 + 1) >= 3 * ch;
        }
        if (!inside) continue;
        int border = 0;
        for (int y = c->y0; y <= c->y1; y++)
            for (int x = c->x0; x <= c->x1; x++)
                if (st->lab[(size_t)y * w + x] == i + 1 &&
                    (x - c->x0 < d || c->x1 - x < d || y - c->y0 < d || c->y1 - y < d))
                    border++;
        c->frame = 10 * border >= 9 * c->count;
    }
}

/* The digits' height; specks, dots and line remnants dropped; the largest FD_MAX_KEEP kept. */
static int fd_keep(fd_state *st) {
    const int nc = st->ncomp;
    if (!nc) return 0;
    int *hs = malloc(nc * sizeof *hs);
    st->keep = malloc(nc * sizeof *st->keep);
    if (!hs || !st->keep) { free(hs); return -1; }
    fd_frames(st);
    int big = 0, nh = 0;
    for (int i = 0; i < nc; i++) big = imax(big, st->comps[i].frame ? 0 : st->comps[i].count);
    /* dots and dust (under FD_MIN_HEIGHT) set no scale of their own */
    for (int i = 0; i < nc; i++)
        if (!st->comps[i].frame && 10 * st->comps[i].count >= big &&
            st->comps[i].y1 - st->comps[i].y0 + 1 >= FD_MIN_HEIGHT)
            hs[nh++] = st->comps[i].y1 - st->comps[i].y0 + 1;
    if (!nh) { free(hs); return 0; }
    qsort(hs, nh, sizeof *hs, cmp_int);
    const double height = hs[nh / 2];
    free(hs);
    st->height = height;
    int nk = 0;
    for (int i = 0; i < nc; i++) {
        const fd_comp *c = &st->comps[i];
        const int cw = c->x1 - c->x0 + 1, ch = c->y1 - c->y0 + 1;
        if (c->frame) continue;
        if (cw < 0.3 * height && ch < 0.3 * height) continue; /* a speck or a dot */
        if (cw > 2.5 * height && ch < 0.25 * height) continue; /* what is left of a line */
        if (c->count < 0.02 * big) continue;
        st->keep[nk++] = i;
    }
    if (nk > FD_MAX_KEEP) {
        if (sort_by_mass(st->keep, nk, st->comps) != FL_OK) return -1;
        nk = FD_MAX_KEEP;
        st->nkeep_dropped = 1;
    }
    qsort(st->keep, nk, sizeof *st->keep, cmp_int);
    st->nkeep = nk;
    return nk;
}

/* Components stacked over each other (a 5's flag, a broken 4) become one blob. */
static void fd_blobs(fd_state *st) {
    const int nk = st->nkeep;
    int parent[FD_MAX_KEEP];
    for (int i = 0; i < nk; i++) parent[i] = i;
    for (int i = 0; i < nk; i++)
        for (int j = i + 1; j < nk; j++) {
            const fd_comp *a = &st->comps[st->keep[i]], *b = &st->comps[st->keep[j]];
            const int ov = imin(a->x1, b->x1) - imax(a->x0, b->x0) + 1;
            const int narrow = imin(a->x1 - a->x0, b->x1 - b->x0) + 1;
            const int span = imax(a->x1, b->x1) - imin(a->x0, b->x0) + 1;
            /* stacked: side by side in x, apart in y (a digit's neighbour is beside it) */
            const int vov = imin(a->y1, b->y1) - imax(a->y0, b->y0) + 1;
            const int low = imin(a->y1 - a->y0, b->y1 - b->y0) + 1;
            if (2 * ov < narrow || span > 1.1 * st->height || 10 * vov > 3 * low) continue;
            int ra = i, rb = j;
            while (parent[ra] != ra) ra = parent[ra];
            while (parent[rb] != rb) rb = parent[rb];
            if (ra != rb) parent[imax(ra, rb)] = imin(ra, rb);
        }
    int nb = 0, id[FD_MAX_KEEP];
    for (int i = 0; i < nk; i++) {
        int r = i;
        while (parent[r] != r) r = parent[r];
        if (r == i) {
            id[i] = nb;
            fd_comp *b = &st->blobs[nb++];
            *b = st->comps[st->keep[i]];
        } else {
            id[i] = id[r];
            fd_comp *b = &st->blobs[id[r]];
            const fd_comp *c = &st->comps[st->keep[i]];
            b->x0 = imin(b->x0, c->x0); b->x1 = imax(b->x1, c->x1);
            b->y0 = imin(b->y0, c->y0); b->y1 = imax(b->y1, c->y1);
            b->count += c->count;
            b->mass += c->mass;
            b->lined |= c->lined;
        }
        st->comps[st->keep[i]].blob = id[i];
    }
    st->nblob = nb;
}

static int blob_of(const fd_state *st, size_t i) {
    const int l = st->lab[i];
    return l ? st->comps[l - 1].blob : -1;
}

/* A cut: per row y of its blob, the column where the right side begins (x >= col[y]). */
typedef struct fd_cut_s {
    int blob;
    double score; /* strokes crossed */
    double mx;    /* mean column */
    int *col;     /* st->h entries (rows outside the blob unused) */
} fd_cut;

static int cmp_cut(const void *a, const void *b) {
    const fd_cut *p = a, *q = b;
    if (p->score != q->score) return p->score < q->score ? -1 : 1;
    if (p->blob != q->blob) return p->blob - q->blob;
    return (p->mx > q->mx) - (p->mx < q->mx);
}

/* The path from the blob's top to its bottom near column xc that crosses the least ink:
 * touching digits overlap in x, so a straight cut would slice one of them. Per row it is a
 * column (the right side begins there); between rows it may run sideways any distance, and
 * then it severs the ink above from the ink below in the columns it passes (under a 7's bar
 * it severs nothing). -> the strokes it crosses (ink / stroke width); col[] filled. */
static double cut_path(const fd_state *st, const fd_comp *bl, int b, int xc, int R, float *dp,
                       signed char *mv, int *col) {
    const int w = st->w, xa = imax(bl->x0, xc - R), xb = imin(bl->x1 + 1, xc + R);
    const int ww = xb - xa + 1, rows = bl->y1 - bl->y0 + 1;
    float here[2 * FD_CUT_R + 2], edge[2 * FD_CUT_R + 2], prevink[2 * FD_CUT_R + 2];
    for (int r = 0; r < rows; r++) {
        const int y = bl->y0 + r;
        float *cur = dp + (size_t)r * ww;
        signed char *m = mv + (size_t)r * ww;
        for (int k = 0; k < ww; k++) {
            const int x = xa + k;
            const float ink = x <= bl->x1 && blob_of(st, (size_t)y * w + x) == b
                                  ? 0.5f + st->ink[st->q[(size_t)y * w + x]] : 0.0f;
            /* a pull to the start column, per row: it keeps paths from starts a tenth of a
             * digit apart from running into the same valley, and still lets a path bend
             * around a stroke. 0.15 a column against 0.05, on 2,000 validation fields per
             * style: tight print 0.501 -> 0.580, touching 0.287 -> 0.297 (0.1-0.3 all
             * within 0.01 of that; with sideways moves and the sparser starts before, 0.2
             * read worse than 0.05) */
            here[k] = ink + 0.15f * (float)abs(x - xc);
            /* moving past column x between rows severs x's ink above from its ink below */
            edge[k] = 0.05f + (r > 0 && ink > 0 && prevink[k] > 0 ? fminf(ink, prevink[k]) : 0.0f);
            prevink[k] = ink;
        }
        if (r == 0) {
            for (int k = 0; k < ww; k++) { cur[k] = here[k]; m[k] = 0; }
            continue;
        }
        /* the cheapest column of the row above to come from, by two sweeps (the cost of a
         * sideways run is the sum of its columns' edges) */
        const float *prev = dp + (size_t)(r - 1) * ww;
        for (int k = 0; k < ww; k++) {
            cur[k] = prev[k];
            m[k] = 0;
            if (k > 0 && cur[k - 1] + edge[k - 1] < cur[k]) {
                cur[k] = cur[k - 1] + edge[k - 1];
                m[k] = (signed char)(m[k - 1] - 1);
            }
        }
        for (int k = ww - 2; k >= 0; k--)
            if (cur[k + 1] + edge[k] < cur[k]) {
                cur[k] = cur[k + 1] + edge[k];
                m[k] = (signed char)(m[k + 1] + 1);
            }
        for (int k = 0; k < ww; k++) cur[k] += here[k];
    }
    int k = 0;
    const float *last = dp + (size_t)(rows - 1) * ww;
    for (int j = 1; j < ww; j++) if (last[j] < last[k]) k = j;
    double ink = 0;
    for (int r = rows - 1; r >= 0; r--) {
        const int y = bl->y0 + r, x = xa + k;
        col[y] = x;
        if (x <= bl->x1 && blob_of(st, (size_t)y * w + x) == b)
            ink += st->ink[st->q[(size_t)y * w + x]];
        const int from = k + mv[(size_t)r * ww + k];
        for (int j = imin(k, from); r > 0 && j < imax(k, from); j++) { /* a sideways run */
            const size_t up = (size_t)(y - 1) * w + xa + j, dn = up + w;
            if (xa + j <= bl->x1 && blob_of(st, up) == b && blob_of(st, dn) == b)
                ink += fmin(st->ink[st->q[up]], st->ink[st->q[dn]]);
        }
        k = from;
    }
    return ink / st->sw;
}

typedef struct { int x, v; } fd_min;

static int cmp_min(const void *a, const void *b) {
    const fd_min *p = a, *q = b;
    return p->v != q->v ? p->v - q->v : p->x - q->x;
}

/* Two cuts of one blob cross: one is left of the other on some row and right of it on
 * another (sharing a stretch is fine: the piece between them is empty there). */
static int cuts_cross(const fd_comp *bl, const int *a, const int *c) {
    int sign = 0;
    for (int y = bl->y0; y <= bl->y1; y++) {
        const int d = a[y] - c[y];
        if (d == 0) continue;
        if (sign && (d > 0) != (sign > 0)) return 1;
        sign = d;
    }
    return sign == 0; /* the same path */
}

/* The margin (columns) that keeps a blob's cuts and walls off its ends. */
static int blob_margin(const fd_state *st) { return imax(2, (int)(0.1 * st->height)); }

/* Whether wall v of a comb crosses blob bl (not merely touches its ends). */
static int wall_crosses(const fd_state *st, const fd_comp *bl, int v) {
    const int mg = blob_margin(st);
    return st->walls[v] >= bl->x0 + mg && st->walls[v] <= bl->x1 - mg;
}

/* Candidate cuts through wide blobs (touching digits): from the minima of the column
 * profile and a grid, the least-ink path near each; fewest strokes crossed first, 0.08 of a
 * digit apart, never crossing, within the budget of pieces. Then the pieces, in reading
 * order. Dense cuts (a grid of h/10, not h/6; 0.08 h apart, not 0.12 h) read 2,000
 * validation fields per style better: touching 0.239 -> 0.287, tight print 0.438 -> 0.501,
 * none worse; denser still needed more than FL_FIELD_SPAN pieces per digit. */
static int fd_pieces(fd_state *st) {
    const int w = st->w, h = st->h, nb = imin(st->nblob, FL_FIELD_MAX_PIECES);
    const double hgt = st->height;
    int order[FD_MAX_KEEP];
    for (int i = 0; i < st->nblob; i++) order[i] = i;
    st->truncated = st->nblob > FL_FIELD_MAX_PIECES;
    if (st->truncated) { /* the largest blobs; the rest are noise */
        if (sort_by_mass(order, st->nblob, st->blobs) != FL_OK) return FL_ERR_NOMEM;
        for (int i = FL_FIELD_MAX_PIECES; i < st->nblob; i++) st->blobs[order[i]].blob = -2;
    }
    /* a comb: three walls or more, a median box at most two digits wide (a frame around a
     * whole field is no box: it may hold many digits) */
    if (st->nwalls >= 3) {
        int gaps[FD_MAX_WALLS];
        for (int v = 1; v < st->nwalls; v++) gaps[v - 1] = st->walls[v] - st->walls[v - 1];
        qsort(gaps, st->nwalls - 1, sizeof *gaps, cmp_int);
        st->boxw = gaps[(st->nwalls - 1) / 2];
        st->comb = st->boxw <= FD_BOX_WIDE * hgt;
    }
    const int R = imin(FD_CUT_R, imax(2, (int)(0.2 * hgt)));
    /* candidates per blob: at most this many, the lowest profile minima */
    enum { PER_BLOB = 2 * FL_FIELD_MAX_PIECES, MAX_CAND = 4 * FL_FIELD_MAX_PIECES };
    int *prof = malloc((size_t)w * sizeof *prof), xs[PER_BLOB];
    fd_min *mins = malloc((size_t)w * sizeof *mins);
    fd_buffers *bf = st->buf;
    const size_t ncols = (size_t)(MAX_CAND + 1) * h, ndp = (size_t)h * (2 * R + 2);
    if (ncols > bf->cols_cap) {
        free(bf->cols);
        bf->cols = malloc(ncols * sizeof *bf->cols);
        bf->cols_cap = bf->cols ? ncols : 0;
    }
    if (ndp > bf->dp_cap) {
        free(bf->dp); free(bf->mv);
        bf->dp = malloc(ndp * sizeof *bf->dp);
        bf->mv = malloc(ndp);
        bf->dp_cap = bf->dp && bf->mv ? ndp : 0;
    }
    int *cols = bf->cols;
    float *dp = bf->dp;
    signed char *mv = bf->mv;
    st->cuts = calloc(MAX_CAND + 1, sizeof *st->cuts);
    if (!prof || !mins || !bf->cols_cap || !bf->dp_cap || !st->cuts) {
        free(prof); free(mins);
        return FL_ERR_NOMEM;
    }
    int ncand = 0;
    const int margin = blob_margin(st);
    for (int b = 0; b < st->nblob && ncand < MAX_CAND; b++) {
        const fd_comp *bl = &st->blobs[b];
        if (bl->blob == -2) continue; /* dropped */
        /* in a comb a box holds one digit: a blob is cut only where it spans a wall */
        int inside = 0;
        for (int v = 0; st->comb && v < st->nwalls; v++)
            inside += wall_crosses(st, bl, v);
        const int bw = bl->x1 - bl->x0 + 1;
        if (st->comb ? !inside : bw < FD_CUT_WIDE * hgt) continue;
        for (int x = bl->x0; x <= bl->x1; x++) prof[x] = 0;
        for (int y = bl->y0; y <= bl->y1; y++)
            for (int x = bl->x0; x <= bl->x1; x++) prof[x] += blob_of(st, (size_t)y * w + x) == b;
        /* minima of the profile, lowest first, 0.06 of a digit apart (in a blob under one
         * height, FD_NARROW_CUTS of them); then, in blobs at least FD_GRID_WIDE heights
         * wide, columns a tenth of a digit apart where no minimum is near, for runs of
         * touching strokes without one (the least-ink path near them still finds the way) */
        int nx = 0, nm = 0;
        for (int x = bl->x0 + margin; x <= bl->x1 - margin; x++) {
            if (prof[x] > prof[x - 1]) continue; /* a local minimum (the middle of a flat one) */
            int e = x;
            while (e < bl->x1 - margin && prof[e + 1] == prof[x]) e++;
            if (prof[e + 1] < prof[x]) { x = e; continue; }
            mins[nm].x = (x + e + 1) / 2;
            mins[nm].v = prof[x];
            nm++;
            x = e;
        }
        qsort(mins, nm, sizeof *mins, cmp_min);
        const double near = 0.06 * hgt;
        if (st->comb) /* the walls it spans, then the minima near them */
            for (int v = 0; v < st->nwalls && nx < PER_BLOB; v++)
                if (wall_crosses(st, bl, v)) xs[nx++] = st->walls[v];
        const int most = !st->comb && bw < 1.0 * hgt ? FD_NARROW_CUTS : PER_BLOB;
        for (int k = 0; k < nm && nx < most; k++) {
            int ok = 1, by_wall = !st->comb;
            for (int j = 0; j < nx && ok; j++) ok = abs(xs[j] - mins[k].x) >= near;
            for (int v = 0; v < st->nwalls && !by_wall; v++)
                by_wall = fabs((double)(st->walls[v] - mins[k].x)) <= 0.3 * hgt;
            if (ok && by_wall) xs[nx++] = mins[k].x;
        }
        const double step = hgt / 10.0;
        const int grid = !st->comb && bw >= FD_GRID_WIDE * hgt;
        for (double xg = bl->x0 + step; grid && xg <= bl->x1 - margin && nx < PER_BLOB;
             xg += step) {
            int ok = 1;
            for (int j = 0; j < nx && ok; j++) ok = fabs(xs[j] - xg) >= near;
            if (ok) xs[nx++] = (int)xg;
        }
        for (int k = 0; k < nx && ncand < MAX_CAND; k++) {
            fd_cut *c = &st->cuts[ncand];
            c->blob = b;
            c->col = cols + (size_t)ncand * h;
            c->score = cut_path(st, bl, b, xs[k], R, dp, mv, c->col);
            double sx = 0;
            for (int y = bl->y0; y <= bl->y1; y++) sx += c->col[y];
            c->mx = sx / (bl->y1 - bl->y0 + 1);
            ncand++;
        }
    }
    free(prof); free(mins);
    qsort(st->cuts, ncand, sizeof *st->cuts, cmp_cut);
    /* accepted cuts compacted to the front */
    int budget = FL_FIELD_MAX_PIECES - nb, nacc = 0;
    const double spacing = 0.08 * hgt;
    for (int k = 0; k < ncand && budget > 0; k++) {
        const fd_cut *c = &st->cuts[k];
        const fd_comp *bl = &st->blobs[c->blob];
        if (c->mx - bl->x0 < 0.1 * hgt || bl->x1 - c->mx < 0.1 * hgt) continue;
        int ok = 1;
        for (int a = 0; a < nacc && ok; a++) {
            const fd_cut *o = &st->cuts[a];
            ok = o->blob != c->blob ||
                 (fabs(o->mx - c->mx) >= spacing && !cuts_cross(bl, o->col, c->col));
        }
        if (!ok) continue;
        st->cuts[nacc++] = *c;
        budget--;
    }
    st->ncuts = nacc;
    /* pieces: each blob between its cuts. Cuts never cross, so on every row their columns
     * rise in the order of their mean x: a pixel's piece is found by bisection, and the map
     * of pieces is made in one pass over each blob's box. */
    memset(st->m, 255, st->n);
    int nt = 0; /* pieces before reading order (at most FL_FIELD_MAX_PIECES: see the budget) */
    for (int b = 0; b < st->nblob; b++) {
        const fd_comp *bl = &st->blobs[b];
        if (bl->blob == -2) continue;
        int ids[FL_FIELD_MAX_PIECES + 1], nx = 0;
        for (int a = 0; a < nacc; a++)
            if (st->cuts[a].blob == b) {
                int j = nx++;
                while (j > 0 && st->cuts[ids[j - 1]].mx > st->cuts[a].mx) { ids[j] = ids[j - 1]; j--; }
                ids[j] = a;
            }
        const int base = nt;
        for (int k = 0; k <= nx; k++) {
            fd_piece *p = &st->pieces[nt++];
            p->blob = b;
            p->x0 = w; p->x1 = -1; p->y0 = h; p->y1 = -1; p->mass = 0; p->sx = 0;
        }
        for (int y = bl->y0; y <= bl->y1; y++)
            for (int x = bl->x0; x <= bl->x1; x++) {
                const size_t i = (size_t)y * w + x;
                if (blob_of(st, i) != b) continue;
                int lo = 0, hi = nx; /* the first cut this pixel is left of */
                while (lo < hi) {
                    const int mid = (lo + hi) / 2;
                    if (x >= st->cuts[ids[mid]].col[y]) lo = mid + 1; else hi = mid;
                }
                fd_piece *p = &st->pieces[base + lo];
                p->x0 = imin(p->x0, x); p->x1 = imax(p->x1, x);
                p->y0 = imin(p->y0, y); p->y1 = imax(p->y1, y);
                p->mass += st->ink[st->q[i]];
                p->sx += (double)st->ink[st->q[i]] * x;
                st->m[i] = (unsigned char)(base + lo);
            }
    }
    /* the pieces with ink, in reading order (by centre); the map follows */
    int np = 0, tid[FL_FIELD_MAX_PIECES];
    for (int t = 0; t < nt; t++) {
        fd_piece v = st->pieces[t];
        if (v.x1 < 0) continue;
        v.cx = 0.5f * (v.x0 + v.x1);
        int j = np - 1;
        while (j >= 0 && st->pieces[j].cx > v.cx) {
            st->pieces[j + 1] = st->pieces[j]; tid[j + 1] = tid[j]; j--;
        }
        st->pieces[j + 1] = v; /* j + 1 <= np <= t: entries not yet read are not overwritten */
        tid[j + 1] = t;
        np++;
    }
    st->npieces = np;
    unsigned char lut[256];
    memset(lut, 255, sizeof lut);
    for (int i = 0; i < np; i++) lut[tid[i]] = (unsigned char)i;
    unsigned char *m = st->m; /* a local: a store to m[i] could alias st's fields */
    for (size_t i = 0, n = st->n; i < n; i++) m[i] = lut[m[i]];
    /* a typical digit's ink: the median blob's, divided by the digits a wide blob holds */
    double ms[FD_MAX_KEEP];
    int nm = 0;
    for (int b = 0; b < st->nblob; b++) {
        const fd_comp *bl = &st->blobs[b];
        if (bl->blob == -2) continue;
        ms[nm++] = bl->mass / fmax(1.0, (bl->x1 - bl->x0 + 1) / (0.7 * hgt));
    }
    for (int i = 1; i < nm; i++) { /* few values */
        const double v = ms[i];
        int j = i - 1;
        while (j >= 0 && ms[j] > v) { ms[j + 1] = ms[j]; j--; }
        ms[j + 1] = v;
    }
    st->typical = nm && ms[nm / 2] > 0 ? ms[nm / 2] : 1.0;
    return FL_OK;
}

/* Every run of 1..FL_FIELD_SPAN consecutive pieces that could be one digit, and every blob of
 * more pieces narrow enough to be one -> a segment and its model input. */
static int fd_segments(fd_state *st, int size, int light_on_dark, unsigned char *inputs,
                       fl_segment *segs, fl_field *info) {
    const int w = st->w, np = st->npieces;
    const double hgt = st->height;
    const size_t plane = (size_t)size * size;
    float *out = malloc(plane * sizeof *out), *crop = NULL;
    size_t crop_cap = 0;
    if (!out) return FL_ERR_NOMEM;
    /* each blob's first and last piece in reading order: a run is whole blobs when every
     * blob it touches lies inside it and none touches a removed line (which may have cut a
     * digit in two: a digit crossing a comb's wall). In a comb only a blob across a wall is
     * suspect: digits there often touch or cross the boxes' top and bottom lines, and the
     * model took 1s, 6s and 7s so touched for cuts (validation comb 0.934 -> 0.940) */
    int bfirst[FD_MAX_KEEP], blast[FD_MAX_KEEP];
    unsigned char multi_wide[FD_MAX_KEEP]; /* the blob holds two digits or more */
    for (int b = 0; b < st->nblob; b++) {
        const fd_comp *bl = &st->blobs[b];
        int cut = bl->lined;
        if (cut && st->comb) {
            cut = 0;
            for (int v = 0; v < st->nwalls && !cut; v++) cut = wall_crosses(st, bl, v);
        }
        bfirst[b] = cut ? -1 : np;
        blast[b] = -1;
        multi_wide[b] = bl->x1 - bl->x0 + 1 >= FD_MULTI_WIDE * hgt;
    }
    for (int i = 0; i < np; i++) {
        const int b = st->pieces[i].blob;
        if (bfirst[b] >= 0) bfirst[b] = imin(bfirst[b], i);
        blast[b] = imax(blast[b], i);
    }
    const int comb = st->comb;
    /* a digit is at most this wide (one too big for its comb box: a little wider than it) */
    const double widest = comb ? fmax(1.2 * hgt, 1.25 * st->boxw) : 1.2 * hgt;
    int ns = 0, rc = FL_OK;
    for (int i = 0; i < np && rc == FL_OK; i++) {
        int x0 = st->w, y0 = st->h, x1 = -1, y1 = -1, gaps = 0, lo = np, hi = -1, multi = 0;
        double mass = 0, sx = 0;
        /* a blob cut into more pieces than a run spans (a wide 0, a 2 with a long foot) is
         * a candidate whole too, up to FD_WHOLE_WIDE digit heights wide */
        const int b0 = st->pieces[i].blob;
        int whole_k = 0;
        if ((i == 0 || st->pieces[i - 1].blob != b0) && blast[b0] - i + 1 > FL_FIELD_SPAN) {
            whole_k = blast[b0] - i + 1;
            for (int j = i; j <= blast[b0] && whole_k; j++) whole_k *= st->pieces[j].blob == b0;
        }
        for (int k = 1; k <= imax(FL_FIELD_SPAN, whole_k) && i + k <= np; k++) {
            const fd_piece *p = &st->pieces[i + k - 1];
            /* paper between pieces: two digits (a broken digit's pieces overlap or nearly) */
            const int gap = k > 1 ? p->x0 - x1 - 1 : 0;
            if (gap > 0.25 * hgt) break;
            mass += p->mass;
            sx += p->sx;
            gaps += gap > 0 ? gap : 0;
            lo = imin(lo, bfirst[p->blob]); hi = imax(hi, blast[p->blob]);
            multi |= multi_wide[p->blob];
            x0 = imin(x0, p->x0); x1 = imax(x1, p->x1);
            y0 = imin(y0, p->y0); y1 = imax(y1, p->y1);
            const double segw = x1 - x0 + 1, sh = y1 - y0 + 1;
            const int emit = k <= FL_FIELD_SPAN ? k == 1 || segw <= widest
                                                : k == whole_k && segw <= FD_WHOLE_WIDE * hgt;
            if (!emit && k >= whole_k) break;
            /* a run with under a tenth of a typical digit's ink (a sliver between two close
             * cuts, dust) is only ever skipped by the search: it is not rendered */
            if (!emit || ns >= FL_FIELD_MAX_SEGMENTS || mass < 0.1 * st->typical) continue;
            /* the crop: these pieces' ink only, a margin of paper around it */
            const int mg = 2, cw = (int)segw + 2 * mg, ch = (int)sh + 2 * mg;
            if ((size_t)cw * ch > crop_cap) {
                free(crop);
                crop_cap = (size_t)cw * ch;
                crop = malloc(crop_cap * sizeof *crop);
                if (!crop) { rc = FL_ERR_NOMEM; break; }
            }
            memset(crop, 0, (size_t)cw * ch * sizeof *crop);
            /* the box before the deslant: its pixels' rows moved back (a sheared box's corners
             * would widen it by its height times the slant) */
            double ux0 = x0, ux1 = x1 + 1;
            if (st->slant != 0) { ux0 = 1e30; ux1 = -1e30; }
            for (int y = y0; y <= y1; y++) {
                const unsigned char *mr = st->m + (size_t)y * w, *qr = st->q + (size_t)y * w;
                float *cr = crop + (size_t)(y - y0 + mg) * cw + mg;
                int a = w, e = -1;
                for (int x = x0; x <= x1; x++)
                    if (mr[x] >= i && mr[x] < i + k) {
                        cr[x - x0] = st->ink[qr[x]];
                        a = imin(a, x);
                        e = x;
                    }
                if (st->slant != 0 && e >= 0) {
                    const double back = st->sph + (y - 0.5 * st->h) * st->slant;
                    ux0 = fmin(ux0, a - back);
                    ux1 = fmax(ux1, e + 1 - back);
                }
            }
            rc = fl_preprocess_ink(crop, ch, cw, size, light_on_dark, out);
            if (rc != FL_OK) break;
            unsigned char *dst = inputs + (size_t)ns * plane;
            for (size_t t = 0; t < plane; t++) dst[t] = (unsigned char)(out[t] * 255.0f + 0.5f);
            fl_segment *s = &segs[ns++];
            s->p0 = i;
            s->p1 = i + k;
            s->whole = lo >= i && hi < i + k;
            s->split = !s->whole && multi;
            s->cell = -1;
            if (comb) { /* the box holding the centre of its ink */
                const double cx = mass > 0 ? sx / mass : 0.5 * (x0 + x1);
                int v = 0;
                while (v < st->nwalls && st->walls[v] < cx) v++;
                if (v >= 1 && v < st->nwalls &&
                    st->walls[v] - st->walls[v - 1] <= FD_BOX_WIDE * hgt)
                    s->cell = v;
            }
            int box[4];
            fd_to_source(st, ux0, y0, ux1, y1 + 1, box);
            s->x0 = box[0]; s->y0 = box[1]; s->x1 = box[2]; s->y1 = box[3];
            const double r = segw / hgt, t = sh / hgt;
            s->shape = (float)(fmax(0.0, r - 1.0) + 2.0 * fmax(0.0, 0.5 - t) + 4.0 * gaps / hgt);
        }
    }
    free(out);
    free(crop);
    info->segments = ns;
    return rc;
}

/* Reduced field columns a strip holds before its first piece and after its last, in strip
 * columns: a reader slid along it centres a window on the first and last digits too. */
#define FD_STRIP_PAD 12

/* One axis of the strip's resampling: output index o (0..nout-1) reads source coordinates
 * around c0 + (o + 0.5) / s - 0.5 with a triangle of half-width max(1, 1 / s) source pixels
 * (an area average when shrinking, linear when growing); weights over lo .. lo + n - 1,
 * summing to 1 over the whole triangle (source outside 0..len-1 reads as paper). */
typedef struct { int lo, n; float w[FD_STRIP_TAPS]; } fd_taps;

static void strip_taps(double c0, double s, int o, int len, fd_taps *t) {
    const double r = s < 1 ? 1 / s : 1.0, c = c0 + (o + 0.5) / s - 0.5;
    int lo = (int)ceil(c - r), hi = (int)floor(c + r);
    if (hi - lo + 1 > FD_STRIP_TAPS) hi = lo + FD_STRIP_TAPS - 1;
    double sum = 0;
    for (int k = lo; k <= hi; k++) sum += fmax(0.0, 1.0 - fabs(k - c) / r);
    t->lo = imax(lo, 0);
    t->n = 0;
    for (int k = t->lo; k <= imin(hi, len - 1); k++)
        t->w[t->n++] = sum > 0 ? (float)(fmax(0.0, 1.0 - fabs(k - c) / r) / sum) : 0.0f;
}

/* The field's strip (fastlenet.h, FL_FIELD_STRIP_H): the pieces' ink only, the digits'
 * estimated height scaled to FL_FIELD_STRIP_DIGIT rows, the ink's centre of mass on the middle
 * row; each piece's centre in strip columns. A strip wider than FL_FIELD_STRIP_MAX is not
 * made (width 0). */
static int fd_strip(const fd_state *st, unsigned char *out, fl_field *info) {
    const int w = st->w, np = st->npieces;
    info->strip_width = 0;
    if (!np || !(st->height > 0)) return FL_OK;
    int x0 = w, x1 = -1;
    double mass = 0, sy = 0;
    for (int p = 0; p < np; p++) {
        x0 = imin(x0, st->pieces[p].x0);
        x1 = imax(x1, st->pieces[p].x1);
        mass += st->pieces[p].mass;
    }
    for (int y = 0; y < st->h; y++) {
        const unsigned char *mr = st->m + (size_t)y * w, *qr = st->q + (size_t)y * w;
        double rm = 0;
        for (int x = x0; x <= x1; x++)
            if (mr[x] != 255) rm += st->ink[qr[x]];
        sy += rm * y;
    }
    const double s = FL_FIELD_STRIP_DIGIT / st->height, cy = mass > 0 ? sy / mass : 0.5 * st->h;
    const int inner = (int)ceil((x1 - x0 + 1) * s), width = inner + 2 * FD_STRIP_PAD;
    if (width > FL_FIELD_STRIP_MAX) return FL_OK;
    /* strip column o reads source column c0 + (o + 0.5) / s - 0.5: column FD_STRIP_PAD starts
     * at the first piece's left edge */
    const double c0 = x0 - FD_STRIP_PAD / s, r0 = cy - 0.5 * FL_FIELD_STRIP_H / s;
    const int sw = x1 - x0 + 1;
    float *rows = calloc((size_t)FL_FIELD_STRIP_H * sw, sizeof *rows);
    fd_taps *tx = malloc((size_t)width * sizeof *tx);
    if (!rows || !tx) { free(rows); free(tx); return FL_ERR_NOMEM; }
    for (int o = 0; o < FL_FIELD_STRIP_H; o++) { /* rows: the pieces' ink, columns x0..x1 */
        fd_taps ty;
        strip_taps(r0, s, o, st->h, &ty);
        float *ro = rows + (size_t)o * sw;
        for (int t = 0; t < ty.n; t++) {
            const int y = ty.lo + t;
            const unsigned char *mr = st->m + (size_t)y * w + x0, *qr = st->q + (size_t)y * w + x0;
            const float wt = ty.w[t];
            for (int x = 0; x < sw; x++)
                if (mr[x] != 255) ro[x] += wt * st->ink[qr[x]];
        }
    }
    for (int o = 0; o < width; o++) {
        strip_taps(c0 - x0, s, o, sw, &tx[o]); /* in columns of `rows` */
    }
    for (int r = 0; r < FL_FIELD_STRIP_H; r++) {
        const float *ro = rows + (size_t)r * sw;
        unsigned char *dst = out + (size_t)r * FL_FIELD_STRIP_MAX;
        for (int o = 0; o < width; o++) {
            float acc = 0;
            for (int t = 0; t < tx[o].n; t++) acc += tx[o].w[t] * ro[tx[o].lo + t];
            acc = acc < 0 ? 0 : acc > 1 ? 1 : acc;
            dst[o] = (unsigned char)(acc * 255.0f + 0.5f);
        }
        memset(dst + width, 0, FL_FIELD_STRIP_MAX - width);
    }
    free(rows);
    free(tx);
    /* each piece's columns before the deslant (its pixels' rows moved back, as fd_segments
     * does for a segment's box), then its box in the source image */
    double ux0[FL_FIELD_MAX_PIECES], ux1[FL_FIELD_MAX_PIECES];
    for (int p = 0; p < np; p++) {
        ux0[p] = st->pieces[p].x0;
        ux1[p] = st->pieces[p].x1 + 1;
        if (st->slant != 0) { ux0[p] = 1e30; ux1[p] = -1e30; }
    }
    for (int y = 0; y < st->h && st->slant != 0; y++) {
        const unsigned char *mr = st->m + (size_t)y * w;
        const double back = st->sph + (y - 0.5 * st->h) * st->slant;
        for (int x = x0; x <= x1; x++)
            if (mr[x] != 255) {
                ux0[mr[x]] = fmin(ux0[mr[x]], x - back);
                ux1[mr[x]] = fmax(ux1[mr[x]], x + 1 - back);
            }
    }
    for (int p = 0; p < np; p++) { /* source column x is strip column (x + 0.5 - c0) s - 0.5 */
        const fd_piece *pc = &st->pieces[p];
        info->piece_x[p] = (float)((pc->sx / fmax(pc->mass, 1e-9) + 0.5 - c0) * s - 0.5);
        fd_to_source(st, ux0[p], pc->y0, ux1[p], pc->y1 + 1, info->piece_box[p]);
    }
    info->strip_width = width;
    return FL_OK;
}

static int fd_reserve(fd_buffers *b, size_t n) {
    if (n <= b->cap) return FL_OK;
    free(b->q); free(b->m); free(b->run); free(b->lab); free(b->stack);
    b->q = malloc(n);
    b->m = malloc(n);
    b->run = malloc(n * sizeof *b->run);
    b->lab = malloc(n * sizeof *b->lab);
    b->stack = malloc((n + 8) * sizeof *b->stack);
    b->cap = b->q && b->m && b->run && b->lab && b->stack ? n : 0;
    return b->cap ? FL_OK : FL_ERR_NOMEM;
}

static void fd_release(fd_buffers *b) {
    free(b->q); free(b->m); free(b->run); free(b->lab); free(b->stack); free(b->cols);
    free(b->dp); free(b->mv);
    memset(b, 0, sizeof *b);
}

static int field_one(const fl_image *im, int size, int invert, int light_on_dark,
                     unsigned char *inputs, fl_segment *segs, fl_field *info,
                     unsigned char *strip, fd_buffers *buf) {
    memset(info, 0, sizeof *info);
    if (im->height < 1 || im->width < 1) return FL_OK;
    fd_state *st = calloc(1, sizeof *st);
    if (!st) return FL_ERR_NOMEM;
    st->im = im;
    st->H = im->height;
    st->W = im->width;
    st->f = (imax(st->H, st->W) + FD_MAX_SIDE - 1) / FD_MAX_SIDE;
    st->h = (st->H + st->f - 1) / st->f;
    st->w = (st->W + st->f - 1) / st->f;
    st->n = (size_t)st->h * st->w;
    int rc = fd_reserve(buf, st->n);
    if (rc != FL_OK) { free(st); return rc; }
    st->buf = buf;
    st->q = buf->q; st->m = buf->m; st->run = buf->run; st->lab = buf->lab;
    st->stack = buf->stack;
    int ok = fd_gray(st, invert);
    if (ok) fd_measure(st);
    /* Digits much taller than the model's 20-pixel box lose nothing at a coarser scale, and
     * every later step costs per pixel: a text band above FD_BAND_MAX rows is read again at a
     * block-mean factor that brings it near FD_BAND_TARGET. */
    if (ok && st->band > FD_BAND_MAX && (int)(st->band / FD_BAND_TARGET) > 1) {
        const int k = (int)(st->band / FD_BAND_TARGET);
        st->f *= k;
        st->h = (st->H + st->f - 1) / st->f;
        st->w = (st->W + st->f - 1) / st->f;
        st->n = (size_t)st->h * st->w;
        ok = fd_gray(st, invert);
        if (ok) fd_measure(st);
    }
    if (ok) {
        const int w_before = st->w;
        rc = fd_deskew(st);
        if (rc != FL_OK) { fd_free(st); free(st); return rc; }
        if (st->w != w_before) fd_measure(st);
    }
    if (ok) {
        info->ink_is_light = st->light;
        fd_lines(st);
        /* the slant of what is left once lines are gone; a comb's boxes stand upright */
        const int w_before = st->w;
        rc = st->nwalls ? FL_OK : fd_deslant(st);
        if (rc != FL_OK) { fd_free(st); free(st); return rc; }
        if (st->w != w_before) {
            fd_measure(st);
            fd_lines(st);
        }
        rc = fd_components(st);
        if (rc == FL_OK) {
            const int nk = fd_keep(st);
            if (nk < 0) rc = FL_ERR_NOMEM;
            else if (nk > 0) {
                fd_blobs(st);
                rc = fd_pieces(st);
                if (rc == FL_OK) {
                    info->pieces = st->npieces;
                    info->truncated = st->truncated || st->nkeep_dropped;
                    info->height = (float)(st->height * st->f);
                    for (int p = 0; p < st->npieces; p++)
                        info->piece_ink[p] = (float)(st->pieces[p].mass / st->typical);
                    rc = fd_segments(st, size, light_on_dark, inputs, segs, info);
                    if (rc == FL_OK && strip) rc = fd_strip(st, strip, info);
                }
            }
        }
    }
    fd_free(st);
    free(st);
    return rc;
}

typedef struct {
    const fl_image *fields;
    int size, invert, light_on_dark;
    unsigned char *inputs;
    fl_segment *segs;
    fl_field *info;
    unsigned char *strips;
    int rc;
} fd_batch;

static void fd_run(void *ctx, size_t begin, size_t end) {
    fd_batch *b = ctx;
    const size_t plane = (size_t)b->size * b->size;
    fd_buffers buf = {0};
    for (size_t i = begin; i < end; i++) {
        int r = field_one(&b->fields[i], b->size, b->invert, b->light_on_dark,
                          b->inputs + i * FL_FIELD_MAX_SEGMENTS * plane,
                          b->segs + i * FL_FIELD_MAX_SEGMENTS, &b->info[i],
                          b->strips ? b->strips + i * FL_FIELD_STRIP_H * FL_FIELD_STRIP_MAX
                                    : NULL, &buf);
        if (r != FL_OK) __atomic_store_n(&b->rc, r, __ATOMIC_RELAXED);
    }
    fd_release(&buf);
}

int fl_field_segments(const fl_image *fields, size_t n, int size, int invert, int light_on_dark,
                      unsigned char *inputs, fl_segment *segs, fl_field *info,
                      unsigned char *strips, int num_threads) {
    if (n && (!fields || !inputs || !segs || !info)) return FL_ERR_ARG;
    if (size < 20 || size > 64 || invert < FL_INVERT_AUTO || invert > FL_INVERT_NO)
        return FL_ERR_ARG;
    for (size_t i = 0; i < n; i++)
        if (fields[i].dtype < FL_PIX_U8 || fields[i].dtype > FL_PIX_F64 || !fields[i].data)
            return FL_ERR_ARG;
    fd_batch b = {fields, size, invert, light_on_dark, inputs, segs, info, strips, FL_OK};
    int nt = num_threads < 1 ? 1 : num_threads;
    if ((size_t)nt > n) nt = (int)n;
    if (nt < 2 || !fl_pool_run(nt, n, 4, fd_run, &b)) fd_run(&b, 0, n);
    return b.rc;
}

/* ---- the search ---------------------------------------------------------------------- */

static float digit_logp(const float *row, int classes) {
    float best = 0;
    for (int c = 0; c < imin(10, classes); c++) best = row[c] > best ? row[c] : best;
    return logf(best > 1e-6f ? best : 1e-6f);
}

/* The log-probability of one class (a text's digit or pair), floored as digit_logp's. */
static float text_logp(const float *row, int cls) {
    return logf(row[cls] > 1e-6f ? row[cls] : 1e-6f);
}

/* Viterbi over piece boundaries 0..P, with the digit count and the comb box of the last digit
 * read as further coordinates: an arc is a segment (pieces p0..p1-1 read as its best digit,
 * or as its best pair of digits where pair_logp allows), or a skipped piece (noise). The
 * boxes of a comb rise strictly along a path: a box holds one digit, so a digit that crosses
 * a wall is not read again from its overhang. */
static int search_one(const fl_field *fi, const fl_segment *sg, const float *proba,
                      const float *pair_logp, const float *pair_proba, const signed char *text,
                      int classes, const fl_search_params *p, int *path, int *narcs,
                      float *logp, float *score_out, float *skipped, int *met) {
    const int P = fi->pieces, S = fi->segments;
    int tl = 0; /* a given text: its length is the path's, and each arc reads its next digits */
    while (text && tl < FL_FIELD_TEXT - 1 && text[tl] >= 0) tl++;
    /* at most one digit per piece, two with pairs */
    const int L = text ? imin(tl, pair_logp ? 2 * P : P) : pair_logp ? 2 * P : P;
    static const float NEG = -1e30f;
    /* boxes ranked 1..K among the segments' (0: no box) */
    int rank[FL_FIELD_MAX_SEGMENTS], cells[FL_FIELD_MAX_SEGMENTS], K = 0;
    for (int s = 0; s < S; s++) if (sg[s].cell >= 1) cells[K++] = sg[s].cell;
    qsort(cells, K, sizeof *cells, cmp_int);
    int u = 0;
    for (int k = 0; k < K; k++) if (!u || cells[k] != cells[u - 1]) cells[u++] = cells[k];
    K = u;
    for (int s = 0; s < S; s++) {
        rank[s] = 0;
        if (sg[s].cell < 1) continue;
        int lo = 0, hi = K - 1;
        while (lo < hi) {
            const int mid = (lo + hi) / 2;
            if (cells[mid] < sg[s].cell) lo = mid + 1; else hi = mid;
        }
        rank[s] = lo + 1;
    }
    const size_t NC = (size_t)L + 1, NK = (size_t)K + 1, total = ((size_t)P + 1) * NC * NK;
    float *best = malloc(total * sizeof *best), score[FL_FIELD_MAX_SEGMENTS];
    float pscore[FL_FIELD_MAX_SEGMENTS];
    short *from_c = malloc(total * sizeof *from_c), *from_k = malloc(total * sizeof *from_k);
    int *via = malloc(total * sizeof *via); /* the arc: a path entry, or -1 (a skip) */
    if (!best || !from_c || !from_k || !via) {
        free(best); free(from_c); free(from_k); free(via);
        return FL_ERR_NOMEM;
    }
#define AT(i, c, k) ((((size_t)(i)) * NC + (size_t)(c)) * NK + (size_t)(k))
    int start[FL_FIELD_MAX_PIECES + 2]; /* segments come in order of p0 */
    for (int i = 0, s = 0; i <= P; i++) {
        while (s < S && sg[s].p0 < i) s++;
        start[i] = s;
    }
    start[P + 1] = S;
    for (int s = 0; s < S; s++) {
        score[s] = digit_logp(proba + (size_t)s * classes, classes) -
                   (sg[s].split ? p->split_cost : p->digit_cost) - p->shape_cost * sg[s].shape;
        /* a pair is never read in a comb box: a box holds one digit (-inf and NaN: none) */
        const float pl = pair_logp ? pair_logp[s] : NEG;
        pscore[s] = pl > -1e29f && !rank[s] ? pl - p->pair_cost : NEG;
    }
    for (size_t t = 0; t < total; t++) best[t] = NEG;
    best[AT(0, 0, 0)] = 0;
    for (int i = 0; i < P; i++) {
        const float skip_cost = p->skip_cost * fminf(3.0f, fi->piece_ink[i]);
        for (int c = 0; c <= L; c++)
            for (int k = 0; k <= K; k++) {
                const float here = best[AT(i, c, k)];
                if (here == NEG) continue;
                const size_t sk = AT(i + 1, c, k);
                if (here - skip_cost > best[sk]) {
                    best[sk] = here - skip_cost; from_c[sk] = (short)c; from_k[sk] = (short)k;
                    via[sk] = -1;
                }
                if (c == L) continue;
                for (int s = start[i]; s < start[i + 1]; s++) {
                    if (rank[s] && rank[s] <= k) continue; /* this box, or one before it */
                    const size_t to = AT(sg[s].p1, c + 1, rank[s] ? rank[s] : k);
                    const float v = here + score[s] +
                                    (text ? text_logp(proba + (size_t)s * classes, text[c]) -
                                            digit_logp(proba + (size_t)s * classes, classes)
                                          : 0.0f);
                    if (v > best[to]) {
                        best[to] = v; from_c[to] = (short)c; from_k[to] = (short)k;
                        via[to] = s;
                    }
                    if (pscore[s] == NEG || c + 2 > L) continue;
                    const size_t two = AT(sg[s].p1, c + 2, k);
                    const float w = here + pscore[s] +
                                    (text ? text_logp(pair_proba + (size_t)s * 100,
                                                      10 * text[c] + text[c + 1]) - pair_logp[s]
                                          : 0.0f);
                    if (w > best[two]) {
                        best[two] = w; from_c[two] = (short)c; from_k[two] = (short)k;
                        via[two] = s | FL_FIELD_PAIR;
                    }
                }
            }
    }
    int bc = -1, bk = 0;
    *met = 1;
    for (int pass = 0; pass < 2 && bc < 0; pass++) {
        if (text && pass) break; /* a text that cannot be read: no path */
        const int c0 = text ? tl : pass ? 0 : imax(0, p->min_len);
        const int c1 = text ? (tl <= L ? tl : -1) : pass ? L : imin(L, p->max_len);
        for (int c = c0; c <= c1; c++)
            for (int k = 0; k <= K; k++) {
                const float v = best[AT(P, c, k)];
                if (v > NEG && (bc < 0 || v > best[AT(P, bc, bk)])) { bc = c; bk = k; }
            }
        if (bc < 0) *met = 0;
    }
    int tmp[FL_FIELD_MAX_PIECES], nd = 0, node = P, c = bc < 0 ? 0 : bc, k = bk;
    float lp = 0, sk = 0;
    *score_out = bc >= 0 ? best[AT(P, bc, bk)] : NEG;
    while (node > 0 && bc >= 0) {
        const size_t t = AT(node, c, k);
        const int a = via[t], pc = from_c[t], pk = from_k[t];
        if (a >= 0) {
            const int s = a & (FL_FIELD_PAIR - 1);
            tmp[nd++] = a;
            if (text) /* the digits of the text this arc read */
                lp += a & FL_FIELD_PAIR ? text_logp(pair_proba + (size_t)s * 100,
                                                    10 * text[pc] + text[pc + 1])
                                        : text_logp(proba + (size_t)s * classes, text[pc]);
            else
                lp += a & FL_FIELD_PAIR ? pair_logp[s]
                                        : digit_logp(proba + (size_t)s * classes, classes);
            node = sg[s].p0;
        } else {
            node--;
            sk += fi->piece_ink[node];
        }
        c = pc;
        k = pk;
    }
#undef AT
    free(best); free(from_c); free(from_k); free(via);
    *skipped = sk;
    for (int q = 0; q < nd; q++) path[q] = tmp[nd - 1 - q];
    *narcs = nd;
    *logp = lp;
    return FL_OK;
}

int fl_field_search(const fl_field *info, const fl_segment *segs, size_t n, const float *proba,
                    const float *pair_logp, const float *pair_proba, const signed char *texts,
                    const int64_t *first, int classes, const fl_search_params *params,
                    int *path, int *narcs, float *logp, float *score, float *skipped,
                    int *met) {
    if (n && (!info || !segs || !proba || !first || !params || !path || !narcs || !logp ||
              !score || !skipped || !met))
        return FL_ERR_ARG;
    if (classes < 10 && texts) return FL_ERR_ARG;
    if (texts && pair_logp && !pair_proba) return FL_ERR_ARG;
    if (classes < 1) return FL_ERR_ARG;
    for (size_t i = 0; texts && i < n; i++)
        for (int k = 0; k < FL_FIELD_TEXT; k++)
            if (texts[i * FL_FIELD_TEXT + k] > 9) return FL_ERR_ARG;
    for (size_t i = 0; i < n; i++) {
        if (info[i].pieces < 0 || info[i].pieces > FL_FIELD_MAX_PIECES ||
            info[i].segments < 0 || info[i].segments > FL_FIELD_MAX_SEGMENTS || first[i] < 0)
            return FL_ERR_ARG;
        const fl_segment *sg = segs + i * FL_FIELD_MAX_SEGMENTS;
        for (int k = 0; k < info[i].segments; k++) /* in order of p0, within the pieces */
            if (sg[k].p0 < 0 || sg[k].p1 <= sg[k].p0 || sg[k].p1 > info[i].pieces ||
                (k && sg[k].p0 < sg[k - 1].p0))
                return FL_ERR_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        const int rc = search_one(&info[i], segs + i * FL_FIELD_MAX_SEGMENTS,
                                  proba + (size_t)first[i] * classes,
                                  pair_logp ? pair_logp + first[i] : NULL,
                                  pair_proba && texts ? pair_proba + (size_t)first[i] * 100 : NULL,
                                  texts ? texts + i * FL_FIELD_TEXT : NULL, classes, params,
                                  path + i * FL_FIELD_MAX_PIECES, &narcs[i], &logp[i],
                                  &score[i], &skipped[i], &met[i]);
        if (rc != FL_OK) return rc;
    }
    return FL_OK;
}
