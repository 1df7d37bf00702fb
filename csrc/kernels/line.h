/* line.h: cumsum, cumprod, cummax and cummin along one contiguous line
 * (m == 1, every operand at +-1 element per step) as in-register log-step
 * scans, for the dtypes whose rows load as four doubles (float32, float64:
 * NARROW_LOAD / NARROW_STORE defined): the forwards, the cummax/cummin JVP
 * (a payload of the forward) and the cumprod JVP and VJP (affine scans).
 * The cumsum derivatives are cumsums and take the forward kernel.
 *
 * The scalar panel walk is one dependency chain through the carry: an add
 * (or multiply, or compare-and-select) per element, 4-8 cycles each, which
 * is 2-5x a copy.  Here eight elements are scanned in two shift-and-combine
 * steps per vector, off the chain, and the chain from one group of eight to
 * the next is a single combine with the carry.  A line walked backwards
 * (reverse=True) loads the same vectors and reverses their lanes.
 *
 * Included once per dtype after sum_prod.h and max_min.h, whose kernels stay
 * the fallback for short, strided and multi-lane blocks.
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

/* combining the totals of consecutive pieces (scan_split.combine) */
static void line_combine_sum(scan_carry *acc, const scan_carry *next) { acc->v += next->v; }
static void line_combine_prod(scan_carry *acc, const scan_carry *next) { acc->v *= next->v; }
/* the later piece's owner takes over on >= / <= or NaN, as in the scan */
static void line_combine_max(scan_carry *acc, const scan_carry *next)
{
    if (next->v >= acc->v || next->v != next->v)
        *acc = *next;
}
static void line_combine_min(scan_carry *acc, const scan_carry *next)
{
    if (next->v <= acc->v || next->v != next->v)
        *acc = *next;
}

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

/* the eight elements a, c of a group scanned in place: partial results
 * from the group's first element on */
#define ACC_GROUP_SCAN(prod, a, c, id)                   \
    do {                                                 \
        a = LINE_COMBINE(prod, a, V4_SHIFT1(a, id));     \
        c = LINE_COMBINE(prod, c, V4_SHIFT1(c, id));     \
        a = LINE_COMBINE(prod, a, V4_SHIFT2(a, id));     \
        c = LINE_COMBINE(prod, c, V4_SHIFT2(c, id));     \
        c = LINE_COMBINE(prod, c, V4_BROADCAST3(a));     \
    } while (0)
/* a scanned group's outputs from carry Sv to y, and Sv past the group */
#define ACC_GROUP_STORE(prod, incl, back, y, sz, a, c, Sv)              \
    do {                                                                \
        v4d ra = LINE_COMBINE(prod, a, Sv), rc = LINE_COMBINE(prod, c, Sv); \
        const v4d next = LINE_COMBINE(prod, Sv, V4_BROADCAST3(c));     \
        if (!(incl)) { /* each output is the state before its element */ \
            rc = V4_SHIFT1(rc, V4_BROADCAST3(ra));                      \
            ra = V4_SHIFT1(ra, Sv);                                     \
        }                                                               \
        Sv = next;                                                      \
        LINE_STORE(y, ra, back);                                        \
        LINE_STORE((y) + 4 * (sz), rc, back);                           \
    } while (0)

/* Read x and write y LINE_AHEAD elements ahead (sz: bytes per element, its
 * sign the direction; a prefetch never faults, so past the line's end is
 * harmless).  The hardware prefetchers alone leave a long line well short
 * of its in-cache speed. */
#define LINE_AHEAD 256
#if defined(__GNUC__)
#define LINE_PREFETCH_READ(p, sz) \
    __builtin_prefetch((const void *)((uintptr_t)(p) + LINE_AHEAD * (sz)))
#define LINE_PREFETCH_WRITE(p, sz) \
    __builtin_prefetch((const void *)((uintptr_t)(p) + LINE_AHEAD * (sz)), 1)
#else
#define LINE_PREFETCH_READ(p, sz) ((void)0)
#define LINE_PREFETCH_WRITE(p, sz) ((void)0)
#endif
#define LINE_PREFETCH(x, y, sz)          \
    do {                                 \
        LINE_PREFETCH_READ(x, sz);       \
        LINE_PREFETCH_WRITE(y, sz);      \
    } while (0)

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

/* the four elements i..i+3 of a line that starts at p (element i) and runs
 * up (back = 0) or down (back = 1) in memory */
#define LINE_LOAD(dst, p, back)                                        \
    do {                                                               \
        NARROW_LOAD(dst, (back) ? (p) - 3 * (int64_t)sizeof(T) : (p)); \
        if (back)                                                      \
            (dst) = V4_REVERSE(dst);                                   \
    } while (0)
#define LINE_STORE(p, v, back)                                                 \
    do {                                                                       \
        v4d s_ = (back) ? V4_REVERSE(v) : (v);                                 \
        NARROW_STORE((back) ? (p) - 3 * (int64_t)sizeof(T) : (p), s_);         \
    } while (0)
#define LINE_LOAD_I(dst, p, back)                       \
    do {                                                \
        V4_LOAD(dst, (back) ? (p) - 3 * 8 : (p));       \
        if (back)                                       \
            (dst) = V4_REVERSE(dst);                    \
    } while (0)
#define LINE_STORE_I(p, v, back)                        \
    do {                                                \
        v4i s_ = (back) ? V4_REVERSE(v) : (v);          \
        V4_STORE((back) ? (p) - 3 * 8 : (p), s_);       \
    } while (0)

/* Whether block b is one line with every operand present at exactly one
 * element per step in the same direction; returns 1 (up), -1 (down) or 0. */
SCAN_INLINE int KN(line_direction_)(const scan_block *b, int nops, const int64_t *size)
{
    if (b->m != 1 || b->n < 16 || b->step[0] == 0)
        return 0;
    const int dir = b->step[0] > 0 ? 1 : -1;
    for (int k = 0; k < nops; k++)
        if (b->ptr[k] != NULL && b->step[k] != dir * size[k])
            return 0;
    return dir;
}

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
                    LINE_PREFETCH(x, y, sz);
                    LINE_LOAD(a, x, back);
                    LINE_LOAD(c, x + 4 * sz, back);
                    ACC_GROUP_SCAN(prod, a, c, id);
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
            LINE_PREFETCH(x, y, sz);
            LINE_LOAD(a, x, back);
            LINE_LOAD(c, x + 4 * sz, back);
            if (sizeof(T) == 8 && !acc_carry_tame(prod, Sv[0]))
                break;
            if (ACC_ELEMENTS_WILD(prod, a, c))
                break;
            ACC_GROUP_SCAN(prod, a, c, id);
            if (ACC_PARTIALS_WILD(prod, c))
                break;
            ACC_GROUP_STORE(prod, incl, back, y, sz, a, c, Sv);
            i += 8, x += 8 * sz, y += 8 * sz;
        }
        S = Sv[0];
        if (i == n)
            return;
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

/* ---- cummax / cummin ----
 * The scalar rule (a new element takes over when it compares >= / <= or is
 * NaN) picks the last maximum of a total preorder in which NaN is above
 * everything, so combining (left, right) = right if right takes over left,
 * else left, is associative and the log-step scan reproduces the owners,
 * the tie and signed-zero choices and the NaN rule exactly.  Each lane
 * carries a 64-bit payload with its value: the owner's index (forward with
 * indices) or the owner's tangent, as bits (JVP). */
#define LINE_TAKES(is_max, r, l) ((v4i)((is_max) ? (r) >= (l) : (r) <= (l)))
#define LINE_SELECT(m, a, c) (((a) & (m)) | ((c) & ~(m)))
/* (v, p) = combine((lv, lp), (v, p)) */
#define LINE_ABSORB(is_max, v, p, lv, lp)                               \
    do {                                                                \
        const v4i take_ = LINE_TAKES(is_max, v, lv);                    \
        (v) = (v4d)LINE_SELECT(take_, (v4i)(v), (v4i)(lv));             \
        (p) = LINE_SELECT(take_, (p), (lp));                            \
    } while (0)

#if IS_F32
/* float32 values, and the JVP: the compare is exact in float, so eight lanes
 * per vector and three shift steps, with no widening on either side. */
#if defined(__clang__)
#define V8_SHIFT(v, fill, k)                                                                   \
    ((k) == 1   ? __builtin_shufflevector(v, fill, 8, 0, 1, 2, 3, 4, 5, 6)                     \
     : (k) == 2 ? __builtin_shufflevector(v, fill, 8, 9, 0, 1, 2, 3, 4, 5)                     \
                : __builtin_shufflevector(v, fill, 8, 9, 10, 11, 0, 1, 2, 3))
#define V8_REVERSE(v) __builtin_shufflevector(v, v, 7, 6, 5, 4, 3, 2, 1, 0)
#else
#define V8_SHIFT(v, fill, k)                                                                   \
    ((k) == 1   ? __builtin_shuffle(v, fill, (v8i){8, 0, 1, 2, 3, 4, 5, 6})                    \
     : (k) == 2 ? __builtin_shuffle(v, fill, (v8i){8, 9, 0, 1, 2, 3, 4, 5})                    \
                : __builtin_shuffle(v, fill, (v8i){8, 9, 10, 11, 0, 1, 2, 3}))
#define V8_REVERSE(v) __builtin_shuffle(v, (v8i){7, 6, 5, 4, 3, 2, 1, 0})
#endif
/* (v, p) = combine((l, lp), (v, p)): v where it takes over l, else l */
#define V8_ABSORB(is_max, v, p, l, lp)                                                    \
    do {                                                                                  \
        const v8i take_ = (v8i)((is_max) ? (v) >= (l) : (v) <= (l));                     \
        (v) = (v8f)(((v8i)(v) & take_) | ((v8i)(l) & ~take_));                            \
        (p) = ((p) & take_) | ((lp) & ~take_);                                            \
    } while (0)
#define V8_LOAD(dst, p, back)                                                             \
    do {                                                                                  \
        memcpy(&(dst), (back) ? (p) - 7 * 4 : (p), sizeof(dst));                          \
        if (back)                                                                         \
            (dst) = V8_REVERSE(dst);                                                      \
    } while (0)
#define V8_STORE(p, v, back)                                                              \
    do {                                                                                  \
        const v8f s_ = (back) ? V8_REVERSE(v) : (v);                                      \
        memcpy((back) ? (p) - 7 * 4 : (p), &s_, sizeof(s_));                              \
    } while (0)

/* operands x, y (values only) or x, t, y, y_dot (JVP: the owner's tangent,
 * 32 bits, rides along as the payload) */
SCAN_INLINE void KN(extreme_f32_)(const scan_block *b, const int is_max, const int jvp,
                                 const int incl, const int back)
{
    const int64_t n = b->n, sz = back ? -4 : 4;
    const float start = is_max ? -INFINITY : INFINITY;
    const v8f startv = {start, start, start, start, start, start, start, start};
    const char *x = b->ptr[0], *t = jvp ? b->ptr[1] : NULL;
    char *y = b->ptr[jvp ? 2 : 1], *yd = jvp ? b->ptr[3] : NULL;
    /* the carry is a splat vector, so the chain is one compare and select;
     * no owner yet: tangent +0.0 */
    v8f s = startv;
    v8i sp = {0, 0, 0, 0, 0, 0, 0, 0};
    if (b->carry) { /* a later piece of a line split between threads */
        const float c = (float)b->carry->v;
        s = (v8f){c, c, c, c, c, c, c, c};
    }
    int64_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            v8f a;
            LINE_PREFETCH(x, y, sz);
            if (jvp)
                LINE_PREFETCH(t, yd, sz);
            V8_LOAD(a, x, back);
            /* without a NaN, "takes over" is a plain compare (a NaN carry
             * still wins, as v >= NaN is false); a group with one takes the
             * scalar step */
            if (!V8_ANY((v8i)(a != a))) {
                v8i p = sp;
                if (jvp) {
                    v8f tv;
                    V8_LOAD(tv, t, back);
                    p = (v8i)tv;
                }
                /* the shifted-in lanes hold the identity, which never wins */
                V8_ABSORB(is_max, a, p, V8_SHIFT(a, startv, 1), V8_SHIFT(p, p, 1));
                V8_ABSORB(is_max, a, p, V8_SHIFT(a, startv, 2), V8_SHIFT(p, p, 2));
                V8_ABSORB(is_max, a, p, V8_SHIFT(a, startv, 4), V8_SHIFT(p, p, 4));
                v8f next = {a[7], a[7], a[7], a[7], a[7], a[7], a[7], a[7]};
                v8i next_p = {p[7], p[7], p[7], p[7], p[7], p[7], p[7], p[7]};
                V8_ABSORB(is_max, next, next_p, s, sp);
                V8_ABSORB(is_max, a, p, s, sp);
                if (!incl) {
                    a = V8_SHIFT(a, s, 1);
                    p = V8_SHIFT(p, sp, 1);
                }
                s = next;
                sp = next_p;
                V8_STORE(y, a, back);
                if (jvp) {
                    V8_STORE(yd, (v8f)p, back);
                    t += 8 * sz, yd += 8 * sz;
                }
                i += 8, x += 8 * sz, y += 8 * sz;
                continue;
            }
        }
        const int64_t stop = i + 8 <= n ? i + 8 : n;
        for (; i < stop; i++, x += sz, y += sz) {
            const float S = s[0], v = *(const float *)x;
            const int32_t Sp = sp[0];
            const int take = (is_max ? v >= S : v <= S) || v != v;
            int32_t p = 0;
            if (jvp) {
                memcpy(&p, t, 4);
                t += sz;
            }
            const float nv = take ? v : S;
            const int32_t np = take ? p : Sp;
            *(float *)y = incl ? nv : S;
            if (jvp) {
                memcpy(yd, incl ? &np : &Sp, 4);
                yd += sz;
            }
            s = (v8f){nv, nv, nv, nv, nv, nv, nv, nv};
            sp = (v8i){np, np, np, np, np, np, np, np};
        }
    }
}
#undef V8_LOAD
#undef V8_STORE
#undef V8_SHIFT
#undef V8_REVERSE
#undef V8_ABSORB
#endif

SCAN_INLINE void KN(extreme_line_)(const scan_block *b, const int is_max, const int mode,
                                  const int incl, const int back)
{
#if IS_F32
    if (mode != LINE_INDEX) {
        KN(extreme_f32_)(b, is_max, mode == LINE_TANGENT, incl, back);
        return;
    }
#endif
    const int64_t n = b->n, sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T);
    const int64_t psz = mode == LINE_INDEX ? (back ? -8 : 8) : sz;
    const double start = is_max ? -INFINITY : INFINITY;
    const v4d startv = {start, start, start, start};
    const char *x = b->ptr[0], *t = mode == LINE_TANGENT ? b->ptr[1] : NULL;
    char *y = b->ptr[mode == LINE_TANGENT ? 2 : 1];
    char *po = mode == LINE_INDEX ? b->ptr[2] : mode == LINE_TANGENT ? b->ptr[3] : NULL;
    /* no owner yet: index -1, tangent +0.0 */
    v4d sv = startv;
    v4i sp = V4I_SPLAT(mode == LINE_INDEX ? -1 : 0);
    if (b->carry) { /* a later piece of a line split between threads */
        sv = V4_SPLAT(b->carry->v);
        sp = V4I_SPLAT(b->carry->i);
    }
    const v4i lanes = (v4i){0, 1, 2, 3} * b->index_step;
    const int64_t pos_step = 4 * b->index_step;
    int64_t i = 0;
    while (i < n) {
        v4d a, c;
        if (i + 8 > n)
            goto one_element;
        LINE_PREFETCH(x, y, sz);
        if (mode == LINE_TANGENT)
            LINE_PREFETCH(t, po, sz);
        else if (mode == LINE_INDEX)
            LINE_PREFETCH_WRITE(po, psz);
        LINE_LOAD(a, x, back);
        LINE_LOAD(c, x + 4 * sz, back);
        /* a group holding a NaN takes the scalar step: without one, "takes
         * over" is a plain compare (a NaN carry still wins, as r >= NaN is
         * false) */
        const v4i nan = (v4i)(a != a) | (v4i)(c != c);
        if (nan[0] | nan[1] | nan[2] | nan[3])
            goto one_element;
        v4i pa = lanes + (b->index_first + i * b->index_step), pc = pa + pos_step;
        if (mode == LINE_TANGENT) {
            v4d ta, tc;
            LINE_LOAD(ta, t, back);
            LINE_LOAD(tc, t + 4 * sz, back);
            pa = (v4i)ta;
            pc = (v4i)tc;
            t += 8 * sz;
        }
        /* the shifted-in lanes hold the identity (start), which never wins,
         * so their payload does not matter */
        LINE_ABSORB(is_max, a, pa, V4_SHIFT1(a, startv), V4_SHIFT1(pa, pa));
        LINE_ABSORB(is_max, c, pc, V4_SHIFT1(c, startv), V4_SHIFT1(pc, pc));
        LINE_ABSORB(is_max, a, pa, V4_SHIFT2(a, startv), V4_SHIFT2(pa, pa));
        LINE_ABSORB(is_max, c, pc, V4_SHIFT2(c, startv), V4_SHIFT2(pc, pc));
        LINE_ABSORB(is_max, c, pc, V4_SPLAT(a[3]), V4I_SPLAT(pa[3]));
        /* the carry stays a splat vector: the next one is the carry combined
         * with this group's total, so the chain is one compare and select */
        v4d next_v = V4_SPLAT(c[3]);
        v4i next_p = V4I_SPLAT(pc[3]);
        LINE_ABSORB(is_max, next_v, next_p, sv, sp);
        LINE_ABSORB(is_max, a, pa, sv, sp);
        LINE_ABSORB(is_max, c, pc, sv, sp);
        if (!incl) {
            c = V4_SHIFT1(c, V4_SPLAT(a[3]));
            pc = V4_SHIFT1(pc, V4I_SPLAT(pa[3]));
            a = V4_SHIFT1(a, sv);
            pa = V4_SHIFT1(pa, sp);
        }
        sv = next_v;
        sp = next_p;
        LINE_STORE(y, a, back);
        LINE_STORE(y + 4 * sz, c, back);
        if (mode == LINE_INDEX) {
            LINE_STORE_I(po, pa, back);
            LINE_STORE_I(po + 4 * psz, pc, back);
        } else if (mode == LINE_TANGENT) {
            LINE_STORE(po, (v4d)pa, back);
            LINE_STORE(po + 4 * psz, (v4d)pc, back);
        }
        if (po)
            po += 8 * psz;
        i += 8, x += 8 * sz, y += 8 * sz;
        continue;
    one_element:;
        const double Sv = sv[0], v = (double)MLD(x);
        const int64_t Sp = sp[0];
        const int take = (is_max ? v >= Sv : v <= Sv) || v != v;
        int64_t p = b->index_first + i * b->index_step;
        if (mode == LINE_TANGENT) {
            const double tv = (double)LD(t);
            memcpy(&p, &tv, sizeof p);
            t += sz;
        }
        const double nv = take ? v : Sv;
        const int64_t np = take ? p : Sp;
        MST(y, (MV)(incl ? nv : Sv));
        if (mode == LINE_INDEX) {
            *(int64_t *)po = incl ? np : Sp;
        } else if (mode == LINE_TANGENT) {
            double out;
            const int64_t bits = incl ? np : Sp;
            memcpy(&out, &bits, sizeof out);
            ST(po, out);
        }
        if (po)
            po += psz;
        sv = V4_SPLAT(nv);
        sp = V4I_SPLAT(np);
        i++, x += sz, y += sz;
    }
}

#undef LINE_TAKES
#undef LINE_ABSORB

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
static int KN(sum_reduce_)(const scan_block *b, scan_carry *total)
{
    return KN(accumulate_reduce_)(b, total, 0);
}
static int KN(prod_reduce_)(const scan_block *b, scan_carry *total)
{
    return KN(accumulate_reduce_)(b, total, 1);
}

/* (v, p) beats (bv, bp) in the preorder, positions in scan order */
SCAN_INLINE int KN(extreme_beats_)(const int is_max, double v, int64_t p, double bv, int64_t bp)
{
    if (v != v || bv != bv)
        return v != v && (bv == bv || p > bp);
    if (v == bv)
        return p > bp;
    return is_max ? v > bv : v < bv;
}

SCAN_INLINE int KN(extreme_reduce_)(const scan_block *b, scan_carry *total, const int is_max,
                                   const int back)
{
    const int64_t n = b->n, sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T);
    const double start = is_max ? -INFINITY : INFINITY;
    const char *x = b->ptr[0];
    v4d best = V4_SPLAT(start);
    v4i where = V4I_SPLAT(-1), pos = {0, 1, 2, 3};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4, x += 4 * sz, pos += 4) {
        v4d v;
        LINE_LOAD(v, x, back);
        /* per lane, positions only grow: the scan's own rule */
        const v4i take = (v4i)(is_max ? v >= best : v <= best) | (v4i)(v != v);
        best = (v4d)LINE_SELECT(take, (v4i)v, (v4i)best);
        where = LINE_SELECT(take, pos, where);
    }
    double bv = start;
    int64_t bp = -1;
    for (int l = 0; l < 4; l++)
        if (where[l] >= 0 && (bp < 0 || KN(extreme_beats_)(is_max, best[l], where[l], bv, bp))) {
            bv = best[l];
            bp = where[l];
        }
    for (; i < n; i++, x += sz) {
        const double v = (double)MLD(x);
        if ((is_max ? v >= bv : v <= bv) || v != v) {
            bv = v;
            bp = i;
        }
    }
    total->v = bv;
    total->i = b->index_first + bp * b->index_step;
    return 1;
}
#define DEFINE_EXTREME_REDUCE(OPNAME, IS_MAX)                                      \
    static int KN(OPNAME##_reduce_)(const scan_block *b, scan_carry *total)       \
    {                                                                              \
        static const int64_t size3_[3] = {sizeof(T), sizeof(T), sizeof(int64_t)}; \
        const int dir = KN(line_direction_)(b, b->ptr[2] ? 3 : 2, size3_);        \
        if (!dir)                                                                  \
            return 0;                                                              \
        return dir > 0 ? KN(extreme_reduce_)(b, total, IS_MAX, 0)                 \
                       : KN(extreme_reduce_)(b, total, IS_MAX, 1);                 \
    }
DEFINE_EXTREME_REDUCE(max, 1)
DEFINE_EXTREME_REDUCE(min, 0)
#undef DEFINE_EXTREME_REDUCE

#if HAS_DERIV
/* ---- cumprod derivatives on one line ----
 * Both are affine recurrences S_k = a_k S_{k-1} + e_k, scanned like the
 * forward: within a vector the maps (a, e) compose in two shift steps, and
 * the local products of a are shared with the product scan itself.
 *   JVP  D_i = x_i D_{i-1} + P_{i-1} t_i, alongside P_i = x_i P_{i-1}
 *   VJP  S_i = g_i + x_{i+1} S_{i+1} backwards, x_bar_i = E_i S_i, with E
 *        the exclusive prefix product, read from the forward's output y.
 * Composing eight factors before they meet the carry changes nothing but
 * rounding while no intermediate can overflow: a group runs vectorised only
 * when |x| <= 2^32 and the carries, tangents and cotangents are <= 2^200
 * (NaN fails the test); otherwise one element takes the panel kernel's
 * step, so zeros, infinities and overflow give exactly its results. */
#define PROD_X_TAME 0x1p32
#define PROD_TAME 0x1p200
/* factors a, a2 and weights e, e2 of a group are all in the tame range
 * (NaN fails; one compare per vector and one mask test, as this test is a
 * fifth of the group's instructions) */
#define V4_BEYOND(v, bound) (~(v4i)(V4_ABS(v) <= V4_SPLAT(bound)))
/* the group's eight factors and weights from pa and pe (sz bytes per element
 * in the walk's direction, down: whether that goes down in memory) */
#define PROD_GROUP_LOAD(a, a2, e, e2, pa, pe, sz, down) \
    do {                                                \
        LINE_LOAD(a, pa, down);                         \
        LINE_LOAD(a2, (pa) + 4 * (sz), down);           \
        LINE_LOAD(e, pe, down);                         \
        LINE_LOAD(e2, (pe) + 4 * (sz), down);           \
    } while (0)
#define PROD_GROUP_TAME(a, a2, e, e2)                                                          \
    (!V4_ANY(V4_BEYOND(a, PROD_X_TAME) | V4_BEYOND(a2, PROD_X_TAME) | V4_BEYOND(e, PROD_TAME) | \
             V4_BEYOND(e2, PROD_TAME)))

/* A cumprod JVP walking along a line: the operands at the next element and
 * the carries P and D. */
#ifndef SCANAD_PROD_JVP_WALK
#define SCANAD_PROD_JVP_WALK
typedef struct {
    const char *x, *t;
    char *y, *yd;
    double P, D;
} prod_jvp_walk;
#endif

/* count elements in groups of eight, with the one-element step wherever the
 * group or the carries are out of range */
SCAN_INLINE void KN(prod_jvp_groups_)(prod_jvp_walk *w, const int64_t count, const int incl,
                                     const int back)
{
    const int64_t sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T);
    const v4d one = V4_SPLAT(1.0);
    const char *x = w->x, *t = w->t;
    char *y = w->y, *yd = w->yd;
    /* the carries stay splat vectors; the group's own terms are computed
     * as if P = 1 and D = 0 (D is linear in P's weights), so the chain
     * from one group to the next is a multiply and a multiply-add */
    v4d P = V4_SPLAT(w->P), D = V4_SPLAT(w->D);
    /* The test of the carries lags one group: a branch on the carries just
     * computed would wait for the chain.  After a vector
     * group whose own carries were <= 2^200, the carries out of it are
     * within 2^456 (P) and 2^628 (D: A D + P e', e' <= 8 2^200 2^224), and
     * the next group's terms stay below 2^886, so it may run on the older
     * test; after a one-element step the carries are tested as they are. */
    double P_was = 1.0, D_was = 0.0; /* the carries into the last vector group */
    int after_group = 0;
    for (int64_t i = 0; i < count;) {
        const int carries_tame = after_group ? fabs(P_was) <= PROD_TAME && fabs(D_was) <= PROD_TAME
                                             : fabs(P[0]) <= PROD_TAME && fabs(D[0]) <= PROD_TAME;
        if (i + 8 <= count && carries_tame) {
            v4d a, a2, e, e2;
            PROD_GROUP_LOAD(a, a2, e, e2, x, t, sz, back);
            if (PROD_GROUP_TAME(a, a2, e, e2)) {
                v4d A1, A2, B1, B2;
                LINE_PREFETCH(x, y, sz);
                LINE_PREFETCH(t, yd, sz);
                affine_group_products(&a, &a2, &A1, &A2, &B1, &B2);
                const v4d whole2 = B2 * A2[3]; /* second vector from the group start */
                e *= V4_SHIFT1(A2, one);
                e2 *= V4_SHIFT1(whole2, V4_SPLAT(A2[3]));
                affine_group_offsets(&a, &a2, &A1, &B1, &B2, &e, &e2);
                v4d Pa = A2 * P, Pb = whole2 * P;
                v4d Da = A2 * D + P * e, Db = whole2 * D + P * e2;
                const v4d nP = V4_SPLAT(Pb[3]), nD = V4_SPLAT(Db[3]);
                if (!incl) {
                    Pb = V4_SHIFT1(Pb, V4_SPLAT(Pa[3]));
                    Db = V4_SHIFT1(Db, V4_SPLAT(Da[3]));
                    Pa = V4_SHIFT1(Pa, P);
                    Da = V4_SHIFT1(Da, D);
                }
                LINE_STORE(y, Pa, back);
                LINE_STORE(y + 4 * sz, Pb, back);
                LINE_STORE(yd, Da, back);
                LINE_STORE(yd + 4 * sz, Db, back);
                P_was = P[0];
                D_was = D[0];
                after_group = 1;
                P = nP;
                D = nD;
                i += 8, x += 8 * sz, t += 8 * sz, y += 8 * sz, yd += 8 * sz;
                continue;
            }
        }
        const double v = (double)LD(x), tv = (double)LD(t);
        const double nP = P[0] * v, nD = D[0] * v + P[0] * tv;
        ST(y, incl ? nP : P[0]);
        ST(yd, incl ? nD : D[0]);
        P = V4_SPLAT(nP);
        D = V4_SPLAT(nD);
        after_group = 0;
        i++, x += sz, t += sz, y += sz, yd += sz;
    }
    w->x = x, w->t = t, w->y = y, w->yd = yd;
    w->P = P[0], w->D = D[0];
}

/* Tiles of eight chunks of PJ_LEN elements, the chunks side by side in the
 * lanes of two vectors: each lane runs the plain recurrence along its chunk
 * from P = 1, D = 0 (vertical multiplies, no shifts), the chunks' carries
 * follow from their totals in eight scalar steps, and a second pass scales
 * the local results by them, P = Pc Pl, D = Pc Dl + Dc Pl.  Rows of four
 * elements go to columns and back in 4x4 transposes: per eight elements 16
 * shuffles and 16 multiplies or adds against the log-step group's 25 and
 * 25.
 * Ranges: with |x| in [2^-16, 2^16] or 0 and |t| <= 2^64, a chunk's local
 * P lies in [2^-512, 2^512] or is 0 and its D within 2^581, so with the
 * carries into every chunk within 2^100 no result nor any intermediate of
 * the one-at-a-time recurrence passes 2^700 or falls below 2^-612 but for
 * a carry that underflowed (the noise the groups accept too); a tile that
 * fails any of this takes the groups.
 * float32 only: a float64 line moves twice the bytes per element and is
 * bound by memory, where the tile's eight rows per operand are slower
 * than the groups' one stream. */
#if IS_F32
#define PJ_LEN 32
#define PJ_TILE (8 * PJ_LEN)
#define PJ_X_HI 0x1p16
#define PJ_X_LO 0x1p-16
#define PJ_T_HI 0x1p64
#define PJ_CARRY 0x1p100
#define PJ_AHEAD 4
/* r[c] = the four elements at row0 + c * row_step as lanes of one row,
 * transposed so that r[c] holds lane c's elements: four chunks side by side
 * (the loads written out: as a loop GCC kept the rows in memory) */
SCAN_INLINE void KN(load_columns_)(v4d r[4], const char *row0, const int64_t row_step)
{
    NARROW_LOAD(r[0], row0);
    NARROW_LOAD(r[1], row0 + row_step);
    NARROW_LOAD(r[2], row0 + 2 * row_step);
    NARROW_LOAD(r[3], row0 + 3 * row_step);
    v4_transpose(r);
}

/* the way back: columns r[c] transposed to rows, each stored at row0 +
 * c * row_step, times the row of T at the same place from `scale` if that
 * is not NULL */
SCAN_INLINE void KN(store_columns_)(v4d r[4], char *row0, const int64_t row_step,
                                   const char *scale)
{
    v4_transpose(r);
    for (int c = 0; c < 4; c++) {
        if (scale) {
            v4d e;
            NARROW_LOAD(e, scale + c * row_step);
            r[c] *= e;
        }
        NARROW_STORE(row0 + c * row_step, r[c]);
    }
}

/* whether a tile's PJ_TILE factors (in memory order from `a`) are 0 or of
 * magnitude in [2^-16, 2^16] and its tangents or cotangents (from `e`)
 * within 2^64; NaN fails every compare */
SCAN_INLINE int KN(chunk_tile_tame_)(const char *a, const char *e, const int down)
{
    const T *x = (const T *)(const void *)a, *t = (const T *)(const void *)e;
    int tame = 1;
    for (int i = 0; i < PJ_TILE; i++) {
        const int k = down ? PJ_TILE - 1 - i : i;
        const T m = fabsf(x[k]), mt = fabsf(t[k]);
        tame &= (m <= (T)PJ_X_HI) & ((m >= (T)PJ_X_LO) | (m == 0)) & (mt <= (T)PJ_T_HI);
    }
    return tame;
}

/* one tile of the `left` elements still to do; 0, with nothing written,
 * when its elements or a chunk's carries are out of range */
SCAN_INLINE int KN(prod_jvp_tile_)(prod_jvp_walk *w, const int64_t left, const int incl,
                                  const int back)
{
    const int64_t sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T);
    /* the tile in memory order starts PJ_TILE - 1 elements down when walking down */
    const int64_t low = back ? (PJ_TILE - 1) * sz : 0;
    if (!(fabs(w->P) <= PJ_CARRY && fabs(w->D) <= PJ_CARRY &&
          KN(chunk_tile_tame_)(w->x + low, w->t + low, back)))
        return 0;
    /* a row of four starts at its lowest address: element j, or j + 3 when
     * walking down, where the transposed columns come in reverse order */
    const int64_t row0 = back ? 3 : 0;
    v4d bufP[PJ_LEN][2], bufD[PJ_LEN][2];
    v4d lp[2] = {V4_SPLAT(1.0), V4_SPLAT(1.0)}, ld[2] = {V4_SPLAT(0.0), V4_SPLAT(0.0)};
    /* The tile reads and writes eight rows at once, too many streams for
     * the hardware prefetchers: each step asks for an eighth of the
     * operands' tile PJ_AHEAD tiles ahead, while the line goes on. */
    const int prefetch = left >= (PJ_AHEAD + 1) * PJ_TILE;
    const int64_t part = PJ_TILE / 8 * (int64_t)sizeof(T);
    const int64_t ahead = PJ_AHEAD * PJ_TILE * sz - (back ? 8 * part - (int64_t)sizeof(T) : 0);
    for (int j = 0; j < PJ_LEN; j += 4) {
        if (prefetch) {
            const int64_t at = ahead + j / 4 * part;
            panel_prefetch_row(w->x + at, part);
            panel_prefetch_row(w->t + at, part);
            panel_prefetch_row(w->y + at, part);
            panel_prefetch_row(w->yd + at, part);
        }
        for (int h = 0; h < 2; h++) {
            v4d xr[4], tr[4];
            const int64_t at = (4 * h * PJ_LEN + j + row0) * sz;
            KN(load_columns_)(xr, w->x + at, PJ_LEN * sz);
            KN(load_columns_)(tr, w->t + at, PJ_LEN * sz);
            for (int s = 0; s < 4; s++) {
                const int c = back ? 3 - s : s;
                const v4d nP = lp[h] * xr[c], nD = ld[h] * xr[c] + lp[h] * tr[c];
                bufP[j + s][h] = incl ? nP : lp[h];
                bufD[j + s][h] = incl ? nD : ld[h];
                lp[h] = nP;
                ld[h] = nD;
            }
        }
    }
    double pc[8], dc[8], P = w->P, D = w->D;
    int tame = 1;
    for (int k = 0; k < 8; k++) {
        pc[k] = P;
        dc[k] = D;
        tame &= (fabs(P) <= PJ_CARRY) & (fabs(D) <= PJ_CARRY);
        const double tp = lp[k >> 2][k & 3], td = ld[k >> 2][k & 3];
        D = D * tp + P * td;
        P = P * tp;
    }
    if (!tame)
        return 0;
    const v4d Pc[2] = {{pc[0], pc[1], pc[2], pc[3]}, {pc[4], pc[5], pc[6], pc[7]}};
    const v4d Dc[2] = {{dc[0], dc[1], dc[2], dc[3]}, {dc[4], dc[5], dc[6], dc[7]}};
    for (int j = 0; j < PJ_LEN; j += 4) {
        for (int h = 0; h < 2; h++) {
            v4d yr[4], dr[4];
            for (int s = 0; s < 4; s++) {
                const int c = back ? 3 - s : s;
                yr[c] = bufP[j + s][h] * Pc[h];
                dr[c] = bufD[j + s][h] * Pc[h] + bufP[j + s][h] * Dc[h];
            }
            const int64_t at = (4 * h * PJ_LEN + j + row0) * sz;
            KN(store_columns_)(yr, w->y + at, PJ_LEN * sz, NULL);
            KN(store_columns_)(dr, w->yd + at, PJ_LEN * sz, NULL);
        }
    }
    w->x += PJ_TILE * sz, w->t += PJ_TILE * sz, w->y += PJ_TILE * sz, w->yd += PJ_TILE * sz;
    w->P = P, w->D = D;
    return 1;
}

#endif

/* operands x, t, y, y_dot */
SCAN_INLINE void KN(prod_jvp_line_)(const scan_block *b, const int incl, const int back)
{
    prod_jvp_walk w = {b->ptr[0], b->ptr[1], b->ptr[2], b->ptr[3], 1.0, 0.0};
    int64_t left = b->n;
#if defined(PJ_TILE)
    for (; left >= PJ_TILE; left -= PJ_TILE)
        if (!KN(prod_jvp_tile_)(&w, left, incl, back))
            KN(prod_jvp_groups_)(&w, PJ_TILE, incl, back);
#endif
    KN(prod_jvp_groups_)(&w, left, incl, back);
}

#if defined(PJ_TILE)
/* The VJP's backwards recurrence in the same chunked tiles, for a tile
 * inside the line (every x_{i+1}, g and E it reads exists): slot k is
 * element i = hi - k, a_k = x_{i+1}, e_k = g_i (exclusive: g_{i+1}); each
 * lane runs S = e + a S and the product A of its chunk's factors, then
 * S = S_l + A_l Sc with the chunk's carry Sc, and x_bar = E S with E the
 * rows of y, which need no transpose.  The ranges are the JVP tile's, with
 * g for t.  Returns 0, with nothing written, when they do not hold. */
SCAN_INLINE int KN(prod_vjp_tile_)(const scan_block *b, const int64_t hi, double *S_io,
                                  const int incl, const int back)
{
    const int64_t sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T);
    const int64_t gshift = incl ? 0 : 1, lo = hi - (PJ_TILE - 1);
    /* the factors x_{lo+1..hi+1} and weights g_{lo+gshift..hi+gshift} in
     * memory order */
    if (!(fabs(*S_io) <= PJ_CARRY &&
          KN(chunk_tile_tame_)(b->ptr[0] + (back ? hi + 1 : lo + 1) * sz,
                               b->ptr[2] + (back ? hi + gshift : lo + gshift) * sz, !back)))
        return 0;
    /* a row of four slots k..k+3 starts at its lowest address: element
     * hi - k - 3 walking down in memory (columns in reverse), else hi - k */
    const int rev = !back;
    const int64_t row_back = rev ? 3 : 0;
    /* byte offsets of the factor, weight and E rows from the output row */
    const int64_t dx = sz, dg = gshift * sz, dy = -incl * sz;
    v4d bufS[PJ_LEN][2], bufA[PJ_LEN][2];
    v4d ls[2] = {V4_SPLAT(0.0), V4_SPLAT(0.0)}, la[2] = {V4_SPLAT(1.0), V4_SPLAT(1.0)};
    for (int j = 0; j < PJ_LEN; j += 4) {
        for (int h = 0; h < 2; h++) {
            v4d ar[4], er[4];
            const int64_t at = (hi - (4 * h * PJ_LEN + j) - row_back) * sz;
            KN(load_columns_)(ar, b->ptr[0] + (at + dx), -PJ_LEN * sz);
            KN(load_columns_)(er, b->ptr[2] + (at + dg), -PJ_LEN * sz);
            for (int s = 0; s < 4; s++) {
                const int c = rev ? 3 - s : s;
                ls[h] = er[c] + ar[c] * ls[h];
                la[h] = la[h] * ar[c];
                bufS[j + s][h] = ls[h];
                bufA[j + s][h] = la[h];
            }
        }
    }
    double sc[8], S = *S_io;
    int tame = 1;
    for (int c = 0; c < 8; c++) {
        sc[c] = S;
        tame &= fabs(S) <= PJ_CARRY;
        S = ls[c >> 2][c & 3] + la[c >> 2][c & 3] * S;
    }
    if (!tame)
        return 0;
    const v4d Sc[2] = {{sc[0], sc[1], sc[2], sc[3]}, {sc[4], sc[5], sc[6], sc[7]}};
    for (int j = 0; j < PJ_LEN; j += 4) {
        for (int h = 0; h < 2; h++) {
            v4d sr[4];
            for (int s = 0; s < 4; s++)
                sr[rev ? 3 - s : s] = bufS[j + s][h] + bufA[j + s][h] * Sc[h];
            const int64_t at = (hi - (4 * h * PJ_LEN + j) - row_back) * sz;
            KN(store_columns_)(sr, b->ptr[3] + at, -PJ_LEN * sz, b->ptr[1] + (at + dy));
        }
    }
    *S_io = S;
    return 1;
}
#endif

/* A cumprod VJP walking its line from the last element to the first
 * (down in memory when the line runs up): pointers at element i to the
 * factor x_{i+1}, the weight g_i (exclusive: g_{i+1}), E_i = y_{i-1}
 * (exclusive: y_i) and x_bar_i, and the carry S = S_{i+1}. */
#ifndef SCANAD_PROD_VJP_WALK
#define SCANAD_PROD_VJP_WALK
typedef struct {
    const char *a, *g, *e;
    char *xb;
    double S;
} prod_vjp_walk;
#endif

/* one vector group of the walk: from the factors x, x2 and weights t, t2
 * (walk order; both pairs are overwritten) and the carry *S, r and r2 get
 * x_bar = E S_i for the group's eight S_i, and *S the last S_i */
SCAN_INLINE void KN(prod_vjp_group_)(v4d *x, v4d *x2, v4d *t, v4d *t2, const v4d *E,
                                    const v4d *E2, double *S, v4d *r, v4d *r2)
{
    v4d P1, P2, Q1, Q2;
    affine_group_products(x, x2, &P1, &P2, &Q1, &Q2);
    affine_group_offsets(x, x2, &P1, &Q1, &Q2, t, t2);
    const v4d s = P2 * *S + *t, s2 = (Q2 * P2[3]) * *S + *t2;
    *r = *E * s;
    *r2 = *E2 * s2;
    *S = s2[3];
}

/* count elements from w's element down, S_i = g + x_{i+1} S_{i+1} and
 * x_bar_i = E_i S_i, in groups of eight composed in registers (the
 * in-register products and offsets of affine_scan_within, loaded and stored
 * in the walk's direction, so each element is read and written once) while
 * the group's factors are within 2^32, its weights within 2^200 and the
 * carry within 2^200 (NaN fails); else the exact one-element step.  Every
 * E_i read must exist: the caller keeps element 0 of an inclusive line. */
SCAN_INLINE void KN(prod_vjp_groups_)(prod_vjp_walk *w, const int64_t count, const int back)
{
    /* bytes per element in the walk's direction, and which way that is in
     * memory for LINE_LOAD / LINE_STORE */
    const int64_t sz = back ? (int64_t)sizeof(T) : -(int64_t)sizeof(T);
    const int down = !back;
    const char *a = w->a, *g = w->g, *e = w->e;
    char *xb = w->xb;
    double S = w->S;
    for (int64_t i = 0; i < count;) {
        if (i + 8 <= count && fabs(S) <= PROD_TAME) {
            v4d x, x2, t, t2;
            PROD_GROUP_LOAD(x, x2, t, t2, a, g, sz, down);
            if (PROD_GROUP_TAME(x, x2, t, t2)) {
                v4d E, E2, r, r2;
                LINE_PREFETCH(a, xb, sz);
                LINE_PREFETCH(g, e, sz);
                LINE_LOAD(E, e, down);
                LINE_LOAD(E2, e + 4 * sz, down);
                KN(prod_vjp_group_)(&x, &x2, &t, &t2, &E, &E2, &S, &r, &r2);
                LINE_STORE(xb, r, down);
                LINE_STORE(xb + 4 * sz, r2, down);
                i += 8, a += 8 * sz, g += 8 * sz, e += 8 * sz, xb += 8 * sz;
                continue;
            }
        }
        S = (double)LD(g) + (double)LD(a) * S;
        ST(xb, (double)LD(e) * S);
        i++, a += sz, g += sz, e += sz, xb += sz;
    }
    w->a = a, w->g = g, w->e = e, w->xb = xb;
    w->S = S;
}

/* The groups' walk with the weights g and the factors E read a few groups
 * ahead of x and x_bar written a few groups behind, through rings in the
 * thread's scratch.  Why: AMD Zen's L1 data cache predicts the way of a load
 * from a hash of the linear address bits 12-27 (the "utag"); two lines of
 * one set with the same hash cannot both stay in L1.  NumPy's big arrays all
 * start 16 bytes into a page, so operands walked in step share a set at every
 * element, and for a pair at an unlucky distance each group evicts the
 * other's lines: two adjacent 128 MiB mmaps (2^27 + 4 KiB apart, what
 * x.copy() and np.ones_like give for 2^24 float64) collide, and this walk,
 * down in memory with four operands, suffers most.  Skewed by 4-8 groups
 * (256-512 bytes), the four streams sit in different sets whatever their
 * distance (figures in docs/performance.md, "cumprod VJP and L1 way
 * conflicts").  A group out of the vector range takes eight one-element steps,
 * so the groups stay aligned with the rings; count / 8 groups are done, the
 * rest is left to the caller. */
#define PV_RING 16 /* groups; a power of two above PV_E_AHEAD */
#define PV_G_AHEAD 4
#define PV_E_AHEAD 8
#define PV_X_BEHIND 4
/* the group of eight values at p (walk order) into a ring slot, as doubles */
SCAN_INLINE void KN(prod_vjp_stage_group_)(double *slot, const char *p, const int64_t sz,
                                          const int down)
{
    v4d v, v2;
    LINE_LOAD(v, p, down);
    LINE_LOAD(v2, p + 4 * sz, down);
    V4_STORE(slot, v);
    V4_STORE(slot + 4, v2);
}
/* group j of the x_bar ring to its place p in the line */
SCAN_INLINE void KN(prod_vjp_write_group_)(char *p, const double *rx, const int64_t j,
                                          const int64_t sz, const int down)
{
    const double *slot = rx + 8 * (j & (PV_RING - 1));
    v4d r, r2;
    V4_LOAD(r, slot);
    V4_LOAD(r2, slot + 4);
    LINE_STORE(p, r, down);
    LINE_STORE(p + 4 * sz, r2, down);
}
SCAN_INLINE int64_t KN(prod_vjp_skewed_)(prod_vjp_walk *w, const int64_t count, const int back,
                                        char *scratch)
{
    const int64_t sz = back ? (int64_t)sizeof(T) : -(int64_t)sizeof(T);
    const int down = !back;
    const int64_t groups = count / 8;
    _Static_assert(3 * PV_RING * 8 * sizeof(double) <= SCAN_SCRATCH_BYTES, "rings fit the scratch");
    if (scratch == NULL || groups <= PV_E_AHEAD)
        return 0;
    /* ring slot k holds a group's eight values in walk order, as doubles */
    double *const rg = (double *)(void *)scratch, *const re = rg + PV_RING * 8,
                 *const rx = re + PV_RING * 8;
    const char *a = w->a, *const g = w->g, *const e = w->e;
    char *xb = w->xb;
    double S = w->S;
    for (int64_t j = 0; j < PV_E_AHEAD; j++) {
        if (j < PV_G_AHEAD)
            KN(prod_vjp_stage_group_)(rg + 8 * j, g + 8 * j * sz, sz, down);
        KN(prod_vjp_stage_group_)(re + 8 * j, e + 8 * j * sz, sz, down);
    }
    const char *ga = g + 8 * PV_G_AHEAD * sz, *ea = e + 8 * PV_E_AHEAD * sz;
    for (int64_t j = 0; j < groups; j++) {
        if (j + PV_G_AHEAD < groups) {
            LINE_PREFETCH_READ(ga, sz);
            KN(prod_vjp_stage_group_)(rg + 8 * ((j + PV_G_AHEAD) & (PV_RING - 1)), ga, sz, down);
            ga += 8 * sz;
        }
        if (j + PV_E_AHEAD < groups) {
            LINE_PREFETCH_READ(ea, sz);
            KN(prod_vjp_stage_group_)(re + 8 * ((j + PV_E_AHEAD) & (PV_RING - 1)), ea, sz, down);
            ea += 8 * sz;
        }
        const double *tg = rg + 8 * (j & (PV_RING - 1)), *te = re + 8 * (j & (PV_RING - 1));
        double *tx = rx + 8 * (j & (PV_RING - 1));
        v4d x, x2, t, t2;
        LINE_LOAD(x, a, down);
        LINE_LOAD(x2, a + 4 * sz, down);
        V4_LOAD(t, tg);
        V4_LOAD(t2, tg + 4);
        if (fabs(S) <= PROD_TAME && PROD_GROUP_TAME(x, x2, t, t2)) {
            v4d E, E2, r, r2;
            LINE_PREFETCH(a, xb, sz);
            V4_LOAD(E, te);
            V4_LOAD(E2, te + 4);
            KN(prod_vjp_group_)(&x, &x2, &t, &t2, &E, &E2, &S, &r, &r2);
            V4_STORE(tx, r);
            V4_STORE(tx + 4, r2);
        } else {
            for (int k = 0; k < 8; k++) {
                S = tg[k] + (double)LD(a + k * sz) * S;
                tx[k] = te[k] * S;
            }
        }
        if (j >= PV_X_BEHIND)
            KN(prod_vjp_write_group_)(xb - 8 * PV_X_BEHIND * sz, rx, j - PV_X_BEHIND, sz, down);
        a += 8 * sz, xb += 8 * sz;
    }
    for (int64_t j = groups > PV_X_BEHIND ? groups - PV_X_BEHIND : 0; j < groups; j++)
        KN(prod_vjp_write_group_)(xb - 8 * (groups - j) * sz, rx, j, sz, down);
    w->a = a, w->g = g + 8 * groups * sz, w->e = e + 8 * groups * sz, w->xb = xb;
    w->S = S;
    return 8 * groups;
}
#undef PV_RING
#undef PV_G_AHEAD
#undef PV_E_AHEAD
#undef PV_X_BEHIND

/* operands x, y, g, x_bar */
SCAN_INLINE void KN(prod_vjp_line_)(const scan_block *b, const int incl, const int back)
{
    const int64_t n = b->n, sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T);
    const int64_t gshift = incl ? 0 : 1;
    /* E, the exclusive prefix product, is the forward's own output: y_{i-1}
     * (inclusive; 1 before the line's start) or y_i (exclusive), the same
     * products in the same order, rounded to T, so there is no first pass.
     * The last element has no x_{i+1} (and, exclusive, no g_{i+1}, and no
     * output depends on its x; E there may be inf): */
    const int64_t last = n - 1;
    double S = incl ? (double)LD(b->ptr[2] + last * sz) : 0.0;
    if (!incl)
        ST(b->ptr[3] + last * sz, 0.0);
    else
        ST(b->ptr[3] + last * sz, last ? (double)LD(b->ptr[1] + (last - 1) * sz) * S : S);
    if (n == 1)
        return;
    const int64_t i = n - 2;
    prod_vjp_walk w = {b->ptr[0] + (i + 1) * sz, b->ptr[2] + (i + gshift) * sz,
                       b->ptr[1] + (i - incl) * sz, b->ptr[3] + i * sz, S};
    /* elements n - 2 down to 1 (inclusive: element 0 has E = 1, not in y) */
    int64_t left = n - 1 - incl;
#if defined(PJ_TILE)
    /* inside the line: the chunked tiles, unless out of their range */
    for (int64_t hi = i; left >= PJ_TILE; left -= PJ_TILE, hi -= PJ_TILE) {
        if (KN(prod_vjp_tile_)(b, hi, &w.S, incl, back)) {
            const int64_t step = -PJ_TILE * sz;
            w.a += step, w.g += step, w.e += step, w.xb += step;
        } else {
            KN(prod_vjp_groups_)(&w, PJ_TILE, back);
        }
    }
#endif
    left -= KN(prod_vjp_skewed_)(&w, left, back, b->scratch);
    KN(prod_vjp_groups_)(&w, left, back);
    if (incl) /* element 0: E = 1 */
        ST(b->ptr[3], (double)LD(b->ptr[2]) + (double)LD(b->ptr[0] + sz) * w.S);
}
#undef PJ_LEN
#undef PJ_TILE
#undef PJ_X_HI
#undef PJ_X_LO
#undef PJ_T_HI
#undef PJ_CARRY
#undef PJ_AHEAD
#undef PROD_X_TAME
#undef PROD_TAME
#undef V4_BEYOND
#undef PROD_GROUP_TAME
#undef PROD_GROUP_LOAD
#endif

#undef LINE_SELECT
#undef LINE_COMBINE
#undef LINE_LOAD
#undef LINE_STORE
#undef LINE_LOAD_I
#undef LINE_STORE_I
#endif
