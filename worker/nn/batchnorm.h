/*
 * 2-D batch normalisation over (B, H, W) per channel, NCHW.
 *
 *   inp, out (B, C, H, W)   gamma, beta, running_mean, running_var (C)
 *   mean, rstd (C): cache written by the training forward, read by backward
 *
 * Training forward uses the batch statistics (biased variance to normalise,
 * unbiased variance for the running estimate, PyTorch's convention) and
 * updates running_* with `momentum`; eval forward uses the running
 * statistics and leaves mean/rstd untouched. Backward is the training-mode
 * gradient and accumulates into dinp, dgamma, dbeta.
 */
#ifndef DP_WORKER_NN_BATCHNORM_H
#define DP_WORKER_NN_BATCHNORM_H

void nn_bn2d_forward_train(float *out, float *mean, float *rstd, float *running_mean,
                           float *running_var, const float *inp, const float *gamma,
                           const float *beta, int B, int C, int HW, float eps, float momentum);
void nn_bn2d_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                          const float *running_mean, const float *running_var, int B, int C, int HW,
                          float eps);
void nn_bn2d_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                      const float *gamma, const float *mean, const float *rstd, int B, int C,
                      int HW);

/*
 * The same three operations on NCHW16C tensors (C % 16 == 0; see
 * conv_dnnl.h), used where the executor keeps a chain of oneDNN
 * convolutions in oneDNN's own layout. Statistics and arguments are as
 * above; only the memory order of inp, out, dout and dinp differs.
 */
void nn_bn2d_forward_train_c16(float *out, float *mean, float *rstd, float *running_mean,
                               float *running_var, const float *inp, const float *gamma,
                               const float *beta, int B, int C, int HW, float eps, float momentum);
void nn_bn2d_forward_eval_c16(float *out, const float *inp, const float *gamma, const float *beta,
                              const float *running_mean, const float *running_var, int B, int C,
                              int HW, float eps);
void nn_bn2d_backward_c16(float *dinp, float *dgamma, float *dbeta, const float *dout,
                          const float *inp, const float *gamma, const float *mean,
                          const float *rstd, int B, int C, int HW);
#endif
