/*
 * The server's flag table (server/config.c): defaults, bounds of every
 * integer flag, malformed values, --listen, --help, and the startup log,
 * which must name every flag of the table (it once left --worker-bin out).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "server/config.h"
#include "tests/unit/test_util.h"

/* Parses the flags in args (NULL-ended, program name added). */
static enum dp_err parse(const char *const *args, struct srv_config *cfg, struct dp_errinfo *ei)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"dnnpress-server";
    for (; *args; args++) {
        cr_assert_lt(argc, 31);
        argv[argc++] = (char *)*args;
    }
    argv[argc] = NULL;
    return srv_config_parse(argc, argv, cfg, ei);
}

Test(srv_config, defaults_fill_every_field_and_listen_splits)
{
    static const char *const none[] = {NULL};
    struct srv_config cfg;
    struct dp_errinfo ei = {0};
    cr_assert_eq(parse(none, &cfg, &ei), DP_OK, "%s", ei.msg);
    cr_assert_str_eq(cfg.host, "127.0.0.1");
    cr_assert_eq(cfg.port, 8080);
    cr_assert_eq(cfg.threads, 8);
    cr_assert_eq(cfg.http_timeout_s, 120);
    cr_assert_eq(cfg.http_max_conns, 1000);
    cr_assert_eq(cfg.http_conn_mem_kb, 16);
    cr_assert_eq(cfg.http_backlog, 1024);
    cr_assert_eq(cfg.lease_s, 60);
    cr_assert_str_eq(cfg.http_mode, "epoll");
    cr_assert_str_eq(cfg.worker_bin, "");
    cr_assert_eq(cfg.print_routes, 0);

    static const char *const some[] = {"--listen",  "0.0.0.0:0", "--http-timeout-s", "5",
                                       "--threads", "2",         "--print-routes",   NULL};
    cr_assert_eq(parse(some, &cfg, &ei), DP_OK, "%s", ei.msg);
    cr_assert_str_eq(cfg.host, "0.0.0.0");
    cr_assert_eq(cfg.port, 0);
    cr_assert_eq(cfg.http_timeout_s, 5);
    cr_assert_eq(cfg.threads, 2);
    cr_assert_eq(cfg.print_routes, 1);
    DP_ASSERT_NO_LEAKS();
}

/* Each integer flag with its bounds: min and max parse, one past fails. */
static const struct {
    const char *flag;
    long min, max;
    size_t offset;
} int_flags[] = {
    {"--local-workers", 0, 64, offsetof(struct srv_config, local_workers)},
    {"--max-upload-mb", 1, 1 << 20, offsetof(struct srv_config, max_upload_mb)},
    {"--lease-s", 1, 3600, offsetof(struct srv_config, lease_s)},
    {"--threads", 1, 256, offsetof(struct srv_config, threads)},
    {"--http-timeout-s", 1, 86400, offsetof(struct srv_config, http_timeout_s)},
    {"--http-max-conns", 1, 65536, offsetof(struct srv_config, http_max_conns)},
    {"--http-conn-mem-kb", 4, 1024, offsetof(struct srv_config, http_conn_mem_kb)},
    {"--http-backlog", 1, 65535, offsetof(struct srv_config, http_backlog)},
    {"--backoff-ms", 0, 600000, offsetof(struct srv_config, backoff_base_ms)},
    {"--http-per-ip-conns", 0, 65536, offsetof(struct srv_config, http_per_ip_conns)},
    {"--http-header-timeout-s", 1, 3600, offsetof(struct srv_config, http_header_timeout_s)},
    {"--http-body-timeout-s", 1, 86400, offsetof(struct srv_config, http_body_timeout_s)},
    {"--max-validations", 1, 64, offsetof(struct srv_config, max_validations)},
};

Test(srv_config, the_pending_connection_cap_stays_below_the_connection_cap)
{
    const char *args[] = {"--http-max-conns", "100", "--http-max-pending-conns", "500", NULL};
    struct srv_config cfg;
    struct dp_errinfo ei = {0};
    cr_assert_eq(parse(args, &cfg, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(cfg.http_max_pending_conns, 99);
    const char *args2[] = {"--http-max-pending-conns", "10", NULL};
    cr_assert_eq(parse(args2, &cfg, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(cfg.http_max_pending_conns, 10);
}

Test(srv_config, integer_flags_are_bounded)
{
    for (size_t i = 0; i < sizeof(int_flags) / sizeof(int_flags[0]); i++) {
        const long cases[4] = {int_flags[i].min, int_flags[i].max, int_flags[i].min - 1,
                               int_flags[i].max + 1};
        for (int c = 0; c < 4; c++) {
            char v[32];
            snprintf(v, sizeof(v), "%ld", cases[c]);
            const char *args[] = {int_flags[i].flag, v, NULL};
            struct srv_config cfg;
            struct dp_errinfo ei = {0};
            enum dp_err err = parse(args, &cfg, &ei);
            if (c < 2) {
                cr_assert_eq(err, DP_OK, "%s %s: %s", int_flags[i].flag, v, ei.msg);
                cr_assert_eq(*(int *)(void *)((char *)&cfg + int_flags[i].offset), cases[c],
                             "%s %s", int_flags[i].flag, v);
            } else {
                cr_assert_eq(err, DP_EINVAL, "%s %s must be refused", int_flags[i].flag, v);
                cr_assert(strstr(ei.msg, int_flags[i].flag) != NULL, "%s", ei.msg);
            }
        }
    }
    DP_ASSERT_NO_LEAKS();
}

Test(srv_config, malformed_values_are_refused_naming_the_flag)
{
    static const struct {
        const char *args[4];
        const char *needle;
    } cases[] = {
        {{"--threads", "8x", NULL}, "--threads"},
        {{"--threads", "", NULL}, "--threads"},
        {{"--threads", "99999999999999999999", NULL}, "--threads"},
        {{"--threads", NULL}, "missing value"},
        {{"--no-such-flag", NULL}, "--no-such-flag"},
        {{"--listen", "8080", NULL}, "--listen"},
        {{"--listen", ":8080", NULL}, "--listen"},
        {{"--listen", "127.0.0.1:", NULL}, "--listen"},
        {{"--listen", "127.0.0.1:65536", NULL}, "--listen"},
        {{"--listen", "127.0.0.1:80x", NULL}, "--listen"},
        {{"--http-mode", "select", NULL}, "--http-mode"},
        {{"--http-mode", "epollx", NULL}, "--http-mode"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct srv_config cfg;
        struct dp_errinfo ei = {0};
        cr_assert_eq(parse(cases[i].args, &cfg, &ei), DP_EINVAL, "case %zu", i);
        cr_assert(strstr(ei.msg, cases[i].needle) != NULL, "case %zu: %s", i, ei.msg);
    }
    /* A string one byte too long for its field. */
    char long_mode[64];
    memset(long_mode, 'e', sizeof(long_mode) - 1);
    long_mode[sizeof(long_mode) - 1] = '\0';
    const char *args[] = {"--http-mode", long_mode, NULL};
    struct srv_config cfg;
    struct dp_errinfo ei = {0};
    cr_assert_eq(parse(args, &cfg, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "longer than 15 bytes") != NULL, "%s", ei.msg);
    DP_ASSERT_NO_LEAKS();
}

/* The flag names in the usage text, one per line ("  --name ..."). */
static int usage_flags(char names[][32], int max)
{
    const char *u = srv_config_usage();
    int n = 0;
    for (const char *p = strstr(u, "\n  --"); p && n < max; p = strstr(p + 1, "\n  --")) {
        const char *name = p + 5, *end = strchr(name, ' ');
        cr_assert_not_null(end);
        cr_assert_lt((size_t)(end - name), sizeof(names[0]));
        memcpy(names[n], name, (size_t)(end - name));
        names[n][end - name] = '\0';
        n++;
    }
    return n;
}

Test(srv_config, help_lists_every_flag_with_its_default_and_bounds)
{
    static const char *const help[] = {"--help", NULL};
    struct srv_config cfg;
    struct dp_errinfo ei = {0};
    cr_assert_eq(parse(help, &cfg, &ei), DP_EINTERRUPTED);
    const char *u = srv_config_usage();
    /* The whole text, not the 256 bytes an errinfo message holds. */
    cr_assert_gt(strlen(u), sizeof(ei.msg));
    char names[64][32];
    int n = usage_flags(names, 64);
    cr_assert_geq(n, (int)(sizeof(int_flags) / sizeof(int_flags[0])), "%s", u);
    for (size_t i = 0; i < sizeof(int_flags) / sizeof(int_flags[0]); i++)
        cr_assert(strstr(u, int_flags[i].flag) != NULL, "%s", int_flags[i].flag);
    cr_assert(strstr(u, "--worker-bin") != NULL);
    cr_assert(strstr(u, "--http-conn-mem-kb") != NULL);
    cr_assert(strstr(u, "(default 8, 1..256)") != NULL, "%s", u);
    cr_assert(strstr(u, "(default epoll)") != NULL, "%s", u);
    DP_ASSERT_NO_LEAKS();
}

/* The startup log comes from the table: every flag in the usage appears as
 * name=value, with the value parsed. */
static char logged[4096];
static void capture(enum dp_log_level level, const char *msg, void *ud)
{
    (void)level;
    (void)ud;
    if (strncmp(msg, "config: ", 8) == 0)
        snprintf(logged, sizeof(logged), "%s", msg);
}

Test(srv_config, the_startup_log_names_every_flag_of_the_table)
{
    static const char *const args[] = {"--worker-bin", "/opt/dp/dnnpress-worker", "--http-backlog",
                                       "77", NULL};
    struct srv_config cfg;
    struct dp_errinfo ei = {0};
    cr_assert_eq(parse(args, &cfg, &ei), DP_OK, "%s", ei.msg);
    enum dp_log_level old = dp_log_get_level();
    dp_log_set_level(DP_LOG_INFO);
    logged[0] = '\0';
    dp_log_set_sink(capture, NULL);
    srv_config_log(&cfg);
    dp_log_set_sink(NULL, NULL);
    dp_log_set_level(old);
    cr_assert(strstr(logged, " worker-bin=/opt/dp/dnnpress-worker") != NULL, "%s", logged);
    cr_assert(strstr(logged, " http-backlog=77") != NULL, "%s", logged);
    cr_assert(strstr(logged, "config: listen=127.0.0.1:8080 ") != NULL, "%s", logged);
    char names[64][32];
    int n = usage_flags(names, 64);
    for (int i = 0; i < n; i++) {
        char key[40];
        snprintf(key, sizeof(key), " %.31s=", names[i]);
        cr_assert(strstr(logged, key) != NULL || strncmp(logged + 8, key + 1, strlen(key + 1)) == 0,
                  "the log leaves out --%s: %s", names[i], logged);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(srv_config, describe_reports_the_length_it_needs_and_stays_terminated)
{
    static const char *const none[] = {NULL};
    struct srv_config cfg;
    cr_assert_eq(parse(none, &cfg, NULL), DP_OK);
    char full[4096], small[16];
    size_t need = srv_config_describe(&cfg, full, sizeof(full));
    cr_assert_eq(need, strlen(full));
    cr_assert_eq(srv_config_describe(&cfg, small, sizeof(small)), need);
    cr_assert_eq(strlen(small), sizeof(small) - 1);
    cr_assert_eq(strncmp(small, full, sizeof(small) - 1), 0);
    cr_assert_eq(srv_config_describe(&cfg, NULL, 0), need);
    DP_ASSERT_NO_LEAKS();
}
