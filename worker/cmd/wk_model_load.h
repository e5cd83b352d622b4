/*
 * Loading a model for the offline commands from either kind of file the
 * service handles: an ONNX model (".onnx", imported) or a safetensors
 * checkpoint (anything else).
 */
#ifndef DP_WORKER_CMD_WK_MODEL_LOAD_H
#define DP_WORKER_CMD_WK_MODEL_LOAD_H

#include "common/err.h"
#include "common/model.h"
#include "common/onnx_import.h"

/*
 * Loads path into a new finalized model (*out, release with dp_model_free).
 * info: may be NULL; for an ONNX file it gets what the importer says of the
 * output shape; for a checkpoint, out_rank 2 and the last layer's shape.
 */
enum dp_err wk_model_load(const char *path, struct dp_model **out, struct dp_onnx_import_info *info,
                          struct dp_errinfo *ei);

#endif
