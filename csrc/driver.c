/* driver.c: turns a scan_problem into blocks of the line view and runs a
 * kernel over them, on several threads when that pays.
 *
 * The non-scan dimensions are sorted by the lane operand's stride and fused
 * where every operand allows it.  The innermost one becomes the lanes of a
 * block when its elements are closer together than consecutive scan steps
 * (a non-last axis of a C-ordered array: rows stream at copy speed);
 * otherwise every line is its own block.  Segments and chunks are just
 * shorter blocks: the scan restarts because each block starts afresh. */
#include <stdlib.h>
#include <string.h>

#include "scan.h"

/* Below this many elements a call stays on the calling thread. */
#define SCAN_PARALLEL_MIN_ELEMENTS (1 << 16)
/* Fewest lanes per work item when lanes are split between threads. */
#define SCAN_MIN_LANES_PER_ITEM 1024

typedef struct {
    int64_t shape;
    int64_t stride[SCAN_MAX_OPERANDS];
} dim_t;

typedef struct {
    scan_kernel kernel;
    const scan_problem *p;
    int nouter;
    dim_t outer[SCAN_MAX_DIMS];
    int64_t m;                           /* lanes per line group (1: line mode) */
    int64_t lane_stride[SCAN_MAX_OPERANDS];
    int64_t lanes_per_item;
    int64_t lane_groups;                 /* ceil(m / lanes_per_item) */
    int failed;                          /* a thread could not get its scratch */
    int64_t axis_stride[SCAN_MAX_OPERANDS];
    int64_t nseg;
    int64_t one_segment[2];
    const int64_t *seg;
} plan_t;

static int64_t iabs64(int64_t v) { return v < 0 ? -v : v; }

/* Orders dimensions outermost first by operand k's stride (insertion sort:
 * a handful of dimensions, and no global state as qsort would need). */
static void sort_dims(dim_t *dims, int nd, int k)
{
    for (int i = 1; i < nd; i++) {
        dim_t d = dims[i];
        int j = i - 1;
        while (j >= 0 && iabs64(dims[j].stride[k]) < iabs64(d.stride[k])) {
            dims[j + 1] = dims[j];
            j--;
        }
        dims[j + 1] = d;
    }
}

/* Runs the kernel on one piece [start, stop) of the axis for lanes
 * [lane0, lane0 + width) at the given base pointers. */
static void run_piece(const plan_t *pl, char *const base[SCAN_MAX_OPERANDS], int64_t start,
                      int64_t stop, int64_t lane0, int64_t width, char *scratch)
{
    const scan_problem *p = pl->p;
    scan_block b;
    const int64_t first = p->reverse ? stop - 1 : start;
    b.n = stop - start;
    b.m = width;
    b.inclusive = p->inclusive;
    b.index_first = first;
    b.index_step = p->reverse ? -1 : 1;
    b.scratch = scratch;
    for (int k = 0; k < SCAN_MAX_OPERANDS; k++) {
        if (k < p->noperands && base[k] != NULL) {
            b.ptr[k] = base[k] + first * pl->axis_stride[k] + lane0 * pl->lane_stride[k];
            b.step[k] = p->reverse ? -pl->axis_stride[k] : pl->axis_stride[k];
            b.lane[k] = pl->lane_stride[k];
        } else {
            b.ptr[k] = NULL;
            b.step[k] = 0;
            b.lane[k] = 0;
        }
    }
    pl->kernel(&b);
}

/* Work item = (outer position, lane group, segment). */
static void run_items(void *ctx, int64_t begin, int64_t end)
{
    plan_t *pl = (plan_t *)ctx;
    const scan_problem *p = pl->p;
    const int64_t per_outer = pl->lane_groups * pl->nseg;
    char *scratch = (char *)aligned_alloc(64, SCAN_SCRATCH_BYTES);
    if (scratch == NULL) {
        pl->failed = 1;
        return;
    }
    for (int64_t item = begin; item < end; item++) {
        int64_t outer = item / per_outer, rest = item % per_outer;
        const int64_t group = rest / pl->nseg, seg = rest % pl->nseg;
        char *base[SCAN_MAX_OPERANDS];
        for (int k = 0; k < SCAN_MAX_OPERANDS; k++)
            base[k] = k < p->noperands ? p->data[k] : NULL;
        for (int d = pl->nouter - 1; d >= 0; d--) {
            const int64_t i = outer % pl->outer[d].shape;
            outer /= pl->outer[d].shape;
            for (int k = 0; k < p->noperands; k++)
                if (base[k] != NULL)
                    base[k] += i * pl->outer[d].stride[k];
        }
        const int64_t lane0 = group * pl->lanes_per_item;
        const int64_t width = pl->m - lane0 < pl->lanes_per_item ? pl->m - lane0 : pl->lanes_per_item;
        const int64_t s0 = pl->seg[seg], s1 = pl->seg[seg + 1];
        if (p->chunk_size > 0) {
            /* written so that c + chunk_size is formed only when it is
             * below s1: a chunk_size near INT64_MAX must not overflow */
            for (int64_t c = s0; c < s1;) {
                const int64_t c1 = s1 - c <= p->chunk_size ? s1 : c + p->chunk_size;
                run_piece(pl, base, c, c1, lane0, width, scratch);
                c = c1;
            }
        } else if (s1 > s0) {
            run_piece(pl, base, s0, s1, lane0, width, scratch);
        }
    }
    free(scratch);
}

int scan_execute(scan_kernel kernel, const scan_problem *p, int nthreads)
{
    plan_t *pl;
    dim_t dims[SCAN_MAX_DIMS];
    int nd = 0;
    int64_t total = 1;
    const int lo = p->lane_operand;

    if (p->ndim < 1 || p->ndim > SCAN_MAX_DIMS || p->axis < 0 || p->axis >= p->ndim ||
        p->noperands < 1 || p->noperands > SCAN_MAX_OPERANDS || p->data[lo] == NULL)
        return -1;
    for (int d = 0; d < p->ndim; d++) {
        if (p->shape[d] == 0)
            return 0; /* nothing to compute */
        total *= p->shape[d];
    }
    pl = (plan_t *)calloc(1, sizeof(plan_t));
    if (pl == NULL)
        return -1;
    pl->kernel = kernel;
    pl->p = p;
    for (int k = 0; k < p->noperands; k++)
        pl->axis_stride[k] = p->data[k] ? p->strides[k][p->axis] : 0;

    /* the other dimensions, without the trivial ones */
    for (int d = 0; d < p->ndim; d++) {
        if (d == p->axis || p->shape[d] == 1)
            continue;
        dims[nd].shape = p->shape[d];
        for (int k = 0; k < SCAN_MAX_OPERANDS; k++)
            dims[nd].stride[k] = (k < p->noperands && p->data[k]) ? p->strides[k][d] : 0;
        nd++;
    }
    sort_dims(dims, nd, lo);
    /* fuse an outer dimension into the next inner one where all operands agree */
    {
        int out = 0;
        for (int d = 0; d < nd; d++) {
            if (out > 0) {
                dim_t *o = &pl->outer[out - 1];
                int fusable = 1;
                for (int k = 0; k < p->noperands; k++)
                    if (o->stride[k] != dims[d].stride[k] * dims[d].shape)
                        fusable = 0;
                if (fusable) {
                    o->shape *= dims[d].shape;
                    for (int k = 0; k < SCAN_MAX_OPERANDS; k++)
                        o->stride[k] = dims[d].stride[k];
                    continue;
                }
            }
            pl->outer[out++] = dims[d];
        }
        nd = out;
    }
    /* lanes: the innermost dimension, when it is denser than the scan axis */
    pl->m = 1;
    if (nd > 0 && iabs64(pl->outer[nd - 1].stride[lo]) < iabs64(pl->axis_stride[lo])) {
        pl->m = pl->outer[nd - 1].shape;
        for (int k = 0; k < SCAN_MAX_OPERANDS; k++)
            pl->lane_stride[k] = pl->outer[nd - 1].stride[k];
        nd--;
    }
    pl->nouter = nd;
    if (total < SCAN_PARALLEL_MIN_ELEMENTS)
        nthreads = 1;
    /* one item per thread's share of the lanes; all of them for one thread */
    pl->lanes_per_item = pl->m;
    if (nthreads > 1 && pl->m > SCAN_MIN_LANES_PER_ITEM) {
        int64_t share = (pl->m + nthreads - 1) / nthreads;
        pl->lanes_per_item = share < SCAN_MIN_LANES_PER_ITEM ? SCAN_MIN_LANES_PER_ITEM : (share + 15) / 16 * 16;
    }
    pl->lane_groups = (pl->m + pl->lanes_per_item - 1) / pl->lanes_per_item;
    if (p->seg != NULL) {
        pl->seg = p->seg;
        pl->nseg = p->nseg;
    } else {
        pl->one_segment[0] = 0;
        pl->one_segment[1] = p->shape[p->axis];
        pl->seg = pl->one_segment;
        pl->nseg = 1;
    }
    {
        int64_t items = pl->lane_groups * pl->nseg;
        for (int d = 0; d < pl->nouter; d++)
            items *= pl->outer[d].shape;
        if (items < 2)
            nthreads = 1;
        if (nthreads > 1)
            scan_parallel_for(run_items, pl, items, nthreads);
        else
            run_items(pl, 0, items);
    }
    {
        const int failed = pl->failed;
        free(pl);
        return failed ? -1 : 0;
    }
}
