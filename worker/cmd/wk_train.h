/*
 * `dnnpress-worker train`: the offline training command. Parses its flags,
 * loads data and a model (built-in name or checkpoint), trains, prints a
 * progress line per epoch on stderr and a one-line JSON summary on stdout,
 * and optionally writes a safetensors checkpoint.
 */
#ifndef DP_WORKER_CMD_WK_TRAIN_H
#define DP_WORKER_CMD_WK_TRAIN_H

#include "worker/cmd/wk_hooks.h"

/* Runs the command; returns the process exit status (0 ok, 2 usage, 1 failure). */
int wk_train_main(int argc, char **argv);

/* The same with hooks (NULL: none), for the task loop; returns a WK_EXIT_*
 * status (WK_EXIT_STOPPED when hooks->stop asked; the last --checkpoint
 * is on disk). argv[0] is the command name. */
int wk_train_run(int argc, char **argv, const struct wk_hooks *h);

#endif
