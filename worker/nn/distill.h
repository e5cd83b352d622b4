/*
 * Knowledge distillation (Hinton et al.): the student's loss mixes the
 * cross-entropy against the labels with the KL divergence from the
 * teacher's temperature-softened outputs,
 *
 *   L = (1 - a) CE(z, y) + a T^2 mean_b KL(softmax(t_b / T) || softmax(z_b / T))
 *
 *   logits z, teacher t, probs (B, K)     labels (B) in [0, K)
 *
 * The T^2 keeps the soft term's gradient on the scale of the hard one's as
 * T changes. dL/dz = (1 - a)(p - onehot) / B + a T (q_s - q_t) / B, with p
 * = softmax(z), q = softmax(. / T). The cross-entropy's backward computes
 * (probs - onehot) / B from its probs cache, so distillation rewrites that
 * cache to onehot + (1 - a)(p - onehot) + a T (q_s - q_t) and the one
 * backward pass carries both terms; no other change to the executor.
 */
#ifndef DP_WORKER_NN_DISTILL_H
#define DP_WORKER_NN_DISTILL_H

#include <stdint.h>

/*
 * probs holds softmax(logits) as nn_xent_forward left it and ce its mean
 * loss; rewrites probs as above and returns L. T >= 1, a in [0, 1]. No
 * allocation; rows are independent and reduced in row order.
 */
float nn_distill_forward(float *probs, const float *logits, const float *teacher,
                         const int32_t *labels, int B, int K, float T, float a, float ce);

#endif
