/* AVX2 + FMA instantiation of simd_body.h: 8 floats per vector, 16 ymm registers.
 *   C1: three output channels per pass (12 accumulators for one 8-column vector; the
 *       compiler spills a little, which measures faster than 1 or 2 channels).
 *   C3: two columns per pass (2 rows x 2 columns x 2 vectors = 8 accumulators + 2 weights).
 *   dense: 4 images x 2 output vectors (8 accumulators, 2 weight vectors, 1 broadcast). */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#ifdef FL_HAVE_X86_KERNELS
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif

#define FL_W 8
#define FL_SUFFIX avx2
#define FL_C1_CB 3
#define FL_C3_CC 2
#define FL_DENSE_NI 4
#define FL_DENSE_NB 2
#define FL_DENSE_CASES                                                                       \
    FL_DENSE_CASE(1, 1) FL_DENSE_CASE(1, 2) FL_DENSE_CASE(2, 1) FL_DENSE_CASE(2, 2)          \
    FL_DENSE_CASE(3, 1) FL_DENSE_CASE(3, 2) FL_DENSE_CASE(4, 1) FL_DENSE_CASE(4, 2)
#define FL_MIN_KEEP_NAN(c, x) ((vf)_mm256_min_ps((c), (x)))
#define FL_MAX_KEEP_NAN(c, x) ((vf)_mm256_max_ps((c), (x)))
#define FL_RCP(q) ((vf)_mm256_rcp_ps((q)))
/* AVX2 FMAs take no broadcast operand: a vbroadcastss from memory (a load, not a shuffle). */
#define FL_FMA_BCAST(acc, w, base, off)                                                      \
    do {                                                                                     \
        vf b_;                                                                               \
        __asm__("vbroadcastss %c[o](%[b]), %[t]"                                            \
                : [t] "=v"(b_)                                                              \
                : [b] "r"(base), [o] "i"((off) * 4));                                       \
        (acc) = (acc) + b_ * (w);                                                            \
    } while (0)
#include "simd_body.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
