/*
 * SHA-256 throughput of the upload path: dp_sha256_file (what the worker's
 * cache and the CLI run on every download; the server's blob writer feeds
 * the same digest) over one file, best of N passes, against a peer
 * implementation linked under the prefix peer_ (tests/bench/sha256.sh
 * builds the hand-written one from git as the peer). Prints one line per
 * implementation: name, MB/s, digest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/sha256.h"

enum dp_err peer_sha256_file(const char *path, char hex[65], uint64_t *n_bytes,
                             struct dp_errinfo *ei);

typedef enum dp_err (*file_fn)(const char *, char *, uint64_t *, struct dp_errinfo *);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int run(const char *name, file_fn fn, const char *path, int passes)
{
    double best = 0.0;
    char hex[65] = "";
    for (int i = 0; i < passes; i++) {
        uint64_t n = 0;
        struct dp_errinfo ei = {DP_OK, ""};
        double t0 = now_s();
        if (fn(path, hex, &n, &ei) != DP_OK) {
            fprintf(stderr, "%s: %s\n", name, ei.msg);
            return 1;
        }
        double mbs = (double)n / 1e6 / (now_s() - t0);
        best = mbs > best ? mbs : best;
    }
    printf("%-24s %8.1f MB/s  %s\n", name, best, hex);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s FILE PASSES\n", argv[0]);
        return 2;
    }
    int passes = (int)strtol(argv[2], NULL, 10);
    /* Alternate so that neither side profits from a warmer page cache. */
    int rc = run("hand-written (main)", peer_sha256_file, argv[1], 1);
    rc |= run("OpenSSL EVP (this tree)", dp_sha256_file, argv[1], 1);
    rc |= run("hand-written (main)", peer_sha256_file, argv[1], passes);
    rc |= run("OpenSSL EVP (this tree)", dp_sha256_file, argv[1], passes);
    return rc;
}
