/* C3 on AMX-INT8 tiles (Sapphire Rapids and later); the other int8 layers are the AVX512-VNNI
 * kernels. TDPBUSD sums u8 x s8 products into int32 exactly, like VPDPBUSD, so the
 * accumulators, and with the same fp32 epilogue (int8_avx512.h) the outputs, equal the scalar
 * specification bit for bit.
 *
 * C3 as tile products, per conv row y and kernel row ky: A = 10 rows (output pixels x = 0..9)
 * of 32 bytes read from s2 at a stride of 6 bytes (pixel x's window of 5 HWC pixels x 6
 * channels starts 6 bytes after pixel x-1's: 30 bytes, and 2 of the next pixel that meet zero
 * weights), B[ky] = c3_wp's 8 groups x (16 channels x 4 bytes), C = 10 x 16 int32, started from
 * the bias. Five TDPBUSD per conv row instead of 400 VPDPBUSD (C3: 1.4 -> 0.6 us an image,
 * tools/c/int8_profile.c). Tiles 0-4 hold B[0..4], 5 the A operand, 6 and 7 the two conv rows
 * of a pooling row. The tile configuration is loaded at entry and released at exit, so a
 * thread holds no tile state between calls (the OS then saves none on a context switch).
 */
#include <stdint.h>
#include <string.h>

#include "int8.h"

#ifdef FL_HAVE_AMX_KERNELS
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,amx-tile,amx-int8"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,amx-tile,amx-int8")
#endif

#include "int8_avx512.h"

/* LDTILECFG's 64-byte operand (palette 1). */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed, aligned(64))) i8_tilecfg;

static void c3_i8__amx(const fl_int8 *q, const uint8_t *s2, uint8_t *s4) {
    i8_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 5; t++) cfg.rows[t] = 8, cfg.colsb[t] = 64;
    cfg.rows[5] = 10, cfg.colsb[5] = 32;
    cfg.rows[6] = cfg.rows[7] = 10, cfg.colsb[6] = cfg.colsb[7] = 64;
    _tile_loadconfig(&cfg);
    _tile_loadd(0, q->c3_wp + 0 * 512, 64);
    _tile_loadd(1, q->c3_wp + 1 * 512, 64);
    _tile_loadd(2, q->c3_wp + 2 * 512, 64);
    _tile_loadd(3, q->c3_wp + 3 * 512, 64);
    _tile_loadd(4, q->c3_wp + 4 * 512, 64);
    const int core = q->core, pool = q->pool;
    const tanh_tab T = tab_load();
    const __m512 s = _mm512_load_ps(q->c3_s);
    int32_t acc[2][10][16] FL_ALIGNED;
    for (int py = 0; py < 5; py++) {
        const uint8_t *r0 = s2 + (2 * py) * 84, *r1 = r0 + 84;
        _tile_loadd(6, q->c3_bias10, 64);
        _tile_loadd(7, q->c3_bias10, 64);
#define I8_TAP(ky)                                                                           \
    _tile_loadd(5, r0 + (ky) * 84, 6);                                                       \
    _tile_dpbusd(6, 5, ky);                                                                  \
    _tile_loadd(5, r1 + (ky) * 84, 6);                                                       \
    _tile_dpbusd(7, 5, ky);
        I8_TAP(0) I8_TAP(1) I8_TAP(2) I8_TAP(3) I8_TAP(4)
#undef I8_TAP
        _tile_stored(6, acc[0], 64);
        _tile_stored(7, acc[1], 64);
        I8_UNROLL for (int px = 0; px < 5; px++) {
#define I8_ACC(r, x) _mm512_load_si512(acc[r][x])
            const __m512 p = pool_v(pool, core_v(core, &T, pre_v(I8_ACC(0, 2 * px), s)),
                                    core_v(core, &T, pre_v(I8_ACC(0, 2 * px + 1), s)),
                                    core_v(core, &T, pre_v(I8_ACC(1, 2 * px), s)),
                                    core_v(core, &T, pre_v(I8_ACC(1, 2 * px + 1), s)));
#undef I8_ACC
            _mm_storeu_si128((__m128i *)(s4 + (py * 5 + px) * 16), quant_v(p, q->inv[1], q->zp[1]));
        }
    }
    _tile_release();
}

const fl_int8_kernels fl_int8_kernels__amx = {
    fl_c1_i8__avx512vnni, c3_i8__amx, fl_c5_i8__avx512vnni, fl_f6_i8__avx512vnni,
    fl_output_i8__avx512vnni, fl_row_f32_i8__avx512vnni,
};

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
