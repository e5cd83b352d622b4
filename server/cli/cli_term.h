/*
 * What the CLI prints of the server's answers is made safe for a terminal
 * first. Names, states and error messages may come from another party (a
 * worker's failure message reaches a team's `dnnpress status`), and a raw
 * ESC, OSC or CR could rewrite what the user sees: move the cursor, retitle
 * the window, hide a line. Control characters (C0, DEL, C1), Unicode bidi
 * overrides and bytes that are not UTF-8 are shown as visible escapes.
 */
#ifndef DP_SERVER_CLI_CLI_TERM_H
#define DP_SERVER_CLI_CLI_TERM_H

#include <jansson.h>
#include <stddef.h>

#include "common/err.h"

/*
 * Writes s into out (cap bytes, cap >= 1; always NUL-terminated, cut on an
 * escape boundary when it does not fit) with every control character shown
 * as \xNN (C0 and DEL) or \uNNNN (C1 and the bidi controls U+061C, U+200E,
 * U+200F, U+202A-U+202E, U+2066-U+2069) and every byte of an invalid UTF-8
 * sequence as \xNN; other text is copied unchanged. Returns out.
 */
const char *cli_term_escape(char *out, size_t cap, const char *s);

/* Whether s needs cli_term_escape (holds something it would change). */
int cli_term_unsafe(const char *s);

/*
 * Replaces, in place, every string of the JSON document j (values at any
 * depth and object keys) that cli_term_unsafe flags with its escaped form,
 * so that whatever a command prints of it is safe. DP_ENOMEM when a
 * replacement cannot be allocated (j is then partly escaped).
 */
enum dp_err cli_term_json(json_t *j);

#endif
