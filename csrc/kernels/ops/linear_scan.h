/* ops/linear_scan.h: the first-order linear recurrence
 * h_t = a_t h_{t-1} + b_t for one dtype (kernels/instantiate.h): kernels for
 * float16/32/64 and complex64/128 (HAS_NARROW marks float32/64), empty cells
 * for the others.
 *
 * Operands: 0 a, 1 b, 2 h, 3 h0 (step 0, absent: 0), 4 h_final (step 0,
 * absent: not asked for).  All share the result dtype; a broadcast operand
 * is just a zero step or lane stride.  a_t == 0 resets: h_t = b_t whatever
 * h_{t-1} is (inf, NaN), so the update is a select, never 0 * h.
 *
 * Three walks:
 * - panels (m > 1): rows streamed, lanes vectorised, the state per lane in
 *   scratch; each lane is the sequential loop, bitwise.
 * - lines (m == 1) of float32/64 with every operand one element per step
 *   (a may be broadcast), without log_a: linear_groups_ loads groups of
 *   eight straight from the operands into double registers and composes
 *   them as affine_scan_within (simd.h) does (two log steps per vector, one
 *   multiply-add per group on the carry chain) when the group and the carry
 *   are tame, else takes eight of the loop's steps.  Other float32/64 lines
 *   (log_a, strided) and the reduce go through tiles of LS_TILE elements
 *   widened to double.  Reassociated: see "Accuracy" in docs/semantics.md.
 * - other lines (float16, complex, strided): the panel with w = 1.
 * A long float32/64 line may be split between threads: linear_reduce_
 * gives each piece's affine map (scan_carry: s 2^i = product of a, v =
 * state from 0), linear_combine composes them, and a piece starts from
 * linear_carry_in.
 */
#if KIND == 'f' || KIND == 'c' /* integers promote to float64 in the binding */
/* No fused multiply-add here (setup.py contracts elsewhere): each lane
 * must be the plain loop, bitwise, as NumPy computes it. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#if LSE_COMPLEX
/* GCC 12's vectoriser fuses the complex product into vfmaddsub even so */
#pragma GCC optimize("fp-contract=off", "no-tree-vectorize")
#else
/* the tiles' float64 copies stay vector loops: as memcpy, GCC inlines
 * rep movsq, which costs more than the scan itself */
#pragma GCC optimize("fp-contract=off", "no-tree-loop-distribute-patterns")
#endif
#define LS_NO_CONTRACT
#elif defined(__clang__)
#define LS_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#define LS_NO_CONTRACT
#endif
#ifndef SCANAD_LINEAR_BOUNDS_ONCE
#define SCANAD_LINEAR_BOUNDS_ONCE
#define LS_TILE 256
/* A group of eight (or a tile) is composed only if its factors are 0 or
 * within 2^+-32 (partial products of eight stay within 2^+-256: no
 * overflow, no underflow the loop would not have) and its offsets and the
 * carry within 2^700 (every partial below 2^960): then the groups differ
 * from the loop by rounding only, and an exact zero still resets (0 *
 * finite carry). */
#define LS_A_LO 0x1p-32
#define LS_A_HI 0x1p32
#define LS_B_HI 0x1p700
/* the same bounds on float32 bits (sign cleared): 2^-32, 2^32, FLT_MAX
 * (every finite float is within 2^700) */
#define LS_A_LO_F32 0x2F800000
#define LS_A_HI_F32 0x4F800000
#define LS_B_HI_F32 0x7F7FFFFF
#define V8I_SPLAT(s) ((v8i){(s), (s), (s), (s), (s), (s), (s), (s)})
/* lanes outside those bounds (NaN is out) */
#define LS_A_WILD(v)                                 \
    (~(v4i)(V4_ABS(v) <= V4_SPLAT(LS_A_HI)) |        \
     ((v4i)(V4_ABS(v) < V4_SPLAT(LS_A_LO)) & (v4i)((v) != V4_SPLAT(0.0))))
#define LS_B_WILD(v) (~(v4i)(V4_ABS(v) <= V4_SPLAT(LS_B_HI)))
#define LS_A_WILD_F32(u)                                                          \
    (((u) > V8I_SPLAT(LS_A_HI_F32)) |                                             \
     (((u) < V8I_SPLAT(LS_A_LO_F32)) & ((u) != V8I_SPLAT(0))))
#endif

#if HAS_NARROW
/* Eight float32 bits from p up (back: the eight ending at p) with the
 * sign cleared, for the bounds test before widening. */
#define LS_BITS_F32(u, p, back)                                      \
    do {                                                             \
        memcpy(&(u), (back) ? (p) - 7 * 4 : (p), sizeof(v8i));       \
        (u) &= V8I_SPLAT(INT32_MAX);                                 \
    } while (0)

#ifndef SCANAD_LINEAR_GROUP_ONCE
#define SCANAD_LINEAR_GROUP_ONCE
/* The products of a group of eight's factors: P1, P2, Q1, Q2 as
 * affine_group_products gives them, C2 the second vector's complete ones.
 * back: lanes in memory order on a line walked down (simd.h). */
typedef struct {
    v4d P1, P2, Q1, Q2, C2;
} linear_group;
/* whether a factor is 0 or within 2^+-32 */
SCAN_INLINE int linear_factor_tame(double a)
{
    const double m = fabs(a);
    return (m <= LS_A_HI) & ((m >= LS_A_LO) | (a == 0.0));
}
/* the products of a broadcast factor (ca: its splat), the same for every group */
SCAN_INLINE void linear_group_of_constant(const v4d *ca, linear_group *c, const int back)
{
    LS_NO_CONTRACT
    affine_group_products(ca, ca, &c->P1, &c->P2, &c->Q1, &c->Q2, back);
    c->C2 = c->Q2 * LINE_LAST(c->P2, back);
}
/* One group from the carry Sv: its products into *p (c's when abcast),
 * e, e2 turned into the offsets, the states s, s2 and the carry past the
 * group (from splats made off the chain: one multiply-add on it per eight
 * elements, the same value as s2's last element).  The forward's groups and the JVP's
 * share it: the JVP's h is the forward's bit for bit. */
SCAN_INLINE void linear_group_states(const v4d *a, const v4d *a2, const linear_group *c,
                                     const int abcast, const v4d *Sv, linear_group *p, v4d *e,
                                     v4d *e2, v4d *s, v4d *s2, v4d *next, const int back)
{
    LS_NO_CONTRACT
    *p = *c;
    if (!abcast) {
        affine_group_products(a, a2, &p->P1, &p->P2, &p->Q1, &p->Q2, back);
        p->C2 = p->Q2 * LINE_LAST(p->P2, back);
    }
    affine_group_offsets(a, a2, &p->P1, &p->Q1, &p->Q2, e, e2, back);
    *s = p->P2 * *Sv + *e;
    *s2 = p->C2 * *Sv + *e2;
    *next = LINE_LAST(p->C2, back) * *Sv + LINE_LAST(*e2, back);
}
#endif

/* Groups of eight of a contiguous line loaded straight from the operands
 * (a's step 0 with abcast), composed as affine_scan_within's (simd.h) and
 * stored, while the group and the carry *S are within the bounds above;
 * returns how many elements were done (a multiple of eight) and leaves the
 * rest to the caller's exact steps.  No fused multiply-adds, as in the
 * tiles: a line gives the same bits through either path (reverse=True and
 * a reversed view of the operands may take different ones).  Each group
 * is loaded before it is stored, so h may be a or b. */
SCAN_INLINE int64_t KN(linear_groups_)(const char *x, const char *y, char *h, const int64_t n,
                                       double *S, const int incl, const int back, const int abcast)
{
    LS_NO_CONTRACT
    const int64_t sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T), sa = abcast ? 0 : sz;
    if (n < 8) /* x may point past the line's end */
        return 0;
    v4d Sv = V4_SPLAT(*S);
    /* a broadcast a: its products are the same for every group (the
     * caller has checked that it is tame) */
    const v4d ca = V4_SPLAT(abcast ? (double)LD(x) : 0.0);
    linear_group c;
    linear_group_of_constant(&ca, &c, back);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8, x += 8 * sa, y += 8 * sz, h += 8 * sz) {
        if (!(fabs(Sv[0]) <= LS_B_HI))
            break;
        LINE_PREFETCH(y, sz);
        if (!abcast)
            LINE_PREFETCH(x, sz);
        v4d a = ca, a2 = ca, e, e2;
#if IS_F32
        v8i ub, wild;
        LS_BITS_F32(ub, y, back);
        wild = ub > V8I_SPLAT(LS_B_HI_F32);
        if (!abcast) {
            v8i ua;
            LS_BITS_F32(ua, x, back);
            wild |= LS_A_WILD_F32(ua);
        }
        if (V8_ANY(wild))
            break;
#endif
        if (!abcast) {
            LINE_LOAD_MEM(a, x, back);
            LINE_LOAD_MEM(a2, x + 4 * sz, back);
        }
        LINE_LOAD_MEM(e, y, back);
        LINE_LOAD_MEM(e2, y + 4 * sz, back);
#if !IS_F32
        {
            v4i w = LS_B_WILD(e) | LS_B_WILD(e2);
            if (!abcast)
                w |= LS_A_WILD(a) | LS_A_WILD(a2);
            if (V4_ANY(w))
                break;
        }
#endif
        linear_group p;
        v4d s, s2, next;
        linear_group_states(&a, &a2, &c, abcast, &Sv, &p, &e, &e2, &s, &s2, &next, back);
        if (!incl) { /* each output is the state before its element */
            s2 = LINE_SHIFT1(s2, LINE_LAST(s, back), back);
            s = LINE_SHIFT1(s, Sv, back);
        }
        LINE_STORE_MEM(h, s, back);
        LINE_STORE_MEM(h + 4 * sz, s2, back);
        Sv = next;
    }
    *S = Sv[0];
    return i;
}
#define LS_GROUPS_CALL(x, y, h, n, S, incl, back, abcast)                                  \
    ((incl) ? ((back) ? ((abcast) ? KN(linear_groups_)(x, y, h, n, S, 1, 1, 1)             \
                                  : KN(linear_groups_)(x, y, h, n, S, 1, 1, 0))            \
                      : ((abcast) ? KN(linear_groups_)(x, y, h, n, S, 1, 0, 1)             \
                                  : KN(linear_groups_)(x, y, h, n, S, 1, 0, 0)))           \
            : ((back) ? ((abcast) ? KN(linear_groups_)(x, y, h, n, S, 0, 1, 1)             \
                                  : KN(linear_groups_)(x, y, h, n, S, 0, 1, 0))            \
                      : ((abcast) ? KN(linear_groups_)(x, y, h, n, S, 0, 0, 1)             \
                                  : KN(linear_groups_)(x, y, h, n, S, 0, 0, 0))))

static double KN(linear_steps_)(const char *x, int64_t sa, const char *y, char *h, int64_t sz,
                                int64_t cnt, double S, int incl);
/* A line whose operands all run one element per step the same way (a
 * may be broadcast), without log_a: groups straight from the operands,
 * each wild group and the tail as the loop's exact steps; returns the
 * final state. */
static double KN(linear_line_direct_)(const scan_block *b, double S, char *h)
{
    LS_NO_CONTRACT
    const int64_t n = b->n, sa = b->step[0], sz = b->step[1];
    const int incl = b->inclusive, back = sz < 0, abcast = sa == 0;
    const char *x = b->ptr[0], *y = b->ptr[1];
    const int groups = !abcast || linear_factor_tame(LD(x));
    int64_t i = 0;
    for (;;) {
        if (groups) { /* linear_groups_ does nothing with fewer than 8 left */
            const int64_t done = LS_GROUPS_CALL(x, y, h, n - i, &S, incl, back, abcast);
            i += done;
            x += done * sa;
            y += done * sz;
            h += done * sz;
        }
        if (i == n)
            return S;
        /* the tail, or eight elements after a wild group or carry */
        const int64_t cnt = groups && i + 8 <= n ? 8 : n - i;
        S = KN(linear_steps_)(x, sa, y, h, sz, cnt, S, incl);
        i += cnt;
        x += cnt * sa;
        y += cnt * sz;
        h += cnt * sz;
    }
}
#endif


#ifndef SCANAD_LINEAR_ONCE
#define SCANAD_LINEAR_ONCE
/* A piece's map h -> s 2^i h + v keeps its product of factors as a
 * mantissa s in [0.5, 1) (or 0) and an exponent i: over a long piece the
 * product leaves double's range while a large h0 still counts through it. */
SCAN_INLINE double linear_scale(double x, int64_t e)
{
    return ldexp(x, e < -2200 ? -2200 : e > 2200 ? 2200 : (int)e);
}
/* x's mantissa (frexp's), its exponent added to *e */
SCAN_INLINE double linear_mantissa(double x, int64_t *e)
{
    int k;
    const double m = frexp(x, &k);
    *e += k;
    return m;
}
/* the map after acc's one step more: factor a (0 resets), offset b */
SCAN_INLINE void linear_map_step(scan_carry *acc, double a, double b)
{
    acc->v = a == 0.0 ? b : a * acc->v + b;
    acc->s = linear_mantissa(acc->s * linear_mantissa(a, &acc->i), &acc->i);
}
/* later piece after acc: h -> next (acc h); a zero factor resets, as in
 * the scan */
static void linear_combine(scan_carry *acc, const scan_carry *next)
{
    acc->v = next->s == 0.0 ? next->v : linear_scale(next->s * acc->v, next->i) + next->v;
    acc->i += next->i;
    acc->s = linear_mantissa(next->s * acc->s, &acc->i);
}
/* the state a piece starts from: its carry's map applied to h0 */
SCAN_INLINE double linear_carry_in(const scan_carry *c, double h0)
{
    return c->s == 0.0 ? c->v : linear_scale(c->s * h0, c->i) + c->v;
}
#endif

#if LSE_COMPLEX
#define LS_EXP(x) cexp(x)
#else
#define LS_EXP(x) ((A)exp((double)(x)))
#endif

/* amode: 0 a's lanes as b's (runtime strides when !contig), 1 a broadcast
 * across lanes (lane stride 0).  contig: b and h lanes are one element
 * apart (and a's too when amode == 0). */
SCAN_INLINE void KN(linear_panel_)(const scan_block *b, int64_t l0, int64_t w, const int incl,
                                   const int lg, const int amode, const int contig, const int line)
{
    LS_NO_CONTRACT
    const int64_t sz = (int64_t)sizeof(T);
    const char *x = b->ptr[0] + l0 * b->lane[0], *y = b->ptr[1] + l0 * b->lane[1];
    char *h = b->ptr[2] + l0 * b->lane[2];
    const int64_t la = amode == 1 ? 0 : contig ? sz : b->lane[0];
    const int64_t lb = contig ? sz : b->lane[1], lh = contig ? sz : b->lane[2];
    const int64_t head = panel_head_lanes(h, w, sz, contig);
    STATE_ALIGNED(A, S, 0, head);
    for (int64_t l = 0; l < w; l++)
        S[l] = b->ptr[3] != NULL ? LD(b->ptr[3] + (l0 + l) * b->lane[3]) : ZERO;
    for (int64_t r = 0; r < b->n; r++) {
        FOR_LANES(l, head, w) {
            A av = LD(x + l * la);
            if (lg)
                av = LS_EXP(av);
            /* both loaded before the select (branch-free: vectorises) and
             * before h is written (h may be b) */
            const A bv = LD(y + l * lb), p = ADD(MUL(av, S[l]), bv);
            const A next = av == ZERO ? bv : p;
            ST(h + l * lh, incl ? next : S[l]);
            S[l] = next;
        }
        x += b->step[0];
        y += b->step[1];
        h += b->step[2];
    }
    if (b->ptr[4] != NULL && b->last)
        for (int64_t l = 0; l < w; l++)
            ST(b->ptr[4] + (l0 + l) * b->lane[4], S[l]);
}

#define LS_PANEL_CALL(b, l0, w, lg, amode, contig, line)                              \
    do {                                                                           \
        if ((b)->inclusive) KN(linear_panel_)(b, l0, w, 1, lg, amode, contig, line); \
        else KN(linear_panel_)(b, l0, w, 0, lg, amode, contig, line);                \
    } while (0)

SCAN_INLINE void KN(linear_panels_)(const scan_block *b, const int lg)
{
    const int64_t sz = (int64_t)sizeof(T);
    const int bh = b->lane[1] == sz && b->lane[2] == sz;
    for (int64_t l0 = 0; l0 < b->m; l0 += SCAN_PANEL) {
        const int64_t w = b->m - l0 < SCAN_PANEL ? b->m - l0 : SCAN_PANEL;
        if (bh && b->lane[0] == sz)
            LS_PANEL_CALL(b, l0, w, lg, 0, 1, 0);
        else if (bh && b->lane[0] == 0)
            LS_PANEL_CALL(b, l0, w, lg, 1, 1, 0);
        else
            LS_PANEL_CALL(b, l0, w, lg, 0, 0, 0);
    }
}

#if HAS_NARROW
/* A tile in: cnt factors (exp'ed with lg) and offsets widened to double
 * from x, y (sa, sb bytes apart: constants after inlining for the common
 * steps), in one pass that also tells whether the tile is tame (the
 * bounds above; NaN compares false: wild). */
SCAN_INLINE int KN(linear_tile_in_)(double *ta, double *tb, const char *x, const int64_t sa,
                                    const char *y, const int64_t sb, int64_t cnt, const int lg)
{
    int tame = 1;
    /* a constant a is exp'ed once (exp sets errno: the compiler cannot hoist it) */
    const double a0 = sa != 0 ? 0.0 : lg ? exp((double)LD(x)) : (double)LD(x);
    for (int64_t i = 0; i < cnt; i++) {
        double av = sa == 0 ? a0 : LD(x + i * sa);
        const double bv = LD(y + i * sb);
        if (lg && sa != 0)
            av = exp(av);
        ta[i] = av;
        tb[i] = bv;
        const double fa = fabs(av);
        tame &= (fa <= LS_A_HI) & ((fa >= LS_A_LO) | (fa == 0.0)) & (fabs(bv) <= LS_B_HI);
    }
    return tame;
}
SCAN_INLINE int KN(linear_load_)(double *ta, double *tb, const char *x, int64_t sa, const char *y,
                                 int64_t sb, int64_t cnt, const int lg)
{
    const int64_t sz = (int64_t)sizeof(T);
    if (sa == sz && sb == sz)
        return KN(linear_tile_in_)(ta, tb, x, sz, y, sz, cnt, lg);
    if (sa == -sz && sb == -sz)
        return KN(linear_tile_in_)(ta, tb, x, -sz, y, -sz, cnt, lg);
    if (sa == 0 && sb == sz)
        return KN(linear_tile_in_)(ta, tb, x, 0, y, sz, cnt, lg);
    if (sa == 0 && sb == -sz)
        return KN(linear_tile_in_)(ta, tb, x, 0, y, -sz, cnt, lg);
    return KN(linear_tile_in_)(ta, tb, x, sa, y, sb, cnt, lg);
}
SCAN_INLINE void KN(linear_narrow_)(char *p, const int64_t st, const double *src, int64_t cnt)
{
    for (int64_t i = 0; i < cnt; i++)
        ST(p + i * st, src[i]);
}
/* out[0] = first, out[i] = src[i - 1]: the exclusive outputs */
SCAN_INLINE void KN(linear_narrow_excl_)(char *p, const int64_t st, double first, const double *src,
                                         int64_t cnt)
{
    ST(p, first);
    for (int64_t i = 1; i < cnt; i++)
        ST(p + i * st, src[i - 1]);
}

#ifndef SCANAD_LINEAR_TILE_ONCE
#define SCANAD_LINEAR_TILE_ONCE
/* S_i = a_i S_{i-1} + e_i over a tile from S: each group of eight composed
 * when it and the carry are within the bounds, else the loop's eight exact
 * steps, the tail exact; returns the last S.  The decisions and the
 * arithmetic are linear_groups_' on the same values, so a line gives the
 * forward's direct path's bits. */
static double linear_tile_groups(const double *a, const double *e, double *out, int64_t cnt,
                                 double S)
{
    LS_NO_CONTRACT
    int64_t i = 0;
    for (; i + 8 <= cnt; i += 8) {
        v4d x, x2, B, B2;
        V4_LOAD(x, a + i);
        V4_LOAD(x2, a + i + 4);
        V4_LOAD(B, e + i);
        V4_LOAD(B2, e + i + 4);
        const v4i wild = LS_A_WILD(x) | LS_A_WILD(x2) | LS_B_WILD(B) | LS_B_WILD(B2);
        if (fabs(S) <= LS_B_HI && !V4_ANY(wild)) {
            const v4d Sv = V4_SPLAT(S);
            const linear_group none = {.P1 = {0.0}}; /* unused: every factor is loaded */
            linear_group p;
            v4d s, s2, next;
            linear_group_states(&x, &x2, &none, 0, &Sv, &p, &B, &B2, &s, &s2, &next, 0);
            V4_STORE(out + i, s);
            V4_STORE(out + i + 4, s2);
            S = next[0];
            continue;
        }
        for (int64_t j = i; j < i + 8; j++)
            out[j] = S = a[j] == 0.0 ? e[j] : a[j] * S + e[j];
    }
    for (; i < cnt; i++)
        out[i] = S = a[i] == 0.0 ? e[i] : a[i] * S + e[i];
    return S;
}

/* affine_scan_within where the tile is tame, the loop's exact steps after */
static double linear_tile_scan(const double *a, const double *e, double *out, int64_t cnt,
                               double S, const int tame)
{
    LS_NO_CONTRACT
    for (int64_t i = tame ? affine_scan_within(a, e, out, cnt, &S, LS_B_HI) : 0; i < cnt; i++)
        out[i] = S = a[i] == 0.0 ? e[i] : a[i] * S + e[i];
    return S;
}

/* whether cnt factors are 0 or within 2^+-32 and cnt offsets within 2^700 */
static int linear_tile_tame(const double *a, const double *e, int64_t cnt)
{
    int tame = 1;
    for (int64_t i = 0; i < cnt; i++)
        tame &= linear_factor_tame(a[i]) & (fabs(e[i]) <= LS_B_HI);
    return tame;
}
#endif

/* cnt elements st bytes apart widened to double (exp'ed with lg) */
SCAN_INLINE void KN(linear_widen_at_)(double *dst, const char *p, const int64_t st, int64_t cnt,
                                      const int lg)
{
    const double a0 = st != 0 ? 0.0 : lg ? exp((double)LD(p)) : (double)LD(p);
    for (int64_t i = 0; i < cnt; i++)
        dst[i] = st == 0 ? a0 : lg ? exp((double)LD(p + i * st)) : (double)LD(p + i * st);
}
SCAN_INLINE void KN(linear_widen_)(double *dst, const char *p, const int64_t st, int64_t cnt,
                                   const int lg)
{
    const int64_t sz = (int64_t)sizeof(T);
    if (st == sz) KN(linear_widen_at_)(dst, p, sz, cnt, lg);
    else if (st == -sz) KN(linear_widen_at_)(dst, p, -sz, cnt, lg);
    else if (st == 0) KN(linear_widen_at_)(dst, p, 0, cnt, lg);
    else KN(linear_widen_at_)(dst, p, st, cnt, lg);
}
SCAN_INLINE void KN(linear_store_)(char *p, const int64_t st, const int incl, double first,
                                   const double *src, int64_t cnt)
{
    const int64_t sz = (int64_t)sizeof(T);
    if (incl) {
        if (st == sz) KN(linear_narrow_)(p, sz, src, cnt);
        else if (st == -sz) KN(linear_narrow_)(p, -sz, src, cnt);
        else KN(linear_narrow_)(p, st, src, cnt);
    } else {
        if (st == sz) KN(linear_narrow_excl_)(p, sz, first, src, cnt);
        else if (st == -sz) KN(linear_narrow_excl_)(p, -sz, first, src, cnt);
        else KN(linear_narrow_excl_)(p, st, first, src, cnt);
    }
}

/* cnt of the loop's exact steps from S (linear_line_direct_'s wild
 * groups and tails), without contraction; returns the state. */
static double KN(linear_steps_)(const char *x, const int64_t sa, const char *y, char *h,
                                const int64_t sz, const int64_t cnt, double S, const int incl)
{
    LS_NO_CONTRACT
    for (int64_t i = 0; i < cnt; i++, x += sa, y += sz, h += sz) {
        const double av = LD(x), bv = LD(y);
        const double next = av == 0.0 ? bv : av * S + bv;
        ST(h, incl ? next : S);
        S = next;
    }
    return S;
}

#ifndef SCANAD_LINEAR_PRODUCT_ONCE
#define SCANAD_LINEAR_PRODUCT_ONCE
/* x = m 2^k per lane as linear_mantissa gives it, k added to *e; x must be
 * normal or 0 (a product of at most 16 factors within 2^+-32 from one of
 * [0.5, 1) is) */
SCAN_INLINE void linear_mantissa4(v4d *x, v4i *e)
{
    const v4i bits = (v4i)*x, field = (bits >> 52) & V4I_SPLAT(0x7ff);
    const v4i nonzero = field != V4I_SPLAT(0);
    *e += (field - V4I_SPLAT(1022)) & nonzero;
    *x = (v4d)((bits & V4I_SPLAT(~(0x7ffLL << 52))) | (V4I_SPLAT(1022LL << 52) & nonzero));
}
/* *p where a is not 0, b where it is */
SCAN_INLINE void linear_reset4(const v4d *a, const v4d *b, v4d *p)
{
    const v4i zero = (v4i)(*a == V4_SPLAT(0.0));
    *p = (v4d)(((v4i)*b & zero) | ((v4i)*p & ~zero));
}
/* the eight running products of a map (lanes 0-3 in P, 4-7 in P2) times
 * the factors of a tile, each lane kept as a mantissa and an exponent */
static void linear_tile_product(const double *ta, const int64_t cnt, const int tame, v4d *P,
                                v4d *P2, v4i *e, v4i *e2)
{
    int64_t i = 0;
    if (tame) /* two groups of eight at a time: normal between renormalisations */
        for (; i + 16 <= cnt; i += 16) {
            v4d x, x2, y, y2;
            V4_LOAD(x, ta + i);
            V4_LOAD(x2, ta + i + 4);
            V4_LOAD(y, ta + i + 8);
            V4_LOAD(y2, ta + i + 12);
            *P = *P * x * y;
            *P2 = *P2 * x2 * y2;
            linear_mantissa4(P, e);
            linear_mantissa4(P2, e2);
        }
    for (; i < cnt; i++) {
        const int k = (int)(i & 3);
        int64_t ek = 0;
        v4d *p = i & 4 ? P2 : P;
        (*p)[k] = linear_mantissa((*p)[k] * linear_mantissa(ta[i], &ek), &ek);
        if (i & 4)
            (*e2)[k] += ek;
        else
            (*e)[k] += ek;
    }
}
/* the map of eight stretches, lanes 0-3 in (H, P, e), 4-7 in (H2, P2,
 * e2), composed in order into *map */
static void linear_lanes_map(const v4d *H, const v4d *H2, const v4d *P, const v4d *P2,
                             const v4i *e, const v4i *e2, scan_carry *map)
{
    *map = (scan_carry){.v = (*H)[0], .s = (*P)[0], .i = (*e)[0]};
    for (int k = 1; k < 8; k++) {
        const int j = k & 3;
        const scan_carry next = k < 4 ? (scan_carry){.v = (*H)[j], .s = (*P)[j], .i = (*e)[j]}
                                      : (scan_carry){.v = (*H2)[j], .s = (*P2)[j], .i = (*e2)[j]};
        linear_combine(map, &next);
    }
}
#endif

/* One line from state S through tiles; stores h unless h is NULL (the
 * reduce); returns the final state.  With map (the reduce) also the
 * product of the factors into map->s and map->i, in eight running
 * products (one chain would cost a multiply's latency per element). */
static double KN(linear_line_)(const scan_block *b, const int lg, double S, char *h,
                               scan_carry *map)
{
    _Alignas(64) double ta[LS_TILE], tb[LS_TILE], th[LS_TILE];
    const int64_t sz = (int64_t)sizeof(T), sh = b->step[2];
    const char *x = b->ptr[0], *y = b->ptr[1];
    if (map == NULL && h != NULL && !lg && (sh == sz || sh == -sz) && b->step[1] == sh &&
        (b->step[0] == sh || b->step[0] == 0))
        return KN(linear_line_direct_)(b, S, h);
    v4d P = V4_SPLAT(1.0), P2 = P;
    v4i e = V4I_SPLAT(0), e2 = e;
    for (int64_t i0 = 0; i0 < b->n; i0 += LS_TILE) {
        const int64_t cnt = b->n - i0 < LS_TILE ? b->n - i0 : LS_TILE;
        const int tame = lg ? KN(linear_load_)(ta, tb, x, b->step[0], y, b->step[1], cnt, 1)
                            : KN(linear_load_)(ta, tb, x, b->step[0], y, b->step[1], cnt, 0);
        x += cnt * b->step[0];
        y += cnt * b->step[1];
        if (map != NULL)
            linear_tile_product(ta, cnt, tame, &P, &P2, &e, &e2);
        const double before = S;
        S = linear_tile_scan(ta, tb, th, cnt, S, tame);
        if (h != NULL) {
            KN(linear_store_)(h, sh, b->inclusive, before, th, cnt);
            h += cnt * sh;
        }
    }
    if (map != NULL) { /* the product's lanes as maps with no offset */
        const v4d none = V4_SPLAT(0.0);
        linear_lanes_map(&none, &none, &P, &P2, &e, &e2, map);
        map->v = S;
    }
    return S;
}

/* The map of a piece in linear_line_direct_'s layouts (sb one element,
 * sa sb or 0): its eight stretches walked side by side, one per lane (eight
 * chains of the loop's steps instead of one), composed in order, then the
 * tail.  0 (and the tiles take the piece) when a factor is out of 2^+-32
 * but for 0. */
SCAN_INLINE int KN(linear_reduce_lanes_)(const scan_block *b, scan_carry *map, const int64_t sb,
                                         const int abcast)
{
    LS_NO_CONTRACT
    const int64_t n = b->n, sa = abcast ? 0 : sb;
    /* stretches 9 cache lines apart modulo 4 KiB: a power-of-two length
     * would put all sixteen streams in the same cache sets */
    const int64_t esz = (int64_t)sizeof(T), skew = 576;
    int64_t len = n / 8;
    if (len >= 4096 / esz)
        len -= ((len * esz) % 4096 - skew + 4096) % 4096 / esz;
    const int64_t oa = len * sa, ob = len * sb;
    const char *x = b->ptr[0], *y = b->ptr[1];
    v4d H = V4_SPLAT(0.0), H2 = H, P = V4_SPLAT(1.0), P2 = P;
    v4i e = V4I_SPLAT(0), e2 = e, wild = e;
    for (int64_t i0 = 0; i0 < len; i0 += 16) {
        const int64_t stop = len - i0 < 16 ? len : i0 + 16;
        for (int64_t i = i0; i < stop; i++, x += sa, y += sb) {
            const v4d a = {LD(x), LD(x + oa), LD(x + 2 * oa), LD(x + 3 * oa)};
            const v4d a2 = {LD(x + 4 * oa), LD(x + 5 * oa), LD(x + 6 * oa), LD(x + 7 * oa)};
            const v4d v = {LD(y), LD(y + ob), LD(y + 2 * ob), LD(y + 3 * ob)};
            const v4d v2 = {LD(y + 4 * ob), LD(y + 5 * ob), LD(y + 6 * ob), LD(y + 7 * ob)};
            wild |= LS_A_WILD(a) | LS_A_WILD(a2);
            H = a * H + v;
            H2 = a2 * H2 + v2;
            linear_reset4(&a, &v, &H);
            linear_reset4(&a2, &v2, &H2);
            P *= a;
            P2 *= a2;
        }
        if (V4_ANY(wild))
            return 0;
        linear_mantissa4(&P, &e);
        linear_mantissa4(&P2, &e2);
    }
    linear_lanes_map(&H, &H2, &P, &P2, &e, &e2, map);
    x = b->ptr[0] + 8 * oa;
    y = b->ptr[1] + 8 * ob;
    for (int64_t i = 8 * len; i < n; i++, x += sa, y += sb)
        linear_map_step(map, LD(x), LD(y));
    return 1;
}

/* The map of one piece; refuses (0) when it is not finite: the line then
 * runs on one thread. */
SCAN_INLINE int KN(linear_reduce_)(const scan_block *b, scan_carry *map, const int lg)
{
    const int64_t sz = (int64_t)sizeof(T), sa = b->step[0], sb = b->step[1];
    const int lanes = !lg && (sa == sb || sa == 0) &&
                      (sb == sz   ? sa ? KN(linear_reduce_lanes_)(b, map, sz, 0)
                                       : KN(linear_reduce_lanes_)(b, map, sz, 1)
                       : sb == -sz ? sa ? KN(linear_reduce_lanes_)(b, map, -sz, 0)
                                        : KN(linear_reduce_lanes_)(b, map, -sz, 1)
                                   : 0);
    if (!lanes)
        KN(linear_line_)(b, lg, 0.0, NULL, map);
    return isfinite(map->v) && isfinite(map->s);
}
static int KN(linear_reduce0_)(const scan_block *b, scan_carry *t) { return KN(linear_reduce_)(b, t, 0); }
static int KN(linear_reduce1_)(const scan_block *b, scan_carry *t) { return KN(linear_reduce_)(b, t, 1); }
#endif

SCAN_INLINE void KN(linear_fwd_)(const scan_block *b, const int lg)
{
    if (b->n <= 0)
        return;
    if (b->m > 1) {
        KN(linear_panels_)(b, lg);
        return;
    }
#if HAS_NARROW
    {
        double S = b->ptr[3] != NULL ? LD(b->ptr[3]) : 0.0;
        if (b->carry != NULL)
            S = linear_carry_in(b->carry, S);
        S = KN(linear_line_)(b, lg, S, b->ptr[2], NULL);
        if (b->ptr[4] != NULL && b->last)
            ST(b->ptr[4], S);
        return;
    }
#else
    LS_PANEL_CALL(b, 0, 1, lg, 0, 0, 1);
#endif
}
static void KN(linear_fwd0_)(const scan_block *b) { KN(linear_fwd_)(b, 0); }
static void KN(linear_fwd1_)(const scan_block *b) { KN(linear_fwd_)(b, 1); }

/* ---- derivatives (docs/derivatives.md, "linear_scan") ----
 * Both walk panels of lanes, each lane the sequential recurrence; a single
 * float32/64 line has its own kernel above (the JVP's groups or tiles, the
 * VJP's tiles from the end), others the panel with w = 1.  amode and
 * contig as for the forward panel; lg: a holds log-decays, so its tangent
 * is a's relative one. */
#define LS_LANE(k, amode_k) ((amode_k) ? 0 : contig ? sz : b->lane[k])

/* JVP, operands: 0 a, 1 b, 2 a_dot (absent: zero), 3 b_dot, 4 h, 5 h_dot,
 * 6 h0, 7 h0_dot, 8 h_final, 9 h_dot_final (6-9 step 0, may be absent).
 * h_dot_t = a_t h_dot_{t-1} + (a_dot_t h_{t-1} + b_dot_t): the tangent is
 * the same recurrence with that source, and a zero a_t resets it to the
 * source as the state is reset to b_t. */
SCAN_INLINE void KN(linear_jvp_panel_)(const scan_block *b, int64_t l0, int64_t w, const int incl,
                                       const int lg, const int amode, const int contig,
                                       const int line)
{
    LS_NO_CONTRACT
    const int64_t sz = (int64_t)sizeof(T);
    const char *x = b->ptr[0] + l0 * b->lane[0], *y = b->ptr[1] + l0 * b->lane[1];
    const char *xd = b->ptr[2] != NULL ? b->ptr[2] + l0 * b->lane[2] : NULL;
    const char *yd = b->ptr[3] + l0 * b->lane[3];
    char *h = b->ptr[4] + l0 * b->lane[4], *hd = b->ptr[5] + l0 * b->lane[5];
    const int64_t la = LS_LANE(0, amode == 1), lb = LS_LANE(1, 0), lad = LS_LANE(2, amode == 1);
    const int64_t lbd = LS_LANE(3, 0), lh = LS_LANE(4, 0), lhd = LS_LANE(5, 0);
    const int has_ad = xd != NULL;
    STATE(A, S, 0);
    STATE(A, D, 1);
    for (int64_t l = 0; l < w; l++) {
        S[l] = b->ptr[6] != NULL ? LD(b->ptr[6] + (l0 + l) * b->lane[6]) : ZERO;
        D[l] = b->ptr[7] != NULL ? LD(b->ptr[7] + (l0 + l) * b->lane[7]) : ZERO;
    }
    for (int64_t r = 0; r < b->n; r++) {
        for (int64_t l = 0; l < w; l++) {
            A av = LD(x + l * la), adv = has_ad ? LD(xd + l * lad) : ZERO;
            if (lg) {
                av = LS_EXP(av);
                adv = MUL(adv, av);
            }
            const A bv = LD(y + l * lb), bdv = LD(yd + l * lbd);
            /* an absent a_dot adds nothing, not 0 * h (h may be inf) */
            const A src = has_ad ? ADD(MUL(adv, S[l]), bdv) : bdv;
            const A next = av == ZERO ? bv : ADD(MUL(av, S[l]), bv);
            const A nextd = av == ZERO ? src : ADD(MUL(av, D[l]), src);
            ST(h + l * lh, incl ? next : S[l]);
            ST(hd + l * lhd, incl ? nextd : D[l]);
            S[l] = next;
            D[l] = nextd;
        }
        x += b->step[0];
        y += b->step[1];
        if (has_ad)
            xd += b->step[2];
        yd += b->step[3];
        h += b->step[4];
        hd += b->step[5];
    }
    if (b->last)
        for (int64_t l = 0; l < w; l++) {
            if (b->ptr[8] != NULL)
                ST(b->ptr[8] + (l0 + l) * b->lane[8], S[l]);
            if (b->ptr[9] != NULL)
                ST(b->ptr[9] + (l0 + l) * b->lane[9], D[l]);
        }
}

#if HAS_NARROW
/* linear_groups_ with the tangent h_dot_t = a_t h_dot_{t-1} + (a_dot_t
 * h_{t-1} + b_dot_t) in the same pass: the group's products of a serve
 * both recurrences.  h takes linear_groups_' decisions and arithmetic (the
 * forward's bits); a group whose tangent source or carry *D is out of
 * bounds takes eight exact tangent steps from the composed h.  a_dot (xd,
 * NULL: absent) runs as a, b_dot and h_dot as b. */
SCAN_INLINE int64_t KN(linear_jvp_groups_)(const char *x, const char *xd, const char *y,
                                           const char *yd, char *h, char *hd, const int64_t n,
                                           double *S, double *D, const int incl, const int back,
                                           const int abcast)
{
    LS_NO_CONTRACT
    const int64_t sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T), sa = abcast ? 0 : sz;
    if (n < 8)
        return 0;
    v4d Sv = V4_SPLAT(*S);
    double Dd = *D;
    const v4d ca = V4_SPLAT(abcast ? (double)LD(x) : 0.0);
    linear_group c;
    linear_group_of_constant(&ca, &c, back);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8, x += 8 * sa, y += 8 * sz, yd += 8 * sz, h += 8 * sz, hd += 8 * sz) {
        if (!(fabs(Sv[0]) <= LS_B_HI))
            break;
        const double D_before = Dd;
        LINE_PREFETCH(y, sz);
        LINE_PREFETCH(yd, sz);
        v4d a = ca, a2 = ca, e, e2, f, f2;
        if (!abcast) {
            LINE_PREFETCH(x, sz);
            LINE_LOAD_MEM(a, x, back);
            LINE_LOAD_MEM(a2, x + 4 * sz, back);
        }
        LINE_LOAD_MEM(e, y, back);
        LINE_LOAD_MEM(e2, y + 4 * sz, back);
        {
            v4i w = LS_B_WILD(e) | LS_B_WILD(e2);
            if (!abcast)
                w |= LS_A_WILD(a) | LS_A_WILD(a2);
            if (V4_ANY(w))
                break;
        }
        LINE_LOAD_MEM(f, yd, back);
        LINE_LOAD_MEM(f2, yd + 4 * sz, back);
        linear_group p;
        v4d s, s2, next;
        linear_group_states(&a, &a2, &c, abcast, &Sv, &p, &e, &e2, &s, &s2, &next, back);
        if (xd != NULL) { /* the source a_dot h_{t-1} + b_dot */
            v4d ad = V4_SPLAT(abcast ? (double)LD(xd) : 0.0), ad2 = ad;
            if (!abcast) {
                LINE_LOAD_MEM(ad, xd + i * sa, back);
                LINE_LOAD_MEM(ad2, xd + i * sa + 4 * sa, back);
            }
            f = ad * LINE_SHIFT1(s, Sv, back) + f;
            f2 = ad2 * LINE_SHIFT1(s2, LINE_LAST(s, back), back) + f2;
        }
        v4d d, d2;
        if (fabs(Dd) <= LS_B_HI && !V4_ANY(LS_B_WILD(f) | LS_B_WILD(f2))) {
            affine_group_offsets(&a, &a2, &p.P1, &p.Q1, &p.Q2, &f, &f2, back);
            d = p.P2 * Dd + f;
            d2 = p.C2 * Dd + f2;
            Dd = d2[LINE_LANE(3, back)];
        } else {
            for (int k = 0; k < 4; k++) {
                const int j = LINE_LANE(k, back);
                d[j] = Dd = a[j] == 0.0 ? f[j] : a[j] * Dd + f[j];
            }
            for (int k = 0; k < 4; k++) {
                const int j = LINE_LANE(k, back);
                d2[j] = Dd = a2[j] == 0.0 ? f2[j] : a2[j] * Dd + f2[j];
            }
        }
        if (!incl) {
            d2 = LINE_SHIFT1(d2, LINE_LAST(d, back), back);
            d = LINE_SHIFT1(d, V4_SPLAT(D_before), back);
            s2 = LINE_SHIFT1(s2, LINE_LAST(s, back), back);
            s = LINE_SHIFT1(s, Sv, back);
        }
        LINE_STORE_MEM(h, s, back);
        LINE_STORE_MEM(h + 4 * sz, s2, back);
        LINE_STORE_MEM(hd, d, back);
        LINE_STORE_MEM(hd + 4 * sz, d2, back);
        Sv = next;
    }
    *S = Sv[0];
    *D = Dd;
    return i;
}

/* A line whose operands all run one element per step the same way (a and
 * a_dot may be broadcast together), without log_a: the JVP's groups
 * straight from the operands, each wild group and the tail as the loop's
 * exact steps (linear_line_direct_'s walk, with the tangent). */
static void KN(linear_jvp_line_direct_)(const scan_block *b, double *S, double *D)
{
    LS_NO_CONTRACT
    const int64_t n = b->n, sa = b->step[0], sz = b->step[1];
    const int incl = b->inclusive, back = sz < 0, abcast = sa == 0;
    const char *x = b->ptr[0], *xd = b->ptr[2], *y = b->ptr[1], *yd = b->ptr[3];
    char *h = b->ptr[4], *hd = b->ptr[5];
    const int groups = !abcast || linear_factor_tame(LD(x));
    int64_t i = 0;
    for (;;) {
        if (groups) {
            int64_t done;
            if (incl)
                done = back ? (abcast ? KN(linear_jvp_groups_)(x, xd, y, yd, h, hd, n - i, S, D, 1, 1, 1)
                                      : KN(linear_jvp_groups_)(x, xd, y, yd, h, hd, n - i, S, D, 1, 1, 0))
                            : (abcast ? KN(linear_jvp_groups_)(x, xd, y, yd, h, hd, n - i, S, D, 1, 0, 1)
                                      : KN(linear_jvp_groups_)(x, xd, y, yd, h, hd, n - i, S, D, 1, 0, 0));
            else
                done = back ? (abcast ? KN(linear_jvp_groups_)(x, xd, y, yd, h, hd, n - i, S, D, 0, 1, 1)
                                      : KN(linear_jvp_groups_)(x, xd, y, yd, h, hd, n - i, S, D, 0, 1, 0))
                            : (abcast ? KN(linear_jvp_groups_)(x, xd, y, yd, h, hd, n - i, S, D, 0, 0, 1)
                                      : KN(linear_jvp_groups_)(x, xd, y, yd, h, hd, n - i, S, D, 0, 0, 0));
            i += done;
            x += done * sa;
            if (xd != NULL)
                xd += done * sa;
            y += done * sz;
            yd += done * sz;
            h += done * sz;
            hd += done * sz;
        }
        if (i == n)
            return;
        /* the tail, or eight elements after a wild group or carry */
        const int64_t cnt = groups && i + 8 <= n ? 8 : n - i;
        for (int64_t k = 0; k < cnt; k++, x += sa, y += sz, yd += sz, h += sz, hd += sz) {
            const double av = LD(x), bv = LD(y);
            double src = LD(yd);
            if (xd != NULL) {
                src = LD(xd) * *S + src;
                xd += sa;
            }
            const double next = av == 0.0 ? bv : av * *S + bv;
            const double nextd = av == 0.0 ? src : av * *D + src;
            ST(h, incl ? next : *S);
            ST(hd, incl ? nextd : *D);
            *S = next;
            *D = nextd;
        }
        i += cnt;
    }
}

/* A float32/64 line, tile by tile: h as the forward's line kernel computes
 * it (the same groups on a direct line, the same tiles otherwise: the
 * forward's bits), then in the same tile the tangent, the same recurrence
 * with source a_dot h_{t-1} + b_dot, composed as the forward's tiles. */
static void KN(linear_jvp_line_)(const scan_block *b, const int lg)
{
    LS_NO_CONTRACT
    _Alignas(64) double ta[LS_TILE], tb[LS_TILE], th[LS_TILE], ts[LS_TILE], td[LS_TILE];
    const int64_t sz = (int64_t)sizeof(T), sh = b->step[4];
    const int direct = !lg && (sh == sz || sh == -sz) && b->step[1] == sh &&
                       (b->step[0] == sh || b->step[0] == 0);
    const int incl = b->inclusive, has_ad = b->ptr[2] != NULL;
    const char *x = b->ptr[0], *y = b->ptr[1], *xd = b->ptr[2], *yd = b->ptr[3];
    char *h = b->ptr[4], *hd = b->ptr[5];
    double S = b->ptr[6] != NULL ? LD(b->ptr[6]) : 0.0;
    double D = b->ptr[7] != NULL ? LD(b->ptr[7]) : 0.0;
    if (direct && b->step[3] == sh && b->step[5] == sh && (!has_ad || b->step[2] == b->step[0])) {
        KN(linear_jvp_line_direct_)(b, &S, &D);
        goto finals;
    }
    for (int64_t i0 = 0; i0 < b->n; i0 += LS_TILE) {
        const int64_t cnt = b->n - i0 < LS_TILE ? b->n - i0 : LS_TILE;
        const int tame = lg ? KN(linear_load_)(ta, tb, x, b->step[0], y, b->step[1], cnt, 1)
                            : KN(linear_load_)(ta, tb, x, b->step[0], y, b->step[1], cnt, 0);
        const double before = S, before_d = D;
        S = direct ? linear_tile_groups(ta, tb, th, cnt, S) : linear_tile_scan(ta, tb, th, cnt, S, tame);
        KN(linear_store_)(h, sh, incl, before, th, cnt);
        KN(linear_widen_)(ts, yd, b->step[3], cnt, 0);
        if (has_ad) {
            KN(linear_widen_)(td, xd, b->step[2], cnt, 0);
            for (int64_t i = 0; i < cnt; i++) {
                const double adv = lg ? td[i] * ta[i] : td[i];
                ts[i] = adv * (i > 0 ? th[i - 1] : before) + ts[i];
            }
            xd += cnt * b->step[2];
        }
        D = linear_tile_scan(ta, ts, td, cnt, D, tame && linear_tile_tame(ta, ts, cnt));
        KN(linear_store_)(hd, b->step[5], incl, before_d, td, cnt);
        x += cnt * b->step[0];
        y += cnt * b->step[1];
        yd += cnt * b->step[3];
        h += cnt * sh;
        hd += cnt * b->step[5];
    }
finals:
    if (b->last) {
        if (b->ptr[8] != NULL)
            ST(b->ptr[8], S);
        if (b->ptr[9] != NULL)
            ST(b->ptr[9], D);
    }
}

/* The VJP of a float32/64 line (operands as linear_vjp_panel_), tile by
 * tile from its last element.  lam, the cotangent of the state after step
 * t, is itself a forward recurrence in the walk's order: inclusive,
 * lam_t = a_{t+1} lam_{t+1} + g_t (lam past the end: g_final, factor 1);
 * exclusive, s_t = a_t s_{t+1} + g_t with lam_t = s_{t+1}.  So the tiles
 * compose it as the forward's do; a_bar_t = h_{t-1} lam_t (times a_t with
 * lg), summed in eight running sums when a is constant along the line. */
static void KN(linear_vjp_line_)(const scan_block *b, const int lg)
{
    LS_NO_CONTRACT
    /* ta[k + 1] = a at the k-th element walked (ta[0]: the one walked before);
     * ta + 1 starts a cache line, as the others do, so that no vector store
     * of the widening loops straddles two lines */
    _Alignas(64) double ta_[LS_TILE + 8], tg[LS_TILE], tl[LS_TILE], tp[LS_TILE];
    double *const ta = ta_ + 7;
    const int64_t n = b->n;
    const int incl = b->inclusive;
    const int64_t s0 = b->step[0], s1 = b->step[1], s2 = b->step[2], s3 = b->step[3],
                  s4 = b->step[4];
    const int summed = s3 == 0;
    double L = b->ptr[6] != NULL && b->last ? LD(b->ptr[6]) : 0.0, a_next = 1.0;
    double sums[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    for (int64_t e = n; e > 0;) {
        const int64_t cnt = e < LS_TILE ? e : LS_TILE, t0 = e - 1; /* t0: walked first */
        ta[0] = a_next;
        if (lg) KN(linear_widen_)(ta + 1, b->ptr[0] + t0 * s0, -s0, cnt, 1);
        else KN(linear_widen_)(ta + 1, b->ptr[0] + t0 * s0, -s0, cnt, 0);
        KN(linear_widen_)(tg, b->ptr[2] + t0 * s2, -s2, cnt, 0);
        const double *f = incl ? ta : ta + 1;
        const double before = L;
        L = linear_tile_scan(f, tg, tl, cnt, L, linear_tile_tame(f, tg, cnt));
        const double *lam = tl;
        if (!incl) { /* lam_t is the state before step t */
            memmove(tl + 1, tl, (size_t)(cnt - 1) * sizeof(double));
            tl[0] = before;
        }
        KN(linear_store_)(b->ptr[4] + t0 * s4, -s4, 1, 0.0, lam, cnt);
        /* h_{t-1}: y's element before t (inclusive; h0 or 0 before the
         * first), y_t itself (exclusive) */
        if (!incl)
            KN(linear_widen_)(tp, b->ptr[1] + t0 * s1, -s1, cnt, 0);
        else if (e - cnt > 0)
            KN(linear_widen_)(tp, b->ptr[1] + (t0 - 1) * s1, -s1, cnt, 0);
        else {
            if (cnt > 1)
                KN(linear_widen_)(tp, b->ptr[1] + (t0 - 1) * s1, -s1, cnt - 1, 0);
            tp[cnt - 1] = b->ptr[5] != NULL ? LD(b->ptr[5]) : 0.0;
        }
        for (int64_t k = 0; k < cnt; k++) {
            tp[k] = tp[k] * lam[k];
            if (lg)
                tp[k] = ta[k + 1] * tp[k];
        }
        if (summed) {
            int64_t k = 0;
            for (; k + 8 <= cnt; k += 8)
                for (int j = 0; j < 8; j++)
                    sums[j] += tp[k + j];
            for (; k < cnt; k++)
                sums[0] += tp[k];
        } else
            KN(linear_store_)(b->ptr[3] + t0 * s3, -s3, 1, 0.0, tp, cnt);
        a_next = ta[cnt];
        e -= cnt;
    }
    if (incl && n > 0) /* past the first step: a_0 lam_0, cut by a zero a_0 */
        L = a_next == 0.0 ? 0.0 : a_next * L;
    if (b->ptr[7] != NULL)
        ST(b->ptr[7], LD(b->ptr[7]) + L);
    if (summed) {
        double sum = 0.0;
        for (int j = 0; j < 8; j++)
            sum += sums[j];
        ST(b->ptr[3], LD(b->ptr[3]) + sum);
    }
}
#endif

/* One row of the VJP walk, all lanes: lambda (the cotangent of the state
 * h_t) from the carry L, b_bar = lambda, a_bar = conj(h_{t-1}) lambda (with
 * lg times conj(a_t)), and the carry to the row before: conj(a_t) lambda,
 * plus g_t when the outputs are exclusive (output t is h_{t-1}).  A zero
 * a_t cuts the carry, as it resets the state. */
SCAN_INLINE void KN(linear_vjp_row_)(A *AB, A *L, int64_t w, const char *x, int64_t la,
                                     const char *hp, int64_t lhp, const char *g, int64_t lg_,
                                     char *ab, int64_t lab, char *bb, int64_t lbb, const int incl,
                                     const int lg)
{
    LS_NO_CONTRACT
    for (int64_t l = 0; l < w; l++) {
        A av = LD(x + l * la);
        if (lg)
            av = LS_EXP(av);
        const A gv = LD(g + l * lg_), hv = LD(hp + l * lhp);
        const A lam = incl ? ADD(gv, L[l]) : L[l];
        A abar = CONJMUL(hv, lam);
        if (lg)
            abar = CONJMUL(av, abar);
        ST(bb + l * lbb, lam);
        if (AB != NULL)
            AB[l] = ADD(AB[l], abar);
        else
            ST(ab + l * lab, abar);
        const A carry = av == ZERO ? ZERO : CONJMUL(av, lam);
        L[l] = incl ? carry : ADD(carry, gv);
    }
}

/* VJP, operands: 0 a, 1 y (the forward's output, same flags), 2 g, 3 a_bar,
 * 4 b_bar, 5 h0, 6 g_final, 7 h0_bar (5-7 step 0, may be absent).  Walks
 * each block from its last row; h_{t-1} is y's row before (inclusive) or
 * y's row itself (exclusive), and h0 on the first row.  h0_bar adds the
 * carry left at the first row: every chunk of a segment restarts from h0,
 * and one work item runs all the chunks of its lanes, so the sum is safe. */
SCAN_INLINE void KN(linear_vjp_panel_)(const scan_block *b, int64_t l0, int64_t w, const int incl,
                                       const int lg, const int amode, const int contig,
                                       const int line)
{
    const int64_t sz = (int64_t)sizeof(T);
    const int64_t la = LS_LANE(0, amode == 1), ly = LS_LANE(1, 0), lgv = LS_LANE(2, 0);
    const int64_t lab = LS_LANE(3, 0), lbb = LS_LANE(4, 0);
    const int64_t last = b->n - 1;
    const char *x = b->ptr[0] + l0 * b->lane[0] + last * b->step[0];
    const char *y = b->ptr[1] + l0 * b->lane[1] + last * b->step[1];
    const char *g = b->ptr[2] + l0 * b->lane[2] + last * b->step[2];
    char *ab = b->ptr[3] + l0 * b->lane[3] + last * b->step[3];
    char *bb = b->ptr[4] + l0 * b->lane[4] + last * b->step[4];
    T zero;
    memset(&zero, 0, sizeof(zero));
    STATE(A, L, 0);
    /* a_bar with step 0 (a constant along the axis): summed per lane */
    STATE(A, ABS, 1);
    A *const AB = b->step[3] == 0 ? ABS : NULL;
    for (int64_t l = 0; l < w; l++) {
        L[l] = b->ptr[6] != NULL && b->last ? LD(b->ptr[6] + (l0 + l) * b->lane[6]) : ZERO;
        ABS[l] = ZERO;
    }
    for (int64_t r = last; r >= 0; r--) {
        const char *hp = y;
        int64_t lhp = ly;
        if (incl && r > 0)
            hp = y - b->step[1];
        else if (incl && b->ptr[5] != NULL) {
            hp = b->ptr[5] + l0 * b->lane[5];
            lhp = b->lane[5];
        } else if (incl) {
            hp = (const char *)&zero;
            lhp = 0;
        }
        if (incl && r > 0)
            KN(linear_vjp_row_)(AB, L, w, x, la, hp, ly, g, lgv, ab, lab, bb, lbb, 1, lg);
        else if (incl)
            KN(linear_vjp_row_)(AB, L, w, x, la, hp, lhp, g, lgv, ab, lab, bb, lbb, 1, lg);
        else
            KN(linear_vjp_row_)(AB, L, w, x, la, hp, ly, g, lgv, ab, lab, bb, lbb, 0, lg);
        x -= b->step[0];
        y -= b->step[1];
        g -= b->step[2];
        ab -= b->step[3];
        bb -= b->step[4];
    }
    if (b->ptr[7] != NULL)
        for (int64_t l = 0; l < w; l++) {
            char *p = b->ptr[7] + (l0 + l) * b->lane[7];
            ST(p, ADD(LD(p), L[l]));
        }
    if (AB != NULL)
        for (int64_t l = 0; l < w; l++) {
            char *p = b->ptr[3] + (l0 + l) * b->lane[3];
            ST(p, ADD(LD(p), AB[l]));
        }
}

/* the lanes of a block by panels; c: a contiguous row layout of every
 * operand the rows walk (nrow of them; a's and a_dot's lane may be 0) */
#define LS_DERIV_PANELS(panel, nrow, broadcast_ok)                                         \
    SCAN_INLINE void KN(panel##s_)(const scan_block *b, const int lg)                      \
    {                                                                                      \
        const int64_t sz = (int64_t)sizeof(T);                                             \
        int rows = 1, amode = 1;                                                           \
        for (int k = 1; k < (nrow); k++)                                                   \
            rows &= b->ptr[k] == NULL || b->lane[k] == sz ||                              \
                    (k == 2 && (broadcast_ok) && b->lane[k] == b->lane[0]) ||              \
                    (k == 3 && !(broadcast_ok) && b->step[k] == 0); /* a_bar summed */     \
        amode = b->lane[0] == 0 && (!(broadcast_ok) || b->ptr[2] == NULL || b->lane[2] == 0); \
        if (b->m == 1) {                                                                   \
            if (!LS_LINE_OF(panel, b, lg))                                                 \
                LS_DERIV_CALL(panel, b, 0, 1, lg, 0, 0, 1);                                \
            return;                                                                        \
        }                                                                                  \
        for (int64_t l0 = 0; l0 < b->m; l0 += SCAN_PANEL) {                                \
            const int64_t w = b->m - l0 < SCAN_PANEL ? b->m - l0 : SCAN_PANEL;            \
            if (rows && b->lane[0] == sz)                                                  \
                LS_DERIV_CALL(panel, b, l0, w, lg, 0, 1, 0);                               \
            else if (rows && amode)                                                        \
                LS_DERIV_CALL(panel, b, l0, w, lg, 1, 1, 0);                               \
            else                                                                           \
                LS_DERIV_CALL(panel, b, l0, w, lg, 0, 0, 0);                               \
        }                                                                                  \
    }
#define LS_DERIV_CALL(panel, b, l0, w, lg, amode, contig, line)                             \
    do {                                                                                   \
        if ((b)->inclusive) KN(panel)(b, l0, w, 1, lg, amode, contig, line);               \
        else KN(panel)(b, l0, w, 0, lg, amode, contig, line);                              \
    } while (0)
/* whether a line kernel took the single line */
#if HAS_NARROW
#define LS_LINE_OF(panel, b, lg) (LS_LINE_##panel(b, lg))
#define LS_LINE_linear_jvp_panel_(b, lg) (KN(linear_jvp_line_)(b, lg), 1)
#define LS_LINE_linear_vjp_panel_(b, lg) (KN(linear_vjp_line_)(b, lg), 1)
#else
#define LS_LINE_OF(panel, b, lg) ((void)(b), (void)(lg), 0)
#endif
LS_DERIV_PANELS(linear_jvp_panel_, 6, 1)
LS_DERIV_PANELS(linear_vjp_panel_, 5, 0)
#undef LS_LINE_OF
#undef LS_LINE_linear_jvp_panel_
#undef LS_LINE_linear_vjp_panel_
#undef LS_DERIV_PANELS
#undef LS_DERIV_CALL
#undef LS_LANE

static void KN(linear_jvp0_)(const scan_block *b) { if (b->n > 0) KN(linear_jvp_panel_s_)(b, 0); }
static void KN(linear_jvp1_)(const scan_block *b) { if (b->n > 0) KN(linear_jvp_panel_s_)(b, 1); }
static void KN(linear_vjp0_)(const scan_block *b) { if (b->n > 0) KN(linear_vjp_panel_s_)(b, 0); }
static void KN(linear_vjp1_)(const scan_block *b) { if (b->n > 0) KN(linear_vjp_panel_s_)(b, 1); }

#undef LS_EXP
#undef LS_PANEL_CALL
#undef LS_NO_CONTRACT
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* [2 * mode + log_a] (scan.h); no second-order kernels (the Python layer
 * composes them from these) */
static const scan_cell KN(linear_cells_)[2 * SCAN_NUM_MODES] = {
#if HAS_NARROW
    [2 * MODE_FORWARD] = {.kernel = KN(linear_fwd0_), .split = {KN(linear_reduce0_), linear_combine}},
    [2 * MODE_FORWARD + 1] = {.kernel = KN(linear_fwd1_), .split = {KN(linear_reduce1_), linear_combine}},
#else
    [2 * MODE_FORWARD] = {.kernel = KN(linear_fwd0_)},
    [2 * MODE_FORWARD + 1] = {.kernel = KN(linear_fwd1_)},
#endif
    [2 * MODE_JVP] = {.kernel = KN(linear_jvp0_)},
    [2 * MODE_JVP + 1] = {.kernel = KN(linear_jvp1_)},
    [2 * MODE_VJP] = {.kernel = KN(linear_vjp0_), .walks_back = 1},
    [2 * MODE_VJP + 1] = {.kernel = KN(linear_vjp1_), .walks_back = 1},
};
#else
static const scan_cell KN(linear_cells_)[2 * SCAN_NUM_MODES] = {{NULL}};
#endif
