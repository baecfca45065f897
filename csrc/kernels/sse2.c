/* The SSE2 level (named "generic": the portable SIMD level of x86-64): simd_body.h with 4-wide
 * vectors in x86-64's baseline ISA, so it runs on every x86-64 CPU and needs no dispatch check.
 * 16 xmm registers, no FMA (multiply, then add: the result rounds twice, as the scalar kernel
 * does). Blocking (registers: accumulators + live inputs/weights + temporaries):
 *   C1: 2 output channels per pass, 4 accumulators each, on splatted weights (below);
 *   C3: 2 rows x 2 columns x 2 output vectors of accumulators, on splatted inputs (below);
 *   dense: NI images x NB output vectors of accumulators, NB weight vectors, one broadcast.
 * SSE2 has no broadcast operand from memory (a broadcast is movss + shufps, and the shuffle
 * takes an FP pipe from the multiplies and adds), so C1 and C3 are this ISA's own kernels:
 * C1 splats its 150 weights and C3 its 1176 inputs once per call into vectors of 4 copies, and
 * assembly (GCC's register allocation of these loop nests spilled) multiplies them with plain
 * vector loads; simd_body.h calls them through FL_C1_OWN, FL_C3_PREPARE and FL_C3_TAPS.
 * Compiled only with GCC or Clang (vector extensions) for x86-64; elsewhere this file is empty.
 */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#if defined(FL_HAVE_GENERIC_KERNELS) && (defined(__x86_64__) || defined(_M_X64))

#define FL_W 4
#define FL_SUFFIX generic
#include <emmintrin.h>
/* GCC schedules x86 code only after register allocation; SSE's two-operand multiply-adds then
 * come out one accumulator chain at a time, latency-bound. Pressure-aware scheduling before
 * allocation, and none after it (which undid part of it in C3), measured on Zen 3 per image:
 * C1 22 -> 12.6 us, C3 17.4 -> 15.8 us. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("schedule-insns", "sched-pressure", "no-schedule-insns2")
#endif
#define FL_C1_CB 2
/* SSE2 has no broadcast from memory (a broadcast is movss + shufps, and the shuffle takes an FP
 * pipe): C1 and C3 run on pre-splatted weights / inputs, in the assembly below. With no FMA a
 * multiply-add is 3 instructions (two-operand SSE: a copy or a load, mulps, addps), so the bound
 * is about 2 per cycle on Zen 3 (6 instructions dispatched); the kernels below keep every
 * accumulator in a register and 0.5-0.75 loads per multiply-add (2 vector loads per cycle).
 * Measured per image on Zen 3 (tools/c/layer_profile.c, thread CPU time, medians), with the
 * C1 tail vectors and separate activation pass of simd_body.h: C1 13.3 -> 10.1 us, C3 16.0 ->
 * 13.0 us. */
/* C3, all 150 taps of 2 conv rows x 2 columns x 2 output vectors (8 accumulators). Per tap the
 * 2 weight vectors load into registers; each splatted input loads once and serves both (a copy
 * for the first, in place for the second). Inputs: splatted s2 at r (conv row 2py+ky, 16 bytes
 * per column; r + 224 is the next row); weights at wk + kx*64 (+16 for the second vector). The
 * (ci, ky) loop runs in the assembly too (a C loop around it moved the accumulators between
 * registers on every row). Each accumulator sums in the scalar kernel's order (ci, ky, kx). */
#define FL_C3_POS(off, acc0, acc1)                                                          \
    "movaps " off "(%[r]), %[s]\n\tmovaps %[s], %[t]\n\tmulps %[w0], %[t]\n\t"              \
    "addps %[t], %[" #acc0 "]\n\tmulps %[w1], %[s]\n\taddps %[s], %[" #acc1 "]\n\t"
#define FL_C3_TAP(kx)                                                                        \
    "movaps " #kx "*64(%[wk]), %[w0]\n\tmovaps " #kx "*64+16(%[wk]), %[w1]\n\t"           \
    FL_C3_POS(#kx "*16", a000, a001) FL_C3_POS(#kx "*16+16", a010, a011)                      \
    FL_C3_POS(#kx "*16+224", a100, a101) FL_C3_POS(#kx "*16+240", a110, a111)
#define FL_C3_ALL(acc, row, wrow)                                                            \
    do {                                                                                     \
        vf w0_, w1_, s_, t_;                                                                 \
        const float *r_ = (row), *wk_ = (wrow);                                              \
        ptrdiff_t nci_, nky_;                                                                \
        __asm__("mov $6, %[nci]\n\t"                                                         \
                "1:\n\tmov $5, %[nky]\n\t"                                                   \
                "2:\n\t" FL_C3_TAP(0) FL_C3_TAP(1) FL_C3_TAP(2) FL_C3_TAP(3) FL_C3_TAP(4)      \
                "add $320, %[wk]\n\tadd $224, %[r]\n\tdec %[nky]\n\tjnz 2b\n\t"             \
                "add $2016, %[r]\n\tdec %[nci]\n\tjnz 1b\n\t"                                \
                : [a000] "+x"(acc[0][0][0]), [a001] "+x"(acc[0][0][1]),                      \
                  [a010] "+x"(acc[0][1][0]), [a011] "+x"(acc[0][1][1]),                      \
                  [a100] "+x"(acc[1][0][0]), [a101] "+x"(acc[1][0][1]),                      \
                  [a110] "+x"(acc[1][1][0]), [a111] "+x"(acc[1][1][1]),                      \
                  [w0] "=&x"(w0_), [w1] "=&x"(w1_), [s] "=&x"(s_), [t] "=&x"(t_),         \
                  [r] "+r"(r_), [wk] "+r"(wk_),                                              \
                  [nci] "=&r"(nci_), [nky] "=&r"(nky_)                                       \
                :                                                                            \
                : "cc");                                                                     \
    } while (0)
/* C1, one input channel (25 taps) of CB = 2 output channels x 4 accumulators (even/odd
 * columns A/B of conv rows 2py, 2py+1), in assembly for the same reason as C3. Per kernel row
 * ky, the inputs of a conv row in tap order are s0..s5 = E0 O0 E1 O1 E2 O2 (the even/odd split
 * at column offsets 0, 1, 2): tap kx multiplies s_kx into A and s_kx+1 into B. Two input
 * registers per conv row slide along (P = s_kx, Q = s_kx+1, both rows); each splatted weight W
 * (c, ky, kx), at w + c*cs + (ky*5 + kx)*16 bytes (cs = NC*25*16), serves 4 accumulators:
 * copies for the first uses, in place for the last, and channel 1 multiplies P in place (its
 * last use). 8 accumulators + 4 inputs + W + a temporary; 3 instructions and 0.5 loads per
 * multiply-add, all 8 accumulator chains interleaved. */
#define FL_C1_MT(in, w, acc)                                                                 \
    "movaps %[" #w "], %[t]\n\tmulps %[" #in "], %[t]\n\taddps %[t], %[" #acc "]\n\t"
#define FL_C1_MI(in, w, acc) "mulps %[" #in "], %[" #w "]\n\taddps %[" #w "], %[" #acc "]\n\t"
/* kx: loads s_kx+1 (at offset q from %[e] or %[o], row ky and ky+1) into Q0, Q1 */
#define FL_C1_KX(ky, kx, P0, P1, Q0, Q1, qb, qo)                                             \
    "movups " #ky "*%c[rs]+" qo "*%c[js](%[" qb "]), %[" #Q0 "]\n\t"                        \
    "movups " #ky "*%c[rs]+%c[rs]+" qo "*%c[js](%[" qb "]), %[" #Q1 "]\n\t"                 \
    "movaps " #ky "*80+" #kx "*16(%[w]), %[W]\n\t"                                          \
    FL_C1_MT(P0, W, a00) FL_C1_MT(Q0, W, a01) FL_C1_MT(P1, W, a02) FL_C1_MI(Q1, W, a03)      \
    "movaps %c[cs]+" #ky "*80+" #kx "*16(%[w]), %[W]\n\t"                                   \
    FL_C1_MI(W, P0, a10) FL_C1_MI(W, P1, a12) FL_C1_MT(Q0, W, a11) FL_C1_MI(Q1, W, a13)
#define FL_C1_KY(ky)                                                                         \
    "movups " #ky "*%c[rs](%[e]), %[x0]\n\tmovups " #ky "*%c[rs]+%c[rs](%[e]), %[x1]\n\t"    \
    FL_C1_KX(ky, 0, x0, x1, y0, y1, "o", "0") FL_C1_KX(ky, 1, y0, y1, x0, x1, "e", "1")      \
    FL_C1_KX(ky, 2, x0, x1, y0, y1, "o", "1") FL_C1_KX(ky, 3, y0, y1, x0, x1, "e", "2")      \
    FL_C1_KX(ky, 4, x0, x1, y0, y1, "o", "2")
#define FL_C1_CHANNEL(acc, E, O, wc, NC, RS, JS)                                             \
    do {                                                                                     \
        vf x0_, x1_, y0_, y1_, w_, t_;                                                       \
        __asm__(FL_C1_KY(0) FL_C1_KY(1) FL_C1_KY(2) FL_C1_KY(3) FL_C1_KY(4)                  \
                : [a00] "+x"(acc[0][0]), [a01] "+x"(acc[0][1]), [a02] "+x"(acc[0][2]),       \
                  [a03] "+x"(acc[0][3]), [a10] "+x"(acc[1][0]), [a11] "+x"(acc[1][1]),       \
                  [a12] "+x"(acc[1][2]), [a13] "+x"(acc[1][3]), [x0] "=&x"(x0_),             \
                  [x1] "=&x"(x1_), [y0] "=&x"(y0_), [y1] "=&x"(y1_), [W] "=&x"(w_),          \
                  [t] "=&x"(t_)                                                              \
                : [e] "r"(E), [o] "r"(O), [w] "r"(wc), [cs] "i"((NC)*25 * 16), [rs] "i"(RS), \
                  [js] "i"(JS));                                                             \
    } while (0)
/* Dense layers for one image (batch 1, and the last image of a ragged tile): each weight is
 * used once, so the bound is the chain of adds into each accumulator (3 cycles each); 8 output
 * vectors per pass (4 for the last when fewer remain: rows are padded to 16 floats, so nv
 * rounded up to 4 stays inside them) keeps 8 chains going. Each input x[k] is broadcast once
 * per pass; the weights are mulps memory operands, their rows 8 ahead prefetched into L1 (a
 * pass reads 128 bytes of each 512-byte C5 row from L2: C5 3.15 -> 2.9 us, the batch-1 forward
 * 5% faster; prefetches never fault, so running past the last row is harmless). Sums only:
 * simd_body.h applies the activation. Accumulation order: bias, then k ascending, as the
 * scalar kernel. */
typedef float fl_v4 __attribute__((vector_size(16)));
#define FL_D1_MAC(j, acc) "movaps %[xb], %[t]\n\tmulps " #j "*16(%[w]), %[t]\n\taddps %[t], %[" #acc "]\n\t"
#define FL_D1_HEAD "movss (%[x]), %[xb]\n\tshufps $0, %[xb], %[xb]\n\t"
#define FL_D1_TAIL "prefetcht0 (%[pf])\n\tprefetcht0 64(%[pf])\n\tadd %[ld], %[pf]\n\tadd %[ld], %[w]\n\tadd $4, %[x]\n\tdec %[n]\n\tjnz 1b\n\t"
static void fl_dense1_sse2(const float *x, int n_in, const float *wt, int ld, const float *b,
                           float *y, int nv) {
    for (int j0 = 0; j0 < nv;) {
        const float *xp = x, *wp = wt + j0 * 4, *pf = wp + 8 * ld;
        ptrdiff_t n = n_in, ldb = (ptrdiff_t)ld * 4; /* 64-bit: pointer arithmetic in the asm */
        fl_v4 a[8], xb, t;
        memcpy(a, b + j0 * 4, sizeof a[0] * (nv - j0 >= 8 ? 8 : 4));
        if (nv - j0 >= 8) {
            __asm__("1:\n\t" FL_D1_HEAD FL_D1_MAC(0, a0) FL_D1_MAC(1, a1) FL_D1_MAC(2, a2)
                    FL_D1_MAC(3, a3) FL_D1_MAC(4, a4) FL_D1_MAC(5, a5) FL_D1_MAC(6, a6)
                    "mulps 7*16(%[w]), %[xb]\n\taddps %[xb], %[a7]\n\t" FL_D1_TAIL
                    : [a0] "+x"(a[0]), [a1] "+x"(a[1]), [a2] "+x"(a[2]), [a3] "+x"(a[3]),
                      [a4] "+x"(a[4]), [a5] "+x"(a[5]), [a6] "+x"(a[6]), [a7] "+x"(a[7]),
                      [xb] "=&x"(xb), [t] "=&x"(t), [x] "+r"(xp), [w] "+r"(wp), [n] "+r"(n), [pf] "+r"(pf)
                    : [ld] "r"(ldb)
                    : "cc", "memory");
            memcpy(y + j0 * 4, a, sizeof a);
            j0 += 8;
        } else {
            __asm__("1:\n\t" FL_D1_HEAD FL_D1_MAC(0, a0) FL_D1_MAC(1, a1) FL_D1_MAC(2, a2)
                    "mulps 3*16(%[w]), %[xb]\n\taddps %[xb], %[a3]\n\t" FL_D1_TAIL
                    : [a0] "+x"(a[0]), [a1] "+x"(a[1]), [a2] "+x"(a[2]), [a3] "+x"(a[3]),
                      [xb] "=&x"(xb), [t] "=&x"(t), [x] "+r"(xp), [w] "+r"(wp), [n] "+r"(n), [pf] "+r"(pf)
                    : [ld] "r"(ldb)
                    : "cc", "memory");
            memcpy(y + j0 * 4, a, sizeof a[0] * 4);
            j0 += 4;
        }
    }
}
#define FL_DENSE1_SUMS(x, n_in, wt, ld, b, y, nv) fl_dense1_sse2(x, n_in, wt, ld, b, y, nv)
/* 2 rows x 2 columns x 2 output vectors = 8 accumulators; all 4 output vectors would need 16
 * accumulators + weights, more than SSE's 16 registers. */
#define FL_C3_CC 2
#define FL_C3_NO 2
#define FL_DENSE_NI 4
#define FL_DENSE_NB 2
#define FL_DENSE_CASES                                                                       \
    FL_DENSE_CASE(1, 1) FL_DENSE_CASE(1, 2) FL_DENSE_CASE(2, 1) FL_DENSE_CASE(2, 2)          \
    FL_DENSE_CASE(3, 1) FL_DENSE_CASE(3, 2) FL_DENSE_CASE(4, 1) FL_DENSE_CASE(4, 2)
/* one image: replaced by FL_DENSE1_SUMS (the C version below it: 4 output vectors, 4
 * accumulators, 4 weights, broadcast, product). */
#define FL_DENSE_NB1 4
#define FL_DENSE_CASES1                                                                      \
    FL_DENSE_CASE1(1) FL_DENSE_CASE1(2) FL_DENSE_CASE1(3) FL_DENSE_CASE1(4)
/* A constant vector read from .rodata through an address GCC cannot see through: a constant
 * it sees, GCC builds as movss + shufps (2 instructions, the shuffle on an FP pipe); a plain
 * load folds into the mulps/addps/minps that uses it. */
#define FL_VCONST(c)                                                                         \
    ({                                                                                       \
        static const vf k_ = FL_SPLAT(c);                                                    \
        const vf *p_ = &k_;                                                                  \
        __asm__("" : "+r"(p_));                                                              \
        *p_;                                                                                 \
    })
/* minps/maxps return their second operand when either is NaN. */
#define FL_MIN_KEEP_NAN(c, x) ((vf)_mm_min_ps((__m128)(c), (__m128)(x)))
#define FL_MAX_KEEP_NAN(c, x) ((vf)_mm_max_ps((__m128)(c), (__m128)(x)))
/* No FL_RCP: tanh divides (divps). rcpps + a Newton step is 4 instructions on the FP pipes
 * the rest of tanh needs, the divider is a unit of its own; measured on 1344 vectors (one
 * image's C1): 6.9 -> 5.8 us with FL_VCONST, and the quotient is correctly rounded. */

/* This ISA's own C1 and C3 (defined below, after the vector helpers of simd_body.h). */
#define FL_SPLIT_STRIDE 24
static inline __attribute__((always_inline)) void c1_presplat(
    const fl_net *net, float (*ev)[32 * FL_SPLIT_STRIDE],
    float (*od)[32 * FL_SPLIT_STRIDE], float *s2, const int NC);
#define FL_C1_OWN(net, ev, od, s2, NC) c1_presplat(net, ev, od, s2, NC)
/* C3: s2 splatted once per call; FL_C3_ALL runs the 150 taps of one output block on it. */
#define FL_C3_PREPARE(s2)                                                                   \
    float s2v[FL_S2_LEN * FL_W] FL_ALIGNED;                                                 \
    for (int i = 0; i < FL_S2_LEN; i++) vstore(s2v + i * FL_W, vset1((s2)[i]));             \
    __asm__ volatile("" : : "r"(s2v) : "memory") /* the asm reads them: the stores happen */
#define FL_C3_TAPS(acc, py, x0, wrow) FL_C3_ALL(acc, s2v + (2 * (py) * 14 + (x0)) * FL_W, wrow)
#if !(FL_C1_CB == 2 && FL_C3_NO == 2 && FL_C3_CC == 2)
#error "sse2.c's own C1 and C3 are written for 2 output channels, 2 output vectors, 2 columns"
#endif

#include "simd_body.h"

/* C1 (4 lanes, 2 output channels per pass): the ISA's FL_C1_CHANNEL runs
 * one input channel's 25 taps on splatted weights. Pooled columns 0..11 are 3 vectors per pooled
 * row; columns 12 and 13 of two pooled rows py, py+1 share one vector (the "tail"), so that no
 * lane computes the padding columns 14, 15 (an eighth of C1 at 4 lanes; measured on Zen 3 per
 * image, C1 11.8 -> 10.7 us). Tail rows: te[y][j*4 + l] = E[y][12 + j + l] for lanes l = 0, 1
 * and E[y+2][12 + j + l - 2] for l = 2, 3 (conv rows 2py+2.. of pooled row py+1 read input row
 * y+2), at input offsets j = 0, 1, 2; likewise `to` from the odd columns. */
#define FL_TAIL_STRIDE 12
static inline __attribute__((always_inline)) void c1_presplat(
    const fl_net *net, float (*ev)[32 * FL_SPLIT_STRIDE],
    float (*od)[32 * FL_SPLIT_STRIDE], float *s2, const int NC) {
    const int act = net->act, pool = net->pool;
    float wsplat[6 * FL_MAX_CHANNELS * 25 * FL_W] FL_ALIGNED;
    for (int i = 0; i < 6 * NC * 25; i++) vstore(wsplat + i * FL_W, vset1(net->c1_w[i]));
    float te[FL_MAX_CHANNELS][30 * FL_TAIL_STRIDE] FL_ALIGNED;
    float to[FL_MAX_CHANNELS][30 * FL_TAIL_STRIDE] FL_ALIGNED;
    for (int ci = 0; ci < NC; ci++)
        for (int y = 0; y < 30; y++)
            for (int j = 0; j < 3; j++) {
                const float *e = ev[ci] + y * FL_SPLIT_STRIDE + 12 + j;
                const float *o = od[ci] + y * FL_SPLIT_STRIDE + 12 + j;
                float *de = te[ci] + y * FL_TAIL_STRIDE + j * 4;
                float *dd = to[ci] + y * FL_TAIL_STRIDE + j * 4;
                memcpy(de, e, 2 * sizeof(float));
                memcpy(de + 2, e + 2 * FL_SPLIT_STRIDE, 2 * sizeof(float));
                memcpy(dd, o, 2 * sizeof(float));
                memcpy(dd + 2, o + 2 * FL_SPLIT_STRIDE, 2 * sizeof(float));
            }
    /* FL_C1_CHANNEL reads these in asm that does not declare them: the stores must happen. */
    __asm__ volatile("" : : "r"(wsplat), "r"(ev), "r"(od), "r"(te), "r"(to) : "memory");
    for (int c0 = 0; c0 < 6; c0 += 2) {
        const float *wc0 = wsplat + c0 * NC * 25 * FL_W;
        /* Blocks 0..41: pooled row b/3, columns 4(b%3)..+3; 42..48: the tail of rows 2(b-42),
         * +1. All 49 blocks' sums first, then their activation and pooling in a loop of their
         * own: tanh is a long dependency chain, and between the short asm blocks the
         * out-of-order window could not overlap it (C1 10.7 -> 10.1 us per image, Zen 3). */
        vf raw[49][2][4];
        for (int b = 0; b < 49; b++) {
            const int tail = b >= 42, py = tail ? 2 * (b - 42) : b / 3, v = b % 3;
            /* acc[c][q]: q = 0, 1 even/odd columns of conv row 2py; 2, 3 of row 2py+1 */
            vf acc[2][4];
            FL_UNROLL for (int c = 0; c < 2; c++)
                FL_UNROLL for (int q = 0; q < 4; q++) acc[c][q] = vset1(net->c1_b[c0 + c]);
            for (int ci = 0; ci < NC; ci++) {
                if (tail)
                    FL_C1_CHANNEL(acc, te[ci] + 2 * py * FL_TAIL_STRIDE,
                                  to[ci] + 2 * py * FL_TAIL_STRIDE, wc0 + ci * 25 * FL_W, NC,
                                  FL_TAIL_STRIDE * 4, 16);
                else
                    FL_C1_CHANNEL(acc, ev[ci] + 2 * py * FL_SPLIT_STRIDE + v * FL_W,
                                  od[ci] + 2 * py * FL_SPLIT_STRIDE + v * FL_W,
                                  wc0 + ci * 25 * FL_W, NC, FL_SPLIT_STRIDE * 4, 4);
            }
            memcpy(raw[b], acc, sizeof acc);
        }
        for (int b = 0; b < 49; b++) {
            const int tail = b >= 42, py = tail ? 2 * (b - 42) : b / 3, v = b % 3;
            float *d = s2 + c0 * 196 + py * 14 + (tail ? 12 : v * FL_W);
            FL_UNROLL for (int c = 0; c < 2; c++) {
                float r[FL_W];
                vstore(r, vpool(pool, vact(act, raw[b][c][0]), vact(act, raw[b][c][1]),
                                vact(act, raw[b][c][2]), vact(act, raw[b][c][3])));
                if (!tail) {
                    memcpy(d + c * 196, r, 4 * sizeof(float));
                } else {
                    memcpy(d + c * 196, r, 2 * sizeof(float));
                    memcpy(d + c * 196 + 14, r + 2, 2 * sizeof(float));
                }
            }
        }
    }
}

#endif
