/*
 * The HTTP front-end (server/http.c): the JSON body helpers directly, and
 * the request path (routing, auth, limits, query and header checks, the
 * configured connection memory) through a real server started in-process
 * on an ephemeral loopback port, spoken to over a raw socket. No
 * housekeeping thread runs here, so a parked request wakes only through
 * srv_notify or its deadline.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "server/http_int.h"
#include "server/ids.h"
#include "tests/unit/test_util.h"

/* ---- JSON body helpers ---- */

Test(srv_http_json, only_names_the_first_unknown_key)
{
    static const char *const allowed[] = {"name", "priority", NULL};
    json_t *ok = json_pack("{s:s, s:i}", "name", "a", "priority", 3);
    json_t *bad = json_pack("{s:s, s:i}", "name", "a", "prioirty", 3);
    json_t *arr = json_array();
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_json_only(ok, "body", allowed, &ei), DP_OK);
    cr_assert_eq(srv_json_only(bad, "body.pretrain", allowed, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "body.pretrain") && strstr(ei.msg, "prioirty"), "%s", ei.msg);
    cr_assert_eq(srv_json_only(arr, "body", allowed, &ei), DP_EINVAL);
    json_decref(ok);
    json_decref(bad);
    json_decref(arr);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_http_json, str_and_int_check_presence_type_and_range)
{
    json_t *o = json_loads("{\"s\":\"x\",\"nul\":\"a\\u0000b\",\"n\":5,\"f\":1.5,\"big\":100}",
                           JSON_ALLOW_NUL, NULL);
    cr_assert_not_null(o);
    struct dp_errinfo ei = {0};
    const char *s = "untouched";
    cr_assert_eq(srv_json_str(o, "body", "absent", 0, &s, &ei), DP_OK);
    cr_assert_str_eq(s, "untouched", "an absent optional field leaves the default");
    cr_assert_eq(srv_json_str(o, "body", "absent", 1, &s, &ei), DP_EINVAL);
    cr_assert_str_eq(ei.msg, "body.absent: required");
    cr_assert_eq(srv_json_str(o, "body", "n", 1, &s, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "must be a string"), "%s", ei.msg);
    cr_assert_eq(srv_json_str(o, "body", "nul", 1, &s, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "NUL"), "%s", ei.msg);
    cr_assert_eq(srv_json_str(o, "body", "s", 1, &s, &ei), DP_OK);
    cr_assert_str_eq(s, "x");

    int64_t n = -1;
    cr_assert_eq(srv_json_int(o, "body", "absent", 0, 0, 9, &n, &ei), DP_OK);
    cr_assert_eq(n, -1);
    cr_assert_eq(srv_json_int(o, "body", "f", 1, 0, 9, &n, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "body.f: must be an integer"), "%s", ei.msg);
    cr_assert_eq(srv_json_int(o, "body", "big", 1, 0, 99, &n, &ei), DP_EINVAL);
    cr_assert_str_eq(ei.msg, "body.big: 100 is outside [0, 99]");
    cr_assert_eq(srv_json_int(o, "body", "big", 1, 0, 100, &n, &ei), DP_OK);
    cr_assert_eq(n, 100);
    cr_assert_eq(srv_json_int(o, "body", "n", 1, 5, 5, &n, &ei), DP_OK);
    cr_assert_eq(n, 5);
    json_decref(o);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_http_json, idempotency_hashes_identify_the_bytes)
{
    char a[65], b[65], c[65], e[65];
    srv_idem_hash("abc", 3, a);
    srv_idem_hash("abc", 3, b);
    srv_idem_hash("abd", 3, c);
    srv_idem_hash(NULL, 0, e);
    cr_assert_str_eq(a, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cr_assert_str_eq(a, b);
    cr_assert_str_neq(a, c);
    cr_assert_str_eq(e, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    DP_ASSERT_NO_LEAKS();
}

/* ---- A real server ---- */

static char dir[256], db[300];
static struct srv_config cfg;
static struct srv_store *st;
static struct srv_http *http;
static uint16_t port;
#define ADMIN_TOKEN "dp_test_admin_token_0123456789"

static void start(void)
{
    dp_log_set_level(DP_LOG_ERROR);
    dp_test_tmpdir_make(dir, sizeof(dir), "http");
    snprintf(db, sizeof(db), "%s/test.db", dir);
    char *argv[] = {(char *)"dnnpress-server",
                    (char *)"--listen",
                    (char *)"127.0.0.1:0",
                    (char *)"--data-dir",
                    dir,
                    (char *)"--threads",
                    (char *)"2",
                    (char *)"--http-conn-mem-kb",
                    (char *)"8",
                    NULL};
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_config_parse(9, argv, &cfg, &ei), DP_OK, "%s", ei.msg);
    struct srv_queue_cfg q = {.lease_ms = 60000, .backoff_base_ms = 0, .backoff_max_ms = 0};
    cr_assert_eq(srv_blob_init_dirs(dir, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(srv_store_open(db, &q, &st, &ei), DP_OK, "%s", ei.msg);
    char hash[65], secret[SRV_TOKEN_LEN];
    srv_token_hash(ADMIN_TOKEN, hash);
    cr_assert_eq(srv_store_admin_ensure(st, hash, secret, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(srv_http_start(&cfg, st, &http, &ei), DP_OK, "%s", ei.msg);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_BIND_PORT);
    cr_assert_not_null(info);
    port = info->port;
    cr_assert_neq(port, 0);
}

static void stop(void)
{
    srv_http_stop(http);
    http = NULL;
    srv_store_close(st);
    st = NULL;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(srv_http, .init = start, .fini = stop, .timeout = 30);

/* Sends req on a new connection and reads until the server closes it (the
 * requests say Connection: close); returns the status, the reply in out. */
static int roundtrip(const char *req, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    size_t len = strlen(req), off = 0;
    while (off < len) {
        ssize_t k = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (k <= 0)
            break; /* the server may answer and close before reading it all */
        off += (size_t)k;
    }
    size_t n = 0;
    for (;;) {
        ssize_t k = recv(fd, out + n, cap - 1 - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
        if (n == cap - 1)
            break;
    }
    out[n] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(out, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

static int get(const char *path, const char *headers, char *out, size_t cap)
{
    char req[20000];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", path,
             headers ? headers : "");
    return roundtrip(req, out, cap);
}

#define AUTH "Authorization: Bearer " ADMIN_TOKEN "\r\n"

Test(srv_http, routes_auth_and_methods)
{
    static char out[65536];
    cr_assert_eq(get("/healthz", NULL, out, sizeof(out)), 200, "%s", out);
    cr_assert_eq(get("/nope", NULL, out, sizeof(out)), 404, "%s", out);
    cr_assert(strstr(out, "\"not_found\""), "%s", out);
    cr_assert_eq(get("/api/v1/teams", NULL, out, sizeof(out)), 401, "%s", out);
    cr_assert_eq(get("/api/v1/teams", "Authorization: Bearer nope\r\n", out, sizeof(out)), 401);
    cr_assert_eq(get("/api/v1/teams", AUTH, out, sizeof(out)), 200, "%s", out);
    cr_assert_eq(get("/api/v1/models", AUTH, out, sizeof(out)), 403, "admin is not a team");
    cr_assert_eq(roundtrip("DELETE /api/v1/teams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                           out, sizeof(out)),
                 405, "%s", out);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_http, list_arguments_are_checked)
{
    static char out[65536];
    static const struct {
        const char *query;
        int status;
    } cases[] = {
        {"", 200},           {"?limit=1", 200},  {"?limit=200", 200}, {"?limit=0", 400},
        {"?limit=201", 400}, {"?limit=5x", 400}, {"?cursor=", 200},   {"?cursor=12", 200},
        {"?cursor=0", 400},  {"?cursor=x", 400}, {"?cursor=-3", 400}, {"?limit=&cursor=1", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/teams%s", cases[i].query);
        cr_assert_eq(get(path, AUTH, out, sizeof(out)), cases[i].status, "%s: %s", path, out);
    }
    cr_assert_eq(get("/api/v1/teams?limit=0", AUTH, out, sizeof(out)), 400);
    cr_assert(strstr(out, "limit: must be an integer in [1, 200]"), "%s", out);
    DP_ASSERT_NO_LEAKS();
}

/* POSTs a JSON body to path with extra headers. */
static int post(const char *path, const char *headers, const char *body, char *out, size_t cap)
{
    char req[4096];
    snprintf(req, sizeof(req),
             "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" AUTH
             "Content-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
             path, strlen(body), headers ? headers : "", body);
    return roundtrip(req, out, cap);
}

Test(srv_http, bodies_are_checked_before_the_handler)
{
    static char out[65536];
    cr_assert_eq(post("/api/v1/teams", NULL, "{\"name\":\"a\"}", out, sizeof(out)), 201, "%s", out);
    cr_assert_eq(post("/api/v1/teams", NULL, "{\"name\":", out, sizeof(out)), 400, "%s", out);
    cr_assert(strstr(out, "malformed_json"), "%s", out);
    cr_assert_eq(post("/api/v1/teams", NULL, "[1]", out, sizeof(out)), 400, "%s", out);
    cr_assert_eq(post("/api/v1/teams", NULL, "{\"name\":\"b\",\"name\":\"c\"}", out, sizeof(out)),
                 400, "duplicate keys are refused: %s", out);
    char req[512];
    snprintf(req, sizeof(req),
             "POST /api/v1/teams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" AUTH
             "Content-Type: application/json\r\nContent-Length: %u\r\n\r\n",
             SRV_JSON_BODY_MAX + 1);
    cr_assert_eq(roundtrip(req, out, sizeof(out)), 413, "%s", out);
    snprintf(req, sizeof(req),
             "POST /api/v1/teams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" AUTH
             "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}");
    cr_assert_eq(roundtrip(req, out, sizeof(out)), 415, "%s", out);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_http, idempotency_keys_are_printable_ascii_up_to_128)
{
    static char out[65536];
    char key[200], hdr[256];
    memset(key, 'k', 128);
    key[128] = '\0';
    snprintf(hdr, sizeof(hdr), "Idempotency-Key: %s\r\n", key);
    cr_assert_eq(post("/api/v1/jobs", hdr, "{}", out, sizeof(out)), 403, "admin: %s", out);
    /* The key is checked on a team route; make a team token. */
    json_t *tok = NULL, *team = NULL;
    cr_assert_eq(srv_store_team_create(st, "t", &team, NULL), DP_OK);
    cr_assert_eq(srv_store_token_create(st, json_string_value(json_object_get(team, "id")), "team",
                                        "t", 0, &tok, NULL),
                 DP_OK);
    char auth[200];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n",
             json_string_value(json_object_get(tok, "token")));
    static const struct {
        const char *key;
        const char *needle;
    } bad[] = {{"a\tb", "printable ASCII"}, {"caf\xc3\xa9", "printable ASCII"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char req[1024];
        snprintf(req, sizeof(req),
                 "POST /api/v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s"
                 "Idempotency-Key: %s\r\nContent-Type: application/json\r\n"
                 "Content-Length: 28\r\n\r\n{\"name\":\"m\",\"arch\":\"lenet5\"}",
                 auth, bad[i].key);
        cr_assert_eq(roundtrip(req, out, sizeof(out)), 400, "'%s': %s", bad[i].key, out);
        cr_assert(strstr(out, bad[i].needle), "%s", out);
    }
    memset(key, 'k', 129);
    key[129] = '\0';
    char req[1024];
    snprintf(req, sizeof(req),
             "POST /api/v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s"
             "Idempotency-Key: %s\r\nContent-Type: application/json\r\n"
             "Content-Length: 28\r\n\r\n{\"name\":\"m\",\"arch\":\"lenet5\"}",
             auth, key);
    cr_assert_eq(roundtrip(req, out, sizeof(out)), 400, "%s", out);
    cr_assert(strstr(out, "1 to 128"), "%s", out);
    json_decref(tok);
    json_decref(team);
    DP_ASSERT_NO_LEAKS();
}

/* --http-conn-mem-kb is applied: headers larger than the buffer are
 * refused (431) where the default 16 KiB would have taken them. */
Test(srv_http, the_configured_connection_memory_bounds_the_headers)
{
    static char out[65536];
    char hdr[12100];
    memset(hdr, 'h', sizeof(hdr));
    memcpy(hdr, "X-Big: ", 7);
    memcpy(hdr + sizeof(hdr) - 3, "\r\n", 3);
    int status = get("/healthz", hdr, out, sizeof(out));
    cr_assert(status == 431 || status == 413 || status == -1, "got %d: %.200s", status, out);
    cr_assert_eq(get("/healthz", NULL, out, sizeof(out)), 200);
    DP_ASSERT_NO_LEAKS();
}
