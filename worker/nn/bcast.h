/*
 * Element-wise Mul, Sub, Div and Add of two activations with broadcasting
 * (ONNX's rule restricted to the per-sample axes): each operand's
 * (C, H, W) is the output's or has 1 where it repeats, as the per-channel
 * scale (C, 1, 1) of squeeze-excitation times a (C, H, W) map, or a
 * (1, 1, 1) scalar. Both operands carry the batch axis. Backward
 * accumulates into each operand's gradient, summed over the axes it was
 * broadcast along; either gradient may be NULL (not wanted).
 */
#ifndef DP_WORKER_NN_BCAST_H
#define DP_WORKER_NN_BCAST_H

#include <stddef.h>

enum nn_bcast_op { NN_BCAST_MUL, NN_BCAST_SUB, NN_BCAST_DIV, NN_BCAST_ADD };

struct nn_bcast_dims {
    int n;                /* batch */
    int o[3], a[3], b[3]; /* per-sample (C, H, W) of the output and both operands */
};

void nn_bcast_forward(float *out, const float *a, const float *b, const struct nn_bcast_dims *d,
                      enum nn_bcast_op op);
void nn_bcast_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       const struct nn_bcast_dims *d, enum nn_bcast_op op);

#endif
