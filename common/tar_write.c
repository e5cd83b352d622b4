/*
 * Deterministic tar packing (see tar_write.h) through libarchive, the
 * library common/dataset.c reads archives with. Only the file names,
 * contents and the owner-execute bit reach the archive: everything that
 * differs between two runs (times, owners, directory order) is fixed.
 */
#include "common/tar_write.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"

/* ustar's name field; longer names need pax headers, which a bundle never needs. */
#define TAR_NAME_MAX 100
/* Copy buffer: large enough that a weights file takes few writes. */
#define TAR_CHUNK (64 * 1024)
/* More files than any bundle has; a bound, not a limit anyone should meet. */
#define TAR_MAX_FILES 4096

static int tar_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of dir's entries but . and .., sorted (dp_free each and the array). */
static enum dp_err tar_list(const char *dir, char ***out, size_t *n_out, struct dp_errinfo *ei)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return dp_errinfo_set(ei, DP_EIO, "%s: %s", dir, strerror(errno));
    char **names = dp_calloc(TAR_MAX_FILES, sizeof(*names));
    size_t n = 0;
    enum dp_err err = names ? DP_OK : dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", dir);
    for (struct dirent *e = readdir(d); !err && e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n == TAR_MAX_FILES) {
            err = dp_errinfo_set(ei, DP_ETOOBIG, "%s: more than %d files", dir, TAR_MAX_FILES);
            break;
        }
        names[n] = dp_strdup(e->d_name);
        if (names[n] == NULL)
            err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", dir);
        else
            n++;
    }
    closedir(d);
    if (err) {
        for (size_t i = 0; names != NULL && i < n; i++)
            dp_free(names[i]);
        dp_free(names);
        return err;
    }
    qsort(names, n, sizeof(*names), tar_name_cmp);
    *out = names;
    *n_out = n;
    return DP_OK;
}

/* Adds the regular file at path p (lstat'ed as st) to a as member name. */
static enum dp_err tar_add(struct archive *a, const char *p, const char *name,
                           const struct stat *st, unsigned char *buf, struct dp_errinfo *ei)
{
    FILE *f = fopen(p, "rb");
    if (f == NULL)
        return dp_errinfo_set(ei, DP_EIO, "%s: %s", p, strerror(errno));
    struct archive_entry *e = archive_entry_new();
    enum dp_err err = e ? DP_OK : dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", p);
    if (!err) {
        archive_entry_set_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, (st->st_mode & S_IXUSR) ? 0755 : 0644);
        archive_entry_set_size(e, (la_int64_t)st->st_size);
        archive_entry_set_mtime(e, 0, 0);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        if (archive_write_header(a, e) != ARCHIVE_OK)
            err = dp_errinfo_set(ei, DP_EIO, "%s: %s", p, archive_error_string(a));
    }
    /* Exactly the size in the header: a file that grew or shrank meanwhile is an error,
     * not a corrupt member. */
    uint64_t left = (uint64_t)st->st_size;
    while (!err && left > 0) {
        size_t want = left < TAR_CHUNK ? (size_t)left : TAR_CHUNK;
        size_t got = fread(buf, 1, want, f);
        if (got != want) {
            err = dp_errinfo_set(ei, DP_EIO, "%s: changed while it was archived", p);
            break;
        }
        if (archive_write_data(a, buf, got) != (la_ssize_t)got)
            err = dp_errinfo_set(ei, DP_EIO, "%s: %s", p, archive_error_string(a));
        left -= got;
    }
    if (!err && fgetc(f) != EOF)
        err = dp_errinfo_set(ei, DP_EIO, "%s: changed while it was archived", p);
    archive_entry_free(e);
    fclose(f);
    return err;
}

enum dp_err dp_tar_write_dir(const char *dir, const char *path, uint64_t max_bytes,
                             struct dp_errinfo *ei)
{
    char tmp[4096];
    char **names = NULL;
    size_t n = 0;
    struct archive *a = NULL;
    unsigned char *buf = NULL;
    int opened = 0;
    uint64_t total = 0;
    int k = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (k < 0 || (size_t)k >= sizeof(tmp))
        return dp_errinfo_set(ei, DP_EINVAL, "%s: path too long", path);
    enum dp_err err = tar_list(dir, &names, &n, ei);
    if (err)
        goto out;
    buf = dp_malloc(TAR_CHUNK);
    a = archive_write_new();
    if (buf == NULL || a == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (archive_write_set_format_ustar(a) != ARCHIVE_OK ||
        archive_write_add_filter_none(a) != ARCHIVE_OK ||
        archive_write_open_filename(a, tmp) != ARCHIVE_OK) {
        err = dp_errinfo_set(ei, DP_EIO, "%s: %s", tmp, archive_error_string(a));
        goto out;
    }
    opened = 1;
    for (size_t i = 0; i < n && !err; i++) {
        char p[4096];
        struct stat st;
        k = snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        if (k < 0 || (size_t)k >= sizeof(p))
            err = dp_errinfo_set(ei, DP_EINVAL, "%s/%s: path too long", dir, names[i]);
        else if (lstat(p, &st) != 0)
            err = dp_errinfo_set(ei, DP_EIO, "%s: %s", p, strerror(errno));
        else if (!S_ISREG(st.st_mode))
            err = dp_errinfo_set(ei, DP_EUNSUPPORTED,
                                 "%s: not a regular file (only plain files are archived)", p);
        else if (strlen(names[i]) > TAR_NAME_MAX)
            err = dp_errinfo_set(ei, DP_EUNSUPPORTED, "%s: name longer than %d bytes", p,
                                 TAR_NAME_MAX);
        else if ((total += (uint64_t)st.st_size) > max_bytes)
            err = dp_errinfo_set(ei, DP_ETOOBIG, "%s: more than %llu bytes of files", dir,
                                 (unsigned long long)max_bytes);
        else
            err = tar_add(a, p, names[i], &st, buf, ei);
    }
    if (!err && archive_write_close(a) != ARCHIVE_OK)
        err = dp_errinfo_set(ei, DP_EIO, "%s: %s", tmp, archive_error_string(a));
    if (!err && rename(tmp, path) != 0)
        err = dp_errinfo_set(ei, DP_EIO, "%s: %s", path, strerror(errno));
out:
    if (a != NULL)
        archive_write_free(a);
    if (err && opened)
        unlink(tmp);
    for (size_t i = 0; i < n; i++)
        dp_free(names[i]);
    dp_free(names);
    dp_free(buf);
    return err;
}
