/*
 * SHA-256 after FIPS 180-4, section 6.2: a straightforward 64-round
 * compression over big-endian words. Speed is secondary (a few hundred MB/s
 * is far above what the network delivers); clarity and a byte-exact match
 * with the standard's test vectors are what matter.
 */
#include "common/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const uint32_t dp_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t dp_rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32u - n));
}

static void dp_sha256_block(uint32_t h[8], const uint8_t p[64])
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = dp_rotr(w[i - 15], 7) ^ dp_rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = dp_rotr(w[i - 2], 17) ^ dp_rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t s1 = dp_rotr(e, 6) ^ dp_rotr(e, 11) ^ dp_rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = k + s1 + ch + dp_sha256_k[i] + w[i];
        uint32_t s0 = dp_rotr(a, 2) ^ dp_rotr(a, 13) ^ dp_rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = s0 + maj;
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

void dp_sha256_init(struct dp_sha256_ctx *c)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof(h0));
    c->n_bytes = 0;
    c->buf_len = 0;
}

void dp_sha256_update(struct dp_sha256_ctx *c, const void *data, size_t n)
{
    const uint8_t *p = data;
    c->n_bytes += n;
    if (c->buf_len > 0) {
        size_t take = 64 - c->buf_len < n ? 64 - c->buf_len : n;
        memcpy(c->buf + c->buf_len, p, take);
        c->buf_len += take;
        p += take;
        n -= take;
        if (c->buf_len < 64)
            return;
        dp_sha256_block(c->h, c->buf);
        c->buf_len = 0;
    }
    for (; n >= 64; p += 64, n -= 64)
        dp_sha256_block(c->h, p);
    if (n > 0) {
        memcpy(c->buf, p, n);
        c->buf_len = n;
    }
}

void dp_sha256_final(struct dp_sha256_ctx *c, uint8_t out[32])
{
    uint64_t bits = c->n_bytes * 8u;
    uint8_t pad[72] = {0x80};
    /* Pad to 56 mod 64, then the 64-bit big-endian length. */
    size_t pad_len = c->buf_len < 56 ? 56 - c->buf_len : 120 - c->buf_len;
    for (int i = 0; i < 8; i++)
        pad[pad_len + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t n_bytes = c->n_bytes;
    dp_sha256_update(c, pad, pad_len + 8);
    c->n_bytes = n_bytes;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

void dp_sha256(const void *data, size_t n, uint8_t out[32])
{
    struct dp_sha256_ctx c;
    dp_sha256_init(&c);
    dp_sha256_update(&c, data, n);
    dp_sha256_final(&c, out);
}

void dp_sha256_hex(const uint8_t digest[32], char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
}

int dp_sha256_hex_valid(const char *s)
{
    if (s == NULL)
        return 0;
    for (int i = 0; i < 64; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return 0;
    }
    return s[64] == '\0';
}

enum dp_err dp_sha256_file(const char *path, char hex[65], uint64_t *n_bytes, struct dp_errinfo *ei)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        return dp_errinfo_set(ei, dp_err_from_errno(e), "%s: %s", path, strerror(e));
    }
    struct dp_sha256_ctx c;
    dp_sha256_init(&c);
    uint8_t buf[65536];
    for (;;) {
        size_t n = fread(buf, 1, sizeof(buf), f);
        if (n == 0)
            break;
        dp_sha256_update(&c, buf, n);
    }
    int failed = ferror(f);
    fclose(f);
    if (failed)
        return dp_errinfo_set(ei, DP_EIO, "%s: read error", path);
    uint8_t d[32];
    if (n_bytes != NULL)
        *n_bytes = c.n_bytes;
    dp_sha256_final(&c, d);
    dp_sha256_hex(d, hex);
    return DP_OK;
}
