/*
 * web: the browser UI (the files of web/ and the socket.io client bundle), compiled
 * into the binary at build time (cmake/web.cmake runs cmake/webgen.c) and served from
 * memory: no file is read at run time.
 *
 * Routes added by web_register (GET, HEAD falls back to GET in the router):
 *   /                               web/index.html
 *   /<name>                         every other file of web/ ("/app.js", "/style.css")
 *   /socket.io/socket.io.min.js     node_modules/socket.io-client/dist/socket.io.min.js
 * Register them BEFORE the Engine.IO wildcard route ("/socket.io/" + "*"): the router takes the
 * first route that matches, in the order added.
 *
 * index.html comes in two variants (webgen): <html data-screen="auth"> (the sign-in form) and,
 * for a request with the session cookie `token`, data-screen="app" (the chats): the first
 * paint shows the right screen with no script run before it. Vary: Cookie. Each variant
 * has only its own screen as live markup; the other one is an inert <template> that
 * web/app.js instantiates when it first shows it.
 *
 * Every response carries a strong ETag (computed at build time; If-None-Match -> 304),
 * Cache-Control: no-cache (revalidate each time, so a new binary is picked up at once), or,
 * for a versioned URL ("/app.js?v=<ETag hex>", written into the pages by webgen) that
 * matches the current file, "public, max-age=31536000, immutable",
 * the gzip copy when the client accepts gzip (Vary: Accept-Encoding), and the security
 * headers: a strict Content-Security-Policy (web_csp(): no inline script or style but the
 * hashed blocks of index.html),
 * X-Content-Type-Options: nosniff, Referrer-Policy: same-origin.
 *
 * Threads: web_register and the handlers run on the loop thread. The asset table is
 * read-only static data. Return codes: 0, or EG_EINVAL (the router refused a pattern).
 */
#ifndef ENGRAM_WEB_H
#define ENGRAM_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct http_router;

/* The Content-Security-Policy of every response: WEB_CSP_HEAD, then script-src 'self' and
   style-src 'self' each followed by the SHA-256 hashes of the inline <script> / <style>
   blocks of web/ HTML files (computed by webgen at build time), then WEB_CSP_TAIL. No
   'unsafe-inline', no other origin. */
#define WEB_CSP_HEAD "default-src 'self'; "
#define WEB_CSP_TAIL                                                                           \
  "img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; "    \
  "frame-ancestors 'none'; form-action 'self'"

/* One compiled-in file. */
struct web_asset {
  const char *path;         /* URL path: "/index.html", "/socket.io/socket.io.min.js" */
  const char *content_type; /* "text/html; charset=utf-8" */
  const uint8_t *data;
  size_t len;
  const uint8_t *gz; /* gzip copy or NULL when it would not be smaller */
  size_t gz_len;
  const char *etag; /* "\"<16 hex>\"" */
};

/* Adds the routes above to r. */
EG_WUR int web_register(struct http_router *r);

/* The asset served at path ("/" is "/index.html"), or NULL. */
const struct web_asset *web_find(struct slice path);
/* The signed-in variant of a page (webgen: index.html with <html data-screen="app"> instead
   of "auth"), served in its place to a request with a non-empty `token` cookie, or NULL. */
const struct web_asset *web_signed_in(const struct web_asset *a);
/* Every asset: *n set to their count. */
const struct web_asset *web_assets(size_t *n);
/* The Content-Security-Policy header value (static; complete from the first call on). */
const char *web_csp(void);

/* ---- header matching (pure; exposed for tests and fuzzing) ------------------------------ */

/* True if an Accept-Encoding value accepts gzip: "gzip" or "x-gzip" or "*" listed with a
   q-value above zero (a gzip entry with q=0 refuses it even when "*" is listed). */
bool web_accepts_gzip(struct slice accept_encoding);
/* True if a request's query string is "v=<the asset's ETag, without quotes>": the
   versioned URL webgen writes into the pages, served as immutable. */
bool web_is_current_version(struct slice query, const struct web_asset *a);
/* True if an If-None-Match value matches etag ("*", or a list of tags, weak or strong:
   weak comparison as RFC 9110 13.1.2 asks for GET). */
bool web_etag_matches(struct slice if_none_match, const char *etag);

#endif
