/*
 * Whole-file reading for the parsers in common/ (safetensors, ONNX), which
 * each take a file's bytes in one buffer.
 */
#ifndef DP_COMMON_FILE_H
#define DP_COMMON_FILE_H

#include <stddef.h>

#include "common/err.h"

/*
 * Reads the regular file at path (at most max_len bytes) into a new buffer
 * (*out, release with dp_free; *out_len bytes, fewer than its size when the
 * file shrank while it was read, which the caller's parser then reports).
 * A FIFO or device is refused without blocking. label names the file in
 * messages (the path, or a shortened form of it).
 */
enum dp_err dp_file_read(const char *path, const char *label, size_t max_len, unsigned char **out,
                         size_t *out_len, struct dp_errinfo *ei);

#endif
