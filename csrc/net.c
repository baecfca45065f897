/* The forward pass: weight packing, per-image schedule, and the one threaded loop.
 *
 * Each image runs end to end on one thread (convert -> C1 -> C3 -> C5 -> F6 -> output) with all
 * intermediates on that thread's stack (about 25 KB touched for a 1-channel image, L1-resident;
 * 50 KB reserved, room for 3 channels and a 128-class output block), so no float is ever reduced
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

#include "kernels/kernels.h"
#include "kernels/int8.h"

#include "pool.h"
#ifdef _OPENMP
#include <omp.h>
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

void *fl_aligned_zalloc(size_t size) {
    void *p = fl_aligned_alloc(size);
    if (p) memset(p, 0, size);
    return p;
}

/* wt[k*ld + o] = w[o*n_in + k] for a (n_out, n_in) matrix; `perm` maps packed input k to
 * canonical input column (NULL: identity). */
void fl_pack_dense(const float *w, int n_out, int n_in, const int *perm, float *wt, int ld) {
    for (int o = 0; o < n_out; o++)
        for (int k = 0; k < n_in; k++) wt[(size_t)k * ld + o] = w[(size_t)o * n_in + (perm ? perm[k] : k)];
}

fl_net *fl_net_create(const fl_weights *w, int act, int pool) {
    if (act < FL_ACT_TANH || act > FL_ACT_SCALED_TANH) return NULL;
    if (pool != FL_POOL_AVG && pool != FL_POOL_MAX) return NULL;
    if (w->in_channels != 1 && w->in_channels != 3) return NULL;
    if (w->num_classes < 2 || w->num_classes > FL_MAX_CLASSES) return NULL;
    const int ld = (w->num_classes + FL_LANES_MAX - 1) / FL_LANES_MAX * FL_LANES_MAX;
    /* One allocation: the struct (a multiple of FL_ALIGN bytes), then out_wt, then out_b. */
    fl_net *net = fl_aligned_zalloc(sizeof *net + sizeof(float) * (size_t)ld * 85);
    if (!net) return NULL;
    net->act = act;
    net->pool = pool;
    net->in_channels = w->in_channels;
    net->num_classes = w->num_classes;
    net->out_ld = ld;
    net->out_wt = (float *)(net + 1);
    net->out_b = net->out_wt + (size_t)ld * 84;
    memcpy(net->c1_w, w->c1_w, sizeof(float) * 6 * 25 * (size_t)w->in_channels);
    memcpy(net->c1_b, w->c1_b, sizeof net->c1_b);
    memcpy(net->c3_w, w->c3_w, sizeof net->c3_w);
    memcpy(net->c3_b, w->c3_b, sizeof net->c3_b);
    fl_pack_dense(w->c3_w, 16, 150, NULL, net->c3_wt, 16);
    /* s4 is HWC: packed input (y*5+x)*16+c is canonical column c*25 + y*5+x. */
    int perm[400];
    for (int p = 0; p < 25; p++)
        for (int c = 0; c < 16; c++) perm[p * 16 + c] = c * 25 + p;
    fl_pack_dense(w->c5_w, 120, 400, perm, net->c5_wt, FL_C5_LD);
    memcpy(net->c5_b, w->c5_b, 120 * sizeof(float));
    fl_pack_dense(w->f6_w, 84, 120, NULL, net->f6_wt, FL_F6_LD);
    memcpy(net->f6_b, w->f6_b, 84 * sizeof(float));
    fl_pack_dense(w->out_w, w->num_classes, 84, NULL, net->out_wt, ld);
    memcpy(net->out_b, w->out_b, (size_t)w->num_classes * sizeof(float));
    return net;
}

void fl_net_free(fl_net *net) {
    if (net) fl_aligned_free(net->q);
    fl_aligned_free(net);
}

static float load_pixel(const char *p, int dtype) {
    switch (dtype) {
    case FL_DTYPE_U8: return (float)*(const unsigned char *)p;
    case FL_DTYPE_F32: { float v; memcpy(&v, p, sizeof v); return v; }
    case FL_DTYPE_F32_SWAPPED: { /* the other byte order, read in place */
        uint32_t u; float v;
        memcpy(&u, p, sizeof u);
        u = __builtin_bswap32(u);
        memcpy(&v, &u, sizeof v);
        return v;
    }
    case FL_DTYPE_F64_SWAPPED: {
        uint64_t u; double v;
        memcpy(&u, p, sizeof u);
        u = __builtin_bswap64(u);
        memcpy(&v, &u, sizeof v);
        return (float)v;
    }
    default: { double v; memcpy(&v, p, sizeof v); return (float)v; }
    }
}

float fl_load_pixel(const char *p, int dtype) { return load_pixel(p, dtype); }

/* Image i as a normalized, contiguous C x 32x32 float32 image (CHW): either the caller's own
 * memory (float32, contiguous rows and channels, no normalization: no copy) or `buf`. */
static const float *convert_image(const fl_input *in, size_t i, float *buf) {
    const char *base = (const char *)in->data + (ptrdiff_t)i * in->stride_n;
    const int nc = in->channels;
    if (in->dtype == FL_DTYPE_F32 && in->size == 32 && in->stride_w == 4 && in->stride_h == 128 &&
        (nc == 1 ? in->scale == 1.0f && in->shift == 0.0f
                 : in->stride_c == 4096 && in->scale_c[0] == 1.0f && in->shift_c[0] == 0.0f &&
                       in->scale_c[1] == 1.0f && in->shift_c[1] == 0.0f &&
                       in->scale_c[2] == 1.0f && in->shift_c[2] == 0.0f) &&
        ((uintptr_t)base % sizeof(float)) == 0)
        return (const float *)base;
    const int pad = (32 - in->size) / 2;
    for (int c = 0; c < nc; c++) {
        const float scale = nc == 1 ? in->scale : in->scale_c[c];
        const float shift = nc == 1 ? in->shift : in->shift_c[c];
        const char *cbase = base + c * in->stride_c;
        float *cbuf = buf + c * 32 * 32;
        if (pad) /* 28x28 images: the zero border, normalized like every pixel */
            for (int k = 0; k < 32 * 32; k++) cbuf[k] = shift;
        for (int y = 0; y < in->size; y++) {
            const char *row = cbase + y * in->stride_h;
            float *dst = cbuf + (y + pad) * 32 + pad;
            for (int x = 0; x < in->size; x++)
                dst[x] = load_pixel(row + x * in->stride_w, in->dtype) * scale + shift;
        }
    }
    return buf;
}

/* Classes k0 .. k0+nk-1 of image i's logits (the output layer runs in blocks of FL_OUT_BLOCK
 * classes). Logits and probabilities go straight to the image's row of `out` (the softmax is
 * finished there by finish_proba once every block is in); `best` tracks the class index. */
static void finish_block(int mode, const float *logits, int k0, int nk, int K, void *out,
                         size_t i, int64_t *best, float *best_val) {
    if (mode == FL_OUT_LOGITS || mode == FL_OUT_PROBA) {
        memcpy((float *)out + i * K + k0, logits, nk * sizeof(float));
    } else if (mode == FL_OUT_PREDICT) {
        if (k0 == 0) { *best = 0; *best_val = logits[0]; }
        for (int k = 0; k < nk && *best >= 0; k++) {
            if (logits[k] != logits[k]) { *best = -1; break; }
            if (logits[k] > *best_val) { *best = k0 + k; *best_val = logits[k]; }
        }
        if (k0 + nk == K) ((int64_t *)out)[i] = *best;
    }
}

/* Softmax of a row of K logits, in place: max, exponentials, sum in class order. */
static void finish_proba(float *row, int K) {
    float m = row[0], sum = 0.0f;
    for (int k = 1; k < K; k++) m = row[k] > m ? row[k] : m;
    for (int k = 0; k < K; k++) sum += (row[k] = expf(row[k] - m));
    for (int k = 0; k < K; k++) row[k] = row[k] / sum;
}

/* Images i0 .. i0+n-1 (n <= FL_TILE): C1 and C3 image by image, then each dense layer once for
 * the whole tile. */
static void forward_tile(const fl_net *net, const fl_kernels *k, const fl_int8_kernels *qk,
                         const fl_input *in, size_t i0, int n, int mode, void *out,
                         float *features) {
    float buf[FL_MAX_CHANNELS * 32 * 32] FL_ALIGNED, s2[FL_S2_LEN] FL_ALIGNED;
    float s4[FL_TILE][FL_S4_LEN] FL_ALIGNED, c5[FL_TILE][FL_C5_LD] FL_ALIGNED;
    float f6[FL_TILE][FL_F6_LD] FL_ALIGNED, logits[FL_TILE][FL_OUT_BLOCK] FL_ALIGNED;
    int64_t best[FL_TILE];
    float best_val[FL_TILE];
    if (n < 1) return;
    if (net->q) { /* int8: C1..F6 in integers, F6's fp32 activations out */
        fl_int8_tile(net->q, qk, in, i0, n, f6[0]);
    } else {
    for (int t = 0; t < n; t++) {
        k->c1(net, convert_image(in, i0 + t, buf), s2);
        k->c3(net, s2, s4[t]);
    }
    k->dense(net->act, s4[0], n, FL_S4_LEN, 400, net->c5_wt, FL_C5_LD, net->c5_b, 120, c5[0],
             FL_C5_LD);
    k->dense(net->act, c5[0], n, FL_C5_LD, 120, net->f6_wt, FL_F6_LD, net->f6_b, 84, f6[0],
             FL_F6_LD);
    }
    if (features)
        for (int t = 0; t < n; t++) memcpy(features + (i0 + t) * 84, f6[t], 84 * sizeof(float));
    if (mode == FL_OUT_NONE) return;
    const int K = net->num_classes;
    for (int k0 = 0; k0 < K; k0 += FL_OUT_BLOCK) { /* k0 is a multiple of FL_LANES_MAX */
        const int nk = K - k0 < FL_OUT_BLOCK ? K - k0 : FL_OUT_BLOCK;
        if (net->q)
            qk->output(f6[0], n, FL_F6_LD, 84, net->out_wt + k0, net->out_ld, net->out_b + k0,
                       nk, logits[0], FL_OUT_BLOCK);
        else
            k->dense(FL_ACT_NONE, f6[0], n, FL_F6_LD, 84, net->out_wt + k0, net->out_ld,
                     net->out_b + k0, nk, logits[0], FL_OUT_BLOCK);
        for (int t = 0; t < n; t++)
            finish_block(mode, logits[t], k0, nk, K, out, i0 + t, &best[t], &best_val[t]);
    }
    if (mode == FL_OUT_PROBA)
        for (int t = 0; t < n; t++) finish_proba((float *)out + (i0 + t) * K, K);
}

/* The batch as work items for the pool: item t is tile t. */
typedef struct {
    const fl_net *net;
    const fl_kernels *k;
    const fl_int8_kernels *qk;
    const fl_input *in;
    size_t n;
    int mode;
    void *out;
    float *features;
} fl_batch;

static void run_tiles(void *ctx, size_t t0, size_t t1) {
    const fl_batch *b = ctx;
    for (size_t t = t0; t < t1; t++) {
        const size_t i0 = t * FL_TILE;
        forward_tile(b->net, b->k, b->qk, b->in, i0, b->n - i0 < FL_TILE ? (int)(b->n - i0) : FL_TILE,
                     b->mode, b->out, b->features);
    }
}

int fl_net_forward(const fl_net *net, const fl_input *in, size_t n, int mode, void *out,
                   float *features, int num_threads, int isa) {
    if (!net || !in || (in->size != 28 && in->size != 32)) return FL_ERR_ARG;
    if (in->channels != net->in_channels) return FL_ERR_ARG;
    if (in->dtype < FL_DTYPE_U8 || in->dtype > FL_DTYPE_F64_SWAPPED) return FL_ERR_ARG;
    if (mode < FL_OUT_LOGITS || mode > FL_OUT_NONE || (mode != FL_OUT_NONE && !out)) return FL_ERR_ARG;
    const fl_kernels *k = fl_kernels_for(isa);
    if (!k) return FL_ERR_ISA;
    const fl_int8_kernels *qk = net->q ? fl_int8_kernels_for(isa) : NULL;
    if (net->q && !qk) return FL_ERR_ISA;
    const size_t tiles = (n + FL_TILE - 1) / FL_TILE;
    fl_batch b = {net, k, qk, in, n, mode, out, features};
#if FL_HAVE_POOL || defined(_OPENMP)
    size_t nt = num_threads < 1 ? 1 : (size_t)num_threads;
    if (nt > n / FL_MIN_IMAGES_PER_THREAD) nt = n / FL_MIN_IMAGES_PER_THREAD;
    if (nt > 1) {
        size_t chunk = tiles / (nt * 4);
        chunk = chunk < 1 ? 1 : chunk > FL_CHUNK_TILES ? FL_CHUNK_TILES : chunk;
#if FL_HAVE_POOL
        if (fl_pool_run((int)nt, tiles, chunk, run_tiles, &b)) return FL_OK;
#elif defined(_OPENMP)
        const long long count = (long long)tiles;
#pragma omp parallel for schedule(dynamic, chunk) num_threads((int)nt)
        for (long long t = 0; t < count; t++) run_tiles(&b, (size_t)t, (size_t)t + 1);
        return FL_OK;
#endif
    }
#else
    (void)num_threads; /* a build without threads */
#endif
    run_tiles(&b, 0, tiles);
    return FL_OK;
}
