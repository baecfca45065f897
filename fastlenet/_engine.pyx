# cython: language_level=3
"""The Net type: owns the packed weights and calls the C engine with the GIL released.

Everything per call happens here in C-level Cython (shape/dtype checks on the array struct, one
output allocation) so that batch 1 costs a few microseconds above the kernels. The input is never
copied: the engine reads each image in place, whatever its dtype and strides.
"""
import json
import os
import warnings
from time import perf_counter
from collections.abc import Mapping

import numpy as np

cimport cython
cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from libc.string cimport memcpy
from libc.stdint cimport int32_t, uintptr_t

from fastlenet import weights as loader
from fastlenet.weights.checks import FormatError

cnp.import_array()

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
    int fl_isa_detect()
    const char *fl_isa_name(int isa)
    int fl_has_openmp()
    int fl_thread_limit()
    int fl_test_activation(int isa, int act, const float *x, float *y, size_t n)
    int fl_test_c1(int isa, const fl_net *net, const float *img32, float *s2_out)
    int fl_test_c3(int isa, const fl_net *net, const float *s2, float *s4_out)
    int fl_test_dense(int isa, int act, const float *x, const float *w, const float *b,
                      int n_in, int n_out, float *y)
    void fl_test_conv5x5(const float *x, int cin, int h, int w, const float *k, const float *b,
                         int cout, float *y)
    void fl_test_pool2x2(const float *x, int c, int h, int w, int pool, float *y)


ACTIVATIONS = {"tanh": FL_ACT_TANH, "relu": FL_ACT_RELU, "sigmoid": FL_ACT_SIGMOID,
               "scaled_tanh": FL_ACT_SCALED_TANH}
POOLS = {"avg": FL_POOL_AVG, "max": FL_POOL_MAX}
ISA_NAMES = tuple(fl_isa_name(i).decode() for i in range(FL_ISA_COUNT))
HAS_OPENMP = bool(fl_has_openmp())


def detected_isa():
    """The highest ISA level this CPU and OS support (CPUID + XGETBV), e.g. 'avx512'."""
    return ISA_NAMES[fl_isa_detect()]


def available_isas():
    """ISA levels this machine can run, lowest first."""
    return ISA_NAMES[: fl_isa_detect() + 1]


def _isa_from_env():
    """FASTLENET_ISA may only lower the detected level; anything else warns and is ignored."""
    detected = fl_isa_detect()
    want = os.environ.get("FASTLENET_ISA", "").strip().lower()
    if not want:
        return detected
    if want not in ISA_NAMES:
        warnings.warn(f"FASTLENET_ISA={want!r} is not one of {', '.join(ISA_NAMES)}; "
                      f"using {ISA_NAMES[detected]}", RuntimeWarning, stacklevel=2)
        return detected
    level = ISA_NAMES.index(want)
    if level > detected:
        warnings.warn(f"FASTLENET_ISA={want} is not supported by this CPU; using "
                      f"{ISA_NAMES[detected]} (the variable can only lower the level)",
                      RuntimeWarning, stacklevel=2)
        return detected
    return level


cdef int _default_isa = _isa_from_env()


def default_isa():
    """The ISA level new Nets use: the detected one, or lower if FASTLENET_ISA says so."""
    return ISA_NAMES[_default_isa]


def _effective_cpu_count():
    """CPUs this process may use: affinity mask, cgroup CPU quota, and OMP_NUM_THREADS."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return max(1, n)


DEFAULT_THREADS = _effective_cpu_count() if HAS_OPENMP else 1


SHAPE_HELP = ("expected an image of shape (32, 32) or a batch (N, 32, 32), (N, 1, 32, 32) or "
              "(N, 32, 32, 1); 28x28 images are accepted and zero-padded to 32x32")
SHAPE_HELP_RGB = ("this model takes 3-channel (RGB) input: expected an image of shape (3, 32, 32) "
                  "or (32, 32, 3), or a batch (N, 3, 32, 32) or (N, 32, 32, 3); 28x28 images are "
                  "accepted and zero-padded to 32x32")
MAX_CLASSES = FL_MAX_CLASSES


cdef inline const float *_data(cnp.ndarray a):
    """The buffer of a C-contiguous float32 array (the loader guarantees both)."""
    return <const float *>cnp.PyArray_DATA(a)


cdef inline int _dtype_code(int typenum, bint swapped):
    if typenum == cnp.NPY_FLOAT32:
        return FL_DTYPE_F32_SWAPPED if swapped else FL_DTYPE_F32
    if typenum == cnp.NPY_UINT8:
        return FL_DTYPE_U8
    if typenum == cnp.NPY_FLOAT64:
        return FL_DTYPE_F64_SWAPPED if swapped else FL_DTYPE_F64
    return -1


# The largest num_threads accepted (the engine uses at most the work's chunks anyway).
MAX_THREADS = 1 << 16
# A long batch returns to Python about this often (seconds), so that Ctrl-C (and any signal
# handler) runs within a fraction of a second whatever the ISA level and thread count.
_SLICE_SECONDS = 0.03
# The first slice of a batch, per thread: short even at the scalar level (~0.3 ms per image).
_FIRST_SLICE = 64
# Float pixels beyond this are not a 0..1 image (0..255 pixels given as floats, typically).
_PIXEL_WARN_ABOVE = 8.0


class InputRangeWarning(UserWarning):
    """Float input far outside the 0..1 range the model's input rules expect."""


cdef double _max_abs_pixel(const fl_input *inp, cnp.npy_intp i) noexcept nogil:
    """max |pixel| of image i over finite pixels (float32/float64, native byte order)."""
    cdef const char *base = <const char *>inp.data + i * inp.stride_n
    cdef const char *p
    cdef double m = 0.0, v
    cdef float f
    cdef int y, x
    cdef const int32_t *row
    cdef int32_t u, mu = 0
    cdef int rows, cols
    if (inp.dtype == FL_DTYPE_F32 and inp.stride_w == 4 and inp.stride_h % 4 == 0
            and (<uintptr_t>base) % 4 == 0):
        # Aligned float32 rows (the common case) in a loop the compiler vectorizes: |pixel| as
        # bits, where for floats >= 0 the integer order is the float order, and inf and NaN
        # (0x7f800000 and up) count as 0. The per-pixel loop below took 1.2-1.45 us a call, 4%
        # of a batch-1 call on the generic level.
        rows, cols = inp.size, inp.size
        if inp.stride_h == 4 * inp.size:  # contiguous: one loop (one final reduction)
            rows, cols = 1, inp.size * inp.size
        for y in range(rows):
            row = <const int32_t *>(base + y * inp.stride_h)
            for x in range(cols):
                u = row[x] & 0x7fffffff
                u = u if u < 0x7f800000 else 0
                mu = u if u > mu else mu
        memcpy(&f, &mu, sizeof(float))
        return f
    for y in range(inp.size):
        for x in range(inp.size):
            p = base + y * inp.stride_h + x * inp.stride_w
            if inp.dtype == FL_DTYPE_F32:  # memcpy: the buffer may be unaligned
                memcpy(&f, p, sizeof(float))
                v = f
            else:
                memcpy(&v, p, sizeof(double))
            if v < 0:
                v = -v
            if v > m and v <= 3.4028234663852886e38:  # inf/NaN pixels are not a range mistake
                m = v
    return m


@cython.embedsignature(False)  # Cython's embedded one is invalid ("..., *)"): see the docstring
cdef class Net:
    """Net(weights, meta=None, *, num_threads=None)
--

LeNet-5 with packed weights. Build one with fastlenet.load(), Net.from_npz(),
    Net.from_weights() or fastlenet.pretrained(); it is immutable and thread-safe."""

    cdef fl_net *_c
    cdef dict _weights
    cdef dict _meta
    cdef int _threads
    cdef bint _threads_set  # num_threads was given explicitly (it then wins over limits)
    cdef bint _range_warned
    cdef int _isa
    cdef float _scale_u8, _scale_f, _shift
    cdef int _channels, _classes
    cdef float _cscale_u8[3]
    cdef float _cscale_f[3]
    cdef float _cshift[3]

    def __cinit__(self):
        self._c = NULL

    def __dealloc__(self):
        if self._c != NULL:
            fl_net_free(self._c)
            self._c = NULL

    def __init__(self, weights, meta=None, *, num_threads=None):
        """weights: canonical mapping name -> array (see fastlenet.loader; other frameworks'
        layouts: Net.from_weights / fastlenet.load); meta: dict (activation, pool, mean, std,
        classes, ...) or None; num_threads: positive int or None (the CPUs this process may
        use, capped by threadpoolctl / OMP_NUM_THREADS limits at each call). Raises
        FormatError (a ValueError) for weights or metadata that cannot be a LeNet-5 (including
        values that overflow float32), TypeError for arguments of the wrong type."""
        cdef fl_weights w
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError(f"meta: expected a dict of model metadata (activation, pool, mean, "
                            f"std, classes, ...) or None; got {type(meta).__name__}")
        self._weights, found = loader.convert(weights, layout="canonical", source="weights")
        found.update(meta or {})
        d = self._weights
        self._channels = <int>d["c1.weight"].shape[1]
        self._classes = <int>d["output.weight"].shape[0]
        self._meta = loader.check_meta(found, "meta", num_classes=self._classes,
                                       in_channels=self._channels)
        w.c1_w, w.c1_b = _data(d["c1.weight"]), _data(d["c1.bias"])
        w.c3_w, w.c3_b = _data(d["c3.weight"]), _data(d["c3.bias"])
        w.c5_w, w.c5_b = _data(d["c5.weight"]), _data(d["c5.bias"])
        w.f6_w, w.f6_b = _data(d["f6.weight"]), _data(d["f6.bias"])
        w.out_w, w.out_b = _data(d["output.weight"]), _data(d["output.bias"])
        w.in_channels, w.num_classes = self._channels, self._classes
        self._c = fl_net_create(&w, ACTIVATIONS[self._meta["activation"]],
                                POOLS[self._meta["pool"]])
        if self._c == NULL:
            raise MemoryError("fastlenet: cannot allocate the packed weights")
        mean, std = self._meta["mean"], self._meta["std"]
        if self._channels == 1:
            self._scale_f = <float>(1.0 / std)
            self._scale_u8 = <float>(1.0 / (255.0 * std))
            self._shift = <float>(-mean / std)
        else:  # mean and std: one number, or one per channel
            means = mean if isinstance(mean, list) else [mean] * 3
            stds = std if isinstance(std, list) else [std] * 3
            for c in range(3):
                self._cscale_f[c] = <float>(1.0 / stds[c])
                self._cscale_u8[c] = <float>(1.0 / (255.0 * stds[c]))
                self._cshift[c] = <float>(-means[c] / stds[c])
        self._isa = _default_isa
        self.num_threads = num_threads

    # ---- constructors -------------------------------------------------------------------
    @classmethod
    def from_npz(cls, path, layout="auto", activation=None, pool=None, strict=True,
                 num_threads=None, mean=None, std=None):
        """Load weights from an .npz (any supported framework layout; see fastlenet.loader).
        Keyword arguments override the file's fastlenet_meta."""
        weights, meta = loader.load(path, layout=layout, strict=strict)
        meta = loader.override_meta(meta, activation=activation, pool=pool, mean=mean, std=std)
        return cls(weights, meta, num_threads=num_threads)

    @classmethod
    def from_weights(cls, mapping, layout="auto", activation=None, pool=None, strict=True,
                     num_threads=None, mean=None, std=None, meta=None):
        """Build from a mapping name -> array (canonical or any supported framework layout)."""
        weights, found_meta = loader.convert(mapping, layout=layout, strict=strict,
                                             source="weights")
        merged = dict(found_meta)
        merged.update(meta or {})
        merged = loader.override_meta(merged, activation=activation, pool=pool, mean=mean,
                                      std=std)
        return cls(weights, merged, num_threads=num_threads)

    # ---- properties ---------------------------------------------------------------------
    @property
    def num_threads(self):
        """Threads used for a batch (small batches use fewer). Default (None): the CPUs this
        process may use (affinity, cgroup quota, OMP_NUM_THREADS), further capped at each call
        by threadpoolctl.threadpool_limits; an explicit value wins over both."""
        return self._threads

    @num_threads.setter
    def num_threads(self, value):
        if value is None:
            self._threads = DEFAULT_THREADS
            self._threads_set = False
            return
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 \
                or value > MAX_THREADS:
            raise ValueError(f"num_threads: expected a positive integer or None; got {value!r}"
                             + (f" (at most {MAX_THREADS})" if isinstance(value, int) and
                                value > MAX_THREADS else ""))
        self._threads = int(value) if HAS_OPENMP else 1
        self._threads_set = True

    @property
    def isa(self):
        """The instruction-set level of the kernels this Net runs. Settable to any level in
        fastlenet.available_isas() (benchmarks and tests compare them)."""
        return ISA_NAMES[self._isa]

    @isa.setter
    def isa(self, value):
        avail = available_isas()
        if value not in avail:
            raise ValueError(f"isa: expected one of {', '.join(avail)} on this machine; "
                             f"got {value!r}")
        self._isa = ISA_NAMES.index(value)

    @property
    def weights(self):
        """The canonical weights (float32 copies; PyTorch layout)."""
        return {k: v.copy() for k, v in self._weights.items()}

    @property
    def meta(self):
        """The model's metadata: activation, pool, mean, std, and whatever the file carried."""
        return json.loads(json.dumps(self._meta))

    @property
    def activation(self):
        return self._meta["activation"]

    @property
    def pool(self):
        return self._meta["pool"]

    @property
    def classes(self):
        """Class names: the metadata's, else '0'..'K-1'."""
        return list(self._meta.get("classes") or [str(i) for i in range(self._classes)])

    @property
    def num_classes(self):
        """K, the number of outputs (the output layer's rows)."""
        return self._classes

    @property
    def in_channels(self):
        """Input channels: 1 (grayscale) or 3 (RGB, channel order as the model was trained)."""
        return self._channels

    def __repr__(self):
        return (f"<fastlenet.Net activation={self.activation} pool={self.pool} "
                f"isa={self.isa} num_threads={self._threads} classes={self._classes} "
                f"channels={self._channels}>")

    # ---- inference ----------------------------------------------------------------------
    def logits(self, x):
        """float32 (N, K) pre-softmax outputs (K = num_classes).

        Input rules (all of predict, predict_proba, logits, features): x is float32, float64 or
        uint8 of shape (32, 32), (N, 32, 32), (N, 1, 32, 32) or (N, 32, 32, 1) for a 1-channel
        model, (3, 32, 32), (32, 32, 3), (N, 3, 32, 32) or (N, 32, 32, 3) for a 3-channel one
        (28x28 is zero-padded to 32x32), any strides and byte order, never copied. Digit models
        take light ink on a dark background (MNIST polarity). uint8 is divided by 255; floats are
        taken as 0..1 (a float batch far outside that, e.g. 0..255, warns once with
        InputRangeWarning); then the model's own normalization (x - mean) / std from its
        metadata applies. TypeError for other dtypes, ValueError for other shapes."""
        return self._run(x, FL_OUT_LOGITS)

    def predict_proba(self, x):
        """float32 (N, K) softmax probabilities. Input rules: see logits."""
        return self._run(x, FL_OUT_PROBA)

    def predict(self, x):
        """int64 (N,) class indices (-1 for an image whose logits are NaN). Input rules: see
        logits (0..1 floats or uint8, light on dark, the model's normalization applied)."""
        return self._run(x, FL_OUT_PREDICT)

    def features(self, x):
        """float32 (N, 84) F6 activations, for transfer learning. Input rules: see logits."""
        return self._run(x, FL_OUT_NONE)

    cdef object _run(self, object x, int mode):
        cdef cnp.ndarray a
        cdef fl_input inp
        cdef cnp.npy_intp n, h, w
        cdef cnp.npy_intp *dims
        cdef cnp.npy_intp *st
        cdef cnp.npy_intp odims[2]
        cdef int nd, rc
        cdef Py_ssize_t sn = 0, sh, sw, sc = 0
        cdef void *outp
        cdef float *featp = NULL
        if self._c == NULL:
            raise RuntimeError(_UNINITIALIZED)
        if cnp.PyArray_Check(x):
            a = <cnp.ndarray>x
        else:
            try:
                a = np.asarray(x)
            except (ValueError, TypeError) as e:
                raise ValueError(f"x: cannot be read as an array of images ({e})") from None
        inp.dtype = _dtype_code(cnp.PyArray_TYPE(a), not cnp.PyArray_ISNOTSWAPPED(a))
        if inp.dtype < 0:
            raise TypeError(f"x: expected dtype float32, float64 or uint8; got {a.dtype}. "
                            f"Convert with x.astype(np.float32) (or np.uint8 for 0..255 pixels)")
        nd = cnp.PyArray_NDIM(a)
        dims = cnp.PyArray_DIMS(a)
        st = cnp.PyArray_STRIDES(a)
        if self._channels == 3:
            _rgb_geometry(a, nd, dims, st, &n, &h, &w, &sn, &sh, &sw, &sc)
        elif nd == 2:
            n, h, w, sh, sw = 1, dims[0], dims[1], st[0], st[1]
        elif nd == 3:
            n, h, w, sn, sh, sw = dims[0], dims[1], dims[2], st[0], st[1], st[2]
        elif nd == 4 and dims[1] == 1:
            n, h, w, sn, sh, sw = dims[0], dims[2], dims[3], st[0], st[2], st[3]
        elif nd == 4 and dims[3] == 1:
            n, h, w, sn, sh, sw = dims[0], dims[1], dims[2], st[0], st[1], st[2]
        else:
            h = w = 0
        if h != w or (h != 32 and h != 28):
            raise ValueError(f"x: {SHAPE_HELP_RGB if self._channels == 3 else SHAPE_HELP}; got "
                             f"shape {np.shape(a)}")
        inp.data = cnp.PyArray_DATA(a)
        inp.size = <int>h
        inp.stride_n, inp.stride_h, inp.stride_w = sn, sh, sw
        inp.scale = self._scale_u8 if inp.dtype == FL_DTYPE_U8 else self._scale_f
        inp.shift = self._shift
        inp.channels, inp.stride_c = self._channels, sc
        for i in range(3):
            inp.scale_c[i] = self._cscale_u8[i] if inp.dtype == FL_DTYPE_U8 else self._cscale_f[i]
            inp.shift_c[i] = self._cshift[i]
        odims[0] = n
        if mode == FL_OUT_PREDICT:
            out = cnp.PyArray_EMPTY(1, odims, cnp.NPY_INT64, 0)
        elif mode == FL_OUT_NONE:
            odims[1] = 84
            out = cnp.PyArray_EMPTY(2, odims, cnp.NPY_FLOAT32, 0)
        else:
            odims[1] = self._classes
            out = cnp.PyArray_EMPTY(2, odims, cnp.NPY_FLOAT32, 0)
        outp = cnp.PyArray_DATA(<cnp.ndarray>out)
        if mode == FL_OUT_NONE:
            featp = <float *>outp
        if not self._range_warned and n > 0 and (inp.dtype == FL_DTYPE_F32 or
                                                  inp.dtype == FL_DTYPE_F64):
            self._check_range(&inp, n)
        cdef int threads = self._threads, isa = self._isa
        if not self._threads_set:  # threadpoolctl / omp_set_num_threads limits apply
            threads = min(threads, max(1, fl_thread_limit()))
        # The batch runs in slices that return to Python every _SLICE_SECONDS or so, sized from
        # the speed measured on the slices before, so that Ctrl-C takes effect promptly.
        cdef Py_ssize_t row = cnp.PyArray_STRIDES(<cnp.ndarray>out)[0] if n > 0 else 0
        cdef const char *base = <const char *>inp.data
        cdef cnp.npy_intp i0 = 0, m, step = _FIRST_SLICE * max(1, threads)
        cdef double t0 = 0, dt
        while True:
            m = min(step, n - i0)
            inp.data = base + i0 * inp.stride_n
            if i0 + m < n:  # (a batch of one slice, e.g. batch 1, times nothing)
                t0 = perf_counter()
            with nogil:
                rc = fl_net_forward(self._c, &inp, <size_t>m, mode, <char *>outp + i0 * row,
                                    featp + i0 * 84 if featp != NULL else NULL, threads, isa)
            if rc != FL_OK:
                raise RuntimeError(f"fastlenet engine error {rc}")
            i0 += m
            if i0 >= n:
                return out
            PyErr_CheckSignals()  # KeyboardInterrupt (or a handler's exception) from here
            dt = perf_counter() - t0
            step = max(16, min(1 << 20, <cnp.npy_intp>(m * _SLICE_SECONDS / max(dt, 1e-6))))

    cdef _check_range(self, const fl_input *inp, cnp.npy_intp n):
        """Warn once per Net when float pixels are far outside 0..1 (first and last image)."""
        cdef double peak = _max_abs_pixel(inp, 0)
        if n > 1:
            peak = max(peak, _max_abs_pixel(inp, n - 1))
        if peak > _PIXEL_WARN_ABOVE:
            self._range_warned = True
            warnings.warn(
                f"x: float pixels reach {peak:.6g}, but the model takes 0..1 floats (or uint8 "
                f"0..255); results will be wrong. Pass x / 255 (or x.astype(np.uint8) for 0..255 "
                f"pixels). This warning is shown once per Net", InputRangeWarning, stacklevel=1)

    # ---- persistence --------------------------------------------------------------------
    def save(self, path):
        """Write the canonical .npz (weights + fastlenet_meta); loads back bit-identically."""
        loader.save(path, self._weights, self._meta)

    def __reduce__(self):
        # An explicit num_threads is the user's choice and travels; the default and the ISA
        # belong to the machine that unpickles.
        if self._threads_set:
            return (_restore, (self._weights, json.dumps(self._meta), self._threads))
        return (_restore, (self._weights, json.dumps(self._meta)))


cdef int _rgb_geometry(cnp.ndarray a, int nd, cnp.npy_intp *dims, cnp.npy_intp *st,
                       cnp.npy_intp *n, cnp.npy_intp *h, cnp.npy_intp *w, Py_ssize_t *sn,
                       Py_ssize_t *sh, Py_ssize_t *sw, Py_ssize_t *sc):
    """Where the channel axis is, for a 3-channel model: CHW / HWC images, NCHW / NHWC batches
    (h = w = 0 when the shape is none of them; the caller reports it)."""
    h[0] = w[0] = 0
    if nd == 3 and dims[0] == 3:
        n[0], h[0], w[0], sc[0], sh[0], sw[0] = 1, dims[1], dims[2], st[0], st[1], st[2]
    elif nd == 3 and dims[2] == 3:
        n[0], h[0], w[0], sh[0], sw[0], sc[0] = 1, dims[0], dims[1], st[0], st[1], st[2]
    elif nd == 4 and dims[1] == 3:
        n[0], h[0], w[0], sn[0], sc[0], sh[0], sw[0] = dims[0], dims[2], dims[3], st[0], st[1], st[2], st[3]
    elif nd == 4 and dims[3] == 3:
        n[0], h[0], w[0], sn[0], sh[0], sw[0], sc[0] = dims[0], dims[1], dims[2], st[0], st[1], st[2], st[3]
    return 0


def _restore(weights, meta_json, num_threads=None):
    """Unpickling: validate the weights, metadata and thread count again (pickles are data, not
    trust); any problem is a FormatError (a ValueError) or TypeError naming 'pickle'."""
    if not isinstance(meta_json, str):
        raise FormatError(f"pickle: expected the metadata as a JSON string; found "
                          f"{type(meta_json).__name__}")
    if not isinstance(weights, Mapping):
        raise FormatError(f"pickle: expected a mapping of weight name -> array; found "
                          f"{type(weights).__name__}")
    net = Net(weights, loader.parse_meta(meta_json, "pickle"))
    try:
        net.num_threads = num_threads
    except ValueError as e:
        raise FormatError(f"pickle: {e}") from None
    return net


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


# ---- preprocessing (csrc/preprocess.c): pictures of digits -> model inputs ------------------
cdef extern from "fastlenet.h" nogil:
    enum:
        FL_PIX_U8, FL_PIX_U16, FL_PIX_F32, FL_PIX_F64
        FL_INVERT_AUTO, FL_INVERT_YES, FL_INVERT_NO
    ctypedef struct fl_image:
        const void *data
        int dtype
        int height, width
        Py_ssize_t stride_h, stride_w
        double scale
    int fl_preprocess(const fl_image *images, size_t n, int size, int invert, int light_on_dark,
                      float *out, int num_threads)

from libc.stdlib cimport malloc, free

INVERT_CODES = {"auto": FL_INVERT_AUTO, "yes": FL_INVERT_YES, "no": FL_INVERT_NO}


cdef inline int _pix_code(int typenum):
    if typenum == cnp.NPY_UINT8:
        return FL_PIX_U8
    if typenum == cnp.NPY_UINT16:
        return FL_PIX_U16
    if typenum == cnp.NPY_FLOAT32:
        return FL_PIX_F32
    if typenum == cnp.NPY_FLOAT64:
        return FL_PIX_F64
    return -1


cdef _describe(fl_image *d, cnp.ndarray a, int axis, str where, const char *data, double scale):
    """d <- the 2-D image at data whose height and width are a's axes axis and axis + 1."""
    code = _pix_code(cnp.PyArray_TYPE(a))
    if code < 0 or not cnp.PyArray_ISNOTSWAPPED(a):
        raise TypeError(f"{where}: unsupported dtype {a.dtype}")
    if cnp.PyArray_DIMS(a)[axis] > 1 << 30 or cnp.PyArray_DIMS(a)[axis + 1] > 1 << 30:
        raise ValueError(f"{where}: too large ({np.shape(a)})")
    d.data = data
    d.dtype = code
    d.height = <int>cnp.PyArray_DIMS(a)[axis]
    d.width = <int>cnp.PyArray_DIMS(a)[axis + 1]
    d.stride_h = cnp.PyArray_STRIDES(a)[axis]
    d.stride_w = cnp.PyArray_STRIDES(a)[axis + 1]
    d.scale = scale


def _preprocess(images, scales, int size, str invert, bint light_on_dark, int num_threads):
    """The C preprocessing over a sequence of native-endian 2-D arrays (uint8, uint16, float32,
    float64) or one (N, H, W) array; `scales` maps each image's values to [0, 1] (a float for
    all, or one per image). fastlenet.preprocess validates; this only checks what C needs."""
    cdef Py_ssize_t n, i
    cdef cnp.ndarray a
    cdef int inv = INVERT_CODES[invert], rc
    cdef fl_image *desc
    cdef cnp.npy_intp odims[3]
    cdef list keep = []
    cdef bint stacked = cnp.PyArray_Check(images) and cnp.PyArray_NDIM(<cnp.ndarray>images) == 3
    n = len(images)
    odims[0] = n
    odims[1] = size
    odims[2] = size
    out = cnp.PyArray_EMPTY(3, odims, cnp.NPY_FLOAT32, 0)
    if n == 0:
        return out
    per_image = not isinstance(scales, float)
    desc = <fl_image *>malloc(n * sizeof(fl_image))
    if desc == NULL:
        raise MemoryError("fastlenet.preprocess: cannot allocate the batch descriptors")
    try:
        if stacked:
            a = <cnp.ndarray>images
            for i in range(n):
                _describe(&desc[i], a, 1, "images",
                          <const char *>cnp.PyArray_DATA(a) + i * cnp.PyArray_STRIDES(a)[0],
                          scales[i] if per_image else scales)
        else:
            for i in range(n):
                a = <cnp.ndarray?>images[i]
                if cnp.PyArray_NDIM(a) != 2:
                    raise ValueError(f"images[{i}]: expected a 2-D array; got shape {np.shape(a)}")
                keep.append(a)
                _describe(&desc[i], a, 0, f"images[{i}]", <const char *>cnp.PyArray_DATA(a),
                          scales[i] if per_image else scales)
        with nogil:
            rc = fl_preprocess(desc, <size_t>n, size, inv, light_on_dark,
                               <float *>cnp.PyArray_DATA(<cnp.ndarray>out), num_threads)
    finally:
        free(desc)
    if rc == FL_ERR_NOMEM:
        raise MemoryError("fastlenet.preprocess: out of memory")
    if rc != FL_OK:
        raise ValueError(f"fastlenet.preprocess: invalid arguments (engine error {rc})")
    return out
