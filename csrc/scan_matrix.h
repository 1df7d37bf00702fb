/* scan_matrix.h: the op x dtype x mode matrix, declared once.  Each list is
 * an X-macro: LIST(X, a) expands X(<row>..., a) per row, so a list can be
 * expanded inside another one's rows (the kernel table is ops x dtypes).
 * The enums, the op names the binding reports, the dtype mapping and the
 * kernel table are all generated from these lists; which dtypes and modes an
 * op has is the set of non-NULL kernels its header (kernels/ops/) defines.
 */
#ifndef SCANAD_SCAN_MATRIX_H
#define SCANAD_SCAN_MATRIX_H

/* op: enum name, kernel prefix, public name, dtype rule (docs/semantics.md,
 * "dtypes"), identity as documented, shape in x (LINEAR; PIECEWISE: linear
 * where differentiable, so the second-order term is zero; CURVED) */
#define SCAN_OPS(X, a)                                                                      \
    X(SUM, sum, "cumsum", ACCUMULATE, "0", LINEAR, a)                                       \
    X(PROD, prod, "cumprod", ACCUMULATE, "1", CURVED, a)                                    \
    X(MAX, max, "cummax", ORDER, "-inf (integers: the minimum, bool: False)", PIECEWISE, a) \
    X(MIN, min, "cummin", ORDER, "+inf (integers: the maximum, bool: True)", PIECEWISE, a)  \
    X(LOGSUMEXP, lse, "logcumsumexp", LOG, "-inf", CURVED, a)

/* dtype: enum name, kernel suffix, NumPy type token (NPY_<token>), NumPy
 * name, NumPy kind, item size */
#define SCAN_DTYPES(X, a)                                                                   \
    X(BOOL, b1, BOOL, "bool", 'b', 1, a)                                                    \
    X(I8, i8, INT8, "int8", 'i', 1, a)                                                      \
    X(I16, i16, INT16, "int16", 'i', 2, a)                                                  \
    X(I32, i32, INT32, "int32", 'i', 4, a)                                                  \
    X(I64, i64, INT64, "int64", 'i', 8, a)                                                  \
    X(U8, u8, UINT8, "uint8", 'u', 1, a)                                                    \
    X(U16, u16, UINT16, "uint16", 'u', 2, a)                                                \
    X(U32, u32, UINT32, "uint32", 'u', 4, a)                                                \
    X(U64, u64, UINT64, "uint64", 'u', 8, a)                                                \
    X(F16, f16, FLOAT16, "float16", 'f', 2, a)                                              \
    X(F32, f32, FLOAT32, "float32", 'f', 4, a)                                              \
    X(F64, f64, FLOAT64, "float64", 'f', 8, a)                                              \
    X(C64, c64, COMPLEX64, "complex64", 'c', 8, a)                                          \
    X(C128, c128, COMPLEX128, "complex128", 'c', 16, a)

/* mode: enum name, name.  Operand order per mode:
 *   FORWARD: 0 x, 1 y, 2 indices (int64, max/min only; may be absent)
 *   JVP:     0 x, 1 t, 2 y, 3 y_dot
 *   VJP:     0 x, 1 y (the forward output), 2 g, 3 x_bar
 *   VJP_JVP: 0 x, 1 t, 2 g, 3 g_dot (may be absent: zero), 4 x_bar,
 *            5 x_bar_dot (the JVP of the pullback, docs/derivatives.md);
 *            no y: the kernels compute what they need of the forward into
 *            x_bar / x_bar_dot before the backward walk overwrites it
 * A VJP block is laid out in the forward scan order like the others; the
 * kernel itself walks it backwards where its recurrence needs to. */
#define SCAN_MODES(X, a)                                                                    \
    X(FORWARD, "forward", a)                                                                \
    X(JVP, "jvp", a)                                                                        \
    X(VJP, "vjp", a)                                                                        \
    X(VJP_JVP, "vjp_jvp", a)

#define SCAN_OP_ENUM_(E, prefix, name, rule, identity, shape, a) SCAN_##E,
#define SCAN_DTYPE_ENUM_(E, sfx, npy, name, kind, size, a) DT_##E,
#define SCAN_MODE_ENUM_(E, name, a) MODE_##E,

typedef enum { SCAN_OPS(SCAN_OP_ENUM_, ) SCAN_NUM_OPS } scan_op;
/* the storage dtypes the kernels know; the binding maps NumPy's onto them */
typedef enum { SCAN_DTYPES(SCAN_DTYPE_ENUM_, ) SCAN_NUM_DTYPES } scan_dtype;
typedef enum { SCAN_MODES(SCAN_MODE_ENUM_, ) SCAN_NUM_MODES } scan_mode;

#endif
