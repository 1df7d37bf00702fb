/* second_order.h: what the MODE_VJP_JVP kernels (forward over reverse) of
 * the op headers share, for one floating or complex dtype.
 *
 * Operands (scan_matrix.h): 0 x, 1 t, 2 g, 3 g_dot (NULL: zero), 4 x_bar,
 * 5 x_bar_dot.  x_bar is the first-order VJP; x_bar_dot its derivative in
 * direction (t, g_dot), docs/derivatives.md "Second order":
 *   x_bar_dot = VJP(x, g_dot) + D_x[VJP(x, g)] t,
 * conjugate-linear in t for complex x.  Flags as in the first order: an
 * exclusive scan shifts by one row, reverse is a negative step (the driver).
 */
#if HAS_DERIV

#ifndef SCANAD_SECOND_ORDER_ONCE
#define SCANAD_SECOND_ORDER_ONCE
enum { SO_X = 0, SO_T, SO_G, SO_GD, SO_XB, SO_XBD };

/* Block b with operands renumbered: new operand k is old operand from[k]
 * (-1: absent), for handing a VJP_JVP block to a first-order kernel. */
SCAN_INLINE scan_block so_pick(const scan_block *b, int k0, int k1, int k2, int k3)
{
    scan_block r = *b;
    const int from[4] = {k0, k1, k2, k3};
    for (int k = 0; k < SCAN_MAX_OPERANDS; k++) {
        const int f = k < 4 ? from[k] : -1;
        r.ptr[k] = f >= 0 ? b->ptr[f] : NULL;
        r.step[k] = f >= 0 ? b->step[f] : 0;
        r.lane[k] = f >= 0 ? b->lane[f] : 0;
    }
    return r;
}
#endif

/* operand k of the block set to zero, row by row */
static void KN(so_zero_)(const scan_block *b, int k)
{
    char *p = b->ptr[k];
    for (int64_t r = 0; r < b->n; r++, p += b->step[k])
        for (int64_t l = 0; l < b->m; l++)
            ST(p + l * b->lane[k], ZERO);
}
#endif
