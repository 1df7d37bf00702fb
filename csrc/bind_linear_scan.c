/* bind_linear_scan.c: the entry point of linear_scan (docs/semantics.md), the
 * recurrence h_t = a_t h_{t-1} + b_t: broadcasting of a against b, h0 per
 * line or per segment, the final state, out=.  The kernels are in
 * kernels/ops/linear_scan.h. */
#include "binding.h" /* Python.h first */

#include <stdlib.h>
#include <string.h>

/* The strides that lay x (right-aligned) over the nd dims of shape, 0 where
 * x has 1 or lacks the dim; -1 and a ValueError naming `what` if it does
 * not broadcast. */
static int ls_broadcast_strides(const char *what, PyArrayObject *x, int nd, const npy_intp *shape,
                                npy_intp *strides)
{
    const int off = nd - PyArray_NDIM(x);
    int bad = off < 0;
    for (int d = 0; d < nd && !bad; d++) {
        const npy_intp xd = d < off ? 1 : PyArray_DIM(x, d - off);
        if (d >= off && xd == shape[d])
            strides[d] = PyArray_STRIDE(x, d - off);
        else if (xd == 1)
            strides[d] = 0;
        else
            bad = 1;
    }
    if (bad) {
        PyObject *got = PyObject_GetAttrString((PyObject *)x, "shape");
        PyObject *want = PyTuple_New(nd);
        if (got != NULL && want != NULL) {
            for (int d = 0; d < nd; d++)
                PyTuple_SET_ITEM(want, d, PyLong_FromSsize_t(shape[d]));
            PyErr_Format(PyExc_ValueError, "linear_scan: %s with shape %R does not broadcast to %R", what,
                         got, want);
        }
        Py_XDECREF(got);
        Py_XDECREF(want);
        return -1;
    }
    return 0;
}

/* a read-only view of x with the given shape and strides (x stays its base) */
static PyArrayObject *ls_view(PyArrayObject *x, int nd, const npy_intp *shape, const npy_intp *strides)
{
    PyArray_Descr *d = PyArray_DESCR(x);
    PyArrayObject *v;
    Py_INCREF(d);
    v = (PyArrayObject *)PyArray_NewFromDescr(&PyArray_Type, d, nd, (npy_intp *)shape, (npy_intp *)strides,
                                              PyArray_BYTES(x), 0, NULL);
    if (v == NULL)
        return NULL;
    Py_INCREF(x);
    if (PyArray_SetBaseObject(v, (PyObject *)x) < 0) {
        Py_DECREF(v);
        return NULL;
    }
    return v;
}

/* x broadcast to shape (ValueError naming what) */
static PyArrayObject *ls_broadcast(const char *what, PyArrayObject *x, int nd, const npy_intp *shape)
{
    npy_intp strides[NPY_MAXDIMS];
    if (ls_broadcast_strides(what, x, nd, shape, strides) < 0)
        return NULL;
    return ls_view(x, nd, shape, strides);
}

/* obj as an array of the kernel dtype typenum */
static PyArrayObject *ls_operand(PyObject *obj, int typenum)
{
    PyArrayObject *x = as_array(obj), *k;
    if (x == NULL)
        return NULL;
    k = as_kernel_array(x, typenum);
    Py_DECREF(x);
    return k;
}

/* linear_scan(a, b, h0, axis, reverse, inclusive, log_a, return_final, dtype, out,
 *             cu_seqlens, chunk_size) -> h or (h, h_final); dtype is the result
 * dtype, resolved by the caller (np.result_type with NumPy's scalar rules). */
PyObject *py_linear_scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    const char *name = "linear_scan";
    int axis = 0, reverse, inclusive, lg, want_final, typenum, nd, dt;
    PyArrayObject *a = NULL, *b = NULL, *h0 = NULL, *av = NULL, *bv = NULL, *h = NULL, *out = NULL;
    PyArrayObject *hf = NULL, *h0v = NULL;
    PyObject *result = NULL;
    segments_t seg = {NULL, 0, 0};
    npy_intp shape[NPY_MAXDIMS], fshape[NPY_MAXDIMS];
    (void)self;
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "linear_scan() takes 12 positional arguments");
        return NULL;
    }
    if (parse_flag(args[4], &reverse) < 0 || parse_flag(args[5], &inclusive) < 0 ||
        parse_flag(args[6], &lg) < 0 || parse_flag(args[7], &want_final) < 0)
        return NULL;
    {
        PyArray_Descr *want = NULL;
        if (!PyArray_DescrConverter(args[8], &want))
            return NULL;
        typenum = sized_typenum(want);
        dt = typenum < 0 ? -1 : scan_dtype_of(typenum);
        if (linear_cells(dt) == NULL) {
            raise_bad_dtype(name, "dtype", want, "float16/32/64 or complex64/128");
            Py_DECREF(want);
            return NULL;
        }
        Py_DECREF(want);
    }
    if ((a = ls_operand(args[0], typenum)) == NULL || (b = ls_operand(args[1], typenum)) == NULL)
        goto done;
    if (args[2] != Py_None && (h0 = ls_operand(args[2], typenum)) == NULL)
        goto done;
    /* the broadcast shape of a and b */
    nd = PyArray_NDIM(a) > PyArray_NDIM(b) ? PyArray_NDIM(a) : PyArray_NDIM(b);
    for (int d = 0; d < nd; d++) {
        const int da = d - (nd - PyArray_NDIM(a)), db = d - (nd - PyArray_NDIM(b));
        const npy_intp sa = da >= 0 ? PyArray_DIM(a, da) : 1, sb = db >= 0 ? PyArray_DIM(b, db) : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            PyObject *ga = PyObject_GetAttrString((PyObject *)a, "shape");
            PyObject *gb = PyObject_GetAttrString((PyObject *)b, "shape");
            if (ga != NULL && gb != NULL)
                PyErr_Format(PyExc_ValueError, "linear_scan: a with shape %R does not broadcast against b with shape %R",
                             ga, gb);
            Py_XDECREF(ga);
            Py_XDECREF(gb);
            goto done;
        }
        shape[d] = sa == 1 ? sb : sa;
    }
    if ((av = ls_broadcast("a", a, nd, shape)) == NULL || (bv = ls_broadcast("b", b, nd, shape)) == NULL)
        goto done;
    if (args[3] == Py_None || nd == 0) {
        /* flatten the broadcast operands in C order (a constant a stays a
         * zero stride: no copy) */
        npy_intp n = 1, zero = 0;
        for (int d = 0; d < nd; d++)
            n *= shape[d];
        for (int k = 0; k < 2; k++) {
            PyArrayObject **v = k == 0 ? &av : &bv, *src = k == 0 ? a : b, *flat;
            if (PyArray_SIZE(src) == 1 && n > 0)
                flat = ls_view(src, 1, &n, &zero);
            else
                flat = (PyArrayObject *)PyArray_Ravel(*v, NPY_CORDER);
            if (flat == NULL)
                goto done;
            Py_SETREF(*v, flat);
        }
        nd = 1;
        shape[0] = n;
        axis = 0;
    }
    if (args[3] != Py_None) {
        PyArrayObject *probe = bv;
        Py_INCREF(probe);
        if (normalize_axis(name, args[3], &probe, &axis) < 0) {
            Py_DECREF(probe);
            goto done;
        }
        Py_DECREF(probe);
    }
    if (parse_segments(name, args[10], args[11], shape[axis], &seg) < 0)
        goto done;
    /* the final state's shape: the result's without the axis, after one
     * entry per segment under cu_seqlens */
    {
        int f = 0;
        if (seg.seg != NULL)
            fshape[f++] = seg.nseg;
        for (int d = 0; d < nd; d++)
            if (d != axis)
                fshape[f++] = shape[d];
        /* h0 over the final state's shape; under cu_seqlens a scalar h0 is
         * the same for every segment */
        if (h0 != NULL) {
            if (seg.seg != NULL && PyArray_NDIM(h0) == 0)
                h0v = ls_broadcast("h0", h0, f, fshape);
            else if (seg.seg != NULL && PyArray_NDIM(h0) != f) {
                PyErr_Format(PyExc_ValueError,
                             "linear_scan: with cu_seqlens, h0 must be a scalar or have %d dimensions "
                             "(one entry per segment, then the result's shape without the axis); got %d",
                             f, PyArray_NDIM(h0));
                goto done;
            } else
                h0v = ls_broadcast("h0", h0, f, fshape);
            if (h0v == NULL)
                goto done;
        }
        if (want_final) {
            PyArray_Descr *d = PyArray_DescrFromType(typenum);
            hf = (PyArrayObject *)PyArray_Zeros(f, fshape, d, 0); /* steals d */
            if (hf == NULL)
                goto done;
            /* an empty segment (or axis) keeps h0 */
            if (h0v != NULL && PyArray_CopyInto(hf, h0v) < 0)
                goto done;
        }
    }
    if (args[9] != Py_None) {
        PyArrayObject *inputs[2] = {av, bv};
        if (check_out(name, "out", args[9], bv, typenum, &out) < 0)
            goto done;
        if (out_usable_directly(out, typenum, inputs, 2) &&
            (h0v == NULL || out_usable_directly(out, typenum, &h0v, 1))) {
            Py_INCREF(out);
            h = out;
        }
    }
    if (h == NULL) {
        PyArray_Descr *d = PyArray_DescrFromType(typenum);
        h = (PyArrayObject *)PyArray_Empty(nd, shape, d, 0); /* steals d */
        if (h == NULL)
            goto done;
    }
    {
        scan_problem p;
        int64_t pshape[SCAN_MAX_DIMS], strides[SCAN_MAX_OPERANDS][SCAN_MAX_DIMS];
        PyArrayObject *ops[3] = {av, bv, h};
        int rc;
        memset(&p, 0, sizeof(p));
        p.ndim = nd;
        for (int d = 0; d < nd; d++)
            pshape[d] = shape[d];
        p.shape = pshape;
        p.axis = axis;
        p.noperands = 5;
        for (int k = 0; k < 3; k++) {
            p.data[k] = PyArray_BYTES(ops[k]);
            for (int d = 0; d < nd; d++)
                strides[k][d] = PyArray_STRIDE(ops[k], d);
            p.strides[k] = strides[k];
        }
        /* h0 and h_final: their dims spread over the result's, the axis at
         * stride 0, the segment dim as seg_stride */
        for (int k = 3; k < 5; k++) {
            PyArrayObject *s = k == 3 ? h0v : hf;
            int f = seg.seg != NULL;
            if (s == NULL)
                continue;
            p.data[k] = PyArray_BYTES(s);
            for (int d = 0; d < nd; d++)
                strides[k][d] = d == axis ? 0 : PyArray_STRIDE(s, f++);
            p.strides[k] = strides[k];
            p.seg_stride[k] = seg.seg != NULL ? PyArray_STRIDE(s, 0) : 0;
        }
        p.reverse = reverse;
        p.inclusive = inclusive;
        p.seg = seg.seg;
        p.nseg = seg.nseg;
        p.chunk_size = seg.chunk_size;
        p.lane_operand = 2;
        p.split = &linear_cells(dt)[lg].split;
        {
            const int nthreads = scan_get_num_threads();
            Py_BEGIN_ALLOW_THREADS
            rc = scan_execute(linear_cells(dt)[lg].kernel, &p, nthreads);
            Py_END_ALLOW_THREADS
        }
        if (rc != 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    if (out != NULL && h != out) {
        if (PyArray_CopyInto(out, h) < 0)
            goto done;
        Py_INCREF(out);
        Py_SETREF(h, out);
    }
    if (want_final)
        result = PyTuple_Pack(2, (PyObject *)h, (PyObject *)hf);
    else {
        result = (PyObject *)h;
        Py_INCREF(result);
    }
done:
    free(seg.seg);
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(h0);
    Py_XDECREF(av);
    Py_XDECREF(bv);
    Py_XDECREF(h0v);
    Py_XDECREF(h);
    Py_XDECREF(hf);
    return result;
}
