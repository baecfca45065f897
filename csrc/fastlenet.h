/* fastlenet: the C engine's public API (the only header the Cython layer includes).
 *
 * Plain C99, no Python.h. The engine owns a packed copy of the LeNet-5 weights (fl_net) and runs
 * the whole network over a batch of images in any dtype/stride layout. It never allocates on the
 * per-image path: every intermediate lives in a few KB of stack per thread.
 */
#ifndef FASTLENET_H
#define FASTLENET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Activation applied after C1, C3, C5 and F6 (the output layer has none). */
enum { FL_ACT_NONE = -1, FL_ACT_TANH = 0, FL_ACT_RELU = 1, FL_ACT_SIGMOID = 2,
       FL_ACT_SCALED_TANH = 3 };
/* Pooling after C1 and C3 (2x2 window, stride 2). */
enum { FL_POOL_AVG = 0, FL_POOL_MAX = 1 };
/* Instruction-set levels, ordered: a level may always be lowered, never raised. */
/* generic: 4-wide vectors in the target's baseline (SSE2 on x86-64, NEON on aarch64). */
enum { FL_ISA_SCALAR = 0, FL_ISA_GENERIC = 1, FL_ISA_AVX2 = 2, FL_ISA_AVX512 = 3,
       FL_ISA_COUNT = 4 };
/* Input element types (the _SWAPPED ones are stored in the other byte order: read in place). */
enum { FL_DTYPE_U8 = 0, FL_DTYPE_F32 = 1, FL_DTYPE_F64 = 2, FL_DTYPE_F32_SWAPPED = 3,
       FL_DTYPE_F64_SWAPPED = 4 };
/* What fl_net_forward writes to `out`. */
enum { FL_OUT_LOGITS = 0, FL_OUT_PROBA = 1, FL_OUT_PREDICT = 2, FL_OUT_NONE = 3 };

/* Error codes (0 is success). */
enum { FL_OK = 0, FL_ERR_ARG = 1, FL_ERR_NOMEM = 2, FL_ERR_ISA = 3 };

/* A batch of n images of `channels` channels (1 or 3, the net's in_channels) of size x size
 * pixels (size 28 or 32; 28 is zero-padded to 32). Strides are in bytes and may be negative or
 * zero; stride_c steps between channels (ignored for one channel), so CHW and HWC batches are
 * both read in place. Pixel p of channel c becomes p * scale + shift for one channel, or
 * p * scale_c[c] + shift_c[c] for three (uint8 / 255 and the model's (x - mean) / std folded into
 * one multiply-add). */
typedef struct {
    const void *data;
    int dtype;
    int size;
    ptrdiff_t stride_n, stride_h, stride_w;
    float scale, shift;
    int channels;
    ptrdiff_t stride_c;
    float scale_c[3], shift_c[3];
} fl_input;

/* Canonical weights, float32, C-contiguous, PyTorch layout (see ARCHITECTURE.md), for C =
 * in_channels input channels (1 or 3) and K = num_classes outputs (2 .. FL_MAX_CLASSES). */
typedef struct {
    const float *c1_w, *c1_b;   /* (6,C,5,5), (6,)      */
    const float *c3_w, *c3_b;   /* (16,6,5,5), (16,)    */
    const float *c5_w, *c5_b;   /* (120,16,5,5), (120,) */
    const float *f6_w, *f6_b;   /* (84,120), (84,)      */
    const float *out_w, *out_b; /* (K,84), (K,)         */
    int in_channels, num_classes;
} fl_weights;

#define FL_MAX_CHANNELS 3
/* Far beyond any published LeNet-5 (EMNIST 62, Kuzushiji-Kanji 3,832): the output layer's packed
 * weights stay under 23 MB. */
#define FL_MAX_CLASSES 65536

typedef struct fl_net fl_net;

/* Packs the weights for every kernel. Returns NULL when out of memory or act/pool, in_channels
 * (1 or 3) or num_classes (2 .. FL_MAX_CLASSES) is out of range. */
fl_net *fl_net_create(const fl_weights *w, int act, int pool);
void fl_net_free(fl_net *net);

/* Runs n images with the kernels of `isa` on up to num_threads threads (fewer for small
 * batches). `out` receives, per image, K logits, K probabilities or one int64 class index
 * (-1 where the logits contain NaN), by `mode`; `features` (may be NULL) receives the 84 F6
 * activations. Results are bit-identical for any num_threads. Thread-safe: `net` is read-only. */
int fl_net_forward(const fl_net *net, const fl_input *in, size_t n, int mode, void *out,
                   float *features, int num_threads, int isa);

/* ---- int8 (csrc/int8.c; numerics: kernels/int8_scalar.c) ---- */
/* The quantized network, computed by fastlenet/weights/int8.py from the canonical weights:
 * int8 weights in the canonical layouts, int32 biases (zero points folded in), per-channel
 * fp32 scales (acc -> pre-activation), the activation quantization after C1, C3, C5
 * (u8 = rint(clamp(fma(a, inv, zp), 0, 255))) and F6's feature map fma(t, gain, offset).
 * core: 0 tanh (also sigmoid and scaled tanh, their factors folded into the scales), 1 relu. */
typedef struct {
    const int8_t *c1_w, *c3_w, *c5_w, *f6_w;
    const int32_t *c1_b, *c3_b, *c5_b, *f6_b;
    const float *c1_s, *c3_s, *c5_s, *f6_s;
    float inv[3], zp[3];
    float gain, offset;
    int core;
} fl_int8_params;

/* Makes `net` run int8 (C1..F6; its fp32 output layer stays). Call once, before any forward.
 * FL_OK, FL_ERR_ARG (bad core) or FL_ERR_NOMEM. */
int fl_net_set_int8(fl_net *net, const fl_int8_params *p);
/* Int8 kernel levels: what an int8 net runs at fp32 ISA level `isa` on this CPU. */
enum { FL_I8_SCALAR = 0, FL_I8_AVX512VNNI = 1, FL_I8_AMX = 2, FL_I8_COUNT = 3 };
int fl_int8_level(int isa);
const char *fl_int8_name(int level);
/* Caps the int8 level process-wide (FASTLENET_INT8, and tests comparing levels): it may only
 * lower what the CPU runs. */
void fl_int8_set_limit(int level);
/* AVX512-VNNI with VBMI (the set kernels/int8_avx512vnni.c needs), AVX-VNNI, and AMX-INT8
 * usable by this process (Linux grants the tile data state on request, once), on this CPU. */
int fl_cpu_has_avx512vnni(void);
int fl_cpu_has_avxvnni(void);
int fl_cpu_has_amx(void);

/* CPU support, detected once (CPUID + XGETBV): the highest level this CPU and OS can run that
 * was compiled in. */
int fl_isa_detect(void);
const char *fl_isa_name(int isa);
int fl_has_openmp(void);
/* The thread limit in force for the calling thread: omp_get_max_threads() (which
 * OMP_NUM_THREADS and threadpoolctl's threadpool_limits set) in threaded builds, else 1. */
int fl_thread_limit(void);

/* ---- Preprocessing (csrc/preprocess.c): pictures of digits -> MNIST-style model inputs ---- */
/* Pixel types of fl_image. */
enum { FL_PIX_U8 = 0, FL_PIX_U16 = 1, FL_PIX_F32 = 2, FL_PIX_F64 = 3 };
/* Polarity: decide per image from its frame, or force "invert the pixel values" / "keep them". */
enum { FL_INVERT_AUTO = 0, FL_INVERT_YES = 1, FL_INVERT_NO = 2 };

/* One 2-D grayscale image of any size; strides in bytes; value * scale is clipped to [0, 1]. */
typedef struct {
    const void *data;
    int dtype;
    int height, width;
    ptrdiff_t stride_h, stride_w;
    double scale;
} fl_image;

/* n images -> out, float32 (n, size, size) in [0, 1]: light ink on dark when light_on_dark,
 * else dark on light. Each image on one thread; up to num_threads threads. FL_OK, FL_ERR_ARG
 * or FL_ERR_NOMEM. The specification is fastlenet/reference_preprocess.py. */
int fl_preprocess(const fl_image *images, size_t n, int size, int invert, int light_on_dark,
                  float *out, int num_threads);

/* ---- Fields (csrc/fields.c): an image holding a row of digits -> its reading ---- */
/* Over-segmentation into pieces, every run of 1 .. FL_FIELD_SPAN consecutive pieces a candidate
 * digit (and a blob cut into more pieces, whole): the bounds that make the work per field
 * linear in its pieces. */
#define FL_FIELD_MAX_PIECES 96
#define FL_FIELD_SPAN 5
#define FL_FIELD_MAX_SEGMENTS (FL_FIELD_MAX_PIECES * FL_FIELD_SPAN)

/* A candidate digit: pieces p0 .. p1 - 1; its box in the field image's pixels (x1, y1
 * exclusive); `shape` >= 0 the cost of its shape as a digit (too wide, too short); `whole` 1
 * when its ink is whole blobs that no removed line touched (no cut through a stroke bounds
 * it), 0 otherwise; `split` 1 when it is not whole and part of a blob wide enough to hold two
 * digits (touching digits), 0 otherwise. */
typedef struct {
    int p0, p1;
    int x0, y0, x1, y1;
    int whole;
    int cell; /* the box of a comb holding its ink's centre (1, 2, ... left to right), -1 none */
    int split;
    float shape;
} fl_segment;

/* The strip: the field's kept ink (lines and specks gone, deskewed, deslanted) resampled so
 * that the digits' estimated height is FL_FIELD_STRIP_DIGIT of its FL_FIELD_STRIP_H rows, for a
 * reader slid along it; at most FL_FIELD_STRIP_MAX columns (a wider field has none). */
#define FL_FIELD_STRIP_H 32
#define FL_FIELD_STRIP_DIGIT 20
#define FL_FIELD_STRIP_MAX 1024

/* What the segmentation found in one field. piece_ink: each piece's ink, in typical digits;
 * with a strip: strip_width its columns (0: none), piece_x each piece's centre of ink there
 * and piece_box its box (x0, y0, x1, y1; x1, y1 exclusive) in the source image's pixels. */
typedef struct {
    int pieces, segments;
    float height;          /* the digits' estimated height, field pixels */
    int ink_is_light;
    int truncated;         /* more blobs than FL_FIELD_MAX_PIECES: the smallest were dropped */
    int strip_width;
    float piece_ink[FL_FIELD_MAX_PIECES];
    float piece_x[FL_FIELD_MAX_PIECES];
    int piece_box[FL_FIELD_MAX_PIECES][4];
} fl_field;

/* n fields -> for field i, info[i] and its info[i].segments candidates: segs[i *
 * FL_FIELD_MAX_SEGMENTS + k] and their model inputs (uint8, size x size, the net's polarity) at
 * inputs + (i * FL_FIELD_MAX_SEGMENTS + k) * size * size. invert: FL_INVERT_AUTO (ink is the
 * minority class), _YES (ink is light), _NO (ink is dark). strips (NULL: none): each field's
 * strip, uint8 ink 0-255, FL_FIELD_STRIP_H x FL_FIELD_STRIP_MAX at strips + i *
 * FL_FIELD_STRIP_H * FL_FIELD_STRIP_MAX, its first info[i].strip_width columns set. Threads
 * take whole fields. FL_OK, FL_ERR_ARG or FL_ERR_NOMEM. */
int fl_field_segments(const fl_image *fields, size_t n, int size, int invert, int light_on_dark,
                      unsigned char *inputs, fl_segment *segs, fl_field *info,
                      unsigned char *strips, int num_threads);

/* How fl_field_search scores a path (log-probabilities; a path's score is the sum of its arcs). */
typedef struct {
    float digit_cost;  /* per digit read */
    float split_cost;  /* instead, per digit read from part of a wide blob (fl_segment.split) */
    float shape_cost;  /* per unit of a segment's shape cost */
    float skip_cost;   /* per typical digit's ink left unread (noise, specks) */
    float pair_cost;   /* per segment read as two touching digits (see pair_logp) */
    int min_len, max_len; /* digits in the reading */
} fl_search_params;

/* A path entry with this bit set is its segment read as two digits (a touching pair). */
#define FL_FIELD_PAIR (1 << 16)

/* Digits of a text the search is asked to read (fl_field_search texts): a field's entries,
 * -1 after its last digit. */
#define FL_FIELD_TEXT (2 * FL_FIELD_MAX_PIECES + 1)

/* The best path through each field's segments, scored by proba (K classes; classes 0..9 are
 * the digits, any others "not a digit"): field i's segments are proba rows first[i] ..
 * first[i] + info[i].segments - 1. pair_logp (NULL: none), one value per proba row: the
 * log-probability of the segment's best reading as two digits, or -INFINITY (or NaN) where it
 * may not be read so; such an arc reads two digits. texts (NULL: none): the path must read
 * field i's digits texts[i * FL_FIELD_TEXT ..] (0-9, -1 after the last; min_len and max_len
 * are not used), each arc scored by its own digits' probabilities (pair_proba: 100 per proba
 * row, "00".."99", needed with texts and pair_logp). Writes the path's segment indices to
 * path + i * FL_FIELD_MAX_PIECES (FL_FIELD_PAIR set on a pair), their count to narcs[i], the
 * sum of their log-probabilities to logp[i], the path's score (that sum less the costs of
 * fl_search_params; -1e30 for no path) to score[i] and the ink of the pieces left unread (in
 * typical digits) to skipped[i]; met[i] = 0 when no path has min_len .. max_len digits (then
 * the best of any length is given) or none reads the text (then no path). Digits in a comb's
 * boxes (cell >= 1) take rising boxes: one digit a box, never a pair. FL_OK, FL_ERR_ARG or
 * FL_ERR_NOMEM. */
int fl_field_search(const fl_field *info, const fl_segment *segs, size_t n, const float *proba,
                    const float *pair_logp, const float *pair_proba, const signed char *texts,
                    const int64_t *first, int classes, const fl_search_params *params,
                    int *path, int *narcs, float *logp, float *score, float *skipped,
                    int *met);

#ifdef __cplusplus
}
#endif
#endif
