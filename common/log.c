/*
 * The logger sink (see log.h). The sink and level are process-wide settings
 * made once at start-up, one of the globals STYLE rule 22 allows.
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static struct {
    dp_log_fn fn;
    void *ud;
    enum dp_log_level level;
} log_state = {NULL, NULL, DP_LOG_INFO};

void dp_log_set_sink(dp_log_fn fn, void *ud)
{
    log_state.fn = fn;
    log_state.ud = ud;
}

void dp_log_set_level(enum dp_log_level level)
{
    log_state.level = level;
}

enum dp_log_level dp_log_get_level(void)
{
    return log_state.level;
}

void dp_log_write(enum dp_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (log_state.fn != NULL) {
        log_state.fn(level, msg, log_state.ud);
        return;
    }
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s %s %s\n", ts, names[(unsigned)level & 3u], msg);
}
