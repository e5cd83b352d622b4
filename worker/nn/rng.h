/*
 * A small seeded PRNG (xoshiro256**, seeded through splitmix64) for weight
 * initialisation. Deterministic across platforms and thread counts: one
 * stream, drawn in a fixed order by one thread.
 */
#ifndef DP_WORKER_NN_RNG_H
#define DP_WORKER_NN_RNG_H

#include <stdint.h>

struct nn_rng {
    uint64_t s[4];
};

/* Seeds the generator; equal seeds give equal streams. */
void nn_rng_seed(struct nn_rng *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t nn_rng_next(struct nn_rng *r);
/* Uniform in [0, 1). */
double nn_rng_uniform(struct nn_rng *r);
/* Standard normal (Box-Muller). */
double nn_rng_normal(struct nn_rng *r);

#endif
