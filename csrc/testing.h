/* Test hooks: one kernel of one ISA on caller buffers, for tests/engine/test_kernels.py and
 * tools/c/kernel_check.c. Not part of the engine's API (fastlenet.h): nothing in a forward pass
 * calls these, and their shapes follow the kernels' (csrc/kernels/kernels.h). */
#ifndef FASTLENET_TESTING_H
#define FASTLENET_TESTING_H

#include "fastlenet.h"

#ifdef __cplusplus
extern "C" {
#endif

int fl_test_activation(int isa, int act, const float *x, float *y, size_t n);
int fl_test_c1(int isa, const fl_net *net, const float *img32 /* C*32*32 */,
               float *s2_out /* 6*14*14 */);
int fl_test_c3(int isa, const fl_net *net, const float *s2, float *s4_out /* 16*5*5, CHW */);
int fl_test_dense(int isa, int act, const float *x, const float *w, const float *b, int n_in,
                  int n_out, float *y);
void fl_test_conv5x5(const float *x, int cin, int h, int w, const float *k, const float *b,
                     int cout, float *y);
void fl_test_pool2x2(const float *x, int c, int h, int w, int pool, float *y);

#ifdef __cplusplus
}
#endif
/* The int8 layers of one image at fp32 level isa (int8.c): C1's s2 (HWC 14x14x6), C3's s4
 * (HWC 5x5x16), C5's 120 bytes, F6's 84 floats. FL_ERR_ARG unless net is int8. */
int fl_test_int8_layers(int isa, const fl_net *net, const fl_input *in, uint8_t *s2,
                        uint8_t *s4, uint8_t *c5, float *f6);

#endif
