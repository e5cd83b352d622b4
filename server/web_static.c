/*
 * The dashboard's static files: GET / answers web_dir/index.html, GET
 * /ui/{file} answers web_dir/ui/{file} (the bundle esbuild wrote, its name
 * carrying a hash of its content). Nothing else under web_dir is reachable:
 * a name is one path segment checked against a strict alphabet and a list
 * of extensions (srv_web_type), and files are opened with O_NOFOLLOW and
 * must be regular.
 *
 * DESIGN
 * - The files are read from disk at each request (--web-dir, by default
 *   build/MODE/web beside the binary), not compiled in: the server builds
 *   and runs without Node, and a rebuilt dashboard needs no server rebuild.
 *   A missing index.html is a 404 that says how to build it.
 * - Caching: ETag "<size>-<mtime ns>" and 304 on If-None-Match for both.
 *   index.html is "no-cache" (revalidated every load, so a new build is
 *   seen at once); /ui/ files are immutable for a year, since their names
 *   change with their content.
 * - /ui/features.json is the one generated answer: which optional pages
 *   (devices) this server's route table backs.
 * - Every answer carries SRV_WEB_CSP, nosniff, no-referrer and DENY
 *   framing: the dashboard runs no inline script and talks to this origin
 *   only.
 */
#include "server/web_static.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "server/http_int.h"
#include "server/text.h"

static const struct {
    const char *ext;
    const char *type;
} web_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".map", "application/json"},
    {".json", "application/json"},
    {".png", "image/png"},
    {".svg", "image/svg+xml"},
    {".woff2", "font/woff2"},
};

const char *srv_web_type(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.' || name[0] == '-' || name[0] == '_' ||
        strstr(name, "..") != NULL)
        return NULL;
    for (const char *p = name; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '-' || c == '_';
        if (!ok)
            return NULL;
    }
    for (size_t i = 0; i < sizeof(web_types) / sizeof(web_types[0]); i++) {
        size_t e = strlen(web_types[i].ext);
        if (n > e && strcmp(name + n - e, web_types[i].ext) == 0)
            return web_types[i].type;
    }
    return NULL;
}

int srv_web_path(const char *web_dir, const char *name, char *out, size_t cap)
{
    int k = name ? snprintf(out, cap, "%s/ui/%s", web_dir, name)
                 : snprintf(out, cap, "%s/index.html", web_dir);
    return k < 0 || (size_t)k >= cap ? -1 : 0;
}

static void add_security_headers(struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "Content-Security-Policy", SRV_WEB_CSP);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
}

/* Answers the file at path (name: what the client asked for, for messages)
 * with type and cache_control, or 304 when If-None-Match has its ETag. */
static enum MHD_Result web_reply_file(struct srv_http *h, struct MHD_Connection *conn,
                                      struct srv_req *r, const char *path, const char *name,
                                      const char *type, const char *cache_control)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT && strcmp(name, "/") == 0)
            return srv_reply_error(conn, r, 404, "not_found",
                                   "the dashboard is not built: no index.html in %s "
                                   "(make builds web/ into build/MODE/web; see --web-dir)",
                                   h->cfg->web_dir);
        return srv_reply_error(conn, r, 404, "not_found", "no dashboard file %s", name);
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 0 ||
        (uint64_t)sb.st_size > SRV_WEB_FILE_MAX) {
        close(fd);
        return srv_reply_error(conn, r, 404, "not_found", "no dashboard file %s", name);
    }
    char etag[64];
    snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)sb.st_size,
             (uint64_t)sb.st_mtim.tv_sec * 1000000000u + (uint64_t)sb.st_mtim.tv_nsec);
    const char *inm = srv_header(conn, "If-None-Match");
    struct MHD_Response *resp = NULL;
    unsigned status = MHD_HTTP_OK;
    if (inm && strcmp(inm, etag) == 0) {
        close(fd);
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_MODIFIED;
    } else {
        resp = MHD_create_response_from_fd((uint64_t)sb.st_size, fd); /* owns fd */
        if (resp == NULL)
            close(fd);
        else
            MHD_add_response_header(resp, "Content-Type", type);
    }
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Cache-Control", cache_control);
    add_security_headers(resp);
    return srv_reply_response(conn, r, status, resp);
}

SRV_HANDLER(srv_web_index)
{
    char path[1200];
    if (srv_web_path(h->cfg->web_dir, NULL, path, sizeof(path)) != 0)
        return srv_reply_error(conn, r, 500, "internal", "--web-dir is too long");
    return web_reply_file(h, conn, r, path, "/", "text/html; charset=utf-8", "no-cache");
}

/* /ui/features.json: which optional pages this server can back, from its
 * route table, so that the dashboard never probes a route that is absent
 * (a 404 would be a console error on every load). */
static enum MHD_Result web_reply_features(struct MHD_Connection *conn, struct srv_req *r)
{
    json_t *j = json_pack("{s:b}", "devices", srv_http_has_route("GET", "/api/v1/devices"));
    struct srv_text b = {0};
    enum dp_err err = j ? srv_text_add_json(&b, j, JSON_COMPACT) : DP_ENOMEM;
    json_decref(j);
    if (err) {
        srv_text_free(&b);
        return MHD_NO;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(b.len, b.p, dp_free);
    if (resp == NULL) {
        srv_text_free(&b);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    add_security_headers(resp);
    return srv_reply_response(conn, r, MHD_HTTP_OK, resp);
}

SRV_HANDLER(srv_web_asset)
{
    const char *name = r->params[0];
    if (strcmp(name, SRV_WEB_FEATURES) == 0)
        return web_reply_features(conn, r);
    const char *type = srv_web_type(name);
    char path[1200];
    if (type == NULL)
        return srv_reply_error(conn, r, 404, "not_found", "no dashboard file %s", name);
    if (srv_web_path(h->cfg->web_dir, name, path, sizeof(path)) != 0)
        return srv_reply_error(conn, r, 500, "internal", "--web-dir is too long");
    return web_reply_file(h, conn, r, path, name, type, "public, max-age=31536000, immutable");
}
