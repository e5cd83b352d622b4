/* The task-type table: names and constants round-trip, unknown names are refused. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/task_type.h"

Test(task_type, names_round_trip)
{
    for (int i = 0; i < DP_TASK__COUNT; i++) {
        enum dp_task_type t = DP_TASK__COUNT;
        const char *name = dp_task_type_name((enum dp_task_type)i);
        cr_assert_not_null(name);
        cr_assert(dp_task_type_from_name(name, &t), "%s not found", name);
        cr_assert_eq((int)t, i);
    }
    cr_assert_str_eq(dp_task_type_name(DP_TASK_RETRAIN), "retrain");
}

Test(task_type, unknown_names_are_refused)
{
    enum dp_task_type t = DP_TASK_TRAIN;
    cr_assert_not(dp_task_type_from_name("Train", &t));
    cr_assert_not(dp_task_type_from_name("", &t));
    cr_assert_not(dp_task_type_from_name(NULL, &t));
    cr_assert_not(dp_task_type_from_namen("trainx", 6, &t));
    cr_assert(dp_task_type_from_namen("train,compress", 5, &t));
    cr_assert_eq(t, DP_TASK_TRAIN);
    cr_assert_null(dp_task_type_name(DP_TASK__COUNT));
}

Test(task_type, list_names_every_type)
{
    char buf[128];
    dp_task_type_list(buf, sizeof(buf));
    cr_assert_str_eq(buf, "train, compress, retrain, export, compile, profile, latency");
    dp_task_type_list(buf, 8);
    cr_assert_eq(strlen(buf), 7);
}

/* The outputs column: what the worker uploads and the server requires, one table. */
Test(task_type, outputs_per_type)
{
    static const struct {
        enum dp_task_type t;
        unsigned outputs;
    } want[] = {
        {DP_TASK_TRAIN, DP_TASK_OUTS_MODEL},
        {DP_TASK_COMPRESS, DP_TASK_OUTS_MODEL | DP_TASK_OUTS_REPORT},
        {DP_TASK_RETRAIN, DP_TASK_OUTS_MODEL | DP_TASK_OUTS_REPORT},
        {DP_TASK_EXPORT, DP_TASK_OUTS_ONNX},
        {DP_TASK_COMPILE, DP_TASK_OUTS_CODE | DP_TASK_OUTS_COMPILE_REPORT},
        {DP_TASK_PROFILE, DP_TASK_OUTS_PROFILE},
        {DP_TASK_LATENCY, 0}, /* its table goes by PUT /agent/v1/latency */
    };
    cr_assert_eq(sizeof(want) / sizeof(want[0]), DP_TASK__COUNT, "a task type without a row here");
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_assert_eq(dp_task_type_outputs(want[i].t), want[i].outputs, "%s",
                     dp_task_type_name(want[i].t));
    cr_assert_eq(dp_task_type_outputs(DP_TASK__COUNT), 0);
    /* Every bit of every row is an output kind with a name. */
    for (int t = 0; t < DP_TASK__COUNT; t++)
        cr_assert_eq(dp_task_type_outputs((enum dp_task_type)t) >> DP_TASK_OUT__COUNT, 0);
}

Test(task_type, output_names_round_trip)
{
    for (int o = 0; o < DP_TASK_OUT__COUNT; o++) {
        enum dp_task_output back = DP_TASK_OUT__COUNT;
        const char *name = dp_task_output_name((enum dp_task_output)o);
        cr_assert_not_null(name);
        cr_assert(dp_task_output_from_name(name, &back), "%s", name);
        cr_assert_eq((int)back, o);
    }
    cr_assert_str_eq(dp_task_output_name(DP_TASK_OUT_REPORT), "report");
    cr_assert_null(dp_task_output_name(DP_TASK_OUT__COUNT));
    enum dp_task_output o = DP_TASK_OUT_MODEL;
    cr_assert_not(dp_task_output_from_name("checkpoint", &o));
    cr_assert_not(dp_task_output_from_name(NULL, &o));
}
