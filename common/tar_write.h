/*
 * Packing a directory of files into a tar archive, byte for byte the same
 * for the same files: the worker ships a compiled C bundle this way (the
 * `code` artifact of a compile task, docs/compile.md), and equal bundles
 * must give equal artifacts (the same sha256, stored once).
 */
#ifndef DP_COMMON_TAR_WRITE_H
#define DP_COMMON_TAR_WRITE_H

#include <stdint.h>

#include "common/err.h"

/*
 * Writes every regular file directly in dir (not its subdirectories: dir
 * must hold none, nor links, FIFOs or devices) into a POSIX ustar archive
 * at path, each member named by its plain file name. What makes the output
 * deterministic: members in bytewise order of their names; mtime 0; uid
 * and gid 0 with empty owner names; mode 0755 when the owner may execute
 * the file, else 0644. Names of more than 100 bytes are refused (ustar).
 * At most max_bytes of file data in all (DP_ETOOBIG past it). The archive
 * is written to "<path>.tmp" and renamed, so path is whole or absent.
 * Returns DP_OK, or the failure with ei naming the file. Any thread.
 */
enum dp_err dp_tar_write_dir(const char *dir, const char *path, uint64_t max_bytes,
                             struct dp_errinfo *ei);

#endif
