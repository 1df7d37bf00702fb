/* bind_scan.c: the entry points of the five scans and their derivatives
 * (scan, jvp, vjp, vjp_jvp): the op's dtype rule, the axis, the segments,
 * out= and the outputs, then one cell of the matrix run by `run`.  The
 * Python package calls these with positional arguments only, to keep the
 * per-call overhead at NumPy's level. */
#include "binding.h" /* Python.h first */

#include <stdlib.h>
#include <string.h>

/* scan(op, x, axis, reverse, inclusive, dtype, out, cu_seqlens, chunk_size, return_indices
 *      [, name]): name, if given and not None, is what error messages call the op (a
 *      Python wrapper around this op that has a name of its own) */
PyObject *py_scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int op, axis, reverse, inclusive, want_indices, typenum;
    const char *name;
    PyArrayObject *x = NULL, *xk = NULL, *y = NULL, *idx = NULL, *out_y = NULL, *out_i = NULL;
    PyObject *result = NULL;
    const scan_cell *cell;
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
    cell = cell_of(op, typenum, MODE_FORWARD); /* NULL: refused below, once x is checked */
    /* axis None flattens a copy, but a 1-D x is its own flattening: kept as
     * it is, a line running down in memory takes the driver's bounce buffer
     * where the kernel has one, which is faster than the copy */
    if (args[2] == Py_None && PyArray_NDIM(x) == 1 && cell != NULL && cell->split.bounce)
        axis = 0;
    else if (normalize_axis(name, args[2], &x, &axis) < 0)
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
            if (run(cell, ops, want_indices ? 3 : 2, 1, 1, axis, reverse, inclusive, &seg) < 0)
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
PyObject *py_jvp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
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
        if (run(cell, ops, 4, 3, 2, axis, reverse, inclusive, &seg) < 0)
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
PyObject *py_vjp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
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
        if (run(cell, ops, 4, 3, 3, axis, reverse, inclusive, &seg) < 0)
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
PyObject *py_vjp_jvp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
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
        if (run(cell, ops, 6, 4, 4, axis, reverse, inclusive, &seg) < 0)
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
