/*
 * The SQL of `dnnpress-server backup`, `restore` and `check` (server/backup.c):
 * they work on a database file, not on a running server's store, so they
 * open their own connections; the statements live here with the rest of
 * the server's SQL (STYLE rule 34).
 */
#ifndef DP_SERVER_STORE_BACKUP_H
#define DP_SERVER_STORE_BACKUP_H

#include <stdint.h>

#include "common/err.h"

/* Copies the database at src (which a running server may be writing) into
 * a new file dst through SQLite's online backup API: one read transaction
 * for the whole copy, so dst is the state of one commit. dst must not
 * exist. *schema_version gets the copy's PRAGMA user_version. */
enum dp_err srv_store_snapshot(const char *src, const char *dst, int *schema_version,
                               struct dp_errinfo *ei);

/* PRAGMA integrity_check and foreign_key_check of the database at path,
 * opened read-only. DP_OK when both are clean; DP_EFORMAT with the first
 * problems in ei otherwise. */
enum dp_err srv_store_integrity(const char *path, struct dp_errinfo *ei);

/* Calls fn for every row of the blobs table of the database at path (read
 * only), in sha256 order; fn returns nonzero to stop (its value is
 * returned through *stopped). */
typedef int (*srv_store_blob_fn)(void *ud, const char *sha256, int64_t size);
enum dp_err srv_store_blob_each(const char *path, srv_store_blob_fn fn, void *ud, int *stopped,
                                struct dp_errinfo *ei);

#endif
