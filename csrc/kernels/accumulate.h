/* accumulate.h: what cumsum and cumprod share, for one dtype: the forward
 * panel (one accumulating scan, instantiated for + and *), the single-line
 * log-step scan and the total of a piece of a line split between threads
 * (both with a constant `prod` choosing * over +). */

/* ---- forward: one accumulating scan, instantiated for + and * ---- */
#define DEFINE_ACCUMULATE(NAME, IDENTITY, COMBINE)                                      \
    SCAN_INLINE void KN(NAME##_fwd_panel_)(PANEL_ARGS)                                  \
    {                                                                                   \
        const char *x = PANEL_BASE(0);                                                  \
        char *y = PANEL_BASE(1);                                                        \
        const int64_t lx = LANE(0), ly = LANE(1);                                       \
        const int64_t head = panel_head_lanes(y, w, sizeof(T), contig);                 \
        STATE_ALIGNED(A, acc, 0, head);                                                 \
        for (int64_t l = 0; l < w; l++)                                                 \
            acc[l] = IDENTITY;                                                          \
        const int64_t ahead = panel_rows_ahead(b, w, sizeof(T), contig, line);          \
        for (int64_t r = 0; r < b->n; r++) {                                            \
            panel_prefetch_ahead(b, r, ahead, 0, x, w * (int64_t)sizeof(T));            \
            FOR_LANES(l, head, w) {                                                     \
                A v = LD(x + l * lx); /* read before writing: y may be x */             \
                A next = COMBINE(acc[l], v);                                            \
                ST(y + l * ly, incl ? next : acc[l]);                                   \
                acc[l] = next;                                                          \
            }                                                                           \
            x += b->step[0];                                                            \
            y += b->step[1];                                                            \
        }                                                                               \
    }                                                                                   \
    DEFINE_PANEL_KERNEL(KN(NAME##_fwd_panels_), KN(NAME##_fwd_panel_), 2, sizeof(T), sizeof(T))

DEFINE_ACCUMULATE(sum, ZERO, ADD)
DEFINE_ACCUMULATE(prod, ONE, MUL)
#undef DEFINE_ACCUMULATE

#if HAS_NARROW
#define LINE_COMBINE(prod, a, c) ((prod) ? (a) * (c) : (a) + (c))

/* whether a group's elements a, c (float64) or its partial results c
 * (float32) are out of the range of the comment above */
#if IS_F32
#define ACC_ELEMENTS_WILD(prod, a, c) 0
#define ACC_PARTIALS_WILD(prod, c) ((prod) && V4_ANY(ACC_PARTIAL_WILD(c)))
#define ACC_SPECULATES(prod) (prod)
#else
#define ACC_ELEMENTS_WILD(prod, a, c) \
    V4_ANY((prod) ? ACC_PROD_WILD(a) | ACC_PROD_WILD(c) : ACC_SUM_WILD(a) | ACC_SUM_WILD(c))
#define ACC_PARTIALS_WILD(prod, c) 0
#define ACC_SPECULATES(prod) 0
#endif
/* cumsum (prod = 0) or cumprod (prod = 1) of operand 0 into operand 1, in
 * double, eight elements per step.  Reassociation moves results by a few
 * double ulp; outside speculative blocks both operands are loaded before
 * either is stored, so y may be x (which then never speculates). */
SCAN_INLINE void KN(accumulate_line_)(const scan_block *b, const int prod, const int incl,
                                     const int back)
{
    const int64_t n = b->n, sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T);
    const v4d id = prod ? (v4d){1.0, 1.0, 1.0, 1.0} : (v4d){0.0, 0.0, 0.0, 0.0};
    const char *x = b->ptr[0];
    char *y = b->ptr[1];
    double S = b->carry ? b->carry->v : prod ? 1.0 : 0.0;
    const int speculate = ACC_SPECULATES(prod) && !line_ranges_overlap(x, y, n, sz);
    int64_t i = 0, speculate_from = 0;
    for (;;) {
        /* the carry stays a splat vector and takes the group's total, which
         * is splat off the chain: extracting the last lane and broadcasting
         * it again put a 10-cycle round trip per 8 elements on the chain */
        v4d Sv = V4_SPLAT(S);
        for (;;) {
            if (speculate && i >= speculate_from && i + ACC_BLOCK <= n) {
                const char *x0 = x;
                char *y0 = y;
                const v4d S0 = Sv;
                v4i tame = V4I_SPLAT(-1);
                for (int g = 0; g < ACC_BLOCK / 8; g++, x += 8 * sz, y += 8 * sz) {
                    v4d a, c;
                    LINE_PREFETCH(x, sz);
                    LINE_LOAD_MEM(a, x, back);
                    LINE_LOAD_MEM(c, x + 4 * sz, back);
                    ACC_GROUP_SCAN(prod, back, a, c, id);
                    tame &= ACC_PARTIAL_TAME(c);
                    ACC_GROUP_STORE(prod, incl, back, y, sz, a, c, Sv);
                }
                if (!V4_ANY(~tame)) {
                    i += ACC_BLOCK;
                    continue;
                }
                x = x0, y = y0, Sv = S0;
                speculate_from = i + ACC_PAUSE;
            }
            if (i + 8 > n)
                break;
            v4d a, c;
            LINE_PREFETCH(x, sz);
            LINE_LOAD_MEM(a, x, back);
            LINE_LOAD_MEM(c, x + 4 * sz, back);
            if (sizeof(T) == 8 && !acc_carry_tame(prod, Sv[0]))
                break;
            if (ACC_ELEMENTS_WILD(prod, a, c))
                break;
            ACC_GROUP_SCAN(prod, back, a, c, id);
            if (ACC_PARTIALS_WILD(prod, c))
                break;
            ACC_GROUP_STORE(prod, incl, back, y, sz, a, c, Sv);
            i += 8, x += 8 * sz, y += 8 * sz;
        }
        S = Sv[0];
        if (i == n) {
            if (b->carry_out != NULL) {
                b->carry_out->v = S;
                b->carry_out->filled = 1;
            }
            return;
        }
        /* the line's tail, or eight elements after a wild group or carry */
        const int64_t stop = i + 8 <= n ? i + 8 : n;
        for (; i < stop; i++, x += sz, y += sz) {
            const double next = LINE_COMBINE(prod, S, (double)LD(x));
            ST(y, incl ? next : S);
            S = next;
        }
    }
}
#undef ACC_ELEMENTS_WILD
#undef ACC_PARTIALS_WILD
#undef ACC_SPECULATES

/* ---- totals of a piece, for a line split between threads ----
 * Sums and products: the line's elements in memory order, two vectors of
 * partial results.  cummax/cummin: the owner is the last maximum of the
 * total preorder with NaN on top, i.e. the largest (value, scan position)
 * pair, so each lane keeps its own and the four are merged at the end. */
/* lanes of v whose magnitude is outside [lo, hi] (NaN fails both compares) */
#define V4_OUTSIDE(v, lo, hi) (~((v4i)(V4_ABS(v) >= (lo)) & (v4i)(V4_ABS(v) <= (hi))))
SCAN_INLINE int KN(accumulate_reduce_)(const scan_block *b, scan_carry *total, const int prod)
{
    static const int64_t size_[2] = {sizeof(T), sizeof(T)};
    const int dir = KN(line_direction_)(b, 2, size_);
    if (!dir)
        return 0;
    const int64_t n = b->n;
    const char *x = dir > 0 ? b->ptr[0] : b->ptr[0] - (n - 1) * (int64_t)sizeof(T);
    v4d a = prod ? V4_SPLAT(1.0) : V4_SPLAT(0.0), c = a;
    /* Each lane's running result, like a group in accumulate_line_, must not
     * leave the range where the one-at-a-time scan would not: for sums, no
     * element beyond ACC_SUM_HI (then no partial sum of < 2^60 of them
     * overflows); for products, no element wild, 0, inf or NaN, and every
     * lane within 2^+-90 whenever it is looked at.  The lanes are looked at
     * every 16 steps, in which elements within 2^+-32 move a lane by at most
     * 2^512, so none comes near overflow or the subnormals; the eight lanes'
     * product and the < 8 tail elements stay within 2^+-944.  A line that
     * fails is not split, and it fails early: a product drifting away from 1
     * leaves the span within a few thousand elements instead of after a
     * wasted pass over the piece. */
    v4i wild = V4I_SPLAT(0);
    const v4d lo = V4_SPLAT(ACC_PROD_LO), hi = V4_SPLAT(ACC_PROD_HI);
    const v4d span_lo = V4_SPLAT(0x1p-90), span_hi = V4_SPLAT(0x1p90);
    int64_t i = 0;
    for (int64_t step = 0; i + 8 <= n; i += 8, step++) {
        v4d u, w;
        NARROW_LOAD(u, x + i * (int64_t)sizeof(T));
        NARROW_LOAD(w, x + (i + 4) * (int64_t)sizeof(T));
        if (prod)
            wild |= V4_OUTSIDE(u, lo, hi) | V4_OUTSIDE(w, lo, hi);
        else if (sizeof(T) == 8)
            wild |= ACC_SUM_WILD(u) | ACC_SUM_WILD(w);
        a = LINE_COMBINE(prod, a, u);
        c = LINE_COMBINE(prod, c, w);
        if ((step & 15) == 15) {
            if (prod)
                wild |= V4_OUTSIDE(a, span_lo, span_hi) | V4_OUTSIDE(c, span_lo, span_hi);
            if (V4_ANY(wild))
                return 0;
        }
    }
    if (prod)
        wild |= V4_OUTSIDE(a, span_lo, span_hi) | V4_OUTSIDE(c, span_lo, span_hi);
    if (V4_ANY(wild))
        return 0;
    a = LINE_COMBINE(prod, a, c);
    double t = LINE_COMBINE(prod, LINE_COMBINE(prod, a[0], a[1]), LINE_COMBINE(prod, a[2], a[3]));
    for (; i < n; i++) {
        const double v = (double)LD(x + i * (int64_t)sizeof(T)), m = fabs(v);
        if (prod ? !(m >= ACC_PROD_LO && m <= ACC_PROD_HI) : sizeof(T) == 8 && !(m <= ACC_SUM_HI))
            return 0;
        t = LINE_COMBINE(prod, t, v);
    }
    total->v = t;
    total->i = 0;
    return 1;
}
#undef V4_OUTSIDE
#undef LINE_COMBINE
#endif
