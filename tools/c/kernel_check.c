/* kernel_check: every kernel of every ISA level this CPU runs, against a float64 reference and
 * against the scalar specification, in plain C (no Python), so that it runs where Python cannot:
 * under qemu-user for aarch64 (tools/c/check_aarch64.sh), or natively (tests/test_kernel_check.py).
 *
 *     kernel_check [--seed N] [--isa NAME]      exit status 0: all match; 1: a mismatch; 2: usage
 *     kernel_check --time [--isa NAME]          microseconds per image per kernel (a profile)
 *
 * Tolerances are derived per output value, never one number for all (an absolute 1e-6 on
 * unbounded ReLU outputs failed at some seeds, because each ISA sums in its own order):
 *   a float32 sum of n products, in any order, is within gamma_n * M of the exact sum, where
 *   M = |b| + sum |w x| and gamma_n = n u / (1 - n u), u = 2^-24 (Higham, Accuracy and Stability
 *   of Numerical Algorithms, 3.1); the activation multiplies an input error by at most its
 *   Lipschitz constant L (1 tanh and ReLU, 1/4 sigmoid, 1.7159 * 2/3 scaled tanh) and adds its
 *   own approximation error (ACT_TOL); average pooling averages errors, max pooling keeps the
 *   largest. Layer by layer this gives each output's bound E (see bound_layer64); two float32
 *   implementations differ by at most 2E, one differs from float64 by at most E.
 *   activation  ACT_TOL vs float64 on a dense grid over [-20, 20], the special values (+-0,
 *               denormals, +-inf, NaN, huge), tanh's sign of zero, and every tail length 0..33 at
 *               every offset bit-identical to the same value computed in a full vector
 *   C1, C3      E vs float64 conv + bias + activation + 2x2 pool; 2E vs the scalar ISA;
 *               NaN pixels poison exactly the outputs whose window sees them
 *   dense       E vs float64, shapes straddling the vector widths, every activation
 *   forward     logits E vs float64 (and the 1e-4 contract of the Python API), 2E vs the scalar
 *               ISA, bit-identical for 1 and 2 threads, float32 / uint8 28x28 / strided float64
 *               inputs, batch sizes 1..17
 * Random weights are normal / sqrt(fan_in) as in the Python tests; the seed is printed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testing.h"

static const char *const ACT_NAMES[] = {"tanh", "relu", "sigmoid", "scaled_tanh"};
static const char *const POOL_NAMES[] = {"avg", "max"};
/* The vector activations' approximation error vs float64 (the rational tanh: below 5e-7). */
#define ACT_TOL 1e-6
/* The Python API's contract for float32 logits vs the float64 reference. */
#define LOGIT_TOL 1e-4
#define U32 0x1.0p-24 /* float32 unit roundoff */

static int failures;

/* ---- randomness: splitmix64, Box-Muller ---- */
static uint64_t rng_state;
static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double uniform(void) { return (double)(next_u64() >> 11) * 0x1.0p-53; } /* [0, 1) */
static double normal(void) {
    double u = uniform(), v = uniform();
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}
static void fill_normal(float *x, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(normal() * scale);
}

/* ---- float64 reference ---- */
static double act64(int act, double x) {
    switch (act) {
    case FL_ACT_TANH: return tanh(x);
    case FL_ACT_RELU: return x < 0.0 ? 0.0 : x;
    case FL_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case FL_ACT_SCALED_TANH: return 1.7159 * tanh(x * (2.0 / 3.0));
    default: return x;
    }
}

static double act_lipschitz(int act) {
    switch (act) {
    case FL_ACT_SIGMOID: return 0.25;
    case FL_ACT_SCALED_TANH: return 1.7159 * (2.0 / 3.0);
    default: return 1.0; /* tanh, ReLU, none */
    }
}
static double gamma_n(int n) { return n * U32 / (1.0 - n * U32); }
/* The bound on one float32 output of a sum of n products plus a bias, then the activation:
 * mag = |b| + sum |w x| (exact values), err_in = sum |w| e_x (the inputs' own errors). The output
 * itself rounds once more (u |y|), and an approximated activation adds ACT_TOL. */
static double bound1(int act, int n, double mag, double err_in, double y) {
    const double approx = act == FL_ACT_NONE || act == FL_ACT_RELU ? 0.0 : ACT_TOL;
    return act_lipschitz(act) * (gamma_n(n + 1) * mag + err_in) + approx + U32 * fabs(y);
}

/* Valid 5x5 correlation (cin x h x w -> cout x (h-4) x (w-4)), activation, then 2x2 pooling
 * (max propagates NaN, as numpy's max does). */
/* C1 or C3 in float64, and with ey != NULL each output's error bound E given the inputs'
 * bounds ex (NULL: exact inputs). */
static void bound_layer64(const double *x, const double *ex, int cin, int h, int w,
                          const float *k, const float *b, int cout, int act, int pool, double *y,
                          double *ey) {
    const int oh = h - 4, ow = w - 4;
    double *map = malloc(sizeof(double) * cout * oh * ow);
    double *emap = malloc(sizeof(double) * cout * oh * ow);
    for (int o = 0; o < cout; o++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                double acc = b[o], mag = fabs(b[o]), err = 0.0;
                for (int c = 0; c < cin; c++)
                    for (int ky = 0; ky < 5; ky++)
                        for (int kx = 0; kx < 5; kx++) {
                            const double kv = k[((o * cin + c) * 5 + ky) * 5 + kx];
                            const size_t at = (size_t)(c * h + i + ky) * w + j + kx;
                            acc += kv * x[at];
                            mag += fabs(kv * x[at]);
                            if (ex) err += fabs(kv) * ex[at];
                        }
                map[(o * oh + i) * ow + j] = act64(act, acc);
                emap[(o * oh + i) * ow + j] = bound1(act, cin * 25, mag, err, act64(act, acc));
            }
    for (int o = 0; o < cout; o++)
        for (int i = 0; i < oh / 2; i++)
            for (int j = 0; j < ow / 2; j++) {
                const double *p = map + (o * oh + 2 * i) * ow + 2 * j;
                const double v[4] = {p[0], p[1], p[ow], p[ow + 1]};
                const double *pe = emap + (o * oh + 2 * i) * ow + 2 * j;
                const double e[4] = {pe[0], pe[1], pe[ow], pe[ow + 1]};
                double r, er;
                if (pool == FL_POOL_MAX) {
                    r = v[0];
                    for (int q = 1; q < 4 && !isnan(r); q++)
                        if (isnan(v[q]) || v[q] > r) r = v[q];
                    er = fmax(fmax(e[0], e[1]), fmax(e[2], e[3]));
                } else {
                    r = 0.25 * (v[0] + v[1] + v[2] + v[3]);
                    /* the mean of the errors, and the float32 sum of four: gamma_3 sum |v| / 4 */
                    er = 0.25 * (e[0] + e[1] + e[2] + e[3]) +
                         gamma_n(3) * 0.25 * (fabs(v[0]) + fabs(v[1]) + fabs(v[2]) + fabs(v[3]));
                }
                y[(o * (oh / 2) + i) * (ow / 2) + j] = r;
                if (ey) ey[(o * (oh / 2) + i) * (ow / 2) + j] = er;
            }
    free(map);
    free(emap);
}

/* A dense layer in float64, and with ey != NULL each output's bound (inputs' bounds ex). */
static void bound_dense64(const double *x, const double *ex, const float *w, const float *b,
                          int n_in, int n_out, int act, double *y, double *ey) {
    for (int o = 0; o < n_out; o++) {
        double acc = b[o], mag = fabs(b[o]), err = 0.0;
        for (int k = 0; k < n_in; k++) {
            const double wv = w[(size_t)o * n_in + k];
            acc += wv * x[k];
            mag += fabs(wv * x[k]);
            if (ex) err += fabs(wv) * ex[k];
        }
        y[o] = act64(act, acc);
        if (ey) ey[o] = bound1(act, n_in, mag, err, y[o]);
    }
}

typedef struct {
    float c1_w[150], c1_b[6], c3_w[2400], c3_b[16], c5_w[48000], c5_b[120], f6_w[10080],
        f6_b[84], out_w[840], out_b[10];
} weights;

static void random_weights(weights *w) {
    fill_normal(w->c1_w, 150, 1 / sqrt(25.0));
    fill_normal(w->c1_b, 6, 0.1);
    fill_normal(w->c3_w, 2400, 1 / sqrt(150.0));
    fill_normal(w->c3_b, 16, 0.1);
    fill_normal(w->c5_w, 48000, 1 / sqrt(400.0));
    fill_normal(w->c5_b, 120, 0.1);
    fill_normal(w->f6_w, 10080, 1 / sqrt(120.0));
    fill_normal(w->f6_b, 84, 0.1);
    fill_normal(w->out_w, 840, 1 / sqrt(84.0));
    fill_normal(w->out_b, 10, 0.1);
}

static fl_net *make_net(const weights *w, int act, int pool) {
    fl_weights fw;
    memset(&fw, 0, sizeof fw);
    fw.c1_w = w->c1_w; fw.c1_b = w->c1_b; fw.c3_w = w->c3_w; fw.c3_b = w->c3_b;
    fw.c5_w = w->c5_w; fw.c5_b = w->c5_b; fw.f6_w = w->f6_w; fw.f6_b = w->f6_b;
    fw.out_w = w->out_w; fw.out_b = w->out_b;
    fw.in_channels = 1; fw.num_classes = 10; /* the classic network */
    fl_net *net = fl_net_create(&fw, act, pool);
    if (!net) { fprintf(stderr, "kernel_check: fl_net_create failed\n"); exit(2); }
    return net;
}

/* The logits in float64 and each one's bound E, the input's rounding to float32 included. */
static void logits64(const weights *w, const double *img32, int act, int pool, double *out,
                     double *eout) {
    double s2[6 * 14 * 14], s4[400], c5[120], f6[84], e0[1024], e2[6 * 14 * 14], e4[400];
    double e5[120], e6[84];
    for (int i = 0; i < 1024; i++) e0[i] = U32 * fabs(img32[i]);
    bound_layer64(img32, e0, 1, 32, 32, w->c1_w, w->c1_b, 6, act, pool, s2, e2);
    bound_layer64(s2, e2, 6, 14, 14, w->c3_w, w->c3_b, 16, act, pool, s4, e4);
    bound_dense64(s4, e4, w->c5_w, w->c5_b, 400, 120, act, c5, e5);
    bound_dense64(c5, e5, w->f6_w, w->f6_b, 120, 84, act, f6, e6);
    bound_dense64(f6, e6, w->out_w, w->out_b, 84, 10, FL_ACT_NONE, out, eout);
}

/* ---- comparison: max |got - ref| with NaN exactly where ref is NaN and infinities equal ---- */
/* err: the largest |got - ref|; worst: the largest |got - ref| / tolerance (1 = at the bound). */
typedef struct { double err, worst; long bad; } cmp;

/* tol[i] * scale is value i's tolerance (tol NULL: scale for every value). */
static void compare_tol(cmp *c, const float *got, const double *ref, size_t n,
                        const double *tol, double scale) {
    for (size_t i = 0; i < n; i++) {
        const double g = got[i], r = ref[i];
        if (isnan(r) || isnan(g)) { c->bad += isnan(r) != isnan(g); continue; }
        if (isinf(r) || isinf(g)) { c->bad += g != r; continue; }
        const double e = fabs(g - r), t = (tol ? tol[i] : 1.0) * scale;
        if (e > c->err) c->err = e;
        if (e / t > c->worst) c->worst = e / t;
        c->bad += e > t;
    }
}
static void compare(cmp *c, const float *got, const double *ref, size_t n, double tol) {
    compare_tol(c, got, ref, n, NULL, tol);
}
static void compare_f(cmp *c, const float *got, const float *ref, size_t n, const double *tol,
                      double scale) {
    double *r = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) r[i] = ref[i];
    compare_tol(c, got, r, n, tol, scale);
    free(r);
}
static int same_bits(float a, float b) {
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

static void report(const char *isa, const char *what, const cmp *c) {
    printf("  %-8s %-34s max err %.2e (%.2f of its bound)  %s\n", isa, what, c->err, c->worst,
           c->bad ? "MISMATCH" : "ok");
    if (c->bad) {
        printf("  %-8s %-34s %ld values out of tolerance\n", isa, what, c->bad);
        failures++;
    }
}
static void report_flag(const char *isa, const char *what, long bad) {
    printf("  %-8s %-34s %s\n", isa, what, bad ? "MISMATCH" : "ok");
    if (bad) failures++;
}

/* ---- the checks ---- */
static void check_activation(int isa) {
    const char *name = fl_isa_name(isa);
    static const float special[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-40f, -1e-40f,
                                    1.1754944e-38f, -1.1754944e-38f, 1e-30f, -1e-30f, INFINITY,
                                    -INFINITY, NAN, -NAN, 1e30f, -1e30f, 3.4028235e38f,
                                    -3.4028235e38f, 100.0f, -100.0f, 1000.0f, -1000.0f,
                                    0.0625f, 9.0f, 87.0f, 88.0f, 4.5f, 6.0f};
    const size_t ns = sizeof special / sizeof *special;
    const size_t ng = 400001, n = ng + ns;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    double *ref = malloc(sizeof(double) * n);
    for (size_t i = 0; i < ng; i++) x[i] = (float)(-20.0 + 40.0 * (double)i / (ng - 1));
    memcpy(x + ng, special, sizeof special);
    for (int act = FL_ACT_TANH; act <= FL_ACT_SCALED_TANH; act++) {
        cmp c = {0, 0, 0};
        fl_test_activation(isa, act, x, y, n);
        for (size_t i = 0; i < n; i++) ref[i] = act64(act, x[i]);
        compare(&c, y, ref, n, ACT_TOL); /* inputs exact: the approximation's error alone */
        char what[64];
        snprintf(what, sizeof what, "activation %s (grid+special)", ACT_NAMES[act]);
        report(name, what, &c);
        if (act == FL_ACT_TANH || act == FL_ACT_SCALED_TANH) {
            const float z[2] = {0.0f, -0.0f};
            float t[2];
            fl_test_activation(isa, act, z, t, 2);
            snprintf(what, sizeof what, "activation %s(+-0) keeps sign", ACT_NAMES[act]);
            report_flag(name, what, t[0] != 0.0f || signbit(t[0]) || t[1] != 0.0f || !signbit(t[1]));
        }
        /* tails: every length and offset computes what the full vector loop computes */
        float full[64], whole[64], part[64];
        for (int i = 0; i < 64; i++) full[i] = i % 5 == 0 ? special[(i / 5) % ns] : (float)(normal() * 4);
        fl_test_activation(isa, act, full, whole, 64);
        long bad = 0;
        for (int len = 0; len <= 33; len++)
            for (int shift = 0; shift + len <= 64 && shift <= 17; shift++) {
                fl_test_activation(isa, act, full + shift, part, (size_t)len);
                for (int i = 0; i < len; i++) bad += !same_bits(part[i], whole[shift + i]);
            }
        snprintf(what, sizeof what, "activation %s tails 0..33", ACT_NAMES[act]);
        report_flag(name, what, bad);
    }
    free(x); free(y); free(ref);
}

static void check_convs(int isa, const weights *w) {
    const char *name = fl_isa_name(isa);
    for (int act = FL_ACT_TANH; act <= FL_ACT_SCALED_TANH; act++)
        for (int pool = FL_POOL_AVG; pool <= FL_POOL_MAX; pool++) {
            fl_net *net = make_net(w, act, pool);
            float img[1024], s2[1176], s2s[1176], s4[400], s4s[400];
            double img64[1024], s2_64[1176], ref1[1176], ref3[400], e1[1176], e3[400];
            cmp c1 = {0, 0, 0}, c3 = {0, 0, 0}, c1s = {0, 0, 0}, c3s = {0, 0, 0};
            for (int rep = 0; rep < 3; rep++) {
                fill_normal(img, 1024, 1.5);
                if (rep == 2) /* a NaN pixel at a vector tail / odd column, an inf elsewhere */
                    img[13 * 32 + 17] = NAN, img[30 * 32 + 2] = INFINITY;
                for (int i = 0; i < 1024; i++) img64[i] = img[i];
                fl_test_c1(isa, net, img, s2);
                fl_test_c1(FL_ISA_SCALAR, net, img, s2s);
                bound_layer64(img64, NULL, 1, 32, 32, w->c1_w, w->c1_b, 6, act, pool, ref1, e1);
                compare_tol(&c1, s2, ref1, 1176, e1, 1.0);
                compare_f(&c1s, s2, s2s, 1176, e1, 2.0);
                float s2in[1176];
                for (int i = 0; i < 1176; i++) s2in[i] = (float)(uniform() * 2 - 1);
                if (rep == 2) s2in[3 * 196 + 13 * 14] = NAN;
                for (int i = 0; i < 1176; i++) s2_64[i] = s2in[i];
                fl_test_c3(isa, net, s2in, s4);
                fl_test_c3(FL_ISA_SCALAR, net, s2in, s4s);
                bound_layer64(s2_64, NULL, 6, 14, 14, w->c3_w, w->c3_b, 16, act, pool, ref3, e3);
                compare_tol(&c3, s4, ref3, 400, e3, 1.0);
                compare_f(&c3s, s4, s4s, 400, e3, 2.0);
            }
            char what[64];
            snprintf(what, sizeof what, "C1 %s/%s vs float64", ACT_NAMES[act], POOL_NAMES[pool]);
            report(name, what, &c1);
            snprintf(what, sizeof what, "C1 %s/%s vs scalar", ACT_NAMES[act], POOL_NAMES[pool]);
            report(name, what, &c1s);
            snprintf(what, sizeof what, "C3 %s/%s vs float64", ACT_NAMES[act], POOL_NAMES[pool]);
            report(name, what, &c3);
            snprintf(what, sizeof what, "C3 %s/%s vs scalar", ACT_NAMES[act], POOL_NAMES[pool]);
            report(name, what, &c3s);
            fl_net_free(net);
        }
}

static void check_dense(int isa) {
    static const int shapes[][2] = {{1, 1}, {7, 1}, {1, 7}, {7, 7}, {17, 17}, {15, 16}, {16, 15},
                                    {33, 9}, {3, 31}, {5, 129}, {400, 120}, {120, 84}, {84, 10},
                                    {200, 130}};
    const int nshapes = sizeof shapes / sizeof *shapes;
    for (int act = FL_ACT_NONE; act <= FL_ACT_SCALED_TANH; act++) {
        cmp c = {0, 0, 0};
        for (int s = 0; s < nshapes; s++) {
            const int n_in = shapes[s][0], n_out = shapes[s][1];
            float *x = malloc(sizeof(float) * n_in), *wt = malloc(sizeof(float) * n_in * n_out);
            float *b = malloc(sizeof(float) * n_out), *y = malloc(sizeof(float) * n_out);
            double *x64 = malloc(sizeof(double) * n_in), *ref = malloc(sizeof(double) * n_out);
            double *e = malloc(sizeof(double) * n_out);
            fill_normal(x, n_in, 1.0);
            fill_normal(wt, (size_t)n_in * n_out, 1 / sqrt((double)n_in));
            fill_normal(b, n_out, 0.1);
            for (int i = 0; i < n_in; i++) x64[i] = x[i];
            if (fl_test_dense(isa, act, x, wt, b, n_in, n_out, y) != FL_OK) c.bad++;
            bound_dense64(x64, NULL, wt, b, n_in, n_out, act, ref, e);
            compare_tol(&c, y, ref, n_out, e, 1.0);
            free(x); free(wt); free(b); free(y); free(x64); free(ref); free(e);
        }
        char what[64];
        snprintf(what, sizeof what, "dense %s (14 shapes)", act < 0 ? "none" : ACT_NAMES[act]);
        report(fl_isa_name(isa), what, &c);
    }
}

/* Whole forward passes. Input kinds: 0 float32 32x32 contiguous (read in place), 1 uint8 28x28
 * (zero-padded, scaled), 2 float64 32x32 with transposed strides. */
static void check_forward(int isa, const weights *w) {
    static const int batches[] = {1, 3, 4, 5, 9, 17};
    const char *name = fl_isa_name(isa);
    for (int act = FL_ACT_TANH; act <= FL_ACT_SCALED_TANH; act++)
        for (int pool = FL_POOL_AVG; pool <= FL_POOL_MAX; pool++) {
            fl_net *net = make_net(w, act, pool);
            cmp cr = {0, 0, 0}, cs = {0, 0, 0}, cr_api = {0, 0, 0};
            long thread_bad = 0, call_bad = 0;
            for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
                const int n = batches[bi], kind = (int)(bi % 3);
                const int size = kind == 1 ? 28 : 32;
                float *f32 = malloc(sizeof(float) * n * 1024);
                double *f64 = malloc(sizeof(double) * n * 1024), *img64 = malloc(sizeof(double) * 1024);
                unsigned char *u8 = malloc((size_t)n * 784);
                fl_input in;
                memset(&in, 0, sizeof in);
                in.channels = 1;
                in.size = size;
                in.scale = 1.0f;
                if (kind == 0) {
                    fill_normal(f32, (size_t)n * 1024, 1.0);
                    in.data = f32; in.dtype = FL_DTYPE_F32;
                    in.stride_n = 4096; in.stride_h = 128; in.stride_w = 4;
                } else if (kind == 1) {
                    for (int i = 0; i < n * 784; i++) u8[i] = (unsigned char)(next_u64() >> 56);
                    in.data = u8; in.dtype = FL_DTYPE_U8;
                    in.stride_n = 784; in.stride_h = 28; in.stride_w = 1;
                    in.scale = 1.0f / 255.0f / 0.3081f; in.shift = -0.1307f / 0.3081f;
                } else {
                    for (int i = 0; i < n * 1024; i++) f64[i] = normal();
                    in.data = f64; in.dtype = FL_DTYPE_F64; /* image (y, x) at [x][y] */
                    in.stride_n = 8192; in.stride_h = 8; in.stride_w = 256;
                }
                float *lo = malloc(sizeof(float) * n * 10), *ls = malloc(sizeof(float) * n * 10);
                float *lt = malloc(sizeof(float) * n * 10);
                call_bad += fl_net_forward(net, &in, (size_t)n, FL_OUT_LOGITS, lo, NULL, 1, isa) != FL_OK;
                call_bad += fl_net_forward(net, &in, (size_t)n, FL_OUT_LOGITS, ls, NULL, 1, FL_ISA_SCALAR) != FL_OK;
                call_bad += fl_net_forward(net, &in, (size_t)n, FL_OUT_LOGITS, lt, NULL, 2, isa) != FL_OK;
                thread_bad += memcmp(lo, lt, sizeof(float) * n * 10) != 0;
                double *el = malloc(sizeof(double) * n * 10);
                for (int i = 0; i < n; i++) {
                    double ref[10];
                    for (int y = 0; y < 32; y++)
                        for (int x = 0; x < 32; x++) {
                            double p;
                            if (kind == 0) p = f32[i * 1024 + y * 32 + x];
                            else if (kind == 2) p = (float)f64[i * 1024 + x * 32 + y];
                            else if (y < 2 || y >= 30 || x < 2 || x >= 30) p = 0.0;
                            else p = u8[i * 784 + (y - 2) * 28 + (x - 2)];
                            img64[y * 32 + x] = p * in.scale + in.shift;
                        }
                    logits64(w, img64, act, pool, ref, el + i * 10);
                    compare_tol(&cr, lo + i * 10, ref, 10, el + i * 10, 1.0);
                    compare(&cr_api, lo + i * 10, ref, 10, LOGIT_TOL);
                }
                compare_f(&cs, lo, ls, (size_t)n * 10, el, 2.0);
                free(f32); free(f64); free(img64); free(u8); free(lo); free(ls); free(lt); free(el);
            }
            char what[64];
            snprintf(what, sizeof what, "forward %s/%s vs float64", ACT_NAMES[act], POOL_NAMES[pool]);
            report(name, what, &cr);
            snprintf(what, sizeof what, "forward %s/%s vs 1e-4 API", ACT_NAMES[act], POOL_NAMES[pool]);
            report(name, what, &cr_api);
            snprintf(what, sizeof what, "forward %s/%s vs scalar", ACT_NAMES[act], POOL_NAMES[pool]);
            report(name, what, &cs);
            snprintf(what, sizeof what, "forward %s/%s 1 vs 2 threads", ACT_NAMES[act], POOL_NAMES[pool]);
            report_flag(name, what, thread_bad + call_bad);
            fl_net_free(net);
        }
}

/* --time: microseconds per image of C1, C3 and a whole forward pass of each level, the lowest of
 * 15 samples (process CPU time from clock(), so that preemption on a shared machine does not
 * count; on Windows clock() is wall time). The forward pass runs 64 images on one thread, so its
 * dense layers see 4-image tiles as in real use; "rest" is the forward pass minus C1 and C3
 * (dense layers, input conversion, output). A profile, not a check. */
#define FL_TIME(result, reps, stmt)                                                           \
    do {                                                                                      \
        result = 1e30;                                                                        \
        for (int s_ = 0; s_ < 15; s_++) {                                                     \
            const clock_t t0 = clock();                                                       \
            for (int r_ = 0; r_ < (reps); r_++) { stmt; }                                     \
            const double dt = (double)(clock() - t0) / CLOCKS_PER_SEC / (reps);               \
            if (dt < result) result = dt;                                                     \
        }                                                                                     \
    } while (0)

static void time_kernels(int isa, const weights *w) {
    static float img[1024], s2[1176], s4[400], batch[64 * 1024], logits[64 * 10];
    fl_net *net = make_net(w, FL_ACT_TANH, FL_POOL_AVG);
    fill_normal(img, 1024, 1.0);
    fill_normal(s2, 1176, 0.5);
    fill_normal(batch, 64 * 1024, 1.0);
    fl_input in;
    memset(&in, 0, sizeof in);
    in.channels = 1;
    in.data = batch; in.dtype = FL_DTYPE_F32; in.size = 32; in.scale = 1.0f;
    in.stride_n = 4096; in.stride_h = 128; in.stride_w = 4;
    double c1, c3, fw;
    volatile float sink = 0;
    FL_TIME(c1, 500, fl_test_c1(isa, net, img, s2); sink += s2[7]);
    FL_TIME(c3, 500, fl_test_c3(isa, net, s2, s4); sink += s4[9]);
    FL_TIME(fw, 8, fl_net_forward(net, &in, 64, FL_OUT_LOGITS, logits, NULL, 1, isa);
            sink += logits[3]);
    fw /= 64;
    printf("  %-8s us/image: C1 %7.2f  C3 %7.2f  rest %6.2f  forward %7.2f  (%.0f images/s)\n",
           fl_isa_name(isa), c1 * 1e6, c3 * 1e6, (fw - c1 - c3) * 1e6, fw * 1e6, 1 / fw);
    fl_net_free(net);
}

int main(int argc, char **argv) {
    uint64_t seed = 52013;
    int only = -1, timing = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--time")) {
            timing = 1;
        } else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            const char *want = argv[++i];
            for (int k = 0; k < FL_ISA_COUNT; k++)
                if (!strcmp(fl_isa_name(k), want)) only = k;
            if (only < 0) { fprintf(stderr, "kernel_check: unknown ISA %s\n", want); return 2; }
        } else {
            fprintf(stderr, "usage: %s [--seed N] [--isa NAME] [--time]\n", argv[0]);
            return 2;
        }
    }
    const int top = fl_isa_detect();
    if (only > top) {
        fprintf(stderr, "kernel_check: this CPU cannot run %s (highest: %s)\n", fl_isa_name(only),
                fl_isa_name(top));
        return 2;
    }
    printf("kernel_check: seed %llu; ISA levels here:", (unsigned long long)seed);
    for (int k = 0; k <= top; k++) printf(" %s", fl_isa_name(k));
    printf(" (OpenMP: %s)\n", fl_has_openmp() ? "yes" : "no");
    rng_state = seed;
    weights *w = malloc(sizeof *w);
    random_weights(w);
    if (timing) {
        for (int isa = 0; isa <= top; isa++)
            if (only < 0 || isa == only) time_kernels(isa, w);
        free(w);
        return 0;
    }
    for (int isa = 0; isa <= top; isa++) {
        if (only >= 0 && isa != only && isa != FL_ISA_SCALAR) continue;
        check_activation(isa);
        check_convs(isa, w);
        check_dense(isa);
        check_forward(isa, w);
    }
    free(w);
    if (failures) {
        printf("kernel_check: FAILED (%d checks)\n", failures);
        return 1;
    }
    printf("kernel_check: all checks passed\n");
    return 0;
}
