/* MNIST-style preprocessing of pictures of single digits, batched: the C form of
 * fastlenet/reference_preprocess.py (the specification, with the reasons for each step; the
 * constants below must stay equal to its). Per image: gray levels -> Otsu threshold ->
 * polarity -> ink in [0, 1] -> 8-connected components (the digit and what belongs to it) ->
 * stroke width (thin strokes thickened) -> resampling of the ink's box into 20x20, centred by
 * centre of mass in one step.
 *
 * Arithmetic that makes decisions (histogram, Otsu, the component keep rule) is done in double
 * in the same order as the reference, so both decide alike; sums over pixels may round
 * differently (a few ulps). Contraction into FMA is disabled for the same reason.
 * Images larger than PP_MAX_SIDE are first reduced by an integer block mean, which bounds the
 * scratch memory (about 40 bytes per reduced pixel) and the time of a page-sized scan.
 * Threads (the engine's pool, pool.c) take whole images; each image is computed by one thread,
 * so the result does not depend on the thread count.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fastlenet.h"
#include "pool.h"
#include "preprocess.h"

#define PP_BOX 20
#define PP_INK_FLOOR 0.15
#define PP_MIN_CONTRAST FL_MIN_CONTRAST
#define PP_KEEP_MASS 0.10
#define PP_KEEP_INSIDE 0.02
#define PP_KEEP_GAP 0.5
#define PP_THIN_WIDTH 1.5
#define PP_TARGET_WIDTH 2.0
#define PP_MAX_DILATE 8
#define PP_MAX_SIDE 512

typedef struct {
    double mass;
    int y0, y1, x0, x1;
    int index;
} comp;

static int comp_order(const void *a, const void *b) {
    const comp *p = a, *q = b;
    if (p->mass != q->mass) return p->mass > q->mass ? -1 : 1;
    return p->index - q->index;
}

static int imax(int a, int b) { return a > b ? a : b; }
static int imin(int a, int b) { return a < b ? a : b; }

/* Sparse row of a resampling matrix: weights for source indices lo .. lo+n-1. */
/* Shrinking covers at most (PP_MAX_SIDE + 2 * PP_MAX_DILATE) / PP_BOX + 2 source pixels. */
/* t0 .. t1 - 1: the taps that fall inside the source (set by the resampling pass). */
typedef struct { int lo, n, t0, t1; double w[48]; } wrow;

static void weights_row(int r, int n_in, double cin, double cout, double s, wrow *row) {
    row->lo = 0;
    row->n = 0;
    if (s <= 1.0) {
        const double a = cin + ((r - 0.5) - cout) / s, b = cin + ((r + 0.5) - cout) / s;
        const int lo = imax(0, (int)floor(a + 0.5)), hi = imin(n_in - 1, (int)floor(b + 0.5));
        row->lo = lo;
        for (int i = lo; i <= hi; i++) {
            const double hi_e = b < i + 0.5 ? b : i + 0.5, lo_e = a > i - 0.5 ? a : i - 0.5;
            const double ov = hi_e - lo_e;
            row->w[i - lo] = ov > 0 ? ov * s : 0.0;
        }
        row->n = hi >= lo ? hi - lo + 1 : 0;
    } else {
        const double y = cin + (r - cout) / s;
        const int i0 = (int)floor(y);
        const double f = y - i0;
        row->lo = i0;
        row->n = 2;
        row->w[0] = (i0 >= 0 && i0 < n_in) ? 1.0 - f : 0.0;
        row->w[1] = (i0 + 1 >= 0 && i0 + 1 < n_in) ? f : 0.0;
    }
}

static void blank(float *out, int size, int light_on_dark) {
    const float bg = light_on_dark ? 0.0f : 1.0f;
    for (int i = 0; i < size * size; i++) out[i] = bg;
}

/* A running max of radius k along each of `lines` lines of `len` values (line l's value i at
 * l * line_step + i * step), from in to out; values are >= 0, so the max starts at 0. */
static void max_filter_lines(const double *in, double *out, int lines, int len,
                             ptrdiff_t line_step, ptrdiff_t step, int k) {
    for (int l = 0; l < lines; l++) {
        const double *a = in + l * line_step;
        double *b = out + l * line_step;
        for (int i = 0; i < len; i++) {
            double m = 0;
            for (int j = imax(0, i - k); j <= imin(len - 1, i + k); j++)
                m = a[j * step] > m ? a[j * step] : m;
            b[i * step] = m;
        }
    }
}

/* Per-value tables of uint8 images, kept across the images of a batch that share a scale
 * (all of them, in practice): 256 floor()s per image cost as much as a 28x28 image's pixels. */
typedef struct {
    double scale;
    int valid;
    double graw[256];          /* value * scale, clipped to 1 */
    unsigned char qlut[256];   /* quantised to 256 levels */
} u8_tables;

/* One image on its way through the stages: its sizes, its scratch (freed by pp_free), and what
 * each stage decided. A stage returns FL_OK, PP_BLANK (nothing to centre: the output is the
 * paper colour) or FL_ERR_NOMEM. */
enum { PP_BLANK = -1 };
typedef struct {
    const fl_image *im;
    int H, W;            /* the image */
    int f, h, w;         /* the block-mean factor, and the reduced image */
    size_t n;            /* h * w */
    int W2;              /* mask rows: w plus a border of one pixel that is never ink */
    int u8;              /* uint8 without reduction: per-value tables (u8_tables) */
    double *g;           /* gray in [0, 1]; then, in place, the ink map v */
    unsigned char *q;    /* gray quantised to 256 levels */
    unsigned char *ink, *kept, *rowk; /* masks of (h + 2) x W2 */
    int32_t *lab, *stack;
    comp *comps;
    int ncomp;
    int *keep;
    double *pad, *tmp;   /* the thickened ink (max filter) */
    wrow *rows;
    size_t hist[256], hraw[256];
    int thr, ink_is_light;
    int y0, y1, x0, x1;  /* the box of the kept components */
    size_t area, per;    /* their area and perimeter (pixel edges) */
    int all_kept;        /* every pixel with ink is kept (fl_preprocess_ink): none to clear */
    int k, ph, pw;       /* the max filter's radius; the padded frame */
    double s;            /* the scale that fits the box into PP_BOX */
    const double *src;   /* the ink as resampled: v, or the thickened copy */
    int ny0, ny1, nx0, nx1; /* where src can be nonzero */
    double cy, cx;       /* its centre of mass */
} pp_state;

static int pp_alloc(pp_state *st, const fl_image *im) {
    memset(st, 0, sizeof *st);
    st->im = im;
    st->H = im->height;
    st->W = im->width;
    st->f = (imax(st->H, st->W) + PP_MAX_SIDE - 1) / PP_MAX_SIDE;
    st->h = (st->H + st->f - 1) / st->f;
    st->w = (st->W + st->f - 1) / st->f;
    st->n = (size_t)st->h * st->w;
    st->W2 = st->w + 2;
    const size_t n2 = (size_t)(st->h + 2) * st->W2;
    st->u8 = st->f == 1 && im->dtype == FL_PIX_U8;
    st->g = malloc(st->n * sizeof *st->g);
    st->q = malloc(st->n);
    st->ink = calloc(n2, 1);
    st->kept = calloc(n2, 1);
    st->rowk = calloc(n2, 1);
    st->lab = calloc(n2, sizeof *st->lab);
    st->stack = malloc(st->n * sizeof *st->stack);
    return st->g && st->q && st->ink && st->kept && st->rowk && st->lab && st->stack
               ? FL_OK : FL_ERR_NOMEM;
}

static void pp_free(pp_state *st) {
    free(st->g); free(st->q); free(st->ink); free(st->lab); free(st->stack); free(st->comps);
    free(st->keep); free(st->kept); free(st->rowk); free(st->pad); free(st->tmp); free(st->rows);
}

/* Reference step "gray": values in [0, 1] by the unit scale (block means when reduced),
 * quantised to 256 levels, and their histogram. */
static void gray_levels(pp_state *st, u8_tables *tab) {
    const fl_image *im = st->im;
    const int H = st->H, W = st->W, f = st->f, h = st->h, w = st->w;
    const size_t n = st->n;
    double *g = st->g;
    unsigned char *q = st->q;
    size_t *hist = st->hist, *hraw = st->hraw;
    const char *base = (const char *)im->data;
    if (!st->u8) /* uint8 without reduction needs no g: the tables work from the values */
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double sum = 0.0;
                int cnt = 0;
                for (int yy = y * f; yy < imin(H, y * f + f); yy++)
                    for (int xx = x * f; xx < imin(W, x * f + f); xx++, cnt++)
                        sum += fl_unit_pixel(base + yy * im->stride_h + xx * im->stride_w,
                                          im->dtype, im->scale);
                g[(size_t)y * w + x] = f == 1 ? sum : sum / cnt;
            }
    /* uint8 without reduction: 256 possible values, so the per-pixel arithmetic is done once
     * per value (a table; the same results, without a floor() per pixel) */
    if (st->u8) {
        if (!tab->valid || tab->scale != im->scale) {
            for (int p = 0; p < 256; p++) {
                double gp = p * im->scale;
                tab->graw[p] = gp > 1.0 ? 1.0 : gp;
                double t = floor(tab->graw[p] * 255 + 0.5);
                tab->qlut[p] = (unsigned char)(t < 0 ? 0 : t > 255 ? 255 : t);
            }
            tab->scale = im->scale;
            tab->valid = 1;
        }
        const unsigned char *qlut = tab->qlut;
        /* two histograms taken in turn: runs of equal pixels (the paper) would otherwise
         * wait on the previous increment of the same counter */
        size_t hodd[256] = {0};
        for (int y = 0; y < h; y++) {
            const unsigned char *row = (const unsigned char *)(base + y * im->stride_h);
            unsigned char *qr = q + (size_t)y * w;
            int x = 0;
            for (; x + 1 < w; x += 2) {
                const unsigned char p0 = row[x * im->stride_w], p1 = row[(x + 1) * im->stride_w];
                hraw[p0]++;
                hodd[p1]++;
                qr[x] = qlut[p0];
                qr[x + 1] = qlut[p1];
            }
            if (x < w) {
                const unsigned char p = row[x * im->stride_w];
                hraw[p]++;
                qr[x] = qlut[p];
            }
        }
        for (int p = 0; p < 256; p++) hraw[p] += hodd[p];
        for (int p = 0; p < 256; p++) hist[qlut[p]] += hraw[p];
    } else {
        for (size_t i = 0; i < n; i++) {
            double t = floor(g[i] * 255 + 0.5);
            q[i] = (unsigned char)(t < 0 ? 0 : t > 255 ? 255 : t);
            hist[q[i]]++;
        }
    }
}

int fl_otsu(const size_t hist[256]) {
    double w0[256], m0[256], acc_w = 0, acc_m = 0;
    for (int t = 0; t < 256; t++) {
        acc_w += (double)hist[t];
        acc_m += (double)hist[t] * t;
        w0[t] = acc_w;
        m0[t] = acc_m;
    }
    const double total = w0[255], mt = m0[255];
    double best = -1.0;
    int thr = -1;
    for (int t = 0; t < 255; t++) {
        const double a = w0[t], b = total - w0[t];
        /* an empty bin repeats the previous threshold's value, which never wins a strict > */
        if (a == 0 || b == 0 || (t > 0 && hist[t] == 0)) continue;
        const double d = m0[t] / a - (mt - m0[t]) / b;
        const double between = a * b * d * d;
        if (between > best) { best = between; thr = t; }
    }
    return thr;
}

/* Reference step "otsu": the threshold that maximises the between-class variance; ties to the
 * lowest. PP_BLANK when the histogram has one class only. */
static int otsu_threshold(pp_state *st) {
    st->thr = fl_otsu(st->hist);
    return st->thr < 0 ? PP_BLANK : FL_OK;
}

/* Reference step "polarity": which class is ink. invert=auto: the frame's majority is paper
 * (the whole image's when the frame is undecided). */
static void polarity(pp_state *st, int invert, int light_on_dark) {
    if (invert != FL_INVERT_AUTO) {
        st->ink_is_light = light_on_dark != (invert == FL_INVERT_YES);
        return;
    }
    const int h = st->h, w = st->w, thr = st->thr;
    const int t = imax(1, imin(h, w) / 20);
    size_t fl = 0, fn = 0, al = 0;
    for (int v = thr + 1; v < 256; v++) al += st->hist[v];
    for (int y = 0; y < h; y++) { /* the frame only */
        const unsigned char *qr = st->q + (size_t)y * w;
        const int full = y < t || y >= h - t;
        for (int x = 0; x < w; x++) {
            if (!full && x == t) x = imax(t, w - t); /* skip the inside of the row */
            fn++;
            fl += qr[x] > thr;
        }
    }
    double frac = (double)fl / (double)fn;
    if (frac >= 0.35 && frac <= 0.65) frac = (double)al / (double)st->n;
    st->ink_is_light = !(frac > 0.5);
}

/* Reference step "ink": v in [0, 1] from the paper level to the ink level, below PP_INK_FLOOR
 * cleared; into g's buffer. PP_BLANK below PP_MIN_CONTRAST. */
static int ink_map(pp_state *st, const u8_tables *tab) {
    const size_t n = st->n;
    const int h = st->h, w = st->w, thr = st->thr, ink_is_light = st->ink_is_light;
    const size_t *hraw = st->hraw;
    const double *graw = tab->graw;
    const unsigned char *qlut = tab->qlut;
    double *g = st->g;
    double s_ink = 0, s_paper = 0;
    size_t c_ink = 0;
    if (st->u8) { /* per value: the same sums up to rounding order */
        for (int p = 0; p < 256; p++) {
            if (!hraw[p]) continue;
            const unsigned char qp = qlut[p];
            if ((qp > thr) == ink_is_light) { s_ink += graw[p] * hraw[p]; c_ink += hraw[p]; }
            else s_paper += graw[p] * hraw[p];
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            if ((st->q[i] > thr) == ink_is_light) { s_ink += g[i]; c_ink++; }
            else s_paper += g[i];
        }
    }
    const double ink_level = s_ink / (double)c_ink, paper_level = s_paper / (double)(n - c_ink);
    if (fabs(ink_level - paper_level) < PP_MIN_CONTRAST) return PP_BLANK;
    double *v = g; /* reuse: g is not needed after this */
    const double inv = 1.0 / (ink_level - paper_level), inv_floor = 1.0 / (1 - PP_INK_FLOOR);
    if (st->u8) { /* 256 possible values: a table, same arithmetic */
        const fl_image *im = st->im;
        const char *base = (const char *)im->data;
        double lut[256];
        for (int p = 0; p < 256; p++) {
            if (!hraw[p]) continue; /* only the values the image has are looked up */
            const double gp = graw[p];
            double t = ((gp - paper_level) * inv - PP_INK_FLOOR) * inv_floor;
            lut[p] = t < 0 ? 0 : t > 1 ? 1 : t;
        }
        for (int y = 0; y < h; y++) {
            const unsigned char *row = (const unsigned char *)(base + y * im->stride_h);
            for (int x = 0; x < w; x++) v[(size_t)y * w + x] = lut[row[x * im->stride_w]];
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            double t = ((g[i] - paper_level) * inv - PP_INK_FLOOR) * inv_floor;
            v[i] = t < 0 ? 0 : t > 1 ? 1 : t;
        }
    }
    return FL_OK;
}

/* Reference step "components": 8-connected components of the ink class, labelled in raster
 * order; a component's pixels are visited in the same order as the reference's stack (its mass
 * is their sum). */
static int label_components(pp_state *st) {
    const int h = st->h, w = st->w, W2 = st->W2, thr = st->thr, ink_is_light = st->ink_is_light;
    unsigned char *ink = st->ink;
    int32_t *lab = st->lab, *stack = st->stack;
    const double *v = st->g;
    for (int y = 0; y < h; y++) {
        const unsigned char *qr = st->q + (size_t)y * w;
        unsigned char *ir = ink + (size_t)(y + 1) * W2 + 1;
        for (int x = 0; x < w; x++) ir[x] = (qr[x] > thr) == ink_is_light;
    }
    int ncomp = 0, cap = 64;
    comp *comps = malloc(cap * sizeof *comps);
    st->comps = comps;
    if (!comps) return FL_ERR_NOMEM;
    /* neighbours as offsets in the mask and in a stack entry, which packs (y << 16) | x
     * (h, w <= PP_MAX_SIDE): no division per pixel to find its row and column */
    const ptrdiff_t nb[9] = {-W2 - 1, -W2, -W2 + 1, -1, 0, 1, W2 - 1, W2, W2 + 1};
    const int32_t nbp[9] = {-65537, -65536, -65535, -1, 0, 1, 65535, 65536, 65537};
    for (int ys = 0; ys < h; ys++)
        for (int xs = 0; xs < w; xs++) {
            const size_t i0 = (size_t)(ys + 1) * W2 + xs + 1;
            if (lab[i0] || !ink[i0]) continue;
            if (ncomp == cap) {
                comp *bigger = realloc(comps, (size_t)cap * 2 * sizeof *comps);
                if (!bigger) { st->ncomp = ncomp; return FL_ERR_NOMEM; }
                st->comps = comps = bigger;
                cap *= 2;
            }
            comp *c = &comps[ncomp++];
            c->index = ncomp - 1;
            c->mass = 0;
            c->y0 = c->y1 = ys;
            c->x0 = c->x1 = xs;
            size_t top = 0;
            stack[top++] = (ys << 16) | xs;
            lab[i0] = ncomp;
            while (top) {
                const int32_t p = stack[--top];
                const int y = p >> 16, x = p & 0xFFFF;
                const size_t i = (size_t)(y + 1) * W2 + x + 1;
                c->mass += v[(size_t)y * w + x];
                c->y0 = imin(c->y0, y); c->y1 = imax(c->y1, y);
                c->x0 = imin(c->x0, x); c->x1 = imax(c->x1, x);
                for (int d = 0; d < 9; d++) {
                    const size_t j = (size_t)((ptrdiff_t)i + nb[d]);
                    if (ink[j] && !lab[j]) {
                        lab[j] = ncomp;
                        stack[top++] = p + nbp[d];
                    }
                }
            }
        }
    st->ncomp = ncomp;
    return FL_OK;
}

/* Reference step "keep": the heaviest component, and the others heavy and close enough (or
 * touching its box) to belong to the digit; their box and area. Component masses are sums in
 * a different order than the reference's: the same to within rounding. */
static int keep_components(pp_state *st) {
    const int h = st->h, w = st->w, W2 = st->W2, ncomp = st->ncomp;
    comp *comps = st->comps;
    int *keep = calloc((size_t)ncomp + 1, sizeof *keep);
    st->keep = keep;
    if (!keep) return FL_ERR_NOMEM;
    qsort(comps, ncomp, sizeof *comps, comp_order);
    const comp *mainc = &comps[0];
    int y0 = mainc->y0, y1 = mainc->y1, x0 = mainc->x0, x1 = mainc->x1;
    keep[mainc->index + 1] = 1;
    for (int k = 1; k < ncomp; k++) {
        const comp *c = &comps[k];
        if (c->mass < PP_KEEP_INSIDE * mainc->mass) break;
        const int gap = imax(imax(imax(y0 - c->y1, c->y0 - y1), imax(x0 - c->x1, c->x0 - x1)), 0);
        const int side = imax(y1 - y0 + 1, x1 - x0 + 1);
        if ((c->mass >= PP_KEEP_MASS * mainc->mass && gap <= PP_KEEP_GAP * side) || gap <= 1) {
            keep[c->index + 1] = 1;
            y0 = imin(y0, c->y0); y1 = imax(y1, c->y1);
            x0 = imin(x0, c->x0); x1 = imax(x1, c->x1);
        }
    }
    size_t area = 0;
    for (int y = 0; y < h; y++) {
        const size_t r = (size_t)(y + 1) * W2 + 1;
        for (int x = 0; x < w; x++) {
            st->kept[r + x] = keep[st->lab[r + x]] != 0;
            area += st->kept[r + x];
        }
    }
    st->y0 = y0; st->y1 = y1; st->x0 = x0; st->x1 = x1;
    st->area = area;
    return FL_OK;
}

/* Reference step "clear": ink not next to a kept pixel (3x3: a row pass, then a column pass)
 * is cleared; and the kept region's perimeter in pixel edges. */
static void clear_far_ink(pp_state *st) {
    const int h = st->h, w = st->w, W2 = st->W2;
    const unsigned char *kept = st->kept;
    unsigned char *rowk = st->rowk;
    if (!st->all_kept) {
        for (int y = 0; y < h; y++) {
            const size_t r = (size_t)(y + 1) * W2 + 1;
            for (int x = 0; x < w; x++)
                rowk[r + x] = kept[r + x - 1] | kept[r + x] | kept[r + x + 1];
        }
        for (int y = 0; y < h; y++) {
            const size_t r = (size_t)(y + 1) * W2 + 1;
            double *vr = st->g + (size_t)y * w;
            for (int x = 0; x < w; x++) {
                const size_t i = r + x;
                const int near = rowk[i] | rowk[i - W2] | rowk[i + W2];
                vr[x] = near ? vr[x] : 0.0;
            }
        }
    }
    size_t per = 0;
    for (int y = 0; y < h; y++) {
        const size_t r = (size_t)(y + 1) * W2 + 1;
        for (int x = 0; x < w; x++) {
            const size_t i = r + x;
            per += (size_t)(kept[i] * (4 - kept[i - W2] - kept[i + W2] - kept[i - 1] -
                                       kept[i + 1]));
        }
    }
    st->per = per;
}

/* Reference step "thicken": the stroke width 2 area / perimeter; strokes thinner than
 * PP_THIN_WIDTH output pixels get a (2k+1)^2 max filter. Sets the scale into the box and the
 * region where the (padded) ink can be nonzero. */
static int thicken_strokes(pp_state *st) {
    const int h = st->h, w = st->w;
    const double *v = st->g;
    int side = imax(st->y1 - st->y0 + 1, st->x1 - st->x0 + 1);
    const double width = 2.0 * (double)st->area / (double)st->per;
    double s = (double)PP_BOX / side;
    int k = 0;
    if (s * width < PP_THIN_WIDTH) {
        double kk = floor((PP_TARGET_WIDTH / s - width) / 2 + 0.5);
        k = kk < 1 ? 1 : kk > PP_MAX_DILATE ? PP_MAX_DILATE : (int)kk;
        side += 2 * k;
        s = (double)PP_BOX / side;
    }
    const int ph = h + 2 * k, pw = w + 2 * k;
    st->src = v;
    if (k) {
        double *pad = st->pad = calloc((size_t)ph * pw, sizeof *pad);
        double *tmp = st->tmp = malloc((size_t)ph * pw * sizeof *tmp);
        if (!pad || !tmp) return FL_ERR_NOMEM;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) tmp[(size_t)(y + k) * pw + x + k] = v[(size_t)y * w + x];
        for (int y = 0; y < ph; y++)
            for (int x = 0; x < pw; x++)
                if (y < k || y >= h + k || x < k || x >= w + k) tmp[(size_t)y * pw + x] = 0;
        max_filter_lines(tmp, pad, ph, pw, pw, 1, k); /* rows: tmp -> pad */
        max_filter_lines(pad, tmp, pw, ph, 1, pw, k); /* columns: pad -> tmp */
        st->src = tmp;
    }
    st->k = k; st->ph = ph; st->pw = pw; st->s = s;
    /* Ink is zero outside the kept box grown by the near pass (1) and the max filter (k), in
     * the padded frame: the sums below skip those zeros (adding +0 changes no sum). */
    st->ny0 = imax(0, st->y0 - 1); st->ny1 = imin(ph - 1, st->y1 + 1 + 2 * k);
    st->nx0 = imax(0, st->x0 - 1); st->nx1 = imin(pw - 1, st->x1 + 1 + 2 * k);
    return FL_OK;
}

/* Reference step "centre": the ink's centre of mass (in the padded frame). PP_BLANK when no
 * ink is left. */
static int centre_of_mass(pp_state *st) {
    const int pw = st->pw;
    double sm = 0, sy = 0, sx = 0;
    for (int y = st->ny0; y <= st->ny1; y++)
        for (int x = st->nx0; x <= st->nx1; x++) {
            const double t = st->src[(size_t)y * pw + x];
            sm += t;
            sy += t * y;
            sx += t * x;
        }
    if (!(sm > 0)) return PP_BLANK;
    st->cy = sy / sm;
    st->cx = sx / sm;
    return FL_OK;
}

/* Reference step "resample": out = Ry . src . Rx^T (both sparse), the box scaled by s and the
 * centre of mass at the frame's centre, then normalised so the darkest ink is 1 (or 0 for
 * dark-on-light). */
static int resample(pp_state *st, int size, int light_on_dark, float *out) {
    const int ph = st->ph, pw = st->pw, ny0 = st->ny0, ny1 = st->ny1;
    const double *src = st->src, centre = size / 2.0;
    wrow *rows = st->rows = malloc(2 * (size_t)size * sizeof *rows);
    double *line = calloc((size_t)pw, sizeof *line);
    if (!rows || !line) { free(line); return FL_ERR_NOMEM; }
    wrow *ry = rows, *rx = rows + size;
    for (int r = 0; r < size; r++) {
        weights_row(r, ph, st->cy, centre, st->s, &ry[r]);
        weights_row(r, pw, st->cx, centre, st->s, &rx[r]);
    }
    /* the row pass fills only the columns some output column reads (same sums, same order) */
    int xa = pw, xb = -1;
    for (int c = 0; c < size; c++)
        if (rx[c].n) {
            xa = imin(xa, rx[c].lo);
            xb = imax(xb, rx[c].lo + rx[c].n - 1);
        }
    xa = imax(xa, st->nx0);
    xb = imin(xb, st->nx1);
    /* taps of each output column that fall inside the source row */
    for (int c = 0; c < size; c++) {
        int t0 = 0, t1 = rx[c].n;
        while (t0 < t1 && rx[c].lo + t0 < 0) t0++;
        while (t1 > t0 && rx[c].lo + t1 - 1 >= pw) t1--;
        if (rx[c].lo + t0 > xb || rx[c].lo + t1 - 1 < xa) t1 = t0; /* reads only zeros */
        rx[c].t0 = t0;
        rx[c].t1 = t1;
    }
    /* an exclusive end: with x <= xb the trip count could overflow, which keeps the
     * compiler from vectorizing the row pass (each element is its own sum: same results) */
    const int xe = xb + 1;
    double top = 0;
    float *o = out;
    for (int r = 0; r < size; r++) {
        int taps = 0;
        for (int x = xa; x < xe; x++) line[x] = 0;
        for (int t = 0; t < ry[r].n; t++) {
            const int i = ry[r].lo + t;
            const double wt = ry[r].w[t];
            if (i < ny0 || i > ny1 || wt == 0) continue;
            const double *srow = src + (size_t)i * pw;
            for (int x = xa; x < xe; x++) line[x] += wt * srow[x];
            taps++;
        }
        float *orow = o + (size_t)r * size;
        if (!taps) { /* rows above and below the digit: zeros, as the sums below would give */
            for (int c = 0; c < size; c++) orow[c] = 0.0f;
            continue;
        }
        for (int c = 0; c < size; c++) {
            double acc = 0;
            const double *wc = rx[c].w;
            const int lo = rx[c].lo;
            for (int t = rx[c].t0; t < rx[c].t1; t++) acc += wc[t] * line[lo + t];
            acc = acc < 0 ? 0 : acc > 1 ? 1 : acc;
            top = acc > top ? acc : top;
            orow[c] = (float)acc;
        }
    }
    free(line);
    const int nout = size * size;
    if (!(top > 0)) {
        for (int i = 0; i < nout; i++) o[i] = light_on_dark ? 0.0f : 1.0f;
    } else if (light_on_dark) {
        for (int i = 0; i < nout; i++) o[i] = (float)((double)o[i] / top);
    } else {
        for (int i = 0; i < nout; i++) o[i] = (float)(1.0 - (double)o[i] / top);
    }
    return FL_OK;
}

/* The reference's last steps (clear, thicken, centre, resample) after `rc` of the earlier
 * ones; a blank result is the paper colour. Frees st. FL_OK or FL_ERR_NOMEM. */
static int finish(pp_state *st, int rc, int size, int light_on_dark, float *out) {
    if (rc == FL_OK) {
        clear_far_ink(st);
        rc = thicken_strokes(st);
    }
    if (rc == FL_OK) rc = centre_of_mass(st);
    if (rc == FL_OK) rc = resample(st, size, light_on_dark, out);
    if (rc == PP_BLANK) {
        blank(out, size, light_on_dark);
        rc = FL_OK;
    }
    pp_free(st);
    return rc;
}

/* One image -> out (size x size), the reference's steps in order. FL_OK or FL_ERR_NOMEM. */
static int preprocess_one(const fl_image *im, int size, int invert, int light_on_dark,
                          float *out, u8_tables *tab) {
    if (im->height < 1 || im->width < 1) { blank(out, size, light_on_dark); return FL_OK; }
    pp_state st;
    int rc = pp_alloc(&st, im);
    if (rc == FL_OK) {
        gray_levels(&st, tab);
        rc = otsu_threshold(&st);
    }
    if (rc == FL_OK) {
        polarity(&st, invert, light_on_dark);
        rc = ink_map(&st, tab);
    }
    if (rc == FL_OK) rc = label_components(&st);
    if (rc == FL_OK) rc = keep_components(&st);
    return finish(&st, rc, size, light_on_dark, out);
}

/* A batch as work items for the engine's pool (pool.c: fork-safe, no spin-wait). */
typedef struct {
    const fl_image *images;
    int size, invert, light_on_dark;
    float *out;
    int rc;
} pp_batch;

static void pp_run(void *ctx, size_t begin, size_t end) {
    pp_batch *b = ctx;
    const size_t plane = (size_t)b->size * b->size;
    u8_tables tab;
    tab.valid = 0;
    for (size_t i = begin; i < end; i++) {
        int r = preprocess_one(&b->images[i], b->size, b->invert, b->light_on_dark,
                               b->out + i * plane, &tab);
        if (r != FL_OK) __atomic_store_n(&b->rc, r, __ATOMIC_RELAXED);
    }
}

int fl_preprocess(const fl_image *images, size_t n, int size, int invert, int light_on_dark,
                  float *out, int num_threads) {
    if ((!images && n) || (!out && n) || size < PP_BOX || size > 4096) return FL_ERR_ARG;
    if (invert < FL_INVERT_AUTO || invert > FL_INVERT_NO) return FL_ERR_ARG;
    for (size_t i = 0; i < n; i++)
        if (images[i].dtype < FL_PIX_U8 || images[i].dtype > FL_PIX_F64 || !images[i].data)
            return FL_ERR_ARG;
    pp_batch b = {images, size, invert, light_on_dark, out, FL_OK};
    /* Small images take ~10 us each: below a few per thread, waking threads costs more. */
    int nt = num_threads < 1 ? 1 : num_threads;
    if ((size_t)nt > n / 4) nt = (int)(n / 4);
    if (nt < 2 || !fl_pool_run(nt, n, 4, pp_run, &b)) pp_run(&b, 0, n);
    return b.rc;
}


/* One image on the calling thread, the whole way. */
static int preprocess_alone(const fl_image *im, int size, int invert, int light_on_dark, float *out) {
    u8_tables tab;
    tab.valid = 0;
    return preprocess_one(im, size, invert, light_on_dark, out, &tab);
}

/* An ink map (h x w values in [0, 1], the pixels of one digit and nothing else, as the fields
 * search cuts them) -> out, through the last steps of the reference (clear, thicken, centre,
 * resample): the earlier ones (threshold, polarity, components) are already decided. Larger
 * maps than PP_MAX_SIDE take the whole way. FL_OK or FL_ERR_NOMEM. */
int fl_preprocess_ink(const float *ink, int h, int w, int size, int light_on_dark, float *out) {
    const fl_image im = {ink, FL_PIX_F32, h, w, (ptrdiff_t)w * (ptrdiff_t)sizeof *ink,
                         (ptrdiff_t)sizeof *ink, 1.0};
    if (h < 1 || w < 1) { blank(out, size, light_on_dark); return FL_OK; }
    if (h > PP_MAX_SIDE || w > PP_MAX_SIDE)
        return preprocess_alone(&im, size, light_on_dark ? FL_INVERT_NO : FL_INVERT_YES,
                                 light_on_dark, out);
    pp_state st; /* only what the last steps use: g, kept */
    memset(&st, 0, sizeof st);
    st.im = &im;
    st.H = st.h = h;
    st.W = st.w = w;
    st.f = 1;
    st.n = (size_t)h * w;
    st.W2 = w + 2;
    st.all_kept = 1; /* the ink is the pieces' own: nothing lies far from it */
    st.g = malloc(st.n * sizeof *st.g);
    st.kept = calloc((size_t)(h + 2) * st.W2, 1);
    int rc = st.g && st.kept ? FL_OK : FL_ERR_NOMEM;
    if (rc == FL_OK) {
        int y0 = h, y1 = -1, x0 = w, x1 = -1;
        size_t area = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const double v = ink[(size_t)y * w + x];
                const int on = v > 0;
                st.g[(size_t)y * w + x] = v > 1 ? 1 : on ? v : 0;
                st.kept[(size_t)(y + 1) * st.W2 + 1 + x] = (unsigned char)on;
                if (!on) continue;
                area++;
                y0 = imin(y0, y); y1 = imax(y1, y);
                x0 = imin(x0, x); x1 = imax(x1, x);
            }
        st.y0 = y0; st.y1 = y1; st.x0 = x0; st.x1 = x1;
        st.area = area;
        if (!area) rc = PP_BLANK;
    }
    return finish(&st, rc, size, light_on_dark, out);
}
