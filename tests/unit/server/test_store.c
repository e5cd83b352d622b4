/*
 * The store and its queue against a real SQLite file in a temporary
 * directory: migrations, claim/lease/fence, reaper, backoff, dead tasks,
 * idempotency, pagination, team isolation, and agents: team agents claim
 * only their team's tasks, a lease is written only by the token whose worker
 * holds it, complete takes only that lease's artifacts.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "server/migrations_gen.h"
#include "server/store.h"
#include "tests/unit/test_util.h"

static char dir[256], db[300];
static struct srv_store *st;
static struct srv_principal team_a, team_b;
/* A shared agent (no team), as the local workers' minted token is. */
static struct srv_principal agent;
static const struct srv_principal admin = {.scope = SRV_SCOPE_ADMIN};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void open_store(int64_t lease_ms)
{
    struct srv_queue_cfg cfg = {.lease_ms = lease_ms, .backoff_base_ms = 0, .backoff_max_ms = 0};
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_store_open(db, &cfg, &st, &ei), DP_OK, "%s", ei.msg);
}

static void make_team(const char *name, struct srv_principal *p)
{
    json_t *t = NULL;
    cr_assert_eq(srv_store_team_create(st, name, &t, NULL), DP_OK);
    memset(p, 0, sizeof(*p));
    p->scope = SRV_SCOPE_TEAM;
    snprintf(p->team_id, sizeof(p->team_id), "%s", json_string_value(json_object_get(t, "id")));
    json_decref(t);
}

/* The principal of an agent token: a shared one when team is NULL (minted as
 * --local-workers does), else one created for team (as the admin route does). */
static void make_agent(const struct srv_principal *team, struct srv_principal *p)
{
    char secret[SRV_TOKEN_LEN], hash[65];
    if (team == NULL) {
        cr_assert_eq(srv_store_agent_token_mint(st, "local", secret, NULL), DP_OK);
    } else {
        json_t *tok = NULL;
        cr_assert_eq(srv_store_token_create(st, team->team_id, "agent", "a", 0, &tok, NULL), DP_OK);
        cr_assert(json_is_false(json_object_get(tok, "shared")));
        snprintf(secret, sizeof(secret), "%s", json_string_value(json_object_get(tok, "token")));
        json_decref(tok);
    }
    srv_token_hash(secret, hash);
    cr_assert_eq(srv_store_token_lookup(st, hash, p, NULL), DP_OK);
    cr_assert_eq(p->scope, SRV_SCOPE_AGENT);
}

static void setup(void)
{
    dp_log_set_level(DP_LOG_WARN);
    dp_test_tmpdir_make(dir, sizeof(dir), "store");
    snprintf(db, sizeof(db), "%s/test.db", dir);
    open_store(60000);
    make_team("a", &team_a);
    make_team("b", &team_b);
    make_agent(NULL, &agent);
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

TestSuite(srv_store, .init = setup, .fini = teardown);

/* Creates a built-in model and dataset for team p and a job with pretrain,
 * and a compile task at the end when compile is set. */
static char *job_new_ex(const struct srv_principal *p, const char *idem, int max_attempts,
                        int compile)
{
    json_t *m = NULL, *d = NULL, *j = NULL;
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
    struct srv_job_new nj = {.name = "j",
                             .model_id = json_string_value(json_object_get(m, "id")),
                             .dataset_id = json_string_value(json_object_get(d, "id")),
                             .params = params,
                             .has_pretrain = 1,
                             .has_compile = compile,
                             .priority = 5,
                             .max_attempts = max_attempts,
                             .idem_key = idem,
                             .req_hash = "h"};
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_store_job_create(st, p, &nj, &j, &replayed, &ei), DP_OK, "%s", ei.msg);
    char *id = dp_strdup(json_string_value(json_object_get(j, "id")));
    json_decref(params);
    json_decref(m);
    json_decref(d);
    json_decref(j);
    return id;
}

static char *job_new(const struct srv_principal *p, const char *idem, int max_attempts)
{
    return job_new_ex(p, idem, max_attempts, 0);
}

static json_t *caps_of(const char *type)
{
    return json_pack("[s]", type);
}

static char *worker_new_for(const struct srv_principal *who)
{
    json_t *out = NULL, *caps = json_pack("[s,s,s,s]", "train", "compress", "retrain", "export");
    json_t *dev = json_object();
    cr_assert_eq(srv_store_worker_register(st, who, "w", "1", caps, dev, &out, NULL), DP_OK);
    char *id = dp_strdup(json_string_value(json_object_get(out, "worker_id")));
    json_decref(out);
    json_decref(caps);
    json_decref(dev);
    return id;
}

static char *worker_new(void)
{
    return worker_new_for(&agent);
}

Test(srv_store, migrations_record_the_schema_version)
{
    cr_assert_eq(srv_store_schema_version(st), 7);
    cr_assert_eq(srv_store_integrity_check(st, NULL), DP_OK);
    /* Reopening applies nothing and keeps the data. */
    srv_store_close(st);
    open_store(60000);
    json_t *teams = NULL;
    cr_assert_eq(srv_store_team_list(st, 50, 0, &teams, NULL), DP_OK);
    cr_assert_eq(json_array_size(json_object_get(teams, "items")), 2);
    json_decref(teams);
    DP_ASSERT_NO_LEAKS();
}

/* Runs sql on raw and returns the first column of its one row as text (static buffer). */
static const char *raw_text(sqlite3 *raw, const char *sql)
{
    static char buf[4096];
    sqlite3_stmt *s = NULL;
    buf[0] = '\0';
    cr_assert_eq(sqlite3_prepare_v2(raw, sql, -1, &s, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(raw));
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0) != NULL)
        snprintf(buf, sizeof(buf), "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return buf;
}

/* Every row of the tables the version 4 rebuild touches or that reference
 * tasks, as one text, to compare before and after. */
static const char *const rows_sql =
    "SELECT (SELECT group_concat(seq || '|' || id || '|' || job_id || '|' || type || '|' || state"
    " || '|' || coalesce(depends_on, '-') || '|' || priority || '|' || attempts || '|' || fence"
    " || '|' || coalesce(lease_owner, '-') || '|' || coalesce(lease_expires_at, '-') || '|' ||"
    " run_after || '|' || coalesce(checkpoint_sha, '-') || '|' || outputs || '|' || created_at"
    " || '|' || coalesce(finished_at, '-'), ';') FROM (SELECT * FROM tasks ORDER BY seq))"
    " || '#' || (SELECT group_concat(task_id || kind, ';') FROM task_errors)"
    " || '#' || (SELECT group_concat(task_id || sha256, ';') FROM artifacts)"
    " || '#' || (SELECT seq FROM sqlite_sequence WHERE name = 'tasks')";

/*
 * The version 4 migration rebuilds tasks to widen its type CHECK, and
 * version 5 rebuilds tasks (profile, device_id) and tokens (the device
 * scope) again: on a version 3 database with rows (tasks depending on
 * tasks, a lease, a checkpoint, errors and artifacts referencing them, a
 * token), every row and the AUTOINCREMENT counter survive, the indexes and
 * foreign keys are there again, compile is accepted, profile only with the
 * device it targets, a device token with or without a team, and an
 * unknown type or scope is still refused.
 */
Test(srv_store, a_version_3_database_migrates_to_5_keeping_its_rows)
{
    srv_store_close(st);
    st = NULL;
    char p[400];
    remove(db);
    snprintf(p, sizeof(p), "%s-wal", db);
    remove(p);
    snprintf(p, sizeof(p), "%s-shm", db);
    remove(p);

    /* A version 3 database, built by the first three compiled-in migrations. */
    sqlite3 *raw = NULL;
    cr_assert_eq(sqlite3_open(db, &raw), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(raw, "PRAGMA foreign_keys = ON", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < SRV_N_MIGRATIONS && srv_migrations[i].version <= 3; i++) {
        char sql[32768] = "";
        size_t n = 0;
        for (const char *const *l = srv_migrations[i].lines; *l; l++) {
            size_t k = strlen(*l);
            cr_assert(n + k < sizeof(sql));
            memcpy(sql + n, *l, k + 1);
            n += k;
        }
        char *msg = NULL;
        cr_assert_eq(sqlite3_exec(raw, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s",
                     srv_migrations[i].name, msg ? msg : "");
    }
    const char *fill =
        "PRAGMA user_version = 3;"
        "INSERT INTO teams (id, name, created_at) VALUES ('team_1', 't', 1);"
        "INSERT INTO tokens (id, team_id, scope, name, hash, created_at, origin) VALUES "
        " ('tok_1', 'team_1', 'team', 'k', 'h1', 1, 'api');"
        "INSERT INTO blobs (sha256, size, created_at) VALUES ('ck', 3, 1), ('m1', 3, 1);"
        "INSERT INTO jobs (id, team_id, name, state, model_id, dataset_id, priority, "
        " max_attempts, params, created_at) VALUES ('job_1', 'team_1', 'j', 'running', 'mdl_1',"
        " 'dst_1', 5, 3, '{}', 1);"
        "INSERT INTO tasks (seq, id, job_id, type, state, depends_on, priority, max_attempts, "
        " outputs, created_at, finished_at) VALUES (7, 'tsk_a', 'job_1', 'train', 'succeeded',"
        " NULL, 5, 3, '{\"model\":\"m1\"}', 1, 2);"
        "INSERT INTO tasks (seq, id, job_id, type, state, depends_on, priority, attempts, "
        " max_attempts, fence, lease_owner, lease_expires_at, run_after, checkpoint_sha, "
        " created_at) VALUES (9, 'tsk_b', 'job_1', 'compress', 'leased', 'tsk_a', 5, 2, 3, 4,"
        " 'wkr_1', 99, 10, 'ck', 1);"
        "INSERT INTO tasks (id, job_id, type, state, depends_on, priority, max_attempts, "
        " created_at) VALUES ('tsk_c', 'job_1', 'retrain', 'queued', 'tsk_b', 5, 3, 1);"
        "INSERT INTO tasks (id, job_id, type, state, depends_on, priority, max_attempts, "
        " created_at) VALUES ('tsk_d', 'job_1', 'export', 'queued', 'tsk_c', 5, 3, 1);"
        /* A higher counter than the last row: a task inserted and rolled back never
         * happens here, but the counter must not go back either way. */
        "UPDATE sqlite_sequence SET seq = 20 WHERE name = 'tasks';"
        "INSERT INTO task_errors (task_id, attempt, kind, message, at) VALUES "
        " ('tsk_b', 1, 'lease_expired', 'x', 3);"
        "INSERT INTO artifacts (job_id, task_id, team_id, kind, sha256, size, created_at, fence)"
        " VALUES ('job_1', 'tsk_a', 'team_1', 'model', 'm1', 3, 2, 1);";
    char *msg = NULL;
    cr_assert_eq(sqlite3_exec(raw, fill, NULL, NULL, &msg), SQLITE_OK, "%s", msg ? msg : "");
    char before[4096];
    snprintf(before, sizeof(before), "%s", raw_text(raw, rows_sql));
    cr_assert(strstr(before, "tsk_d") != NULL && strstr(before, "#20") != NULL, "%s", before);
    sqlite3_close(raw);

    open_store(60000);
    cr_assert_eq(srv_store_schema_version(st), 7);
    cr_assert_eq(srv_store_integrity_check(st, NULL), DP_OK);

    cr_assert_eq(sqlite3_open(db, &raw), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(raw, "PRAGMA foreign_keys = ON", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_str_eq(raw_text(raw, rows_sql), before);
    cr_assert_str_eq(raw_text(raw, "SELECT group_concat(name, ',') FROM (SELECT name FROM "
                                   "sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' "
                                   "AND sql IS NOT NULL ORDER BY name)"),
                     "tasks_device,tasks_job,tasks_lease,tasks_ready");
    cr_assert_str_eq(raw_text(raw, "SELECT id || scope || team_id || hash || origin FROM tokens"),
                     "tok_1teamteam_1h1api");
    cr_assert_str_eq(raw_text(raw, "SELECT group_concat(\"table\" || '.' || \"to\", ',') FROM "
                                   "(SELECT * FROM pragma_foreign_key_list('tasks') ORDER BY "
                                   "\"table\")"),
                     "blobs.sha256,jobs.id,tasks.id");
    cr_assert_str_eq(raw_text(raw, "SELECT \"table\" FROM pragma_foreign_key_list('task_errors')"),
                     "tasks");
    cr_assert_str_eq(raw_text(raw, "SELECT count(*) FROM pragma_foreign_key_check"), "0");
    cr_assert_str_eq(raw_text(raw, "SELECT count(*) FROM sqlite_master WHERE name = 'tasks_new'"),
                     "0");
    /* The wider CHECK, and the constraints that must still hold. */
    cr_assert_eq(sqlite3_exec(raw,
                              "INSERT INTO tasks (id, job_id, type, state, depends_on, priority, "
                              "max_attempts, created_at) VALUES ('tsk_e', 'job_1', 'compile', "
                              "'queued', 'tsk_d', 5, 3, 1)",
                              NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(raw));
    cr_assert_str_eq(raw_text(raw, "SELECT seq FROM tasks WHERE id = 'tsk_e'"), "21");
    cr_assert_eq(sqlite3_exec(raw,
                              "INSERT INTO tasks (id, job_id, type, state, priority, "
                              "max_attempts, created_at) VALUES ('tsk_f', 'job_1', 'profile', "
                              "'queued', 5, 3, 1)",
                              NULL, NULL, NULL),
                 SQLITE_CONSTRAINT);
    cr_assert_eq(sqlite3_exec(raw,
                              "INSERT INTO tasks (id, job_id, type, state, priority, "
                              "max_attempts, created_at, device_id) VALUES ('tsk_g', 'job_1', "
                              "'profile', 'queued', 5, 3, 1, 'dev_1')",
                              NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(raw));
    cr_assert_eq(sqlite3_exec(raw,
                              "INSERT INTO tasks (id, job_id, type, state, priority, "
                              "max_attempts, created_at) VALUES ('tsk_h', 'job_1', 'deploy', "
                              "'queued', 5, 3, 1)",
                              NULL, NULL, NULL),
                 SQLITE_CONSTRAINT);
    cr_assert_eq(sqlite3_exec(raw,
                              "INSERT INTO tokens (id, team_id, scope, name, hash, created_at) "
                              "VALUES ('tok_2', NULL, 'device', 'd', 'h2', 1), "
                              "('tok_3', 'team_1', 'device', 'd', 'h3', 1)",
                              NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(raw));
    cr_assert_eq(sqlite3_exec(raw,
                              "INSERT INTO tokens (id, team_id, scope, name, hash, created_at) "
                              "VALUES ('tok_4', NULL, 'robot', 'd', 'h4', 1)",
                              NULL, NULL, NULL),
                 SQLITE_CONSTRAINT);
    cr_assert_eq(sqlite3_exec(raw,
                              "INSERT INTO task_errors (task_id, attempt, kind, message, at) "
                              "VALUES ('tsk_nope', 1, 'error', 'x', 1)",
                              NULL, NULL, NULL),
                 SQLITE_CONSTRAINT, "task_errors still references tasks");
    sqlite3_close(raw);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, a_newer_schema_is_refused)
{
    srv_store_close(st);
    sqlite3 *raw = NULL;
    cr_assert_eq(sqlite3_open(db, &raw), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    struct srv_queue_cfg cfg = {.lease_ms = 1000};
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_store_open(db, &cfg, &st, &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "newer") != NULL, "%s", ei.msg);
    st = NULL;
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, claim_follows_dependencies_and_fences_refuse_stale_writes)
{
    char *job = job_new(&team_a, NULL, 3), *w = worker_new();
    json_t *t = NULL, *caps = caps_of("compress");
    /* compress depends on train, which has not run. */
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_ENOENT);
    json_decref(caps);
    caps = caps_of("train");
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    const char *tid = json_string_value(json_object_get(t, "id"));
    int64_t fence = json_integer_value(json_object_get(t, "fence"));
    cr_assert_str_eq(json_string_value(json_object_get(t, "type")), "train");
    cr_assert_str_eq(json_string_value(json_object_get(t, "job_id")), job);
    /* Nothing else is ready. */
    json_t *t2 = NULL;
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t2, NULL, NULL), DP_ENOENT);

    const char *sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence + 1, "model", sha, 3, &ei),
                 DP_ESTALE);
    cr_assert(strstr(ei.msg, "lease lost") != NULL, "%s", ei.msg);
    cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence, "model", sha, 3, NULL), DP_OK);
    json_t *outputs = json_pack("{s:s}", "model", sha);
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence + 1, outputs, NULL), DP_ESTALE);
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, NULL), DP_OK);
    /* A second completion (a duplicate delivery) is refused too. */
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, NULL), DP_ESTALE);

    json_decref(caps);
    caps = caps_of("compress");
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t2, NULL, NULL), DP_OK);
    json_t *in = json_object_get(json_object_get(t2, "inputs"), "model");
    cr_assert_str_eq(json_string_value(json_object_get(in, "sha256")), sha);
    json_t *job_json = NULL;
    cr_assert_eq(srv_store_job_get(st, &team_a, job, &job_json, NULL), DP_OK);
    cr_assert_str_eq(json_string_value(json_object_get(job_json, "state")), "running");
    json_decref(job_json);
    json_decref(outputs);
    json_decref(caps);
    json_decref(t);
    json_decref(t2);
    dp_free(job);
    dp_free(w);
    DP_ASSERT_NO_LEAKS();
}

/* Claims the next task of type for w, uploads one artifact per output kind
 * (the i-th kind's sha: fill repeated, then the digit i) and completes it. */
static void run_task(const char *w, const char *type, const char *const *kinds, char fill)
{
    json_t *caps = caps_of(type), *t = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, &ei), DP_OK, "%s: %s", type,
                 ei.msg);
    json_decref(caps);
    const char *tid = json_string_value(json_object_get(t, "id"));
    int64_t fence = json_integer_value(json_object_get(t, "fence"));
    json_t *outputs = json_object();
    for (int i = 0; kinds[i] != NULL; i++) {
        char sha[65];
        memset(sha, fill, 63);
        sha[63] = (char)('0' + i);
        sha[64] = '\0';
        cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence, kinds[i], sha, 3, &ei), DP_OK,
                     "%s", ei.msg);
        json_object_set_new(outputs, kinds[i], json_string(sha));
    }
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, &ei), DP_OK, "%s: %s",
                 type, ei.msg);
    json_decref(outputs);
    json_decref(t);
}

/* A job with compile gets a compile task after export, which reads the
 * retrain model (export has none) and completes only with code and its
 * compile report; a job without compile has no such task. */
Test(srv_store, a_compile_task_follows_export_and_reads_the_retrain_model)
{
    static const char *const model[] = {"model", NULL};
    static const char *const model_report[] = {"model", "report", NULL};
    static const char *const onnx[] = {"onnx", NULL};
    char *plain = job_new(&team_a, NULL, 3), *job = job_new_ex(&team_a, NULL, 3, 1);
    char *w = worker_new();
    json_t *j = NULL, *t = NULL;
    cr_assert_eq(srv_store_job_get(st, &team_a, job, &j, NULL), DP_OK);
    json_t *tasks = json_object_get(j, "tasks");
    cr_assert_eq(json_array_size(tasks), 5);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(tasks, 4), "type")),
                     "compile");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(tasks, 4), "depends_on")),
                     json_string_value(json_object_get(json_array_get(tasks, 3), "id")));
    json_decref(j);
    cr_assert_eq(srv_store_job_get(st, &team_a, plain, &j, NULL), DP_OK);
    cr_assert_eq(json_array_size(json_object_get(j, "tasks")), 4);
    json_decref(j);

    /* Both chains (the older job's tasks are claimed first). */
    for (int i = 0; i < 2; i++) {
        run_task(w, "train", model, 't');
        run_task(w, "compress", model_report, 'c');
        run_task(w, "retrain", model_report, 'r');
        run_task(w, "export", onnx, 'e');
    }
    json_t *caps = caps_of("compile");
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, &ei), DP_OK, "%s", ei.msg);
    cr_assert_str_eq(json_string_value(json_object_get(t, "job_id")), job);
    json_t *in = json_object_get(json_object_get(t, "inputs"), "model");
    const char *retrain_model = "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr0";
    cr_assert_str_eq(json_string_value(json_object_get(in, "sha256")), retrain_model);
    cr_assert_str_eq(json_string_value(json_object_get(in, "format")), "safetensors");
    const char *tid = json_string_value(json_object_get(t, "id"));
    int64_t fence = json_integer_value(json_object_get(t, "fence"));
    const char *code = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    const char *rep = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
    cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence, "code", code, 3, NULL), DP_OK);
    json_t *outputs = json_pack("{s:s}", "code", code);
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "outputs.compile_report: required for a compile task") != NULL, "%s",
              ei.msg);
    json_decref(outputs);
    cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence, "compile_report", rep, 3, NULL),
                 DP_OK);
    outputs = json_pack("{s:s, s:s}", "code", code, "compile_report", rep);
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, &ei), DP_OK, "%s",
                 ei.msg);
    json_decref(outputs);
    json_decref(caps);
    json_decref(t);

    cr_assert_eq(srv_store_job_get(st, &team_a, job, &j, NULL), DP_OK);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "succeeded");
    json_t *jo = json_object_get(j, "outputs");
    cr_assert_str_eq(json_string_value(json_object_get(jo, "code")), code);
    cr_assert_str_eq(json_string_value(json_object_get(jo, "compile_report")), rep);
    cr_assert_str_eq(json_string_value(json_object_get(jo, "model")), retrain_model);
    json_decref(j);
    dp_free(plain);
    dp_free(job);
    dp_free(w);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, the_reaper_requeues_then_buries_expired_leases)
{
    srv_store_close(st);
    open_store(1); /* 1 ms leases */
    char *job = job_new(&team_a, NULL, 2), *w = worker_new();
    json_t *caps = caps_of("train"), *t = NULL;
    int n = 0, n_ready = 0;
    for (int attempt = 1; attempt <= 2; attempt++) {
        cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK, "attempt %d",
                     attempt);
        cr_assert_eq(json_integer_value(json_object_get(t, "attempt")), attempt);
        cr_assert_eq(json_integer_value(json_object_get(t, "fence")), attempt);
        json_decref(t);
        sleep_ms(5);
        cr_assert_eq(srv_store_reap(st, &n, &n_ready, NULL), DP_OK);
        cr_assert_eq(n, 1);
    }
    /* Attempts are used up: the task is dead, the job failed, the rest cancelled. */
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_ENOENT);
    json_t *j = NULL;
    cr_assert_eq(srv_store_job_get(st, &team_a, job, &j, NULL), DP_OK);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "failed");
    json_t *tasks = json_object_get(j, "tasks");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(tasks, 0), "state")), "dead");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(tasks, 3), "state")),
                     "cancelled");
    json_t *errs = json_object_get(json_array_get(tasks, 0), "errors");
    cr_assert_eq(json_array_size(errs), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(errs, 1), "kind")),
                     "lease_expired");
    json_decref(j);
    /* Retry resets attempts and the job runs again. */
    cr_assert_eq(srv_store_job_retry(st, &team_a, job, &j, NULL), DP_OK);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "queued");
    json_decref(j);
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    cr_assert_eq(json_integer_value(json_object_get(t, "attempt")), 1);
    cr_assert_eq(json_integer_value(json_object_get(t, "fence")), 3);
    json_decref(t);
    json_decref(caps);
    dp_free(job);
    dp_free(w);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, release_does_not_count_an_attempt_and_cancel_reaches_the_heartbeat)
{
    char *job = job_new(&team_a, NULL, 3), *w = worker_new();
    json_t *caps = caps_of("train"), *t = NULL, *hb = NULL, *j = NULL;
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    char tid[64];
    snprintf(tid, sizeof(tid), "%s", json_string_value(json_object_get(t, "id")));
    json_decref(t);
    cr_assert_eq(srv_store_task_release(st, &agent, tid, 1, NULL), DP_OK);
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    cr_assert_eq(json_integer_value(json_object_get(t, "attempt")), 1);
    json_decref(t);
    cr_assert_eq(srv_store_task_heartbeat(st, &agent, tid, 2, NULL, &hb, NULL), DP_OK);
    cr_assert(json_is_false(json_object_get(hb, "cancel")));
    json_decref(hb);
    cr_assert_eq(srv_store_job_cancel(st, &team_b, job, &j, NULL), DP_ENOENT);
    cr_assert_eq(srv_store_job_cancel(st, &team_a, job, &j, NULL), DP_OK);
    json_decref(j);
    cr_assert_eq(srv_store_task_heartbeat(st, &agent, tid, 2, NULL, &hb, NULL), DP_OK);
    cr_assert(json_is_true(json_object_get(hb, "cancel")));
    json_decref(hb);
    cr_assert_eq(srv_store_task_fail(st, &agent, tid, 2, "stopped", 1, NULL), DP_OK);
    cr_assert_eq(srv_store_job_get(st, &team_a, job, &j, NULL), DP_OK);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "cancelled");
    cr_assert_str_eq(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "tasks"), 0), "state")),
        "cancelled");
    json_decref(j);
    json_decref(caps);
    dp_free(job);
    dp_free(w);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, idempotency_keys_replay_and_teams_are_isolated)
{
    char *j1 = job_new(&team_a, "k", 3);
    char *j2 = job_new(&team_a, "k", 3);
    cr_assert_str_eq(j1, j2);
    char *j3 = job_new(&team_b, "k", 3);
    cr_assert_str_neq(j1, j3);
    json_t *j = NULL;
    cr_assert_eq(srv_store_job_get(st, &team_b, j1, &j, NULL), DP_ENOENT);
    cr_assert_eq(srv_store_job_get(st, &team_a, j1, &j, NULL), DP_OK);
    json_decref(j);
    dp_free(j1);
    dp_free(j2);
    dp_free(j3);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, job_lists_page_newest_first)
{
    char *ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = job_new(&team_a, NULL, 3);
    int64_t cursor = 0;
    int seen = 0;
    for (int page = 0; page < 3; page++) {
        json_t *l = NULL;
        cr_assert_eq(srv_store_job_list(st, &team_a, NULL, 2, cursor, &l, NULL), DP_OK);
        json_t *items = json_object_get(l, "items");
        for (size_t i = 0; i < json_array_size(items); i++, seen++)
            cr_assert_str_eq(json_string_value(json_object_get(json_array_get(items, i), "id")),
                             ids[4 - seen]);
        json_t *next = json_object_get(l, "next_cursor");
        cursor = json_is_string(next) ? strtoll(json_string_value(next), NULL, 10) : 0;
        json_decref(l);
    }
    cr_assert_eq(seen, 5);
    json_t *l = NULL;
    cr_assert_eq(srv_store_job_list(st, &team_a, "succeeded", 50, 0, &l, NULL), DP_OK);
    cr_assert_eq(json_array_size(json_object_get(l, "items")), 0);
    json_decref(l);
    for (int i = 0; i < 5; i++)
        dp_free(ids[i]);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, events_are_ordered_and_resumable)
{
    char *job = job_new(&team_a, NULL, 3);
    json_t *ev = NULL;
    int terminal = 1;
    cr_assert_eq(srv_store_events_after(st, &team_a, job, 0, 100, &ev, &terminal, NULL), DP_OK);
    cr_assert_eq(terminal, 0);
    cr_assert_geq(json_array_size(ev), 1);
    int64_t first = json_integer_value(json_object_get(json_array_get(ev, 0), "id"));
    json_decref(ev);
    json_t *j = NULL;
    cr_assert_eq(srv_store_job_cancel(st, &team_a, job, &j, NULL), DP_OK);
    json_decref(j);
    cr_assert_eq(srv_store_events_after(st, &team_a, job, first, 100, &ev, &terminal, NULL), DP_OK);
    cr_assert_eq(terminal, 1);
    cr_assert_eq(json_array_size(ev), 1);
    cr_assert_gt(json_integer_value(json_object_get(json_array_get(ev, 0), "id")), first);
    json_decref(ev);
    cr_assert_eq(srv_store_events_after(st, &team_b, job, 0, 100, &ev, &terminal, NULL), DP_ENOENT);
    dp_free(job);
    DP_ASSERT_NO_LEAKS();
}

/* Runs sql on a second connection, as another process (or a damaged file)
 * would change the database under the store. */
static void raw_exec(const char *sql)
{
    sqlite3 *raw = NULL;
    cr_assert_eq(sqlite3_open(db, &raw), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(raw, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(raw);
}

/* The task's state in the job object. */
static const char *task_state(json_t *job, size_t i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(job, "tasks"), i), "state"));
}

/* A claim whose input cannot be read fails and leaves the task queued; it
 * must not lease a task with null inputs. The reads fail because a second
 * connection renamed the table they read (the rename keeps the foreign keys
 * consistent, so only those reads break). */
Test(srv_store, a_claim_whose_inputs_cannot_be_read_fails_and_rolls_back)
{
    char *job = job_new(&team_a, NULL, 3), *w = worker_new();
    json_t *caps = caps_of("train"), *t = NULL, *j = NULL;
    uint64_t gen = srv_store_generation(st);
    struct dp_errinfo ei = {0};

    /* train reads the job's model and dataset: asset_input. */
    raw_exec("ALTER TABLE assets RENAME TO assets_gone");
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, &ei), DP_EIO,
                 "a failed asset read must fail the claim");
    cr_assert_null(t);
    cr_assert(strstr(ei.msg, "assets") != NULL, "%s", ei.msg);
    cr_assert_eq(srv_store_generation(st), gen, "a rolled-back claim wakes nobody");
    raw_exec("ALTER TABLE assets_gone RENAME TO assets");
    cr_assert_eq(srv_store_job_get(st, &team_a, job, &j, NULL), DP_OK);
    cr_assert_str_eq(task_state(j, 0), "queued");
    json_decref(j);

    /* Nothing was committed: the same task is claimed with attempt 1 and its inputs. */
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    cr_assert_eq(json_integer_value(json_object_get(t, "attempt")), 1);
    json_t *in = json_object_get(t, "inputs");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(in, "model"), "arch")),
                     "lenet5");
    cr_assert(json_is_object(json_object_get(in, "dataset")));
    const char *tid = json_string_value(json_object_get(t, "id"));
    int64_t fence = json_integer_value(json_object_get(t, "fence"));
    const char *sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence, "model", sha, 3, NULL), DP_OK);
    json_t *outputs = json_pack("{s:s}", "model", sha);
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, NULL), DP_OK);
    json_decref(outputs);
    json_decref(t);
    t = NULL;

    /* compress reads train's output blob: task_output_ref -> blob_ref. */
    json_decref(caps);
    caps = caps_of("compress");
    raw_exec("ALTER TABLE blobs RENAME TO blobs_gone");
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, &ei), DP_EIO,
                 "a failed blob read must fail the claim");
    cr_assert_null(t);
    raw_exec("ALTER TABLE blobs_gone RENAME TO blobs");
    cr_assert_eq(srv_store_job_get(st, &team_a, job, &j, NULL), DP_OK);
    cr_assert_str_eq(task_state(j, 1), "queued");
    json_decref(j);
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    cr_assert_eq(json_integer_value(json_object_get(t, "attempt")), 1);
    in = json_object_get(json_object_get(t, "inputs"), "model");
    cr_assert_str_eq(json_string_value(json_object_get(in, "sha256")), sha);
    cr_assert_eq(json_integer_value(json_object_get(in, "size")), 3);
    json_decref(t);
    json_decref(caps);
    dp_free(job);
    dp_free(w);
    DP_ASSERT_NO_LEAKS();
}

/* The generation wakes every parked long-poll and event stream, so only
 * changes they wait for may bump it: job and task state changes and
 * events, and retry delays running out; not heartbeats, registrations or
 * an empty reaper pass (every 200 ms). */
Test(srv_store, only_changes_that_waiters_care_about_bump_the_generation)
{
    uint64_t gen = srv_store_generation(st);
    int n = -1, n_ready = -1;
    cr_assert_eq(srv_store_reap(st, &n, &n_ready, NULL), DP_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(n_ready, 0);
    cr_assert_eq(srv_store_generation(st), gen, "an empty reaper pass must not wake anyone");
    char *w = worker_new();
    json_t *caps = caps_of("train"), *t = NULL, *hb = NULL, *tok = NULL;
    cr_assert_eq(srv_store_token_create(st, team_a.team_id, "team", "t", 0, &tok, NULL), DP_OK);
    json_decref(tok);
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_ENOENT);
    cr_assert_eq(srv_store_generation(st), gen, "registration, tokens, an empty claim");

    char *job = job_new(&team_a, NULL, 3);
    cr_assert_gt(srv_store_generation(st), gen, "a new job makes a task ready");
    gen = srv_store_generation(st);
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    cr_assert_gt(srv_store_generation(st), gen, "a lease is a task state event");
    gen = srv_store_generation(st);
    const char *tid = json_string_value(json_object_get(t, "id"));
    json_t *progress = json_pack("{s:i}", "epoch", 1);
    cr_assert_eq(srv_store_task_heartbeat(st, &agent, tid, 1, progress, &hb, NULL), DP_OK);
    json_decref(hb);
    json_decref(progress);
    cr_assert_eq(srv_store_generation(st), gen, "a heartbeat appends no event");
    json_t *events = json_pack("[{s:s, s:{s:i}}]", "type", "log", "data", "line", 1);
    cr_assert_eq(srv_store_task_events(st, &agent, tid, 1, events, NULL), DP_OK);
    json_decref(events);
    cr_assert_gt(srv_store_generation(st), gen, "worker events reach event streams");
    json_decref(t);
    json_decref(caps);
    dp_free(job);
    dp_free(w);
    DP_ASSERT_NO_LEAKS();
}

/* A task whose retry delay runs out became claimable without any write:
 * the reaper pass that sees it says so and bumps the generation, once. */
Test(srv_store, the_reaper_announces_a_retry_delay_running_out_once)
{
    srv_store_close(st);
    struct srv_queue_cfg cfg = {.lease_ms = 60000, .backoff_base_ms = 100, .backoff_max_ms = 100};
    cr_assert_eq(srv_store_open(db, &cfg, &st, NULL), DP_OK);
    char *job = job_new(&team_a, NULL, 3), *w = worker_new();
    json_t *caps = caps_of("train"), *t = NULL;
    int n = 0, n_ready = 0;
    /* Announce what was ready before (the first pass looks back to 0). */
    cr_assert_eq(srv_store_reap(st, &n, &n_ready, NULL), DP_OK);
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    const char *tid = json_string_value(json_object_get(t, "id"));
    cr_assert_eq(srv_store_task_fail(st, &agent, tid, 1, "flaky", 1, NULL), DP_OK);
    json_decref(t);
    uint64_t gen = srv_store_generation(st);
    cr_assert_eq(srv_store_reap(st, &n, &n_ready, NULL), DP_OK);
    cr_assert_eq(n_ready, 0, "the delay (100 to 150 ms) has not run out yet");
    cr_assert_eq(srv_store_generation(st), gen);
    sleep_ms(200);
    cr_assert_eq(srv_store_reap(st, &n, &n_ready, NULL), DP_OK);
    cr_assert_eq(n_ready, 1);
    cr_assert_gt(srv_store_generation(st), gen, "parked claims must look again");
    gen = srv_store_generation(st);
    cr_assert_eq(srv_store_reap(st, &n, &n_ready, NULL), DP_OK);
    cr_assert_eq(n_ready, 0, "announced once");
    cr_assert_eq(srv_store_generation(st), gen);
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    cr_assert_eq(json_integer_value(json_object_get(t, "attempt")), 2);
    json_decref(t);
    json_decref(caps);
    dp_free(job);
    dp_free(w);
    DP_ASSERT_NO_LEAKS();
}

/* A team agent's worker claims only its team's tasks; a shared agent's
 * worker claims any team's; a worker id is usable only with the token that
 * registered it. */
Test(srv_store, team_agents_claim_only_their_team_and_workers_belong_to_their_token)
{
    struct srv_principal agent_a, agent_b;
    make_agent(&team_a, &agent_a);
    make_agent(&team_b, &agent_b);
    char *job_b = job_new(&team_b, NULL, 3);
    char *wa = worker_new_for(&agent_a), *wb = worker_new_for(&agent_b), *ws = worker_new();
    json_t *caps = caps_of("train"), *t = NULL;
    int no_worker = -1;
    struct dp_errinfo ei = {0};

    cr_assert_eq(srv_store_task_claim(st, &agent_a, wa, caps, &t, &no_worker, NULL), DP_ENOENT,
                 "team A's agent must not claim team B's task");
    cr_assert_eq(no_worker, 0, "the worker is A's: nothing is ready for it");
    /* A's token naming B's worker (or the shared one): no such worker. */
    cr_assert_eq(srv_store_task_claim(st, &agent_a, wb, caps, &t, &no_worker, &ei), DP_ENOENT);
    cr_assert_eq(no_worker, 1);
    cr_assert(strstr(ei.msg, "worker_id") != NULL, "%s", ei.msg);
    cr_assert_eq(srv_store_task_claim(st, &agent_a, ws, caps, &t, &no_worker, NULL), DP_ENOENT);
    cr_assert_eq(no_worker, 1);
    cr_assert_null(t);

    cr_assert_eq(srv_store_task_claim(st, &agent_b, wb, caps, &t, &no_worker, NULL), DP_OK);
    cr_assert_str_eq(json_string_value(json_object_get(t, "job_id")), job_b);
    json_decref(t);
    char *job_a = job_new(&team_a, NULL, 3);
    cr_assert_eq(srv_store_task_claim(st, &agent, ws, caps, &t, NULL, NULL), DP_OK,
                 "a shared agent serves every team");
    cr_assert_str_eq(json_string_value(json_object_get(t, "job_id")), job_a);
    json_decref(t);

    /* Worker objects say whose they are. */
    json_t *list = NULL;
    cr_assert_eq(srv_store_worker_list(st, &admin, 50, 0, &list, NULL), DP_OK);
    size_t i;
    json_t *w;
    int seen = 0;
    json_array_foreach (json_object_get(list, "items"), i, w) {
        const char *id = json_string_value(json_object_get(w, "id"));
        int shared = json_is_true(json_object_get(w, "shared"));
        const char *team = json_string_value(json_object_get(w, "team_id"));
        if (strcmp(id, ws) == 0)
            seen += shared && team == NULL;
        else if (strcmp(id, wa) == 0)
            seen += !shared && team && strcmp(team, team_a.team_id) == 0;
        else if (strcmp(id, wb) == 0)
            seen += !shared && team && strcmp(team, team_b.team_id) == 0;
    }
    cr_assert_eq(seen, 3, "team_id and shared of each worker");
    json_decref(list);
    json_decref(caps);
    dp_free(job_a);
    dp_free(job_b);
    dp_free(wa);
    dp_free(wb);
    dp_free(ws);
    DP_ASSERT_NO_LEAKS();
}

/* The right fence is not enough: every lease write from a token other than
 * the one whose worker claimed the task is refused as a lost lease, and
 * changes nothing. */
Test(srv_store, another_agent_cannot_write_to_a_lease_even_with_its_fence)
{
    struct srv_principal other;
    make_agent(&team_a, &other);
    char *job = job_new(&team_a, NULL, 3), *w = worker_new();
    json_t *caps = caps_of("train"), *t = NULL, *hb = NULL;
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    char tid[64];
    snprintf(tid, sizeof(tid), "%s", json_string_value(json_object_get(t, "id")));
    int64_t fence = json_integer_value(json_object_get(t, "fence"));
    json_decref(t);
    const char *sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    json_t *outputs = json_pack("{s:s}", "model", sha);
    json_t *events = json_pack("[{s:s, s:{s:i}}]", "type", "epoch", "data", "epoch", 1);
    struct dp_errinfo ei = {0};

    cr_assert_eq(srv_store_task_fence_check(st, &other, tid, fence, &ei), DP_ESTALE);
    cr_assert(strstr(ei.msg, "lease lost") != NULL, "%s", ei.msg);
    cr_assert_eq(srv_store_task_heartbeat(st, &other, tid, fence, NULL, &hb, NULL), DP_ESTALE);
    cr_assert_null(hb);
    cr_assert_eq(srv_store_task_events(st, &other, tid, fence, events, NULL), DP_ESTALE);
    cr_assert_eq(srv_store_task_artifact(st, &other, tid, fence, "model", sha, 3, NULL), DP_ESTALE);
    cr_assert_eq(srv_store_task_complete(st, &other, tid, fence, outputs, NULL), DP_ESTALE);
    cr_assert_eq(srv_store_task_fail(st, &other, tid, fence, "forged", 0, NULL), DP_ESTALE);
    cr_assert_eq(srv_store_task_release(st, &other, tid, fence, NULL), DP_ESTALE);
    int64_t size = 0;
    cr_assert_eq(srv_store_blob_agent(st, &other, sha, &size, NULL), DP_ENOENT);

    /* Nothing changed: no event, no error, the holder still completes. */
    json_t *j = NULL, *ev = NULL;
    int terminal = 0;
    cr_assert_eq(srv_store_job_get(st, &team_a, job, &j, NULL), DP_OK);
    json_t *task0 = json_array_get(json_object_get(j, "tasks"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(task0, "state")), "leased");
    cr_assert_eq(json_array_size(json_object_get(task0, "errors")), 0);
    cr_assert(json_is_null(json_object_get(j, "progress")));
    json_decref(j);
    cr_assert_eq(srv_store_events_after(st, &team_a, job, 0, 100, &ev, &terminal, NULL), DP_OK);
    size_t i;
    json_t *e;
    json_array_foreach (ev, i, e)
        cr_assert_str_neq(json_string_value(json_object_get(e, "type")), "epoch");
    json_decref(ev);
    cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence, "model", sha, 3, NULL), DP_OK);
    cr_assert_eq(srv_store_blob_agent(st, &agent, sha, &size, NULL), DP_OK);
    cr_assert_eq(size, 3);
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, NULL), DP_OK);
    json_decref(outputs);
    json_decref(events);
    json_decref(caps);
    dp_free(job);
    dp_free(w);
    DP_ASSERT_NO_LEAKS();
}

/* complete takes as outputs only artifacts of its own lease, of the named
 * kind, and all of those the task type produces. */
Test(srv_store, complete_needs_this_leases_artifacts_and_every_required_output)
{
    char *job = job_new(&team_a, NULL, 3), *w = worker_new();
    json_t *caps = caps_of("train"), *t = NULL;
    struct dp_errinfo ei = {0};
    const char *m1 = "1111111111111111111111111111111111111111111111111111111111111111";
    const char *m2 = "2222222222222222222222222222222222222222222222222222222222222222";
    const char *rep = "3333333333333333333333333333333333333333333333333333333333333333";
    /* Train: the first attempt uploads m1 and is released; the second, m2. */
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    char tid[64];
    snprintf(tid, sizeof(tid), "%s", json_string_value(json_object_get(t, "id")));
    int64_t fence = json_integer_value(json_object_get(t, "fence"));
    json_decref(t);
    cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence, "model", m1, 3, NULL), DP_OK);
    cr_assert_eq(srv_store_task_release(st, &agent, tid, fence, NULL), DP_OK);
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    fence = json_integer_value(json_object_get(t, "fence"));
    json_decref(t);
    cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence, "model", m2, 3, NULL), DP_OK);
    cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence, "report", rep, 3, NULL), DP_OK);

    json_t *outputs = json_pack("{s:s}", "model", m1);
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, &ei), DP_EINVAL,
                 "an earlier lease's artifact");
    cr_assert(strstr(ei.msg, "outputs.model") != NULL, "%s", ei.msg);
    json_decref(outputs);
    outputs = json_pack("{s:s}", "model", rep);
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, &ei), DP_EINVAL,
                 "an artifact of another kind");
    json_decref(outputs);
    outputs = json_object();
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, &ei), DP_EINVAL,
                 "train without its model");
    cr_assert(strstr(ei.msg, "outputs.model: required for a train task") != NULL, "%s", ei.msg);
    json_decref(outputs);
    outputs = json_pack("{s:s}", "model", m2);
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, NULL), DP_OK);
    json_decref(outputs);

    /* Compress: a model alone is not a compress result (retrain needs the report). */
    json_decref(caps);
    caps = caps_of("compress");
    cr_assert_eq(srv_store_task_claim(st, &agent, w, caps, &t, NULL, NULL), DP_OK);
    snprintf(tid, sizeof(tid), "%s", json_string_value(json_object_get(t, "id")));
    fence = json_integer_value(json_object_get(t, "fence"));
    json_decref(t);
    cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence, "model", m1, 3, NULL), DP_OK);
    outputs = json_pack("{s:s}", "model", m1);
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "outputs.report: required for a compress task") != NULL, "%s", ei.msg);
    /* Train's report is a stored blob of this job, but not this lease's. */
    json_object_set_new(outputs, "report", json_string(rep));
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "outputs.report") != NULL, "%s", ei.msg);
    cr_assert_eq(srv_store_task_artifact(st, &agent, tid, fence, "report", rep, 3, NULL), DP_OK);
    cr_assert_eq(srv_store_task_complete(st, &agent, tid, fence, outputs, NULL), DP_OK);
    json_decref(outputs);
    json_decref(caps);
    dp_free(job);
    dp_free(w);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Token lifetime ------------------------------------------------------------- */

/* A new token for team p expiring at expires_ms (0: never): its id and hash. */
static void token_new(const struct srv_principal *p, int64_t expires_ms, char id[SRV_ID_MAX],
                      char hash[65])
{
    json_t *tok = NULL;
    cr_assert_eq(srv_store_token_create(st, p->team_id, "team", "t", expires_ms, &tok, NULL),
                 DP_OK);
    snprintf(id, SRV_ID_MAX, "%s", json_string_value(json_object_get(tok, "id")));
    srv_token_hash(json_string_value(json_object_get(tok, "token")), hash);
    json_decref(tok);
}

/* srv_store_token_lookup's answer for hash, with its message in msg. */
static enum dp_err lookup(const char *hash, char msg[256])
{
    struct srv_principal who;
    struct dp_errinfo ei = {0};
    enum dp_err err = srv_store_token_lookup(st, hash, &who, &ei);
    snprintf(msg, 256, "%s", ei.msg);
    return err;
}

/* How many tokens of scope are live (not revoked) in the admin's list. */
static int live_tokens(const char *scope, const char *origin)
{
    json_t *list = NULL;
    cr_assert_eq(srv_store_token_list(st, &admin, 200, 0, &list, NULL), DP_OK);
    int n = 0;
    size_t i;
    json_t *t;
    json_array_foreach (json_object_get(list, "items"), i, t)
        n += strcmp(json_string_value(json_object_get(t, "scope")), scope) == 0 &&
             strcmp(json_string_value(json_object_get(t, "origin")), origin) == 0 &&
             json_is_null(json_object_get(t, "revoked_at"));
    json_decref(list);
    return n;
}

Test(srv_store, revoked_and_expired_tokens_are_refused_with_the_reason)
{
    char id[SRV_ID_MAX], hash[65], soon_id[SRV_ID_MAX], soon[65], msg[256];
    token_new(&team_a, 0, id, hash);
    token_new(&team_a, srv_now_ms() + 150, soon_id, soon);
    cr_assert_eq(lookup(hash, msg), DP_OK, "%s", msg);
    cr_assert_eq(lookup(soon, msg), DP_OK, "%s", msg);
    cr_assert_eq(lookup("00", msg), DP_ENOENT);
    cr_assert_str_eq(msg, "unknown token");

    json_t *out = NULL;
    cr_assert_eq(srv_store_token_revoke(st, &team_b, id, &out, NULL), DP_ENOENT,
                 "another team's token is absent for team B");
    cr_assert_eq(lookup(hash, msg), DP_OK, "%s", msg);
    cr_assert_eq(srv_store_token_revoke(st, &team_a, id, &out, NULL), DP_OK);
    cr_assert(json_is_string(json_object_get(out, "revoked_at")));
    cr_assert_null(json_object_get(out, "token"), "a revoked token shows no secret");
    char first[64];
    snprintf(first, sizeof(first), "%s", json_string_value(json_object_get(out, "revoked_at")));
    json_decref(out);
    cr_assert_eq(lookup(hash, msg), DP_EPERM);
    cr_assert_str_eq(msg, "token revoked");
    /* Revoking again keeps the first time. */
    sleep_ms(5);
    cr_assert_eq(srv_store_token_revoke(st, &admin, id, &out, NULL), DP_OK);
    cr_assert_str_eq(json_string_value(json_object_get(out, "revoked_at")), first);
    json_decref(out);

    sleep_ms(200);
    cr_assert_eq(lookup(soon, msg), DP_EPERM);
    cr_assert_str_eq(msg, "token expired");
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, a_team_lists_only_its_tokens_and_nobody_sees_a_secret)
{
    char id[SRV_ID_MAX], hash[65], msg[256];
    token_new(&team_a, 0, id, hash);
    token_new(&team_b, 0, id, hash);
    cr_assert_eq(lookup(hash, msg), DP_OK); /* records last_used_at */
    json_t *list = NULL;
    cr_assert_eq(srv_store_token_list(st, &team_b, 50, 0, &list, NULL), DP_OK);
    json_t *items = json_object_get(list, "items");
    cr_assert_eq(json_array_size(items), 1);
    json_t *t = json_array_get(items, 0);
    cr_assert_str_eq(json_string_value(json_object_get(t, "id")), id);
    cr_assert_str_eq(json_string_value(json_object_get(t, "team_id")), team_b.team_id);
    cr_assert(json_is_string(json_object_get(t, "last_used_at")));
    cr_assert_null(json_object_get(t, "token"));
    cr_assert_null(json_object_get(t, "hash"));
    json_decref(list);
    /* The admin sees both and the shared agent token setup() minted. */
    cr_assert_eq(srv_store_token_list(st, &admin, 50, 0, &list, NULL), DP_OK);
    cr_assert_eq(json_array_size(json_object_get(list, "items")), 3);
    json_decref(list);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, a_changed_admin_env_token_replaces_the_old_one_for_good)
{
    char h1[65], h2[65], secret[SRV_TOKEN_LEN], msg[256];
    struct dp_errinfo ei = {0};
    srv_token_hash("admin-one-0123456789", h1);
    srv_token_hash("admin-two-0123456789", h2);
    cr_assert_eq(srv_store_admin_ensure(st, h1, secret, &ei), DP_OK, "%s", ei.msg);
    cr_assert_str_eq(secret, "");
    cr_assert_eq(srv_store_admin_ensure(st, h1, secret, &ei), DP_OK, "the same value again");
    cr_assert_eq(live_tokens("admin", "env"), 1);
    cr_assert_eq(lookup(h1, msg), DP_OK);
    cr_assert_eq(srv_store_admin_ensure(st, h2, secret, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(lookup(h2, msg), DP_OK);
    cr_assert_eq(lookup(h1, msg), DP_EPERM);
    cr_assert_str_eq(msg, "token revoked");
    cr_assert_eq(live_tokens("admin", "env"), 1);
    /* A revoked secret cannot come back through the environment. */
    cr_assert_eq(srv_store_admin_ensure(st, h1, secret, &ei), DP_EPERM);
    cr_assert(strstr(ei.msg, "revoked") != NULL, "%s", ei.msg);
    /* Nor can another scope's secret become the admin's. */
    char id[SRV_ID_MAX], team_hash[65];
    token_new(&team_a, 0, id, team_hash);
    cr_assert_eq(srv_store_admin_ensure(st, team_hash, secret, &ei), DP_EINVAL);
    /* Without the variable a live admin token exists: nothing is generated. */
    cr_assert_eq(srv_store_admin_ensure(st, NULL, secret, &ei), DP_OK);
    cr_assert_str_eq(secret, "");
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, the_last_live_admin_token_cannot_be_revoked)
{
    char secret[SRV_TOKEN_LEN], h1[65], h2[65];
    json_t *out = NULL, *list = NULL;
    cr_assert_eq(srv_store_admin_ensure(st, NULL, secret, NULL), DP_OK);
    cr_assert_neq(secret[0], '\0', "a first start generates one");
    srv_token_hash(secret, h1);
    srv_token_hash("admin-env-0123456789", h2);
    cr_assert_eq(srv_store_admin_ensure(st, h2, secret, NULL), DP_OK);
    /* Newest first: the env admin, the generated one, setup()'s shared agent. */
    cr_assert_eq(srv_store_token_list(st, &admin, 50, 0, &list, NULL), DP_OK);
    cr_assert_eq(json_array_size(json_object_get(list, "items")), 3);
    char env_id[SRV_ID_MAX], gen_id[SRV_ID_MAX];
    snprintf(env_id, sizeof(env_id), "%s",
             json_string_value(
                 json_object_get(json_array_get(json_object_get(list, "items"), 0), "id")));
    snprintf(gen_id, sizeof(gen_id), "%s",
             json_string_value(
                 json_object_get(json_array_get(json_object_get(list, "items"), 1), "id")));
    json_decref(list);
    cr_assert_eq(srv_store_token_revoke(st, &team_a, gen_id, &out, NULL), DP_ENOENT);
    cr_assert_eq(srv_store_token_revoke(st, &admin, gen_id, &out, NULL), DP_OK);
    json_decref(out);
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_store_token_revoke(st, &admin, env_id, &out, &ei), DP_EEXIST);
    cr_assert(strstr(ei.msg, "last live admin") != NULL, "%s", ei.msg);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, an_expired_admin_token_is_not_the_last_live_one)
{
    char secret[SRV_TOKEN_LEN], h2[65];
    json_t *out = NULL;
    cr_assert_eq(srv_store_admin_ensure(st, NULL, secret, NULL), DP_OK);
    srv_token_hash("admin-env-0123456789", h2);
    cr_assert_eq(srv_store_admin_ensure(st, h2, secret, NULL), DP_OK);
    /* The generated admin token expires; the env one stays the only live one. */
    sqlite3 *raw = NULL;
    cr_assert_eq(sqlite3_open(db, &raw), SQLITE_OK);
    sqlite3_busy_timeout(raw, 5000);
    cr_assert_eq(sqlite3_exec(raw, "UPDATE tokens SET expires_at = 1 WHERE origin = 'generated'",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    char gen_id[SRV_ID_MAX];
    snprintf(gen_id, sizeof(gen_id), "%s",
             raw_text(raw, "SELECT id FROM tokens WHERE origin = 'generated'"));
    sqlite3_close(raw);
    /* Revoking the expired one leaves the live one: not refused. */
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_store_token_revoke(st, &admin, gen_id, &out, &ei), DP_OK, "%s", ei.msg);
    json_decref(out);
    cr_assert_eq(live_tokens("admin", "env"), 1);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, each_local_workers_token_revokes_the_previous_one)
{
    char s1[SRV_TOKEN_LEN], s2[SRV_TOKEN_LEN], s3[SRV_TOKEN_LEN], h[65], msg[256];
    cr_assert_eq(srv_store_agent_token_mint(st, "local-workers", s1, NULL), DP_OK);
    cr_assert_eq(srv_store_agent_token_mint(st, "local-workers", s2, NULL), DP_OK);
    cr_assert_eq(srv_store_agent_token_mint(st, "local-workers", s3, NULL), DP_OK);
    cr_assert_eq(live_tokens("agent", "local"), 1);
    srv_token_hash(s1, h);
    cr_assert_eq(lookup(h, msg), DP_EPERM);
    srv_token_hash(s2, h);
    cr_assert_eq(lookup(h, msg), DP_EPERM);
    srv_token_hash(s3, h);
    cr_assert_eq(lookup(h, msg), DP_OK, "%s", msg);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_store, event_ids_count_within_their_job)
{
    char *j1 = job_new(&team_a, NULL, 3), *j2 = job_new(&team_b, NULL, 3);
    json_t *out = NULL;
    cr_assert_eq(srv_store_job_cancel(st, &team_a, j1, &out, NULL), DP_OK);
    json_decref(out);
    cr_assert_eq(srv_store_job_cancel(st, &team_b, j2, &out, NULL), DP_OK);
    json_decref(out);
    const struct {
        const struct srv_principal *who;
        const char *job;
    } jobs[] = {{&team_a, j1}, {&team_b, j2}};
    for (size_t k = 0; k < 2; k++) {
        json_t *ev = NULL;
        int terminal = 0;
        cr_assert_eq(
            srv_store_events_after(st, jobs[k].who, jobs[k].job, 0, 100, &ev, &terminal, NULL),
            DP_OK);
        cr_assert_geq(json_array_size(ev), 2);
        size_t i;
        json_t *e;
        json_array_foreach (ev, i, e)
            cr_assert_eq(json_integer_value(json_object_get(e, "id")), (json_int_t)i + 1,
                         "job %zu event %zu", k, i);
        json_decref(ev);
    }
    dp_free(j1);
    dp_free(j2);
    DP_ASSERT_NO_LEAKS();
}

/* A team sees its own team's workers and the shared ones; an admin all. */
Test(srv_store, a_team_sees_only_the_workers_it_may)
{
    struct srv_principal agent_a;
    make_agent(&team_a, &agent_a);
    char *ws = worker_new(), *wa = worker_new_for(&agent_a);
    const struct {
        const struct srv_principal *who;
        size_t n;
    } cases[] = {{&admin, 2}, {&team_a, 2}, {&team_b, 1}};
    for (size_t k = 0; k < 3; k++) {
        json_t *list = NULL;
        cr_assert_eq(srv_store_worker_list(st, cases[k].who, 50, 0, &list, NULL), DP_OK);
        json_t *items = json_object_get(list, "items");
        cr_assert_eq(json_array_size(items), cases[k].n, "case %zu", k);
        if (cases[k].n == 1)
            cr_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 0), "id")), ws,
                             "team B sees the shared worker only");
        json_decref(list);
    }
    dp_free(ws);
    dp_free(wa);
    DP_ASSERT_NO_LEAKS();
}

/* Bytes of the database's -wal file (0 when absent). */
static long wal_bytes(void)
{
    char p[400];
    snprintf(p, sizeof(p), "%s-wal", db);
    FILE *f = fopen(p, "rb");
    if (f == NULL)
        return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* A long submission run with every path that once left a statement mid-row
 * (the team check of token creation, a team-name clash, an idempotency
 * replay, a claim, reads on both connections): the WAL must stay bounded.
 * A statement left mid-row keeps its read snapshot, and no checkpoint can
 * reset the WAL past it (it grew to 143 MB for a 3.6 MB database). */
Test(srv_store, the_wal_stays_bounded_over_a_long_submission_run, .timeout = 120)
{
    /* On tmpfs where there is one: the property is about snapshots, not the
     * disk, and 14,000 fsynced commits on a disk take a minute. */
    char shm[64] = "/dev/shm/dp-wal-XXXXXX";
    if (mkdtemp(shm) != NULL) {
        srv_store_close(st);
        dp_test_tmpdir_remove(dir);
        snprintf(dir, sizeof(dir), "%s", shm);
        snprintf(db, sizeof(db), "%s/test.db", dir);
        open_store(60000);
        make_team("a", &team_a);
    }
    char *worker = worker_new();
    json_t *caps = json_pack("[s]", "train");
    long wal_max = 0;
    for (int i = 0; i < 2000; i++) {
        json_t *out = NULL;
        cr_assert_eq(srv_store_token_create(st, team_a.team_id, "team", "t", 0, &out, NULL), DP_OK);
        char hash[65];
        srv_token_hash(json_string_value(json_object_get(out, "token")), hash);
        json_decref(out);
        struct srv_principal who;
        cr_assert_eq(srv_store_token_lookup(st, hash, &who, NULL), DP_OK);
        out = NULL;
        cr_assert_eq(srv_store_team_create(st, "a", &out, NULL), DP_EEXIST);
        json_decref(out);
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        char *j1 = job_new(&team_a, key, 3);
        char *j2 = job_new(&team_a, key, 3); /* the replay */
        cr_assert_str_eq(j1, j2);
        char *text = NULL;
        cr_assert_eq(srv_store_job_get_text(st, &team_a, j1, &text, NULL), DP_OK);
        dp_free(text);
        out = NULL;
        cr_assert_eq(srv_store_task_claim(st, &agent, worker, caps, &out, NULL, NULL), DP_OK);
        json_decref(out);
        dp_free(j1);
        dp_free(j2);
        long w = wal_bytes();
        wal_max = w > wal_max ? w : wal_max;
        if (i % 5 == 4) {
            /* What the housekeeping thread does every few seconds. */
            struct dp_errinfo ei = {0};
            int64_t n = -1;
            cr_assert_eq(srv_store_checkpoint(st, &n, &ei), DP_OK, "%s", ei.msg);
            cr_assert_eq(n, 0, "the checkpoint left %ld bytes of WAL (a reader pins it)", (long)n);
            cr_assert_eq(srv_store_wal_len(st), wal_bytes());
        }
    }
    /* A round writes about 180 KB of WAL; a pinned snapshot grows it past
     * any bound (143 MB after 2,000 jobs). */
    cr_assert_lt(wal_max, 2L << 20, "the WAL grew to %ld bytes", wal_max);
    json_decref(caps);
    dp_free(worker);
    DP_ASSERT_NO_LEAKS();
}
