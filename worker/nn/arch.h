/*
 * Built-in architectures by name, built as model IR:
 *
 *   lenet-300-100      MLP 300-100 (ADMM papers' MNIST baseline)
 *   lenet5             Caffe LeNet-5 of the ADMM papers: conv 5x5 20, maxpool 2,
 *                      conv 5x5 50, maxpool 2, fc 500, relu, fc (no ReLU after the convs)
 *   vgg16-cifar        13 conv3x3+BN+ReLU in 5 blocks, 3 fully connected layers
 *   resnet20-cifar     He et al.'s CIFAR ResNet, 3 stages x 3 basic blocks
 *   resnet20-fmnist    resnet20-cifar on 1-channel images (Fashion-MNIST's 28x28:
 *                      stages at 28, 14 and 7 pixels); refuses other channel counts
 *   resnet56-cifar     ... 3 stages x 9 basic blocks
 *   mobilenetv2-cifar  MobileNetV2 with CIFAR strides (first conv and first stages stride 1)
 *   lstm-fmnist        LSTM of 128 units over a 1-channel image read row by row (T = rows
 *                      steps of F = columns features), the last step's state, linear
 *   gru-fmnist         ... with a GRU; both refuse other channel counts
 *
 * The ResNets use projection shortcuts (1x1 conv stride 2 + BN, "option B")
 * where the shape changes, since the IR has no zero-padding shortcut op.
 */
#ifndef DP_WORKER_NN_ARCH_H
#define DP_WORKER_NN_ARCH_H

#include <stdint.h>

#include "common/err.h"
#include "common/model.h"

/*
 * Builds and finalizes architecture `name` for inputs (in_c, in_h, in_w) and
 * n_classes outputs. Parameters are zero until nn_arch_init. *out is owned
 * by the caller (dp_model_free). An unknown name or an input too small for
 * the architecture is DP_EINVAL with a message listing the known names or
 * naming the layer.
 */
enum dp_err nn_arch_build(const char *name, int in_c, int in_h, int in_w, int n_classes,
                          struct dp_model **out, struct dp_errinfo *ei);

/* Space-separated list of the built-in names, for help texts. */
const char *nn_arch_names(void);

/*
 * Initialises every parameter as PyTorch does by default: conv and linear
 * weights and biases uniform in +-1/sqrt(fan_in), lstm and gru tensors
 * uniform in +-1/sqrt(hidden size) (also when block-circulant), BatchNorm
 * scale 1 and shift 0, running mean 0 and variance 1. Deterministic in seed.
 */
void nn_arch_init(struct dp_model *m, uint64_t seed);

#endif
