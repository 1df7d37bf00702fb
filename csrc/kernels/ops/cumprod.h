/* ops/cumprod.h: cumprod for one dtype (kernels/instantiate.h): the
 * forward, the JVP and VJP on panels and on single lines, and its cells.
 *
 * Derivative recurrences (docs/derivatives.md), written for the inclusive
 * forward scan; the exclusive scan emits the state before the update
 * instead of after:
 *   JVP: D = D*x + P*t, P = P*x
 *   VJP: E = exclusive prefix product, S = g + conj(x_next)*S backwards,
 *        x_bar = conj(E)*S
 */

#ifndef SCANAD_CUMPROD_ONCE
#define SCANAD_CUMPROD_ONCE
/* combining the totals of consecutive pieces (scan_split.combine) */
static void line_combine_prod(scan_carry *acc, const scan_carry *next) { acc->v *= next->v; }
/* a float64 factor that four-element products take (ACC_PROD_WILD's range,
 * one element) */
static inline int prod_factor_tame(const double v)
{
    const double m = fabs(v);
    return m <= ACC_PROD_HI && (m >= ACC_PROD_LO || v == 0.0);
}
#endif

#if HAS_NARROW
static int KN(prod_reduce_)(const scan_block *b, scan_carry *total)
{
    return KN(accumulate_reduce_)(b, total, 1);
}

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
 * in the walk's direction, down: whether that goes down in memory), lanes in
 * memory order (simd.h, LINE_SHIFT1) */
#define PROD_GROUP_LOAD(a, a2, e, e2, pa, pe, sz, down) \
    do {                                                \
        LINE_LOAD_MEM(a, pa, down);                     \
        LINE_LOAD_MEM(a2, (pa) + 4 * (sz), down);       \
        LINE_LOAD_MEM(e, pe, down);                     \
        LINE_LOAD_MEM(e2, (pe) + 4 * (sz), down);       \
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
    const int last = LINE_LANE(3, back);
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
                LINE_PREFETCH(x, sz);
                LINE_PREFETCH(t, sz);
                affine_group_products(&a, &a2, &A1, &A2, &B1, &B2, back);
                const v4d whole2 = B2 * A2[last]; /* second vector from the group start */
                e *= LINE_SHIFT1(A2, one, back);
                e2 *= LINE_SHIFT1(whole2, V4_SPLAT(A2[last]), back);
                affine_group_offsets(&a, &a2, &A1, &B1, &B2, &e, &e2, back);
                v4d Pa = A2 * P, Pb = whole2 * P;
                v4d Da = A2 * D + P * e, Db = whole2 * D + P * e2;
                const v4d nP = V4_SPLAT(Pb[last]), nD = V4_SPLAT(Db[last]);
                if (!incl) {
                    Pb = LINE_SHIFT1(Pb, V4_SPLAT(Pa[last]), back);
                    Db = LINE_SHIFT1(Db, V4_SPLAT(Da[last]), back);
                    Pa = LINE_SHIFT1(Pa, P, back);
                    Da = LINE_SHIFT1(Da, D, back);
                }
                LINE_STORE_MEM(y, Pa, back);
                LINE_STORE_MEM(y + 4 * sz, Pb, back);
                LINE_STORE_MEM(yd, Da, back);
                LINE_STORE_MEM(yd + 4 * sz, Db, back);
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
                const int c = LINE_LANE(s, back);
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
                const int c = LINE_LANE(s, back);
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

#if !defined(PJ_TILE)
/* float64: the first elements of the line four at a step.  The dual numbers
 * (x, t) of four consecutive elements multiply into one, X = x_{k-3}..x_k
 * and its derivative Xd, so lane by lane P_k = P_{k-4} X and
 * D_k = D_{k-4} X + P_{k-4} Xd follow from the vector before with no
 * shuffle on the chain; each X is two products of pairs, one of them the
 * group below's (one lane-crossing shuffle).  While every factor is 0 or
 * within 2^+-32 (ACC_PROD_WILD) and every tangent within 2^200, and the
 * carries into each group within 2^600, the four-factor products neither overflow nor underflow where the
 * one-at-a-time products do not: only rounding changes.  Stops before the
 * first group that fails, which prod_jvp_groups_ then takes with the rest;
 * returns the elements done. */
#define PJW_MIN 16
#define PJW_CARRY 0x1p600
/* each lane's element - 2: lanes 2, 3 of the group below then 0, 1 of this
 * one (walking up in memory: back = 0), or mirrored */
#define PJW_BELOW2(cur, below) (back ? V4_SHIFT2_DOWN(cur, below) : V4_SHIFT2_DOWN(below, cur))
SCAN_INLINE int64_t KN(prod_jvp_windows_)(prod_jvp_walk *w, const int64_t count, const int incl,
                                         const int back)
{
    const int64_t sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T);
    if (count < PJW_MIN)
        return 0;
    for (int k = 0; k < 4; k++) {
        const double v = (double)LD(w->x + k * sz), tv = (double)LD(w->t + k * sz);
        if (!(prod_factor_tame(v) && fabs(tv) <= PROD_TAME))
            return 0;
    }
    const v4d zero = V4_SPLAT(0.0);
    /* elements 0-3 one at a time: their states, and the pair maps of 2, 3 */
    v4d P = zero, D = zero, p1 = zero, pd1 = zero;
    double Ps = w->P, Ds = w->D;
    for (int k = 0; k < 4; k++) {
        const double v = (double)LD(w->x + k * sz), tv = (double)LD(w->t + k * sz);
        const double nP = Ps * v, nD = Ds * v + Ps * tv;
        ST(w->y + k * sz, incl ? nP : Ps);
        ST(w->yd + k * sz, incl ? nD : Ds);
        Ps = nP;
        Ds = nD;
        P[LINE_LANE(k, back)] = Ps;
        D[LINE_LANE(k, back)] = Ds;
        if (k >= 2) {
            const double u = (double)LD(w->x + (k - 1) * sz), tu = (double)LD(w->t + (k - 1) * sz);
            p1[LINE_LANE(k, back)] = u * v;
            pd1[LINE_LANE(k, back)] = tu * v + u * tv;
        }
    }
    const int last = LINE_LANE(3, back);
    int64_t k0 = 4;
    for (; k0 + 4 <= count; k0 += 4) {
        /* the group's elements k0..k0+3 start at k0's address walking up,
         * k0+3's down */
        const int64_t j = (k0 + (back ? 3 : 0)) * sz;
        v4d a, d, ab, db;
        NARROW_LOAD(a, w->x + j);
        NARROW_LOAD(d, w->t + j);
        NARROW_LOAD(ab, w->x + j - sz);
        NARROW_LOAD(db, w->t + j - sz);
        const v4i wild = ACC_PROD_WILD(a) | ~(v4i)(V4_ABS(d) <= V4_SPLAT(PROD_TAME)) |
                         ~(v4i)(V4_ABS(P) + V4_ABS(D) <= V4_SPLAT(PJW_CARRY));
        if (V4_ANY(wild))
            break;
        /* pairs (k-1, k) at each lane's element k */
        const v4d p = ab * a, pd = db * a + ab * d;
        const v4d p2 = PJW_BELOW2(p, p1), pd2 = PJW_BELOW2(pd, pd1);
        const v4d X = p * p2, Xd = pd * p2 + p * pd2;
        const v4d nP = P * X, nD = D * X + P * Xd;
        if (incl) {
            NARROW_STORE(w->y + j, nP);
            NARROW_STORE(w->yd + j, nD);
        } else {
            const v4d eP = LINE_SHIFT1(nP, LINE_LAST(P, back), back);
            const v4d eD = LINE_SHIFT1(nD, LINE_LAST(D, back), back);
            NARROW_STORE(w->y + j, eP);
            NARROW_STORE(w->yd + j, eD);
        }
        P = nP;
        D = nD;
        p1 = p;
        pd1 = pd;
    }
    w->x += k0 * sz, w->t += k0 * sz, w->y += k0 * sz, w->yd += k0 * sz;
    w->P = P[last];
    w->D = D[last];
    return k0;
}
#undef PJW_MIN
#undef PJW_CARRY
#undef PJW_BELOW2
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
#else
    left -= KN(prod_jvp_windows_)(&w, left, incl, back);
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
                const int c = LINE_LANE(s, rev);
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
                sr[LINE_LANE(s, rev)] = bufS[j + s][h] + bufA[j + s][h] * Sc[h];
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
 * (lanes in memory order, the walk down in memory when down; both pairs
 * are overwritten) and the carry *S, r and r2 get x_bar = E S_i for the
 * group's eight S_i, and *S the last S_i */
SCAN_INLINE void KN(prod_vjp_group_)(v4d *x, v4d *x2, v4d *t, v4d *t2, const v4d *E,
                                    const v4d *E2, double *S, v4d *r, v4d *r2, const int down)
{
    const int last = LINE_LANE(3, down);
    v4d P1, P2, Q1, Q2;
    affine_group_products(x, x2, &P1, &P2, &Q1, &Q2, down);
    affine_group_offsets(x, x2, &P1, &Q1, &Q2, t, t2, down);
    const v4d s = P2 * *S + *t, s2 = (Q2 * P2[last]) * *S + *t2;
    *r = *E * s;
    *r2 = *E2 * s2;
    *S = s2[last];
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
     * memory for LINE_LOAD_MEM / LINE_STORE_MEM */
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
                LINE_PREFETCH(a, sz);
                LINE_PREFETCH(g, sz);
                LINE_PREFETCH(e, sz);
                LINE_LOAD_MEM(E, e, down);
                LINE_LOAD_MEM(E2, e + 4 * sz, down);
                KN(prod_vjp_group_)(&x, &x2, &t, &t2, &E, &E2, &S, &r, &r2, down);
                LINE_STORE_MEM(xb, r, down);
                LINE_STORE_MEM(xb + 4 * sz, r2, down);
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
/* the group of eight values at p into a ring slot, as doubles: the two
 * vectors prod_vjp_group_ takes, lanes in memory order */
SCAN_INLINE void KN(prod_vjp_stage_group_)(double *slot, const char *p, const int64_t sz,
                                          const int down)
{
    v4d v, v2;
    LINE_LOAD_MEM(v, p, down);
    LINE_LOAD_MEM(v2, p + 4 * sz, down);
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
    LINE_STORE_MEM(p, r, down);
    LINE_STORE_MEM(p + 4 * sz, r2, down);
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
    /* ring slot k holds a group's eight values as doubles, the two vectors
     * prod_vjp_stage_group_ loads */
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
            LINE_PREFETCH(ga, sz);
            KN(prod_vjp_stage_group_)(rg + 8 * ((j + PV_G_AHEAD) & (PV_RING - 1)), ga, sz, down);
            ga += 8 * sz;
        }
        if (j + PV_E_AHEAD < groups) {
            LINE_PREFETCH(ea, sz);
            KN(prod_vjp_stage_group_)(re + 8 * ((j + PV_E_AHEAD) & (PV_RING - 1)), ea, sz, down);
            ea += 8 * sz;
        }
        const double *tg = rg + 8 * (j & (PV_RING - 1)), *te = re + 8 * (j & (PV_RING - 1));
        double *tx = rx + 8 * (j & (PV_RING - 1));
        v4d x, x2, t, t2;
        LINE_LOAD_MEM(x, a, down);
        LINE_LOAD_MEM(x2, a + 4 * sz, down);
        V4_LOAD(t, tg);
        V4_LOAD(t2, tg + 4);
        if (fabs(S) <= PROD_TAME && PROD_GROUP_TAME(x, x2, t, t2)) {
            v4d E, E2, r, r2;
            LINE_PREFETCH(a, sz);
            V4_LOAD(E, te);
            V4_LOAD(E2, te + 4);
            KN(prod_vjp_group_)(&x, &x2, &t, &t2, &E, &E2, &S, &r, &r2, down);
            V4_STORE(tx, r);
            V4_STORE(tx + 4, r2);
        } else {
            for (int k = 0; k < 8; k++) {
                const int j = (k & 4) + LINE_LANE(k & 3, down); /* element k's slot */
                S = tg[j] + (double)LD(a + k * sz) * S;
                tx[j] = te[j] * S;
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

/* One step of the backward walk at element i (at: its byte offset) with
 * E_i, E_dot_i given */
SCAN_INLINE void KN(prod_so_step_from_)(const char *x, const char *t, const char *g,
                                        const char *gd, const int has_gd, char *xb0, char *xbd0,
                                        const int64_t at, const int64_t sz, const double E,
                                        const double Ed, double *R, double *Rd)
{
    const double av = (double)LD(x + at + sz), adv = (double)LD(t + at + sz);
    const double gdv = has_gd ? (double)LD(gd + at) : 0.0;
    const double nR = (double)LD(g + at) + av * *R, nRd = (gdv + adv * *R) + av * *Rd;
    ST(xb0 + at, E * nR);
    ST(xbd0 + at, Ed * nR + E * nRd);
    *R = nR;
    *Rd = nRd;
}
/* One step of the backward walk at element i (at: its byte offset): R_i, Rd_i
 * from R_{i+1}, Rd_{i+1} in *R, *Rd, and the outputs from E_i, E_dot_i,
 * parked one element down.  Pointers as prod_so_line_'s. */
SCAN_INLINE void KN(prod_so_step_)(const char *x, const char *t, const char *g, const char *gd,
                                   const int has_gd, char *xb0, char *xbd0, const int64_t at,
                                   const int64_t sz, double *R, double *Rd)
{
    KN(prod_so_step_from_)(x, t, g, gd, has_gd, xb0, xbd0, at, sz, (double)LD(xb0 + at - sz),
                           (double)LD(xbd0 + at - sz), R, Rd);
}
/* The backward walk four elements a step.  The four consecutive maps
 * (R, Rd) -> (g + x R, gd + t R + x Rd) from each element i up compose in
 * double into one map from R_{i+4}, so lane by lane a vector of R_i..R_{i+3}
 * follows from the vector before it, and the chain is three fused
 * multiply-adds per four elements instead of per element.  Each four-element
 * map is two maps of pairs, one of them the group above's (a lane-crossing
 * shuffle instead of recomputing it).  Floats multiply in double without
 * overflow (FLT_MAX^4 << DBL_MAX, FLT_TRUE_MIN^4 >> DBL_MIN); doubles do while
 * every factor is 0 or within 2^+-32 (ACC_PROD_WILD), so four of them stay
 * within 2^+-128.  Then zeros stay exact and only rounding changes, and any
 * overflow of a product shows as inf.  A group that meets inf, NaN or a wild
 * factor stops before it stores, and the one-at-a-time walk takes the rest of
 * the line.  E_i, E_dot_i are read one element down, so the groups stop
 * above element 0.  Elements i down to the returned index + 1 are done;
 * *R, *Rd hold the state at that one. */
#define SO_WINDOW_MIN 16
/* each lane's element + 2: lanes 2, 3 of this group then 0, 1 of the one
 * above (walking up in memory: back = 0), or mirrored */
#define SO_ABOVE2(cur, above) (back ? V4_SHIFT2_DOWN(above, cur) : V4_SHIFT2_DOWN(cur, above))
SCAN_INLINE int64_t KN(prod_so_windows_)(char *const *ptr, const char *x, const char *t,
                                         const char *g, const char *gd, const int has_gd,
                                         int64_t i, const int64_t sz, const int back, double *R,
                                         double *Rd)
{
    char *xb0 = ptr[SO_XB], *xbd0 = ptr[SO_XBD];
    /* the state of elements i + 1 - 3 .. i + 1, by element offset from the lowest */
    double r[4], rd[4];
    r[3] = *R;
    rd[3] = *Rd;
    for (int k = 2; k >= 0; k--, i--) {
        KN(prod_so_step_)(x, t, g, gd, has_gd, xb0, xbd0, i * sz, sz, R, Rd);
        r[k] = *R;
        rd[k] = *Rd;
    }
#if !IS_F32
    /* the factors above the first group's a0 (every other is some group's a0) */
    for (int64_t k = 2; k <= 4; k++)
        if (!prod_factor_tame((double)LD(x + (i + k) * sz)))
            return i;
#endif
    /* lanes in memory order: lane L holds element offset LINE_LANE(L, back) */
    const v4d zero = V4_SPLAT(0.0);
    v4d Rv, Rdv, p1 = zero, pd1 = zero, q1 = zero, qd1 = zero;
    for (int L = 0; L < 4; L++) {
        Rv[L] = r[LINE_LANE(L, back)];
        Rdv[L] = rd[LINE_LANE(L, back)];
    }
    /* the pair maps of the group above at its two lowest elements (the two
     * above them are never read) */
    for (int k = 0; k < 2; k++) {
        const int64_t at = (i + 1 + k) * sz;
        const double x1 = (double)LD(x + at + sz), x2 = (double)LD(x + at + 2 * sz);
        const double t1 = (double)LD(t + at + sz), t2 = (double)LD(t + at + 2 * sz);
        const double g1 = (double)LD(g + at), g2 = (double)LD(g + at + sz);
        const double e1 = has_gd ? (double)LD(gd + at) : 0.0;
        const double e2 = has_gd ? (double)LD(gd + at + sz) : 0.0;
        const int L = LINE_LANE(k, back);
        p1[L] = x1 * x2;
        pd1[L] = t1 * x2 + x1 * t2;
        q1[L] = g1 + x1 * g2;
        qd1[L] = (e1 + t1 * g2) + x1 * e2;
    }
    /* a group's four elements j..j+3 start at j's address walking up, j+3's down */
    const int64_t low = back ? 3 * sz : 0;
    for (; i >= 4; i -= 4) {
        const int64_t j = (i - 3) * sz + low;
        v4d a0, a1, d0, d1, b0, b1, e0 = zero, e1 = zero;
        NARROW_LOAD(a0, x + j + sz);
        NARROW_LOAD(a1, x + j + 2 * sz);
        NARROW_LOAD(d0, t + j + sz);
        NARROW_LOAD(d1, t + j + 2 * sz);
        NARROW_LOAD(b0, g + j);
        NARROW_LOAD(b1, g + j + sz);
        if (has_gd) {
            NARROW_LOAD(e0, gd + j);
            NARROW_LOAD(e1, gd + j + sz);
        }
        /* the map of elements k, k+1 at each lane's element k: factor p, its
         * tangent pd, offset q, its tangent qd */
        const v4d p = a0 * a1, pd = d0 * a1 + a0 * d1;
        const v4d q = b0 + a0 * b1, qd = (e0 + d0 * b1) + a0 * e1;
        /* the same maps two elements above each lane: half this group's,
         * half the group above's (one lane-crossing shuffle each) */
        const v4d p2 = SO_ABOVE2(p, p1), pd2 = SO_ABOVE2(pd, pd1);
        const v4d q2 = SO_ABOVE2(q, q1), qd2 = SO_ABOVE2(qd, qd1);
        const v4d A = p * p2, Ad = pd * p2 + p * pd2;
        const v4d B = q + p * q2, Bd = (qd + pd * q2) + p * qd2;
        const v4d nR = B + A * Rv, nRd = (Bd + Ad * Rv) + A * Rdv;
        /* inf or NaN in A, Ad, B or Bd reaches nR or nRd (times the carries,
         * 0 * inf is NaN), and inf or NaN times 0 is NaN: one add and one
         * multiply, as float32's conversions fill the adders' pipes */
#if IS_F32
        if (V4_ANY((nR + nRd) * zero != zero))
            break;
#else
        if (V4_ANY(((nR + nRd) * zero != zero) | ACC_PROD_WILD(a0)))
            break;
#endif
        v4d E, Ed;
        NARROW_LOAD(E, xb0 + j - sz);
        NARROW_LOAD(Ed, xbd0 + j - sz);
        const v4d xb = E * nR, xbd = Ed * nR + E * nRd;
        NARROW_STORE(xb0 + j, xb);
        NARROW_STORE(xbd0 + j, xbd);
        Rv = nR;
        Rdv = nRd;
        p1 = p;
        pd1 = pd;
        q1 = q;
        qd1 = qd;
    }
    /* the state at element i + 1, offset 0 of the last group stored */
    *R = Rv[LINE_LANE(0, back)];
    *Rd = Rdv[LINE_LANE(0, back)];
    return i;
}
#undef SO_ABOVE2

/* ---- cumprod second order on one line ----
 * Pass 1 is the JVP line kernel above, run inclusive into x_bar and
 * x_bar_dot: the products P and their JVP D, in tiles (float32) or four
 * elements a step and log-step groups (float64).  E_i = P_{i-1} is then
 * one element down, where the walk back reads it before it stores x_bar_i
 * over P_i (the exclusive run's shift took a third of the float64 pass).
 * Pass 2 walks back with R and R_dot in registers, four elements a step
 * (prod_so_windows_) and then, past the first group it cannot take, one at
 * a time as prod_vjp_jvp_body_ does (log-step groups of the two coupled
 * recurrences took longer than the one-at-a-time walk: docs/performance.md,
 * "Second order"); element 0 has E = 1, E_dot = 0.  No division: zeros
 * anywhere are exact.  Operands as second_order.h; has_gd: g_dot present. */
SCAN_INLINE void KN(prod_so_line_)(const scan_block *b, const int has_gd, const int incl,
                                  const int back)
{
    const int64_t n = b->n, sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T);
    const int64_t gshift = incl ? 0 : 1;
    scan_block jb = so_pick(b, SO_X, SO_T, SO_XB, SO_XBD);
    KN(prod_jvp_line_)(&jb, 1, back);
    /* the last element (n >= SCAN_LINE_MIN_ELEMENTS on lines: line_direction_): R = g
     * (exclusive: no output depends on its x) */
    const int64_t last = n - 1;
    char *xb = b->ptr[SO_XB] + last * sz, *xbd = b->ptr[SO_XBD] + last * sz;
    double R = 0.0, Rd = 0.0;
    if (incl) {
        R = (double)LD(b->ptr[SO_G] + last * sz);
        Rd = has_gd ? (double)LD(b->ptr[SO_GD] + last * sz) : 0.0;
        const double E = (double)LD(xb - sz), Ed = (double)LD(xbd - sz);
        ST(xb, E * R);
        ST(xbd, Ed * R + E * Rd);
    } else {
        ST(xb, 0.0);
        ST(xbd, 0.0);
    }
    /* elements n - 2 down to 0: x_{i+1}, t_{i+1}, g_i (exclusive g_{i+1}) */
    const char *x = b->ptr[SO_X], *t = b->ptr[SO_T], *g = b->ptr[SO_G] + gshift * sz;
    const char *gd = has_gd ? b->ptr[SO_GD] + gshift * sz : NULL;
    char *xb0 = b->ptr[SO_XB], *xbd0 = b->ptr[SO_XBD];
    int64_t i = last - 1;
    if (last >= SO_WINDOW_MIN)
        i = KN(prod_so_windows_)(b->ptr, x, t, g, gd, has_gd, i, sz, back, &R, &Rd);
    for (; i >= 1; i--)
        KN(prod_so_step_)(x, t, g, gd, has_gd, xb0, xbd0, i * sz, sz, &R, &Rd);
    KN(prod_so_step_from_)(x, t, g, gd, has_gd, xb0, xbd0, 0, sz, 1.0, 0.0, &R, &Rd);
}
#undef SO_WINDOW_MIN
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
#endif

static void KN(prod_fwd_)(const scan_block *b)
{
#if HAS_NARROW
    static const int64_t size_[2] = {sizeof(T), sizeof(T)};
    const int dir = KN(line_direction_)(b, 2, size_);
    if (dir) {
        LINE_CALL(KN(accumulate_line_), b, dir, 1);
        return;
    }
#endif
    KN(prod_fwd_panels_)(b);
}

/* ---- prod: derivatives ---- */

#if HAS_DERIV
SCAN_INLINE void KN(prod_jvp_panel_)(PANEL_ARGS)
{
    const char *x = PANEL_BASE(0), *t = PANEL_BASE(1);
    char *y = PANEL_BASE(2), *yd = PANEL_BASE(3);
    const int64_t lx = LANE(0), lt = LANE(1), ly = LANE(2), lyd = LANE(3);
    STATE(A, P, 0);
    STATE(A, D, 1);
    for (int64_t l = 0; l < w; l++) {
        P[l] = ONE;
        D[l] = ZERO;
    }
    const int64_t ahead = panel_rows_ahead(b, w, sizeof(T), contig, line);
    for (int64_t r = 0; r < b->n; r++) {
        panel_prefetch_ahead(b, r, ahead, 0, x, w * (int64_t)sizeof(T));
        panel_prefetch_ahead(b, r, ahead, 1, t, w * (int64_t)sizeof(T));
        for (int64_t l = 0; l < w; l++) {
            A v = LD(x + l * lx), tv = LD(t + l * lt);
            A nP = MUL(P[l], v);
            A nD = ADD(MUL(D[l], v), MUL(P[l], tv));
            ST(y + l * ly, incl ? nP : P[l]);
            ST(yd + l * lyd, incl ? nD : D[l]);
            P[l] = nP;
            D[l] = nD;
        }
        x += b->step[0];
        t += b->step[1];
        y += b->step[2];
        yd += b->step[3];
    }
}
DEFINE_PANEL_KERNEL(KN(prod_jvp_panels_), KN(prod_jvp_panel_), 4, sizeof(T), sizeof(T),
                    sizeof(T), sizeof(T))

static const int64_t KN(prod_deriv_sizes_)[4] = {sizeof(T), sizeof(T), sizeof(T), sizeof(T)};

static void KN(prod_jvp_)(const scan_block *b)
{
#if HAS_NARROW
    const int dir = KN(line_direction_)(b, 4, KN(prod_deriv_sizes_));
    if (dir) {
        LINE_CALL0(KN(prod_jvp_line_), b, dir);
        return;
    }
#endif
    KN(prod_jvp_panels_)(b);
}

/* No division: S runs backwards and x_bar = conj(E) S, with E the
 * exclusive prefix product.  E is the forward's output y one row before
 * (inclusive; 1 before the first row) or y itself (exclusive): the same
 * products in the same order, rounded to T.  But the walk runs down in
 * memory, which the hardware prefetchers follow poorly when rows are short
 * (under 4 KiB one backwards pass over x, y and g is slower than two
 * passes), so there a first, forward pass parks E in x_bar, and
 * the second finds x and E in cache. */
SCAN_INLINE void KN(prod_vjp_panel_)(PANEL_ARGS)
{
    const int64_t lx = LANE(0), ly = LANE(1), lg = LANE(2), lxb = LANE(3);
    const int64_t n = b->n;
    STATE(A, S, 0);
    STATE(A, xnext, 1);
    STATE(A, gnext, 2);
    if (n == 0)
        return;
    const int parked = line || w * (int64_t)sizeof(T) < PANEL_SHORT_ROW_BYTES;
    if (parked) {
        const char *x = PANEL_BASE(0);
        char *xb = PANEL_BASE(3);
        for (int64_t l = 0; l < w; l++)
            S[l] = ONE; /* the running product, in A precision */
        for (int64_t r = 0; r < n; r++) {
            for (int64_t l = 0; l < w; l++) {
                ST(xb + l * lxb, S[l]);
                S[l] = MUL(S[l], LD(x + l * lx));
            }
            x += b->step[0];
            xb += b->step[3];
        }
    }
    const char *x = PANEL_LAST(0), *g = PANEL_LAST(2);
    char *xb = PANEL_LAST(3);
    /* E of the row: parked in x_bar, or in y */
    const char *e = parked ? xb : PANEL_LAST(1) - (incl ? b->step[1] : 0);
    const int64_t le = parked ? lxb : ly, se = parked ? b->step[3] : b->step[1];
    for (int64_t l = 0; l < w; l++) {
        S[l] = ZERO;
        xnext[l] = ONE;
        gnext[l] = ZERO;
    }
    for (int64_t r = n - 1; r >= 0; r--) {
        /* the rows run down in memory: ask for g's row four ahead (x and E
         * were parked moments ago and are in cache) */
        if (parked && !line && contig && r >= 4)
            panel_prefetch_row(g - 4 * b->step[2], w * (int64_t)sizeof(T));
        for (int64_t l = 0; l < w; l++) {
            A v = LD(x + l * lx), gv = LD(g + l * lg);
            /* inclusive: S_i = g_i + conj(x_{i+1}) S_{i+1};
             * exclusive: S_i = g_{i+1} + conj(x_{i+1}) S_{i+1} */
            S[l] = ADD(incl ? gv : gnext[l], CONJMUL(xnext[l], S[l]));
            if (!incl && r == n - 1)
                ST(xb + l * lxb, ZERO); /* no output depends on the last x */
            else if (!parked && incl && r == 0)
                ST(xb + l * lxb, S[l]);
            else
                ST(xb + l * lxb, CONJMUL(LD(e + l * le), S[l]));
            xnext[l] = v;
            gnext[l] = gv;
        }
        x -= b->step[0];
        e -= se;
        g -= b->step[2];
        xb -= b->step[3];
    }
}
DEFINE_PANEL_KERNEL(KN(prod_vjp_panels_), KN(prod_vjp_panel_), 4, sizeof(T), sizeof(T),
                    sizeof(T), sizeof(T))

static void KN(prod_vjp_)(const scan_block *b)
{
#if HAS_NARROW
    const int dir = KN(line_direction_)(b, 4, KN(prod_deriv_sizes_));
    if (dir) {
        LINE_CALL0(KN(prod_vjp_line_), b, dir);
        return;
    }
#endif
    KN(prod_vjp_panels_)(b);
}
#endif

#if HAS_DERIV
/* ======================= cumprod =======================
 * docs/derivatives.md: E the exclusive prefix product, E_dot its JVP (the
 * running D of the JVP before the update), then backwards
 *   R_i = g_i + conj(x_{i+1}) R_{i+1}
 *   R_dot_i = g_dot_i + conj(t_{i+1}) R_{i+1} + conj(x_{i+1}) R_dot_{i+1}
 *   x_bar = conj(E) R,  x_bar_dot = conj(E_dot) R + conj(E) R_dot.
 * No division, so any number of zeros is exact.  A forward pass parks E and
 * E_dot in the outputs (as the first-order VJP parks E), the backward pass
 * reads each row of them just before writing it. */
SCAN_INLINE void KN(prod_vjp_jvp_body_)(PANEL_ARGS, const int has_gd)
{
    const int64_t lx = LANE(SO_X), lt = LANE(SO_T), lg = LANE(SO_G), lgd = LANE(SO_GD);
    const int64_t lxb = LANE(SO_XB), lxbd = LANE(SO_XBD);
    const int64_t n = b->n;
    const int64_t sx = b->step[SO_X], st = b->step[SO_T], sg = b->step[SO_G];
    const int64_t sgd = b->step[SO_GD], sxb = b->step[SO_XB], sxbd = b->step[SO_XBD];
    STATE(A, R, 0);
    STATE(A, Rd, 1);
    if (n == 0)
        return;
    {
        const char *x = PANEL_BASE(SO_X), *t = PANEL_BASE(SO_T);
        char *xb = PANEL_BASE(SO_XB), *xbd = PANEL_BASE(SO_XBD);
        for (int64_t l = 0; l < w; l++) {
            R[l] = ONE; /* the running product P and its JVP D, in A */
            Rd[l] = ZERO;
        }
        for (int64_t r = 0; r < n; r++) {
            for (int64_t l = 0; l < w; l++) {
                const A v = LD(x + l * lx), tv = LD(t + l * lt);
                ST(xb + l * lxb, R[l]);
                ST(xbd + l * lxbd, Rd[l]);
                const A nD = ADD(MUL(Rd[l], v), MUL(R[l], tv));
                R[l] = MUL(R[l], v);
                Rd[l] = nD;
            }
            x += sx;
            t += st;
            xb += sxb;
            xbd += sxbd;
        }
    }
    const char *x = PANEL_LAST(SO_X), *t = PANEL_LAST(SO_T), *g = PANEL_LAST(SO_G);
    const char *gd = has_gd ? PANEL_LAST(SO_GD) : NULL;
    char *xb = PANEL_LAST(SO_XB), *xbd = PANEL_LAST(SO_XBD);
    /* the last row: R_{n} = 0; exclusive, no output depends on the last x */
    for (int64_t l = 0; l < w; l++) {
        R[l] = incl ? LD(g + l * lg) : ZERO;
        Rd[l] = incl && has_gd ? LD(gd + l * lgd) : ZERO;
        if (incl) {
            const A E = LD(xb + l * lxb), Ed = LD(xbd + l * lxbd);
            ST(xb + l * lxb, CONJMUL(E, R[l]));
            ST(xbd + l * lxbd, ADD(CONJMUL(Ed, R[l]), CONJMUL(E, Rd[l])));
        } else {
            ST(xb + l * lxb, ZERO);
            ST(xbd + l * lxbd, ZERO);
        }
    }
    /* the other rows read x, t, g and g_dot of the row after them from memory
     * (just read, in cache) rather than from more per-line state: the state of
     * a panel of 1024 float64 lines must stay in L1 */
    for (int64_t r = n - 2; r >= 0; r--) {
        x -= sx;
        t -= st;
        g -= sg;
        if (has_gd)
            gd -= sgd;
        xb -= sxb;
        xbd -= sxbd;
        for (int64_t l = 0; l < w; l++) {
            const A xn = LD(x + sx + l * lx), tn = LD(t + st + l * lt);
            /* exclusive: output i + 1 is the product of x[0..i], so its
             * g and g_dot take the place of g_i, g_dot_i */
            const A gv = LD(g + (incl ? 0 : sg) + l * lg);
            const A gdv = has_gd ? LD(gd + (incl ? 0 : sgd) + l * lgd) : ZERO;
            const A E = LD(xb + l * lxb), Ed = LD(xbd + l * lxbd);
            const A nR = ADD(gv, CONJMUL(xn, R[l]));
            const A nRd = ADD(ADD(gdv, CONJMUL(tn, R[l])), CONJMUL(xn, Rd[l]));
            ST(xb + l * lxb, CONJMUL(E, nR));
            ST(xbd + l * lxbd, ADD(CONJMUL(Ed, nR), CONJMUL(E, nRd)));
            R[l] = nR;
            Rd[l] = nRd;
        }
    }
}
/* g_dot present or not as a constant, so the inner loops have no test */
SCAN_INLINE void KN(prod_vjp_jvp_panel_)(PANEL_ARGS)
{
    if (b->ptr[SO_GD] != NULL)
        KN(prod_vjp_jvp_body_)(b, l0, w, incl, contig, sizeof_op, line, 1);
    else
        KN(prod_vjp_jvp_body_)(b, l0, w, incl, contig, sizeof_op, line, 0);
}
DEFINE_PANEL_KERNEL(KN(prod_vjp_jvp_panels_), KN(prod_vjp_jvp_panel_), 6, sizeof(T), sizeof(T),
                    sizeof(T), sizeof(T), sizeof(T), sizeof(T))

static void KN(prod_vjp_jvp_)(const scan_block *b)
{
#if HAS_NARROW
    static const int64_t size_[6] = {sizeof(T), sizeof(T), sizeof(T),
                                     sizeof(T), sizeof(T), sizeof(T)};
    const int dir = KN(line_direction_)(b, 6, size_);
    if (dir) {
        if (b->ptr[SO_GD] != NULL)
            LINE_CALL(KN(prod_so_line_), b, dir, 1);
        else
            LINE_CALL(KN(prod_so_line_), b, dir, 0);
        return;
    }
#endif
    KN(prod_vjp_jvp_panels_)(b);
}
#endif

/* the derivatives have line kernels (scan_cell.flips_inputs) */
#if HAS_NARROW
#define PROD_LINES 1
#else
#define PROD_LINES 0
#endif
static const scan_cell KN(prod_cells_)[SCAN_NUM_MODES] = {
#if HAS_NARROW
    [MODE_FORWARD] = {.kernel = KN(prod_fwd_), .split = {KN(prod_reduce_), line_combine_prod, 0, 1}},
#else
    [MODE_FORWARD] = {.kernel = KN(prod_fwd_)},
#endif
#if HAS_DERIV
    [MODE_JVP] = {.kernel = KN(prod_jvp_), .flips_inputs = PROD_LINES},
    [MODE_VJP] = {.kernel = KN(prod_vjp_), .walks_back = 1, .flips_inputs = PROD_LINES},
    [MODE_VJP_JVP] = {.kernel = KN(prod_vjp_jvp_), .walks_back = 1, .flips_inputs = PROD_LINES},
#endif
};
#undef PROD_LINES
