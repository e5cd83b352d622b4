/*
 * Unpacking a flat tar archive: the counterpart of tar_write.h, for the
 * code bundle a profiling device downloads (docs/api.md, "Devices"). The
 * archive came over the network, so nothing in it is trusted.
 */
#ifndef DP_COMMON_TAR_READ_H
#define DP_COMMON_TAR_READ_H

#include <stdint.h>

#include "common/err.h"

/*
 * Extracts every member of the ustar archive at path into the existing
 * directory dir. Only regular files with plain names are accepted (no
 * '/', not "." or "..", no control bytes, at most 100 bytes): a link, a
 * directory or a path is DP_EFORMAT naming the member, as is a header whose
 * checksum or size field is wrong, or an archive cut short (DP_ETRUNC).
 * At most max_bytes of file data in all (DP_ETOOBIG) and 4096 members. A
 * member's mode keeps only its owner-execute bit (0755 or 0644). Any thread.
 */
enum dp_err dp_tar_extract_flat(const char *path, const char *dir, uint64_t max_bytes,
                                struct dp_errinfo *ei);

#endif
