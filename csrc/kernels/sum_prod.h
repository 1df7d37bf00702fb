/* sum_prod.h: cumsum and cumprod kernels (forward, JVP, VJP) for one dtype.
 * Included by dtypes.h once per dtype with the trait macros T, A, LD, ST,
 * ADD, MUL, CONJMUL, ZERO, ONE and KN(name) defined.
 *
 * Derivative recurrences (docs/derivatives.md), written for the inclusive forward scan;
 * the exclusive scan emits the state before the update instead of after:
 *   sum  JVP: cumsum(t)                 VJP: the same scan of g, run backwards
 *   prod JVP: D = D*x + P*t, P = P*x     VJP: E = exclusive prefix product,
 *             S = g + conj(x_next)*S backwards, x_bar = conj(E)*S
 */

/* ---- forward: one accumulating scan, instantiated for + and * ---- */
#define DEFINE_ACCUMULATE(NAME, IDENTITY, COMBINE)                                      \
    SCAN_INLINE void KN(NAME##_fwd_panel_)(PANEL_ARGS)                                  \
    {                                                                                   \
        const char *x = PANEL_BASE(0);                                                  \
        char *y = PANEL_BASE(1);                                                        \
        const int64_t lx = LANE(0), ly = LANE(1);                                       \
        STATE(A, acc, 0);                                                               \
        for (int64_t l = 0; l < w; l++)                                                 \
            acc[l] = IDENTITY;                                                          \
        const int64_t ahead = panel_rows_ahead(b, w, sizeof(T), contig, line);          \
        for (int64_t r = 0; r < b->n; r++) {                                            \
            panel_prefetch_ahead(b, r, ahead, 0, x, w * (int64_t)sizeof(T));            \
            for (int64_t l = 0; l < w; l++) {                                           \
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
/* Panels of 4, 8 or 16 contiguous lanes (the heads of a [B, T, H] gate
 * tensor): with the state in memory, each row waits for the previous row's
 * store to be forwarded, and at 16 lanes that, not bandwidth, is the limit.
 * Here the state is nv vectors in registers and a row is nv vector adds. */
SCAN_INLINE void KN(sum_narrow_rows_)(const scan_block *b, const int nv, const int incl)
{
    v4d acc[4] = {{0.0, 0.0, 0.0, 0.0}, {0.0, 0.0, 0.0, 0.0}, {0.0, 0.0, 0.0, 0.0},
                  {0.0, 0.0, 0.0, 0.0}};
    const char *x = b->ptr[0];
    char *y = b->ptr[1];
    for (int64_t r = 0; r < b->n; r++) {
        v4d v[4];
        for (int j = 0; j < nv; j++) /* the whole row is read before any of it is written */
            NARROW_LOAD(v[j], x + 4 * j * (int64_t)sizeof(T));
        for (int j = 0; j < nv; j++) {
            const v4d next = acc[j] + v[j], out = incl ? next : acc[j];
            NARROW_STORE(y + 4 * j * (int64_t)sizeof(T), out);
            acc[j] = next;
        }
        x += b->step[0];
        y += b->step[1];
    }
}

static void KN(sum_fwd_)(const scan_block *b)
{
    static const int64_t size_[2] = {sizeof(T), sizeof(T)};
    const int dir = KN(line_direction_)(b, 2, size_);
    if (dir) {
        LINE_CALL(KN(accumulate_line_), b, dir, 0);
        return;
    }
    if ((b->m == 4 || b->m == 8 || b->m == 16) && b->lane[0] == (int64_t)sizeof(T) &&
        b->lane[1] == (int64_t)sizeof(T)) {
        const int nv = (int)(b->m / 4);
        if (b->inclusive) {
            if (nv == 1) KN(sum_narrow_rows_)(b, 1, 1);
            else if (nv == 2) KN(sum_narrow_rows_)(b, 2, 1);
            else KN(sum_narrow_rows_)(b, 4, 1);
        } else {
            if (nv == 1) KN(sum_narrow_rows_)(b, 1, 0);
            else if (nv == 2) KN(sum_narrow_rows_)(b, 2, 0);
            else KN(sum_narrow_rows_)(b, 4, 0);
        }
        return;
    }
    KN(sum_fwd_panels_)(b);
}
#else
static void KN(sum_fwd_)(const scan_block *b)
{
    KN(sum_fwd_panels_)(b);
}
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

#if HAS_DERIV
/* JVP operands: x, t, y, y_dot: two independent sums. */
static void KN(sum_jvp_)(const scan_block *b)
{
    scan_block xy = block_pick(b, 0, 2, -1), ty = block_pick(b, 1, 3, -1);
    KN(sum_fwd_)(&xy);
    KN(sum_fwd_)(&ty);
}

/* VJP operands: x, y, g, x_bar: the same scan of g in the other direction
 * (an exclusive scan stays exclusive: x_bar[i] = sum of g[j] for j > i). */
static void KN(sum_vjp_)(const scan_block *b)
{
    scan_block gx = block_pick(b, 2, 3, -1);
    gx = block_reversed(&gx);
    KN(sum_fwd_)(&gx);
}
#endif

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

static const scan_cell KN(sum_cells_)[SCAN_NUM_MODES] = {
#if HAS_NARROW
    [MODE_FORWARD] = {.kernel = KN(sum_fwd_), .split = {KN(sum_reduce_), line_combine_sum}},
#else
    [MODE_FORWARD] = {.kernel = KN(sum_fwd_)},
#endif
#if HAS_DERIV
    [MODE_JVP] = {.kernel = KN(sum_jvp_)},
    [MODE_VJP] = {.kernel = KN(sum_vjp_), .walks_back = 1},
#endif
};

static const scan_cell KN(prod_cells_)[SCAN_NUM_MODES] = {
#if HAS_NARROW
    [MODE_FORWARD] = {.kernel = KN(prod_fwd_), .split = {KN(prod_reduce_), line_combine_prod}},
#else
    [MODE_FORWARD] = {.kernel = KN(prod_fwd_)},
#endif
#if HAS_DERIV
    [MODE_JVP] = {.kernel = KN(prod_jvp_)},
    [MODE_VJP] = {.kernel = KN(prod_vjp_), .walks_back = 1},
#endif
};
