# ISA levels and thread counts: what this build and machine run.
# Included by _engine.pyx (one module, one .so); see the directives there.

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


def int8_kernels(isa=None):
    """The int8 kernels an int8 Net runs at fp32 level `isa` (default: default_isa()) on this
    CPU: 'amx' (AMX-INT8 for C3, AVX512-VNNI for the rest), 'avx512vnni' (AVX512-VNNI + VBMI)
    at the avx512 level, or 'scalar' (the specification; no AVX2 or AVX-VNNI int8 kernel is
    built). FASTLENET_INT8 may lower it (scalar, avx512vnni)."""
    level = _default_isa if isa is None else ISA_NAMES.index(isa)
    return fl_int8_name(fl_int8_level(level)).decode()


INT8_NAMES = tuple(fl_int8_name(i).decode() for i in range(FL_I8_COUNT))


def int8_levels():
    """The int8 kernel levels this machine runs, lowest first (within FASTLENET_INT8)."""
    top = INT8_NAMES.index(int8_kernels(ISA_NAMES[fl_isa_detect()]))
    return INT8_NAMES[: top + 1] if top > 0 else INT8_NAMES[:1]


def _set_int8_limit(name):
    """Caps the int8 kernels process-wide (tests compare the levels); returns the previous cap.
    None: no cap."""
    global _int8_limit
    prev = _int8_limit
    _int8_limit = FL_I8_COUNT - 1 if name is None else INT8_NAMES.index(name)
    fl_int8_set_limit(_int8_limit)
    return None if prev == FL_I8_COUNT - 1 else INT8_NAMES[prev]


def cpu_vnni():
    """(AVX512_VNNI with VBMI, AVX-VNNI) as this CPU reports them."""
    return bool(fl_cpu_has_avx512vnni()), bool(fl_cpu_has_avxvnni())


def cpu_amx():
    """AMX-INT8 usable by this process (CPUID, XCR0, and Linux's tile-data permission)."""
    return bool(fl_cpu_has_amx())


def _int8_limit_from_env():
    """FASTLENET_INT8 (scalar, avx512vnni, amx) may only lower the int8 kernels."""
    want = os.environ.get("FASTLENET_INT8", "").strip().lower()
    if not want:
        return FL_I8_COUNT - 1
    if want not in INT8_NAMES:
        warnings.warn(f"FASTLENET_INT8={want!r} is not one of {', '.join(INT8_NAMES)}; ignored",
                      RuntimeWarning, stacklevel=2)
        return FL_I8_COUNT - 1
    return INT8_NAMES.index(want)


cdef int _int8_limit = _int8_limit_from_env()
fl_int8_set_limit(_int8_limit)


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
