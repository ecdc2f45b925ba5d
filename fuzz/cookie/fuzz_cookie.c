/*
 * libFuzzer target for cookie parsing and the Set-Cookie builder (src/http/cookie.c).
 *   - every pair the iterator yields lies inside the header, has a non-empty name without
 *     '=' or ';', no surrounding whitespace, and no ';' in the value;
 *   - http_cookie_find finds the first pair of each name;
 *   - splitting the input at its first NUL into name and value: when the builder accepts
 *     them, parsing "name=value" back gives exactly them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "http/http.h"

#define CHECK(c)                                                                            \
  do {                                                                                      \
    if (!(c)) {                                                                             \
      fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                \
      abort();                                                                              \
    }                                                                                       \
  } while (0)

static bool ws(char c) { return c == ' ' || c == '\t'; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = xmalloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0';
  struct slice h = {s, size};
  struct http_cookie_iter it;
  struct slice n, v;
  http_cookie_iter_init(&it, h);
  int count = 0;
  while (http_cookie_next(&it, &n, &v)) {
    CHECK(n.p >= s && n.p + n.len <= s + size);
    CHECK(v.p >= s && v.p + v.len <= s + size);
    CHECK(n.len > 0 && !ws(n.p[0]) && !ws(n.p[n.len - 1]));
    CHECK(!memchr(n.p, '=', n.len) && !memchr(n.p, ';', n.len));
    CHECK(!memchr(v.p, ';', v.len));
    bool quoted = v.p > s && v.p[-1] == '"';
    if (v.len > 0 && !quoted)
      CHECK(!ws(v.p[0]) && !ws(v.p[v.len - 1]));
    if (n.len < 64) {
      char name[64];
      memcpy(name, n.p, n.len);
      name[n.len] = '\0';
      struct slice f;
      if (!memchr(n.p, '\0', n.len)) {
        CHECK(http_cookie_find(h, name, &f));
        if (count == 0)
          CHECK(f.p == v.p && f.len == v.len);
      }
    }
    count++;
  }
  /* builder round trip */
  size_t nl = strlen(s);
  if (nl < size) {
    const char *name = s, *value = s + nl + 1;
    struct buf out;
    buf_init(&out, 1 << 16);
    struct http_set_cookie c = {.name = name, .value = value, .path = "/", .max_age = 60,
                                .http_only = true, .same_site = HTTP_SAMESITE_LAX};
    if (http_set_cookie_build(&c, &out) == 0) {
      char *semi = strchr((char *)out.data, ';');
      CHECK(semi != NULL);
      struct slice hdr = {(char *)out.data, (size_t)(semi - (char *)out.data)};
      struct slice got;
      CHECK(http_cookie_find(hdr, name, &got));
      size_t vl = strlen(value);
      /* a value wrapped in quotes is unquoted by the parser; the builder forbids quotes */
      CHECK(got.len == vl && memcmp(got.p, value, vl) == 0);
    } else {
      CHECK(out.len == 0);
    }
    buf_free(&out);
  }
  free(s);
  return 0;
}
