/* bind_linear_scan.c: the entry points of linear_scan (docs/semantics.md), the
 * recurrence h_t = a_t h_{t-1} + b_t, and of its JVP and VJP: broadcasting of
 * a against b, h0 per line or per segment, the final state, out=.  The
 * kernels are in kernels/ops/linear_scan.h. */
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

/* What the entry points share: the result dtype, the broadcast shape of the
 * rows, the axis, the segments and the shape of a state (h0, h_final): one
 * entry per segment under cu_seqlens, then the rows' shape without the axis. */
typedef struct {
    const char *name;
    int typenum, dt, nd, axis, f;
    npy_intp shape[NPY_MAXDIMS], fshape[NPY_MAXDIMS];
    segments_t seg;
} ls_layout;

/* the kernels' dtype from the dtype argument (resolved by the caller) */
static int ls_dtype(ls_layout *L, PyObject *obj)
{
    PyArray_Descr *want = NULL;
    if (!PyArray_DescrConverter(obj, &want))
        return -1;
    L->typenum = sized_typenum(want);
    L->dt = L->typenum < 0 ? -1 : scan_dtype_of(L->typenum);
    if (linear_cells(L->dt) == NULL) {
        raise_bad_dtype(L->name, "dtype", want, "float16/32/64 or complex64/128");
        Py_DECREF(want);
        return -1;
    }
    Py_DECREF(want);
    return 0;
}

/* the broadcast shape of a and b into L */
static int ls_rows_shape(ls_layout *L, PyArrayObject *a, PyArrayObject *b)
{
    L->nd = PyArray_NDIM(a) > PyArray_NDIM(b) ? PyArray_NDIM(a) : PyArray_NDIM(b);
    for (int d = 0; d < L->nd; d++) {
        const int da = d - (L->nd - PyArray_NDIM(a)), db = d - (L->nd - PyArray_NDIM(b));
        const npy_intp sa = da >= 0 ? PyArray_DIM(a, da) : 1, sb = db >= 0 ? PyArray_DIM(b, db) : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            PyObject *ga = PyObject_GetAttrString((PyObject *)a, "shape");
            PyObject *gb = PyObject_GetAttrString((PyObject *)b, "shape");
            if (ga != NULL && gb != NULL)
                PyErr_Format(PyExc_ValueError, "%s: a with shape %R does not broadcast against b with shape %R",
                             L->name, ga, gb);
            Py_XDECREF(ga);
            Py_XDECREF(gb);
            return -1;
        }
        L->shape[d] = sa == 1 ? sb : sa;
    }
    return 0;
}

/* the axis (rows of L->nd dims), the segments along it and the state shape */
static int ls_axis_and_segments(ls_layout *L, PyObject *axis, PyArrayObject *like, PyObject *cu,
                                PyObject *chunk)
{
    if (axis != Py_None) {
        PyArrayObject *probe = like;
        Py_INCREF(probe);
        if (normalize_axis(L->name, axis, &probe, &L->axis) < 0) {
            Py_DECREF(probe);
            return -1;
        }
        Py_DECREF(probe);
    }
    if (parse_segments(L->name, cu, chunk, L->shape[L->axis], &L->seg) < 0)
        return -1;
    L->f = 0;
    if (L->seg.seg != NULL)
        L->fshape[L->f++] = L->seg.nseg;
    for (int d = 0; d < L->nd; d++)
        if (d != L->axis)
            L->fshape[L->f++] = L->shape[d];
    return 0;
}

/* a state argument (h0 or its tangent) as a view of the state shape; under
 * cu_seqlens a scalar is the same for every segment */
static PyArrayObject *ls_state(ls_layout *L, const char *what, PyArrayObject *s)
{
    if (L->seg.seg != NULL && PyArray_NDIM(s) != 0 && PyArray_NDIM(s) != L->f) {
        PyErr_Format(PyExc_ValueError,
                     "%s: with cu_seqlens, %s must be a scalar or have %d dimensions "
                     "(one entry per segment, then the result's shape without the axis); got %d",
                     L->name, what, L->f, PyArray_NDIM(s));
        return NULL;
    }
    return ls_broadcast(what, s, L->f, L->fshape);
}

/* a fresh array of the state shape: zeros, or a copy of init (an empty
 * segment's final state is its h0) */
static PyArrayObject *ls_new_state(ls_layout *L, PyArrayObject *init)
{
    PyArray_Descr *d = PyArray_DescrFromType(L->typenum);
    PyArrayObject *s = (PyArrayObject *)PyArray_Zeros(L->f, L->fshape, d, 0); /* steals d */
    if (s != NULL && init != NULL && PyArray_CopyInto(s, init) < 0)
        Py_CLEAR(s);
    return s;
}

static PyArrayObject *ls_new_rows(ls_layout *L)
{
    PyArray_Descr *d = PyArray_DescrFromType(L->typenum);
    return (PyArrayObject *)PyArray_Empty(L->nd, L->shape, d, 0); /* steals d */
}

/* Runs cell over operands (NULL: absent) of the rows' full shape, or, for
 * those whose bit is set in states, of the state shape: their dims spread
 * over the rows', the axis at stride 0, the segment dim as seg_stride.
 * Operand lane decides the lanes. */
#define LS_STATE(states, k) (((states) >> (k)) & 1u)
static int ls_run(const ls_layout *L, const scan_cell *cell, PyArrayObject *const *ops,
                  unsigned states, int nops, int lane, int reverse, int inclusive)
{
    scan_problem p;
    int64_t pshape[SCAN_MAX_DIMS], strides[SCAN_MAX_OPERANDS][SCAN_MAX_DIMS];
    memset(&p, 0, sizeof(p));
    p.ndim = L->nd;
    for (int d = 0; d < L->nd; d++)
        pshape[d] = L->shape[d];
    p.shape = pshape;
    p.axis = L->axis;
    p.noperands = nops;
    for (int k = 0; k < nops; k++) {
        PyArrayObject *s = ops[k];
        int f = L->seg.seg != NULL;
        if (s == NULL)
            continue;
        p.data[k] = PyArray_BYTES(s);
        for (int d = 0; d < L->nd; d++)
            strides[k][d] = !LS_STATE(states, k) ? PyArray_STRIDE(s, d)
                            : d == L->axis ? 0 : PyArray_STRIDE(s, f++);
        p.strides[k] = strides[k];
        p.seg_stride[k] = LS_STATE(states, k) && L->seg.seg != NULL ? PyArray_STRIDE(s, 0) : 0;
    }
    p.reverse = reverse;
    p.inclusive = inclusive;
    p.seg = L->seg.seg;
    p.nseg = L->seg.nseg;
    p.chunk_size = L->seg.chunk_size;
    p.lane_operand = lane;
    return run_problem(cell, &p);
}

/* linear_scan(a, b, h0, axis, reverse, inclusive, log_a, return_final, dtype, out,
 *             cu_seqlens, chunk_size) -> h or (h, h_final); dtype is the result
 * dtype, resolved by the caller (np.result_type with NumPy's scalar rules). */
PyObject *py_linear_scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ls_layout L = {.name = "linear_scan"};
    int reverse, inclusive, lg, want_final;
    PyArrayObject *a = NULL, *b = NULL, *h0 = NULL, *av = NULL, *bv = NULL, *h = NULL, *out = NULL;
    PyArrayObject *hf = NULL, *h0v = NULL;
    PyObject *result = NULL;
    (void)self;
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "linear_scan() takes 12 positional arguments");
        return NULL;
    }
    if (parse_flag(args[4], &reverse) < 0 || parse_flag(args[5], &inclusive) < 0 ||
        parse_flag(args[6], &lg) < 0 || parse_flag(args[7], &want_final) < 0 || ls_dtype(&L, args[8]) < 0)
        return NULL;
    if ((a = ls_operand(args[0], L.typenum)) == NULL || (b = ls_operand(args[1], L.typenum)) == NULL)
        goto done;
    if (args[2] != Py_None && (h0 = ls_operand(args[2], L.typenum)) == NULL)
        goto done;
    if (ls_rows_shape(&L, a, b) < 0)
        goto done;
    if ((av = ls_broadcast("a", a, L.nd, L.shape)) == NULL || (bv = ls_broadcast("b", b, L.nd, L.shape)) == NULL)
        goto done;
    if (args[3] == Py_None || L.nd == 0) {
        /* flatten the broadcast operands in C order (a constant a stays a
         * zero stride: no copy) */
        npy_intp n = 1, zero = 0;
        for (int d = 0; d < L.nd; d++)
            n *= L.shape[d];
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
        L.nd = 1;
        L.shape[0] = n;
        L.axis = 0;
    }
    if (ls_axis_and_segments(&L, args[3], bv, args[10], args[11]) < 0)
        goto done;
    if (h0 != NULL && (h0v = ls_state(&L, "h0", h0)) == NULL)
        goto done;
    if (want_final && (hf = ls_new_state(&L, h0v)) == NULL)
        goto done;
    if (args[9] != Py_None) {
        PyArrayObject *inputs[2] = {av, bv};
        if (check_out(L.name, "out", args[9], bv, L.typenum, &out) < 0)
            goto done;
        if (out_usable_directly(out, L.typenum, inputs, 2) &&
            (h0v == NULL || out_usable_directly(out, L.typenum, &h0v, 1))) {
            Py_INCREF(out);
            h = out;
        }
    }
    if (h == NULL && (h = ls_new_rows(&L)) == NULL)
        goto done;
    {
        PyArrayObject *ops[5] = {av, bv, h, h0v, hf};
        if (ls_run(&L, &linear_cells(L.dt)[2 * MODE_FORWARD + lg], ops, 3u << 3, 5, 2, reverse, inclusive) < 0)
            goto done;
    }
    if (deliver_out(out, &h) < 0)
        goto done;
    if (want_final)
        result = PyTuple_Pack(2, (PyObject *)h, (PyObject *)hf);
    else {
        result = (PyObject *)h;
        Py_INCREF(result);
    }
done:
    free(L.seg.seg);
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

/* obj (not None) as a view of the rows' shape; *kept holds the converted
 * array it views */
static PyArrayObject *ls_rows_operand(ls_layout *L, const char *what, PyObject *obj,
                                      PyArrayObject **kept)
{
    if ((*kept = ls_operand(obj, L->typenum)) == NULL)
        return NULL;
    return ls_broadcast(what, *kept, L->nd, L->shape);
}

#define LS_DERIV_ARRAYS 12

/* linear_scan_jvp(a, b, h0, a_dot, b_dot, h0_dot, axis, reverse, inclusive, log_a,
 *                 return_final, dtype, cu_seqlens, chunk_size)
 *   -> (h, h_dot, h_final, h_dot_final), the finals None unless return_final.
 * axis is an int (the caller flattens for axis=None); a_dot, b_dot, h0_dot
 * may be None (zero); h0_dot only with h0. */
PyObject *py_linear_scan_jvp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ls_layout L = {.name = "linear_scan"};
    int reverse, inclusive, lg, want_final;
    /* converted inputs, then views, then results */
    PyArrayObject *in[LS_DERIV_ARRAYS] = {NULL};
    PyArrayObject *a = NULL, *b = NULL, *av = NULL, *bv = NULL, *adv = NULL, *bdv = NULL;
    PyArrayObject *h0v = NULL, *h0dv = NULL, *h = NULL, *hd = NULL, *hf = NULL, *hdf = NULL;
    PyObject *result = NULL;
    (void)self;
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "linear_scan_jvp() takes 14 positional arguments");
        return NULL;
    }
    if (parse_flag(args[7], &reverse) < 0 || parse_flag(args[8], &inclusive) < 0 ||
        parse_flag(args[9], &lg) < 0 || parse_flag(args[10], &want_final) < 0 ||
        ls_dtype(&L, args[11]) < 0)
        return NULL;
    if ((a = ls_operand(args[0], L.typenum)) == NULL || (b = ls_operand(args[1], L.typenum)) == NULL)
        goto done;
    if (ls_rows_shape(&L, a, b) < 0 || (av = ls_broadcast("a", a, L.nd, L.shape)) == NULL ||
        (bv = ls_broadcast("b", b, L.nd, L.shape)) == NULL)
        goto done;
    if (L.nd == 0) {
        PyErr_SetString(PyExc_ValueError, "linear_scan: the derivatives need at least one dimension");
        goto done;
    }
    if (args[3] != Py_None && (adv = ls_rows_operand(&L, "a_dot", args[3], &in[0])) == NULL)
        goto done;
    if (args[4] != Py_None)
        bdv = ls_rows_operand(&L, "b_dot", args[4], &in[1]);
    else {
        /* a zero b_dot: one zero element seen at stride 0 everywhere */
        PyObject *z = PyFloat_FromDouble(0.0);
        if (z != NULL)
            bdv = ls_rows_operand(&L, "b_dot", z, &in[1]);
        Py_XDECREF(z);
    }
    if (bdv == NULL || ls_axis_and_segments(&L, args[6], bv, args[12], args[13]) < 0)
        goto done;
    if (args[2] != Py_None) {
        if ((in[2] = ls_operand(args[2], L.typenum)) == NULL || (h0v = ls_state(&L, "h0", in[2])) == NULL)
            goto done;
        if (args[5] != Py_None &&
            ((in[3] = ls_operand(args[5], L.typenum)) == NULL || (h0dv = ls_state(&L, "h0_dot", in[3])) == NULL))
            goto done;
    }
    if ((h = ls_new_rows(&L)) == NULL || (hd = ls_new_rows(&L)) == NULL)
        goto done;
    if (want_final && ((hf = ls_new_state(&L, h0v)) == NULL || (hdf = ls_new_state(&L, h0dv)) == NULL))
        goto done;
    {
        PyArrayObject *ops[10] = {av, bv, adv, bdv, h, hd, h0v, h0dv, hf, hdf};
        if (ls_run(&L, &linear_cells(L.dt)[2 * MODE_JVP + lg], ops, 15u << 6, 10, 4, reverse, inclusive) < 0)
            goto done;
    }
    result = Py_BuildValue("(OOOO)", h, hd, hf != NULL ? (PyObject *)hf : Py_None,
                           hdf != NULL ? (PyObject *)hdf : Py_None);
done:
    free(L.seg.seg);
    for (int k = 0; k < LS_DERIV_ARRAYS; k++)
        Py_XDECREF(in[k]);
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(av);
    Py_XDECREF(bv);
    Py_XDECREF(adv);
    Py_XDECREF(bdv);
    Py_XDECREF(h0v);
    Py_XDECREF(h0dv);
    Py_XDECREF(h);
    Py_XDECREF(hd);
    Py_XDECREF(hf);
    Py_XDECREF(hdf);
    return result;
}

/* linear_scan_vjp(a, y, h0, g, g_final, axis, reverse, inclusive, log_a, dtype,
 *                 cu_seqlens, chunk_size, sum_a) -> (a_bar, b_bar, h0_bar)
 * y: the forward's output (the rows' shape) with the same flags; b_bar has
 * the rows' shape and h0_bar the state shape (None without h0); a_bar the
 * rows' shape, or with sum_a, where a is constant along the axis, the state
 * shape (summed along the axis in the kernel): the caller sums them to the
 * inputs' shapes.  g_final may be None. */
PyObject *py_linear_scan_vjp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ls_layout L = {.name = "linear_scan"};
    int reverse, inclusive, lg, sum_a;
    unsigned states = 7u << 5;
    PyArrayObject *in[LS_DERIV_ARRAYS] = {NULL};
    PyArrayObject *y = NULL, *av = NULL, *gv = NULL, *h0v = NULL, *gfv = NULL;
    PyArrayObject *ab = NULL, *bb = NULL, *h0b = NULL;
    PyObject *result = NULL;
    (void)self;
    if (nargs != 13) {
        PyErr_SetString(PyExc_TypeError, "linear_scan_vjp() takes 13 positional arguments");
        return NULL;
    }
    if (parse_flag(args[6], &reverse) < 0 || parse_flag(args[7], &inclusive) < 0 ||
        parse_flag(args[8], &lg) < 0 || parse_flag(args[12], &sum_a) < 0 || ls_dtype(&L, args[9]) < 0)
        return NULL;
    if ((y = ls_operand(args[1], L.typenum)) == NULL)
        goto done;
    L.nd = PyArray_NDIM(y);
    for (int d = 0; d < L.nd; d++)
        L.shape[d] = PyArray_DIM(y, d);
    if (L.nd == 0) {
        PyErr_SetString(PyExc_ValueError, "linear_scan: the derivatives need at least one dimension");
        goto done;
    }
    if ((av = ls_rows_operand(&L, "a", args[0], &in[0])) == NULL ||
        (gv = ls_rows_operand(&L, "g", args[3], &in[1])) == NULL)
        goto done;
    if (ls_axis_and_segments(&L, args[5], y, args[10], args[11]) < 0)
        goto done;
    if (args[2] != Py_None &&
        ((in[2] = ls_operand(args[2], L.typenum)) == NULL || (h0v = ls_state(&L, "h0", in[2])) == NULL ||
         (h0b = ls_new_state(&L, NULL)) == NULL))
        goto done;
    if (args[4] != Py_None &&
        ((in[3] = ls_operand(args[4], L.typenum)) == NULL || (gfv = ls_state(&L, "g_final", in[3])) == NULL))
        goto done;
    /* a constant along the axis: its cotangent summed along it per lane */
    sum_a = sum_a && PyArray_STRIDE(av, L.axis) == 0;
    if (sum_a)
        states |= 1u << 3;
    if ((ab = sum_a ? ls_new_state(&L, NULL) : ls_new_rows(&L)) == NULL || (bb = ls_new_rows(&L)) == NULL)
        goto done;
    {
        PyArrayObject *ops[8] = {av, y, gv, ab, bb, h0v, gfv, h0b};
        if (ls_run(&L, &linear_cells(L.dt)[2 * MODE_VJP + lg], ops, states, 8, 4, reverse, inclusive) < 0)
            goto done;
    }
    result = Py_BuildValue("(OOO)", ab, bb, h0b != NULL ? (PyObject *)h0b : Py_None);
done:
    free(L.seg.seg);
    for (int k = 0; k < LS_DERIV_ARRAYS; k++)
        Py_XDECREF(in[k]);
    Py_XDECREF(y);
    Py_XDECREF(av);
    Py_XDECREF(gv);
    Py_XDECREF(h0v);
    Py_XDECREF(gfv);
    Py_XDECREF(ab);
    Py_XDECREF(bb);
    Py_XDECREF(h0b);
    return result;
}
