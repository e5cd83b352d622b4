/*
 * What a profiling device says about itself when it registers (`serve
 * --profile`): the fields device selectors match and the device table
 * shows (docs/api.md, "Devices"). Everything is detected on the machine
 * itself: /proc/cpuinfo, sysconf, uname, the C compiler's --version, and
 * the OpenCL platforms and devices the ICD loader (libOpenCL.so.1, opened
 * with dlopen; absent is fine) reports.
 */
#ifndef DP_WORKER_AGENT_WK_DEVICE_H
#define DP_WORKER_AGENT_WK_DEVICE_H

#include <jansson.h>

#include "common/err.h"

/*
 * *out = {"cpu", "arch", "isa": ["avx2", "avx512", "amx", "neon", ...],
 * "cores", "threads", "memory_bytes", "os", "kernel", "cc", "opencl":
 * [{"platform", "devices": [...]}]}; fields that cannot be read are left
 * out. Only DP_ENOMEM fails. The caller owns *out.
 */
enum dp_err wk_device_describe(json_t **out);

/*
 * Parses "k=v,k=v" (--device-labels) into *out, a JSON object; "" is {}.
 * DP_EINVAL naming the bad pair otherwise (the server checks the same
 * rules again).
 */
enum dp_err wk_device_labels_parse(const char *list, json_t **out, struct dp_errinfo *ei);

#endif
