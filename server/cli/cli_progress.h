/*
 * The one-line progress display of `dnnpress watch`: task, a bar, percent,
 * epoch, test accuracy, sparsity and ETA. Pure: it formats a struct into a
 * buffer, so tests can check it character by character.
 */
#ifndef DP_SERVER_CLI_CLI_PROGRESS_H
#define DP_SERVER_CLI_CLI_PROGRESS_H

#include <jansson.h>
#include <stddef.h>

/* Negative numbers mean "unknown" and are left out of the line. */
struct cli_progress {
    char task[32]; /* "train", "compress", ... ("" before the first event) */
    int epoch, epochs;
    double test_accuracy; /* 0..1 */
    double sparsity;      /* 0..1, share of zero weights */
    double eta_s;
};

/* Resets p to "nothing known yet". */
void cli_progress_init(struct cli_progress *p);

/* Takes what an `epoch` event's data says (borrowed); unknown fields are ignored. */
void cli_progress_update(struct cli_progress *p, const json_t *epoch_data);

/* Formats seconds as "45s", "3m07s" or "2h05m" into buf (cap bytes). */
void cli_fmt_duration(char *buf, size_t cap, double s);

/*
 * Writes the line into buf (cap bytes, always NUL-terminated), the bar
 * bar_width characters wide between brackets. Example:
 *   "compress  [##########..........]  50%  epoch 3/6  acc 87.10%  sparsity 90.0%  ETA 1m05s"
 * Returns the length written.
 */
size_t cli_progress_render(char *buf, size_t cap, const struct cli_progress *p, int bar_width);

#endif
