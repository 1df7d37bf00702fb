/* dispatch.c: chooses the kernel table once, from what the CPU reports and
 * what the OS has enabled.  A CPU flag alone is not enough: the OS must save
 * the wider registers (XCR0 via xgetbv), or AVX code faults. */
#include <string.h>

#include "scan.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define SCAN_X86 1

static unsigned long long read_xcr0(void)
{
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static int have_avx2 = 0, have_avx512 = 0, probed = 0;

static void probe(void)
{
    unsigned int a, b, c, d;
    if (probed)
        return;
    probed = 1;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1,
              f16c = (c >> 29) & 1;
    if (!(osxsave && avx))
        return;
    const unsigned long long xcr0 = read_xcr0();
    const int ymm_state = (xcr0 & 0x6) == 0x6;     /* SSE and AVX state */
    const int zmm_state = (xcr0 & 0xe6) == 0xe6;   /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return;
    const int avx2 = (b >> 5) & 1;
    const int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
              avx512vl = (b >> 31) & 1;
    have_avx2 = ymm_state && avx2 && fma && f16c;
    have_avx512 = have_avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
}
#endif

const scan_table *scan_select_table(int force_baseline)
{
#ifdef SCAN_X86
    probe();
    if (!force_baseline && have_avx512)
        return &scan_table_avx512;
    if (!force_baseline && have_avx2)
        return &scan_table_avx2;
#else
    (void)force_baseline;
#endif
    return &scan_table_baseline;
}

const char *scan_cpu_features(void)
{
#ifdef SCAN_X86
    probe();
    if (have_avx512)
        return "x86-64 avx2 fma f16c avx512f avx512dq avx512bw avx512vl";
    if (have_avx2)
        return "x86-64 avx2 fma f16c";
    return "x86-64";
#elif defined(__aarch64__)
    return "aarch64";
#else
    return "generic";
#endif
}
