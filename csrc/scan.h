/* scan.h: the kernel library's whole interface. It knows nothing of Python.
 *
 * A call is described by a scan_problem (an N-d strided view of up to
 * SCAN_MAX_OPERANDS arrays plus the scan axis and flags).  The driver reduces
 * it to blocks: `n` steps along the scan axis times `m` independent lines
 * (the line view).  Kernels only ever see blocks, so segments, chunks, reverse
 * (a negative step) and threads are handled once, in the driver.
 */
#ifndef SCANAD_SCAN_H
#define SCANAD_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "scan_matrix.h"

/* linear_scan's JVP has the most: four inputs, two outputs, four states */
#define SCAN_MAX_OPERANDS 10
#define SCAN_MAX_DIMS 64

/* Lines a kernel processes side by side.  Whole rows of 4096 float32 stream
 * at copy speed; narrower panels defeat the prefetchers (docs/performance.md,
 * "Columns: whole-row panels"). */
#define SCAN_PANEL 4096
/* Per-thread scratch for the kernels' per-line state: 5 slots of up to 16
 * bytes per line (see SLOT in kernels/walk.h); the logcumsumexp VJP_JVP
 * carries five values per line. */
#define SCAN_SCRATCH_SLOTS 5
#define SCAN_SCRATCH_BYTES ((size_t)SCAN_SCRATCH_SLOTS * SCAN_PANEL * 16)
/* Shortest line the single-line kernels take (line_direction_); the
 * driver copies reversed inputs only for lines at least this long. */
#define SCAN_LINE_MIN_ELEMENTS 16

/* One block of the line view: m independent lines of n steps each.
 * ptr[k] points at operand k's first element in scan order; step[k] is the
 * byte distance to the next element in scan order (negative when reversed);
 * lane[k] is the byte distance between neighbouring lines. */
typedef struct {
    int64_t n;
    int64_t m;
    char *ptr[SCAN_MAX_OPERANDS];
    int64_t step[SCAN_MAX_OPERANDS];
    int64_t lane[SCAN_MAX_OPERANDS];
    int inclusive;
    /* axis position of the first element in scan order, and +1/-1: the
     * values max/min write as indices. */
    int64_t index_first;
    int64_t index_step;
    char *scratch; /* SCAN_SCRATCH_BYTES, 64-byte aligned, this thread's own */
    /* NULL, or the state to start from: a later piece of one long line
     * split between threads (only kernels with a scan_split read it) */
    const struct scan_carry *carry;
    /* NULL, or where the line kernel of a cell with scan_split.bounce leaves
     * its state after the last element (the carry of a piece that follows) */
    struct scan_carry *carry_out;
    /* 1 unless the block is an earlier chunk of its segment or an earlier
     * piece of a split line (in scan order): where linear_scan writes the
     * segment's final state */
    int last;
} scan_block;

typedef void (*scan_kernel)(const scan_block *b);

/* The running state between pieces of one long line that the driver splits
 * between threads (a blocked two-pass scan: totals of the pieces in
 * parallel, a serial prefix of the totals, the pieces scanned in parallel
 * from their carries).  v: the running sum, product or extreme value
 * (accumulated in double, as the kernels do), or logcumsumexp's reference
 * M; s: logcumsumexp's sum on it, S = sum exp(x - M); i: the owner's index. */
typedef struct scan_carry {
    double v, s;
    int64_t i;
    int filled; /* as a block's carry_out: 1 once the kernel has written it */
} scan_carry;
/* linear_scan (kernels/ops/linear_scan.h) carries the affine map of a
 * piece, h -> s 2^i h + v: s 2^i the product of its a (a mantissa and an
 * exponent: it may be far below double's range), v its state from h = 0
 * (real float32/float64 lines only). */

typedef struct {
    /* the total of block b's single line; 0 if b's layout is not one whose
     * forward kernel starts from a carry (then the line is not split) */
    int (*reduce)(const scan_block *b, scan_carry *total);
    /* *acc = *acc followed by *next */
    void (*combine)(scan_carry *acc, const scan_carry *next);
    /* 0, or for a reduce that never returns 0 (whatever the layout and the
     * values), its time as a share of the forward kernel's on a piece: then
     * the first piece, shorter, is scanned while the others are reduced */
    double reduce_share;
    /* 1: the forward's line kernel (a contiguous line of 16 or more
     * elements) starts from carry and leaves its state in carry_out, so a
     * line whose outputs run against its input is scanned in chunks through
     * a buffer (driver.c, "bounce") */
    int bounce;
} scan_split;

/* One cell of the matrix: how to run one op on one dtype in one mode. */
typedef struct {
    scan_kernel kernel; /* NULL: the op is undefined for this dtype and mode */
    scan_split split;   /* forward only; zero: a line is never split */
    /* 1 where the kernel walks each line from its last element in scan
     * order (the VJPs whose recurrence runs backwards) */
    unsigned char walks_back;
    /* 1 where a line whose inputs run against its outputs is better read
     * from reversed copies of them than walked one element at a time
     * (driver.c, "flip"; cumprod's derivatives, whose line kernels read x) */
    unsigned char flips_inputs;
} scan_cell;

/* One ISA's kernels: the cells of op and dtype, one per mode */
typedef struct {
    const char *isa;
    const scan_cell *cells[SCAN_NUM_OPS][SCAN_NUM_DTYPES];
    /* linear_scan's cells per dtype, [2 * mode + log_a] (no VJP_JVP: the
     * package composes it).  Forward operands 0 a, 1 b, 2 h, 3 h0, 4 h_final
     * (3 and 4 step 0, may be absent); JVP and VJP: kernels/ops/linear_scan.h */
    const scan_cell *linear[SCAN_NUM_DTYPES];
} scan_table;

extern const scan_table scan_table_baseline;
#if defined(__x86_64__) || defined(_M_X64)
extern const scan_table scan_table_avx2;
extern const scan_table scan_table_avx512;
#endif

/* dispatch.c: the kernel tables by index, worst first (a table runs
 * wherever a later one does) */
enum { SCAN_ISA_BASELINE_ID, SCAN_ISA_AVX2_ID, SCAN_ISA_AVX512_ID, SCAN_NUM_ISAS };
/* "baseline", "avx2", "avx512"; NULL out of range */
const char *scan_isa_name(int i);
/* Whether this CPU and OS can run table i; if not, the reason into why
 * (may be NULL), e.g. "this CPU lacks avx512f/avx512bw". */
int scan_isa_supported(int i, char *why, size_t len);
/* The table named by request (NULL: the best this host runs); NULL with a
 * message in err when the name is unknown or the host cannot run it.  Called
 * once at import. */
const scan_table *scan_select_table(const char *request, char *err, size_t len);
const char *scan_cpu_features(void);

/* A whole call: every operand has the same shape; strides are in bytes, as
 * in NumPy, and may be negative or zero. */
typedef struct {
    int ndim;                              /* >= 1 */
    const int64_t *shape;                  /* shape of y (and of every operand) */
    int axis;                              /* 0 <= axis < ndim */
    int noperands;
    char *data[SCAN_MAX_OPERANDS];         /* NULL: operand absent */
    const int64_t *strides[SCAN_MAX_OPERANDS];
    int reverse;
    int inclusive;
    /* Segment boundaries along the axis: seg[0] == 0 <= ... <= seg[nseg] ==
     * shape[axis], already validated; NULL means one segment. */
    const int64_t *seg;
    int64_t nseg;
    int64_t chunk_size;                    /* 0: no chunking */
    int lane_operand;                      /* operand whose layout decides the lanes */
    const scan_split *split;               /* NULL: a line is never split */
    int walk_back;                         /* the kernel's walks_back entry */
    int flip_inputs;                       /* the kernel's flips_inputs entry */
    /* byte offset per segment of an operand with one entry per segment
     * (linear_scan's h0 and h_final under cu_seqlens); 0: the same for all */
    int64_t seg_stride[SCAN_MAX_OPERANDS];
    /* operands first_output.. are the outputs, the others inputs; 0: not
     * said (then no line takes the bounce buffer) */
    int first_output;
    int64_t itemsize[SCAN_MAX_OPERANDS];   /* bytes per element; 0: not said */
} scan_problem;

/* driver.c: run kernel k over the whole problem with up to nthreads threads.
 * Returns 0, or -1 if memory for the work description could not be had. */
int scan_execute(scan_kernel k, const scan_problem *p, int nthreads);

/* threads.c */
int scan_get_num_threads(void);
void scan_set_num_threads(int n);
typedef void (*scan_task_fn)(void *ctx, int64_t begin, int64_t end);
/* Runs fn over [0, count) on the pool, in contiguous ranges that each
 * thread claims as it gets free (from the end first when down). */
void scan_parallel_for(scan_task_fn fn, void *ctx, int64_t count, int nthreads, int down);

#endif
