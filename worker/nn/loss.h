/*
 * Softmax cross-entropy, averaged over the batch.
 *
 *   logits, probs, dlogits (B, K)     labels (B) in [0, K)
 *
 * Forward writes the softmax into probs (the cache backward needs) and
 * returns the mean loss; it is numerically stable (max subtracted).
 * Backward writes (not accumulates: the loss is the graph's root)
 * dlogits = (probs - onehot) / B.
 * nn_xent_correct counts rows whose arg-max equals the label.
 */
#ifndef DP_WORKER_NN_LOSS_H
#define DP_WORKER_NN_LOSS_H

#include <stdint.h>

float nn_xent_forward(float *probs, const float *logits, const int32_t *labels, int B, int K);
void nn_xent_backward(float *dlogits, const float *probs, const int32_t *labels, int B, int K);
int nn_xent_correct(const float *logits, const int32_t *labels, int B, int K);

#endif
