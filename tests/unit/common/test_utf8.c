/*
 * dp_utf8_valid: accepts well-formed UTF-8 only.
 */
#include <criterion/criterion.h>

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
    char buf[8 + 4];
    cr_assert_str_eq(dp_utf8_clip(buf, 8, "conv1"), "conv1");
    cr_assert_str_eq(dp_utf8_clip(buf, 8, "abcdefgh"), "abcdefgh");
    cr_assert_str_eq(dp_utf8_clip(buf, 8, "abcdefghi"), "abcde...");
    /* "abcd" + U+00E9 (2 bytes) + "xyz": the cut at 5 would split the e-acute. */
    cr_assert_str_eq(dp_utf8_clip(buf, 8, "abcd\xc3\xa9xyz"), "abcd...");
    cr_assert(dp_utf8_valid(buf));
    DP_ASSERT_NO_LEAKS();
}
