/*
 * Cookie header parsing (RFC 6265 5.4, leniently, as browsers send it) and the Set-Cookie
 * builder (RFC 6265 4.1, strictly: we never emit what a browser might misread).
 * Pure: no allocation except the caller's buffer.
 */
#include <string.h>
#include <time.h>

#include "http/http_int.h"

static bool is_ws(char c) { return c == ' ' || c == '\t'; }

void http_cookie_iter_init(struct http_cookie_iter *it, struct slice header) {
  it->p = header.p;
  it->end = header.p ? header.p + header.len : NULL;
}

bool http_cookie_next(struct http_cookie_iter *it, struct slice *name, struct slice *value) {
  while (it->p && it->p < it->end) {
    const char *s = it->p;
    const char *e = memchr(s, ';', (size_t)(it->end - s));
    if (e == NULL)
      e = it->end;
    it->p = e < it->end ? e + 1 : it->end;
    const char *eq = memchr(s, '=', (size_t)(e - s));
    if (eq == NULL)
      continue; /* no '=': skipped */
    const char *ns = s, *ne = eq;
    while (ns < ne && is_ws(*ns))
      ns++;
    while (ne > ns && is_ws(ne[-1]))
      ne--;
    if (ns == ne)
      continue; /* empty name */
    const char *vs = eq + 1, *ve = e;
    while (vs < ve && is_ws(*vs))
      vs++;
    while (ve > vs && is_ws(ve[-1]))
      ve--;
    if (ve - vs >= 2 && *vs == '"' && ve[-1] == '"') {
      vs++;
      ve--;
    }
    *name = (struct slice){ns, (size_t)(ne - ns)};
    *value = (struct slice){vs, (size_t)(ve - vs)};
    return true;
  }
  return false;
}

bool http_cookie_find(struct slice header, const char *name, struct slice *value) {
  struct http_cookie_iter it;
  struct slice n, v;
  http_cookie_iter_init(&it, header);
  while (http_cookie_next(&it, &n, &v)) {
    if (slice_eq_cstr(n, name)) {
      *value = v;
      return true;
    }
  }
  return false;
}

/* RFC 6265 token (cookie-name) characters: tchar. */
static bool name_ok(const char *s) {
  if (s == NULL || *s == '\0')
    return false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", c))
      return false;
  }
  return true;
}

/* cookie-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E */
static bool value_ok(const char *s) {
  if (s == NULL)
    return false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\')
      return false;
  }
  return true;
}

/* Attribute values (Path, Domain): no CTLs, no ';'. */
static bool attr_ok(const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c == 0x7f || c == ';')
      return false;
  }
  return true;
}

int http_set_cookie_build(const struct http_set_cookie *c, struct buf *out) {
  static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (!name_ok(c->name) || !value_ok(c->value))
    return EG_EINVAL;
  if ((c->path && !attr_ok(c->path)) || (c->domain && !attr_ok(c->domain)))
    return EG_EINVAL;
  if (c->same_site == HTTP_SAMESITE_NONE && !c->secure)
    return EG_EINVAL; /* browsers reject SameSite=None without Secure */
  size_t start = out->len;
  int rc = buf_printf(out, "%s=%s", c->name, c->value);
  if (rc == 0 && c->path)
    rc = buf_printf(out, "; Path=%s", c->path);
  if (rc == 0 && c->domain)
    rc = buf_printf(out, "; Domain=%s", c->domain);
  if (rc == 0 && c->max_age >= 0)
    rc = buf_printf(out, "; Max-Age=%lld", (long long)c->max_age);
  if (rc == 0 && c->expires_ms != 0) {
    time_t t = (time_t)(c->expires_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    rc = buf_printf(out, "; Expires=%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday],
                    tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                    tm.tm_sec);
  }
  if (rc == 0 && c->http_only)
    rc = buf_append_str(out, "; HttpOnly");
  if (rc == 0 && c->secure)
    rc = buf_append_str(out, "; Secure");
  if (rc == 0 && c->same_site != HTTP_SAMESITE_UNSET) {
    const char *ss = c->same_site == HTTP_SAMESITE_LAX      ? "Lax"
                     : c->same_site == HTTP_SAMESITE_STRICT ? "Strict"
                                                            : "None";
    rc = buf_printf(out, "; SameSite=%s", ss);
  }
  if (rc != 0)
    out->len = start; /* leave out as it was */
  if (out->data && out->len < out->cap)
    out->data[out->len] = '\0';
  return rc;
}
