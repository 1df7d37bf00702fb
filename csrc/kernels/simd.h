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
#include <string.h>

typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4i __attribute__((vector_size(32)));

#if defined(__clang__)
#define V4_SHIFT1(v, fill) __builtin_shufflevector(v, fill, 4, 0, 1, 2)
#define V4_SHIFT2(v, fill) __builtin_shufflevector(v, fill, 4, 5, 0, 1)
#define V4_REVERSE(v) __builtin_shufflevector(v, v, 3, 2, 1, 0)
#else
#define V4_SHIFT1(v, fill) __builtin_shuffle(v, fill, (v4i){4, 0, 1, 2})
#define V4_SHIFT2(v, fill) __builtin_shuffle(v, fill, (v4i){4, 5, 0, 1})
#define V4_REVERSE(v) __builtin_shuffle(v, (v4i){3, 2, 1, 0})
#endif
/* every lane = s (adding s to a zero vector would turn -0.0 into +0.0) */
#define V4_SPLAT(s) ((v4d){(s), (s), (s), (s)})
#define V4I_SPLAT(s) ((v4i){(s), (s), (s), (s)})

/* unaligned loads and stores; macros, since a function returning a 32-byte
 * vector has an ABI that differs between the baseline and AVX variants */
#define V4_LOAD(dst, p) memcpy(&(dst), (p), sizeof(v4d))
#define V4_STORE(p, v) memcpy((p), &(v), sizeof(v4d))

/* four floats to and from four doubles (exact; the store rounds to nearest) */
typedef float v4f __attribute__((vector_size(16)));
static inline void narrow_load_f32(v4d *dst, const char *p)
{
    v4f f;
    memcpy(&f, p, sizeof f);
    *dst = __builtin_convertvector(f, v4d);
}
static inline void narrow_store_f32(char *p, const v4d *v)
{
    const v4f f = __builtin_convertvector(*v, v4f);
    memcpy(p, &f, sizeof f);
}

/* out[i] = S_i for the affine recurrence S_i = a_i S_{i-1} + e_i, S_{-1} = S;
 * returns the last S.  Within a vector the maps (a, e) compose in two steps;
 * a_i are in [0, 1] and e_i in [0, 1] here, so the reassociation costs a few
 * ulp at most and nothing can overflow. */
static inline double affine_scan(const double *a, const double *e, double *out, int64_t cnt,
                                 double S)
{
    const v4d one = {1.0, 1.0, 1.0, 1.0}, zero = {0.0, 0.0, 0.0, 0.0};
    int64_t i = 0;
    /* two vectors per step: the second is composed with the first off the
     * carry chain, so the chain is one multiply-add per 8 elements */
    for (; i + 8 <= cnt; i += 8) {
        v4d A, B, A2, B2;
        V4_LOAD(A, a + i);
        V4_LOAD(B, e + i);
        V4_LOAD(A2, a + i + 4);
        V4_LOAD(B2, e + i + 4);
        B = A * V4_SHIFT1(B, zero) + B;
        A = A * V4_SHIFT1(A, one);
        B2 = A2 * V4_SHIFT1(B2, zero) + B2;
        A2 = A2 * V4_SHIFT1(A2, one);
        B = A * V4_SHIFT2(B, zero) + B;
        A = A * V4_SHIFT2(A, one);
        B2 = A2 * V4_SHIFT2(B2, zero) + B2;
        A2 = A2 * V4_SHIFT2(A2, one);
        B2 = A2 * B[3] + B2;
        A2 = A2 * A[3];
        const v4d s = A * S + B, s2 = A2 * S + B2;
        V4_STORE(out + i, s);
        V4_STORE(out + i + 4, s2);
        S = s2[3];
    }
    for (; i < cnt; i++) {
        S = a[i] * S + e[i];
        out[i] = S;
    }
    return S;
}

#endif
