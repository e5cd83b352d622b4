/*
 * CPU settings (see cpu.h). MXCSR is per thread, so the flags are set
 * inside a parallel region that reaches every thread of the team; libgomp
 * keeps its threads alive, so they stay set for later regions.
 */
#include "worker/nn/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define NN_CPU_FTZ_DAZ 0x8040u /* FTZ (bit 15) | DAZ (bit 6) */
#endif

int nn_cpu_flush_denormals(void)
{
#ifdef NN_CPU_FTZ_DAZ
    _mm_setcsr(_mm_getcsr() | NN_CPU_FTZ_DAZ);
#pragma omp parallel
    _mm_setcsr(_mm_getcsr() | NN_CPU_FTZ_DAZ);
    return 1;
#else
    return 0;
#endif
}
