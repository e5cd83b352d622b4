/*
 * Validation of what clients send that is not JSON (server/validate.c):
 * names, worker device descriptions, ONNX framing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "server/validate.h"
#include "tests/unit/test_util.h"

Test(srv_validate, device_descriptions_are_bounded)
{
    struct dp_errinfo ei = {0};
    json_t *ok = json_pack("{s:s, s:i, s:[{s:s}]}", "cpu", "x86", "cores", 16, "gpus", "name", "h");
    cr_assert_eq(srv_validate_device(ok, "body.device", &ei), DP_OK, "%s", ei.msg);
    json_t *arr = json_array();
    cr_assert_eq(srv_validate_device(arr, "body.device", &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "body.device") != NULL, "%s", ei.msg);
    /* Exactly at the size limit passes, one byte over is 413: {"p":"..."}
     * is the string plus 8 bytes. */
    char *pad = dp_calloc(SRV_DEVICE_MAX, 1);
    cr_assert_not_null(pad);
    memset(pad, 'x', SRV_DEVICE_MAX - 7);
    json_t *big = json_pack("{s:s}", "p", pad);
    cr_assert_eq(srv_validate_device(big, "body.device", &ei), DP_ETOOBIG);
    cr_assert(strstr(ei.msg, "16384") != NULL, "%s", ei.msg);
    json_decref(big);
    pad[SRV_DEVICE_MAX - 8] = '\0';
    big = json_pack("{s:s}", "p", pad);
    cr_assert_eq(json_dumpb(big, NULL, 0, JSON_COMPACT), (size_t)SRV_DEVICE_MAX);
    cr_assert_eq(srv_validate_device(big, "body.device", &ei), DP_OK, "%s", ei.msg);
    json_decref(big);
    dp_free(pad);
    /* Depth: the top object counts, so SRV_DEVICE_DEPTH_MAX levels pass. */
    json_t *deep = json_object();
    for (int d = 1; d < SRV_DEVICE_DEPTH_MAX; d++)
        deep = json_pack("{s:o}", "d", deep);
    cr_assert_eq(srv_validate_device(deep, "body.device", &ei), DP_OK, "%s", ei.msg);
    deep = json_pack("{s:[o]}", "d", deep);
    cr_assert_eq(srv_validate_device(deep, "body.device", &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "deep") != NULL, "%s", ei.msg);
    json_decref(deep);
    json_decref(arr);
    json_decref(ok);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_validate, names)
{
    static const struct {
        const char *name;
        enum dp_err want;
    } cases[] = {
        {"lenet5 run 1", DP_OK}, {"résumé", DP_OK},        {"", DP_EINVAL},
        {"../etc", DP_EINVAL},   {"a/b", DP_EINVAL},       {"a\\b", DP_EINVAL},
        {".hidden", DP_EINVAL},  {"tab\there", DP_EINVAL}, {"\xff\xfe", DP_EINVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dp_errinfo ei = {0};
        cr_assert_eq(srv_validate_name(cases[i].name, "name", &ei), cases[i].want, "case %zu", i);
        if (cases[i].want)
            cr_assert(strncmp(ei.msg, "name:", 5) == 0, "%s", ei.msg);
    }
    char longname[200];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    cr_assert_eq(srv_validate_name(longname, "name", NULL), DP_EINVAL);
    DP_ASSERT_NO_LEAKS();
}

static enum dp_err onnx_check(const unsigned char *bytes, size_t n, struct dp_errinfo *ei)
{
    char dir[256], path[300];
    dp_test_tmpdir_make(dir, sizeof(dir), "onnx");
    snprintf(path, sizeof(path), "%s/m.onnx", dir);
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
    enum dp_err err = srv_validate_onnx(path, ei);
    dp_test_tmpdir_remove(dir);
    return err;
}

Test(srv_validate, onnx_framing)
{
    static const unsigned char good[] = {0x08, 0x08, 0x3a, 0x03, 0x12, 0x01, 'g'};
    static const unsigned char no_graph[] = {0x08, 0x08};
    static const unsigned char overrun[] = {0x08, 0x08, 0x3a, 0x7f, 0x12};
    static const unsigned char bad_wire[] = {0x0f, 0x00};
    struct dp_errinfo ei = {0};
    /* Well framed, but its graph is empty: the importer refuses it. */
    cr_assert_eq(onnx_check(good, sizeof(good), &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "onnx model upload") != NULL, "%s", ei.msg);
    cr_assert_eq(onnx_check(no_graph, sizeof(no_graph), &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "graph") != NULL, "%s", ei.msg);
    cr_assert_eq(onnx_check(overrun, sizeof(overrun), &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "past the end") != NULL, "%s", ei.msg);
    cr_assert_eq(onnx_check(bad_wire, sizeof(bad_wire), &ei), DP_EFORMAT);
    cr_assert_eq(onnx_check((const unsigned char *)"", 0, &ei), DP_EFORMAT);
    DP_ASSERT_NO_LEAKS();
}
