/* The forward pass: weight packing, per-image schedule, and the one threaded loop.
 *
 * Each image runs end to end on one thread (convert -> C1 -> C3 -> C5 -> F6 -> output) with all
 * intermediates on that thread's stack (about 25 KB, L1-resident), so no float is ever reduced
 * across threads and results do not depend on the thread count. Threads split the batch in
 * fixed-size chunks handed out dynamically, which keeps both cores busy on a noisy machine
 * without changing any result.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <malloc.h> /* _aligned_malloc, _aligned_free */
#endif

#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define FL_CHECK_FORK 1
#endif
#endif

/* Below this many images per thread, waking another thread costs more than it saves. Measured
 * on the 2-core AVX-512 VM (one image ~10 us), 1 vs 2 threads: batch 4 39 vs 40 us, batch 8
 * 77 vs 76 us, batch 12 117 vs 77 us, batch 16 160 vs 85 us. */
#define FL_MIN_IMAGES_PER_THREAD 4
/* At most this many tiles (of FL_TILE images) per dynamically scheduled chunk; fewer for small
 * batches, so that every thread gets work (about 4 chunks per thread). */
#define FL_CHUNK_TILES 4

/* The engine's one aligned allocator (FL_ALIGN bytes), for every platform: the Windows CRT
 * (MSVC and MinGW-w64 alike) has _aligned_malloc, whose blocks must go back through
 * _aligned_free, never free(); POSIX systems (Linux, macOS, BSD) have posix_memalign. */
void *fl_aligned_alloc(size_t size) {
    if (size == 0) size = 1;
#ifdef _WIN32
    return _aligned_malloc(size, FL_ALIGN);
#else
    void *p = NULL;
    return posix_memalign(&p, FL_ALIGN, size) == 0 ? p : NULL;
#endif
}

void fl_aligned_free(void *p) {
#ifdef _WIN32
    _aligned_free(p);
#else
    free(p);
#endif
}

static void *aligned_zalloc(size_t size) {
    void *p = fl_aligned_alloc(size);
    if (p) memset(p, 0, size);
    return p;
}

/* wt[k*ld + o] = w[o*n_in + k] for a (n_out, n_in) matrix; `perm` maps packed input k to
 * canonical input column (NULL: identity). */
static void pack_dense(const float *w, int n_out, int n_in, const int *perm, float *wt, int ld) {
    for (int o = 0; o < n_out; o++)
        for (int k = 0; k < n_in; k++) wt[(size_t)k * ld + o] = w[(size_t)o * n_in + (perm ? perm[k] : k)];
}

fl_net *fl_net_create(const fl_weights *w, int act, int pool) {
    if (act < FL_ACT_TANH || act > FL_ACT_SCALED_TANH) return NULL;
    if (pool != FL_POOL_AVG && pool != FL_POOL_MAX) return NULL;
    fl_net *net = aligned_zalloc(sizeof *net);
    if (!net) return NULL;
    net->act = act;
    net->pool = pool;
    memcpy(net->c1_w, w->c1_w, sizeof net->c1_w);
    memcpy(net->c1_b, w->c1_b, sizeof net->c1_b);
    memcpy(net->c3_w, w->c3_w, sizeof net->c3_w);
    memcpy(net->c3_b, w->c3_b, sizeof net->c3_b);
    pack_dense(w->c3_w, 16, 150, NULL, net->c3_wt, 16);
    /* s4 is HWC: packed input (y*5+x)*16+c is canonical column c*25 + y*5+x. */
    int perm[400];
    for (int p = 0; p < 25; p++)
        for (int c = 0; c < 16; c++) perm[p * 16 + c] = c * 25 + p;
    pack_dense(w->c5_w, 120, 400, perm, net->c5_wt, FL_C5_LD);
    memcpy(net->c5_b, w->c5_b, 120 * sizeof(float));
    pack_dense(w->f6_w, 84, 120, NULL, net->f6_wt, FL_F6_LD);
    memcpy(net->f6_b, w->f6_b, 84 * sizeof(float));
    pack_dense(w->out_w, 10, 84, NULL, net->out_wt, FL_OUT_LD);
    memcpy(net->out_b, w->out_b, 10 * sizeof(float));
    return net;
}

void fl_net_free(fl_net *net) { fl_aligned_free(net); }

static float load_pixel(const char *p, int dtype) {
    switch (dtype) {
    case FL_DTYPE_U8: return (float)*(const unsigned char *)p;
    case FL_DTYPE_F32: { float v; memcpy(&v, p, sizeof v); return v; }
    default: { double v; memcpy(&v, p, sizeof v); return (float)v; }
    }
}

/* Image i as a normalized, contiguous 32x32 float32 image: either the caller's own memory
 * (float32, contiguous rows, no normalization: no copy) or `buf`. */
static const float *convert_image(const fl_input *in, size_t i, float *buf) {
    const char *base = (const char *)in->data + (ptrdiff_t)i * in->stride_n;
    if (in->dtype == FL_DTYPE_F32 && in->size == 32 && in->stride_w == 4 && in->stride_h == 128 &&
        in->scale == 1.0f && in->shift == 0.0f && ((uintptr_t)base % sizeof(float)) == 0)
        return (const float *)base;
    const int pad = (32 - in->size) / 2;
    if (pad) /* 28x28 images: the zero border, normalized like every pixel */
        for (int k = 0; k < 32 * 32; k++) buf[k] = in->shift;
    for (int y = 0; y < in->size; y++) {
        const char *row = base + y * in->stride_h;
        float *dst = buf + (y + pad) * 32 + pad;
        for (int x = 0; x < in->size; x++)
            dst[x] = load_pixel(row + x * in->stride_w, in->dtype) * in->scale + in->shift;
    }
    return buf;
}

static void finish(int mode, const float *logits, void *out, size_t i) {
    if (mode == FL_OUT_LOGITS) {
        memcpy((float *)out + i * 10, logits, 10 * sizeof(float));
    } else if (mode == FL_OUT_PROBA) {
        float m = logits[0], e[10], sum = 0.0f;
        for (int k = 1; k < 10; k++) m = logits[k] > m ? logits[k] : m;
        for (int k = 0; k < 10; k++) sum += (e[k] = expf(logits[k] - m));
        for (int k = 0; k < 10; k++) ((float *)out)[i * 10 + k] = e[k] / sum;
    } else if (mode == FL_OUT_PREDICT) {
        int64_t best = 0;
        for (int k = 0; k < 10; k++) {
            if (logits[k] != logits[k]) { best = -1; break; }
            if (logits[k] > logits[best]) best = k;
        }
        ((int64_t *)out)[i] = best;
    }
}

/* Images i0 .. i0+n-1 (n <= FL_TILE): C1 and C3 image by image, then each dense layer once for
 * the whole tile. */
static void forward_tile(const fl_net *net, const fl_kernels *k, const fl_input *in, size_t i0,
                         int n, int mode, void *out, float *features) {
    float buf[32 * 32] FL_ALIGNED, s2[FL_S2_LEN] FL_ALIGNED;
    float s4[FL_TILE][FL_S4_LEN] FL_ALIGNED, c5[FL_TILE][FL_C5_LD] FL_ALIGNED;
    float f6[FL_TILE][FL_F6_LD] FL_ALIGNED, logits[FL_TILE][FL_OUT_LD] FL_ALIGNED;
    if (n < 1) return;
    for (int t = 0; t < n; t++) {
        k->c1(net, convert_image(in, i0 + t, buf), s2);
        k->c3(net, s2, s4[t]);
    }
    k->dense(net->act, s4[0], n, FL_S4_LEN, 400, net->c5_wt, FL_C5_LD, net->c5_b, 120, c5[0],
             FL_C5_LD);
    k->dense(net->act, c5[0], n, FL_C5_LD, 120, net->f6_wt, FL_F6_LD, net->f6_b, 84, f6[0],
             FL_F6_LD);
    if (features)
        for (int t = 0; t < n; t++) memcpy(features + (i0 + t) * 84, f6[t], 84 * sizeof(float));
    if (mode == FL_OUT_NONE) return;
    k->dense(FL_ACT_NONE, f6[0], n, FL_F6_LD, 84, net->out_wt, FL_OUT_LD, net->out_b, 10,
             logits[0], FL_OUT_LD);
    for (int t = 0; t < n; t++) finish(mode, logits[t], out, i0 + t);
}

#ifdef FL_CHECK_FORK
/* libgomp is not fork-safe: a child forked after the parent ran a parallel region hangs in its
 * first one. The process that first goes parallel owns OpenMP; any other process (a fork child)
 * runs serially. Results are the same, since they never depend on the thread count. */
static pid_t omp_owner;
static inline int may_go_parallel(void) {
    const pid_t self = getpid();
    pid_t owner = __atomic_load_n(&omp_owner, __ATOMIC_ACQUIRE);
    if (owner == 0) {
        __atomic_compare_exchange_n(&omp_owner, &owner, self, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
        owner = __atomic_load_n(&omp_owner, __ATOMIC_ACQUIRE);
    }
    return owner == self;
}
#else
static inline int may_go_parallel(void) { return 1; }
#endif

int fl_net_forward(const fl_net *net, const fl_input *in, size_t n, int mode, void *out,
                   float *features, int num_threads, int isa) {
    if (!net || !in || (in->size != 28 && in->size != 32)) return FL_ERR_ARG;
    if (in->dtype < FL_DTYPE_U8 || in->dtype > FL_DTYPE_F64) return FL_ERR_ARG;
    if (mode < FL_OUT_LOGITS || mode > FL_OUT_NONE || (mode != FL_OUT_NONE && !out)) return FL_ERR_ARG;
    const fl_kernels *k = fl_kernels_for(isa);
    if (!k) return FL_ERR_ISA;
#ifdef _OPENMP
    const size_t tiles = (n + FL_TILE - 1) / FL_TILE;
#endif
    size_t nt = num_threads < 1 ? 1 : (size_t)num_threads;
    if (nt > n / FL_MIN_IMAGES_PER_THREAD) nt = n / FL_MIN_IMAGES_PER_THREAD;
#ifdef _OPENMP
    if (nt > 1 && may_go_parallel()) {
        const long long count = (long long)tiles;
        size_t chunk = tiles / (nt * 4);
        chunk = chunk < 1 ? 1 : chunk > FL_CHUNK_TILES ? FL_CHUNK_TILES : chunk;
#pragma omp parallel for schedule(dynamic, chunk) num_threads((int)nt)
        for (long long t = 0; t < count; t++) {
            const size_t i0 = (size_t)t * FL_TILE;
            forward_tile(net, k, in, i0, n - i0 < FL_TILE ? (int)(n - i0) : FL_TILE, mode, out,
                         features);
        }
        return FL_OK;
    }
#endif
    for (size_t i0 = 0; i0 < n; i0 += FL_TILE)
        forward_tile(net, k, in, i0, n - i0 < FL_TILE ? (int)(n - i0) : FL_TILE, mode, out,
                     features);
    return FL_OK;
}

/* ---- testing hooks: one kernel of one ISA on caller buffers ---- */

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
    float *wt = aligned_zalloc(sizeof(float) * (size_t)ld * n_in);
    float *bp = aligned_zalloc(sizeof(float) * ld), *yp = aligned_zalloc(sizeof(float) * ld);
    int rc = FL_ERR_NOMEM;
    if (wt && bp && yp) {
        pack_dense(w, n_out, n_in, NULL, wt, ld);
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
