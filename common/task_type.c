/*
 * The task-type table (see task_type.h): names generated from the one
 * X-macro list so that the server and the worker cannot disagree.
 */
#include "common/task_type.h"

#include <stdio.h>
#include <string.h>

static const char *const task_names[DP_TASK__COUNT] = {
#define DP__TASK_NAME(constant, name, outputs, what) [constant] = name,
    DP_TASK_TYPE_MAP(DP__TASK_NAME)
#undef DP__TASK_NAME
};

static const unsigned task_outputs[DP_TASK__COUNT] = {
#define DP__TASK_OUTPUTS(constant, name, outputs, what) [constant] = outputs,
    DP_TASK_TYPE_MAP(DP__TASK_OUTPUTS)
#undef DP__TASK_OUTPUTS
};

static const char *const output_names[DP_TASK_OUT__COUNT] = {
#define DP__TASK_OUT_NAME(constant, name) [constant] = name,
    DP_TASK_OUTPUT_MAP(DP__TASK_OUT_NAME)
#undef DP__TASK_OUT_NAME
};

unsigned dp_task_type_outputs(enum dp_task_type t)
{
    if ((int)t < 0 || t >= DP_TASK__COUNT)
        return 0;
    return task_outputs[t];
}

const char *dp_task_output_name(enum dp_task_output o)
{
    if ((int)o < 0 || o >= DP_TASK_OUT__COUNT)
        return NULL;
    return output_names[o];
}

int dp_task_output_from_name(const char *name, enum dp_task_output *out)
{
    for (int i = 0; name != NULL && i < DP_TASK_OUT__COUNT; i++)
        if (strcmp(output_names[i], name) == 0) {
            *out = (enum dp_task_output)i;
            return 1;
        }
    return 0;
}

const char *dp_task_type_name(enum dp_task_type t)
{
    if ((int)t < 0 || t >= DP_TASK__COUNT)
        return NULL;
    return task_names[t];
}

int dp_task_type_from_namen(const char *s, size_t n, enum dp_task_type *out)
{
    if (s == NULL)
        return 0;
    for (int i = 0; i < DP_TASK__COUNT; i++)
        if (strlen(task_names[i]) == n && memcmp(task_names[i], s, n) == 0) {
            *out = (enum dp_task_type)i;
            return 1;
        }
    return 0;
}

int dp_task_type_from_name(const char *name, enum dp_task_type *out)
{
    return name != NULL && dp_task_type_from_namen(name, strlen(name), out);
}

void dp_task_type_list(char *buf, size_t cap)
{
    size_t used = 0;
    if (cap == 0)
        return;
    buf[0] = '\0';
    for (int i = 0; i < DP_TASK__COUNT && used < cap; i++) {
        int k = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", task_names[i]);
        if (k < 0)
            break;
        used += (size_t)k;
    }
}
