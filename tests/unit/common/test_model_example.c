/*
 * The usage example at the top of common/model.h, compiled and run.
 *
 * The lines between the example markers below are the header's example,
 * character for character (without the comment's " *   " prefix); the
 * second test reads both files and fails when they differ, so the header
 * cannot drift from code that compiles. Runs from the repository root,
 * like every suite.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"

Test(model_example, the_header_example_builds_a_model)
{
    // example:begin
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(1, 28, 28); // input C, H, W; NULL when out of memory
    int x = dp_model_add_conv2d(m, "conv1", DP_MODEL_INPUT, 20, 5, 1, 0, 1, 1, &ei);
    if (x >= 0) // else x is an enum dp_err (DP_ENOMEM is -1, which is DP_MODEL_INPUT)
        x = dp_model_add_unary(m, "relu1", DP_OP_RELU, x, &ei);
    if (x >= 0)
        x = dp_model_add_unary(m, "flatten", DP_OP_FLATTEN, x, &ei);
    if (x >= 0)
        x = dp_model_add_linear(m, "fc", x, 10, &ei);
    enum dp_err err = x < 0 ? (enum dp_err)x : dp_model_finalize(m, &ei); // ei says why
    struct dp_param *w = dp_model_param_find(m, "conv1.weight");          // (20, 1, 5, 5)
    float *w0 = dp_param_data(m, w); // zeros until initialised or loaded
    // example:end
    cr_assert_eq(err, DP_OK, "%s", ei.msg);
    cr_assert_not_null(w);
    cr_assert_eq(w->ndim, 4);
    cr_assert(w->shape[0] == 20 && w->shape[1] == 1 && w->shape[2] == 5 && w->shape[3] == 5);
    cr_assert_eq(w0[0], 0.0f);
    cr_assert_eq(m->layers[0].out_h, 24, "a 5x5 kernel without padding");
    cr_assert_eq(m->layers[x].out_c, 10);
    cr_assert_eq(dp_model_param_find(m, "fc.weight")->shape[1], 20 * 24 * 24);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

#define EX_LINES_MAX 32
#define EX_LINE_MAX  160

/*
 * Reads the example's lines from path: those after the first line holding
 * `start` (and a blank comment line) up to the first line holding `stop` (or, with stop NULL, the
 * first line that does not begin with `prefix`), each with `prefix`
 * removed. Returns the number of lines.
 */
static int ex_read(const char *path, const char *start, const char *stop, const char *prefix,
                   char lines[EX_LINES_MAX][EX_LINE_MAX])
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s (run from the repository root)", path);
    char buf[EX_LINE_MAX];
    int n = 0, in = 0;
    const size_t plen = strlen(prefix);
    while (fgets(buf, sizeof(buf), f) != NULL) {
        if (!in) {
            in = strstr(buf, start) != NULL;
            continue;
        }
        if (n == 0 && strcmp(buf, " *\n") == 0)
            continue; /* the blank comment line before the header's example */
        if (stop != NULL ? strstr(buf, stop) != NULL : strncmp(buf, prefix, plen) != 0)
            break;
        cr_assert_lt(n, EX_LINES_MAX, "%s: example too long", path);
        cr_assert(strncmp(buf, prefix, plen) == 0, "%s: example line '%s' is not indented as '%s'",
                  path, buf, prefix);
        snprintf(lines[n++], EX_LINE_MAX, "%s", buf + plen);
    }
    fclose(f);
    cr_assert(in, "%s: no '%s' marker", path, start);
    return n;
}

Test(model_example, the_header_holds_the_same_example)
{
    static char hdr[EX_LINES_MAX][EX_LINE_MAX], test[EX_LINES_MAX][EX_LINE_MAX];
    const int nh = ex_read("common/model.h", "this one stay identical:", NULL, " *   ", hdr);
    const int nt = ex_read(__FILE__, "// example:begin", "// example:end", "    ", test);
    cr_assert_gt(nt, 5);
    cr_assert_eq(nh, nt, "common/model.h's example has %d lines, the test's %d", nh, nt);
    for (int i = 0; i < nt; i++)
        cr_assert_str_eq(hdr[i], test[i], "example line %d differs", i + 1);
}
