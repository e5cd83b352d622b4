/*
 * Pooling, NCHW: max and average over windows, and global average.
 *
 *   inp (B, C, H, W) -> out (B, C, OH, OW)
 *
 * Windows use the same geometry as convolution (struct nn_pool_dims);
 * padded positions never win a max, and average pooling divides by the
 * full window when count_include_pad is set (PyTorch's default), else by
 * the number of real input positions. Max pooling records the flat input
 * index (within the image's channel plane) of each maximum in `argmax`
 * (B*C*OH*OW ints) for backward; ties go to the first position in scan
 * order. Backward accumulates into dinp.
 */
#ifndef DP_WORKER_NN_POOL_H
#define DP_WORKER_NN_POOL_H

struct nn_pool_dims {
    int B, C, H, W;
    int OH, OW;
    int kh, kw, sh, sw, pt, pl;
    int count_include_pad;
    int pb, pr; /* bottom and right padding: the padded extent average pooling counts */
};

void nn_maxpool_forward(float *out, int *argmax, const float *inp, const struct nn_pool_dims *d);
void nn_maxpool_backward(float *dinp, const float *dout, const int *argmax,
                         const struct nn_pool_dims *d);
void nn_avgpool_forward(float *out, const float *inp, const struct nn_pool_dims *d);
void nn_avgpool_backward(float *dinp, const float *dout, const struct nn_pool_dims *d);

/* (B, C, HW) -> (B, C) */
void nn_gap_forward(float *out, const float *inp, int B, int C, int HW);
void nn_gap_backward(float *dinp, const float *dout, int B, int C, int HW);

/* The same with inp and dinp in NCHW16C (C % 16 == 0); out and dout (B, C)
 * are plain, which for a 1x1 map is the same memory order as NCHW16C. */
void nn_gap_forward_c16(float *out, const float *inp, int B, int C, int HW);
void nn_gap_backward_c16(float *dinp, const float *dout, int B, int C, int HW);

#endif
