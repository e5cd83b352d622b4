/*
 * `dnnpress-server backup | restore | check`: the operator's commands over a
 * data directory (docs/operations.md, "Backup and restore").
 *
 *   dnnpress-server backup --data-dir D --to FILE     while the server runs
 *   dnnpress-server restore --from FILE --data-dir NEW
 *   dnnpress-server check --data-dir D
 *
 * A backup is one tar file (pax): MANIFEST.json first (format, version,
 * schema version, blob count and bytes), then dnnpress.db (a snapshot taken
 * through SQLite's online backup API: the state of one commit), then every
 * blob that snapshot lists, as artifacts/xx/<sha256>, each hashed while it
 * is copied. restore takes nothing but those names, verifies every blob's
 * sha256 and the database's integrity before it moves the result into
 * place. check runs integrity_check and foreign_key_check and verifies
 * every listed blob's size and sha256; it is read-only and safe beside a
 * running server.
 */
#ifndef DP_SERVER_BACKUP_H
#define DP_SERVER_BACKUP_H

/* 1 when argv[1] names one of these commands. */
int srv_backup_is_command(int argc, char **argv);

/* Runs the command argv[1] names. Exit status: 0 done (check: clean), 1
 * failed (check: problems found, listed on stderr), 2 usage. */
int srv_backup_main(int argc, char **argv);

#endif
