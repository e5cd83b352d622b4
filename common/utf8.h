/*
 * UTF-8 checks for text that comes from files or the network and may end
 * up in JSON (jansson refuses anything but well-formed UTF-8).
 */
#ifndef DP_COMMON_UTF8_H
#define DP_COMMON_UTF8_H

/* Returns 1 when the NUL-terminated s is well-formed UTF-8: no overlong
 * forms, no surrogates, nothing above U+10FFFF; 0 otherwise. Any thread. */
int dp_utf8_valid(const char *s);

#include <stddef.h>

/*
 * Copies s into buf (max + 4 bytes) whole when it has at most max bytes;
 * otherwise cuts it on a UTF-8 character boundary before max - 3 bytes and
 * appends "...", so a clipped name in an error message stays valid UTF-8
 * (messages end up in JSON bodies). Requires max >= 3. Returns buf.
 */
const char *dp_utf8_clip(char *buf, size_t max, const char *s);

#endif
