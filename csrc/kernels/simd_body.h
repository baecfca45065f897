/* The SIMD kernels, written once over a vector of FL_W floats (GCC/Clang vector extensions) and
 * compiled once per ISA by avx2.c (FL_W 8) and avx512.c (FL_W 16) under that ISA's target
 * pragma. The including file defines FL_W, FL_SUFFIX, the register blocking (FL_C1_CB, FL_C3_CC,
 * FL_DENSE_NI, FL_DENSE_NB, FL_DENSE_CASES) and may provide ISA instructions (FL_FMA_BCAST,
 * FL_RCP, FL_MIN_KEEP_NAN / FL_MAX_KEEP_NAN); portable C stands in for any it leaves out.
 *
 * Schedule (one image, everything in L1):
 *  - C1: pixels in lanes. The 32x32 image (each of its 1 or 3 channels) is split into even and
 *    odd columns, so that the conv outputs at even and odd columns are each a contiguous vector
 *    of the 14 pooled columns: pooling then needs no shuffles. FL_C1_CB output channels share
 *    each input load.
 *  - C3: the 16 output channels in lanes. Each tap is one vector load of 16 weights, reused by
 *    2 conv rows x FL_C3_CC columns of broadcast inputs (register-blocked accumulators).
 *  - dense: outputs in lanes, weights transposed [in][out], one broadcast input per row; a tile
 *    of FL_DENSE_NI images shares each weight vector loaded.
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
/* Loops over register-blocked accumulators must unroll completely, or the accumulator arrays
 * stay in memory (GCC scalarizes them only when every index is a constant). */
#define FL_UNROLL _Pragma("GCC unroll 32")

typedef float vf __attribute__((vector_size(FL_W * 4)));
typedef int32_t vi __attribute__((vector_size(FL_W * 4)));

FL_INLINE vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
FL_INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
/* Broadcasts as initializer lists, which compile to one vbroadcastss (not {0} + x: adding +0.0
 * is a real instruction, since -0 + 0 = +0; nor a loop of lane inserts). */
#if FL_W == 4
#define FL_SPLAT(x) {x, x, x, x}
#elif FL_W == 8
#define FL_SPLAT(x) {x, x, x, x, x, x, x, x}
#elif FL_W == 16
#define FL_SPLAT(x) {x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}
#endif
FL_INLINE vf vset1(float x) { return (vf)FL_SPLAT(x); }
/* A constant vector. GCC builds vset1(constant) on SSE2 as a scalar load and a shuffle (2
 * instructions, the shuffle on an FP pipe); an ISA may load it whole instead (FL_VCONST). */
#ifndef FL_VCONST
#define FL_VCONST(c) vset1(c)
#endif
FL_INLINE vi vset1i(int32_t x) { return (vi)FL_SPLAT(x); }
/* Lanes where m is all ones take a, the others b. */
FL_INLINE vf vselect(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }
/* acc += broadcast(base[off]) * w, with `off` a compile-time constant, reading base[off] straight
 * from memory. In plain C the compiler sees that neighbouring taps read overlapping inputs,
 * keeps them in registers and re-broadcasts them (a shuffle per FMA, plus spills), and hoists
 * every weight address out of the loops (hundreds of spilled pointers); a memory broadcast at
 * base + constant costs one load and no register. The ISA files provide the instruction
 * (AVX-512: an embedded {1to16} operand; AVX2: vbroadcastss from m32). The asm reads memory it
 * does not declare: only ever point it at data no kernel writes while it runs (weights, or
 * inputs written before the loop). */
#ifndef FL_FMA_BCAST
#define FL_FMA_BCAST(acc, w, base, off) ((acc) = (acc) + vset1((base)[off]) * (w))
#endif

/* min(c, x) / max(c, x) that return x when x is NaN: x86's minps/maxps return their second
 * operand when either is NaN, exactly this. */
#ifndef FL_MIN_KEEP_NAN
#define FL_MIN_KEEP_NAN(c, x) vselect((x) > (c), (c), (x))
#define FL_MAX_KEEP_NAN(c, x) vselect((x) < (c), (c), (x))
#endif

FL_INLINE vf vmax_nan(vf a, vf b) { return vselect((a > b) | (a != a), a, b); }

/* 1/q to ~2^-24 relative: the ISA's reciprocal estimate (FL_RCP, 12 or 14 bits) refined by one
 * Newton step, which is several times cheaper than a full-precision divide. */
FL_INLINE vf vrecip(vf q) {
#ifdef FL_RCP
    vf r = FL_RCP(q);
    return r * (vset1(2.0f) - q * r);
#else
    return vset1(1.0f) / q;
#endif
}

/* tanh(x) = x P(x^2) / Q(x^2) on |x| <= 9, P and Q of degree 4 with P(0) = Q(0) = 1. The
 * coefficients are a weighted least-squares fit iterated toward minimax (Lawson) on [0, 9]:
 * 2.0e-8 absolute error in exact arithmetic, 3.6e-7 (about 6 ulp) evaluated in float32, checked
 * on a dense grid by tests/test_kernels.py. Beyond 9, tanh = 1 - 3e-8: the clamp is exact in
 * float32. The approximation is odd, so the sign (and -0) comes out right; the clamps compare
 * so that NaN fails them and flows through; +-inf clamp to +-1. */
FL_INLINE vf vtanh(vf x) {
    x = FL_MIN_KEEP_NAN(FL_VCONST(9.0f), x);
    x = FL_MAX_KEEP_NAN(FL_VCONST(-9.0f), x);
    const vf t = x * x;
    vf p = FL_VCONST(1.33390259e-08f);
    p = p * t + FL_VCONST(2.05968481e-05f);
    p = p * t + FL_VCONST(3.49480752e-03f);
    p = p * t + FL_VCONST(1.33803591e-01f);
    p = p * t + FL_VCONST(1.0f);
    vf q = FL_VCONST(7.76987406e-07f);
    q = q * t + FL_VCONST(3.28438298e-04f);
    q = q * t + FL_VCONST(2.58739814e-02f);
    q = q * t + FL_VCONST(4.67136770e-01f);
    q = q * t + FL_VCONST(1.0f);
#ifdef FL_RCP
    return (x * p) * vrecip(q);
#else
    return (x * p) / q;
#endif
}

/* sigmoid(x) = (1 + tanh(x/2)) / 2: half of tanh's absolute error, no overflow anywhere. */
FL_INLINE vf vsigmoid(vf x) {
    return vset1(0.5f) + vset1(0.5f) * vtanh(vset1(0.5f) * x);
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
    return FL_VCONST(0.25f) * ((a + b) + (c + d));
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


/* C1 over NC input channels (a compile-time constant after inlining, so the one-channel kernel
 * compiles exactly as it did before colour input). Each channel has its own even/odd split; the
 * channel loop sits outside the kernel rows, the scalar kernel's accumulation order. Tap offsets
 * stay compile-time constants (FL_FMA_BCAST needs them): the channel moves the base pointer. */
FL_INLINE void c1_body(const fl_net *net, const float *img, float *s2, const int NC) {
    enum { NV = 16 / FL_W, CB = FL_C1_CB };
    /* Sized for the most channels (a VLA of NC would address them through registers). */
    float ev[FL_MAX_CHANNELS][32 * FL_SPLIT_STRIDE] FL_ALIGNED;
    float od[FL_MAX_CHANNELS][32 * FL_SPLIT_STRIDE] FL_ALIGNED;
    for (int ci = 0; ci < NC; ci++)
        for (int y = 0; y < 32; y++) {
            const float *src = img + ci * 32 * 32 + y * 32;
            float *e = ev[ci] + y * FL_SPLIT_STRIDE, *o = od[ci] + y * FL_SPLIT_STRIDE;
            for (int i = 0; i < 16; i++) {
                e[i] = src[2 * i];
                o[i] = src[2 * i + 1];
            }
            memset(e + 16, 0, (FL_SPLIT_STRIDE - 16) * sizeof(float));
            memset(o + 16, 0, (FL_SPLIT_STRIDE - 16) * sizeof(float));
        }
#ifdef FL_C1_OWN /* the ISA's own C1 over the split rows (sse2.c) */
    FL_C1_OWN(net, ev, od, s2, NC);
#else
    const int act = net->act, pool = net->pool;
    for (int c0 = 0; c0 < 6; c0 += CB) {
        for (int py = 0; py < 14; py++) {
            float rows[CB][16];
            for (int v = 0; v < NV; v++) {
                /* acc[c][q]: q = 0, 1 even/odd columns of conv row 2py; 2, 3 of row 2py+1 */
                vf acc[CB][4];
                FL_UNROLL for (int c = 0; c < CB; c++)
                    FL_UNROLL for (int q = 0; q < 4; q++) acc[c][q] = vset1(net->c1_b[c0 + c]);
                for (int ci = 0; ci < NC; ci++) {
                    /* weight (c0+c, ci, ky, kx) sits at wc[c*NC*25 + ky*5 + kx] */
                    const float *wc = net->c1_w + (c0 * NC + ci) * 25;
                    FL_UNROLL for (int ky = 0; ky < 5; ky++) {
                        FL_UNROLL for (int r = 0; r < 2; r++) {
                            const float *E = ev[ci] + (2 * py + r + ky) * FL_SPLIT_STRIDE + v * FL_W;
                            const float *O = od[ci] + (2 * py + r + ky) * FL_SPLIT_STRIDE + v * FL_W;
                            const vf e0 = vload(E), e1 = vload(E + 1), e2 = vload(E + 2);
                            const vf o0 = vload(O), o1 = vload(O + 1), o2 = vload(O + 2);
                            FL_UNROLL for (int c = 0; c < CB; c++) {
                                /* even column 2j: taps on E[j], O[j], E[j+1], O[j+1], E[j+2];
                                 * odd column 2j+1: O[j], E[j+1], O[j+1], E[j+2], O[j+2] */
                                const int k = c * NC * 25 + ky * 5;
#define FL_A acc[c][2 * r]
#define FL_B acc[c][2 * r + 1]
                                FL_FMA_BCAST(FL_A, e0, wc, k + 0); FL_FMA_BCAST(FL_B, o0, wc, k + 0);
                                FL_FMA_BCAST(FL_A, o0, wc, k + 1); FL_FMA_BCAST(FL_B, e1, wc, k + 1);
                                FL_FMA_BCAST(FL_A, e1, wc, k + 2); FL_FMA_BCAST(FL_B, o1, wc, k + 2);
                                FL_FMA_BCAST(FL_A, o1, wc, k + 3); FL_FMA_BCAST(FL_B, e2, wc, k + 3);
                                FL_FMA_BCAST(FL_A, e2, wc, k + 4); FL_FMA_BCAST(FL_B, o2, wc, k + 4);
#undef FL_A
#undef FL_B
                            }
                        }
                    }
                }
                FL_UNROLL for (int c = 0; c < CB; c++)
                    vstore(rows[c] + v * FL_W,
                           vpool(pool, vact(act, acc[c][0]), vact(act, acc[c][1]),
                                 vact(act, acc[c][2]), vact(act, acc[c][3])));
            }
            for (int c = 0; c < CB; c++)
                memcpy(s2 + (c0 + c) * 196 + py * 14, rows[c], 14 * sizeof(float));
        }
    }
#endif
}

static void FL_FN(c1_f32)(const fl_net *net, const float *img, float *s2) {
    if (net->in_channels == 1)
        c1_body(net, img, s2, 1);
    else
        c1_body(net, img, s2, 3);
}

/* FL_C3_NO: output vectors per pass (all 16 channels unless a 4-wide ISA lacks the registers). */
#ifndef FL_C3_NO
#define FL_C3_NO (16 / FL_W)
#endif


static void FL_FN(c3_f32)(const fl_net *net, const float *s2, float *s4) {
    enum { NO = FL_C3_NO, CC = FL_C3_CC };
    const int act = net->act, pool = net->pool;
#ifdef FL_C3_PREPARE /* an ISA's own C3 inputs and taps (sse2.c: splatted s2) */
    FL_C3_PREPARE(s2);
#endif
#if FL_C3_NO * FL_W < 16
    for (int o0 = 0; o0 < 16; o0 += NO * FL_W)
#else
    const int o0 = 0; /* one pass: the code AVX2/AVX-512 had before FL_C3_NO existed */
#endif
    for (int py = 0; py < 5; py++) {
        for (int x0 = 0; x0 < 10; x0 += CC) {
            vf acc[2][CC][NO];
            FL_UNROLL for (int r = 0; r < 2; r++)
                FL_UNROLL for (int c = 0; c < CC; c++)
                    FL_UNROLL for (int o = 0; o < NO; o++) acc[r][c][o] = vload(net->c3_b + o0 + o * FL_W);
#ifdef FL_C3_TAPS /* the ISA's own code for all 150 taps */
            FL_C3_TAPS(acc, py, x0, net->c3_wt + o0);
#else
            for (int ci = 0; ci < 6; ci++) {
                for (int ky = 0; ky < 5; ky++) {
                    const float *row0 = s2 + ci * 196 + (2 * py + ky) * 14 + x0;
                    const float *row1 = row0 + 14;
                    const float *wk = net->c3_wt + (ci * 25 + ky * 5) * 16;
                    FL_UNROLL for (int kx = 0; kx < 5; kx++) {
                        vf w[NO];
                        FL_UNROLL for (int o = 0; o < NO; o++) w[o] = vload(wk + kx * 16 + o0 + o * FL_W);
                        FL_UNROLL for (int c = 0; c < CC; c++)
                            FL_UNROLL for (int o = 0; o < NO; o++) {
                                FL_FMA_BCAST(acc[0][c][o], w[o], row0, c + kx);
                                FL_FMA_BCAST(acc[1][c][o], w[o], row1, c + kx);
                            }
                    }
                }
            }
#endif
            FL_UNROLL for (int px = 0; px < CC / 2; px++)
                FL_UNROLL for (int o = 0; o < NO; o++)
                    vstore(s4 + (py * 5 + x0 / 2 + px) * 16 + o0 + o * FL_W,
                           vpool(pool, vact(act, acc[0][2 * px][o]),
                                 vact(act, acc[0][2 * px + 1][o]), vact(act, acc[1][2 * px][o]),
                                 vact(act, acc[1][2 * px + 1][o])));
        }
    }
}

/* Output vectors per pass for a single image: 8 fills 16 registers with accumulators and weights
 * at 8 or 16 lanes; a 4-wide ISA may choose fewer (with its own FL_DENSE_CASES1). */
#ifndef FL_DENSE_NB1
#define FL_DENSE_NB1 8
#endif

/* NI images x NB output vectors at once (NB <= FL_DENSE_NB1, the widest pass, used for single
 * images), both compile-time constants after inlining, so that the
 * NI*NB accumulators stay in registers: each weight vector loaded serves NI images (C5's 192 KB
 * of weights come from L2, so sharing them is what makes the dense layers fast), each broadcast
 * input serves NB vectors. */
FL_INLINE void dense_block(int act, const float *x, int ldx, int n_in, const float *wt, int ld,
                           const float *b, float *y, int ldy, const int ni, const int nb) {
    vf acc[FL_DENSE_NI][FL_DENSE_NB1];
    FL_UNROLL for (int i = 0; i < ni; i++)
        FL_UNROLL for (int j = 0; j < nb; j++) acc[i][j] = vload(b + j * FL_W);
    for (int k = 0; k < n_in; k++) {
        vf w[FL_DENSE_NB1];
        FL_UNROLL for (int j = 0; j < nb; j++) w[j] = vload(wt + (size_t)k * ld + j * FL_W);
        FL_UNROLL for (int i = 0; i < ni; i++) {
            const vf xb = vset1(x[i * ldx + k]);
            FL_UNROLL for (int j = 0; j < nb; j++) acc[i][j] = acc[i][j] + xb * w[j];
        }
    }
    FL_UNROLL for (int i = 0; i < ni; i++)
        FL_UNROLL for (int j = 0; j < nb; j++) vstore(y + i * ldy + j * FL_W, vact(act, acc[i][j]));
}

#define FL_DENSE_CASE(NI, NB)                                                                \
    case (NI) * 16 + (NB):                                                                   \
        dense_block(act, x0, ldx, n_in, w0, ld, b0, y0, ldy, NI, NB);                      \
        break;

#define FL_DENSE_CASE1(NB)                                                                   \
    case NB:                                                                                 \
        dense_block(act, x, ldx, n_in, w0, ld, b0, y0, ldy, 1, NB);                        \
        break;
#ifndef FL_DENSE_CASES1
#define FL_DENSE_CASES1                                                                      \
    FL_DENSE_CASE1(1) FL_DENSE_CASE1(2) FL_DENSE_CASE1(3) FL_DENSE_CASE1(4)                  \
    FL_DENSE_CASE1(5) FL_DENSE_CASE1(6) FL_DENSE_CASE1(7) FL_DENSE_CASE1(8)
#endif

static void FL_FN(dense_f32)(int act, const float *x, int n_img, int ldx, int n_in,
                             const float *wt, int ld, const float *b, int n_out, float *y,
                             int ldy) {
    const int nv = (n_out + FL_W - 1) / FL_W;
#ifdef FL_DENSE1_SUMS
    /* The ISA's own sums, image by image (nv rounded up within the padding). On SSE2 they beat
     * the 4-image tiles below even though each image streams the weights again (C5 2.9 against
     * 3.35 us per image, Zen 3). */
    for (int i = 0; i < n_img; i++) {
        const float *xi = x + (size_t)i * ldx;
        float *yi = y + (size_t)i * ldy;
        FL_DENSE1_SUMS(xi, n_in, wt, ld, b, yi, (n_out + 15) / 16 * (16 / FL_W));
        if (act != FL_ACT_NONE)
            for (int j = 0; j < nv; j++) vstore(yi + j * FL_W, vact(act, vload(yi + j * FL_W)));
    }
    return;
#endif
    if (n_img == 1) { /* one image: more output vectors per pass, for more FMA chains */
        for (int j0 = 0; j0 < nv; j0 += FL_DENSE_NB1) {
            const float *w0 = wt + j0 * FL_W, *b0 = b + j0 * FL_W;
            float *y0 = y + j0 * FL_W;
            switch (nv - j0 < FL_DENSE_NB1 ? nv - j0 : FL_DENSE_NB1) {
                FL_DENSE_CASES1
            }
        }
        return;
    }
    for (int j0 = 0; j0 < nv; j0 += FL_DENSE_NB) {
        const int nb = nv - j0 < FL_DENSE_NB ? nv - j0 : FL_DENSE_NB;
        const float *w0 = wt + j0 * FL_W, *b0 = b + j0 * FL_W;
        for (int i0 = 0; i0 < n_img; i0 += FL_DENSE_NI) {
            const int ni = n_img - i0 < FL_DENSE_NI ? n_img - i0 : FL_DENSE_NI;
            const float *x0 = x + (size_t)i0 * ldx;
            float *y0 = y + (size_t)i0 * ldy + j0 * FL_W;
            switch (ni * 16 + nb) {
                FL_DENSE_CASES
            }
        }
    }
}

const fl_kernels FL_CAT(fl_kernels, FL_SUFFIX) = {
    FL_FN(act_f32),
    FL_FN(c1_f32),
    FL_FN(c3_f32),
    FL_FN(dense_f32),
};
