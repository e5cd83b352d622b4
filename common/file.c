/*
 * Whole-file reading (see file.h).
 */
#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"

/* Writes the errno message for e into buf. */
static const char *file_errno_str(char *buf, size_t cap, int e)
{
    if (strerror_r(e, buf, cap) != 0)
        snprintf(buf, cap, "errno %d", e);
    return buf;
}

enum dp_err dp_file_read(const char *path, const char *label, size_t max_len, unsigned char **out,
                         size_t *out_len, struct dp_errinfo *ei)
{
    char eb[128];
    enum dp_err err = DP_OK;
    unsigned char *buf = NULL;
    *out = NULL;
    *out_len = 0;
    /* O_NONBLOCK so that a FIFO cannot block us before the S_ISREG check. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        return dp_errinfo_set(ei, dp_err_from_errno(e), "%s: cannot open: %s", label,
                              file_errno_str(eb, sizeof(eb), e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        err = dp_errinfo_set(ei, dp_err_from_errno(e), "%s: cannot stat: %s", label,
                             file_errno_str(eb, sizeof(eb), e));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        err = dp_errinfo_set(ei, DP_EIO, "%s: not a regular file", label);
        goto out;
    }
    if (st.st_size < 0 || (uintmax_t)st.st_size > (uintmax_t)max_len) {
        err = dp_errinfo_set(ei, DP_ETOOBIG, "%s: file is %jd bytes, more than the %zu allowed",
                             label, (intmax_t)st.st_size, max_len);
        goto out;
    }
    size_t size = (size_t)st.st_size;
    buf = dp_malloc(size ? size : 1);
    if (buf == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory for %zu bytes", label, size);
        goto out;
    }
    size_t got = 0;
    while (got < size) {
        size_t chunk = size - got > ((size_t)1 << 30) ? ((size_t)1 << 30) : size - got;
        ssize_t n = read(fd, buf + got, chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            err = dp_errinfo_set(ei, dp_err_from_errno(e), "%s: read failed: %s", label,
                                 file_errno_str(eb, sizeof(eb), e));
            goto out;
        }
        if (n == 0)
            break; /* the file shrank; the parser reports the truncation */
        got += (size_t)n;
    }
    *out = buf;
    *out_len = got;
    buf = NULL;
out:
    dp_free(buf);
    close(fd);
    return err;
}
