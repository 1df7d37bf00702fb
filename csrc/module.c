/* module.c: the CPython binding, the only file that includes Python.h.
 *
 * It parses and validates, decides the result dtype (docs/semantics.md), allocates,
 * releases the GIL and hands a scan_problem to the kernel library.  The
 * Python package calls these with positional arguments only, to keep the
 * per-call overhead at NumPy's level. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#include <numpy/arrayobject.h>

#include <stdlib.h>
#include <string.h>

#include "scan.h"

/* ---- the op table: the one description of the ops; Python mirrors it ---- */
typedef enum {
    RULE_ACCUMULATE, /* cumsum/cumprod: bool and narrow ints -> 64-bit, dtype= allowed */
    RULE_ORDER,      /* cummax/cummin: keep the dtype, no complex */
    RULE_LOG,        /* logcumsumexp: ints -> float64 */
} dtype_rule;

typedef struct {
    const char *name;
    dtype_rule rule;
    const char *identity;
} op_info;

static const op_info OPS[SCAN_NUM_OPS] = {
    [SCAN_SUM] = {"cumsum", RULE_ACCUMULATE, "0"},
    [SCAN_PROD] = {"cumprod", RULE_ACCUMULATE, "1"},
    [SCAN_MAX] = {"cummax", RULE_ORDER, "-inf (integers: the minimum, bool: False)"},
    [SCAN_MIN] = {"cummin", RULE_ORDER, "+inf (integers: the maximum, bool: True)"},
    [SCAN_LOGSUMEXP] = {"logcumsumexp", RULE_LOG, "-inf"},
};

static const scan_table *table = NULL;
static PyObject *axis_error = NULL; /* numpy's AxisError (a ValueError) */

/* ---- dtypes ---- */
static int scan_dtype_of(int typenum)
{
    switch (typenum) {
    case NPY_BOOL: return DT_BOOL;
    case NPY_INT8: return DT_I8;
    case NPY_INT16: return DT_I16;
    case NPY_INT32: return DT_I32;
    case NPY_INT64: return DT_I64;
    case NPY_UINT8: return DT_U8;
    case NPY_UINT16: return DT_U16;
    case NPY_UINT32: return DT_U32;
    case NPY_UINT64: return DT_U64;
    case NPY_FLOAT16: return DT_F16;
    case NPY_FLOAT32: return DT_F32;
    case NPY_FLOAT64: return DT_F64;
    case NPY_COMPLEX64: return DT_C64;
    case NPY_COMPLEX128: return DT_C128;
    default: return -1;
    }
}

/* NumPy keeps separate type numbers for long/longlong of the same size: map
 * a descriptor to the sized type number the kernels are keyed on. */
static int sized_typenum(PyArray_Descr *d)
{
    const int size = (int)PyDataType_ELSIZE(d);
    switch (d->kind) {
    case 'b': return NPY_BOOL;
    case 'i': return size == 1 ? NPY_INT8 : size == 2 ? NPY_INT16 : size == 4 ? NPY_INT32 : size == 8 ? NPY_INT64 : -1;
    case 'u': return size == 1 ? NPY_UINT8 : size == 2 ? NPY_UINT16 : size == 4 ? NPY_UINT32 : size == 8 ? NPY_UINT64 : -1;
    case 'f': return size == 2 ? NPY_FLOAT16 : size == 4 ? NPY_FLOAT32 : size == 8 ? NPY_FLOAT64 : -1;
    case 'c': return size == 8 ? NPY_COMPLEX64 : size == 16 ? NPY_COMPLEX128 : -1;
    default: return -1;
    }
}

static PyObject *descr_repr(PyArray_Descr *d) { return PyObject_Str((PyObject *)d); }

static void raise_bad_dtype(const char *op, const char *arg, PyArray_Descr *d, const char *expected)
{
    PyObject *s = descr_repr(d);
    if (s != NULL) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be %s; got dtype %U", op, arg, expected, s);
        Py_DECREF(s);
    }
}

/* The dtype the op computes in and returns, from x's dtype (and dtype=). */
static int result_typenum(int op, PyArray_Descr *xd, PyObject *dtype_obj)
{
    const char *name = OPS[op].name;
    int xt = sized_typenum(xd);
    if (xt < 0) {
        raise_bad_dtype(name, "x", xd, "a numeric array (bool, integer, float16/32/64 or complex64/128)");
        return -1;
    }
    switch (OPS[op].rule) {
    case RULE_ACCUMULATE:
        if (dtype_obj != NULL && dtype_obj != Py_None) {
            PyArray_Descr *want = NULL;
            int wt;
            if (!PyArray_DescrConverter(dtype_obj, &want))
                return -1;
            wt = sized_typenum(want);
            if (wt < 0)
                raise_bad_dtype(name, "dtype", want, "a numeric dtype (bool, integer, float16/32/64 or complex64/128)");
            Py_DECREF(want);
            return wt;
        }
        if (xd->kind == 'b' || (xd->kind == 'i' && PyDataType_ELSIZE(xd) < 8))
            return NPY_INT64;
        if (xd->kind == 'u' && PyDataType_ELSIZE(xd) < 8)
            return NPY_UINT64;
        return xt;
    case RULE_ORDER:
        if (xd->kind == 'c') {
            raise_bad_dtype(name, "x", xd, "real (complex numbers have no order)");
            return -1;
        }
        return xt;
    case RULE_LOG:
        return (xd->kind == 'b' || xd->kind == 'i' || xd->kind == 'u') ? NPY_FLOAT64 : xt;
    }
    return -1;
}

/* ---- arguments ---- */
static PyArrayObject *as_array(PyObject *obj)
{
    return (PyArrayObject *)PyArray_FromAny(obj, NULL, 0, 0, 0, NULL);
}

/* x cast to typenum, native byte order and aligned, any strides (no copy when
 * it already is). */
static PyArrayObject *as_kernel_array(PyArrayObject *x, int typenum)
{
    PyArray_Descr *d = PyArray_DescrFromType(typenum);
    if (d == NULL)
        return NULL;
    return (PyArrayObject *)PyArray_FromAny((PyObject *)x, d, 0, 0,
                                            NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED | NPY_ARRAY_FORCECAST,
                                            NULL);
}

/* axis None: flatten in C order; a 0-d array scans as shape (1,) as in NumPy. */
static int normalize_axis(const char *op, PyObject *axis_obj, PyArrayObject **x, int *axis)
{
    if (axis_obj == Py_None || PyArray_NDIM(*x) == 0) {
        PyArrayObject *flat = (PyArrayObject *)PyArray_Ravel(*x, NPY_CORDER);
        if (flat == NULL)
            return -1;
        Py_SETREF(*x, flat);
        if (axis_obj == Py_None) {
            *axis = 0;
            return 0;
        }
    }
    if (PyBool_Check(axis_obj) || !PyIndex_Check(axis_obj)) {
        PyErr_Format(PyExc_TypeError, "%s: axis must be an integer or None; got %.100s", op,
                     Py_TYPE(axis_obj)->tp_name);
        return -1;
    }
    {
        Py_ssize_t a = PyNumber_AsSsize_t(axis_obj, NULL);
        const int nd = PyArray_NDIM(*x);
        if (a == -1 && PyErr_Occurred())
            return -1;
        if (a < -nd || a >= nd) {
            PyErr_Format(axis_error ? axis_error : PyExc_ValueError,
                         "%s: axis %zd is out of bounds for array of dimension %d", op, a, nd);
            return -1;
        }
        *axis = (int)(a < 0 ? a + nd : a);
    }
    return 0;
}

static int parse_flag(PyObject *obj, int *out)
{
    int v = PyObject_IsTrue(obj);
    if (v < 0)
        return -1;
    *out = v;
    return 0;
}

/* cu_seqlens and chunk_size: validated against the axis length; seg gets a
 * malloc'ed copy of the boundaries (NULL when there is no cu_seqlens). */
typedef struct {
    int64_t *seg;
    int64_t nseg;
    int64_t chunk_size;
} segments_t;

static int parse_segments(const char *op, PyObject *cu_obj, PyObject *chunk_obj, int64_t n,
                          segments_t *out)
{
    out->seg = NULL;
    out->nseg = 0;
    out->chunk_size = 0;
    if (chunk_obj != Py_None) {
        long long c;
        if (PyBool_Check(chunk_obj) || !PyIndex_Check(chunk_obj)) {
            PyErr_Format(PyExc_TypeError, "%s: chunk_size must be a positive integer or None; got %.100s",
                         op, Py_TYPE(chunk_obj)->tp_name);
            return -1;
        }
        {
            PyObject *idx = PyNumber_Index(chunk_obj);
            if (idx == NULL)
                return -1;
            c = PyLong_AsLongLong(idx);
            Py_DECREF(idx);
        }
        if (c == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s: chunk_size must be a positive integer that fits in 64 bits", op);
            return -1;
        }
        if (c <= 0) {
            PyErr_Format(PyExc_ValueError, "%s: chunk_size must be a positive integer; got %lld", op, c);
            return -1;
        }
        out->chunk_size = c;
    }
    if (cu_obj != Py_None) {
        PyArrayObject *cu = as_array(cu_obj);
        PyArrayObject *cu64;
        npy_intp len;
        if (cu == NULL)
            return -1;
        if (PyArray_NDIM(cu) != 1) {
            PyErr_Format(PyExc_ValueError, "%s: cu_seqlens must be a 1-D array of integers; got %d dimensions",
                         op, PyArray_NDIM(cu));
            Py_DECREF(cu);
            return -1;
        }
        if (PyArray_DESCR(cu)->kind != 'i' && PyArray_DESCR(cu)->kind != 'u') {
            raise_bad_dtype(op, "cu_seqlens", PyArray_DESCR(cu), "a 1-D array of integers");
            Py_DECREF(cu);
            return -1;
        }
        if (PyArray_DESCR(cu)->kind == 'u' && PyDataType_ELSIZE(PyArray_DESCR(cu)) == 8) {
            /* uint64 beyond int64 cannot be a valid boundary; cast after a check */
            PyObject *mx = PyArray_SIZE(cu) > 0 ? PyArray_Max(cu, NPY_RAVEL_AXIS, NULL) : NULL;
            PyObject *limit = PyLong_FromLongLong(INT64_MAX);
            int too_big = 0;
            if (mx != NULL && limit != NULL)
                too_big = PyObject_RichCompareBool(mx, limit, Py_GT);
            Py_XDECREF(mx);
            Py_XDECREF(limit);
            if (too_big != 0 || PyErr_Occurred()) {
                if (too_big > 0)
                    PyErr_Format(PyExc_ValueError, "%s: cu_seqlens values must lie in [0, %lld]", op, (long long)n);
                Py_DECREF(cu);
                return -1;
            }
        }
        cu64 = (PyArrayObject *)PyArray_FromAny((PyObject *)cu, PyArray_DescrFromType(NPY_INT64), 1, 1,
                                                NPY_ARRAY_CARRAY_RO | NPY_ARRAY_FORCECAST, NULL);
        Py_DECREF(cu);
        if (cu64 == NULL)
            return -1;
        len = PyArray_DIM(cu64, 0);
        {
            const int64_t *v = (const int64_t *)PyArray_DATA(cu64);
            const char *problem = NULL;
            npy_intp bad = 0;
            if (len < 1)
                problem = "must hold at least one boundary (0)";
            else if (v[0] != 0)
                problem = "must start at 0";
            else if (v[len - 1] != n)
                problem = "must end at the length of the scan axis";
            else {
                for (npy_intp i = 1; i < len; i++)
                    if (v[i] < v[i - 1]) {
                        problem = "must be non-decreasing";
                        bad = i;
                        break;
                    }
            }
            if (problem != NULL) {
                if (len < 1)
                    PyErr_Format(PyExc_ValueError, "%s: cu_seqlens %s; got an empty array", op, problem);
                else if (bad > 0)
                    PyErr_Format(PyExc_ValueError, "%s: cu_seqlens %s; got %lld after %lld at position %zd",
                                 op, problem, (long long)v[bad], (long long)v[bad - 1], (Py_ssize_t)bad);
                else
                    PyErr_Format(PyExc_ValueError,
                                 "%s: cu_seqlens %s (%lld); got first %lld and last %lld", op, problem,
                                 (long long)n, (long long)v[0], (long long)v[len - 1]);
                Py_DECREF(cu64);
                return -1;
            }
            out->seg = (int64_t *)malloc((size_t)len * sizeof(int64_t));
            if (out->seg == NULL) {
                Py_DECREF(cu64);
                PyErr_NoMemory();
                return -1;
            }
            memcpy(out->seg, v, (size_t)len * sizeof(int64_t));
            out->nseg = len - 1;
        }
        Py_DECREF(cu64);
    }
    return 0;
}

/* Byte range [lo, hi) an array touches. */
static void byte_extent(PyArrayObject *a, char **lo, char **hi)
{
    char *l = PyArray_BYTES(a), *h = PyArray_BYTES(a);
    for (int d = 0; d < PyArray_NDIM(a); d++) {
        const npy_intp ext = (PyArray_DIM(a, d) - 1) * PyArray_STRIDE(a, d);
        if (PyArray_DIM(a, d) == 0)
            return (void)(*lo = *hi = l);
        if (ext < 0) l += ext; else h += ext;
    }
    *lo = l;
    *hi = h + PyArray_ITEMSIZE(a);
}

/* out may be written directly only when the kernel can write it in place:
 * same dtype, aligned, native, and either disjoint from every input or
 * laid out exactly like it (each element is read before it is written). */
static int out_usable_directly(PyArrayObject *out, int typenum, PyArrayObject *const *inputs, int ninputs)
{
    if (sized_typenum(PyArray_DESCR(out)) != typenum || !PyArray_ISALIGNED(out) ||
        !PyArray_ISNOTSWAPPED(out))
        return 0;
    for (int i = 0; i < ninputs; i++) {
        char *ol, *oh, *il, *ih;
        byte_extent(out, &ol, &oh);
        byte_extent(inputs[i], &il, &ih);
        if (ol >= ih || il >= oh)
            continue;
        if (PyArray_BYTES(out) == PyArray_BYTES(inputs[i]) &&
            memcmp(PyArray_STRIDES(out), PyArray_STRIDES(inputs[i]), sizeof(npy_intp) * PyArray_NDIM(out)) == 0 &&
            PyArray_ITEMSIZE(out) == PyArray_ITEMSIZE(inputs[i]))
            continue;
        return 0;
    }
    return 1;
}

static int check_out(const char *op, const char *what, PyObject *obj, PyArrayObject *like, int typenum,
                     PyArrayObject **out)
{
    PyArrayObject *o;
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a numpy.ndarray; got %.100s", op, what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    o = (PyArrayObject *)obj;
    if (PyArray_NDIM(o) != PyArray_NDIM(like) ||
        !PyArray_CompareLists(PyArray_DIMS(o), PyArray_DIMS(like), PyArray_NDIM(like))) {
        PyObject *got = PyObject_GetAttrString(obj, "shape");
        PyObject *want = PyObject_GetAttrString((PyObject *)like, "shape");
        if (got != NULL && want != NULL)
            PyErr_Format(PyExc_ValueError, "%s: %s must have the result's shape %R; got %R", op, what, want, got);
        Py_XDECREF(got);
        Py_XDECREF(want);
        return -1;
    }
    if (!PyArray_ISWRITEABLE(o)) {
        PyErr_Format(PyExc_ValueError, "%s: %s must be a writeable array; it is read-only", op, what);
        return -1;
    }
    {
        PyArray_Descr *rd = PyArray_DescrFromType(typenum);
        int ok = PyArray_CanCastTypeTo(rd, PyArray_DESCR(o), NPY_SAME_KIND_CASTING);
        if (!ok) {
            PyObject *a = descr_repr(rd), *b = descr_repr(PyArray_DESCR(o));
            if (a && b)
                PyErr_Format(PyExc_TypeError, "%s: cannot write the %U result into %s of dtype %U (same_kind casting)",
                             op, a, what, b);
            Py_XDECREF(a);
            Py_XDECREF(b);
        }
        Py_DECREF(rd);
        if (!ok)
            return -1;
    }
    *out = o;
    return 0;
}

/* ---- big outputs start on a 2 MiB boundary ----
 * NumPy's default allocator hands a big array the page glibc's mmap happened
 * to return, so its first and last up-to-2 MiB sit on 4 KiB pages and the
 * rest on huge pages placed off the array's start; an output written while it
 * is faulted in then costs more than one on whole huge pages (figures in
 * docs/performance.md, "Result placement").  So outputs of OUTPUT_ALIGN_MIN
 * bytes or more come from this allocator, which NumPy records on the array
 * and calls again to free it (NumPy >= 1.22): the array owns its data as
 * usual.  Each block is one malloc'd chunk with room to align inside it (a
 * header before the data keeps the chunk and the size), not posix_memalign,
 * whose split-off ends keep a freed block from being reused whole: with
 * glibc serving big blocks from its heap, repeated JVPs grew it by a block
 * per call.  Smaller outputs keep NumPy's allocator. */
#if defined(__linux__)
#include <sys/mman.h>
#define OUTPUT_ALIGN_MIN ((size_t)4 << 20) /* where NumPy starts asking for huge pages */

typedef struct {
    void *chunk;
    size_t size;
} output_header;

static void *output_malloc(void *ctx, size_t size)
{
    const size_t align = size >= OUTPUT_ALIGN_MIN ? (size_t)2 << 20 : 64;
    char *chunk, *p;
    (void)ctx;
    if (size > SIZE_MAX - align - sizeof(output_header) ||
        (chunk = malloc(size + align + sizeof(output_header))) == NULL)
        return NULL;
    p = chunk + ((align - ((uintptr_t)chunk + sizeof(output_header)) % align) % align) +
        sizeof(output_header);
    memcpy(p - sizeof(output_header), &(output_header){chunk, size}, sizeof(output_header));
#if defined(MADV_HUGEPAGE)
    if (size >= OUTPUT_ALIGN_MIN) /* advice, like NumPy's: failure is harmless */
        madvise(p, size & ~(size_t)4095, MADV_HUGEPAGE);
#endif
    return p;
}

static output_header output_header_of(void *p)
{
    output_header h;
    memcpy(&h, (char *)p - sizeof(output_header), sizeof(output_header));
    return h;
}

static void *output_calloc(void *ctx, size_t nelem, size_t elsize)
{
    void *p;
    if (elsize != 0 && nelem > SIZE_MAX / elsize)
        return NULL;
    if ((p = output_malloc(ctx, nelem * elsize)) != NULL)
        memset(p, 0, nelem * elsize);
    return p;
}

static void *output_realloc(void *ctx, void *p, size_t size)
{
    void *q;
    if (p == NULL)
        return output_malloc(ctx, size);
    if ((q = output_malloc(ctx, size)) != NULL) {
        const output_header h = output_header_of(p);
        memcpy(q, p, h.size < size ? h.size : size);
        free(h.chunk);
    }
    return q;
}

static void output_free(void *ctx, void *p, size_t size)
{
    (void)ctx, (void)size;
    if (p != NULL)
        free(output_header_of(p).chunk);
}

static PyDataMem_Handler output_handler = {
    "scanad_output_huge_aligned", 1,
    {NULL, output_malloc, output_calloc, output_realloc, output_free}};
static PyObject *output_handler_capsule;
#endif

static PyArrayObject *new_like(PyArrayObject *x, int typenum)
{
    PyArray_Descr *d = PyArray_DescrFromType(typenum);
    PyObject *was = NULL; /* the caller's handler, while ours is set */
    PyArrayObject *y;
#if defined(__linux__)
    if (output_handler_capsule != NULL &&
        (size_t)PyArray_SIZE(x) * (size_t)PyDataType_ELSIZE(d) >= OUTPUT_ALIGN_MIN &&
        (was = PyDataMem_SetHandler(output_handler_capsule)) == NULL) {
        Py_DECREF(d);
        return NULL;
    }
#endif
    y = (PyArrayObject *)PyArray_NewLikeArray(x, NPY_KEEPORDER, d, 0); /* steals d */
    if (was != NULL) {
        PyObject *ours = PyDataMem_SetHandler(was); /* back, even on failure */
        Py_DECREF(was);
        if (ours == NULL)
            Py_CLEAR(y);
        Py_XDECREF(ours);
    }
    return y;
}

/* Runs one kernel with the GIL released. */
static int run(scan_kernel k, const scan_split *split, int walk_back, PyArrayObject *const *ops,
               int nops, int lane_operand, int axis, int reverse, int inclusive,
               const segments_t *seg)
{
    scan_problem p;
    int64_t shape[SCAN_MAX_DIMS];
    int64_t strides[SCAN_MAX_OPERANDS][SCAN_MAX_DIMS];
    int rc;
    memset(&p, 0, sizeof(p));
    p.ndim = PyArray_NDIM(ops[lane_operand]);
    for (int d = 0; d < p.ndim; d++)
        shape[d] = PyArray_DIM(ops[lane_operand], d);
    p.shape = shape;
    p.axis = axis;
    p.noperands = nops;
    for (int i = 0; i < nops; i++) {
        if (ops[i] == NULL)
            continue;
        p.data[i] = PyArray_BYTES(ops[i]);
        for (int d = 0; d < p.ndim; d++)
            strides[i][d] = PyArray_STRIDE(ops[i], d);
        p.strides[i] = strides[i];
    }
    p.reverse = reverse;
    p.inclusive = inclusive;
    p.seg = seg->seg;
    p.nseg = seg->nseg;
    p.chunk_size = seg->chunk_size;
    p.lane_operand = lane_operand;
    p.split = split; /* the driver checks that it has a reduce */
    p.walk_back = walk_back;
    {
        const int nthreads = scan_get_num_threads();
        Py_BEGIN_ALLOW_THREADS
        rc = scan_execute(k, &p, nthreads);
        Py_END_ALLOW_THREADS
    }
    if (rc != 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int parse_op(PyObject *obj)
{
    long op = PyLong_AsLong(obj);
    if (op == -1 && PyErr_Occurred())
        return -1;
    if (op < 0 || op >= SCAN_NUM_OPS) {
        PyErr_Format(PyExc_ValueError, "unknown scan op %ld", op);
        return -1;
    }
    return (int)op;
}

/* scan(op, x, axis, reverse, inclusive, dtype, out, cu_seqlens, chunk_size, return_indices) */
static PyObject *py_scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int op, axis, reverse, inclusive, want_indices, typenum;
    const char *name;
    PyArrayObject *x = NULL, *xk = NULL, *y = NULL, *idx = NULL, *out_y = NULL, *out_i = NULL;
    PyObject *result = NULL;
    segments_t seg = {NULL, 0, 0};
    (void)self;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 10 positional arguments");
        return NULL;
    }
    if ((op = parse_op(args[0])) < 0)
        return NULL;
    name = OPS[op].name;
    if (parse_flag(args[3], &reverse) < 0 || parse_flag(args[4], &inclusive) < 0 ||
        parse_flag(args[9], &want_indices) < 0)
        return NULL;
    if ((x = as_array(args[1])) == NULL)
        return NULL;
    if ((typenum = result_typenum(op, PyArray_DESCR(x), args[5])) < 0)
        goto done;
    if (normalize_axis(name, args[2], &x, &axis) < 0)
        goto done;
    if ((xk = as_kernel_array(x, typenum)) == NULL)
        goto done;
    if (parse_segments(name, args[7], args[8], PyArray_DIM(xk, axis), &seg) < 0)
        goto done;
    if (args[6] != Py_None) {
        PyObject *o = args[6];
        if (want_indices) {
            if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 2) {
                PyErr_Format(PyExc_TypeError, "%s: with return_indices=True, out must be a tuple (values, indices)", name);
                goto done;
            }
            if (check_out(name, "out[0]", PyTuple_GET_ITEM(o, 0), xk, typenum, &out_y) < 0 ||
                check_out(name, "out[1]", PyTuple_GET_ITEM(o, 1), xk, NPY_INT64, &out_i) < 0)
                goto done;
            if (sized_typenum(PyArray_DESCR(out_i)) != NPY_INT64) {
                PyErr_Format(PyExc_TypeError, "%s: out[1] (the indices) must be an int64 array", name);
                goto done;
            }
        } else if (check_out(name, "out", o, xk, typenum, &out_y) < 0) {
            goto done;
        }
    }
    {
        scan_kernel k = table->k[op][scan_dtype_of(typenum)][MODE_FORWARD];
        PyArrayObject *inputs[1] = {xk};
        if (k == NULL) {
            raise_bad_dtype(name, "x", PyArray_DESCR(xk), "of a dtype this op supports");
            goto done;
        }
        if (out_y != NULL && out_usable_directly(out_y, typenum, inputs, 1)) {
            Py_INCREF(out_y);
            y = out_y;
        } else if ((y = new_like(xk, typenum)) == NULL) {
            goto done;
        }
        if (want_indices) {
            if (out_i != NULL && out_usable_directly(out_i, NPY_INT64, inputs, 1)) {
                Py_INCREF(out_i);
                idx = out_i;
            } else if ((idx = new_like(xk, NPY_INT64)) == NULL) {
                goto done;
            }
        }
        {
            PyArrayObject *ops[3] = {xk, y, idx};
            if (run(k, &table->split[op][scan_dtype_of(typenum)], table->walks_back[op][MODE_FORWARD],
                    ops, want_indices ? 3 : 2, 1, axis, reverse, inclusive, &seg) < 0)
                goto done;
        }
    }
    if (out_y != NULL && y != out_y) {
        if (PyArray_CopyInto(out_y, y) < 0)
            goto done;
        Py_INCREF(out_y);
        Py_SETREF(y, out_y);
    }
    if (out_i != NULL && idx != out_i) {
        if (PyArray_CopyInto(out_i, idx) < 0)
            goto done;
        Py_INCREF(out_i);
        Py_SETREF(idx, out_i);
    }
    if (want_indices)
        result = PyTuple_Pack(2, (PyObject *)y, (PyObject *)idx);
    else {
        result = (PyObject *)y;
        Py_INCREF(result);
    }
done:
    free(seg.seg);
    Py_XDECREF(x);
    Py_XDECREF(xk);
    Py_XDECREF(y);
    Py_XDECREF(idx);
    return result;
}

/* x for a derivative: floating or complex only (docs/derivatives.md). */
static PyArrayObject *derivative_primal(int op, const char *mode, PyObject *obj, int *typenum)
{
    PyArrayObject *x = as_array(obj), *xk;
    char kind;
    if (x == NULL)
        return NULL;
    kind = PyArray_DESCR(x)->kind;
    if (kind != 'f' && kind != 'c') {
        PyObject *s = descr_repr(PyArray_DESCR(x));
        if (s != NULL)
            PyErr_Format(PyExc_TypeError,
                         "%s of %s: x must be a floating or complex array (derivatives of integer "
                         "scans are not defined); got dtype %U",
                         mode, OPS[op].name, s);
        Py_XDECREF(s);
        Py_DECREF(x);
        return NULL;
    }
    if ((*typenum = result_typenum(op, PyArray_DESCR(x), Py_None)) < 0) {
        Py_DECREF(x);
        return NULL;
    }
    xk = as_kernel_array(x, *typenum);
    Py_DECREF(x);
    return xk;
}

/* A tangent or cotangent: cast (same_kind) to the primal dtype, shape checked. */
static PyArrayObject *derivative_operand(int op, const char *mode, const char *what, PyObject *obj,
                                         PyArrayObject *like, int typenum)
{
    PyArrayObject *a = as_array(obj), *ak;
    PyArray_Descr *want;
    if (a == NULL)
        return NULL;
    if (PyArray_NDIM(a) != PyArray_NDIM(like) ||
        !PyArray_CompareLists(PyArray_DIMS(a), PyArray_DIMS(like), PyArray_NDIM(like))) {
        PyObject *got = PyObject_GetAttrString((PyObject *)a, "shape");
        PyObject *exp = PyObject_GetAttrString((PyObject *)like, "shape");
        if (got && exp)
            PyErr_Format(PyExc_ValueError, "%s of %s: %s must have shape %R; got %R", mode, OPS[op].name, what,
                         exp, got);
        Py_XDECREF(got);
        Py_XDECREF(exp);
        Py_DECREF(a);
        return NULL;
    }
    want = PyArray_DescrFromType(typenum);
    if (!PyArray_CanCastTypeTo(PyArray_DESCR(a), want, NPY_SAME_KIND_CASTING)) {
        PyObject *s = descr_repr(PyArray_DESCR(a)), *t = descr_repr(want);
        if (s && t)
            PyErr_Format(PyExc_TypeError, "%s of %s: %s of dtype %U cannot be cast to the primal dtype %U",
                         mode, OPS[op].name, what, s, t);
        Py_XDECREF(s);
        Py_XDECREF(t);
        Py_DECREF(want);
        Py_DECREF(a);
        return NULL;
    }
    Py_DECREF(want);
    ak = as_kernel_array(a, typenum);
    Py_DECREF(a);
    return ak;
}

/* jvp(op, x, t, axis, reverse, inclusive, cu_seqlens, chunk_size) -> (y, y_dot) */
static PyObject *py_jvp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int op, axis, reverse, inclusive, typenum;
    PyArrayObject *x = NULL, *t = NULL, *y = NULL, *yd = NULL;
    PyObject *result = NULL;
    segments_t seg = {NULL, 0, 0};
    scan_kernel k;
    (void)self;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "jvp() takes 8 positional arguments");
        return NULL;
    }
    if ((op = parse_op(args[0])) < 0 || parse_flag(args[4], &reverse) < 0 || parse_flag(args[5], &inclusive) < 0)
        return NULL;
    if ((x = derivative_primal(op, "jvp", args[1], &typenum)) == NULL)
        return NULL;
    if ((t = derivative_operand(op, "jvp", "the tangent t", args[2], x, typenum)) == NULL)
        goto done;
    if (normalize_axis(OPS[op].name, args[3], &x, &axis) < 0)
        goto done;
    if (args[3] == Py_None || PyArray_NDIM(t) != PyArray_NDIM(x)) { /* flattened with x */
        PyArrayObject *flat = (PyArrayObject *)PyArray_Ravel(t, NPY_CORDER);
        if (flat == NULL)
            goto done;
        Py_SETREF(t, flat);
    }
    if (parse_segments(OPS[op].name, args[6], args[7], PyArray_DIM(x, axis), &seg) < 0)
        goto done;
    k = table->k[op][scan_dtype_of(typenum)][MODE_JVP];
    if (k == NULL) {
        raise_bad_dtype(OPS[op].name, "x", PyArray_DESCR(x), "of a dtype whose JVP is defined");
        goto done;
    }
    if ((y = new_like(x, typenum)) == NULL || (yd = new_like(x, typenum)) == NULL)
        goto done;
    {
        PyArrayObject *ops[4] = {x, t, y, yd};
        if (run(k, NULL, table->walks_back[op][MODE_JVP], ops, 4, 3, axis, reverse, inclusive, &seg) < 0)
            goto done;
    }
    result = PyTuple_Pack(2, (PyObject *)y, (PyObject *)yd);
done:
    free(seg.seg);
    Py_XDECREF(x);
    Py_XDECREF(t);
    Py_XDECREF(y);
    Py_XDECREF(yd);
    return result;
}

/* vjp(op, x, y, g, axis, reverse, inclusive, cu_seqlens, chunk_size) -> x_bar
 * y is the forward output for the same arguments (the pullback keeps it);
 * with axis None, y and g are flat and x_bar takes x's shape. */
static PyObject *py_vjp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int op, axis, reverse, inclusive, typenum;
    PyArrayObject *x = NULL, *xflat = NULL, *y = NULL, *g = NULL, *xb = NULL;
    PyObject *result = NULL;
    segments_t seg = {NULL, 0, 0};
    scan_kernel k;
    (void)self;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "vjp() takes 9 positional arguments");
        return NULL;
    }
    if ((op = parse_op(args[0])) < 0 || parse_flag(args[5], &reverse) < 0 || parse_flag(args[6], &inclusive) < 0)
        return NULL;
    if ((x = derivative_primal(op, "vjp", args[1], &typenum)) == NULL)
        return NULL;
    xflat = x;
    Py_INCREF(xflat);
    if (normalize_axis(OPS[op].name, args[4], &xflat, &axis) < 0)
        goto done;
    if ((y = derivative_operand(op, "vjp", "the primal output y", args[2], xflat, typenum)) == NULL)
        goto done;
    if ((g = derivative_operand(op, "vjp", "the cotangent g", args[3], xflat, typenum)) == NULL)
        goto done;
    if (parse_segments(OPS[op].name, args[7], args[8], PyArray_DIM(xflat, axis), &seg) < 0)
        goto done;
    k = table->k[op][scan_dtype_of(typenum)][MODE_VJP];
    if (k == NULL) {
        raise_bad_dtype(OPS[op].name, "x", PyArray_DESCR(x), "of a dtype whose VJP is defined");
        goto done;
    }
    if ((xb = new_like(xflat, typenum)) == NULL)
        goto done;
    {
        PyArrayObject *ops[4] = {xflat, y, g, xb};
        if (run(k, NULL, table->walks_back[op][MODE_VJP], ops, 4, 3, axis, reverse, inclusive, &seg) < 0)
            goto done;
    }
    /* with axis None x_bar was computed flat: x's shape again, a view unless
     * x was 1-D already (then x_bar itself, owning its data) */
    if (PyArray_NDIM(x) != PyArray_NDIM(xb) ||
        !PyArray_CompareLists(PyArray_DIMS(x), PyArray_DIMS(xb), PyArray_NDIM(x))) {
        PyArray_Dims shape = {PyArray_DIMS(x), PyArray_NDIM(x)};
        result = PyArray_Newshape(xb, &shape, NPY_CORDER);
    } else {
        result = (PyObject *)xb;
        Py_INCREF(result);
    }
done:
    free(seg.seg);
    Py_XDECREF(x);
    Py_XDECREF(xflat);
    Py_XDECREF(y);
    Py_XDECREF(g);
    Py_XDECREF(xb);
    return result;
}

/* x_bar or x_bar_dot, computed flat when axis is None: x's shape again (a
 * view), or the array itself when it has that shape already. */
static PyObject *in_shape_of(PyArrayObject *x, PyArrayObject *a)
{
    if (PyArray_NDIM(x) != PyArray_NDIM(a) ||
        !PyArray_CompareLists(PyArray_DIMS(x), PyArray_DIMS(a), PyArray_NDIM(x))) {
        PyArray_Dims shape = {PyArray_DIMS(x), PyArray_NDIM(x)};
        return PyArray_Newshape(a, &shape, NPY_CORDER);
    }
    Py_INCREF(a);
    return (PyObject *)a;
}

/* vjp_jvp(op, x, t, g, g_dot, axis, reverse, inclusive, cu_seqlens, chunk_size)
 *   -> (x_bar, x_bar_dot)
 * The pullback and its JVP in direction (t, g_dot) (docs/derivatives.md,
 * "Second order"); g_dot None is zero and never read.  t has x's shape, g
 * and g_dot y's (flat when axis is None); results have x's shape and dtype. */
static PyObject *py_vjp_jvp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int op, axis, reverse, inclusive, typenum;
    PyArrayObject *x = NULL, *xflat = NULL, *t = NULL, *g = NULL, *gd = NULL, *xb = NULL, *xbd = NULL;
    PyObject *result = NULL, *xb_out = NULL, *xbd_out = NULL;
    segments_t seg = {NULL, 0, 0};
    scan_kernel k;
    (void)self;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "vjp_jvp() takes 10 positional arguments");
        return NULL;
    }
    if ((op = parse_op(args[0])) < 0 || parse_flag(args[6], &reverse) < 0 || parse_flag(args[7], &inclusive) < 0)
        return NULL;
    if ((x = derivative_primal(op, "vjp_jvp", args[1], &typenum)) == NULL)
        return NULL;
    if ((t = derivative_operand(op, "vjp_jvp", "the tangent t", args[2], x, typenum)) == NULL)
        goto done;
    xflat = x;
    Py_INCREF(xflat);
    if (normalize_axis(OPS[op].name, args[5], &xflat, &axis) < 0)
        goto done;
    if (PyArray_NDIM(t) != PyArray_NDIM(xflat)) { /* flattened with x */
        PyArrayObject *flat = (PyArrayObject *)PyArray_Ravel(t, NPY_CORDER);
        if (flat == NULL)
            goto done;
        Py_SETREF(t, flat);
    }
    if ((g = derivative_operand(op, "vjp_jvp", "the cotangent g", args[3], xflat, typenum)) == NULL)
        goto done;
    if (args[4] != Py_None &&
        (gd = derivative_operand(op, "vjp_jvp", "the cotangent's tangent g_dot", args[4], xflat, typenum)) == NULL)
        goto done;
    if (parse_segments(OPS[op].name, args[8], args[9], PyArray_DIM(xflat, axis), &seg) < 0)
        goto done;
    k = table->k[op][scan_dtype_of(typenum)][MODE_VJP_JVP];
    if (k == NULL) {
        raise_bad_dtype(OPS[op].name, "x", PyArray_DESCR(x), "of a dtype whose second order is defined");
        goto done;
    }
    if ((xb = new_like(xflat, typenum)) == NULL || (xbd = new_like(xflat, typenum)) == NULL)
        goto done;
    {
        PyArrayObject *ops[6] = {xflat, t, g, gd, xb, xbd};
        if (run(k, NULL, table->walks_back[op][MODE_VJP_JVP], ops, 6, 4, axis, reverse, inclusive, &seg) < 0)
            goto done;
    }
    if ((xb_out = in_shape_of(x, xb)) == NULL || (xbd_out = in_shape_of(x, xbd)) == NULL)
        goto done;
    result = PyTuple_Pack(2, xb_out, xbd_out);
done:
    free(seg.seg);
    Py_XDECREF(x);
    Py_XDECREF(xflat);
    Py_XDECREF(t);
    Py_XDECREF(g);
    Py_XDECREF(gd);
    Py_XDECREF(xb);
    Py_XDECREF(xbd);
    Py_XDECREF(xb_out);
    Py_XDECREF(xbd_out);
    return result;
}

/* The table SCANAD_ISA names (unset or empty: the best the host runs);
 * SCANAD_FORCE_BASELINE=1 (set, not empty, not 0) is the older spelling of
 * SCANAD_ISA=baseline.  NULL with ImportError set if the name is unknown, the
 * host cannot run it, or the two variables disagree: a table asked for and
 * silently not used would make a test run or a benchmark mean something else. */
static const scan_table *choose_table(void)
{
    const char *isa = getenv("SCANAD_ISA"), *force = getenv("SCANAD_FORCE_BASELINE");
    const scan_table *t;
    char err[320];
    if (isa != NULL && isa[0] == '\0')
        isa = NULL;
    if (force != NULL && force[0] != '\0' && strcmp(force, "0") != 0) {
        if (isa != NULL && strcmp(isa, "baseline") != 0) {
            PyErr_Format(PyExc_ImportError,
                         "SCANAD_FORCE_BASELINE=%.40s asks for the baseline kernels but "
                         "SCANAD_ISA=%.40s; unset one of them",
                         force, isa);
            return NULL;
        }
        isa = "baseline";
    }
    if ((t = scan_select_table(isa, err, sizeof err)) == NULL)
        PyErr_Format(PyExc_ImportError, "scanad: %s", err);
    return t;
}

/* the names of the tables this host can run, baseline first and best last */
static PyObject *isas_supported(void)
{
    PyObject *list = PyList_New(0);
    for (int i = 0; list != NULL && i < SCAN_NUM_ISAS; i++) {
        if (!scan_isa_supported(i, NULL, 0))
            continue;
        PyObject *name = PyUnicode_FromString(scan_isa_name(i));
        if (name == NULL || PyList_Append(list, name) < 0)
            Py_CLEAR(list);
        Py_XDECREF(name);
    }
    return list;
}

static PyObject *py_build_info(PyObject *self, PyObject *noargs)
{
    PyObject *supported = isas_supported();
    (void)self;
    (void)noargs;
    if (supported == NULL)
        return NULL;
    return Py_BuildValue("{s:s,s:N,s:s,s:i,s:s,s:s}", "isa", table->isa, "isas_supported", supported,
                         "cpu", scan_cpu_features(),
                         "num_threads", scan_get_num_threads(), "compiler",
#if defined(__clang__)
                         "clang " __clang_version__,
#elif defined(__GNUC__)
                         "gcc " __VERSION__,
#else
                         "unknown",
#endif
                         "numpy_headers", NPY_FEATURE_VERSION_STRING);
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg)
{
    long n;
    (void)self;
    if (PyBool_Check(arg) || !PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "set_num_threads: n must be a positive integer; got %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 1 || n > 256) {
        PyErr_Format(PyExc_ValueError, "set_num_threads: n must be between 1 and 256; got %ld", n);
        return NULL;
    }
    scan_set_num_threads((int)n);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyLong_FromLong(scan_get_num_threads());
}

/* The op table as Python sees it: (name, rule, identity) per op index. */
static PyObject *py_ops(PyObject *self, PyObject *noargs)
{
    static const char *rules[] = {"accumulate", "order", "log"};
    PyObject *t = PyTuple_New(SCAN_NUM_OPS);
    (void)self;
    (void)noargs;
    if (t == NULL)
        return NULL;
    for (int i = 0; i < SCAN_NUM_OPS; i++) {
        PyObject *row = Py_BuildValue("(iss s)", i, OPS[i].name, rules[OPS[i].rule], OPS[i].identity);
        if (row == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, row);
    }
    return t;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))py_scan, METH_FASTCALL,
     "scan(op, x, axis, reverse, inclusive, dtype, out, cu_seqlens, chunk_size, return_indices)"},
    {"jvp", (PyCFunction)(void (*)(void))py_jvp, METH_FASTCALL,
     "jvp(op, x, t, axis, reverse, inclusive, cu_seqlens, chunk_size) -> (y, y_dot)"},
    {"vjp", (PyCFunction)(void (*)(void))py_vjp, METH_FASTCALL,
     "vjp(op, x, y, g, axis, reverse, inclusive, cu_seqlens, chunk_size) -> x_bar"},
    {"vjp_jvp", (PyCFunction)(void (*)(void))py_vjp_jvp, METH_FASTCALL,
     "vjp_jvp(op, x, t, g, g_dot, axis, reverse, inclusive, cu_seqlens, chunk_size) -> (x_bar, x_bar_dot)"},
    {"build_info", py_build_info, METH_NOARGS, "the kernel variant chosen at import and the build"},
    {"set_num_threads", py_set_num_threads, METH_O, "set the number of kernel threads"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "the number of kernel threads"},
    {"ops", py_ops, METH_NOARGS, "the op table: (index, name, dtype rule, identity) per op"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_scanad", "scanad's C kernels", -1, methods,
                                       NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__scanad(void)
{
    PyObject *m;
    import_array();
    if ((table = choose_table()) == NULL)
        return NULL;
    m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
#if defined(__linux__)
    if ((output_handler_capsule = PyCapsule_New(&output_handler, "mem_handler", NULL)) == NULL) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    {
        PyObject *exc = PyImport_ImportModule("numpy.exceptions");
        if (exc == NULL) {
            PyErr_Clear();
            exc = PyImport_ImportModule("numpy");
        }
        if (exc != NULL) {
            axis_error = PyObject_GetAttrString(exc, "AxisError");
            Py_DECREF(exc);
        }
        if (axis_error == NULL)
            PyErr_Clear();
    }
    return m;
}
