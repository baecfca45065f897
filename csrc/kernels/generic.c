/* The portable SIMD level: simd_body.h with 4-wide vectors, in the target's baseline ISA, so it
 * runs on every CPU of the target and needs no dispatch check.
 *   x86-64: SSE2, 16 xmm registers, no FMA (multiply, then add: the result rounds twice, as
 *           the scalar kernel does).
 *   aarch64: NEON (Advanced SIMD), 32 registers; GCC and Clang contract multiply-add into FMLA
 *           (-ffp-contract=fast is their default in GNU C), with the broadcast operand taken
 *           from a vector lane or a replicating load, so a broadcast costs nothing extra.
 * Blocking per target (registers: accumulators + live inputs/weights + temporaries):
 *   C1: CB output channels per pass, 4 accumulators each, 6 input vectors shared by all.
 *   C3: 2 rows x FL_C3_CC columns x 4 output vectors of accumulators, 4 weight vectors.
 *   dense: NI images x NB output vectors of accumulators, NB weight vectors, one broadcast.
 * Compiled only with GCC or Clang (vector extensions); elsewhere this file is empty and the
 * level is absent (fl_kernels_for returns NULL for it).
 */
#include <stdint.h>
#include <string.h>

#include "../kernels.h"

#ifdef FL_HAVE_GENERIC_KERNELS

#define FL_W 4
#define FL_SUFFIX generic

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
/* GCC schedules x86 code only after register allocation; SSE's two-operand multiply-adds then
 * come out one accumulator chain at a time, latency-bound. Pressure-aware scheduling before
 * allocation, and none after it (which undid part of it in C3), measured on Zen 3 per image:
 * C1 22 -> 12.6 us, C3 17.4 -> 15.8 us. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("schedule-insns", "sched-pressure", "no-schedule-insns2")
#endif
#define FL_C1_CB 2
/* 2 rows x 2 columns x 2 output vectors = 8 accumulators; all 4 output vectors would need 16
 * accumulators + weights, more than SSE's 16 registers. */
#define FL_C3_CC 2
#define FL_C3_NO 2
#define FL_DENSE_NI 4
#define FL_DENSE_NB 2
#define FL_DENSE_CASES                                                                       \
    FL_DENSE_CASE(1, 1) FL_DENSE_CASE(1, 2) FL_DENSE_CASE(2, 1) FL_DENSE_CASE(2, 2)          \
    FL_DENSE_CASE(3, 1) FL_DENSE_CASE(3, 2) FL_DENSE_CASE(4, 1) FL_DENSE_CASE(4, 2)
/* one image: 4 output vectors (4 accumulators, 4 weights, broadcast, product); 2 images x 4 or
 * 3 x 3 and 6 or 8 vectors for one image measured no faster. */
#define FL_DENSE_NB1 4
#define FL_DENSE_CASES1                                                                      \
    FL_DENSE_CASE1(1) FL_DENSE_CASE1(2) FL_DENSE_CASE1(3) FL_DENSE_CASE1(4)
/* minps/maxps return their second operand when either is NaN. */
#define FL_MIN_KEEP_NAN(c, x) ((vf)_mm_min_ps((__m128)(c), (__m128)(x)))
#define FL_MAX_KEEP_NAN(c, x) ((vf)_mm_max_ps((__m128)(c), (__m128)(x)))
/* A 12-bit estimate; simd_body.h's Newton step takes it to ~23 bits, as on AVX2. */
#define FL_RCP(q) ((vf)_mm_rcp_ps((__m128)(q)))

#elif defined(__aarch64__)
#include <arm_neon.h>
/* C1: 3 channels x 4 accumulators + 6 inputs; C3: 2 x 2 x 4 = 16 accumulators + 4 weights;
 * dense: 4 images x 4 vectors = 16 accumulators + 4 weights (of 32 registers). */
#define FL_C1_CB 3
#define FL_C3_CC 2
#define FL_DENSE_NI 4
#define FL_DENSE_NB 4
#define FL_DENSE_CASES                                                                       \
    FL_DENSE_CASE(1, 1) FL_DENSE_CASE(1, 2) FL_DENSE_CASE(1, 3) FL_DENSE_CASE(1, 4)          \
    FL_DENSE_CASE(2, 1) FL_DENSE_CASE(2, 2) FL_DENSE_CASE(2, 3) FL_DENSE_CASE(2, 4)          \
    FL_DENSE_CASE(3, 1) FL_DENSE_CASE(3, 2) FL_DENSE_CASE(3, 3) FL_DENSE_CASE(3, 4)          \
    FL_DENSE_CASE(4, 1) FL_DENSE_CASE(4, 2) FL_DENSE_CASE(4, 3) FL_DENSE_CASE(4, 4)
/* FMIN/FMAX return NaN when either operand is NaN: with a constant c, that is x. */
#define FL_MIN_KEEP_NAN(c, x) ((vf)vminq_f32((float32x4_t)(c), (float32x4_t)(x)))
#define FL_MAX_KEEP_NAN(c, x) ((vf)vmaxq_f32((float32x4_t)(c), (float32x4_t)(x)))
/* FRECPE gives 8 bits; one FRECPS step here makes 16, simd_body.h's step ~23 (as on x86). */
#define FL_RCP(q) ((vf)fl_rcp_neon((float32x4_t)(q)))
static inline float32x4_t fl_rcp_neon(float32x4_t q) {
    const float32x4_t r = vrecpeq_f32(q);
    return vmulq_f32(r, vrecpsq_f32(q, r));
}
#endif

#include "simd_body.h"

#endif
