/*
 * One GC pass (see gc.h). The store decides which rows go (store_retention.c);
 * this file removes the files, under the blob publish lock held exclusively
 * so that no upload can be between publishing a file and writing its row.
 */
#include "server/gc.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/sha256.h"
#include "server/blob.h"
#include "server/ids.h"

static int64_t gc_unlink(const char *path)
{
    struct stat sb;
    int64_t size = stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
    if (unlink(path) != 0 && errno != ENOENT) {
        DP_LOG(DP_LOG_WARN, "gc: cannot remove %s: %s", path, strerror(errno));
        return 0;
    }
    return size;
}

/* Files under artifacts/ that no blob row names and that are older than
 * the grace period: left by a crash between publish and row, or by a
 * request that failed after publishing. */
static enum dp_err gc_orphan_files(struct srv_store *st, const char *data_dir, int64_t grace_ms,
                                   struct srv_gc_stats *s, struct dp_errinfo *ei)
{
    char root[4200];
    snprintf(root, sizeof(root), "%s/artifacts", data_dir);
    DIR *top = opendir(root);
    if (top == NULL)
        return errno == ENOENT ? DP_OK
                               : dp_errinfo_set(ei, DP_EIO, "gc: %s: %s", root, strerror(errno));
    time_t cutoff = time(NULL) - (time_t)(grace_ms / 1000);
    enum dp_err err = DP_OK;
    struct dirent *d;
    while (!err && (d = readdir(top)) != NULL) {
        if (strlen(d->d_name) != 2 || d->d_name[0] == '.')
            continue;
        char sub[4300];
        snprintf(sub, sizeof(sub), "%s/%.2s", root, d->d_name);
        DIR *dir = opendir(sub);
        if (dir == NULL)
            continue;
        struct dirent *f;
        while (!err && (f = readdir(dir)) != NULL) {
            if (!dp_sha256_hex_valid(f->d_name) || strncmp(f->d_name, d->d_name, 2) != 0)
                continue;
            char path[4600];
            snprintf(path, sizeof(path), "%s/%.64s", sub, f->d_name);
            struct stat sb;
            if (stat(path, &sb) != 0 || sb.st_mtime > cutoff)
                continue;
            int known = 1;
            err = srv_store_blob_known(st, f->d_name, &known, ei);
            if (!err && !known) {
                s->bytes_freed += gc_unlink(path);
                s->orphan_files++;
            }
        }
        closedir(dir);
    }
    closedir(top);
    return err;
}

enum dp_err srv_gc_run(struct srv_store *st, const char *data_dir, const struct srv_gc_cfg *cfg,
                       struct srv_gc_stats *total, struct dp_errinfo *ei)
{
    struct srv_gc_result *res = dp_malloc(sizeof(*res));
    if (res == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "gc: out of memory");
    struct srv_gc_stats s = {0};
    srv_blob_gc_lock();
    enum dp_err err = srv_store_gc(st, cfg, srv_now_ms(), res, ei);
    if (!err) {
        /* Committed: these rows are gone, so are their files. */
        for (int i = 0; i < res->n_blobs; i++) {
            char path[4400];
            if (srv_blob_path(data_dir, res->blobs[i], path, sizeof(path)) == DP_OK)
                s.bytes_freed += gc_unlink(path);
        }
        s.idempotency_keys = res->idempotency_keys;
        s.events = res->events;
        s.checkpoints = res->checkpoints;
        s.blobs = res->n_blobs;
        err = gc_orphan_files(st, data_dir, cfg->grace_ms, &s, ei);
    }
    srv_blob_gc_unlock();
    dp_free(res);
    if (s.idempotency_keys || s.events || s.checkpoints || s.blobs || s.orphan_files)
        DP_LOG(DP_LOG_INFO,
               "gc: removed %lld idempotency keys, %lld events, %lld checkpoint references, "
               "%lld blobs and %lld orphan files (%lld bytes)",
               (long long)s.idempotency_keys, (long long)s.events, (long long)s.checkpoints,
               (long long)s.blobs, (long long)s.orphan_files, (long long)s.bytes_freed);
    total->idempotency_keys += s.idempotency_keys;
    total->events += s.events;
    total->checkpoints += s.checkpoints;
    total->blobs += s.blobs;
    total->orphan_files += s.orphan_files;
    total->bytes_freed += s.bytes_freed;
    return err;
}
