/* Unit tests of src/web: the asset table and the Accept-Encoding / If-None-Match matchers
   (whole values, and every prefix of each value must not crash or read past its end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "web/web.h"

static bool gz(const char *v) {
  return web_accepts_gzip(slice_from_cstr(v));
}

static void test_accepts_gzip(void **st) {
  (void)st;
  assert_true(gz("gzip"));
  assert_true(gz("GZip"));
  assert_true(gz("deflate, gzip"));
  assert_true(gz("br;q=1.0, gzip;q=0.8, *;q=0.1"));
  assert_true(gz(" gzip ; q=0.001 "));
  assert_true(gz("x-gzip"));
  assert_true(gz("*"));
  assert_true(gz("identity, *;q=0.5"));
  assert_false(gz(""));
  assert_false(gz("identity"));
  assert_false(gz("br, deflate"));
  assert_false(gz("gzip;q=0"));
  assert_false(gz("gzip;q=0.000"));
  assert_false(gz("gzip;q=0, *")); /* an explicit refusal beats the wildcard */
  assert_false(gz("*;q=0"));
  assert_false(gz("gzipx, xgzip")); /* whole tokens only */
  assert_false(gz(",,,;;;"));
  assert_true(gz("gzip;level=1;q=1"));
}

static bool tag(const char *v, const char *etag) {
  return web_etag_matches(slice_from_cstr(v), etag);
}

static void test_etag(void **st) {
  (void)st;
  const char *e = "\"0123456789abcdef\"";
  assert_true(tag("\"0123456789abcdef\"", e));
  assert_true(tag("W/\"0123456789abcdef\"", e));
  assert_true(tag("\"x\", \"0123456789abcdef\"", e));
  assert_true(tag(" * ", e));
  assert_false(tag("", e));
  assert_false(tag("\"0123456789abcde\"", e));
  assert_false(tag("0123456789abcdef", e));
  assert_false(tag("\"0123456789abcdef\"x", e));
  assert_false(tag("W/", e));
  assert_false(tag("**", e));
}

/* Every prefix of every value, in an exact-size heap copy (ASan catches over-reads). */
static void test_prefixes(void **st) {
  (void)st;
  const char *vals[] = {"br;q=1.0, gzip;q=0.8, *;q=0.1", "gzip;q=0, *", " gzip ; q=0.5",
                        "W/\"a\", \"0123456789abcdef\" , *", "x-gzip;q=1.000;q=0"};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    size_t n = strlen(vals[i]);
    for (size_t k = 0; k <= n; k++) {
      char *c = malloc(k ? k : 1);
      memcpy(c, vals[i], k);
      struct slice s = {c, k};
      (void)web_accepts_gzip(s);
      (void)web_etag_matches(s, "\"0123456789abcdef\"");
      free(c);
    }
  }
}

static void test_assets(void **st) {
  (void)st;
  size_t n = 0;
  const struct web_asset *a = web_assets(&n);
  assert_true(n >= 5);
  const struct web_asset *index = web_find(SLICE_LIT("/"));
  assert_non_null(index);
  assert_ptr_equal(index, web_find(SLICE_LIT("/index.html")));
  assert_string_equal(index->content_type, "text/html; charset=utf-8");
  assert_non_null(web_find(SLICE_LIT("/app.js")));
  assert_non_null(web_find(SLICE_LIT("/style.css")));
  const struct web_asset *sio = web_find(SLICE_LIT("/socket.io/socket.io.min.js"));
  assert_non_null(sio);
  assert_non_null(sio->gz);
  assert_true(sio->gz_len < sio->len);
  assert_null(web_find(SLICE_LIT("/nope.js")));
  assert_null(web_find(SLICE_LIT("")));
  size_t own = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(a[i].len > 0);
    assert_int_equal(strlen(a[i].etag), 18);
    assert_int_equal(a[i].etag[0], '"');
    if (a[i].gz) { /* gzip magic, and only kept when smaller */
      assert_int_equal(a[i].gz[0], 0x1f);
      assert_int_equal(a[i].gz[1], 0x8b);
      assert_true(a[i].gz_len < a[i].len);
    }
    /* style.css is inlined into index.html by webgen: a page load does not fetch it; a
       load gets one of the two variants of index.html */
    if (strncmp(a[i].path, "/socket.io/", 11) != 0 && strcmp(a[i].path, "/style.css") != 0 &&
        strchr(a[i].path, '?') == NULL)
      own += a[i].len;
  }
  assert_true(own < 60 * 1024); /* page weight budget of our own files */
  /* index.html: the sign-in screen, and for a request with the session cookie a variant
     painting the app, with its own ETag and no route of its own */
  const struct web_asset *si = web_signed_in(index);
  assert_non_null(si);
  assert_string_equal(si->path, "/index.html?signed-in");
  assert_null(web_find(SLICE_LIT("/index.html?signed-in")));
  assert_null(web_signed_in(web_find(SLICE_LIT("/app.js"))));
  assert_string_not_equal(si->etag, index->etag);
  /* Each variant has its own screen live and the other one's inside its screen template
     (webgen unwraps one per variant); the Memory page is a template in both. */
  char *sih = calloc(1, si->len + 1);
  memcpy(sih, si->data, si->len);
  assert_non_null(strstr(sih, "<html lang=\"en\" data-screen=\"app\">"));
  assert_null(strstr(sih, "<html lang=\"en\" data-screen=\"auth\">"));
  assert_non_null(strstr(sih, "<template data-screen=\"auth\"><main id=\"auth\""));
  assert_null(strstr(sih, "<template data-screen=\"app\">"));
  assert_non_null(strstr(sih, "\n<div id=\"app\""));
  assert_non_null(strstr(sih, "<template id=\"memory-tpl\"><section id=\"memory-view\""));
  /* the template's closing tag went with it: the app screen ends the body's markup */
  assert_non_null(strstr(sih, "</section></template>\n</div>\n<script>"));
  /* index.html is not NUL-terminated: copy it to search it. */
  char *html = calloc(1, index->len + 1);
  memcpy(html, index->data, index->len);
  assert_non_null(strstr(html, "<html lang=\"en\" data-screen=\"auth\">"));
  assert_null(strstr(html, "<template data-screen=\"auth\">"));
  assert_non_null(strstr(html, "\n<main id=\"auth\""));
  assert_non_null(strstr(html, "</form>\n</main>\n"));
  assert_non_null(strstr(html, "<template data-screen=\"app\"><div id=\"app\""));
  assert_non_null(strstr(html, "</section></template>\n</div></template>\n<script>"));
  /* both variants: the same bytes once the templates' tags are taken out */
  assert_int_equal(si->len, index->len); /* -1 ("app"), -28 and -11 vs -29 and -11 */
  free(sih);
  /* versioned script URLs: "/app.js?v=<its ETag's hex>", imported by the boot script */
  const struct web_asset *app = web_find(SLICE_LIT("/app.js"));
  char want[128];
  snprintf(want, sizeof want, "import(\"/app.js?v=%.16s\")", app->etag + 1);
  assert_non_null(strstr(html, want));
  char q[32];
  snprintf(q, sizeof q, "v=%.16s", app->etag + 1);
  assert_true(web_is_current_version(slice_from_cstr(q), app));
  assert_false(web_is_current_version(SLICE_LIT(""), app));
  assert_false(web_is_current_version(SLICE_LIT("v=0000000000000000"), app));
  assert_false(web_is_current_version(slice_from_cstr(q), index));
  /* one inline boot script and the inlined style sheet, both allowed by hash only */
  const char *sc = strstr(html, "<script>"), *sty = strstr(html, "<style>");
  assert_non_null(sc);
  assert_null(strstr(sc + 1, "<script>"));
  assert_non_null(sty);
  assert_null(strstr(sty + 1, "<style>"));
  assert_null(strstr(html, "style=\""));
  const char *csp = web_csp();
  assert_non_null(strstr(csp, "script-src 'self' 'sha256-"));
  assert_non_null(strstr(csp, "style-src 'self' 'sha256-"));
  assert_null(strstr(csp, "unsafe"));
  free(html);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accepts_gzip),
      cmocka_unit_test(test_etag),
      cmocka_unit_test(test_prefixes),
      cmocka_unit_test(test_assets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
