/* The scalar kernels: the specification every SIMD variant is tested against.
 *
 * Plain loops in canonical layouts (CHW maps, OIHW kernels), libm for the activations, no
 * fusion: C1 and C3 write their whole feature map, then activate, then pool. Accumulation order:
 * bias first, then input channel, kernel row, kernel column ascending (the SIMD kernels use the
 * same order per output, with FMA). Compiled for the baseline ISA of every target, aarch64 too.
 */
#include <math.h>
#include <string.h>

#include "kernels.h"

float fl_act1(int act, float x) {
    switch (act) {
    case FL_ACT_TANH: return tanhf(x);
    case FL_ACT_RELU: return x < 0.0f ? 0.0f : x; /* NaN stays NaN */
    case FL_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case FL_ACT_SCALED_TANH: return 1.7159f * tanhf(x * (2.0f / 3.0f));
    default: return x;
    }
}

static void act_f32__scalar(int act, const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = fl_act1(act, x[i]);
}

/* Valid 5x5 cross-correlation: y[o][i][j] = b[o] + sum_{c,ky,kx} k[o][c][ky][kx] x[c][i+ky][j+kx] */
void fl_conv5x5_f32__scalar(const float *x, int cin, int h, int w, const float *k,
                            const float *b, int cout, float *y) {
    const int oh = h - 4, ow = w - 4;
    for (int o = 0; o < cout; o++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                float acc = b[o];
                for (int c = 0; c < cin; c++)
                    for (int ky = 0; ky < 5; ky++)
                        for (int kx = 0; kx < 5; kx++)
                            acc += k[((o * cin + c) * 5 + ky) * 5 + kx] *
                                   x[(c * h + i + ky) * w + j + kx];
                y[(o * oh + i) * ow + j] = acc;
            }
}

/* Max that propagates NaN from either side (the reference's np.max does). */
static float max_nan(float a, float b) { return (a > b || a != a) ? a : b; }

/* 2x2 window, stride 2, over each of c maps of h x w (h, w even). */
void fl_pool2x2_f32__scalar(const float *x, int c, int h, int w, int pool, float *y) {
    const int oh = h / 2, ow = w / 2;
    for (int m = 0; m < c; m++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                const float *p = x + (m * h + 2 * i) * w + 2 * j;
                float a = p[0], b = p[1], cc = p[w], d = p[w + 1];
                y[(m * oh + i) * ow + j] = pool == FL_POOL_MAX
                                               ? max_nan(max_nan(a, b), max_nan(cc, d))
                                               : 0.25f * ((a + b) + (cc + d));
            }
}

static void c1_f32__scalar(const fl_net *net, const float *img, float *s2) {
    float map[6 * 28 * 28];
    fl_conv5x5_f32__scalar(img, net->in_channels, 32, 32, net->c1_w, net->c1_b, 6, map);
    act_f32__scalar(net->act, map, map, 6 * 28 * 28);
    fl_pool2x2_f32__scalar(map, 6, 28, 28, net->pool, s2);
}

static void c3_f32__scalar(const fl_net *net, const float *s2, float *s4) {
    float map[16 * 10 * 10], pooled[16 * 5 * 5];
    fl_conv5x5_f32__scalar(s2, 6, 14, 14, net->c3_w, net->c3_b, 16, map);
    act_f32__scalar(net->act, map, map, 16 * 10 * 10);
    fl_pool2x2_f32__scalar(map, 16, 10, 10, net->pool, pooled);
    for (int c = 0; c < 16; c++) /* CHW -> HWC */
        for (int p = 0; p < 25; p++) s4[p * 16 + c] = pooled[c * 25 + p];
}

static void dense_f32__scalar(int act, const float *x, int n_img, int ldx, int n_in,
                              const float *wt, int ld, const float *b, int n_out, float *y,
                              int ldy) {
    for (int i = 0; i < n_img; i++)
        for (int o = 0; o < n_out; o++) {
            float acc = b[o];
            for (int k = 0; k < n_in; k++) acc += x[(size_t)i * ldx + k] * wt[(size_t)k * ld + o];
            y[(size_t)i * ldy + o] = fl_act1(act, acc);
        }
}

const fl_kernels fl_kernels__scalar = {
    act_f32__scalar,
    c1_f32__scalar,
    c3_f32__scalar,
    dense_f32__scalar,
};
