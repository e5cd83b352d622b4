/*
 * DELETE for jobs, models and datasets (docs/api.md, "Deleting"). The rows go
 * at once; the blobs they referenced become unreferenced and the next GC
 * pass after the grace period removes them (server/gc.c), unless another
 * job, model or artifact still names the same bytes.
 */
#include <microhttpd.h>

#include "server/http_int.h"
#include "server/store.h"

static enum MHD_Result reply_deleted(struct MHD_Connection *conn, struct srv_req *r)
{
    return srv_reply_response(conn, r, 204,
                              MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT));
}

SRV_HANDLER(srv_api_job_delete)
{
    struct dp_errinfo ei = {0};
    enum dp_err err = srv_store_job_delete(h->st, &r->who, r->params[0], &ei);
    if (err == DP_EEXIST)
        return srv_reply_error(conn, r, 409, "job_not_finished", "%s", dp_errinfo_msg(&ei, err));
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return reply_deleted(conn, r);
}

static enum MHD_Result asset_delete(struct srv_http *h, struct MHD_Connection *conn,
                                    struct srv_req *r, const char *kind)
{
    struct dp_errinfo ei = {0};
    enum dp_err err = srv_store_asset_delete(h->st, &r->who, kind, r->params[0], &ei);
    if (err == DP_EEXIST)
        return srv_reply_error(conn, r, 409, "in_use", "%s", dp_errinfo_msg(&ei, err));
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return reply_deleted(conn, r);
}

SRV_HANDLER(srv_api_model_delete)
{
    return asset_delete(h, conn, r, "model");
}

SRV_HANDLER(srv_api_dataset_delete)
{
    return asset_delete(h, conn, r, "dataset");
}
