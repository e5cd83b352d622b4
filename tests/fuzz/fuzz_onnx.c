/*
 * libFuzzer target for the ONNX reader and importer: any byte string is
 * parsed as a ModelProto and, when that succeeds, imported into the IR
 * (and the result freed). Crashes, leaks, undefined behaviour and
 * allocations out of proportion to the input are the bugs it looks for;
 * errors are the expected answer to most inputs.
 *
 *   make fuzz                  (FUZZ_SECONDS, default 60)
 *
 * The seed corpus is generated at build time (tests/fuzz/make_seeds.sh):
 * small models exported by dnnpress-worker and by torch.onnx.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "common/model.h"
#include "common/onnx.h"
#include "common/onnx_import.h"

static void fuzz_quiet(enum dp_log_level level, const char *msg, void *ud)
{
    (void)level;
    (void)msg;
    (void)ud;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct Onnx__ModelProto *mp = NULL;
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    dp_log_set_sink(fuzz_quiet, NULL);
    if (dp_onnx_model_parse(data, size, &mp, &ei) == DP_OK)
        (void)dp_onnx_import(mp, &m, NULL, &ei);
    dp_model_free(m);
    dp_onnx_model_free(mp);
    return 0;
}
