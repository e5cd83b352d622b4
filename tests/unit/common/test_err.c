/*
 * Tests for common/err.c: names and messages for every code (generated from
 * the same X-macro list the enum comes from, so a code added to the list is
 * covered automatically), errno mapping and dp_errinfo formatting.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/err.h"
#include "common/utf8.h"
#include "tests/unit/test_util.h"

static const struct {
    enum dp_err code;
    int value;
    const char *name;
    const char *msg;
} err_table[] = {
#define ERR_ROW(name, value, msg) {name, value, #name, msg},
    DP_ERR_MAP(ERR_ROW)
#undef ERR_ROW
};

#define N_ERR ((int)(sizeof(err_table) / sizeof(err_table[0])))

TestSuite(err);

Test(err, every_code_has_its_name_and_message)
{
    cr_assert_eq(N_ERR, -(int)DP_ERR__LAST, "the table and DP_ERR__LAST disagree");
    for (int i = 0; i < N_ERR; i++) {
        cr_assert_eq((int)err_table[i].code, err_table[i].value);
        cr_assert_eq((int)err_table[i].code, -i, "codes must be dense and append-only");
        cr_assert_str_eq(dp_err_name(err_table[i].code), err_table[i].name);
        cr_assert_str_eq(dp_strerror(err_table[i].code), err_table[i].msg);
        cr_assert_neq(strlen(err_table[i].msg), 0);
        cr_assert_str_neq(dp_strerror(err_table[i].code), "unknown error");
        for (int j = 0; j < i; j++) {
            cr_assert_str_neq(err_table[i].name, err_table[j].name);
            cr_assert_str_neq(err_table[i].msg, err_table[j].msg);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

Test(err, known_spellings)
{
    cr_assert_str_eq(dp_err_name(DP_OK), "DP_OK");
    cr_assert_str_eq(dp_err_name(DP_EFORMAT), "DP_EFORMAT");
    cr_assert_str_eq(dp_err_name(DP_ETRUNC), "DP_ETRUNC");
    cr_assert_str_eq(dp_strerror(DP_ETRUNC), "truncated data");
    cr_assert_str_eq(dp_strerror(DP_ENOMEM), "out of memory");
    cr_assert_str_eq(dp_strerror(DP_OK), "success");
    DP_ASSERT_NO_LEAKS();
}

Test(err, unknown_codes)
{
    const int bad[] = {1, 7, (int)DP_ERR__LAST, (int)DP_ERR__LAST - 1, -1000, 1 << 30};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_str_eq(dp_err_name((enum dp_err)bad[i]), "DP_E?", "code %d", bad[i]);
        cr_assert_str_eq(dp_strerror((enum dp_err)bad[i]), "unknown error", "code %d", bad[i]);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(err, errinfo_set_formats_and_returns_the_code)
{
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err e = dp_errinfo_set(&ei, DP_EFORMAT, "%s: tensor '%s' has %d dims", "f.st", "w", 9);
    cr_assert_eq(e, DP_EFORMAT);
    cr_assert_eq(ei.code, DP_EFORMAT);
    cr_assert_str_eq(ei.msg, "f.st: tensor 'w' has 9 dims");
    cr_assert_str_eq(dp_errinfo_msg(&ei, DP_EFORMAT), "f.st: tensor 'w' has 9 dims");
    /* A different code than the one recorded falls back to the generic text. */
    cr_assert_str_eq(dp_errinfo_msg(&ei, DP_EIO), "input/output error");
    cr_assert_str_eq(dp_errinfo_msg(NULL, DP_ETOOBIG), "size limit exceeded");
    struct dp_errinfo empty = {DP_EIO, ""};
    cr_assert_str_eq(dp_errinfo_msg(&empty, DP_EIO), "input/output error");
    cr_assert_eq(dp_errinfo_set(NULL, DP_ENOENT, "ignored %d", 1), DP_ENOENT);
    DP_ASSERT_NO_LEAKS();
}

Test(err, errinfo_set_truncates)
{
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct dp_errinfo ei;
    memset(&ei, 0x55, sizeof(ei)); /* no reliance on a zeroed struct */
    dp_errinfo_set(&ei, DP_ETOOBIG, "head:%s", big);
    cr_assert_eq(ei.code, DP_ETOOBIG);
    cr_assert_eq(strlen(ei.msg), sizeof(ei.msg) - 1);
    cr_assert_eq(strncmp(ei.msg, "head:xxx", 8), 0);
    cr_assert_eq(ei.msg[sizeof(ei.msg) - 1], '\0');

    /* Exactly full and one short of full. */
    char fit[sizeof(ei.msg)];
    memset(fit, 'y', sizeof(fit) - 1);
    fit[sizeof(fit) - 1] = '\0';
    dp_errinfo_set(&ei, DP_EIO, "%s", fit);
    cr_assert_str_eq(ei.msg, fit);
    fit[sizeof(fit) - 2] = '\0';
    dp_errinfo_set(&ei, DP_EIO, "%s", fit);
    cr_assert_str_eq(ei.msg, fit);
    DP_ASSERT_NO_LEAKS();
}

/* A message cut short never ends inside a UTF-8 character (messages go
 * into JSON answers); a whole character at the cut stays. */
Test(err, errinfo_set_truncates_on_a_character)
{
    struct dp_errinfo ei;
    for (size_t pre = 0; pre < 4; pre++) {
        char big[800] = "";
        memset(big, 'a', pre);
        for (int i = 0; i < 180; i++)
            strcat(big, "\xf0\x9f\x98\x80"); /* U+1F600, 4 bytes */
        dp_errinfo_set(&ei, DP_EINVAL, "%s", big);
        cr_assert(dp_utf8_valid(ei.msg), "prefix %zu: cut inside a character", pre);
        cr_assert_geq(strlen(ei.msg), sizeof(ei.msg) - 4);
        cr_assert_eq((strlen(ei.msg) - pre) % 4, 0);
    }
    char ascii[400];
    memset(ascii, 'z', sizeof(ascii) - 1);
    ascii[sizeof(ascii) - 1] = '\0';
    dp_errinfo_set(&ei, DP_EINVAL, "%s", ascii);
    cr_assert_eq(strlen(ei.msg), sizeof(ei.msg) - 1);
    DP_ASSERT_NO_LEAKS();
}

/* What a message quotes need not be UTF-8 (a parser's excerpt of the
 * input): each byte that does not start a character becomes '?'. */
Test(err, errinfo_set_makes_utf8)
{
    struct dp_errinfo ei;
    dp_errinfo_set(&ei, DP_EINVAL, "bad '%s'", "a\xff\xc3\xa9\xc3z");
    cr_assert_str_eq(ei.msg, "bad 'a?\xc3\xa9?z'");
    DP_ASSERT_NO_LEAKS();
}

Test(err, errno_mapping)
{
    static const struct {
        int e;
        enum dp_err want;
    } rows[] = {
        {ENOMEM, DP_ENOMEM}, {ENOENT, DP_ENOENT}, {ENOTDIR, DP_ENOENT}, {EINVAL, DP_EINVAL},
        {EEXIST, DP_EEXIST}, {EFBIG, DP_ETOOBIG}, {ENOSPC, DP_ETOOBIG}, {EINTR, DP_EINTERRUPTED},
        {EACCES, DP_EIO},    {EIO, DP_EIO},       {0, DP_EIO},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        cr_assert_eq(dp_err_from_errno(rows[i].e), rows[i].want, "errno %d -> %s", rows[i].e,
                     dp_err_name(dp_err_from_errno(rows[i].e)));
    DP_ASSERT_NO_LEAKS();
}
