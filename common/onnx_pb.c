/*
 * ONNX protobuf reading and writing (see onnx.h).
 *
 * DESIGN: protobuf-c decodes a whole buffer in one call, allocating as it
 * goes and recursing into nested messages without a depth limit. So the
 * buffer is first walked at the wire level against the message
 * descriptors that protoc-c generated: every varint is at most 10 bytes,
 * every length fits in what is left, groups (wire types 3 and 4) are
 * refused, nesting is bounded by DP_ONNX_DEPTH_MAX, and the memory the
 * decoded structures will take is estimated from above (each message's
 * struct size, strings, the widest element of packed arrays, unknown
 * fields) and bounded. Only then does protobuf-c run, with dp_malloc as
 * its allocator.
 */
#include "common/onnx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/file.h"
#include "onnx.pb-c.h"

/* ---- Allocator ----------------------------------------------------------- */

static void *onnx_pb_alloc(void *ud, size_t len)
{
    (void)ud;
    return dp_malloc(len ? len : 1);
}

static void onnx_pb_free(void *ud, void *p)
{
    (void)ud;
    dp_free(p);
}

/* Read-only after initialisation: protobuf-c takes a non-const pointer. */
static ProtobufCAllocator onnx_allocator = {onnx_pb_alloc, onnx_pb_free, NULL};

ProtobufCAllocator *dp_onnx_allocator(void)
{
    return &onnx_allocator;
}

/* ---- Wire-format walk ---------------------------------------------------- */

struct onnx_walk {
    const uint8_t *base; /* for offsets in messages */
    uint64_t est;        /* upper bound on decoded bytes so far */
    uint64_t est_max;
    struct dp_errinfo *ei;
};

static int onnx_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

static enum dp_err onnx_walk_msg(struct onnx_walk *w, const ProtobufCMessageDescriptor *d,
                                 const uint8_t *p, const uint8_t *end, int depth)
{
    if (depth > DP_ONNX_DEPTH_MAX)
        return dp_errinfo_set(w->ei, DP_ETOOBIG, "messages nested deeper than %d levels",
                              DP_ONNX_DEPTH_MAX);
    w->est += d->sizeof_message + 16;
    while (p < end) {
        const size_t at = (size_t)(p - w->base);
        uint64_t key, v;
        if (onnx_varint(&p, end, &key) != 0)
            return dp_errinfo_set(w->ei, DP_ETRUNC, "bad or truncated field key at byte %zu", at);
        const uint64_t num = key >> 3;
        const unsigned wt = (unsigned)(key & 7);
        if (num == 0 || num > 536870911u)
            return dp_errinfo_set(w->ei, DP_EFORMAT, "bad field number at byte %zu", at);
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(d, (unsigned)num);
        switch (wt) {
            case 0:
                if (onnx_varint(&p, end, &v) != 0)
                    return dp_errinfo_set(w->ei, DP_ETRUNC, "truncated varint at byte %zu", at);
                w->est += 16;
                break;
            case 1:
                if (end - p < 8)
                    return dp_errinfo_set(w->ei, DP_ETRUNC, "truncated 64-bit field at byte %zu",
                                          at);
                p += 8;
                w->est += 16;
                break;
            case 5:
                if (end - p < 4)
                    return dp_errinfo_set(w->ei, DP_ETRUNC, "truncated 32-bit field at byte %zu",
                                          at);
                p += 4;
                w->est += 16;
                break;
            case 2: {
                if (onnx_varint(&p, end, &v) != 0)
                    return dp_errinfo_set(w->ei, DP_ETRUNC, "truncated length at byte %zu", at);
                if (v > (uint64_t)(end - p))
                    return dp_errinfo_set(
                        w->ei, DP_ETRUNC, "field %llu at byte %zu claims %llu bytes, %zu are left",
                        (unsigned long long)num, at, (unsigned long long)v, (size_t)(end - p));
                const uint8_t *sub_end = p + v;
                if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                    enum dp_err err = onnx_walk_msg(w, f->descriptor, p, sub_end, depth + 1);
                    if (err)
                        return err;
                    w->est += sizeof(void *);
                } else {
                    /* Strings, bytes, packed arrays (a 1-byte varint can become
                     * 8 bytes), unknown fields: 8 bytes per wire byte at most. */
                    w->est += 8 * v + 32;
                }
                p = sub_end;
                break;
            }
            default:
                return dp_errinfo_set(w->ei, DP_EFORMAT,
                                      "unsupported wire type %u at byte %zu (not an ONNX file?)",
                                      wt, at);
        }
        if (w->est > w->est_max)
            return dp_errinfo_set(w->ei, DP_ETOOBIG,
                                  "decoding would take more than %llu bytes of memory",
                                  (unsigned long long)w->est_max);
    }
    return DP_OK;
}

static enum dp_err onnx_parse(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                              ProtobufCMessage **out, struct dp_errinfo *ei)
{
    *out = NULL;
    if (len > DP_ONNX_FILE_MAX)
        return dp_errinfo_set(ei, DP_ETOOBIG, "%zu bytes is over the %zu-byte limit", len,
                              DP_ONNX_FILE_MAX);
    struct onnx_walk w = {buf, 0, (uint64_t)len * DP_ONNX_MEM_FACTOR + ((uint64_t)64 << 20), ei};
    enum dp_err err = onnx_walk_msg(&w, d, buf, buf + len, 0);
    if (err)
        return err;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &onnx_allocator, len, buf);
    if (m == NULL)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "not a valid %s message (bad field type, or out of memory)", d->name);
    *out = m;
    return DP_OK;
}

/* ---- Files --------------------------------------------------------------- */

static enum dp_err onnx_read(const ProtobufCMessageDescriptor *d, const char *path,
                             ProtobufCMessage **out, struct dp_errinfo *ei)
{
    uint8_t *buf;
    size_t len;
    *out = NULL;
    enum dp_err err = dp_file_read(path, path, DP_ONNX_FILE_MAX, &buf, &len, ei);
    if (err)
        return err;
    err = onnx_parse(d, buf, len, out, ei);
    dp_free(buf);
    if (err && ei != NULL) {
        char msg[sizeof(ei->msg)];
        snprintf(msg, sizeof(msg), "%s", ei->msg);
        dp_errinfo_set(ei, err, "%s: %s", path, msg);
    }
    return err;
}

enum dp_err dp_onnx_model_parse(const uint8_t *buf, size_t len, struct Onnx__ModelProto **out,
                                struct dp_errinfo *ei)
{
    return onnx_parse(&onnx__model_proto__descriptor, buf, len, (ProtobufCMessage **)out, ei);
}

enum dp_err dp_onnx_model_read(const char *path, struct Onnx__ModelProto **out,
                               struct dp_errinfo *ei)
{
    return onnx_read(&onnx__model_proto__descriptor, path, (ProtobufCMessage **)out, ei);
}

void dp_onnx_model_free(struct Onnx__ModelProto *mp)
{
    if (mp != NULL)
        protobuf_c_message_free_unpacked(&mp->base, &onnx_allocator);
}

enum dp_err dp_onnx_tensor_parse(const uint8_t *buf, size_t len, struct Onnx__TensorProto **out,
                                 struct dp_errinfo *ei)
{
    return onnx_parse(&onnx__tensor_proto__descriptor, buf, len, (ProtobufCMessage **)out, ei);
}

enum dp_err dp_onnx_tensor_read(const char *path, struct Onnx__TensorProto **out,
                                struct dp_errinfo *ei)
{
    return onnx_read(&onnx__tensor_proto__descriptor, path, (ProtobufCMessage **)out, ei);
}

void dp_onnx_tensor_free(struct Onnx__TensorProto *t)
{
    if (t != NULL)
        protobuf_c_message_free_unpacked(&t->base, &onnx_allocator);
}

/* ---- Tensor decoding ----------------------------------------------------- */

static const char *onnx_tname(const Onnx__TensorProto *t)
{
    return t->name != NULL && t->name[0] != '\0' ? t->name : "(unnamed)";
}

enum dp_err dp_onnx_tensor_numel(const struct Onnx__TensorProto *t, size_t *n,
                                 struct dp_errinfo *ei)
{
    size_t numel = 1;
    *n = 0;
    if (t->n_dims > 8)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED, "tensor '%.64s' has %zu dimensions (at most 8)",
                              onnx_tname(t), t->n_dims);
    for (size_t d = 0; d < t->n_dims; d++) {
        if (t->dims[d] < 0)
            return dp_errinfo_set(ei, DP_EFORMAT, "tensor '%.64s' has negative dimension %lld",
                                  onnx_tname(t), (long long)t->dims[d]);
        if (t->dims[d] > ((int64_t)1 << 31))
            return dp_errinfo_set(ei, DP_ETOOBIG, "tensor '%.64s' is too large", onnx_tname(t));
        numel *= (size_t)t->dims[d];
        if (numel > ((size_t)1 << 31))
            return dp_errinfo_set(ei, DP_ETOOBIG, "tensor '%.64s' is too large", onnx_tname(t));
    }
    *n = numel;
    return DP_OK;
}

/* Element type checks shared by both decoders. */
static enum dp_err onnx_tensor_pre(const Onnx__TensorProto *t, size_t *n, struct dp_errinfo *ei)
{
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "tensor '%.64s' keeps its data in an external file (not supported)",
                              onnx_tname(t));
    if (t->segment != NULL)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED, "tensor '%.64s' is segmented (not supported)",
                              onnx_tname(t));
    return dp_onnx_tensor_numel(t, n, ei);
}

static enum dp_err onnx_count_mismatch(const Onnx__TensorProto *t, size_t have, size_t want,
                                       struct dp_errinfo *ei)
{
    return dp_errinfo_set(ei, DP_EFORMAT, "tensor '%.64s' holds %zu values, its dims say %zu",
                          onnx_tname(t), have, want);
}

/* Element size in raw_data of the types dp_onnx_tensor_floats converts; 0 for others. */
static size_t onnx_float_esize(int32_t dt)
{
    switch (dt) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
            return 4;
        case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
            return 8;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
        case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
            return 1;
        default:
            return 0;
    }
}

/* Element i of t (type dt) as a float; the caller checked the counts. */
static float onnx_float_at(const Onnx__TensorProto *t, int32_t dt, size_t i)
{
    if (t->has_raw_data) {
        const uint8_t *p = t->raw_data.data;
        float f;
        double d;
        int32_t i32;
        int64_t i64;
        switch (dt) {
            case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
                memcpy(&f, p + 4 * i, 4);
                return f;
            case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
                memcpy(&d, p + 8 * i, 8);
                return (float)d;
            case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
                memcpy(&i32, p + 4 * i, 4);
                return (float)i32;
            case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
                memcpy(&i64, p + 8 * i, 8);
                return (float)i64;
            case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
                return (float)(int8_t)p[i];
            default:
                return (float)p[i];
        }
    }
    switch (dt) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
            return t->float_data[i];
        case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
            return (float)t->double_data[i];
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
            return (float)t->int64_data[i];
        default:
            return (float)t->int32_data[i]; /* int32, int8 and uint8 all live here */
    }
}

enum dp_err dp_onnx_tensor_floats(const struct Onnx__TensorProto *t, float **out, size_t *n,
                                  struct dp_errinfo *ei)
{
    size_t numel;
    *out = NULL;
    *n = 0;
    enum dp_err err = onnx_tensor_pre(t, &numel, ei);
    if (err)
        return err;
    const int32_t dt = t->has_data_type ? t->data_type : 0;
    const size_t esize = onnx_float_esize(dt);
    if (esize == 0)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "tensor '%.64s' has element type %d; float, double, int8, uint8, "
                              "int32 and int64 are supported here",
                              onnx_tname(t), (int)dt);
    size_t have;
    if (t->has_raw_data)
        have = t->raw_data.len / esize;
    else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        have = t->n_float_data;
    else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE)
        have = t->n_double_data;
    else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64)
        have = t->n_int64_data;
    else
        have = t->n_int32_data;
    if (t->has_raw_data && t->raw_data.len % esize != 0)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "tensor '%.64s': %zu raw bytes is not a whole number of elements",
                              onnx_tname(t), t->raw_data.len);
    if (have != numel)
        return onnx_count_mismatch(t, have, numel, ei);
    float *f = dp_malloc(dp_size_mul(numel ? numel : 1, sizeof(float)));
    if (f == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory decoding tensor '%.64s'",
                              onnx_tname(t));
    for (size_t i = 0; i < numel; i++)
        f[i] = onnx_float_at(t, dt, i);
    *out = f;
    *n = numel;
    return DP_OK;
}

enum dp_err dp_onnx_tensor_int64s(const struct Onnx__TensorProto *t, int64_t **out, size_t *n,
                                  struct dp_errinfo *ei)
{
    size_t numel;
    *out = NULL;
    *n = 0;
    enum dp_err err = onnx_tensor_pre(t, &numel, ei);
    if (err)
        return err;
    const int32_t dt = t->has_data_type ? t->data_type : 0;
    const size_t esize = dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64   ? 8
                         : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ? 4
                                                                      : 0;
    if (esize == 0)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "tensor '%.64s' has element type %d; an int64 or int32 tensor is "
                              "needed here",
                              onnx_tname(t), (int)dt);
    size_t have = t->has_raw_data ? t->raw_data.len / esize
                  : esize == 8    ? t->n_int64_data
                                  : t->n_int32_data;
    if (t->has_raw_data && t->raw_data.len % esize != 0)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "tensor '%.64s': %zu raw bytes is not a whole "
                              "number of elements",
                              onnx_tname(t), t->raw_data.len);
    if (have != numel)
        return onnx_count_mismatch(t, have, numel, ei);
    int64_t *v = dp_malloc(dp_size_mul(numel ? numel : 1, sizeof(int64_t)));
    if (v == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory decoding tensor '%.64s'",
                              onnx_tname(t));
    for (size_t i = 0; i < numel; i++) {
        if (t->has_raw_data && esize == 8) {
            memcpy(&v[i], t->raw_data.data + 8 * i, 8);
        } else if (t->has_raw_data) {
            int32_t x;
            memcpy(&x, t->raw_data.data + 4 * i, 4);
            v[i] = x;
        } else {
            v[i] = esize == 8 ? t->int64_data[i] : t->int32_data[i];
        }
    }
    *out = v;
    *n = numel;
    return DP_OK;
}

/* ---- Writing ------------------------------------------------------------- */

enum dp_err dp_onnx_model_write(const struct Onnx__ModelProto *mp, const char *path,
                                struct dp_errinfo *ei)
{
    enum dp_err err = DP_OK;
    char tmp[4096];
    int fd = -1;
    uint8_t *buf = NULL;
    size_t len = onnx__model_proto__get_packed_size(mp);
    if (len > DP_ONNX_FILE_MAX)
        return dp_errinfo_set(ei, DP_ETOOBIG, "%s: the model encodes to %zu bytes (limit %zu)",
                              path, len, DP_ONNX_FILE_MAX);
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= sizeof(tmp))
        return dp_errinfo_set(ei, DP_EINVAL, "output path too long");
    buf = dp_malloc(len ? len : 1);
    if (buf == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory encoding %zu bytes", path, len);
    onnx__model_proto__pack(mp, buf);
    fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        err = dp_errinfo_set(ei, dp_err_from_errno(e), "%s: cannot create a temporary file: %s",
                             path, strerror(e));
        goto out;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, buf + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            err = dp_errinfo_set(ei, DP_EIO, "%s: write failed: %s", tmp, strerror(e));
            goto out;
        }
        done += (size_t)w;
    }
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        int e = errno;
        err = dp_errinfo_set(ei, DP_EIO, "%s: fsync failed: %s", tmp, strerror(e));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        err = dp_errinfo_set(ei, DP_EIO, "%s: close failed", tmp);
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        int e = errno;
        err = dp_errinfo_set(ei, DP_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
        goto out;
    }
    tmp[0] = '\0';
out:
    if (fd >= 0)
        close(fd);
    if (tmp[0] != '\0' && err != DP_OK)
        unlink(tmp);
    dp_free(buf);
    return err;
}
