/* Internal to the C engine: the packed weights and the kernel table every ISA fills in.
 *
 * Every ISA variant of a kernel has the same signature; net.c calls them only through an
 * fl_kernels table, so a new ISA is a new table and nothing else changes.
 *
 * Layouts between kernels (one image, float32):
 *   img  32x32 row-major, already normalized
 *   s2   C1 output after pool: CHW 6x14x14
 *   s4   C3 output after pool: HWC 5x5x16 (so that C5 reads 16 channels per pixel at once)
 *   dense outputs: n_out values, buffer rounded up to FL_LANES_MAX
 */
#ifndef FASTLENET_KERNELS_H
#define FASTLENET_KERNELS_H

#include "../fastlenet.h"

#define FL_ALIGN 64
#if defined(_MSC_VER) && !defined(__clang__)
#define FL_ALIGNED /* MSVC's __declspec(align) goes before the declarator; only a speed matter */
#else
#define FL_ALIGNED __attribute__((aligned(FL_ALIGN)))
#endif
/* The widest vector any kernel uses, in floats: dense buffers are padded to a multiple of it. */
#define FL_LANES_MAX 16

#define FL_S2_LEN (6 * 14 * 14)
#define FL_S4_LEN (5 * 5 * 16)
/* Leading dimensions of the transposed dense weights: outputs padded to FL_LANES_MAX. */
#define FL_C5_LD 128
#define FL_F6_LD 96
/* The output layer runs in blocks of this many classes, so that a tile's logits stay a small
 * stack buffer for any K (K <= FL_OUT_BLOCK: one block, as for 10 classes). */
#define FL_OUT_BLOCK 128
/* Images per thread tile: the dense layers share each weight load across a tile. */
#define FL_TILE 4

struct fl_net {
    /* C1, canonical (6,C*25): the kernels broadcast one tap at a time. */
    float c1_w[6 * FL_MAX_CHANNELS * 25] FL_ALIGNED;
    float c1_b[6];
    int in_channels;
    /* C3 canonical OIHW for the scalar kernel, and transposed [ci*25+ky*5+kx][16 out] so that
     * one vector load gives a tap for all 16 output channels. */
    float c3_w[16 * 150] FL_ALIGNED;
    float c3_wt[150 * 16] FL_ALIGNED;
    float c3_b[16] FL_ALIGNED;
    /* Dense layers transposed to [in][out padded]; C5's inputs are in s4's HWC order. */
    float c5_wt[400 * FL_C5_LD] FL_ALIGNED;
    float c5_b[FL_C5_LD] FL_ALIGNED;
    float f6_wt[120 * FL_F6_LD] FL_ALIGNED;
    float f6_b[FL_F6_LD] FL_ALIGNED;
    int act, pool;
    /* The output layer, [84][out_ld] and [out_ld] with out_ld = K rounded up to FL_LANES_MAX:
     * they live in the same allocation, after this struct (K varies per net). */
    int num_classes, out_ld;
    float *out_wt, *out_b;
    /* The int8 engine's layers C1..F6 (int8.c), or NULL for fp32. */
    struct fl_int8 *q;
};

typedef struct {
    /* y[i] = act(x[i]) for i < n (FL_ACT_NONE copies). */
    void (*activation)(int act, const float *x, float *y, size_t n);
    /* C1 + bias + act + pool: img (in_channels x 32x32, CHW) -> s2. */
    void (*c1)(const fl_net *net, const float *img, float *s2);
    /* C3 + bias + act + pool: s2 -> s4. */
    void (*c3)(const fl_net *net, const float *s2, float *s4);
    /* For each of n_img images i: y[i*ldy + o] = act(b[o] + sum_k x[i*ldx + k] * wt[k*ld + o])
     * for o < n_out. b, each wt row and each y row hold n_out rounded up to FL_LANES_MAX floats
     * (ld, ldy >= that; the padding of b and wt is zero, y's padding is scratch). */
    void (*dense)(int act, const float *x, int n_img, int ldx, int n_in, const float *wt, int ld,
                  const float *b, int n_out, float *y, int ldy);
} fl_kernels;

extern const fl_kernels fl_kernels__scalar;
/* The portable 4-wide level (kernels/generic.c): SSE2 on x86-64, NEON on aarch64, both the
 * targets' baselines. Needs GCC/Clang vector extensions. */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__aarch64__))
#define FL_HAVE_GENERIC_KERNELS 1
extern const fl_kernels fl_kernels__generic;
#endif
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define FL_HAVE_X86_KERNELS 1
extern const fl_kernels fl_kernels__avx2;
extern const fl_kernels fl_kernels__avx512;
#endif

/* Aligned (FL_ALIGN) heap memory, on every platform; free only with fl_aligned_free. NULL when
 * out of memory. Defined in net.c; use these, never posix_memalign or _aligned_malloc directly. */
void *fl_aligned_alloc(size_t size);
void *fl_aligned_zalloc(size_t size); /* zero-filled */
void fl_aligned_free(void *p);
/* Dense weights as the kernels read them: wt[k*ld + o] = w[o*n_in + perm[k]] (net.c). */
void fl_pack_dense(const float *w, int n_out, int n_in, const int *perm, float *wt, int ld);

/* The table for `isa`, or NULL when it was not compiled in or this CPU cannot run it. */
const fl_kernels *fl_kernels_for(int isa);

/* Scalar building blocks (the specification), also used by the testing hooks. */
float fl_act1(int act, float x);
void fl_conv5x5_f32__scalar(const float *x, int cin, int h, int w, const float *k,
                            const float *b, int cout, float *y);
void fl_pool2x2_f32__scalar(const float *x, int c, int h, int w, int pool, float *y);

#endif
