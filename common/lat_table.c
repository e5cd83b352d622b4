/*
 * The per-layer latency table (lat_table.h): its validation and the
 * interpolation between measured rates. Latency falls roughly with the
 * log of the rate over the range a sparse kernel pays off in, so the
 * points are joined linearly in log(rate); outside the measured range the
 * nearest point stands (no extrapolation a device never showed).
 */
#include <math.h>
#include <string.h>

#include "common/lat_table.h"

enum dp_err dp_lat_table_check(const json_t *table, struct dp_errinfo *ei)
{
    const json_t *ls = json_is_object(table) ? json_object_get(table, "layers") : NULL;
    if (!json_is_array(ls) || json_array_size(ls) == 0)
        return dp_errinfo_set(ei, DP_EINVAL, "latency table: \"layers\" must be a non-empty array");
    if (json_array_size(ls) > DP_LAT_TABLE_MAX_LAYERS)
        return dp_errinfo_set(ei, DP_EINVAL, "latency table: more than %d layers",
                              DP_LAT_TABLE_MAX_LAYERS);
    for (size_t i = 0; i < json_array_size(ls); i++) {
        const json_t *l = json_array_get(ls, i);
        const json_t *nm = json_object_get(l, "name");
        const json_t *r = json_object_get(l, "rates");
        const json_t *t = json_object_get(l, "ms");
        if (!json_is_string(nm) || json_string_length(nm) == 0 || json_string_length(nm) > 127)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "latency table: layers[%zu].name must be a string of 1..127 "
                                  "characters",
                                  i);
        if (!json_is_array(r) || !json_is_array(t) || json_array_size(r) != json_array_size(t) ||
            json_array_size(r) == 0 || json_array_size(r) > DP_LAT_TABLE_MAX_POINTS)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "latency table: layers[%zu] (%s): \"rates\" and \"ms\" must be "
                                  "arrays of the same length, 1..%d",
                                  i, json_string_value(nm), DP_LAT_TABLE_MAX_POINTS);
        double prev = 0.0;
        for (size_t j = 0; j < json_array_size(r); j++) {
            const json_t *rv = json_array_get(r, j), *tv = json_array_get(t, j);
            if (!json_is_number(rv) || !json_is_number(tv))
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "latency table: layers[%zu] (%s): rates and ms must be "
                                      "numbers",
                                      i, json_string_value(nm));
            const double rate = json_number_value(rv), ms = json_number_value(tv);
            if (!isfinite(rate) || rate < 1.0 || rate <= prev || rate > 1e6)
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "latency table: layers[%zu] (%s): rates must ascend "
                                      "strictly from >= 1",
                                      i, json_string_value(nm));
            if (!isfinite(ms) || ms < 0.0 || ms > 1e7)
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "latency table: layers[%zu] (%s): ms must be finite and "
                                      ">= 0",
                                      i, json_string_value(nm));
            prev = rate;
        }
    }
    return DP_OK;
}

enum dp_err dp_lat_table_ms(const json_t *table, const char *name, double rate, double *ms,
                            struct dp_errinfo *ei)
{
    const json_t *ls = json_object_get(table, "layers");
    for (size_t i = 0; i < json_array_size(ls); i++) {
        const json_t *l = json_array_get(ls, i);
        if (strcmp(json_string_value(json_object_get(l, "name")), name) != 0)
            continue;
        const json_t *r = json_object_get(l, "rates"), *t = json_object_get(l, "ms");
        const size_t n = json_array_size(r);
        if (rate <= json_number_value(json_array_get(r, 0))) {
            *ms = json_number_value(json_array_get(t, 0));
            return DP_OK;
        }
        for (size_t j = 1; j < n; j++) {
            const double r1 = json_number_value(json_array_get(r, j));
            if (rate <= r1) {
                const double r0 = json_number_value(json_array_get(r, j - 1));
                const double m0 = json_number_value(json_array_get(t, j - 1));
                const double m1 = json_number_value(json_array_get(t, j));
                const double f = log(rate / r0) / log(r1 / r0);
                *ms = m0 + f * (m1 - m0);
                return DP_OK;
            }
        }
        *ms = json_number_value(json_array_get(t, n - 1));
        return DP_OK;
    }
    return dp_errinfo_set(ei, DP_EINVAL, "latency table: no layer \"%s\" (another architecture?)",
                          name);
}
