/*
 * Validation of what clients send that a JSON schema check does not cover:
 * object names, a worker's free-form device description, uploaded model
 * files and dataset archives. Every function names the problem in
 * ei (DP_EINVAL for a bad name, DP_EFORMAT/DP_ETRUNC for a bad file) and
 * reads files in bounded chunks; none trusts a size or offset it reads.
 */
#ifndef DP_SERVER_VALIDATE_H
#define DP_SERVER_VALIDATE_H

#include <jansson.h>

#include "common/err.h"

/* Longest object name, in bytes. */
#define SRV_NAME_MAX 128

/* A name for a team, token, model, dataset or job: 1..SRV_NAME_MAX bytes of
 * valid UTF-8, no control characters (C0, C1, bidi: dp_utf8_is_control), not path-like (no '/',
 * '\\', no leading '.'). field names the field in the message. */
enum dp_err srv_validate_name(const char *name, const char *field, struct dp_errinfo *ei);

/* Bounds of a worker's device description, which every admin (and teams,
 * for the workers they see) reads back from /api/v1/workers. */
#define SRV_DEVICE_MAX       (16 * 1024) /* bytes, as compact JSON */
#define SRV_DEVICE_DEPTH_MAX 8           /* nested objects and arrays, the top one included */

/* A worker's "device": a JSON object of at most SRV_DEVICE_MAX bytes as
 * compact JSON (DP_ETOOBIG, a 413) nested at most SRV_DEVICE_DEPTH_MAX
 * deep (DP_EINVAL). field names it in the message. */
enum dp_err srv_validate_device(const json_t *device, const char *field, struct dp_errinfo *ei);

/* An uploaded model: format "safetensors" (a dnnpress checkpoint, loaded
 * and checked whole) or "onnx" (srv_validate_onnx). */
enum dp_err srv_validate_model(const char *path, const char *format, struct dp_errinfo *ei);

/*
 * ONNX upload check: first the protobuf framing of the top-level
 * ModelProto (every field key and length well formed and inside the file,
 * ir_version (1) and graph (7) present; messages name the byte), then the
 * ONNX importer (common/onnx_import.h): every operator supported (the
 * message lists the unsupported ones with their node names), shapes
 * consistent, sizes bounded.
 */
enum dp_err srv_validate_onnx(const char *path, struct dp_errinfo *ei);

/* An uploaded dataset: a tar archive (common/dataset.h: ustar, pax or GNU,
 * plain or gzipped, the member rules the worker's extraction applies too)
 * whose members are exactly the files docs/api.md lists for format ("idx",
 * "cifar10", "npy"), each validated (headers, sizes, labels). */
enum dp_err srv_validate_dataset(const char *path, const char *format, struct dp_errinfo *ei);

#endif
