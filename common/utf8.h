/*
 * UTF-8 checks for text that comes from files or the network and may end
 * up in JSON (jansson refuses anything but well-formed UTF-8).
 */
#ifndef DP_COMMON_UTF8_H
#define DP_COMMON_UTF8_H

/* Returns 1 when the NUL-terminated s is well-formed UTF-8: no overlong
 * forms, no surrogates, nothing above U+10FFFF; 0 otherwise. Any thread. */
int dp_utf8_valid(const char *s);

#endif
