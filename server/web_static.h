/*
 * The dashboard's static files (web/, built by make into build/MODE/web):
 * which names may be served and with which media type. The handlers that
 * serve them are srv_web_index and srv_web_asset (http_int.h).
 */
#ifndef DP_SERVER_WEB_STATIC_H
#define DP_SERVER_WEB_STATIC_H

#include <stddef.h>

/* The Content-Security-Policy every dashboard answer carries: scripts,
 * styles and connections from this origin only, no inline script or
 * style element, no framing, no plugins, no form posts elsewhere. */
#define SRV_WEB_CSP                                                                                \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "        \
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "                   \
    "frame-ancestors 'none'"

/* The asset name answered from the route table, not from disk. */
#define SRV_WEB_FEATURES "features.json"

/* The largest file served, bytes: a bundle bigger than this is a build gone wrong. */
#define SRV_WEB_FILE_MAX (32u << 20)

/* The media type of an asset called name ("app-1A2B.js": "text/javascript;
 * charset=utf-8"), or NULL when name may not be served: it must be 1 to 64
 * characters of [A-Za-z0-9._-], start with a letter or digit, contain no
 * "..", and end in one of the known extensions (.js .css .html .map .png
 * .svg .woff2 .json). A NULL answer is a 404: this is what keeps a request
 * inside the web directory (no '/', no dot-dot, no hidden files). Pure. */
const char *srv_web_type(const char *name);

/* Writes the path of the asset name under web_dir ("<web_dir>/ui/<name>",
 * or "<web_dir>/index.html" for name NULL) into out (cap bytes). Returns 0,
 * or -1 when it does not fit. Pure. */
int srv_web_path(const char *web_dir, const char *name, char *out, size_t cap);

#endif
