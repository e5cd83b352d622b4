/*
 * UTF-8 checks for text that comes from files or the network and may end
 * up in JSON (jansson refuses anything but well-formed UTF-8).
 */
#ifndef DP_COMMON_UTF8_H
#define DP_COMMON_UTF8_H

#include <stddef.h>
#include <stdint.h>

/*
 * Decodes the UTF-8 character at p (n bytes available, n may be 0).
 * Returns its length in bytes (1-4) and stores the code point in *cp, or 0
 * when p does not start a well-formed character (overlong forms,
 * surrogates and anything above U+10FFFF are not). Any thread.
 */
size_t dp_utf8_decode(const unsigned char *p, size_t n, uint32_t *cp);

/*
 * Whether code point c is one a terminal acts on or that reorders text: C0
 * controls, DEL, C1 controls, and the bidi marks, embeddings, overrides and
 * isolates (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069). Names
 * and messages shown to a person must not carry them raw.
 */
int dp_utf8_is_control(uint32_t c);

/* Whether the NUL-terminated s holds a control (dp_utf8_is_control) or is not UTF-8. */
int dp_utf8_has_control(const char *s);

/* Returns 1 when the NUL-terminated s is well-formed UTF-8: no overlong
 * forms, no surrogates, nothing above U+10FFFF; 0 otherwise. Any thread. */
int dp_utf8_valid(const char *s);

/* Replaces, in place, each byte of the NUL-terminated s that does not start
 * a well-formed character (dp_utf8_decode) with '?', so that text quoting
 * what a client sent, or cut inside a character, can go into JSON. Any
 * thread. */
void dp_utf8_sanitize(char *s);

/*
 * Copies s into buf, which holds cap bytes (pass sizeof the buffer): whole
 * when s has fewer than cap bytes; otherwise cut on a UTF-8 character
 * boundary before cap - 4 bytes and ended with "...", so a clipped name in
 * an error message stays valid UTF-8 (messages end up in JSON bodies) and
 * never writes past buf[cap - 1]. Requires cap >= 4. Returns buf.
 */
const char *dp_utf8_clip(char *buf, size_t cap, const char *s);

#endif
