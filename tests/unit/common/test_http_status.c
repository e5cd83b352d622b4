/*
 * dp_err <-> HTTP status: every error code's answer is pinned, and reading
 * the answer back gives the code itself, or its documented client-side
 * class for the few that only refine a server failure.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common/http_status.h"

static const struct {
    enum dp_err err;
    unsigned status;
    const char *code;
    enum dp_err reads; /* what a client makes of the answer */
} cases[] = {
    {DP_ENOMEM, 503, "out_of_memory", DP_EIO},
    {DP_EINVAL, 400, "invalid_request", DP_EINVAL},
    {DP_EIO, 500, "internal", DP_EIO},
    {DP_ENOENT, 404, "not_found", DP_ENOENT},
    {DP_EFORMAT, 400, "invalid_format", DP_EFORMAT},
    {DP_ETRUNC, 400, "invalid_format", DP_EFORMAT},
    {DP_ETOOBIG, 413, "too_large", DP_ETOOBIG},
    {DP_ESHAPE, 400, "invalid_request", DP_EINVAL},
    {DP_EUNSUPPORTED, 415, "unsupported", DP_EUNSUPPORTED},
    {DP_EEXIST, 409, "conflict", DP_EEXIST},
    {DP_ENUMERIC, 500, "internal", DP_EIO},
    {DP_EINTERRUPTED, 500, "internal", DP_EIO},
    {DP_ESTALE, 409, "lease_lost", DP_ESTALE},
    {DP_EPERM, 403, "forbidden", DP_EPERM},
};

Test(http_status, every_code_round_trips)
{
    /* One case per code: a code appended to err.h must be added here. */
    cr_assert_eq(sizeof(cases) / sizeof(cases[0]), (size_t)-DP_ERR__LAST - 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *code = NULL;
        unsigned status = dp_err_to_http_status(cases[i].err, &code);
        cr_assert_eq(status, cases[i].status, "%s: %u", dp_err_name(cases[i].err), status);
        cr_assert_str_eq(code, cases[i].code, "%s", dp_err_name(cases[i].err));
        enum dp_err back = dp_err_from_http_status((long)status, code);
        cr_assert_eq(back, cases[i].reads, "%s reads back as %s", dp_err_name(cases[i].err),
                     dp_err_name(back));
        /* What a client reads is a fixed point: it maps to the same answer. */
        cr_assert_eq(dp_err_from_http_status((long)dp_err_to_http_status(back, &code), code), back);
    }
    cr_assert_eq(dp_err_to_http_status(DP_EINVAL, NULL), 400u);
}

Test(http_status, answers_the_server_gives_by_hand)
{
    static const struct {
        long status;
        const char *code;
        enum dp_err want;
    } answers[] = {
        {200, NULL, DP_OK},
        {204, NULL, DP_OK},
        {0, NULL, DP_EIO}, /* no answer came */
        {401, "unauthorized", DP_EPERM},
        {403, "forbidden", DP_EPERM},
        {409, "lease_lost", DP_ESTALE},
        {409, "job_finished", DP_EEXIST}, /* a conflict the client has no row for */
        {409, NULL, DP_EEXIST},
        {400, "malformed_json", DP_EINVAL},
        {400, "invalid_format", DP_EFORMAT},
        {404, "report_not_ready", DP_ENOENT},
        {405, "method_not_allowed", DP_EINVAL},
        {413, "too_large", DP_ETOOBIG},
        {415, "unsupported_media_type", DP_EUNSUPPORTED},
        {422, "invalid_reference", DP_EINVAL},
        {500, "internal", DP_EIO},
        {502, NULL, DP_EIO},
        {503, "out_of_memory", DP_EIO},
        {304, NULL, DP_EFORMAT},
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++)
        cr_assert_eq(dp_err_from_http_status(answers[i].status, answers[i].code), answers[i].want,
                     "%ld %s", answers[i].status, answers[i].code ? answers[i].code : "-");
}
