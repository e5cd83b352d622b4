/*
 * Progress line formatting (see cli_progress.h).
 */
#include "server/cli/cli_progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cli_progress_init(struct cli_progress *p)
{
    memset(p, 0, sizeof(*p));
    p->epoch = p->epochs = -1;
    p->test_accuracy = p->sparsity = p->eta_s = -1;
}

static double cli_num(const json_t *o, const char *key, double dflt)
{
    const json_t *v = json_object_get(o, key);
    double d = json_is_number(v) ? json_number_value(v) : dflt;
    return isfinite(d) ? d : dflt;
}

void cli_progress_update(struct cli_progress *p, const json_t *d)
{
    const char *task = json_string_value(json_object_get(d, "task"));
    if (task != NULL)
        snprintf(p->task, sizeof(p->task), "%s", task);
    double e = cli_num(d, "epoch", -1), es = cli_num(d, "epochs", -1);
    if (e >= 0 && e < 1e9)
        p->epoch = (int)e;
    if (es >= 0 && es < 1e9)
        p->epochs = (int)es;
    p->test_accuracy = cli_num(d, "test_accuracy", p->test_accuracy);
    /* Compression reports accuracy on its held-out validation split per epoch. */
    p->test_accuracy = cli_num(d, "val_accuracy", p->test_accuracy);
    p->sparsity = cli_num(d, "sparsity", p->sparsity);
    p->eta_s = cli_num(d, "eta_s", p->eta_s);
}

void cli_fmt_duration(char *buf, size_t cap, double s)
{
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60)
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, cap, "%lds", t);
}

/* Appends to buf at *len, never past cap; keeps *len <= cap - 1. */
__attribute__((format(printf, 4, 5))) static void cli_append(char *buf, size_t cap, size_t *len,
                                                             const char *fmt, ...)
{
    if (*len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = (size_t)n < cap - *len ? *len + (size_t)n : cap - 1;
}

size_t cli_progress_render(char *buf, size_t cap, const struct cli_progress *p, int bar_width)
{
    size_t len = 0;
    if (cap == 0)
        return 0;
    buf[0] = '\0';
    double frac = -1;
    if (p->epoch >= 0 && p->epochs > 0)
        frac = p->epoch >= p->epochs ? 1.0 : (double)p->epoch / (double)p->epochs;
    cli_append(buf, cap, &len, "%-9s [", p->task[0] ? p->task : "waiting");
    int filled = frac >= 0 ? (int)(frac * bar_width + 0.5) : 0;
    for (int i = 0; i < bar_width; i++)
        cli_append(buf, cap, &len, "%c", i < filled ? '#' : '.');
    cli_append(buf, cap, &len, "]");
    if (frac >= 0)
        cli_append(buf, cap, &len, " %3d%%  epoch %d/%d", (int)(100 * frac + 0.5), p->epoch,
                   p->epochs);
    if (p->test_accuracy >= 0)
        cli_append(buf, cap, &len, "  acc %.2f%%", 100 * p->test_accuracy);
    if (p->sparsity >= 0)
        cli_append(buf, cap, &len, "  sparsity %.1f%%", 100 * p->sparsity);
    if (p->eta_s >= 0) {
        char eta[32];
        cli_fmt_duration(eta, sizeof(eta), p->eta_s);
        cli_append(buf, cap, &len, "  ETA %s", eta);
    }
    return len;
}
