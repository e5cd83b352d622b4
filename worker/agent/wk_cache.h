/*
 * The worker's bounded, content-addressed file cache. Models, datasets and
 * reports are fetched from the server by SHA-256 into DIR/blobs/<sha256>,
 * verified before they become visible (downloaded to DIR/tmp, hashed,
 * renamed), and reused by later tasks. When a new file would push the total
 * over the cap, the least recently used files are removed first.
 *
 * One worker process owns a cache directory: wk_cache_open takes an
 * exclusive lock on DIR/lock (flock, released by wk_cache_close or when
 * the process ends, however it ends), so a second worker started on the
 * same directory is refused instead of removing the first one's downloads
 * and task files. Every insertion is still a rename of a complete, verified
 * file, and eviction tolerates files removed behind its back. A task that
 * must keep a file while the cache evicts hard-links it into its own
 * directory (wk_cache_link).
 */
#ifndef DP_WORKER_AGENT_WK_CACHE_H
#define DP_WORKER_AGENT_WK_CACHE_H

#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

struct wk_cache {
    char dir[1024];     /* the cache root */
    uint64_t max_bytes; /* cap on the total size of DIR/blobs */
    int lock_fd;        /* DIR/lock, flock()ed; -1 when closed */
};

/*
 * Writes the bytes of sha256 into out (opened for writing by the cache);
 * returns DP_OK or an error with ei set. The cache checks the hash itself.
 */
typedef enum dp_err (*wk_cache_fetch_fn)(void *ud, const char *sha256, FILE *out,
                                         struct dp_errinfo *ei);

/*
 * Creates DIR, DIR/blobs and DIR/tmp as needed, locks DIR (DIR/lock, which
 * then holds this process's pid) and drops the temporaries a killed worker
 * left. Fails with DP_EEXIST, naming the holder's pid, when another process
 * holds the lock: one cache directory per worker. On success the caller
 * owns the lock until wk_cache_close.
 */
enum dp_err wk_cache_open(struct wk_cache *c, const char *dir, uint64_t max_bytes,
                          struct dp_errinfo *ei);

/* Releases the lock. c: NULL, or filled by wk_cache_open (whether it succeeded or not). */
void wk_cache_close(struct wk_cache *c);

/*
 * Makes sure the file named sha256 (64 lowercase hex digits) of `size`
 * bytes is in the cache, fetching it with fetch(ud, ...) when it is not, and
 * writes its path into path (cap bytes). A hit marks the file as recently
 * used. Fails with DP_ETOOBIG when size exceeds the cap, DP_EFORMAT when
 * the fetched bytes do not hash to sha256 or have another size (the bad
 * file is discarded), or the fetch's own error.
 */
enum dp_err wk_cache_get(struct wk_cache *c, const char *sha256, uint64_t size,
                         wk_cache_fetch_fn fetch, void *ud, char *path, size_t cap,
                         struct dp_errinfo *ei);

/* Hard-links cached file sha256 to dest (replacing dest), so eviction cannot remove it. */
enum dp_err wk_cache_link(struct wk_cache *c, const char *sha256, const char *dest,
                          struct dp_errinfo *ei);

/* Total size of the cached files in bytes (what the cap applies to). */
uint64_t wk_cache_used(const struct wk_cache *c);

/*
 * Removes least recently used files until the cache holds at most
 * max_bytes - incoming bytes. Returns the number of files removed.
 */
int wk_cache_evict(struct wk_cache *c, uint64_t incoming);

#endif
