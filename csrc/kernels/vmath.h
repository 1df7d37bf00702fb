/* vmath.h: exp and log in plain C that the compiler can vectorise.
 *
 * libm's exp/log are calls, which stop the row-streaming loops from
 * vectorising; these (a Taylor exp, fdlibm's e_log.c) are written without
 * branches, specials handled by selects, so a loop over lanes or a tile
 * becomes SIMD code in each ISA variant.  The tests compare
 * logcumsumexp with a long double / float64 reference. */
#ifndef SCANAD_VMATH_H
#define SCANAD_VMATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "isa.h"

static inline double vm_from_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static inline uint64_t vm_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

/* a*b + c, fused where the ISA variant has FMA (isa_avx2.c, isa_avx512.c) */
#if defined(SCAN_HAVE_FMA)
#define VM_FMA(a, b, c) __builtin_fma((a), (b), (c))
#else
#define VM_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* Integer <-> double conversions through the 2^52 + 2^51 "magic" constant
 * (a double in [2^52, 2^53) holds an integer in its low bits): int64 <->
 * double has no AVX2 instruction, and these vectorise anywhere. */
#define VM_MAGIC 6755399441055744.0

/* exp and log restricted to what logcumsumexp feeds them, which is most of
 * its time: exp of x <= 0 up to rounding (x - max, y_i - y_{i+1}) or at most
 * LSE_SPAN above 0 (x - a reference kept that far below the max, see
 * logsumexp.h), log of a running sum S that is 0, >= 1, or >= exp(-LSE_SPAN)
 * on such a reference.  Results below 2^-1022 flush to 0 (they are added to
 * an S that large or scale a term that is), so no subnormal steps, no
 * division in exp (a polynomial on |r| <= ln2/2), and fewer selects.
 * `precise` (a compile-time constant) picks the degree: full for float64
 * results (error < 3 ulp of a double), shorter for float32 results (2e-9,
 * well under a float32 ulp); S itself is always summed in double. */
static inline double lse_exp_core(double x, const int precise)
{
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    /* no clamping: outside [-708, 709] the bit tricks below give garbage
     * (never undefined behaviour), which the callers' selects replace */
    /* k = round(x / ln2), held as k + 1023 in the low bits of kb: those
     * bits shifted to the exponent field are 2^k, one addition fewer than
     * converting k (the magic's own bit 51 is shifted out) */
    const double kb = VM_FMA(x, 1.44269504088896338700e+00, VM_MAGIC + 1023.0);
    const double k = kb - (VM_MAGIC + 1023.0);
    const double r = VM_FMA(-k, ln2_lo, VM_FMA(-k, ln2_hi, x)); /* k ln2_hi is exact */
    /* Estrin's scheme: in a row-streaming loop the polynomial's dependency
     * chain, not its operation count, is what bounds the speed */
    const double r2 = r * r, r4 = r2 * r2;
    double p;
    if (precise) {
        const double r8 = r4 * r4;
        const double s0 = VM_FMA(VM_FMA(1.0 / 6, r, 1.0 / 2), r2, r + 1.0);
        const double s1 = VM_FMA(VM_FMA(1.0 / 5040, r, 1.0 / 720), r2, VM_FMA(1.0 / 120, r, 1.0 / 24));
        const double s2 = VM_FMA(VM_FMA(1.0 / 39916800, r, 1.0 / 3628800), r2,
                                 VM_FMA(1.0 / 362880, r, 1.0 / 40320));
        p = VM_FMA(VM_FMA(1.0 / 479001600, r4, s2), r8, VM_FMA(s1, r4, s0));
    } else {
        /* the minimax polynomial of degree 6 with p(0) = 1 (so exp(0), the
         * weight of a tie with the max, stays exactly 1): relative error
         * 1.98e-9 on |r| <= ln2/2, where Taylor's degree 7 had 7.0e-9 */
        const double s0 = VM_FMA(VM_FMA(0x1.5554194151e0fp-3, r, 0x1.fffffc1c86464p-2), r2,
                                 VM_FMA(0x1.0000008a3a6f4p+0, r, 1.0));
        const double s1 = VM_FMA(0x1.6ae71fa6b6628p-10, r2,
                                 VM_FMA(0x1.126792efd4d22p-7, r, 0x1.5558228aeabdbp-5));
        p = VM_FMA(s1, r4, s0);
    }
    return p * vm_from_bits(vm_bits(kb) << 52);
}

static inline double lse_exp(double x, const int precise)
{
    double y = lse_exp_core(x, precise);
    y = x < -708.0 ? 0.0 : y;
    y = x > 709.0 ? INFINITY : y;
    return x == x ? y : x;
}

/* the same for x <= 709 (-inf included), never NaN: two selects fewer in
 * hot loops */
static inline double lse_exp_bounded(double x, const int precise)
{
    const double y = lse_exp_core(x, precise);
    return x < -708.0 ? 0.0 : y;
}

/* M + log(S) for S in {0} U [1, inf] U {NaN}, or any positive normal S when
 * `finite` (a compile-time constant) says the caller has ruled out 0, inf and
 * NaN: fdlibm's e_log.c without the subnormal and negative cases, its
 * polynomial in fused multiply-adds (they are the bulk of the work).  M is
 * added to e ln2 (the exact e*ln2_hi for float64 results) before the small
 * remainder, so a large |log S| (a sum kept on a reference other than its
 * own max) costs no accuracy. */
static inline double lse_log_plus(double x, double M, const int precise, const int finite)
{
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                 Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                 Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                 Lg7 = 1.479819860511658591e-01;
    /* x = 2^e (1 + f) with 1 + f in [sqrt(2)/2, sqrt(2)): adding the bits
     * of 1 - sqrt(2)/2 carries into the exponent field exactly when the
     * mantissa is at or above sqrt(2)/2's */
    const uint64_t t = vm_bits(x) + (0x3ff0000000000000u - 0x3fe6a09e667f3bcdu);
    const double e = vm_from_bits((t >> 52) | 0x4330000000000000u) - (4503599627370496.0 + 1023.0);
    const double f = vm_from_bits((t & 0x000fffffffffffffu) + 0x3fe6a09e667f3bcdu) - 1.0;
    const double s = f / (2.0 + f);
    const double z = s * s, w = z * z;
    double y;
    if (precise) {
        const double hfsq = 0.5 * f * f;
        const double R = VM_FMA(z, VM_FMA(w, VM_FMA(w, VM_FMA(w, Lg7, Lg5), Lg3), Lg1),
                                w * VM_FMA(w, VM_FMA(w, Lg6, Lg4), Lg2));
        y = VM_FMA(e, ln2_hi, M) - ((hfsq - VM_FMA(s, hfsq + R, e * ln2_lo)) - f);
    } else {
        /* float32 results: the first four terms leave an error below 1e-9,
         * and log(1 + f) = 2s + s R straight (fdlibm's split around f and
         * f^2 / 2 keeps the last double bits, which a float32 result does
         * not need; 20% fewer operations) */
        const double R = VM_FMA(z, VM_FMA(w, Lg3, Lg1), w * VM_FMA(w, Lg4, Lg2));
        y = VM_FMA(e, ln2_hi + ln2_lo, M) + VM_FMA(s, R, s + s);
    }
    if (!finite) {
        y = x == INFINITY ? M + x : y;
        y = x == 0.0 ? M - INFINITY : y;
        y = x == x ? y : x;
    }
    return y;
}

static inline double lse_log(double x, const int precise)
{
    return lse_log_plus(x, 0.0, precise, 0);
}

#endif
