/*
 * `dnnpress watch JOB`: follows the job's Server-Sent Events and shows a
 * live progress line (task, bar, epoch, accuracy, sparsity, ETA) until the
 * job ends; the exit code says how it ended (0 succeeded, 1 failed or
 * cancelled).
 *
 * DESIGN: the server ends the stream after the event that makes the job
 * terminal, so the end of a stream is only a hint: the job is fetched to
 * know whether it really ended, and otherwise the stream is reopened after
 * the last event id seen (Last-Event-ID), so nothing is shown twice and a
 * server restart costs a reconnection, not the watch. On a terminal the
 * progress line is redrawn in place; elsewhere (logs, CI) one line is
 * printed per epoch.
 */
#include "server/cli/cli.h"
#include "server/cli/cli_term.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/cli/cli_progress.h"
#include "server/cli/cli_sse.h"

#define CLI_WATCH_RECONNECT_S 300 /* give up after this long without a connection */
#define CLI_WATCH_IDLE_S      120

struct cli_watch {
    struct cli_ctx *ctx;
    struct cli_sse sse;
    struct cli_progress progress;
    int tty;
    int bar_shown; /* the progress line is on screen without a newline */
    int last_epoch_printed;
    char last_task[32];
    char last_ckpt[64]; /* task/epoch of the last checkpoint line shown */
};

static void cli_watch_clear(struct cli_watch *w)
{
    if (w->bar_shown) {
        fputs("\r\033[K", stdout);
        w->bar_shown = 0;
    }
}

static void cli_watch_show_progress(struct cli_watch *w)
{
    char line[256];
    cli_progress_render(line, sizeof(line), &w->progress, 24);
    if (w->tty) {
        printf("\r\033[K%s", line);
        w->bar_shown = 1;
    } else if (w->progress.epoch != w->last_epoch_printed ||
               strcmp(w->progress.task, w->last_task) != 0) {
        printf("%s\n", line);
        w->last_epoch_printed = w->progress.epoch;
        snprintf(w->last_task, sizeof(w->last_task), "%s", w->progress.task);
    }
    fflush(stdout);
}

/* Prints "a b" on its own line above the progress line. */
static void cli_watch_line(struct cli_watch *w, const char *a, const char *b)
{
    cli_watch_clear(w);
    printf("%s %s\n", a, b);
    if (w->tty && w->progress.task[0] != '\0')
        cli_watch_show_progress(w);
    fflush(stdout);
}

static int cli_watch_on_event(void *ud, const char *event, const char *id, const char *data)
{
    struct cli_watch *w = ud;
    json_t *d = json_loads(data, 0, NULL);
    if (w->ctx->json) {
        json_t *line =
            json_pack("{s:s, s:s, s:O}", "id", id, "event", event, "data", d ? d : json_null());
        if (line != NULL)
            cli_print_json(line);
        json_decref(line);
        json_decref(d);
        return 0;
    }
    /* Everything below prints parts of d: make its strings terminal-safe. */
    if (d != NULL && cli_term_json(d) != DP_OK) {
        json_decref(d);
        return 1;
    }
    if (strcmp(event, "epoch") == 0 && d != NULL) {
        cli_progress_update(&w->progress, d);
        cli_watch_show_progress(w);
    } else if (strcmp(event, "state") == 0 && d != NULL) {
        const char *task = cli_str(d, "task", NULL);
        const char *state = cli_str(d, "state", NULL);
        if (task == NULL)
            task = cli_str(d, "type", NULL);
        if (state == NULL) {
            state = cli_str(d, "job_state", NULL);
            task = NULL;
        }
        char what[64], shown[512];
        snprintf(what, sizeof(what), "%s %-9s", task ? "task" : "job", task ? task : "");
        if (state != NULL)
            cli_watch_line(w, what, state);
        else
            cli_watch_line(w, "state", cli_term_escape(shown, sizeof(shown), data));
    } else if (strcmp(event, "log") == 0 && d != NULL) {
        const char *msg = cli_str(d, "message", NULL);
        /* One line per checkpointed epoch, though the engine may write two. */
        if (strcmp(cli_str(d, "kind", ""), "checkpoint") == 0) {
            char key[64];
            snprintf(key, sizeof(key), "%s/%lld", cli_str(d, "task", ""),
                     (long long)json_integer_value(json_object_get(d, "checkpoint_epoch")));
            if (strcmp(key, w->last_ckpt) == 0)
                msg = NULL;
            snprintf(w->last_ckpt, sizeof(w->last_ckpt), "%s", key);
        }
        if (msg != NULL) {
            char what[64];
            snprintf(what, sizeof(what), "%s:", cli_str(d, "task", "log"));
            cli_watch_line(w, what, msg);
        }
    } else if (strcmp(event, "report") == 0) {
        cli_watch_line(w, "report", "ready");
    }
    json_decref(d);
    return 0;
}

static int cli_watch_chunk(void *ud, const char *data, size_t n)
{
    struct cli_watch *w = ud;
    int stopped = 0;
    enum dp_err err = cli_sse_feed(&w->sse, data, n, cli_watch_on_event, w, &stopped);
    if (err) {
        cli_watch_clear(w);
        fprintf(stderr, "dnnpress watch: event stream: %s\n", dp_strerror(err));
        return 1;
    }
    return stopped;
}

static int cli_state_terminal(const char *state)
{
    return state != NULL && (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
                             strcmp(state, "cancelled") == 0);
}

/* Fetches the job; *terminal and the final exit code when it has ended. */
static enum cli_exit cli_watch_check(struct cli_watch *w, const char *job_id, int *terminal,
                                     enum cli_exit *final)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/jobs/%s", job_id);
    json_t *job = NULL;
    enum cli_exit rc = cli_call(w->ctx, "GET", path, NULL, NULL, &job, NULL);
    *terminal = 0;
    if (rc != CLI_OK)
        return rc;
    const char *state = cli_str(job, "state", "?");
    if (cli_state_terminal(state)) {
        *terminal = 1;
        *final = strcmp(state, "succeeded") == 0 ? CLI_OK : CLI_JOB_FAILED;
        cli_watch_clear(w);
        if (w->ctx->json) {
            json_t *line = json_pack("{s:s, s:O}", "event", "end", "job", job);
            cli_print_json(line);
            json_decref(line);
        } else {
            const json_t *err = json_object_get(job, "error");
            printf("job %s %s%s%s\n", job_id, state, json_is_string(err) ? ": " : "",
                   json_is_string(err) ? json_string_value(err) : "");
        }
    }
    json_decref(job);
    return CLI_OK;
}

enum cli_exit cli_watch_job(struct cli_ctx *ctx, const char *job_id)
{
    struct cli_watch w;
    memset(&w, 0, sizeof(w));
    w.ctx = ctx;
    w.tty = !ctx->json && isatty(STDOUT_FILENO);
    w.last_epoch_printed = -1;
    cli_sse_init(&w.sse);
    cli_progress_init(&w.progress);
    enum cli_exit final = CLI_OK;
    int terminal = 0;
    enum cli_exit rc = cli_watch_check(&w, job_id, &terminal, &final);
    time_t down_since = 0;
    unsigned delay = 1;
    while (rc == CLI_OK && !terminal) {
        char path[160], hdr[128];
        snprintf(path, sizeof(path), "/api/v1/jobs/%s/events", job_id);
        const char *headers[2] = {NULL, NULL};
        if (w.sse.last_id[0] != '\0') {
            snprintf(hdr, sizeof(hdr), "Last-Event-ID: %s", w.sse.last_id);
            headers[0] = hdr;
        }
        struct dp_http_resp r = {0};
        struct dp_errinfo ei = {DP_OK, ""};
        enum dp_err err =
            dp_httpc_stream(ctx->h, path, headers, cli_watch_chunk, &w, CLI_WATCH_IDLE_S, &r, &ei);
        long status = r.status;
        if (!err && status != 0 && (status < 200 || status >= 300)) {
            cli_watch_clear(&w);
            char msg[CLI_MESSAGE_MAX];
            fprintf(stderr, "dnnpress watch: %ld: %s\n", status,
                    cli_resp_message(&r, msg, sizeof(msg)));
            rc = cli_exit_for_status(status);
        }
        dp_http_resp_free(&r);
        if (rc != CLI_OK)
            break;
        /* A partial event of a cut stream must not merge with the next stream's. */
        char last[64];
        memcpy(last, w.sse.last_id, sizeof(last));
        cli_sse_free(&w.sse);
        cli_sse_init(&w.sse);
        memcpy(w.sse.last_id, last, sizeof(last));
        if (err || status == 0) {
            if (down_since == 0)
                down_since = time(NULL);
            if (time(NULL) - down_since > CLI_WATCH_RECONNECT_S) {
                cli_watch_clear(&w);
                fprintf(stderr, "dnnpress watch: %s; gave up after %ds\n", ei.msg,
                        CLI_WATCH_RECONNECT_S);
                rc = CLI_UNREACHABLE;
                break;
            }
            cli_watch_clear(&w);
            fprintf(stderr, "dnnpress watch: %s; reconnecting\n", ei.msg);
            sleep(delay);
            delay = delay < 8 ? 2 * delay : 8;
            continue;
        }
        down_since = 0;
        delay = 1;
        rc = cli_watch_check(&w, job_id, &terminal, &final);
        if (rc == CLI_OK && !terminal)
            sleep(1); /* the stream ended early (a restart?): no hot reconnect loop */
        if (rc == CLI_UNREACHABLE) {
            rc = CLI_OK; /* the stream ended because the server went away: reconnect */
            down_since = time(NULL);
            sleep(1);
        }
    }
    cli_watch_clear(&w);
    cli_sse_free(&w.sse);
    return rc != CLI_OK ? rc : final;
}

enum cli_exit cli_cmd_watch(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *id = cli_id_arg("watch", "watch JOB_ID", argc, argv);
    return id != NULL ? cli_watch_job(ctx, id) : CLI_USAGE;
}
