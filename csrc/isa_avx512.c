/* The same kernels compiled for AVX-512 (F, DQ, BW, VL); chosen at import
 * when the CPU and the OS (xgetbv: opmask and ZMM state) support them. */
#if defined(__x86_64__) || defined(_M_X64)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")
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
