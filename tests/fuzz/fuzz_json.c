/*
 * libFuzzer target for the JSON the server takes from clients: the job
 * spec parser (common/spec.c, dp_spec_parse, which both the server and
 * the worker run), the server's body helpers (srv_json_only, srv_json_str,
 * srv_json_int), the name and device checks (server/validate.c), and the
 * whole POST /api/v1/jobs body check (srv_job_body_check), all called
 * directly, without a connection.
 *
 *   make fuzz FUZZ_TARGETS=json          (FUZZ_SECONDS, default 60)
 *
 * An input is JSON text. It goes to dp_spec_parse as it is, and, when it
 * is a JSON object, through the body checks, whole and as {"spec": input}
 * (so that spec mutations also reach the job path).
 *
 * Invariants, each an abort() with the reason (libFuzzer saves the input):
 * - a refusal sets dp_errinfo: its code is the error returned, its message
 *   is non-empty, NUL-terminated inside msg and valid UTF-8 (it goes into
 *   a JSON answer, which jansson refuses otherwise);
 * - parsing is deterministic: an accepted spec parses again to the same
 *   struct (byte for byte) and digest; a body check gives the same
 *   answer twice;
 * - an accepted job body has its required fields and values in range; a
 *   refused one answers 400 or 422 (413 for DP_ETOOBIG).
 * The seeds (tests/fuzz/make_json_seeds.sh) are the examples of
 * docs/job-spec.md and docs/api.md, and job bodies built from them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/spec.h"
#include "common/utf8.h"
#include "server/http_int.h"
#include "server/validate.h"

static void fuzz_quiet(enum dp_log_level level, const char *msg, void *ud)
{
    (void)level;
    (void)msg;
    (void)ud;
}

static void fuzz_die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_json: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

/* A refusal's errinfo: the code returned, a message that JSON can carry. */
static void check_refusal(const char *where, enum dp_err err, const struct dp_errinfo *ei)
{
    if (memchr(ei->msg, '\0', sizeof(ei->msg)) == NULL)
        fuzz_die(where, "message not NUL-terminated");
    if (ei->code != err)
        fuzz_die(where, "errinfo code differs from the error returned");
    if (ei->msg[0] == '\0')
        fuzz_die(where, "refused without a message");
    if (!dp_utf8_valid(ei->msg)) {
        fprintf(stderr, "fuzz_json: %s: message not UTF-8: %s\n", where, ei->msg);
        abort();
    }
}

/* ---- The spec parser ---- */

static void fuzz_spec(const char *text, size_t len)
{
    struct dp_spec *a = dp_malloc(sizeof(*a)), *b = dp_malloc(sizeof(*b));
    if (a == NULL || b == NULL)
        fuzz_die("out of memory", NULL);
    /* Different garbage in each, so that a field the parser leaves unset shows. */
    memset(a, 0xA5, sizeof(*a));
    memset(b, 0x5A, sizeof(*b));
    struct dp_errinfo ei = {DP_OK, ""}, ei2 = {DP_OK, ""};
    enum dp_err err = dp_spec_parse(text, len, a, &ei);
    enum dp_err err2 = dp_spec_parse(text, len, b, &ei2);
    if (err != err2 || strcmp(ei.msg, ei2.msg) != 0)
        fuzz_die("dp_spec_parse", "two parses of the same text disagree");
    if (err) {
        check_refusal("dp_spec_parse", err, &ei);
    } else {
        if (memcmp(a, b, sizeof(*a)) != 0 || dp_spec_digest(a) != dp_spec_digest(b))
            fuzz_die("dp_spec_parse", "two parses of an accepted spec differ");
        if (a->n_rules < 0 || a->n_rules > DP_SPEC_MAX_RULES)
            fuzz_die("dp_spec_parse", "rule count out of range");
        for (int i = 0; i < a->n_rules; i++)
            if (memchr(a->rules[i].match, '\0', sizeof(a->rules[i].match)) == NULL)
                fuzz_die("dp_spec_parse", "a rule's match is not NUL-terminated");
        /* The consumers of an accepted spec (UBSan watches their arithmetic). */
        (void)dp_spec_epochs(a);
        (void)dp_spec_rule_for(a, "conv1");
        (void)dp_spec_rule_for(a, "fc2");
        (void)dp_spec_rule_for(a, "");
    }
    dp_free(a);
    dp_free(b);
}

/* ---- The server's body helpers ---- */

static void fuzz_helpers(const json_t *j)
{
    static const char *const allowed[] = {"name", "model_id", "dataset_id", "device",
                                          "spec", "priority", NULL};
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = srv_json_only(j, "body", allowed, &ei);
    if (err)
        check_refusal("srv_json_only", err, &ei);

    /* The keys the handlers ask for by name (their messages name them). */
    static const char *const keys[] = {"name",   "model_id", "priority", "max_attempts",
                                       "epochs", "device",   "spec"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *key = keys[i], *s = NULL;
        int64_t x = 0;
        struct dp_errinfo e1 = {DP_OK, ""}, e2 = {DP_OK, ""}, e3 = {DP_OK, ""};
        err = srv_json_str(j, "body", key, 1, &s, &e1);
        if (err)
            check_refusal("srv_json_str", err, &e1);
        else if (s == NULL || !dp_utf8_valid(s))
            fuzz_die("srv_json_str", "accepted a string that is not UTF-8");
        if (!err) {
            err = srv_validate_name(s, "name", &e2);
            if (err)
                check_refusal("srv_validate_name", err, &e2);
            else if (strlen(s) == 0 || strlen(s) > SRV_NAME_MAX || dp_utf8_has_control(s))
                fuzz_die("srv_validate_name", "accepted a name it should refuse");
        }
        err = srv_json_int(j, "body", key, 1, -5, 1000, &x, &e3);
        if (err)
            check_refusal("srv_json_int", err, &e3);
        else if (x < -5 || x > 1000)
            fuzz_die("srv_json_int", "accepted a value out of range");
    }
    json_t *device = json_object_get(j, "device");
    if (device) {
        err = srv_validate_device(device, "body.device", &ei);
        if (err)
            check_refusal("srv_validate_device", err, &ei);
    }
}

/* ---- The job body check ---- */

static void fuzz_job_body(const json_t *j)
{
    struct srv_job_body b, b2;
    struct dp_errinfo ei = {DP_OK, ""}, ei2 = {DP_OK, ""};
    enum dp_err err = srv_job_body_check(j, &b, &ei);
    enum dp_err err2 = srv_job_body_check(j, &b2, &ei2);
    if (err != err2 || strcmp(ei.msg, ei2.msg) != 0 || b.status != b2.status)
        fuzz_die("srv_job_body_check", "two checks of the same body disagree");
    if (err) {
        check_refusal("srv_job_body_check", err, &ei);
        if (err != DP_ETOOBIG && err != DP_ENOMEM && b.status != 400 && b.status != 422)
            fuzz_die("srv_job_body_check", "a refusal that is neither 400 nor 422");
        return;
    }
    if (b.model_id == NULL || b.dataset_id == NULL || b.spec == NULL || b.name == NULL)
        fuzz_die("srv_job_body_check", "accepted without a required field");
    if (b.priority < 0 || b.priority > 9 || b.max_attempts < 1 || b.max_attempts > 20)
        fuzz_die("srv_job_body_check", "accepted a value out of range");
    if (b.seed != b2.seed)
        fuzz_die("srv_job_body_check", "the seed differs between two checks");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dp_log_set_sink(fuzz_quiet, NULL);
    if (size > DP_SPEC_MAX_BYTES)
        return 0;
    fuzz_spec((const char *)data, size);

    json_error_t je;
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL)
        return 0;
    if (json_is_object(j)) {
        fuzz_helpers(j);
        fuzz_job_body(j);
    }
    /* The input as the spec of an otherwise valid submission. */
    json_t *body =
        json_pack("{s:s, s:s, s:O}", "model_id", "mdl_x", "dataset_id", "dst_x", "spec", j);
    if (body)
        fuzz_job_body(body);
    json_decref(body);
    json_decref(j);
    return 0;
}
