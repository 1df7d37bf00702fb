/* ops/cumsum.h: cumsum for one dtype (kernels/instantiate.h): the forward
 * (narrow rows, single lines, panels), its derivatives and its cells.
 * Both derivatives are cumsums: JVP cumsum(t); VJP the same scan of g run
 * backwards (docs/derivatives.md). */

#ifndef SCANAD_CUMSUM_ONCE
#define SCANAD_CUMSUM_ONCE
/* combining the totals of consecutive pieces (scan_split.combine) */
static void line_combine_sum(scan_carry *acc, const scan_carry *next) { acc->v += next->v; }
#endif

#if HAS_NARROW
static int KN(sum_reduce_)(const scan_block *b, scan_carry *total)
{
    return KN(accumulate_reduce_)(b, total, 0);
}
#endif

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

#if HAS_DERIV
/* ======================= cumsum: D_x = 0 =======================
 * x_bar = VJP(g), x_bar_dot = VJP(g_dot): the first-order kernel twice. */
static void KN(sum_vjp_jvp_)(const scan_block *b)
{
    scan_block p = so_pick(b, SO_X, -1, SO_G, SO_XB);
    KN(sum_vjp_)(&p);
    if (b->ptr[SO_GD] != NULL) {
        p = so_pick(b, SO_X, -1, SO_GD, SO_XBD);
        KN(sum_vjp_)(&p);
    } else {
        KN(so_zero_)(b, SO_XBD);
    }
}
#endif

static const scan_cell KN(sum_cells_)[SCAN_NUM_MODES] = {
#if HAS_NARROW
    [MODE_FORWARD] = {.kernel = KN(sum_fwd_), .split = {KN(sum_reduce_), line_combine_sum, 0, 1}},
#else
    [MODE_FORWARD] = {.kernel = KN(sum_fwd_)},
#endif
#if HAS_DERIV
    [MODE_JVP] = {.kernel = KN(sum_jvp_)},
    [MODE_VJP] = {.kernel = KN(sum_vjp_), .walks_back = 1},
    [MODE_VJP_JVP] = {.kernel = KN(sum_vjp_jvp_), .walks_back = 1},
#endif
};
