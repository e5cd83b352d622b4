/*
 * Conversion of a dense model to block-circulant layers (issue 15): the
 * step between ADMM toward the block-circulant set and the retraining in
 * the circulant form, and the start of training circulant layers from
 * scratch.
 *
 *   int block[n_layers] = {0};        0: keep the layer as it is
 *   block[fc1] = 16;
 *   struct dp_model *circ = NULL;
 *   err = cp_circ_convert(m, block, 0, seed, &circ, &ei);
 *
 * A linear layer with block k becomes circ_linear, a conv2d (groups 1)
 * circ_conv2d, an lstm or gru (block 0) the same op with block = k
 * (common/op.h). The new model stores the block vectors, not expanded
 * matrices: each dense matrix (each kernel tap's channel matrix) becomes
 * circ_project of it, the closest block-circulant matrix in Frobenius norm,
 * so a matrix that is already block-circulant (ADMM's hard projection)
 * converts exactly: expanding the vectors gives it back bit for bit, and
 * the converted model computes the same function. Biases, every other
 * layer, the normalisation and the compression metadata are copied.
 *
 * fresh (training from scratch): the converted layers' vectors and biases
 * are drawn instead, uniform in +-1/sqrt(fan_in) as PyTorch initialises the
 * dense layer (fan_in: inputs times taps for linear and conv2d, the hidden
 * size for lstm and gru), from seed; the rest is still copied.
 */
#ifndef DP_WORKER_COMPRESS_CIRC_CONVERT_H
#define DP_WORKER_COMPRESS_CIRC_CONVERT_H

#include <stdint.h>

#include "common/err.h"
#include "common/model.h"

/* Whether layer i of m can be made block-circulant: linear, conv2d with
 * groups 1, lstm or gru (dense: block 0). */
int cp_circ_convertible(const struct dp_model *m, int i);

/*
 * Builds the converted copy of m (finalized; only read) in *out (the
 * caller's, dp_model_free). block has m->n_layers entries in [0, 4096].
 * DP_EINVAL, naming the layer, when a block is asked of a layer that
 * cp_circ_convertible refuses; DP_ENOMEM.
 */
enum dp_err cp_circ_convert(const struct dp_model *m, const int *block, int fresh, uint64_t seed,
                            struct dp_model **out, struct dp_errinfo *ei);

#endif
