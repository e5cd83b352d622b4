/*
 * Purification and unused-path removal: after structured pruning, the
 * filters whose outputs nothing reads and the channels whose producers are
 * all zero are dropped, with their BN entries and the next layers' input
 * slices, to a fixed point. The result is a new, smaller model (its tensor
 * shapes shrink) that computes the same function.
 *
 *   struct dp_model *small = NULL;
 *   json_t *stats = NULL;
 *   err = cp_purify(m, &small, &stats, &ei);
 *
 * Channels are grouped into spaces: a conv2d or linear output starts one;
 * ReLU, pooling, BN, dropout, depthwise conv and flatten keep their input's
 * (flatten spreads each channel over h*w features); add joins its operands'.
 * A channel of a space is removed when every read of it from outside the
 * space (a conv2d or linear consuming a member) reads an exact zero or is
 * multiplied by weights that are all zero for the consumer's kept outputs.
 * The input's space, the model output's and those around grouped
 * (non-depthwise) convolutions and ops this pass does not know are kept.
 */
#ifndef DP_WORKER_COMPRESS_PURIFY_H
#define DP_WORKER_COMPRESS_PURIFY_H

#include <jansson.h>

#include "common/err.h"
#include "common/model.h"

/* Builds the purified copy of m (m is only read). *stats: per-layer shapes
 * before and after, parameter totals, channels removed. */
enum dp_err cp_purify(const struct dp_model *m, struct dp_model **out, json_t **stats,
                      struct dp_errinfo *ei);

/* Makes a filter-pruned network purifiable: for every conv2d output
 * channel whose weights are all zero, zeroes its bias and, when a BN reads
 * the conv, that channel's BN scale and shift, and clears those entries in
 * mask (NULL: none) so masked retraining keeps them zero. The channel then
 * is an exact zero and purification drops it without changing the output. */
void cp_purify_zero_dead_filters(struct dp_model *m, float *mask);

#endif
