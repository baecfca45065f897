/* The int8 kernels on AVX512-VNNI (+ VBMI for C1's byte gathers): VPDPBUSD multiplies 4 uint8
 * activations by 4 int8 weights and adds them into an int32 lane, 64 products per instruction.
 * Bit-identical to int8_scalar.c (the numerics are written down there): the integer sums are
 * exact, and the fp32 steps after them are the same operations in the same order, with
 * explicit FMAs (_mm512_fmadd_ps where the scalar code calls fmaf).
 *   C1: output pixels in lanes, even and odd conv columns in separate vectors (so 2x2 pooling
 *       needs no shuffle, as in fp32). Each lane's 4 taps of a group come from at most two
 *       adjacent input rows: one 64-byte load of those rows and one vpermb (q->c1_idx) builds
 *       them for 16 lanes; the 6 output channels share it, their weight dwords broadcast.
 *       Lanes 14 and 15 compute garbage that is never stored.
 *   C3: the 16 output channels in lanes; a kernel row of 5 HWC pixels x 6 channels is 30
 *       contiguous bytes of s2, read as 8 broadcast dwords (2 bytes of the next pixel meet zero
 *       weights): no im2col copy. 2 conv rows x 10 columns of accumulators share each weight.
 *   C5, F6: outputs in lanes, weights [K/4][N][4], a tile of images shares each weight load.
 * Tails: the padding of img and s2 (int8.h) absorbs the over-reads; dense buffers are padded
 * to whole vectors.
 */
#include <stdint.h>
#include <string.h>

#include "int8.h"

#ifdef FL_HAVE_X86_KERNELS
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma")
#endif

#include "int8_avx512.h"

/* One conv row y: acc[c][0], acc[c][1] = even, odd columns of output channel c. */
I8_INLINE void c1_row(const fl_int8 *q, const uint8_t *img, int nc, int y, __m512i acc[6][2]) {
    I8_UNROLL for (int c = 0; c < 6; c++) {
        const __m512i b = _mm512_set1_epi32(q->c1_b[c]);
        acc[c][0] = acc[c][1] = b;
    }
    for (int ci = 0; ci < nc; ci++) {
        const uint8_t *plane = img + ci * 1024;
        I8_UNROLL for (int g = 0; g < 7; g++) {
            const int ky0 = (4 * g) / 5;
            const __m512i rows = _mm512_loadu_si512(plane + (y + ky0) * 32);
            const __m512i ae = _mm512_permutexvar_epi8(_mm512_load_si512(q->c1_idx[0][g]), rows);
            const __m512i ao = _mm512_permutexvar_epi8(_mm512_load_si512(q->c1_idx[1][g]), rows);
            I8_UNROLL for (int c = 0; c < 6; c++) {
                I8_DPBUSD_BCAST(acc[c][0], ae, q->c1_wp[c][ci * 7 + g]);
                I8_DPBUSD_BCAST(acc[c][1], ao, q->c1_wp[c][ci * 7 + g]);
            }
        }
    }
}

/* Conv rows 2py and 2py+1 one after the other (12 accumulators, not 24: no spills), the top
 * row's activations already paired for the pool. */
void fl_c1_i8__avx512vnni(const fl_int8 *q, const uint8_t *img, uint8_t *s2) {
    const int nc = q->in_channels, core = q->core, pool = q->pool;
    const tanh_tab T = tab_load();
    for (int py = 0; py < 14; py++) {
        __m512i acc[6][2];
        __m512 top[6];
        c1_row(q, img, nc, 2 * py, acc);
        I8_UNROLL for (int c = 0; c < 6; c++) {
            const __m512 s = _mm512_set1_ps(q->c1_s[c]);
            top[c] = pool_pair(pool, core_v(core, &T, pre_v(acc[c][0], s)),
                               core_v(core, &T, pre_v(acc[c][1], s)));
        }
        c1_row(q, img, nc, 2 * py + 1, acc);
        __m128i u[6];
        I8_UNROLL for (int c = 0; c < 6; c++) {
            const __m512 s = _mm512_set1_ps(q->c1_s[c]);
            const __m512 bottom = pool_pair(pool, core_v(core, &T, pre_v(acc[c][0], s)),
                                            core_v(core, &T, pre_v(acc[c][1], s)));
            u[c] = quant_v(pool_join(pool, top[c], bottom), q->inv[0], q->zp[0]);
        }
        /* to HWC: two byte permutes of the 6 x 16 bytes, 64 + 20 bytes stored */
        __m512i a = _mm512_castsi128_si512(u[0]), b = _mm512_castsi128_si512(u[4]);
        a = _mm512_inserti32x4(a, u[1], 1);
        a = _mm512_inserti32x4(a, u[2], 2);
        a = _mm512_inserti32x4(a, u[3], 3);
        b = _mm512_inserti32x4(b, u[5], 1);
        uint8_t *dst = s2 + py * 14 * 6;
        _mm512_storeu_si512(dst, _mm512_permutex2var_epi8(a, _mm512_load_si512(q->s2_idx[0]), b));
        _mm512_mask_storeu_epi8(dst + 64, (__mmask64)0xfffff,
                                _mm512_permutex2var_epi8(a, _mm512_load_si512(q->s2_idx[1]), b));
    }
}

void fl_c3_i8__avx512vnni(const fl_int8 *q, const uint8_t *s2, uint8_t *s4) {
    const int core = q->core, pool = q->pool;
    const tanh_tab T = tab_load();
    const __m512i bias = _mm512_loadu_si512(q->c3_b);
    const __m512 s = _mm512_load_ps(q->c3_s);
    for (int py = 0; py < 5; py++) {
        __m512i acc[2][10];
        I8_UNROLL for (int r = 0; r < 2; r++)
            I8_UNROLL for (int x = 0; x < 10; x++) acc[r][x] = bias;
        for (int ky = 0; ky < 5; ky++) {
            for (int g = 0; g < 8; g++) {
                const __m512i w = _mm512_load_si512(q->c3_wp + (ky * 8 + g) * 64);
                I8_UNROLL for (int r = 0; r < 2; r++) {
                    const uint8_t *row = s2 + (2 * py + r + ky) * 84 + 4 * g;
                    I8_UNROLL for (int x = 0; x < 10; x++) I8_BCAST_DPBUSD(acc[r][x], row + x * 6, w);
                }
            }
        }
        I8_UNROLL for (int px = 0; px < 5; px++) {
            const __m512 p = pool_v(pool, core_v(core, &T, pre_v(acc[0][2 * px], s)),
                                    core_v(core, &T, pre_v(acc[0][2 * px + 1], s)),
                                    core_v(core, &T, pre_v(acc[1][2 * px], s)),
                                    core_v(core, &T, pre_v(acc[1][2 * px + 1], s)));
            _mm_storeu_si128((__m128i *)(s4 + (py * 5 + px) * 16), quant_v(p, q->inv[1], q->zp[1]));
        }
    }
}

/* NI images x 4 output vectors (64 outputs from j0) of C5. */
I8_INLINE void c5_block(const fl_int8 *q, const tanh_tab *T, const uint8_t *s4, uint8_t *c5,
                        int j0, const int ni) {
    __m512i acc[4][4];
    I8_UNROLL for (int i = 0; i < ni; i++)
        I8_UNROLL for (int j = 0; j < 4; j++) acc[i][j] = _mm512_loadu_si512(q->c5_b + j0 + 16 * j);
    for (int g = 0; g < 100; g++) {
        __m512i w[4];
        I8_UNROLL for (int j = 0; j < 4; j++)
            w[j] = _mm512_load_si512(q->c5_wp + (g * FL_I8_C5_LD + j0 + 16 * j) * 4);
        I8_UNROLL for (int i = 0; i < ni; i++) {
            const __m512i a = bcast4(s4 + i * FL_I8_S4_LEN + 4 * g);
            I8_UNROLL for (int j = 0; j < 4; j++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], a, w[j]);
        }
    }
    I8_UNROLL for (int i = 0; i < ni; i++)
        I8_UNROLL for (int j = 0; j < 4; j++) {
            const __m512 t = core_v(q->core, T, pre_v(acc[i][j], _mm512_load_ps(q->c5_s + j0 + 16 * j)));
            _mm_storeu_si128((__m128i *)(c5 + i * FL_I8_C5_LD + j0 + 16 * j), quant_v(t, q->inv[2], q->zp[2]));
        }
}

void fl_c5_i8__avx512vnni(const fl_int8 *q, const uint8_t *s4, int n, uint8_t *c5) {
    const tanh_tab T = tab_load();
    for (int i0 = 0; i0 < n; i0 += 4) {
        const uint8_t *x = s4 + i0 * FL_I8_S4_LEN;
        uint8_t *y = c5 + i0 * FL_I8_C5_LD;
        for (int j0 = 0; j0 < FL_I8_C5_LD; j0 += 64) switch (n - i0 < 4 ? n - i0 : 4) {
            case 1: c5_block(q, &T, x, y, j0, 1); break;
            case 2: c5_block(q, &T, x, y, j0, 2); break;
            case 3: c5_block(q, &T, x, y, j0, 3); break;
            default: c5_block(q, &T, x, y, j0, 4); break;
            }
    }
}

/* NI images x 3 output vectors (48 outputs from j0) of F6. */
I8_INLINE void f6_block(const fl_int8 *q, const tanh_tab *T, const uint8_t *c5, float *f6,
                        int j0, const int ni) {
    __m512i acc[4][3];
    I8_UNROLL for (int i = 0; i < ni; i++)
        I8_UNROLL for (int j = 0; j < 3; j++) acc[i][j] = _mm512_loadu_si512(q->f6_b + j0 + 16 * j);
    for (int g = 0; g < 30; g++) {
        __m512i w[3];
        I8_UNROLL for (int j = 0; j < 3; j++)
            w[j] = _mm512_load_si512(q->f6_wp + (g * FL_F6_LD + j0 + 16 * j) * 4);
        I8_UNROLL for (int i = 0; i < ni; i++) {
            const __m512i a = bcast4(c5 + i * FL_I8_C5_LD + 4 * g);
            I8_UNROLL for (int j = 0; j < 3; j++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], a, w[j]);
        }
    }
    const __m512 gain = _mm512_set1_ps(q->gain), offset = _mm512_set1_ps(q->offset);
    I8_UNROLL for (int i = 0; i < ni; i++)
        I8_UNROLL for (int j = 0; j < 3; j++) {
            const __m512 t = core_v(q->core, T, pre_v(acc[i][j], _mm512_load_ps(q->f6_s + j0 + 16 * j)));
            _mm512_storeu_ps(f6 + i * FL_F6_LD + j0 + 16 * j, _mm512_fmadd_ps(t, gain, offset));
        }
}

void fl_f6_i8__avx512vnni(const fl_int8 *q, const uint8_t *c5, int n, float *f6) {
    const tanh_tab T = tab_load();
    for (int i0 = 0; i0 < n; i0 += 4) {
        const uint8_t *x = c5 + i0 * FL_I8_C5_LD;
        float *y = f6 + i0 * FL_F6_LD;
        for (int j0 = 0; j0 < FL_F6_LD; j0 += 48) switch (n - i0 < 4 ? n - i0 : 4) {
            case 1: f6_block(q, &T, x, y, j0, 1); break;
            case 2: f6_block(q, &T, x, y, j0, 2); break;
            case 3: f6_block(q, &T, x, y, j0, 3); break;
            default: f6_block(q, &T, x, y, j0, 4); break;
            }
    }
}

/* NI images x one output vector: NI independent FMA chains over k. */
I8_INLINE void out_block(const float *x, int ldx, int n_in, const float *wt, int ld,
                         const float *b, float *y, int ldy, const int ni) {
    __m512 acc[4];
    I8_UNROLL for (int i = 0; i < ni; i++) acc[i] = _mm512_loadu_ps(b);
    for (int k = 0; k < n_in; k++) {
        const __m512 w = _mm512_loadu_ps(wt + (size_t)k * ld);
        I8_UNROLL for (int i = 0; i < ni; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(x[(size_t)i * ldx + k]), w, acc[i]);
    }
    I8_UNROLL for (int i = 0; i < ni; i++) _mm512_storeu_ps(y + (size_t)i * ldy, acc[i]);
}

void fl_output_i8__avx512vnni(const float *x, int n_img, int ldx, int n_in, const float *wt,
                                  int ld, const float *b, int n_out, float *y, int ldy) {
    for (int j = 0; j < n_out; j += 16) /* b, wt rows and y rows are padded to 16 */
        for (int i0 = 0; i0 < n_img; i0 += 4) {
            const float *xi = x + (size_t)i0 * ldx;
            float *yi = y + (size_t)i0 * ldy + j;
            switch (n_img - i0 < 4 ? n_img - i0 : 4) {
            case 1: out_block(xi, ldx, n_in, wt + j, ld, b + j, yi, ldy, 1); break;
            case 2: out_block(xi, ldx, n_in, wt + j, ld, b + j, yi, ldy, 2); break;
            case 3: out_block(xi, ldx, n_in, wt + j, ld, b + j, yi, ldy, 3); break;
            default: out_block(xi, ldx, n_in, wt + j, ld, b + j, yi, ldy, 4); break;
            }
        }
}

/* int8.c's pixel_u8 on a row: masked loads and stores (n = 28 or 32), never past the row. */
void fl_row_f32_i8__avx512vnni(const char *row, int n, uint8_t *dst) {
    const __m512 s = _mm512_set1_ps(255.0f), hi = _mm512_set1_ps(255.0f);
    for (int x0 = 0; x0 < n; x0 += 16) {
        const __mmask16 m = (__mmask16)(n - x0 >= 16 ? 0xffff : (1u << (n - x0)) - 1);
        __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + 4 * x0), s);
        t = _mm512_min_ps(_mm512_max_ps(t, _mm512_setzero_ps()), hi);
        _mm_mask_storeu_epi8(dst + x0, m, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(t)));
    }
}

const fl_int8_kernels fl_int8_kernels__avx512vnni = {
    fl_c1_i8__avx512vnni, fl_c3_i8__avx512vnni, fl_c5_i8__avx512vnni, fl_f6_i8__avx512vnni,
    fl_output_i8__avx512vnni, fl_row_f32_i8__avx512vnni,
};

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
