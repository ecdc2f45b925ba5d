/*
 * Serving compiled-in files: ETag (strong, FNV-1a 64 of the bytes when not given),
 * If-None-Match -> 304, gzip variant when the client accepts it.
 */
#include <stdio.h>
#include <string.h>

#include "http/server_int.h"

static uint64_t fnv1a(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* True if the header value lists token (case-insensitive), ignoring parameters, and not
   with q=0. */
static bool accepts(struct slice v, const char *token) {
  size_t tl = strlen(token);
  const char *p = v.p, *end = v.p + v.len;
  while (p < end) {
    const char *c = memchr(p, ',', (size_t)(end - p));
    const char *e = c ? c : end;
    while (p < e && (*p == ' ' || *p == '\t'))
      p++;
    const char *semi = p;
    while (semi < e && *semi != ';') /* not memchr: GCC 12 misjudges its bound here */
      semi++;
    if (semi == e)
      semi = NULL;
    const char *te = semi ? semi : e;
    while (te > p && (te[-1] == ' ' || te[-1] == '\t'))
      te--;
    if ((size_t)(te - p) == tl && slice_case_eq_cstr((struct slice){p, tl}, token)) {
      if (semi) {
        const char *q = semi + 1;
        while (q < e && (*q == ' ' || *q == '\t'))
          q++;
        if (e - q >= 3 && q[0] == 'q' && q[1] == '=' && q[2] == '0') {
          bool zero = true;
          for (const char *d = q + 3; d < e; d++)
            if (*d != '.' && *d != '0' && *d != ' ')
              zero = false;
          if (zero)
            return false;
        }
      }
      return true;
    }
    p = c ? c + 1 : end;
  }
  return false;
}

/* If-None-Match: "*" or a list of (possibly weak) tags. */
static bool etag_matches(struct slice inm, const char *etag) {
  size_t el = strlen(etag);
  const char *p = inm.p, *end = inm.p + inm.len;
  while (p < end) {
    const char *c = memchr(p, ',', (size_t)(end - p));
    const char *e = c ? c : end;
    while (p < e && (*p == ' ' || *p == '\t'))
      p++;
    const char *te = e;
    while (te > p && (te[-1] == ' ' || te[-1] == '\t'))
      te--;
    if (te - p == 1 && *p == '*')
      return true;
    if (te - p >= 2 && p[0] == 'W' && p[1] == '/')
      p += 2;
    if ((size_t)(te - p) == el && memcmp(p, etag, el) == 0)
      return true;
    p = c ? c + 1 : end;
  }
  return false;
}

int http_serve_static(struct http_req *r, struct http_static_file *f,
                      const char *cache_control) {
  enum http_method m = http_req_method(r);
  if (m != HTTP_GET && m != HTTP_HEAD) {
    struct http_header h = {"Allow", "GET, HEAD"};
    static const char body[] = "{\"message\":\"Method not allowed\"}";
    return http_respond_ex(r, 405, "application/json; charset=utf-8", &h, 1, body,
                           sizeof body - 1);
  }
  const char *etag = f->etag;
  if (etag == NULL) {
    if (f->etag_buf[0] == '\0')
      snprintf(f->etag_buf, sizeof f->etag_buf, "\"%016llx\"",
               (unsigned long long)fnv1a(f->data, f->len));
    etag = f->etag_buf;
  }
  struct http_header h[4];
  size_t n = 0;
  h[n++] = (struct http_header){"ETag", etag};
  h[n++] = (struct http_header){"Cache-Control", cache_control ? cache_control : "no-cache"};
  if (f->gz)
    h[n++] = (struct http_header){"Vary", "Accept-Encoding"};
  struct slice inm, ae;
  if (http_req_header(r, "if-none-match", &inm) && etag_matches(inm, etag))
    return http_respond_ex(r, 304, NULL, h, n, NULL, 0);
  if (f->gz && http_req_header(r, "accept-encoding", &ae) && accepts(ae, "gzip")) {
    h[n++] = (struct http_header){"Content-Encoding", "gzip"};
    return http_respond_ex(r, 200, f->content_type, h, n, f->gz, f->gz_len);
  }
  return http_respond_ex(r, 200, f->content_type, h, n, f->data, f->len);
}
