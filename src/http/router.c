/*
 * A tiny router: method + path pattern ("/api/chat/:id", or a last segment "*"), first match wins,
 * 405 with Allow when only the method differs, a fallback (404) otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/server_int.h"

#define MAX_SEGS 32

struct seg {
  char *text; /* literal, or parameter name */
  size_t len;
  uint8_t kind; /* 0 literal, 1 param, 2 rest */
};

struct route {
  enum http_method method;
  struct seg segs[MAX_SEGS];
  size_t nsegs;
  http_handler_fn fn;
  void *ud;
};

struct http_router {
  struct route *routes;
  size_t n;
  http_handler_fn fallback;
  void *fallback_ud;
};

struct http_router *http_router_new(void) { return xcalloc(1, sizeof(struct http_router)); }

void http_router_free(struct http_router *rt) {
  if (rt == NULL)
    return;
  for (size_t i = 0; i < rt->n; i++)
    for (size_t k = 0; k < rt->routes[i].nsegs; k++)
      free(rt->routes[i].segs[k].text);
  free(rt->routes);
  free(rt);
}

int http_router_add(struct http_router *rt, enum http_method m, const char *pattern,
                    http_handler_fn fn, void *ud) {
  if (pattern == NULL || pattern[0] != '/' || fn == NULL)
    return EG_EINVAL;
  struct route r = {.method = m, .fn = fn, .ud = ud};
  const char *p = pattern + 1;
  int nparams = 0;
  /* Split after the leading '/' at every '/': "/" -> [""], "/a/" -> ["a", ""]. */
  for (;;) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (r.nsegs == MAX_SEGS)
      goto bad;
    struct seg *sg = &r.segs[r.nsegs++];
    if (len == 1 && p[0] == '*') {
      sg->kind = 2;
      sg->text = xstrdup("*");
      sg->len = 1;
      nparams++;
      if (e != NULL)
        goto bad; /* "*" only last */
    } else if (len > 1 && p[0] == ':') {
      sg->kind = 1;
      sg->text = xstrndup(p + 1, len - 1);
      sg->len = len - 1;
      nparams++;
    } else {
      sg->kind = 0;
      sg->text = xstrndup(p, len);
      sg->len = len;
    }
    if (e == NULL)
      break;
    p = e + 1;
  }
  if (nparams > HTTP_MAX_PARAMS)
    goto bad;
  rt->routes = xrealloc(rt->routes, (rt->n + 1) * sizeof *rt->routes);
  rt->routes[rt->n++] = r;
  return 0;
bad:
  for (size_t k = 0; k < r.nsegs; k++)
    free(r.segs[k].text);
  return EG_EINVAL;
}

void http_router_set_fallback(struct http_router *rt, http_handler_fn fn, void *ud) {
  rt->fallback = fn;
  rt->fallback_ud = ud;
}

/* The raw path of r (before '?'), for matching. */
static struct slice raw_path(const struct http_req *r) {
  struct slice t = http_req_target(r);
  if (t.len > 0 && t.p[0] == '/') {
    const char *q = memchr(t.p, '?', t.len);
    return (struct slice){t.p, q ? (size_t)(q - t.p) : t.len};
  }
  return http_req_path(r);
}

static void set_param(struct http_req *r, unsigned *np, const struct seg *sg, const char *p,
                      size_t len) {
  char *v = http__req_alloc(r, len);
  size_t dl = http__pct_decode(p, len, v, false);
  v[dl] = '\0';
  r->param_names[*np] = (struct slice){sg->text, sg->len};
  r->param_values[*np] = (struct slice){v, dl};
  (*np)++;
}

/* Matches path against route; on success fills r's params (when r is given). */
static bool match(const struct route *ro, struct slice path, struct http_req *r) {
  if (path.len == 0 || path.p[0] != '/')
    return false;
  const char *p = path.p + 1, *end = path.p + path.len;
  unsigned np = 0;
  bool more = true; /* p is at the start of a path segment */
  for (size_t i = 0; i < ro->nsegs; i++) {
    const struct seg *sg = &ro->segs[i];
    if (sg->kind == 2) {
      if (r) {
        set_param(r, &np, sg, more ? p : end, more ? (size_t)(end - p) : 0);
        r->nparams = (uint8_t)np;
      }
      return true;
    }
    if (!more)
      return false;
    const char *e = memchr(p, '/', (size_t)(end - p));
    const char *se = e ? e : end;
    size_t len = (size_t)(se - p);
    if (sg->kind == 0) {
      if (len != sg->len || memcmp(p, sg->text, len) != 0)
        return false;
    } else {
      if (len == 0)
        return false;
      if (r)
        set_param(r, &np, sg, p, len);
    }
    if (e) {
      p = e + 1;
    } else {
      p = end;
      more = false;
    }
  }
  if (more)
    return false; /* the path has more segments */
  if (r)
    r->nparams = (uint8_t)np;
  return true;
}

void http_router_dispatch(struct http_req *r, void *router) {
  struct http_router *rt = router;
  struct slice path = raw_path(r);
  enum http_method m = http_req_method(r);
  bool allowed[HTTP__METHOD_COUNT] = {false};
  bool path_hit = false;
  for (int pass = 0; pass < 2; pass++) {
    /* pass 0: exact method (or any); pass 1: HEAD served by a GET route */
    for (size_t i = 0; i < rt->n; i++) {
      const struct route *ro = &rt->routes[i];
      enum http_method want = pass == 0 ? m : (m == HTTP_HEAD ? HTTP_GET : HTTP__METHOD_COUNT);
      if (pass == 1 && want == HTTP__METHOD_COUNT)
        break;
      bool method_ok = ro->method == HTTP_METHOD_UNKNOWN || ro->method == want;
      if (!match(ro, path, NULL))
        continue;
      path_hit = true;
      if (!method_ok) {
        allowed[ro->method] = true;
        continue;
      }
      r->nparams = 0;
      match(ro, path, r);
      ro->fn(r, ro->ud);
      return;
    }
  }
  if (path_hit) {
    char allow[128] = "";
    size_t n = 0;
    if (allowed[HTTP_GET])
      allowed[HTTP_HEAD] = true;
    allowed[HTTP_OPTIONS] = true;
    for (int k = 1; k < HTTP__METHOD_COUNT; k++)
      if (allowed[k])
        n += (size_t)snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "",
                              http_method_name((enum http_method)k));
    struct http_header h = {"Allow", allow};
    if (m == HTTP_OPTIONS) {
      if (http_respond_ex(r, 204, NULL, &h, 1, NULL, 0) != 0)
        log_debug("http: client gone before the OPTIONS answer");
      return;
    }
    static const char body[] = "{\"message\":\"Method not allowed\"}";
    if (http_respond_ex(r, 405, "application/json; charset=utf-8", &h, 1, body,
                        sizeof body - 1) != 0)
      log_debug("http: client gone before the 405 answer");
    return;
  }
  if (rt->fallback) {
    rt->fallback(r, rt->fallback_ud);
    return;
  }
  if (http_respond_json(r, 404, "{\"message\":\"Not found\"}") != 0)
    log_debug("http: client gone before the 404 answer");
}
