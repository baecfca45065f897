/* Internal to the C engine: the int8 network (packed weights, per-layer requantization) and
 * the int8 kernel table every ISA fills in. The numerics are written down at the top of
 * int8_scalar.c, the specification; fastlenet/weights/int8.py computes the parameters.
 *
 * Layouts between int8 kernels (one image, uint8):
 *   img  C planes of 32x32 pixels (0..255), then FL_I8_PAD zero bytes (vector loads of two
 *        rows at the last row read past the plane)
 *   s2   C1 output after pool: HWC 14x14x6 (84-byte rows), then FL_I8_PAD bytes (C3 reads
 *        dwords of 4 channels that run 2 bytes into the next pixel)
 *   s4   C3 output after pool: HWC 5x5x16 (400 bytes; C5's input order, as in fp32)
 *   c5   C5 output: 120 bytes, padded to FL_I8_C5_LD
 *   f6   F6 output: fp32 activations (the features), FL_F6_LD floats per image
 */
#ifndef FASTLENET_INT8_H
#define FASTLENET_INT8_H

#include "kernels.h"

#define FL_I8_PAD 64
#define FL_I8_IMG_LEN (FL_MAX_CHANNELS * 32 * 32 + FL_I8_PAD)
#define FL_I8_S2_LEN (14 * 14 * 6 + FL_I8_PAD)
#define FL_I8_S4_LEN 400
#define FL_I8_C5_LD 128

/* What the int8 engine runs after each requantization (fastlenet/weights/int8.py maps the
 * model's activation onto these: sigmoid and scaled tanh are tanh with folded scales). */
enum { FL_I8_CORE_TANH = 0, FL_I8_CORE_RELU = 1 };

typedef struct fl_int8 {
    int core, pool, in_channels;
    /* Canonical layouts (PyTorch's), for the scalar specification. */
    int8_t c1_w[6 * FL_MAX_CHANNELS * 25];
    int8_t c3_w[16 * 150];
    int8_t c5_w[120 * 400];
    int8_t f6_w[84 * 120];
    /* int32 biases (zero-point compensation folded in) and per-channel scales, padded to the
     * vector width with zero bias and zero scale. */
    int32_t c1_b[16], c3_b[16], c5_b[FL_I8_C5_LD], f6_b[FL_F6_LD];
    float c1_s[16] FL_ALIGNED, c3_s[16] FL_ALIGNED, c5_s[FL_I8_C5_LD] FL_ALIGNED;
    float f6_s[FL_F6_LD] FL_ALIGNED;
    /* Activation quantization after C1, C3, C5: u8 = rint(clamp(fma(a, inv, zp), 0, 255)). */
    float inv[3], zp[3];
    /* F6's features: fma(core(pre), gain, offset). */
    float gain, offset;
    /* Packed for the dot-product kernels (groups of 4 bytes along K):
     *   c1_wp[c][ci*7+g]: taps 4g..4g+3 of channel ci (row-major ky, kx; taps 25..27 zero)
     *   c3_wp[ky][g][oc][4]: tap 4g+i = kx*6+c of row ky (taps 30, 31 zero)
     *   c5_wp[g][o][4]: input 4g+i in s4's HWC order; f6_wp[g][o][4]
     *   c1_idx[parity][g][64]: byte permutations that gather each lane's 4 taps from two
     *   input rows (see int8_avx512vnni.c) */
    int32_t c1_wp[6][FL_MAX_CHANNELS * 7];
    int8_t c3_wp[5 * 8 * 16 * 4] FL_ALIGNED;
    int8_t c5_wp[100 * FL_I8_C5_LD * 4] FL_ALIGNED;
    int8_t f6_wp[30 * FL_F6_LD * 4] FL_ALIGNED;
    uint8_t c1_idx[2][7][64] FL_ALIGNED;
    /* C1's row of s2 (84 bytes, HWC) from 6 channel vectors of 16 bytes: output byte
     * 64 h + o takes byte s2_idx[h][o] of (c0 c1 c2 c3 | c4 c5), vpermi2b's 128-byte table. */
    uint8_t s2_idx[2][64] FL_ALIGNED;
    /* C3's bias as AMX loads it: the 16 biases once per row of 10 output pixels. */
    int32_t c3_bias10[10][16] FL_ALIGNED;
} fl_int8;

typedef struct {
    /* C1 + requant + act + pool + quantize: img -> s2. */
    void (*c1)(const fl_int8 *q, const uint8_t *img, uint8_t *s2);
    /* C3: s2 -> s4. */
    void (*c3)(const fl_int8 *q, const uint8_t *s2, uint8_t *s4);
    /* C5 for n images: s4 (stride FL_I8_S4_LEN) -> c5 bytes (stride FL_I8_C5_LD). */
    void (*c5)(const fl_int8 *q, const uint8_t *s4, int n, uint8_t *c5);
    /* F6 for n images: c5 -> fp32 features (stride FL_F6_LD). */
    void (*f6)(const fl_int8 *q, const uint8_t *c5, int n, float *f6);
    /* The fp32 output layer with one fused multiply-add per term, bias first, k ascending (so
     * every ISA rounds alike): y[i*ldy + o] = fma chain over x[i*ldx + k] * wt[k*ld + o]. */
    void (*output)(const float *x, int n_img, int ldx, int n_in, const float *wt, int ld,
                   const float *b, int n_out, float *y, int ldy);
    /* A row of n (28 or 32) float32 pixels, any alignment, to uint8 as int8.c's pixel_u8 does
     * (mul 255, max 0, min 255, round to nearest even), or NULL: int8.c's own SSE2/C loop. */
    void (*row_f32)(const char *row, int n, uint8_t *dst);
} fl_int8_kernels;

/* tanh on [-4, 4) as 32 cubic pieces of width 1/4 in x: fl_i8_tanh_c[j][i] is the coefficient
 * of x^j on piece i, x in [i/4 - 4, (i+1)/4 - 4). int8_scalar.c owns it; SIMD files load it into
 * registers (two 16-float halves per coefficient, for vpermt2ps). */
extern const float fl_i8_tanh_c[4][32];
/* x is clamped to [-4, this] so that the piece index trunc(4x + 16) stays below 32. */
#define FL_I8_TANH_MAX 3.9999f

extern const fl_int8_kernels fl_int8_kernels__scalar;
#if defined(FL_HAVE_X86_KERNELS)
extern const fl_int8_kernels fl_int8_kernels__avx512vnni;
/* AMX only where the OS hands out tile state on request (Linux, dispatch.c); also GCC's
 * tile-load intrinsic emits an invalid 32-bit index on LLP64 Windows (MinGW-w64). */
#if defined(__linux__)
#define FL_HAVE_AMX_KERNELS 1
extern const fl_int8_kernels fl_int8_kernels__amx;
#endif
/* The VNNI kernels the AMX table shares (all but C3). */
void fl_c1_i8__avx512vnni(const fl_int8 *q, const uint8_t *img, uint8_t *s2);
void fl_c3_i8__avx512vnni(const fl_int8 *q, const uint8_t *s2, uint8_t *s4);
void fl_c5_i8__avx512vnni(const fl_int8 *q, const uint8_t *s4, int n, uint8_t *c5);
void fl_f6_i8__avx512vnni(const fl_int8 *q, const uint8_t *c5, int n, float *f6);
void fl_output_i8__avx512vnni(const float *x, int n_img, int ldx, int n_in, const float *wt,
                              int ld, const float *b, int n_out, float *y, int ldy);
void fl_row_f32_i8__avx512vnni(const char *row, int n, uint8_t *dst);
#endif

/* The int8 table run at fp32 level `isa` (NULL when the level is not runnable): the fastest
 * int8 kernels at or below that level that this CPU supports (dispatch.c). */
const fl_int8_kernels *fl_int8_kernels_for(int isa);
/* Image i of the batch as uint8 planes (int8.c), and the int8 layers C1..F6 for a tile. */
void fl_int8_tile(const fl_int8 *q, const fl_int8_kernels *k, const fl_input *in, size_t i0,
                  int n, float *f6);
/* A pixel of any input dtype, as float (net.c). */
float fl_load_pixel(const char *p, int dtype);

#endif
