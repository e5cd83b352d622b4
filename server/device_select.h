/*
 * Device selectors: which registered devices a job's profile targets
 * (docs/api.md, "Devices"). A selector is a JSON object of string values,
 * every key of which must match (and); a job lists selectors, any of which
 * may match (or). "name" is a glob over the device's name (fnmatch: *, ?,
 * [..]); any other key matches a label of that name with that exact value,
 * or else the field of that name in the device's self-detected description
 * when it is equal to the value or is an array holding it (so {"isa":
 * "avx512"} matches a device whose description lists "avx512" in "isa").
 * Pure functions: no store, no allocation; any thread.
 */
#ifndef DP_SERVER_DEVICE_SELECT_H
#define DP_SERVER_DEVICE_SELECT_H

#include <jansson.h>

#include "common/err.h"

/* Limits on a job's profile.devices. */
#define SRV_SELECT_MAX       16 /* selectors */
#define SRV_SELECT_KEYS_MAX  8  /* keys per selector */
#define SRV_SELECT_VALUE_MAX 64 /* bytes per key and per value */

/* Checks selectors (a job's profile.devices) against the rules above;
 * DP_EINVAL naming the field (under `where`) otherwise. */
enum dp_err srv_device_select_check(const json_t *selectors, const char *where,
                                    struct dp_errinfo *ei);

/* 1 when the device (name, labels object, description object) matches any
 * of selectors (checked), else 0. */
int srv_device_select_match(const json_t *selectors, const char *name, const json_t *labels,
                            const json_t *description);

#endif
