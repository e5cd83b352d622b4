/*
 * What the model IR shares with the op table (common/op.c) and nothing
 * else: declaring a layer's parameters and reading an input's shape during
 * shape inference. Callers outside common/model.c and common/op.c use
 * model.h.
 */
#ifndef DP_COMMON_MODEL_INT_H
#define DP_COMMON_MODEL_INT_H

#include <stdint.h>

#include "common/err.h"
#include "common/model.h"

/*
 * Declares parameter "<layer name>.<suffix>" of layer `layer` with the
 * given shape (ndim <= DP_MAX_DIMS, each dimension in [1, 2^31]) at the end
 * of the parameter block; trainable is 0 for buffers. Only during
 * inference (dp_model_infer); the data block is allocated afterwards.
 * DP_ENOMEM, DP_ESHAPE (bad dimension), DP_ETOOBIG (model too large) or
 * DP_EINVAL (name too long), with ei naming the parameter.
 */
enum dp_err dp_model__param_add(struct dp_model *m, int layer, const char *suffix, int trainable,
                                int ndim, const int64_t *shape, struct dp_errinfo *ei);

/* Forgets the parameters declared from index `first` on (the last ones
 * declared), giving their floats back: for an op whose shape inference
 * builds on another's and then declares its own parameters instead. */
void dp_model__param_truncate(struct dp_model *m, int first);

/* The per-sample shape of layer idx's output, or of the model input for DP_MODEL_INPUT. */
void dp_model__in_shape(const struct dp_model *m, int idx, int *c, int *h, int *w);

#endif
