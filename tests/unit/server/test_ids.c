/*
 * Ids, token hashing, time formatting and parsing (server/ids.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "server/ids.h"
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
