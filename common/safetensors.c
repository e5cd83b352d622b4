/*
 * The safetensors reader and writer (see safetensors.h).
 *
 * DESIGN: the reader holds the whole image in memory (read once, or
 * borrowed from the caller) and parses the JSON header with jansson. The
 * parsed header stays alive in the struct dp_st_file because tensor names
 * and metadata values are borrowed from it. Validation happens in one pass
 * over the header entries (dtype, shape, offsets against the data section)
 * followed by a pass over the tensors sorted by offset, which checks that
 * they tile the data section exactly. A second index sorted by name makes
 * lookups O(log n), which matters for checkpoints with thousands of
 * tensors.
 *
 * The writer builds the header with jansson, dumps it into one buffer
 * together with the length prefix and padding, and streams the tensors
 * after it into a temporary file that is fsynced and renamed into place.
 *
 * Every message names the file through a "label": the path, shortened
 * from the left when it is long, so that the message keeps the file name.
 */
#include "common/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/file.h"
#include "common/utf8.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (safetensors data is little-endian)"
#endif

#define ST_LABEL_MAX 80 /* bytes of a path kept in messages */
#define ST_NAME_MAX  64 /* bytes of a tensor name kept in messages */
/* A name clipped for a message; buf is an array (char nb[ST_NAME_MAX + 4]). */
#define st__clip(buf, s) dp_utf8_clip((buf), sizeof(buf), (s))
#define ST_SHAPE_MAX     160

struct dp_st_file {
    char label[ST_LABEL_MAX + 4];
    unsigned char *owned;      /* the image when dp_st_read allocated it, else NULL */
    const unsigned char *data; /* start of the data section */
    size_t data_len;           /* bytes in the data section */
    json_t *header;            /* parsed header; owns the tensor names */
    json_t *metadata;          /* object of strings (a reference we own) */
    int n_tensors;
    struct dp_st_tensor *tensors; /* sorted by data offset */
    int *by_name;                 /* indices into tensors, sorted by name */
};

static const struct {
    const char *name;
    size_t size;
} st_dtypes[DP_ST__COUNT] = {
    [DP_ST_F32] = {"F32", 4},
    [DP_ST_U8] = {"U8", 1},
    [DP_ST_I32] = {"I32", 4},
    [DP_ST_I64] = {"I64", 8},
};

const char *dp_st_dtype_name(enum dp_st_dtype dtype)
{
    if ((int)dtype < 0 || dtype >= DP_ST__COUNT)
        return NULL;
    return st_dtypes[dtype].name;
}

size_t dp_st_dtype_size(enum dp_st_dtype dtype)
{
    if ((int)dtype < 0 || dtype >= DP_ST__COUNT)
        return 0;
    return st_dtypes[dtype].size;
}

enum dp_err dp_st_dtype_from_name(const char *name, enum dp_st_dtype *out)
{
    for (int i = 0; i < DP_ST__COUNT; i++) {
        if (strcmp(st_dtypes[i].name, name) == 0) {
            *out = (enum dp_st_dtype)i;
            return DP_OK;
        }
    }
    return DP_EFORMAT;
}

/* ---- Message helpers ----------------------------------------------------- */

/* Copies path into dst (ST_LABEL_MAX + 4 bytes), keeping its end when it is long. */
static void st_label_set(char *dst, const char *path)
{
    size_t n = strlen(path);
    if (n <= ST_LABEL_MAX) {
        memcpy(dst, path, n + 1);
        return;
    }
    const char *tail = path + n - (ST_LABEL_MAX - 3);
    while ((unsigned char)*tail >= 0x80 && (unsigned char)*tail < 0xC0)
        tail++; /* do not start inside a UTF-8 sequence */
    memcpy(dst, "...", 3);
    memcpy(dst + 3, tail, strlen(tail) + 1);
}

/* Formats a shape as "[3, 4]" into buf (ST_SHAPE_MAX bytes); returns buf. */
static const char *st_shape_str(char *buf, int ndim, const int64_t *shape)
{
    size_t pos = 0;
    buf[pos++] = '[';
    buf[pos] = '\0';
    for (int d = 0; d < ndim && pos < ST_SHAPE_MAX; d++) {
        int n = snprintf(buf + pos, ST_SHAPE_MAX - pos, "%s%" PRId64, d ? ", " : "", shape[d]);
        if (n < 0)
            break;
        pos += (size_t)n;
    }
    if (pos + 2 <= ST_SHAPE_MAX) {
        buf[pos] = ']';
        buf[pos + 1] = '\0';
    }
    return buf;
}

/* Writes the errno message for e into buf. */
static const char *st_errno_str(char *buf, size_t cap, int e)
{
    if (strerror_r(e, buf, cap) != 0)
        snprintf(buf, cap, "errno %d", e);
    return buf;
}

/*
 * Sets *out to the product of shape[0, ndim) (1 for a scalar); every entry
 * must be >= 0. Returns 0 when the product overflows size_t. A zero entry
 * makes the product 0 whatever the others are.
 */
static int st_numel(int ndim, const int64_t *shape, size_t *out)
{
    size_t n = 1;
    int overflow = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 0) {
            *out = 0;
            return 1;
        }
        if ((uint64_t)shape[d] > SIZE_MAX / n)
            overflow = 1;
        else
            n *= (size_t)shape[d];
    }
    *out = n;
    return !overflow;
}

/* ---- Writing ------------------------------------------------------------- */

/* Writes all len bytes of buf to fd, retrying on EINTR and short writes. */
static int st_write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        size_t chunk = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
        ssize_t n = write(fd, p, chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Writes the header block and every tensor's bytes to fd, then fsyncs it.
 * The descriptors were validated by st_header_add. Returns -1 with errno set.
 */
static int st_write_body(int fd, const unsigned char *head, size_t head_len,
                         const struct dp_st_tensor *tensors, int n_tensors)
{
    if (st_write_all(fd, head, head_len) != 0)
        return -1;
    for (int i = 0; i < n_tensors; i++) {
        size_t numel = 0;
        st_numel(tensors[i].ndim, tensors[i].shape, &numel);
        if (st_write_all(fd, tensors[i].data, numel * st_dtypes[tensors[i].dtype].size) != 0)
            return -1;
    }
    return fsync(fd);
}

/*
 * Returns a new string (dp_free it) naming the directory that holds path,
 * or NULL on OOM. Computed before the rename so that nothing can fail for
 * lack of memory once the new file is in place.
 */
static char *st_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return dp_strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *dir = dp_malloc(n + 1);
    if (dir != NULL) {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return dir;
}

/* fsyncs a directory, so that a rename into it is durable. -1 with errno set on failure. */
static int st_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = 0;
    /* Some file systems cannot fsync a directory; that is not an error. */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        rc = -1;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/*
 * Validates one writer descriptor and adds its header entry to root.
 * *offset is the entry's begin offset and is advanced past it.
 */
static enum dp_err st_header_add(json_t *root, const char *label, const struct dp_st_tensor *t,
                                 int idx, size_t *offset, struct dp_errinfo *ei)
{
    char nb[ST_NAME_MAX + 4];
    if (t->name == NULL || t->name[0] == '\0')
        return dp_errinfo_set(ei, DP_EINVAL, "%s: tensor %d has no name", label, idx);
    if (!dp_utf8_valid(t->name))
        return dp_errinfo_set(ei, DP_EINVAL, "%s: tensor %d's name is not valid UTF-8", label, idx);
    if (strcmp(t->name, DP_ST_METADATA_KEY) == 0)
        return dp_errinfo_set(ei, DP_EINVAL, "%s: tensor name '%s' is reserved", label,
                              DP_ST_METADATA_KEY);
    if (json_object_get(root, t->name) != NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "%s: duplicate tensor name '%s'", label,
                              st__clip(nb, t->name));
    const char *dname = dp_st_dtype_name(t->dtype);
    if (dname == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "%s: tensor '%s' has unknown dtype %d", label,
                              st__clip(nb, t->name), (int)t->dtype);
    if (t->ndim < 0 || t->ndim > DP_ST_MAX_DIMS)
        return dp_errinfo_set(ei, DP_EINVAL, "%s: tensor '%s' has %d dimensions (0 to %d allowed)",
                              label, st__clip(nb, t->name), t->ndim, DP_ST_MAX_DIMS);
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0)
            return dp_errinfo_set(ei, DP_EINVAL, "%s: tensor '%s' has negative dimension %" PRId64,
                                  label, st__clip(nb, t->name), t->shape[d]);
    }
    size_t esize = st_dtypes[t->dtype].size;
    size_t numel;
    if (!st_numel(t->ndim, t->shape, &numel) || numel > (size_t)INT64_MAX / esize ||
        *offset > (size_t)INT64_MAX - numel * esize)
        return dp_errinfo_set(ei, DP_ETOOBIG, "%s: tensor '%s' is too large", label,
                              st__clip(nb, t->name));
    size_t len = numel * esize;
    if (len > 0 && t->data == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "%s: tensor '%s' has no data", label,
                              st__clip(nb, t->name));

    json_t *entry = json_object();
    json_t *shape = json_array();
    json_t *offs = json_array();
    int bad = entry == NULL || shape == NULL || offs == NULL;
    for (int d = 0; !bad && d < t->ndim; d++)
        bad = json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) != 0;
    if (!bad)
        bad = json_array_append_new(offs, json_integer((json_int_t)*offset)) != 0 ||
              json_array_append_new(offs, json_integer((json_int_t)(*offset + len))) != 0;
    if (!bad)
        bad = json_object_set_new(entry, "dtype", json_string(dname)) != 0;
    if (!bad) {
        bad = json_object_set_new(entry, "shape", shape) != 0;
        shape = NULL;
    }
    if (!bad) {
        bad = json_object_set_new(entry, "data_offsets", offs) != 0;
        offs = NULL;
    }
    if (!bad) {
        bad = json_object_set_new(root, t->name, entry) != 0;
        entry = NULL;
    }
    json_decref(entry);
    json_decref(shape);
    json_decref(offs);
    if (bad)
        return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory building the header", label);
    *offset += len;
    return DP_OK;
}

/* Validates the caller's metadata and adds a copy of it to root. */
static enum dp_err st_header_add_meta(json_t *root, const char *label, const json_t *metadata,
                                      struct dp_errinfo *ei)
{
    char nb[ST_NAME_MAX + 4];
    if (!json_is_object(metadata))
        return dp_errinfo_set(ei, DP_EINVAL, "%s: metadata must be a JSON object", label);
    const char *key;
    json_t *val;
    /* json_object_foreach needs a non-const object; it only reads. */
    json_object_foreach ((json_t *)metadata, key, val) {
        if (!json_is_string(val))
            return dp_errinfo_set(ei, DP_EINVAL, "%s: metadata value for key '%s' is not a string",
                                  label, st__clip(nb, key));
    }
    json_t *copy = json_deep_copy(metadata);
    if (copy == NULL || json_object_set_new(root, DP_ST_METADATA_KEY, copy) != 0)
        return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory building the header", label);
    return DP_OK;
}

enum dp_err dp_st_write(const char *path, const struct dp_st_tensor *tensors, int n_tensors,
                        const json_t *metadata, struct dp_errinfo *ei)
{
    char label[ST_LABEL_MAX + 4];
    char eb[128];
    enum dp_err err = DP_OK;
    json_t *root = NULL;
    unsigned char *head = NULL;
    char *tmp = NULL;
    char *dir = NULL;
    int fd = -1;
    int tmp_exists = 0;

    st_label_set(label, path);
    if (n_tensors < 0 || n_tensors > DP_ST_TENSORS_MAX || (n_tensors > 0 && tensors == NULL)) {
        err = dp_errinfo_set(ei, DP_EINVAL, "%s: bad tensor count %d", label, n_tensors);
        goto out;
    }
    root = json_object();
    if (root == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory building the header", label);
        goto out;
    }
    if (metadata != NULL) {
        err = st_header_add_meta(root, label, metadata, ei);
        if (err)
            goto out;
    }
    size_t data_len = 0;
    for (int i = 0; i < n_tensors; i++) {
        err = st_header_add(root, label, &tensors[i], i, &data_len, ei);
        if (err)
            goto out;
    }

    /* Length prefix, JSON, then spaces up to the next multiple of 8. */
    size_t json_len = json_dumpb(root, NULL, 0, JSON_COMPACT);
    if (json_len == 0 || json_len > DP_ST_HEADER_MAX) {
        err = dp_errinfo_set(ei, json_len == 0 ? DP_ENOMEM : DP_ETOOBIG,
                             "%s: cannot serialise a %zu-byte header", label, json_len);
        goto out;
    }
    size_t hdr_len = (json_len + 7) & ~(size_t)7;
    head = dp_malloc(8 + hdr_len);
    if (head == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory for the header", label);
        goto out;
    }
    for (int b = 0; b < 8; b++)
        head[b] = (unsigned char)((uint64_t)hdr_len >> (8 * b));
    if (json_dumpb(root, (char *)head + 8, json_len, JSON_COMPACT) != json_len) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: cannot serialise the header", label);
        goto out;
    }
    memset(head + 8 + json_len, ' ', hdr_len - json_len);

    size_t tmp_cap = strlen(path) + 32;
    tmp = dp_malloc(tmp_cap);
    dir = st_dir_of(path);
    if (tmp == NULL || dir == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", label);
        goto out;
    }
    snprintf(tmp, tmp_cap, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        err = dp_errinfo_set(ei, dp_err_from_errno(e), "%s: cannot create a temporary file: %s",
                             label, st_errno_str(eb, sizeof(eb), e));
        goto out;
    }
    tmp_exists = 1;
    int rc = st_write_body(fd, head, 8 + hdr_len, tensors, n_tensors);
    if (rc == 0) {
        rc = close(fd);
    } else {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    fd = -1;
    if (rc != 0) {
        int e = errno;
        err = dp_errinfo_set(ei, dp_err_from_errno(e), "%s: write failed: %s", label,
                             st_errno_str(eb, sizeof(eb), e));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        err = dp_errinfo_set(ei, dp_err_from_errno(e), "%s: cannot rename the temporary file: %s",
                             label, st_errno_str(eb, sizeof(eb), e));
        goto out;
    }
    tmp_exists = 0;
    if (st_fsync_dir(dir) != 0) {
        int e = errno;
        err = dp_errinfo_set(ei, dp_err_from_errno(e), "%s: cannot sync the directory: %s", label,
                             st_errno_str(eb, sizeof(eb), e));
        goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    if (tmp_exists)
        unlink(tmp);
    dp_free(tmp);
    dp_free(dir);
    dp_free(head);
    json_decref(root);
    return err;
}

/* ---- Reading: validation ------------------------------------------------- */

static uint64_t st_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--)
        v = (v << 8) | p[b];
    return v;
}

/* Reads a non-negative JSON integer; returns 0 when v is not one. */
static int st_get_uint(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

/* Validates one header entry and fills t (name, dtype, shape, data). */
static enum dp_err st_parse_entry(struct dp_st_file *f, const char *name, json_t *val,
                                  struct dp_st_tensor *t, uint64_t *begin, struct dp_errinfo *ei)
{
    const char *L = f->label;
    char nb[ST_NAME_MAX + 4], sb[ST_SHAPE_MAX];
    const char *N = st__clip(nb, name);

    if (name[0] == '\0')
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: a tensor has an empty name", L);
    if (!json_is_object(val))
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: tensor '%s': entry is not a JSON object", L, N);
    const char *key;
    json_t *fv;
    json_object_foreach (val, key, fv) {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 &&
            strcmp(key, "data_offsets") != 0) {
            char kb[ST_NAME_MAX + 4];
            return dp_errinfo_set(ei, DP_EFORMAT, "%s: tensor '%s': unknown field '%s'", L, N,
                                  st__clip(kb, key));
        }
    }

    json_t *dt = json_object_get(val, "dtype");
    if (!json_is_string(dt))
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: tensor '%s': \"dtype\" is missing or not a string", L, N);
    if (dp_st_dtype_from_name(json_string_value(dt), &t->dtype) != DP_OK) {
        char db[ST_NAME_MAX + 4];
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: tensor '%s': unsupported dtype '%s' (supported: F32, U8, I32, "
                              "I64)",
                              L, N, st__clip(db, json_string_value(dt)));
    }

    json_t *shape = json_object_get(val, "shape");
    if (!json_is_array(shape))
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: tensor '%s': \"shape\" is missing or not an array", L, N);
    size_t ndim = json_array_size(shape);
    if (ndim > DP_ST_MAX_DIMS)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: tensor '%s' has %zu dimensions; at most %d are supported", L, N,
                              ndim, DP_ST_MAX_DIMS);
    t->ndim = (int)ndim;
    for (size_t d = 0; d < ndim; d++) {
        uint64_t dim;
        if (!st_get_uint(json_array_get(shape, d), &dim))
            return dp_errinfo_set(ei, DP_EFORMAT,
                                  "%s: tensor '%s': shape entry %zu is not a non-negative "
                                  "integer",
                                  L, N, d);
        t->shape[d] = (int64_t)dim;
    }
    size_t esize = st_dtypes[t->dtype].size;
    size_t numel;
    if (!st_numel(t->ndim, t->shape, &numel) || numel > SIZE_MAX / esize)
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: tensor '%s': shape %s overflows", L, N,
                              st_shape_str(sb, t->ndim, t->shape));
    t->numel = numel;
    t->data_len = numel * esize;

    json_t *offs = json_object_get(val, "data_offsets");
    uint64_t b, e;
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !st_get_uint(json_array_get(offs, 0), &b) || !st_get_uint(json_array_get(offs, 1), &e))
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: tensor '%s': \"data_offsets\" must be two non-negative "
                              "integers [begin, end]",
                              L, N);
    if (b > e)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                              "] end before they begin",
                              L, N, b, e);
    if (e - b != (uint64_t)t->data_len)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                              "] span %" PRIu64 " bytes but shape %s of %s needs %zu",
                              L, N, b, e, e - b, st_shape_str(sb, t->ndim, t->shape),
                              st_dtypes[t->dtype].name, t->data_len);
    if (e > (uint64_t)f->data_len)
        return dp_errinfo_set(ei, DP_ETRUNC,
                              "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64
                              "] exceed the %zu-byte data section (file truncated?)",
                              L, N, b, e, f->data_len);
    t->name = name;
    t->data = f->data + b;
    *begin = b;
    return DP_OK;
}

/* Validates "__metadata__": a JSON object whose values are strings. */
static enum dp_err st_parse_meta(struct dp_st_file *f, json_t *val, struct dp_errinfo *ei)
{
    if (!json_is_object(val))
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: \"%s\" is not a JSON object", f->label,
                              DP_ST_METADATA_KEY);
    const char *key;
    json_t *v;
    json_object_foreach (val, key, v) {
        if (!json_is_string(v)) {
            char nb[ST_NAME_MAX + 4];
            return dp_errinfo_set(ei, DP_EFORMAT, "%s: metadata value for key '%s' is not a string",
                                  f->label, st__clip(nb, key));
        }
    }
    f->metadata = json_incref(val);
    return DP_OK;
}

struct st_sort_item {
    uint64_t begin;
    struct dp_st_tensor t;
};

static int st_cmp_offset(const void *pa, const void *pb)
{
    const struct st_sort_item *a = pa, *b = pb;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    return strcmp(a->t.name, b->t.name);
}

/* qsort has no context argument; the name index sorts pairs instead. */
struct st_name_item {
    const char *name;
    int idx;
};

static int st_cmp_name(const void *pa, const void *pb)
{
    const struct st_name_item *a = pa, *b = pb;
    return strcmp(a->name, b->name);
}

/*
 * Parses the image buf[0, len) into f (whose label is set). On failure f
 * holds whatever was allocated, for dp_st_free.
 */
static enum dp_err st_parse_image(struct dp_st_file *f, const unsigned char *buf, size_t len,
                                  struct dp_errinfo *ei)
{
    const char *L = f->label;
    enum dp_err err = DP_OK;
    struct st_sort_item *items = NULL;
    struct st_name_item *names = NULL;

    if (len < 8)
        return dp_errinfo_set(ei, DP_ETRUNC,
                              "%s: file is %zu bytes, shorter than the 8-byte header length "
                              "(truncated?)",
                              L, len);
    uint64_t hlen = st_le64(buf);
    if (hlen > DP_ST_HEADER_MAX)
        return dp_errinfo_set(ei, DP_ETOOBIG,
                              "%s: header length %" PRIu64 " exceeds the %u-byte limit (is this a "
                              "safetensors file?)",
                              L, hlen, DP_ST_HEADER_MAX);
    if (hlen > len - 8)
        return dp_errinfo_set(ei, DP_ETRUNC,
                              "%s: header length %" PRIu64
                              " exceeds the %zu bytes after the length "
                              "field (file truncated?)",
                              L, hlen, len - 8);
    if (hlen < 2)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: header length %" PRIu64 " is too small for a JSON object", L,
                              hlen);
    f->data = buf + 8 + hlen;
    f->data_len = len - 8 - (size_t)hlen;

    json_error_t jerr;
    memset(&jerr, 0, sizeof(jerr));
    f->header = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (f->header == NULL) {
        /* jansson leaves the text empty when its lexer cannot allocate. */
        enum json_error_code code = json_error_code(&jerr);
        if (code == json_error_out_of_memory || jerr.text[0] == '\0')
            return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory parsing the header", L);
        if (code == json_error_duplicate_key)
            return dp_errinfo_set(ei, DP_EFORMAT, "%s: duplicate name in the header: %s", L,
                                  jerr.text);
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: header is not valid JSON: %s (at header byte %d)", L, jerr.text,
                              jerr.position);
    }
    if (!json_is_object(f->header))
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: header is not a JSON object", L);

    json_t *meta = json_object_get(f->header, DP_ST_METADATA_KEY);
    size_t n = json_object_size(f->header) - (meta != NULL);
    if (n > DP_ST_TENSORS_MAX)
        return dp_errinfo_set(ei, DP_ETOOBIG, "%s: %zu tensors exceed the limit of %d", L, n,
                              DP_ST_TENSORS_MAX);
    if (meta != NULL) {
        err = st_parse_meta(f, meta, ei);
        if (err)
            return err;
    } else {
        f->metadata = json_object();
        if (f->metadata == NULL)
            return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", L);
    }

    items = dp_calloc(n ? n : 1, sizeof(*items));
    names = dp_calloc(n ? n : 1, sizeof(*names));
    f->tensors = dp_calloc(n ? n : 1, sizeof(*f->tensors));
    f->by_name = dp_calloc(n ? n : 1, sizeof(*f->by_name));
    if (items == NULL || names == NULL || f->tensors == NULL || f->by_name == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory for %zu tensors", L, n);
        goto out;
    }
    size_t k = 0;
    const char *key;
    json_t *val;
    json_object_foreach (f->header, key, val) {
        if (strcmp(key, DP_ST_METADATA_KEY) == 0)
            continue;
        err = st_parse_entry(f, key, val, &items[k].t, &items[k].begin, ei);
        if (err)
            goto out;
        k++;
    }

    /* The tensors must tile the data section: no gaps, overlaps or trailing bytes. */
    qsort(items, n, sizeof(*items), st_cmp_offset);
    uint64_t expect = 0;
    for (size_t i = 0; i < n; i++) {
        char nb[ST_NAME_MAX + 4], pb[ST_NAME_MAX + 4];
        if (items[i].begin > expect) {
            err = dp_errinfo_set(ei, DP_EFORMAT,
                                 "%s: data section bytes [%" PRIu64 ", %" PRIu64
                                 ") before tensor '%s' belong to no tensor",
                                 L, expect, items[i].begin, st__clip(nb, items[i].t.name));
            goto out;
        }
        if (items[i].begin < expect) {
            err = dp_errinfo_set(ei, DP_EFORMAT, "%s: tensor '%s' overlaps tensor '%s'", L,
                                 st__clip(nb, items[i].t.name), st__clip(pb, items[i - 1].t.name));
            goto out;
        }
        expect += items[i].t.data_len;
        f->tensors[i] = items[i].t;
        names[i].name = items[i].t.name;
        names[i].idx = (int)i;
    }
    if (expect != f->data_len) {
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "%s: %zu trailing bytes after the last tensor in the data section", L,
                             f->data_len - (size_t)expect);
        goto out;
    }
    qsort(names, n, sizeof(*names), st_cmp_name);
    for (size_t i = 0; i < n; i++)
        f->by_name[i] = names[i].idx;
    f->n_tensors = (int)n;

out:
    dp_free(items);
    dp_free(names);
    return err;
}

/* ---- Reading: files and handles ------------------------------------------ */

enum dp_err dp_st_parse(const void *buf, size_t len, const char *label, struct dp_st_file **out,
                        struct dp_errinfo *ei)
{
    *out = NULL;
    struct dp_st_file *f = dp_calloc(1, sizeof(*f));
    if (f == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", label);
    st_label_set(f->label, label);
    enum dp_err err = st_parse_image(f, buf, len, ei);
    if (err) {
        dp_st_free(f);
        return err;
    }
    *out = f;
    return DP_OK;
}

enum dp_err dp_st_read(const char *path, size_t max_len, struct dp_st_file **out,
                       struct dp_errinfo *ei)
{
    *out = NULL;
    struct dp_st_file *f = dp_calloc(1, sizeof(*f));
    if (f == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory reading '%s'", path);
    st_label_set(f->label, path);
    size_t len = 0;
    enum dp_err err = dp_file_read(path, f->label, max_len, &f->owned, &len, ei);
    if (!err)
        err = st_parse_image(f, f->owned, len, ei);
    if (err) {
        dp_st_free(f);
        return err;
    }
    *out = f;
    return DP_OK;
}

void dp_st_free(struct dp_st_file *f)
{
    if (f == NULL)
        return;
    int saved = errno;
    json_decref(f->header);
    json_decref(f->metadata);
    dp_free(f->tensors);
    dp_free(f->by_name);
    dp_free(f->owned);
    dp_free(f);
    errno = saved;
}

const char *dp_st_label(const struct dp_st_file *f)
{
    return f->label;
}

int dp_st_n_tensors(const struct dp_st_file *f)
{
    return f->n_tensors;
}

const struct dp_st_tensor *dp_st_tensor_at(const struct dp_st_file *f, int i)
{
    if (i < 0 || i >= f->n_tensors)
        return NULL;
    return &f->tensors[i];
}

const struct dp_st_tensor *dp_st_find(const struct dp_st_file *f, const char *name)
{
    int lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const struct dp_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const json_t *dp_st_metadata(const struct dp_st_file *f)
{
    return f->metadata;
}

const char *dp_st_meta_get(const struct dp_st_file *f, const char *key)
{
    return json_string_value(json_object_get(f->metadata, key));
}

/* ---- Typed access -------------------------------------------------------- */

enum dp_err dp_st_tensor_copy(const struct dp_st_file *f, const struct dp_st_tensor *t,
                              enum dp_st_dtype dtype, void *dst, size_t dst_len,
                              struct dp_errinfo *ei)
{
    char nb[ST_NAME_MAX + 4], sb[ST_SHAPE_MAX];
    const char *want = dp_st_dtype_name(dtype);
    if (t->dtype != dtype)
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: tensor '%s' is %s, expected %s", f->label,
                              st__clip(nb, t->name), st_dtypes[t->dtype].name,
                              want ? want : "an unknown dtype");
    if (t->data_len != dst_len)
        return dp_errinfo_set(
            ei, DP_ESHAPE, "%s: tensor '%s' (shape %s) holds %zu bytes, expected %zu", f->label,
            st__clip(nb, t->name), st_shape_str(sb, t->ndim, t->shape), t->data_len, dst_len);
    if (dst_len > 0)
        memcpy(dst, t->data, dst_len);
    return DP_OK;
}

static enum dp_err st_read_typed(const struct dp_st_file *f, const char *name,
                                 enum dp_st_dtype dtype, void *dst, size_t n_elems,
                                 struct dp_errinfo *ei)
{
    char nb[ST_NAME_MAX + 4], sb[ST_SHAPE_MAX];
    const struct dp_st_tensor *t = dp_st_find(f, name);
    if (t == NULL)
        return dp_errinfo_set(ei, DP_ENOENT, "%s: no tensor named '%s'", f->label,
                              st__clip(nb, name));
    if (t->dtype == dtype && t->numel != n_elems)
        return dp_errinfo_set(
            ei, DP_ESHAPE, "%s: tensor '%s' has %zu elements (shape %s), expected %zu", f->label,
            st__clip(nb, name), t->numel, st_shape_str(sb, t->ndim, t->shape), n_elems);
    return dp_st_tensor_copy(f, t, dtype, dst, t->data_len, ei);
}

enum dp_err dp_st_read_f32(const struct dp_st_file *f, const char *name, float *dst, size_t n_elems,
                           struct dp_errinfo *ei)
{
    return st_read_typed(f, name, DP_ST_F32, dst, n_elems, ei);
}

enum dp_err dp_st_read_u8(const struct dp_st_file *f, const char *name, uint8_t *dst,
                          size_t n_elems, struct dp_errinfo *ei)
{
    return st_read_typed(f, name, DP_ST_U8, dst, n_elems, ei);
}

enum dp_err dp_st_read_i32(const struct dp_st_file *f, const char *name, int32_t *dst,
                           size_t n_elems, struct dp_errinfo *ei)
{
    return st_read_typed(f, name, DP_ST_I32, dst, n_elems, ei);
}

enum dp_err dp_st_read_i64(const struct dp_st_file *f, const char *name, int64_t *dst,
                           size_t n_elems, struct dp_errinfo *ei)
{
    return st_read_typed(f, name, DP_ST_I64, dst, n_elems, ei);
}
