/*
 * Device selectors (see device_select.h).
 */
#include "server/device_select.h"

#include <fnmatch.h>
#include <string.h>

enum dp_err srv_device_select_check(const json_t *selectors, const char *where,
                                    struct dp_errinfo *ei)
{
    if (!json_is_array(selectors) || json_array_size(selectors) == 0 ||
        json_array_size(selectors) > SRV_SELECT_MAX)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "%s: must be an array of 1 to %d selectors such as "
                              "{\"name\": \"pi5-*\"} or {\"isa\": \"avx512\"}",
                              where, SRV_SELECT_MAX);
    size_t i;
    const json_t *sel;
    json_array_foreach (selectors, i, sel) {
        if (!json_is_object(sel) || json_object_size(sel) == 0 ||
            json_object_size(sel) > SRV_SELECT_KEYS_MAX)
            return dp_errinfo_set(ei, DP_EINVAL, "%s[%zu]: must be an object of 1 to %d keys",
                                  where, i, SRV_SELECT_KEYS_MAX);
        const char *key;
        const json_t *v;
        json_object_foreach ((json_t *)sel, key, v) {
            if (strlen(key) > SRV_SELECT_VALUE_MAX)
                return dp_errinfo_set(ei, DP_EINVAL, "%s[%zu]: a key is longer than %d bytes",
                                      where, i, SRV_SELECT_VALUE_MAX);
            if (!json_is_string(v) || json_string_length(v) == 0 ||
                json_string_length(v) > SRV_SELECT_VALUE_MAX ||
                strlen(json_string_value(v)) != json_string_length(v))
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "%s[%zu].%s: must be a string of 1 to %d bytes", where, i,
                                      key, SRV_SELECT_VALUE_MAX);
        }
    }
    return DP_OK;
}

/* Whether the description field f equals want or is an array holding it. */
static int field_holds(const json_t *f, const char *want)
{
    if (json_is_string(f))
        return strcmp(json_string_value(f), want) == 0;
    size_t i;
    const json_t *e;
    if (json_is_array(f))
        json_array_foreach (f, i, e)
            if (json_is_string(e) && strcmp(json_string_value(e), want) == 0)
                return 1;
    return 0;
}

/* Whether every key of one selector matches the device. */
static int one_matches(const json_t *sel, const char *name, const json_t *labels,
                       const json_t *description)
{
    const char *key;
    const json_t *v;
    json_object_foreach ((json_t *)sel, key, v) {
        const char *want = json_string_value(v);
        if (want == NULL)
            return 0;
        if (strcmp(key, "name") == 0) {
            if (fnmatch(want, name, 0) != 0)
                return 0;
            continue;
        }
        const json_t *label = json_object_get(labels, key);
        if (label != NULL) {
            if (!field_holds(label, want))
                return 0;
            continue;
        }
        if (!field_holds(json_object_get(description, key), want))
            return 0;
    }
    return 1;
}

int srv_device_select_match(const json_t *selectors, const char *name, const json_t *labels,
                            const json_t *description)
{
    size_t i;
    const json_t *sel;
    json_array_foreach (selectors, i, sel)
        if (json_is_object(sel) && one_matches(sel, name, labels, description))
            return 1;
    return 0;
}
