/* walk.h: how a kernel walks a block.
 *
 * Every kernel is written once as a "panel" function over up to SCAN_PANEL
 * lines with its per-line state in small stack arrays, and the loops are
 * ordered row by row: for m > 1 lines whose elements sit next to each other
 * (a non-last axis of a C-ordered array) that streams whole rows, which the
 * compiler vectorises across lines; for m == 1 it is a plain line scan.
 *
 * DEFINE_PANEL_KERNEL instantiates the panel for the four combinations of
 * (inclusive, contiguous lanes) so the compiler sees constants in the hot
 * loops.  A panel function has the signature
 *     void panel(const scan_block *b, int64_t l0, int64_t w, int incl, int contig)
 * and must take the lane stride of operand k as LANE(k).
 */
#ifndef SCANAD_WALK_H
#define SCANAD_WALK_H

#include "common.h"

/* slot i of the per-line state in the block's scratch: SCAN_PANEL entries
 * of a type of at most 16 bytes */
#define SLOT(type, i) ((type *)(void *)(b->scratch + (size_t)(i) * SCAN_PANEL * 16))
/* Declares per-line state `name`: in scratch for a panel, in a local array
 * for a single line (m == 1), which the compiler keeps in registers so the
 * carry never round-trips through memory. */
#define STATE(type, name, i) STATE_ALIGNED(type, name, i, 0)
/* The same in a panel that walks its lanes in two stretches (FOR_LANES):
 * entries of at most 8 bytes start a few entries in, so that the state of
 * lane `head` lies on a 64-byte boundary as the data does (a slot holds
 * SCAN_PANEL * 16 bytes, room for the shift). */
#define STATE_ALIGNED(type, name, i, head)                                                     \
    type name##_line_[1] = {0};                                                              \
    type *const name = line ? name##_line_ : SLOT(type, i) + state_shift(sizeof(type), head)
SCAN_INLINE int64_t state_shift(size_t size, int64_t head)
{
    return size <= 8 ? (-head) & (int64_t)(64 / size - 1) : 0;
}

/* The lanes before operand p's first 64-byte boundary in a contiguous panel
 * (0 if it has none within w lanes or p is not aligned to its elements).
 * NumPy's large arrays start 16 bytes into a cache line, and a vector store
 * across two lines costs a second store: at 64 bytes every one of them does,
 * which made the AVX-512 panels slower than the AVX2 ones. */
SCAN_INLINE int64_t panel_head_lanes(const char *p, int64_t w, int64_t elem, const int contig)
{
    const int64_t off = (int64_t)((uintptr_t)p & 63);
    if (!contig || off == 0 || off % elem != 0)
        return 0;
    const int64_t head = (64 - off) / elem;
    return head < w ? head : w;
}
/* lanes [0, head) then [head, w): the second loop's vectors are aligned */
#define FOR_LANES(l, head, w)                                                                  \
    for (int run_ = 0; run_ < 2; run_++)                                                      \
        for (int64_t l = run_ ? (head) : 0, end_ = run_ ? (w) : (head); l < end_; l++)

/* byte stride between lines of operand k inside a panel */
#define LANE(k) (contig ? (int64_t)sizeof_op[k] : b->lane[k])
/* operand k's pointer for line l0 of the panel, at the block's first row */
#define PANEL_BASE(k) (b->ptr[k] + l0 * b->lane[k])
/* the same at the block's last row, for kernels that walk backwards */
#define PANEL_LAST(k) (b->ptr[k] + l0 * b->lane[k] + (b->n - 1) * b->step[k])

SCAN_INLINE int lanes_are_contiguous(const scan_block *b, int nops, const int64_t *size)
{
    if (b->m <= 1)
        return 0;
    for (int k = 0; k < nops; k++)
        if (b->ptr[k] != NULL && b->lane[k] != size[k])
            return 0;
    return 1;
}

/* A panel walking down in memory (a reversed scan, a VJP) reads its short
 * rows from behind the hardware prefetchers; its kernel asks for the inputs
 * 4 KiB of rows ahead.  It pays only for short rows of small elements, so
 * 0 for 8-byte elements or rows over 1 KiB (docs/performance.md). */
SCAN_INLINE int64_t panel_rows_ahead(const scan_block *b, int64_t w, int64_t elem_bytes,
                                     const int contig, const int line)
{
    const int64_t row_bytes = w * elem_bytes;
    if (line || !contig || b->step[0] >= 0 || elem_bytes > 4 || row_bytes <= 0 || row_bytes > 1024)
        return 0;
    return 4096 / row_bytes;
}
/* Rows shorter than this, walked from the last row to the first, come from
 * behind the hardware prefetchers (each 4 KiB page read as a sawtooth): the
 * VJPs that walk backwards treat such panels differently, cumprod's parking
 * E in a forward pass first, cummax/cummin's walking forwards. */
#define PANEL_SHORT_ROW_BYTES 4096
SCAN_INLINE void panel_prefetch_row(const char *p, int64_t bytes)
{
#if defined(__GNUC__)
    for (int64_t off = 0; off < bytes; off += 64)
        __builtin_prefetch(p + off);
#else
    (void)p, (void)bytes;
#endif
}

/* operand k's row `ahead` rows after the current one (at p), while the
 * panel has one; ahead == 0 asks for nothing */
SCAN_INLINE void panel_prefetch_ahead(const scan_block *b, int64_t r, int64_t ahead, int k,
                                      const char *p, int64_t row_bytes)
{
    if (ahead && r + ahead < b->n)
        panel_prefetch_row(p + ahead * b->step[k], row_bytes);
}

#define DEFINE_PANEL_KERNEL(NAME, PANEL, NOPS, ...) \
    DEFINE_PANEL_KERNEL_WIDTH(NAME, PANEL, SCAN_PANEL, NOPS, __VA_ARGS__)
/* the same with panels of at most WIDTH (<= SCAN_PANEL) lines */
#define DEFINE_PANEL_KERNEL_WIDTH(NAME, PANEL, WIDTH, NOPS, ...)                    \
    static void NAME(const scan_block *b)                                          \
    {                                                                              \
        static const int64_t size_[NOPS] = {__VA_ARGS__};                          \
        const int contig_ = lanes_are_contiguous(b, NOPS, size_);                  \
        if (b->m == 1) {                                                           \
            if (b->inclusive) PANEL(b, 0, 1, 1, 0, size_, 1);                      \
            else PANEL(b, 0, 1, 0, 0, size_, 1);                                   \
            return;                                                                \
        }                                                                          \
        for (int64_t l0 = 0; l0 < b->m; l0 += (WIDTH)) {                           \
            int64_t w = b->m - l0 < (WIDTH) ? b->m - l0 : (WIDTH);                 \
            if (contig_) {                                                         \
                if (b->inclusive) PANEL(b, l0, w, 1, 1, size_, 0);                    \
                else PANEL(b, l0, w, 0, 1, size_, 0);                                 \
            } else {                                                               \
                if (b->inclusive) PANEL(b, l0, w, 1, 0, size_, 0);                    \
                else PANEL(b, l0, w, 0, 0, size_, 0);                                 \
            }                                                                      \
        }                                                                          \
    }

/* the parameter list every panel function takes */
#define PANEL_ARGS                                                                              \
    const scan_block *b, int64_t l0, int64_t w, const int incl, const int contig,              \
        const int64_t *sizeof_op, const int line

/* A copy of block b with the scan direction reversed, for kernels that are
 * the same scan run the other way (the VJP of a sum). */
SCAN_INLINE scan_block block_reversed(const scan_block *b)
{
    scan_block r = *b;
    for (int k = 0; k < SCAN_MAX_OPERANDS; k++) {
        if (r.ptr[k] != NULL && r.n > 0)
            r.ptr[k] += (r.n - 1) * r.step[k];
        r.step[k] = -r.step[k];
    }
    r.index_first = b->index_first + (b->n - 1) * b->index_step;
    r.index_step = -b->index_step;
    return r;
}

/* Block b with operands renumbered: new operand k is old operand from[k]
 * (-1: absent). */
SCAN_INLINE scan_block block_pick(const scan_block *b, int k0, int k1, int k2)
{
    scan_block r = *b;
    int from[3] = {k0, k1, k2};
    for (int k = 0; k < SCAN_MAX_OPERANDS; k++) {
        int f = k < 3 ? from[k] : -1;
        r.ptr[k] = f >= 0 ? b->ptr[f] : NULL;
        r.step[k] = f >= 0 ? b->step[f] : 0;
        r.lane[k] = f >= 0 ? b->lane[f] : 0;
    }
    return r;
}

#endif
