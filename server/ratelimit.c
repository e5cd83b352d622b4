/*
 * Token buckets per token id (see ratelimit.h). One mutex: a take is a hash,
 * a probe of a few slots and some arithmetic, far below the cost of the
 * request it guards.
 */
#include "server/ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "server/ids.h"

/* Slots probed from the token's hash before the least recently used of them
 * is taken over. */
#define RL_PROBE 8

struct rl_bucket {
    char id[SRV_ID_MAX]; /* "" = free */
    double tokens;
    int64_t last_ms;
};

struct srv_ratelimit {
    pthread_mutex_t mu;
    double rps, burst;
    _Atomic uint64_t refused;
    struct rl_bucket slot[SRV_RL_SLOTS];
};

struct srv_ratelimit *srv_ratelimit_new(int rps, int burst)
{
    struct srv_ratelimit *rl = dp_calloc(1, sizeof(*rl));
    if (rl == NULL)
        return NULL;
    pthread_mutex_init(&rl->mu, NULL);
    rl->rps = rps;
    rl->burst = burst > 0 ? burst : 1;
    return rl;
}

void srv_ratelimit_free(struct srv_ratelimit *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->mu);
    dp_free(rl);
}

static uint32_t rl_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

int srv_ratelimit_take(struct srv_ratelimit *rl, const char *token_id, int multiplier,
                       int64_t now_ms, unsigned *retry_after_s)
{
    *retry_after_s = 0;
    if (rl == NULL || rl->rps <= 0 || multiplier <= 0)
        return 1;
    double rate = rl->rps * multiplier, cap = rl->burst * multiplier;
    uint32_t h = rl_hash(token_id);
    pthread_mutex_lock(&rl->mu);
    struct rl_bucket *b = NULL, *victim = NULL;
    for (int i = 0; i < RL_PROBE && b == NULL; i++) {
        struct rl_bucket *s = &rl->slot[(h + (uint32_t)i) % SRV_RL_SLOTS];
        if (strcmp(s->id, token_id) == 0)
            b = s;
        else if (victim == NULL || s->id[0] == '\0' ||
                 (victim->id[0] != '\0' && s->last_ms < victim->last_ms))
            victim = s;
    }
    if (b == NULL) {
        b = victim;
        snprintf(b->id, sizeof(b->id), "%s", token_id);
        b->tokens = cap;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
        if (b->tokens > cap)
            b->tokens = cap;
        b->last_ms = now_ms;
    }
    int ok = b->tokens >= 1.0;
    if (ok)
        b->tokens -= 1.0;
    else
        *retry_after_s = (unsigned)((1.0 - b->tokens) / rate) + 1;
    pthread_mutex_unlock(&rl->mu);
    if (!ok)
        atomic_fetch_add(&rl->refused, 1);
    return ok;
}

uint64_t srv_ratelimit_refused(const struct srv_ratelimit *rl)
{
    return rl ? atomic_load(&((struct srv_ratelimit *)rl)->refused) : 0;
}
