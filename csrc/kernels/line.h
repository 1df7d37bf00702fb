/* line.h: cumsum, cumprod, cummax and cummin along one contiguous line
 * (m == 1, every operand at +-1 element per step) as in-register log-step
 * scans, for the dtypes whose rows load as four doubles (float32, float64:
 * NARROW_LOAD / NARROW_STORE defined).
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
#endif

#if defined(NARROW_LOAD)

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

/* cumsum (prod = 0) or cumprod (prod = 1) of operand 0 into operand 1, in
 * double, eight elements per step.  Reassociation moves results by a few
 * double ulp; both operands are loaded before either is stored, so y may
 * be x. */
SCAN_INLINE void KN(accumulate_line_)(const scan_block *b, const int prod, const int incl,
                                     const int back)
{
    const int64_t n = b->n, sz = back ? -(int64_t)sizeof(T) : (int64_t)sizeof(T);
    const v4d id = prod ? (v4d){1.0, 1.0, 1.0, 1.0} : (v4d){0.0, 0.0, 0.0, 0.0};
    const char *x = b->ptr[0];
    char *y = b->ptr[1];
    double S = prod ? 1.0 : 0.0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8, x += 8 * sz, y += 8 * sz) {
        v4d a, c;
        LINE_LOAD(a, x, back);
        LINE_LOAD(c, x + 4 * sz, back);
        a = LINE_COMBINE(prod, a, V4_SHIFT1(a, id));
        c = LINE_COMBINE(prod, c, V4_SHIFT1(c, id));
        a = LINE_COMBINE(prod, a, V4_SHIFT2(a, id));
        c = LINE_COMBINE(prod, c, V4_SHIFT2(c, id));
        c = LINE_COMBINE(prod, c, a[3]);
        v4d ra = LINE_COMBINE(prod, a, S), rc = LINE_COMBINE(prod, c, S);
        const double last = rc[3];
        if (!incl) { /* each output is the state before its element */
            rc = V4_SHIFT1(rc, V4_SPLAT(ra[3]));
            ra = V4_SHIFT1(ra, V4_SPLAT(S));
        }
        S = last;
        LINE_STORE(y, ra, back);
        LINE_STORE(y + 4 * sz, rc, back);
    }
    for (; i < n; i++, x += sz, y += sz) {
        const double next = LINE_COMBINE(prod, S, (double)LD(x));
        ST(y, incl ? next : S);
        S = next;
    }
}

/* ---- cummax / cummin ----
 * The scalar rule (a new element takes over when it compares >= / <= or is
 * NaN) picks the last maximum of a total preorder in which NaN is above
 * everything, so combining (left, right) = right if right takes over left,
 * else left, is associative and the log-step scan reproduces the owners,
 * the tie and signed-zero choices and the NaN rule exactly.  Each lane
 * carries a 64-bit payload with its value: the owner's index (forward with
 * indices) or the owner's tangent, as bits (JVP). */
#define LINE_TAKES(is_max, r, l) \
    ((v4i)((is_max) ? (r) >= (l) : (r) <= (l)) | (v4i)((r) != (r)))
#define LINE_SELECT(m, a, c) (((a) & (m)) | ((c) & ~(m)))
/* (v, p) = combine((lv, lp), (v, p)) */
#define LINE_ABSORB(is_max, v, p, lv, lp)                               \
    do {                                                                \
        const v4i take_ = LINE_TAKES(is_max, v, lv);                    \
        (v) = (v4d)LINE_SELECT(take_, (v4i)(v), (v4i)(lv));             \
        (p) = LINE_SELECT(take_, (p), (lp));                            \
    } while (0)

SCAN_INLINE void KN(extreme_line_)(const scan_block *b, const int is_max, const int mode,
                                  const int incl, const int back)
{
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
    v4i pos = (v4i){0, 1, 2, 3} * b->index_step + b->index_first;
    const int64_t pos_step = 4 * b->index_step;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8, x += 8 * sz, y += 8 * sz) {
        v4d a, c;
        v4i pa = pos, pc = pos + pos_step;
        LINE_LOAD(a, x, back);
        LINE_LOAD(c, x + 4 * sz, back);
        if (mode == LINE_TANGENT) {
            v4d ta, tc;
            LINE_LOAD(ta, t, back);
            LINE_LOAD(tc, t + 4 * sz, back);
            pa = (v4i)ta;
            pc = (v4i)tc;
            t += 8 * sz;
        }
        pos += 2 * pos_step;
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
    }
    double Sv = sv[0];
    int64_t Sp = sp[0];
    for (; i < n; i++, x += sz, y += sz) {
        const double v = (double)MLD(x);
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
        Sv = nv;
        Sp = np;
    }
}

#undef LINE_TAKES
#undef LINE_SELECT
#undef LINE_ABSORB
#undef LINE_COMBINE
#undef LINE_LOAD
#undef LINE_STORE
#undef LINE_LOAD_I
#undef LINE_STORE_I
#endif

#if defined(NARROW_LOAD) && HAS_DERIV
/* ---- cumprod derivatives on one line, in tiles ----
 * Both are affine recurrences, scanned with simd.h's affine_scan:
 *   JVP  D_i = x_i D_{i-1} + P_{i-1} t_i   (P itself: a = x, e = 0)
 *   VJP  S_i = g_i + x_{i+1} S_{i+1}, backwards, x_bar_i = E_i S_i with E
 *        the exclusive prefix product (accumulate_line_ leaves it in x_bar).
 * affine_scan composes up to eight factors before meeting the carry, which
 * changes nothing while the factors are finite and below 2^100 (no product
 * of eight can overflow); a tile holding an infinite, NaN or huge x is
 * walked one element at a time, so zeros and infinities give exactly the
 * panel kernel's results. */
#define PROD_TILE 256
#define PROD_TAME(v) (fabs(v) <= 0x1p100)
/* dst[i] = operand at p + i * step, as double; the two unit steps get their
 * own loops, which vectorise */
#define PROD_TILE_LOAD(dst, p, step, cnt)                               \
    do {                                                                \
        if ((step) == (int64_t)sizeof(T))                               \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                      \
                (dst)[i_] = (double)LD((p) + i_ * (int64_t)sizeof(T));  \
        else                                                            \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                      \
                (dst)[i_] = (double)LD((p) - i_ * (int64_t)sizeof(T));  \
    } while (0)
#define PROD_TILE_STORE(p, step, src, cnt)                              \
    do {                                                                \
        if ((step) == (int64_t)sizeof(T))                               \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                      \
                ST((p) + i_ * (int64_t)sizeof(T), (src)[i_]);           \
        else                                                            \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                      \
                ST((p) - i_ * (int64_t)sizeof(T), (src)[i_]);           \
    } while (0)

/* the affine scan of a tile, or the same recurrence one element at a time
 * when a factor, a weight or the carry is outside the tame range */
SCAN_INLINE double KN(prod_affine_)(const double *a, const double *e, double *out, int64_t cnt,
                                    double S, int tame)
{
    if (tame && isfinite(S))
        return affine_scan(a, e, out, cnt, S);
    for (int64_t i = 0; i < cnt; i++) {
        S = a[i] * S + e[i];
        out[i] = S;
    }
    return S;
}

/* operands x, t, y, y_dot, all at +-1 element per step */
SCAN_INLINE void KN(prod_jvp_line_)(const scan_block *b)
{
    const char *x = b->ptr[0], *t = b->ptr[1];
    char *y = b->ptr[2], *yd = b->ptr[3];
    const int64_t sx = b->step[0], st = b->step[1], sy = b->step[2], syd = b->step[3];
    const int incl = b->inclusive;
    _Alignas(32) double xs[PROD_TILE], zero[PROD_TILE], pv[PROD_TILE + 1], ev[PROD_TILE],
        dv[PROD_TILE + 1];
    memset(zero, 0, sizeof zero);
    double P = 1.0, D = 0.0;
    for (int64_t t0 = 0; t0 < b->n; t0 += PROD_TILE) {
        const int64_t cnt = b->n - t0 < PROD_TILE ? b->n - t0 : PROD_TILE;
        int tame = 1, finite = 1;
        PROD_TILE_LOAD(xs, x, sx, cnt);
        PROD_TILE_LOAD(ev, t, st, cnt);
        for (int64_t i = 0; i < cnt; i++)
            tame &= PROD_TAME(xs[i]);
        pv[0] = P;
        dv[0] = D;
        P = KN(prod_affine_)(xs, zero, pv + 1, cnt, P, tame);
        for (int64_t i = 0; i < cnt; i++) {
            ev[i] *= pv[i];
            finite &= isfinite(ev[i]);
        }
        D = KN(prod_affine_)(xs, ev, dv + 1, cnt, D, tame & finite);
        PROD_TILE_STORE(y, sy, pv + incl, cnt);
        PROD_TILE_STORE(yd, syd, dv + incl, cnt);
        x += cnt * sx;
        t += cnt * st;
        y += cnt * sy;
        yd += cnt * syd;
    }
}

/* operands x, y, g, x_bar; dir as line_direction_ gave it */
SCAN_INLINE void KN(prod_vjp_line_)(const scan_block *b, const int dir)
{
    const int64_t n = b->n;
    const int incl = b->inclusive;
    {
        scan_block e = block_pick(b, 0, 3, -1);
        e.inclusive = 0;
        LINE_CALL(KN(accumulate_line_), (&e), dir, 1);
    }
    /* Walked from the end in tiles; inside a tile k = 0 is the last element
     * and the arrays hold x_{i+1}, g_i (exclusive: g_{i+1}) and E_i at
     * i = stop - 1 - k.  Past the end S is 0, so the factor there is 1. */
    const int64_t sx = b->step[0], sg = b->step[2], sxb = b->step[3];
    const int64_t shift = incl ? 0 : 1;
    _Alignas(32) double av[PROD_TILE + 1], ev[PROD_TILE + 1], sv[PROD_TILE], xb[PROD_TILE];
    double S = 0.0;
    for (int64_t stop = n; stop > 0; stop -= PROD_TILE) {
        const int64_t cnt = stop < PROD_TILE ? stop : PROD_TILE;
        const int64_t last = stop - 1;
        int tame = 1;
        if (stop == n) { /* the elements past the end */
            av[0] = 1.0;
            PROD_TILE_LOAD(av + 1, b->ptr[0] + last * sx, -sx, cnt - 1);
            if (incl) {
                PROD_TILE_LOAD(ev, b->ptr[2] + last * sg, -sg, cnt);
            } else {
                ev[0] = 0.0;
                PROD_TILE_LOAD(ev + 1, b->ptr[2] + last * sg, -sg, cnt - 1);
            }
        } else {
            PROD_TILE_LOAD(av, b->ptr[0] + stop * sx, -sx, cnt);
            PROD_TILE_LOAD(ev, b->ptr[2] + (last + shift) * sg, -sg, cnt);
        }
        for (int64_t k = 0; k < cnt; k++)
            tame &= PROD_TAME(av[k]) & (isfinite(ev[k]) != 0);
        S = KN(prod_affine_)(av, ev, sv, cnt, S, tame);
        char *xb_last = b->ptr[3] + last * sxb;
        PROD_TILE_LOAD(xb, xb_last, -sxb, cnt);
        for (int64_t k = 0; k < cnt; k++)
            xb[k] *= sv[k];
        PROD_TILE_STORE(xb_last, -sxb, xb, cnt);
    }
    if (!incl) /* no output depends on the last x (and E there may be inf) */
        ST(b->ptr[3] + (n - 1) * sxb, 0.0);
}
#undef PROD_TILE_LOAD
#undef PROD_TILE_STORE
#undef PROD_TILE
#undef PROD_TAME
#endif
