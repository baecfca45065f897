# The C preprocessing (csrc/preprocess.c): pictures of digits -> model inputs.
# Included by _engine.pyx (one module, one .so); see the directives there.

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
