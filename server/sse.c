/*
 * GET /api/v1/jobs/{id}/events: the job's events as Server-Sent Events.
 *
 * DESIGN
 * Each event is "id: N\nevent: TYPE\ndata: JSON\n\n" where N is the event's
 * number within its job (1, 2, 3, ...; a global row number would tell every
 * team how busy the others are), so a client that reconnects with
 * Last-Event-ID: N (or ?after=N) gets exactly the job's events after N. The response is produced
 * by a libmicrohttpd content reader: it reads a batch of events from the
 * store, and when there is nothing new it parks the connection (suspend)
 * until a write wakes it or 15 s pass, when it sends a keep-alive comment.
 * The stream ends once the job is terminal and every event was sent; the
 * store reads events and state in one snapshot, so none is missed. After
 * each wake-up the token is looked up again: a revoked or expired token
 * ends the stream with an "event: error" frame (a revocation wakes every
 * parked stream, expiry is seen at the next keep-alive at the latest).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "server/http_int.h"
#include "server/ids.h"
#include "server/text.h"

#define SSE_BATCH        64
#define SSE_KEEPALIVE_MS 15000

struct sse_stream {
    struct srv_http *h;
    struct srv_req *r; /* owns the waiter; outlives the response */
    struct srv_principal who;
    char job_id[160];
    int64_t last_id;
    int64_t keepalive_due;
    int ended;
    int resumed;         /* parked since the last look: check the token again */
    struct srv_text out; /* formatted, not yet sent from pos on */
    size_t pos;
};

enum dp_err srv_sse_format(struct srv_text *out, const json_t *events, int64_t *last_id)
{
    size_t i;
    json_t *ev;
    json_array_foreach (events, i, ev) {
        char head[128];
        int64_t id = (int64_t)json_integer_value(json_object_get(ev, "id"));
        int n = snprintf(head, sizeof(head), "id: %" PRId64 "\nevent: %s\ndata: ", id,
                         json_string_value(json_object_get(ev, "type")));
        if (n < 0 || (size_t)n >= sizeof(head))
            return DP_ETOOBIG;
        enum dp_err err = srv_text_add(out, head, (size_t)n);
        json_t *data = json_object_get(ev, "data");
        if (!err && data)
            err = srv_text_add_json(out, data, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!err)
            err = srv_text_add(out, "\n\n", 2);
        if (err)
            return err;
        *last_id = id;
    }
    return DP_OK;
}

enum dp_err srv_sse_after_parse(const char *text, int64_t *after)
{
    *after = 0;
    if (text == NULL)
        return DP_OK;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (errno || end == text || *end || x < 0)
        return DP_EINVAL;
    *after = (int64_t)x;
    return DP_OK;
}

/* Appends "event: error" with {"code":"unauthorized","message":msg}. */
static enum dp_err sse_error_frame(struct srv_text *out, const char *msg)
{
    json_t *d = json_pack("{s:s, s:s}", "code", "unauthorized", "message", msg);
    if (d == NULL)
        return DP_ENOMEM;
    enum dp_err err = srv_text_add(out, "event: error\ndata: ", 19);
    if (!err)
        err = srv_text_add_json(out, d, JSON_COMPACT);
    if (!err)
        err = srv_text_add(out, "\n\n", 2);
    json_decref(d);
    return err;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct sse_stream *s = cls;
    (void)pos;
    for (;;) {
        if (s->pos < s->out.len) {
            size_t n = s->out.len - s->pos < max ? s->out.len - s->pos : max;
            memcpy(out, s->out.p + s->pos, n);
            s->pos += n;
            if (s->pos == s->out.len)
                s->pos = s->out.len = 0;
            return (ssize_t)n;
        }
        if (s->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (s->resumed) {
            s->resumed = 0;
            struct dp_errinfo ei = {0};
            if (srv_auth_recheck(s->h, s->r, &ei) != DP_OK) {
                /* The status line is long sent: say why in a last frame
                 * (no id, so a resume point is not lost) and end. */
                if (sse_error_frame(&s->out, ei.msg) != DP_OK)
                    return MHD_CONTENT_READER_END_WITH_ERROR;
                s->ended = 1;
                continue;
            }
        }
        uint64_t gen = srv_store_generation(s->h->st);
        json_t *events = NULL;
        int terminal = 0;
        enum dp_err err = srv_store_events_after(s->h->st, &s->who, s->job_id, s->last_id,
                                                 SSE_BATCH, &events, &terminal, NULL);
        if (err)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        size_t n_events = json_array_size(events);
        err = srv_sse_format(&s->out, events, &s->last_id);
        json_decref(events);
        if (err)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (n_events > 0)
            continue;
        if (terminal) {
            s->ended = 1;
            continue;
        }
        int64_t now = srv_mono_ms();
        if (now >= s->keepalive_due) {
            s->keepalive_due = now + SSE_KEEPALIVE_MS;
            if (srv_text_add(&s->out, ": keep-alive\n\n", 14) != DP_OK)
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        int parked = srv_park(s->h, s->r, gen, s->keepalive_due);
        if (parked == SRV_PARKED) {
            s->resumed = 1;
            return 0; /* suspended; called again after a wake-up */
        }
        if (parked == SRV_PARK_STOPPING)
            s->ended = 1; /* the server is stopping: end the stream cleanly */
    }
}

static void sse_free(void *cls)
{
    struct sse_stream *s = cls;
    srv_text_free(&s->out);
    dp_free(s);
}

SRV_HANDLER(srv_api_job_events)
{
    int64_t after = 0;
    const char *a = srv_header(conn, "Last-Event-ID");
    if (a == NULL)
        a = srv_query(conn, "after");
    if (srv_sse_after_parse(a, &after) != DP_OK)
        return srv_reply_error(conn, r, 400, "invalid_request",
                               "Last-Event-ID / after: must be a non-negative integer");
    /* 404 before the stream starts when the job is not the caller's. */
    json_t *probe = NULL;
    int terminal = 0;
    struct dp_errinfo ei = {0};
    enum dp_err err =
        srv_store_events_after(h->st, &r->who, r->params[0], INT64_MAX, 1, &probe, &terminal, &ei);
    json_decref(probe);
    if (err)
        return srv_reply_err(conn, r, err, &ei);

    struct sse_stream *s = dp_calloc(1, sizeof(*s));
    if (s == NULL)
        return MHD_NO;
    s->h = h;
    s->r = r;
    s->who = r->who;
    snprintf(s->job_id, sizeof(s->job_id), "%s", r->params[0]);
    s->last_id = after;
    s->keepalive_due = srv_mono_ms() + SSE_KEEPALIVE_MS;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, s, sse_free);
    if (resp == NULL) {
        sse_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return srv_reply_response(conn, r, MHD_HTTP_OK, resp);
}
