/*
 * `dnnpress-worker train`: the offline training command. Parses its flags,
 * loads data and a model (built-in name or checkpoint), trains, prints a
 * progress line per epoch on stderr and a one-line JSON summary on stdout,
 * and optionally writes a safetensors checkpoint.
 */
#ifndef DP_WORKER_WK_TRAIN_H
#define DP_WORKER_WK_TRAIN_H

/* Runs the command; returns the process exit status (0 ok, 2 usage, 1 failure). */
int wk_train_main(int argc, char **argv);

#endif
