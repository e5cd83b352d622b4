/*
 * Device selectors (server/device_select.c): what a job's profile.devices
 * may hold, and which devices a selector list matches (name globs, labels,
 * description fields and arrays; and within a selector, or across them).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "server/device_select.h"
#include "tests/unit/test_util.h"

static json_t *sel(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert_not_null(j, "%s: %s", text, je.text);
    return j;
}

/* Whether text (selectors) matches the device name/labels/description. */
static int match(const char *text, const char *name, const char *labels, const char *desc)
{
    json_t *s = sel(text), *l = sel(labels), *d = sel(desc);
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_device_select_check(s, "devices", &ei), DP_OK, "%s: %s", text, ei.msg);
    int m = srv_device_select_match(s, name, l, d);
    json_decref(s);
    json_decref(l);
    json_decref(d);
    return m;
}

Test(srv_device_select, names_labels_and_description_fields_match)
{
    const char *lab = "{\"board\": \"pi5\", \"site\": \"home\"}";
    const char *desc =
        "{\"isa\": [\"neon\", \"dotprod\"], \"arch\": \"aarch64\", \"board\": \"x\"}";
    cr_assert(match("[{\"name\": \"pi5-*\"}]", "pi5-kitchen", lab, desc));
    cr_assert(!match("[{\"name\": \"pi5-*\"}]", "x86-1", lab, desc));
    cr_assert(match("[{\"name\": \"pi?-[a-z]*\"}]", "pi5-kitchen", lab, desc));
    cr_assert(match("[{\"board\": \"pi5\"}]", "d", lab, desc));
    /* A label wins over the description field of the same name. */
    cr_assert(!match("[{\"board\": \"x\"}]", "d", lab, desc));
    cr_assert(match("[{\"isa\": \"neon\"}]", "d", lab, desc));
    cr_assert(!match("[{\"isa\": \"avx512\"}]", "d", lab, desc));
    cr_assert(match("[{\"arch\": \"aarch64\"}]", "d", lab, desc));
    cr_assert(!match("[{\"missing\": \"v\"}]", "d", lab, desc));
    /* Every key of a selector (and), any selector (or). */
    cr_assert(!match("[{\"board\": \"pi5\", \"site\": \"lab\"}]", "d", lab, desc));
    cr_assert(
        match("[{\"board\": \"pi5\", \"site\": \"home\", \"isa\": \"dotprod\"}]", "d", lab, desc));
    cr_assert(match("[{\"site\": \"lab\"}, {\"name\": \"d\"}]", "d", lab, desc));
    DP_ASSERT_NO_LEAKS();
}

Test(srv_device_select, malformed_selectors_are_refused_naming_the_field)
{
    static const char *const bad[] = {
        "{}",
        "[]",
        "[1]",
        "[{}]",
        "[{\"name\": 3}]",
        "[{\"name\": \"\"}]",
        "[{\"a\":\"1\",\"b\":\"1\",\"c\":\"1\",\"d\":\"1\",\"e\":\"1\",\"f\":\"1\",\"g\":\"1\","
        "\"h\":\"1\",\"i\":\"1\"}]",
        "[{\"name\": "
        "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *s = sel(bad[i]);
        struct dp_errinfo ei = {0};
        cr_assert_eq(srv_device_select_check(s, "body.profile.devices", &ei), DP_EINVAL, "%s",
                     bad[i]);
        cr_assert(strstr(ei.msg, "body.profile.devices") != NULL, "%s", ei.msg);
        json_decref(s);
    }
    json_t *many = json_array();
    for (int i = 0; i < SRV_SELECT_MAX + 1; i++)
        json_array_append_new(many, json_pack("{s:s}", "name", "*"));
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_device_select_check(many, "d", &ei), DP_EINVAL);
    json_array_remove(many, 0);
    cr_assert_eq(srv_device_select_check(many, "d", &ei), DP_OK, "%s", ei.msg);
    json_decref(many);
    DP_ASSERT_NO_LEAKS();
}
