/*
 * A device's per-layer latency table: for every layer of one architecture
 * compiled with one scheme, the measured milliseconds of the layer at a
 * few pruning rates on one registered device. The latency objective of
 * spec.auto (admm_alloc.c) spends its budget against it instead of
 * parameter counts. The JSON form, as the server stores and hands it out
 * (GET /agent/v1/latency) and `compress --latency-table` reads it:
 *
 *   {"device": "pi5-a", "arch": "lenet5", "scheme": "irregular",
 *    "layers": [{"name": "conv1", "rates": [1, 2, 4, 8],
 *                "ms": [0.41, 0.25, 0.16, 0.11]}, ...]}
 *
 * Rates ascend from 1 (dense); ms are the layer's median times.
 */
#ifndef DP_COMMON_LAT_TABLE_H
#define DP_COMMON_LAT_TABLE_H

#include <jansson.h>

#include "common/err.h"

/* Bounds a table from the network must stay within. */
#define DP_LAT_TABLE_MAX_LAYERS 1024
#define DP_LAT_TABLE_MAX_POINTS 32

/*
 * Checks the shape of table (the JSON above): a "layers" array of at most
 * DP_LAT_TABLE_MAX_LAYERS entries with a name and equally long "rates" and
 * "ms" arrays of 1..DP_LAT_TABLE_MAX_POINTS numbers, rates strictly
 * ascending and >= 1, ms finite and >= 0. DP_EINVAL naming the first
 * problem.
 */
enum dp_err dp_lat_table_check(const json_t *table, struct dp_errinfo *ei);

/*
 * The milliseconds of layer `name` at `rate`: linear in log(rate) between
 * the measured points, the nearest point's value outside them. DP_EINVAL
 * when the table has no such layer. table must have passed
 * dp_lat_table_check.
 */
enum dp_err dp_lat_table_ms(const json_t *table, const char *name, double rate, double *ms,
                            struct dp_errinfo *ei);

#endif
