/*
 * SSE parsing (see cli_sse.h), after the WHATWG "event stream
 * interpretation" rules, minus the `retry` field (the CLI has its own
 * reconnection policy).
 */
#include "server/cli/cli_sse.h"

#include <string.h>

#include "common/alloc.h"

void cli_sse_init(struct cli_sse *s)
{
    memset(s, 0, sizeof(*s));
}

void cli_sse_free(struct cli_sse *s)
{
    if (s == NULL)
        return;
    dp_free(s->line);
    dp_free(s->data);
    memset(s, 0, sizeof(*s));
}

/* Grows *buf to hold need bytes, up to max; 0 or an error. */
static enum dp_err cli_sse_reserve(char **buf, size_t *cap, size_t need, size_t max)
{
    if (need <= *cap)
        return DP_OK;
    if (need > max)
        return DP_ETOOBIG;
    size_t nc = *cap ? *cap : 256;
    while (nc < need)
        nc *= 2;
    if (nc > max)
        nc = max;
    char *nb = dp_realloc(*buf, nc);
    if (nb == NULL)
        return DP_ENOMEM;
    *buf = nb;
    *cap = nc;
    return DP_OK;
}

/* Handles one complete line (without its terminator). */
static enum dp_err cli_sse_line(struct cli_sse *s, cli_sse_fn fn, void *ud, int *stopped)
{
    const char *l = s->line_len > 0 ? s->line : "";
    size_t n = s->line_len;
    if (n == 0) {
        if (s->has_data) {
            s->data[s->data_len] = '\0';
            if (fn(ud, s->event[0] ? s->event : "message", s->last_id, s->data) != 0)
                *stopped = 1;
        }
        s->has_data = 0;
        s->data_len = 0;
        s->event[0] = '\0';
        return DP_OK;
    }
    if (l[0] == ':')
        return DP_OK; /* a comment (keep-alive) */
    const char *colon = memchr(l, ':', n);
    size_t fn_len = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    if (colon && v < l + n && *v == ' ')
        v++;
    size_t v_len = (size_t)(l + n - v);
    if (fn_len == 4 && memcmp(l, "data", 4) == 0) {
        size_t need = s->data_len + (s->has_data ? 1 : 0) + v_len + 1;
        enum dp_err err = cli_sse_reserve(&s->data, &s->data_cap, need, CLI_SSE_DATA_MAX);
        if (err)
            return err;
        if (s->has_data)
            s->data[s->data_len++] = '\n';
        memcpy(s->data + s->data_len, v, v_len);
        s->data_len += v_len;
        s->has_data = 1;
    } else if (fn_len == 5 && memcmp(l, "event", 5) == 0) {
        size_t k = v_len < sizeof(s->event) - 1 ? v_len : sizeof(s->event) - 1;
        memcpy(s->event, v, k);
        s->event[k] = '\0';
    } else if (fn_len == 2 && memcmp(l, "id", 2) == 0) {
        if (memchr(v, '\0', v_len) == NULL && v_len < sizeof(s->last_id)) {
            memcpy(s->last_id, v, v_len);
            s->last_id[v_len] = '\0';
        }
    }
    return DP_OK; /* unknown fields are ignored, as the format says */
}

enum dp_err cli_sse_feed(struct cli_sse *s, const char *buf, size_t n, cli_sse_fn fn, void *ud,
                         int *stopped)
{
    *stopped = 0;
    for (size_t i = 0; i < n && !*stopped; i++) {
        char c = buf[i];
        if (c == '\n' && s->prev_cr) {
            s->prev_cr = 0; /* the LF of a CRLF whose CR ended the line already */
            continue;
        }
        s->prev_cr = c == '\r';
        if (c == '\n' || c == '\r') {
            enum dp_err err = cli_sse_line(s, fn, ud, stopped);
            s->line_len = 0;
            if (err)
                return err;
            continue;
        }
        enum dp_err err =
            cli_sse_reserve(&s->line, &s->line_cap, s->line_len + 1, CLI_SSE_LINE_MAX);
        if (err)
            return err;
        s->line[s->line_len++] = c;
    }
    return DP_OK;
}
