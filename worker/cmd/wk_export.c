/*
 * `dnnpress-worker export` (see wk_export.h).
 */
#include "worker/cmd/wk_export.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/model_io.h"
#include "common/onnx_export.h"
#include "worker/cmd/wk_cmd.h"
#include "worker/cmd/wk_flags.h"
#include "worker/cmd/wk_model_load.h"

/* The command line: the options plus the report file the CLI reads. */
struct wk_export_cli {
    struct wk_export_opts o;
    const char *report;
};

#define WK_OFF(f) offsetof(struct wk_export_cli, f)

static const struct wk_flag wk_export_flags[] = {
    {"model", WK_STR, WK_OFF(o.model), 0, 0, NULL, 0,
     "model: a .safetensors checkpoint or FILE.onnx"},
    {"out", WK_STR, WK_OFF(o.out), 0, 0, NULL, 0,
     "write the model here: FILE.onnx, or FILE.safetensors for a checkpoint"},
    {"report", WK_STR, WK_OFF(report), 0, 0, NULL, 0,
     "compression report (compress --report) to summarize in metadata_props"},
    {"qdq", WK_BOOL, WK_OFF(o.qdq), 0, 1, NULL, 0,
     "quantized layers as QuantizeLinear/DequantizeLinear pairs (default: float levels)"},
    {"batch", WK_INT, WK_OFF(o.batch), 1, 65536, NULL, 0, "fixed batch size (default: symbolic N)"},
    {"opset", WK_INT, WK_OFF(o.opset), DP_ONNX_EXPORT_OPSET_MIN, DP_ONNX_EXPORT_OPSET_MAX, NULL, 0,
     "ONNX opset, 10 to 13 (default 13; 10 writes Clip bounds as attributes, for older "
     "readers such as OpenCV 4.6)"},
    {"no-normalization", WK_BOOL, WK_OFF(o.no_norm), 0, 1, NULL, 0,
     "leave the model's input normalisation out of the graph (default: leading Sub/Div nodes, "
     "so the file takes pixels scaled to [0, 1]; the numbers are in the metadata either way)"},
};

#define WK_N_FLAGS (sizeof(wk_export_flags) / sizeof(wk_export_flags[0]))

static void wk_export_cli_init(struct wk_export_cli *c)
{
    memset(c, 0, sizeof(*c));
    wk_flags_defaults(wk_export_flags, WK_N_FLAGS, c);
}

void wk_export_opts_init(struct wk_export_opts *o)
{
    struct wk_export_cli c;
    wk_export_cli_init(&c);
    *o = c.o;
}

enum dp_err wk_export_check(const struct wk_export_opts *o, struct dp_errinfo *ei)
{
    if (o->model == NULL || o->out == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "--model and --out are required (see --help)");
    return DP_OK;
}

enum dp_err wk_export(const struct wk_export_opts *o, const struct wk_hooks *h,
                      struct dp_errinfo *ei)
{
    (void)h; /* a single short pass: nothing to stop, no epochs to report */
    struct dp_model *m = NULL;
    enum dp_err err = wk_export_check(o, ei);
    if (!err)
        err = wk_model_load(o->model, &m, NULL, ei);
    if (!err && wk_has_suffix(o->out, ".safetensors")) {
        /* An ONNX model in, a checkpoint out: what train and compress take. */
        err = dp_model_save(m, o->out, NULL, ei);
    } else if (!err) {
        struct dp_onnx_export_opts eo = {(int)o->qdq, (int)o->opset, o->batch, o->report,
                                         (int)o->no_norm};
        err = dp_onnx_export_file(m, o->out, &eo, ei);
    }
    dp_model_free(m);
    return err;
}

int wk_export_main(int argc, char **argv)
{
    struct wk_export_cli c;
    wk_export_cli_init(&c);
    int rc = wk_flags_parse("export", wk_export_flags, WK_N_FLAGS, &c, argc, argv);
    if (rc > 0) {
        printf("usage: dnnpress-worker export --model FILE --out MODEL.onnx [options]\n\nWrites "
               "the model as standard ONNX (opset %d).\n\noptions:\n",
               DP_ONNX_EXPORT_OPSET);
        wk_flags_help(stdout, wk_export_flags, WK_N_FLAGS);
        return WK_EXIT_OK;
    }
    if (rc != 0)
        return WK_EXIT_USAGE;
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = wk_export_check(&c.o, &ei);
    if (err) {
        fprintf(stderr, "export: %s\n", dp_errinfo_msg(&ei, err));
        return WK_EXIT_USAGE;
    }
    json_t *report = NULL;
    if (c.report != NULL) {
        json_error_t je;
        report = json_load_file(c.report, JSON_REJECT_DUPLICATES, &je);
        if (report == NULL || !json_is_object(report)) {
            fprintf(stderr, "export: %s:%d: %s\n", c.report, je.line,
                    report == NULL ? je.text : "the report must be a JSON object");
            json_decref(report);
            return WK_EXIT_FAIL;
        }
        c.o.report = report;
    }
    err = wk_export(&c.o, NULL, &ei);
    if (err)
        fprintf(stderr, "export: %s\n", dp_errinfo_msg(&ei, err));
    json_decref(report);
    return wk_cmd_exit_status(err);
}
