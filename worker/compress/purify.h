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
 * (flatten spreads each channel over h*w features); add joins its operands',
 * and so does a mul that scales channel by channel: squeeze-excitation's
 * gate (GAP, reduce conv, expand conv, sigmoid) times the block's
 * activations puts the expand conv's outputs in the block's space, so a
 * channel removed from the block leaves the expand conv's filter and
 * (through GAP) the reduce conv's input slice. A product is zero where
 * either factor is.
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
 * channel whose weights are all zero, zeroes its bias; a channel that is
 * then dead (an exact zero whatever the input) kills what reads it per
 * channel: the scale and shift of a BN, the kernel and bias of a
 * depthwise conv, through ReLU, pooling and adds whose operands are both
 * dead. Those entries are cleared in mask too (NULL: none) so masked
 * retraining keeps them zero. The channel then is an exact zero up to the
 * next layer that mixes channels, and purification drops it (with the
 * producing filters and the depthwise slices) without changing the output.
 * Grouped convolutions that are not depthwise are left alone. */
void cp_purify_zero_dead_filters(struct dp_model *m, float *mask);

/* The first channel shuffle that layer's output channels reach before a
 * layer that starts new channels (through BN, activations, depthwise convs,
 * adds, products, concat and slices), or -1. Purification does not follow
 * channels through a shuffle yet, so filter pruning with purify refuses
 * such a layer (admm_targets). */
int cp_purify_shuffle_after(const struct dp_model *m, int layer);

#endif
