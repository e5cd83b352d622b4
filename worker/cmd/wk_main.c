/*
 * dnnpress-worker: the worker program. For now it offers the offline
 * commands; the task loop that leases work from dnnpress-server joins them
 * as another subcommand.
 */
#include <stdio.h>
#include <string.h>

#include "worker/cmd/wk_compress.h"
#include "worker/cmd/wk_export.h"
#include "worker/cmd/wk_infer.h"
#include "worker/agent/wk_serve.h"
#include "worker/cmd/wk_train.h"

static void wk_usage(FILE *f)
{
    fprintf(f,
            "usage: dnnpress-worker COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  train     train a network offline (dnnpress-worker train --help)\n"
            "  compress  compress a trained network with ADMM (dnnpress-worker compress --help)\n"
            "  serve     lease tasks from dnnpress-server and run them (dnnpress-worker serve "
            "--help)\n"
            "  infer     run a model (ONNX or checkpoint) on a .npy batch (infer --help)\n"
            "  export    write a model as standard ONNX (dnnpress-worker export --help)\n"
            "\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        wk_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") == 0)
        return wk_train_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "compress") == 0)
        return wk_compress_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "serve") == 0)
        return wk_serve_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "infer") == 0)
        return wk_infer_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "export") == 0)
        return wk_export_main(argc - 1, argv + 1);
    fprintf(stderr, "dnnpress-worker: unknown command '%s'\n", argv[1]);
    wk_usage(stderr);
    return 2;
}
