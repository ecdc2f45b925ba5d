/* Unit tests for src/proto/eio: Engine.IO v4 packets, polling payloads, base64, open JSON.
   Payloads are fed whole, byte by byte and split at every point (golden packet logs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "proto/eio.h"

/* "4:hello;" for text packets, "b:<hex>;" for binary ones. */
static void log_pkt(struct buf *log, const struct eio_packet *p) {
  if (p->binary) {
    assert_int_equal(buf_append_str(log, "b:"), 0);
    for (size_t i = 0; i < p->len; i++)
      assert_int_equal(buf_printf(log, "%02x", p->data[i]), 0);
  } else {
    assert_int_equal(buf_printf(log, "%d:", (int)p->type), 0);
    assert_int_equal(buf_append(log, p->data, p->len), 0);
  }
  assert_int_equal(buf_append_byte(log, ';'), 0);
}

/* Feeds a polling payload the way an HTTP body arrives: chunks appended to a connection
   buffer, packets consumed from its front, `final` once the whole body is in. */
static char *run_payload(const char *in, size_t n, const size_t *cuts, size_t ncuts,
                         size_t max_packets, size_t max_payload) {
  struct eio_payload_decoder d;
  eio_payload_decoder_init(&d, max_packets, max_payload);
  struct buf conn, log;
  buf_init(&conn, 1 << 20);
  buf_init(&log, 1 << 20);
  size_t start = 0;
  int rc = EG_EAGAIN;
  for (size_t c = 0; c <= ncuts && rc == EG_EAGAIN; c++) {
    size_t end = c < ncuts ? cuts[c] : n;
    assert_int_equal(buf_append(&conn, in + start, end - start), 0);
    start = end;
    bool final = end == n;
    for (;;) {
      struct eio_packet p;
      size_t used;
      rc = eio_payload_decode(&d, conn.data, conn.len, final, &used, &p);
      if (rc != 0) {
        assert_int_equal(used, 0);
        break;
      }
      log_pkt(&log, &p);
      buf_consume(&conn, used);
    }
  }
  if (rc == EG_EAGAIN)
    assert_int_equal(buf_append_str(&log, "END"), 0);
  else
    assert_int_equal(buf_printf(&log, "ERR:%s", eg_errname(rc)), 0);
  buf_free(&conn);
  char *s = buf_steal(&log, NULL);
  return s ? s : xstrdup("");
}

static void check_payload(const char *in, size_t n, const char *expect) {
  char *got = run_payload(in, n, NULL, 0, 100, 1 << 20);
  assert_string_equal(got, expect);
  free(got);
  size_t *cuts = xmalloc((n + 1) * sizeof *cuts);
  for (size_t i = 0; i < n; i++)
    cuts[i] = i;
  got = run_payload(in, n, cuts, n, 100, 1 << 20);
  assert_string_equal(got, expect);
  free(got);
  for (size_t k = 0; k <= n; k++) {
    got = run_payload(in, n, &k, 1, 100, 1 << 20);
    assert_string_equal(got, expect);
    free(got);
  }
  free(cuts);
}

#define CHECK(lit, expect) check_payload((lit), sizeof(lit) - 1, expect)

static void test_payload_examples(void **state) {
  (void)state;
  /* The protocol document's example. */
  CHECK("4hello\x1e" "4\xe2\x82\xac\x1e" "bAQIDBA==", "4:hello;4:\xe2\x82\xac;b:01020304;END");
  CHECK("2", "2:;END");
  CHECK("3probe", "3:probe;END");
  CHECK("6", "6:;END");
  CHECK("1\x1e" "4x", "1:;4:x;END");
  CHECK("0{\"sid\":\"x\"}", "0:{\"sid\":\"x\"};END");
  CHECK("b", "b:;END");        /* empty binary message */
  CHECK("bAQ", "b:01;END");     /* unpadded base64 is accepted */
  CHECK("bAQI=", "b:0102;END");
  CHECK("4\x1e" "4", "4:;4:;END");
}

static void test_payload_errors(void **state) {
  (void)state;
  CHECK("", "ERR:PROTO");
  CHECK("\x1e", "ERR:PROTO");
  CHECK("4a\x1e", "4:a;ERR:PROTO");
  CHECK("\x1e" "4a", "ERR:PROTO");
  CHECK("4a\x1e\x1e" "4b", "4:a;ERR:PROTO");
  CHECK("7", "ERR:PROTO");
  CHECK("x", "ERR:PROTO");
  CHECK("4a\x1e" "9", "4:a;ERR:PROTO");
  CHECK("b!!!!", "ERR:PROTO");
  CHECK("bA", "ERR:PROTO");
  CHECK("bAR", "ERR:PROTO");    /* non-zero unused bits */
  CHECK("bA===", "ERR:PROTO");
  CHECK("bAQ=", "ERR:PROTO");   /* padding that does not complete a group */
  CHECK("b=AQI", "ERR:PROTO");

  /* Limits: packet count and payload size, also while a packet is still incomplete. */
  char *got = run_payload("2\x1e" "2\x1e" "2", 5, NULL, 0, 2, 100);
  assert_string_equal(got, "2:;2:;ERR:TOOBIG");
  free(got);
  got = run_payload("4hello\x1e" "4world", 13, NULL, 0, 10, 10);
  assert_string_equal(got, "4:hello;ERR:TOOBIG");
  free(got);
  size_t cut = 8;
  got = run_payload("4helloworld", 11, &cut, 1, 10, 6);
  assert_string_equal(got, "ERR:TOOBIG");
  free(got);
  got = run_payload("4hello\x1e" "4world", 13, NULL, 0, 2, 13);
  assert_string_equal(got, "4:hello;4:world;END");
  free(got);

  /* Sticky. */
  struct eio_payload_decoder d;
  eio_payload_decoder_init(&d, 10, 100);
  uint8_t bad[] = "9";
  struct eio_packet p;
  size_t used;
  assert_int_equal(eio_payload_decode(&d, bad, 1, true, &used, &p), EG_EPROTO);
  uint8_t good[] = "4a";
  assert_int_equal(eio_payload_decode(&d, good, 2, true, &used, &p), EG_EPROTO);
}

static void test_payload_encode(void **state) {
  (void)state;
  struct buf out;
  buf_init(&out, 64);
  struct eio_packet p1 = {EIO_MESSAGE, false, (const uint8_t *)"hello", 5};
  struct eio_packet p2 = {EIO_MESSAGE, false, (const uint8_t *)"\xe2\x82\xac", 3};
  struct eio_packet p3 = {EIO_MESSAGE, true, (const uint8_t *)"\x01\x02\x03\x04", 4};
  assert_int_equal(eio_payload_append(&out, &p1), 0);
  assert_int_equal(eio_payload_append(&out, &p2), 0);
  assert_int_equal(eio_payload_append(&out, &p3), 0);
  assert_string_equal((char *)out.data, "4hello\x1e" "4\xe2\x82\xac\x1e" "bAQIDBA==");
  /* Over the cap: out is unchanged. */
  size_t len = out.len;
  uint8_t big[64] = {0};
  struct eio_packet p4 = {EIO_MESSAGE, true, big, sizeof big};
  assert_int_equal(eio_payload_append(&out, &p4), EG_ETOOBIG);
  assert_int_equal(out.len, len);
  struct eio_packet bad = {EIO_PING, true, big, 1};
  assert_int_equal(eio_payload_append(&out, &bad), EG_EINVAL);

  /* Round trip: decode what was encoded. */
  char *got = run_payload((char *)out.data, out.len, NULL, 0, 10, 100);
  assert_string_equal(got, "4:hello;4:\xe2\x82\xac;b:01020304;END");
  free(got);

  buf_reset(&out);
  struct eio_packet ping = {EIO_PING, false, (const uint8_t *)"probe", 5};
  assert_int_equal(eio_packet_encode(&out, &ping), 0);
  assert_string_equal((char *)out.data, "2probe");
  struct eio_packet noop = {EIO_NOOP, false, NULL, 0};
  buf_reset(&out);
  assert_int_equal(eio_packet_encode(&out, &noop), 0);
  assert_string_equal((char *)out.data, "6");
  buf_free(&out);
}

static void test_ws_packets(void **state) {
  (void)state;
  struct eio_packet p;
  assert_int_equal(eio_decode_ws_text((const uint8_t *)"4hello", 6, &p), 0);
  assert_int_equal(p.type, EIO_MESSAGE);
  assert_false(p.binary);
  assert_int_equal(p.len, 5);
  assert_memory_equal(p.data, "hello", 5);
  assert_int_equal(eio_decode_ws_text((const uint8_t *)"2probe", 6, &p), 0);
  assert_int_equal(p.type, EIO_PING);
  assert_int_equal(eio_decode_ws_text((const uint8_t *)"5", 1, &p), 0);
  assert_int_equal(p.type, EIO_UPGRADE);
  assert_int_equal(p.len, 0);
  assert_int_equal(eio_decode_ws_text((const uint8_t *)"", 0, &p), EG_EPROTO);
  assert_int_equal(eio_decode_ws_text((const uint8_t *)"7", 1, &p), EG_EPROTO);
  assert_int_equal(eio_decode_ws_text((const uint8_t *)"bAQ==", 5, &p), EG_EPROTO);
  assert_int_equal(eio_decode_ws_binary((const uint8_t *)"\x01\x02", 2, &p), 0);
  assert_int_equal(p.type, EIO_MESSAGE);
  assert_true(p.binary);
  assert_int_equal(p.len, 2);

  uint8_t pre[1];
  struct eio_packet t = {EIO_PONG, false, (const uint8_t *)"probe", 5};
  assert_int_equal(eio_ws_prefix(&t, pre), 1);
  assert_int_equal(pre[0], '3');
  struct eio_packet b = {EIO_MESSAGE, true, (const uint8_t *)"x", 1};
  assert_int_equal(eio_ws_prefix(&b, pre), 0);
}

static void test_base64(void **state) {
  (void)state;
  static const struct {
    const char *raw, *b64;
  } vec[] = {{"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},
             {"foo", "Zm9v"},   {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
             {"foobar", "Zm9vYmFy"}, {"\xff\xfe\xfd", "//79"}};
  char enc[64];
  uint8_t dec[64];
  size_t n;
  for (size_t i = 0; i < EG_ARRAY_LEN(vec); i++) {
    size_t len = strlen(vec[i].raw);
    assert_int_equal(eio_base64_len(len), strlen(vec[i].b64));
    eio_base64_encode((const uint8_t *)vec[i].raw, len, enc);
    assert_memory_equal(enc, vec[i].b64, strlen(vec[i].b64));
    assert_int_equal(eio_base64_decode(vec[i].b64, strlen(vec[i].b64), dec, &n), 0);
    assert_int_equal(n, len);
    assert_memory_equal(dec, vec[i].raw, len);
  }
  /* Round trips of every length up to 48 bytes, decoded in place. */
  for (size_t len = 0; len <= 48; len++) {
    uint8_t raw[48];
    char text[80];
    for (size_t i = 0; i < len; i++)
      raw[i] = (uint8_t)(i * 37 + len);
    eio_base64_encode(raw, len, text);
    assert_int_equal(eio_base64_decode(text, eio_base64_len(len), (uint8_t *)text, &n), 0);
    assert_int_equal(n, len);
    assert_memory_equal(text, raw, len);
  }
  static const char *bad[] = {"A", "AB=", "A===", "====", "Zg=a", "Zh==", "Zm9=",
                              "Zm 9", "Zm9v\n", "Zg==Zg==", "-_8=", "Z\x80=="};
  for (size_t i = 0; i < EG_ARRAY_LEN(bad); i++)
    assert_int_equal(eio_base64_decode(bad[i], strlen(bad[i]), dec, &n), EG_EPROTO);
}

static void test_open_and_sid(void **state) {
  (void)state;
  struct buf out;
  buf_init(&out, 1024);
  assert_int_equal(eio_open_json(&out, "abc", true, 25000, 20000, 1000000), 0);
  assert_string_equal((char *)out.data,
                      "{\"sid\":\"abc\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,"
                      "\"pingTimeout\":20000,\"maxPayload\":1000000}");
  buf_reset(&out);
  assert_int_equal(eio_open_json(&out, "a\"b\\\n", false, 1, 2, 3), 0);
  assert_string_equal((char *)out.data,
                      "{\"sid\":\"a\\\"b\\\\\\u000a\",\"upgrades\":[],\"pingInterval\":1,"
                      "\"pingTimeout\":2,\"maxPayload\":3}");
  buf_free(&out);
  buf_init(&out, 20);
  assert_int_equal(eio_open_json(&out, "abc", true, 25000, 20000, 1000000), EG_ETOOBIG);
  assert_int_equal(out.len, 0);
  buf_free(&out);

  char a[EIO_SID_LEN + 1], b[EIO_SID_LEN + 1];
  eio_sid_new(a);
  eio_sid_new(b);
  assert_int_equal(strlen(a), EIO_SID_LEN);
  assert_string_not_equal(a, b);
  for (int i = 0; i < EIO_SID_LEN; i++)
    assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                           a[i]));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_payload_examples), cmocka_unit_test(test_payload_errors),
      cmocka_unit_test(test_payload_encode),   cmocka_unit_test(test_ws_packets),
      cmocka_unit_test(test_base64),           cmocka_unit_test(test_open_and_sid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
