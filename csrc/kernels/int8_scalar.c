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
 *  - tanh: 32 cubic pieces of width 1/4 on [-4, 4) in x itself (least squares at Chebyshev
 *    nodes), 5.2e-6 from tanh inside, 6.6e-4 at the clamps (|x| >= 4 gives about tanh(4)):
 *    both far below the quantization step 1/127. 11 vector operations (4 of them two-table
 *    permutes), against 17 for 16 pieces on |x| with the sign put back.
 * Layouts: int8.h. Bias first in the accumulator, then products in canonical order (any order
 * gives the same integer).
 */
#include <math.h>
#include <string.h>

#include "int8.h"

const float fl_i8_tanh_c[4][32] = {
    {
     -8.996442556e-01f, -8.608377576e-01f, -8.091526628e-01f, -7.416306734e-01f,
     -6.555399895e-01f, -5.492057204e-01f, -4.234087169e-01f, -2.834185362e-01f,
     -1.412823796e-01f, -1.687896624e-02f, 6.555806100e-02f, 8.931596577e-02f,
     6.275624782e-02f, 2.272026986e-02f, 2.645624336e-03f, 2.161932798e-06f,
     -2.161932798e-06f, -2.645624336e-03f, -2.272026986e-02f, -6.275624782e-02f,
     -8.931596577e-02f, -6.555806100e-02f, 1.687896624e-02f, 1.412823796e-01f,
     2.834185362e-01f, 4.234087169e-01f, 5.492057204e-01f, 6.555399895e-01f,
     7.416306734e-01f, 8.091526628e-01f, 8.608377576e-01f, 8.996442556e-01f},
    {
     6.688553840e-02f, 9.799934924e-02f, 1.424038559e-01f, 2.048839182e-01f,
     2.911937833e-01f, 4.074991643e-01f, 5.588524938e-01f, 7.459671497e-01f,
     9.595821500e-01f, 1.172932148e+00f, 1.337100625e+00f, 1.392166734e+00f,
     1.309599876e+00f, 1.147604346e+00f, 1.028680205e+00f, 1.000261903e+00f,
     1.000261903e+00f, 1.028680205e+00f, 1.147604346e+00f, 1.309599876e+00f,
     1.392166734e+00f, 1.337100625e+00f, 1.172932148e+00f, 9.595821500e-01f,
     7.459671497e-01f, 5.588524938e-01f, 4.074991643e-01f, 2.911937833e-01f,
     2.048839182e-01f, 1.424038559e-01f, 9.799934924e-02f, 6.688553840e-02f},
    {
     1.508758869e-02f, 2.340446599e-02f, 3.612363338e-02f, 5.539985374e-02f,
     8.425131440e-02f, 1.266696006e-01f, 1.873952150e-01f, 2.708053291e-01f,
     3.778879941e-01f, 4.999549091e-01f, 6.090530157e-01f, 6.516051888e-01f,
     5.659114718e-01f, 3.464259803e-01f, 1.092147902e-01f, 4.682346713e-03f,
     -4.682346713e-03f, -1.092147902e-01f, -3.464259803e-01f, -5.659114718e-01f,
     -6.516051888e-01f, -6.090530157e-01f, -4.999549091e-01f, -3.778879941e-01f,
     -2.708053291e-01f, -1.873952150e-01f, -1.266696006e-01f, -8.425131440e-02f,
     -5.539985374e-02f, -3.612363338e-02f, -2.340446599e-02f, -1.508758869e-02f},
    {
     1.149130636e-03f, 1.890312880e-03f, 3.104985459e-03f, 5.087818950e-03f,
     8.303530514e-03f, 1.346213277e-02f, 2.158685960e-02f, 3.398706764e-02f,
     5.189168453e-02f, 7.519123703e-02f, 9.938526899e-02f, 1.103484333e-01f,
     8.066029102e-02f, -1.890011691e-02f, -1.782294959e-01f, -3.106943667e-01f,
     -3.106943667e-01f, -1.782294959e-01f, -1.890011691e-02f, 8.066029102e-02f,
     1.103484333e-01f, 9.938526899e-02f, 7.519123703e-02f, 5.189168453e-02f,
     3.398706764e-02f, 2.158685960e-02f, 1.346213277e-02f, 8.303530514e-03f,
     5.087818950e-03f, 3.104985459e-03f, 1.890312880e-03f, 1.149130636e-03f},
};

/* The core activation, exactly as the SIMD files compute it (their comments follow these
 * steps): clamp to [-4, FL_I8_TANH_MAX] (x < hi fails for NaN, which cannot occur: acc is an
 * integer and s finite, but it would clamp like the vector min does), piece i = trunc(4x + 16)
 * (0..31), the piece's cubic in x by three FMAs. */
static float core1(int core, float x) {
    if (core == FL_I8_CORE_RELU) return x > 0.0f ? x : 0.0f;
    float xc = x < FL_I8_TANH_MAX ? x : FL_I8_TANH_MAX;
    xc = xc > -4.0f ? xc : -4.0f;
    const int i = (int)fmaf(xc, 4.0f, 16.0f);
    float p = fmaf(fl_i8_tanh_c[3][i], xc, fl_i8_tanh_c[2][i]);
    p = fmaf(p, xc, fl_i8_tanh_c[1][i]);
    return fmaf(p, xc, fl_i8_tanh_c[0][i]);
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
    c1_i8__scalar, c3_i8__scalar, c5_i8__scalar, f6_i8__scalar, output_i8__scalar, NULL,
};
