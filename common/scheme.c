/*
 * The scheme table (see scheme.h), generated from the one X-macro list so
 * that the names, the enum and the validator's facts cannot drift apart.
 */
#include "common/scheme.h"

#include <string.h>

static const struct dp_scheme dp_schemes[DP_SCHEME__COUNT] = {
#define DP__SCHEME_ROW(constant, name, kind, uses_rate, needs_3x3)                                 \
    [constant] = {constant, name, kind, uses_rate, needs_3x3},
    DP_SCHEME_MAP(DP__SCHEME_ROW)
#undef DP__SCHEME_ROW
};

const struct dp_scheme *dp_scheme_get(enum dp_scheme_id id)
{
    if ((int)id < 0 || id >= DP_SCHEME__COUNT)
        return NULL;
    return &dp_schemes[id];
}

const struct dp_scheme *dp_scheme_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < DP_SCHEME__COUNT; i++)
        if (strcmp(dp_schemes[i].name, name) == 0)
            return &dp_schemes[i];
    return NULL;
}

void dp_scheme_names(enum dp_scheme_kind kind, char *buf, size_t cap)
{
    size_t len = 0;
    if (cap == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < DP_SCHEME__COUNT; i++) {
        if (dp_schemes[i].kind != kind)
            continue;
        const char *sep = len > 0 ? ", " : "";
        size_t want = strlen(sep) + strlen(dp_schemes[i].name);
        if (len + want >= cap)
            break; /* truncated at a whole name */
        memcpy(buf + len, sep, strlen(sep));
        memcpy(buf + len + strlen(sep), dp_schemes[i].name, strlen(dp_schemes[i].name) + 1);
        len += want;
    }
}
