/* AVX2 + FMA instantiation of simd_body.h: 8 floats per vector, 16 ymm registers.
 * C1 keeps one output channel per pass (4 accumulators x 2 vectors = 8 registers); C3 two
 * columns per pass (2 rows x 2 columns x 2 vectors = 8 accumulators + 2 weight vectors). */
#include <stdint.h>
#include <string.h>

#include "../kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif

#define FL_W 8
#define FL_SUFFIX avx2
#define FL_C1_CB 1
#define FL_C3_CC 2
#include "simd_body.h"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
