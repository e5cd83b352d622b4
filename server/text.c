/* A growing text buffer (see text.h). */
#include "server/text.h"

#include <string.h>

#include "common/alloc.h"

enum dp_err srv_text_add(struct srv_text *t, const char *s, size_t n)
{
    if (n + 1 > t->cap - t->len) { /* + 1: the NUL */
        size_t cap = t->cap ? t->cap : 1024;
        while (n + 1 > cap - t->len)
            cap *= 2;
        char *grown = dp_realloc(t->p, cap);
        if (grown == NULL)
            return DP_ENOMEM;
        t->p = grown;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
    return DP_OK;
}

/* json_dump_callback sink: the dump goes straight into the text. */
static int text_sink(const char *s, size_t n, void *t)
{
    return srv_text_add(t, s, n) == DP_OK ? 0 : -1;
}

enum dp_err srv_text_add_json(struct srv_text *t, const json_t *j, size_t flags)
{
    size_t before = t->len;
    if (json_dump_callback(j, text_sink, t, flags) != 0) {
        t->len = before; /* drop a partial dump */
        if (t->p)
            t->p[before] = '\0';
        return DP_ENOMEM;
    }
    return DP_OK;
}

void srv_text_free(struct srv_text *t)
{
    dp_free(t->p);
    t->p = NULL;
    t->len = t->cap = 0;
}
