/*
 * `dnnpress-worker export`: writes a model (checkpoint or ONNX) as a
 * standard ONNX file, with its compression metadata and optionally a
 * summary of the compression report in metadata_props; or, given an ONNX
 * model and a .safetensors name, as the checkpoint train and compress take.
 * The shape of every command is in wk_cmd.h.
 */
#ifndef DP_WORKER_CMD_WK_EXPORT_H
#define DP_WORKER_CMD_WK_EXPORT_H

#include <jansson.h>

#include "common/err.h"
#include "worker/cmd/wk_hooks.h"

/* One field per flag of `export`; the report arrives parsed. */
struct wk_export_opts {
    const char *model;    /* .safetensors checkpoint or .onnx model */
    const char *out;      /* FILE.onnx, or FILE.safetensors for a checkpoint */
    const json_t *report; /* compression report to summarize, or NULL; borrowed */
    long qdq;             /* quantized layers as QuantizeLinear/DequantizeLinear pairs */
    long batch;           /* fixed batch size; 0: symbolic N */
    long opset;           /* ONNX opset; 0: the exporter's default */
    long no_norm;         /* leave the input normalisation nodes out (metadata only) */
};

/* Sets o to the defaults of export's flag table. */
void wk_export_opts_init(struct wk_export_opts *o);

/* DP_EINVAL when the options cannot make a run (a usage error); no I/O. */
enum dp_err wk_export_check(const struct wk_export_opts *o, struct dp_errinfo *ei);

/*
 * Writes o->model to o->out. h may be NULL; export is one short pass, so it
 * reports no events and is not stopped midway. DP_EINVAL for usage errors,
 * else the failure with ei naming it. Any thread.
 */
enum dp_err wk_export(const struct wk_export_opts *o, const struct wk_hooks *h,
                      struct dp_errinfo *ei);

/* The CLI; returns the process exit status (0 ok, 1 failure, 2 usage). */
int wk_export_main(int argc, char **argv);

#endif
