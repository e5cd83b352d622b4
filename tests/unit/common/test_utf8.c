/*
 * dp_utf8_valid accepts well-formed UTF-8 only; dp_utf8_clip stays inside
 * the buffer it is given.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "common/alloc.h"
#include "common/utf8.h"
#include "tests/unit/test_util.h"

Test(utf8, accepts_and_rejects)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"", 1},
        {"conv1.weight", 1},
        {"caf\xc3\xa9", 1},      /* U+00E9 */
        {"\xe2\x82\xac", 1},     /* U+20AC */
        {"\xf0\x9f\x98\x80", 1}, /* U+1F600 */
        {"\xc3", 0},             /* truncated */
        {"\xc0\xaf", 0},         /* overlong '/' */
        {"\xe0\x80\xaf", 0},     /* overlong */
        {"\xed\xa0\x80", 0},     /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 0}, /* above U+10FFFF */
        {"\x80", 0},             /* lone continuation */
        {"ok\xff", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(dp_utf8_valid(cases[i].s), cases[i].ok, "case %zu", i);
    DP_ASSERT_NO_LEAKS();
}

Test(utf8, clip_cuts_on_a_character_boundary)
{
    char buf[8];
    cr_assert_str_eq(dp_utf8_clip(buf, sizeof(buf), "conv1"), "conv1");
    cr_assert_str_eq(dp_utf8_clip(buf, sizeof(buf), "abcdefg"), "abcdefg");
    cr_assert_str_eq(dp_utf8_clip(buf, sizeof(buf), "abcdefgh"), "abcd...");
    /* "abc" + U+00E9 (2 bytes) + "xyz": the cut at 4 would split the e-acute. */
    cr_assert_str_eq(dp_utf8_clip(buf, sizeof(buf), "abc\xc3\xa9xyz"), "abc...");
    cr_assert(dp_utf8_valid(buf));
    DP_ASSERT_NO_LEAKS();
}

/*
 * The size passed is the size the caller has: a string of exactly cap bytes
 * (the case that wrote one byte past the buffer when the API took "max"
 * and needed max + 4) stays inside it. Heap buffers so that ASan sees a
 * write past the end.
 */
Test(utf8, clip_never_writes_past_the_buffer)
{
    static const char long_s[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    for (size_t cap = 4; cap < sizeof(long_s) + 2; cap++) {
        char *buf = dp_malloc(cap);
        cr_assert_not_null(buf);
        for (size_t n = 0; n < sizeof(long_s) && n <= cap + 1; n++) {
            char s[sizeof(long_s)];
            memcpy(s, long_s, n);
            s[n] = '\0';
            dp_utf8_clip(buf, cap, s);
            cr_assert_lt(strlen(buf), cap, "cap %zu, n %zu", cap, n);
            if (n < cap)
                cr_assert_str_eq(buf, s);
        }
        dp_free(buf);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(utf8, controls_are_found)
{
    cr_assert_not(dp_utf8_has_control("conv1 caf\xc3\xa9 \xe2\x82\xac"));
    cr_assert(dp_utf8_has_control("a\x1b"));
    cr_assert(dp_utf8_has_control("del\x7f"));
    cr_assert(dp_utf8_has_control("c1 \xc2\x9b"));
    cr_assert(dp_utf8_has_control("rlo \xe2\x80\xae"));
    cr_assert(dp_utf8_has_control("pdi \xe2\x81\xa9"));
    cr_assert(dp_utf8_has_control("bad \xff"));
    uint32_t c = 0;
    cr_assert_eq(dp_utf8_decode((const unsigned char *)"\xe2\x82\xac", 3, &c), 3);
    cr_assert_eq(c, 0x20AC);
    cr_assert_eq(dp_utf8_decode((const unsigned char *)"\xe2\x82\xac", 2, &c), 0, "cut short");
    cr_assert_eq(dp_utf8_decode((const unsigned char *)"", 0, &c), 0);
}
