/*
 * The store, part 4: the device farm (see store.h, "Devices", and
 * migrations/0005_devices.sql). A device is a row bound to the device token
 * that registered it and to its current worker; its state is derived when
 * listed from its worker's last_seen_at (claims and heartbeats refresh it)
 * and its profile tasks. Claiming, for a device, is in store_queue.c.
 */
#include "server/store.h"

#include <stdio.h>
#include <string.h>

#include "server/device_select.h"
#include "server/store_int.h"

enum dp_err srv_store_device_register(struct srv_store *st, const struct srv_principal *who,
                                      const char *name, const char *version, json_t *capabilities,
                                      json_t *description, json_t *labels, json_t **out,
                                      struct dp_errinfo *ei)
{
    char wid[SRV_ID_MAX], did[SRV_ID_MAX];
    int has_row = 0, takeover = 0;
    *out = NULL;
    if (who->scope != SRV_SCOPE_DEVICE)
        return dp_errinfo_set(ei, DP_EPERM, "only a device token registers a device");
    enum dp_err err = srv_id_new("wkr_", wid);
    if (!err)
        err = srv_id_new("dev_", did);
    if (err)
        return err;
    srv_store__lock(st);
    err = srv_store__begin(st, ei);
    if (err)
        goto out;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_DEVICE_BY_NAME);
    srv_store__bind_text(s, ":name", name);
    err = srv_store__step(st, s, &has_row, ei);
    if (!err && has_row) {
        if (strcmp(srv_store__col_text(s, 1), who->token_id) != 0)
            err = dp_errinfo_set(ei, DP_EEXIST,
                                 "name: device '%s' is registered with another token; pick "
                                 "another --device-name or remove that device first",
                                 name);
        snprintf(did, sizeof(did), "%s", srv_store__col_text(s, 0));
        takeover = 1;
    }
    sqlite3_reset(s);
    if (!err)
        err = srv_store__worker_insert(st, who, wid, name, version, capabilities, description, ei);
    if (!err) {
        s = srv_store__stmt(st, takeover ? STMT_DEVICE_TAKEOVER : STMT_DEVICE_INSERT);
        srv_store__bind_text(s, ":id", did);
        srv_store__bind_text(s, ":worker", wid);
        if (!takeover) {
            srv_store__bind_text(s, ":name", name);
            srv_store__bind_text(s, ":team", who->team_id[0] ? who->team_id : NULL);
            srv_store__bind_text(s, ":token", who->token_id);
            srv_store__bind_int(s, ":now", srv_now_ms());
        }
        err = srv_store__bind_json(s, ":labels", labels);
        if (!err)
            err = srv_store__bind_json(s, ":desc", description);
        if (!err)
            err = srv_store__exec(st, s, ei);
    }
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    if (!err) {
        *out = srv_store__register_answer(st, wid);
        if (*out == NULL || json_object_set_new(*out, "device_id", json_string(did)) != 0)
            err = DP_ENOMEM;
    }
    return err;
}

/* The current row of DEVICE_LIST as an API object. */
static json_t *device_json(sqlite3_stmt *s)
{
    int draining = srv_store__col_int(s, 6) != 0;
    int offline = srv_store__col_int(s, 10) != 0;
    int64_t busy = srv_store__col_int(s, 11);
    const char *state = offline ? "offline" : draining ? "draining" : busy ? "busy" : "idle";
    return json_pack("{s:o, s:o, s:o, s:b, s:o, s:o, s:s, s:b, s:I, s:I, s:o, s:o}", "id",
                     srv_store__col_str(s, 1), "name", srv_store__col_str(s, 2), "team_id",
                     srv_store__col_str(s, 3), "shared", srv_store__col_null(s, 3), "labels",
                     srv_store__col_json(s, 4), "description", srv_store__col_json(s, 5), "state",
                     state, "draining", draining, "queue", (json_int_t)srv_store__col_int(s, 12),
                     "tasks_run", (json_int_t)srv_store__col_int(s, 7), "created_at",
                     srv_store__col_time(s, 8), "last_seen_at", srv_store__col_time(s, 9));
}

enum dp_err srv_store_device_list(struct srv_store *st, const struct srv_principal *who,
                                  json_t **out, struct dp_errinfo *ei)
{
    json_t *items = json_array();
    int has_row = 0;
    enum dp_err err = items ? DP_OK : DP_ENOMEM;
    *out = NULL;
    srv_store__lock(st);
    sqlite3_stmt *s = srv_store__stmt(st, STMT_DEVICE_LIST);
    srv_store__bind_text(s, ":team", who->scope == SRV_SCOPE_ADMIN ? NULL : who->team_id);
    srv_store__bind_int(s, ":offline_before", srv_now_ms() - st->cfg.lease_ms);
    while (!err) {
        err = srv_store__step(st, s, &has_row, ei);
        if (err || !has_row)
            break;
        if (json_array_append_new(items, device_json(s)) != 0)
            err = DP_ENOMEM;
    }
    sqlite3_reset(s);
    srv_store__unlock(st);
    if (!err && (*out = json_pack("{s:o}", "items", items)) == NULL)
        err = DP_ENOMEM;
    else if (err)
        json_decref(items);
    return err;
}

/* Whether who may change device id: the admin any, a team its own (not a
 * shared one, not another team's: those read as absent). */
static enum dp_err device_owned(struct srv_store *st, const struct srv_principal *who,
                                const char *id, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_DEVICE_TEAM);
    srv_store__bind_text(s, ":id", id);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    int ok = has_row &&
             (who->scope == SRV_SCOPE_ADMIN ||
              (!srv_store__col_null(s, 0) && strcmp(srv_store__col_text(s, 0), who->team_id) == 0));
    sqlite3_reset(s);
    if (!err && !ok)
        err = dp_errinfo_set(ei, DP_ENOENT, "no device '%s' of this team", id);
    return err;
}

enum dp_err srv_store_device_drain(struct srv_store *st, const struct srv_principal *who,
                                   const char *id, int on, struct dp_errinfo *ei)
{
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (!err) {
        err = device_owned(st, who, id, ei);
        if (!err) {
            sqlite3_stmt *s = srv_store__stmt(st, STMT_DEVICE_DRAIN);
            srv_store__bind_text(s, ":id", id);
            srv_store__bind_int(s, ":on", on != 0);
            err = srv_store__exec(st, s, ei);
        }
        err = srv_store__finish(st, err, ei);
    }
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_device_remove(struct srv_store *st, const struct srv_principal *who,
                                    const char *id, struct dp_errinfo *ei)
{
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (!err) {
        err = device_owned(st, who, id, ei);
        if (!err) {
            sqlite3_stmt *s = srv_store__stmt(st, STMT_DEVICE_REMOVE);
            srv_store__bind_text(s, ":id", id);
            srv_store__bind_int(s, ":now", srv_now_ms());
            err = srv_store__exec(st, s, ei);
        }
        err = srv_store__finish(st, err, ei);
    }
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store__devices_match(struct srv_store *st, const char *team,
                                     const json_t *selectors, json_t *ids_out,
                                     struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_DEVICES_SERVING);
    srv_store__bind_text(s, ":team", team);
    int has_row = 0;
    enum dp_err err = DP_OK;
    for (;;) {
        err = srv_store__step(st, s, &has_row, ei);
        if (err || !has_row)
            break;
        json_t *labels = srv_store__col_json(s, 2), *desc = srv_store__col_json(s, 3);
        if (srv_device_select_match(selectors, srv_store__col_text(s, 1), labels, desc) &&
            json_array_append_new(ids_out, json_string(srv_store__col_text(s, 0))) != 0)
            err = DP_ENOMEM;
        json_decref(labels);
        json_decref(desc);
        if (err)
            break;
    }
    sqlite3_reset(s);
    return err;
}

/* ---- Latency tables ------------------------------------------------------ */

int64_t srv_store__latency_fresh_after(const struct srv_store *st, int64_t now)
{
    return st->cfg.latency_max_age_ms > 0 ? now - st->cfg.latency_max_age_ms : 0;
}

enum dp_err srv_store_latency_put(struct srv_store *st, const struct srv_principal *who,
                                  const char *arch, const char *scheme, const char *task_id,
                                  const json_t *table, json_t **out, struct dp_errinfo *ei)
{
    char did[SRV_ID_MAX], dname[128];
    int has_row = 0;
    *out = NULL;
    if (who->scope != SRV_SCOPE_DEVICE)
        return dp_errinfo_set(ei, DP_EPERM,
                              "only a device token uploads a latency table (its own device's)");
    const int64_t now = srv_now_ms();
    srv_store__lock(st);
    sqlite3_stmt *s = srv_store__stmt(st, STMT_DEVICE_OF_TOKEN);
    srv_store__bind_text(s, ":token", who->token_id);
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (!err && !has_row)
        err = dp_errinfo_set(ei, DP_ENOENT,
                             "this device token has no registered device: register first "
                             "(serve --profile)");
    if (!err) {
        snprintf(did, sizeof(did), "%s", srv_store__col_text(s, 0));
        snprintf(dname, sizeof(dname), "%s", srv_store__col_text(s, 1));
    }
    sqlite3_reset(s);
    /* A latency task's upload: the task must be leased to this token's
     * worker on this device (complete then finds the table). */
    if (!err && task_id != NULL) {
        s = srv_store__stmt(st, STMT_LATENCY_TASK_OF_TOKEN);
        srv_store__bind_text(s, ":task", task_id);
        srv_store__bind_text(s, ":token", who->token_id);
        srv_store__bind_text(s, ":dev", did);
        err = srv_store__step(st, s, &has_row, ei);
        if (!err && !has_row)
            err = dp_errinfo_set(ei, DP_ENOENT,
                                 "task: '%s' is not a latency task leased to this device", task_id);
        sqlite3_reset(s);
    }
    if (!err) {
        s = srv_store__stmt(st, STMT_LATENCY_PUT);
        srv_store__bind_text(s, ":task", task_id);
        srv_store__bind_text(s, ":dev", did);
        srv_store__bind_text(s, ":arch", arch);
        srv_store__bind_text(s, ":scheme", scheme);
        srv_store__bind_int(s, ":now", now);
        err = srv_store__bind_json(s, ":tbl", table);
        if (!err)
            err = srv_store__exec(st, s, ei);
    }
    srv_store__unlock(st);
    if (!err &&
        (*out = json_pack("{s:s, s:s, s:s, s:s, s:I}", "device_id", did, "device", dname, "arch",
                          arch, "scheme", scheme, "measured_at", (json_int_t)now)) == NULL)
        err = DP_ENOMEM;
    return err;
}

enum dp_err srv_store_latency_get(struct srv_store *st, const struct srv_principal *who,
                                  const char *arch, const char *scheme, const json_t *selector,
                                  const char *task_id, json_t **out, struct dp_errinfo *ei)
{
    json_t *ids = json_array();
    int has_row = 0;
    char team[SRV_ID_MAX];
    *out = NULL;
    if (ids == NULL)
        return DP_ENOMEM;
    snprintf(team, sizeof(team), "%s", who->team_id);
    srv_store__lock(st);
    enum dp_err err = DP_OK;
    if (team[0] == '\0' && task_id != NULL) {
        sqlite3_stmt *t = srv_store__stmt(st, STMT_TASK_LEASED_TEAM);
        srv_store__bind_text(t, ":task", task_id);
        srv_store__bind_text(t, ":token", who->token_id);
        err = srv_store__step(st, t, &has_row, ei);
        if (!err && !has_row)
            err = dp_errinfo_set(ei, DP_ENOENT, "task: '%s' is not leased to this token's workers",
                                 task_id);
        if (!err && srv_store__col_text(t, 0) != NULL)
            snprintf(team, sizeof(team), "%s", srv_store__col_text(t, 0));
        sqlite3_reset(t);
        has_row = 0;
    }
    if (!err)
        err = srv_store__devices_match(st, team[0] ? team : NULL, selector, ids, ei);
    const int64_t now = srv_now_ms();
    sqlite3_stmt *s = srv_store__stmt(st, STMT_LATENCY_GET);
    srv_store__bind_text(s, ":arch", arch);
    srv_store__bind_text(s, ":scheme", scheme);
    srv_store__bind_int(s, ":fresh_after", srv_store__latency_fresh_after(st, now));
    if (!err)
        err = srv_store__bind_json(s, ":ids", ids);
    if (!err)
        err = srv_store__step(st, s, &has_row, ei);
    if (!err && !has_row)
        err = dp_errinfo_set(ei, DP_ENOENT,
                             "no latency table for arch '%s', scheme '%s' on the %zu device(s) "
                             "the selector matches: a device uploads one (PUT /agent/v1/latency)",
                             arch, scheme, json_array_size(ids));
    if (!err) {
        *out = srv_store__col_json(s, 0);
        if (!json_is_object(*out) ||
            json_object_set_new(*out, "measured_at", srv_store__col_time(s, 1)) != 0 ||
            json_object_set_new(*out, "device_id", json_string(srv_store__col_text(s, 2))) != 0 ||
            json_object_set_new(*out, "device", json_string(srv_store__col_text(s, 3))) != 0 ||
            json_object_set_new(*out, "arch", json_string(arch)) != 0 ||
            json_object_set_new(*out, "scheme", json_string(scheme)) != 0 ||
            json_object_set_new(*out, "task_id",
                                srv_store__col_null(s, 4)
                                    ? json_null()
                                    : json_string(srv_store__col_text(s, 4))) != 0 ||
            json_object_set_new(*out, "fresh", json_boolean(srv_store__col_int(s, 5) != 0)) != 0 ||
            json_object_set_new(*out, "age_s",
                                json_integer((now - srv_store__col_int(s, 1)) / 1000)) != 0) {
            json_decref(*out);
            *out = NULL;
            err = DP_ENOMEM;
        }
    }
    sqlite3_reset(s);
    srv_store__unlock(st);
    json_decref(ids);
    return err;
}
