/*
 * Per-process CPU settings for the engine.
 */
#ifndef DP_WORKER_NN_CPU_H
#define DP_WORKER_NN_CPU_H

/*
 * Makes every thread of the OpenMP team (and the caller) flush denormal
 * floats to zero, on inputs and results. Late in training many gradients
 * are tiny, and x86 takes a microcode assist (around a hundred cycles) per
 * denormal operand; values that small are far below anything that moves a
 * weight. PyTorch offers the same switch (torch.set_flush_denormal).
 * Call after setting the thread count. Returns 1 when the CPU supports it.
 */
int nn_cpu_flush_denormals(void);

#endif
