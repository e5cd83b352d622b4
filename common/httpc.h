/*
 * A small HTTP client over libcurl for the worker and the CLI: JSON
 * requests, streamed file uploads and downloads, and a streamed body for
 * Server-Sent Events. Bodies kept in memory are capped (STYLE rule 15);
 * files are streamed and never held whole.
 *
 *     dp_httpc_global_init();                       // once, in main()
 *     struct dp_httpc *h = dp_httpc_new("http://127.0.0.1:8080", token);
 *     struct dp_http_resp r = {0};
 *     err = dp_httpc_json(h, "GET", "/api/v1/jobs", NULL, NULL, &r, &ei);
 *     if (!err && r.status == 200) ... r.json ...
 *     dp_http_resp_free(&r);
 *     dp_httpc_free(h);
 *
 * Every request function returns DP_OK when the server answered, whatever
 * the status (the caller decides what a 404 means), and DP_EIO when no
 * answer came (connection refused, timeout, transfer cut): ei then names the
 * URL and libcurl's reason. A handle belongs to one thread at a time; it
 * keeps its connection open between requests.
 */
#ifndef DP_COMMON_HTTPC_H
#define DP_COMMON_HTTPC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

struct dp_httpc;

struct dp_http_resp {
    long status;     /* HTTP status; 0 when no answer came */
    char *body;      /* NUL-terminated body (or error body of a download); owned */
    size_t body_len; /* bytes in body, without the NUL */
    json_t *json;    /* body parsed when it is a JSON document, else NULL; owned */
};

/* Initialises libcurl; call once from main() before any thread starts. */
enum dp_err dp_httpc_global_init(void);

/*
 * Returns a handle for base_url (e.g. "http://127.0.0.1:8080", no trailing
 * slash needed) sending `Authorization: Bearer token` when token is not NULL.
 * Both strings are copied. NULL on out of memory.
 */
struct dp_httpc *dp_httpc_new(const char *base_url, const char *token);

/* Frees h and closes its connection; NULL is a no-op. */
void dp_httpc_free(struct dp_httpc *h);

/* Trust anchors for https: a PEM file of CA certificates (a private CA),
 * copied; NULL or "" goes back to the system's store. The server's
 * certificate and host name are always verified. DP_ENOMEM on out of
 * memory. */
enum dp_err dp_httpc_set_ca(struct dp_httpc *h, const char *ca_file);

/* Total time limit of each JSON request in ms (default 60000; 0 = none). */
void dp_httpc_set_timeout_ms(struct dp_httpc *h, long timeout_ms);

/* Largest body kept in memory (default 16 MiB); over it a request fails with DP_ETOOBIG. */
void dp_httpc_set_max_body(struct dp_httpc *h, size_t max_len);

/* Releases what r owns and zeroes it; r may be NULL. */
void dp_http_resp_free(struct dp_http_resp *r);

/*
 * The server's error sentence for a non-2xx answer: the "message" field of
 * a JSON error body, else the body text, else "HTTP <status>". Borrowed from r.
 */
const char *dp_http_resp_message(const struct dp_http_resp *r);

/*
 * Sends method to base_url + path (path starts with '/', query included)
 * with body as JSON (borrowed; NULL sends no body) plus `headers`
 * ("Name: value" strings, NULL-terminated array, may be NULL). Fills resp
 * (caller frees with dp_http_resp_free).
 */
enum dp_err dp_httpc_json(struct dp_httpc *h, const char *method, const char *path, json_t *body,
                          const char *const *headers, struct dp_http_resp *resp,
                          struct dp_errinfo *ei);

/*
 * Sends the file at file_path as the raw body (application/octet-stream,
 * streamed) with method (POST or PUT); otherwise like dp_httpc_json.
 */
enum dp_err dp_httpc_send_file(struct dp_httpc *h, const char *method, const char *path,
                               const char *file_path, const char *const *headers,
                               struct dp_http_resp *resp, struct dp_errinfo *ei);

/*
 * GETs path and, when the answer is 2xx, streams the body into out (no more
 * than max_bytes; beyond that DP_ETOOBIG). Other answers land in resp->body
 * like a JSON request. The caller opened out and checks what it received.
 */
enum dp_err dp_httpc_get_file(struct dp_httpc *h, const char *path, FILE *out, uint64_t max_bytes,
                              struct dp_http_resp *resp, struct dp_errinfo *ei);

/*
 * Called with each piece of a streamed 2xx body as it arrives; returns 0 to
 * go on, nonzero to end the stream (the request then ends with DP_OK).
 */
typedef int (*dp_httpc_chunk_fn)(void *ud, const char *data, size_t n);

/*
 * GETs path and hands a 2xx body to fn piece by piece without a total time
 * limit (an SSE stream stays open for as long as the job runs); a stream
 * silent for idle_s seconds ends with DP_EIO. Other answers land in
 * resp->body.
 */
enum dp_err dp_httpc_stream(struct dp_httpc *h, const char *path, const char *const *headers,
                            dp_httpc_chunk_fn fn, void *ud, long idle_s, struct dp_http_resp *resp,
                            struct dp_errinfo *ei);

#endif
