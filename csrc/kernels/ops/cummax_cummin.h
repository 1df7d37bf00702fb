/* ops/cummax_cummin.h: cummax and cummin for one real dtype
 * (kernels/instantiate.h): single-line log-step scans, panels, totals of
 * split lines, the derivatives and the cells of both ops.
 *
 * Ownership (docs/semantics.md, as PyTorch): a new element takes over when it
 * compares >= (max) / <= (min) to the running value, so ties go to the latest
 * in scan order and -0.0/+0.0 to the later one; a NaN always takes over and
 * nothing but another NaN takes it back.  The derivatives give everything to
 * the owner: JVP gathers t at the owner, VJP sums g over each owner's run. */

#if KIND != 'c' /* complex numbers have no order: no kernels, empty cells */

#ifndef SCANAD_EXTREME_ONCE
#define SCANAD_EXTREME_ONCE
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
#endif

#if HAS_NARROW
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
 * per vector and three shift steps, with no widening on either side.
 * V8_SHIFT's fill is a splat or a payload that never wins, so any of its
 * lanes will do: taken from its top, the shift compiles to vperm2f128 +
 * vpalignr on AVX2 instead of a vpermd with a loaded index and a blend. */
#if defined(__clang__)
#define V8_SHIFT(v, fill, k)                                                                   \
    ((k) == 1   ? __builtin_shufflevector(fill, v, 7, 8, 9, 10, 11, 12, 13, 14)                \
     : (k) == 2 ? __builtin_shufflevector(fill, v, 6, 7, 8, 9, 10, 11, 12, 13)                 \
                : __builtin_shufflevector(fill, v, 4, 5, 6, 7, 8, 9, 10, 11))
#define V8_SHIFT_DOWN(v, fill, k)                                                              \
    ((k) == 1   ? __builtin_shufflevector(v, fill, 1, 2, 3, 4, 5, 6, 7, 8)                     \
     : (k) == 2 ? __builtin_shufflevector(v, fill, 2, 3, 4, 5, 6, 7, 8, 9)                     \
                : __builtin_shufflevector(v, fill, 4, 5, 6, 7, 8, 9, 10, 11))
#else
#define V8_SHIFT(v, fill, k)                                                                   \
    ((k) == 1   ? __builtin_shuffle(fill, v, (v8i){7, 8, 9, 10, 11, 12, 13, 14})               \
     : (k) == 2 ? __builtin_shuffle(fill, v, (v8i){6, 7, 8, 9, 10, 11, 12, 13})                \
                : __builtin_shuffle(fill, v, (v8i){4, 5, 6, 7, 8, 9, 10, 11}))
#define V8_SHIFT_DOWN(v, fill, k)                                                              \
    ((k) == 1   ? __builtin_shuffle(v, fill, (v8i){1, 2, 3, 4, 5, 6, 7, 8})                    \
     : (k) == 2 ? __builtin_shuffle(v, fill, (v8i){2, 3, 4, 5, 6, 7, 8, 9})                    \
                : __builtin_shuffle(v, fill, (v8i){4, 5, 6, 7, 8, 9, 10, 11}))
#endif
/* lanes in memory order, as in accumulate_line_: a line walked backwards
 * mirrors its shifts (simd.h, LINE_SHIFT1) */
#define V8_SHIFT_LINE(v, fill, k, back) ((back) ? V8_SHIFT_DOWN(v, fill, k) : V8_SHIFT(v, fill, k))
/* (v, p) = combine((l, lp), (v, p)): v where it takes over l, else l */
#define V8_ABSORB(is_max, v, p, l, lp)                                                    \
    do {                                                                                  \
        const v8i take_ = (v8i)((is_max) ? (v) >= (l) : (v) <= (l));                     \
        (v) = (v8f)(((v8i)(v) & take_) | ((v8i)(l) & ~take_));                            \
        (p) = ((p) & take_) | ((lp) & ~take_);                                            \
    } while (0)
#define V8_LOAD(dst, p, back) memcpy(&(dst), (back) ? (p) - 7 * 4 : (p), sizeof(dst))
#define V8_STORE(p, v, back)                                                              \
    do {                                                                                  \
        const v8f s_ = (v);                                                               \
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
            LINE_PREFETCH(x, sz);
            if (jvp)
                LINE_PREFETCH(t, sz);
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
                V8_ABSORB(is_max, a, p, V8_SHIFT_LINE(a, startv, 1, back),
                          V8_SHIFT_LINE(p, p, 1, back));
                V8_ABSORB(is_max, a, p, V8_SHIFT_LINE(a, startv, 2, back),
                          V8_SHIFT_LINE(p, p, 2, back));
                V8_ABSORB(is_max, a, p, V8_SHIFT_LINE(a, startv, 4, back),
                          V8_SHIFT_LINE(p, p, 4, back));
                const float last = a[back ? 0 : 7];
                const int32_t last_p = p[back ? 0 : 7];
                v8f next = {last, last, last, last, last, last, last, last};
                v8i next_p = {last_p, last_p, last_p, last_p, last_p, last_p, last_p, last_p};
                V8_ABSORB(is_max, next, next_p, s, sp);
                V8_ABSORB(is_max, a, p, s, sp);
                if (!incl) {
                    a = V8_SHIFT_LINE(a, s, 1, back);
                    p = V8_SHIFT_LINE(p, sp, 1, back);
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
    if (b->carry_out != NULL) { /* no owner's index here, nor in a carry it reads */
        b->carry_out->v = s[0];
        b->carry_out->i = -1;
        b->carry_out->filled = 1;
    }
}
#undef V8_LOAD
#undef V8_STORE
#undef V8_SHIFT
#undef V8_SHIFT_DOWN
#undef V8_SHIFT_LINE
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
    /* lanes in memory order (simd.h, LINE_SHIFT1): backwards, lane l holds
     * the group's element 3 - l in scan order */
    const v4i lanes = (back ? (v4i){3, 2, 1, 0} : (v4i){0, 1, 2, 3}) * b->index_step;
    const int last = LINE_LANE(3, back);
    const int64_t pos_step = 4 * b->index_step;
    int64_t i = 0;
    while (i < n) {
        v4d a, c;
        if (i + 8 > n)
            goto one_element;
        LINE_PREFETCH(x, sz);
        if (mode == LINE_TANGENT)
            LINE_PREFETCH(t, sz);
        LINE_LOAD_MEM(a, x, back);
        LINE_LOAD_MEM(c, x + 4 * sz, back);
        /* a group holding a NaN takes the scalar step: without one, "takes
         * over" is a plain compare (a NaN carry still wins, as r >= NaN is
         * false) */
        const v4i nan = (v4i)(a != a) | (v4i)(c != c);
        if (nan[0] | nan[1] | nan[2] | nan[3])
            goto one_element;
        v4i pa = lanes + (b->index_first + i * b->index_step), pc = pa + pos_step;
        if (mode == LINE_TANGENT) {
            v4d ta, tc;
            LINE_LOAD_MEM(ta, t, back);
            LINE_LOAD_MEM(tc, t + 4 * sz, back);
            pa = (v4i)ta;
            pc = (v4i)tc;
            t += 8 * sz;
        }
        /* the shifted-in lanes hold the identity (start), which never wins,
         * so their payload does not matter */
        LINE_ABSORB(is_max, a, pa, LINE_SHIFT1(a, startv, back), LINE_SHIFT1(pa, pa, back));
        LINE_ABSORB(is_max, c, pc, LINE_SHIFT1(c, startv, back), LINE_SHIFT1(pc, pc, back));
        LINE_ABSORB(is_max, a, pa, LINE_SHIFT2(a, startv, back), LINE_SHIFT2(pa, pa, back));
        LINE_ABSORB(is_max, c, pc, LINE_SHIFT2(c, startv, back), LINE_SHIFT2(pc, pc, back));
        LINE_ABSORB(is_max, c, pc, V4_SPLAT(a[last]), V4I_SPLAT(pa[last]));
        /* the carry stays a splat vector: the next one is the carry combined
         * with this group's total, so the chain is one compare and select */
        v4d next_v = V4_SPLAT(c[last]);
        v4i next_p = V4I_SPLAT(pc[last]);
        LINE_ABSORB(is_max, next_v, next_p, sv, sp);
        LINE_ABSORB(is_max, a, pa, sv, sp);
        LINE_ABSORB(is_max, c, pc, sv, sp);
        if (!incl) {
            c = LINE_SHIFT1(c, V4_SPLAT(a[last]), back);
            pc = LINE_SHIFT1(pc, V4I_SPLAT(pa[last]), back);
            a = LINE_SHIFT1(a, sv, back);
            pa = LINE_SHIFT1(pa, sp, back);
        }
        sv = next_v;
        sp = next_p;
        LINE_STORE_MEM(y, a, back);
        LINE_STORE_MEM(y + 4 * sz, c, back);
        if (mode == LINE_INDEX) {
            LINE_STORE_I_MEM(po, pa, back);
            LINE_STORE_I_MEM(po + 4 * psz, pc, back);
        } else if (mode == LINE_TANGENT) {
            LINE_STORE_MEM(po, (v4d)pa, back);
            LINE_STORE_MEM(po + 4 * psz, (v4d)pc, back);
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
    if (b->carry_out != NULL) {
        b->carry_out->v = sv[0];
        b->carry_out->i = sp[0];
        b->carry_out->filled = 1;
    }
}

#undef LINE_TAKES
#undef LINE_ABSORB

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
    v4i where = V4I_SPLAT(-1), pos = back ? (v4i){3, 2, 1, 0} : (v4i){0, 1, 2, 3};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4, x += 4 * sz, pos += 4) {
        v4d v;
        LINE_LOAD_MEM(v, x, back);
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
#undef LINE_SELECT
#endif

/* lanes per group in the VJP's forward pass over panels: the fastest of 8,
 * 16, 32 and 64 (docs/performance.md, "cummax/cummin VJP") */
#define MM_GROUP 32
/* lane l's run ends: its sum goes to the old owner's row, x's row r owns from here */
#define MM_NEW_OWNER(l)                                     \
    do {                                                    \
        if (own[l] >= 0)                                    \
            ST(xb0 + own[l] * sxb + (l) * lxb, acc[l]);     \
        own[l] = r;                                         \
        acc[l] = ZERO;                                      \
        val[l] = MLD(x + (l) * lx);                         \
    } while (0)
#define MM_TAKES_MAX(v, cur) (((v) >= (cur)) | M_ISNAN(v))
#define MM_TAKES_MIN(v, cur) (((v) <= (cur)) | M_ISNAN(v))

#if HAS_NARROW
/* single contiguous lines: the log-step kernels of line.h */
#define MM_LINE(IS_MAX, NOPS, PAYLOAD, ...)                                                    \
    do {                                                                                        \
        static const int64_t size_[NOPS] = {__VA_ARGS__};                                       \
        const int dir_ = KN(line_direction_)(b, NOPS, size_);                                  \
        if (dir_) {                                                                             \
            LINE_CALL(KN(extreme_line_), b, dir_, IS_MAX, PAYLOAD);                             \
            return;                                                                             \
        }                                                                                       \
    } while (0)
#else
#define MM_LINE(IS_MAX, NOPS, PAYLOAD, ...) (void)0
#endif

/* which of x's value v and the running value cur is kept: v on ties, and
 * NaN, once seen, stays */
#define MM_TAKES(is_max, v, cur) ((is_max) ? MM_TAKES_MAX(v, cur) : MM_TAKES_MIN(v, cur))
/* the running value before the first element */
#define MM_START(is_max) ((is_max) ? M_LOWEST : M_HIGHEST)

/* The kernels of both ops, is_max a constant in each caller; the forward's
 * panel: */
SCAN_INLINE void KN(mm_fwd_panel_)(PANEL_ARGS, const int is_max)
{
    const char *x = PANEL_BASE(0);
    char *y = PANEL_BASE(1);
    char *ix = b->ptr[2] ? PANEL_BASE(2) : NULL;
    const int64_t lx = LANE(0), ly = LANE(1), li = LANE(2);
    const int64_t head = panel_head_lanes(y, w, sizeof(T), contig);
    STATE_ALIGNED(MV, val, 0, head);
    STATE_ALIGNED(int64_t, own, 1, head);
    int64_t pos = b->index_first;
    for (int64_t l = 0; l < w; l++) {
        val[l] = MM_START(is_max);
        own[l] = -1;
    }
    const int64_t ahead = panel_rows_ahead(b, w, sizeof(T), contig, line);
    for (int64_t r = 0; r < b->n; r++) {
        panel_prefetch_ahead(b, r, ahead, 0, x, w * (int64_t)sizeof(T));
        FOR_LANES(l, head, w) {
            MV v = MLD(x + l * lx);
            int take = MM_TAKES(is_max, v, val[l]);
            MV nv = take ? v : val[l];
            int64_t no = take ? pos : own[l];
            MST(y + l * ly, incl ? nv : val[l]);
            if (ix)
                *(int64_t *)(ix + l * li) = incl ? no : own[l];
            val[l] = nv;
            own[l] = no;
        }
        x += b->step[0];
        y += b->step[1];
        if (ix)
            ix += b->step[2];
        pos += b->index_step;
    }
}

#if HAS_DERIV
/* JVP operands x, t, y, y_dot; VJP operands x, y, g, x_bar. */
/* the tangent is only gathered, never combined: it moves as raw T, so
 * the loop is one width (float32 lanes do not widen to double) */
SCAN_INLINE void KN(mm_jvp_panel_)(PANEL_ARGS, const int is_max)
{
    const char *x = PANEL_BASE(0), *t = PANEL_BASE(1);
    char *y = PANEL_BASE(2), *yd = PANEL_BASE(3);
    const int64_t lx = LANE(0), lt = LANE(1), ly = LANE(2), lyd = LANE(3);
    STATE(MV, val, 0);
    STATE(T, tv, 1);
    for (int64_t l = 0; l < w; l++) {
        val[l] = MM_START(is_max);
        ST((char *)&tv[l], ZERO);
    }
    const int64_t ahead = panel_rows_ahead(b, w, sizeof(T), contig, line);
    for (int64_t r = 0; r < b->n; r++) {
        panel_prefetch_ahead(b, r, ahead, 0, x, w * (int64_t)sizeof(T));
        panel_prefetch_ahead(b, r, ahead, 1, t, w * (int64_t)sizeof(T));
        for (int64_t l = 0; l < w; l++) {
            MV v = MLD(x + l * lx);
            int take = MM_TAKES(is_max, v, val[l]);
            MV nv = take ? v : val[l];
            T nt = take ? *(const T *)(t + l * lt) : tv[l];
            MST(y + l * ly, incl ? nv : val[l]);
            *(T *)(yd + l * lyd) = incl ? nt : tv[l];
            val[l] = nv;
            tv[l] = nt;
        }
        x += b->step[0];
        t += b->step[1];
        y += b->step[2];
        yd += b->step[3];
    }
}
/* From the last row to the first: x_r owns g over its run, the rows up
 * to the next owner, and it is an owner exactly when it takes over from
 * the running value before it, which the forward left in y_r (exclusive);
 * inclusive, y_r is what came out, x_r if it took over, and x_r takes
 * over from that too (>= and <= hold for x_r itself, NaN always takes)
 * while it does not from a y_r it did not take.  So each row is one
 * branch-free step per lane (add, compare, select) that vectorises, where
 * a forward pass writes each owner's sum when its run ends, a scatter
 * behind a branch per element. */
SCAN_INLINE void KN(mm_vjp_panel_back_)(PANEL_ARGS, const int is_max)
{
    const int64_t lx = LANE(0), ly = LANE(1), lg = LANE(2), lxb = LANE(3);
    const int64_t n = b->n;
    STATE(A, acc, 0);
    if (n == 0)
        return;
    const char *x = PANEL_LAST(0), *y = PANEL_LAST(1), *g = PANEL_LAST(2);
    char *xb = PANEL_LAST(3);
    for (int64_t l = 0; l < w; l++)
        acc[l] = ZERO;
    for (int64_t r = n - 1; r >= 0; r--) {
        for (int64_t l = 0; l < w; l++) {
            const MV v = MLD(x + l * lx);
            const A gv = LD(g + l * lg);
            const int owner = MM_TAKES(is_max, v, MLD(y + l * ly));
            A a = acc[l];
            if (incl)
                a = ADD(a, gv);
            ST(xb + l * lxb, owner ? a : ZERO);
            a = owner ? ZERO : a;
            if (!incl) /* exclusive: g[r] belongs to the owner before x[r] */
                a = ADD(a, gv);
            acc[l] = a;
        }
        x -= b->step[0];
        y -= b->step[1];
        g -= b->step[2];
        xb -= b->step[3];
    }
}
/* Panels of short rows (PANEL_SHORT_ROW_BYTES; software prefetches did
 * not help the walk from the end there) and single lines: one forward
 * pass, where owners come in contiguous runs, every x_bar is zeroed as it
 * is passed and an owner's sum is written when its run ends. */
SCAN_INLINE void KN(mm_vjp_panel_forward_)(PANEL_ARGS, const int is_max)
{
    const char *x = PANEL_BASE(0), *g = PANEL_BASE(2);
    char *xb = PANEL_BASE(3);
    char *const xb0 = xb;
    const int64_t lx = LANE(0), lg = LANE(2), lxb = LANE(3), sxb = b->step[3];
    STATE(MV, val, 0);
    STATE(A, acc, 2);
    STATE(int64_t, own, 1);
    for (int64_t l = 0; l < w; l++) {
        val[l] = MM_START(is_max);
        acc[l] = ZERO;
        own[l] = -1;
    }
    for (int64_t r = 0; r < b->n; r++) {
        for (int64_t l_group = 0; l_group < w; l_group += MM_GROUP) {
            /* A whole group of lanes: which elements take over, then one
             * branch-free add and zero store per lane (vectorised), the
             * few owners changing (a random column has about ln n) fixed
             * before the add (inclusive: the run ended at r - 1) or after
             * it (exclusive: g[r] is the old owner's). */
            if (l_group + MM_GROUP <= w) {
                unsigned char take[MM_GROUP];
                unsigned any = 0;
                for (int k = 0; k < MM_GROUP; k++) {
                    const MV v = MLD(x + (l_group + k) * lx);
                    take[k] = (unsigned char)MM_TAKES(is_max, v, val[l_group + k]);
                    any |= take[k];
                }
                for (int k = 0; incl && any && k < MM_GROUP; k++)
                    if (take[k])
                        MM_NEW_OWNER(l_group + k);
                for (int k = 0; k < MM_GROUP; k++) {
                    acc[l_group + k] = ADD(acc[l_group + k], LD(g + (l_group + k) * lg));
                    ST(xb + (l_group + k) * lxb, ZERO);
                }
                for (int k = 0; !incl && any && k < MM_GROUP; k++)
                    if (take[k])
                        MM_NEW_OWNER(l_group + k);
                continue;
            }
            for (int64_t l = l_group; l < w && l < l_group + MM_GROUP; l++) {
                MV v = MLD(x + l * lx);
                A gv = LD(g + l * lg);
                ST(xb + l * lxb, ZERO);
                if (!incl) /* exclusive: g[r] belongs to the owner before x[r] */
                    acc[l] = ADD(acc[l], gv);
                if (MM_TAKES(is_max, v, val[l]))
                    MM_NEW_OWNER(l);
                if (incl)
                    acc[l] = ADD(acc[l], gv);
            }
        }
        x += b->step[0];
        g += b->step[2];
        xb += sxb;
    }
    for (int64_t l = 0; l < w; l++)
        if (own[l] >= 0)
            ST(xb0 + own[l] * sxb + l * lxb, acc[l]);
}
SCAN_INLINE void KN(mm_vjp_panel_)(PANEL_ARGS, const int is_max)
{
    if (w * (int64_t)sizeof(T) >= PANEL_SHORT_ROW_BYTES)
        KN(mm_vjp_panel_back_)(b, l0, w, incl, contig, sizeof_op, line, is_max);
    else
        KN(mm_vjp_panel_forward_)(b, l0, w, incl, contig, sizeof_op, line, is_max);
}
/* One line: the run's sum is the latency chain (one add per element),
 * so it is split over four accumulators by position mod 4, added up
 * when the run ends. */
SCAN_INLINE void KN(mm_vjp_line_)(const scan_block *b, const int incl, const int is_max)
{
    const char *x = b->ptr[0], *g = b->ptr[2];
    char *xb = b->ptr[3];
    char *const xb0 = xb;
    const int64_t sx = b->step[0], sg = b->step[2], sxb = b->step[3];
    MV val = MM_START(is_max);
    A acc[4] = {ZERO, ZERO, ZERO, ZERO};
    int64_t own = -1;
    for (int64_t r = 0; r < b->n; r++) {
        const MV v = MLD(x);
        const A gv = LD(g);
        ST(xb, ZERO);
        if (!incl) /* exclusive: g[r] belongs to the owner before x[r] */
            acc[r & 3] = ADD(acc[r & 3], gv);
        if (MM_TAKES(is_max, v, val)) {
            if (own >= 0)
                ST(xb0 + own * sxb, ADD(ADD(acc[0], acc[1]), ADD(acc[2], acc[3])));
            own = r;
            acc[0] = acc[1] = acc[2] = acc[3] = ZERO;
            val = v;
        }
        if (incl)
            acc[r & 3] = ADD(acc[r & 3], gv);
        x += sx;
        g += sg;
        xb += sxb;
    }
    if (own >= 0)
        ST(xb0 + own * sxb, ADD(ADD(acc[0], acc[1]), ADD(acc[2], acc[3])));
}
#endif

/* Each op's kernels under its own names: the functions above with is_max
 * fixed (a macro only because C cannot build a name) */
#define MM_PANEL_(OPNAME, FN, IS_MAX)                                                           \
    SCAN_INLINE void KN(OPNAME##_##FN)(PANEL_ARGS)                                              \
    {                                                                                           \
        KN(mm_##FN)(b, l0, w, incl, contig, sizeof_op, line, IS_MAX);                           \
    }
#define DEFINE_MAXMIN(OPNAME, IS_MAX)                                                           \
    MM_PANEL_(OPNAME, fwd_panel_, IS_MAX)                                                       \
    DEFINE_PANEL_KERNEL(KN(OPNAME##_fwd_panels_), KN(OPNAME##_fwd_panel_), 3, sizeof(T),        \
                        sizeof(T), sizeof(int64_t))                                             \
    static void KN(OPNAME##_fwd_)(const scan_block *b)                                          \
    {                                                                                           \
        if (b->ptr[2])                                                                          \
            MM_LINE(IS_MAX, 3, LINE_INDEX, sizeof(T), sizeof(T), sizeof(int64_t));              \
        else                                                                                    \
            MM_LINE(IS_MAX, 2, LINE_NONE, sizeof(T), sizeof(T));                                \
        KN(OPNAME##_fwd_panels_)(b);                                                            \
    }                                                                                           \
    MAXMIN_DERIVS(OPNAME, IS_MAX)

#if HAS_DERIV
#define MAXMIN_DERIVS(OPNAME, IS_MAX)                                                           \
    MM_PANEL_(OPNAME, jvp_panel_, IS_MAX)                                                       \
    DEFINE_PANEL_KERNEL(KN(OPNAME##_jvp_panels_), KN(OPNAME##_jvp_panel_), 4, sizeof(T),        \
                        sizeof(T), sizeof(T), sizeof(T))                                        \
    static void KN(OPNAME##_jvp_)(const scan_block *b)                                          \
    {                                                                                           \
        MM_LINE(IS_MAX, 4, LINE_TANGENT, sizeof(T), sizeof(T), sizeof(T), sizeof(T));           \
        KN(OPNAME##_jvp_panels_)(b);                                                            \
    }                                                                                           \
    MM_PANEL_(OPNAME, vjp_panel_, IS_MAX)                                                       \
    DEFINE_PANEL_KERNEL(KN(OPNAME##_vjp_panels_), KN(OPNAME##_vjp_panel_), 4, sizeof(T),        \
                        sizeof(T), sizeof(T), sizeof(T))                                        \
    static void KN(OPNAME##_vjp_)(const scan_block *b)                                          \
    {                                                                                           \
        if (b->m == 1) {                                                                        \
            if (b->inclusive) KN(mm_vjp_line_)(b, 1, IS_MAX);                                   \
            else KN(mm_vjp_line_)(b, 0, IS_MAX);                                                \
        } else {                                                                                \
            KN(OPNAME##_vjp_panels_)(b);                                                        \
        }                                                                                       \
    }
#else
#define MAXMIN_DERIVS(OPNAME, IS_MAX)
#endif

DEFINE_MAXMIN(max, 1)
DEFINE_MAXMIN(min, 0)

/* ======================= cummax / cummin: D_x = 0 =======================
 * The owner (docs/semantics.md) is locally constant, so x_bar_dot =
 * VJP(x, g_dot) with the same owners: one forward walk sums g and g_dot over
 * each owner's run (owner runs are contiguous), zeroing both outputs as it
 * passes them and writing an owner's two sums when its run ends. */
#if HAS_DERIV
SCAN_INLINE void KN(mm_vjp_jvp_body_)(PANEL_ARGS, const int has_gd, const int is_max)
{
    const char *x = PANEL_BASE(SO_X), *g = PANEL_BASE(SO_G);
    const char *gd = has_gd ? PANEL_BASE(SO_GD) : NULL;
    char *xb = PANEL_BASE(SO_XB), *xbd = PANEL_BASE(SO_XBD);
    char *const xb0 = xb, *const xbd0 = xbd;
    const int64_t lx = LANE(SO_X), lg = LANE(SO_G), lgd = LANE(SO_GD);
    const int64_t lxb = LANE(SO_XB), lxbd = LANE(SO_XBD);
    const int64_t sxb = b->step[SO_XB], sxbd = b->step[SO_XBD];
    STATE(MV, val, 0);
    STATE(A, acc, 1);
    STATE(A, accd, 2);
    STATE(int64_t, own, 3);
    for (int64_t l = 0; l < w; l++) {
        val[l] = MM_START(is_max);
        acc[l] = ZERO;
        accd[l] = ZERO;
        own[l] = -1;
    }
    for (int64_t r = 0; r < b->n; r++) {
        for (int64_t l = 0; l < w; l++) {
            const MV v = MLD(x + l * lx);
            const A gv = LD(g + l * lg), gdv = has_gd ? LD(gd + l * lgd) : ZERO;
            ST(xb + l * lxb, ZERO);
            ST(xbd + l * lxbd, ZERO);
            if (!incl) { /* exclusive: g[r] belongs to the owner before x[r] */
                acc[l] = ADD(acc[l], gv);
                accd[l] = ADD(accd[l], gdv);
            }
            if (MM_TAKES(is_max, v, val[l])) {
                if (own[l] >= 0) {
                    ST(xb0 + own[l] * sxb + l * lxb, acc[l]);
                    ST(xbd0 + own[l] * sxbd + l * lxbd, accd[l]);
                }
                own[l] = r;
                acc[l] = ZERO;
                accd[l] = ZERO;
                val[l] = v;
            }
            if (incl) {
                acc[l] = ADD(acc[l], gv);
                accd[l] = ADD(accd[l], gdv);
            }
        }
        x += b->step[SO_X];
        g += b->step[SO_G];
        if (has_gd)
            gd += b->step[SO_GD];
        xb += sxb;
        xbd += sxbd;
    }
    for (int64_t l = 0; l < w; l++)
        if (own[l] >= 0) {
            ST(xb0 + own[l] * sxb + l * lxb, acc[l]);
            ST(xbd0 + own[l] * sxbd + l * lxbd, accd[l]);
        }
}
/* g_dot present or not as a constant, so the inner loops have no test */
SCAN_INLINE void KN(mm_vjp_jvp_panel_)(PANEL_ARGS, const int is_max)
{
    if (b->ptr[SO_GD] != NULL)
        KN(mm_vjp_jvp_body_)(b, l0, w, incl, contig, sizeof_op, line, 1, is_max);
    else
        KN(mm_vjp_jvp_body_)(b, l0, w, incl, contig, sizeof_op, line, 0, is_max);
}
#define SO_DEFINE_MAXMIN(OPNAME, IS_MAX)                                                      \
    MM_PANEL_(OPNAME, vjp_jvp_panel_, IS_MAX)                                                 \
    DEFINE_PANEL_KERNEL(KN(OPNAME##_vjp_jvp_), KN(OPNAME##_vjp_jvp_panel_), 6, sizeof(T),     \
                        sizeof(T), sizeof(T), sizeof(T), sizeof(T), sizeof(T))
SO_DEFINE_MAXMIN(max, 1)
SO_DEFINE_MAXMIN(min, 0)
#undef SO_DEFINE_MAXMIN
#endif

#undef MAXMIN_DERIVS
#undef MM_LINE
#undef DEFINE_MAXMIN
#undef MM_PANEL_
#undef MM_TAKES
#undef MM_START
#undef MM_TAKES_MAX
#undef MM_TAKES_MIN

/* the VJP walks forwards (in panels of rows of PANEL_SHORT_ROW_BYTES or
 * more, for which the order of items makes no difference) */
#define MAXMIN_CELLS_(OPNAME)                                                                   \
    static const scan_cell KN(OPNAME##_cells_)[SCAN_NUM_MODES] = {                              \
        [MODE_FORWARD] = {.kernel = KN(OPNAME##_fwd_), .split = MAXMIN_SPLIT_(OPNAME)},         \
        MAXMIN_DERIV_CELLS_(OPNAME)};
#if HAS_NARROW
#define MAXMIN_SPLIT_(OPNAME) {KN(OPNAME##_reduce_), line_combine_##OPNAME, 0, 1}
#else
#define MAXMIN_SPLIT_(OPNAME) {NULL, NULL, 0, 0}
#endif
#if HAS_DERIV
#define MAXMIN_DERIV_CELLS_(OPNAME)                                                             \
    [MODE_JVP] = {.kernel = KN(OPNAME##_jvp_)}, [MODE_VJP] = {.kernel = KN(OPNAME##_vjp_)},           \
        [MODE_VJP_JVP] = {.kernel = KN(OPNAME##_vjp_jvp_)},
#else
#define MAXMIN_DERIV_CELLS_(OPNAME)
#endif
MAXMIN_CELLS_(max)
MAXMIN_CELLS_(min)
#undef MAXMIN_CELLS_
#undef MAXMIN_SPLIT_
#undef MAXMIN_DERIV_CELLS_

#else
static const scan_cell KN(max_cells_)[SCAN_NUM_MODES] = {{NULL}};
static const scan_cell KN(min_cells_)[SCAN_NUM_MODES] = {{NULL}};
#endif
