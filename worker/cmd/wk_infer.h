/*
 * `dnnpress-worker infer`: runs a model (ONNX or checkpoint) forward in
 * evaluation mode on a float32 .npy batch and writes the outputs as a
 * float32 .npy array, with the ONNX output's shape (batch first).
 */
#ifndef DP_WORKER_CMD_WK_INFER_H
#define DP_WORKER_CMD_WK_INFER_H

/* Runs the command; returns the process exit status (0 ok, 2 usage, 1 failure). */
int wk_infer_main(int argc, char **argv);

#endif
