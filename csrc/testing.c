/* Test hooks (testing.h): each runs one kernel of one ISA through the kernel table, exactly as
 * the forward pass calls it, on the caller's buffers. */
#include <string.h>

#include "kernels/kernels.h"
#include "testing.h"

int fl_test_activation(int isa, int act, const float *x, float *y, size_t n) {
    const fl_kernels *k = fl_kernels_for(isa);
    if (!k) return FL_ERR_ISA;
    k->activation(act, x, y, n);
    return FL_OK;
}

int fl_test_c1(int isa, const fl_net *net, const float *img32, float *s2_out) {
    const fl_kernels *k = fl_kernels_for(isa);
    if (!k) return FL_ERR_ISA;
    k->c1(net, img32, s2_out);
    return FL_OK;
}

int fl_test_c3(int isa, const fl_net *net, const float *s2, float *s4_out) {
    const fl_kernels *k = fl_kernels_for(isa);
    if (!k) return FL_ERR_ISA;
    float s4[FL_S4_LEN];
    k->c3(net, s2, s4);
    for (int c = 0; c < 16; c++) /* HWC -> CHW for the caller */
        for (int p = 0; p < 25; p++) s4_out[c * 25 + p] = s4[p * 16 + c];
    return FL_OK;
}

int fl_test_dense(int isa, int act, const float *x, const float *w, const float *b, int n_in,
                  int n_out, float *y) {
    const fl_kernels *k = fl_kernels_for(isa);
    if (!k) return FL_ERR_ISA;
    if (n_in < 1 || n_out < 1) return FL_ERR_ARG;
    const int ld = (n_out + FL_LANES_MAX - 1) / FL_LANES_MAX * FL_LANES_MAX;
    float *wt = fl_aligned_zalloc(sizeof(float) * (size_t)ld * n_in);
    float *bp = fl_aligned_zalloc(sizeof(float) * ld), *yp = fl_aligned_zalloc(sizeof(float) * ld);
    int rc = FL_ERR_NOMEM;
    if (wt && bp && yp) {
        fl_pack_dense(w, n_out, n_in, NULL, wt, ld);
        memcpy(bp, b, sizeof(float) * n_out);
        k->dense(act, x, 1, n_in, n_in, wt, ld, bp, n_out, yp, ld);
        memcpy(y, yp, sizeof(float) * n_out);
        rc = FL_OK;
    }
    fl_aligned_free(wt); fl_aligned_free(bp); fl_aligned_free(yp);
    return rc;
}

void fl_test_conv5x5(const float *x, int cin, int h, int w, const float *k, const float *b,
                     int cout, float *y) {
    fl_conv5x5_f32__scalar(x, cin, h, w, k, b, cout, y);
}

void fl_test_pool2x2(const float *x, int c, int h, int w, int pool, float *y) {
    fl_pool2x2_f32__scalar(x, c, h, w, pool, y);
}
