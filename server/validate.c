/*
 * Upload validators (see validate.h). Files are read through small buffers
 * with every length checked against what remains, so a hostile file can
 * make a validator fail but never read out of bounds or allocate much.
 */
#include "server/validate.h"

#include "common/onnx_import.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "common/dataset.h"
#include "common/model.h"
#include "common/model_io.h"
#include "common/npy.h"
#include "common/utf8.h"

/* ---- Names ---------------------------------------------------------------- */

enum dp_err srv_validate_name(const char *name, const char *field, struct dp_errinfo *ei)
{
    size_t n = strlen(name);
    if (n == 0 || n > SRV_NAME_MAX)
        return dp_errinfo_set(ei, DP_EINVAL, "%s: must be 1 to %d bytes long", field, SRV_NAME_MAX);
    if (!dp_utf8_valid(name))
        return dp_errinfo_set(ei, DP_EINVAL, "%s: not valid UTF-8", field);
    /* Names are shown in terminals and browsers: no C0/C1 controls, no bidi overrides. */
    if (dp_utf8_has_control(name))
        return dp_errinfo_set(ei, DP_EINVAL,
                              "%s: control characters (C0, C1, bidi overrides) are not allowed",
                              field);
    if (strchr(name, '/') || strchr(name, '\\') || name[0] == '.')
        return dp_errinfo_set(ei, DP_EINVAL,
                              "%s: '%s' looks like a path; names may not contain '/' or '\\' "
                              "or start with '.'",
                              field, name);
    return DP_OK;
}

/* ---- A worker's device description ----------------------------------------- */

/* The nesting depth of j: 0 for a scalar, 1 for a flat object or array.
 * Stops counting past limit, so a hostile document costs no deep recursion. */
static int json_depth(const json_t *j, int limit)
{
    if (limit < 0 || !(json_is_object(j) || json_is_array(j)))
        return 0;
    int deepest = 0;
    if (json_is_object(j)) {
        const char *key;
        json_t *v;
        json_object_foreach ((json_t *)j, key, v) {
            int d = json_depth(v, limit - 1);
            deepest = d > deepest ? d : deepest;
            if (deepest >= limit)
                break;
        }
    } else {
        size_t i;
        json_t *v;
        json_array_foreach (j, i, v) {
            int d = json_depth(v, limit - 1);
            deepest = d > deepest ? d : deepest;
            if (deepest >= limit)
                break;
        }
    }
    return deepest + 1;
}

enum dp_err srv_validate_device(const json_t *device, const char *field, struct dp_errinfo *ei)
{
    if (!json_is_object(device))
        return dp_errinfo_set(ei, DP_EINVAL, "%s: must be a JSON object", field);
    /* json_dumpb with no buffer returns the size it would need, allocating nothing. */
    size_t len = json_dumpb(device, NULL, 0, JSON_COMPACT);
    if (len > SRV_DEVICE_MAX)
        return dp_errinfo_set(ei, DP_ETOOBIG,
                              "%s: %zu bytes as compact JSON, over the limit of %d: describe the "
                              "device in a few fields (cpu, cores, memory, accelerators)",
                              field, len, SRV_DEVICE_MAX);
    if (json_depth(device, SRV_DEVICE_DEPTH_MAX) > SRV_DEVICE_DEPTH_MAX)
        return dp_errinfo_set(ei, DP_EINVAL, "%s: nested more than %d levels deep", field,
                              SRV_DEVICE_DEPTH_MAX);
    return DP_OK;
}

/* ---- Models ---------------------------------------------------------------- */

/* Turns a model loader's failure into the upload's error. The loader names
 * the file it read; the client never saw our temp path, so it is cut and
 * the message says "<what> upload" instead. */
static enum dp_err upload_load_fail(const char *path, const char *what, enum dp_err err,
                                    const struct dp_errinfo *inner, struct dp_errinfo *ei)
{
    const char *msg = dp_errinfo_msg(inner, err);
    size_t plen = strlen(path);
    if (strncmp(msg, path, plen) == 0)
        msg += plen;
    return dp_errinfo_set(ei, err == DP_ENOMEM ? DP_ENOMEM : DP_EFORMAT, "%s upload%s%s", what,
                          msg[0] == ':' ? "" : ": ", msg);
}

enum dp_err srv_validate_model(const char *path, const char *format, struct dp_errinfo *ei)
{
    if (strcmp(format, "onnx") == 0)
        return srv_validate_onnx(path, ei);
    struct dp_model *m = NULL;
    struct dp_errinfo inner = {0};
    enum dp_err err = dp_model_load(path, &m, NULL, &inner);
    dp_model_free(m);
    return err ? upload_load_fail(path, "safetensors model", err, &inner, ei) : DP_OK;
}

/* Reads a protobuf varint from f, at most *left bytes. */
static enum dp_err pb_varint(FILE *f, uint64_t *left, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*left == 0)
            return DP_ETRUNC;
        int c = fgetc(f);
        if (c == EOF)
            return DP_ETRUNC;
        (*left)--;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0)
            return DP_OK;
    }
    return DP_EFORMAT;
}

static enum dp_err srv_validate_onnx_framing(const char *path, struct dp_errinfo *ei)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return dp_errinfo_set(ei, DP_EIO, "onnx upload: cannot reopen: %s", strerror(errno));
    enum dp_err err = DP_OK;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return dp_errinfo_set(ei, DP_EIO, "onnx upload: cannot seek");
    }
    long end = ftell(f);
    rewind(f);
    uint64_t left = end > 0 ? (uint64_t)end : 0;
    int have_ir = 0, have_graph = 0;
    if (left == 0)
        err = dp_errinfo_set(ei, DP_EFORMAT, "onnx upload: the file is empty");
    while (!err && left > 0) {
        uint64_t off = (uint64_t)end - left, key, v;
        err = pb_varint(f, &left, &key);
        if (err) {
            err =
                dp_errinfo_set(ei, DP_EFORMAT, "onnx upload: bad field key at byte %" PRIu64, off);
            break;
        }
        uint64_t field = key >> 3;
        unsigned wire = (unsigned)(key & 7);
        if (field == 0 || field > 536870911u) {
            err = dp_errinfo_set(ei, DP_EFORMAT,
                                 "onnx upload: not an ONNX ModelProto (field number %" PRIu64
                                 " at byte %" PRIu64 ")",
                                 field, off);
            break;
        }
        uint64_t skip = 0;
        switch (wire) {
            case 0:
                err = pb_varint(f, &left, &v);
                break;
            case 1:
                skip = 8;
                break;
            case 5:
                skip = 4;
                break;
            case 2:
                err = pb_varint(f, &left, &skip);
                break;
            default:
                err = DP_EFORMAT;
        }
        if (err || skip > left) {
            err = dp_errinfo_set(ei, DP_EFORMAT,
                                 "onnx upload: field %" PRIu64 " at byte %" PRIu64
                                 " is malformed or runs past the end of the file",
                                 field, off);
            break;
        }
        if (field == 1 && wire == 0)
            have_ir = 1;
        if (field == 7 && wire == 2 && skip > 0)
            have_graph = 1;
        if (skip > 0 && fseek(f, (long)skip, SEEK_CUR) != 0) {
            err = dp_errinfo_set(ei, DP_EIO, "onnx upload: cannot seek");
            break;
        }
        left -= skip;
    }
    fclose(f);
    if (!err && !have_ir)
        err = dp_errinfo_set(ei, DP_EFORMAT, "onnx upload: no ir_version (field 1)");
    if (!err && !have_graph)
        err = dp_errinfo_set(ei, DP_EFORMAT, "onnx upload: no graph (field 7)");
    return err;
}

enum dp_err srv_validate_onnx(const char *path, struct dp_errinfo *ei)
{
    /* The framing walk names the byte at fault; the importer then checks
     * what the engine needs: every operator supported, shapes consistent. */
    enum dp_err err = srv_validate_onnx_framing(path, ei);
    if (err)
        return err;
    struct dp_model *m = NULL;
    struct dp_errinfo inner = {0};
    err = dp_onnx_import_file(path, &m, NULL, &inner);
    dp_model_free(m);
    return err ? upload_load_fail(path, "onnx model", err, &inner, ei) : DP_OK;
}

/* ---- Dataset archives -------------------------------------------------------- */

/* One archive member, read raw or through gunzip; the reader bounds it by
 * its size. */
struct member {
    struct dp_dataset_reader *rd;
    int gz, z_end;
    z_stream z;
    unsigned char in[16384];
    uint64_t out_total;
};

#define MEMBER_MAX_INFLATED (4ull << 30)

static enum dp_err member_open(struct member *m, struct dp_dataset_reader *rd, int gz)
{
    memset(m, 0, sizeof(*m));
    m->rd = rd;
    m->gz = gz;
    if (gz && inflateInit2(&m->z, 15 + 16) != Z_OK)
        return DP_ENOMEM;
    return DP_OK;
}

static void member_close(struct member *m)
{
    if (m->gz)
        inflateEnd(&m->z);
}

/* Reads up to n bytes; *got 0 means the member's end. */
static enum dp_err member_read(struct member *m, void *buf, size_t n, size_t *got)
{
    struct dp_errinfo ignored; /* the callers name the member themselves */
    *got = 0;
    if (!m->gz)
        return dp_dataset_read(m->rd, buf, n, got, &ignored);
    m->z.next_out = buf;
    m->z.avail_out = (uInt)n;
    while (m->z.avail_out > 0 && !m->z_end) {
        if (m->z.avail_in == 0) {
            size_t want = 0;
            enum dp_err err = dp_dataset_read(m->rd, m->in, sizeof(m->in), &want, &ignored);
            if (err)
                return err;
            if (want == 0)
                return DP_ETRUNC;
            m->z.next_in = m->in;
            m->z.avail_in = (uInt)want;
        }
        int rc = inflate(&m->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END)
            m->z_end = 1;
        else if (rc != Z_OK)
            return DP_EFORMAT;
    }
    *got = n - m->z.avail_out;
    m->out_total += *got;
    if (m->out_total > MEMBER_MAX_INFLATED)
        return DP_ETOOBIG;
    return DP_OK;
}

static enum dp_err member_read_exact(struct member *m, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t k;
        enum dp_err err = member_read(m, (char *)buf + got, n - got, &k);
        if (err)
            return err;
        if (k == 0)
            return DP_ETRUNC;
        got += k;
    }
    return DP_OK;
}

/* Reads and counts the rest of the member; the CIFAR check looks at every
 * 3073rd byte through `each` when non-NULL. */
static enum dp_err member_drain(struct member *m, uint64_t *n_bytes)
{
    unsigned char buf[16384];
    *n_bytes = 0;
    for (;;) {
        size_t k;
        enum dp_err err = member_read(m, buf, sizeof(buf), &k);
        if (err)
            return err;
        if (k == 0)
            return DP_OK;
        *n_bytes += k;
    }
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* An IDX file: ubyte data, 1 dimension (labels) or 3 (images), exactly
 * prod(dims) data bytes. *count receives the first dimension. */
static enum dp_err check_idx(struct member *m, const char *name, enum dp_dataset_kind kind,
                             uint64_t *count, struct dp_errinfo *ei)
{
    unsigned char h[16];
    int labels = kind == DP_DATASET_LABELS;
    int ndim = labels ? 1 : 3;
    enum dp_err err = member_read_exact(m, h, 4 + 4 * (size_t)ndim);
    if (err)
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: truncated or corrupt IDX header", name);
    if (h[0] != 0 || h[1] != 0 || h[2] != 0x08 || h[3] != ndim)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: not an IDX %s file (magic %02x%02x%02x%02x, expected "
                              "000008%02x)",
                              name, labels ? "label" : "image", h[0], h[1], h[2], h[3], ndim);
    uint64_t want = 1;
    for (int i = 0; i < ndim; i++) {
        uint32_t d = be32(h + 4 + 4 * i);
        if (d == 0 || d > (1u << 28))
            return dp_errinfo_set(ei, DP_EFORMAT, "%s: dimension %d is %u", name, i, d);
        want *= d;
        if (want > MEMBER_MAX_INFLATED)
            return dp_errinfo_set(ei, DP_ETOOBIG, "%s: data larger than 4 GiB", name);
    }
    *count = be32(h + 4);
    uint64_t have;
    err = member_drain(m, &have);
    if (err)
        return dp_errinfo_set(ei, err == DP_ETOOBIG ? DP_ETOOBIG : DP_EFORMAT,
                              "%s: corrupt or oversized data", name);
    if (have != want)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: header promises %" PRIu64 " data bytes, the file has %" PRIu64,
                              name, want, have);
    return DP_OK;
}

/* A CIFAR-10 binary batch: records of 1 label byte (0..9) + 3072 pixels. */
static enum dp_err check_cifar(struct member *m, const char *name, uint64_t size,
                               struct dp_errinfo *ei)
{
    if (size == 0 || size % 3073 != 0)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: %" PRIu64 " bytes is not a whole number of 3073-byte records",
                              name, size);
    unsigned char rec[3073];
    for (uint64_t i = 0; i < size / 3073; i++) {
        if (member_read_exact(m, rec, sizeof(rec)) != DP_OK)
            return dp_errinfo_set(ei, DP_ETRUNC, "%s: truncated", name);
        if (rec[0] > 9)
            return dp_errinfo_set(ei, DP_EFORMAT, "%s: record %" PRIu64 " has label %u (0..9)",
                                  name, i, rec[0]);
    }
    return DP_OK;
}

/* dp_npy_read_fn over a member: exactly len bytes or DP_ETRUNC naming it. */
struct npy_member {
    struct member *m;
    const char *name;
};

static enum dp_err npy_member_read(void *ctx, void *buf, size_t len, const char *what,
                                   struct dp_errinfo *ei)
{
    struct npy_member *nm = ctx;
    enum dp_err err = member_read_exact(nm->m, buf, len);
    if (err == DP_ETRUNC)
        return dp_errinfo_set(ei, DP_ETRUNC, "%s: truncated: %s", nm->name, what);
    if (err)
        return dp_errinfo_set(ei, err, "%s: corrupt member", nm->name);
    return DP_OK;
}

/* An NPY array, through the reader the worker loads it with (common/npy.h):
 * the header, exactly its data in the member, and the image or label rules
 * of the NPY dataset format. *count receives the first dimension. */
static enum dp_err check_npy(struct member *m, const char *name, enum dp_dataset_kind kind,
                             uint64_t size, uint64_t *count, struct dp_errinfo *ei)
{
    struct npy_member nm = {m, name};
    struct dp_npy_header h;
    /* No member holds more than a dataset may; a shape past that (or past
     * 64 bits) is a lie, not "no data" as 2^32 * 2^32 wrapped to 0 once.
     * Below it, the data length must then match the member exactly. */
    enum dp_err err = dp_npy_read_header(npy_member_read, &nm, name, DP_DATASET_MAX_BYTES, &h, ei);
    if (!err)
        err = dp_npy_check_len(&h, size, name, ei);
    if (!err)
        err = kind == DP_DATASET_LABELS ? dp_npy_check_labels(&h, name, ei)
                                        : dp_npy_check_images(&h, name, ei);
    if (err) {
        /* Whatever the reader's code (a shape past the member's size, an
         * unsupported dtype, a bad shape), the upload is malformed: 400. */
        ei->code = DP_EFORMAT;
        return DP_EFORMAT;
    }
    *count = (uint64_t)h.shape[0];
    return DP_OK;
}

enum dp_err srv_validate_dataset(const char *path, const char *format, struct dp_errinfo *ei)
{
    int seen[DP_DATASET_MAX_MEMBERS] = {0};
    uint64_t counts[DP_DATASET_MAX_MEMBERS] = {0};
    struct dp_dataset_reader *rd = NULL;
    struct dp_errinfo inner = {DP_OK, ""};
    enum dp_err err = dp_dataset_open(path, format, DP_DATASET_MAX_BYTES, &rd, &inner);
    const struct dp_dataset_format *f = err ? NULL : dp_dataset_reader_format(rd);
    while (!err) {
        struct dp_dataset_member dm;
        err = dp_dataset_next(rd, &dm, &inner);
        if (err || dm.index < 0)
            break;
        seen[dm.index] = 1;
        struct member m;
        err = member_open(&m, rd, dm.gz);
        if (err)
            break;
        enum dp_dataset_kind kind = f->parts[dm.index].kind;
        if (kind == DP_DATASET_RECORDS)
            err = check_cifar(&m, dm.name, dm.size, &inner);
        else if (strcmp(f->name, "idx") == 0)
            err = check_idx(&m, dm.name, kind, &counts[dm.index], &inner);
        else
            err = check_npy(&m, dm.name, kind, dm.size, &counts[dm.index], &inner);
        member_close(&m);
        /* The checks above read through the archive: a truncated archive
         * shows there as a bad member. */
        if (err)
            err = err == DP_ETOOBIG ? DP_ETOOBIG : DP_EFORMAT;
    }
    dp_dataset_close(rd);
    if (err)
        return dp_errinfo_set(ei, err, "dataset upload: %s", dp_errinfo_msg(&inner, err));
    for (int i = 0; i < f->n_members; i++)
        if (!seen[i])
            return dp_errinfo_set(ei, DP_EINVAL, "dataset upload: member '%s' is missing",
                                  f->members[i]);
    /* Images and labels of a split must pair up (IDX, NPY). */
    for (int i = 0; i < f->n_members; i++)
        for (int j = 0; j < f->n_members; j++)
            if (f->parts[i].kind == DP_DATASET_IMAGES && f->parts[j].kind == DP_DATASET_LABELS &&
                f->parts[i].split == f->parts[j].split && counts[i] != counts[j])
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "dataset upload: %s has %" PRIu64
                                      " samples but its labels %" PRIu64,
                                      f->members[i], counts[i], counts[j]);
    return DP_OK;
}
