/*
 * SHA-256 (FIPS 180-4). Artifacts, models and datasets are named by the
 * SHA-256 of their bytes; the worker's cache verifies every file it fetches
 * against the name it asked for.
 *
 *     struct dp_sha256_ctx c;
 *     dp_sha256_init(&c);
 *     dp_sha256_update(&c, buf, n);      // any number of times
 *     dp_sha256_final(&c, digest);       // 32 bytes
 *
 * All functions are pure and thread-safe on distinct contexts.
 */
#ifndef DP_COMMON_SHA256_H
#define DP_COMMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct dp_sha256_ctx {
    uint32_t h[8];
    uint64_t n_bytes; /* message length so far */
    uint8_t buf[64];  /* pending partial block */
    size_t buf_len;   /* bytes used in buf, < 64 */
};

void dp_sha256_init(struct dp_sha256_ctx *c);
void dp_sha256_update(struct dp_sha256_ctx *c, const void *data, size_t n);
/* Writes the digest and leaves c unusable until the next init. */
void dp_sha256_final(struct dp_sha256_ctx *c, uint8_t out[32]);

/* One-shot digest of n bytes at data. */
void dp_sha256(const void *data, size_t n, uint8_t out[32]);

/* Writes the 64 lowercase hex digits of digest and a NUL into hex (65 bytes). */
void dp_sha256_hex(const uint8_t digest[32], char hex[65]);

/* Whether s is exactly 64 lowercase hex digits (a valid artifact name). */
int dp_sha256_hex_valid(const char *s);

/*
 * Hashes the file at path into hex (65 bytes) and, when n_bytes is not NULL,
 * stores its size. Returns DP_OK, or DP_EIO/DP_ENOENT with ei naming the file.
 */
enum dp_err dp_sha256_file(const char *path, char hex[65], uint64_t *n_bytes,
                           struct dp_errinfo *ei);

#endif
