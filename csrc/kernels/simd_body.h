/* The SIMD kernels, written once over a vector of FL_W floats (GCC/Clang vector extensions) and
 * compiled once per ISA by avx2.c (FL_W 8) and avx512.c (FL_W 16) under that ISA's target
 * pragma. The including file defines FL_W, FL_SUFFIX, FL_C1_CB and FL_C3_CC.
 *
 * Schedule (one image, everything in L1):
 *  - C1: pixels in lanes. The 32x32 image is split into even and odd columns, so that the conv
 *    outputs at even and odd columns are each a contiguous vector of the 14 pooled columns:
 *    pooling then needs no shuffles. FL_C1_CB output channels share each input load.
 *  - C3: the 16 output channels in lanes. Each tap is one vector load of 16 weights, reused by
 *    2 conv rows x FL_C3_CC columns of broadcast inputs (register-blocked accumulators).
 *  - dense: outputs in lanes, weights transposed [in][out], one broadcast input per row.
 * Accumulation order per output equals the scalar kernel's (bias, then channel, row, column), but
 * FMA rounds once per step, so results differ from scalar within float32 rounding.
 * Tails: 14 pooled columns live in a 16-float buffer and are copied out, never stored past the
 * destination; the activation kernel handles its tail through a stack buffer.
 */
#include <stdint.h>
#include <string.h>

#define FL_CAT2(a, b) a##__##b
#define FL_CAT(a, b) FL_CAT2(a, b)
#define FL_FN(name) FL_CAT(name, FL_SUFFIX)
#define FL_INLINE static inline __attribute__((always_inline))

typedef float vf __attribute__((vector_size(FL_W * 4)));
typedef int32_t vi __attribute__((vector_size(FL_W * 4)));

FL_INLINE vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
FL_INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
FL_INLINE vf vset1(float x) { return (vf){0} + x; }
FL_INLINE vi vset1i(int32_t x) { return (vi){0} + x; }
/* Lanes where m is all ones take a, the others b. */
FL_INLINE vf vselect(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }
FL_INLINE vf vabs(vf x) { return (vf)((vi)x & vset1i(0x7fffffff)); }
FL_INLINE vf vcopysign(vf mag, vf sgn) {
    return (vf)(((vi)mag & vset1i(0x7fffffff)) | ((vi)sgn & vset1i((int32_t)0x80000000u)));
}
FL_INLINE vf vmax_nan(vf a, vf b) { return vselect((a > b) | (a != a), a, b); }

/* e^y for y in [-87.3, 0] (2^n stays a normal float). n = round(y / ln 2), r = y - n ln 2 in
 * [-ln2/2, ln2/2] with ln 2 split in a short high part (exact product with n) and a low part
 * (Cody-Waite), e^r by its degree-7 Taylor polynomial (truncation r^8/8! < 6e-9), 2^n by
 * building the exponent bits. NaN in gives NaN out. */
FL_INLINE vf vexp_nonpos(vf y) {
    vi n = __builtin_convertvector(y * vset1(1.44269504088896341f) - vset1(0.5f), vi);
    vf nf = __builtin_convertvector(n, vf);
    vf r = y - nf * vset1(0.693359375f);
    r = r - nf * vset1(-2.12194440e-4f);
    vf p = vset1(1.0f / 5040.0f);
    p = p * r + vset1(1.0f / 720.0f);
    p = p * r + vset1(1.0f / 120.0f);
    p = p * r + vset1(1.0f / 24.0f);
    p = p * r + vset1(1.0f / 6.0f);
    p = p * r + vset1(0.5f);
    p = p * r + vset1(1.0f);
    p = p * r + vset1(1.0f);
    return p * (vf)((n + vset1i(127)) << 23);
}

/* tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|). |x| is clamped at 9, where
 * tanh = 1 - 3e-8 rounds to 1 in float32 (and exp stays far from underflow); below 1/16 the
 * odd Taylor series to x^7 avoids the cancellation in 1 - e (next term < 4e-13). The clamp is
 * written so that NaN fails the comparison and flows through; +-inf clamp to +-1; -0 stays -0. */
FL_INLINE vf vtanh(vf x) {
    vf ax = vabs(x);
    ax = vselect(ax > vset1(9.0f), vset1(9.0f), ax);
    vf e = vexp_nonpos(vset1(-2.0f) * ax);
    vf t = (vset1(1.0f) - e) / (vset1(1.0f) + e);
    vf x2 = ax * ax;
    vf s = vset1(-17.0f / 315.0f);
    s = s * x2 + vset1(2.0f / 15.0f);
    s = s * x2 + vset1(-1.0f / 3.0f);
    s = ax + ax * x2 * s;
    t = vselect(ax < vset1(0.0625f), s, t);
    return vcopysign(t, x);
}

/* sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) for x < 0, e = exp(-|x|): never overflows.
 * |x| clamps at 87 (exp(-87) is still a normal float; the true value below is < 2e-38). */
FL_INLINE vf vsigmoid(vf x) {
    vf ax = vabs(x);
    ax = vselect(ax > vset1(87.0f), vset1(87.0f), ax);
    vf e = vexp_nonpos(-ax);
    vf r = vset1(1.0f) / (vset1(1.0f) + e);
    return vselect(x < vset1(0.0f), e * r, r);
}

FL_INLINE vf vact(int act, vf x) {
    switch (act) {
    case FL_ACT_TANH: return vtanh(x);
    case FL_ACT_RELU: return vselect(x < vset1(0.0f), vset1(0.0f), x);
    case FL_ACT_SIGMOID: return vsigmoid(x);
    case FL_ACT_SCALED_TANH: return vset1(1.7159f) * vtanh(x * vset1(2.0f / 3.0f));
    default: return x;
    }
}

/* avg: (a + b) + (c + d), the scalar kernel's order. */
FL_INLINE vf vpool(int pool, vf a, vf b, vf c, vf d) {
    if (pool == FL_POOL_MAX) return vmax_nan(vmax_nan(a, b), vmax_nan(c, d));
    return vset1(0.25f) * ((a + b) + (c + d));
}

static void FL_FN(act_f32)(int act, const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + FL_W <= n; i += FL_W) vstore(y + i, vact(act, vload(x + i)));
    if (i < n) {
        float buf[FL_W] = {0};
        memcpy(buf, x + i, (n - i) * sizeof(float));
        vstore(buf, vact(act, vload(buf)));
        memcpy(y + i, buf, (n - i) * sizeof(float));
    }
}

/* Even/odd split rows: 16 columns used, and 8 zeros so that the vector loads at offsets +1 and +2
 * of the last vector stay inside the row. */
#define FL_SPLIT_STRIDE 24

static void FL_FN(c1_f32)(const fl_net *net, const float *img, float *s2) {
    enum { NV = 16 / FL_W, CB = FL_C1_CB };
    float ev[32 * FL_SPLIT_STRIDE] FL_ALIGNED, od[32 * FL_SPLIT_STRIDE] FL_ALIGNED;
    for (int y = 0; y < 32; y++) {
        float *e = ev + y * FL_SPLIT_STRIDE, *o = od + y * FL_SPLIT_STRIDE;
        for (int i = 0; i < 16; i++) {
            e[i] = img[y * 32 + 2 * i];
            o[i] = img[y * 32 + 2 * i + 1];
        }
        memset(e + 16, 0, (FL_SPLIT_STRIDE - 16) * sizeof(float));
        memset(o + 16, 0, (FL_SPLIT_STRIDE - 16) * sizeof(float));
    }
    const int act = net->act, pool = net->pool;
    for (int c0 = 0; c0 < 6; c0 += CB) {
        for (int py = 0; py < 14; py++) {
            /* acc[c][q][v]: q = 0, 1 even/odd columns of conv row 2py; 2, 3 of row 2py+1 */
            vf acc[CB][4][NV];
            for (int c = 0; c < CB; c++)
                for (int q = 0; q < 4; q++)
                    for (int v = 0; v < NV; v++) acc[c][q][v] = vset1(net->c1_b[c0 + c]);
            for (int ky = 0; ky < 5; ky++) {
                for (int r = 0; r < 2; r++) {
                    const float *E = ev + (2 * py + r + ky) * FL_SPLIT_STRIDE;
                    const float *O = od + (2 * py + r + ky) * FL_SPLIT_STRIDE;
                    for (int v = 0; v < NV; v++) {
                        vf e0 = vload(E + v * FL_W), e1 = vload(E + v * FL_W + 1),
                           e2 = vload(E + v * FL_W + 2);
                        vf o0 = vload(O + v * FL_W), o1 = vload(O + v * FL_W + 1),
                           o2 = vload(O + v * FL_W + 2);
                        for (int c = 0; c < CB; c++) {
                            const float *k = net->c1_w + (c0 + c) * 25 + ky * 5;
                            vf w0 = vset1(k[0]), w1 = vset1(k[1]), w2 = vset1(k[2]),
                               w3 = vset1(k[3]), w4 = vset1(k[4]);
                            vf a = acc[c][2 * r][v], b = acc[c][2 * r + 1][v];
                            a = a + w0 * e0; b = b + w0 * o0;
                            a = a + w1 * o0; b = b + w1 * e1;
                            a = a + w2 * e1; b = b + w2 * o1;
                            a = a + w3 * o1; b = b + w3 * e2;
                            a = a + w4 * e2; b = b + w4 * o2;
                            acc[c][2 * r][v] = a;
                            acc[c][2 * r + 1][v] = b;
                        }
                    }
                }
            }
            for (int c = 0; c < CB; c++) {
                float row[16];
                for (int v = 0; v < NV; v++)
                    vstore(row + v * FL_W,
                           vpool(pool, vact(act, acc[c][0][v]), vact(act, acc[c][1][v]),
                                 vact(act, acc[c][2][v]), vact(act, acc[c][3][v])));
                memcpy(s2 + (c0 + c) * 196 + py * 14, row, 14 * sizeof(float));
            }
        }
    }
}

static void FL_FN(c3_f32)(const fl_net *net, const float *s2, float *s4) {
    enum { NO = 16 / FL_W, CC = FL_C3_CC };
    const int act = net->act, pool = net->pool;
    for (int py = 0; py < 5; py++) {
        for (int x0 = 0; x0 < 10; x0 += CC) {
            vf acc[2][CC][NO];
            for (int r = 0; r < 2; r++)
                for (int c = 0; c < CC; c++)
                    for (int o = 0; o < NO; o++) acc[r][c][o] = vload(net->c3_b + o * FL_W);
            for (int ci = 0; ci < 6; ci++) {
                for (int ky = 0; ky < 5; ky++) {
                    const float *row0 = s2 + ci * 196 + (2 * py + ky) * 14 + x0;
                    const float *row1 = row0 + 14;
                    const float *wk = net->c3_wt + (ci * 25 + ky * 5) * 16;
                    for (int kx = 0; kx < 5; kx++) {
                        vf w[NO];
                        for (int o = 0; o < NO; o++) w[o] = vload(wk + kx * 16 + o * FL_W);
                        for (int c = 0; c < CC; c++) {
                            vf b0 = vset1(row0[c + kx]), b1 = vset1(row1[c + kx]);
                            for (int o = 0; o < NO; o++) {
                                acc[0][c][o] = acc[0][c][o] + b0 * w[o];
                                acc[1][c][o] = acc[1][c][o] + b1 * w[o];
                            }
                        }
                    }
                }
            }
            for (int px = 0; px < CC / 2; px++)
                for (int o = 0; o < NO; o++)
                    vstore(s4 + (py * 5 + x0 / 2 + px) * 16 + o * FL_W,
                           vpool(pool, vact(act, acc[0][2 * px][o]),
                                 vact(act, acc[0][2 * px + 1][o]), vact(act, acc[1][2 * px][o]),
                                 vact(act, acc[1][2 * px + 1][o])));
        }
    }
}

/* NB output vectors at once, NB a compile-time constant after inlining so that the
 * accumulators stay in registers. */
FL_INLINE void dense_block(int act, const float *x, int n_in, const float *wt, int ld,
                           const float *b, float *y, const int nb) {
    vf acc[8];
    for (int j = 0; j < nb; j++) acc[j] = vload(b + j * FL_W);
    for (int k = 0; k < n_in; k++) {
        vf xb = vset1(x[k]);
        const float *wk = wt + (size_t)k * ld;
        for (int j = 0; j < nb; j++) acc[j] = acc[j] + xb * vload(wk + j * FL_W);
    }
    for (int j = 0; j < nb; j++) vstore(y + j * FL_W, vact(act, acc[j]));
}

static void FL_FN(dense_f32)(int act, const float *x, int n_in, const float *wt, int ld,
                             const float *b, int n_out, float *y) {
    const int nv = (n_out + FL_W - 1) / FL_W;
    for (int j0 = 0; j0 < nv; j0 += 8) {
        const float *w0 = wt + j0 * FL_W, *b0 = b + j0 * FL_W;
        float *y0 = y + j0 * FL_W;
        switch (nv - j0 >= 8 ? 8 : nv - j0) {
        case 8: dense_block(act, x, n_in, w0, ld, b0, y0, 8); break;
        case 7: dense_block(act, x, n_in, w0, ld, b0, y0, 7); break;
        case 6: dense_block(act, x, n_in, w0, ld, b0, y0, 6); break;
        case 5: dense_block(act, x, n_in, w0, ld, b0, y0, 5); break;
        case 4: dense_block(act, x, n_in, w0, ld, b0, y0, 4); break;
        case 3: dense_block(act, x, n_in, w0, ld, b0, y0, 3); break;
        case 2: dense_block(act, x, n_in, w0, ld, b0, y0, 2); break;
        default: dense_block(act, x, n_in, w0, ld, b0, y0, 1); break;
        }
    }
}

const fl_kernels FL_CAT(fl_kernels, FL_SUFFIX) = {
    FL_FN(act_f32),
    FL_FN(c1_f32),
    FL_FN(c3_f32),
    FL_FN(dense_f32),
};
