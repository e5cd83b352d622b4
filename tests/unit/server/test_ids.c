/*
 * Ids, token hashing, time formatting, name and ONNX validation.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

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
