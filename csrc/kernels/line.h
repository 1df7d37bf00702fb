/* line.h: what the single-line kernels share.  A block of one contiguous
 * line (m == 1, every operand at +-1 element per step) of float32 or
 * float64 (the dtypes whose rows load as four doubles, NARROW_<sfx>) goes
 * to the in-register log-step scans of the op headers (kernels/ops/).
 *
 * The scalar panel walk is one dependency chain through the carry: an add
 * (or multiply, or compare-and-select) per element, 4-8 cycles each, which
 * is 2-5x a copy.  Here eight elements are scanned in two shift-and-combine
 * steps per vector, off the chain, and the chain from one group of eight to
 * the next is a single combine with the carry.  A line walked backwards
 * (reverse=True) loads the same vectors and reverses their lanes, or (sums
 * and products) keeps them in memory order and mirrors its shifts.
 *
 * The panel kernels stay the fallback for short, strided and multi-lane
 * blocks.
 */
#ifndef SCANAD_LINE_ONCE
#define SCANAD_LINE_ONCE
/* payloads of extreme_line_ */
#define LINE_NONE 0    /* values only: operands x, y */
#define LINE_INDEX 1   /* operands x, y, indices */
#define LINE_TANGENT 2 /* operands x, t, y, y_dot */
/* f(b, args..., incl, back) with incl and back as constants, so each of the
 * four variants compiles without the tests in its loop */
#define LINE_CALL(f, b, dir, ...)                                        \
    do {                                                                 \
        if ((b)->inclusive) {                                            \
            if ((dir) > 0) f(b, __VA_ARGS__, 1, 0);                      \
            else f(b, __VA_ARGS__, 1, 1);                                \
        } else {                                                         \
            if ((dir) > 0) f(b, __VA_ARGS__, 0, 0);                      \
            else f(b, __VA_ARGS__, 0, 1);                                \
        }                                                                \
    } while (0)
/* the same for f(b, incl, back) */
#define LINE_CALL0(f, b, dir)                                            \
    do {                                                                 \
        if ((b)->inclusive) {                                            \
            if ((dir) > 0) f(b, 1, 0);                                   \
            else f(b, 1, 1);                                             \
        } else {                                                         \
            if ((dir) > 0) f(b, 0, 0);                                   \
            else f(b, 0, 1);                                             \
        }                                                                \
    } while (0)

/* Reassociation may move a result only by rounding, never turn it into inf,
 * 0 or NaN where the one-at-a-time scan gives a number (a group's products
 * 0 * 1e200 * 1e200 are 0 * inf = NaN; 1e308 + 1e308 - 1e308 - 1e308 is
 * NaN).  So a group is combined in-register only when neither its own
 * partial results nor the running result S combined with them can leave
 * the range, else it takes the one-at-a-time step:
 * - float64: S is inf, NaN or at most 2^200 (products), 2^1020 (sums);
 *   for products every element is 0 or of magnitude in [2^-32, 2^32]
 *   (partials within 2^+-256), for sums at most 2^960.  Either way inf and
 *   NaN elements count as out (one compare per bound).
 * - float32 products: eight floats multiply in double without overflow
 *   (FLT_MAX^8 < DBL_MAX), and a partial of k floats is >= 2^(-149k), so
 *   only those of seven and eight (c[2], c[3]) can fall below 2^-1022; the
 *   group's second vector of partials is checked once computed (0 is out:
 *   a zero element costs one slow group).  S is not bounded (a test on it
 *   would wait for the carry chain): S times a partial
 *   is the one-at-a-time partial but for rounding, and where it overflows
 *   double the float32 output is inf either way; only if the product then
 *   comes back below FLT_MAX does the grouped one keep the number that the
 *   one-at-a-time product lost to an inf.
 * - float32 sums in double cannot overflow.
 * A running product that underflows stays grouped: there the one-at-a-time
 * product is itself noise (a subnormal times 0.9 rounds back to the same
 * subnormal, so it sticks at 5e-324 where the grouped product rounds to 0),
 * both within a subnormal of the exact product. */
#define ACC_PROD_LO 0x1p-32
#define ACC_PROD_HI 0x1p32
#define ACC_SUM_HI 0x1p960
#define V4_ABS(v) ((v4d)((v4i)(v) & V4I_SPLAT(INT64_MAX)))
/* lanes of v, a float64 vector, outside the ranges above (NaN is out) */
#define ACC_PROD_WILD(v)                                 \
    (~(v4i)(V4_ABS(v) <= V4_SPLAT(ACC_PROD_HI)) |        \
     ((v4i)(V4_ABS(v) < V4_SPLAT(ACC_PROD_LO)) & (v4i)((v) != V4_SPLAT(0.0))))
#define ACC_SUM_WILD(v) (~(v4i)(V4_ABS(v) <= V4_SPLAT(ACC_SUM_HI)))
#define ACC_PARTIAL_TAME(v) ((v4i)(V4_ABS(v) >= V4_SPLAT(0x1p-1022)))
#define ACC_PARTIAL_WILD(v) (~ACC_PARTIAL_TAME(v))
SCAN_INLINE int acc_carry_tame(const int prod, const double S)
{
    const double m = fabs(S);
    return !(m > (prod ? 0x1p200 : 0x1p1020) && m < INFINITY);
}
/* Speculative blocks (float32 products): the groups of a block are stored
 * unchecked and their partials tested once at the block's end; a block that
 * fails is done again from its start group by group, each checked before it
 * is stored, and blocks pause for ACC_PAUSE elements so that a line with
 * many zeros pays for one wasted block per pause.  A test and branch per
 * group would cost a noticeable share of the line's time. */
#define ACC_BLOCK 64
#define ACC_PAUSE 2048

/* Lanes in memory order (LINE_SHIFT1, LINE_SHIFT2 and LINE_LAST in simd.h):
 * a line walked backwards keeps them through its loads and stores. */
#define LINE_LOAD_MEM(dst, p, back) NARROW_LOAD(dst, (back) ? (p) - 3 * (int64_t)sizeof(T) : (p))
#define LINE_STORE_MEM(p, v, back)                                             \
    do {                                                                       \
        v4d s_ = (v);                                                          \
        NARROW_STORE((back) ? (p) - 3 * (int64_t)sizeof(T) : (p), s_);         \
    } while (0)
#define LINE_STORE_I_MEM(p, v, back)                    \
    do {                                                \
        v4i s_ = (v);                                   \
        V4_STORE((back) ? (p) - 3 * 8 : (p), s_);       \
    } while (0)

/* the eight elements a, c of a group (lanes in memory order, loaded with
 * LINE_LOAD_MEM) scanned in place: partial results from the group's first
 * element on */
#define ACC_GROUP_SCAN(prod, back, a, c, id)                     \
    do {                                                         \
        a = LINE_COMBINE(prod, a, LINE_SHIFT1(a, id, back));     \
        c = LINE_COMBINE(prod, c, LINE_SHIFT1(c, id, back));     \
        a = LINE_COMBINE(prod, a, LINE_SHIFT2(a, id, back));     \
        c = LINE_COMBINE(prod, c, LINE_SHIFT2(c, id, back));     \
        c = LINE_COMBINE(prod, c, LINE_LAST(a, back));           \
    } while (0)
/* a scanned group's outputs from carry Sv to y, and Sv past the group */
#define ACC_GROUP_STORE(prod, incl, back, y, sz, a, c, Sv)              \
    do {                                                                \
        v4d ra = LINE_COMBINE(prod, a, Sv), rc = LINE_COMBINE(prod, c, Sv); \
        const v4d next = LINE_COMBINE(prod, Sv, LINE_LAST(c, back));   \
        if (!(incl)) { /* each output is the state before its element */ \
            rc = LINE_SHIFT1(rc, LINE_LAST(ra, back), back);            \
            ra = LINE_SHIFT1(ra, Sv, back);                             \
        }                                                               \
        Sv = next;                                                      \
        LINE_STORE_MEM(y, ra, back);                                    \
        LINE_STORE_MEM((y) + 4 * (sz), rc, back);                       \
    } while (0)

/* Read p LINE_AHEAD elements ahead (sz: bytes per element, its sign the
 * direction; a prefetch never faults, so past the line's end is harmless).
 * The hardware prefetchers alone leave a long line well short of its
 * in-cache speed.  Outputs are not prefetched for writing: that made the
 * lines slower (docs/performance.md, "Software prefetch"). */
#define LINE_AHEAD 256
#if defined(__GNUC__)
#define LINE_PREFETCH(p, sz) \
    __builtin_prefetch((const void *)((uintptr_t)(p) + LINE_AHEAD * (sz)))
#else
#define LINE_PREFETCH(p, sz) ((void)0)
#endif

/* whether the n elements from x and from y (sz bytes apart, either sign)
 * share a byte */
SCAN_INLINE int line_ranges_overlap(const char *x, const char *y, int64_t n, int64_t sz)
{
    const uintptr_t span = (uintptr_t)(n * (sz < 0 ? -sz : sz));
    const uintptr_t xl = (uintptr_t)(sz < 0 ? x + (n - 1) * sz : x);
    const uintptr_t yl = (uintptr_t)(sz < 0 ? y + (n - 1) * sz : y);
    return xl < yl + span && yl < xl + span;
}

#endif

#if HAS_NARROW
/* Whether block b is one line with every operand present at exactly one
 * element per step in the same direction; returns 1 (up), -1 (down) or 0. */
SCAN_INLINE int KN(line_direction_)(const scan_block *b, int nops, const int64_t *size)
{
    if (b->m != 1 || b->n < SCAN_LINE_MIN_ELEMENTS || b->step[0] == 0)
        return 0;
    const int dir = b->step[0] > 0 ? 1 : -1;
    for (int k = 0; k < nops; k++)
        if (b->ptr[k] != NULL && b->step[k] != dir * size[k])
            return 0;
    return dir;
}
#endif
