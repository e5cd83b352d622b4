/*
 * backup, restore and check (see backup.h). The SQL is in store_backup.c;
 * this file moves files: the snapshot and the blobs into a tar and back.
 */
#include "server/backup.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/sha256.h"
#include "server/store_backup.h"

#define BACKUP_FORMAT   "dnnpress-backup"
#define BACKUP_VERSION  1
#define BACKUP_MANIFEST "MANIFEST.json"
#define BACKUP_DB       "dnnpress.db"
#define BACKUP_CHUNK    (1u << 20)
/* Problems check prints one by one before it only counts them. */
#define BACKUP_MAX_LISTED 20

struct backup_opts {
    const char *data_dir, *to, *from;
};

static void backup_usage(FILE *f)
{
    fprintf(f, "usage: dnnpress-server backup --data-dir DIR --to FILE\n"
               "       dnnpress-server restore --from FILE --data-dir NEW_DIR\n"
               "       dnnpress-server check --data-dir DIR\n"
               "\n"
               "backup   copies the database (SQLite's online backup API: safe while the\n"
               "         server runs) and every blob it lists into one tar file, hashing\n"
               "         each blob as it goes; FILE appears whole or not at all\n"
               "restore  recreates a data directory from a backup into NEW_DIR (absent or\n"
               "         empty), verifying every blob's sha256 and the database\n"
               "check    integrity_check, foreign_key_check and every listed blob's size\n"
               "         and sha256 (read-only; safe while the server runs)\n"
               "\n"
               "exit status: 0 done (check: clean), 1 failed or problems found, 2 usage\n");
}

static int backup_parse(int argc, char **argv, struct backup_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 2; i < argc; i++) {
        const char **dst = NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            backup_usage(stdout);
            return 1;
        } else if (strcmp(argv[i], "--data-dir") == 0) {
            dst = &o->data_dir;
        } else if (strcmp(argv[i], "--to") == 0) {
            dst = &o->to;
        } else if (strcmp(argv[i], "--from") == 0) {
            dst = &o->from;
        }
        if (dst == NULL || i + 1 >= argc || argv[i + 1][0] == '\0') {
            fprintf(stderr, "dnnpress-server %s: unknown or incomplete option '%s'\n", argv[1],
                    argv[i]);
            backup_usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    const char *cmd = argv[1];
    const char *missing = o->data_dir == NULL                       ? "--data-dir"
                          : strcmp(cmd, "backup") == 0 && !o->to    ? "--to"
                          : strcmp(cmd, "restore") == 0 && !o->from ? "--from"
                                                                    : NULL;
    if (missing != NULL) {
        fprintf(stderr, "dnnpress-server %s: %s is required\n", cmd, missing);
        backup_usage(stderr);
        return 2;
    }
    return 0;
}

static double backup_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* DATA/artifacts/xx/<sha> (the layout of server/blob.c). */
static int backup_blob_path(char *out, size_t cap, const char *data_dir, const char *sha)
{
    int n = snprintf(out, cap, "%s/artifacts/%.2s/%s", data_dir, sha, sha);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* ---- The list of blobs a database names ----------------------------------- */

struct backup_blob {
    char sha[65];
    int64_t size;
};

struct backup_list {
    struct backup_blob *v;
    size_t n, cap;
    int64_t bytes;
    int bad; /* a row whose sha256 is not 64 hex digits */
};

static int backup_list_add(void *ud, const char *sha, int64_t size)
{
    struct backup_list *l = ud;
    if (!dp_sha256_hex_valid(sha) || size < 0) {
        l->bad++;
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        struct backup_blob *v = dp_realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    snprintf(l->v[l->n].sha, sizeof(l->v[l->n].sha), "%s", sha);
    l->v[l->n].size = size;
    l->n++;
    l->bytes += size;
    return 0;
}

static enum dp_err backup_list_load(const char *db, struct backup_list *l, struct dp_errinfo *ei)
{
    int stopped = 0;
    enum dp_err err = srv_store_blob_each(db, backup_list_add, l, &stopped, ei);
    if (!err && stopped)
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory listing blobs");
    if (!err && l->bad)
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: %d blob row(s) with a malformed sha256", db,
                             l->bad);
    return err;
}

/* ---- Copying one file with its hash --------------------------------------- */

/* Streams path (expected bytes, sha256 want or NULL) into the archive
 * entry already started, or into the open file out; checks both. */
static enum dp_err backup_copy(const char *path, int64_t expect, const char *want,
                               struct archive *a, int out_fd, unsigned char *buf,
                               struct dp_errinfo *ei)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dp_errinfo_set(ei, DP_ENOENT, "%s: cannot open: %s", path, strerror(errno));
    struct dp_sha256_ctx h;
    enum dp_err err = dp_sha256_init(&h);
    int64_t got = 0;
    while (!err) {
        ssize_t n = read(fd, buf, BACKUP_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = dp_errinfo_set(ei, DP_EIO, "%s: read: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (got + n > expect) {
            err = dp_errinfo_set(ei, DP_EFORMAT, "%s: larger than the %" PRId64 " bytes listed",
                                 path, expect);
            break;
        }
        got += n;
        err = dp_sha256_update(&h, buf, (size_t)n);
        if (!err && a != NULL && archive_write_data(a, buf, (size_t)n) != n)
            err = dp_errinfo_set(ei, DP_EIO, "writing %s into the backup: %s", path,
                                 archive_error_string(a));
        for (ssize_t off = 0; !err && out_fd >= 0 && off < n;) {
            ssize_t w = write(out_fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                err = dp_errinfo_set(ei, DP_EIO, "copying %s: %s", path, strerror(errno));
            else
                off += w;
        }
    }
    close(fd);
    uint8_t d[32];
    if (!err)
        err = dp_sha256_final(&h, d);
    dp_sha256_free(&h);
    if (!err && got != expect)
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "%s: %" PRId64 " bytes where %" PRId64 " are listed (truncated?)",
                             path, got, expect);
    if (!err && want != NULL) {
        char hex[65];
        dp_sha256_hex(d, hex);
        if (strcmp(hex, want) != 0)
            err = dp_errinfo_set(ei, DP_EFORMAT, "%s: contents do not match its sha256 (corrupt)",
                                 path);
    }
    return err;
}

static enum dp_err backup_entry(struct archive *a, const char *name, int64_t size,
                                struct dp_errinfo *ei)
{
    struct archive_entry *e = archive_entry_new();
    if (e == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, size);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0600);
    int rc = archive_write_header(a, e);
    archive_entry_free(e);
    if (rc != ARCHIVE_OK)
        return dp_errinfo_set(ei, DP_EIO, "backup: header of %s: %s", name,
                              archive_error_string(a));
    return DP_OK;
}

/* ---- backup ---------------------------------------------------------------- */

static int backup_run(const struct backup_opts *o)
{
    struct dp_errinfo ei = {DP_OK, ""};
    double t0 = backup_now_s();
    char db[1100], snap[1100], tmp[1100];
    snprintf(db, sizeof(db), "%s/%s", o->data_dir, BACKUP_DB);
    snprintf(snap, sizeof(snap), "%s.db-snapshot.%ld", o->to, (long)getpid());
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", o->to, (long)getpid());
    struct backup_list l = {0};
    struct archive *a = NULL;
    unsigned char *buf = dp_malloc(BACKUP_CHUNK);
    int fd = -1, schema = 0;
    struct stat st;
    enum dp_err err = buf ? DP_OK : dp_errinfo_set(&ei, DP_ENOMEM, "out of memory");
    if (!err && stat(db, &st) != 0)
        err = dp_errinfo_set(&ei, DP_ENOENT, "%s: %s (is --data-dir a dnnpress data directory?)",
                             db, strerror(errno));
    if (!err)
        err = srv_store_snapshot(db, snap, &schema, &ei);
    if (!err)
        err = srv_store_integrity(snap, &ei);
    if (!err)
        err = backup_list_load(snap, &l, &ei);
    if (!err && stat(snap, &st) != 0)
        err = dp_errinfo_set(&ei, DP_EIO, "%s: %s", snap, strerror(errno));
    if (!err) {
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            err = dp_errinfo_set(&ei, DP_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    if (!err) {
        a = archive_write_new();
        if (a == NULL || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
            archive_write_open_fd(a, fd) != ARCHIVE_OK)
            err = dp_errinfo_set(&ei, DP_EIO, "backup: cannot start the archive: %s",
                                 a ? archive_error_string(a) : "out of memory");
    }
    /* The manifest first: restore refuses anything else before reading on. */
    if (!err) {
        json_t *m = json_pack("{s:s, s:i, s:i, s:I, s:I, s:I}", "format", BACKUP_FORMAT, "version",
                              BACKUP_VERSION, "schema_version", schema, "created_at",
                              (json_int_t)time(NULL), "blobs", (json_int_t)l.n, "blob_bytes",
                              (json_int_t)l.bytes);
        char *text = m ? json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(m);
        if (text == NULL)
            err = dp_errinfo_set(&ei, DP_ENOMEM, "out of memory");
        if (!err)
            err = backup_entry(a, BACKUP_MANIFEST, (int64_t)strlen(text), &ei);
        if (!err && archive_write_data(a, text, strlen(text)) != (la_ssize_t)strlen(text))
            err = dp_errinfo_set(&ei, DP_EIO, "backup: manifest: %s", archive_error_string(a));
        /* jansson allocates through its own malloc (the default allocator). */
        json_free_t free_fn = NULL;
        json_get_alloc_funcs(NULL, &free_fn);
        if (text != NULL)
            free_fn(text);
    }
    if (!err)
        err = backup_entry(a, BACKUP_DB, (int64_t)st.st_size, &ei);
    if (!err)
        err = backup_copy(snap, (int64_t)st.st_size, NULL, a, -1, buf, &ei);
    for (size_t i = 0; !err && i < l.n; i++) {
        char path[1300], name[128];
        if (backup_blob_path(path, sizeof(path), o->data_dir, l.v[i].sha) != 0) {
            err = dp_errinfo_set(&ei, DP_EINVAL, "--data-dir: path too long");
            break;
        }
        snprintf(name, sizeof(name), "artifacts/%.2s/%s", l.v[i].sha, l.v[i].sha);
        err = backup_entry(a, name, l.v[i].size, &ei);
        if (!err)
            err = backup_copy(path, l.v[i].size, l.v[i].sha, a, -1, buf, &ei);
        if (err)
            dp_errinfo_set(&ei, err, "%s (run dnnpress-server check --data-dir %s)", ei.msg,
                           o->data_dir);
    }
    if (a != NULL) {
        if (archive_write_close(a) != ARCHIVE_OK && !err)
            err = dp_errinfo_set(&ei, DP_EIO, "backup: %s", archive_error_string(a));
        archive_write_free(a);
    }
    if (fd >= 0) {
        if (!err && fsync(fd) != 0)
            err = dp_errinfo_set(&ei, DP_EIO, "%s: fsync: %s", tmp, strerror(errno));
        close(fd);
    }
    if (!err && rename(tmp, o->to) != 0)
        err = dp_errinfo_set(&ei, DP_EIO, "rename %s -> %s: %s", tmp, o->to, strerror(errno));
    if (err)
        unlink(tmp);
    unlink(snap);
    dp_free(buf);
    dp_free(l.v);
    if (err) {
        fprintf(stderr, "dnnpress-server backup: %s\n", ei.msg);
        return 1;
    }
    printf("{\"backup\":\"%s\",\"schema_version\":%d,\"db_bytes\":%jd,\"blobs\":%zu,"
           "\"blob_bytes\":%" PRId64 ",\"seconds\":%.3f}\n",
           o->to, schema, (intmax_t)st.st_size, l.n, l.bytes, backup_now_s() - t0);
    return 0;
}

/* ---- restore --------------------------------------------------------------- */

/* 1 when path does not exist or is an empty directory. */
static int backup_dir_unused(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return errno == ENOENT;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            empty = 0;
    closedir(d);
    return empty;
}

/* "artifacts/xx/<64 hex>" with xx its first two digits: the only blob names. */
static int backup_blob_name(const char *name, char sha[65])
{
    if (strncmp(name, "artifacts/", 10) != 0 || strlen(name) != 10 + 3 + 64)
        return 0;
    const char *h = name + 13;
    if (name[12] != '/' || name[10] != h[0] || name[11] != h[1] || !dp_sha256_hex_valid(h))
        return 0;
    memcpy(sha, h, 65);
    return 1;
}

/* Writes the current entry's data to path (new file), hashing it; checks
 * the size and, when want is set, the sha256. */
static enum dp_err backup_extract(struct archive *a, const char *path, int64_t size,
                                  const char *want, unsigned char *buf, struct dp_errinfo *ei)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return dp_errinfo_set(ei, DP_EIO, "%s: cannot create: %s", path, strerror(errno));
    struct dp_sha256_ctx h;
    enum dp_err err = dp_sha256_init(&h);
    int64_t got = 0;
    while (!err) {
        la_ssize_t n = archive_read_data(a, buf, BACKUP_CHUNK);
        if (n < 0) {
            err = dp_errinfo_set(ei, DP_EFORMAT, "%s: %s", path, archive_error_string(a));
            break;
        }
        if (n == 0)
            break;
        got += n;
        err = dp_sha256_update(&h, buf, (size_t)n);
        for (la_ssize_t off = 0; !err && off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                err = dp_errinfo_set(ei, DP_EIO, "%s: write: %s", path, strerror(errno));
            else
                off += w;
        }
    }
    uint8_t d[32];
    if (!err)
        err = dp_sha256_final(&h, d);
    dp_sha256_free(&h);
    if (!err && got != size)
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: %" PRId64 " of %" PRId64 " bytes (truncated)",
                             path, got, size);
    if (!err && want != NULL) {
        char hex[65];
        dp_sha256_hex(d, hex);
        if (strcmp(hex, want) != 0)
            err = dp_errinfo_set(ei, DP_EFORMAT,
                                 "backup member artifacts/%.2s/%s is corrupt "
                                 "(its sha256 differs)",
                                 want, want);
    }
    if (!err && fsync(fd) != 0)
        err = dp_errinfo_set(ei, DP_EIO, "%s: fsync: %s", path, strerror(errno));
    close(fd);
    return err;
}

static enum dp_err backup_mkdir(const char *path, struct dp_errinfo *ei)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return dp_errinfo_set(ei, DP_EIO, "mkdir %s: %s", path, strerror(errno));
    return DP_OK;
}

static enum dp_err backup_manifest(struct archive *a, struct archive_entry *e, json_int_t *blobs,
                                   json_int_t *bytes, struct dp_errinfo *ei)
{
    char text[4096];
    int64_t size = archive_entry_size(e);
    if (strcmp(archive_entry_pathname(e), BACKUP_MANIFEST) != 0 || size <= 0 ||
        size >= (int64_t)sizeof(text))
        return dp_errinfo_set(ei, DP_EFORMAT, "not a dnnpress backup (no %s first)",
                              BACKUP_MANIFEST);
    if (archive_read_data(a, text, (size_t)size) != size)
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: truncated", BACKUP_MANIFEST);
    text[size] = '\0';
    json_t *m = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    const char *format = json_string_value(json_object_get(m, "format"));
    json_int_t version = json_integer_value(json_object_get(m, "version"));
    *blobs = json_integer_value(json_object_get(m, "blobs"));
    *bytes = json_integer_value(json_object_get(m, "blob_bytes"));
    enum dp_err err = DP_OK;
    if (format == NULL || strcmp(format, BACKUP_FORMAT) != 0)
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: not a dnnpress backup", BACKUP_MANIFEST);
    else if (version != BACKUP_VERSION)
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "%s: backup format version %" JSON_INTEGER_FORMAT
                             " (this server reads %d)",
                             BACKUP_MANIFEST, version, BACKUP_VERSION);
    json_decref(m);
    return err;
}

static int backup_restore(const struct backup_opts *o)
{
    struct dp_errinfo ei = {DP_OK, ""};
    double t0 = backup_now_s();
    if (!backup_dir_unused(o->data_dir)) {
        fprintf(stderr,
                "dnnpress-server restore: %s exists and is not empty: restore into a new "
                "directory\n",
                o->data_dir);
        return 1;
    }
    /* Everything goes into a staging directory beside the target, which
     * becomes the data directory only once all of it checked out. */
    char stage[1100], p[1400];
    snprintf(stage, sizeof(stage), "%s.restore-%ld", o->data_dir, (long)getpid());
    unsigned char *buf = dp_malloc(BACKUP_CHUNK);
    struct archive *a = archive_read_new();
    json_int_t want_blobs = -1, want_bytes = -1;
    int64_t n_blobs = 0, n_bytes = 0, seen_db = 0;
    enum dp_err err = buf && a ? DP_OK : dp_errinfo_set(&ei, DP_ENOMEM, "out of memory");
    if (!err && (archive_read_support_format_tar(a) != ARCHIVE_OK ||
                 archive_read_open_filename(a, o->from, BACKUP_CHUNK) != ARCHIVE_OK))
        err = dp_errinfo_set(&ei, DP_EIO, "%s: %s", o->from, archive_error_string(a));
    if (!err)
        err = backup_mkdir(stage, &ei);
    snprintf(p, sizeof(p), "%s/artifacts", stage);
    if (!err)
        err = backup_mkdir(p, &ei);
    snprintf(p, sizeof(p), "%s/tmp", stage);
    if (!err)
        err = backup_mkdir(p, &ei);
    struct archive_entry *e;
    for (int first = 1; !err; first = 0) {
        int rc = archive_read_next_header(a, &e);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc != ARCHIVE_OK) {
            err = dp_errinfo_set(&ei, DP_EFORMAT, "%s: %s", o->from, archive_error_string(a));
            break;
        }
        const char *name = archive_entry_pathname(e);
        int64_t size = archive_entry_size(e);
        char sha[65];
        if (archive_entry_filetype(e) != AE_IFREG || name == NULL || size < 0) {
            err = dp_errinfo_set(&ei, DP_EFORMAT, "%s: member %.100s is not a regular file",
                                 o->from, name ? name : "?");
        } else if (first) {
            err = backup_manifest(a, e, &want_blobs, &want_bytes, &ei);
        } else if (strcmp(name, BACKUP_DB) == 0 && !seen_db) {
            snprintf(p, sizeof(p), "%s/%s", stage, BACKUP_DB);
            err = backup_extract(a, p, size, NULL, buf, &ei);
            seen_db = 1;
        } else if (backup_blob_name(name, sha)) {
            snprintf(p, sizeof(p), "%s/artifacts/%.2s", stage, sha);
            err = backup_mkdir(p, &ei);
            snprintf(p, sizeof(p), "%s/artifacts/%.2s/%s", stage, sha, sha);
            if (!err)
                err = backup_extract(a, p, size, sha, buf, &ei);
            n_blobs++;
            n_bytes += size;
        } else {
            /* Nothing but the names backup writes: no path ever leaves the
             * staging directory. */
            err = dp_errinfo_set(&ei, DP_EFORMAT, "%s: unexpected member %.100s", o->from, name);
        }
    }
    if (!err && !seen_db)
        err = dp_errinfo_set(&ei, DP_EFORMAT, "%s: no %s in the backup", o->from, BACKUP_DB);
    if (!err && (n_blobs != want_blobs || n_bytes != want_bytes))
        err = dp_errinfo_set(&ei, DP_EFORMAT,
                             "%s: %" PRId64 " blobs of %" PRId64 " bytes where the manifest "
                             "lists %" JSON_INTEGER_FORMAT " of %" JSON_INTEGER_FORMAT
                             " (truncated backup?)",
                             o->from, n_blobs, n_bytes, want_blobs, want_bytes);
    archive_read_free(a);
    dp_free(buf);
    /* The restored database must be sound and list exactly what came. */
    snprintf(p, sizeof(p), "%s/%s", stage, BACKUP_DB);
    if (!err)
        err = srv_store_integrity(p, &ei);
    struct backup_list l = {0};
    if (!err)
        err = backup_list_load(p, &l, &ei);
    if (!err && (int64_t)l.n != n_blobs)
        err = dp_errinfo_set(&ei, DP_EFORMAT,
                             "the restored database lists %zu blobs, the backup holds %" PRId64,
                             l.n, n_blobs);
    dp_free(l.v);
    rmdir(o->data_dir); /* empty (checked above) or absent */
    if (!err && rename(stage, o->data_dir) != 0)
        err =
            dp_errinfo_set(&ei, DP_EIO, "rename %s -> %s: %s", stage, o->data_dir, strerror(errno));
    if (err) {
        fprintf(stderr,
                "dnnpress-server restore: %s\n"
                "dnnpress-server restore: nothing was restored into %s; the partial copy is in "
                "%s (remove it)\n",
                ei.msg, o->data_dir, stage);
        return 1;
    }
    printf("{\"restored\":\"%s\",\"blobs\":%" PRId64 ",\"blob_bytes\":%" PRId64
           ",\"seconds\":%.3f}\n",
           o->data_dir, n_blobs, n_bytes, backup_now_s() - t0);
    return 0;
}

/* ---- check ----------------------------------------------------------------- */

struct backup_check {
    const char *data_dir;
    unsigned char *buf;
    int64_t n, bytes, missing, corrupt;
};

static int backup_check_blob(void *ud, const char *sha, int64_t size)
{
    struct backup_check *c = ud;
    struct dp_errinfo ei = {DP_OK, ""};
    char path[1300];
    c->n++;
    c->bytes += size;
    enum dp_err err;
    if (!dp_sha256_hex_valid(sha))
        err = dp_errinfo_set(&ei, DP_EFORMAT, "a blob row with a malformed sha256 '%.80s'", sha);
    else if (backup_blob_path(path, sizeof(path), c->data_dir, sha) != 0)
        err = dp_errinfo_set(&ei, DP_EINVAL, "--data-dir: path too long");
    else
        err = backup_copy(path, size, sha, NULL, -1, c->buf, &ei);
    if (err) {
        if (err == DP_ENOENT)
            c->missing++;
        else
            c->corrupt++;
        if (c->missing + c->corrupt <= BACKUP_MAX_LISTED)
            fprintf(stderr, "check: blob %s: %s\n", sha, ei.msg);
    }
    return 0;
}

static int backup_check(const struct backup_opts *o)
{
    struct dp_errinfo ei = {DP_OK, ""};
    double t0 = backup_now_s();
    char db[1100];
    snprintf(db, sizeof(db), "%s/%s", o->data_dir, BACKUP_DB);
    struct backup_check c = {.data_dir = o->data_dir, .buf = dp_malloc(BACKUP_CHUNK)};
    if (c.buf == NULL) {
        fprintf(stderr, "dnnpress-server check: out of memory\n");
        return 1;
    }
    struct stat st;
    enum dp_err err = DP_OK;
    if (stat(db, &st) != 0)
        err = dp_errinfo_set(&ei, DP_ENOENT, "%s: %s (is --data-dir a dnnpress data directory?)",
                             db, strerror(errno));
    int db_ok = 0, stopped = 0;
    if (!err) {
        err = srv_store_integrity(db, &ei);
        db_ok = err == DP_OK;
        if (err == DP_EFORMAT) {
            fprintf(stderr, "check: database: %s\n", ei.msg);
            err = DP_OK; /* the blobs are still worth checking */
        }
    }
    if (!err)
        err = srv_store_blob_each(db, backup_check_blob, &c, &stopped, &ei);
    dp_free(c.buf);
    if (err) {
        fprintf(stderr, "dnnpress-server check: %s\n", ei.msg);
        return 1;
    }
    int ok = db_ok && c.missing == 0 && c.corrupt == 0;
    if (c.missing + c.corrupt > BACKUP_MAX_LISTED)
        fprintf(stderr, "check: ... and %" PRId64 " more blob problems\n",
                c.missing + c.corrupt - BACKUP_MAX_LISTED);
    printf("{\"ok\":%s,\"database\":\"%s\",\"blobs\":%" PRId64 ",\"blob_bytes\":%" PRId64
           ",\"missing\":%" PRId64 ",\"corrupt\":%" PRId64 ",\"seconds\":%.3f}\n",
           ok ? "true" : "false", db_ok ? "ok" : "damaged", c.n, c.bytes, c.missing, c.corrupt,
           backup_now_s() - t0);
    return ok ? 0 : 1;
}

/* ---- dispatch -------------------------------------------------------------- */

int srv_backup_is_command(int argc, char **argv)
{
    return argc >= 2 && (strcmp(argv[1], "backup") == 0 || strcmp(argv[1], "restore") == 0 ||
                         strcmp(argv[1], "check") == 0);
}

int srv_backup_main(int argc, char **argv)
{
    struct backup_opts o;
    int rc = backup_parse(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    if (strcmp(argv[1], "backup") == 0)
        return backup_run(&o);
    if (strcmp(argv[1], "restore") == 0)
        return backup_restore(&o);
    return backup_check(&o);
}
