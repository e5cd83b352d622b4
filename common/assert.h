/*
 * DP_ASSERT is for programmer errors only and stays on in release builds
 * (STYLE rule 12). Never assert on input from a file or the network.
 */
#ifndef DP_COMMON_ASSERT_H
#define DP_COMMON_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define DP_ASSERT(x)                                                                               \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "assertion failed: %s (%s:%d)\n", #x, __FILE__, __LINE__);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
