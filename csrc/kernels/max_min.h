/* max_min.h: cummax / cummin kernels for one real dtype.
 * Trait macros: MV (compare type), MLD, MST, M_LOWEST, M_HIGHEST, M_ISNAN,
 * and for derivatives A, LD, ST, ADD, ZERO.
 *
 * Ownership (docs/semantics.md, as PyTorch): a new element takes over when it
 * compares >= (max) / <= (min) to the running value, so ties go to the latest
 * in scan order and -0.0/+0.0 to the later one; a NaN always takes over and
 * nothing but another NaN takes it back.  The derivatives give everything to
 * the owner: JVP gathers t at the owner, VJP sums g over each owner's run. */

#if KIND != 'c' /* complex numbers have no order: no kernels, empty cells */

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

#define DEFINE_MAXMIN(OPNAME, IS_MAX, TAKES, START)                                                     \
    SCAN_INLINE void KN(OPNAME##_fwd_panel_)(PANEL_ARGS)                                        \
    {                                                                                           \
        const char *x = PANEL_BASE(0);                                                          \
        char *y = PANEL_BASE(1);                                                                \
        char *ix = b->ptr[2] ? PANEL_BASE(2) : NULL;                                            \
        const int64_t lx = LANE(0), ly = LANE(1), li = LANE(2);                                 \
        STATE(MV, val, 0); \
        STATE(int64_t, own, 1); \
        int64_t pos = b->index_first;                                                           \
        for (int64_t l = 0; l < w; l++) {                                                       \
            val[l] = START;                                                                     \
            own[l] = -1;                                                                        \
        }                                                                                       \
        const int64_t ahead = panel_rows_ahead(b, w, sizeof(T), contig, line);                  \
        for (int64_t r = 0; r < b->n; r++) {                                                    \
            panel_prefetch_ahead(b, r, ahead, 0, x, w * (int64_t)sizeof(T));                    \
            for (int64_t l = 0; l < w; l++) {                                                   \
                MV v = MLD(x + l * lx);                                                         \
                int take = TAKES(v, val[l]);                                                    \
                MV nv = take ? v : val[l];                                                      \
                int64_t no = take ? pos : own[l];                                               \
                MST(y + l * ly, incl ? nv : val[l]);                                            \
                if (ix)                                                                         \
                    *(int64_t *)(ix + l * li) = incl ? no : own[l];                             \
                val[l] = nv;                                                                    \
                own[l] = no;                                                                    \
            }                                                                                   \
            x += b->step[0];                                                                    \
            y += b->step[1];                                                                    \
            if (ix)                                                                             \
                ix += b->step[2];                                                               \
            pos += b->index_step;                                                               \
        }                                                                                       \
    }                                                                                           \
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
    MAXMIN_DERIVS(OPNAME, IS_MAX, TAKES, START)

#if HAS_DERIV
/* JVP operands x, t, y, y_dot; VJP operands x, y, g, x_bar. */
#define MAXMIN_DERIVS(OPNAME, IS_MAX, TAKES, START)                                             \
    /* the tangent is only gathered, never combined: it moves as raw T, so      \
     * the loop is one width (float32 lanes do not widen to double) */          \
    SCAN_INLINE void KN(OPNAME##_jvp_panel_)(PANEL_ARGS)                                        \
    {                                                                                           \
        const char *x = PANEL_BASE(0), *t = PANEL_BASE(1);                                      \
        char *y = PANEL_BASE(2), *yd = PANEL_BASE(3);                                           \
        const int64_t lx = LANE(0), lt = LANE(1), ly = LANE(2), lyd = LANE(3);                  \
        STATE(MV, val, 0); \
        STATE(T, tv, 1); \
        for (int64_t l = 0; l < w; l++) {                                                       \
            val[l] = START;                                                                     \
            ST((char *)&tv[l], ZERO);                                                                 \
        }                                                                                       \
        const int64_t ahead = panel_rows_ahead(b, w, sizeof(T), contig, line);                  \
        for (int64_t r = 0; r < b->n; r++) {                                                    \
            panel_prefetch_ahead(b, r, ahead, 0, x, w * (int64_t)sizeof(T));                    \
            panel_prefetch_ahead(b, r, ahead, 1, t, w * (int64_t)sizeof(T));                    \
            for (int64_t l = 0; l < w; l++) {                                                   \
                MV v = MLD(x + l * lx);                                                         \
                int take = TAKES(v, val[l]);                                                    \
                MV nv = take ? v : val[l];                                                      \
                T nt = take ? *(const T *)(t + l * lt) : tv[l];                                 \
                MST(y + l * ly, incl ? nv : val[l]);                                            \
                *(T *)(yd + l * lyd) = incl ? nt : tv[l];                                       \
                val[l] = nv;                                                                    \
                tv[l] = nt;                                                                     \
            }                                                                                   \
            x += b->step[0];                                                                    \
            t += b->step[1];                                                                    \
            y += b->step[2];                                                                    \
            yd += b->step[3];                                                                   \
        }                                                                                       \
    }                                                                                           \
    DEFINE_PANEL_KERNEL(KN(OPNAME##_jvp_panels_), KN(OPNAME##_jvp_panel_), 4, sizeof(T),        \
                        sizeof(T), sizeof(T), sizeof(T))                                        \
    static void KN(OPNAME##_jvp_)(const scan_block *b)                                          \
    {                                                                                           \
        MM_LINE(IS_MAX, 4, LINE_TANGENT, sizeof(T), sizeof(T), sizeof(T), sizeof(T));           \
        KN(OPNAME##_jvp_panels_)(b);                                                            \
    }                                                                                           \
                                                                                                \
    /* From the last row to the first: x_r owns g over its run, the rows up      \
     * to the next owner, and it is an owner exactly when it takes over from      \
     * the running value before it, which the forward left in y_r (exclusive);   \
     * inclusive, y_r is what came out, x_r if it took over, and x_r takes       \
     * over from that too (>= and <= hold for x_r itself, NaN always takes)     \
     * while it does not from a y_r it did not take.  So each row is one        \
     * branch-free step per lane (add, compare, select) that vectorises, where   \
     * a forward pass writes each owner's sum when its run ends, a scatter      \
     * behind a branch per element. */                                          \
    SCAN_INLINE void KN(OPNAME##_vjp_panel_back_)(PANEL_ARGS)                                        \
    {                                                                                           \
        const int64_t lx = LANE(0), ly = LANE(1), lg = LANE(2), lxb = LANE(3);                  \
        const int64_t n = b->n;                                                                 \
        STATE(A, acc, 0);                                                                       \
        if (n == 0)                                                                             \
            return;                                                                             \
        const char *x = PANEL_LAST(0), *y = PANEL_LAST(1), *g = PANEL_LAST(2);                  \
        char *xb = PANEL_LAST(3);                                                               \
        for (int64_t l = 0; l < w; l++)                                                         \
            acc[l] = ZERO;                                                                      \
        for (int64_t r = n - 1; r >= 0; r--) {                                                  \
            for (int64_t l = 0; l < w; l++) {                                                   \
                const MV v = MLD(x + l * lx);                                                   \
                const A gv = LD(g + l * lg);                                                    \
                const int owner = TAKES(v, MLD(y + l * ly));                                    \
                A a = acc[l];                                                                   \
                if (incl)                                                                       \
                    a = ADD(a, gv);                                                             \
                ST(xb + l * lxb, owner ? a : ZERO);                                             \
                a = owner ? ZERO : a;                                                           \
                if (!incl) /* exclusive: g[r] belongs to the owner before x[r] */               \
                    a = ADD(a, gv);                                                             \
                acc[l] = a;                                                                     \
            }                                                                                   \
            x -= b->step[0];                                                                    \
            y -= b->step[1];                                                                    \
            g -= b->step[2];                                                                    \
            xb -= b->step[3];                                                                   \
        }                                                                                       \
    }                                                                                           \
    /* Panels of short rows (PANEL_SHORT_ROW_BYTES; software prefetches did     \
     * not help the walk from the end there) and single lines: one forward       \
     * pass, where owners come in contiguous runs, every x_bar is zeroed as it   \
     * is passed and an owner's sum is written when its run ends. */             \
    SCAN_INLINE void KN(OPNAME##_vjp_panel_forward_)(PANEL_ARGS)                                        \
    {                                                                                           \
        const char *x = PANEL_BASE(0), *g = PANEL_BASE(2);                                      \
        char *xb = PANEL_BASE(3);                                                               \
        char *const xb0 = xb;                                                                   \
        const int64_t lx = LANE(0), lg = LANE(2), lxb = LANE(3), sxb = b->step[3];              \
        STATE(MV, val, 0);                                                                      \
        STATE(A, acc, 2);                                                                       \
        STATE(int64_t, own, 1);                                                                 \
        for (int64_t l = 0; l < w; l++) {                                                       \
            val[l] = START;                                                                     \
            acc[l] = ZERO;                                                                      \
            own[l] = -1;                                                                        \
        }                                                                                       \
        for (int64_t r = 0; r < b->n; r++) {                                                    \
            for (int64_t l_group = 0; l_group < w; l_group += MM_GROUP) {                       \
                /* A whole group of lanes: which elements take over, then one                   \
                 * branch-free add and zero store per lane (vectorised), the                    \
                 * few owners changing (a random column has about ln n) fixed                   \
                 * before the add (inclusive: the run ended at r - 1) or after                  \
                 * it (exclusive: g[r] is the old owner's). */                                  \
                if (l_group + MM_GROUP <= w) {                                                  \
                    unsigned char take[MM_GROUP];                                               \
                    unsigned any = 0;                                                           \
                    for (int k = 0; k < MM_GROUP; k++) {                                        \
                        const MV v = MLD(x + (l_group + k) * lx);                               \
                        take[k] = (unsigned char)TAKES(v, val[l_group + k]);                    \
                        any |= take[k];                                                         \
                    }                                                                           \
                    for (int k = 0; incl && any && k < MM_GROUP; k++)                           \
                        if (take[k])                                                            \
                            MM_NEW_OWNER(l_group + k);                                          \
                    for (int k = 0; k < MM_GROUP; k++) {                                        \
                        acc[l_group + k] = ADD(acc[l_group + k], LD(g + (l_group + k) * lg));   \
                        ST(xb + (l_group + k) * lxb, ZERO);                                     \
                    }                                                                           \
                    for (int k = 0; !incl && any && k < MM_GROUP; k++)                          \
                        if (take[k])                                                            \
                            MM_NEW_OWNER(l_group + k);                                          \
                    continue;                                                                   \
                }                                                                               \
                for (int64_t l = l_group; l < w && l < l_group + MM_GROUP; l++) {               \
                    MV v = MLD(x + l * lx);                                                     \
                    A gv = LD(g + l * lg);                                                      \
                    ST(xb + l * lxb, ZERO);                                                     \
                    if (!incl) /* exclusive: g[r] belongs to the owner before x[r] */           \
                        acc[l] = ADD(acc[l], gv);                                               \
                    if (TAKES(v, val[l]))                                                       \
                        MM_NEW_OWNER(l);                                                        \
                    if (incl)                                                                   \
                        acc[l] = ADD(acc[l], gv);                                               \
                }                                                                               \
            }                                                                                   \
            x += b->step[0];                                                                    \
            g += b->step[2];                                                                    \
            xb += sxb;                                                                          \
        }                                                                                       \
        for (int64_t l = 0; l < w; l++)                                                         \
            if (own[l] >= 0)                                                                    \
                ST(xb0 + own[l] * sxb + l * lxb, acc[l]);                                       \
    }                                                                                           \
    SCAN_INLINE void KN(OPNAME##_vjp_panel_)(PANEL_ARGS)                                        \
    {                                                                                           \
        if (w * (int64_t)sizeof(T) >= PANEL_SHORT_ROW_BYTES)                                    \
            KN(OPNAME##_vjp_panel_back_)(b, l0, w, incl, contig, sizeof_op, line);              \
        else                                                                                    \
            KN(OPNAME##_vjp_panel_forward_)(b, l0, w, incl, contig, sizeof_op, line);           \
    }                                                                                           \
    DEFINE_PANEL_KERNEL(KN(OPNAME##_vjp_panels_), KN(OPNAME##_vjp_panel_), 4, sizeof(T),        \
                        sizeof(T), sizeof(T), sizeof(T))                                        \
                                                                                                \
    /* One line: the run's sum is the latency chain (one add per element),              \
     * so it is split over four accumulators by position mod 4, added up              \
     * when the run ends. */                                                            \
    SCAN_INLINE void KN(OPNAME##_vjp_line_)(const scan_block *b, const int incl)                \
    {                                                                                           \
        const char *x = b->ptr[0], *g = b->ptr[2];                                              \
        char *xb = b->ptr[3];                                                                   \
        char *const xb0 = xb;                                                                   \
        const int64_t sx = b->step[0], sg = b->step[2], sxb = b->step[3];                      \
        MV val = START;                                                                         \
        A acc[4] = {ZERO, ZERO, ZERO, ZERO};                                                    \
        int64_t own = -1;                                                                       \
        for (int64_t r = 0; r < b->n; r++) {                                                    \
            const MV v = MLD(x);                                                                \
            const A gv = LD(g);                                                                 \
            ST(xb, ZERO);                                                                       \
            if (!incl) /* exclusive: g[r] belongs to the owner before x[r] */                   \
                acc[r & 3] = ADD(acc[r & 3], gv);                                               \
            if (TAKES(v, val)) {                                                                \
                if (own >= 0)                                                                   \
                    ST(xb0 + own * sxb, ADD(ADD(acc[0], acc[1]), ADD(acc[2], acc[3])));         \
                own = r;                                                                        \
                acc[0] = acc[1] = acc[2] = acc[3] = ZERO;                                       \
                val = v;                                                                        \
            }                                                                                   \
            if (incl)                                                                           \
                acc[r & 3] = ADD(acc[r & 3], gv);                                               \
            x += sx;                                                                            \
            g += sg;                                                                            \
            xb += sxb;                                                                          \
        }                                                                                       \
        if (own >= 0)                                                                           \
            ST(xb0 + own * sxb, ADD(ADD(acc[0], acc[1]), ADD(acc[2], acc[3])));                 \
    }                                                                                           \
    static void KN(OPNAME##_vjp_)(const scan_block *b)                                          \
    {                                                                                           \
        if (b->m == 1) {                                                                        \
            if (b->inclusive) KN(OPNAME##_vjp_line_)(b, 1);                                     \
            else KN(OPNAME##_vjp_line_)(b, 0);                                                  \
        } else {                                                                                \
            KN(OPNAME##_vjp_panels_)(b);                                                        \
        }                                                                                       \
    }
#else
#define MAXMIN_DERIVS(OPNAME, IS_MAX, TAKES, START)
#endif

DEFINE_MAXMIN(max, 1, MM_TAKES_MAX, M_LOWEST)
DEFINE_MAXMIN(min, 0, MM_TAKES_MIN, M_HIGHEST)

#undef MAXMIN_DERIVS
#undef MM_LINE
#undef DEFINE_MAXMIN
#undef MM_TAKES_MAX
#undef MM_TAKES_MIN

/* the VJP walks forwards (in panels of rows of PANEL_SHORT_ROW_BYTES or
 * more, for which the order of items makes no difference) */
#define MAXMIN_CELLS_(OPNAME)                                                                   \
    static const scan_cell KN(OPNAME##_cells_)[SCAN_NUM_MODES] = {                              \
        [MODE_FORWARD] = {.kernel = KN(OPNAME##_fwd_), .split = MAXMIN_SPLIT_(OPNAME)},         \
        MAXMIN_DERIV_CELLS_(OPNAME)};
#if HAS_NARROW
#define MAXMIN_SPLIT_(OPNAME) {KN(OPNAME##_reduce_), line_combine_##OPNAME}
#else
#define MAXMIN_SPLIT_(OPNAME) {NULL, NULL, 0}
#endif
#if HAS_DERIV
#define MAXMIN_DERIV_CELLS_(OPNAME)                                                             \
    [MODE_JVP] = {.kernel = KN(OPNAME##_jvp_)}, [MODE_VJP] = {.kernel = KN(OPNAME##_vjp_)},
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
