# Net: input checks, the GIL released around the C forward pass, pickling.
# Included by _engine.pyx (one module, one .so); see the directives there.

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
        if type(weights) is _weights.Canonical:  # from _weights.convert: checked, read-only
            self._weights, found = dict(weights), {}  # the same arrays, no copy
        else:
            checked, found = _weights.convert(weights, layout="canonical", source="weights")
            self._weights = dict(checked)
        found.update(meta or {})
        d = self._weights
        self._channels = <int>d["c1.weight"].shape[1]
        self._classes = <int>d["output.weight"].shape[0]
        self._meta = _weights.check_meta(found, "meta", num_classes=self._classes,
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
        if self._meta.get("precision") == "int8":
            self._set_int8()
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

    cdef _set_int8(self):
        """Quantize (fastlenet/weights/int8.py, deterministic) and hand the int8 layers to C."""
        cdef fl_int8_params p
        q = _int8.params(self._weights, self._meta)
        keep = {}
        for name in ("c1", "c3", "c5", "f6"):
            keep[name + "_w"] = np.ascontiguousarray(q[name + "_w"], np.int8)
            keep[name + "_b"] = np.ascontiguousarray(q[name + "_b"], np.int32)
            keep[name + "_s"] = np.ascontiguousarray(q[name + "_s"], np.float32)
        p.c1_w = <const int8_t *>cnp.PyArray_DATA(keep["c1_w"])
        p.c3_w = <const int8_t *>cnp.PyArray_DATA(keep["c3_w"])
        p.c5_w = <const int8_t *>cnp.PyArray_DATA(keep["c5_w"])
        p.f6_w = <const int8_t *>cnp.PyArray_DATA(keep["f6_w"])
        p.c1_b = <const int32_t *>cnp.PyArray_DATA(keep["c1_b"])
        p.c3_b = <const int32_t *>cnp.PyArray_DATA(keep["c3_b"])
        p.c5_b = <const int32_t *>cnp.PyArray_DATA(keep["c5_b"])
        p.f6_b = <const int32_t *>cnp.PyArray_DATA(keep["f6_b"])
        p.c1_s = <const float *>cnp.PyArray_DATA(keep["c1_s"])
        p.c3_s = <const float *>cnp.PyArray_DATA(keep["c3_s"])
        p.c5_s = <const float *>cnp.PyArray_DATA(keep["c5_s"])
        p.f6_s = <const float *>cnp.PyArray_DATA(keep["f6_s"])
        for i in range(3):
            p.inv[i], p.zp[i] = q["inv"][i], q["zp"][i]
        p.gain, p.offset, p.core = q["gain"], q["offset"], q["core"]
        rc = fl_net_set_int8(self._c, &p)
        if rc == FL_ERR_NOMEM:
            raise MemoryError("fastlenet: cannot allocate the int8 weights")
        if rc != FL_OK:
            raise RuntimeError(f"fastlenet engine error {rc} (int8 parameters)")

    def quantize(self, calibration=None, *, precision="int8"):
        """A new Net running int8 (C1..F6 with int8 weights and uint8 activations, int32 sums,
        the output layer in fp32; the numerics: csrc/kernels/int8_scalar.c). tanh, scaled tanh
        and sigmoid models need no calibration (their outputs are bounded: fixed scales);
        relu models need `calibration`, model input images (as predict takes, e.g. 1,000 of
        them): min-max over them. Float input runs as rint(x * 255) pixels (clamped to 0..255).
        precision="fp32" returns an fp32 copy. An int8 Net cannot be quantized again
        (ValueError): quantize its fp32 source."""
        _int8.check_precision(precision)
        if self._c == NULL:
            raise RuntimeError(_UNINITIALIZED)
        if self.precision == "int8":
            raise ValueError("quantize: this Net is already int8; quantize the fp32 Net it came "
                             "from (or rebuild it with precision='fp32' first)")
        meta = dict(self._meta)
        meta.pop("int8", None)
        meta["precision"] = precision
        if precision == "int8" and (calibration is not None or self.activation == "relu"):
            if calibration is None:
                raise ValueError("calibration: a relu model needs calibration images to choose "
                                 "its int8 ranges (e.g. 1,000 typical inputs); got None")
            am = _int8.calibrate(self._weights, self._meta, calibration)
            if self.activation == "relu":
                meta["int8"] = {"act_max": am}
        if precision == "fp32":
            meta.pop("precision")
        net = Net(_weights.Canonical(self._weights), meta)
        net._threads, net._threads_set, net._isa = self._threads, self._threads_set, self._isa
        return net

    # ---- constructors -------------------------------------------------------------------
    @classmethod
    def from_npz(cls, path, layout="auto", activation=None, pool=None, strict=True,
                 num_threads=None, mean=None, std=None):
        """Load weights from an .npz (any supported framework layout; see fastlenet.loader).
        Keyword arguments override the file's fastlenet_meta."""
        weights, meta = _weights.load(path, layout=layout, strict=strict)
        meta = _weights.override_meta(meta, activation=activation, pool=pool, mean=mean, std=std)
        return cls(weights, meta, num_threads=num_threads)

    @classmethod
    def from_weights(cls, mapping, layout="auto", activation=None, pool=None, strict=True,
                     num_threads=None, mean=None, std=None, meta=None):
        """Build from a mapping name -> array (canonical or any supported framework layout)."""
        weights, found_meta = _weights.convert(mapping, layout=layout, strict=strict,
                                             source="weights")
        merged = dict(found_meta)
        merged.update(meta or {})
        merged = _weights.override_meta(merged, activation=activation, pool=pool, mean=mean,
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
    def precision(self):
        """'fp32' or 'int8' (see quantize)."""
        return self._meta.get("precision", "fp32")

    @property
    def kernels(self):
        """The kernels this Net runs: its ISA level for fp32; for int8 the int8 kernels that
        level gives on this CPU ('avx512vnni', or 'scalar', the specification)."""
        if self.precision == "int8":
            return fl_int8_name(fl_int8_level(self._isa)).decode()
        return self.isa

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
                f"precision={self.precision} isa={self.isa} num_threads={self._threads} classes={self._classes} "
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
        _weights.save(path, self._weights, self._meta)

    def __reduce__(self):
        # An explicit num_threads is the user's choice and travels; the default and the ISA
        # belong to the machine that unpickles.
        if self._threads_set:
            return (_restore, (dict(self._weights), json.dumps(self._meta), self._threads))
        return (_restore, (dict(self._weights), json.dumps(self._meta)))


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
    # a plain dict: whatever mapping type a pickle names, its arrays are checked again
    net = Net(dict(weights), _weights.parse_meta(meta_json, "pickle"))
    try:
        net.num_threads = num_threads
    except ValueError as e:
        raise FormatError(f"pickle: {e}") from None
    return net
