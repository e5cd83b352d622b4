/*
 * Ids, token hashing, time formatting and parsing, name, device and ONNX
 * validation.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "server/ids.h"
#include "server/validate.h"
#include "tests/unit/test_util.h"

Test(srv_ids, ids_and_tokens_have_their_shape)
{
    char id[SRV_ID_MAX], id2[SRV_ID_MAX], tok[SRV_TOKEN_LEN];
    cr_assert_eq(srv_id_new("job_", id), DP_OK);
    cr_assert_eq(srv_id_new("job_", id2), DP_OK);
    cr_assert(srv_id_valid(id, "job_"));
    cr_assert(!srv_id_valid(id, "tsk_"));
    cr_assert_str_neq(id, id2);
    cr_assert_eq(srv_token_new(tok), DP_OK);
    cr_assert_eq(strlen(tok), 68);
    cr_assert_eq(strncmp(tok, "dpt_", 4), 0);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_ids, token_hash_is_sha256)
{
    char hex[65];
    /* FIPS 180-4 example "abc". */
    cr_assert_eq(srv_token_hash("abc", hex), DP_OK);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cr_assert_eq(srv_token_hash("", hex), DP_OK);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    DP_ASSERT_NO_LEAKS();
}

Test(srv_ids, times_are_rfc3339_utc)
{
    char b[32];
    srv_time_fmt(0, b);
    cr_assert_str_eq(b, "1970-01-01T00:00:00.000Z");
    srv_time_fmt(1700000000123, b);
    cr_assert_str_eq(b, "2023-11-14T22:13:20.123Z");
    DP_ASSERT_NO_LEAKS();
}

Test(srv_ids, rfc3339_times_parse_back)
{
    static const struct {
        const char *text;
        enum dp_err want;
        int64_t ms;
    } cases[] = {
        {"1970-01-01T00:00:00Z", DP_OK, 0},
        {"2023-11-14T22:13:20.123Z", DP_OK, 1700000000123},
        {"2023-11-14t22:13:20.1234567z", DP_OK, 1700000000123},
        {"2023-11-15T00:13:20+02:00", DP_OK, 1700000000000},
        {"2023-11-14T20:13:20-02:00", DP_OK, 1700000000000},
        {"2024-02-29T00:00:00Z", DP_OK, 1709164800000},
        {"1969-12-31T23:59:59Z", DP_OK, -1000},
        {"2023-02-29T00:00:00Z", DP_EINVAL, 0}, /* not a leap year */
        {"2023-13-01T00:00:00Z", DP_EINVAL, 0},
        {"2023-11-14T24:00:00Z", DP_EINVAL, 0},
        {"2023-11-14T22:13:20", DP_EINVAL, 0}, /* no zone */
        {"2023-11-14 22:13:20Z", DP_EINVAL, 0},
        {"2023-11-14T22:13:20.Z", DP_EINVAL, 0},
        {"2023-11-14T22:13:20Zjunk", DP_EINVAL, 0},
        {"2023-11-14T22:13:20+0200", DP_EINVAL, 0},
        {"tomorrow", DP_EINVAL, 0},
        {"", DP_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = 42;
        cr_assert_eq(srv_time_parse(cases[i].text, &ms), cases[i].want, "%s", cases[i].text);
        if (cases[i].want == DP_OK)
            cr_assert_eq(ms, cases[i].ms, "%s: %lld", cases[i].text, (long long)ms);
    }
    /* What srv_time_fmt writes parses back to the same instant. */
    char b[32];
    int64_t back = 0;
    srv_time_fmt(1234567890987, b);
    cr_assert_eq(srv_time_parse(b, &back), DP_OK);
    cr_assert_eq(back, 1234567890987);
    DP_ASSERT_NO_LEAKS();
}

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
