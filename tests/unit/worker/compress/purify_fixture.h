/*
 * The purification suites' shared check: purify a model and hold the
 * purified model to the same logits on random input.
 */
#ifndef DP_TESTS_UNIT_WORKER_COMPRESS_PURIFY_FIXTURE_H
#define DP_TESTS_UNIT_WORKER_COMPRESS_PURIFY_FIXTURE_H

#include <jansson.h>

#include "common/model.h"

/* Purifies m (cp_purify must succeed) and checks that the logits of 4
 * seeded random inputs in [-1, 1) stay within 1e-4 (relative to 1 + |a|);
 * returns the purified model (the caller frees it) and its stats. */
struct dp_model *purify_fixture_same(struct dp_model *m, json_t **stats);

#endif
