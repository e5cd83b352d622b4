/*
 * libFuzzer target for the server's request path: every input is one raw
 * HTTP connection's worth of bytes (one request or several, pipelined),
 * fed to the real HTTP layer (server/http.c srv_http_start, the route
 * table, every handler) over a real SQLite store, and the answer is
 * checked.
 *
 *   make fuzz FUZZ_TARGETS=http          (FUZZ_SECONDS, default 60)
 *
 * DESIGN
 * - LLVMFuzzerInitialize starts the server once, as main() does, on a
 *   temporary data directory (under /dev/shm when it exists, so that the
 *   store's fsyncs cost nothing): an admin token, a team with a team
 *   token, a built-in model and dataset of that team, and a second team
 *   with a model of its own. The daemon's listening socket is never used:
 *   each input gets a socketpair whose server end is handed to
 *   libmicrohttpd with MHD_add_connection (about twice the executions per
 *   second of a loopback TCP connection, and no port to find).
 * - Secrets and ids are random, so inputs name them by placeholder and the
 *   harness substitutes before sending: $ADMIN, $TEAM (tokens), $MODEL,
 *   $DATASET (the team's), $OMODEL (the other team's model). The seeds
 *   (tests/fuzz/make_http_seeds.sh) use them.
 * - Per input: write the bytes, shut the writing side (no more requests),
 *   read until the server closes, or idles waiting for a head, or has been
 *   silent for FUZZ_QUIET_MS (see exchange()); close; then wait until the
 *   server has released the request and the connection, so that nothing
 *   leaks into the next input. Every FUZZ_REFRESH inputs the server stops and starts again
 *   on a fresh data directory, so the store cannot grow without bound.
 *
 * Invariants, each an abort() with the reason (libFuzzer saves the input):
 * - the server is done within FUZZ_ANSWER_MS and releases the request
 *   and the connection once the client closed;
 * - a complete request head without a body (nothing after it to wait
 *   for) that reached the server's handler gets an answer;
 * - every answer starts with a well-formed status line "HTTP/1.x NNN ...";
 *   its header block ends; its body is as long as it says;
 * - every answer with Content-Type application/json is JSON;
 * - every non-2xx answer with a body is a JSON object with string "code"
 *   and "message", except libmicrohttpd's own HTML pages for requests it
 *   refuses before the server sees them (docs/api.md, "server notes").
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "common/alloc.h"
#include "common/log.h"
#include "server/blob.h"
#include "server/config.h"
#include "server/http.h"
#include "server/http_int.h"
#include "server/ids.h"
#include "server/store.h"

#define FUZZ_ANSWER_MS  10000      /* an answer later than this is a hang */
#define FUZZ_REFRESH    5000       /* inputs between fresh data directories */
#define FUZZ_ANSWER_MAX (8u << 20) /* answer bytes kept for the checks */
#define FUZZ_ADMIN      "fuzz-admin-token-0123456789abcdef"
#define FUZZ_IDLE_POLLS 5   /* 1-ms polls the server must wait for a head to be idle */
#define FUZZ_QUIET_MS   100 /* silence after the last byte sent that ends an exchange */

/* The one server this process fuzzes (STYLE rule 22: one static struct). */
static struct {
    char dir[256];
    struct srv_config cfg;
    struct srv_store *st;
    struct srv_http *http;
    char team_token[SRV_TOKEN_LEN];
    char model[SRV_ID_MAX], dataset[SRV_ID_MAX], omodel[SRV_ID_MAX];
    unsigned long n_inputs;
    int trace;
} F;

static void fuzz_quiet(enum dp_log_level level, const char *msg, void *ud)
{
    (void)level;
    (void)msg;
    (void)ud;
}

static void fuzz_die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_http: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- The server: start on a fresh directory, stop and remove it ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void json_id(json_t *o, const char *key, char *out, size_t cap)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL || strlen(s) >= cap)
        fuzz_die("setup: no id in", key);
    memcpy(out, s, strlen(s) + 1);
}

/* A team with a team token; *who is that token's principal. */
static void team_setup(const char *name, struct srv_principal *who, char *secret)
{
    struct dp_errinfo ei = {0};
    json_t *team = NULL, *tok = NULL;
    memset(who, 0, sizeof(*who));
    who->scope = SRV_SCOPE_TEAM;
    if (srv_store_team_create(F.st, name, &team, &ei) != DP_OK)
        fuzz_die("setup: team", ei.msg);
    json_id(team, "id", who->team_id, sizeof(who->team_id));
    if (srv_store_token_create(F.st, who->team_id, "team", name, 0, &tok, &ei) != DP_OK)
        fuzz_die("setup: token", ei.msg);
    json_id(tok, "id", who->token_id, sizeof(who->token_id));
    if (secret)
        json_id(tok, "token", secret, SRV_TOKEN_LEN);
    json_decref(team);
    json_decref(tok);
}

static void asset_setup(const struct srv_principal *who, const char *kind, const char *builtin,
                        char id[SRV_ID_MAX])
{
    struct dp_errinfo ei = {0};
    char hash[65];
    json_t *out = NULL;
    int replayed = 0;
    srv_idem_hash(kind, strlen(kind), hash);
    struct srv_asset_new a = {
        .kind = kind, .name = kind, .format = "builtin", .builtin = builtin, .req_hash = hash};
    if (srv_store_asset_create(F.st, who, &a, &out, &replayed, &ei) != DP_OK)
        fuzz_die("setup: asset", ei.msg);
    json_id(out, "id", id, SRV_ID_MAX);
    json_decref(out);
}

static void server_start(void)
{
    struct dp_errinfo ei = {0};
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(F.dir, sizeof(F.dir), "%s/dnnpress-fuzz-http-XXXXXX", base);
    if (mkdtemp(F.dir) == NULL)
        fuzz_die("setup: mkdtemp", strerror(errno));
    /* The server's own flag parser, as main() runs it: defaults and bounds. */
    char *argv[] = {"fuzz_http",   "--data-dir",          F.dir, "--listen",
                    "127.0.0.1:0", "--threads",           "2",   "--max-upload-mb",
                    "1",           "--http-per-ip-conns", "0",   NULL};
    if (srv_config_parse((int)(sizeof(argv) / sizeof(argv[0])) - 1, argv, &F.cfg, &ei) != DP_OK)
        fuzz_die("setup: config", ei.msg);

    char db[512], hash[65], secret[SRV_TOKEN_LEN];
    snprintf(db, sizeof(db), "%s/dnnpress.db", F.dir);
    struct srv_queue_cfg q = {.lease_ms = 60000, .backoff_base_ms = 1000, .backoff_max_ms = 300000};
    if (srv_blob_init_dirs(F.dir, &ei) != DP_OK || srv_store_open(db, &q, &F.st, &ei) != DP_OK)
        fuzz_die("setup: store", ei.msg);
    if (srv_token_hash(FUZZ_ADMIN, hash) != DP_OK ||
        srv_store_admin_ensure(F.st, hash, secret, &ei) != DP_OK)
        fuzz_die("setup: admin token", ei.msg);

    struct srv_principal team, other;
    team_setup("fuzz-team", &team, F.team_token);
    team_setup("other-team", &other, NULL);
    asset_setup(&team, "model", "lenet-300-100", F.model);
    asset_setup(&team, "dataset", "fashion-mnist", F.dataset);
    asset_setup(&other, "model", "lenet5", F.omodel);

    /* The seed script counts Content-Length with these lengths. */
    if (strlen(FUZZ_ADMIN) != 33 || strlen(F.team_token) != 68 || strlen(F.model) != 28 ||
        strlen(F.dataset) != 28 || strlen(F.omodel) != 28)
        fuzz_die("setup: a placeholder's value changed length", "update make_http_seeds.sh");
    if (srv_http_start(&F.cfg, F.st, &F.http, &ei) != DP_OK)
        fuzz_die("setup: http", ei.msg);
}

static void server_stop(void)
{
    srv_http_stop(F.http);
    srv_store_close(F.st);
    F.http = NULL;
    F.st = NULL;
    nftw(F.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    dp_log_set_sink(fuzz_quiet, NULL);
    F.trace = getenv("FUZZ_HTTP_TRACE") != NULL;
    server_start();
    atexit(server_stop);
    return 0;
}

/* ---- Placeholders ---- */

/* data with every placeholder replaced, in a dp_malloc'd buffer (*len). */
static char *substitute(const uint8_t *data, size_t size, size_t *len)
{
    const struct {
        const char *name;
        const char *value;
    } subs[] = {{"$ADMIN", FUZZ_ADMIN},
                {"$TEAM", F.team_token},
                {"$MODEL", F.model},
                {"$DATASET", F.dataset},
                {"$OMODEL", F.omodel}};
    const size_t n_subs = sizeof(subs) / sizeof(subs[0]);
    /* No value is longer than 16 times its name. */
    char *out = dp_malloc(size * 16 + 1);
    if (out == NULL)
        fuzz_die("out of memory", NULL);
    size_t o = 0;
    for (size_t i = 0; i < size;) {
        size_t k = 0;
        if (data[i] == '$')
            for (k = 0; k < n_subs; k++) {
                size_t n = strlen(subs[k].name);
                if (size - i >= n && memcmp(data + i, subs[k].name, n) == 0)
                    break;
            }
        if (data[i] == '$' && k < n_subs) {
            size_t n = strlen(subs[k].value);
            memcpy(out + o, subs[k].value, n);
            o += n;
            i += strlen(subs[k].name);
        } else {
            out[o++] = (char)data[i++];
        }
    }
    *len = o;
    return out;
}

/* ---- One connection ---- */

struct answer {
    char *p;
    size_t len;
    int clipped; /* over FUZZ_ANSWER_MAX: the rest was read and dropped */
};

static void answer_add(struct answer *a, const char *buf, size_t n)
{
    if (a->clipped || a->len + n > FUZZ_ANSWER_MAX) {
        a->clipped = 1;
        return;
    }
    char *grown = dp_realloc(a->p, a->len + n + 1);
    if (grown == NULL)
        fuzz_die("out of memory", NULL);
    a->p = grown;
    memcpy(a->p + a->len, buf, n);
    a->len += n;
    a->p[a->len] = '\0';
}

/* The server waits for a request head that will not come (an idle
 * kept-alive connection, or a head cut short): no request in progress,
 * our connection listed as waiting for a head. */
static int server_waits_for_head(void)
{
    pthread_mutex_lock(&F.http->conn_mu);
    int n_heads = F.http->n_heads;
    pthread_mutex_unlock(&F.http->conn_mu);
    return atomic_load(&F.http->n_reqs) == 0 && n_heads > 0;
}

/* Sends req on a fresh connection and reads everything the server writes,
 * until it closes, or until nothing more can come: libmicrohttpd 0.9.75
 * does not close a connection when the client shuts its side while the
 * server waits for a head (it waits for the head deadline, which the
 * housekeeping thread enforces) or for a body (the body timeout); the
 * harness then closes, as a client would. */
static void exchange(const char *req, size_t req_len, struct answer *a)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        fuzz_die("socketpair", strerror(errno));
    /* The address libmicrohttpd logs and limits by; the socket is a pair. */
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(40000)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (MHD_add_connection(F.http->daemon, sv[1], (const struct sockaddr *)&addr, sizeof(addr)) !=
        MHD_YES)
        fuzz_die("MHD_add_connection failed", NULL);
    int fd = sv[0];
    size_t sent = 0;
    int wr_open = 1, n_idle = 0;
    if (req_len == 0) {
        shutdown(fd, SHUT_WR);
        wr_open = 0;
    }
    int64_t deadline = mono_ms() + FUZZ_ANSWER_MS, last_news = mono_ms();
    uint64_t answered = atomic_load(&F.http->n_requests);
    for (;;) {
        int64_t now = mono_ms();
        if (now > deadline)
            fuzz_die("the server still answers (or holds the connection) at the deadline", NULL);
        struct pollfd pfd = {.fd = fd, .events = (short)(POLLIN | (wr_open ? POLLOUT : 0))};
        int n = poll(&pfd, 1, 1);
        if (n < 0 && errno != EINTR)
            fuzz_die("poll", strerror(errno));
        if (n > 0 && wr_open && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t k = send(fd, req + sent, req_len - sent, MSG_NOSIGNAL);
            if (k > 0)
                sent += (size_t)k;
            if ((k < 0 && errno != EAGAIN && errno != EINTR) || sent == req_len) {
                shutdown(fd, SHUT_WR); /* no more requests: the server closes after its answers */
                wr_open = 0;
            }
            last_news = now;
        }
        if (n > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[16384];
            ssize_t k = read(fd, buf, sizeof(buf));
            if (k > 0) {
                answer_add(a, buf, (size_t)k);
                last_news = now;
            } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
                break; /* closed (or reset) by the server */
            }
        }
        if (wr_open)
            continue;
        uint64_t answered_now = atomic_load(&F.http->n_requests);
        if (answered_now != answered) {
            answered = answered_now;
            last_news = now;
            n_idle = 0;
        }
        /* Waiting for a head, steadily for a few milliseconds (a pipelined
         * request is parsed right after the previous one completes). */
        n_idle = server_waits_for_head() ? n_idle + 1 : 0;
        if (n_idle >= FUZZ_IDLE_POLLS)
            break;
        if (now - last_news > FUZZ_QUIET_MS)
            break; /* a body that cannot complete, or a slow handler: hang up */
    }
    close(fd);
    /* The server frees the request and the connection after the close:
     * wait, so that nothing of this input overlaps the next. */
    for (;;) {
        pthread_mutex_lock(&F.http->conn_mu);
        int n_heads = F.http->n_heads;
        pthread_mutex_unlock(&F.http->conn_mu);
        if (atomic_load(&F.http->n_reqs) == 0 && n_heads == 0)
            break;
        if (mono_ms() > deadline)
            fuzz_die("a request or connection was not released after the client closed", NULL);
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

/* ---- The checks ---- */

/* The value of header name in the block [h, end), or NULL; *n its length. */
static const char *header_find(const char *h, const char *end, const char *name, size_t *n)
{
    size_t nl = strlen(name);
    while (h < end) {
        const char *eol = memchr(h, '\n', (size_t)(end - h));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - h) > nl && strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            const char *v = h + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *n = (size_t)(ve - v);
            return v;
        }
        h = eol + 1;
    }
    return NULL;
}

/* libmicrohttpd's own error pages: it answers these before the server
 * sees the request (bad syntax, head too large, bad Content-Length or
 * chunk, unsupported version), with an HTML body. */
static int mhd_own_page(unsigned status, const char *body, size_t n)
{
    static const unsigned own[] = {400, 413, 414, 431, 500, 501, 505};
    int known = 0;
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        known |= own[i] == status;
    return known && n >= 6 && memcmp(body, "<html>", 6) == 0;
}

static void check_body(unsigned status, const char *ct, size_t ct_len, const char *body, size_t n,
                       const char *input)
{
    int is_json = ct && ct_len >= 16 && strncasecmp(ct, "application/json", 16) == 0;
    json_t *j = NULL;
    if (n > 0 && (is_json || status >= 300)) {
        json_error_t je;
        j = json_loadb(body, n, 0, &je);
        if (j == NULL && !(!is_json && mhd_own_page(status, body, n))) {
            fprintf(stderr, "fuzz_http: answer %u: body is not JSON (%s):\n%.*s\nto:\n%s\n", status,
                    je.text, (int)(n > 2000 ? 2000 : n), body, input);
            abort();
        }
    }
    if (status >= 300 && j != NULL) {
        const char *code = json_string_value(json_object_get(j, "code"));
        const char *msg = json_string_value(json_object_get(j, "message"));
        if (!json_is_object(j) || code == NULL || *code == '\0' || msg == NULL || *msg == '\0') {
            fprintf(stderr, "fuzz_http: answer %u without code and message:\n%.*s\nto:\n%s\n",
                    status, (int)(n > 2000 ? 2000 : n), body, input);
            abort();
        }
    }
    json_decref(j);
}

/* Decodes a chunked body at p (n bytes) into *out; returns the bytes it
 * took, or 0 when the framing is broken or cut. */
static size_t dechunk(const char *p, size_t n, struct answer *out)
{
    size_t i = 0;
    for (;;) {
        const char *eol = memchr(p + i, '\n', n - i);
        if (eol == NULL)
            return 0;
        char *end = NULL;
        unsigned long long len = strtoull(p + i, &end, 16);
        if (end == p + i)
            return 0;
        i = (size_t)(eol - p) + 1;
        if (len == 0) {
            /* Trailers, then the empty line. */
            for (;;) {
                const char *e = memchr(p + i, '\n', n - i);
                if (e == NULL)
                    return 0;
                size_t line = (size_t)(e - (p + i));
                i = (size_t)(e - p) + 1;
                if (line == 0 || (line == 1 && p[i - 2] == '\r'))
                    return i;
            }
        }
        if (len > n - i || n - i - len < 2)
            return 0;
        answer_add(out, p + i, (size_t)len);
        i += (size_t)len + 2;
    }
}

/* Walks every answer in the stream a. */
static void check_answers(const struct answer *a, const char *input)
{
    if (a->len == 0)
        return;
    const char *p = a->p, *end = a->p + a->len;
    while (p < end) {
        size_t left = (size_t)(end - p);
        if (left < 13 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
            p[8] != ' ' || p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' ||
            p[11] > '9' || p[12] != ' ') {
            fprintf(stderr, "fuzz_http: malformed status line:\n%.*s\nto:\n%s\n",
                    (int)(left > 200 ? 200 : left), p, input);
            abort();
        }
        unsigned status = (unsigned)((p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0'));
        const char *hend = memmem(p, left, "\r\n\r\n", 4);
        if (hend == NULL) {
            if (a->clipped)
                return;
            fuzz_die("an answer's header block does not end", input);
        }
        const char *body = hend + 4;
        size_t cl_n = 0, te_n = 0, ct_n = 0;
        const char *cl = header_find(p, hend + 2, "Content-Length", &cl_n);
        const char *te = header_find(p, hend + 2, "Transfer-Encoding", &te_n);
        const char *ct = header_find(p, hend + 2, "Content-Type", &ct_n);
        size_t avail = (size_t)(end - body), body_len = 0;
        struct answer chunks = {0};
        const char *content = body;
        size_t content_len = 0;
        if (status < 200 || status == 204 || status == 304 || avail == 0 ||
            (avail >= 7 && memcmp(body, "HTTP/1.", 7) == 0)) {
            /* No body: an interim or empty answer, an answer to HEAD (the
             * last one, or one followed by the next answer), or
             * libmicrohttpd 0.9.75 sending a header block twice
             * (docs/api.md): the next answer follows at once. */
        } else if (te && te_n >= 7 && strncasecmp(te, "chunked", 7) == 0) {
            body_len = dechunk(body, avail, &chunks);
            if (body_len == 0) {
                if (a->clipped)
                    return;
                fuzz_die("an answer's chunked body is cut or malformed", input);
            }
            content = chunks.p ? chunks.p : "";
            content_len = chunks.len;
        } else if (cl) {
            unsigned long long x = strtoull(cl, NULL, 10);
            if (x > avail) {
                if (a->clipped)
                    return;
                fuzz_die("an answer is shorter than its Content-Length", input);
            }
            body_len = content_len = (size_t)x;
        } else {
            body_len = content_len = avail; /* until the close */
        }
        check_body(status, ct, ct_n, content, content_len, input);
        dp_free(chunks.p);
        p = body + body_len;
    }
}

/* Whether req starts with a complete request head announcing no body:
 * nothing is left to wait for, so an answer is owed. */
static int head_complete_without_body(const char *req, size_t n)
{
    const char *hend = memmem(req, n, "\r\n\r\n", 4);
    if (hend == NULL || memchr(req, '\n', (size_t)(hend - req)) == NULL)
        return 0;
    size_t k;
    return header_find(req, hend + 2, "Content-Length", &k) == NULL &&
           header_find(req, hend + 2, "Transfer-Encoding", &k) == NULL &&
           memmem(req, (size_t)(hend - req), "\n ", 2) == NULL; /* no folded lines */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (++F.n_inputs % FUZZ_REFRESH == 0) {
        server_stop();
        server_start();
    }
    size_t req_len = 0;
    char *req = substitute(data, size, &req_len);
    struct answer a = {0};
    uint64_t begun0 = atomic_load(&F.http->n_reqs_begun);
    uint64_t answered0 = atomic_load(&F.http->n_requests);
    exchange(req, req_len, &a);
    /* The request for messages, cut to something readable. */
    char shown[4096];
    snprintf(shown, sizeof(shown), "%.*s", (int)(req_len < 4000 ? req_len : 4000), req);
    /* A request that reached the server with nothing left to wait for
     * was dropped without an answer (a handler returned MHD_NO).
     * libmicrohttpd itself closes without an answer on some malformed
     * heads (a method with bytes outside the token set): not ours. */
    uint64_t n_begun = atomic_load(&F.http->n_reqs_begun) - begun0;
    uint64_t n_answered = atomic_load(&F.http->n_requests) - answered0;
    if (n_begun > 0 && n_answered == 0 && head_complete_without_body(req, req_len))
        fuzz_die("a complete request was dropped without an answer", shown);
    if (F.trace) /* FUZZ_HTTP_TRACE=1: every answer, to see what the seeds reach */
        fprintf(stderr, "---- %.*s\n%.*s\n", (int)strcspn(shown, "\r\n"), shown,
                (int)(a.len < 600 ? a.len : 600), a.p ? a.p : "");
    check_answers(&a, shown);
    dp_free(a.p);
    dp_free(req);
    return 0;
}
