/*
 * Content-addressed artifact files (see blob.h). Temp files live in
 * DATA/tmp on the same filesystem as DATA/artifacts so that publishing is
 * an atomic rename(2).
 */
#include "server/blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/sha256.h"
#include "server/ids.h"

struct srv_blob_writer {
    int fd;
    int published;
    int pinned; /* holds blob_gc_rw shared: from publish until its row is written */
    uint64_t size, max_len;
    struct dp_sha256_ctx sha;
    char hex[65];
    char data_dir[4096];
    char tmp[4200];
};

/* Publishing a blob and writing the row that references it happen under
 * this lock shared; a GC pass deletes unreferenced rows and unlinks their
 * files under it exclusively. Without it an upload of bytes already
 * stored could find the file present (and skip the rename), lose it to
 * the GC's unlink, then reference a blob that is gone. */
static pthread_rwlock_t blob_gc_rw = PTHREAD_RWLOCK_INITIALIZER;

void srv_blob_gc_lock(void)
{
    pthread_rwlock_wrlock(&blob_gc_rw);
}

void srv_blob_gc_unlock(void)
{
    pthread_rwlock_unlock(&blob_gc_rw);
}

void srv_blob_unpin(struct srv_blob_writer *w)
{
    if (w != NULL && w->pinned) {
        w->pinned = 0;
        pthread_rwlock_unlock(&blob_gc_rw);
    }
}

static enum dp_err blob_mkdir(const char *path, struct dp_errinfo *ei)
{
    if (mkdir(path, 0750) != 0 && errno != EEXIST)
        return dp_errinfo_set(ei, dp_err_from_errno(errno), "mkdir %s: %s", path, strerror(errno));
    return DP_OK;
}

/* Removes what uploads interrupted by a crash left in DATA/tmp: nothing
 * there was ever acknowledged (a blob is published by rename first). */
static void blob_tmp_sweep(const char *tmp_dir)
{
    DIR *d = opendir(tmp_dir);
    if (d == NULL)
        return;
    int n = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        char p[4600];
        if (strncmp(e->d_name, "up_", 3) != 0)
            continue;
        int k = snprintf(p, sizeof(p), "%s/%s", tmp_dir, e->d_name);
        if (k > 0 && (size_t)k < sizeof(p) && unlink(p) == 0)
            n++;
    }
    closedir(d);
    if (n > 0)
        DP_LOG(DP_LOG_INFO, "blob: removed %d unfinished upload(s) from %s", n, tmp_dir);
}

enum dp_err srv_blob_init_dirs(const char *data_dir, struct dp_errinfo *ei)
{
    char p[4200];
    enum dp_err err = blob_mkdir(data_dir, ei);
    snprintf(p, sizeof(p), "%s/artifacts", data_dir);
    if (!err)
        err = blob_mkdir(p, ei);
    snprintf(p, sizeof(p), "%s/tmp", data_dir);
    if (!err)
        err = blob_mkdir(p, ei);
    if (!err)
        blob_tmp_sweep(p);
    return err;
}

enum dp_err srv_blob_begin(const char *data_dir, uint64_t max_len, struct srv_blob_writer **out,
                           struct dp_errinfo *ei)
{
    char rnd[SRV_ID_MAX];
    *out = NULL;
    enum dp_err err = srv_id_new("up_", rnd);
    if (err)
        return err;
    struct srv_blob_writer *w = dp_calloc(1, sizeof(*w));
    if (w == NULL)
        return DP_ENOMEM;
    w->max_len = max_len;
    snprintf(w->data_dir, sizeof(w->data_dir), "%s", data_dir);
    snprintf(w->tmp, sizeof(w->tmp), "%s/tmp/%s", data_dir, rnd);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (w->fd < 0) {
        err = dp_errinfo_set(ei, dp_err_from_errno(errno), "cannot create %s: %s", w->tmp,
                             strerror(errno));
        dp_free(w);
        return err;
    }
    err = dp_sha256_init(&w->sha);
    if (err) {
        close(w->fd);
        unlink(w->tmp);
        dp_free(w);
        return dp_errinfo_set(ei, err, "cannot start SHA-256 for the upload");
    }
    *out = w;
    return DP_OK;
}

enum dp_err srv_blob_write(struct srv_blob_writer *w, const void *data, size_t n,
                           struct dp_errinfo *ei)
{
    if (n > w->max_len - w->size)
        return dp_errinfo_set(ei, DP_ETOOBIG, "upload is larger than the limit of %llu bytes",
                              (unsigned long long)w->max_len);
    enum dp_err err = dp_sha256_update(&w->sha, data, n);
    if (err)
        return dp_errinfo_set(ei, err, "hashing upload failed");
    const char *p = data;
    while (n > 0) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return dp_errinfo_set(ei, dp_err_from_errno(errno), "writing upload: %s",
                                  strerror(errno));
        }
        p += k;
        n -= (size_t)k;
        w->size += (uint64_t)k;
    }
    return DP_OK;
}

enum dp_err srv_blob_finish(struct srv_blob_writer *w, char sha[65], uint64_t *size,
                            struct dp_errinfo *ei)
{
    uint8_t d[32];
    if (fsync(w->fd) != 0)
        return dp_errinfo_set(ei, DP_EIO, "fsync of upload: %s", strerror(errno));
    enum dp_err err = dp_sha256_final(&w->sha, d);
    if (err)
        return dp_errinfo_set(ei, err, "hashing upload failed");
    dp_sha256_hex(d, w->hex);
    memcpy(sha, w->hex, 65);
    *size = w->size;
    return DP_OK;
}

const char *srv_blob_tmp_path(const struct srv_blob_writer *w)
{
    return w->tmp;
}

uint64_t srv_blob_size(const struct srv_blob_writer *w)
{
    return w->size;
}

static enum dp_err blob_fsync_dir(const char *dir, struct dp_errinfo *ei)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return dp_errinfo_set(ei, DP_EIO, "open %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0)
        return dp_errinfo_set(ei, DP_EIO, "fsync %s: %s", dir, strerror(errno));
    return DP_OK;
}

enum dp_err srv_blob_publish(struct srv_blob_writer *w, struct dp_errinfo *ei)
{
    char dir[4200], dst[4300];
    if (!w->pinned) {
        pthread_rwlock_rdlock(&blob_gc_rw);
        w->pinned = 1;
    }
    snprintf(dir, sizeof(dir), "%s/artifacts/%.2s", w->data_dir, w->hex);
    enum dp_err err = blob_mkdir(dir, ei);
    if (err)
        return err;
    snprintf(dst, sizeof(dst), "%s/%s", dir, w->hex);
    struct stat sb;
    if (stat(dst, &sb) == 0 && (uint64_t)sb.st_size == w->size) {
        /* Same content already stored (the name is its hash). */
        unlink(w->tmp);
        w->published = 1;
        return DP_OK;
    }
    if (rename(w->tmp, dst) != 0)
        return dp_errinfo_set(ei, DP_EIO, "rename %s -> %s: %s", w->tmp, dst, strerror(errno));
    w->published = 1;
    return blob_fsync_dir(dir, ei);
}

void srv_blob_free(struct srv_blob_writer *w)
{
    if (w == NULL)
        return;
    int saved = errno;
    srv_blob_unpin(w);
    if (w->fd >= 0)
        close(w->fd);
    if (!w->published)
        unlink(w->tmp);
    dp_sha256_free(&w->sha); /* an upload abandoned before finish still holds it */
    dp_free(w);
    errno = saved;
}

enum dp_err srv_blob_path(const char *data_dir, const char *sha, char *out, size_t cap)
{
    if (!dp_sha256_hex_valid(sha))
        return DP_EINVAL;
    int n = snprintf(out, cap, "%s/artifacts/%.2s/%s", data_dir, sha, sha);
    return n > 0 && (size_t)n < cap ? DP_OK : DP_ETOOBIG;
}
