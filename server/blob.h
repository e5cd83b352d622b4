/*
 * The artifact store: content-addressed files under DATA/artifacts/xx/<sha256>.
 *
 *   struct srv_blob_writer *w = NULL;
 *   err = srv_blob_begin(data_dir, max_len, &w, &ei);   // a temp file in DATA/tmp
 *   err = srv_blob_write(w, chunk, n, &ei);             // any number of times
 *   err = srv_blob_finish(w, sha, &size, &ei);          // fsync; sha of all bytes
 *   ... validate srv_blob_tmp_path(w) ...
 *   err = srv_blob_publish(w, &ei);                     // rename into place
 *   srv_blob_free(w);                                   // removes the temp file if unpublished
 *
 * Bytes are hashed as they arrive, so nothing is ever held whole in memory.
 * Publishing is a rename of a fsynced file followed by a fsync of the
 * directory: a crash leaves either no file or the whole file under its
 * name, never a partial one. Identical content is stored once.
 */
#ifndef DP_SERVER_BLOB_H
#define DP_SERVER_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct srv_blob_writer;

/* Creates DATA/artifacts and DATA/tmp when missing, and removes unfinished
 * uploads a crash left in DATA/tmp. Call once at start, before serving. */
enum dp_err srv_blob_init_dirs(const char *data_dir, struct dp_errinfo *ei);

/* Opens a temp file; writes beyond max_len bytes fail with DP_ETOOBIG. */
enum dp_err srv_blob_begin(const char *data_dir, uint64_t max_len, struct srv_blob_writer **out,
                           struct dp_errinfo *ei);

enum dp_err srv_blob_write(struct srv_blob_writer *w, const void *data, size_t n,
                           struct dp_errinfo *ei);

/* Flushes and fsyncs; writes the hex digest (65 bytes) and the size. */
enum dp_err srv_blob_finish(struct srv_blob_writer *w, char sha[65], uint64_t *size,
                            struct dp_errinfo *ei);

/* Path of the temp file (valid until publish or free), for validators. */
const char *srv_blob_tmp_path(const struct srv_blob_writer *w);

/* Bytes written so far. */
uint64_t srv_blob_size(const struct srv_blob_writer *w);

/* Renames the finished temp file to its content address (or drops it when
 * that content is already stored) and fsyncs the directory. From here
 * until srv_blob_unpin (or srv_blob_free) w holds the GC lock shared: write
 * the row that references the blob in between, so that no GC pass can
 * remove the file under it. */
enum dp_err srv_blob_publish(struct srv_blob_writer *w, struct dp_errinfo *ei);

/* Lets go of what publish holds; NULL or unpinned is a no-op. */
void srv_blob_unpin(struct srv_blob_writer *w);

/* A GC pass (server/gc.c): exclusive against every publish-to-row window. */
void srv_blob_gc_lock(void);
void srv_blob_gc_unlock(void);

/* Closes and, unless published, removes the temp file; unpins. NULL is a no-op. */
void srv_blob_free(struct srv_blob_writer *w);

/* The path of a stored blob into out (cap bytes). */
enum dp_err srv_blob_path(const char *data_dir, const char *sha, char *out, size_t cap);

#endif
