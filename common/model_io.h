/*
 * Model checkpoints: a struct dp_model saved as a safetensors file, and
 * the graph description on its own as JSON.
 *
 * A checkpoint holds every dp_param as an F32 tensor named by its full name
 * ("conv1.weight", "bn1.running_var") and, in the safetensors metadata,
 * "dnnpress.graph": the graph JSON as a string. The graph JSON is
 *
 *   {"format": "dnnpress.graph", "version": 1, "input": [C, H, W],
 *    "layers": [
 *      {"name": "conv1", "op": "conv2d", "inputs": ["input"],
 *       "attrs": {"out_ch": 20, "kh": 5, "kw": 5, "sh": 1, ...},
 *       "compress": {"scheme": "pattern", "target_rate": 8, "bits": 8}},
 *      {"name": "add1", "op": "add", "inputs": ["conv1", "conv2"]}, ...],
 *    "normalization": {"mean": [0.286], "std": [0.353]}}
 *
 * Layers are in execution order; "inputs" name earlier layers, or "input"
 * for the model input (so no layer may be called "input"). "attrs" holds
 * the nonzero fields of struct dp_op_attrs under their C names, "compress"
 * the nonzero fields of struct dp_layer_compress; both are omitted when
 * empty. "normalization" (optional) is the model's input normalisation
 * (struct dp_model_norm in model.h). The ONNX exporter and the server reuse the graph functions.
 *
 *   err = dp_model_save(m, "ckpt.safetensors", extra_or_NULL, &ei);
 *   err = dp_model_load("ckpt.safetensors", &m, &extra, &ei);
 *
 * Other metadata keys are the caller's (a training summary, say): they are
 * saved and returned as they are. Keys starting with "dnnpress." are
 * reserved.
 */
#ifndef DP_COMMON_MODEL_IO_H
#define DP_COMMON_MODEL_IO_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"
#include "common/model.h"

/* Parameters a graph parsed by dp_model_graph_from_json may declare (4 GiB of floats). */
#define DP_MODEL_GRAPH_MAX_FLOATS ((size_t)1 << 30)

/* The graph JSON's format name and the one version this build reads and writes. */
#define DP_GRAPH_FORMAT  "dnnpress.graph"
#define DP_GRAPH_VERSION 1
/* Metadata key that holds the graph JSON in a checkpoint. */
#define DP_MODEL_META_GRAPH "dnnpress.graph"
/* Metadata key (checkpoints and ONNX) with the input normalisation as
 * JSON, {"mean": [...], "std": [...]}, for readers of the file; in a
 * checkpoint the graph's "normalization" field is what the loader reads. */
#define DP_MODEL_META_NORM "dnnpress.normalization"
/* Largest checkpoint dp_model_load reads, in bytes. */
#define DP_MODEL_FILE_MAX ((size_t)1 << 34)

/*
 * Describes m's graph (input shape, layers, attributes, compression
 * metadata) as a new JSON object in the format above. m need not be
 * finalized; parameters are not included.
 *
 * out: receives a new reference the caller must json_decref; NULL on failure.
 * ei:  may be NULL.
 *
 * Returns DP_OK; DP_EINVAL when the model cannot be described (a layer
 * called "input", a name that is not UTF-8, a NaN or infinite attribute);
 * DP_ENOMEM. Any thread; m is only read.
 */
enum dp_err dp_model_graph_to_json(const struct dp_model *m, json_t **out, struct dp_errinfo *ei);

/*
 * The input normalisation of m (struct dp_model_norm) as a new JSON object
 * {"mean": [...], "std": [...]}; NULL when m records none or out of memory.
 */
json_t *dp_model_norm_to_json(const struct dp_model *m);

/*
 * Reads {"mean": [...], "std": [...]} (other keys are the caller's to
 * check) into m's normalisation through dp_model_norm_set, so the channel
 * count must match m->in_c. Returns DP_OK or DP_EFORMAT with ei naming
 * the problem. j is borrowed.
 */
enum dp_err dp_model_norm_from_json(const json_t *j, struct dp_model *m, struct dp_errinfo *ei);

/*
 * Builds a model from graph JSON in the format above and finalizes it:
 * shapes are inferred and the parameter block is allocated with the
 * initial values dp_model_finalize gives (zeros; BatchNorm scale and
 * running variance 1).
 *
 * graph: borrowed; validated completely. Unknown fields, ops and inputs,
 *        and attributes out of range are errors whose message names the
 *        layer and the field.
 * out:   receives a new model the caller must release with dp_model_free;
 *        NULL on failure.
 * ei:    may be NULL.
 *
 * Returns DP_OK; DP_EFORMAT for a malformed graph; DP_EUNSUPPORTED for a
 * newer format version; any error of dp_model_add_layer or
 * dp_model_finalize (DP_ESHAPE, DP_EINVAL, DP_ETOOBIG) for a graph that
 * is well-formed but does not describe a valid network; DP_ENOMEM. Any
 * thread.
 */
enum dp_err dp_model_graph_from_json(const json_t *graph, struct dp_model **out,
                                     struct dp_errinfo *ei);

/*
 * Saves a finalized model to `path` as a safetensors checkpoint, atomically
 * (temporary file, fsync, rename; see dp_st_write).
 *
 * extra_meta: NULL, or a JSON object of string values (borrowed) stored
 *             beside the graph; keys starting with "dnnpress." are refused.
 * ei:         may be NULL.
 *
 * Returns DP_OK; DP_EINVAL for an unfinalized model, bad extra metadata or
 * a graph that cannot be described; DP_ENOMEM; an I/O code from
 * dp_st_write. Any thread; m is only read.
 */
enum dp_err dp_model_save(const struct dp_model *m, const char *path, const json_t *extra_meta,
                          struct dp_errinfo *ei);

/*
 * Loads a checkpoint written by dp_model_save: rebuilds the graph from its
 * metadata and fills every parameter, which must be present as an F32
 * tensor with exactly the shape the graph implies. Tensors the graph does
 * not declare are an error. Files over DP_MODEL_FILE_MAX bytes are refused.
 *
 * out:            receives a new finalized model the caller must release
 *                 with dp_model_free; NULL on failure.
 * extra_meta_out: may be NULL; otherwise receives a new JSON object (the
 *                 caller must json_decref it) holding every metadata entry
 *                 except the reserved "dnnpress." ones; NULL on failure.
 * ei:             may be NULL; messages name the file and, where it
 *                 applies, the layer or tensor and both shapes.
 *
 * Returns DP_OK; the codes of dp_st_read (DP_ENOENT, DP_EIO, DP_ETOOBIG,
 * DP_ETRUNC, DP_EFORMAT); those of dp_model_graph_from_json; DP_ESHAPE when
 * a tensor's shape differs from the graph's; DP_ENOMEM. Any thread.
 */
enum dp_err dp_model_load(const char *path, struct dp_model **out, json_t **extra_meta_out,
                          struct dp_errinfo *ei);

#endif
