/*
 * The engine's op table (worker/nn/net.c) against the common one
 * (common/op.h): every op the IR can hold has forward and backward
 * functions, so a new op cannot reach a training run before the engine
 * learns it (nn_net_new refuses such a model, naming the op).
 */
#include <criterion/criterion.h>

#include "common/model.h"
#include "worker/nn/net.h"

Test(net_optable, every_op_has_an_engine_row)
{
    for (int i = 0; i < DP_OP__COUNT; i++)
        cr_expect(nn_net_op_supported((enum dp_op)i), "op %s has no row in net.c's op table",
                  dp_op_name((enum dp_op)i));
    cr_assert_not(nn_net_op_supported(DP_OP__COUNT));
}
