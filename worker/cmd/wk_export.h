/*
 * `dnnpress-worker export`: writes a model (checkpoint or ONNX) as a
 * standard ONNX file, with its compression metadata and optionally a
 * summary of the compression report in metadata_props.
 */
#ifndef DP_WORKER_CMD_WK_EXPORT_H
#define DP_WORKER_CMD_WK_EXPORT_H

/* Runs the command; returns the process exit status (0 ok, 2 usage, 1 failure). */
int wk_export_main(int argc, char **argv);

#endif
