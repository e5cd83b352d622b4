/*
 * SHA-256 (FIPS 180-4) through OpenSSL's EVP digest (libcrypto), which uses
 * the CPU's SHA extensions where there are any. Artifacts, models and
 * datasets are named by the SHA-256 of their bytes; the worker's cache
 * verifies every file it fetches against the name it asked for.
 *
 *     struct dp_sha256_ctx c;
 *     err = dp_sha256_init(&c);              // may fail: EVP allocates
 *     err = dp_sha256_update(&c, buf, n);    // any number of times
 *     err = dp_sha256_final(&c, digest);     // 32 bytes; releases c
 *     dp_sha256_free(&c);                    // to abandon c before final
 *
 * OpenSSL allocates the digest state itself (not through dp_malloc); a
 * failure to allocate is DP_ENOMEM like ours. Thread-safe on distinct
 * contexts.
 */
#ifndef DP_COMMON_SHA256_H
#define DP_COMMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct evp_md_ctx_st; /* OpenSSL's EVP_MD_CTX, kept out of this header */

struct dp_sha256_ctx {
    struct evp_md_ctx_st *md; /* NULL before init and after final/free */
    uint64_t n_bytes;         /* message length so far */
};

/* Starts a digest. DP_ENOMEM when OpenSSL cannot allocate its state, DP_EIO
 * when it cannot set SHA-256 up; c is then released (free is a no-op). */
enum dp_err dp_sha256_init(struct dp_sha256_ctx *c);

/* Hashes n more bytes at data. DP_EIO if OpenSSL refuses (c stays valid
 * for dp_sha256_free). */
enum dp_err dp_sha256_update(struct dp_sha256_ctx *c, const void *data, size_t n);

/* Writes the digest and releases c, also on failure (DP_EIO). */
enum dp_err dp_sha256_final(struct dp_sha256_ctx *c, uint8_t out[32]);

/* Releases c without a digest; accepts a released or zeroed context. */
void dp_sha256_free(struct dp_sha256_ctx *c);

/* One-shot digest of n bytes at data (init, update, final). */
enum dp_err dp_sha256(const void *data, size_t n, uint8_t out[32]);

/* Writes the 64 lowercase hex digits of digest and a NUL into hex (65 bytes). */
void dp_sha256_hex(const uint8_t digest[32], char hex[65]);

/* Whether s is exactly 64 lowercase hex digits (a valid artifact name). */
int dp_sha256_hex_valid(const char *s);

/*
 * Hashes the file at path into hex (65 bytes) and, when n_bytes is not NULL,
 * stores its size. Returns DP_OK, or DP_EIO/DP_ENOENT/DP_ENOMEM with ei
 * naming the file.
 */
enum dp_err dp_sha256_file(const char *path, char hex[65], uint64_t *n_bytes,
                           struct dp_errinfo *ei);

#endif
