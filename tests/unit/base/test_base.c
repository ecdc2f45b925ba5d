/* Unit tests for src/base: buffers, ids, clocks, error names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/base.h"

static void test_buf_cap(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 8);
  assert_int_equal(buf_append(&b, "abcd", 4), 0);
  assert_int_equal(buf_append(&b, "efgh", 4), 0);
  assert_int_equal(buf_append(&b, "i", 1), EG_ETOOBIG);
  assert_int_equal(b.len, 8);
  assert_memory_equal(b.data, "abcdefgh", 8);
  buf_consume(&b, 3);
  assert_int_equal(b.len, 5);
  assert_string_equal((char *)b.data, "defgh");
  assert_int_equal(buf_printf(&b, "%d", 12), 0);
  assert_string_equal((char *)b.data, "defgh12");
  assert_int_equal(buf_printf(&b, "%s", "xyz"), EG_ETOOBIG);
  size_t n;
  char *s = buf_steal(&b, &n);
  assert_int_equal(n, 7);
  assert_string_equal(s, "defgh12");
  free(s);
  assert_null(b.data);
  buf_free(&b);
}

static void test_ids(void **state) {
  (void)state;
  char a[ID_LEN + 1], b[ID_LEN + 1];
  id_new_at(a, 0x5f000000u);
  id_new(b);
  assert_true(id_valid(a, strlen(a)));
  assert_true(id_valid(b, strlen(b)));
  assert_memory_equal(a, "5f000000", 8);
  assert_true(strcmp(a, b) < 0); /* ids sort by creation time */
  assert_false(id_valid("5F0000000000000000000000", 24));
  assert_false(id_valid("5f00000000000000000000", 22));
  assert_false(id_valid(NULL, 0));
}

static void test_iso8601(void **state) {
  (void)state;
  char out[25];
  clock_iso8601(0, out);
  assert_string_equal(out, "1970-01-01T00:00:00.000Z");
  clock_iso8601(1700000000123, out);
  assert_string_equal(out, "2023-11-14T22:13:20.123Z");
  int64_t ms;
  assert_int_equal(clock_parse_iso8601(out, strlen(out), &ms), 0);
  assert_int_equal(ms, 1700000000123);
  assert_int_equal(clock_parse_iso8601("2023-11-14T23:13:20+01:00", 25, &ms), 0);
  assert_int_equal(ms, 1700000000000);
  assert_int_equal(clock_parse_iso8601("2023-11-14", 10, &ms), 0);
  assert_int_equal(ms, 1699920000000);
  assert_int_equal(clock_parse_iso8601("2023-13-14", 10, &ms), EG_EINVAL);
  assert_int_equal(clock_parse_iso8601("2023-11-14T22:13", 16, &ms), EG_EINVAL);
  assert_int_equal(clock_parse_iso8601("2023-11-14T22:13:20.Z", 21, &ms), EG_EINVAL);
}

/* What clock_iso8601 wrote with gmtime_r and snprintf before: the reference. */
static void iso_ref(int64_t wall_ms, char out[25]) {
  int64_t secs = wall_ms >= 0 ? wall_ms / 1000 : (wall_ms - 999) / 1000;
  int ms = (int)(wall_ms - secs * 1000);
  time_t t = (time_t)secs;
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(out, 25, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
           (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
           (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
           (unsigned)tm.tm_sec % 100u, (unsigned)ms % 1000u);
}

static void test_iso8601_matches_gmtime(void **state) {
  (void)state;
  char a[25], b[25];
  /* Year 1 to 9999, leap days, century and 400-year boundaries, negative times. */
  const int64_t fixed[] = {0,
                           -1,
                           -1000,
                           -1001,
                           -86400000,
                           -86400001,
                           951782400000,  /* 2000-02-29 */
                           951868799999,  /* 2000-02-29T23:59:59.999 */
                           4107542400000, /* 2100-03-01 */
                           -2203891200000, /* 1900-03-01 */
                           -62135596800000, /* 0001-01-01 */
                           253402300799999, /* 9999-12-31T23:59:59.999 */
                           1700000000123};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    clock_iso8601(fixed[i], a);
    iso_ref(fixed[i], b);
    assert_string_equal(a, b);
  }
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int64_t ms = (int64_t)(x % 315537897600000ull) - 62135596800000; /* years 1..9999 */
    clock_iso8601(ms, a);
    iso_ref(ms, b);
    if (strcmp(a, b) != 0)
      fail_msg("%lld: %s, gmtime %s", (long long)ms, a, b);
  }
}

static void test_errors(void **state) {
  (void)state;
  assert_string_equal(eg_errname(EG_ETOOBIG), "TOOBIG");
  assert_string_equal(eg_strerror(EG_ETOOBIG), "too large");
  assert_string_equal(eg_strerror(12345), "unknown error");
  assert_true(EG_ENOMEM < 0 && EG_EINTERNAL < 0);
}

static void test_slices(void **state) {
  (void)state;
  struct slice s = SLICE_LIT("Content-Type");
  assert_true(slice_case_eq_cstr(s, "content-type"));
  assert_false(slice_eq_cstr(s, "content-type"));
  assert_true(slice_eq_cstr(s, "Content-Type"));
  assert_false(slice_case_eq_cstr(s, "content-typ"));
}

static void test_hmap(void **state) {
  (void)state;
  struct hmap m = {0};
  assert_null(hmap_get(&m, "x"));
  assert_null(hmap_del(&m, "x"));
  static int vals[1000];
  char key[16];
  for (int i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    assert_null(hmap_put(&m, key, &vals[i]));
  }
  assert_int_equal(m.count, 1000);
  assert_ptr_equal(hmap_put(&m, "k7", &vals[8]), &vals[7]);
  assert_ptr_equal(hmap_get(&m, "k7"), &vals[8]);
  size_t slot, seen = 0;
  for (struct hmap_entry *e = hmap_first(&m, &slot); e; e = hmap_next(&m, e, &slot))
    seen++;
  assert_int_equal(seen, 1000);
  for (int i = 0; i < 1000; i += 2) {
    snprintf(key, sizeof key, "k%d", i);
    assert_non_null(hmap_del(&m, key));
  }
  assert_int_equal(m.count, 500);
  assert_null(hmap_get(&m, "k2"));
  assert_ptr_equal(hmap_get(&m, "k3"), &vals[3]);
  hmap_free(&m);
  assert_int_equal(m.count, 0);
}

static void test_histo(void **state) {
  (void)state;
  struct histo h = {0};
  for (int i = 0; i < 90; i++)
    histo_add(&h, 80); /* <= 100 us */
  for (int i = 0; i < 10; i++)
    histo_add(&h, 30000); /* <= 50 ms */
  assert_int_equal(h.count, 100);
  assert_int_equal(histo_quantile_us(&h, 0.5), 100);
  assert_int_equal(histo_quantile_us(&h, 0.99), 50000);
  struct buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(histo_prometheus(&h, "x_seconds", "kind=\"a\"", &b), 0);
  assert_non_null(strstr((char *)b.data, "x_seconds_bucket{kind=\"a\",le=\"0.0001\"} 90\n"));
  assert_non_null(strstr((char *)b.data, "x_seconds_bucket{kind=\"a\",le=\"+Inf\"} 100\n"));
  assert_non_null(strstr((char *)b.data, "x_seconds_count{kind=\"a\"} 100\n"));
  buf_free(&b);
}

/* jansson's dump with its \u00XX escapes in lowercase (JSON.stringify's form). */
static char *dump_lower(json_t *js) {
  char *s = json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT);
  for (char *p = s; p && *p; p++)
    if (p[0] == '\\' && p[1] == 'u')
      for (int k = 2; k < 6; k++)
        if (p[k] >= 'A' && p[k] <= 'F')
          p[k] = (char)(p[k] - 'A' + 'a');
  return s;
}

/* buf_append_json_str writes what jansson's compact dump writes (up to the case of the
   hex digits), for every ASCII byte and random valid UTF-8 mixed with escapes, and leaves
   the buffer as it was when the cap is hit. */
static void test_json_str(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 1 << 20);
  assert_int_equal(buf_append_json_str(&b, "", 0), 0);
  assert_string_equal((char *)b.data, "\"\"");
  buf_reset(&b);
  assert_int_equal(buf_append_json_str(&b, "a\"b\\c/\n\x01\x7f\xc3\xa9", 11), 0);
  assert_string_equal((char *)b.data, "\"a\\\"b\\\\c/\\n\\u0001\x7f\xc3\xa9\"");
  buf_reset(&b);
  assert_int_equal(buf_append_json_str(&b, "x\0y", 3), 0);
  assert_memory_equal(b.data, "\"x\\u0000y\"", 10);
  static const char *pieces[] = {"a",
                                 "Z",
                                 " ",
                                 "\"",
                                 "\\",
                                 "/",
                                 "\b",
                                 "\f",
                                 "\n",
                                 "\r",
                                 "\t",
                                 "\x01",
                                 "\x1f",
                                 "\x7f",
                                 "\xc3\xa9",
                                 "\xe2\x80\xa8",
                                 "\xf0\x9f\x98\x80",
                                 "hello world"};
  const size_t np = sizeof pieces / sizeof *pieces;
  unsigned seed = 12345;
  for (int round = 0; round < 2000; round++) {
    char in[512];
    size_t n = 0;
    int count = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 40;
    for (int k = 0; k < count; k++) {
      const char *pc = pieces[((seed = seed * 1103515245u + 12345u) >> 16) % np];
      size_t l = strlen(pc);
      memcpy(in + n, pc, l);
      n += l;
    }
    json_t *js = json_stringn(in, n);
    assert_non_null(js);
    char *want = dump_lower(js);
    buf_reset(&b);
    assert_int_equal(buf_append_json_str(&b, in, n), 0);
    assert_string_equal((char *)b.data, want);
    free(want);
    json_decref(js);
  }
  buf_free(&b);
  /* Every single byte below 0x80 (one-byte UTF-8). */
  for (int c = 1; c < 0x80; c++) {
    char in[1] = {(char)c};
    json_t *js = json_stringn(in, 1);
    char *want = dump_lower(js);
    buf_init(&b, 64);
    assert_int_equal(buf_append_json_str(&b, in, 1), 0);
    assert_string_equal((char *)b.data, want);
    buf_free(&b);
    free(want);
    json_decref(js);
  }
  /* Every byte below 0x80 at every position of a 19-byte ASCII run (the 8-byte scan's
     lanes and its tail). */
  for (int c = 1; c < 0x80; c++) {
    for (size_t pos = 0; pos < 19; pos++) {
      char in[19];
      memset(in, 'a', sizeof in);
      in[pos] = (char)c;
      json_t *js = json_stringn(in, sizeof in);
      char *want = dump_lower(js);
      buf_init(&b, 256);
      assert_int_equal(buf_append_json_str(&b, in, sizeof in), 0);
      assert_string_equal((char *)b.data, want);
      buf_free(&b);
      free(want);
      json_decref(js);
    }
  }
  /* Past the cap: EG_ETOOBIG, the buffer as it was (also when only the escapes overflow). */
  buf_init(&b, 12);
  assert_int_equal(buf_append(&b, "ab", 2), 0);
  assert_int_equal(buf_append_json_str(&b, "0123456789", 10), EG_ETOOBIG);
  assert_int_equal(b.len, 2);
  assert_int_equal(buf_append_json_str(&b, "\n\n\n\n\n", 5), EG_ETOOBIG);
  assert_int_equal(b.len, 2);
  assert_string_equal((char *)b.data, "ab");
  assert_int_equal(buf_append_json_str(&b, "\n\n", 2), 0);
  assert_string_equal((char *)b.data, "ab\"\\n\\n\"");
  buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_buf_cap), cmocka_unit_test(test_ids),
      cmocka_unit_test(test_iso8601), cmocka_unit_test(test_iso8601_matches_gmtime),cmocka_unit_test(test_errors),
      cmocka_unit_test(test_slices),  cmocka_unit_test(test_hmap),
      cmocka_unit_test(test_histo),   cmocka_unit_test(test_json_str),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
