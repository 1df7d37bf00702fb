/* dtypes.h: each dtype's traits, which the kernel templates reach through
 * the generic names defined in instantiate.h (T, A, LD, ST, ...):
 *   T       storage type          A      accumulator (sums, products, derivatives)
 *   ld/st   load as A / store an A, mul  A * A (complex: the textbook product)
 *   MV, mld/mst, lowest/highest, isnan   what cummax/cummin compare (real dtypes)
 *   lld/lst, conjmul                     logcumsumexp and the derivatives (floating)
 * Integer sums and products wrap (uint64 arithmetic); bool sums are a logical
 * or and products a logical and, as in NumPy; float16 accumulates in float32,
 * float32 in float64 (rounding once per output), complex64 in complex128
 * (docs/semantics.md, "dtypes"). */
#ifndef SCANAD_KERNELS_DTYPES_H
#define SCANAD_KERNELS_DTYPES_H

#include "common.h"

#define INTEGER_DTYPE(sfx, type, load_as, lowest, highest)                                  \
    typedef type T_##sfx;                                                                   \
    typedef uint64_t A_##sfx;                                                               \
    typedef type MV_##sfx;                                                                  \
    SCAN_INLINE uint64_t ld_##sfx(const char *p) { return (uint64_t)(load_as)*(const type *)p; } \
    SCAN_INLINE void st_##sfx(char *p, uint64_t a) { *(type *)p = (type)a; }                \
    SCAN_INLINE uint64_t mul_##sfx(uint64_t a, uint64_t b) { return a * b; }                \
    SCAN_INLINE type mld_##sfx(const char *p) { return *(const type *)p; }                  \
    SCAN_INLINE void mst_##sfx(char *p, type v) { *(type *)p = v; }                         \
    SCAN_INLINE int isnan_##sfx(type v) { return (void)v, 0; }                              \
    SCAN_INLINE type lowest_##sfx(void) { return lowest; }                                  \
    SCAN_INLINE type highest_##sfx(void) { return highest; }

/* bool: stored as 0/1; any nonzero accumulator stores as True */
typedef uint8_t T_b1;
typedef uint64_t A_b1;
typedef uint8_t MV_b1;
SCAN_INLINE uint64_t ld_b1(const char *p) { return *(const uint8_t *)p; }
SCAN_INLINE void st_b1(char *p, uint64_t a) { *(uint8_t *)p = (uint8_t)(a != 0); }
SCAN_INLINE uint64_t mul_b1(uint64_t a, uint64_t b) { return a * b; }
SCAN_INLINE uint8_t mld_b1(const char *p) { return *(const uint8_t *)p; }
SCAN_INLINE void mst_b1(char *p, uint8_t v) { *(uint8_t *)p = v; }
SCAN_INLINE int isnan_b1(uint8_t v) { return (void)v, 0; }
SCAN_INLINE uint8_t lowest_b1(void) { return 0; }
SCAN_INLINE uint8_t highest_b1(void) { return 1; }

INTEGER_DTYPE(i8, int8_t, int64_t, INT8_MIN, INT8_MAX)
INTEGER_DTYPE(i16, int16_t, int64_t, INT16_MIN, INT16_MAX)
INTEGER_DTYPE(i32, int32_t, int64_t, INT32_MIN, INT32_MAX)
INTEGER_DTYPE(i64, int64_t, int64_t, INT64_MIN, INT64_MAX)
INTEGER_DTYPE(u8, uint8_t, uint64_t, 0, UINT8_MAX)
INTEGER_DTYPE(u16, uint16_t, uint64_t, 0, UINT16_MAX)
INTEGER_DTYPE(u32, uint32_t, uint64_t, 0, UINT32_MAX)
INTEGER_DTYPE(u64, uint64_t, uint64_t, 0, UINT64_MAX)

/* real floating dtypes: storage, accumulator, load (as A), store (from A) */
#define REAL_DTYPE(sfx, type, acc, load, store)                                             \
    typedef type T_##sfx;                                                                   \
    typedef acc A_##sfx;                                                                    \
    SCAN_INLINE acc ld_##sfx(const char *p) { return (acc)(load); }                         \
    SCAN_INLINE void st_##sfx(char *p, acc a) { store; }                                    \
    SCAN_INLINE acc mul_##sfx(acc a, acc b) { return a * b; }                               \
    SCAN_INLINE acc conjmul_##sfx(acc a, acc b) { return a * b; }                           \
    SCAN_INLINE double lld_##sfx(const char *p) { return (double)ld_##sfx(p); }             \
    SCAN_INLINE void lst_##sfx(char *p, double v) { st_##sfx(p, (acc)v); }                  \
    SCAN_INLINE int isnan_##sfx(acc v) { return v != v; }

REAL_DTYPE(f16, uint16_t, float, half_to_float(*(const uint16_t *)p),
           *(uint16_t *)p = float_to_half(a))
REAL_DTYPE(f32, float, double, *(const float *)p, *(float *)p = (float)a)
REAL_DTYPE(f64, double, double, *(const double *)p, *(double *)p = a)

/* cummax/cummin compare float16 as float32, float32 and float64 as stored */
typedef float MV_f16;
SCAN_INLINE float mld_f16(const char *p) { return ld_f16(p); }
SCAN_INLINE void mst_f16(char *p, float v) { st_f16(p, v); }
typedef float MV_f32;
SCAN_INLINE float mld_f32(const char *p) { return *(const float *)p; }
SCAN_INLINE void mst_f32(char *p, float v) { *(float *)p = v; }
typedef double MV_f64;
SCAN_INLINE double mld_f64(const char *p) { return *(const double *)p; }
SCAN_INLINE void mst_f64(char *p, double v) { *(double *)p = v; }
#define REAL_EXTREMES(sfx)                                                                  \
    SCAN_INLINE MV_##sfx lowest_##sfx(void) { return -INFINITY; }                           \
    SCAN_INLINE MV_##sfx highest_##sfx(void) { return INFINITY; }
REAL_EXTREMES(f16)
REAL_EXTREMES(f32)
REAL_EXTREMES(f64)

/* float32 and float64 rows load as four doubles: the 4-lane kernels (narrow
 * rows, single-line log-step scans) exist for them (#if NARROW_<sfx>) */
#define NARROW_f32 1
#define NARROW_f64 1
#define NARROW_LOAD_f32(dst, p) narrow_load_f32(&(dst), (p))
#define NARROW_STORE_f32(p, v) narrow_store_f32((p), &(v))
#define NARROW_LOAD_f64(dst, p) V4_LOAD(dst, p)
#define NARROW_STORE_f64(p, v) V4_STORE(p, v)
/* float32 single lines have kernels of their own (8 lanes) */
#define IS_F32_f32 1

#define COMPLEX_DTYPE(sfx, type)                                                            \
    typedef type T_##sfx;                                                                   \
    typedef cdouble A_##sfx;                                                                \
    SCAN_INLINE cdouble ld_##sfx(const char *p) { return (cdouble)*(const type *)p; }       \
    SCAN_INLINE void st_##sfx(char *p, cdouble a) { *(type *)p = (type)a; }                 \
    SCAN_INLINE cdouble mul_##sfx(cdouble a, cdouble b) { return cmul(a, b); }              \
    SCAN_INLINE cdouble conjmul_##sfx(cdouble a, cdouble b) { return cconjmul(a, b); }      \
    SCAN_INLINE cdouble lld_##sfx(const char *p) { return ld_##sfx(p); }                    \
    SCAN_INLINE void lst_##sfx(char *p, cdouble v) { st_##sfx(p, v); }
COMPLEX_DTYPE(c64, cfloat)
COMPLEX_DTYPE(c128, cdouble)

#endif
