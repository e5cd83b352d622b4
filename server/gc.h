/*
 * Garbage collection of the data directory, run by the housekeeping thread
 * every --gc-interval-s (docs/operations.md, "Retention"): expired
 * idempotency keys, old events and checkpoints, unreferenced blobs (row and
 * file) past the grace period, and files in artifacts/ no row names.
 */
#ifndef DP_SERVER_GC_H
#define DP_SERVER_GC_H

#include <stdint.h>

#include "common/err.h"
#include "server/store.h"

/* What one pass did, for the log and /metrics. */
struct srv_gc_stats {
    int64_t idempotency_keys, events, checkpoints, blobs, orphan_files, bytes_freed;
};

/* One pass over data_dir's store st; adds what it did to *total. */
enum dp_err srv_gc_run(struct srv_store *st, const char *data_dir, const struct srv_gc_cfg *cfg,
                       struct srv_gc_stats *total, struct dp_errinfo *ei);

#endif
