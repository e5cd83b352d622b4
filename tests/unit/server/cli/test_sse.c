/*
 * cli_sse: the event-stream parser, fed whole and one byte at a time.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "server/cli/cli_sse.h"
#include "tests/unit/test_util.h"

struct sse_log {
    char text[2048];
    int n, stop_after;
};

static int sse_collect(void *ud, const char *event, const char *id, const char *data)
{
    struct sse_log *l = ud;
    size_t len = strlen(l->text);
    snprintf(l->text + len, sizeof(l->text) - len, "[%s|%s|%s]", event, id, data);
    return ++l->n == l->stop_after;
}

static void sse_run(const char *in, size_t piece, struct sse_log *l)
{
    struct cli_sse s;
    cli_sse_init(&s);
    size_t n = strlen(in);
    for (size_t off = 0; off < n; off += piece) {
        int stopped = 0;
        size_t k = piece < n - off ? piece : n - off;
        cr_assert_eq(cli_sse_feed(&s, in + off, k, sse_collect, l, &stopped), DP_OK);
        if (stopped)
            break;
    }
    cli_sse_free(&s);
}

Test(cli_sse, events_in_any_piece_size)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"id: 1\nevent: epoch\ndata: {\"epoch\":1}\n\n", "[epoch|1|{\"epoch\":1}]"},
        /* CRLF and CR line ends, a comment, a field without a space. */
        {": keep-alive\r\nid:7\r\nevent:state\r\ndata:x\r\n\r\ndata: y\r\r",
         "[state|7|x][message|7|y]"},
        /* Multi-line data joins with '\n'; an event without data is not dispatched. */
        {"data: a\ndata: b\n\nevent: lonely\n\nid: 9\ndata: c\n\n", "[message||a\nb][message|9|c]"},
        /* Unknown fields are ignored; the event type resets after each dispatch. */
        {"retry: 10\nfoo: bar\nevent: log\ndata: 1\n\ndata: 2\n\n", "[log||1][message||2]"},
        /* An unterminated last event is not dispatched. */
        {"data: done\n\ndata: partial", "[message||done]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t piece = 1; piece <= 64; piece *= 4) {
            struct sse_log l = {"", 0, -1};
            sse_run(cases[i].in, piece, &l);
            cr_assert_str_eq(l.text, cases[i].want, "case %zu, pieces of %zu", i, piece);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

Test(cli_sse, callback_stops_and_limits_hold)
{
    struct sse_log l = {"", 0, 1};
    sse_run("data: 1\n\ndata: 2\n\n", 100, &l);
    cr_assert_str_eq(l.text, "[message||1]");

    /* A line over the cap is refused, not buffered without end. */
    struct cli_sse s;
    cli_sse_init(&s);
    static char big[64 * 1024];
    memset(big, 'x', sizeof(big));
    enum dp_err err = DP_OK;
    int stopped = 0;
    for (size_t sent = 0; sent <= CLI_SSE_LINE_MAX && !err; sent += sizeof(big))
        err = cli_sse_feed(&s, big, sizeof(big), sse_collect, &l, &stopped);
    cr_assert_eq(err, DP_ETOOBIG);
    cli_sse_free(&s);
    DP_ASSERT_NO_LEAKS();
}

Test(cli_sse, allocation_failures_are_clean)
{
    static const char in[] = "id: 1\nevent: epoch\ndata: {\"epoch\":1}\ndata: more\n\n";
    long n;
    int n_fail = 0;
    for (n = 0; n < 100; n++) {
        struct cli_sse s;
        struct sse_log l = {"", 0, -1};
        int stopped = 0;
        cli_sse_init(&s);
        dp_alloc_fail_after(n);
        enum dp_err err = cli_sse_feed(&s, in, sizeof(in) - 1, sse_collect, &l, &stopped);
        dp_alloc_fail_reset();
        cli_sse_free(&s);
        if (err == DP_OK) {
            cr_assert_str_eq(l.text, "[epoch|1|{\"epoch\":1}\nmore]");
            break;
        }
        cr_assert_eq(err, DP_ENOMEM, "fail after %ld", n);
        n_fail++;
    }
    cr_assert_lt(n, 100);
    cr_assert_gt(n_fail, 0);
    DP_ASSERT_NO_LEAKS();
}
