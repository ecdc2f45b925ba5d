/*
 * The web UI's HTTP side: routes for the compiled-in assets and the conditional / gzip
 * logic (see web.h). http_serve_static cannot add the security headers, so this module
 * answers with http_respond_ex itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "http/http.h"
#include "web/web_int.h"

static bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

static struct slice trim(const char *p, const char *e) {
  while (p < e && is_ows(*p))
    p++;
  while (e > p && is_ows(e[-1]))
    e--;
  return (struct slice){p, (size_t)(e - p)};
}

/* q-value of one list element's parameters ("q=0.5"), as thousandths; 1000 when absent
   or malformed (RFC 9110 12.4.2: qvalue = 0[.ddd] / 1[.000]). */
static int qvalue(const char *p, const char *e) {
  while (p < e) {
    const char *semi = p;
    while (semi < e && *semi != ';')
      semi++;
    struct slice prm = trim(p, semi);
    if (prm.len >= 2 && (prm.p[0] == 'q' || prm.p[0] == 'Q') && prm.p[1] == '=') {
      const char *v = prm.p + 2, *ve = prm.p + prm.len;
      if (v < ve && (*v == '0' || *v == '1')) {
        int q = (*v - '0') * 1000, scale = 100;
        v++;
        if (v < ve && *v == '.') {
          v++;
          while (v < ve && *v >= '0' && *v <= '9' && scale > 0) {
            q += (*v - '0') * scale;
            scale /= 10;
            v++;
          }
        }
        return q > 1000 ? 1000 : q;
      }
      return 1000;
    }
    p = semi < e ? semi + 1 : e;
  }
  return 1000;
}

bool web_accepts_gzip(struct slice v) {
  const char *p = v.p, *end = v.p + v.len;
  int gzip_q = -1, star_q = -1;
  while (p < end) {
    const char *c = p;
    while (c < end && *c != ',')
      c++;
    const char *semi = p;
    while (semi < c && *semi != ';')
      semi++;
    struct slice tok = trim(p, semi);
    int q = qvalue(semi < c ? semi + 1 : c, c);
    if (slice_case_eq_cstr(tok, "gzip") || slice_case_eq_cstr(tok, "x-gzip"))
      gzip_q = q;
    else if (slice_eq_cstr(tok, "*"))
      star_q = q;
    p = c < end ? c + 1 : end;
  }
  if (gzip_q >= 0)
    return gzip_q > 0;
  return star_q > 0;
}

bool web_etag_matches(struct slice v, const char *etag) {
  const char *p = v.p, *end = v.p + v.len;
  size_t el = strlen(etag);
  while (p < end) {
    const char *c = p;
    while (c < end && *c != ',')
      c++;
    struct slice t = trim(p, c);
    if (t.len == 1 && t.p[0] == '*')
      return true;
    if (t.len >= 2 && t.p[0] == 'W' && t.p[1] == '/') {
      t.p += 2;
      t.len -= 2;
    }
    if (t.len == el && memcmp(t.p, etag, el) == 0)
      return true;
    p = c < end ? c + 1 : end;
  }
  return false;
}

bool web_is_current_version(struct slice query, const struct web_asset *a) {
  /* "v=" + the 16 hex digits of the ETag (which is "\"<16 hex>\"") */
  size_t el = strlen(a->etag);
  return el == 18 && query.len == 18 && memcmp(query.p, "v=", 2) == 0 &&
         memcmp(query.p + 2, a->etag + 1, 16) == 0;
}

const struct web_asset *web_assets(size_t *n) {
  *n = web__nassets;
  return web__assets;
}

/* A signed-in variant ("/index.html?signed-in", see web_signed_in) has no route of its own. */
static bool is_variant(const struct web_asset *a) {
  return strchr(a->path, '?') != NULL;
}

const struct web_asset *web_find(struct slice path) {
  if (slice_eq_cstr(path, "/"))
    path = SLICE_LIT("/index.html");
  for (size_t i = 0; i < web__nassets; i++)
    if (!is_variant(&web__assets[i]) && slice_eq_cstr(path, web__assets[i].path))
      return &web__assets[i];
  return NULL;
}

const struct web_asset *web_signed_in(const struct web_asset *a) {
  size_t n = strlen(a->path);
  for (size_t i = 0; i < web__nassets; i++) {
    const char *v = web__assets[i].path;
    if (strncmp(v, a->path, n) == 0 && strcmp(v + n, "?signed-in") == 0)
      return &web__assets[i];
  }
  return NULL;
}

const char *web_csp(void) {
  /* Composed once from build-time constants (kept for the life of the process); the
     first call is web_register's, on the loop thread, before any request is served. */
  static char *csp;
  if (csp == NULL) {
    static const char fmt[] = "%sscript-src 'self'%s; style-src 'self'%s; %s";
    size_t n = sizeof fmt + strlen(WEB_CSP_HEAD) + strlen(web__csp_script) +
               strlen(web__csp_style) + strlen(WEB_CSP_TAIL);
    char *p = xmalloc(n);
    snprintf(p, n, fmt, WEB_CSP_HEAD, web__csp_script, web__csp_style, WEB_CSP_TAIL);
    csp = p;
  }
  return csp;
}

/* The route's asset, and its signed-in variant when there is one (index.html). */
struct route {
  const struct web_asset *a, *signed_in;
};
static struct route routes[64];

static void on_asset(struct http_req *r, void *ud) {
  const struct route *rt = ud;
  const struct web_asset *a = rt->a;
  struct slice tok;
  /* The session cookie picks the page that paints the app rather than the sign-in form
     (whether the session is still valid, app.js learns from /api/auth/me). */
  if (rt->signed_in != NULL && http_req_cookie(r, "token", &tok) && tok.len > 0)
    a = rt->signed_in;
  struct http_header h[8];
  size_t n = 0;
  h[n++] = (struct http_header){"ETag", a->etag};
  h[n++] =
      (struct http_header){"Cache-Control", web_is_current_version(http_req_query_string(r), a)
                                                ? "public, max-age=31536000, immutable"
                                                : "no-cache"};
  h[n++] = (struct http_header){"Content-Security-Policy", web_csp()};
  h[n++] = (struct http_header){"X-Content-Type-Options", "nosniff"};
  h[n++] = (struct http_header){"Referrer-Policy", "same-origin"};
  if (rt->signed_in != NULL)
    h[n++] = (struct http_header){"Vary", a->gz ? "Accept-Encoding, Cookie" : "Cookie"};
  else if (a->gz)
    h[n++] = (struct http_header){"Vary", "Accept-Encoding"};
  struct slice inm, ae;
  int rc;
  if (http_req_header(r, "if-none-match", &inm) && web_etag_matches(inm, a->etag)) {
    rc = http_respond_ex(r, 304, NULL, h, n, NULL, 0);
  } else if (a->gz && http_req_header(r, "accept-encoding", &ae) && web_accepts_gzip(ae)) {
    h[n++] = (struct http_header){"Content-Encoding", "gzip"};
    rc = http_respond_ex(r, 200, a->content_type, h, n, a->gz, a->gz_len);
  } else {
    rc = http_respond_ex(r, 200, a->content_type, h, n, a->data, a->len);
  }
  (void)rc; /* EG_ECLOSED: the client left, nothing more to do */
}

int web_register(struct http_router *rt) {
  int rc = 0;
  size_t nr = 0;
  (void)web_csp();
  for (size_t i = 0; i < web__nassets && rc == 0; i++) {
    const struct web_asset *a = &web__assets[i];
    if (is_variant(a))
      continue;
    if (nr == sizeof routes / sizeof routes[0])
      return EG_EINVAL;
    /* the table is static and the same for every call: filling it again is harmless */
    routes[nr] = (struct route){a, web_signed_in(a)};
    void *ud = &routes[nr++];
    if (strcmp(a->path, "/index.html") == 0)
      rc = http_router_add(rt, HTTP_GET, "/", on_asset, ud);
    if (rc == 0)
      rc = http_router_add(rt, HTTP_GET, a->path, on_asset, ud);
  }
  return rc;
}
