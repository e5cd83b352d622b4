/*
 * The automatic rates' search against a device's latency table: with the
 * same damage curves, the params objective spends its budget where the
 * weights are (the wide fully-connected layer), the latency objective
 * where the device says the time goes (the small but slow convolution);
 * and the table's interpolation and validation.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/lat_table.h"
#include "worker/compress/admm_int.h"

/* Two layers: 0 "conv" (2k weights, 1 ms dense on the device), 1 "fc"
 * (100k weights, 0.1 ms dense). Both lose the same loss at the same rate. */
enum { N_T = 2 };
static const double weights[N_T] = {2000.0, 100000.0};
static const double dense_ms[N_T] = {1.0, 0.1};

/* A sparse kernel's time: a fixed part and a part that falls with the rate. */
static double layer_ms(int k, double rate)
{
    return dense_ms[k] * (0.2 + 0.8 / rate);
}

static void setup_search(struct admm_alloc_search *s, double target, int latency)
{
    memset(s, 0, sizeof(*s));
    s->n_t = N_T;
    for (double r = 1.0; r <= 256.0 * 1.0001; r *= 1.4142135623730951)
        s->grid[s->n_g++] = r;
    s->damage = dp_calloc((size_t)(N_T * s->n_g), sizeof(double));
    s->cost = dp_calloc((size_t)(N_T * s->n_g), sizeof(double));
    cr_assert(s->damage != NULL && s->cost != NULL);
    s->budget = 0.0;
    for (int k = 0; k < N_T; k++) {
        for (int g = 0; g < s->n_g; g++) {
            const double l2 = log2(s->grid[g]);
            s->damage[k * s->n_g + g] = 0.01 * l2 * l2;
            s->cost[k * s->n_g + g] = latency ? layer_ms(k, s->grid[g]) : weights[k] / s->grid[g];
        }
        s->budget += latency ? layer_ms(k, target) : weights[k] / target;
    }
}

static double choice_ms(const struct admm_alloc_search *s, const int *idx)
{
    double ms = 0.0;
    for (int k = 0; k < N_T; k++)
        ms += layer_ms(k, s->grid[idx[k]]);
    return ms;
}

static void choose(struct admm_alloc_search *s, double target, int *idx)
{
    int g0 = 0;
    while (g0 < s->n_g - 1 && s->grid[g0] < target * (1.0 - 1e-9))
        g0++;
    for (int k = 0; k < N_T; k++)
        idx[k] = g0;
    admm_alloc_anneal(s, 20000, 7, idx);
}

Test(admm_alloc, latency_objective_prunes_where_the_device_spends_time)
{
    const double target = 4.0;
    struct admm_alloc_search sp, sl;
    setup_search(&sp, target, 0);
    setup_search(&sl, target, 1);
    int ip[N_T], il[N_T];
    choose(&sp, target, ip);
    choose(&sl, target, il);
    const double rp_conv = sp.grid[ip[0]], rp_fc = sp.grid[ip[1]];
    const double rl_conv = sl.grid[il[0]], rl_fc = sl.grid[il[1]];
    cr_log_info("params: conv %.2f fc %.2f (%.3f ms); latency: conv %.2f fc %.2f (%.3f ms)",
                rp_conv, rp_fc, choice_ms(&sp, ip), rl_conv, rl_fc, choice_ms(&sl, il));
    /* params: the fc layer holds 98% of the weights, so it takes the cut. */
    cr_assert_gt(rp_fc, rp_conv, "params objective: fc %.2f should be pruned above conv %.2f",
                 rp_fc, rp_conv);
    /* latency: the conv layer holds 90% of the time, so it takes the cut. */
    cr_assert_gt(rl_conv, rl_fc, "latency objective: conv %.2f should be pruned above fc %.2f",
                 rl_conv, rl_fc);
    cr_assert_gt(rl_conv, rp_conv);
    /* Both choices stay within their own budget ... */
    cr_assert_leq(admm_alloc_kept(&sp, ip), sp.budget * (1.0 + 1e-9));
    cr_assert_leq(admm_alloc_kept(&sl, il), sl.budget * (1.0 + 1e-9));
    /* ... and the latency one is faster on the device than the params one. */
    cr_assert_lt(choice_ms(&sl, il), choice_ms(&sp, ip));
    dp_free(sp.damage);
    dp_free(sp.cost);
    dp_free(sl.damage);
    dp_free(sl.cost);
}

Test(admm_alloc, latency_table_interpolates_in_log_rate)
{
    json_error_t je;
    json_t *t = json_loads("{\"device\":\"d\",\"layers\":[{\"name\":\"conv1\",\"rates\":[1,4,16],"
                           "\"ms\":[1.0,0.5,0.3]}]}",
                           0, &je);
    cr_assert_not_null(t);
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_lat_table_check(t, &ei), DP_OK, "%s", ei.msg);
    double ms = 0.0;
    cr_assert_eq(dp_lat_table_ms(t, "conv1", 2.0, &ms, &ei), DP_OK);
    cr_assert_float_eq(ms, 0.75, 1e-12); /* half way from 1 to 4 in log */
    cr_assert_eq(dp_lat_table_ms(t, "conv1", 8.0, &ms, &ei), DP_OK);
    cr_assert_float_eq(ms, 0.4, 1e-12);
    cr_assert_eq(dp_lat_table_ms(t, "conv1", 64.0, &ms, &ei), DP_OK);
    cr_assert_float_eq(ms, 0.3, 1e-12); /* no extrapolation past the last point */
    cr_assert_eq(dp_lat_table_ms(t, "conv1", 1.0, &ms, &ei), DP_OK);
    cr_assert_float_eq(ms, 1.0, 1e-12);
    cr_assert_eq(dp_lat_table_ms(t, "fc9", 2.0, &ms, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "fc9") != NULL, "%s", ei.msg);
    json_decref(t);
}

Test(admm_alloc, latency_table_rejects_bad_shapes)
{
    static const char *const bad[] = {
        "{}",
        "{\"layers\":[]}",
        "{\"layers\":[{\"rates\":[1],\"ms\":[1]}]}",
        "{\"layers\":[{\"name\":\"a\",\"rates\":[1,2],\"ms\":[1]}]}",
        "{\"layers\":[{\"name\":\"a\",\"rates\":[2,1],\"ms\":[1,1]}]}",
        "{\"layers\":[{\"name\":\"a\",\"rates\":[0.5],\"ms\":[1]}]}",
        "{\"layers\":[{\"name\":\"a\",\"rates\":[1],\"ms\":[-1]}]}",
        "{\"layers\":[{\"name\":\"a\",\"rates\":[1],\"ms\":[\"x\"]}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *t = json_loads(bad[i], 0, NULL);
        cr_assert_not_null(t, "%s", bad[i]);
        struct dp_errinfo ei = {0};
        cr_assert_eq(dp_lat_table_check(t, &ei), DP_EINVAL, "accepted %s", bad[i]);
        cr_assert(strstr(ei.msg, "latency table") != NULL, "%s", ei.msg);
        json_decref(t);
    }
}
