/* second_order.h: the MODE_VJP_JVP kernels (forward over reverse), one
 * section per op, for one floating or complex dtype.  Included by table.h
 * after sum_prod.h, max_min.h and logsumexp.h with the same trait macros.
 *
 * Operands (scan.h): 0 x, 1 t, 2 g, 3 g_dot (NULL: zero), 4 x_bar,
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
DEFINE_PANEL_KERNEL(KN(prod_vjp_jvp_), KN(prod_vjp_jvp_panel_), 6, sizeof(T), sizeof(T),
                    sizeof(T), sizeof(T), sizeof(T), sizeof(T))

/* ======================= cummax / cummin: D_x = 0 =======================
 * The owner (docs/semantics.md) is locally constant, so x_bar_dot =
 * VJP(x, g_dot) with the same owners: one forward walk sums g and g_dot over
 * each owner's run (owner runs are contiguous), zeroing both outputs as it
 * passes them and writing an owner's two sums when its run ends. */
#if !LSE_COMPLEX
#define SO_TAKES_MAX(v, cur) (((v) >= (cur)) | M_ISNAN(v))
#define SO_TAKES_MIN(v, cur) (((v) <= (cur)) | M_ISNAN(v))
#define SO_DEFINE_MAXMIN(OPNAME, TAKES, START)                                                \
    SCAN_INLINE void KN(OPNAME##_vjp_jvp_body_)(PANEL_ARGS, const int has_gd)                 \
    {                                                                                         \
        const char *x = PANEL_BASE(SO_X), *g = PANEL_BASE(SO_G);                              \
        const char *gd = has_gd ? PANEL_BASE(SO_GD) : NULL;                                   \
        char *xb = PANEL_BASE(SO_XB), *xbd = PANEL_BASE(SO_XBD);                              \
        char *const xb0 = xb, *const xbd0 = xbd;                                              \
        const int64_t lx = LANE(SO_X), lg = LANE(SO_G), lgd = LANE(SO_GD);                    \
        const int64_t lxb = LANE(SO_XB), lxbd = LANE(SO_XBD);                                 \
        const int64_t sxb = b->step[SO_XB], sxbd = b->step[SO_XBD];                           \
        STATE(MV, val, 0);                                                                    \
        STATE(A, acc, 1);                                                                     \
        STATE(A, accd, 2);                                                                    \
        STATE(int64_t, own, 3);                                                               \
        for (int64_t l = 0; l < w; l++) {                                                     \
            val[l] = START;                                                                   \
            acc[l] = ZERO;                                                                    \
            accd[l] = ZERO;                                                                   \
            own[l] = -1;                                                                      \
        }                                                                                     \
        for (int64_t r = 0; r < b->n; r++) {                                                  \
            for (int64_t l = 0; l < w; l++) {                                                 \
                const MV v = MLD(x + l * lx);                                                 \
                const A gv = LD(g + l * lg), gdv = has_gd ? LD(gd + l * lgd) : ZERO;          \
                ST(xb + l * lxb, ZERO);                                                       \
                ST(xbd + l * lxbd, ZERO);                                                     \
                if (!incl) { /* exclusive: g[r] belongs to the owner before x[r] */           \
                    acc[l] = ADD(acc[l], gv);                                                 \
                    accd[l] = ADD(accd[l], gdv);                                              \
                }                                                                             \
                if (TAKES(v, val[l])) {                                                       \
                    if (own[l] >= 0) {                                                        \
                        ST(xb0 + own[l] * sxb + l * lxb, acc[l]);                             \
                        ST(xbd0 + own[l] * sxbd + l * lxbd, accd[l]);                         \
                    }                                                                         \
                    own[l] = r;                                                               \
                    acc[l] = ZERO;                                                            \
                    accd[l] = ZERO;                                                           \
                    val[l] = v;                                                               \
                }                                                                             \
                if (incl) {                                                                   \
                    acc[l] = ADD(acc[l], gv);                                                 \
                    accd[l] = ADD(accd[l], gdv);                                              \
                }                                                                             \
            }                                                                                 \
            x += b->step[SO_X];                                                               \
            g += b->step[SO_G];                                                               \
            if (has_gd)                                                                       \
                gd += b->step[SO_GD];                                                         \
            xb += sxb;                                                                        \
            xbd += sxbd;                                                                      \
        }                                                                                     \
        for (int64_t l = 0; l < w; l++)                                                       \
            if (own[l] >= 0) {                                                                \
                ST(xb0 + own[l] * sxb + l * lxb, acc[l]);                                     \
                ST(xbd0 + own[l] * sxbd + l * lxbd, accd[l]);                                 \
            }                                                                                 \
    }                                                                                         \
    SCAN_INLINE void KN(OPNAME##_vjp_jvp_panel_)(PANEL_ARGS)                                  \
    {                                                                                         \
        if (b->ptr[SO_GD] != NULL)                                                            \
            KN(OPNAME##_vjp_jvp_body_)(b, l0, w, incl, contig, sizeof_op, line, 1);           \
        else                                                                                  \
            KN(OPNAME##_vjp_jvp_body_)(b, l0, w, incl, contig, sizeof_op, line, 0);           \
    }                                                                                         \
    DEFINE_PANEL_KERNEL(KN(OPNAME##_vjp_jvp_), KN(OPNAME##_vjp_jvp_panel_), 6, sizeof(T),     \
                        sizeof(T), sizeof(T), sizeof(T), sizeof(T), sizeof(T))
SO_DEFINE_MAXMIN(max, SO_TAKES_MAX, M_LOWEST)
SO_DEFINE_MAXMIN(min, SO_TAKES_MIN, M_HIGHEST)
#undef SO_DEFINE_MAXMIN
#undef SO_TAKES_MAX
#undef SO_TAKES_MIN
#endif

/* ======================= logcumsumexp =======================
 * With p_ji = exp(x_i - y_j) (docs/derivatives.md):
 *   x_bar_dot = conj(t) x_bar + VJP(x, h),  h = g_dot - g conj(y_dot),
 * so the backward walk runs two affine recurrences on the same weights:
 *   Q_i = g_i + conj(a_i) Q_{i+1},  P_i = h_i + conj(a_i) P_{i+1},
 *   a_i = w(y_i, y_{i+1}),  x_bar_i = conj(w(x_i, y_i)) Q_i,
 *   x_bar_dot_i = conj(t_i) x_bar_i + conj(w(x_i, y_i)) P_i.
 * The weights at +-inf are docs/derivatives.md's uniform ones (the limit of
 * tied finite values), and y_dot is the first-order JVP's mean of t over the
 * tied entries, so the result is that limit too and finite wherever the
 * first order is.  Pass 1 is the JVP kernel, always inclusive, parking y and
 * y_dot in x_bar and x_bar_dot: an exclusive scan is the inclusive one over
 * x[0..n-2] with g read one row later. */
#define SO_PRECISE (sizeof(T) == 8 * (1 + LSE_COMPLEX))
#define SO_VEXP(v) (line ? exp(v) : lse_exp(v, SO_PRECISE))
#if LSE_COMPLEX
#define SO_SUM_T cdouble
#define SO_ZERO CMPLX(0.0, 0.0)
#define SO_CONJMUL(a, c) cconjmul(a, c)
#else
#define SO_SUM_T double
#define SO_ZERO 0.0
#define SO_CONJMUL(a, c) ((a) * (c))
#endif

#if !LSE_COMPLEX
/* One row of the panel where every lane is tame (y here and next finite, x
 * not NaN): plain exponentials, no counts or selects.  A function of its
 * own with restrict pointers: inline in the panel, the number of pointers
 * whose overlap GCC would have to check at run time stops it vectorising. */
SCAN_INLINE void KN(lse_so_tame_row_)(int64_t w, const char *restrict x, int64_t lx,
                                      const char *restrict t, int64_t lt, const char *restrict g,
                                      int64_t lg, const char *restrict gd, int64_t lgd,
                                      char *restrict xb, int64_t lxb, char *restrict xbd,
                                      int64_t lxbd, double *restrict Q, double *restrict P,
                                      double *restrict ynext, const int has_gd)
{
    for (int64_t l = 0; l < w; l++) {
        const double yv = LLD(xb + l * lxb), ydv = LLD(xbd + l * lxbd);
        const double gv = LLD(g + l * lg), gdv = has_gd ? LLD(gd + l * lgd) : 0.0;
        const double a = lse_exp_bounded(yv - ynext[l], SO_PRECISE);
        const double wv = lse_exp_bounded(LLD(x + l * lx) - yv, SO_PRECISE);
        Q[l] = gv + a * Q[l];
        P[l] = (gdv - gv * ydv) + a * P[l];
        const double xbv = wv * Q[l];
        LST(xb + l * lxb, xbv);
        LST(xbd + l * lxbd, LLD(t + l * lt) * xbv + wv * P[l]);
        ynext[l] = yv;
    }
}
#endif

SCAN_INLINE void KN(lse_vjp_jvp_body_)(PANEL_ARGS, const int has_gd)
{
    const int64_t lx = LANE(SO_X), lt = LANE(SO_T), lg = LANE(SO_G), lgd = LANE(SO_GD);
    const int64_t lxb = LANE(SO_XB), lxbd = LANE(SO_XBD);
    const int64_t n = b->n, shift = incl ? 0 : 1, last = n - 1 - shift;
    STATE(SO_SUM_T, Q, 0);
    STATE(SO_SUM_T, P, 1);
    STATE(KN(lse_val_), ynext, 2);
#if !LSE_COMPLEX
    STATE(double, count, 3); /* entries equal to +inf in x[0..i] */
    STATE(double, cnext, 4); /* entries equal to y_{i+1} among x[0..i+1] */
#endif
    if (n == 0)
        return;
    if (shift) {
        char *xb = PANEL_LAST(SO_XB), *xbd = PANEL_LAST(SO_XBD);
        for (int64_t l = 0; l < w; l++) {
            LST(xb + l * lxb, SO_ZERO);
            LST(xbd + l * lxbd, SO_ZERO);
        }
    }
    if (last < 0)
        return;
#if !LSE_COMPLEX
    {
        /* +inf only ever forms a suffix of y: a counting pass only for the
         * lines that end at +inf (y is parked in x_bar) */
        const char *ylast = PANEL_BASE(SO_XB) + last * b->step[SO_XB];
        for (int64_t l = 0; l < w; l++) {
            count[l] = 0.0;
            if (LLD(ylast + l * lxb) == INFINITY) {
                const char *x = PANEL_BASE(SO_X) + l * lx;
                for (int64_t r = 0; r <= last; r++, x += b->step[SO_X])
                    count[l] += LLD(x) == INFINITY;
            }
        }
    }
#endif
    const char *x = PANEL_BASE(SO_X) + last * b->step[SO_X];
    const char *t = PANEL_BASE(SO_T) + last * b->step[SO_T];
    const char *g = PANEL_BASE(SO_G) + (last + shift) * b->step[SO_G];
    const char *gd = has_gd ? PANEL_BASE(SO_GD) + (last + shift) * b->step[SO_GD] : NULL;
    char *xb = PANEL_BASE(SO_XB) + last * b->step[SO_XB];
    char *xbd = PANEL_BASE(SO_XBD) + last * b->step[SO_XBD];
#define SO_NEXT_ROW()                   \
    do {                                \
        x -= b->step[SO_X];             \
        t -= b->step[SO_T];             \
        g -= b->step[SO_G];             \
        if (has_gd)                     \
            gd -= b->step[SO_GD];       \
        xb -= b->step[SO_XB];           \
        xbd -= b->step[SO_XBD];         \
    } while (0)
    for (int64_t r = last; r >= 0; r--) {
#if !LSE_COMPLEX
        if (!line && r < last) {
            /* a row with y here and next finite and x not NaN: plain
             * exponentials for every lane, no counts or selects */
            int64_t tame = 1;
            for (int64_t l = 0; l < w; l++) {
                const double yv = LLD(xb + l * lxb);
                tame &= (fabs(yv) < INFINITY) & (fabs(ynext[l]) < INFINITY) &
                        (LLD(x + l * lx) - yv <= 1.0);
            }
            if (tame) {
                KN(lse_so_tame_row_)(w, x, lx, t, lt, g, lg, gd, lgd, xb, lxb, xbd, lxbd, Q, P,
                                     ynext, has_gd);
                SO_NEXT_ROW();
                continue;
            }
        }
#endif
        for (int64_t l = 0; l < w; l++) {
            const KN(lse_val_) xv = LLD(x + l * lx), tv = LLD(t + l * lt), gv = LLD(g + l * lg);
            const KN(lse_val_) gdv = has_gd ? LLD(gd + l * lgd) : SO_ZERO;
            const KN(lse_val_) yv = LLD(xb + l * lxb), ydv = LLD(xbd + l * lxbd);
            /* g conj(y_dot) is 0 where g is: y_dot is finite wherever t is */
            const SO_SUM_T h = gdv - SO_CONJMUL(ydv, gv);
            SO_SUM_T xbv, wP;
#if !LSE_COMPLEX
            const double c_here = yv == -INFINITY ? (double)(r + 1) : count[l];
            if (r == last) {
                Q[l] = gv;
                P[l] = h;
            } else {
                const double a = KN(lse_weight_)(yv, ynext[l], c_here, cnext[l], line);
                Q[l] = gv + a * Q[l];
                P[l] = h + a * P[l];
            }
            const double wv = KN(lse_weight_)(xv, yv, 1.0, c_here, line);
            xbv = wv * Q[l];
            wP = wv * P[l];
            cnext[l] = c_here;
            if (xv == INFINITY)
                count[l] -= 1.0;
#else
            if (r == last) {
                Q[l] = gv;
                P[l] = h;
            } else {
                const cdouble a = SO_VEXP(creal(yv) - creal(ynext[l])) *
                                  cis(cimag(yv) - cimag(ynext[l]));
                Q[l] = gv + cconjmul(a, Q[l]);
                P[l] = h + cconjmul(a, P[l]);
            }
            /* weight 0 as in the first order: exp(x) is 0, or x = -inf
             * under a finite y */
            const int dead = creal(xv) == -INFINITY &&
                             (!isfinite(cimag(xv)) || creal(yv) > -INFINITY);
            const cdouble wv = dead ? SO_ZERO
                                    : SO_VEXP(creal(xv) - creal(yv)) * cis(cimag(xv) - cimag(yv));
            xbv = dead ? SO_ZERO : cconjmul(wv, Q[l]);
            wP = dead ? SO_ZERO : cconjmul(wv, P[l]);
#endif
            LST(xb + l * lxb, xbv);
            LST(xbd + l * lxbd, SO_CONJMUL(tv, xbv) + wP);
            ynext[l] = yv;
        }
        SO_NEXT_ROW();
    }
}
#undef SO_NEXT_ROW
/* g_dot present or not as a constant: a test in the row loops would keep
 * them from vectorising */
SCAN_INLINE void KN(lse_vjp_jvp_panel_)(PANEL_ARGS)
{
    if (b->ptr[SO_GD] != NULL)
        KN(lse_vjp_jvp_body_)(b, l0, w, incl, contig, sizeof_op, line, 1);
    else
        KN(lse_vjp_jvp_body_)(b, l0, w, incl, contig, sizeof_op, line, 0);
}
DEFINE_PANEL_KERNEL(KN(lse_vjp_jvp_panels_), KN(lse_vjp_jvp_panel_), 6, sizeof(T), sizeof(T),
                    sizeof(T), sizeof(T), sizeof(T), sizeof(T))

#if !LSE_COMPLEX
/* The backward walk for a single real line in tiles of SO_TILE from the end
 * (k = 0 the latest element), as the first-order lse_vjp_line_: the
 * weights are vectorised exps and Q, P two affine scans (simd.h) on the
 * same factors; a tile with an infinite y (or the y after it) takes the
 * panel's exact step with the +-inf counts. */
#define SO_TILE 256
#define SO_LOAD(dst, p, step, cnt)                          \
    do {                                                    \
        for (int64_t i_ = 0; i_ < (cnt); i_++)              \
            (dst)[i_] = LLD((p) + i_ * (step));             \
    } while (0)
#define SO_STORE(p, step, src, cnt)                         \
    do {                                                    \
        for (int64_t i_ = 0; i_ < (cnt); i_++)              \
            LST((p) + i_ * (step), (src)[i_]);              \
    } while (0)
SCAN_INLINE void KN(lse_vjp_jvp_line_)(const scan_block *b, const int incl)
{
    const int line = 1; /* SO_VEXP and lse_weight_ take libm exp in the exact step */
    const int64_t n = b->n, shift = incl ? 0 : 1, last = n - 1 - shift;
    const int64_t sx = b->step[SO_X], st = b->step[SO_T], sg = b->step[SO_G];
    const int64_t sgd = b->step[SO_GD], sxb = b->step[SO_XB], sxbd = b->step[SO_XBD];
    const int has_gd = b->ptr[SO_GD] != NULL;
    if (n == 0)
        return;
    if (shift) { /* no output depends on the last x */
        LST(b->ptr[SO_XB] + (n - 1) * sxb, 0.0);
        LST(b->ptr[SO_XBD] + (n - 1) * sxbd, 0.0);
    }
    if (last < 0)
        return;
    double count = 0.0; /* entries equal to +inf in x[0..i] */
    if (LLD(b->ptr[SO_XB] + last * sxb) == INFINITY)
        for (int64_t r = 0; r <= last; r++)
            count += LLD(b->ptr[SO_X] + r * sx) == INFINITY;
    _Alignas(32) double xs[SO_TILE], ts[SO_TILE], ys[SO_TILE], yds[SO_TILE], gs[SO_TILE],
        hs[SO_TILE], av[SO_TILE], qv[SO_TILE], pv[SO_TILE];
    double Q = 0.0, P = 0.0, ynext = 0.0, cnext = 0.0;
    for (int64_t stop = last + 1; stop > 0; stop -= SO_TILE) {
        const int64_t cnt = stop < SO_TILE ? stop : SO_TILE, top = stop - 1;
        SO_LOAD(xs, b->ptr[SO_X] + top * sx, -sx, cnt);
        SO_LOAD(ts, b->ptr[SO_T] + top * st, -st, cnt);
        SO_LOAD(ys, b->ptr[SO_XB] + top * sxb, -sxb, cnt);
        SO_LOAD(yds, b->ptr[SO_XBD] + top * sxbd, -sxbd, cnt);
        SO_LOAD(gs, b->ptr[SO_G] + (top + shift) * sg, -sg, cnt);
        if (has_gd)
            SO_LOAD(hs, b->ptr[SO_GD] + (top + shift) * sgd, -sgd, cnt);
        else
            for (int64_t k = 0; k < cnt; k++)
                hs[k] = 0.0;
        for (int64_t k = 0; k < cnt; k++)
            hs[k] -= gs[k] * yds[k];
        int finite = top == last || isfinite(ynext);
        for (int64_t k = 0; k < cnt; k++)
            finite &= isfinite(ys[k]) != 0;
        if (finite) {
            av[0] = top == last ? 0.0 : lse_exp(ys[0] - ynext, SO_PRECISE);
            for (int64_t k = 1; k < cnt; k++)
                av[k] = lse_exp(ys[k] - ys[k - 1], SO_PRECISE);
            Q = affine_scan(av, gs, qv, cnt, Q);
            P = affine_scan(av, hs, pv, cnt, P);
            for (int64_t k = 0; k < cnt; k++) {
                const double wv = lse_exp(xs[k] - ys[k], SO_PRECISE);
                const double xbv = wv * qv[k];
                yds[k] = ts[k] * xbv + wv * pv[k];
                xs[k] = xbv;
            }
            cnext = count;
        } else {
            for (int64_t k = 0; k < cnt; k++) {
                const int64_t r = top - k;
                const double xv = xs[k], yv = ys[k];
                const double c_here = yv == -INFINITY ? (double)(r + 1) : count;
                const double yn = k ? ys[k - 1] : ynext;
                if (r == last) {
                    Q = gs[k];
                    P = hs[k];
                } else {
                    const double a = KN(lse_weight_)(yv, yn, c_here, cnext, line);
                    Q = gs[k] + a * Q;
                    P = hs[k] + a * P;
                }
                const double wv = KN(lse_weight_)(xv, yv, 1.0, c_here, line);
                xs[k] = wv * Q;
                yds[k] = ts[k] * xs[k] + wv * P;
                cnext = c_here;
                if (xv == INFINITY)
                    count -= 1.0;
            }
        }
        ynext = ys[cnt - 1];
        SO_STORE(b->ptr[SO_XB] + top * sxb, -sxb, xs, cnt);
        SO_STORE(b->ptr[SO_XBD] + top * sxbd, -sxbd, yds, cnt);
    }
}
#undef SO_TILE
#undef SO_LOAD
#undef SO_STORE
#endif

static void KN(lse_vjp_jvp_)(const scan_block *b)
{
    /* pass 1: y and y_dot of the inclusive scan into x_bar, x_bar_dot */
    scan_block jb = so_pick(b, SO_X, SO_T, SO_XB, SO_XBD);
    jb.inclusive = 1;
    KN(lse_jvp_)(&jb);
#if !LSE_COMPLEX
    if (b->m == 1) {
        if (b->inclusive)
            KN(lse_vjp_jvp_line_)(b, 1);
        else
            KN(lse_vjp_jvp_line_)(b, 0);
        return;
    }
#endif
    KN(lse_vjp_jvp_panels_)(b);
}
#undef SO_PRECISE
#undef SO_VEXP
#undef SO_SUM_T
#undef SO_ZERO
#undef SO_CONJMUL

#endif
