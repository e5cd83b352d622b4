/*
 * Models and datasets: create from a built-in name (JSON body) or from an
 * upload (raw body streamed to the artifact store, hashed, validated, then
 * published), list, get, and download.
 */
#include <stdio.h>
#include <string.h>

#include "common/dataset.h"
#include "server/http_int.h"
#include "server/validate.h"

static const char *const builtin_archs[] = {"lenet-300-100",     "lenet5",
                                            "vgg16-cifar",       "resnet20-cifar",
                                            "resnet20-fmnist",   "resnet56-cifar",
                                            "mobilenetv2-cifar", "lstm-fmnist",
                                            "gru-fmnist",        NULL};
static const char *const builtin_datasets[] = {"fashion-mnist", NULL};

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

static int is_model_route(const struct srv_req *r)
{
    return strcmp(r->route->path, "/api/v1/models") == 0;
}

/* Checks ?name= and ?format= before the first byte of an upload is taken. */
SRV_HANDLER(srv_api_asset_upload_begin)
{
    (void)h;
    static const char *const model_formats[] = {"onnx", "safetensors", NULL};
    int model = is_model_route(r);
    const char *name = srv_query(conn, "name"), *format = srv_query(conn, "format");
    struct dp_errinfo ei = {0};
    if (name == NULL)
        return srv_reply_error(conn, r, 400, "invalid_request",
                               "name: required query parameter for an upload (?name=N&format=F); "
                               "or send a JSON body with Content-Type: application/json");
    if (srv_validate_name(name, "name", &ei) != DP_OK)
        return srv_reply_err(conn, r, ei.code, &ei);
    int known = model ? format != NULL && in_list(format, model_formats)
                      : dp_dataset_format_find(format) != NULL;
    if (!known) {
        char list[64] = "onnx, safetensors";
        if (!model)
            dp_dataset_format_list(list, sizeof(list));
        return srv_reply_error(conn, r, 400, "invalid_request", "format: must be one of %s", list);
    }
    return MHD_YES;
}

/* POST /api/v1/models or /datasets with a JSON body: a built-in. */
static enum MHD_Result create_builtin(struct srv_http *h, struct MHD_Connection *conn,
                                      struct srv_req *r, int model)
{
    static const char *const model_keys[] = {"name", "arch", NULL};
    static const char *const dataset_keys[] = {"name", "builtin", NULL};
    struct dp_errinfo ei = {0};
    const char *name = NULL, *builtin = NULL, *idem = NULL;
    const char *key = model ? "arch" : "builtin";
    json_t *out = NULL;
    int replayed = 0;
    enum dp_err err = srv_json_only(r->json, "body", model ? model_keys : dataset_keys, &ei);
    if (!err)
        err = srv_json_str(r->json, "body", "name", 1, &name, &ei);
    if (!err)
        err = srv_validate_name(name, "name", &ei);
    if (!err)
        err = srv_json_str(r->json, "body", key, 1, &builtin, &ei);
    if (!err && !in_list(builtin, model ? builtin_archs : builtin_datasets))
        err = dp_errinfo_set(&ei, DP_EINVAL,
                             model ? "body.arch: unknown architecture (lenet-300-100, lenet5, "
                                     "vgg16-cifar, resnet20-cifar, resnet20-fmnist, "
                                     "resnet56-cifar, mobilenetv2-cifar, lstm-fmnist, gru-fmnist)"
                                   : "body.builtin: unknown dataset (fashion-mnist)");
    if (!err)
        err = srv_idem_key(conn, &idem, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    char req_hash[65];
    err = srv_idem_hash(r->body, r->body_len, req_hash);
    if (err)
        return srv_reply_err(conn, r, err, NULL);
    struct srv_asset_new a = {.kind = model ? "model" : "dataset",
                              .name = name,
                              .format = "builtin",
                              .builtin = builtin,
                              .idem_key = idem,
                              .req_hash = req_hash};
    err = srv_store_asset_create(h->st, &r->who, &a, &out, &replayed, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, replayed ? 200 : 201, out);
}

/* The upload is complete in the temp file: hash, validate, publish, record. */
static enum MHD_Result create_upload(struct srv_http *h, struct MHD_Connection *conn,
                                     struct srv_req *r, int model)
{
    struct dp_errinfo ei = {0};
    const char *name = srv_query(conn, "name"), *format = srv_query(conn, "format"), *idem = NULL;
    char sha[65];
    uint64_t size = 0;
    json_t *out = NULL;
    int replayed = 0;
    enum dp_err err = srv_idem_key(conn, &idem, &ei);
    if (!err)
        err = srv_blob_finish(r->blob, sha, &size, &ei);
    if (!err && size == 0)
        err = dp_errinfo_set(&ei, DP_EINVAL, "the upload is empty");
    if (!err) {
        int refused = 0;
        enum MHD_Result q = srv_quota_check(h, conn, r, 0, (int64_t)size, &refused);
        if (refused)
            return q;
    }
    if (!err && model) {
        /* Validating a model holds about twice its size in memory: at most
         * --max-validations at once, the others are asked to come back. */
        if (atomic_fetch_add(&h->n_validating, 1) >= h->cfg->max_validations) {
            atomic_fetch_sub(&h->n_validating, 1);
            return srv_reply_busy(conn, r, 5,
                                  "too many model uploads are being validated; retry shortly");
        }
        err = srv_validate_model(srv_blob_tmp_path(r->blob), format, &ei);
        atomic_fetch_sub(&h->n_validating, 1);
    } else if (!err) {
        err = srv_validate_dataset(srv_blob_tmp_path(r->blob), format, &ei);
    }
    if (!err)
        err = srv_blob_publish(r->blob, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    atomic_fetch_add(&h->n_bytes_uploaded, size);
    /* The request's identity for Idempotency-Key reuse: name, format, content. */
    char req[400], req_hash[65];
    snprintf(req, sizeof(req), "%s\n%s\n%s", name, format, sha);
    err = srv_idem_hash(req, strlen(req), req_hash);
    if (err)
        return srv_reply_err(conn, r, err, NULL);
    struct srv_asset_new a = {.kind = model ? "model" : "dataset",
                              .name = name,
                              .format = format,
                              .sha256 = sha,
                              .size = (int64_t)size,
                              .idem_key = idem,
                              .req_hash = req_hash};
    err = srv_store_asset_create(h->st, &r->who, &a, &out, &replayed, &ei);
    srv_blob_unpin(r->blob); /* the row references the blob now (or never will) */
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, replayed ? 200 : 201, out);
}

SRV_HANDLER(srv_api_model_create)
{
    return r->blob ? create_upload(h, conn, r, 1) : create_builtin(h, conn, r, 1);
}

SRV_HANDLER(srv_api_dataset_create)
{
    return r->blob ? create_upload(h, conn, r, 0) : create_builtin(h, conn, r, 0);
}

static enum MHD_Result asset_list(struct srv_http *h, struct MHD_Connection *conn,
                                  struct srv_req *r, const char *kind)
{
    struct dp_errinfo ei = {0};
    int limit;
    int64_t cursor;
    json_t *out = NULL;
    enum dp_err err = srv_list_args(conn, &limit, &cursor, &ei);
    if (!err)
        err = srv_store_asset_list(h->st, &r->who, kind, limit, cursor, &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, 200, out);
}

static enum MHD_Result asset_get(struct srv_http *h, struct MHD_Connection *conn, struct srv_req *r,
                                 const char *kind)
{
    struct dp_errinfo ei = {0};
    json_t *out = NULL;
    enum dp_err err = srv_store_asset_get(h->st, &r->who, kind, r->params[0], &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, 200, out);
}

SRV_HANDLER(srv_api_model_list)
{
    return asset_list(h, conn, r, "model");
}

SRV_HANDLER(srv_api_dataset_list)
{
    return asset_list(h, conn, r, "dataset");
}

SRV_HANDLER(srv_api_model_get)
{
    return asset_get(h, conn, r, "model");
}

SRV_HANDLER(srv_api_dataset_get)
{
    return asset_get(h, conn, r, "dataset");
}

SRV_HANDLER(srv_api_model_content)
{
    struct dp_errinfo ei = {0};
    json_t *m = NULL;
    enum dp_err err = srv_store_asset_get(h->st, &r->who, "model", r->params[0], &m, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    const char *sha = json_string_value(json_object_get(m, "sha256"));
    if (sha == NULL) {
        json_decref(m);
        return srv_reply_error(conn, r, 404, "not_found",
                               "model '%s' is a built-in architecture without a file",
                               r->params[0]);
    }
    char copy[65];
    snprintf(copy, sizeof(copy), "%s", sha);
    int64_t size = (int64_t)json_integer_value(json_object_get(m, "size"));
    json_decref(m);
    return srv_reply_blob(h, conn, r, copy, size, "application/octet-stream");
}
