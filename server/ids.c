/*
 * Ids, token secrets and clocks (see ids.h). Randomness comes only from
 * getrandom(): ids must not be guessable, because a guessed id is the first
 * half of reading another team's object.
 */
#include "server/ids.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/sha256.h"

enum dp_err srv_rand_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return DP_EIO;
        }
        p += (size_t)got;
        n -= (size_t)got;
    }
    return DP_OK;
}

static void srv__hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

enum dp_err srv_id_new(const char *prefix, char out[SRV_ID_MAX])
{
    unsigned char b[12];
    size_t plen = strlen(prefix);
    if (plen > 7)
        return DP_EINVAL;
    enum dp_err err = srv_rand_bytes(b, sizeof(b));
    if (err)
        return err;
    memcpy(out, prefix, plen);
    srv__hex(b, sizeof(b), out + plen);
    return DP_OK;
}

enum dp_err srv_token_new(char out[SRV_TOKEN_LEN])
{
    unsigned char b[32];
    enum dp_err err = srv_rand_bytes(b, sizeof(b));
    if (err)
        return err;
    memcpy(out, "dpt_", 4);
    srv__hex(b, sizeof(b), out + 4);
    return DP_OK;
}

enum dp_err srv_token_hash(const char *s, char hex[65])
{
    uint8_t d[32];
    enum dp_err err = dp_sha256(s, strlen(s), d);
    if (!err)
        dp_sha256_hex(d, hex);
    return err;
}

int srv_id_valid(const char *s, const char *prefix)
{
    size_t plen = strlen(prefix);
    if (strncmp(s, prefix, plen) != 0 || strlen(s) != plen + 24)
        return 0;
    for (const char *p = s + plen; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

int64_t srv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t srv_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void srv_time_fmt(int64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ms % 1000) % 1000u);
}
