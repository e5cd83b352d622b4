/*
 * Flat tar extraction (see tar_read.h). ustar layout: 512-byte blocks; a
 * header holds the name (0, 100 bytes), the mode (100, 8, octal), the size
 * (124, 12, octal), the checksum (148, 8, octal: the header's bytes summed
 * with this field as spaces) and the type (156); two zero blocks end it.
 */
#include "common/tar_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define TAR_BLOCK       512
#define TAR_MEMBERS_MAX 4096

/* The octal field of n bytes at f (NUL or space terminated); -1 when malformed. */
static int64_t tar_octal(const unsigned char *f, size_t n)
{
    int64_t v = 0;
    size_t i = 0;
    while (i < n && f[i] == ' ')
        i++;
    if (i == n || f[i] < '0' || f[i] > '7')
        return -1;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v > (INT64_MAX >> 3))
            return -1;
        v = v * 8 + (f[i] - '0');
    }
    for (; i < n; i++)
        if (f[i] != ' ' && f[i] != '\0')
            return -1;
    return v;
}

static int tar_zero(const unsigned char *b)
{
    for (size_t i = 0; i < TAR_BLOCK; i++)
        if (b[i])
            return 0;
    return 1;
}

/* Reads exactly n bytes; DP_ETRUNC at an early end. */
static enum dp_err tar_read_full(int fd, unsigned char *buf, size_t n, const char *path,
                                 struct dp_errinfo *ei)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return dp_errinfo_set(ei, DP_EIO, "%s: read: %s", path, strerror(errno));
        if (k == 0)
            return dp_errinfo_set(ei, DP_ETRUNC, "%s: the archive ends inside a member", path);
        got += (size_t)k;
    }
    return DP_OK;
}

/* Checks header h and fills name, size and mode; DP_EFORMAT naming what is wrong. */
static enum dp_err tar_header(const unsigned char *h, const char *path, char name[101],
                              int64_t *size, int *mode, struct dp_errinfo *ei)
{
    int64_t sum = 0;
    for (size_t i = 0; i < TAR_BLOCK; i++)
        sum += (i >= 148 && i < 156) ? ' ' : h[i];
    if (tar_octal(h + 148, 8) != sum)
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: a member header's checksum is wrong", path);
    memcpy(name, h, 100);
    name[100] = '\0';
    size_t n = strlen(name);
    int ok = n > 0 && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = name[i] != '/' && (unsigned char)name[i] >= ' ' && name[i] != 127;
    if (!ok)
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: member '%.100s' is not a plain file name", path,
                              name);
    if (h[156] != '0' && h[156] != '\0')
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: member '%s' is not a regular file (type %c)",
                              path, name, h[156] ? h[156] : '0');
    if (h[345] != '\0')
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: member '%s' has a path prefix", path, name);
    *size = tar_octal(h + 124, 12);
    int64_t m = tar_octal(h + 100, 8);
    if (*size < 0 || m < 0)
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: member '%s' has a malformed size or mode", path,
                              name);
    *mode = (m & 0100) ? 0755 : 0644;
    return DP_OK;
}

/* Copies size bytes (then the block padding) from fd into dir/name. */
static enum dp_err tar_member(int fd, const char *path, const char *dir, const char *name,
                              int64_t size, int mode, struct dp_errinfo *ei)
{
    char dest[4096];
    unsigned char buf[64 * TAR_BLOCK];
    int k = snprintf(dest, sizeof(dest), "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= sizeof(dest))
        return dp_errinfo_set(ei, DP_EINVAL, "%s: destination path too long", dir);
    int out = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (out < 0)
        return dp_errinfo_set(ei, errno == EEXIST ? DP_EFORMAT : DP_EIO, "%s: member '%s': %s",
                              path, name, errno == EEXIST ? "appears twice" : strerror(errno));
    enum dp_err err = DP_OK;
    int64_t left = (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK, data = size;
    while (!err && left > 0) {
        size_t n = left < (int64_t)sizeof(buf) ? (size_t)left : sizeof(buf);
        err = tar_read_full(fd, buf, n, path, ei);
        size_t w = data < (int64_t)n ? (size_t)data : n;
        for (size_t off = 0; !err && off < w;) {
            ssize_t k2 = write(out, buf + off, w - off);
            if (k2 < 0 && errno == EINTR)
                continue;
            if (k2 < 0)
                err = dp_errinfo_set(ei, DP_EIO, "%s: write: %s", dest, strerror(errno));
            else
                off += (size_t)k2;
        }
        left -= (int64_t)n;
        data -= (int64_t)w;
    }
    if (close(out) != 0 && !err)
        err = dp_errinfo_set(ei, DP_EIO, "%s: close: %s", dest, strerror(errno));
    return err;
}

enum dp_err dp_tar_extract_flat(const char *path, const char *dir, uint64_t max_bytes,
                                struct dp_errinfo *ei)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dp_errinfo_set(ei, DP_EIO, "%s: %s", path, strerror(errno));
    unsigned char h[TAR_BLOCK];
    uint64_t total = 0;
    enum dp_err err = DP_OK;
    int n_members = 0;
    for (;;) {
        err = tar_read_full(fd, h, TAR_BLOCK, path, ei);
        if (err || tar_zero(h))
            break; /* the end marker; what follows it is padding */
        char name[101];
        int64_t size = 0;
        int mode = 0;
        err = tar_header(h, path, name, &size, &mode, ei);
        if (!err && ++n_members > TAR_MEMBERS_MAX)
            err = dp_errinfo_set(ei, DP_ETOOBIG, "%s: more than %d members", path, TAR_MEMBERS_MAX);
        if (!err && (uint64_t)size > max_bytes - total)
            err = dp_errinfo_set(ei, DP_ETOOBIG, "%s: more than %llu bytes of files", path,
                                 (unsigned long long)max_bytes);
        if (!err)
            err = tar_member(fd, path, dir, name, size, mode, ei);
        if (err)
            break;
        total += (uint64_t)size;
    }
    close(fd);
    return err;
}
