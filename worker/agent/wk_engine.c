/*
 * The engine command table (see wk_engine.h).
 */
#include "worker/agent/wk_engine.h"

#include <string.h>

#include "worker/cmd/wk_compress.h"
#include "worker/cmd/wk_export.h"
#include "worker/cmd/wk_train.h"

/* Export is a single short pass: nothing to stop, no epochs to report. */
static int wk_engine_export(int argc, char **argv, const struct wk_hooks *h)
{
    (void)h;
    return wk_export_main(argc, argv);
}

struct wk_engine_cmd {
    const char *name;
    wk_engine_run_fn run; /* NULL: not in this build */
};

static const struct wk_engine_cmd wk_engine_cmds[] = {
    {"train", wk_train_run},
    {"compress", wk_compress_run},
    {"export", wk_engine_export},
};

wk_engine_run_fn wk_engine_find(const char *command)
{
    for (size_t i = 0; i < sizeof(wk_engine_cmds) / sizeof(wk_engine_cmds[0]); i++)
        if (strcmp(wk_engine_cmds[i].name, command) == 0)
            return wk_engine_cmds[i].run;
    return NULL;
}
