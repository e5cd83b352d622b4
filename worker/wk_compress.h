/*
 * `dnnpress-worker compress`: the offline compression command. Loads a
 * pretrained checkpoint, a dataset and a job spec (worker/compress/spec.h),
 * runs ADMM or the magnitude baseline, and writes the compressed checkpoint
 * and the report; progress lines on stderr, a one-line JSON summary on
 * stdout.
 */
#ifndef DP_WORKER_WK_COMPRESS_H
#define DP_WORKER_WK_COMPRESS_H

/* Runs the command; returns the exit status (0 ok, 2 usage, 1 failure). */
int wk_compress_main(int argc, char **argv);

#endif
