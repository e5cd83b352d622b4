/*
 * Error names, messages and context (see err.h). The tables are generated
 * from the one X-macro list so that names, values and messages cannot drift.
 */
#include "common/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "common/utf8.h"

const char *dp_err_name(enum dp_err err)
{
    switch (err) {
#define DP__ERR_NAME(name, value, msg)                                                             \
    case name:                                                                                     \
        return #name;
        DP_ERR_MAP(DP__ERR_NAME)
#undef DP__ERR_NAME
        case DP_ERR__LAST:
            break;
    }
    return "DP_E?";
}

const char *dp_strerror(enum dp_err err)
{
    switch (err) {
#define DP__ERR_MSG(name, value, msg)                                                              \
    case name:                                                                                     \
        return msg;
        DP_ERR_MAP(DP__ERR_MSG)
#undef DP__ERR_MSG
        case DP_ERR__LAST:
            break;
    }
    return "unknown error";
}

enum dp_err dp_errinfo_set(struct dp_errinfo *ei, enum dp_err code, const char *fmt, ...)
{
    if (ei == NULL)
        return code;
    ei->code = code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ei->msg, sizeof(ei->msg), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(ei->msg)) {
        /* Cut short: drop a UTF-8 character the cut split, so that the
         * message stays valid UTF-8 (messages go into JSON answers). */
        size_t end = sizeof(ei->msg) - 1, lead = end;
        while (lead > 0 && end - lead < 4 && ((unsigned char)ei->msg[lead - 1] & 0xC0) == 0x80)
            lead--;
        if (lead > 0 && ((unsigned char)ei->msg[lead - 1] & 0x80) != 0) {
            unsigned char c = (unsigned char)ei->msg[lead - 1];
            size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
            if (end - (lead - 1) < need)
                ei->msg[lead - 1] = '\0';
        }
    }
    /* Messages quote input (a key, a file name, a parser's excerpt), and
     * they end up in JSON answers: anything not UTF-8 becomes '?'. */
    dp_utf8_sanitize(ei->msg);
    return code;
}

enum dp_err dp_err_from_errno(int e)
{
    switch (e) {
        case ENOMEM:
            return DP_ENOMEM;
        case ENOENT:
        case ENOTDIR:
            return DP_ENOENT;
        case EINVAL:
            return DP_EINVAL;
        case EEXIST:
            return DP_EEXIST;
        case EFBIG:
        case ENOSPC:
            return DP_ETOOBIG;
        case EINTR:
            return DP_EINTERRUPTED;
        default:
            return DP_EIO;
    }
}

const char *dp_errinfo_msg(const struct dp_errinfo *ei, enum dp_err code)
{
    if (ei != NULL && ei->code == code && ei->msg[0] != '\0')
        return ei->msg;
    return dp_strerror(code);
}
