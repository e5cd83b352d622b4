/*
 * Channel shuffle (ShuffleNet): the C channels of each sample, seen as a
 * (groups, C / groups) grid, are transposed, so output channel
 * j * groups + i is input channel i * (C / groups) + j. ONNX spells it as
 * Reshape (N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4), Reshape (N, C, H, W);
 * the importer recognises that chain as this one op. Backward is the
 * inverse permutation, accumulated.
 */
#ifndef DP_WORKER_NN_SHUFFLE_H
#define DP_WORKER_NN_SHUFFLE_H

#include <stddef.h>

void nn_shuffle_forward(float *out, const float *inp, int n, int c, size_t hw, int groups);
void nn_shuffle_backward(float *dinp, const float *dout, int n, int c, size_t hw, int groups);

#endif
