/*
 * Convolution through oneDNN (see conv_dnnl.h).
 *
 * DESIGN: for each layer and batch size we build three primitives -
 * forward (training), backward data and backward weights - letting oneDNN
 * choose their memory layouts ("any"), plus the reorders between our
 * NCHW/OIHW tensors and those layouts. A reorder whose two layouts are equal
 * is skipped. Reorders back into our gradients carry a sum post-op, so they
 * accumulate as every backward in the engine must. All intermediate buffers
 * are allocated once here; forward and backward allocate nothing.
 */
#include "worker/nn/conv_dnnl.h"

#include <oneapi/dnnl/dnnl.h>
#include <string.h>

#include "common/alloc.h"

struct nn_dnnl {
    dnnl_engine_t eng;
    dnnl_stream_t strm;
};

/* A reorder between two layouts; prim is NULL when they are equal. */
struct cd_reorder {
    dnnl_primitive_t prim;
    dnnl_memory_t from, to;
};

/* A buffer in oneDNN's chosen layout, or a view of a user tensor. */
struct cd_buf {
    dnnl_memory_desc_t md;
    dnnl_memory_t mem;
    void *data; /* owned, or NULL when the layout is the user's own */
};

struct nn_conv_dnnl {
    struct nn_dnnl *ctx;
    int B, OC, has_bias;
    dnnl_memory_desc_t src_u, w_u, dst_u, b_md;
    dnnl_memory_t src_um, w_um, dst_um, b_um, dsrc_um, dw_um, ddst_um;
    dnnl_primitive_t fwd, bwd_d, bwd_w;
    struct cd_buf src_f, w_f, dst_f;       /* forward */
    struct cd_buf ddst_d, w_d, dsrc_d;     /* backward data */
    struct cd_buf src_w, ddst_w, dw_w, db; /* backward weights */
    struct cd_reorder r_src_f, r_w_f, r_dst_f;
    struct cd_reorder r_ddst_d, r_w_d, r_dsrc_d;
    struct cd_reorder r_src_w, r_ddst_w, r_dw_w;
};

/* ---- Context ------------------------------------------------------------- */

enum dp_err nn_dnnl_new(struct nn_dnnl **out, struct dp_errinfo *ei)
{
    *out = NULL;
    struct nn_dnnl *ctx = dp_calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    if (dnnl_engine_create(&ctx->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&ctx->strm, ctx->eng, dnnl_stream_default_flags) != dnnl_success) {
        nn_dnnl_free(ctx);
        return dp_errinfo_set(ei, DP_EUNSUPPORTED, "oneDNN could not create a CPU engine");
    }
    *out = ctx;
    return DP_OK;
}

void nn_dnnl_free(struct nn_dnnl *ctx)
{
    if (ctx == NULL)
        return;
    if (ctx->strm != NULL)
        dnnl_stream_destroy(ctx->strm);
    if (ctx->eng != NULL)
        dnnl_engine_destroy(ctx->eng);
    dp_free(ctx);
}

/* ---- Building blocks ----------------------------------------------------- */

static void cd_buf_free(struct cd_buf *b)
{
    if (b->mem != NULL)
        dnnl_memory_destroy(b->mem);
    dp_free_aligned(b->data);
    memset(b, 0, sizeof(*b));
}

/* A buffer in layout md, unless md equals the user's layout (then a view). */
static dnnl_status_t cd_buf_init(struct nn_conv_dnnl *c, struct cd_buf *b,
                                 const dnnl_memory_desc_t *md, const dnnl_memory_desc_t *user)
{
    b->md = *md;
    if (user != NULL && dnnl_memory_desc_equal(md, user))
        return dnnl_memory_create(&b->mem, md, c->ctx->eng, DNNL_MEMORY_NONE);
    b->data = dp_malloc_aligned(dnnl_memory_desc_get_size(md) + 64);
    if (b->data == NULL)
        return dnnl_out_of_memory;
    return dnnl_memory_create(&b->mem, md, c->ctx->eng, b->data);
}

static void cd_reorder_free(struct cd_reorder *r)
{
    if (r->prim != NULL)
        dnnl_primitive_destroy(r->prim);
    memset(r, 0, sizeof(*r));
}

/* A reorder from -> to (memory objects borrowed); accumulate adds into to. */
static dnnl_status_t cd_reorder_init(struct nn_conv_dnnl *c, struct cd_reorder *r,
                                     dnnl_memory_t from, const dnnl_memory_desc_t *from_md,
                                     dnnl_memory_t to, const dnnl_memory_desc_t *to_md,
                                     int accumulate)
{
    r->from = from;
    r->to = to;
    if (!accumulate && dnnl_memory_desc_equal(from_md, to_md))
        return dnnl_success;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success && accumulate) {
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success)
            st = dnnl_post_ops_append_sum(po, 1.0f);
        if (st == dnnl_success)
            st = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (st == dnnl_success)
        st =
            dnnl_reorder_primitive_desc_create(&pd, from_md, c->ctx->eng, to_md, c->ctx->eng, attr);
    if (st == dnnl_success)
        st = dnnl_primitive_create(&r->prim, pd);
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    if (po != NULL)
        dnnl_post_ops_destroy(po);
    if (attr != NULL)
        dnnl_primitive_attr_destroy(attr);
    return st;
}

static void cd_reorder_run(struct nn_conv_dnnl *c, const struct cd_reorder *r)
{
    if (r->prim == NULL)
        return;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, r->from}, {DNNL_ARG_TO, r->to}};
    dnnl_primitive_execute(r->prim, c->ctx->strm, 2, args);
}

/* The memory a primitive should read: the blocked buffer, or the user's
 * tensor itself when no reorder was needed. */
static dnnl_memory_t cd_mem(const struct cd_reorder *r, const struct cd_buf *b, int into)
{
    if (r->prim != NULL)
        return b->mem;
    return into ? r->to : r->from;
}

static void cd_set(dnnl_memory_t m, const void *p)
{
    dnnl_memory_set_data_handle(m, (void *)(uintptr_t)p);
}

/* ---- Construction -------------------------------------------------------- */

void nn_conv_dnnl_free(struct nn_conv_dnnl *c)
{
    if (c == NULL)
        return;
    struct cd_reorder *rs[] = {&c->r_src_f,  &c->r_w_f,   &c->r_dst_f,  &c->r_ddst_d, &c->r_w_d,
                               &c->r_dsrc_d, &c->r_src_w, &c->r_ddst_w, &c->r_dw_w};
    for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++)
        cd_reorder_free(rs[i]);
    struct cd_buf *bs[] = {&c->src_f,  &c->w_f,   &c->dst_f,  &c->ddst_d, &c->w_d,
                           &c->dsrc_d, &c->src_w, &c->ddst_w, &c->dw_w,   &c->db};
    for (size_t i = 0; i < sizeof(bs) / sizeof(bs[0]); i++)
        cd_buf_free(bs[i]);
    dnnl_primitive_t ps[] = {c->fwd, c->bwd_d, c->bwd_w};
    for (size_t i = 0; i < 3; i++) {
        if (ps[i] != NULL)
            dnnl_primitive_destroy(ps[i]);
    }
    dnnl_memory_t ms[] = {c->src_um, c->w_um, c->dst_um, c->b_um, c->dsrc_um, c->dw_um, c->ddst_um};
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        if (ms[i] != NULL)
            dnnl_memory_destroy(ms[i]);
    }
    dp_free(c);
}

int nn_conv_dnnl_batch(const struct nn_conv_dnnl *c)
{
    return c->B;
}

static const dnnl_memory_desc_t *cd_q(const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

static dnnl_status_t cd_build(struct nn_conv_dnnl *c, const struct nn_conv2d_dims *d,
                              enum nn_layout src_layout, enum nn_layout dst_layout)
{
    const int G = d->groups;
    dnnl_dims_t src_dims = {d->B, d->C, d->H, d->W};
    dnnl_dims_t dst_dims = {d->B, d->OC, d->OH, d->OW};
    dnnl_dims_t w_dims = {G, d->OC / G, d->C / G, d->kh, d->kw};
    dnnl_dims_t w1_dims = {d->OC, d->C, d->kh, d->kw};
    dnnl_dims_t b_dims = {d->OC};
    const int wnd = G > 1 ? 5 : 4;
    const dnnl_dim_t *wd = G > 1 ? w_dims : w1_dims;
    dnnl_dims_t strides = {d->sh, d->sw}, dil = {d->dh - 1, d->dw - 1};
    dnnl_dims_t pad_l = {d->pt, d->pl};
    /* Right padding implied by the output size (may be negative: floor mode). */
    dnnl_dims_t pad_r = {(d->OH - 1) * d->sh + (d->kh - 1) * d->dh + 1 - d->H - d->pt,
                         (d->OW - 1) * d->sw + (d->kw - 1) * d->dw + 1 - d->W - d->pl};
    dnnl_memory_desc_t src_a, dst_a, w_a, b_a;
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_convolution_desc_t cd;
    dnnl_status_t st;

#define CD_TRY(x)                                                                                  \
    do {                                                                                           \
        st = (x);                                                                                  \
        if (st != dnnl_success)                                                                    \
            goto out;                                                                              \
    } while (0)
    CD_TRY(
        dnnl_memory_desc_init_by_tag(&c->src_u, 4, src_dims, dnnl_f32,
                                     src_layout == NN_LAYOUT_NCHW16C ? dnnl_nChw16c : dnnl_nchw));
    CD_TRY(
        dnnl_memory_desc_init_by_tag(&c->dst_u, 4, dst_dims, dnnl_f32,
                                     dst_layout == NN_LAYOUT_NCHW16C ? dnnl_nChw16c : dnnl_nchw));
    CD_TRY(
        dnnl_memory_desc_init_by_tag(&c->w_u, wnd, wd, dnnl_f32, G > 1 ? dnnl_goihw : dnnl_oihw));
    CD_TRY(dnnl_memory_desc_init_by_tag(&c->b_md, 1, b_dims, dnnl_f32, dnnl_a));
    CD_TRY(dnnl_memory_desc_init_by_tag(&src_a, 4, src_dims, dnnl_f32, dnnl_format_tag_any));
    CD_TRY(dnnl_memory_desc_init_by_tag(&dst_a, 4, dst_dims, dnnl_f32, dnnl_format_tag_any));
    CD_TRY(dnnl_memory_desc_init_by_tag(&w_a, wnd, wd, dnnl_f32, dnnl_format_tag_any));
    b_a = c->b_md;

    CD_TRY(dnnl_dilated_convolution_forward_desc_init(
        &cd, dnnl_forward_training, dnnl_convolution_direct, &src_a, &w_a,
        c->has_bias ? &b_a : NULL, &dst_a, strides, dil, pad_l, pad_r));
    CD_TRY(dnnl_primitive_desc_create(&fpd, &cd, NULL, c->ctx->eng, NULL));
    CD_TRY(dnnl_dilated_convolution_backward_data_desc_init(
        &cd, dnnl_convolution_direct, &src_a, &w_a, &dst_a, strides, dil, pad_l, pad_r));
    CD_TRY(dnnl_primitive_desc_create(&dpd, &cd, NULL, c->ctx->eng, fpd));
    CD_TRY(dnnl_dilated_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &src_a,
                                                               &w_a, c->has_bias ? &b_a : NULL,
                                                               &dst_a, strides, dil, pad_l, pad_r));
    CD_TRY(dnnl_primitive_desc_create(&wpd, &cd, NULL, c->ctx->eng, fpd));
    CD_TRY(dnnl_primitive_create(&c->fwd, fpd));
    CD_TRY(dnnl_primitive_create(&c->bwd_d, dpd));
    CD_TRY(dnnl_primitive_create(&c->bwd_w, wpd));

    /* User tensors: handles set on every call. */
    CD_TRY(dnnl_memory_create(&c->src_um, &c->src_u, c->ctx->eng, DNNL_MEMORY_NONE));
    CD_TRY(dnnl_memory_create(&c->w_um, &c->w_u, c->ctx->eng, DNNL_MEMORY_NONE));
    CD_TRY(dnnl_memory_create(&c->dst_um, &c->dst_u, c->ctx->eng, DNNL_MEMORY_NONE));
    CD_TRY(dnnl_memory_create(&c->b_um, &c->b_md, c->ctx->eng, DNNL_MEMORY_NONE));
    CD_TRY(dnnl_memory_create(&c->dsrc_um, &c->src_u, c->ctx->eng, DNNL_MEMORY_NONE));
    CD_TRY(dnnl_memory_create(&c->dw_um, &c->w_u, c->ctx->eng, DNNL_MEMORY_NONE));
    CD_TRY(dnnl_memory_create(&c->ddst_um, &c->dst_u, c->ctx->eng, DNNL_MEMORY_NONE));

    /* Forward: src and weights in, dst out. */
    CD_TRY(cd_buf_init(c, &c->src_f, cd_q(fpd, dnnl_query_src_md), &c->src_u));
    CD_TRY(cd_buf_init(c, &c->w_f, cd_q(fpd, dnnl_query_weights_md), &c->w_u));
    CD_TRY(cd_buf_init(c, &c->dst_f, cd_q(fpd, dnnl_query_dst_md), &c->dst_u));
    CD_TRY(cd_reorder_init(c, &c->r_src_f, c->src_um, &c->src_u, c->src_f.mem, &c->src_f.md, 0));
    CD_TRY(cd_reorder_init(c, &c->r_w_f, c->w_um, &c->w_u, c->w_f.mem, &c->w_f.md, 0));
    CD_TRY(cd_reorder_init(c, &c->r_dst_f, c->dst_f.mem, &c->dst_f.md, c->dst_um, &c->dst_u, 0));
    /* Backward data: diff_dst and weights in, diff_src accumulated. */
    CD_TRY(cd_buf_init(c, &c->ddst_d, cd_q(dpd, dnnl_query_diff_dst_md), &c->dst_u));
    CD_TRY(cd_buf_init(c, &c->w_d, cd_q(dpd, dnnl_query_weights_md), &c->w_u));
    CD_TRY(cd_buf_init(c, &c->dsrc_d, cd_q(dpd, dnnl_query_diff_src_md), NULL));
    CD_TRY(
        cd_reorder_init(c, &c->r_ddst_d, c->ddst_um, &c->dst_u, c->ddst_d.mem, &c->ddst_d.md, 0));
    CD_TRY(cd_reorder_init(c, &c->r_w_d, c->w_um, &c->w_u, c->w_d.mem, &c->w_d.md, 0));
    CD_TRY(
        cd_reorder_init(c, &c->r_dsrc_d, c->dsrc_d.mem, &c->dsrc_d.md, c->dsrc_um, &c->src_u, 1));
    /* Backward weights: src and diff_dst in, diff_weights accumulated. */
    CD_TRY(cd_buf_init(c, &c->src_w, cd_q(wpd, dnnl_query_src_md), &c->src_u));
    CD_TRY(cd_buf_init(c, &c->ddst_w, cd_q(wpd, dnnl_query_diff_dst_md), &c->dst_u));
    CD_TRY(cd_buf_init(c, &c->dw_w, cd_q(wpd, dnnl_query_diff_weights_md), NULL));
    if (c->has_bias)
        CD_TRY(cd_buf_init(c, &c->db, &c->b_md, NULL));
    CD_TRY(cd_reorder_init(c, &c->r_src_w, c->src_um, &c->src_u, c->src_w.mem, &c->src_w.md, 0));
    CD_TRY(
        cd_reorder_init(c, &c->r_ddst_w, c->ddst_um, &c->dst_u, c->ddst_w.mem, &c->ddst_w.md, 0));
    CD_TRY(cd_reorder_init(c, &c->r_dw_w, c->dw_w.mem, &c->dw_w.md, c->dw_um, &c->w_u, 1));
#undef CD_TRY
out:
    if (fpd != NULL)
        dnnl_primitive_desc_destroy(fpd);
    if (dpd != NULL)
        dnnl_primitive_desc_destroy(dpd);
    if (wpd != NULL)
        dnnl_primitive_desc_destroy(wpd);
    return st;
}

enum dp_err nn_conv_dnnl_new(struct nn_dnnl *ctx, const struct nn_conv2d_dims *d, int has_bias,
                             enum nn_layout src_layout, enum nn_layout dst_layout,
                             struct nn_conv_dnnl **out, struct dp_errinfo *ei)
{
    *out = NULL;
    struct nn_conv_dnnl *c = dp_calloc(1, sizeof(*c));
    if (c == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    c->ctx = ctx;
    c->B = d->B;
    c->OC = d->OC;
    c->has_bias = has_bias;
    if ((src_layout == NN_LAYOUT_NCHW16C && d->C % 16 != 0) ||
        (dst_layout == NN_LAYOUT_NCHW16C && d->OC % 16 != 0)) {
        nn_conv_dnnl_free(c);
        return dp_errinfo_set(ei, DP_EINVAL, "NCHW16C needs channel counts divisible by 16");
    }
    dnnl_status_t st = cd_build(c, d, src_layout, dst_layout);
    if (st != dnnl_success) {
        nn_conv_dnnl_free(c);
        if (st == dnnl_out_of_memory)
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for oneDNN buffers");
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "oneDNN declined a %dx%d convolution %d->%d (status %d)", d->kh,
                              d->kw, d->C, d->OC, (int)st);
    }
    *out = c;
    return DP_OK;
}

/* ---- Execution ----------------------------------------------------------- */

/* Whether the weight-gradient pass can read the forward's blocked copy of src. */
static int cd_src_shared(const struct nn_conv_dnnl *c)
{
    return c->r_src_f.prim != NULL && dnnl_memory_desc_equal(&c->src_w.md, &c->src_f.md);
}

/* src as the forward left it for the weight-gradient pass: the user tensor
 * itself (its handle still points at the forward's input), the forward's
 * blocked copy, or a copy in the pass's own layout made by the forward. */
static dnnl_memory_t cd_src_for_weights(const struct nn_conv_dnnl *c)
{
    if (c->r_src_w.prim == NULL)
        return c->src_um;
    return cd_src_shared(c) ? c->src_f.mem : c->src_w.mem;
}

void nn_conv_dnnl_forward(struct nn_conv_dnnl *c, float *out, const float *inp, const float *weight,
                          const float *bias)
{
    cd_set(c->src_um, inp);
    cd_set(c->w_um, weight);
    cd_set(c->dst_um, out);
    /* The weight-gradient pass reads src in its own layout; the forward
     * prepares it now, or shares its own copy (see cd_src_for_weights). */
    cd_reorder_run(c, &c->r_src_f);
    cd_reorder_run(c, &c->r_w_f);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, cd_mem(&c->r_src_f, &c->src_f, 0)},
                               {DNNL_ARG_WEIGHTS, cd_mem(&c->r_w_f, &c->w_f, 0)},
                               {DNNL_ARG_DST, cd_mem(&c->r_dst_f, &c->dst_f, 1)},
                               {DNNL_ARG_BIAS, c->b_um}};
    int nargs = 3;
    if (c->has_bias) {
        cd_set(c->b_um, bias);
        nargs = 4;
    }
    dnnl_primitive_execute(c->fwd, c->ctx->strm, nargs, args);
    cd_reorder_run(c, &c->r_dst_f);
    if (c->r_src_w.prim != NULL && !cd_src_shared(c))
        cd_reorder_run(c, &c->r_src_w);
    dnnl_stream_wait(c->ctx->strm);
}

void nn_conv_dnnl_backward(struct nn_conv_dnnl *c, float *dinp, float *dweight, float *dbias,
                           const float *dout, const float *weight)
{
    int ddst_ready = 0; /* ddst_w holds the reordered diff_dst */
    cd_set(c->ddst_um, dout);
    cd_set(c->w_um, weight);
    if (dweight != NULL || dbias != NULL) {
        dnnl_memory_t src = cd_src_for_weights(c);
        cd_reorder_run(c, &c->r_ddst_w);
        ddst_ready = c->r_ddst_w.prim != NULL;
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src},
                                   {DNNL_ARG_DIFF_DST, cd_mem(&c->r_ddst_w, &c->ddst_w, 0)},
                                   {DNNL_ARG_DIFF_WEIGHTS, c->dw_w.mem},
                                   {DNNL_ARG_DIFF_BIAS, c->db.mem}};
        dnnl_primitive_execute(c->bwd_w, c->ctx->strm, c->has_bias ? 4 : 3, args);
        if (dweight != NULL) {
            cd_set(c->dw_um, dweight);
            cd_reorder_run(c, &c->r_dw_w);
        }
    }
    if (dinp != NULL) {
        /* diff_dst and the weights are often wanted in the same layouts the
         * weight pass and the forward already produced: reuse those copies
         * (the weights have not changed since the forward). */
        dnnl_memory_t ddst = cd_mem(&c->r_ddst_d, &c->ddst_d, 0);
        if (ddst_ready && dnnl_memory_desc_equal(&c->ddst_d.md, &c->ddst_w.md))
            ddst = c->ddst_w.mem;
        else
            cd_reorder_run(c, &c->r_ddst_d);
        dnnl_memory_t w = cd_mem(&c->r_w_d, &c->w_d, 0);
        if (c->r_w_f.prim != NULL && c->r_w_d.prim != NULL &&
            dnnl_memory_desc_equal(&c->w_d.md, &c->w_f.md))
            w = c->w_f.mem;
        else
            cd_reorder_run(c, &c->r_w_d);
        cd_set(c->dsrc_um, dinp);
        dnnl_exec_arg_t args[3] = {
            {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, c->dsrc_d.mem}};
        dnnl_primitive_execute(c->bwd_d, c->ctx->strm, 3, args);
        cd_reorder_run(c, &c->r_dsrc_d);
    }
    dnnl_stream_wait(c->ctx->strm);
    if (dbias != NULL && c->has_bias) {
        const float *db = c->db.data;
        for (int oc = 0; oc < c->OC; oc++)
            dbias[oc] += db[oc];
    }
}
