/* kernel_harness.c: times one kernel of the C library with no Python and no
 * page faults, for comparing kernel variants on a noisy machine.
 *
 * Python timings on a shared VM move more between runs than the effects
 * being compared; this calls scan_execute on buffers allocated and touched once, and
 * prints the min and median of many runs.  Build against a source tree (twice,
 * against two trees, to compare variants; alternate the binaries in rounds):
 *
 *   gcc -O3 -std=c11 -DNDEBUG -fwrapv -fno-trapping-math -ffp-contract=fast -Wall -Wextra -Icsrc \
 *       -o /tmp/harness benchmarks/kernel_harness.c csrc/isa_*.c csrc/dispatch.c \
 *       csrc/driver.c csrc/threads.c -lm -pthread
 *   /tmp/harness OP DTYPE MODE ROWS COLS AXIS [REPS [OUTER]]
 *
 * benchmarks/build_harness.sh builds it so, with -Werror, and runs every op
 * and mode once on a tiny line (CI's smoke test).
 *
 * OP: 0 cumsum, 1 cumprod, 2 cummax, 3 cummin, 4 logcumsumexp, 5 linear_scan
 * (forward only; operands a = 0.999 everywhere, b the elements, h; no h0;
 * HARNESS_SCALAR_A=1 gives a stride 0, as linear_scan(0.999, b) runs); DTYPE: 32 or 64
 * (float32, float64); MODE: 0 forward, 1 JVP, 2 VJP, 3 VJP_JVP (without g_dot:
 * hvp); ROWS 1 makes a 1-D line
 * of COLS elements; OUTER > 1 puts that many (ROWS, COLS) arrays side by side
 * as a leading axis (ROWS 256 COLS 256 AXIS 0 OUTER 256: (256, 256, 256) along
 * axis 1, the short rows of a panel).  Elements are uniform in [-1.7, 1.7],
 * tangents and cotangents 1; the table is the one dispatch picks, or the one
 * SCANAD_ISA=baseline|avx2|avx512 names (SCANAD_FORCE_BASELINE=1: baseline).
 * HARNESS_OFFSETS="B0,B1,B2,B3" starts the operands (in scan.h's order) that
 * many bytes into their 2 MiB-aligned blocks;
 * HARNESS_FRESH=1 maps the outputs anew for each run, page faults included, on
 * a 2 MiB boundary as scanad's allocator places them.  HARNESS_LAYOUT="A0,A1,
 * A2,A3" puts all four in one region instead, operand k at byte offset Ak
 * (0x prefixes allowed): the distances between them decide L1 way conflicts
 * on AMD Zen (see prod_vjp_skewed_ in kernels/line.h), e.g. x and g of a
 * float64 VJP 0x8001000 apart; with HARNESS_FRESH the outputs are still
 * mapped anew at their HARNESS_OFFSETS, only the inputs keep the layout. */
#define _GNU_SOURCE /* MADV_HUGEPAGE */
#include "scan.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* elements an operand's block holds past the array, for HARNESS_OFFSETS */
#define SLACK ((int64_t)1 << 19)

/* Up to four comma-separated byte counts from s (NULL: none) into v, each
 * rounded down to a multiple of size and in [0, below); with all_four, fewer
 * than four is an error.  Returns 0, or -1 on bad input. */
static int byte_list(const char *s, int base, int64_t size, int64_t below, int all_four,
                     int64_t v[4])
{
    for (int k = 0; s != NULL && k < 4; k++) {
        v[k] = strtoll(s, (char **)&s, base) / size * size;
        if (v[k] < 0 || v[k] >= below || (*s != ',' && *s != '\0') ||
            (all_four && k < 3 && *s == '\0'))
            return -1;
        s += *s == ',';
    }
    return 0;
}

/* bytes rounded up to whole 2 MiB pages, on huge pages where the OS has them,
 * as NumPy asks for its big arrays and scanad places its outputs (on 4 KiB
 * pages the streaming kernels are TLB-bound); untouched */
static char *huge_block(size_t bytes)
{
    const size_t huge = (size_t)2 << 20, rounded = (bytes + huge - 1) / huge * huge;
    char *p = aligned_alloc(huge, rounded);
#if defined(MADV_HUGEPAGE)
    if (p != NULL)
        madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

/* n elements of the dtype, each `value`, or uniform in [-1.7, 1.7] if value is 0 */
static char *filled(int64_t n, int f64, double value)
{
    char *p = huge_block((size_t)n * (f64 ? 8 : 4));
    uint64_t state = 88172645463325252u;
    for (int64_t i = 0; p != NULL && i < n; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        const double v = value != 0.0 ? value : ((double)(state >> 11) * 0x1p-53 - 0.5) * 3.4;
        if (f64)
            ((double *)(void *)p)[i] = v;
        else
            ((float *)(void *)p)[i] = (float)v;
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: %s OP DTYPE MODE ROWS COLS AXIS [REPS [OUTER]]\n", argv[0]);
        return 2;
    }
    const int op = atoi(argv[1]), bits = atoi(argv[2]), f64 = bits == 64, mode = atoi(argv[3]);
    const int64_t rows = atoll(argv[4]), cols = atoll(argv[5]);
    const int axis = atoi(argv[6]), reps = argc > 7 ? atoi(argv[7]) : 15;
    const int64_t outer = argc > 8 ? atoll(argv[8]) : 1;
    const char *isa = getenv("SCANAD_ISA");
    char err[320];
    if (getenv("SCANAD_FORCE_BASELINE") != NULL)
        isa = "baseline";
    const scan_table *table = scan_select_table(isa != NULL && isa[0] ? isa : NULL, err, sizeof err);
    if (table == NULL) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    const scan_dtype dt = f64 ? DT_F64 : DT_F32;
    const int linear = op == SCAN_NUM_OPS; /* linear_scan's cells are a table of their own */
    if ((bits != 32 && bits != 64) || op < 0 || op > SCAN_NUM_OPS || mode < 0 ||
        mode >= SCAN_NUM_MODES || rows < 1 ||
        cols < 1 || axis < 0 || axis > (rows > 1) || reps < 1 || outer < 1 || (outer > 1 && rows < 2) ||
        (linear ? mode != MODE_FORWARD || table->linear[dt] == NULL
                : table->cells[op][dt][mode].kernel == NULL)) {
        fprintf(stderr, "no such kernel or shape\n");
        return 2;
    }
    const scan_cell *const cell = linear ? &table->linear[dt][2 * MODE_FORWARD]
                                         : &table->cells[op][dt][mode];
    const int64_t n = outer * rows * cols, size = f64 ? 8 : 4;
    /* operands in the order of scan.h for each mode; the VJP's y is the forward's output */
    /* linear_scan: x holds the decays a, a the elements b (operands 0 and 1) */
    char *x = filled(n + SLACK, f64, linear ? 0.999 : 0.0),
         *a = filled(n + SLACK, f64, linear ? 0.0 : 1.0),
         *b = filled(n + SLACK, f64, 1.0), *c = filled(n + SLACK, f64, 1.0),
         *d = filled(n + SLACK, f64, 1.0); /* VJP_JVP's x_bar_dot */
    if (x == NULL || a == NULL || b == NULL || c == NULL || d == NULL)
        return 1;
    /* (a multiple of the element size, under SLACK elements) */
    int64_t offset[4] = {0, 0, 0, 0};
    if (byte_list(getenv("HARNESS_OFFSETS"), 10, size, SLACK * size, 0, offset) != 0)
        return fprintf(stderr, "bad HARNESS_OFFSETS\n"), 2;
    char *const blocks[4] = {x, a, b, c};
    x += offset[0], a += offset[1], b += offset[2], c += offset[3];
    /* HARNESS_LAYOUT: the four operands in one huge-page region at these
     * byte offsets from its start (the distances between NumPy's arrays) */
    char *region = NULL;
    const char *layout = getenv("HARNESS_LAYOUT");
    if (layout != NULL) {
        int64_t at[4], end = 0;
        if (byte_list(layout, 0, size, INT64_MAX, 1, at) != 0)
            return fprintf(stderr, "bad HARNESS_LAYOUT\n"), 2;
        for (int k = 0; k < 4; k++)
            end = at[k] + n * size > end ? at[k] + n * size : end;
        if ((region = huge_block((size_t)end)) == NULL)
            return 1;
        memset(region, 0, (size_t)end);
        char **const operand[4] = {&x, &a, &b, &c};
        for (int k = 3; k >= 0; k--) /* x last: its values win where operands overlap */
            memmove(region + at[k], *operand[k], (size_t)(n * size));
        x = region + at[0], a = region + at[1], b = region + at[2], c = region + at[3];
    }
    int64_t shape[3] = {outer, rows, cols}, strides[3] = {rows * cols * size, cols * size, size};
    const int nd = outer > 1 ? 3 : rows > 1 ? 2 : 1;
    scan_problem p;
    memset(&p, 0, sizeof p);
    p.ndim = nd;
    p.shape = shape + (3 - nd);
    p.axis = axis + (outer > 1);
    p.inclusive = 1;
    for (int k = 0; k < SCAN_MAX_OPERANDS; k++)
        p.strides[k] = strides + (3 - nd);
    if (mode == MODE_VJP) { /* y = the forward's output, first */
        scan_problem fwd = p;
        fwd.noperands = 2, fwd.lane_operand = 1;
        fwd.data[0] = x, fwd.data[1] = a;
        if (scan_execute(table->cells[op][dt][MODE_FORWARD].kernel, &fwd, 1) != 0)
            return 1;
    }
    p.noperands = mode == MODE_FORWARD ? 2 : 4;
    p.lane_operand = p.noperands - 1;
    p.data[0] = x, p.data[1] = a, p.data[2] = b, p.data[3] = mode == MODE_FORWARD ? NULL : c;
    if (mode == MODE_VJP_JVP) { /* x, t, g, no g_dot, x_bar, x_bar_dot */
        p.noperands = 6, p.lane_operand = 4;
        p.data[3] = NULL, p.data[4] = c, p.data[5] = d;
    }
    int64_t zero_strides[3] = {0, 0, 0};
    if (linear) { /* operands a (the decays), b (the elements), h; no h0, no h_final */
        p.noperands = 5, p.lane_operand = 2;
        p.data[0] = x, p.data[1] = a, p.data[2] = b, p.data[3] = p.data[4] = NULL;
        if (getenv("HARNESS_SCALAR_A") != NULL)
            p.strides[0] = zero_strides;
    }
    p.walk_back = cell->walks_back;
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (t == NULL)
        return 1;
    const int fresh = getenv("HARNESS_FRESH") != NULL;
    const int first_output = linear ? 2 : mode == MODE_FORWARD ? 1 : mode == MODE_JVP ? 2
                             : mode == MODE_VJP ? 3 : 4;
    const int outputs_end = linear ? 3 : p.noperands; /* linear_scan: h alone */
    for (int r = 0; r < reps; r++) {
        const double start = seconds();
        char *fresh_block[SCAN_MAX_OPERANDS] = {NULL};
        for (int k = first_output; fresh && k < outputs_end; k++) {
            /* as big as the filled blocks: an offset may be up to SLACK elements */
            if ((fresh_block[k] = huge_block((size_t)((n + SLACK) * size))) == NULL)
                return 1;
            p.data[k] = fresh_block[k] + (k < 4 ? offset[k] : 0);
        }
        if (scan_execute(cell->kernel, &p, 1) != 0)
            return 1;
        t[r] = seconds() - start;
        for (int k = first_output; fresh && k < outputs_end; k++)
            free(fresh_block[k]);
    }
    qsort(t, (size_t)reps, sizeof(double), by_value);
    char dims[96] = "";
    for (int d = 0; d < nd; d++)
        snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%lld", d ? ", " : "",
                 (long long)p.shape[d]);
    printf("%s op %d float%d mode %d (%s) axis %d: min %.4f ms, median %.4f ms, "
           "%.3f ns per element (median)\n",
           table->isa, op, f64 ? 64 : 32, mode, dims, p.axis, t[0] * 1e3, t[reps / 2] * 1e3,
           t[reps / 2] * 1e9 / (double)n);
    free(t);
    for (int k = 0; k < 4; k++)
        free(blocks[k]);
    free(d);
    free(region);
    return 0;
}
