/*
 * Identifiers, secrets and clocks for the server.
 *
 * Ids are a type prefix plus 24 lowercase hex digits from getrandom(), e.g.
 * "job_3f9c0a...". Token secrets are "dpt_" plus 64 hex digits (256 bits);
 * only their SHA-256 is ever stored. Times are integer milliseconds since
 * the Unix epoch, formatted as RFC 3339 UTC at the API boundary.
 */
#ifndef DP_SERVER_IDS_H
#define DP_SERVER_IDS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Longest id, including the NUL: a prefix of up to 7 characters + 24 hex. */
#define SRV_ID_MAX 32
/* A token secret: "dpt_" + 64 hex + NUL. */
#define SRV_TOKEN_LEN 69

/* Fills buf with n bytes from the kernel's CSPRNG. DP_EIO when it cannot. Any thread. */
enum dp_err srv_rand_bytes(void *buf, size_t n);

/* Writes prefix (e.g. "job_") followed by 24 random hex digits into out
 * (SRV_ID_MAX bytes). Any thread. */
enum dp_err srv_id_new(const char *prefix, char out[SRV_ID_MAX]);

/* Writes a fresh token secret into out (SRV_TOKEN_LEN bytes). Any thread. */
enum dp_err srv_token_new(char out[SRV_TOKEN_LEN]);

/* Writes the lowercase hex SHA-256 of the NUL-terminated s into hex (65
 * bytes). DP_ENOMEM/DP_EIO when libcrypto fails (hex untouched). Any thread. */
enum dp_err srv_token_hash(const char *s, char hex[65]);

/* Whether s looks like an id with the given prefix (prefix + 24 lowercase hex). */
int srv_id_valid(const char *s, const char *prefix);

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). Any thread. */
int64_t srv_now_ms(void);

/* Milliseconds of CLOCK_MONOTONIC, for deadlines. Any thread. */
int64_t srv_mono_ms(void);

/* Formats ms as "2025-01-31T12:34:56.789Z" into out (32 bytes). */
void srv_time_fmt(int64_t ms, char out[32]);

/* Parses an RFC 3339 date-time ("2025-01-31T12:34:56Z", fractions and
 * "+02:00" offsets allowed; milliseconds kept) into *ms since the epoch.
 * DP_EINVAL for anything else, including impossible dates. */
enum dp_err srv_time_parse(const char *s, int64_t *ms);

#endif
