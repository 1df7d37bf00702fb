/* binding_args.c: the binding's argument checks: op numbers, dtype rules
 * (docs/semantics.md, "dtypes"), axis, flags, cu_seqlens / chunk_size and
 * the operands of the derivatives.  Every check raises TypeError or
 * ValueError naming the argument and what it must be. */
#include "binding.h"

#include <stdlib.h>
#include <string.h>

PyObject *scanad_axis_error = NULL; /* numpy's AxisError (a ValueError), set at import */

/* ---- the rows of scan_matrix.h as the binding needs them ---- */
#define OP_INFO_(E, prefix, name, rule, identity, shape, a) \
    [SCAN_##E] = {name, RULE_##rule, identity, SHAPE_##shape},
const op_info OPS[SCAN_NUM_OPS] = {SCAN_OPS(OP_INFO_, )};

typedef struct {
    int typenum;
    char kind;
    int size;
    const char *name;
} dtype_info;
#define DTYPE_INFO_(E, sfx, npy, name, kind, size, a) [DT_##E] = {NPY_##npy, kind, size, name},
static const dtype_info DTYPES[SCAN_NUM_DTYPES] = {SCAN_DTYPES(DTYPE_INFO_, )};

const char *scan_dtype_name(int dt) { return DTYPES[dt].name; }
int scan_dtype_typenum(int dt) { return DTYPES[dt].typenum; }

int scan_dtype_of(int typenum)
{
    for (int dt = 0; dt < SCAN_NUM_DTYPES; dt++)
        if (DTYPES[dt].typenum == typenum)
            return dt;
    return -1;
}

int sized_typenum(PyArray_Descr *d)
{
    const int size = (int)PyDataType_ELSIZE(d);
    for (int dt = 0; dt < SCAN_NUM_DTYPES; dt++)
        if (DTYPES[dt].kind == d->kind && DTYPES[dt].size == size)
            return DTYPES[dt].typenum;
    return -1;
}

PyObject *descr_repr(PyArray_Descr *d) { return PyObject_Str((PyObject *)d); }

void raise_bad_dtype(const char *op, const char *arg, PyArray_Descr *d, const char *expected)
{
    PyObject *s = descr_repr(d);
    if (s != NULL) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be %s; got dtype %U", op, arg, expected, s);
        Py_DECREF(s);
    }
}

/* The dtype the op computes in and returns, from x's dtype (and dtype=). */
int result_typenum(int op, PyArray_Descr *xd, PyObject *dtype_obj)
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
            if (!PyArray_DescrConverter(dtype_obj, &want)) {
                if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                    PyErr_Clear();
                    PyErr_Format(PyExc_TypeError, "%s: dtype must be a numeric dtype or None; cannot "
                                 "interpret %.100R as a dtype", name, dtype_obj);
                }
                return -1;
            }
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
PyArrayObject *as_array(PyObject *obj)
{
    return (PyArrayObject *)PyArray_FromAny(obj, NULL, 0, 0, 0, NULL);
}

/* x cast to typenum, native byte order and aligned, any strides (no copy when
 * it already is). */
PyArrayObject *as_kernel_array(PyArrayObject *x, int typenum)
{
    PyArray_Descr *d = PyArray_DescrFromType(typenum);
    if (d == NULL)
        return NULL;
    return (PyArrayObject *)PyArray_FromAny((PyObject *)x, d, 0, 0,
                                            NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED | NPY_ARRAY_FORCECAST,
                                            NULL);
}

/* obj as a Python int (a new reference), or NULL with a TypeError naming the
 * argument for a bool, a non-integer or an array of more than one element
 * (which passes PyIndex_Check but does not convert). */
static PyObject *integer_argument(const char *op, const char *what, const char *expected,
                                  PyObject *obj)
{
    PyObject *index = PyBool_Check(obj) ? NULL : PyNumber_Index(obj);
    if (index == NULL && (PyBool_Check(obj) || PyErr_ExceptionMatches(PyExc_TypeError))) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: %s must be %s; got %.100s", op, what, expected,
                     Py_TYPE(obj)->tp_name);
    }
    return index;
}

/* axis None: flatten in C order; a 0-d array scans as shape (1,) as in NumPy. */
int normalize_axis(const char *op, PyObject *axis_obj, PyArrayObject **x, int *axis)
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
    {
        PyObject *index = integer_argument(op, "axis", "an integer or None", axis_obj);
        Py_ssize_t a;
        const int nd = PyArray_NDIM(*x);
        if (index == NULL)
            return -1;
        a = PyNumber_AsSsize_t(index, NULL);
        Py_DECREF(index);
        if (a < -nd || a >= nd) {
            PyErr_Format(scanad_axis_error ? scanad_axis_error : PyExc_ValueError,
                         "%s: axis %zd is out of bounds for array of dimension %d", op, a, nd);
            return -1;
        }
        *axis = (int)(a < 0 ? a + nd : a);
    }
    return 0;
}

int parse_flag(PyObject *obj, int *out)
{
    int v = PyObject_IsTrue(obj);
    if (v < 0)
        return -1;
    *out = v;
    return 0;
}

int parse_segments(const char *op, PyObject *cu_obj, PyObject *chunk_obj, int64_t n,
                   segments_t *out)
{
    out->seg = NULL;
    out->nseg = 0;
    out->chunk_size = 0;
    if (chunk_obj != Py_None) {
        PyObject *idx = integer_argument(op, "chunk_size", "a positive integer or None", chunk_obj);
        long long c;
        if (idx == NULL)
            return -1;
        c = PyLong_AsLongLong(idx);
        Py_DECREF(idx);
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
        /* [] converts to float64: it is the empty boundary list, not a dtype error */
        if (PyArray_SIZE(cu) == 0) {
            PyErr_Format(PyExc_ValueError, "%s: cu_seqlens must hold at least one boundary (0); "
                         "got an empty array", op);
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
            if (v[0] != 0)
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
                if (bad > 0)
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

int parse_op(PyObject *obj)
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

/* x for a derivative: floating or complex only (docs/derivatives.md). */
PyArrayObject *derivative_primal(int op, const char *mode, PyObject *obj, int *typenum)
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
PyArrayObject *derivative_operand(int op, const char *mode, const char *what, PyObject *obj,
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
