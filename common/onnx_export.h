/*
 * ONNX export: a model IR (typically compressed) as a standard ONNX model
 * (opset 13, IR version 8) that any runtime loads.
 *
 *   struct dp_onnx_export_opts o = {0};
 *   o.qdq = 1;                  quantized layers as QuantizeLinear/DequantizeLinear
 *   o.report = report_json;     optional: `dnnpress-worker compress --report` output
 *   err = dp_onnx_export_file(m, "model.onnx", &o, &ei);
 *
 * Pruned weights are dense tensors with their zeros, so the file loads
 * anywhere; a purified model exports with the smaller shapes it has.
 * Quantized layers (dp_layer_compress.bits in 1..8) are float weights on
 * their levels, or with opts.qdq a QuantizeLinear -> DequantizeLinear pair
 * (int8, zero point 0) in front of the layer, with the layer's recorded
 * scale or, when none is recorded, a per-layer or per-output-channel
 * scale derived from the weights' levels; a layer whose levels are not a
 * uniform grid stays float (and says so in the metadata).
 *
 * metadata_props carries: "dnnpress.compression" (JSON: per compressed
 * layer its scheme, target rate, bits, scale, measured sparsity and
 * whether it went out as QDQ), "dnnpress.report" (JSON: the report's
 * method, accuracies and totals, and per layer its rate and bits, when a
 * report is given) and "dnnpress.graph" (the IR graph JSON of
 * model_io.h, from which the importer restores the compression metadata).
 *
 * Recurrent and circulant layers (issue 15): lstm and gru become LSTM and
 * GRU nodes (layout 0, between a Reshape/Transpose of the (N, 1, T, F)
 * input and a Transpose back to (N, 1, T, H)); circ_linear and circ_conv2d
 * become Gemm and Conv with their expanded dense weights, and an lstm or
 * gru with block > 0 an LSTM/GRU with its expanded matrices;
 * "dnnpress.circulant.<layer>" in metadata_props says so
 * ({"block": k, "op": ..., "exported": "expanded dense weights"}).
 *
 * A model that records its input normalisation (struct dp_model_norm)
 * starts with Sub(input, mean) and Div(., std) nodes, per-channel constants
 * "input.norm.mean" and "input.norm.std" shaped (1, C, 1, 1), so the file
 * takes pixels scaled to [0, 1] like the engine's data path; opts.no_norm
 * leaves them out. Either way "dnnpress.normalization" in metadata_props
 * holds {"mean": [...], "std": [...], "in_graph": bool, "input": "..."}.
 * The importer (onnx_import.h) takes both forms back without normalising
 * twice.
 */
#ifndef DP_COMMON_ONNX_EXPORT_H
#define DP_COMMON_ONNX_EXPORT_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "common/model.h"

struct dp_onnx_export_opts {
    int qdq;              /* quantized layers as QuantizeLinear/DequantizeLinear pairs */
    int opset;            /* 10 to 17; 0 for DP_ONNX_EXPORT_OPSET. Below 11 Clip takes its
                           * bounds as attributes (what OpenCV 4.6's reader wants), below 13
                           * Q/DQ scales are per layer only, below 14 HardSwish is written
                           * as HardSigmoid and Mul */
    int64_t batch;        /* fixed batch size of the input, 0 for a symbolic "N" */
    const json_t *report; /* NULL, or the compression report (borrowed) */
    int no_norm;          /* leave the input normalisation out of the graph (it stays in
                           * the metadata): the model then takes normalised input */
};

/* The default opset, the range accepted, and the IR version written. */
#define DP_ONNX_EXPORT_OPSET     13
#define DP_ONNX_EXPORT_OPSET_MIN 10
#define DP_ONNX_EXPORT_OPSET_MAX 17
#define DP_ONNX_EXPORT_IR        8

/*
 * Writes m (finalized; read only) to path atomically.
 * opts: may be NULL (defaults: no QDQ, symbolic batch, no report).
 * Returns DP_OK; DP_EINVAL for an unfinalized model or an opset outside
 * [DP_ONNX_EXPORT_OPSET_MIN, DP_ONNX_EXPORT_OPSET_MAX]; DP_EUNSUPPORTED for
 * a layer with no ONNX form (a softmax over several axes of a map);
 * DP_ENOMEM; an I/O code naming the file. Any thread.
 */
enum dp_err dp_onnx_export_file(const struct dp_model *m, const char *path,
                                const struct dp_onnx_export_opts *opts, struct dp_errinfo *ei);

#endif
