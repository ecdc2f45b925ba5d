/* Token extraction for handshakes and REST requests, and the Origin check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

static bool ows(char c) {
  return c == ' ' || c == '\t';
}

static struct slice trim(struct slice s) {
  while (s.len > 0 && ows(s.p[0])) {
    s.p++;
    s.len--;
  }
  while (s.len > 0 && ows(s.p[s.len - 1]))
    s.len--;
  return s;
}

bool auth_cookie_get(struct slice header, const char *name, struct slice *val) {
  size_t nlen = strlen(name);
  size_t i = 0;
  while (i < header.len) {
    size_t start = i;
    while (i < header.len && header.p[i] != ';')
      i++;
    struct slice pair = trim((struct slice){header.p + start, i - start});
    i++; /* skip ';' */
    const char *eq = memchr(pair.p, '=', pair.len);
    if (eq == NULL)
      continue;
    struct slice k = trim((struct slice){pair.p, (size_t)(eq - pair.p)});
    if (k.len != nlen || memcmp(k.p, name, nlen) != 0)
      continue;
    struct slice v = trim((struct slice){eq + 1, pair.len - (size_t)(eq + 1 - pair.p)});
    if (v.len >= 2 && v.p[0] == '"' && v.p[v.len - 1] == '"') {
      v.p++;
      v.len -= 2;
    }
    *val = v;
    return true;
  }
  return false;
}

enum auth_token_source auth_token_pick(struct slice cookie_header, struct slice auth_token,
                                       struct slice authorization, struct slice *token) {
  struct slice v;
  *token = (struct slice){"", 0};
  if (cookie_header.len > 0 && auth_cookie_get(cookie_header, "token", &v) && v.len > 0) {
    *token = v;
    return AUTH_SRC_COOKIE;
  }
  if (auth_token.len > 0) {
    *token = auth_token;
    return AUTH_SRC_AUTH;
  }
  struct slice a = trim(authorization);
  if (a.len > 7 && slice_case_eq_cstr((struct slice){a.p, 6}, "bearer") && ows(a.p[6])) {
    v = trim((struct slice){a.p + 7, a.len - 7});
    if (v.len > 0) {
      *token = v;
      return AUTH_SRC_BEARER;
    }
  }
  return AUTH_SRC_NONE;
}

int auth_handshake(const struct auth_jwt *j, struct slice cookie_header,
                   struct slice auth_token, struct slice authorization, int64_t now_s,
                   char id_out[ID_LEN + 1], const char **msg) {
  struct slice tok;
  id_out[0] = '\0';
  if (auth_token_pick(cookie_header, auth_token, authorization, &tok) == AUTH_SRC_NONE) {
    *msg = AUTH_MSG_NO_TOKEN;
    return EG_EAUTH;
  }
  if (auth_jwt_verify(j, tok.p, tok.len, now_s, id_out) != 0) {
    *msg = AUTH_MSG_INVALID_TOKEN;
    return EG_EAUTH;
  }
  *msg = NULL;
  return 0;
}

/* ---- origin check ---------------------------------------------------------------------- */

/* Normalises an origin to "scheme://host:port" in lowercase, with the default port made
   explicit and a trailing '/' removed. Returns false when it is not of that shape. */
static bool origin_norm(struct slice o, char *out, size_t cap) {
  o = trim(o);
  if (o.len > 0 && o.p[o.len - 1] == '/')
    o.len--;
  const char *sep = o.len > 3 ? memmem(o.p, o.len, "://", 3) : NULL;
  if (sep == NULL || sep == o.p)
    return false;
  size_t slen = (size_t)(sep - o.p);
  struct slice scheme = {o.p, slen};
  struct slice hp = {sep + 3, o.len - slen - 3};
  const char *defport;
  if (slice_case_eq_cstr(scheme, "http"))
    defport = "80";
  else if (slice_case_eq_cstr(scheme, "https"))
    defport = "443";
  else
    return false;
  if (hp.len == 0 || memchr(hp.p, '/', hp.len) != NULL || memchr(hp.p, '@', hp.len) != NULL)
    return false;
  /* The port is after the last ':' unless that colon is inside an IPv6 literal. */
  const char *colon = NULL;
  for (size_t i = hp.len; i > 0; i--) {
    if (hp.p[i - 1] == ']')
      break;
    if (hp.p[i - 1] == ':') {
      colon = hp.p + i - 1;
      break;
    }
  }
  struct slice host = hp, port = slice_from_cstr(defport);
  if (colon != NULL) {
    host.len = (size_t)(colon - hp.p);
    port = (struct slice){colon + 1, hp.len - host.len - 1};
    if (port.len == 0 || port.len > 5)
      return false;
    for (size_t i = 0; i < port.len; i++)
      if (port.p[i] < '0' || port.p[i] > '9')
        return false;
  }
  if (host.len == 0 || slen + 3 + host.len + 1 + port.len + 1 > cap)
    return false;
  size_t n = 0;
  for (size_t i = 0; i < slen; i++)
    out[n++] = (char)(scheme.p[i] | 0x20);
  memcpy(out + n, "://", 3);
  n += 3;
  for (size_t i = 0; i < host.len; i++) {
    char c = host.p[i];
    if ((unsigned char)c <= 0x20 || c == 0x7f)
      return false;
    out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
  }
  out[n++] = ':';
  memcpy(out + n, port.p, port.len);
  n += port.len;
  out[n] = '\0';
  return true;
}

bool auth_origin_allowed(struct slice origin, struct slice host, const char *scheme,
                         const char *public_url, const char *allow) {
  char want[512], got[512], own[512];
  origin = trim(origin);
  if (origin.len == 0)
    return true; /* not a browser */
  if (!origin_norm(origin, got, sizeof got))
    return false; /* "null", garbage */
  if (public_url != NULL && *public_url != '\0') {
    if (origin_norm(slice_from_cstr(public_url), want, sizeof want) && strcmp(want, got) == 0)
      return true;
  } else {
    host = trim(host);
    if (host.len > 0 && host.len < 400) {
      int n = snprintf(own, sizeof own, "%s://%.*s", scheme ? scheme : "http", (int)host.len,
                       host.p);
      if (n > 0 && (size_t)n < sizeof own &&
          origin_norm(slice_from_cstr(own), want, sizeof want) && strcmp(want, got) == 0)
        return true;
    }
  }
  if (allow == NULL)
    return false;
  const char *p = allow;
  while (*p != '\0') {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    struct slice item = trim((struct slice){p, n});
    if (item.len == 1 && item.p[0] == '*')
      return true;
    if (item.len > 0 && origin_norm(item, want, sizeof want) && strcmp(want, got) == 0)
      return true;
    p += n;
    if (*p == ',')
      p++;
  }
  return false;
}
