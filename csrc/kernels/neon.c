/* The NEON level (named "generic": the portable SIMD level of aarch64): simd_body.h with 4-wide
 * vectors in aarch64's baseline ISA (Advanced SIMD), so it runs on every aarch64 CPU and needs
 * no dispatch check. 32 registers; GCC and Clang contract multiply-add into FMLA
 * (-ffp-contract=fast is their default in GNU C), with the broadcast operand taken from a vector
 * lane or a replicating load, so a broadcast costs nothing extra.
 * Compiled only with GCC or Clang (vector extensions) for aarch64; elsewhere this file is empty.
 */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#if defined(FL_HAVE_GENERIC_KERNELS) && defined(__aarch64__)

#define FL_W 4
#define FL_SUFFIX generic
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

#include "simd_body.h"

#endif
