/* The same kernels compiled for AVX2 + FMA; chosen at import when the CPU
 * and the OS (xgetbv) support them.  Nothing here runs unless dispatch.c
 * has checked. */
#if defined(__x86_64__) || defined(_M_X64)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif
/* what the target above enables, named for the kernels (kernels/isa.h):
 * clang's pragma does not define __AVX2__ and the like */
#define SCAN_ISA_AVX2 1
#define SCAN_HAVE_AVX 1
#define SCAN_HAVE_FMA 1
#define SCAN_TABLE_NAME scan_table_avx2
#define SCAN_ISA_NAME "avx2"
#include "kernels/table.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int scan_isa_avx2_unused; /* ISO C wants a non-empty unit */
#endif
