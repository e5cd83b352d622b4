/*
 * Test models for the compiler (see cg_fixture.h).
 */
#include "tests/unit/worker/codegen/cg_fixture.h"

#include <string.h>

#include "common/alloc.h"
#include "worker/compress/proj.h"
#include "worker/nn/arch.h"

void cg_fixture_bn_randomise(struct dp_model *m)
{
    uint64_t s = 0x1234567u;
    for (int i = 0; i < m->n_params; i++) {
        struct dp_param *p = &m->params[i];
        if (m->layers[p->layer].op != DP_OP_BN2D)
            continue;
        const char *dot = strrchr(p->name, '.');
        float *d = dp_param_data(m, p);
        for (size_t j = 0; j < p->numel; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            const float u = (float)(s >> 40) / (float)(1u << 24); /* [0, 1) */
            if (strcmp(dot, ".running_var") == 0)
                d[j] = 0.5f + u;
            else if (strcmp(dot, ".running_mean") == 0 || strcmp(dot, ".bias") == 0)
                d[j] = 0.2f * (u - 0.5f);
            else
                d[j] = 0.75f + 0.5f * u;
        }
    }
}

enum dp_err cg_fixture_model(const char *arch, int in_c, int in_h, int in_w, int n_patterns,
                             double conn_rate, struct dp_model **out, struct dp_errinfo *ei)
{
    struct dp_model *m = NULL;
    const float **ws = NULL;
    struct proj_shape *shapes = NULL;
    void *scratch = NULL;
    enum dp_err err = nn_arch_build(arch, in_c, in_h, in_w, 10, &m, ei);
    if (err)
        return err;
    nn_arch_init(m, 42);
    cg_fixture_bn_randomise(m);
    if (n_patterns <= 0)
        goto out;
    ws = dp_calloc((size_t)m->n_layers, sizeof(*ws));
    shapes = dp_calloc((size_t)m->n_layers, sizeof(*shapes));
    if (ws == NULL || shapes == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
        goto out;
    }
    int n = 0;
    size_t sb = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        if (l->op != DP_OP_CONV2D || l->a.kh != 3 || l->a.kw != 3)
            continue;
        const struct dp_param *w = &m->params[l->first_param];
        ws[n] = dp_param_data(m, w);
        shapes[n] = (struct proj_shape){w->shape[0], w->shape[1], 3, 3};
        const size_t b = proj_scratch_bytes(&shapes[n]);
        sb = b > sb ? b : sb;
        n++;
    }
    struct proj_params pp = proj_params_default();
    err = proj_pattern_select(ws, shapes, n, n_patterns, &pp, ei);
    if (err)
        goto out;
    scratch = dp_malloc_aligned(sb);
    if (scratch == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
        goto out;
    }
    for (int k = 0; k < n; k++) {
        float *z = (float *)ws[k];
        proj_pattern(z, &shapes[k], &pp, scratch);
        if (conn_rate > 1.0) {
            struct proj_params pc = proj_params_default();
            pc.rate = conn_rate;
            proj_connectivity(z, &shapes[k], &pc, scratch);
        }
    }
out:
    dp_free(ws);
    dp_free(shapes);
    dp_free_aligned(scratch);
    if (err) {
        dp_model_free(m);
        m = NULL;
    }
    *out = m;
    return err;
}
