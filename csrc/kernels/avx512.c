/* AVX-512 instantiation of simd_body.h: 16 floats per vector, 32 zmm registers.
 * C1 runs all 6 output channels per pass (6 x 4 accumulators share each input load); C3 a whole
 * conv row pair (2 rows x 10 columns = 20 accumulators, one weight vector per tap). */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#endif

#define FL_W 16
#define FL_SUFFIX avx512
#define FL_C1_CB 6
#define FL_C3_CC 10
#define FL_MIN_KEEP_NAN(c, x) ((vf)_mm512_min_ps((c), (x)))
#define FL_MAX_KEEP_NAN(c, x) ((vf)_mm512_max_ps((c), (x)))
#define FL_RCP(q) ((vf)_mm512_rcp14_ps((q)))
#define FL_FMA_BCAST(acc, w, base, off)                                                   \
    __asm__("vfmadd231ps %c[o](%[b])%{1to16%}, %[s], %[a]"                               \
            : [a] "+v"(acc)                                                              \
            : [s] "v"(w), [b] "r"(base), [o] "i"((off) * 4))
#include "simd_body.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
