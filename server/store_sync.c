/*
 * Group commit (see store.h, "Durability"). With --sync group the writer
 * connection runs synchronous=NORMAL: COMMIT writes the WAL frames but does
 * not fsync, so the store's mutex is never held across a disk flush. Each
 * commit takes a sequence number; a flusher thread fsyncs the WAL file
 * (through its own descriptor: fsync flushes the file, whoever wrote it)
 * for every commit up to the newest at once, then reports the sequence
 * number that is now durable. The HTTP layer holds each reply that follows
 * a commit until its number is durable (server/http.c), so "2xx means
 * durable" holds as with synchronous=FULL, while one fsync serves every
 * commit that arrived during the previous one, and the HTTP threads serve
 * other connections meanwhile.
 *
 * Recovery is SQLite's own: frames on disk with valid checksums after the
 * last header are replayed, so a commit whose frames were flushed survives
 * a power loss, and one whose frames were not was never acknowledged.
 */
#include "server/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "server/store_int.h"

/* The newest commit this thread made since srv_store_thread_commit_reset. */
static _Thread_local uint64_t tls_commit_seq;

void srv_store_thread_commit_reset(void)
{
    tls_commit_seq = 0;
}

uint64_t srv_store_thread_commit(void)
{
    return tls_commit_seq;
}

uint64_t srv_store_durable_seq(struct srv_store *st)
{
    return atomic_load(&st->durable_seq);
}

int srv_store_group_commit(struct srv_store *st)
{
    return st->group;
}

void srv_store__committed(struct srv_store *st)
{
    if (!st->group)
        return;
    pthread_mutex_lock(&st->sync_mu);
    tls_commit_seq = atomic_fetch_add(&st->commit_seq, 1) + 1;
    pthread_cond_signal(&st->sync_cv);
    pthread_mutex_unlock(&st->sync_mu);
}

/* fsync of the WAL file; opened on first use (SQLite creates it with the
 * first write), its directory entry flushed once. */
static int sync_wal(struct srv_store *st)
{
    if (st->wal_fd < 0) {
        st->wal_fd = open(st->wal_path, O_RDONLY | O_CLOEXEC);
        if (st->wal_fd < 0)
            return errno == ENOENT ? 0 : -1; /* no WAL yet: nothing to flush */
        char dir[1100];
        snprintf(dir, sizeof(dir), "%s", st->wal_path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return fsync(st->wal_fd);
}

static void *flusher_main(void *arg)
{
    struct srv_store *st = arg;
    pthread_mutex_lock(&st->sync_mu);
    for (;;) {
        while (!st->flusher_stop && atomic_load(&st->commit_seq) == atomic_load(&st->durable_seq))
            pthread_cond_wait(&st->sync_cv, &st->sync_mu);
        uint64_t target = atomic_load(&st->commit_seq);
        if (target == atomic_load(&st->durable_seq) && st->flusher_stop)
            break;
        pthread_mutex_unlock(&st->sync_mu);
        /* Every commit numbered up to target has written its frames (the
         * number is taken after COMMIT returned): one fsync covers them. */
        int ok = sync_wal(st) == 0;
        if (!ok)
            DP_LOG(DP_LOG_ERROR,
                   "store: fsync of %s failed: %s; the replies waiting for it "
                   "are answered 500",
                   st->wal_path, strerror(errno));
        atomic_store(&st->durable_seq, target);
        atomic_fetch_add(&st->n_flushes, 1);
        if (st->on_durable)
            st->on_durable(st->on_durable_ctx, target, ok);
        pthread_mutex_lock(&st->sync_mu);
    }
    pthread_mutex_unlock(&st->sync_mu);
    return NULL;
}

enum dp_err srv_store_group_commit_start(struct srv_store *st,
                                         void (*on_durable)(void *ctx, uint64_t seq, int ok),
                                         void *ctx, struct dp_errinfo *ei)
{
    srv_store__lock(st);
    enum dp_err err = srv_store__exec_sql(st, "PRAGMA synchronous = NORMAL", ei);
    srv_store__unlock(st);
    if (err)
        return err;
    st->on_durable = on_durable;
    st->on_durable_ctx = ctx;
    st->flusher_stop = 0;
    st->group = 1;
    if (pthread_create(&st->flusher, NULL, flusher_main, st) != 0) {
        st->group = 0;
        srv_store__lock(st);
        srv_store__exec_sql(st, "PRAGMA synchronous = FULL", NULL);
        srv_store__unlock(st);
        return dp_errinfo_set(ei, DP_EIO, "cannot start the group-commit thread");
    }
    st->flusher_started = 1;
    return DP_OK;
}

void srv_store_group_commit_stop(struct srv_store *st)
{
    if (st == NULL || !st->flusher_started)
        return;
    /* The flusher makes everything committed so far durable (and reports
     * it) before it ends; later commits are synchronous again. */
    srv_store__lock(st);
    srv_store__exec_sql(st, "PRAGMA synchronous = FULL", NULL);
    st->group = 0;
    srv_store__unlock(st);
    pthread_mutex_lock(&st->sync_mu);
    st->flusher_stop = 1;
    pthread_cond_signal(&st->sync_cv);
    pthread_mutex_unlock(&st->sync_mu);
    pthread_join(st->flusher, NULL);
    st->flusher_started = 0;
    st->on_durable = NULL;
}

uint64_t srv_store_flushes(struct srv_store *st)
{
    return atomic_load(&st->n_flushes);
}
