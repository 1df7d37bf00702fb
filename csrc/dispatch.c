/* dispatch.c: chooses the kernel table once, from what the CPU reports and
 * what the OS has enabled.  A CPU flag alone is not enough: the OS must save
 * the wider registers (XCR0 via xgetbv), or AVX code faults. */
#include <stdio.h>
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

/* what each table needs, kept apart so that a refusal can name what is missing */
static struct {
    int probed, avx, fma, f16c, avx2, avx512f, avx512dq, avx512bw;
    int ymm_state, zmm_state; /* the OS saves the registers (XCR0) */
} cpu;

static void probe(void)
{
    unsigned int a, b, c, d;
    if (cpu.probed)
        return;
    cpu.probed = 1;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    const int osxsave = (c >> 27) & 1;
    cpu.avx = (c >> 28) & 1;
    cpu.fma = (c >> 12) & 1;
    cpu.f16c = (c >> 29) & 1;
    if (osxsave) {
        const unsigned long long xcr0 = read_xcr0();
        cpu.ymm_state = (xcr0 & 0x6) == 0x6;   /* SSE and AVX state */
        cpu.zmm_state = (xcr0 & 0xe6) == 0xe6; /* + opmask, ZMM_Hi256, Hi16_ZMM */
    }
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return;
    cpu.avx2 = (b >> 5) & 1;
    cpu.avx512f = (b >> 16) & 1;
    cpu.avx512dq = (b >> 17) & 1;
    cpu.avx512bw = (b >> 30) & 1;
}

/* Appends the names of the flags that are 0 to buf; returns how many. */
static int missing(char *buf, size_t len, const int *flags, const char *const *names, int n)
{
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (flags[i])
            continue;
        const size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", count ? "/" : "", names[i]);
        count++;
    }
    return count;
}

/* Whether the host can run table i (SCAN_ISA_*); if not and why != NULL, the
 * reason, naming the missing CPU features or the OS state. */
static int can_run(int i, char *why, size_t len)
{
    static const char *const names[] = {"avx", "avx2", "fma", "f16c",
                                        "avx512f", "avx512dq", "avx512bw"};
    char lacks[128] = "";
    probe();
    if (i == SCAN_ISA_BASELINE_ID)
        return 1;
    const int flags[] = {cpu.avx, cpu.avx2, cpu.fma, cpu.f16c,
                         cpu.avx512f, cpu.avx512dq, cpu.avx512bw};
    _Static_assert(sizeof flags / sizeof flags[0] == sizeof names / sizeof names[0],
                   "a name for every flag");
    /* the AVX2 table needs the first four, the AVX-512 table all of them */
    const int n = i == SCAN_ISA_AVX512_ID ? (int)(sizeof flags / sizeof flags[0]) : 4;
    if (missing(lacks, sizeof lacks, flags, names, n) > 0) {
        if (why != NULL)
            snprintf(why, len, "this CPU lacks %s", lacks);
        return 0;
    }
    if (!cpu.ymm_state || (i == SCAN_ISA_AVX512_ID && !cpu.zmm_state)) {
        if (why != NULL)
            snprintf(why, len, "the OS does not save %s state (XCR0)",
                     cpu.ymm_state ? "the opmask and ZMM" : "the YMM");
        return 0;
    }
    return 1;
}
#endif

static const char *const isa_names[SCAN_NUM_ISAS] = {"baseline", "avx2", "avx512"};

const char *scan_isa_name(int i)
{
    return i >= 0 && i < SCAN_NUM_ISAS ? isa_names[i] : NULL;
}

int scan_isa_supported(int i, char *why, size_t len)
{
    if (i == SCAN_ISA_BASELINE_ID)
        return 1;
#ifdef SCAN_X86
    return can_run(i, why, len);
#else
    if (why != NULL)
        snprintf(why, len, "this build is not for x86-64 (%s)", scan_cpu_features());
    return 0;
#endif
}

#ifdef SCAN_X86
/* Cells the avx512 table takes from the avx2 one: on an AVX-512 host their
 * avx512 build was slower on every layout measured (docs/performance.md,
 * "AVX-512 against AVX2").  linear 1: linear_scan's cell (both forms of a),
 * op unused; else op's. */
static const struct {
    int linear, op, dtype, mode;
} avx512_takes_avx2[] = {
    {0, SCAN_PROD, DT_F32, MODE_VJP_JVP},
    {1, 0, DT_F32, MODE_JVP},
};
#define AVX512_TAKES (sizeof avx512_takes_avx2 / sizeof avx512_takes_avx2[0])

/* scan_table_avx512 with the cells above from scan_table_avx2, built at the
 * first call (the table is chosen once, at import) */
static const scan_table *avx512_table(void)
{
    static scan_table mixed;
    static scan_cell cells[AVX512_TAKES][2 * SCAN_NUM_MODES];
    static int built;
    if (built)
        return &mixed;
    mixed = scan_table_avx512;
    for (size_t k = 0; k < AVX512_TAKES; k++) {
        const int dt = avx512_takes_avx2[k].dtype, mode = avx512_takes_avx2[k].mode;
        if (avx512_takes_avx2[k].linear) {
            memcpy(cells[k], mixed.linear[dt], 2 * SCAN_NUM_MODES * sizeof(scan_cell));
            cells[k][2 * mode] = scan_table_avx2.linear[dt][2 * mode];
            cells[k][2 * mode + 1] = scan_table_avx2.linear[dt][2 * mode + 1];
            mixed.linear[dt] = cells[k];
        } else {
            const int op = avx512_takes_avx2[k].op;
            memcpy(cells[k], mixed.cells[op][dt], SCAN_NUM_MODES * sizeof(scan_cell));
            cells[k][mode] = scan_table_avx2.cells[op][dt][mode];
            mixed.cells[op][dt] = cells[k];
        }
    }
    built = 1;
    return &mixed;
}
#endif

static const scan_table *scan_table_of(int i)
{
    switch (i) {
    case SCAN_ISA_BASELINE_ID:
        return &scan_table_baseline;
#ifdef SCAN_X86
    case SCAN_ISA_AVX2_ID:
        return &scan_table_avx2;
    case SCAN_ISA_AVX512_ID:
        return avx512_table();
#endif
    default:
        return NULL;
    }
}

const scan_table *scan_select_table(const char *request, char *err, size_t len)
{
    if (request == NULL) {
        for (int i = SCAN_NUM_ISAS - 1; i > 0; i--)
            if (scan_isa_supported(i, NULL, 0))
                return scan_table_of(i);
        return &scan_table_baseline;
    }
    for (int i = 0; i < SCAN_NUM_ISAS; i++) {
        char why[192];
        if (strcmp(request, isa_names[i]) != 0)
            continue;
        if (scan_isa_supported(i, why, sizeof why))
            return scan_table_of(i);
        snprintf(err, len, "SCANAD_ISA=%s but %s; this host can run: %s", request, why,
                 scan_isa_supported(SCAN_ISA_AVX2_ID, NULL, 0) ? "baseline, avx2" : "baseline");
        return NULL;
    }
    snprintf(err, len, "SCANAD_ISA=%.40s is not a kernel table; valid names: baseline, avx2, avx512",
             request);
    return NULL;
}

const char *scan_cpu_features(void)
{
#ifdef SCAN_X86
    if (scan_isa_supported(SCAN_ISA_AVX512_ID, NULL, 0))
        return "x86-64 avx2 fma f16c avx512f avx512dq avx512bw";
    if (scan_isa_supported(SCAN_ISA_AVX2_ID, NULL, 0))
        return "x86-64 avx2 fma f16c";
    return "x86-64";
#elif defined(__aarch64__)
    return "aarch64";
#else
    return "generic";
#endif
}
