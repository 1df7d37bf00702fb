/* module.c: the CPython module: its entry points, the kernel table chosen at
 * import and `run`, which hands a scan_problem to the kernel library with the
 * GIL released.  The Python package calls these with positional arguments
 * only, to keep the per-call overhead at NumPy's level; the checks live in
 * binding_args.c and the outputs in binding_output.c. */
#define SCANAD_BINDING_MODULE
#include "binding.h"

#include <stdlib.h>
#include <string.h>

static const scan_table *table = NULL;

/* the cell of op on the kernel dtype of typenum in mode; NULL where the op
 * has no kernel for it */
static const scan_cell *cell_of(int op, int typenum, scan_mode mode)
{
    const int dt = scan_dtype_of(typenum);
    if (dt < 0 || table->cells[op][dt][mode].kernel == NULL)
        return NULL;
    return &table->cells[op][dt][mode];
}

const scan_cell *linear_cells(int dt)
{
    if (dt < 0 || dt >= SCAN_NUM_DTYPES || table->linear[dt][2 * MODE_FORWARD].kernel == NULL)
        return NULL;
    return table->linear[dt];
}

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

#define MODE_NAME_(E, name, a) [MODE_##E] = name,
static const char *const mode_names[SCAN_NUM_MODES] = {SCAN_MODES(MODE_NAME_, )};

/* whether scan op has a kernel for dtype dt in mode */
static int scan_has_kernel(int op, int dt, int mode) { return table->cells[op][dt][mode].kernel != NULL; }

/* whether linear_scan has kernels for dt in mode, with and without log_a;
 * its second order is composed by the package from the JVP and the VJP */
static int linear_has_kernel(int op, int dt, int mode)
{
    (void)op;
    const scan_cell *cells = table->linear[dt];
    if (mode == MODE_VJP_JVP)
        return linear_has_kernel(op, dt, MODE_JVP) && linear_has_kernel(op, dt, MODE_VJP);
    return cells[2 * mode].kernel != NULL && cells[2 * mode + 1].kernel != NULL;
}

/* {mode name: (dtype name, ...)}: the dtypes op has a kernel for, per mode */
static PyObject *op_dtypes(int (*has_kernel)(int op, int dt, int mode), int op)
{
    PyObject *modes = PyDict_New();
    for (int mode = 0; modes != NULL && mode < SCAN_NUM_MODES; mode++) {
        PyObject *names = PyList_New(0), *tuple = NULL;
        for (int dt = 0; names != NULL && dt < SCAN_NUM_DTYPES; dt++) {
            if (!has_kernel(op, dt, mode))
                continue;
            PyObject *name = PyUnicode_FromString(scan_dtype_name(dt));
            if (name == NULL || PyList_Append(names, name) < 0)
                Py_CLEAR(names);
            Py_XDECREF(name);
        }
        if (names == NULL || (tuple = PyList_AsTuple(names)) == NULL ||
            PyDict_SetItemString(modes, mode_names[mode], tuple) < 0)
            Py_CLEAR(modes);
        Py_XDECREF(names);
        Py_XDECREF(tuple);
    }
    return modes;
}

/* linear_scan's part of the matrix: {mode: dtypes with kernels}; the
 * package applies its dtype rule (integers and bool -> float64) */
static PyObject *py_linear_scan_dtypes(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return op_dtypes(linear_has_kernel, 0);
}

/* (dtype name, ...): the dtypes x may have, those of the forward kernels and
 * those the op's dtype rule casts to one of them */
static PyObject *op_accepts(int op)
{
    PyObject *names = PyList_New(0), *tuple;
    for (int dt = 0; names != NULL && dt < SCAN_NUM_DTYPES; dt++) {
        PyArray_Descr *d = PyArray_DescrFromType(scan_dtype_typenum(dt));
        const int result = d != NULL ? result_typenum(op, d, Py_None) : -1;
        Py_XDECREF(d);
        if (result < 0) {
            PyErr_Clear();
            continue;
        }
        if (cell_of(op, result, MODE_FORWARD) == NULL)
            continue;
        PyObject *name = PyUnicode_FromString(scan_dtype_name(dt));
        if (name == NULL || PyList_Append(names, name) < 0)
            Py_CLEAR(names);
        Py_XDECREF(name);
    }
    if (names == NULL)
        return NULL;
    tuple = PyList_AsTuple(names);
    Py_DECREF(names);
    return tuple;
}

/* The matrix as Python sees it: (index, name, dtype rule, identity, shape,
 * {mode: dtypes with kernels}, dtypes x may have) per op. */
static PyObject *py_ops(PyObject *self, PyObject *noargs)
{
    static const char *const rules[] = {
        [RULE_ACCUMULATE] = "accumulate", [RULE_ORDER] = "order", [RULE_LOG] = "log"};
    static const char *const shapes[] = {
        [SHAPE_LINEAR] = "linear", [SHAPE_PIECEWISE] = "piecewise linear", [SHAPE_CURVED] = "curved"};
    PyObject *t = PyTuple_New(SCAN_NUM_OPS);
    (void)self;
    (void)noargs;
    for (int i = 0; t != NULL && i < SCAN_NUM_OPS; i++) {
        PyObject *row = Py_BuildValue("(issssNN)", i, OPS[i].name, rules[OPS[i].rule], OPS[i].identity,
                                      shapes[OPS[i].shape], op_dtypes(scan_has_kernel, i), op_accepts(i));
        if (row == NULL)
            Py_CLEAR(t);
        else
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
    if ((table = choose_table()) == NULL)
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
