/* AVX-512 (F, DQ, BW, VL) instantiation of simd_body.h: 16 floats per vector, 32 zmm registers.
 *   C1: all 6 output channels per pass (6 x 4 accumulators share each input load).
 *   C3: a whole conv row pair per pass (2 rows x 10 columns = 20 accumulators, one weight
 *       vector per tap, inputs as embedded {1to16} broadcast operands).
 *   dense: 4 images x 4 output vectors (16 accumulators, 4 weight vectors, 1 broadcast). */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#ifdef FL_HAVE_X86_KERNELS
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#endif

#define FL_W 16
#define FL_SUFFIX avx512
#define FL_C1_CB 6
#define FL_C3_CC 10
#define FL_DENSE_NI 4
#define FL_DENSE_NB 4
#define FL_DENSE_CASES                                                                       \
    FL_DENSE_CASE(1, 1) FL_DENSE_CASE(1, 2) FL_DENSE_CASE(1, 3) FL_DENSE_CASE(1, 4)          \
    FL_DENSE_CASE(2, 1) FL_DENSE_CASE(2, 2) FL_DENSE_CASE(2, 3) FL_DENSE_CASE(2, 4)          \
    FL_DENSE_CASE(3, 1) FL_DENSE_CASE(3, 2) FL_DENSE_CASE(3, 3) FL_DENSE_CASE(3, 4)          \
    FL_DENSE_CASE(4, 1) FL_DENSE_CASE(4, 2) FL_DENSE_CASE(4, 3) FL_DENSE_CASE(4, 4)
#define FL_MIN_KEEP_NAN(c, x) ((vf)_mm512_min_ps((c), (x)))
#define FL_MAX_KEEP_NAN(c, x) ((vf)_mm512_max_ps((c), (x)))
#define FL_RCP(q) ((vf)_mm512_rcp14_ps((q)))
#define FL_FMA_BCAST(acc, w, base, off)                                                      \
    __asm__("vfmadd231ps %c[o](%[b])%{1to16%}, %[s], %[a]"                                  \
            : [a] "+v"(acc)                                                                 \
            : [s] "v"(w), [b] "r"(base), [o] "i"((off) * 4))
#include "simd_body.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
