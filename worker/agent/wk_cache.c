/*
 * The content-addressed cache (see wk_cache.h).
 *
 * DESIGN: recency is the file's mtime, set to "now" on every hit, so the
 * cache needs no index file that could disagree with the directory after a
 * crash; the directory listing is the truth. Downloads go to DIR/tmp under
 * a unique name and only a verified file is renamed into DIR/blobs, so a
 * worker killed mid-download leaves at most a temporary that the next
 * wk_cache_open removes. The lock on DIR/lock (flock: the kernel drops it
 * when the holder dies, kill -9 included, so a stale lock file never
 * blocks) makes that safe: no other process writes there.
 */
#include "worker/agent/wk_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/sha256.h"

/* The cache root leaves this much room for what goes under it: the longest
 * is "/tmp/<64 hex>.XXXXXX" (78 bytes). */
#define WK_CACHE_SUBPATH_MAX 80
/* A directory under the root ("DIR/blobs"), and a file in one: the root's
 * buffer (struct wk_cache.dir) plus room for the rest. */
#define WK_CACHE_DIR_PATH_MAX  1200
#define WK_CACHE_FILE_PATH_MAX 1500

static enum dp_err wk_mkdir(const char *path, struct dp_errinfo *ei)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        return dp_errinfo_set(ei, dp_err_from_errno(e), "cannot create %s: %s", path, strerror(e));
    }
    return DP_OK;
}

static int wk_cache_path(const struct wk_cache *c, const char *sub, const char *name, char *out,
                         size_t cap)
{
    int n = snprintf(out, cap, "%s/%s/%s", c->dir, sub, name);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}

/*
 * Takes DIR/lock for this process (c->lock_fd) and writes its pid there for
 * the message a second worker gets. The descriptor is close-on-exec, so
 * nothing the worker starts inherits the lock.
 */
static enum dp_err wk_cache_lock(struct wk_cache *c, struct dp_errinfo *ei)
{
    char p[WK_CACHE_DIR_PATH_MAX];
    snprintf(p, sizeof(p), "%s/lock", c->dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        return dp_errinfo_set(ei, dp_err_from_errno(e), "cannot open %s: %s", p, strerror(e));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char holder[32] = "";
        ssize_t n = e == EWOULDBLOCK ? pread(fd, holder, sizeof(holder) - 1, 0) : -1;
        holder[n > 0 ? (size_t)n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        if (e != EWOULDBLOCK)
            return dp_errinfo_set(ei, dp_err_from_errno(e), "cannot lock %s: %s", p, strerror(e));
        return dp_errinfo_set(ei, DP_EEXIST,
                              "cache directory %s is in use by another worker (pid %s holds %s); "
                              "give each worker a --cache-dir of its own",
                              c->dir, holder[0] ? holder : "?", p);
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* The pid is only for messages; the lock is what counts. */
    }
    c->lock_fd = fd;
    return DP_OK;
}

enum dp_err wk_cache_open(struct wk_cache *c, const char *dir, uint64_t max_bytes,
                          struct dp_errinfo *ei)
{
    memset(c, 0, sizeof(*c));
    c->lock_fd = -1;
    if (strlen(dir) + WK_CACHE_SUBPATH_MAX >= sizeof(c->dir))
        return dp_errinfo_set(ei, DP_EINVAL, "cache directory path too long: %.64s...", dir);
    snprintf(c->dir, sizeof(c->dir), "%s", dir);
    c->max_bytes = max_bytes;
    char p[WK_CACHE_DIR_PATH_MAX];
    enum dp_err err = wk_mkdir(c->dir, ei);
    if (!err)
        err = wk_cache_lock(c, ei);
    snprintf(p, sizeof(p), "%s/blobs", c->dir);
    if (!err)
        err = wk_mkdir(p, ei);
    snprintf(p, sizeof(p), "%s/tmp", c->dir);
    if (!err)
        err = wk_mkdir(p, ei);
    if (err) {
        wk_cache_close(c);
        return err;
    }
    DIR *d = opendir(p);
    if (d == NULL)
        return DP_OK;
    /* Under the lock every temporary is a dead process's. */
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        char f[WK_CACHE_FILE_PATH_MAX];
        struct stat st;
        if (e->d_name[0] == '.' || wk_cache_path(c, "tmp", e->d_name, f, sizeof(f)) != 0)
            continue;
        if (lstat(f, &st) == 0 && S_ISREG(st.st_mode))
            unlink(f);
    }
    closedir(d);
    return DP_OK;
}

void wk_cache_close(struct wk_cache *c)
{
    if (c == NULL)
        return;
    int saved = errno;
    if (c->lock_fd >= 0)
        close(c->lock_fd); /* drops the flock */
    c->lock_fd = -1;
    errno = saved;
}

/* ---- Listing and eviction ------------------------------------------------ */

struct wk_cache_entry {
    char name[65];
    uint64_t size;
    struct timespec mtime;
};

static int wk_cache_entry_cmp(const void *a, const void *b)
{
    const struct wk_cache_entry *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec)
        return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec)
        return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Lists the blobs (only well-named regular files); *out is the caller's to dp_free. */
static enum dp_err wk_cache_list(const struct wk_cache *c, struct wk_cache_entry **out,
                                 size_t *n_out)
{
    char p[WK_CACHE_DIR_PATH_MAX];
    snprintf(p, sizeof(p), "%s/blobs", c->dir);
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(p);
    if (d == NULL)
        return DP_OK;
    struct wk_cache_entry *v = NULL;
    size_t n = 0, cap = 0;
    enum dp_err err = DP_OK;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        char f[WK_CACHE_FILE_PATH_MAX];
        struct stat st;
        if (!dp_sha256_hex_valid(e->d_name) || wk_cache_path(c, "blobs", e->d_name, f, sizeof(f)))
            continue;
        if (stat(f, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            struct wk_cache_entry *nv = dp_realloc(v, dp_size_mul(nc, sizeof(*v)));
            if (nv == NULL) {
                err = DP_ENOMEM;
                break;
            }
            v = nv;
            cap = nc;
        }
        memcpy(v[n].name, e->d_name, 65); /* valid: exactly 64 hex digits and a NUL */
        v[n].size = (uint64_t)st.st_size;
        v[n].mtime = st.st_mtim;
        n++;
    }
    closedir(d);
    if (err) {
        dp_free(v);
        return err;
    }
    *out = v;
    *n_out = n;
    return DP_OK;
}

uint64_t wk_cache_used(const struct wk_cache *c)
{
    struct wk_cache_entry *v = NULL;
    size_t n = 0;
    uint64_t total = 0;
    if (wk_cache_list(c, &v, &n) == DP_OK)
        for (size_t i = 0; i < n; i++)
            total += v[i].size;
    dp_free(v);
    return total;
}

int wk_cache_evict(struct wk_cache *c, uint64_t incoming)
{
    struct wk_cache_entry *v = NULL;
    size_t n = 0;
    if (wk_cache_list(c, &v, &n) != DP_OK)
        return 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i].size;
    if (n > 1)
        qsort(v, n, sizeof(*v), wk_cache_entry_cmp);
    int removed = 0;
    for (size_t i = 0; i < n && total + incoming > c->max_bytes; i++) {
        char f[WK_CACHE_FILE_PATH_MAX];
        if (wk_cache_path(c, "blobs", v[i].name, f, sizeof(f)) != 0)
            continue;
        /* Someone may have removed it behind the cache's back. */
        if (unlink(f) == 0 || errno == ENOENT) {
            total -= v[i].size;
            removed++;
        }
    }
    dp_free(v);
    return removed;
}

/* ---- Lookup and insertion ------------------------------------------------ */

enum dp_err wk_cache_get(struct wk_cache *c, const char *sha256, uint64_t size,
                         wk_cache_fetch_fn fetch, void *ud, char *path, size_t cap,
                         struct dp_errinfo *ei)
{
    if (!dp_sha256_hex_valid(sha256))
        return dp_errinfo_set(ei, DP_EINVAL, "not a sha256 name: '%.80s'", sha256);
    if (wk_cache_path(c, "blobs", sha256, path, cap) != 0)
        return dp_errinfo_set(ei, DP_EINVAL, "cache path too long");
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size) {
        /* A hit: mark it as the most recently used. */
        utimensat(AT_FDCWD, path, NULL, 0);
        return DP_OK;
    }
    if (size > c->max_bytes)
        return dp_errinfo_set(ei, DP_ETOOBIG,
                              "%s is %llu bytes, more than the whole cache (%llu bytes); "
                              "raise --cache-mb",
                              sha256, (unsigned long long)size, (unsigned long long)c->max_bytes);
    wk_cache_evict(c, size);

    char tmp[WK_CACHE_FILE_PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s/tmp/%s.XXXXXX", c->dir, sha256);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return dp_errinfo_set(ei, DP_EINVAL, "cache path too long");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        return dp_errinfo_set(ei, dp_err_from_errno(e), "cannot create a file in %s/tmp: %s",
                              c->dir, strerror(e));
    }
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        close(fd);
        unlink(tmp);
        return dp_errinfo_set(ei, DP_ENOMEM, "fdopen failed");
    }
    enum dp_err err = fetch(ud, sha256, f, ei);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        if (!err)
            err = dp_errinfo_set(ei, DP_EIO, "writing %s: %s", tmp, strerror(errno));
    }
    fclose(f);
    char got[65];
    uint64_t got_size = 0;
    if (!err)
        err = dp_sha256_file(tmp, got, &got_size, ei);
    if (!err && (strcmp(got, sha256) != 0 || got_size != size))
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "fetched %s but received %llu bytes hashing to %s (expected %llu "
                             "bytes); discarded",
                             sha256, (unsigned long long)got_size, got, (unsigned long long)size);
    if (!err && rename(tmp, path) != 0) {
        int e = errno;
        err = dp_errinfo_set(ei, dp_err_from_errno(e), "cannot move %s into the cache: %s", tmp,
                             strerror(e));
    }
    if (err)
        unlink(tmp);
    return err;
}

enum dp_err wk_cache_link(struct wk_cache *c, const char *sha256, const char *dest,
                          struct dp_errinfo *ei)
{
    char src[1500];
    if (!dp_sha256_hex_valid(sha256) || wk_cache_path(c, "blobs", sha256, src, sizeof(src)) != 0)
        return dp_errinfo_set(ei, DP_EINVAL, "not a sha256 name: '%.80s'", sha256);
    unlink(dest);
    if (link(src, dest) != 0) {
        int e = errno;
        return dp_errinfo_set(ei, dp_err_from_errno(e), "cannot link %s to %s: %s", src, dest,
                              strerror(e));
    }
    return DP_OK;
}
