/*
 * `dnnpress-worker export` (see wk_export.h).
 */
#include "worker/cmd/wk_export.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/model_io.h"
#include "common/onnx_export.h"
#include "worker/cmd/wk_flags.h"
#include "worker/cmd/wk_model_load.h"

struct wk_export_opts {
    const char *model, *out, *report;
    long qdq, batch, opset;
};

#define WK_OFF(f) offsetof(struct wk_export_opts, f)

static const struct wk_flag wk_export_flags[] = {
    {"model", WK_STR, WK_OFF(model), 0, 0, "model: a .safetensors checkpoint or FILE.onnx"},
    {"out", WK_STR, WK_OFF(out), 0, 0,
     "write the model here: FILE.onnx, or FILE.safetensors for a checkpoint"},
    {"report", WK_STR, WK_OFF(report), 0, 0,
     "compression report (compress --report) to summarize in metadata_props"},
    {"qdq", WK_BOOL, WK_OFF(qdq), 0, 1,
     "quantized layers as QuantizeLinear/DequantizeLinear pairs (default: float levels)"},
    {"batch", WK_INT, WK_OFF(batch), 1, 65536, "fixed batch size (default: symbolic N)"},
    {"opset", WK_INT, WK_OFF(opset), DP_ONNX_EXPORT_OPSET_MIN, DP_ONNX_EXPORT_OPSET,
     "ONNX opset, 10 to 13 (default 13; 10 writes Clip bounds as attributes, for older "
     "readers such as OpenCV 4.6)"},
};

int wk_export_main(int argc, char **argv)
{
    struct wk_export_opts o;
    memset(&o, 0, sizeof(o));
    size_t n_flags = sizeof(wk_export_flags) / sizeof(wk_export_flags[0]);
    int rc = wk_flags_parse("export", wk_export_flags, n_flags, &o, argc, argv);
    if (rc > 0) {
        printf("usage: dnnpress-worker export --model FILE --out MODEL.onnx [options]\n\nWrites "
               "the model as standard ONNX (opset %d).\n\noptions:\n",
               DP_ONNX_EXPORT_OPSET);
        wk_flags_help(stdout, wk_export_flags, n_flags);
        return 0;
    }
    if (rc != 0)
        return 2;
    if (o.model == NULL || o.out == NULL) {
        fprintf(stderr, "export: --model and --out are required (see --help)\n");
        return 2;
    }
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    json_t *report = NULL;
    rc = 1;
    if (o.report != NULL) {
        json_error_t je;
        report = json_load_file(o.report, JSON_REJECT_DUPLICATES, &je);
        if (report == NULL || !json_is_object(report)) {
            fprintf(stderr, "export: %s:%d: %s\n", o.report, je.line,
                    report == NULL ? je.text : "the report must be a JSON object");
            goto out;
        }
    }
    enum dp_err err = wk_model_load(o.model, &m, NULL, &ei);
    if (!err && wk_has_suffix(o.out, ".safetensors")) {
        /* An ONNX model in, a checkpoint out: what train and compress take. */
        err = dp_model_save(m, o.out, NULL, &ei);
    } else if (!err) {
        struct dp_onnx_export_opts eo = {(int)o.qdq, (int)o.opset, o.batch, report};
        err = dp_onnx_export_file(m, o.out, &eo, &ei);
    }
    if (err) {
        fprintf(stderr, "export: %s\n", dp_errinfo_msg(&ei, err));
        goto out;
    }
    rc = 0;
out:
    json_decref(report);
    dp_model_free(m);
    return rc;
}
