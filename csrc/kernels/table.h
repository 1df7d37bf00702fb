/* table.h: instantiates every kernel for every dtype and fills one
 * scan_table.  An ISA translation unit sets its target flags, defines
 * SCAN_TABLE_NAME and SCAN_ISA_NAME, and includes this file once.
 *
 * Each dtype block below defines the trait macros the op templates use:
 *   T        storage type            A     accumulator (sum, prod, derivatives)
 *   LD/ST    load as A / store an A  ADD, MUL, CONJMUL (conj(a) * b), ZERO, ONE
 *   MV/MLD/MST, M_LOWEST/M_HIGHEST/M_ISNAN   cummax/cummin (real dtypes only)
 *   LLD/LST, LSE_COMPLEX                     logcumsumexp (floating dtypes only)
 */
#include "common.h"
#include "walk.h"
#include "simd.h"

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define KN(name) CAT(name, SFX)

/* ---------- integer and bool dtypes: sums and products wrap (uint64 arithmetic) ---------- */
#define HAS_DERIV 0
#define HAS_LSE 0
#define ADD(a, b) ((a) + (b))
#define MUL(a, b) ((a) * (b))
#define ZERO ((uint64_t)0)
#define ONE ((uint64_t)1)
#define M_ISNAN(v) 0
#define MLD(p) (*(const T *)(p))
#define MST(p, v) (*(T *)(p) = (v))

/* bool: a sum is a logical or and a product a logical and, as in NumPy */
#define SFX b1
#define T uint8_t
#define A uint64_t
#define LD(p) ((uint64_t)(*(const uint8_t *)(p)))
#define ST(p, a) (*(uint8_t *)(p) = (uint8_t)((a) != 0))
#define MV uint8_t
#define M_LOWEST 0
#define M_HIGHEST 1
#include "sum_prod.h"
#include "max_min.h"
#undef SFX
#undef T
#undef A
#undef LD
#undef ST
#undef MV
#undef M_LOWEST
#undef M_HIGHEST

#define SFX i8
#define T int8_t
#define A uint64_t
#define LD(p) ((uint64_t)(int64_t)(*(const T *)(p)))
#define ST(p, a) (*(T *)(p) = (T)(a))
#define MV T
#define M_LOWEST INT8_MIN
#define M_HIGHEST INT8_MAX
#include "sum_prod.h"
#include "max_min.h"
#undef SFX
#undef T
#undef M_LOWEST
#undef M_HIGHEST
#define SFX i16
#define T int16_t
#define M_LOWEST INT16_MIN
#define M_HIGHEST INT16_MAX
#include "sum_prod.h"
#include "max_min.h"
#undef SFX
#undef T
#undef M_LOWEST
#undef M_HIGHEST
#define SFX i32
#define T int32_t
#define M_LOWEST INT32_MIN
#define M_HIGHEST INT32_MAX
#include "sum_prod.h"
#include "max_min.h"
#undef SFX
#undef T
#undef M_LOWEST
#undef M_HIGHEST
#define SFX i64
#define T int64_t
#define M_LOWEST INT64_MIN
#define M_HIGHEST INT64_MAX
#include "sum_prod.h"
#include "max_min.h"
#undef SFX
#undef T
#undef M_LOWEST
#undef M_HIGHEST
#undef LD
#define LD(p) ((uint64_t)(*(const T *)(p)))
#define SFX u8
#define T uint8_t
#define M_LOWEST 0
#define M_HIGHEST UINT8_MAX
#include "sum_prod.h"
#include "max_min.h"
#undef SFX
#undef T
#undef M_HIGHEST
#define SFX u16
#define T uint16_t
#define M_HIGHEST UINT16_MAX
#include "sum_prod.h"
#include "max_min.h"
#undef SFX
#undef T
#undef M_HIGHEST
#define SFX u32
#define T uint32_t
#define M_HIGHEST UINT32_MAX
#include "sum_prod.h"
#include "max_min.h"
#undef SFX
#undef T
#undef M_HIGHEST
#define SFX u64
#define T uint64_t
#define M_HIGHEST UINT64_MAX
#include "sum_prod.h"
#include "max_min.h"
#undef SFX
#undef T
#undef M_LOWEST
#undef M_HIGHEST
#undef A
#undef LD
#undef ST
#undef MV
#undef ADD
#undef MUL
#undef ZERO
#undef ONE
#undef M_ISNAN
#undef MLD
#undef MST
#undef HAS_DERIV
#undef HAS_LSE

/* ---------- real floating dtypes ---------- */
#define HAS_DERIV 1
#define LSE_COMPLEX 0
#define ADD(a, b) ((a) + (b))
#define MUL(a, b) ((a) * (b))
#define CONJMUL(a, b) ((a) * (b))
#define M_ISNAN(v) ((v) != (v))
#define M_LOWEST (-INFINITY)
#define M_HIGHEST (INFINITY)

/* float16 accumulates in float32 (docs/semantics.md, "dtypes") */
#define SFX f16
#define T uint16_t
#define A float
#define ZERO 0.0f
#define ONE 1.0f
#define LD(p) half_to_float(*(const uint16_t *)(p))
#define ST(p, a) (*(uint16_t *)(p) = float_to_half((float)(a)))
#define MV float
#define MLD(p) LD(p)
#define MST(p, v) ST(p, v)
#define LLD(p) ((double)LD(p))
#define LST(p, v) ST(p, (float)(v))
#include "line.h"
#include "sum_prod.h"
#include "max_min.h"
#include "logsumexp.h"
#include "ops/linear_scan.h"
#undef NARROW_LOAD
#undef NARROW_STORE
#undef SFX
#undef T
#undef A
#undef ZERO
#undef ONE
#undef LD
#undef ST
#undef MV
#undef MLD
#undef MST
#undef LLD
#undef LST

/* float32 accumulates in float64 and rounds once per output */
#define SFX f32
#define T float
#define A double
#define ZERO 0.0
#define ONE 1.0
#define LD(p) ((double)*(const float *)(p))
#define ST(p, a) (*(float *)(p) = (float)(a))
#define MV float
#define MLD(p) (*(const float *)(p))
#define MST(p, v) (*(float *)(p) = (v))
#define LLD(p) LD(p)
#define LST(p, v) ST(p, v)
#define NARROW_LOAD(dst, p) narrow_load_f32(&(dst), (p))
#define NARROW_STORE(p, v) narrow_store_f32((p), &(v))
#define LINE_F32 1
#include "line.h"
#include "sum_prod.h"
#include "max_min.h"
#include "logsumexp.h"
#include "ops/linear_scan.h"
#undef SFX
#undef T
#undef LD
#undef ST
#undef MV
#undef MLD
#undef MST
#undef NARROW_LOAD
#undef NARROW_STORE
#undef LINE_F32

#define NARROW_LOAD(dst, p) V4_LOAD(dst, p)
#define NARROW_STORE(p, v) V4_STORE(p, v)
#define SFX f64
#define T double
#define LD(p) (*(const double *)(p))
#define ST(p, a) (*(double *)(p) = (a))
#define MV double
#define MLD(p) LD(p)
#define MST(p, v) ST(p, v)
#include "line.h"
#include "sum_prod.h"
#include "max_min.h"
#include "logsumexp.h"
#include "ops/linear_scan.h"
#undef NARROW_LOAD
#undef NARROW_STORE
#undef SFX
#undef T
#undef A
#undef ZERO
#undef ONE
#undef LD
#undef ST
#undef MV
#undef MLD
#undef MST
#undef LLD
#undef LST
#undef ADD
#undef MUL
#undef CONJMUL
#undef M_ISNAN
#undef M_LOWEST
#undef M_HIGHEST
#undef LSE_COMPLEX

/* ---------- complex dtypes: complex64 accumulates in complex128 ---------- */
#define LSE_COMPLEX 1
#define A cdouble
#define ADD(a, b) ((a) + (b))
#define MUL(a, b) cmul(a, b)
#define CONJMUL(a, b) cconjmul(a, b)
#define ZERO CMPLX(0.0, 0.0)
#define ONE CMPLX(1.0, 0.0)

#define SFX c64
#define T cfloat
#define LD(p) ((cdouble)*(const cfloat *)(p))
#define ST(p, a) (*(cfloat *)(p) = (cfloat)(a))
#define LLD(p) LD(p)
#define LST(p, v) ST(p, v)
#include "sum_prod.h"
#include "logsumexp.h"
#include "ops/linear_scan.h"
#undef SFX
#undef T
#undef LD
#undef ST

#define SFX c128
#define T cdouble
#define LD(p) (*(const cdouble *)(p))
#define ST(p, a) (*(cdouble *)(p) = (a))
#include "sum_prod.h"
#include "logsumexp.h"
#include "ops/linear_scan.h"
#undef SFX
#undef T
#undef LD
#undef ST
#undef LLD
#undef LST
#undef A
#undef ADD
#undef MUL
#undef CONJMUL
#undef ZERO
#undef ONE
#undef LSE_COMPLEX
#undef HAS_DERIV

/* ---------- the table ---------- */
#define ROW3(f, s) {f##_fwd_##s, NULL, NULL}
#define ROWD(f, s) {f##_fwd_##s, f##_jvp_##s, f##_vjp_##s}
#define NONE {NULL, NULL, NULL}
#define INT_COLUMNS(f)                                                                  \
    ROW3(f, b1), ROW3(f, i8), ROW3(f, i16), ROW3(f, i32), ROW3(f, i64), ROW3(f, u8), \
        ROW3(f, u16), ROW3(f, u32), ROW3(f, u64)

const scan_table SCAN_TABLE_NAME = {
    SCAN_ISA_NAME,
    {
        [SCAN_SUM] = {INT_COLUMNS(sum), ROWD(sum, f16), ROWD(sum, f32), ROWD(sum, f64),
                      ROWD(sum, c64), ROWD(sum, c128)},
        [SCAN_PROD] = {INT_COLUMNS(prod), ROWD(prod, f16), ROWD(prod, f32), ROWD(prod, f64),
                       ROWD(prod, c64), ROWD(prod, c128)},
        [SCAN_MAX] = {INT_COLUMNS(max), ROWD(max, f16), ROWD(max, f32), ROWD(max, f64), NONE,
                      NONE},
        [SCAN_MIN] = {INT_COLUMNS(min), ROWD(min, f16), ROWD(min, f32), ROWD(min, f64), NONE,
                      NONE},
        [SCAN_LOGSUMEXP] = {NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE,
                            ROWD(lse, f16), ROWD(lse, f32), ROWD(lse, f64), ROWD(lse, c64),
                            ROWD(lse, c128)},
    },
    /* one long line split between threads: the line kernels of line.h and
     * logsumexp.h */
    {
        [SCAN_SUM] = {[DT_F32] = {sum_reduce_f32, line_combine_sum},
                      [DT_F64] = {sum_reduce_f64, line_combine_sum}},
        [SCAN_PROD] = {[DT_F32] = {prod_reduce_f32, line_combine_prod},
                       [DT_F64] = {prod_reduce_f64, line_combine_prod}},
        [SCAN_MAX] = {[DT_F32] = {max_reduce_f32, line_combine_max},
                      [DT_F64] = {max_reduce_f64, line_combine_max}},
        [SCAN_MIN] = {[DT_F32] = {min_reduce_f32, line_combine_min},
                      [DT_F64] = {min_reduce_f64, line_combine_min}},
        [SCAN_LOGSUMEXP] = {[DT_F32] = {lse_reduce_f32, lse_combine, LSE_REDUCE_SHARE},
                            [DT_F64] = {lse_reduce_f64, lse_combine, LSE_REDUCE_SHARE}},
    },
    /* the VJPs of sums, products and logcumsumexp run their recurrence from
     * the end; the cummax/cummin VJP walks forwards but in panels of rows of
     * PANEL_SHORT_ROW_BYTES or more, for which the order of items makes no
     * difference */
    {
        [SCAN_SUM] = {[MODE_VJP] = 1},
        [SCAN_PROD] = {[MODE_VJP] = 1},
        [SCAN_LOGSUMEXP] = {[MODE_VJP] = 1},
    },
#define LS_ROW(s) {linear_fwd0_##s, linear_fwd1_##s}
    .linear = {[DT_F16] = LS_ROW(f16), [DT_F32] = LS_ROW(f32), [DT_F64] = LS_ROW(f64),
               [DT_C64] = LS_ROW(c64), [DT_C128] = LS_ROW(c128)},
    .linear_split = {[DT_F32] = {{linear_reduce0_f32, linear_combine}, {linear_reduce1_f32, linear_combine}},
                     [DT_F64] = {{linear_reduce0_f64, linear_combine}, {linear_reduce1_f64, linear_combine}}},
#undef LS_ROW
};
