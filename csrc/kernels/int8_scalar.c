/* The int8 kernels in plain C: the specification every int8 SIMD variant equals bit for bit.
 *
 * Numerics (issue 19; the parameters come from fastlenet/weights/int8.py, the NumPy model of
 * the whole network is fastlenet/reference/quantized.py):
 *  - C1, C3, C5, F6 multiply uint8 activations by int8 weights (symmetric, one scale per output
 *    channel, |w| <= 127) and sum in int32, exactly: |sum| <= 400 * 255 * 127 + |bias| < 2^31
 *    (int8.py keeps |bias| <= 2^30). Integer sums do not depend on order, so every ISA and
 *    every blocking gives the same accumulator.
 *  - C1 reads the pixels as uint8 0..255 (float input: rint(clamp(x * 255, 0, 255)), NaN -> 0,
 *    in int8.c); the model's (x - mean) / std is folded into C1's weights and bias.
 *  - The input zero point of C3, C5 and F6 (128 after tanh) is folded into the int32 bias
 *    (bias -= zp * sum(w)), so the kernels multiply raw bytes.
 *  - After each layer, one fixed fp32 sequence, with fused multiply-adds written out (fmaf
 *    here, vfmadd in SIMD) and no other multiply followed by an add, so compilers cannot
 *    contract differently per ISA:
 *        pre = (float)acc * s[o]                  (s holds the weight and input scales and the
 *                                                 activation's own input factor)
 *        t   = core(pre)                          tanh: the piecewise cubic below; relu: max
 *        p   = pool of 2x2 t (C1, C3): avg 0.25f * ((a + b) + (c + d)), or max
 *        u8  = rint(min(max(fma(p, inv, zp), 0), 255))   (C1, C3, C5: RNE, no saturation
 *                                                 needed for tanh: |p| <= 1)
 *        F6: feature = fma(t, gain, offset)       (sigmoid = 0.5 t + 0.5, scaled tanh 1.7159 t)
 *    The fp32 output layer then runs on the features with one fma per term (bias first,
 *    k ascending), and net.c's softmax. So int8 outputs are bit-identical across ISAs and
 *    thread counts.
 *  - tanh: 16 cubic pieces on |x| in [0, 4) (least squares at Chebyshev nodes), 5.2e-6 from
 *    tanh over the range, 6.7e-4 at the clamp (|x| >= 4 gives tanh(4)): both far below the
 *    quantization step 1/127. The sign comes back with copysign.
 * Layouts: int8.h. Bias first in the accumulator, then products in canonical order (any order
 * gives the same integer).
 */
#include <math.h>
#include <string.h>

#include "int8.h"

const float fl_i8_tanh_c[4][16] = {
    {-2.146366796e-06f, 2.449136972e-01f, 4.621129334e-01f, 6.351469755e-01f, 7.615939975e-01f,
     8.482842445e-01f, 9.051489830e-01f, 9.413761497e-01f, 9.640280604e-01f, 9.780264497e-01f,
     9.866145253e-01f, 9.918598533e-01f, 9.950548410e-01f, 9.969976544e-01f, 9.981779456e-01f,
     9.988944530e-01f},
    {1.000261664e+00f, 9.406539798e-01f, 7.870025635e-01f, 5.968465209e-01f, 4.200015664e-01f,
     2.803366780e-01f, 1.806083769e-01f, 1.137291342e-01f, 7.059068978e-02f, 4.342453182e-02f,
     2.656621858e-02f, 1.619794033e-02f, 9.855908342e-03f, 5.989491474e-03f, 3.637080546e-03f,
     2.207573969e-03f},
    {-4.681658931e-03f, -2.428838611e-01f, -3.747731149e-01f, -3.844242096e-01f,
     -3.205595911e-01f, -2.363585681e-01f, -1.615948230e-01f, -1.054570898e-01f,
     -6.688325852e-02f, -4.168412834e-02f, -2.570374124e-02f, -1.574727707e-02f,
     -9.609540924e-03f, -5.850057118e-03f, -3.556202631e-03f, -2.159881406e-03f},
    {-3.106921613e-01f, -1.782291383e-01f, -1.890115254e-02f, 8.065917343e-02f,
     1.103478223e-01f, 9.938509017e-02f, 7.519125938e-02f, 5.189177394e-02f, 3.398715332e-02f,
     2.158692479e-02f, 1.346217748e-02f, 8.303559385e-03f, 5.087837111e-03f, 3.104996867e-03f,
     1.890319982e-03f, 1.149134943e-03f},
};

/* The core activation, exactly as the SIMD files compute it (their comments follow these
 * steps). |x| < FL_I8_TANH_MAX fails for NaN, which cannot occur (acc is an integer, s finite)
 * but would clamp like the vector min does. */
static float core1(int core, float x) {
    if (core == FL_I8_CORE_RELU) return x > 0.0f ? x : 0.0f;
    float ax = fabsf(x);
    ax = ax < FL_I8_TANH_MAX ? ax : FL_I8_TANH_MAX;
    const int i = (int)(ax * 4.0f); /* truncation: the piece */
    const float u = ax - (float)i * 0.25f; /* exact: i/4 <= ax < (i+1)/4 */
    float p = fmaf(fl_i8_tanh_c[3][i], u, fl_i8_tanh_c[2][i]);
    p = fmaf(p, u, fl_i8_tanh_c[1][i]);
    p = fmaf(p, u, fl_i8_tanh_c[0][i]);
    return copysignf(p, x);
}

static float pool4(int pool, float a, float b, float c, float d) {
    if (pool == FL_POOL_MAX) {
        const float m1 = a > b ? a : b, m2 = c > d ? c : d;
        return m1 > m2 ? m1 : m2;
    }
    return 0.25f * ((a + b) + (c + d));
}

/* The SIMD order: max(t, 0) (maxps returns its second operand, 0, for NaN), then min(., 255),
 * then round to nearest even (cvtps2dq in the default rounding mode). */
static uint8_t quant1(float p, float inv, float zp) {
    float t = fmaf(p, inv, zp);
    t = t > 0.0f ? t : 0.0f;
    t = t < 255.0f ? t : 255.0f;
    return (uint8_t)lrintf(t);
}

static float pre1(int32_t acc, float s) { return (float)acc * s; }

static void c1_i8__scalar(const fl_int8 *q, const uint8_t *img, uint8_t *s2) {
    const int nc = q->in_channels;
    for (int c = 0; c < 6; c++)
        for (int py = 0; py < 14; py++)
            for (int px = 0; px < 14; px++) {
                float t[4];
                for (int d = 0; d < 4; d++) {
                    const int y = 2 * py + d / 2, x = 2 * px + d % 2;
                    int32_t acc = q->c1_b[c];
                    for (int ci = 0; ci < nc; ci++)
                        for (int ky = 0; ky < 5; ky++)
                            for (int kx = 0; kx < 5; kx++)
                                acc += (int32_t)q->c1_w[((c * nc + ci) * 5 + ky) * 5 + kx] *
                                       img[ci * 1024 + (y + ky) * 32 + x + kx];
                    t[d] = core1(q->core, pre1(acc, q->c1_s[c]));
                }
                s2[(py * 14 + px) * 6 + c] =
                    quant1(pool4(q->pool, t[0], t[1], t[2], t[3]), q->inv[0], q->zp[0]);
            }
}

static void c3_i8__scalar(const fl_int8 *q, const uint8_t *s2, uint8_t *s4) {
    for (int o = 0; o < 16; o++)
        for (int py = 0; py < 5; py++)
            for (int px = 0; px < 5; px++) {
                float t[4];
                for (int d = 0; d < 4; d++) {
                    const int y = 2 * py + d / 2, x = 2 * px + d % 2;
                    int32_t acc = q->c3_b[o];
                    for (int c = 0; c < 6; c++)
                        for (int ky = 0; ky < 5; ky++)
                            for (int kx = 0; kx < 5; kx++)
                                acc += (int32_t)q->c3_w[((o * 6 + c) * 5 + ky) * 5 + kx] *
                                       s2[((y + ky) * 14 + x + kx) * 6 + c];
                    t[d] = core1(q->core, pre1(acc, q->c3_s[o]));
                }
                s4[(py * 5 + px) * 16 + o] =
                    quant1(pool4(q->pool, t[0], t[1], t[2], t[3]), q->inv[1], q->zp[1]);
            }
}

static void c5_i8__scalar(const fl_int8 *q, const uint8_t *s4, int n, uint8_t *c5) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < 120; o++) {
            const uint8_t *x = s4 + (size_t)i * FL_I8_S4_LEN;
            int32_t acc = q->c5_b[o];
            for (int c = 0; c < 16; c++)
                for (int p = 0; p < 25; p++) /* s4 is HWC: pixel p, channel c */
                    acc += (int32_t)q->c5_w[(o * 16 + c) * 25 + p] * x[p * 16 + c];
            c5[(size_t)i * FL_I8_C5_LD + o] =
                quant1(core1(q->core, pre1(acc, q->c5_s[o])), q->inv[2], q->zp[2]);
        }
}

static void f6_i8__scalar(const fl_int8 *q, const uint8_t *c5, int n, float *f6) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < 84; o++) {
            const uint8_t *x = c5 + (size_t)i * FL_I8_C5_LD;
            int32_t acc = q->f6_b[o];
            for (int k = 0; k < 120; k++) acc += (int32_t)q->f6_w[o * 120 + k] * x[k];
            f6[(size_t)i * FL_F6_LD + o] =
                fmaf(core1(q->core, pre1(acc, q->f6_s[o])), q->gain, q->offset);
        }
}

static void output_i8__scalar(const float *x, int n_img, int ldx, int n_in, const float *wt,
                              int ld, const float *b, int n_out, float *y, int ldy) {
    for (int i = 0; i < n_img; i++)
        for (int o = 0; o < n_out; o++) {
            float acc = b[o];
            for (int k = 0; k < n_in; k++)
                acc = fmaf(x[(size_t)i * ldx + k], wt[(size_t)k * ld + o], acc);
            y[(size_t)i * ldy + o] = acc;
        }
}

const fl_int8_kernels fl_int8_kernels__scalar = {
    c1_i8__scalar, c3_i8__scalar, c5_i8__scalar, f6_i8__scalar, output_i8__scalar,
};
