/*
 * Logging (STYLE rule 24). DP_LOG checks the level before formatting; the
 * sink is a callback so tests can capture what common/ and the engine say.
 * The default sink writes "time level message" lines to stderr.
 */
#ifndef DP_COMMON_LOG_H
#define DP_COMMON_LOG_H

enum dp_log_level { DP_LOG_DEBUG = 0, DP_LOG_INFO = 1, DP_LOG_WARN = 2, DP_LOG_ERROR = 3 };

typedef void (*dp_log_fn)(enum dp_log_level level, const char *msg, void *ud);

/* Replaces the sink (NULL restores stderr) and its user data. Call before threads start. */
void dp_log_set_sink(dp_log_fn fn, void *ud);

/* Messages below level are dropped without being formatted. */
void dp_log_set_level(enum dp_log_level level);
enum dp_log_level dp_log_get_level(void);

void dp_log_write(enum dp_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define DP_LOG(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= dp_log_get_level())                                                         \
            dp_log_write((level), __VA_ARGS__);                                                    \
    } while (0)

#endif
