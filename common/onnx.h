/*
 * ONNX files: reading and writing the protobuf messages (ModelProto,
 * TensorProto) with protobuf-c, and decoding tensors to plain arrays.
 *
 * The C structures come from onnx.proto as installed by Debian's
 * libonnx-dev, compiled by protoc-c at build time into
 * build/$MODE/gen/onnx.pb-c.{c,h} (no copy of either lives in the repo).
 * Files that use the message fields include "onnx.pb-c.h"; this header
 * only forward-declares the two top-level types so that it compiles alone.
 *
 *   struct Onnx__ModelProto *mp;
 *   err = dp_onnx_model_read("model.onnx", &mp, &ei);
 *   ... dp_onnx_import(mp, &model, &ei) (onnx_import.h) ...
 *   dp_onnx_model_free(mp);
 *
 * Untrusted input: before protobuf-c sees a buffer, a wire-format walk
 * checks every length against what is left, refuses groups, bounds the
 * nesting depth (protobuf-c recurses without limit) and bounds the memory
 * the decoded messages will take, so a malformed, truncated or hostile
 * file is an error with a message, never a crash or an allocation out of
 * proportion to its size. All memory comes from dp_malloc.
 */
#ifndef DP_COMMON_ONNX_H
#define DP_COMMON_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct Onnx__ModelProto;
struct Onnx__TensorProto;

/* Largest ONNX file read (protobuf's own limit is 2 GiB). */
#define DP_ONNX_FILE_MAX ((size_t)1 << 31)
/* Deepest message nesting accepted (graphs inside attributes inside nodes...). */
#define DP_ONNX_DEPTH_MAX 32
/* Bound on the decoded messages' memory: this many times the file size, plus a fixed 64 MiB. */
#define DP_ONNX_MEM_FACTOR 16

/*
 * Decodes a ModelProto from buf (len bytes, borrowed; not kept).
 * out: receives a new message to release with dp_onnx_model_free; NULL on failure.
 * Returns DP_OK; DP_ETOOBIG (file or decoded size over the limits, nesting
 * too deep); DP_ETRUNC (a length runs past the end); DP_EFORMAT (not a
 * protobuf message of that type); DP_ENOMEM. Any thread.
 */
enum dp_err dp_onnx_model_parse(const uint8_t *buf, size_t len, struct Onnx__ModelProto **out,
                                struct dp_errinfo *ei);

/* As dp_onnx_model_parse, reading the file at path (at most DP_ONNX_FILE_MAX
 * bytes); adds DP_ENOENT and DP_EIO, and messages that name the file. */
enum dp_err dp_onnx_model_read(const char *path, struct Onnx__ModelProto **out,
                               struct dp_errinfo *ei);

/* Releases a message from dp_onnx_model_parse/read. NULL is a no-op. */
void dp_onnx_model_free(struct Onnx__ModelProto *mp);

/* The same three for a lone TensorProto (the .pb files of ONNX's test data). */
enum dp_err dp_onnx_tensor_parse(const uint8_t *buf, size_t len, struct Onnx__TensorProto **out,
                                 struct dp_errinfo *ei);
enum dp_err dp_onnx_tensor_read(const char *path, struct Onnx__TensorProto **out,
                                struct dp_errinfo *ei);
void dp_onnx_tensor_free(struct Onnx__TensorProto *t);

/*
 * Number of elements of t: the product of its dims (1 for a scalar).
 * Returns DP_EFORMAT for a negative dimension, DP_ETOOBIG past 2^31 elements.
 */
enum dp_err dp_onnx_tensor_numel(const struct Onnx__TensorProto *t, size_t *n,
                                 struct dp_errinfo *ei);

/*
 * Decodes t's values as floats: FLOAT, DOUBLE, INT8, UINT8, INT32 and INT64
 * tensors, from the typed fields or raw_data (little-endian), whose size must match the dims
 * exactly. out: a new array of *n floats the caller must dp_free (NULL and
 * 0 on failure; a 1-float array for an empty tensor). Returns DP_OK;
 * DP_EUNSUPPORTED for other element types and external data; DP_EFORMAT
 * when the data does not match the dims; DP_ENOMEM.
 */
enum dp_err dp_onnx_tensor_floats(const struct Onnx__TensorProto *t, float **out, size_t *n,
                                  struct dp_errinfo *ei);

/* The same for integer tensors (INT64, INT32), as int64_t. */
enum dp_err dp_onnx_tensor_int64s(const struct Onnx__TensorProto *t, int64_t **out, size_t *n,
                                  struct dp_errinfo *ei);

/*
 * Encodes mp and writes it to path atomically (temporary file beside it,
 * fsync, rename). Returns DP_OK; DP_ENOMEM; an I/O code with the file named.
 */
enum dp_err dp_onnx_model_write(const struct Onnx__ModelProto *mp, const char *path,
                                struct dp_errinfo *ei);

/* The protobuf-c allocator over dp_malloc/dp_free, for code that builds messages. */
struct ProtobufCAllocator *dp_onnx_allocator(void);

#endif
