/* isa.h: the ISA a kernel translation unit is compiled for, as named by that
 * unit (csrc/isa_*.c) before it includes the kernels.
 *
 * The kernel headers test only these macros, never the compiler's __AVX2__,
 * __FMA__ etc.: GCC defines those after `#pragma GCC target`, but clang's
 * `#pragma clang attribute push(target(...))` does not, so a clang build
 * would silently compile the generic fallbacks into the AVX2/AVX-512 tables.
 *
 *   SCAN_ISA_BASELINE / SCAN_ISA_AVX2 / SCAN_ISA_AVX512   exactly one
 *   SCAN_HAVE_AVX    256-bit AVX instructions may be used (movmsk, vcvtps2pd)
 *   SCAN_HAVE_FMA    fused multiply-add instructions may be used
 */
#ifndef SCANAD_KERNELS_ISA_H
#define SCANAD_KERNELS_ISA_H

#if defined(SCAN_ISA_BASELINE) + defined(SCAN_ISA_AVX2) + defined(SCAN_ISA_AVX512) != 1
#error "define exactly one of SCAN_ISA_BASELINE, SCAN_ISA_AVX2, SCAN_ISA_AVX512 before the kernels"
#endif

/* Under GCC the target pragma also defines the compiler's macros: check that
 * the unit claims nothing its pragma did not enable (a claim without the
 * instructions would not compile at best, fault at worst). */
#if defined(__GNUC__) && !defined(__clang__)
#if defined(SCAN_HAVE_AVX) && !defined(__AVX__)
#error "SCAN_HAVE_AVX without the AVX target"
#endif
#if defined(SCAN_HAVE_FMA) && !defined(__FMA__)
#error "SCAN_HAVE_FMA without the FMA target"
#endif
#if defined(SCAN_ISA_AVX2) && !defined(__AVX2__)
#error "SCAN_ISA_AVX2 without the AVX2 target"
#endif
#if defined(SCAN_ISA_AVX512) && !(defined(__AVX512F__) && defined(__AVX512BW__))
#error "SCAN_ISA_AVX512 without the AVX-512 target"
#endif
#endif

#endif
