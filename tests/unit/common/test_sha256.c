/*
 * dp_sha256: the FIPS 180-4 example vectors, one-shot and incremental in
 * awkward piece sizes, and the hex helpers.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/sha256.h"
#include "tests/unit/test_util.h"

static void hex_of(const void *p, size_t n, char hex[65])
{
    uint8_t d[32];
    cr_assert_eq(dp_sha256(p, n, d), DP_OK);
    dp_sha256_hex(d, hex);
}

Test(sha256, standard_vectors)
{
    static const struct {
        const char *msg, *hex;
    } cases[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrl"
         "mnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char hex[65];
        hex_of(cases[i].msg, strlen(cases[i].msg), hex);
        cr_assert_str_eq(hex, cases[i].hex, "case %zu", i);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(sha256, incremental_matches_one_shot_across_block_edges)
{
    /* One million 'a' (the standard's long vector), fed in pieces of 1..97 bytes. */
    static char buf[1000000];
    memset(buf, 'a', sizeof(buf));
    struct dp_sha256_ctx c;
    cr_assert_eq(dp_sha256_init(&c), DP_OK);
    size_t off = 0, step = 1;
    while (off < sizeof(buf)) {
        size_t n = step < sizeof(buf) - off ? step : sizeof(buf) - off;
        cr_assert_eq(dp_sha256_update(&c, buf + off, n), DP_OK);
        off += n;
        step = step % 97 + 1;
    }
    uint8_t d[32];
    char hex[65];
    cr_assert_eq(dp_sha256_final(&c, d), DP_OK);
    dp_sha256_hex(d, hex);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* Lengths around the 55/56/64-byte padding edges agree with one-shot. */
    for (size_t n = 50; n < 130; n++) {
        char a[65], b[65];
        hex_of(buf, n, a);
        cr_assert_eq(dp_sha256_init(&c), DP_OK);
        cr_assert_eq(dp_sha256_update(&c, buf, n / 2), DP_OK);
        cr_assert_eq(dp_sha256_update(&c, buf + n / 2, n - n / 2), DP_OK);
        cr_assert_eq(dp_sha256_final(&c, d), DP_OK);
        dp_sha256_hex(d, b);
        cr_assert_str_eq(a, b, "length %zu", n);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(sha256, hex_valid_and_file)
{
    cr_assert(
        dp_sha256_hex_valid("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    cr_assert_not(
        dp_sha256_hex_valid("E3B0C44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    cr_assert_not(dp_sha256_hex_valid("e3b0"));
    cr_assert_not(dp_sha256_hex_valid("../../etc/passwd"));
    cr_assert_not(dp_sha256_hex_valid(NULL));
    char dir[256], path[300], hex[65];
    dp_test_tmpdir_make(dir, sizeof(dir), "sha");
    snprintf(path, sizeof(path), "%s/f", dir);
    FILE *f = fopen(path, "wb");
    fputs("abc", f);
    fclose(f);
    uint64_t n = 0;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_sha256_file(path, hex, &n, &ei), DP_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    snprintf(path, sizeof(path), "%s/missing", dir);
    cr_assert_eq(dp_sha256_file(path, hex, NULL, &ei), DP_ENOENT);
    cr_assert(strstr(ei.msg, "missing") != NULL, "%s", ei.msg);
    dp_test_tmpdir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}

Test(sha256, free_abandons_and_accepts_released)
{
    /* A context abandoned half way is released by free; free then and on a
     * zeroed context is a no-op (callers free unconditionally on cleanup). */
    struct dp_sha256_ctx c = {0};
    dp_sha256_free(&c);
    cr_assert_eq(dp_sha256_init(&c), DP_OK);
    cr_assert_eq(dp_sha256_update(&c, "abc", 3), DP_OK);
    cr_assert_eq(c.n_bytes, 3u);
    dp_sha256_free(&c);
    cr_assert_null(c.md);
    dp_sha256_free(&c);
    uint8_t d[32];
    char hex[65];
    cr_assert_eq(dp_sha256_init(&c), DP_OK);
    cr_assert_eq(dp_sha256_final(&c, d), DP_OK);
    cr_assert_null(c.md, "final releases the context");
    dp_sha256_hex(d, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
