/* simd.h: in-register log-step scans for a single contiguous line.
 *
 * A line scan is one long dependency chain; NumPy and PyTorch walk it one
 * element at a time.  Here a vector of 4 doubles is scanned in log2(4) = 2
 * shift-and-combine steps, so the chain from one vector to the next is a
 * single combine with the broadcast carry.  Written with GCC vector
 * extensions (no intrinsics), so every ISA variant compiles its own width:
 * two SSE2 halves in the baseline, one ymm register with AVX2.
 */
#ifndef SCANAD_KERNELS_SIMD_H
#define SCANAD_KERNELS_SIMD_H

#include <stdint.h>
#include <math.h>
#include <string.h>

#include "isa.h"

typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4i __attribute__((vector_size(32)));

#if defined(__clang__)
#define V4_SHIFT1(v, fill) __builtin_shufflevector(v, fill, 4, 0, 1, 2)
#define V4_SHIFT2(v, fill) __builtin_shufflevector(v, fill, 4, 5, 0, 1)
#define V4_BROADCAST3(v) __builtin_shufflevector(v, v, 3, 3, 3, 3)
#define V4_SHIFT1_DOWN(v, fill) __builtin_shufflevector(v, fill, 1, 2, 3, 4)
#define V4_SHIFT2_DOWN(v, fill) __builtin_shufflevector(v, fill, 2, 3, 4, 5)
#define V4_BROADCAST0(v) __builtin_shufflevector(v, v, 0, 0, 0, 0)
#else
#define V4_SHIFT1(v, fill) __builtin_shuffle(v, fill, (v4i){4, 0, 1, 2})
#define V4_SHIFT2(v, fill) __builtin_shuffle(v, fill, (v4i){4, 5, 0, 1})
#define V4_BROADCAST3(v) __builtin_shuffle(v, (v4i){3, 3, 3, 3})
#define V4_SHIFT1_DOWN(v, fill) __builtin_shuffle(v, fill, (v4i){1, 2, 3, 4})
#define V4_SHIFT2_DOWN(v, fill) __builtin_shuffle(v, fill, (v4i){2, 3, 4, 5})
#define V4_BROADCAST0(v) __builtin_shuffle(v, (v4i){0, 0, 0, 0})
#endif
/* Lanes in memory order: a line walked backwards (back = 1) runs in scan
 * order from the top lane down, so its shifts and its last element mirror
 * those of a line walked up, and no load or store reverses its lanes (two
 * lane-crossing permutes per vector, which AMD's Zen 3 issues at half rate). */
#define LINE_SHIFT1(v, fill, back) ((back) ? V4_SHIFT1_DOWN(v, fill) : V4_SHIFT1(v, fill))
#define LINE_SHIFT2(v, fill, back) ((back) ? V4_SHIFT2_DOWN(v, fill) : V4_SHIFT2(v, fill))
#define LINE_LAST(v, back) ((back) ? V4_BROADCAST0(v) : V4_BROADCAST3(v))
/* the lane that holds a vector's element k (0-3) in scan order; k = 3: its last */
#define LINE_LANE(k, back) ((back) ? 3 - (k) : (k))
/* every lane = s (adding s to a zero vector would turn -0.0 into +0.0) */
#define V4_SPLAT(s) ((v4d){(s), (s), (s), (s)})
#define V4I_SPLAT(s) ((v4i){(s), (s), (s), (s)})

/* unaligned loads and stores; macros, since a function returning a 32-byte
 * vector has an ABI that differs between the baseline and AVX variants */
#define V4_LOAD(dst, p) memcpy(&(dst), (p), sizeof(v4d))
#define V4_STORE(p, v) memcpy((p), &(v), sizeof(v4d))

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
#if defined(SCAN_HAVE_AVX) && defined(__GNUC__)
#define V8_ANY(m) (__builtin_ia32_movmskps256((v8f)(m)) != 0)
#define V4_ANY(m) (__builtin_ia32_movmskpd256((v4d)(m)) != 0)
#else
#define V8_ANY(m) (((m)[0] | (m)[1] | (m)[2] | (m)[3] | (m)[4] | (m)[5] | (m)[6] | (m)[7]) != 0)
#define V4_ANY(m) (((m)[0] | (m)[1] | (m)[2] | (m)[3]) != 0)
#endif

/* four floats to and from four doubles (exact; the store rounds to nearest) */
typedef float v4f __attribute__((vector_size(16)));
static inline void narrow_load_f32(v4d *dst, const char *p)
{
    v4f f;
    memcpy(&f, p, sizeof f);
#if defined(SCAN_HAVE_AVX) && defined(__GNUC__) && !defined(__clang__)
    /* GCC 12 lowers the generic conversion to two 2-lane halves through
     * the stack (store, reload, insert); the AVX instruction does it in one */
    *dst = __builtin_ia32_cvtps2pd256(f);
#else
    *dst = __builtin_convertvector(f, v4d);
#endif
}
static inline void narrow_store_f32(char *p, const v4d *v)
{
    const v4f f = __builtin_convertvector(*v, v4f);
    memcpy(p, &f, sizeof f);
}

#if defined(__GNUC__)
#define SIMD_INLINE static inline __attribute__((always_inline))
#else
#define SIMD_INLINE static inline
#endif
/* r[c] lane l <- r[l] lane c: four rows of four doubles to four columns
 * (unpack within 128-bit halves, then swap halves: eight shuffles) */
#if defined(__clang__)
#define V4_PICK(a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)
#else
#define V4_PICK(a, b, i, j, k, l) __builtin_shuffle(a, b, (v4i){i, j, k, l})
#endif
SIMD_INLINE void v4_transpose(v4d r[4])
{
    const v4d t0 = V4_PICK(r[0], r[1], 0, 4, 2, 6), t1 = V4_PICK(r[0], r[1], 1, 5, 3, 7);
    const v4d t2 = V4_PICK(r[2], r[3], 0, 4, 2, 6), t3 = V4_PICK(r[2], r[3], 1, 5, 3, 7);
    r[0] = V4_PICK(t0, t2, 0, 1, 4, 5);
    r[1] = V4_PICK(t1, t3, 0, 1, 4, 5);
    r[2] = V4_PICK(t0, t2, 2, 3, 6, 7);
    r[3] = V4_PICK(t1, t3, 2, 3, 6, 7);
}
#undef V4_PICK

/* Log-step composition of the affine maps S -> a_k S + e_k of eight
 * consecutive elements, two vectors (a, e: elements 0-3; a2, e2: 4-7).
 * affine_group_products gives the prefix products of a within each vector
 * after one shift step (A1, B1) and two (A2, B2: complete); then
 * affine_group_offsets turns e, e2 into the offsets of the maps from the
 * group start, so that S_k = A2 S + e (k < 4) and B2 A2[3] S + e2 (k >= 4).
 * Two functions because a caller may scale e by the products in between
 * (the cumprod JVP); pointers, since vector arguments have an ABI that
 * differs between the baseline and AVX variants.  back: the group walks
 * down in memory with its lanes in memory order (LINE_SHIFT1), so element
 * 0 is lane 3 of a and element 7 lane 0 of a2. */
SIMD_INLINE void affine_group_products(const v4d *a, const v4d *a2, v4d *A1, v4d *A2, v4d *B1,
                                       v4d *B2, const int back)
{
    const v4d one = {1.0, 1.0, 1.0, 1.0};
    *A1 = *a * LINE_SHIFT1(*a, one, back);
    *B1 = *a2 * LINE_SHIFT1(*a2, one, back);
    *A2 = *A1 * LINE_SHIFT2(*A1, one, back);
    *B2 = *B1 * LINE_SHIFT2(*B1, one, back);
}
SIMD_INLINE void affine_group_offsets(const v4d *a, const v4d *a2, const v4d *A1, const v4d *B1,
                                      const v4d *B2, v4d *e, v4d *e2, const int back)
{
    const v4d zero = {0.0, 0.0, 0.0, 0.0};
    *e = *a * LINE_SHIFT1(*e, zero, back) + *e;
    *e2 = *a2 * LINE_SHIFT1(*e2, zero, back) + *e2;
    *e = *A1 * LINE_SHIFT2(*e, zero, back) + *e;
    *e2 = *B1 * LINE_SHIFT2(*e2, zero, back) + *e2;
    *e2 = *B2 * (*e)[LINE_LANE(3, back)] + *e2;
}

/* affine_scan for factors that may be large: groups of eight run while the
 * carry *S is within +-bound (the caller has checked that the factors and
 * offsets are tame, so no composition can overflow where the one-at-a-time
 * recurrence would not); returns how many elements were done, a multiple of
 * eight, leaving the rest (a carry out of bounds, NaN, a short tail) to the
 * caller's exact step. */
static inline int64_t affine_scan_within(const double *a, const double *e, double *out, int64_t cnt,
                                         double *S, double bound)
{
    double s0 = *S;
    int64_t i = 0;
    /* two vectors per step: the second is composed with the first off the
     * carry chain, so the chain is one multiply-add per 8 elements */
    for (; i + 8 <= cnt && fabs(s0) <= bound; i += 8) {
        v4d x, x2, B, B2, P1, P2, Q1, Q2;
        V4_LOAD(x, a + i);
        V4_LOAD(B, e + i);
        V4_LOAD(x2, a + i + 4);
        V4_LOAD(B2, e + i + 4);
        affine_group_products(&x, &x2, &P1, &P2, &Q1, &Q2, 0);
        affine_group_offsets(&x, &x2, &P1, &Q1, &Q2, &B, &B2, 0);
        const v4d s = P2 * s0 + B, s2 = (Q2 * P2[3]) * s0 + B2;
        V4_STORE(out + i, s);
        V4_STORE(out + i + 4, s2);
        s0 = s2[3];
    }
    *S = s0;
    return i;
}

/* out[i] = S_i for the affine recurrence S_i = a_i S_{i-1} + e_i, S_{-1} = S;
 * returns the last S.  a_i are in [0, 1] and e_i in [0, 1] here, so the
 * reassociation costs a few ulp at most and nothing can overflow: no bound
 * on the carry (a NaN carry finishes one element at a time, still NaN). */
static inline double affine_scan(const double *a, const double *e, double *out, int64_t cnt,
                                 double S)
{
    for (int64_t i = affine_scan_within(a, e, out, cnt, &S, INFINITY); i < cnt; i++) {
        S = a[i] * S + e[i];
        out[i] = S;
    }
    return S;
}

/* Largest of x[0..cnt) (NaN ignored) into *max; returns whether all are
 * finite (x * 0 is NaN exactly for infinities and NaN).  With `widen` (a
 * compile-time constant) x is float32, read ascending from `src`, and is
 * written to x as doubles in the same pass. */
SIMD_INLINE int tile_max_finite_(double *x, const char *src, int64_t cnt, double *max,
                                 const int widen)
{
    v4d m = V4_SPLAT(-INFINITY), m2 = m, z = {0.0, 0.0, 0.0, 0.0}, z2 = z;
    int64_t i = 0;
    for (; i + 8 <= cnt; i += 8) {
        v4d v, v2;
        if (widen) {
            narrow_load_f32(&v, src + 4 * i);
            narrow_load_f32(&v2, src + 4 * (i + 4));
            V4_STORE(x + i, v);
            V4_STORE(x + i + 4, v2);
        } else {
            V4_LOAD(v, x + i);
            V4_LOAD(v2, x + i + 4);
        }
        const v4i gt = (v4i)(v > m), gt2 = (v4i)(v2 > m2);
        m = (v4d)(((v4i)v & gt) | ((v4i)m & ~gt));
        m2 = (v4d)(((v4i)v2 & gt2) | ((v4i)m2 & ~gt2));
        z += v * 0.0;
        z2 += v2 * 0.0;
    }
    double mx = -INFINITY, zs = 0.0;
    for (int k = 0; k < 4; k++) {
        mx = m[k] > mx ? m[k] : mx;
        mx = m2[k] > mx ? m2[k] : mx;
        zs += z[k] + z2[k];
    }
    for (; i < cnt; i++) {
        if (widen) {
            float f;
            memcpy(&f, src + 4 * i, 4);
            x[i] = f;
        }
        mx = x[i] > mx ? x[i] : mx;
        zs += x[i] * 0.0;
    }
    *max = mx;
    return zs == 0.0;
}
static inline int tile_max_finite(const double *x, int64_t cnt, double *max)
{
    return tile_max_finite_((double *)x, NULL, cnt, max, 0);
}
/* the float32 tile of a line running up: loaded in the pass that finds its
 * max (one pass over the tile fewer) */
static inline int tile_widen_max_finite(double *x, const char *src, int64_t cnt, double *max)
{
    return tile_max_finite_(x, src, cnt, max, 1);
}

/* e[0] + ... + e[cnt - 1], in eight running sums (the one chain of a plain
 * loop would be an add's latency per element) */
static inline double vector_sum(const double *e, int64_t cnt)
{
    v4d s = V4_SPLAT(0.0), s2 = s;
    int64_t i = 0;
    for (; i + 8 <= cnt; i += 8) {
        v4d v, v2;
        V4_LOAD(v, e + i);
        V4_LOAD(v2, e + i + 4);
        s += v;
        s2 += v2;
    }
    s += s2;
    double total = (s[0] + s[1]) + (s[2] + s[3]);
    for (; i < cnt; i++)
        total += e[i];
    return total;
}

/* out[i] = S + e[0] + ... + e[i]; returns the last.  Same shape as
 * affine_scan with every a_i = 1: two shift-and-add steps per vector off the
 * carry chain, one add per 8 elements on it. */
static inline double prefix_sum(const double *e, double *out, int64_t cnt, double S)
{
    const v4d zero = {0.0, 0.0, 0.0, 0.0};
    /* the carry stays a splat vector: extracting the last lane and
     * broadcasting it again each step put a shuffle round trip (10 cycles
     * per 8 elements) on the chain; the totals are splat off it */
    v4d carry = V4_SPLAT(S);
    int64_t i = 0;
    for (; i + 8 <= cnt; i += 8) {
        v4d s, s2;
        V4_LOAD(s, e + i);
        V4_LOAD(s2, e + i + 4);
        s += V4_SHIFT1(s, zero);
        s2 += V4_SHIFT1(s2, zero);
        s += V4_SHIFT2(s, zero);
        s2 += V4_SHIFT2(s2, zero);
        s2 += V4_BROADCAST3(s);
        const v4d total = V4_BROADCAST3(s2);
        s += carry;
        s2 += carry;
        V4_STORE(out + i, s);
        V4_STORE(out + i + 4, s2);
        carry += total;
    }
    S = carry[0];
    for (; i < cnt; i++) {
        S += e[i];
        out[i] = S;
    }
    return S;
}

#endif
