# Test hooks: one kernel of one ISA on caller buffers (csrc/testing.h).
# Included by _engine.pyx (one module, one .so); see the directives there.

cdef extern from "testing.h" nogil:
    int fl_test_activation(int isa, int act, const float *x, float *y, size_t n)
    int fl_test_c1(int isa, const fl_net *net, const float *img32, float *s2_out)
    int fl_test_c3(int isa, const fl_net *net, const float *s2, float *s4_out)
    int fl_test_dense(int isa, int act, const float *x, const float *w, const float *b,
                      int n_in, int n_out, float *y)
    void fl_test_conv5x5(const float *x, int cin, int h, int w, const float *k, const float *b,
                         int cout, float *y)
    void fl_test_pool2x2(const float *x, int c, int h, int w, int pool, float *y)
    int fl_test_int8_layers(int isa, const fl_net *net, const fl_input *inp, uint8_t *s2,
                            uint8_t *s4, uint8_t *c5, float *f6)

cdef extern from "kernels/int8.h" nogil:
    const float fl_i8_tanh_c[4][32]


# ---- testing hooks: one kernel of one ISA (tests/test_kernels.py) ---------------------------
def _f32(x, shape=None):
    a = np.ascontiguousarray(x, dtype=np.float32)
    if shape is not None and np.shape(a) != shape:
        raise ValueError(f"expected shape {shape}; got {np.shape(a)}")
    return a


_UNINITIALIZED = ("this Net has no weights (created without __init__); build it with "
                  "fastlenet.load(), Net.from_weights() or Net(weights)")


cdef fl_net *_net_ptr(Net net) except NULL:
    if net._c == NULL:
        raise RuntimeError(_UNINITIALIZED)
    return net._c


cdef int _isa_level(str isa) except -1:
    if isa not in available_isas():
        raise ValueError(f"isa {isa!r} not available here ({', '.join(available_isas())})")
    return ISA_NAMES.index(isa)


def _kernel_activation(str isa, str act, x):
    cdef cnp.ndarray a = _f32(x).ravel()
    cdef cnp.ndarray y = np.empty_like(a)
    fl_test_activation(_isa_level(isa), ACTIVATIONS[act], <float *>cnp.PyArray_DATA(a),
                       <float *>cnp.PyArray_DATA(y), cnp.PyArray_SIZE(a))
    return y.reshape(np.shape(x))


def _kernel_c1(str isa, Net net, img):
    shape = (32, 32) if net._channels == 1 else (int(net._channels), 32, 32)
    cdef cnp.ndarray a = _f32(img, shape)
    cdef cnp.ndarray y = np.empty((6, 14, 14), np.float32)
    fl_test_c1(_isa_level(isa), _net_ptr(net), <float *>cnp.PyArray_DATA(a), <float *>cnp.PyArray_DATA(y))
    return y


def _kernel_c3(str isa, Net net, s2):
    cdef cnp.ndarray a = _f32(s2, (6, 14, 14))
    cdef cnp.ndarray y = np.empty((16, 5, 5), np.float32)
    fl_test_c3(_isa_level(isa), _net_ptr(net), <float *>cnp.PyArray_DATA(a), <float *>cnp.PyArray_DATA(y))
    return y


def _kernel_dense(str isa, act, x, w, b):
    cdef cnp.ndarray xa = _f32(x), wa = _f32(w), ba = _f32(b)
    n_out, n_in = np.shape(wa)
    if np.shape(xa) != (n_in,) or np.shape(ba) != (n_out,):
        raise ValueError("x must be (n_in,), w (n_out, n_in), b (n_out,)")
    cdef cnp.ndarray y = np.empty(n_out, np.float32)
    code = FL_ACT_NONE if act is None else ACTIVATIONS[act]
    rc = fl_test_dense(_isa_level(isa), code, <float *>cnp.PyArray_DATA(xa),
                       <float *>cnp.PyArray_DATA(wa), <float *>cnp.PyArray_DATA(ba), n_in, n_out,
                       <float *>cnp.PyArray_DATA(y))
    if rc != FL_OK:
        raise RuntimeError(f"fl_test_dense failed ({rc})")
    return y


def _kernel_conv5x5(x, k, b):
    cdef cnp.ndarray xa = _f32(x), ka = _f32(k), ba = _f32(b)
    cin, h, w = np.shape(xa)
    cout = np.shape(ka)[0]
    if np.shape(ka) != (cout, cin, 5, 5) or np.shape(ba) != (cout,) or h < 5 or w < 5:
        raise ValueError("x must be (C, H, W), k (O, C, 5, 5), b (O,)")
    cdef cnp.ndarray y = np.empty((cout, h - 4, w - 4), np.float32)
    fl_test_conv5x5(<float *>cnp.PyArray_DATA(xa), cin, h, w, <float *>cnp.PyArray_DATA(ka),
                    <float *>cnp.PyArray_DATA(ba), cout, <float *>cnp.PyArray_DATA(y))
    return y


def _kernel_pool2x2(x, str pool):
    cdef cnp.ndarray xa = _f32(x)
    c, h, w = np.shape(xa)
    if h % 2 or w % 2:
        raise ValueError("x must be (C, H, W) with even H, W")
    cdef cnp.ndarray y = np.empty((c, h // 2, w // 2), np.float32)
    fl_test_pool2x2(<float *>cnp.PyArray_DATA(xa), c, h, w, POOLS[pool],
                    <float *>cnp.PyArray_DATA(y))
    return y


def _int8_tanh_table():
    """The int8 engine's tanh pieces (csrc/kernels/int8_scalar.c): float32 (4, 32), row j the
    coefficients of x^j."""
    out = np.empty((4, 32), np.float32)
    for j in range(4):
        for i in range(32):
            out[j, i] = fl_i8_tanh_c[j][i]
    return out


def _int8_layers(str isa, Net net, img):
    """One uint8 32x32 image (C planes) through an int8 net's layers at level isa: s2 (14, 14,
    6) HWC, s4 (5, 5, 16) HWC, c5 (120,) uint8, f6 (84,) float32."""
    cdef fl_input inp
    cdef cnp.ndarray a = np.ascontiguousarray(img, np.uint8)
    if np.shape(a) != ((32, 32) if net._channels == 1 else (int(net._channels), 32, 32)):
        raise ValueError(f"img: expected a uint8 (C, 32, 32) image; got {np.shape(a)}")
    cdef cnp.ndarray s2 = np.empty((14, 14, 6), np.uint8), s4 = np.empty((5, 5, 16), np.uint8)
    cdef cnp.ndarray c5 = np.empty(120, np.uint8), f6 = np.empty(84, np.float32)
    inp.data = cnp.PyArray_DATA(a)
    inp.dtype, inp.size, inp.channels = FL_DTYPE_U8, 32, net._channels
    inp.stride_n, inp.stride_h, inp.stride_w, inp.stride_c = 0, 32, 1, 1024
    rc = fl_test_int8_layers(_isa_level(isa), _net_ptr(net), &inp,
                             <uint8_t *>cnp.PyArray_DATA(s2), <uint8_t *>cnp.PyArray_DATA(s4),
                             <uint8_t *>cnp.PyArray_DATA(c5), <float *>cnp.PyArray_DATA(f6))
    if rc != FL_OK:
        raise ValueError("_int8_layers: the Net is not int8")
    return s2, s4, c5, f6
