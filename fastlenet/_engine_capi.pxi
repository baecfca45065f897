# The C engine's API as Cython sees it (csrc/fastlenet.h), and its constants.
# Included by _engine.pyx (one module, one .so); see the directives there.

cdef extern from "fastlenet.h" nogil:
    enum:
        FL_ACT_NONE, FL_ACT_TANH, FL_ACT_RELU, FL_ACT_SIGMOID, FL_ACT_SCALED_TANH
        FL_POOL_AVG, FL_POOL_MAX
        FL_ISA_SCALAR, FL_ISA_GENERIC, FL_ISA_AVX2, FL_ISA_AVX512, FL_ISA_COUNT
        FL_DTYPE_U8, FL_DTYPE_F32, FL_DTYPE_F64, FL_DTYPE_F32_SWAPPED, FL_DTYPE_F64_SWAPPED
        FL_OUT_LOGITS, FL_OUT_PROBA, FL_OUT_PREDICT, FL_OUT_NONE
        FL_OK, FL_ERR_ARG, FL_ERR_NOMEM, FL_ERR_ISA
        FL_MAX_CLASSES
    ctypedef struct fl_input:
        const void *data
        int dtype
        int size
        Py_ssize_t stride_n, stride_h, stride_w
        float scale, shift
        int channels
        Py_ssize_t stride_c
        float scale_c[3]
        float shift_c[3]
    ctypedef struct fl_weights:
        const float *c1_w
        const float *c1_b
        const float *c3_w
        const float *c3_b
        const float *c5_w
        const float *c5_b
        const float *f6_w
        const float *f6_b
        const float *out_w
        const float *out_b
        int in_channels, num_classes
    ctypedef struct fl_net:
        pass
    fl_net *fl_net_create(const fl_weights *w, int act, int pool)
    void fl_net_free(fl_net *net)
    int fl_net_forward(const fl_net *net, const fl_input *inp, size_t n, int mode, void *out,
                       float *features, int num_threads, int isa)
    ctypedef struct fl_int8_params:
        const int8_t *c1_w
        const int8_t *c3_w
        const int8_t *c5_w
        const int8_t *f6_w
        const int32_t *c1_b
        const int32_t *c3_b
        const int32_t *c5_b
        const int32_t *f6_b
        const float *c1_s
        const float *c3_s
        const float *c5_s
        const float *f6_s
        float inv[3]
        float zp[3]
        float gain, offset
        int core
    int fl_net_set_int8(fl_net *net, const fl_int8_params *p)
    int fl_int8_level(int isa)
    const char *fl_int8_name(int level)
    int fl_cpu_has_avx512vnni()
    int fl_cpu_has_avxvnni()
    int fl_cpu_has_amx()
    void fl_int8_set_limit(int level)
    enum:
        FL_I8_COUNT
    int fl_isa_detect()
    const char *fl_isa_name(int isa)
    int fl_has_openmp()
    int fl_thread_limit()


ACTIVATIONS = {"tanh": FL_ACT_TANH, "relu": FL_ACT_RELU, "sigmoid": FL_ACT_SIGMOID,
               "scaled_tanh": FL_ACT_SCALED_TANH}
POOLS = {"avg": FL_POOL_AVG, "max": FL_POOL_MAX}
ISA_NAMES = tuple(fl_isa_name(i).decode() for i in range(FL_ISA_COUNT))
HAS_OPENMP = bool(fl_has_openmp())
