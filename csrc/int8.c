/* The int8 engine's side of the net: packing the quantized weights for every int8 kernel, the
 * pixels as uint8, and the per-tile schedule C1 -> C3 (image by image) -> C5 -> F6 (the tile).
 * net.c runs it inside its one threaded loop and finishes with the fp32 output layer and the
 * softmax, so the threading and the output rules are the fp32 engine's.
 */
#include <math.h>
#include <string.h>

#include "kernels/int8.h"
#include "testing.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

int fl_net_set_int8(fl_net *net, const fl_int8_params *p) {
    if (!net || !p || (p->core != FL_I8_CORE_TANH && p->core != FL_I8_CORE_RELU)) return FL_ERR_ARG;
    fl_int8 *q = fl_aligned_zalloc(sizeof *q);
    if (!q) return FL_ERR_NOMEM;
    const int nc = net->in_channels;
    q->core = p->core;
    q->pool = net->pool;
    q->in_channels = nc;
    memcpy(q->c1_w, p->c1_w, (size_t)6 * nc * 25);
    memcpy(q->c3_w, p->c3_w, sizeof q->c3_w);
    memcpy(q->c5_w, p->c5_w, sizeof q->c5_w);
    memcpy(q->f6_w, p->f6_w, sizeof q->f6_w);
    memcpy(q->c1_b, p->c1_b, 6 * sizeof(int32_t));
    memcpy(q->c3_b, p->c3_b, 16 * sizeof(int32_t));
    memcpy(q->c5_b, p->c5_b, 120 * sizeof(int32_t));
    memcpy(q->f6_b, p->f6_b, 84 * sizeof(int32_t));
    memcpy(q->c1_s, p->c1_s, 6 * sizeof(float));
    memcpy(q->c3_s, p->c3_s, 16 * sizeof(float));
    memcpy(q->c5_s, p->c5_s, 120 * sizeof(float));
    memcpy(q->f6_s, p->f6_s, 84 * sizeof(float));
    memcpy(q->inv, p->inv, sizeof q->inv);
    memcpy(q->zp, p->zp, sizeof q->zp);
    q->gain = p->gain;
    q->offset = p->offset;
    /* C1: dword groups of 4 taps per channel (taps 25..27 zero). */
    for (int c = 0; c < 6; c++)
        for (int ci = 0; ci < nc; ci++)
            for (int g = 0; g < 7; g++) {
                uint8_t b[4] = {0, 0, 0, 0};
                for (int i = 0; i < 4; i++)
                    if (4 * g + i < 25) b[i] = (uint8_t)q->c1_w[(c * nc + ci) * 25 + 4 * g + i];
                memcpy(&q->c1_wp[c][ci * 7 + g], b, 4);
            }
    /* C1's gathers: lane j of parity par (output column 2j + par), byte i = tap k = 4g + i at
     * (ky, kx) reads row ky - ky0 of the two rows loaded from row y + ky0, ky0 = the group's
     * first row, column 2j + par + kx. Lanes 14, 15 are never stored. */
    for (int par = 0; par < 2; par++)
        for (int g = 0; g < 7; g++)
            for (int j = 0; j < 16; j++)
                for (int i = 0; i < 4; i++) {
                    const int k = 4 * g + i, ky0 = (4 * g) / 5;
                    const int v = k < 25 ? (k / 5 - ky0) * 32 + 2 * j + par + k % 5 : 0;
                    q->c1_idx[par][g][4 * j + i] = (uint8_t)(v & 63);
                }
    for (int o = 0; o < 128; o++) { /* output byte o = pixel j, channel c: byte 16 c + j */
        const int j = o / 6, c = o % 6;
        if (o < 84) q->s2_idx[o / 64][o % 64] = (uint8_t)(16 * c + j);
    }
    for (int x = 0; x < 10; x++) memcpy(q->c3_bias10[x], q->c3_b, sizeof q->c3_bias10[x]);
    /* C3: per kernel row, the 30 bytes (kx, c) of 5 HWC pixels as 8 dwords (30, 31 zero). */
    for (int ky = 0; ky < 5; ky++)
        for (int g = 0; g < 8; g++)
            for (int o = 0; o < 16; o++)
                for (int i = 0; i < 4; i++) {
                    const int t = 4 * g + i, kx = t / 6, c = t % 6;
                    q->c3_wp[((ky * 8 + g) * 16 + o) * 4 + i] =
                        t < 30 ? q->c3_w[((o * 6 + c) * 5 + ky) * 5 + kx] : 0;
                }
    /* C5: input 4g+i in s4's HWC order (pixel p = k / 16, channel k % 16). */
    for (int g = 0; g < 100; g++)
        for (int o = 0; o < 120; o++)
            for (int i = 0; i < 4; i++) {
                const int k = 4 * g + i, pix = k / 16, c = k % 16;
                q->c5_wp[(g * FL_I8_C5_LD + o) * 4 + i] = q->c5_w[(o * 16 + c) * 25 + pix];
            }
    for (int g = 0; g < 30; g++)
        for (int o = 0; o < 84; o++)
            for (int i = 0; i < 4; i++)
                q->f6_wp[(g * FL_F6_LD + o) * 4 + i] = q->f6_w[o * 120 + 4 * g + i];
    fl_aligned_free(net->q);
    net->q = q;
    return FL_OK;
}

/* Float pixels to uint8: rint(clamp(x * 255, 0, 255)) in float32 (float64 input is rounded to
 * float32 first, as the fp32 engine reads it); NaN -> 0. */
static inline uint8_t pixel_u8(float v) {
    float t = v * 255.0f;
    t = t > 0.0f ? t : 0.0f;
    t = t < 255.0f ? t : 255.0f;
    /* rint for 0 <= t <= 255 (round to nearest even in the default rounding mode): adding and
     * subtracting 1.5 * 2^23 leaves no fraction bits (IEEE arithmetic: never folded without
     * -ffast-math). Plain arithmetic, so the row loop below vectorizes; lrintf was a libm
     * call per pixel. */
    return (uint8_t)(int)((t + 12582912.0f) - 12582912.0f);
}

/* A row of n float32 pixels (any alignment, n = 28 or 32) -> uint8. GCC keeps pixel_u8's
 * clamps as branches, which mispredict on real images (a float batch ran 3x slower than the
 * same pixels as uint8), so on x86-64 the row runs in SSE2 (the baseline): maxps / minps
 * return the second operand for NaN, as pixel_u8's comparisons do, and cvtps2dq rounds to
 * nearest even like the 1.5 * 2^23 trick. */
static void row_f32_u8(const char *row, int n, uint8_t *dst) {
#if defined(__SSE2__)
    const __m128 zero = _mm_setzero_ps(), hi = _mm_set1_ps(255.0f), s = _mm_set1_ps(255.0f);
    for (int x = 0; x < n; x += 4) {
        __m128 t = _mm_mul_ps(_mm_loadu_ps((const float *)(const void *)(row + 4 * x)), s);
        t = _mm_min_ps(_mm_max_ps(t, zero), hi);
        const __m128i q = _mm_cvtps_epi32(t);
        const int32_t b = _mm_cvtsi128_si32(_mm_packus_epi16(_mm_packs_epi32(q, q), q));
        memcpy(dst + x, &b, 4);
    }
#else
    float v[32];
    memcpy(v, row, (size_t)n * sizeof(float));
    for (int x = 0; x < n; x++) dst[x] = pixel_u8(v[x]);
#endif
}

/* Image i as C uint8 planes of 32x32 (28x28 images centred in zeros: a 0 pixel). */
static void convert_u8(const fl_int8_kernels *k, const fl_input *in, size_t i, uint8_t *img) {
    const char *base = (const char *)in->data + (ptrdiff_t)i * in->stride_n;
    const int nc = in->channels, pad = (32 - in->size) / 2;
    if (pad) memset(img, 0, (size_t)nc * 1024);
    for (int c = 0; c < nc; c++) {
        const char *cbase = base + c * in->stride_c;
        for (int y = 0; y < in->size; y++) {
            const char *row = cbase + y * in->stride_h;
            uint8_t *dst = img + c * 1024 + (y + pad) * 32 + pad;
            if (in->dtype == FL_DTYPE_U8 && in->stride_w == 1)
                memcpy(dst, row, (size_t)in->size);
            else if (in->dtype == FL_DTYPE_F32 && in->stride_w == 4)
                (k->row_f32 ? k->row_f32 : row_f32_u8)(row, in->size, dst);
            else if (in->dtype == FL_DTYPE_U8)
                for (int x = 0; x < in->size; x++) dst[x] = *(const uint8_t *)(row + x * in->stride_w);
            else
                for (int x = 0; x < in->size; x++)
                    dst[x] = pixel_u8(fl_load_pixel(row + x * in->stride_w, in->dtype));
        }
    }
}

void fl_int8_tile(const fl_int8 *q, const fl_int8_kernels *k, const fl_input *in, size_t i0,
                  int n, float *f6) {
    uint8_t img[FL_I8_IMG_LEN] FL_ALIGNED, s2[FL_I8_S2_LEN] FL_ALIGNED;
    uint8_t s4[FL_TILE][FL_I8_S4_LEN] FL_ALIGNED, c5[FL_TILE][FL_I8_C5_LD] FL_ALIGNED;
    /* The padding is read by vector loads and multiplied by zero weights (or feeds lanes
     * that are never stored): zero it so that nothing uninitialized is ever read. */
    memset(img + q->in_channels * 1024, 0, sizeof img - (size_t)q->in_channels * 1024);
    memset(s2 + 14 * 14 * 6, 0, FL_I8_PAD);
    for (int t = 0; t < n; t++) {
        convert_u8(k, in, i0 + t, img);
        k->c1(q, img, s2);
        k->c3(q, s2, s4[t]);
    }
    k->c5(q, s4[0], n, c5[0]);
    k->f6(q, c5[0], n, f6);
}

int fl_test_int8_layers(int isa, const fl_net *net, const fl_input *in, uint8_t *s2,
                        uint8_t *s4, uint8_t *c5, float *f6) {
    const fl_int8_kernels *k = fl_int8_kernels_for(isa);
    if (!net || !net->q || !k || in->channels != net->in_channels) return FL_ERR_ARG;
    uint8_t img[FL_I8_IMG_LEN] FL_ALIGNED, b2[FL_I8_S2_LEN] FL_ALIGNED;
    uint8_t b5[FL_I8_C5_LD] FL_ALIGNED;
    float b6[FL_F6_LD] FL_ALIGNED;
    memset(img, 0, sizeof img);
    memset(b2, 0, sizeof b2);
    convert_u8(k, in, 0, img);
    k->c1(net->q, img, b2);
    k->c3(net->q, b2, s4);
    k->c5(net->q, s4, 1, b5);
    k->f6(net->q, b5, 1, b6);
    memcpy(s2, b2, 14 * 14 * 6);
    memcpy(c5, b5, 120);
    memcpy(f6, b6, 84 * sizeof(float));
    return FL_OK;
}
