/*
 * The engine command table (see wk_engine.h).
 */
#include "worker/wk_engine.h"

#include <string.h>

#include "worker/wk_compress.h"
#include "worker/wk_train.h"

struct wk_engine_cmd {
    const char *name;
    wk_engine_run_fn run; /* NULL: not in this build */
};

static const struct wk_engine_cmd wk_engine_cmds[] = {
    {"train", wk_train_run},
    {"compress", wk_compress_run},
    /* The ONNX exporter (`dnnpress-worker export`) lands with its own branch. */
    {"export", NULL},
};

wk_engine_run_fn wk_engine_find(const char *command)
{
    for (size_t i = 0; i < sizeof(wk_engine_cmds) / sizeof(wk_engine_cmds[0]); i++)
        if (strcmp(wk_engine_cmds[i].name, command) == 0)
            return wk_engine_cmds[i].run;
    return NULL;
}
