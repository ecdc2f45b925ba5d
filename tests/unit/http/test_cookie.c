/* Cookie header parsing and the Set-Cookie builder (pure functions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "http/http.h"

static void expect_pairs(const char *header, const char *const *want) {
  struct http_cookie_iter it;
  struct slice n, v;
  http_cookie_iter_init(&it, slice_from_cstr(header));
  size_t i = 0;
  while (http_cookie_next(&it, &n, &v)) {
    assert_non_null(want[i]);
    assert_int_equal(n.len, strlen(want[i]));
    assert_memory_equal(n.p, want[i], n.len);
    assert_int_equal(v.len, strlen(want[i + 1]));
    assert_memory_equal(v.p, want[i + 1], v.len);
    i += 2;
  }
  assert_null(want[i]);
}

static void test_parse(void **state) {
  (void)state;
  expect_pairs("a=1; token=\"tok123\"; z=2",
               (const char *const[]){"a", "1", "token", "tok123", "z", "2", NULL});
  expect_pairs("  sp = x y ;;noeq; =empty; b=;c=d=e",
               (const char *const[]){"sp", "x y", "b", "", "c", "d=e", NULL});
  expect_pairs("", (const char *const[]){NULL});
  expect_pairs("q=\"\"", (const char *const[]){"q", "", NULL});
  expect_pairs("q=\"", (const char *const[]){"q", "\"", NULL});
  struct slice v;
  assert_true(http_cookie_find(slice_from_cstr("x=1; token=abc; token=def"), "token", &v));
  assert_int_equal(v.len, 3);
  assert_memory_equal(v.p, "abc", 3);
  assert_false(http_cookie_find(slice_from_cstr("tokenx=1; xtoken=2"), "token", &v));
  assert_false(http_cookie_find((struct slice){NULL, 0}, "token", &v));
}

static void test_build(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 1024);
  struct http_set_cookie c = {.name = "token", .value = "abc.def", .path = "/", .max_age = 3600,
                              .http_only = true, .same_site = HTTP_SAMESITE_LAX};
  assert_int_equal(http_set_cookie_build(&c, &b), 0);
  assert_string_equal((char *)b.data, "token=abc.def; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax");
  buf_reset(&b);
  struct http_set_cookie d = {.name = "token", .value = "", .path = "/", .max_age = 0,
                              .expires_ms = 1000, .http_only = true, .secure = true,
                              .same_site = HTTP_SAMESITE_STRICT, .domain = "example.com"};
  assert_int_equal(http_set_cookie_build(&d, &b), 0);
  assert_string_equal((char *)b.data, "token=; Path=/; Domain=example.com; Max-Age=0; "
                                      "Expires=Thu, 01 Jan 1970 00:00:01 GMT; HttpOnly; "
                                      "Secure; SameSite=Strict");
  buf_reset(&b);
  /* invalid: bad name, bad value, CR in path, SameSite=None without Secure */
  struct http_set_cookie bad[] = {
      {.name = "to ken", .value = "x", .max_age = -1},
      {.name = "", .value = "x", .max_age = -1},
      {.name = "t", .value = "a;b", .max_age = -1},
      {.name = "t", .value = "a b", .max_age = -1},
      {.name = "t", .value = "\"q\"", .max_age = -1},
      {.name = "t", .value = "x", .path = "/\r\nX: y", .max_age = -1},
      {.name = "t", .value = "x", .max_age = -1, .same_site = HTTP_SAMESITE_NONE},
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(bad); i++) {
    assert_int_equal(http_set_cookie_build(&bad[i], &b), EG_EINVAL);
    assert_int_equal(b.len, 0);
  }
  /* cap: the buffer is left as it was */
  struct buf small;
  buf_init(&small, 10);
  assert_int_equal(http_set_cookie_build(&c, &small), EG_ETOOBIG);
  assert_int_equal(small.len, 0);
  buf_free(&small);
  buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_parse), cmocka_unit_test(test_build)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
