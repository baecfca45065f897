/* Helpers shared by the AVX-512 int8 kernel files (int8_avx512vnni.c, int8_amx.c): the fp32
 * steps after the integer sums, exactly int8_scalar.c's (see there), 16 lanes at a time.
 * Included after the including file's target pragma (AVX-512 F/BW/VL + VNNI + VBMI). */
#ifndef FASTLENET_INT8_AVX512_H
#define FASTLENET_INT8_AVX512_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "int8.h"

#define I8_INLINE static inline __attribute__((always_inline))
#define I8_UNROLL _Pragma("GCC unroll 32")

typedef struct { __m512 lo[4], hi[4]; } tanh_tab;

I8_INLINE tanh_tab tab_load(void) {
    tanh_tab t;
    for (int j = 0; j < 4; j++) {
        t.lo[j] = _mm512_loadu_ps(fl_i8_tanh_c[j]);
        t.hi[j] = _mm512_loadu_ps(fl_i8_tanh_c[j] + 16);
    }
    return t;
}

/* int8_scalar.c's core1, 16 lanes: clamp (min, then max), piece = trunc(fma(x, 4, 16)), the
 * piece's coefficients from the 32-entry table by vpermt2ps, three FMAs. */
I8_INLINE __m512 core_v(int core, const tanh_tab *T, __m512 x) {
    if (core == FL_I8_CORE_RELU) return _mm512_max_ps(x, _mm512_setzero_ps());
    __m512 xc = _mm512_min_ps(x, _mm512_set1_ps(FL_I8_TANH_MAX));
    xc = _mm512_max_ps(xc, _mm512_set1_ps(-4.0f));
    const __m512i i = _mm512_cvttps_epi32(_mm512_fmadd_ps(xc, _mm512_set1_ps(4.0f), _mm512_set1_ps(16.0f)));
#define I8_COEF(j) _mm512_permutex2var_ps(T->lo[j], i, T->hi[j])
    __m512 p = _mm512_fmadd_ps(I8_COEF(3), xc, I8_COEF(2));
    p = _mm512_fmadd_ps(p, xc, I8_COEF(1));
    return _mm512_fmadd_ps(p, xc, I8_COEF(0));
#undef I8_COEF
}

I8_INLINE __m512 pre_v(__m512i acc, __m512 s) { return _mm512_mul_ps(_mm512_cvtepi32_ps(acc), s); }

I8_INLINE __m512 pool_v(int pool, __m512 a, __m512 b, __m512 c, __m512 d) {
    if (pool == FL_POOL_MAX) return _mm512_max_ps(_mm512_max_ps(a, b), _mm512_max_ps(c, d));
    return _mm512_mul_ps(_mm512_set1_ps(0.25f), _mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

/* fma, max(., 0), min(., 255), round to nearest even; 16 bytes out. */
I8_INLINE __m128i quant_v(__m512 p, float inv, float zp) {
    __m512 t = _mm512_fmadd_ps(p, _mm512_set1_ps(inv), _mm512_set1_ps(zp));
    t = _mm512_max_ps(t, _mm512_setzero_ps());
    t = _mm512_min_ps(t, _mm512_set1_ps(255.0f));
    return _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(t));
}

/* 4 bytes at p in every dword lane, as one vpbroadcastd from memory (a load-port uop): in
 * plain C, GCC loads them into a general register and broadcasts from there, a second uop on
 * port 5, which VPDPBUSD needs (C3 ran 2.35 instead of 1.6 us per image). */
typedef struct { uint8_t b[4]; } i8_dword;
I8_INLINE __m512i bcast4(const uint8_t *p) {
    __m512i v;
    __asm__("vpbroadcastd %1, %0" : "=v"(v) : "m"(*(const i8_dword *)p));
    return v;
}

/* acc += (the 4 bytes at p, u8, in every lane) . w (s8): the broadcast and the dot product in
 * one asm statement, so GCC can neither hoist the broadcasts (it kept C3's 20 accumulators on
 * the stack to make room for them) nor send them through a general register. */
#define I8_BCAST_DPBUSD(acc, p, w)                                                            \
    do {                                                                                      \
        __m512i t_;                                                                           \
        __asm__("vpbroadcastd %[m], %[t]\n\tvpdpbusd %[y], %[t], %[c]"                      \
                : [c] "+v"(acc), [t] "=&v"(t_)                                                \
                : [y] "v"(w), [m] "m"(*(const i8_dword *)(p)));                              \
    } while (0)

/* acc += a (u8) . the int32 lvalue w (4 s8 weights) broadcast, as an embedded {1to16} operand: GCC would
 * otherwise hoist all 42 of C1's broadcast weight vectors out of the row loop and spill them. */
#define I8_DPBUSD_BCAST(acc, a, w)                                                            \
    __asm__("vpdpbusd %[m]%{1to16%}, %[x], %[c]"                                            \
            : [c] "+v"(acc)                                                                  \
            : [x] "v"(a), [m] "m"(w))

/* The halves of pool_v, same operations in the same order: a + b (or max) per conv row, then
 * 0.25 * (top + bottom) (or max). */
I8_INLINE __m512 pool_pair(int pool, __m512 a, __m512 b) {
    return pool == FL_POOL_MAX ? _mm512_max_ps(a, b) : _mm512_add_ps(a, b);
}
I8_INLINE __m512 pool_join(int pool, __m512 top, __m512 bottom) {
    if (pool == FL_POOL_MAX) return _mm512_max_ps(top, bottom);
    return _mm512_mul_ps(_mm512_set1_ps(0.25f), _mm512_add_ps(top, bottom));
}


#endif
