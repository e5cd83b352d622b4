/*
 * Extraction of uploaded datasets: an uncompressed POSIX tar (ustar) of
 * plain files whose names a dataset format allows (docs/api.md). The tar
 * comes from a team over the network, so nothing in it is trusted: every
 * header's checksum, size and type are checked, names must be plain file
 * names from the format's list, and the total written is bounded.
 */
#ifndef DP_WORKER_AGENT_WK_TAR_H
#define DP_WORKER_AGENT_WK_TAR_H

#include <stdint.h>

#include "common/err.h"

/*
 * Extracts the tar at tar_path into the existing directory dir for dataset
 * format ("idx", "cifar10" or "npy"), writing at most max_bytes in total.
 * NPY members x_train/y_train/x_test/y_test.npy are stored under the
 * engine's names train_images/train_labels/test_images/test_labels.npy.
 * On success writes the engine's data spec ("idx:DIR", ...) into data_spec
 * (cap bytes). Fails with DP_EFORMAT naming the member or the header that is
 * wrong.
 */
enum dp_err wk_tar_extract_dataset(const char *tar_path, const char *format, const char *dir,
                                   uint64_t max_bytes, char *data_spec, size_t cap,
                                   struct dp_errinfo *ei);

#endif
