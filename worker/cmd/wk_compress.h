/*
 * `dnnpress-worker compress`: the offline compression command. Loads a
 * pretrained checkpoint, a dataset and a job spec (worker/compress/spec.h),
 * runs ADMM or the magnitude baseline, and writes the compressed checkpoint
 * and the report; progress lines on stderr, a one-line JSON summary on
 * stdout.
 */
#ifndef DP_WORKER_CMD_WK_COMPRESS_H
#define DP_WORKER_CMD_WK_COMPRESS_H

#include "worker/cmd/wk_hooks.h"

/* Runs the command; returns the exit status (0 ok, 2 usage, 1 failure). */
int wk_compress_main(int argc, char **argv);

/* The same with hooks (NULL: none), for the task loop; returns a WK_EXIT_*
 * status (WK_EXIT_STOPPED when hooks->stop asked; the last --checkpoint is
 * on disk and --resume continues from it). argv[0] is the command name. */
int wk_compress_run(int argc, char **argv, const struct wk_hooks *h);

#endif
