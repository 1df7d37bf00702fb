/* driver.c: turns a scan_problem into blocks of the line view and runs a
 * kernel over them, on several threads when that pays.
 *
 * The non-scan dimensions are sorted by the lane operand's stride and fused
 * where every operand allows it.  The innermost one becomes the lanes of a
 * block when its elements are closer together than consecutive scan steps
 * (a non-last axis of a C-ordered array: rows stream at copy speed);
 * otherwise every line is its own block.  Segments and chunks are just
 * shorter blocks: the scan restarts because each block starts afresh. */
#include <stdint.h>
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

/* The block for one piece [start, stop) of the axis and lanes
 * [lane0, lane0 + width) at the given base pointers. */
static scan_block make_block(const plan_t *pl, char *const base[SCAN_MAX_OPERANDS],
                             int64_t start, int64_t stop, int64_t lane0, int64_t width,
                             char *scratch)
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
    b.carry = NULL;
    b.carry_out = NULL;
    b.last = 1;
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
    return b;
}

/* ---- lines whose outputs run against their input ----
 * sa.cumsum(x[::-1]) reads x down in memory and writes a fresh y up: no
 * line kernel takes operands running both ways, so such a line went one
 * element at a time, about twice the time of the same scan with
 * reverse=True.  Where the kernel starts from a carry (scan_split.bounce),
 * the line is scanned instead in chunks into a buffer laid out like the
 * input, each chunk starting from the state the kernel left after the one
 * before (carry_out), and copied out in the output's order. */
#define SCAN_BOUNCE_ELEMENTS 2048
#define SCAN_BOUNCE_MIN_ELEMENTS 64
#define SCAN_BOUNCE_OUTPUTS 2 /* y and the indices of cummax/cummin */
#define SCAN_BOUNCE_BYTES ((size_t)SCAN_BOUNCE_ELEMENTS * 16 * SCAN_BOUNCE_OUTPUTS)

/* +1 or -1 for an operand of block b contiguous up or down in memory; 0 */
static int contiguous_direction(const scan_problem *p, const scan_block *b, int k)
{
    return b->step[k] == p->itemsize[k] ? 1 : b->step[k] == -p->itemsize[k] ? -1 : 0;
}

/* +1 or -1, the direction in memory of line block b's inputs, if all of
 * them are contiguous that way and no output is (each output then needs
 * the buffer, and none is an input: an output the kernel is handed is
 * disjoint from the input or laid out exactly like it); else 0 */
static int bounce_direction(const scan_problem *p, const scan_block *b)
{
    if (p->first_output <= 0 || p->split == NULL || !p->split->bounce || b->m != 1 ||
        b->n < SCAN_BOUNCE_MIN_ELEMENTS || p->noperands - p->first_output > SCAN_BOUNCE_OUTPUTS)
        return 0;
    int dir = 0;
    for (int k = 0; k < p->first_output; k++) {
        if (b->ptr[k] == NULL)
            continue;
        const int d = contiguous_direction(p, b, k);
        if (d == 0 || (dir != 0 && d != dir))
            return 0;
        dir = d;
    }
    if (dir == 0)
        return 0;
    for (int k = p->first_output; k < p->noperands; k++)
        if (b->ptr[k] != NULL &&
            (p->itemsize[k] <= 0 || p->itemsize[k] > 16 || b->step[k] == dir * p->itemsize[k]))
            return 0;
    return dir;
}

/* out[m] = in[len - 1 - m] for len elements of size bytes */
static void reverse_copy(char *restrict out, const char *restrict in, int64_t len, int64_t size)
{
    const int aligned = ((uintptr_t)out % (uintptr_t)size | (uintptr_t)in % (uintptr_t)size) == 0;
    if (aligned && size == 4) {
        uint32_t *o = (uint32_t *)(void *)out;
        const uint32_t *s = (const uint32_t *)(const void *)in;
        for (int64_t m = 0; m < len; m++)
            o[m] = s[len - 1 - m];
    } else if (aligned && size == 8) {
        uint64_t *o = (uint64_t *)(void *)out;
        const uint64_t *s = (const uint64_t *)(const void *)in;
        for (int64_t m = 0; m < len; m++)
            o[m] = s[len - 1 - m];
    } else {
        for (int64_t m = 0; m < len; m++)
            memcpy(out + m * size, in + (len - 1 - m) * size, (size_t)size);
    }
}

/* Chunk c of block b (positions [c, c + len) in scan order) written, from
 * the buffer laid out in direction dir, into the output at dst */
static void bounce_out(char *dst, int64_t dst_step, const char *buf, int dir, int64_t len,
                       int64_t size)
{
    if (dst_step == -dir * size) {
        /* the output runs against the buffer: a reversed copy, from the
         * output's lowest address */
        reverse_copy(dst_step > 0 ? dst : dst + (len - 1) * dst_step, buf, len, size);
        return;
    }
    for (int64_t i = 0; i < len; i++)
        memcpy(dst + i * dst_step, buf + (dir > 0 ? i : len - 1 - i) * size, (size_t)size);
}

/* Runs line block b through the buffer (bounce_direction gave dir).
 * Returns 0 if a chunk's kernel left no carry_out (a path outside the
 * contract of scan_split.bounce): then the caller runs b as it is, which
 * writes every output anew; the inputs are untouched. */
static int run_bounced(const plan_t *pl, const scan_block *b, int dir, char *buf)
{
    const scan_problem *p = pl->p;
    char *bufs[SCAN_MAX_OPERANDS] = {NULL};
    {
        char *at = buf;
        for (int k = p->first_output; k < p->noperands; k++)
            if (b->ptr[k] != NULL) {
                bufs[k] = at;
                at += SCAN_BOUNCE_ELEMENTS * p->itemsize[k];
            }
    }
    scan_carry state[2]; /* the one a chunk starts from, and the one it leaves */
    const scan_carry *from = b->carry;
    for (int64_t c = 0, len = 0; c < b->n; c += len) {
        /* every chunk of at least SCAN_BOUNCE_MIN_ELEMENTS: a shorter line is
         * no line to the kernels, whose other paths do not start from a
         * carry; so a short tail is shared with the chunk before it */
        const int64_t rest = b->n - c;
        len = rest <= SCAN_BOUNCE_ELEMENTS ? rest
              : rest < SCAN_BOUNCE_ELEMENTS + SCAN_BOUNCE_MIN_ELEMENTS ? rest / 2
                                                                      : SCAN_BOUNCE_ELEMENTS;
        scan_block piece = *b;
        piece.n = len;
        piece.index_first = b->index_first + c * b->index_step;
        piece.carry = from;
        piece.last = b->last && c + len == b->n;
        for (int k = 0; k < p->noperands; k++) {
            if (b->ptr[k] == NULL)
                continue;
            if (bufs[k] != NULL) {
                piece.ptr[k] = bufs[k] + (dir > 0 ? 0 : (len - 1) * p->itemsize[k]);
                piece.step[k] = dir * p->itemsize[k];
            } else {
                piece.ptr[k] = b->ptr[k] + c * b->step[k];
            }
        }
        /* the scan leaves its state, the next chunk's carry */
        scan_carry *next = from == &state[0] ? &state[1] : &state[0];
        memset(next, 0, sizeof *next);
        piece.carry_out = next;
        pl->kernel(&piece);
        if (!next->filled)
            return 0;
        for (int k = p->first_output; k < p->noperands; k++)
            if (bufs[k] != NULL)
                bounce_out(b->ptr[k] + c * b->step[k], b->step[k], bufs[k], dir, len,
                           p->itemsize[k]);
        from = next;
    }
    return 1;
}

/* 1 if line block b (bounce_direction gave dir, not 0) ran through the
 * buffer *buf, allocated at its first use; 0 if it did not, with no
 * memory for the buffer or as run_bounced */
static int try_bounced(const plan_t *pl, const scan_block *b, int dir, char **buf)
{
    if (*buf == NULL)
        *buf = (char *)aligned_alloc(64, SCAN_BOUNCE_BYTES);
    return *buf != NULL && run_bounced(pl, b, dir, *buf);
}

/* ---- lines whose inputs run against their outputs, without a carry ----
 * A kernel that cannot start from a carry (the derivatives) cannot take such
 * a line through the buffer in chunks, and the line would go one element at
 * a time (docs/performance.md, "Lines whose output runs against the
 * input").  For the cells that say so (scan_cell.flips_inputs) each input
 * running against the outputs is copied whole, reversed, into memory laid
 * out like them, and the line kernel takes it. */
/* +1 or -1, the direction in memory of line block b's outputs, if all of
 * them are contiguous that way, every input contiguous one way or the other
 * and at least one the other way; else 0 */
static int flip_direction(const scan_problem *p, const scan_block *b)
{
    if (!p->flip_inputs || p->first_output <= 0 || b->m != 1 || b->n < SCAN_LINE_MIN_ELEMENTS)
        return 0;
    int dir = 0, against = 0;
    for (int k = p->first_output; k < p->noperands; k++) {
        if (b->ptr[k] == NULL)
            continue;
        const int d = p->itemsize[k] > 0 ? contiguous_direction(p, b, k) : 0;
        if (d == 0 || (dir != 0 && d != dir))
            return 0;
        dir = d;
    }
    for (int k = 0; dir != 0 && k < p->first_output; k++) {
        if (b->ptr[k] == NULL)
            continue;
        const int d = p->itemsize[k] > 0 ? contiguous_direction(p, b, k) : 0;
        if (d == 0)
            return 0;
        against |= d != dir;
    }
    return against ? dir : 0;
}

/* Runs line block b with each input that runs against direction dir read
 * from a reversed copy; 0, with nothing run, if there is no memory for one */
static int run_flipped(const plan_t *pl, const scan_block *b, int dir)
{
    const scan_problem *p = pl->p;
    scan_block f = *b;
    char *copies[SCAN_MAX_OPERANDS] = {NULL};
    int ok = 1;
    for (int k = 0; k < p->first_output; k++) {
        const int64_t size = p->itemsize[k];
        if (b->ptr[k] == NULL || b->step[k] == dir * size)
            continue;
        copies[k] = (char *)malloc((size_t)(b->n * size));
        if (copies[k] == NULL) {
            ok = 0;
            break;
        }
        const char *low = b->step[k] > 0 ? b->ptr[k] : b->ptr[k] + (b->n - 1) * b->step[k];
        reverse_copy(copies[k], low, b->n, size);
        f.ptr[k] = dir > 0 ? copies[k] : copies[k] + (b->n - 1) * size;
        f.step[k] = dir * size;
    }
    if (ok)
        pl->kernel(&f);
    for (int k = 0; k < p->first_output; k++)
        free(copies[k]);
    return ok;
}

/* bounce: the work item's buffer, allocated at its first use (NULL until
 * then, and if there was no memory for it: then lines run as they are) */
static void run_piece(const plan_t *pl, char *const base[SCAN_MAX_OPERANDS], int64_t start,
                      int64_t stop, int64_t lane0, int64_t width, char *scratch, char **bounce,
                      int last)
{
    scan_block b = make_block(pl, base, start, stop, lane0, width, scratch);
    b.last = last;
    const int dir = bounce_direction(pl->p, &b);
    if (dir != 0 && try_bounced(pl, &b, dir, bounce))
        return;
    const int flip = flip_direction(pl->p, &b);
    if (flip != 0 && run_flipped(pl, &b, flip))
        return;
    pl->kernel(&b);
}

/* ---- one long line split between threads (a blocked two-pass scan) ----
 * Pass 1 takes the totals of all pieces but the last in parallel, a serial
 * loop turns them into each piece's carry, and pass 2 scans every piece from
 * its carry in parallel.  When the reduce costs a fraction r of the scan and
 * never fails (scan_split.reduce_share), the first piece needs no carry and
 * is scanned in pass 1 too, after its total: it is made shorter, b = r a /
 * (1 + r) against the others' a, so that its thread finishes pass 1 with the
 * ones reducing a piece of length a; t threads then take (1 + r) a / (t a + b)
 * of the serial time instead of (1 + r) / 2 with t = 2 equal pieces
 * (logcumsumexp, r ~ 0.45: 0.63 against 0.73). */
#define SCAN_SPLIT_MIN_ELEMENTS (1 << 18)
#define SCAN_MAX_PIECES 64

typedef struct {
    const plan_t *pl;
    int64_t n;
    int64_t start[SCAN_MAX_PIECES + 1]; /* piece j: scan positions [start[j], start[j + 1]) */
    int first_in_pass1;
    scan_carry total[SCAN_MAX_PIECES], carry[SCAN_MAX_PIECES];
    int supported[SCAN_MAX_PIECES];
    int bounce_failed[SCAN_MAX_PIECES]; /* piece j could not take the bounce buffer */
} split_t;

static scan_block piece_block(const split_t *sp, int64_t j)
{
    const plan_t *pl = sp->pl;
    char *base[SCAN_MAX_OPERANDS];
    for (int k = 0; k < SCAN_MAX_OPERANDS; k++)
        base[k] = k < pl->p->noperands ? pl->p->data[k] : NULL;
    const int64_t s0 = sp->start[j], s1 = sp->start[j + 1];
    /* scan positions to axis positions */
    const int64_t start = pl->p->reverse ? sp->n - s1 : s0;
    const int64_t stop = pl->p->reverse ? sp->n - s0 : s1;
    scan_block b = make_block(pl, base, start, stop, 0, 1, NULL);
    b.last = s1 == sp->n;
    return b;
}

static void split_totals(void *ctx, int64_t begin, int64_t end)
{
    split_t *sp = (split_t *)ctx;
    for (int64_t j = begin; j < end; j++) {
        const scan_block b = piece_block(sp, j);
        /* a piece whose outputs run against its input (scanned through the
         * bounce buffer): its total is its input's, which the reduce takes
         * with the outputs laid out as the buffer will be (it reads only x) */
        scan_block rb = b;
        const int dir = bounce_direction(sp->pl->p, &b);
        for (int k = sp->pl->p->first_output; dir != 0 && k < sp->pl->p->noperands; k++)
            rb.step[k] = dir * sp->pl->p->itemsize[k];
        /* the total first: the scan may write over x (out=x) */
        sp->supported[j] = sp->pl->p->split->reduce(&rb, &sp->total[j]);
        if (j == 0 && sp->first_in_pass1)
            sp->pl->kernel(&b);
    }
}

static void split_scans(void *ctx, int64_t begin, int64_t end)
{
    split_t *sp = (split_t *)ctx;
    char *bounce = NULL;
    for (int64_t k = begin; k < end; k++) {
        const int64_t j = k + sp->first_in_pass1; /* pass 1 may have done piece 0 */
        scan_block b = piece_block(sp, j);
        b.carry = j > 0 ? &sp->carry[j] : NULL;
        const int dir = bounce_direction(sp->pl->p, &b);
        if (dir == 0) {
            sp->pl->kernel(&b);
            continue;
        }
        /* the kernel's other paths would not start from the carry: without
         * the buffer the whole line runs again on one thread */
        if (!try_bounced(sp->pl, &b, dir, &bounce))
            sp->bounce_failed[j] = 1;
    }
    free(bounce);
}

/* Returns 1 if the line was scanned in pieces, 0 if the caller should run it
 * whole (the kernel cannot start from a carry for this layout, or no memory). */
static int run_split(const plan_t *pl, int nthreads)
{
    const int64_t n = pl->p->shape[pl->p->axis];
    const double r = pl->p->split->reduce_share;
    split_t *sp = (split_t *)calloc(1, sizeof(split_t));
    if (sp == NULL)
        return 0;
    sp->pl = pl;
    sp->n = n;
    sp->first_in_pass1 = r > 0.0 && nthreads < SCAN_MAX_PIECES;
    int64_t pieces;
    if (sp->first_in_pass1) {
        /* nthreads pieces of length a after the first one of r a / (1 + r) */
        pieces = nthreads + 1;
        const double a = (double)n / ((double)nthreads + r / (1.0 + r));
        for (int64_t j = 1; j < pieces; j++)
            sp->start[j] = n - (int64_t)((double)(pieces - j) * a);
    } else {
        pieces = nthreads < SCAN_MAX_PIECES ? nthreads : SCAN_MAX_PIECES;
        const int64_t len = (n + pieces - 1) / pieces;
        for (int64_t j = 1; j < pieces; j++)
            sp->start[j] = j * len;
    }
    sp->start[pieces] = n;
    scan_parallel_for(split_totals, sp, pieces - 1, nthreads, 0);
    int ok = 1;
    for (int64_t j = 0; j + 1 < pieces; j++)
        ok &= sp->supported[j];
    if (ok) {
        sp->carry[1] = sp->total[0];
        for (int64_t j = 1; j + 1 < pieces; j++) {
            sp->carry[j + 1] = sp->carry[j];
            pl->p->split->combine(&sp->carry[j + 1], &sp->total[j]);
        }
        scan_parallel_for(split_scans, sp, pieces - sp->first_in_pass1, nthreads, 0);
        /* every output is rewritten then (none is an input: bounce_direction) */
        for (int64_t j = 0; j < pieces; j++)
            ok &= !sp->bounce_failed[j];
    }
    free(sp);
    return ok;
}

/* Items in the order that keeps memory moving one way: where the kernel
 * walks its lines down in memory (a VJP running from the end, or
 * reverse=True), the lines are taken from the last too, so that the
 * prefetchers see one long stream instead of a sawtooth; the pool then
 * hands out ranges from the end too. */
static int items_run_down(const plan_t *pl)
{
    const int64_t stride = pl->axis_stride[pl->p->lane_operand];
    return ((pl->p->reverse ? -stride : stride) < 0) != (pl->p->walk_back != 0);
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
    char *bounce = NULL;
    const int down = items_run_down(pl);
    for (int64_t it = begin; it < end; it++) {
        const int64_t item = down ? end - 1 - (it - begin) : it;
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
        for (int k = 0; k < p->noperands; k++)
            if (base[k] != NULL)
                base[k] += seg * p->seg_stride[k];
        if (p->chunk_size > 0) {
            /* written so that c + chunk_size is formed only when it is
             * below s1: a chunk_size near INT64_MAX must not overflow */
            for (int64_t c = s0; c < s1;) {
                const int64_t c1 = s1 - c <= p->chunk_size ? s1 : c + p->chunk_size;
                /* the last chunk in scan order: the lowest one when reversed */
                run_piece(pl, base, c, c1, lane0, width, scratch, &bounce,
                          p->reverse ? c == s0 : c1 == s1);
                c = c1;
            }
        } else if (s1 > s0) {
            run_piece(pl, base, s0, s1, lane0, width, scratch, &bounce, 1);
        }
    }
    free(bounce);
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
        if (items == 1 && nthreads > 1 && pl->m == 1 && p->chunk_size == 0 && p->split != NULL &&
            p->split->reduce != NULL && p->shape[p->axis] >= SCAN_SPLIT_MIN_ELEMENTS &&
            run_split(pl, nthreads)) {
            free(pl);
            return 0;
        }
        if (items < 2)
            nthreads = 1;
        if (nthreads > 1)
            scan_parallel_for(run_items, pl, items, nthreads, items_run_down(pl));
        else
            run_items(pl, 0, items);
    }
    {
        const int failed = pl->failed;
        free(pl);
        return failed ? -1 : 0;
    }
}
