/*
 * Checkpoints of a training run in progress: the model's whole parameter
 * block, the optimizer moments and the epoch, so `train --resume`
 * continues bit for bit (see struct nn_train_resume). One safetensors file
 * ("w", "m1", optional "m2"; metadata "train_state" = JSON with the epoch,
 * the optimizer step count and the caller's run digest), written
 * atomically.
 */
#ifndef DP_WORKER_NN_TRAIN_STATE_H
#define DP_WORKER_NN_TRAIN_STATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/model.h"
#include "worker/nn/optim.h"
#include "worker/nn/train.h"

/* Writes m's block, opt's moments and `epochs_done` to path. digest
 * identifies the run's settings; a resume with another digest is refused. */
enum dp_err nn_train_state_save(const char *path, const struct dp_model *m,
                                const struct nn_optim *opt, int epochs_done, uint64_t digest,
                                struct dp_errinfo *ei);

/* Loads a state into m's block and *res (m1/m2 allocated; release with
 * nn_train_state_release). DP_EFORMAT naming the problem when the file is
 * not a state of this model and digest. */
enum dp_err nn_train_state_load(const char *path, struct dp_model *m, uint64_t digest,
                                struct nn_train_resume *res, struct dp_errinfo *ei);

void nn_train_state_release(struct nn_train_resume *res);

/* The two helpers both engine checkpoints (this one and the ADMM state)
 * are built from: write n flat F32 blocks of numel floats under their
 * names (NULL blocks are left out) with metadata, atomically; read one
 * block back, allocating *dst when it is NULL (the caller frees it). */
enum dp_err nn_state_write_blocks(const char *path, const char *const *names,
                                  const float *const *blocks, int n, size_t numel,
                                  const json_t *meta, struct dp_errinfo *ei);
struct dp_st_file;
enum dp_err nn_state_read_block(const struct dp_st_file *f, const char *name, float **dst,
                                size_t numel, struct dp_errinfo *ei);

#endif
