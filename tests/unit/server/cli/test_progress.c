/*
 * cli_progress: the watch line, exactly.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "server/cli/cli_progress.h"
#include "tests/unit/test_util.h"

Test(cli_progress, renders_known_fields_only)
{
    struct cli_progress p;
    char line[256];
    cli_progress_init(&p);
    cli_progress_render(line, sizeof(line), &p, 10);
    cr_assert_str_eq(line, "waiting   [..........]");

    json_t *d = json_pack("{s:s, s:i, s:i, s:f, s:f, s:f}", "task", "compress", "epoch", 3,
                          "epochs", 6, "test_accuracy", 0.871, "sparsity", 0.9, "eta_s", 65.0);
    cli_progress_update(&p, d);
    json_decref(d);
    cli_progress_render(line, sizeof(line), &p, 10);
    cr_assert_str_eq(line, "compress  [#####.....]  50%  epoch 3/6  acc 87.10%  sparsity 90.0%  "
                           "ETA 1m05s");

    /* A later event without sparsity keeps the last known value; strings are ignored. */
    d = json_pack("{s:s, s:i, s:i, s:s}", "task", "retrain", "epoch", 2, "epochs", 2, "eta_s",
                  "soon");
    cli_progress_update(&p, d);
    json_decref(d);
    cli_progress_render(line, sizeof(line), &p, 4);
    cr_assert_str_eq(line,
                     "retrain   [####] 100%  epoch 2/2  acc 87.10%  sparsity 90.0%  ETA 1m05s");
    DP_ASSERT_NO_LEAKS();
}

Test(cli_progress, never_overflows_and_formats_durations)
{
    struct cli_progress p;
    cli_progress_init(&p);
    p.epoch = 1, p.epochs = 3, p.test_accuracy = 0.5, p.eta_s = 7300;
    snprintf(p.task, sizeof(p.task), "train");
    char small[12];
    size_t n = cli_progress_render(small, sizeof(small), &p, 40);
    cr_assert_eq(n, strlen(small));
    cr_assert_lt(n, sizeof(small));
    char b[16];
    cli_fmt_duration(b, sizeof(b), 45);
    cr_assert_str_eq(b, "45s");
    cli_fmt_duration(b, sizeof(b), 187);
    cr_assert_str_eq(b, "3m07s");
    cli_fmt_duration(b, sizeof(b), 7500);
    cr_assert_str_eq(b, "2h05m");
    cli_fmt_duration(b, sizeof(b), -3);
    cr_assert_str_eq(b, "0s");
    DP_ASSERT_NO_LEAKS();
}
