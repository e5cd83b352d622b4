/*
 * dnnpress-worker: the worker program. Its commands are the offline engine
 * commands (worker/cmd) and `serve`, the task loop that leases work from
 * dnnpress-server (worker/agent); one table names them for the dispatch
 * and the usage text alike.
 */
#include <stdio.h>
#include <string.h>

#include "worker/agent/wk_latency.h"
#include "worker/agent/wk_serve.h"
#include "worker/cmd/wk_cmd.h"
#include "worker/cmd/wk_compile.h"
#include "worker/cmd/wk_compress.h"
#include "worker/cmd/wk_export.h"
#include "worker/cmd/wk_infer.h"
#include "worker/cmd/wk_train.h"

struct wk_main_cmd {
    const char *name;
    int (*main)(int argc, char **argv); /* argv[0] is the command's name */
    const char *help;                   /* the usage line after the name */
};

static const struct wk_main_cmd wk_main_cmds[] = {
    {"train", wk_train_main, "train a network offline (dnnpress-worker train --help)"},
    {"compress", wk_compress_main,
     "compress a trained network with ADMM (dnnpress-worker compress --help)"},
    {"serve", wk_serve_main,
     "lease tasks from dnnpress-server and run them (dnnpress-worker serve --help)"},
    {"infer", wk_infer_main, "run a model (ONNX or checkpoint) on a .npy batch (infer --help)"},
    {"export", wk_export_main, "write a model as standard ONNX (dnnpress-worker export --help)"},
    {"compile", wk_compile_main,
     "compile a (pruned) model into a C bundle (dnnpress-worker compile --help)"},
    {"latency", wk_latency_main,
     "measure this machine's per-layer latency table (dnnpress-worker latency --help)"},
};

#define WK_N_CMDS (sizeof(wk_main_cmds) / sizeof(wk_main_cmds[0]))

static void wk_usage(FILE *f)
{
    fprintf(f, "usage: dnnpress-worker COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < WK_N_CMDS; i++)
        fprintf(f, "  %-9s %s\n", wk_main_cmds[i].name, wk_main_cmds[i].help);
    fputc('\n', f);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        wk_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? WK_EXIT_USAGE : WK_EXIT_OK;
    }
    for (size_t i = 0; i < WK_N_CMDS; i++)
        if (strcmp(argv[1], wk_main_cmds[i].name) == 0)
            return wk_main_cmds[i].main(argc - 1, argv + 1);
    fprintf(stderr, "dnnpress-worker: unknown command '%s'\n", argv[1]);
    wk_usage(stderr);
    return WK_EXIT_USAGE;
}
