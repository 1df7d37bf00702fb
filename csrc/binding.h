/* binding.h: what the binding's files share.  Only the binding files
 * (module.c, bind_*.c, binding_*.c) include Python.h; the kernel library (scan.h and
 * everything it reaches) knows nothing of Python. */
#ifndef SCANAD_BINDING_H
#define SCANAD_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
/* one NumPy API table for the whole extension, filled by import_array in
 * module.c */
#define PY_ARRAY_UNIQUE_SYMBOL scanad_numpy_api
#ifndef SCANAD_BINDING_MODULE
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "scan.h"

/* ---- binding_args.c: ops, dtypes, arguments ---- */
/* the dtype rule of each op (SCAN_OPS in scan_matrix.h) */
typedef enum {
    RULE_ACCUMULATE, /* cumsum/cumprod: bool and narrow ints -> 64-bit, dtype= allowed */
    RULE_ORDER,      /* cummax/cummin: keep the dtype, no complex */
    RULE_LOG,        /* logcumsumexp: ints -> float64 */
} dtype_rule;

/* how an op depends on x (SCAN_OPS in scan_matrix.h) */
typedef enum {
    SHAPE_LINEAR,
    SHAPE_PIECEWISE, /* linear wherever differentiable: a zero second-order term */
    SHAPE_CURVED,
} op_shape;

typedef struct {
    const char *name;
    dtype_rule rule;
    const char *identity;
    op_shape shape;
} op_info;

extern const op_info OPS[SCAN_NUM_OPS];
extern PyObject *scanad_axis_error;

/* the op number the Python layer passes; -1 with ValueError if unknown */
int parse_op(PyObject *obj);
/* the kernels' dtype for a sized NumPy type number, -1 if none */
int scan_dtype_of(int typenum);
/* the NumPy name of the kernels' dtype dt */
const char *scan_dtype_name(int dt);
/* the NumPy type number of the kernels' dtype dt */
int scan_dtype_typenum(int dt);
/* NumPy keeps separate type numbers for long/longlong of the same size: map
 * a descriptor to the sized type number the kernels are keyed on. */
int sized_typenum(PyArray_Descr *d);
PyObject *descr_repr(PyArray_Descr *d);
/* TypeError "<op>: <arg> must be <expected>; got dtype <d>" */
void raise_bad_dtype(const char *op, const char *arg, PyArray_Descr *d, const char *expected);
/* The dtype the op computes in and returns, from x's dtype (and dtype=). */
int result_typenum(int op, PyArray_Descr *xd, PyObject *dtype_obj);

PyArrayObject *as_array(PyObject *obj);
/* x cast to typenum, native byte order and aligned, any strides (no copy when
 * it already is). */
PyArrayObject *as_kernel_array(PyArrayObject *x, int typenum);
/* axis None: flatten in C order; a 0-d array scans as shape (1,) as in NumPy. */
int normalize_axis(const char *op, PyObject *axis_obj, PyArrayObject **x, int *axis);
int parse_flag(PyObject *obj, int *out);

/* cu_seqlens and chunk_size: validated against the axis length; seg gets a
 * malloc'ed copy of the boundaries (NULL when there is no cu_seqlens). */
typedef struct {
    int64_t *seg;
    int64_t nseg;
    int64_t chunk_size;
} segments_t;
int parse_segments(const char *op, PyObject *cu_obj, PyObject *chunk_obj, int64_t n,
                   segments_t *out);

/* x for a derivative: floating or complex only (docs/derivatives.md). */
PyArrayObject *derivative_primal(int op, const char *mode, PyObject *obj, int *typenum);
/* A tangent or cotangent: cast (same_kind) to the primal dtype, shape checked. */
PyArrayObject *derivative_operand(int op, const char *mode, const char *what, PyObject *obj,
                                  PyArrayObject *like, int typenum);

/* ---- binding_output.c: results ---- */
/* out may be written directly only when the kernel can write it in place:
 * same dtype, aligned, native, and either disjoint from every input or
 * laid out exactly like it (each element is read before it is written). */
int out_usable_directly(PyArrayObject *out, int typenum, PyArrayObject *const *inputs,
                        int ninputs);
/* *result becomes out, with the kernels' result copied in where they wrote
 * elsewhere (out NULL: nothing to do); -1 with the exception set */
int deliver_out(PyArrayObject *out, PyArrayObject **result);
/* out= checked against the result's shape and dtype (same_kind casting) */
int check_out(const char *op, const char *what, PyObject *obj, PyArrayObject *like, int typenum,
              PyArrayObject **out);
/* -1 with a ValueError when the two outputs of one call share memory */
int check_outputs_disjoint(const char *op, PyArrayObject *first, PyArrayObject *second);
/* a new array shaped and laid out like x; big ones start on a 2 MiB boundary */
PyArrayObject *new_like(PyArrayObject *x, int typenum);
/* at import: installs the allocator of big outputs; -1 with an exception */
int binding_output_init(void);

/* ---- module.c ---- */
/* Runs a cell's kernel over a filled-in problem (its split and walk set
 * here) with the GIL released.  -1 with MemoryError if the driver ran out
 * of memory. */
int run_problem(const scan_cell *cell, scan_problem *p);
/* Runs a cell's kernel over the operands with the GIL released; ops[lane_operand]
 * decides the lanes; ops[first_output..] are the outputs (0: not said).  -1
 * with MemoryError if the driver ran out of memory. */
int run(const scan_cell *cell, PyArrayObject *const *ops, int nops, int lane_operand,
        int first_output, int axis, int reverse, int inclusive, const segments_t *seg);

/* ---- binding_info.c ---- */
/* At import: the table SCANAD_ISA names (SCANAD_FORCE_BASELINE, the older
 * spelling of baseline), or the best the host runs; -1 with ImportError */
int binding_choose_table(void);
/* the cell of op on the kernel dtype of typenum in mode; NULL where the op
 * has no kernel for it */
const scan_cell *cell_of(int op, int typenum, scan_mode mode);
/* linear_scan's cells for the kernels' dtype dt, [2 * mode + log_a]; NULL
 * where linear_scan has no kernel for dt */
const scan_cell *linear_cells(int dt);
PyObject *py_build_info(PyObject *self, PyObject *noargs);
PyObject *py_set_num_threads(PyObject *self, PyObject *arg);
PyObject *py_get_num_threads(PyObject *self, PyObject *noargs);
PyObject *py_ops(PyObject *self, PyObject *noargs);
PyObject *py_linear_scan_dtypes(PyObject *self, PyObject *noargs);

/* ---- bind_scan.c ---- */
PyObject *py_scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *py_jvp(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *py_vjp(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *py_vjp_jvp(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* ---- bind_linear_scan.c ---- */
PyObject *py_linear_scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *py_linear_scan_jvp(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *py_linear_scan_vjp(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
