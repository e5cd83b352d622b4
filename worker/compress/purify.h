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
 * Channel slices, concats and shuffles route channels (ShuffleNet's split,
 * join and shuffle): each output channel is one input channel, and it is
 * kept or removed with it, wherever it goes; a slice's [start, end) is
 * rewritten over the kept channels. A shuffle keeps its groups, so it
 * keeps position j of every group if it keeps it in one (the kept channels
 * must again form a (groups, C' / groups) grid): a dead channel whose
 * partners at the same position in the other groups are live stays.
 * Slices and concats along H or W keep (or join) channels.
 * A channel of a space is removed when every read of it from outside the
 * space (a conv2d or linear consuming a member) reads an exact zero or is
 * multiplied by weights that are all zero for the consumer's kept outputs.
 * The input's channels, the model output's and those around grouped
 * (non-depthwise) convolutions and ops this pass does not know are kept;
 * every layer keeps at least one channel.
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
 * dead, through slices, concats and shuffles. Those entries are cleared
 * in mask too (NULL: none) so masked
 * retraining keeps them zero. The channel then is an exact zero up to the
 * next layer that mixes channels, and purification drops it (with the
 * producing filters and the depthwise slices) without changing the output.
 * Grouped convolutions that are not depthwise are left alone. */
void cp_purify_zero_dead_filters(struct dp_model *m, float *mask);

#endif
