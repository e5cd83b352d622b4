/*
 * Quantized weight arrays (see cg_quant.h): codebooks found per row by
 * exact float bits, codes bit-packed, the floats restored at load.
 */
#include "worker/codegen/cg_quant.h"

#include <string.h>

#include "common/alloc.h"

#define CG_QMAX   (1 << CG_QUANT_MAX_BITS) /* most codebook entries */
#define CG_QHASH  512                      /* open-addressing slots, > 2 * CG_QMAX */
#define CG_QALIGN 64

/* Row r of map: elements start + i * stride, i < count (n floats in all). */
static void cg_qrow_range(const struct cg_qmap *m, size_t n, size_t r, size_t *start, size_t *count,
                          size_t *stride)
{
    switch (m->mode) {
        case CG_QROW_DIV:
            *start = r * m->a;
            *count = *start >= n ? 0 : (n - *start < m->a ? n - *start : m->a);
            *stride = 1;
            return;
        case CG_QROW_PANEL:
            *start = (r / m->b) * m->a + r % m->b;
            *count = m->a / m->b;
            *stride = m->b;
            return;
        case CG_QROW_RUNS:
            *start = m->ptr[r];
            *count = m->ptr[r + 1] - m->ptr[r];
            *stride = 1;
            return;
    }
    *start = *count = 0;
    *stride = 1;
}

static uint32_t cg_fbits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof(u));
    return u;
}

/* A set of at most CG_QMAX float bit patterns (exact values: -0 and 0 differ). */
struct cg_qset {
    uint32_t key[CG_QHASH];
    int16_t idx[CG_QHASH]; /* -1 empty, else the entry's index in val */
    uint32_t val[CG_QMAX];
    int n;
};

static void cg_qset_clear(struct cg_qset *s)
{
    memset(s->idx, 0xff, sizeof(s->idx));
    s->n = 0;
}

/* Index of u in s, inserting it; -1 when s is full and u is new. */
static int cg_qset_put(struct cg_qset *s, uint32_t u)
{
    uint32_t h = (u * 2654435761u) >> 23; /* 9 bits: CG_QHASH slots */
    for (;; h = (h + 1) & (CG_QHASH - 1)) {
        if (s->idx[h] < 0) {
            if (s->n == CG_QMAX)
                return -1;
            s->idx[h] = (int16_t)s->n;
            s->key[h] = u;
            s->val[s->n] = u;
            return s->n++;
        }
        if (s->key[h] == u)
            return s->idx[h];
    }
}

static int cg_bits_for(int n)
{
    int b = 1;
    while ((1 << b) < n)
        b++;
    return b;
}

static size_t cg_codes_bytes(size_t n, int bits)
{
    return (n * (size_t)bits + 7) / 8 + 1; /* +1: the loader reads codes two bytes at a time */
}

enum dp_err cg_quant_analyse(const float *v, size_t n, const struct cg_qmap *map,
                             struct cg_qplan *qp, struct dp_errinfo *ei)
{
    memset(qp, 0, sizeof(*qp));
    struct cg_qset *row = dp_malloc(sizeof(*row)), *all = dp_malloc(sizeof(*all));
    if (row == NULL || all == NULL) {
        dp_free(row);
        dp_free(all);
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory analysing weight values");
    }
    cg_qset_clear(all);
    int row_max = 1, shared_ok = 1, ok = n > 0;
    for (size_t r = 0; r < map->rows && ok; r++) {
        size_t start, count, stride;
        cg_qrow_range(map, n, r, &start, &count, &stride);
        cg_qset_clear(row);
        for (size_t i = 0; i < count && ok; i++) {
            const uint32_t u = cg_fbits(v[start + i * stride]);
            ok = cg_qset_put(row, u) >= 0;
            if (shared_ok && cg_qset_put(all, u) < 0)
                shared_ok = 0;
        }
        if (row->n > row_max)
            row_max = row->n;
    }
    if (ok) {
        const int bits_r = cg_bits_for(row_max);
        const size_t per_row =
            cg_codes_bytes(n, bits_r) + map->rows * ((size_t)1 << bits_r) * sizeof(float);
        const int bits_s = shared_ok ? cg_bits_for(all->n > 0 ? all->n : 1) : 0;
        const size_t shared =
            shared_ok ? cg_codes_bytes(n, bits_s) + ((size_t)1 << bits_s) * sizeof(float)
                      : (size_t)-1;
        const int use_row = per_row < shared;
        const size_t bytes = use_row ? per_row : shared;
        if (bytes < n * sizeof(float)) {
            qp->bits = use_row ? bits_r : bits_s;
            qp->nlev = 1 << qp->bits;
            qp->per_row = use_row;
            qp->bytes = bytes;
        }
    }
    dp_free(row);
    dp_free(all);
    return DP_OK;
}

static enum dp_err cg_quant_record(struct cg_weights *w, const struct cg_qsec *q,
                                   struct dp_errinfo *ei)
{
    if (w->n_q == w->cap_q) {
        const int cap = w->cap_q ? 2 * w->cap_q : 16;
        struct cg_qsec *nq = dp_realloc(w->q, dp_size_mul((size_t)cap, sizeof(*nq)));
        if (nq == NULL)
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the quantized arrays");
        w->q = nq;
        w->cap_q = cap;
    }
    w->q[w->n_q++] = *q;
    return DP_OK;
}

enum dp_err cg_quant_add(struct cg_weights *w, int step, const float *v, size_t n,
                         const struct cg_qmap *map, size_t *off, struct dp_errinfo *ei)
{
    if (!w->quantize)
        return cg_weights_append(w, v, n * sizeof(float), off, ei);
    struct cg_qplan qp;
    enum dp_err err = cg_quant_analyse(v, n, map, &qp, ei);
    if (err)
        return err;
    if (qp.bits == 0)
        return cg_weights_append(w, v, n * sizeof(float), off, ei);
    const size_t nb = cg_codes_bytes(n, qp.bits);
    const size_t nl = (qp.per_row ? map->rows : 1) * (size_t)qp.nlev;
    unsigned char *codes = dp_calloc(nb, 1);
    float *lv = dp_calloc(nl, sizeof(float));
    struct cg_qset *set = dp_malloc(sizeof(*set));
    if (codes == NULL || lv == NULL || set == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory quantizing weights");
        goto out;
    }
    cg_qset_clear(set);
    for (size_t r = 0; r < map->rows; r++) {
        size_t start, count, stride;
        cg_qrow_range(map, n, r, &start, &count, &stride);
        if (qp.per_row)
            cg_qset_clear(set);
        for (size_t i = 0; i < count; i++) {
            const size_t e = start + i * stride;
            const int c = cg_qset_put(set, cg_fbits(v[e])); /* fits: analysed above */
            const size_t bit = e * (size_t)qp.bits;
            codes[bit / 8] |= (unsigned char)((unsigned)c << (bit % 8));
            if (bit % 8 + (size_t)qp.bits > 8)
                codes[bit / 8 + 1] |= (unsigned char)((unsigned)c >> (8 - bit % 8));
        }
        if (qp.per_row)
            memcpy(lv + r * (size_t)qp.nlev, set->val, (size_t)set->n * sizeof(float));
    }
    if (!qp.per_row)
        memcpy(lv, set->val, (size_t)set->n * sizeof(float));
    struct cg_qsec q = {0};
    q.n = n;
    q.bits = qp.bits;
    q.nlev = qp.nlev;
    q.per_row = qp.per_row;
    q.map = *map;
    q.map.ptr = NULL;
    q.fix = off;
    q.step = step;
    err = cg_weights_append(w, codes, nb, &q.codes, ei);
    if (!err)
        err = cg_weights_append(w, lv, nl * sizeof(float), &q.levels, ei);
    if (err)
        goto out;
    q.dst = (w->vlen + CG_QALIGN - 1) / CG_QALIGN * CG_QALIGN; /* relative until finish */
    w->vlen = q.dst + n * sizeof(float);
    *off = q.dst;
    err = cg_quant_record(w, &q, ei);
out:
    dp_free(codes);
    dp_free(lv);
    dp_free(set);
    return err;
}

void cg_quant_finish(struct cg_weights *w)
{
    const size_t base = (w->len + CG_QALIGN - 1) / CG_QALIGN * CG_QALIGN;
    for (int i = 0; i < w->n_q; i++) {
        w->q[i].dst += base;
        *w->q[i].fix = w->q[i].dst;
        w->q[i].fix = NULL;
    }
    /* 64 bytes of slack: a kernel may load a whole vector past an array's
     * last weight (cg_expand4), as it may past a file section. */
    w->mem_len = w->n_q > 0 ? base + w->vlen + CG_QALIGN : w->len;
}

void cg_quant_step_bytes(const struct cg_weights *w, int k, size_t *bytes, int *bits)
{
    *bytes = 0;
    *bits = 0;
    for (int i = 0; i < w->n_q; i++) {
        const struct cg_qsec *q = &w->q[i];
        if (q->step != k)
            continue;
        *bytes += cg_codes_bytes(q->n, q->bits) +
                  (q->per_row ? q->map.rows : 1) * (size_t)q->nlev * sizeof(float);
        *bits = q->bits;
    }
}

void cg_quant_emit(FILE *f, const struct cg_weights *w)
{
    fprintf(f, "#define CG_BLOB_BYTES %zuu /* weights.bin and the quantized arrays restored */\n",
            w->mem_len);
    fprintf(f, "#define CG_N_QSECS %d\n", w->n_q);
    fputs("/* A weight array stored quantized in weights.bin (cg_dequant_all): the floats\n"
          " * at dst are codebook entries, the code of float e at bit e * bits of codes;\n"
          " * row r (its codebook, when per_row) is, by mode, 0: a floats from r * a,\n"
          " * 1: the lanes b apart in groups of a (weight panels), 2: [ptr[r], ptr[r+1]). */\n"
          "struct cg_qsec {\n    size_t dst, n, codes, levels;\n"
          "    int bits, nlev, per_row, mode;\n    size_t a, b, ptr, rows;\n};\n\n",
          f);
    /* Only part 0 (the runtime, cg_emit.h) restores the arrays. */
    fputs("#if CG_PART == 0\n", f);
    fputs("static const struct cg_qsec cg_qsecs[CG_N_QSECS > 0 ? CG_N_QSECS : 1] = {\n", f);
    for (int i = 0; i < w->n_q; i++) {
        const struct cg_qsec *q = &w->q[i];
        fprintf(f, "    {%zuu, %zuu, %zuu, %zuu, %d, %d, %d, %d, %zuu, %zuu, %zuu, %zuu},\n",
                q->dst, q->n, q->codes, q->levels, q->bits, q->nlev, q->per_row, (int)q->map.mode,
                q->map.a, q->map.b, q->map.ptr_off, q->map.rows);
    }
    if (w->n_q == 0)
        fputs("    {0u, 0u, 0u, 0u, 0, 0, 0, 0, 0u, 0u, 0u, 0u},\n", f);
    fputs("};\n#endif\n\n", f);
}

void cg_quant_free(struct cg_weights *w)
{
    dp_free(w->q);
    w->q = NULL;
    w->n_q = w->cap_q = 0;
}
