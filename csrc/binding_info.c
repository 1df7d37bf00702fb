/* binding_info.c: what the extension reports about itself and the lookups
 * into its kernel table: the table chosen at import (SCANAD_ISA), the cells
 * of an op, build_info, the thread count and the op matrix as Python sees
 * it (ops, linear_scan_dtypes). */
#include "binding.h"

#include <stdlib.h>
#include <string.h>

/* the kernel table chosen at import */
static const scan_table *table = NULL;

/* the cell of op on the kernel dtype of typenum in mode; NULL where the op
 * has no kernel for it */
const scan_cell *cell_of(int op, int typenum, scan_mode mode)
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

/* The table SCANAD_ISA names (unset or empty: the best the host runs);
 * SCANAD_FORCE_BASELINE=1 (set, not empty, not 0) is the older spelling of
 * SCANAD_ISA=baseline.  -1 with ImportError set if the name is unknown, the
 * host cannot run it, or the two variables disagree: a table asked for and
 * silently not used would make a test run or a benchmark mean something else. */
int binding_choose_table(void)
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
            return -1;
        }
        isa = "baseline";
    }
    if ((t = scan_select_table(isa, err, sizeof err)) == NULL) {
        PyErr_Format(PyExc_ImportError, "scanad: %s", err);
        return -1;
    }
    table = t;
    return 0;
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

PyObject *py_build_info(PyObject *self, PyObject *noargs)
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

PyObject *py_set_num_threads(PyObject *self, PyObject *arg)
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

PyObject *py_get_num_threads(PyObject *self, PyObject *noargs)
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
PyObject *py_linear_scan_dtypes(PyObject *self, PyObject *noargs)
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
PyObject *py_ops(PyObject *self, PyObject *noargs)
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

