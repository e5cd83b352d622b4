/*
 * Latency tables built by the service (docs/api.md, "Latency tables"), at
 * the store: a job with a latency request gains a latency task before
 * compress unless a device it may use has a fresh table for its key; a
 * table stales with age and with the device's fingerprint; a team cannot
 * target another team's device; a latency task completes only after its
 * device uploaded the table.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "server/ids.h"
#include "server/store.h"
#include "tests/unit/test_util.h"

static char dir[256], db[300];
static struct srv_store *st;
static struct srv_principal team_a, team_b, dev_a;
static char worker_a[SRV_ID_MAX];

#define MAX_AGE_MS 60000

static void make_team(const char *name, struct srv_principal *p)
{
    json_t *t = NULL;
    cr_assert_eq(srv_store_team_create(st, name, &t, NULL), DP_OK);
    memset(p, 0, sizeof(*p));
    p->scope = SRV_SCOPE_TEAM;
    snprintf(p->team_id, sizeof(p->team_id), "%s", json_string_value(json_object_get(t, "id")));
    json_decref(t);
}

/* (Re-)registers team_a's device board-1 with compiler cc; its worker id in worker_a. */
static void register_device(const char *cc)
{
    json_t *caps = json_pack("[s, s]", "profile", "latency");
    json_t *desc = json_pack("{s:s, s:[s], s:s, s:s}", "cpu", "Test CPU", "isa", "avx2", "cc", cc,
                             "arch", "x86_64");
    json_t *labels = json_pack("{s:s}", "kind", "board"), *out = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(
        srv_store_device_register(st, &dev_a, "board-1", "1", caps, desc, labels, &out, &ei), DP_OK,
        "%s", ei.msg);
    snprintf(worker_a, sizeof(worker_a), "%s",
             json_string_value(json_object_get(out, "worker_id")));
    json_decref(out);
    json_decref(caps);
    json_decref(desc);
    json_decref(labels);
}

static void setup(void)
{
    dp_log_set_level(DP_LOG_ERROR);
    dp_test_tmpdir_make(dir, sizeof(dir), "store-lat");
    snprintf(db, sizeof(db), "%s/test.db", dir);
    struct srv_queue_cfg cfg = {.lease_ms = 60000, .latency_max_age_ms = MAX_AGE_MS};
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_store_open(db, &cfg, &st, &ei), DP_OK, "%s", ei.msg);
    make_team("a", &team_a);
    make_team("b", &team_b);
    json_t *tok = NULL;
    cr_assert_eq(srv_store_token_create(st, team_a.team_id, "device", "d", 0, &tok, &ei), DP_OK,
                 "%s", ei.msg);
    char hash[65];
    srv_token_hash(json_string_value(json_object_get(tok, "token")), hash);
    json_decref(tok);
    cr_assert_eq(srv_store_token_lookup(st, hash, &dev_a, NULL), DP_OK);
    cr_assert_eq(dev_a.scope, SRV_SCOPE_DEVICE);
    register_device("gcc 12");
}

static void teardown(void)
{
    srv_store_close(st);
    st = NULL;
    char p[400];
    snprintf(p, sizeof(p), "%s/test.db-wal", dir);
    remove(p);
    snprintf(p, sizeof(p), "%s/test.db-shm", dir);
    remove(p);
    dp_test_tmpdir_remove(dir);
}

TestSuite(srv_latency, .init = setup, .fini = teardown);

/* Submits a lenet5 job (pretrain) of team p with a latency request on
 * selector {"kind": "board"}; returns the store's answer (DP_OK: the job in
 * *job). */
static enum dp_err submit(const struct srv_principal *p, json_t **job, struct dp_errinfo *ei)
{
    json_t *m = NULL, *d = NULL;
    int replayed;
    struct srv_asset_new am = {
        .kind = "model", .name = "m", .format = "builtin", .builtin = "lenet5", .req_hash = "x"};
    struct srv_asset_new ad = {.kind = "dataset",
                               .name = "d",
                               .format = "builtin",
                               .builtin = "fashion-mnist",
                               .req_hash = "x"};
    cr_assert_eq(srv_store_asset_create(st, p, &am, &m, &replayed, NULL), DP_OK);
    cr_assert_eq(srv_store_asset_create(st, p, &ad, &d, &replayed, NULL), DP_OK);
    json_t *params = json_pack("{s:{s:i}, s:{}, s:i}", "pretrain", "epochs", 1, "spec", "seed", 1);
    json_t *lat =
        json_pack("{s:s, s:{s:s}, s:[i, i], s:i, s:i, s:i}", "scheme", "irregular", "device",
                  "kind", "board", "rates", 1, 4, "runs", 1, "warmup", 0, "timeout_s", 5);
    struct srv_job_new nj = {.name = "j",
                             .model_id = json_string_value(json_object_get(m, "id")),
                             .dataset_id = json_string_value(json_object_get(d, "id")),
                             .params = params,
                             .has_pretrain = 1,
                             .latency = lat,
                             .priority = 5,
                             .max_attempts = 3,
                             .req_hash = "h"};
    *job = NULL;
    enum dp_err err = srv_store_job_create(st, p, &nj, job, &replayed, ei);
    json_decref(params);
    json_decref(lat);
    json_decref(m);
    json_decref(d);
    return err;
}

/* The job's task of type, or NULL. */
static const json_t *task_of(const json_t *job, const char *type)
{
    size_t i;
    const json_t *t;
    json_array_foreach (json_object_get(job, "tasks"), i, t)
        if (strcmp(json_string_value(json_object_get(t, "type")), type) == 0)
            return t;
    return NULL;
}

/* Whether a new job of team_a measures (has a latency task). */
static int measures(void)
{
    json_t *job = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(submit(&team_a, &job, &ei), DP_OK, "%s", ei.msg);
    const json_t *lt = task_of(job, "latency"), *cp = task_of(job, "compress");
    if (lt != NULL)
        cr_assert_str_eq(json_string_value(json_object_get(cp, "depends_on")),
                         json_string_value(json_object_get(lt, "id")),
                         "compress waits for the latency task");
    int r = lt != NULL;
    json_decref(job);
    return r;
}

static void put_table(const char *task)
{
    json_t *t = json_pack("{s:s, s:s, s:[{s:s, s:[i, i], s:[f, f]}]}", "arch", "lenet5", "scheme",
                          "irregular", "layers", "name", "conv1", "rates", 1, 4, "ms", 1.0, 0.5);
    json_t *out = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_store_latency_put(st, &dev_a, "lenet5", "irregular", task, t, &out, &ei),
                 DP_OK, "%s", ei.msg);
    json_decref(out);
    json_decref(t);
}

static void raw_exec(const char *sql)
{
    sqlite3 *raw = NULL;
    cr_assert_eq(sqlite3_open(db, &raw), SQLITE_OK);
    sqlite3_busy_timeout(raw, 5000);
    cr_assert_eq(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(raw));
    sqlite3_close(raw);
}

Test(srv_latency, measure_once_reuse_while_fresh_measure_again_when_stale)
{
    cr_assert(measures(), "no table yet: the job measures");
    put_table(NULL);
    cr_assert_not(measures(), "a fresh table: reused");
    /* The device's compiler changes: its fingerprint with it. */
    register_device("gcc 13");
    cr_assert(measures(), "measured under another compiler: stale");
    put_table(NULL);
    cr_assert_not(measures(), "measured again: fresh");
    /* Older than the age limit. */
    char sql[200];
    snprintf(sql, sizeof(sql), "UPDATE latency_tables SET measured_at = measured_at - %d",
             MAX_AGE_MS + 1000);
    raw_exec(sql);
    cr_assert(measures(), "older than --latency-max-age-s: stale");
    DP_ASSERT_NO_LEAKS();
}

Test(srv_latency, a_team_targets_only_devices_it_may_use)
{
    json_t *job = NULL;
    struct dp_errinfo ei = {0};
    put_table(NULL);
    /* Team b: team a's device does not serve it, so nothing matches. */
    cr_assert_eq(submit(&team_b, &job, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "spec.auto.device") != NULL, "%s", ei.msg);
    cr_assert_null(job);
    /* And team b's agents cannot read team a's table. */
    json_t *sel = json_pack("[{s:s}]", "kind", "board"), *out = NULL;
    cr_assert_eq(srv_store_latency_get(st, &team_b, "lenet5", "irregular", sel, NULL, &out, &ei),
                 DP_ENOENT);
    cr_assert_eq(srv_store_latency_get(st, &team_a, "lenet5", "irregular", sel, NULL, &out, &ei),
                 DP_OK, "%s", ei.msg);
    cr_assert(json_is_true(json_object_get(out, "fresh")));
    json_decref(out);
    json_decref(sel);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_latency, a_latency_task_completes_only_after_its_table)
{
    json_t *job = NULL, *task = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(submit(&team_a, &job, &ei), DP_OK, "%s", ei.msg);
    char tid[SRV_ID_MAX], sql[200];
    snprintf(tid, sizeof(tid), "%s",
             json_string_value(json_object_get(task_of(job, "latency"), "id")));
    json_decref(job);
    /* The pretraining is done (as if a worker ran it). */
    raw_exec("UPDATE tasks SET state = 'succeeded' WHERE type = 'train'");
    json_t *caps = json_pack("[s, s]", "profile", "latency");
    int no_worker = 0;
    cr_assert_eq(srv_store_task_claim(st, &dev_a, worker_a, caps, &task, &no_worker, &ei), DP_OK,
                 "%s", ei.msg);
    cr_assert_str_eq(json_string_value(json_object_get(task, "id")), tid);
    cr_assert_str_eq(json_string_value(json_object_get(task, "type")), "latency");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(task, "params"), "latency"), "arch")),
                     "lenet5");
    int64_t fence = json_integer_value(json_object_get(task, "fence"));
    json_t *none = json_object();
    cr_assert_eq(srv_store_task_complete(st, &dev_a, tid, fence, none, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "uploaded the table") != NULL, "%s", ei.msg);
    /* An upload naming a task that is not its leased latency task: refused. */
    json_t *t = json_pack("{s:[]}", "layers"), *out = NULL;
    snprintf(sql, sizeof(sql), "tsk_nope");
    cr_assert_eq(srv_store_latency_put(st, &dev_a, "lenet5", "irregular", sql, t, &out, &ei),
                 DP_ENOENT);
    json_decref(t);
    put_table(tid);
    cr_assert_eq(srv_store_task_complete(st, &dev_a, tid, fence, none, &ei), DP_OK, "%s", ei.msg);
    json_decref(none);
    json_decref(caps);
    json_decref(task);
    DP_ASSERT_NO_LEAKS();
}
