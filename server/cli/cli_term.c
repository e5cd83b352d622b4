/*
 * Terminal-safe text (see cli_term.h). The decoder is common/utf8's strict
 * one (no overlong forms, no surrogates, nothing above U+10FFFF), so that a
 * byte sequence a terminal might read as a control is never passed through.
 */
#include "server/cli/cli_term.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/utf8.h"

int cli_term_unsafe(const char *s)
{
    return dp_utf8_has_control(s);
}

const char *cli_term_escape(char *out, size_t cap, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), used = 0;
    while (n > 0) {
        char esc[16];
        uint32_t c;
        size_t k = dp_utf8_decode(p, n, &c), w;
        const char *piece = esc;
        if (k == 0) {
            k = 1;
            w = (size_t)snprintf(esc, sizeof(esc), "\\x%02X", (unsigned)p[0]);
        } else if (dp_utf8_is_control(c) && c < 0x80) {
            w = (size_t)snprintf(esc, sizeof(esc), "\\x%02X", (unsigned)c);
        } else if (dp_utf8_is_control(c)) {
            w = (size_t)snprintf(esc, sizeof(esc), "\\u%04X", (unsigned)c);
        } else {
            piece = (const char *)p;
            w = k;
        }
        if (used + w >= cap)
            break;
        memcpy(out + used, piece, w);
        used += w;
        p += k, n -= k;
    }
    out[used] = '\0';
    return out;
}

/* The escaped copy of s as a new JSON string (NULL on out of memory). */
static json_t *term_json_string(const char *s)
{
    /* Each input byte becomes at most 6 output bytes ("\u009B" from 2). */
    size_t cap = strlen(s) * 6 + 1;
    char *buf = dp_malloc(cap);
    if (buf == NULL)
        return NULL;
    json_t *v = json_string(cli_term_escape(buf, cap, s));
    dp_free(buf);
    return v;
}

enum dp_err cli_term_json(json_t *j)
{
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        if (!cli_term_unsafe(s))
            return DP_OK;
        json_t *v = term_json_string(s);
        int bad = v == NULL || json_string_set(j, json_string_value(v)) != 0;
        json_decref(v);
        return bad ? DP_ENOMEM : DP_OK;
    }
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach (j, i, v) {
            enum dp_err err = cli_term_json(v);
            if (err)
                return err;
        }
        return DP_OK;
    }
    if (!json_is_object(j))
        return DP_OK;
    /* Keys: collect the unsafe ones first (an object must not change while it is walked). */
    json_t *bad_keys = json_array();
    if (bad_keys == NULL)
        return DP_ENOMEM;
    enum dp_err err = DP_OK;
    const char *key;
    json_t *v;
    json_object_foreach (j, key, v) {
        if (err == DP_OK)
            err = cli_term_json(v);
        if (err == DP_OK && cli_term_unsafe(key) &&
            json_array_append_new(bad_keys, json_string(key)))
            err = DP_ENOMEM;
    }
    size_t i;
    json_t *k;
    json_array_foreach (bad_keys, i, k) {
        if (err)
            break;
        json_t *safe = term_json_string(json_string_value(k));
        json_t *val = json_object_get(j, json_string_value(k));
        if (safe == NULL || json_object_set(j, json_string_value(safe), val) != 0)
            err = DP_ENOMEM;
        else
            json_object_del(j, json_string_value(k));
        json_decref(safe);
    }
    json_decref(bad_keys);
    return err;
}
