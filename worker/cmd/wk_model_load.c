/*
 * Model loading for the offline commands (see wk_model_load.h).
 */
#include "worker/cmd/wk_model_load.h"

#include <string.h>

#include "common/model_io.h"
#include "worker/cmd/wk_flags.h"

enum dp_err wk_model_load(const char *path, struct dp_model **out, struct dp_onnx_import_info *info,
                          struct dp_errinfo *ei)
{
    struct dp_onnx_import_info tmp;
    if (info == NULL)
        info = &tmp;
    if (wk_has_suffix(path, ".onnx"))
        return dp_onnx_import_file(path, out, info, ei);
    enum dp_err err = dp_model_load(path, out, NULL, ei);
    if (err)
        return err;
    const struct dp_layer *last = &(*out)->layers[(*out)->n_layers - 1];
    memset(info, 0, sizeof(*info));
    info->out_rank = 2;
    info->out_c = last->out_c * last->out_h * last->out_w;
    info->out_h = info->out_w = 1;
    return DP_OK;
}
