/* common.h: scalar helpers shared by every kernel translation unit.
 * Everything is static inline so each ISA variant compiles its own copy with
 * its own target flags. */
#ifndef SCANAD_KERNELS_COMMON_H
#define SCANAD_KERNELS_COMMON_H

#include <complex.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../scan.h"
#include "vmath.h"
#include "simd.h"

#if defined(__GNUC__)
#define SCAN_INLINE static inline __attribute__((always_inline))
#else
#define SCAN_INLINE static inline
#endif


typedef float _Complex cfloat;
typedef double _Complex cdouble;

/* --- float16 <-> float32, round to nearest even, NaN/inf/subnormals kept --- */
SCAN_INLINE float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    float out;
    if (exponent == 0) {
        /* zero or subnormal: mant * 2^-24 is exact in float */
        out = (float)mant * 5.9604644775390625e-08f;
        memcpy(&bits, &out, 4);
        bits |= sign;
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mant << 13);
    }
    memcpy(&out, &bits, 4);
    return out;
}

SCAN_INLINE uint16_t float_to_half(float v)
{
    uint32_t f, sign, absf;
    memcpy(&f, &v, 4);
    sign = (f >> 16) & 0x8000u;
    absf = f & 0x7fffffffu;
    if (absf >= 0x7f800000u) /* inf or NaN (keep it quiet) */
        return (uint16_t)(sign | 0x7c00u | (absf > 0x7f800000u ? 0x200u | ((absf >> 13) & 0x3ffu) : 0u));
    if (absf >= 0x477ff000u) /* >= 65520 rounds to infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (absf < 0x38800000u) {
        /* subnormal half: a * 2^24 is exact; adding 2^23 rounds it to an
         * integer in the current (nearest-even) mode. */
        float a, r;
        memcpy(&a, &absf, 4);
        r = (a * 16777216.0f + 8388608.0f) - 8388608.0f;
        return (uint16_t)(sign | (uint32_t)r);
    }
    {
        uint32_t h = ((absf >> 23) - 112u) << 10 | ((absf & 0x7fffffu) >> 13);
        uint32_t rem = absf & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++; /* a carry into the exponent is the right answer */
        return (uint16_t)(sign | h);
    }
}

/* --- complex helpers: the textbook product (as NumPy), no Annex G rescue --- */
SCAN_INLINE cdouble cmul(cdouble a, cdouble b)
{
    double ar = creal(a), ai = cimag(a), br = creal(b), bi = cimag(b);
    return CMPLX(ar * br - ai * bi, ar * bi + ai * br);
}

SCAN_INLINE cdouble cconjmul(cdouble a, cdouble b) /* conj(a) * b */
{
    double ar = creal(a), ai = -cimag(a), br = creal(b), bi = cimag(b);
    return CMPLX(ar * br - ai * bi, ar * bi + ai * br);
}

/* Complex quotient u / s, scaled like Smith's method so |s| near the
 * overflow threshold does not overflow. */
SCAN_INLINE cdouble cdiv(cdouble u, cdouble s)
{
    double a = creal(u), b = cimag(u), c = creal(s), d = cimag(s);
    if (fabs(c) >= fabs(d)) {
        double r = d / c, den = c + d * r;
        return CMPLX((a + b * r) / den, (b - a * r) / den);
    } else {
        double r = c / d, den = c * r + d;
        return CMPLX((a * r + b) / den, (b * r - a) / den);
    }
}

/* exp(i*theta) */
SCAN_INLINE cdouble cis(double theta) { return CMPLX(cos(theta), sin(theta)); }

/* log with the imaginary part in (-pi, pi] as docs/semantics.md specifies (carg gives
 * -pi for a negative real with a negative-zero imaginary part). */
SCAN_INLINE cdouble clog_principal(cdouble s)
{
    const double pi = 3.14159265358979323846;
    double im = carg(s);
    if (im == -pi)
        im = pi;
    return CMPLX(log(cabs(s)), im);
}

#endif
