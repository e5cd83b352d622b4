/*
 * The HTTP client (see httpc.h): one libcurl easy handle per dp_httpc,
 * reset before each request so options never leak from one request to the
 * next while the connection stays cached.
 *
 * DESIGN: every transfer goes through one write callback whose sink depends
 * on the request kind: memory (capped), a FILE (2xx downloads, capped), or a
 * caller's chunk function (streams). The HTTP status is known by the time
 * the first body byte arrives, so a download that answers 404 lands its
 * error body in memory instead of the caller's file.
 */
#include "common/httpc.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>

#include "common/alloc.h"

struct dp_httpc {
    CURL *curl;
    char *base_url; /* without a trailing '/' */
    char *auth;     /* "Authorization: Bearer ...", or NULL */
    char *ca_file;  /* PEM trust anchors for https, or NULL: the system's store */
    long timeout_ms;
    size_t max_body;
};

enum dp_httpc_sink { DP_SINK_MEM, DP_SINK_FILE, DP_SINK_FN };

struct dp_httpc_xfer {
    CURL *curl;
    enum dp_httpc_sink sink;
    /* memory */
    char *buf;
    size_t len, cap, max;
    /* file */
    FILE *out;
    uint64_t n_out, max_out;
    /* stream */
    dp_httpc_chunk_fn fn;
    void *ud;
    /* why the transfer was cut short by us */
    int too_big, write_failed, stopped;
};

enum dp_err dp_httpc_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? DP_OK : DP_ENOMEM;
}

struct dp_httpc *dp_httpc_new(const char *base_url, const char *token)
{
    struct dp_httpc *h = dp_calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->timeout_ms = 60000;
    h->max_body = (size_t)16 << 20;
    h->curl = curl_easy_init();
    h->base_url = dp_strdup(base_url);
    if (h->curl == NULL || h->base_url == NULL)
        goto fail;
    size_t n = strlen(h->base_url);
    while (n > 0 && h->base_url[n - 1] == '/')
        h->base_url[--n] = '\0';
    if (token != NULL) {
        size_t len = strlen(token) + 32;
        h->auth = dp_malloc(len);
        if (h->auth == NULL)
            goto fail;
        snprintf(h->auth, len, "Authorization: Bearer %s", token);
    }
    return h;
fail:
    dp_httpc_free(h);
    return NULL;
}

void dp_httpc_free(struct dp_httpc *h)
{
    if (h == NULL)
        return;
    int saved = errno;
    if (h->curl != NULL)
        curl_easy_cleanup(h->curl);
    dp_free(h->base_url);
    dp_free(h->auth);
    dp_free(h->ca_file);
    dp_free(h);
    errno = saved;
}

enum dp_err dp_httpc_set_ca(struct dp_httpc *h, const char *ca_file)
{
    char *copy = NULL;
    if (ca_file != NULL && ca_file[0] != '\0') {
        copy = dp_strdup(ca_file);
        if (copy == NULL)
            return DP_ENOMEM;
    }
    dp_free(h->ca_file);
    h->ca_file = copy;
    return DP_OK;
}

void dp_httpc_set_timeout_ms(struct dp_httpc *h, long timeout_ms)
{
    h->timeout_ms = timeout_ms;
}

void dp_httpc_set_max_body(struct dp_httpc *h, size_t max_len)
{
    h->max_body = max_len;
}

void dp_http_resp_free(struct dp_http_resp *r)
{
    if (r == NULL)
        return;
    dp_free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

const char *dp_http_resp_message(const struct dp_http_resp *r)
{
    if (r->json != NULL) {
        const char *m = json_string_value(json_object_get(r->json, "message"));
        if (m != NULL)
            return m;
    }
    if (r->body != NULL && r->body_len > 0)
        return r->body;
    return r->status == 0 ? "no answer" : "the server gave no reason";
}

/* ---- Transfer plumbing ---------------------------------------------------- */

static int dp_xfer_mem_append(struct dp_httpc_xfer *x, const char *p, size_t n)
{
    if (n > x->max - x->len) {
        x->too_big = 1;
        return -1;
    }
    if (x->len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + n + 1)
            cap *= 2;
        char *nb = dp_realloc(x->buf, cap);
        if (nb == NULL)
            return -1;
        x->buf = nb;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, p, n);
    x->len += n;
    x->buf[x->len] = '\0';
    return 0;
}

static size_t dp_xfer_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct dp_httpc_xfer *x = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    int ok = status >= 200 && status < 300;
    if (x->sink == DP_SINK_FILE && ok) {
        if (n > x->max_out - x->n_out) {
            x->too_big = 1;
            return 0;
        }
        if (fwrite(p, 1, n, x->out) != n) {
            x->write_failed = 1;
            return 0;
        }
        x->n_out += n;
        return n;
    }
    if (x->sink == DP_SINK_FN && ok) {
        if (x->fn(x->ud, p, n) != 0) {
            x->stopped = 1;
            return 0;
        }
        return n;
    }
    return dp_xfer_mem_append(x, p, n) == 0 ? n : 0;
}

static size_t dp_xfer_read(char *p, size_t size, size_t nmemb, void *ud)
{
    FILE *f = ud;
    size_t n = fread(p, 1, size * nmemb, f);
    if (n == 0 && ferror(f))
        return CURL_READFUNC_ABORT;
    return n;
}

/* Resets the handle and sets what every request shares. */
static enum dp_err dp_httpc_prepare(struct dp_httpc *h, const char *method, const char *path,
                                    const char *const *headers, struct curl_slist **hl,
                                    struct dp_httpc_xfer *x, struct dp_errinfo *ei)
{
    char url[4096];
    int n = snprintf(url, sizeof(url), "%s%s", h->base_url, path);
    if (n < 0 || (size_t)n >= sizeof(url))
        return dp_errinfo_set(ei, DP_ETOOBIG, "URL too long: %.64s...", path);
    curl_easy_reset(h->curl);
    *hl = NULL;
    if (h->auth != NULL)
        *hl = curl_slist_append(*hl, h->auth);
    /* No "Expect: 100-continue" round trip before uploads. */
    *hl = curl_slist_append(*hl, "Expect:");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        *hl = curl_slist_append(*hl, headers[i]);
    if (*hl == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory building request headers");
    x->curl = h->curl;
    x->max = h->max_body;
    CURLcode c = CURLE_OK;
    c |= curl_easy_setopt(h->curl, CURLOPT_URL, url);
    c |= curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
    c |= curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, *hl);
    c |= curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, dp_xfer_write);
    c |= curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, x);
    c |= curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    c |= curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    c |= curl_easy_setopt(h->curl, CURLOPT_USERAGENT, "dnnpress/1");
    c |= curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    /* Peer and host verification are libcurl's defaults and stay on: there
     * is no switch to turn them off. A private CA is given as a file. */
    if (h->ca_file != NULL)
        c |= curl_easy_setopt(h->curl, CURLOPT_CAINFO, h->ca_file);
    if (c != CURLE_OK)
        return dp_errinfo_set(ei, DP_ENOMEM, "cannot set up the request to %s", url);
    return DP_OK;
}

/* What to do about a TLS failure, appended to curl's reason. */
static const char *dp_httpc_tls_hint(CURLcode c, const char *ca_file)
{
    switch (c) {
        case CURLE_PEER_FAILED_VERIFICATION:
            return ca_file != NULL
                       ? " (the server's certificate is not signed by the --ca file's "
                         "CA, or does not name this host)"
                       : " (the server's certificate is not trusted by this machine's CA "
                         "store: give its CA with --ca FILE or DNNPRESS_CA)";
        case CURLE_SSL_CACERT_BADFILE:
            return " (the --ca file cannot be read as PEM certificates)";
        case CURLE_SSL_CONNECT_ERROR:
            return " (TLS handshake failed: is the server serving https on that port?)";
        default:
            return "";
    }
}

/* Runs the transfer and fills resp; maps our own cut-offs and curl's errors. */
static enum dp_err dp_httpc_perform(struct dp_httpc *h, const char *method, const char *path,
                                    struct dp_httpc_xfer *x, struct dp_http_resp *resp,
                                    struct dp_errinfo *ei)
{
    memset(resp, 0, sizeof(*resp));
    CURLcode c = curl_easy_perform(h->curl);
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &resp->status);
    resp->body = x->buf;
    resp->body_len = x->len;
    x->buf = NULL;
    if (resp->body != NULL && resp->body_len > 0 && (resp->body[0] == '{' || resp->body[0] == '['))
        resp->json = json_loadb(resp->body, resp->body_len, 0, NULL);
    if (x->too_big)
        return dp_errinfo_set(ei, DP_ETOOBIG, "%s %s: the answer is larger than the limit", method,
                              path);
    if (x->write_failed)
        return dp_errinfo_set(ei, DP_EIO, "%s %s: cannot write the download: %s", method, path,
                              strerror(errno));
    if (x->stopped)
        return DP_OK;
    if (c != CURLE_OK) {
        resp->status = 0;
        return dp_errinfo_set(ei, DP_EIO, "%s %s%s: %s%s", method, h->base_url, path,
                              curl_easy_strerror(c), dp_httpc_tls_hint(c, h->ca_file));
    }
    return DP_OK;
}

/* ---- Requests ------------------------------------------------------------- */

enum dp_err dp_httpc_json(struct dp_httpc *h, const char *method, const char *path, json_t *body,
                          const char *const *headers, struct dp_http_resp *resp,
                          struct dp_errinfo *ei)
{
    struct dp_httpc_xfer x = {.sink = DP_SINK_MEM};
    struct curl_slist *hl = NULL;
    char *text = NULL;
    enum dp_err err = dp_httpc_prepare(h, method, path, headers, &hl, &x, ei);
    if (err)
        goto out;
    if (body != NULL) {
        size_t len = json_dumpb(body, NULL, 0, JSON_COMPACT);
        text = len > 0 ? dp_malloc(len) : NULL;
        hl = curl_slist_append(hl, "Content-Type: application/json");
        if (text == NULL || hl == NULL || json_dumpb(body, text, len, JSON_COMPACT) != len) {
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory encoding the request");
            goto out;
        }
        curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (h->timeout_ms > 0)
        curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    err = dp_httpc_perform(h, method, path, &x, resp, ei);
out:
    curl_slist_free_all(hl);
    dp_free(x.buf);
    dp_free(text);
    return err;
}

enum dp_err dp_httpc_send_file(struct dp_httpc *h, const char *method, const char *path,
                               const char *file_path, const char *const *headers,
                               struct dp_http_resp *resp, struct dp_errinfo *ei)
{
    struct dp_httpc_xfer x = {.sink = DP_SINK_MEM};
    struct curl_slist *hl = NULL;
    FILE *f = fopen(file_path, "rb");
    enum dp_err err = DP_OK;
    memset(resp, 0, sizeof(*resp));
    if (f == NULL) {
        int e = errno;
        err = dp_errinfo_set(ei, dp_err_from_errno(e), "%s: %s", file_path, strerror(e));
        goto out;
    }
    if (fseeko(f, 0, SEEK_END) != 0) {
        err = dp_errinfo_set(ei, DP_EIO, "%s: cannot find its size", file_path);
        goto out;
    }
    off_t size = ftello(f);
    rewind(f);
    err = dp_httpc_prepare(h, method, path, headers, &hl, &x, ei);
    if (err)
        goto out;
    hl = curl_slist_append(hl, "Content-Type: application/octet-stream");
    if (hl == NULL || size < 0) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "cannot set up the upload of %s", file_path);
        goto out;
    }
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h->curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h->curl, CURLOPT_READFUNCTION, dp_xfer_read);
    curl_easy_setopt(h->curl, CURLOPT_READDATA, f);
    curl_easy_setopt(h->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    /* Big files take as long as they take; a stalled one does not. */
    curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_TIME, 60L);
    err = dp_httpc_perform(h, method, path, &x, resp, ei);
out:
    if (f != NULL)
        fclose(f);
    curl_slist_free_all(hl);
    dp_free(x.buf);
    return err;
}

enum dp_err dp_httpc_get_file(struct dp_httpc *h, const char *path, FILE *out, uint64_t max_bytes,
                              struct dp_http_resp *resp, struct dp_errinfo *ei)
{
    struct dp_httpc_xfer x = {.sink = DP_SINK_FILE, .out = out, .max_out = max_bytes};
    struct curl_slist *hl = NULL;
    memset(resp, 0, sizeof(*resp));
    enum dp_err err = dp_httpc_prepare(h, "GET", path, NULL, &hl, &x, ei);
    if (!err) {
        curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_TIME, 60L);
        err = dp_httpc_perform(h, "GET", path, &x, resp, ei);
    }
    if (!err && fflush(out) != 0)
        err = dp_errinfo_set(ei, DP_EIO, "GET %s: cannot write the download: %s", path,
                             strerror(errno));
    curl_slist_free_all(hl);
    dp_free(x.buf);
    return err;
}

enum dp_err dp_httpc_stream(struct dp_httpc *h, const char *path, const char *const *headers,
                            dp_httpc_chunk_fn fn, void *ud, long idle_s, struct dp_http_resp *resp,
                            struct dp_errinfo *ei)
{
    struct dp_httpc_xfer x = {.sink = DP_SINK_FN, .fn = fn, .ud = ud};
    struct curl_slist *hl = NULL;
    memset(resp, 0, sizeof(*resp));
    enum dp_err err = dp_httpc_prepare(h, "GET", path, headers, &hl, &x, ei);
    if (!err) {
        hl = curl_slist_append(hl, "Accept: text/event-stream");
        curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_TIME, idle_s > 0 ? idle_s : 3600L);
        err = dp_httpc_perform(h, "GET", path, &x, resp, ei);
    }
    curl_slist_free_all(hl);
    dp_free(x.buf);
    return err;
}
