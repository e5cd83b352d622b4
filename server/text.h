/*
 * A growing text buffer for replies built piece by piece: JSON bodies, the
 * job list, the event stream. Always NUL-terminated once anything was
 * added, so the text can be handed on as a C string.
 */
#ifndef DP_SERVER_TEXT_H
#define DP_SERVER_TEXT_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"

struct srv_text {
    char *p; /* dp_malloc'd; NULL while empty */
    size_t len;
    size_t cap;
};

/* Appends n bytes of s. DP_ENOMEM leaves the text as it was. */
enum dp_err srv_text_add(struct srv_text *t, const char *s, size_t n);

/* Appends the serialisation of j (json_dump flags). DP_ENOMEM, the text as
 * it was, when that fails (out of memory, or j not encodable under flags). */
enum dp_err srv_text_add_json(struct srv_text *t, const json_t *j, size_t flags);

/* Frees the text and leaves t empty and reusable; accepts an empty t. */
void srv_text_free(struct srv_text *t);

#endif
