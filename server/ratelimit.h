/*
 * Per-token request rate limits: a token bucket per token id, in memory
 * (docs/security.md, "Limits"). A team token refills at --rate-limit-rps
 * up to --rate-limit-burst requests; an agent token (a worker: heartbeats,
 * events, uploads) at ten times both; admin tokens are not limited. A
 * request over the limit is answered 429 with Retry-After.
 *
 * The table holds SRV_RL_SLOTS buckets; a token not seen for longest gives
 * its slot to a new one (it then starts with a full bucket, which is what
 * an idle token would have anyway).
 */
#ifndef DP_SERVER_RATELIMIT_H
#define DP_SERVER_RATELIMIT_H

#include <stdint.h>

#define SRV_RL_SLOTS 4096

struct srv_ratelimit;

/* rps 0 turns limiting off (every take succeeds). NULL on out of memory. */
struct srv_ratelimit *srv_ratelimit_new(int rps, int burst);
void srv_ratelimit_free(struct srv_ratelimit *rl);

/* Takes one request for token_id at now_ms with the scope's multiplier
 * (1 team, 10 agent). 1 when allowed; 0 when over the limit, with
 * *retry_after_s the whole seconds until a request would pass. */
int srv_ratelimit_take(struct srv_ratelimit *rl, const char *token_id, int multiplier,
                       int64_t now_ms, unsigned *retry_after_s);

/* Requests refused so far. */
uint64_t srv_ratelimit_refused(const struct srv_ratelimit *rl);

#endif
