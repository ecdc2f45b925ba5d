/* Unit tests for src/proto/sse: every input whole, byte by byte and at every split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "proto/sse.h"

/* Event log: one "type|data|id|eof\n" line per event, data with \n shown as "\\n". */
struct log {
  struct buf b;
  int stop_after; /* >0: callback returns EG_EPROTO on that event */
  int n;
};

static int log_cb(void *ud, const struct sse_event *ev) {
  struct log *l = ud;
  l->n++;
  assert_int_equal(buf_append(&l->b, ev->type.p, ev->type.len), 0);
  assert_int_equal(buf_append_byte(&l->b, '|'), 0);
  for (size_t i = 0; i < ev->data.len; i++) {
    if (ev->data.p[i] == '\n')
      assert_int_equal(buf_append(&l->b, "\\n", 2), 0);
    else
      assert_int_equal(buf_append_byte(&l->b, (uint8_t)ev->data.p[i]), 0);
  }
  assert_int_equal(buf_printf(&l->b, "|%.*s|%d\n", (int)ev->id.len, ev->id.p, ev->at_eof), 0);
  if (l->stop_after > 0 && l->n == l->stop_after)
    return EG_EPROTO;
  return 0;
}

/* Parses `in` cut at the given offsets; returns the final rc; log in *out (caller frees). */
static int run_cuts(const char *in, size_t len, const size_t *cuts, size_t ncuts, bool flush,
                    size_t max_event, char **out, bool *dropped) {
  struct sse_parser p;
  sse_init(&p, max_event, flush);
  struct log l = {0};
  buf_init(&l.b, 1u << 24);
  size_t pos = 0;
  int rc = 0;
  for (size_t i = 0; i <= ncuts && rc == 0; i++) {
    size_t end = i < ncuts ? cuts[i] : len;
    rc = sse_feed(&p, (const uint8_t *)in + pos, end - pos, log_cb, &l);
    pos = end;
  }
  if (rc == 0)
    rc = sse_finish(&p, log_cb, &l);
  if (dropped)
    *dropped = p.dropped_at_eof;
  assert_int_equal(buf_append_byte(&l.b, 0), 0);
  *out = (char *)l.b.data;
  sse_free(&p);
  return rc;
}

/* Checks that whole, byte-by-byte and every two-way and (for short inputs) three-way
   split give `expect` and `expect_rc`. */
static void check_ex(const char *in, size_t len, bool flush, size_t max_event, int expect_rc,
                     const char *expect) {
  char *got;
  int rc = run_cuts(in, len, NULL, 0, flush, max_event, &got, NULL);
  assert_int_equal(rc, expect_rc);
  assert_string_equal(got, expect);
  free(got);
  /* byte by byte */
  size_t *cuts = xcalloc(len + 1, sizeof *cuts);
  for (size_t i = 0; i + 1 < len; i++)
    cuts[i] = i + 1;
  rc = run_cuts(in, len, cuts, len ? len - 1 : 0, flush, max_event, &got, NULL);
  assert_int_equal(rc, expect_rc);
  assert_string_equal(got, expect);
  free(got);
  /* every split */
  for (size_t i = 0; i <= len; i++) {
    size_t c[1] = {i};
    rc = run_cuts(in, len, c, 1, flush, max_event, &got, NULL);
    assert_int_equal(rc, expect_rc);
    assert_string_equal(got, expect);
    free(got);
  }
  if (len <= 120) {
    for (size_t i = 0; i <= len; i++)
      for (size_t j = i; j <= len; j++) {
        size_t c[2] = {i, j};
        rc = run_cuts(in, len, c, 2, flush, max_event, &got, NULL);
        assert_int_equal(rc, expect_rc);
        assert_string_equal(got, expect);
        free(got);
      }
  }
  free(cuts);
}

static void check(const char *in, bool flush, const char *expect) {
  check_ex(in, strlen(in), flush, 0, 0, expect);
}

static void test_line_endings(void **state) {
  (void)state;
  const char *want = "message|a||0\nmessage|b||0\n";
  check("data: a\n\ndata: b\n\n", false, want);
  check("data: a\r\n\r\ndata: b\r\n\r\n", false, want);
  check("data: a\r\rdata: b\r\r", false, want);
  check("data: a\r\n\ndata: b\r\r\n", false, want);
  /* CR then LF is one line end, so "\r\n" alone does not dispatch twice. */
  check("data: a\r\n\r\n\r\n\r\n", false, "message|a||0\n");
}

static void test_fields(void **state) {
  (void)state;
  check("data:x\n\n", false, "message|x||0\n");
  check("data:  two\n\n", false, "message| two||0\n");
  check("data\n\n", false, "message|||0\n");
  check("data:\n\n", false, "message|||0\n");
  check("data: l1\ndata: l2\ndata:\n\n", false, "message|l1\\nl2\\n||0\n");
  check("event: delta\ndata: {}\n\n", false, "delta|{}||0\n");
  check("event: x\n\ndata: y\n\n", false, "message|y||0\n"); /* type resets */
  check("id: 7\ndata: a\n\ndata: b\n\n", false, "message|a|7|0\nmessage|b|7|0\n");
  check("id: 7\ndata: a\n\nid\ndata: b\n\n", false, "message|a|7|0\nmessage|b||0\n");
  check("foo: bar\nDATA: no\ndata: yes\n\n", false, "message|yes||0\n");
  check("data: a:b: c\n\n", false, "message|a:b: c||0\n");
}

static void test_comments_keepalive(void **state) {
  (void)state;
  check(":\n\n: ping\n\n:\r\n\r\ndata: a\n: mid\ndata: b\n\n", false, "message|a\\nb||0\n");
  check("\n\n\n", false, "");
  check("event: x\n\n", false, "");
}

static void test_retry_and_id(void **state) {
  (void)state;
  struct sse_parser p;
  sse_init(&p, 0, false);
  struct log l = {0};
  buf_init(&l.b, 4096);
  assert_int_equal(sse_feed(&p, (const uint8_t *)"retry: 1500\n", 12, log_cb, &l), 0);
  assert_int_equal(p.retry_ms, 1500);
  assert_int_equal(sse_feed(&p, (const uint8_t *)"retry: 15x\nretry:\n", 18, log_cb, &l), 0);
  assert_int_equal(p.retry_ms, 1500);
  /* An id containing NUL is ignored. */
  assert_int_equal(
      sse_feed(&p, (const uint8_t *)"id: ok\nid: a\0b\ndata: d\n\n", 24, log_cb, &l), 0);
  assert_int_equal(l.n, 1);
  assert_string_equal((char *)l.b.data, "message|d|ok|0\n");
  assert_int_equal(p.events, 1);
  sse_free(&p);
  buf_free(&l.b);
}

static void test_bom(void **state) {
  (void)state;
  check("\xEF\xBB\xBF"
        "data: a\n\n",
        false, "message|a||0\n");
  /* A partial BOM is ordinary bytes (here: part of an unknown field name). */
  check("\xEF\xBB"
        "data: a\n\ndata: b\n\n",
        false, "message|b||0\n");
  /* Only at the start. */
  check("data: a\n\n\xEF\xBB\xBF"
        "data: b\n\n",
        false, "message|a||0\n");
}

static void test_eof(void **state) {
  (void)state;
  /* WHATWG: an unfinished event is discarded. */
  check("data: a\n\ndata: b\n", false, "message|a||0\n");
  check("data: a\n\ndata: b", false, "message|a||0\n");
  char *got;
  bool dropped;
  assert_int_equal(run_cuts("data: a\n\ndata: b", 16, NULL, 0, false, 0, &got, &dropped), 0);
  assert_true(dropped);
  free(got);
  assert_int_equal(run_cuts("data: a\n\n", 9, NULL, 0, false, 0, &got, &dropped), 0);
  assert_false(dropped);
  free(got);
  /* flush_on_eof: the last event comes with at_eof set, also an unterminated line. */
  check("data: a\n\ndata: b\n", true, "message|a||0\nmessage|b||1\n");
  check("data: a\n\ndata: b", true, "message|a||0\nmessage|b||1\n");
  check("data: a\r\n\r\ndata: b\r", true, "message|a||0\nmessage|b||1\n");
  check("data: a\n\n", true, "message|a||0\n");
  check("data: a\n\n: comment", true, "message|a||0\n");
  check("\xEF\xBB", true, "");
}

static void test_limits_and_errors(void **state) {
  (void)state;
  /* 32-byte cap: data "0123456789" = 11 bytes with LF; a line of 40 bytes fails. */
  check_ex("data: 0123456789\n\n", 18, false, 32, 0, "message|0123456789||0\n");
  const char *big = "data: 0123456789012345678901234567890123456789\n\n";
  check_ex(big, strlen(big), false, 32, EG_ETOOBIG, "");
  /* Many short data lines also count. */
  const char *many = "data: 0123456789\ndata: 0123456789\ndata: 0123456789\n\ndata: x\n\n";
  check_ex(many, strlen(many), false, 32, EG_ETOOBIG, "");
  /* The cap is per event: many events under the cap pass. */
  const char *ok = "data: 0123456789\n\ndata: 0123456789\n\ndata: 0123456789\n\n";
  check_ex(ok, strlen(ok), false, 32, 0,
           "message|0123456789||0\nmessage|0123456789||0\nmessage|0123456789||0\n");
  /* Sticky errors. */
  struct sse_parser p;
  sse_init(&p, 16, false);
  assert_int_equal(sse_feed(&p, (const uint8_t *)big, strlen(big), NULL, NULL), EG_ETOOBIG);
  assert_int_equal(sse_feed(&p, (const uint8_t *)"data: a\n\n", 9, NULL, NULL), EG_ETOOBIG);
  assert_int_equal(sse_finish(&p, NULL, NULL), EG_ETOOBIG);
  sse_reset(&p);
  assert_int_equal(sse_feed(&p, (const uint8_t *)"data: a\n\n", 9, NULL, NULL), 0);
  assert_int_equal(sse_finish(&p, NULL, NULL), 0);
  assert_int_equal(sse_feed(&p, (const uint8_t *)"x", 1, NULL, NULL), EG_EINVAL);
  sse_free(&p);
  /* Callback abort stops at once and sticks. */
  sse_init(&p, 0, false);
  struct log l = {0};
  buf_init(&l.b, 4096);
  l.stop_after = 1;
  const char *two = "data: 1\n\ndata: 2\n\n";
  assert_int_equal(sse_feed(&p, (const uint8_t *)two, strlen(two), log_cb, &l), EG_EPROTO);
  assert_int_equal(l.n, 1);
  assert_int_equal(sse_feed(&p, (const uint8_t *)two, strlen(two), log_cb, &l), EG_EPROTO);
  assert_int_equal(l.n, 1);
  sse_free(&p);
  buf_free(&l.b);
}

static void test_binary_and_utf8(void **state) {
  (void)state;
  /* Invalid UTF-8 and NUL bytes pass through byte-exact. */
  static const char in[] = "data: {\"t\":\"\xC3\x28 \xFF \x80 \xE2\x82\xAC\"}\n\n";
  check_ex(in, sizeof in - 1, false, 0, 0,
           "message|{\"t\":\"\xC3\x28 \xFF \x80 \xE2\x82\xAC\"}||0\n");
  static const char nul[] = "data: a\0b\n\n";
  char *got;
  assert_int_equal(run_cuts(nul, sizeof nul - 1, NULL, 0, false, 0, &got, NULL), 0);
  assert_memory_equal(got, "message|a\0b||0\n", 15);
  free(got);
}

static void test_provider_streams(void **state) {
  (void)state;
  const char *gemini =
      "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": "
      "\"model\"},\"index\": 0}]}\r\n\r\n"
      "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo\"}],\"role\": "
      "\"model\"},\"finishReason\": \"STOP\",\"index\": 0}]}\r\n\r\n";
  check(gemini, false,
        "message|{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": "
        "\"model\"},\"index\": 0}]}||0\n"
        "message|{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo\"}],\"role\": "
        "\"model\"},\"finishReason\": \"STOP\",\"index\": 0}]}||0\n");
  const char *openai = ": ping\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"
                       "data: {\"choices\":[],\"usage\":{}}\n\ndata: [DONE]\n\n";
  check(openai, false,
        "message|{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}||0\n"
        "message|{\"choices\":[],\"usage\":{}}||0\nmessage|[DONE]||0\n");
  const char *named = "event: error\ndata: {\"error\":{\"message\":\"x\"}}\n\n";
  check(named, false, "error|{\"error\":{\"message\":\"x\"}}||0\n");
}

static void test_large_event(void **state) {
  (void)state;
  size_t n = 150 * 1024;
  char *in = xmalloc(n + 16);
  memcpy(in, "data: ", 6);
  memset(in + 6, 'x', n);
  memcpy(in + 6 + n, "\n\n", 2);
  size_t len = n + 8;
  char *got;
  size_t cuts[3] = {3, 70000, len - 1};
  assert_int_equal(run_cuts(in, len, cuts, 3, false, 0, &got, NULL), 0);
  assert_int_equal(strlen(got), strlen("message|||0\n") + n);
  free(got);
  assert_int_equal(run_cuts(in, len, cuts, 3, false, 64 * 1024, &got, NULL), EG_ETOOBIG);
  free(got);
  free(in);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_line_endings),
      cmocka_unit_test(test_fields),
      cmocka_unit_test(test_comments_keepalive),
      cmocka_unit_test(test_retry_and_id),
      cmocka_unit_test(test_bom),
      cmocka_unit_test(test_eof),
      cmocka_unit_test(test_limits_and_errors),
      cmocka_unit_test(test_binary_and_utf8),
      cmocka_unit_test(test_provider_streams),
      cmocka_unit_test(test_large_event),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
