/* module.c: the CPython module: the scans' entry points and `run`, which
 * hands a scan_problem to the kernel library with the GIL released; what the
 * module reports about itself (the table chosen at import, the matrix) is in
 * binding_info.c.  The Python package calls these with positional arguments
 * only, to keep the per-call overhead at NumPy's level; the checks live in
 * binding_args.c and the outputs in binding_output.c. */
#define SCANAD_BINDING_MODULE
#include "binding.h"

#include <stdlib.h>
#include <string.h>

int run_problem(const scan_cell *cell, scan_problem *p)
{
    int rc;
    p->split = &cell->split; /* the driver checks that it has a reduce */
    p->walk_back = cell->walks_back;
    {
        const int nthreads = scan_get_num_threads();
        Py_BEGIN_ALLOW_THREADS
        rc = scan_execute(cell->kernel, p, nthreads);
        Py_END_ALLOW_THREADS
    }
    if (rc != 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

int run(const scan_cell *cell, PyArrayObject *const *ops, int nops, int lane_operand, int axis,
        int reverse, int inclusive, const segments_t *seg)
{
    scan_problem p;
    int64_t shape[SCAN_MAX_DIMS];
    int64_t strides[SCAN_MAX_OPERANDS][SCAN_MAX_DIMS];
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
    return run_problem(cell, &p);
}

/* scan(op, x, axis, reverse, inclusive, dtype, out, cu_seqlens, chunk_size, return_indices
 *      [, name]): name, if given and not None, is what error messages call the op (a
 *      Python wrapper around this op that has a name of its own) */
static PyObject *py_scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int op, axis, reverse, inclusive, want_indices, typenum;
    const char *name;
    PyArrayObject *x = NULL, *xk = NULL, *y = NULL, *idx = NULL, *out_y = NULL, *out_i = NULL;
    PyObject *result = NULL;
    segments_t seg = {NULL, 0, 0};
    (void)self;
    if (nargs != 10 && nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 10 or 11 positional arguments");
        return NULL;
    }
    if ((op = parse_op(args[0])) < 0)
        return NULL;
    name = OPS[op].name;
    if (nargs == 11 && args[10] != Py_None) {
        /* valid while args[10] lives, which is the whole call */
        if (!PyUnicode_Check(args[10]) || (name = PyUnicode_AsUTF8(args[10])) == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "scan(): name must be a str or None");
            return NULL;
        }
    }
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
            if (check_outputs_disjoint(name, out_y, out_i) < 0)
                goto done;
        } else if (check_out(name, "out", o, xk, typenum, &out_y) < 0) {
            goto done;
        }
    }
    {
        const scan_cell *cell = cell_of(op, typenum, MODE_FORWARD);
        PyArrayObject *inputs[1] = {xk};
        if (cell == NULL) {
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
            if (run(cell, ops, want_indices ? 3 : 2, 1, axis, reverse, inclusive, &seg) < 0)
                goto done;
        }
    }
    if (deliver_out(out_y, &y) < 0 || deliver_out(out_i, &idx) < 0)
        goto done;
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

/* jvp(op, x, t, axis, reverse, inclusive, cu_seqlens, chunk_size) -> (y, y_dot) */
static PyObject *py_jvp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int op, axis, reverse, inclusive, typenum;
    PyArrayObject *x = NULL, *t = NULL, *y = NULL, *yd = NULL;
    PyObject *result = NULL;
    segments_t seg = {NULL, 0, 0};
    const scan_cell *cell;
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
    if ((cell = cell_of(op, typenum, MODE_JVP)) == NULL) {
        raise_bad_dtype(OPS[op].name, "x", PyArray_DESCR(x), "of a dtype whose JVP is defined");
        goto done;
    }
    if ((y = new_like(x, typenum)) == NULL || (yd = new_like(x, typenum)) == NULL)
        goto done;
    {
        PyArrayObject *ops[4] = {x, t, y, yd};
        if (run(cell, ops, 4, 3, axis, reverse, inclusive, &seg) < 0)
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
    const scan_cell *cell;
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
    if ((cell = cell_of(op, typenum, MODE_VJP)) == NULL) {
        raise_bad_dtype(OPS[op].name, "x", PyArray_DESCR(x), "of a dtype whose VJP is defined");
        goto done;
    }
    if ((xb = new_like(xflat, typenum)) == NULL)
        goto done;
    {
        PyArrayObject *ops[4] = {xflat, y, g, xb};
        if (run(cell, ops, 4, 3, axis, reverse, inclusive, &seg) < 0)
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

/* vjp_jvp(op, x, t, g, g_dot, axis, reverse, inclusive, cu_seqlens, chunk_size
 *         [, want_x_bar=True]) -> (x_bar, x_bar_dot)
 * The pullback and its JVP in direction (t, g_dot) (docs/derivatives.md,
 * "Second order"); g_dot None is zero and never read.  t has x's shape, g
 * and g_dot y's (flat when axis is None); results have x's shape and dtype.
 * want_x_bar False (hvp) returns None for x_bar; then an op whose second-order
 * term is zero, with g_dot None, runs no kernel: x_bar_dot is zero. */
static PyObject *py_vjp_jvp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int op, axis, reverse, inclusive, typenum, want_x_bar = 1;
    PyArrayObject *x = NULL, *xflat = NULL, *t = NULL, *g = NULL, *gd = NULL, *xb = NULL, *xbd = NULL;
    PyObject *result = NULL, *xb_out = NULL, *xbd_out = NULL;
    segments_t seg = {NULL, 0, 0};
    const scan_cell *cell;
    (void)self;
    if (nargs != 10 && nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "vjp_jvp() takes 10 or 11 positional arguments");
        return NULL;
    }
    if ((op = parse_op(args[0])) < 0 || parse_flag(args[6], &reverse) < 0 || parse_flag(args[7], &inclusive) < 0 ||
        (nargs == 11 && parse_flag(args[10], &want_x_bar) < 0))
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
    if ((cell = cell_of(op, typenum, MODE_VJP_JVP)) == NULL) {
        raise_bad_dtype(OPS[op].name, "x", PyArray_DESCR(x), "of a dtype whose second order is defined");
        goto done;
    }
    if (!want_x_bar && gd == NULL && OPS[op].shape != SHAPE_CURVED) {
        /* every argument checked; calloc'd pages cost nothing until touched */
        if ((xbd = (PyArrayObject *)PyArray_ZEROS(PyArray_NDIM(xflat), PyArray_DIMS(xflat), typenum, 0)) == NULL ||
            (xbd_out = in_shape_of(x, xbd)) == NULL)
            goto done;
        result = PyTuple_Pack(2, Py_None, xbd_out);
        goto done;
    }
    if ((xb = new_like(xflat, typenum)) == NULL || (xbd = new_like(xflat, typenum)) == NULL)
        goto done;
    {
        PyArrayObject *ops[6] = {xflat, t, g, gd, xb, xbd};
        if (run(cell, ops, 6, 4, axis, reverse, inclusive, &seg) < 0)
            goto done;
    }
    if ((xbd_out = in_shape_of(x, xbd)) == NULL)
        goto done;
    if (!want_x_bar)
        result = PyTuple_Pack(2, Py_None, xbd_out);
    else if ((xb_out = in_shape_of(x, xb)) != NULL)
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

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))py_scan, METH_FASTCALL,
     "scan(op, x, axis, reverse, inclusive, dtype, out, cu_seqlens, chunk_size, return_indices"
     "[, name])"},
    {"jvp", (PyCFunction)(void (*)(void))py_jvp, METH_FASTCALL,
     "jvp(op, x, t, axis, reverse, inclusive, cu_seqlens, chunk_size) -> (y, y_dot)"},
    {"vjp", (PyCFunction)(void (*)(void))py_vjp, METH_FASTCALL,
     "vjp(op, x, y, g, axis, reverse, inclusive, cu_seqlens, chunk_size) -> x_bar"},
    {"vjp_jvp", (PyCFunction)(void (*)(void))py_vjp_jvp, METH_FASTCALL,
     "vjp_jvp(op, x, t, g, g_dot, axis, reverse, inclusive, cu_seqlens, chunk_size) -> (x_bar, x_bar_dot)"},
    {"linear_scan", (PyCFunction)(void (*)(void))py_linear_scan, METH_FASTCALL,
     "linear_scan(a, b, h0, axis, reverse, inclusive, log_a, return_final, dtype, out, cu_seqlens, "
     "chunk_size) -> h or (h, h_final)"},
    {"linear_scan_jvp", (PyCFunction)(void (*)(void))py_linear_scan_jvp, METH_FASTCALL,
     "linear_scan_jvp(a, b, h0, a_dot, b_dot, h0_dot, axis, reverse, inclusive, log_a, return_final, dtype, "
     "cu_seqlens, chunk_size) -> (h, h_dot, h_final, h_dot_final)"},
    {"linear_scan_vjp", (PyCFunction)(void (*)(void))py_linear_scan_vjp, METH_FASTCALL,
     "linear_scan_vjp(a, y, h0, g, g_final, axis, reverse, inclusive, log_a, dtype, cu_seqlens, chunk_size, sum_a) "
     "-> (a_bar, b_bar, h0_bar) over the rows' and the state's shapes"},
    {"linear_scan_dtypes", py_linear_scan_dtypes, METH_NOARGS,
     "linear_scan's kernels: {mode: dtypes}, with and without log_a"},
    {"build_info", py_build_info, METH_NOARGS, "the kernel variant chosen at import and the build"},
    {"set_num_threads", py_set_num_threads, METH_O, "set the number of kernel threads"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "the number of kernel threads"},
    {"ops", py_ops, METH_NOARGS, "the op matrix: (index, name, dtype rule, identity, shape, {mode: dtypes}, accepted dtypes) per op"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_scanad", "scanad's C kernels", -1, methods,
                                       NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__scanad(void)
{
    PyObject *m;
    import_array();
    if (binding_choose_table() < 0)
        return NULL;
    m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    if (binding_output_init() < 0) {
        Py_DECREF(m);
        return NULL;
    }
    {
        PyObject *exc = PyImport_ImportModule("numpy.exceptions");
        if (exc == NULL) {
            PyErr_Clear();
            exc = PyImport_ImportModule("numpy");
        }
        if (exc != NULL) {
            scanad_axis_error = PyObject_GetAttrString(exc, "AxisError");
            Py_DECREF(exc);
        }
        if (scanad_axis_error == NULL)
            PyErr_Clear();
    }
    return m;
}
