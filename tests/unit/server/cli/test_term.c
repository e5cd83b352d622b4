/* cli_term: what the CLI prints of the server's answers is terminal-safe. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "server/cli/cli_term.h"
#include "tests/unit/test_util.h"

Test(cli_term, escapes_controls_and_keeps_text)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain text, caf\xc3\xa9", "plain text, caf\xc3\xa9"},
        {"\x1b]0;title\x07", "\\x1B]0;title\\x07"},
        {"a\rb\nc\td", "a\\x0Db\\x0Ac\\x09d"},
        {"del\x7f", "del\\x7F"},
        {"csi\xc2\x9b"
         "31m",
         "csi\\u009B31m"}, /* C1 CSI, two bytes */
        {"\xe2\x80\xae"
         "evil",
         "\\u202Eevil"},                                  /* right-to-left override */
        {"\xe2\x81\xa6x\xe2\x81\xa9", "\\u2066x\\u2069"}, /* isolates */
        {"bad \xff\xc3", "bad \\xFF\\xC3"},               /* not UTF-8, cut sequence */
        {"\xc0\x80", "\\xC0\\x80"},                       /* overlong NUL */
        {"\xed\xa0\x80", "\\xED\\xA0\\x80"},              /* surrogate */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[128];
        cr_assert_str_eq(cli_term_escape(buf, sizeof(buf), cases[i].in), cases[i].out, "case %zu",
                         i);
        cr_assert_eq(cli_term_unsafe(cases[i].in), strcmp(cases[i].in, cases[i].out) != 0,
                     "case %zu", i);
    }
}

Test(cli_term, escape_fits_the_buffer)
{
    char buf[8];
    /* "\x1B" is four bytes: the second one does not fit whole and is left out. */
    cr_assert_str_eq(cli_term_escape(buf, sizeof(buf), "\x1b\x1b"), "\\x1B");
    cr_assert_str_eq(cli_term_escape(buf, sizeof(buf), "abcdefghij"), "abcdefg");
    cr_assert_str_eq(cli_term_escape(buf, 1, "abc"), "");
}

Test(cli_term, json_strings_and_keys_are_escaped_in_place)
{
    json_error_t je;
    json_t *j = json_loads("{\"error\": \"x\\u001b[2Jy\", \"ok\": \"fine\", "
                           "\"tasks\": [{\"attempts\": [\"\\u009b\"]}], \"k\\r\": 1}",
                           0, &je);
    cr_assert_not_null(j, "%s", je.text);
    cr_assert_eq(cli_term_json(j), DP_OK);
    cr_assert_str_eq(json_string_value(json_object_get(j, "error")), "x\\x1B[2Jy");
    cr_assert_str_eq(json_string_value(json_object_get(j, "ok")), "fine");
    json_t *a = json_object_get(json_array_get(json_object_get(j, "tasks"), 0), "attempts");
    cr_assert_str_eq(json_string_value(json_array_get(a, 0)), "\\u009B");
    cr_assert_null(json_object_get(j, "k\r"));
    cr_assert_eq(json_integer_value(json_object_get(j, "k\\x0D")), 1);
    json_decref(j);
    DP_ASSERT_NO_LEAKS();
}
