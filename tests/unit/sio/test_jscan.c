/* Unit tests for sio/jscan, the incremental subset-JSON validator of the Socket.IO fast
   path: every input whole, byte by byte and split at every point; malformed inputs; and
   the promise that what it accepts jansson accepts too (and what it rejects as not JSON,
   jansson rejects). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "sio/jscan.h"

struct tcase {
  const char *text;
  int want; /* 0, EG_EPROTO, EG_ETOOBIG, EG_EUNSUPPORTED */
};

static const struct tcase cases[] = {
    {"[\"echo\",\"hi\"]", 0},
    {"[\"message\",1,\"2\",{\"3\":[true]}]", 0},
    {"[]", 0},
    {"{}", 0},
    {" [ 1 , 2 ] ", 0},
    {"{\"a\":{\"b\":[null,false,true]},\"c\":-0.5e+10}", 0},
    {"[0,-0,12,1.25,3e2,4E-01,123456789012345]", 0},
    {"\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", 0},
    {"42", 0},
    {"-1.5", 0},
    {"null", 0},
    {"[\"\x7f\"]", 0},
    {"", EG_EPROTO},
    {"   ", EG_EPROTO},
    {"[", EG_EPROTO},
    {"[1,]", EG_EPROTO},
    {"[,1]", EG_EPROTO},
    {"{\"a\"}", EG_EPROTO},
    {"{\"a\":}", EG_EPROTO},
    {"{\"a\":1,}", EG_EPROTO},
    {"{1:2}", EG_EPROTO},
    {"[1 2]", EG_EPROTO},
    {"[01]", EG_EPROTO},
    {"[-]", EG_EPROTO},
    {"[1.]", EG_EPROTO},
    {"[1e]", EG_EPROTO},
    {"[.5]", EG_EPROTO},
    {"[tru]", EG_EPROTO},
    {"[nul]", EG_EPROTO},
    {"[True]", EG_EPROTO},
    {"[\"a\nb\"]", EG_EPROTO},
    {"[\"\\x\"]", EG_EPROTO},
    {"[\"open]", EG_EPROTO},
    {"[1]]", EG_EPROTO},
    {"[1]x", EG_EPROTO},
    {"[}", EG_EPROTO},
    {"{]", EG_EPROTO},
    {"[\"\\u0041\"]", EG_EUNSUPPORTED},
    {"[\"\xc3\xa9\"]", EG_EUNSUPPORTED},
    {"[1234567890123456]", EG_EUNSUPPORTED},
    {"[1e123]", EG_EUNSUPPORTED},
    {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", EG_ETOOBIG},
};

static int scan_split(const char *t, size_t n, size_t cut) {
  struct jscan j;
  jscan_init(&j, 32);
  int rc = jscan_feed(&j, (const uint8_t *)t, cut);
  if (rc == 0)
    rc = jscan_feed(&j, (const uint8_t *)t + cut, n - cut);
  return rc ? rc : jscan_finish(&j);
}

static int scan_bytes(const char *t, size_t n) {
  struct jscan j;
  jscan_init(&j, 32);
  for (size_t i = 0; i < n; i++) {
    int rc = jscan_feed(&j, (const uint8_t *)t + i, 1);
    if (rc)
      return rc;
  }
  return jscan_finish(&j);
}

static void test_cases(void **state) {
  (void)state;
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    const char *t = cases[c].text;
    size_t n = strlen(t);
    int whole = jscan_validate((const uint8_t *)t, n, 32);
    if (whole != cases[c].want)
      fail_msg("case %zu \"%s\": got %d want %d", c, t, whole, cases[c].want);
    assert_int_equal(scan_bytes(t, n), whole);
    for (size_t cut = 0; cut <= n; cut++)
      assert_int_equal(scan_split(t, n, cut), whole);
    /* The subset promise, against jansson. */
    json_error_t err;
    json_t *v = json_loadb(t, n, JSON_DECODE_ANY, &err);
    if (whole == 0 && !v)
      fail_msg("case %zu accepted by jscan, rejected by jansson: %s", c, err.text);
    if (whole == EG_EPROTO && v)
      fail_msg("case %zu rejected by jscan, accepted by jansson", c);
    json_decref(v);
  }
}

static void test_sticky_and_depth(void **state) {
  (void)state;
  struct jscan j;
  jscan_init(&j, 2);
  assert_int_equal(jscan_feed(&j, (const uint8_t *)"[[", 2), 0);
  assert_int_equal(jscan_feed(&j, (const uint8_t *)"[", 1), EG_ETOOBIG);
  assert_int_equal(jscan_feed(&j, (const uint8_t *)"]", 1), EG_ETOOBIG);
  assert_int_equal(jscan_finish(&j), EG_ETOOBIG);
  jscan_init(&j, 200); /* capped at 64 */
  char deep[130];
  memset(deep, '[', 65);
  assert_int_equal(jscan_feed(&j, (const uint8_t *)deep, 64), 0);
  assert_int_equal(jscan_feed(&j, (const uint8_t *)deep, 1), EG_ETOOBIG);
  /* Objects and arrays interleaved at depth are told apart. */
  assert_int_equal(jscan_validate((const uint8_t *)"{\"a\":[{\"b\":[1]}],\"c\":{}}", 24, 8), 0);
  assert_int_equal(jscan_validate((const uint8_t *)"{\"a\":[{\"b\":[1}]]}", 17, 8), EG_EPROTO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cases),
      cmocka_unit_test(test_sticky_and_depth),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
