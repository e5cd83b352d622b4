/*
 * An incremental parser for Server-Sent Events (the WHATWG event-stream
 * format), fed with whatever pieces the network delivers. Lines end with
 * LF, CRLF or CR; "field: value" lines accumulate an event; an empty line
 * dispatches it. Lines and data are capped, since the stream comes from the
 * network.
 */
#ifndef DP_SERVER_CLI_CLI_SSE_H
#define DP_SERVER_CLI_CLI_SSE_H

#include <stddef.h>

#include "common/err.h"

#define CLI_SSE_LINE_MAX ((size_t)1 << 20)
#define CLI_SSE_DATA_MAX ((size_t)4 << 20)

struct cli_sse {
    char *line; /* the current, unfinished line */
    size_t line_len, line_cap;
    char *data; /* the data lines of the pending event, joined by '\n' */
    size_t data_len, data_cap;
    int has_data;
    char event[64];   /* type of the pending event ("" means "message") */
    char last_id[64]; /* the last id seen: what Last-Event-ID resumes from */
    int prev_cr;      /* the previous piece ended with CR (CRLF may be split) */
};

/*
 * Called once per dispatched event with its type ("message" when none was
 * given), the last event id ("" if none yet) and its data (NUL-terminated).
 * Returns 0 to go on, nonzero to stop parsing.
 */
typedef int (*cli_sse_fn)(void *ud, const char *event, const char *id, const char *data);

void cli_sse_init(struct cli_sse *s);
void cli_sse_free(struct cli_sse *s);

/*
 * Parses n bytes at buf, calling fn for each complete event. Returns DP_OK,
 * DP_ETOOBIG when a line or an event's data exceeds its cap, or DP_ENOMEM.
 * *stopped is set when fn asked to stop (the rest of buf is ignored).
 */
enum dp_err cli_sse_feed(struct cli_sse *s, const char *buf, size_t n, cli_sse_fn fn, void *ud,
                         int *stopped);

#endif
