/* module.c: the CPython module: its method table, its initialisation and
 * `run`, which hands a scan_problem to the kernel library with the GIL
 * released.  The entry points are in bind_scan.c and bind_linear_scan.c;
 * what the module reports about itself (the table chosen at import, the
 * matrix) is in binding_info.c; the checks live in binding_args.c and the
 * outputs in binding_output.c. */
#define SCANAD_BINDING_MODULE
#include "binding.h"

#include <string.h>

int run_problem(const scan_cell *cell, scan_problem *p)
{
    int rc;
    p->split = &cell->split; /* the driver checks that it has a reduce */
    p->walk_back = cell->walks_back;
    p->flip_inputs = cell->flips_inputs;
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

int run(const scan_cell *cell, PyArrayObject *const *ops, int nops, int lane_operand,
        int first_output, int axis, int reverse, int inclusive, const segments_t *seg)
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
        p.itemsize[i] = PyArray_ITEMSIZE(ops[i]);
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
    p.first_output = first_output;
    return run_problem(cell, &p);
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
