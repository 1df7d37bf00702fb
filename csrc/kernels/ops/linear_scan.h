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
 * - lines (m == 1) of float32/64: tiles of LS_TILE elements widened to
 *   double, scanned eight at a time by affine_scan_within (simd.h: the maps
 *   composed in two log steps per vector, one multiply-add per group on the
 *   carry chain) when every factor and offset of the tile is tame, else one
 *   at a time.  Reassociated: see "Accuracy" in docs/semantics.md.
 * - other lines (float16, complex, strided): the panel with w = 1.
 * A long float32/64 line may be split between threads: linear_reduce_
 * gives each piece's affine map (scan_carry: s = product of a, v = state
 * from 0), linear_combine composes them, and a piece starts from
 * carry.s * h0 + carry.v.
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
#pragma GCC optimize("fp-contract=off")
#endif
#define LS_NO_CONTRACT
#elif defined(__clang__)
#define LS_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#define LS_NO_CONTRACT
#endif

#ifndef SCANAD_LINEAR_ONCE
#define SCANAD_LINEAR_ONCE
#define LS_TILE 256
/* A tile is composed in groups only if its factors are 0 or within
 * 2^+-32 (partial products of eight stay within 2^+-256: no overflow, no
 * underflow the loop would not have) and its offsets and the carry within
 * 2^700 (every partial below 2^960): then the groups differ from the loop
 * by rounding only, and an exact zero still resets (0 * finite carry). */
#define LS_A_LO 0x1p-32
#define LS_A_HI 0x1p32
#define LS_B_HI 0x1p700

/* later piece after acc: h -> next.s (acc.s h + acc.v) + next.v; a zero
 * factor resets, as in the scan */
static void linear_combine(scan_carry *acc, const scan_carry *next)
{
    acc->v = next->s == 0.0 ? next->v : next->s * acc->v + next->v;
    acc->s = next->s * acc->s;
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
    STATE(A, S, 0);
    for (int64_t l = 0; l < w; l++)
        S[l] = b->ptr[3] != NULL ? LD(b->ptr[3] + (l0 + l) * b->lane[3]) : ZERO;
    if (line && b->carry != NULL) {
        /* a later piece of a split line: the map of the pieces before */
        const A c = (A)b->carry->v, f = (A)b->carry->s;
        S[0] = f == ZERO ? c : ADD(MUL(f, S[0]), c);
    }
    for (int64_t r = 0; r < b->n; r++) {
        for (int64_t l = 0; l < w; l++) {
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
    for (int64_t i = 0; i < cnt; i++) {
        double av = LD(x + i * sa);
        const double bv = LD(y + i * sb);
        if (lg)
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

/* One line from state S through tiles; stores h unless h is NULL (the
 * reduce); returns the final state.  With P (the reduce) also the product
 * of the factors into *P, in eight running products (one chain would cost
 * a multiply's latency per element); *P is 0 and *zero 0 when one of them
 * left the normal range without an exact zero factor to explain it. */
static double KN(linear_line_)(const scan_block *b, const int lg, double S, char *h, double *P)
{
    double ta[LS_TILE], tb[LS_TILE], th[LS_TILE];
    const int64_t sz = (int64_t)sizeof(T), sh = b->step[2];
    const char *x = b->ptr[0], *y = b->ptr[1];
    double pp[8] = {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0};
    int zero = 0;
    for (int64_t i0 = 0; i0 < b->n; i0 += LS_TILE) {
        const int64_t cnt = b->n - i0 < LS_TILE ? b->n - i0 : LS_TILE;
        const int tame = lg ? KN(linear_load_)(ta, tb, x, b->step[0], y, b->step[1], cnt, 1)
                            : KN(linear_load_)(ta, tb, x, b->step[0], y, b->step[1], cnt, 0);
        x += cnt * b->step[0];
        y += cnt * b->step[1];
        if (P != NULL) {
            int64_t i = 0;
            for (; i + 8 <= cnt; i += 8)
                for (int j = 0; j < 8; j++)
                    pp[j] *= ta[i + j];
            for (; i < cnt; i++)
                pp[0] *= ta[i];
            for (i = 0; i < cnt; i++)
                zero |= ta[i] == 0.0;
        }
        const double before = S;
        int64_t i = !tame ? 0 : affine_scan_within(ta, tb, th, cnt, &S, LS_B_HI);
        for (; i < cnt; i++) {
            S = ta[i] == 0.0 ? tb[i] : ta[i] * S + tb[i];
            th[i] = S;
        }
        if (h != NULL) {
            if (b->inclusive) {
                if (sh == sz) KN(linear_narrow_)(h, sz, th, cnt);
                else if (sh == -sz) KN(linear_narrow_)(h, -sz, th, cnt);
                else KN(linear_narrow_)(h, sh, th, cnt);
            } else {
                if (sh == sz) KN(linear_narrow_excl_)(h, sz, before, th, cnt);
                else if (sh == -sz) KN(linear_narrow_excl_)(h, -sz, before, th, cnt);
                else KN(linear_narrow_excl_)(h, sh, before, th, cnt);
            }
            h += cnt * sh;
        }
    }
    if (P != NULL) {
        double prod = 1.0;
        int tame = 1;
        for (int j = 0; j < 8; j++) {
            tame &= fabs(pp[j]) >= 0x1p-1022 || zero;
            prod *= pp[j];
        }
        *P = tame ? prod : NAN;
    }
    return S;
}

/* The map of one piece; refuses (0) when it is not finite or its factor
 * is subnormal without a zero factor (h0 would lose digits through it):
 * the line then runs on one thread. */
SCAN_INLINE int KN(linear_reduce_)(const scan_block *b, scan_carry *total, const int lg)
{
    double P;
    const double E = KN(linear_line_)(b, lg, 0.0, NULL, &P);
    total->v = E;
    total->s = P;
    total->i = 0;
    return isfinite(E) && isfinite(P) && (P == 0.0 || fabs(P) >= 0x1p-1022);
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
            S = b->carry->s == 0.0 ? b->carry->v : b->carry->s * S + b->carry->v;
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

#undef LS_EXP
#undef LS_PANEL_CALL
#undef LS_NO_CONTRACT
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* [0]: a as given, [1]: log_a (a = exp(log_a), fused) */
static const scan_cell KN(linear_cells_)[2] = {
#if HAS_NARROW
    {.kernel = KN(linear_fwd0_), .split = {KN(linear_reduce0_), linear_combine}},
    {.kernel = KN(linear_fwd1_), .split = {KN(linear_reduce1_), linear_combine}},
#else
    {.kernel = KN(linear_fwd0_)},
    {.kernel = KN(linear_fwd1_)},
#endif
};
#else
static const scan_cell KN(linear_cells_)[2] = {{NULL}, {NULL}};
#endif
