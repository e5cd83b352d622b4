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
    cr_assert_str_eq(buf, "train, compress, retrain, export, compile, profile");
    dp_task_type_list(buf, 8);
    cr_assert_eq(strlen(buf), 7);
}
