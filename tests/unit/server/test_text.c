/*
 * The growing text buffer behind JSON replies, the job list and the event
 * stream.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "server/text.h"
#include "tests/unit/test_util.h"

Test(srv_text, grows_past_its_first_capacity_and_stays_terminated)
{
    struct srv_text t = {0};
    char chunk[300];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 20; i++)
        cr_assert_eq(srv_text_add(&t, chunk, sizeof(chunk)), DP_OK);
    cr_assert_eq(t.len, 20 * sizeof(chunk));
    cr_assert_eq(strlen(t.p), t.len);
    cr_assert(t.cap > t.len);
    srv_text_free(&t);
    cr_assert_null(t.p);
    cr_assert_eq(t.len, 0);
    srv_text_free(&t); /* an empty text frees again */
    DP_ASSERT_NO_LEAKS();
}

Test(srv_text, appends_json_compactly)
{
    struct srv_text t = {0};
    json_t *j = json_pack("{s:i, s:[s]}", "a", 1, "b", "c");
    cr_assert_eq(srv_text_add(&t, "data: ", 6), DP_OK);
    cr_assert_eq(srv_text_add_json(&t, j, JSON_COMPACT), DP_OK);
    cr_assert_str_eq(t.p, "data: {\"a\":1,\"b\":[\"c\"]}");
    /* A bare value needs JSON_ENCODE_ANY; without it the text is unchanged. */
    json_t *n = json_integer(7);
    cr_assert_neq(srv_text_add_json(&t, n, JSON_COMPACT), DP_OK);
    cr_assert_str_eq(t.p, "data: {\"a\":1,\"b\":[\"c\"]}");
    cr_assert_eq(srv_text_add_json(&t, n, JSON_COMPACT | JSON_ENCODE_ANY), DP_OK);
    cr_assert_str_eq(t.p, "data: {\"a\":1,\"b\":[\"c\"]}7");
    json_decref(n);
    json_decref(j);
    srv_text_free(&t);
    DP_ASSERT_NO_LEAKS();
}
