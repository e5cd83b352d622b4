/*
 * The HTTP front-end: libmicrohttpd in one explicitly chosen mode (an
 * internal polling thread per pool thread, epoll or poll, suspend/resume
 * allowed), the route table of docs/api.md, and the request lifecycle.
 *
 *   struct srv_http *h = NULL;
 *   err = srv_http_start(&cfg, store, &h, &ei);
 *   ... srv_notify(h) after writes that parked requests wait for ...
 *   ... srv_http_tick(h) every ~200 ms (long-poll and SSE deadlines) ...
 *   srv_http_stop(h);
 */
#ifndef DP_SERVER_HTTP_H
#define DP_SERVER_HTTP_H

#include <stdio.h>

#include "common/err.h"
#include "server/config.h"
#include "server/store.h"

struct srv_http;

/* Starts serving cfg->listen. store is borrowed and must outlive h. */
enum dp_err srv_http_start(const struct srv_config *cfg, struct srv_store *store,
                           struct srv_http **out, struct dp_errinfo *ei);

/* Resumes parked long-polls and event streams whose deadline passed. It
 * does not look for changed data: every write that a parked request waits
 * for is followed by srv_notify, so a write path that forgets it fails the
 * tests instead of hiding behind the next tick. Any thread. */
void srv_http_tick(struct srv_http *h);

/* Resumes every parked request, to look again; call after a committed write
 * that may matter to them (a job, task or event change). Any thread. */
void srv_notify(struct srv_http *h);

/* Stops serving: new connections and requests are refused (503
 * shutting_down), every parked long-poll is answered as at its deadline
 * (a claim's 204) and every event stream ends cleanly, waiting up to
 * SRV_STOP_DRAIN_MS (3 s) for requests in progress; then stops the daemon
 * and frees h. NULL is a no-op. Main thread, once. */
void srv_http_stop(struct srv_http *h);

/* Writes "METHOD PATH" for every route, one a line. */
void srv_http_print_routes(FILE *f);

/* 1 when the route table has exactly METHOD PATH (a pattern as written in
 * the table, "/api/v1/devices"), 0 otherwise: the dashboard shows the pages
 * of optional routes only where this server has them. Pure. */
int srv_http_has_route(const char *method, const char *path);

#endif
