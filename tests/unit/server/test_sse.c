/*
 * The event stream's pure parts (server/sse.c): framing of events as
 * Server-Sent Events and the Last-Event-ID / ?after= parser that decides
 * where a reconnecting client resumes.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "server/http_int.h"
#include "server/text.h"
#include "tests/unit/test_util.h"

Test(srv_sse, events_become_frames_and_the_last_id_is_the_resume_point)
{
    json_t *events =
        json_pack("[{s:I, s:s, s:{s:i}}, {s:I, s:s, s:{s:s}}, {s:I, s:s}]", "id", (json_int_t)7,
                  "type", "state", "data", "epoch", 1, "id", (json_int_t)9, "type", "log", "data",
                  "line", "a\nb: \"c\"", "id", (json_int_t)12, "type", "checkpoint");
    struct srv_text out = {0};
    int64_t last = 3;
    cr_assert_eq(srv_sse_format(&out, events, &last), DP_OK);
    cr_assert_str_eq(out.p, "id: 7\nevent: state\ndata: {\"epoch\":1}\n\n"
                            "id: 9\nevent: log\ndata: {\"line\":\"a\\nb: \\\"c\\\"\"}\n\n"
                            "id: 12\nevent: checkpoint\ndata: \n\n");
    cr_assert_eq(last, 12);
    /* A newline inside the data stays escaped: one data line per frame. */
    const char *second = strstr(out.p, "id: 9");
    cr_assert_not_null(second);
    cr_assert_eq(strstr(second, "\n\n") - strstr(second, "data: "),
                 (long)strlen("data: {\"line\":\"a\\nb: \\\"c\\\"\"}"));
    srv_text_free(&out);
    json_decref(events);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_sse, nothing_to_frame_keeps_the_resume_point)
{
    json_t *events = json_array();
    struct srv_text out = {0};
    int64_t last = 41;
    cr_assert_eq(srv_sse_format(&out, events, &last), DP_OK);
    cr_assert_eq(out.len, 0);
    cr_assert_eq(last, 41);
    json_decref(events);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_sse, a_type_too_long_to_frame_stops_before_it)
{
    char type[200];
    memset(type, 't', sizeof(type) - 1);
    type[sizeof(type) - 1] = '\0';
    json_t *events = json_pack("[{s:I, s:s, s:n}, {s:I, s:s, s:n}]", "id", (json_int_t)1, "type",
                               "ok", "data", "id", (json_int_t)2, "type", type, "data");
    struct srv_text out = {0};
    int64_t last = 0;
    cr_assert_eq(srv_sse_format(&out, events, &last), DP_ETOOBIG);
    cr_assert_eq(last, 1, "the stream resumes after the last event really framed");
    cr_assert_str_eq(out.p, "id: 1\nevent: ok\ndata: null\n\n");
    srv_text_free(&out);
    json_decref(events);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_sse, last_event_id_is_a_non_negative_integer)
{
    static const struct {
        const char *text;
        enum dp_err err;
        int64_t after;
    } cases[] = {
        {NULL, DP_OK, 0},
        {"0", DP_OK, 0},
        {"42", DP_OK, 42},
        {"9223372036854775807", DP_OK, INT64_MAX},
        {"9223372036854775808", DP_EINVAL, 0},
        {"-1", DP_EINVAL, 0},
        {"", DP_EINVAL, 0},
        {"12abc", DP_EINVAL, 0},
        {"abc", DP_EINVAL, 0},
        {"1.5", DP_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t after = -7;
        cr_assert_eq(srv_sse_after_parse(cases[i].text, &after), cases[i].err, "'%s'",
                     cases[i].text ? cases[i].text : "(null)");
        if (cases[i].err == DP_OK)
            cr_assert_eq(after, cases[i].after, "'%s'", cases[i].text ? cases[i].text : "(null)");
    }
    DP_ASSERT_NO_LEAKS();
}
