/* instantiate.h: every op's kernels and cells for one dtype.  Included by
 * table.h once per dtype with SFX (the kernel suffix of scan_matrix.h) and
 * KIND (its NumPy kind) defined; undefines both at the end.  Each op header
 * (ops/<op>.h) defines <prefix>_cells_<SFX>, empty where the op has no
 * kernel for the dtype. */
#ifndef SCANAD_INSTANTIATE_GENERIC
#define SCANAD_INSTANTIATE_GENERIC
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define KN(name) CAT(name, SFX)

/* the traits of dtypes.h under generic names */
#define T CAT(T_, SFX)
#define A CAT(A_, SFX)
#define MV CAT(MV_, SFX)
#define LD(p) CAT(ld_, SFX)(p)
#define ST(p, a) CAT(st_, SFX)(p, a)
#define ADD(a, b) ((a) + (b))
#define MUL(a, b) CAT(mul_, SFX)(a, b)
#define CONJMUL(a, b) CAT(conjmul_, SFX)(a, b)
#define ZERO ((A)0)
#define ONE ((A)1)
#define MLD(p) CAT(mld_, SFX)(p)
#define MST(p, v) CAT(mst_, SFX)(p, v)
#define M_ISNAN(v) CAT(isnan_, SFX)(v)
#define M_LOWEST CAT(lowest_, SFX)()
#define M_HIGHEST CAT(highest_, SFX)()
#define LLD(p) CAT(lld_, SFX)(p)
#define LST(p, v) CAT(lst_, SFX)(p, v)
#define NARROW_LOAD(dst, p) CAT(NARROW_LOAD_, SFX)(dst, p)
#define NARROW_STORE(p, v) CAT(NARROW_STORE_, SFX)(p, v)

/* for #if: a dtype without the macro of a feature lacks the feature */
#define HAS_DERIV (KIND == 'f' || KIND == 'c')
#define LSE_COMPLEX (KIND == 'c')
#define HAS_NARROW CAT(NARROW_, SFX)
#define IS_F32 CAT(IS_F32_, SFX)

/* The AVX-512 table's cumprod and linear_scan kernels auto-vectorise with
 * 256-bit vectors: their tiles widen, reverse and range-check a few hundred
 * elements at a time, and in zmm (opmask compares, lane-crossing shuffles)
 * those loops ran slower than the AVX2 table's (docs/performance.md,
 * "AVX-512 against AVX2"); logcumsumexp's vector math gains from zmm. */
#if defined(SCAN_ISA_AVX512) && defined(__GNUC__) && !defined(__clang__)
#define SCAN_YMM_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"prefer-vector-width=256\")")
#define SCAN_YMM_END _Pragma("GCC pop_options")
#else
#define SCAN_YMM_BEGIN
#define SCAN_YMM_END
#endif
#endif

#include "line.h"
#include "accumulate.h"
#include "second_order.h"
#include "ops/cumsum.h"
SCAN_YMM_BEGIN
#include "ops/cumprod.h"
SCAN_YMM_END
#include "ops/cummax_cummin.h"
#include "ops/logcumsumexp.h"
SCAN_YMM_BEGIN
#include "ops/linear_scan.h"
SCAN_YMM_END

#undef SFX
#undef KIND
