/*
 * xoshiro256** seeded by splitmix64 (see rng.h). The algorithms are public
 * domain designs by Blackman and Vigna; this is our own transcription.
 */
#include "worker/nn/rng.h"

#include <math.h>

static uint64_t rng_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void nn_rng_seed(struct nn_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = rng_splitmix(&x);
}

uint64_t nn_rng_next(struct nn_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rng_rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rng_rotl(s[3], 45);
    return result;
}

double nn_rng_uniform(struct nn_rng *r)
{
    return (double)(nn_rng_next(r) >> 11) * 0x1.0p-53;
}

double nn_rng_normal(struct nn_rng *r)
{
    double u1 = nn_rng_uniform(r), u2 = nn_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}
