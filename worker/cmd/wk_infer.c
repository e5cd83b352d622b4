/*
 * `dnnpress-worker infer` (see wk_infer.h). The input array is (N, ...)
 * with the model's per-sample size after the batch axis; it is run in
 * chunks of --batch samples through the same executor training uses.
 * A model that records an input normalisation (struct dp_model_norm) has
 * it applied first, so infer and the exported ONNX take the same input.
 */
#include "worker/cmd/wk_infer.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "worker/cmd/wk_cmd.h"
#include "worker/cmd/wk_flags.h"
#include "worker/cmd/wk_model_load.h"
#include "worker/cmd/wk_npy.h"
#include "worker/nn/net.h"

#define WK_OFF(f) offsetof(struct wk_infer_opts, f)

static const struct wk_flag wk_infer_flags[] = {
    {"model", WK_STR, WK_OFF(model), 0, 0, NULL, 0,
     "model: FILE.onnx or a .safetensors checkpoint"},
    {"input", WK_STR, WK_OFF(input), 0, 0, NULL, 0, "float32 .npy batch, batch axis first"},
    {"output", WK_STR, WK_OFF(output), 0, 0, NULL, 0, "write the float32 .npy outputs here"},
    {"batch", WK_INT, WK_OFF(batch), 1, 65536, "64", 0, "samples per forward pass"},
    {"threads", WK_INT, WK_OFF(threads), 1, 1024, NULL, 0, "worker threads (default: all cores)"},
};

#define WK_N_FLAGS (sizeof(wk_infer_flags) / sizeof(wk_infer_flags[0]))

/* A batch axis this long is a corrupt header, not a batch (and would
 * overflow the output size). */
#define WK_INFER_MAX_N (1 << 30)

void wk_infer_opts_init(struct wk_infer_opts *o)
{
    memset(o, 0, sizeof(*o));
    wk_flags_defaults(wk_infer_flags, WK_N_FLAGS, o);
}

enum dp_err wk_infer_check(const struct wk_infer_opts *o, struct dp_errinfo *ei)
{
    if (o->model == NULL || o->input == NULL || o->output == NULL)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "--model, --input and --output are required (see --help)");
    if (o->batch < 1)
        return dp_errinfo_set(ei, DP_EINVAL, "--batch must be at least 1");
    return DP_OK;
}

enum dp_err wk_infer(const struct wk_infer_opts *o, const struct wk_hooks *h, struct dp_errinfo *ei)
{
    (void)h; /* one forward pass per chunk: nothing to report, nothing to stop */
    enum dp_err err = wk_infer_check(o, ei);
    if (err)
        return err;
    wk_cmd_threads(o->threads);
    struct dp_model *m = NULL;
    struct nn_net *net = NULL;
    struct wk_npy x = {0};
    float *y = NULL;
    struct dp_onnx_import_info info;
    err = wk_model_load(o->model, &m, &info, ei);
    if (!err)
        err = wk_npy_read_f32(o->input, &x, ei);
    if (err)
        goto out;
    const size_t per_in = dp_model_out_size(m, DP_MODEL_INPUT);
    if (info.in_seq_first && x.ndim == 3 && x.dims[0] > 0 && x.dims[1] > 0) {
        /* A time-major sequence input (T, N, F) (an ONNX LSTM/GRU read
         * with layout 0): the engine takes it batch-first, (N, T, F). */
        const size_t t = (size_t)x.dims[0], nb = (size_t)x.dims[1], f = (size_t)x.dims[2];
        float *bf = dp_malloc(dp_size_mul(x.n ? x.n : 1, sizeof(float)));
        if (bf == NULL) {
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < t; i++)
            for (size_t j = 0; j < nb; j++)
                memcpy(bf + (j * t + i) * f, x.data + (i * nb + j) * f, f * sizeof(float));
        dp_free(x.data);
        x.data = bf;
        x.dims[0] = (int64_t)nb;
        x.dims[1] = (int64_t)t;
    }
    const int64_t n = x.dims[0];
    if (x.ndim < 2 || n < 1 || n > WK_INFER_MAX_N || x.n != (size_t)n * per_in) {
        err = dp_errinfo_set(
            ei, DP_ESHAPE,
            "%s: the model wants (N, %d, %d, %d) (or the same %zu values per sample in fewer "
            "axes), the array has %zu values for %lld samples",
            o->input, m->in_c, m->in_h, m->in_w, per_in, x.n, (long long)n);
        goto out;
    }
    if (m->norm.n_c > 0) {
        /* The model's input normalisation, exactly as its exported ONNX
         * graph applies it (Sub, then Div, in float): the input is what
         * the ONNX model takes, pixels on the [0, 1] scale. */
        const size_t hw = per_in / (size_t)m->norm.n_c;
        for (size_t k = 0; k < x.n; k++) {
            const int c = (int)((k / hw) % (size_t)m->norm.n_c);
            x.data[k] = (x.data[k] - m->norm.mean[c]) / m->norm.std[c];
        }
    }
    const int B = (int)o->batch;
    err = nn_net_new(m, n < B ? (int)n : B, &net, ei);
    if (err)
        goto out;
    const size_t per_out = (size_t)net->n_classes;
    y = dp_malloc(dp_size_mul((size_t)n, per_out * sizeof(float)));
    if (y == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the outputs");
        goto out;
    }
    for (int64_t i = 0; i < n; i += net->max_batch) {
        int nb = (int)(n - i < net->max_batch ? n - i : net->max_batch);
        const float *logits = nn_net_forward(net, x.data + (size_t)i * per_in, nb, 0);
        if (logits == NULL) {
            err = dp_errinfo_set(ei, DP_ENOMEM, "the forward pass failed (out of memory)");
            goto out;
        }
        memcpy(y + (size_t)i * per_out, logits, (size_t)nb * per_out * sizeof(float));
    }
    int64_t dims[4] = {n, info.out_c, info.out_h, info.out_w};
    int ndim = info.out_rank;
    if (ndim == 3)
        dims[2] = info.out_w; /* (N, C, L) */
    int64_t count = 1;
    for (int k = 1; k < ndim; k++)
        count *= dims[k];
    /* A sequence output ((N, T, H) held as (1, T, H), or a time-major one,
     * written batch-first) is written as (N, values per sample). */
    if (ndim < 1 || ndim > 4 || count != (int64_t)per_out || info.out_seq_t > 0) {
        ndim = 2;
        dims[1] = (int64_t)per_out;
    }
    err = wk_npy_write_f32(o->output, y, ndim, dims, ei);
out:
    dp_free(y);
    dp_free(x.data);
    nn_net_free(net);
    dp_model_free(m);
    return err;
}

int wk_infer_main(int argc, char **argv)
{
    struct wk_infer_opts o;
    wk_infer_opts_init(&o);
    int rc = wk_flags_parse("infer", wk_infer_flags, WK_N_FLAGS, &o, argc, argv);
    if (rc > 0) {
        printf("usage: dnnpress-worker infer --model FILE --input BATCH.npy --output OUT.npy "
               "[options]\n\nRuns the model forward (evaluation mode) and writes its "
               "outputs.\n\noptions:\n");
        wk_flags_help(stdout, wk_infer_flags, WK_N_FLAGS);
        return WK_EXIT_OK;
    }
    if (rc != 0)
        return WK_EXIT_USAGE;
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = wk_infer_check(&o, &ei);
    if (err) {
        fprintf(stderr, "infer: %s\n", dp_errinfo_msg(&ei, err));
        return WK_EXIT_USAGE;
    }
    err = wk_infer(&o, NULL, &ei);
    if (err)
        fprintf(stderr, "infer: %s\n", dp_errinfo_msg(&ei, err));
    return wk_cmd_exit_status(err);
}
