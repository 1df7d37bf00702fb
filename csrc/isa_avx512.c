/* The same kernels compiled for AVX-512 (F, DQ, BW); chosen at import when
 * the CPU and the OS (xgetbv: opmask and ZMM state) support them.  Without
 * VL: with it GCC compiles the kernels' own 256-bit vector code (v4d) with
 * opmask compares and masked moves, which made the cummax/cummin line scans
 * 10-20% slower than the AVX2 table's blends (docs/performance.md). */
#if defined(__x86_64__) || defined(_M_X64)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512bw,avx2,fma,f16c")
#endif
/* what the target above enables, named for the kernels (kernels/isa.h):
 * clang's pragma does not define __AVX2__ and the like */
#define SCAN_ISA_AVX512 1
#define SCAN_HAVE_AVX 1
#define SCAN_HAVE_FMA 1
#define SCAN_TABLE_NAME scan_table_avx512
#define SCAN_ISA_NAME "avx512"
#include "kernels/table.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int scan_isa_avx512_unused;
#endif
