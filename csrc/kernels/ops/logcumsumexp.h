/* ops/logcumsumexp.h: logcumsumexp for one floating dtype, real or complex
 * (kernels/instantiate.h): panels, single lines, totals of split lines, the
 * derivatives and its cells.  Traits: T, LLD (load as double or cdouble),
 * LST, LSE_COMPLEX.
 *
 * The state is the running-max affine recurrence (docs/performance.md): M is the
 * largest (real part) seen, S = sum exp(x - M), so y = M + log(S).  A new
 * maximum rescales S by exp(M_old - x); an element equal to M (both may be
 * infinite) adds exactly 1, which is what makes [inf, inf] -> inf and
 * [-inf, -inf] -> -inf.  Nothing underflows: S >= 1 once anything is seen.
 *
 * The JVP keeps U = sum exp(x - M) t on the same scale, so y_dot = U / S
 * with the very exponential the forward step computed: no global max, no
 * epsilon, and at +-inf the weights come out uniform over the entries equal
 * to y (docs/derivatives.md, "Edges").
 */

#if KIND == 'f' || KIND == 'c' /* integers promote to float64 in the binding */
#ifndef SCANAD_LSE_ONCE
#define SCANAD_LSE_ONCE
/* scan_split.combine: the state (M, S) of a piece followed by the next
 * one's, as lse_step_ would fold the next piece's elements in: equal
 * references (both may be infinite) add, a higher one rescales the other
 * sum (to 0 past an infinity); a NaN sum stays NaN */
static void lse_combine(scan_carry *acc, const scan_carry *next)
{
    if (next->v == acc->v) {
        acc->s += next->s;
    } else if (next->v > acc->v) {
        acc->s = acc->s * exp(acc->v - next->v) + next->s;
        acc->v = next->v;
    } else {
        acc->s += next->s * exp(next->v - acc->v);
    }
}
/* scan_split.reduce_share: the reduce's share of the forward's time, from
 * 1 and 2 threads on 2^24 elements of either dtype with equal pieces
 * ((1 + r) / 2 of the serial time): 0.44-0.46 */
#define LSE_REDUCE_SHARE 0.45
#endif

/* float64 results need the full-degree exp; float16/32 results (and
 * complex64) get one accurate to 2e-9, far below their ulp.  libm is left
 * to the complex kernels on single lines and to the exact step that real
 * line tiles with infinities fall back to, where nothing vectorises. */
#define LSE_PRECISE (sizeof(T) == 8 * (1 + LSE_COMPLEX))
#define VEXP(x) (line ? exp(x) : lse_exp(x, LSE_PRECISE))

/* The fast paths (finite tiles of a line, rows of a panel) keep a sum on a
 * reference R up to LSE_SPAN away from its running max M_i instead of on M_i.
 * exp(-span) must stay far above the smallest normal double, and the
 * rounding of x_i - R (up to ulp(span) / 2 when |R| < 2 span; exact
 * otherwise) is passed on to y_i as an absolute error: 4 keeps it within
 * 2 ulp(4) for float64 results, 64 within a hundred-millionth of a float32
 * ulp at 1. */
#define LSE_SPAN (LSE_PRECISE ? 4.0 : 64.0)

#if !LSE_COMPLEX
typedef double KN(lse_val_);

/* One step of the recurrence for the real case: returns the weight e of the
 * new element on the scale of the updated M; *rescale is what the old sums
 * are multiplied by. */
SCAN_INLINE double KN(lse_step_)(double v, double *M, double *S, double *rescale, const int line)
{
    /* written as selects so the row-streaming loops vectorise */
    const double m = *M;
    const int gt = v > m;
    const double e = v == m ? 1.0 : VEXP(-fabs(v - m));
    *rescale = gt ? e : 1.0;
    *S = gt ? *S * e + 1.0 : *S + e;
    *M = gt ? v : m;
    return gt ? 1.0 : e;
}
/* lse_log_plus, not M + log(S): the panels' fast rows compute it so, and a
 * lane must get the same bits whichever kind of row it is in */
#define LSE_OUT(M, S) (line ? (M) + log(S) : lse_log_plus(S, M, LSE_PRECISE, 0))
#else
typedef cdouble KN(lse_val_);

SCAN_INLINE cdouble KN(lse_step_)(cdouble v, double *M, cdouble *S, double *rescale, const int line)
{
    const double vr = creal(v);
    /* exp(-inf + iy) is 0 for every y, +-inf and NaN too (C99 G.6.3.1), where
     * cis(y) would be NaN: such an element adds nothing, not even to a -inf
     * prefix (a prefix of nothing but these is S = 0, y = -inf + 0i) */
    const cdouble phase = vr == -INFINITY && !isfinite(cimag(v)) ? CMPLX(0.0, 0.0) : cis(cimag(v));
    if (vr > *M) {
        double e = VEXP(*M - vr);
        *rescale = e;
        *S = *S * e + phase;
        *M = vr;
        return phase;
    }
    *rescale = 1.0;
    if (vr == *M) { /* also both infinite: exp(inf - inf) would be NaN */
        *S += phase;
        return phase;
    }
    {
        cdouble e = VEXP(vr - *M) * phase;
        *S += e;
        return e;
    }
}
#define LSE_OUT(M, S) ((M) + clog_principal(S))
#endif

#if LSE_COMPLEX
#define LSE_SUM_T cdouble
#define LSE_ZERO CMPLX(0.0, 0.0)
#else
#define LSE_SUM_T double
#define LSE_ZERO 0.0
#endif

#if !LSE_COMPLEX
/* Whether a row of a panel can take the fast step: every lane has seen a
 * finite value and holds a number (M is its reference, S >= 1 on it), and
 * the new value is finite or -inf and at most LSE_SPAN above M, so the
 * lane's sum stays on M: S += exp(x - M), no running max, no selects.  The
 * rows that fail (the first, a jump of the max, inf, NaN) take lse_step_,
 * which moves M to the new max, in the lanes that fail: the others take the
 * fast step there too, so that a lane's result does not depend on which
 * lanes share its panel (that changes with the thread count). */
#define LSE_LANE_IS_TAME(v, M, S) (((v) - (M) <= LSE_SPAN) & ((S) == (S)))
SCAN_INLINE int KN(lse_row_is_tame_)(const char *x, int64_t lx, int64_t w, const double *M,
                                     const double *S)
{
    /* the accumulators of tests on doubles are int64_t: with an int, GCC
     * packs each vector of 64-bit compare masks to 32 bits (five shuffles
     * per 8 elements) before the AND */
    int64_t tame = 1;
    for (int64_t l = 0; l < w; l++)
        tame &= LSE_LANE_IS_TAME(LLD(x + l * lx), M[l], S[l]);
    return tame != 0;
}
#endif

#if !LSE_COMPLEX
/* The forward panel's S_l, for float64 results: a lane is one running sum,
 * and its roundings, one per row, add up to several ulp of y on long
 * columns.  C keeps what they lost (Knuth's TwoSum, exact and free of
 * branches, as a weight may exceed S) and y is taken of S + C.  float16/32
 * results keep the plain sum, far below their ulp.  Returns the new S + C
 * for the log as S + (C + e), one addition after the loads: the TwoSum's
 * chain of five before the log made the loop slower (docs/performance.md). */
SCAN_INLINE double KN(lse_add_)(double *S, double *C, double e)
{
    const double old = *S, s = old + e;
    *S = s;
    if (!LSE_PRECISE)
        return s;
    const double ep = s - old;
    const double sum = old + (*C + e);
    *C += (old - (s - ep)) + (e - ep);
    return sum;
}
#define LSE_SUM(S, C) (LSE_PRECISE ? (S) + (C) : (S))
#endif

SCAN_INLINE void KN(lse_fwd_panel_)(PANEL_ARGS)
{
    const char *x = PANEL_BASE(0);
    char *y = PANEL_BASE(1);
    const int64_t lx = LANE(0), ly = LANE(1);
    STATE(double, M, 0);
    STATE(LSE_SUM_T, S, 1);
#if !LSE_COMPLEX
    STATE(double, C, 3); /* slot 2 is the row's weights */
#endif
    for (int64_t l = 0; l < w; l++) {
        M[l] = -INFINITY;
        S[l] = LSE_ZERO;
#if !LSE_COMPLEX
        C[l] = 0.0;
#endif
    }
    const int64_t ahead = panel_rows_ahead(b, w, sizeof(T), contig, line);
    for (int64_t r = 0; r < b->n; r++) {
        panel_prefetch_ahead(b, r, ahead, 0, x, w * (int64_t)sizeof(T));
#if !LSE_COMPLEX
        if (!line) {
            /* The row's weights exp(x - M) go to scratch while the same loop
             * tests the row (a lane that is not tame gets garbage there, never
             * used); then the sums and the log in a second loop: together the
             * exp's and the log's constants do not fit in the vector
             * registers. */
            double *const E = SLOT(double, 2);
            int64_t tame = 1;
            for (int64_t l = 0; l < w; l++) {
                const double d = LLD(x + l * lx) - M[l];
                tame &= (d <= LSE_SPAN) & (S[l] == S[l]);
                E[l] = lse_exp_bounded(d, LSE_PRECISE);
            }
            if (tame) {
                for (int64_t l = 0; l < w; l++) {
                    const double before = LSE_SUM(S[l], C[l]);
                    const double after = KN(lse_add_)(&S[l], &C[l], E[l]);
                    LST(y + l * ly, lse_log_plus(incl ? after : before, M[l], LSE_PRECISE, 1));
                }
                x += b->step[0];
                y += b->step[1];
                continue;
            }
        }
#endif
        for (int64_t l = 0; l < w; l++) {
            KN(lse_val_) v = LLD(x + l * lx);
            double rescale;
#if !LSE_COMPLEX
            if (!incl)
                LST(y + l * ly, LSE_OUT(M[l], LSE_SUM(S[l], C[l])));
            double after;
            if (!line && LSE_LANE_IS_TAME(v, M[l], S[l])) {
                after = KN(lse_add_)(&S[l], &C[l], lse_exp_bounded(v - M[l], LSE_PRECISE));
            } else if (LSE_PRECISE) {
                /* lse_step_ with the loss kept: the old sum and its loss
                 * rescaled (with the product's rounding where the FMA makes
                 * it exact), then the new weight added as above */
                const double m = M[l];
                const int gt = v > m;
                const double e = v == m ? 1.0 : VEXP(-fabs(v - m));
                const double a = gt ? e : 1.0, add = gt ? 1.0 : e;
                const double p = S[l] * a;
                C[l] = VM_FMA(C[l], a, VM_FMA(S[l], a, -p));
                S[l] = p;
                M[l] = gt ? v : m;
                after = KN(lse_add_)(&S[l], &C[l], add);
            } else {
                KN(lse_step_)(v, &M[l], &S[l], &rescale, line);
                after = S[l];
            }
            if (incl)
                LST(y + l * ly, LSE_OUT(M[l], after));
#else
            if (!incl)
                LST(y + l * ly, LSE_OUT(M[l], S[l]));
            KN(lse_step_)(v, &M[l], &S[l], &rescale, line);
            if (incl)
                LST(y + l * ly, LSE_OUT(M[l], S[l]));
#endif
        }
        x += b->step[0];
        y += b->step[1];
    }
}
/* float64 panels of 1024 lines: a row's x, y and the four state arrays
 * then take 48 KiB instead of 192; float32, and the float64 JVP and VJP
 * panels, are fastest at the full width (docs/performance.md) */
#define LSE_FWD_WIDTH (sizeof(T) == 8 && !LSE_COMPLEX ? 1024 : SCAN_PANEL)
DEFINE_PANEL_KERNEL_WIDTH(KN(lse_fwd_panels_), KN(lse_fwd_panel_), LSE_FWD_WIDTH, 2, sizeof(T),
                          sizeof(T))
#undef LSE_FWD_WIDTH

#if !LSE_COMPLEX
/* A single line in tiles of LSE_TILE, each in four passes so that the
 * exponentials and logarithms vectorise along the line:
 *   1. the running max before and after each element (a cheap scalar chain),
 *   2. one exp per element: the rescale a_i and the new weight e_i of the
 *      step S_i = a_i S_{i-1} + e_i (exactly lse_step_'s cases),
 *   3. that affine recurrence as an in-register log-step scan (simd.h), and
 *      for the JVP the same one for U_i = a_i U_{i-1} + e_i t_i,
 *   4. y_i = M_i + log(S_i), y_dot_i = U_i / S_i.
 * Operands: x, y (forward) or x, t, y, y_dot (JVP).  The tile buffers live
 * on the stack (9 x 2 KiB). */
#define LSE_TILE 256
/* contiguous loads and stores, up or down in memory (a reversed line), get
 * their own loops: those convert float32 <-> float64 in vectors */
#define LSE_TILE_LOAD(dst, p, step, cnt)                         \
    do {                                                          \
        if ((step) == (int64_t)sizeof(T))                         \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                \
                (dst)[i_] = LLD((p) + i_ * (int64_t)sizeof(T));   \
        else if ((step) == -(int64_t)sizeof(T))                   \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                \
                (dst)[i_] = LLD((p) - i_ * (int64_t)sizeof(T));   \
        else                                                      \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                \
                (dst)[i_] = LLD((p) + i_ * (step));               \
    } while (0)
#define LSE_TILE_STORE(p, step, src, cnt)                         \
    do {                                                          \
        if ((step) == (int64_t)sizeof(T))                         \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                \
                LST((p) + i_ * (int64_t)sizeof(T), (src)[i_]);    \
        else if ((step) == -(int64_t)sizeof(T))                   \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                \
                LST((p) - i_ * (int64_t)sizeof(T), (src)[i_]);    \
        else                                                      \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                \
                LST((p) + i_ * (step), (src)[i_]);                \
    } while (0)

/* ev[i] = exp(x_i - R) for a tile of doubles xv, or of floats at src
 * running up; returns whether each x_i - R <= LSE_SPAN (not for +inf and
 * NaN; -inf gets weight 0). */
SCAN_INLINE int KN(lse_weights_tame_)(const double *xv, const char *src, int64_t cnt, double R,
                                      double *ev)
{
    int64_t tame = 1;
    if (src) {
        for (int64_t i = 0; i < cnt; i++) {
            float f;
            memcpy(&f, src + 4 * i, 4);
            const double d = (double)f - R;
            tame &= d <= LSE_SPAN;
            ev[i] = lse_exp_bounded(d, LSE_PRECISE);
        }
    } else {
        for (int64_t i = 0; i < cnt; i++) {
            const double d = xv[i] - R;
            tame &= d <= LSE_SPAN;
            ev[i] = lse_exp_bounded(d, LSE_PRECISE);
        }
    }
    return tame != 0;
}

#define LSE_SPECULATION_PAUSE 255
#if IS_F32
#define LSE_WIDEN_F32 1
#else
#define LSE_WIDEN_F32 0
#endif
/* total (NULL or not at every call site, so each variant compiles apart):
 * only the state (M, S) at the end of the line, into *total, for a piece of
 * a line split between threads: the weights and their sums without the
 * prefix sums, logs and stores (LSE_REDUCE_SHARE of the scan's time) */
SCAN_INLINE void KN(lse_line_)(const scan_block *b, const int jvp, scan_carry *total)
{
    const int reduce = total != NULL;
    const char *x = b->ptr[0], *t = jvp ? b->ptr[1] : NULL;
    char *y = b->ptr[jvp ? 2 : 1], *yd = jvp ? b->ptr[3] : NULL;
    const int64_t sx = b->step[0], st = jvp ? b->step[1] : 0;
    const int64_t sy = b->step[jvp ? 2 : 1], syd = jvp ? b->step[3] : 0;
    const int incl = b->inclusive;
    _Alignas(32) double xs[LSE_TILE], pm[LSE_TILE + 1], av[LSE_TILE], ev[LSE_TILE],
        sv[LSE_TILE + 1], out[LSE_TILE], ts[LSE_TILE], uv[LSE_TILE + 1];
    /* M is the reference the sums S and U are on: the running max, or up
     * to LSE_SPAN below it after tiles that kept an earlier one */
    double M = b->carry ? b->carry->v : -INFINITY, S = b->carry ? b->carry->s : 0.0, U = 0.0;
    int skip = 0;
    for (int64_t t0 = 0; t0 < b->n; t0 += LSE_TILE) {
        const int64_t cnt = b->n - t0 < LSE_TILE ? b->n - t0 : LSE_TILE;
        /* the tile as doubles: a float64 line running up in memory is read
         * where it is (no copy to xs), a float32 one converted in the
         * loop that first reads it, others are first loaded to xs.  Every
         * read of the tile comes before y is written, so y may be x. */
        const int f64_up = sizeof(T) == 8 && sx == 8;
        const int f32_up = LSE_WIDEN_F32 && sx == 4;
        const double *xv = f64_up ? (const double *)(const void *)x : xs;
        if (!f64_up && !f32_up)
            LSE_TILE_LOAD(xs, x, sx, cnt);
        int fast = 0;
        double R = M, scale = 1.0;
        if (skip == 0 && M > -INFINITY && S == S) {
            /* Speculate that the tile stays on the reference the sums are
             * already on: each x_i - M at most LSE_SPAN above it (which
             * also rules out +inf and NaN; -inf gets weight 0), tested in
             * the exp's loop, so no pass for the max.  A tile that fails
             * starts over below, and speculation then pauses for 255 tiles,
             * long enough that a line that keeps rising loses nothing to
             * failed tiles (docs/performance.md, "logcumsumexp"). */
            fast = f32_up ? KN(lse_weights_tame_)(NULL, x, cnt, M, ev)
                          : KN(lse_weights_tame_)(xv, NULL, cnt, M, ev);
            skip = fast ? 0 : LSE_SPECULATION_PAUSE;
        } else if (skip > 0) {
            skip--;
        }
        if (!fast) {
            double top;
            /* a float32 tile is widened to xs only here, where it is read
             * more than once */
            const int finite = f32_up ? tile_widen_max_finite(xs, x, cnt, &top)
                                      : tile_max_finite(xv, cnt, &top);
            /* Every element finite: the tile's sums go on one reference R,
             * the largest value so far, so that there is no running max, the
             * weights exp(x_i - R) are one select-free exp and S is a plain
             * prefix sum.  That holds S_i >= exp(M_i - R), which stays far
             * from underflow while the max before the tile (or its first
             * element) is within LSE_SPAN of R; lse_log_plus adds R without
             * rounding log S_i on its own. */
            R = top > M ? top : M;
            const double first = M == -INFINITY ? xv[0] : M;
            if (finite && R - first <= LSE_SPAN && S == S) { /* S is NaN after a NaN */
                /* at a line's start the reference is its first element, not
                 * the tile's max: S_0 = exp(0) = 1 exactly, so y_0 = x_0
                 * exactly, where R + log(exp(x_0 - R)) rounds twice */
                if (M == -INFINITY)
                    R = first;
                scale = lse_exp(M - R, LSE_PRECISE);
                (void)KN(lse_weights_tame_)(xv, NULL, cnt, R, ev); /* all <= R + LSE_SPAN */
                fast = 1;
            }
        }
        if (fast && reduce) {
            S = S * scale + vector_sum(ev, cnt);
            M = R;
            x += cnt * sx;
            continue;
        }
        if (fast) {
            sv[0] = S * scale;
            S = prefix_sum(ev, sv + 1, cnt, sv[0]);
            M = R;
            /* S_i > 0 but for the exclusive first output of a line.
             * A contiguous float64 y is written by the log's own loop,
             * saving a pass; for float32 the narrowing in that loop costs
             * more than the pass it saves */
            if (sizeof(T) == 8 && sy == 8) {
                for (int64_t i = 0; i < cnt; i++)
                    LST(y + i * 8, lse_log_plus(sv[i + incl], R, LSE_PRECISE, 1));
                if (sv[incl] == 0.0)
                    LST(y, -INFINITY);
            } else {
                for (int64_t i = 0; i < cnt; i++)
                    out[i] = lse_log_plus(sv[i + incl], R, LSE_PRECISE, 1);
                if (sv[incl] == 0.0)
                    out[0] = -INFINITY;
                LSE_TILE_STORE(y, sy, out, cnt);
            }
            if (jvp) {
                LSE_TILE_LOAD(ts, t, st, cnt);
                for (int64_t i = 0; i < cnt; i++)
                    ts[i] *= ev[i];
                uv[0] = U * scale;
                U = prefix_sum(ts, uv + 1, cnt, uv[0]);
                for (int64_t i = 0; i < cnt; i++)
                    out[i] = uv[i + incl] / sv[i + incl];
                if (!incl && t0 == 0)
                    out[0] = 0.0;
                LSE_TILE_STORE(yd, syd, out, cnt);
                t += cnt * st;
                yd += cnt * syd;
            }
            x += cnt * sx;
            y += cnt * sy;
            continue;
        }
        pm[0] = M;
        for (int64_t i = 0; i < cnt; i++) {
            M = xv[i] > M ? xv[i] : M;
            pm[i + 1] = M;
        }
        for (int64_t i = 0; i < cnt; i++) {
            const double v = xv[i], m = pm[i];
            const int gt = v > m;
            const double e = lse_exp(v == m ? 0.0 : -fabs(v - m), LSE_PRECISE);
            av[i] = gt ? e : 1.0;
            ev[i] = gt ? 1.0 : e;
        }
        sv[0] = S;
        S = affine_scan(av, ev, sv + 1, cnt, S);
        if (reduce) {
            x += cnt * sx;
            continue;
        }
        for (int64_t i = 0; i < cnt; i++)
            out[i] = pm[i + incl] + lse_log(sv[i + incl], LSE_PRECISE);
        LSE_TILE_STORE(y, sy, out, cnt);
        if (jvp) {
            LSE_TILE_LOAD(ts, t, st, cnt);
            for (int64_t i = 0; i < cnt; i++)
                ts[i] *= ev[i];
            uv[0] = U;
            U = affine_scan(av, ts, uv + 1, cnt, U);
            for (int64_t i = 0; i < cnt; i++)
                out[i] = uv[i + incl] / sv[i + incl];
            if (!incl && t0 == 0)
                out[0] = 0.0; /* the exclusive first output has no inputs */
            LSE_TILE_STORE(yd, syd, out, cnt);
            t += cnt * st;
            yd += cnt * syd;
        }
        x += cnt * sx;
        y += cnt * sy;
    }
    if (reduce) {
        total->v = M;
        total->s = S;
        total->i = 0;
    }
}

static void KN(lse_fwd_)(const scan_block *b)
{
    if (b->m == 1)
        KN(lse_line_)(b, 0, NULL);
    else
        KN(lse_fwd_panels_)(b);
}
#if HAS_NARROW
/* scan_split.reduce: lse_line_ takes every layout of a line */
static int KN(lse_reduce_)(const scan_block *b, scan_carry *total)
{
    KN(lse_line_)(b, 0, total);
    return 1;
}
#endif
#else
static void KN(lse_fwd_)(const scan_block *b)
{
    KN(lse_fwd_panels_)(b);
}
#endif

#if HAS_DERIV
#if LSE_COMPLEX
/* S = 0 only after elements exp maps to 0 (see lse_step_): y = -inf there
 * whatever finite change the inputs get, so y_dot = 0, not 0 / 0 */
SCAN_INLINE cdouble KN(lse_cdiv_)(cdouble u, cdouble s)
{
    return creal(s) == 0.0 && cimag(s) == 0.0 ? CMPLX(0.0, 0.0) : cdiv(u, s);
}
#define LSE_DIV(u, s) KN(lse_cdiv_)(u, s)
#define LSE_MUL(a, b) cmul(a, b)
#define LSE_CONJMUL(a, b) cconjmul(a, b)
#else
#define LSE_DIV(u, s) ((u) / (s))
#define LSE_MUL(a, b) ((a) * (b))
#define LSE_CONJMUL(a, b) ((a) * (b))
#endif

/* JVP operands x, t, y, y_dot. */
SCAN_INLINE void KN(lse_jvp_panel_)(PANEL_ARGS)
{
    const char *x = PANEL_BASE(0), *t = PANEL_BASE(1);
    char *y = PANEL_BASE(2), *yd = PANEL_BASE(3);
    const int64_t lx = LANE(0), lt = LANE(1), ly = LANE(2), lyd = LANE(3);
    STATE(double, M, 0);
    STATE(LSE_SUM_T, S, 1);
    STATE(LSE_SUM_T, U, 2);
    for (int64_t l = 0; l < w; l++) {
        M[l] = -INFINITY;
        S[l] = LSE_ZERO;
        U[l] = LSE_ZERO;
    }
    const int64_t ahead = panel_rows_ahead(b, w, sizeof(T), contig, line);
    for (int64_t r = 0; r < b->n; r++) {
        panel_prefetch_ahead(b, r, ahead, 0, x, w * (int64_t)sizeof(T));
        panel_prefetch_ahead(b, r, ahead, 1, t, w * (int64_t)sizeof(T));
#if !LSE_COMPLEX
        if (!line && r > 0 && KN(lse_row_is_tame_)(x, lx, w, M, S)) {
            /* separate loops, as in the forward */
            if (!incl)
                for (int64_t l = 0; l < w; l++) {
                    LST(y + l * ly, lse_log_plus(S[l], M[l], LSE_PRECISE, 1));
                    LST(yd + l * lyd, U[l] / S[l]);
                }
            for (int64_t l = 0; l < w; l++) {
                const double e = lse_exp_bounded(LLD(x + l * lx) - M[l], LSE_PRECISE);
                S[l] += e;
                U[l] += e * LLD(t + l * lt);
            }
            if (incl)
                for (int64_t l = 0; l < w; l++) {
                    LST(y + l * ly, lse_log_plus(S[l], M[l], LSE_PRECISE, 1));
                    LST(yd + l * lyd, U[l] / S[l]);
                }
            x += b->step[0];
            t += b->step[1];
            y += b->step[2];
            yd += b->step[3];
            continue;
        }
#endif
        for (int64_t l = 0; l < w; l++) {
            KN(lse_val_) v = LLD(x + l * lx), tv = LLD(t + l * lt);
            double rescale;
            if (!incl) {
                /* the exclusive first output has no inputs: its row is zero */
                LST(y + l * ly, LSE_OUT(M[l], S[l]));
                LST(yd + l * lyd, r == 0 ? LSE_ZERO : LSE_DIV(U[l], S[l]));
            }
#if !LSE_COMPLEX
            if (!line && LSE_LANE_IS_TAME(v, M[l], S[l])) {
                const double e = lse_exp_bounded(v - M[l], LSE_PRECISE);
                S[l] += e;
                U[l] += e * tv;
            } else
#endif
            {
                KN(lse_val_) e = KN(lse_step_)(v, &M[l], &S[l], &rescale, line);
                U[l] = U[l] * rescale + LSE_MUL(e, tv);
            }
            if (incl) {
                LST(y + l * ly, LSE_OUT(M[l], S[l]));
                LST(yd + l * lyd, LSE_DIV(U[l], S[l]));
            }
        }
        x += b->step[0];
        t += b->step[1];
        y += b->step[2];
        yd += b->step[3];
    }
}
DEFINE_PANEL_KERNEL(KN(lse_jvp_panels_), KN(lse_jvp_panel_), 4, sizeof(T), sizeof(T),
                    sizeof(T), sizeof(T))

static void KN(lse_jvp_)(const scan_block *b)
{
#if !LSE_COMPLEX
    if (b->m == 1) {
        KN(lse_line_)(b, 1, NULL);
        return;
    }
#endif
    KN(lse_jvp_panels_)(b);
}

/* Weight exp(a - b) of docs/derivatives.md for the VJP.  For a real infinite
 * b the weight follows the "Edges" limit: c_a / c_b where c counts the prefix
 * entries equal to b (the caller passes them). */
#if !LSE_COMPLEX
SCAN_INLINE double KN(lse_weight_)(double a, double bb, double ca, double cb, const int line)
{
    if (bb == INFINITY || bb == -INFINITY)
        return a == bb ? ca / cb : 0.0;
    return VEXP(a - bb);
}
#endif

#if !LSE_COMPLEX
/* Whether a row of the VJP panel can skip the +-inf counts and selects: y
 * here and in the row after it finite in every lane (then the weights are
 * plain exponentials, as lse_weight_ computes them), and x not NaN. */
SCAN_INLINE int KN(lse_vjp_row_is_tame_)(const char *x, int64_t lx, const char *y, int64_t ly,
                                         int64_t w, const double *ynext)
{
    int64_t tame = 1;
    for (int64_t l = 0; l < w; l++) {
        const double yv = LLD(y + l * ly);
        tame &= (fabs(yv) < INFINITY) & (fabs(ynext[l]) < INFINITY) & (LLD(x + l * lx) - yv <= 1.0);
    }
    return tame != 0;
}
#endif

/* VJP operands x, y, g, x_bar; walks backwards:
 *   Q_i = g_i + conj(w(y_i, y_{i+1})) Q_{i+1},  x_bar_i = conj(w(x_i, y_i)) Q_i.
 * An exclusive scan is the inclusive one of x[0..n-2] read one row later:
 * y_inc[i] = y[i+1], g_inc[i] = g[i+1]; no output depends on x[n-1]. */
SCAN_INLINE void KN(lse_vjp_panel_)(PANEL_ARGS)
{
    const int64_t lx = LANE(0), ly = LANE(1), lg = LANE(2), lxb = LANE(3);
    const int64_t n = b->n, shift = incl ? 0 : 1, last = n - 1 - shift;
    STATE(LSE_SUM_T, Q, 0);
    STATE(KN(lse_val_), ynext, 1);
#if !LSE_COMPLEX
    STATE(double, count, 2); /* entries equal to +inf in x[0..i] */
    STATE(double, cnext, 3); /* entries equal to y_{i+1} among x[0..i+1] */
#endif
    if (n == 0)
        return;
    if (shift) {
        char *xb = PANEL_LAST(3);
        for (int64_t l = 0; l < w; l++)
            LST(xb + l * lxb, LSE_ZERO);
    }
    if (last < 0)
        return;
#if !LSE_COMPLEX
    {
        /* +inf only ever forms a suffix of y: count its entries first, which
         * costs a pass only for the lines that end at +inf. */
        const char *ylast = PANEL_LAST(1);
        for (int64_t l = 0; l < w; l++) {
            count[l] = 0.0;
            if (LLD(ylast + l * ly) == INFINITY) {
                const char *x = PANEL_BASE(0) + l * lx;
                for (int64_t r = 0; r <= last; r++, x += b->step[0])
                    count[l] += LLD(x) == INFINITY;
            }
        }
    }
#endif
    {
        const char *x = PANEL_BASE(0) + last * b->step[0];
        const char *y = PANEL_BASE(1) + (last + shift) * b->step[1];
        const char *g = PANEL_BASE(2) + (last + shift) * b->step[2];
        char *xb = PANEL_BASE(3) + last * b->step[3];
        for (int64_t r = last; r >= 0; r--) {
#if !LSE_COMPLEX
            /* the rows run down in memory, which the hardware prefetchers
             * follow poorly when rows are short: ask for the row four ahead */
            if (!line && contig && r >= 4) {
                panel_prefetch_row(x - 4 * b->step[0], w * (int64_t)sizeof(T));
                panel_prefetch_row(y - 4 * b->step[1], w * (int64_t)sizeof(T));
                panel_prefetch_row(g - 4 * b->step[2], w * (int64_t)sizeof(T));
            }
            if (!line && r < last && KN(lse_vjp_row_is_tame_)(x, lx, y, ly, w, ynext)) {
                for (int64_t l = 0; l < w; l++) {
                    const double yv = LLD(y + l * ly);
                    Q[l] = LLD(g + l * lg) + lse_exp_bounded(yv - ynext[l], LSE_PRECISE) * Q[l];
                    LST(xb + l * lxb, lse_exp_bounded(LLD(x + l * lx) - yv, LSE_PRECISE) * Q[l]);
                    ynext[l] = yv;
                }
                x -= b->step[0];
                y -= b->step[1];
                g -= b->step[2];
                xb -= b->step[3];
                continue;
            }
#endif
            for (int64_t l = 0; l < w; l++) {
                KN(lse_val_) xv = LLD(x + l * lx), yv = LLD(y + l * ly), gv = LLD(g + l * lg);
#if !LSE_COMPLEX
                /* entries equal to y_i among x[0..i]: i+1 in the -inf prefix,
                 * the running +inf count in the +inf suffix */
                double c_here = yv == -INFINITY ? (double)(r + 1) : count[l];
                if (r == last)
                    Q[l] = gv;
                else
                    Q[l] = gv + KN(lse_weight_)(yv, ynext[l], c_here, cnext[l], line) * Q[l];
                LST(xb + l * lxb, KN(lse_weight_)(xv, yv, 1.0, c_here, line) * Q[l]);
                cnext[l] = c_here;
                if (xv == INFINITY)
                    count[l] -= 1.0;
#else
                if (r == last)
                    Q[l] = gv;
                else
                    Q[l] = gv + LSE_CONJMUL(VEXP(creal(yv) - creal(ynext[l])) *
                                                cis(cimag(yv) - cimag(ynext[l])),
                                            Q[l]);
                /* weight 0 in every output: x = -inf + i(+-inf or NaN), whose
                 * exp is 0, or x = -inf under a finite y (the later y are
                 * not below it); a NaN Q (a NaN y further on) stays out */
                const int dead = creal(xv) == -INFINITY &&
                                 (!isfinite(cimag(xv)) || creal(yv) > -INFINITY);
                LST(xb + l * lxb,
                    dead ? LSE_ZERO
                         : LSE_CONJMUL(VEXP(creal(xv) - creal(yv)) * cis(cimag(xv) - cimag(yv)),
                                       Q[l]));
#endif
                ynext[l] = yv;
            }
            x -= b->step[0];
            y -= b->step[1];
            g -= b->step[2];
            xb -= b->step[3];
        }
    }
}
DEFINE_PANEL_KERNEL(KN(lse_vjp_panels_), KN(lse_vjp_panel_), 4, sizeof(T), sizeof(T),
                    sizeof(T), sizeof(T))

#if !LSE_COMPLEX
/* The same walk for a single real line, in tiles of LSE_TILE from the end
 * (inside a tile k = 0 is the latest element): the weights
 * a_k = exp(y_i - y_{i+1}) and w_k = exp(x_i - y_i) are vectorised exps and
 * Q_i = g_i + a_k Q_{i+1} is simd.h's affine scan (a_k <= 1).  A tile where
 * some y, or the y after it, is infinite or NaN takes the panel's step
 * (libm exp, the +-inf counts of docs/derivatives.md); +-inf y only occur in a
 * -inf prefix and a +inf suffix, so the counts do not change in the others.
 * Weights below 2^-1022 come out 0 instead of subnormal. */
SCAN_INLINE void KN(lse_vjp_line_)(const scan_block *b)
{
    const int line = 1; /* VEXP is libm in the fallback */
    const int64_t n = b->n, shift = b->inclusive ? 0 : 1, last = n - 1 - shift;
    const int64_t sx = b->step[0], sy = b->step[1], sg = b->step[2], sxb = b->step[3];
    if (n == 0)
        return;
    if (shift) /* no output depends on the last x */
        LST(b->ptr[3] + (n - 1) * sxb, 0.0);
    if (last < 0)
        return;
    double count = 0.0; /* entries equal to +inf in x[0..i] */
    if (LLD(b->ptr[1] + (last + shift) * sy) == INFINITY)
        for (int64_t r = 0; r <= last; r++)
            count += LLD(b->ptr[0] + r * sx) == INFINITY;
    _Alignas(32) double xs[LSE_TILE], ys[LSE_TILE], gs[LSE_TILE], av[LSE_TILE], qv[LSE_TILE];
    double Q = 0.0, ynext = 0.0, cnext = 0.0;
    for (int64_t stop = last + 1; stop > 0; stop -= LSE_TILE) {
        const int64_t cnt = stop < LSE_TILE ? stop : LSE_TILE, top = stop - 1;
        LSE_TILE_LOAD(xs, b->ptr[0] + top * sx, -sx, cnt);
        LSE_TILE_LOAD(ys, b->ptr[1] + (top + shift) * sy, -sy, cnt);
        LSE_TILE_LOAD(gs, b->ptr[2] + (top + shift) * sg, -sg, cnt);
        int finite = top == last || isfinite(ynext);
        for (int64_t k = 0; k < cnt; k++)
            finite &= isfinite(ys[k]) != 0;
        if (finite) {
            av[0] = top == last ? 0.0 : lse_exp(ys[0] - ynext, LSE_PRECISE);
            for (int64_t k = 1; k < cnt; k++)
                av[k] = lse_exp(ys[k] - ys[k - 1], LSE_PRECISE);
            Q = affine_scan(av, gs, qv, cnt, Q);
            for (int64_t k = 0; k < cnt; k++)
                xs[k] = lse_exp(xs[k] - ys[k], LSE_PRECISE) * qv[k];
            cnext = count;
        } else {
            for (int64_t k = 0; k < cnt; k++) {
                const int64_t r = top - k;
                const double xv = xs[k], yv = ys[k];
                /* entries equal to y_i among x[0..i], as in the panel */
                const double c_here = yv == -INFINITY ? (double)(r + 1) : count;
                const double yn = k ? ys[k - 1] : ynext;
                Q = r == last ? gs[k] : gs[k] + KN(lse_weight_)(yv, yn, c_here, cnext, line) * Q;
                xs[k] = KN(lse_weight_)(xv, yv, 1.0, c_here, line) * Q;
                cnext = c_here;
                if (xv == INFINITY)
                    count -= 1.0;
            }
        }
        ynext = ys[cnt - 1];
        LSE_TILE_STORE(b->ptr[3] + top * sxb, -sxb, xs, cnt);
    }
}

static void KN(lse_vjp_)(const scan_block *b)
{
    if (b->m == 1)
        KN(lse_vjp_line_)(b);
    else
        KN(lse_vjp_panels_)(b);
}
#else
static void KN(lse_vjp_)(const scan_block *b)
{
    KN(lse_vjp_panels_)(b);
}
#endif
#undef LSE_TILE_LOAD
#undef LSE_TILE_STORE
#undef LSE_WIDEN_F32
#undef LSE_SPECULATION_PAUSE
#undef LSE_DIV
#undef LSE_MUL
#undef LSE_CONJMUL
#endif

#undef LSE_OUT
#undef LSE_PRECISE
#undef VEXP
#undef LSE_SUM_T
#undef LSE_SUM
#undef LSE_ZERO

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
/* a line walked back runs down in memory (or up, reversed): each
 * contiguous direction its own loop, which converts in vectors (a loop with
 * the step a variable ran one element at a time; strided operands still
 * take it), and the tile two ahead asked for
 * meanwhile, since the hardware prefetchers follow the six streams going
 * down poorly */
#define SO_LOAD(dst, p, step, cnt)                                         \
    do {                                                                   \
        for (int64_t i_ = 0; i_ < (cnt); i_ += 64 / (int64_t)sizeof(T))    \
            __builtin_prefetch((p) + (i_ + 2 * SO_TILE) * (step));         \
        if ((step) == -(int64_t)sizeof(T))                                 \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                         \
                (dst)[i_] = LLD((p) - i_ * (int64_t)sizeof(T));            \
        else if ((step) == (int64_t)sizeof(T))                             \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                         \
                (dst)[i_] = LLD((p) + i_ * (int64_t)sizeof(T));            \
        else                                                               \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                         \
                (dst)[i_] = LLD((p) + i_ * (step));                        \
    } while (0)
#define SO_STORE(p, step, src, cnt)                                        \
    do {                                                                   \
        if ((step) == -(int64_t)sizeof(T))                                 \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                         \
                LST((p) - i_ * (int64_t)sizeof(T), (src)[i_]);             \
        else if ((step) == (int64_t)sizeof(T))                             \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                         \
                LST((p) + i_ * (int64_t)sizeof(T), (src)[i_]);             \
        else                                                               \
            for (int64_t i_ = 0; i_ < (cnt); i_++)                         \
                LST((p) + i_ * (step), (src)[i_]);                         \
    } while (0)
#ifndef SCANAD_LSE_SCAN2_ONCE
#define SCANAD_LSE_SCAN2_ONCE
/* simd.h's affine_scan twice on the same factors a: q_i = a_i q_{i-1} + e_i
 * and p_i = a_i p_{i-1} + f_i, the groups' products shared */
static inline void lse_affine_scan2(const double *a, const double *e, const double *f, double *qo,
                                    double *po, int64_t cnt, double *Q, double *P)
{
    double q = *Q, p = *P;
    int64_t i = 0;
    for (; i + 8 <= cnt && fabs(q) <= INFINITY && fabs(p) <= INFINITY; i += 8) {
        v4d x, x2, B, B2, C, C2, P1, P2, Q1, Q2;
        V4_LOAD(x, a + i);
        V4_LOAD(x2, a + i + 4);
        V4_LOAD(B, e + i);
        V4_LOAD(B2, e + i + 4);
        V4_LOAD(C, f + i);
        V4_LOAD(C2, f + i + 4);
        affine_group_products(&x, &x2, &P1, &P2, &Q1, &Q2, 0);
        affine_group_offsets(&x, &x2, &P1, &Q1, &Q2, &B, &B2, 0);
        affine_group_offsets(&x, &x2, &P1, &Q1, &Q2, &C, &C2, 0);
        const v4d whole2 = Q2 * P2[3];
        const v4d s = P2 * q + B, s2 = whole2 * q + B2;
        const v4d u = P2 * p + C, u2 = whole2 * p + C2;
        V4_STORE(qo + i, s);
        V4_STORE(qo + i + 4, s2);
        V4_STORE(po + i, u);
        V4_STORE(po + i + 4, u2);
        q = s2[3];
        p = u2[3];
    }
    for (; i < cnt; i++) {
        q = a[i] * q + e[i];
        p = a[i] * p + f[i];
        qo[i] = q;
        po[i] = p;
    }
    *Q = q;
    *P = p;
}
#endif
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
            lse_affine_scan2(av, gs, hs, qv, pv, cnt, &Q, &P);
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

static const scan_cell KN(lse_cells_)[SCAN_NUM_MODES] = {
#if HAS_NARROW
    [MODE_FORWARD] = {.kernel = KN(lse_fwd_),
                      .split = {KN(lse_reduce_), lse_combine, LSE_REDUCE_SHARE}},
#else
    [MODE_FORWARD] = {.kernel = KN(lse_fwd_)},
#endif
    [MODE_JVP] = {.kernel = KN(lse_jvp_)},
    [MODE_VJP] = {.kernel = KN(lse_vjp_), .walks_back = 1},
    [MODE_VJP_JVP] = {.kernel = KN(lse_vjp_jvp_), .walks_back = 1},
};
#else
static const scan_cell KN(lse_cells_)[SCAN_NUM_MODES] = {{NULL}};
#endif
