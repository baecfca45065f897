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
