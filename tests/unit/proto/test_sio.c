/* Unit tests for src/proto/sio: Socket.IO v5 packets, binary reconstruction, encoder. */
#include <setjmp.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "proto/sio.h"

static struct sio_limits lim;

static int setup(void **state) {
  (void)state;
  lim = sio_limits_default();
  return 0;
}

/* Decodes s (one-shot) and checks type, namespace, id and the payload (as compact JSON,
   or NULL for none). */
static void expect_packet(const char *s, enum sio_type type, const char *nsp, int64_t id,
                          size_t attachments, const char *json) {
  struct sio_packet p;
  int rc = sio_decode_text(s, strlen(s), &lim, &p);
  if (rc != 0)
    fail_msg("decode of %s failed: %s", s, eg_errname(rc));
  assert_int_equal(p.type, type);
  assert_string_equal(p.nsp, nsp);
  assert_int_equal(p.nsp_len, strlen(nsp));
  assert_int_equal(p.id, id);
  assert_int_equal(p.attachments, attachments);
  if (json == NULL) {
    assert_null(p.data);
  } else {
    json_t *want = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    assert_non_null(want);
    assert_true(json_equal(p.data, want));
    json_decref(want);
  }
  sio_packet_clear(&p);
  sio_packet_clear(&p);
}

static void expect_error(const char *s, size_t n, int err) {
  struct sio_packet p;
  int rc = sio_decode_text(s, n, &lim, &p);
  if (rc != err)
    fail_msg("decode of %.*s gave %s, want %s", (int)n, s, eg_errname(rc), eg_errname(err));
  assert_null(p.data);
}
#define EXPECT_ERROR(lit, err) expect_error((lit), sizeof(lit) - 1, err)

static void test_decode_examples(void **state) {
  (void)state;
  expect_packet("2[\"hello\",1]", SIO_EVENT, "/", SIO_NO_ID, 0, "[\"hello\",1]");
  expect_packet("3/admin,13[\"bar\"]", SIO_ACK, "/admin", 13, 0, "[\"bar\"]");
  expect_packet("51-[\"hello\",{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_EVENT, "/",
                SIO_NO_ID, 1, "[\"hello\",{\"_placeholder\":true,\"num\":0}]");
  expect_packet("0/admin,{\"token\":\"123\"}", SIO_CONNECT, "/admin", SIO_NO_ID, 0,
                "{\"token\":\"123\"}");
  expect_packet("4{\"message\":\"Not authorized\"}", SIO_CONNECT_ERROR, "/", SIO_NO_ID, 0,
                "{\"message\":\"Not authorized\"}");
  expect_packet("4\"Not authorized\"", SIO_CONNECT_ERROR, "/", SIO_NO_ID, 0,
                "\"Not authorized\"");
  expect_packet("0", SIO_CONNECT, "/", SIO_NO_ID, 0, NULL);
  expect_packet("0/admin,", SIO_CONNECT, "/admin", SIO_NO_ID, 0, NULL);
  expect_packet("0/admin", SIO_CONNECT, "/admin", SIO_NO_ID, 0, NULL);
  expect_packet("1", SIO_DISCONNECT, "/", SIO_NO_ID, 0, NULL);
  expect_packet("1/admin,", SIO_DISCONNECT, "/admin", SIO_NO_ID, 0, NULL);
  expect_packet("212[\"a\",{\"b\":[1,2.5,null,true]}]", SIO_EVENT, "/", 12, 0,
                "[\"a\",{\"b\":[1,2.5,null,true]}]");
  expect_packet("20[\"a\"]", SIO_EVENT, "/", 0, 0, "[\"a\"]");
  expect_packet("29007199254740991[\"a\"]", SIO_EVENT, "/", SIO_MAX_ID, 0, "[\"a\"]");
  expect_packet("3/chat,1[]", SIO_ACK, "/chat", 1, 0, "[]");
  expect_packet("62-/x,7[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
                SIO_BINARY_ACK, "/x", 7, 2,
                "[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]");
  expect_packet("2[\"a\\u0000b\"]", SIO_EVENT, "/", SIO_NO_ID, 0, "[\"a\\u0000b\"]");
  expect_packet("2 [\"a\"] ", SIO_EVENT, "/", SIO_NO_ID, 0, "[\"a\"]");
}

static void test_decode_errors(void **state) {
  (void)state;
  EXPECT_ERROR("", EG_EPROTO);
  EXPECT_ERROR("7", EG_EPROTO);
  EXPECT_ERROR("a", EG_EPROTO);
  EXPECT_ERROR("0[]", EG_EPROTO);            /* CONNECT payload must be an object */
  EXPECT_ERROR("0\"x\"", EG_EPROTO);
  EXPECT_ERROR("1{}", EG_EPROTO);            /* DISCONNECT has no payload */
  EXPECT_ERROR("2", EG_EPROTO);              /* EVENT needs a payload */
  EXPECT_ERROR("2{}", EG_EPROTO);
  EXPECT_ERROR("2[]", EG_EPROTO);
  EXPECT_ERROR("2[1]", EG_EPROTO);
  EXPECT_ERROR("2[null]", EG_EPROTO);
  EXPECT_ERROR("2\"x\"", EG_EPROTO);
  EXPECT_ERROR("3{}", EG_EPROTO);            /* ACK payload must be an array */
  EXPECT_ERROR("3", EG_EPROTO);
  EXPECT_ERROR("4[1]", EG_EPROTO);           /* CONNECT_ERROR: object or string */
  EXPECT_ERROR("5[\"a\"]", EG_EPROTO);       /* attachments count missing */
  EXPECT_ERROR("5-[\"a\"]", EG_EPROTO);
  EXPECT_ERROR("51[\"a\"]", EG_EPROTO);      /* no '-' */
  EXPECT_ERROR("5x-[\"a\"]", EG_EPROTO);
  EXPECT_ERROR("51", EG_EPROTO);
  EXPECT_ERROR("511-[\"a\"]", EG_ETOOBIG);   /* 11 > 10 attachments */
  EXPECT_ERROR("2[\"a\"", EG_EPROTO);         /* bad JSON */
  EXPECT_ERROR("2[\"a\"]x", EG_EPROTO);
  EXPECT_ERROR("2[\"a\"][\"b\"]", EG_EPROTO);
  EXPECT_ERROR("2[\"\xff\"]", EG_EPROTO);     /* not UTF-8 */
  EXPECT_ERROR("29007199254740992[\"a\"]", EG_EPROTO); /* id > 2^53 - 1 */
  EXPECT_ERROR("299999999999999999999[\"a\"]", EG_EPROTO);
  EXPECT_ERROR("2/admin[\"a\"]", EG_EPROTO); /* namespace runs to the end: no payload */
  EXPECT_ERROR("2[\"a\",99999999999999999999999]", EG_EPROTO); /* jansson: too big */
  EXPECT_ERROR("2[\"a\\ud800\"]", EG_EPROTO); /* lone surrogate */
  EXPECT_ERROR("2[\"a\"]\0", EG_EPROTO);

  char s[400];
  s[0] = '0';
  s[1] = '/';
  memset(s + 2, 'n', 300);
  expect_error(s, 302, EG_ETOOBIG); /* namespace too long */

  /* Nesting depth: 32 is fine, 33 is not, a deep string does not count. */
  char deep[200];
  size_t k = 0;
  deep[k++] = '2';
  deep[k++] = '[';
  deep[k++] = '"';
  deep[k++] = 'a';
  deep[k++] = '"';
  deep[k++] = ',';
  for (int i = 0; i < 31; i++)
    deep[k++] = '[';
  for (int i = 0; i < 32; i++)
    deep[k++] = ']';
  deep[k] = '\0';
  struct sio_packet p;
  assert_int_equal(sio_decode_text(deep, k, &lim, &p), 0);
  sio_packet_clear(&p);
  memmove(deep + 7, deep + 6, k - 6);
  deep[6] = '[';
  memmove(deep + k + 1, deep + k, 1);
  deep[k + 1] = ']';
  deep[k + 2] = '\0';
  expect_error(deep, k + 2, EG_ETOOBIG);
  const char *str = "2[\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[[[[[[[\"]";
  assert_int_equal(sio_decode_text(str, strlen(str), &lim, &p), 0);
  sio_packet_clear(&p);

  /* Packet size limit. */
  struct sio_limits small = lim;
  small.max_packet = 8;
  assert_int_equal(sio_decode_text("2[\"abcdef\"]", 11, &small, &p), EG_ETOOBIG);
}

/* ---- binary reconstruction -------------------------------------------------------------- */

static void test_decoder_binary(void **state) {
  (void)state;
  struct sio_decoder d;
  struct sio_packet p;
  sio_decoder_init(&d, &lim);

  /* A plain packet passes straight through. */
  assert_int_equal(sio_decoder_feed_text(&d, "2[\"a\"]", 6, &p), 0);
  assert_int_equal(p.type, SIO_EVENT);
  sio_packet_clear(&p);

  /* The protocol example: one attachment. */
  const char *hdr = "51-[\"hello\",{\"_placeholder\":true,\"num\":0}]";
  assert_int_equal(sio_decoder_feed_text(&d, hdr, strlen(hdr), &p), EG_EAGAIN);
  assert_int_equal(sio_decoder_feed_binary(&d, (const uint8_t *)"\x01\x02\x03", 3, &p), 0);
  assert_int_equal(p.type, SIO_BINARY_EVENT);
  assert_int_equal(p.attachments, 1);
  json_t *bin = json_array_get(p.data, 1);
  assert_true(sio_bin_is(bin));
  size_t len;
  const uint8_t *bytes = sio_bin_data(bin, &len);
  assert_int_equal(len, 3);
  assert_memory_equal(bytes, "\x01\x02\x03", 3);
  sio_packet_clear(&p);

  /* Two buffers, nested in an object, one of them used twice, in an ack with a namespace. */
  hdr = "62-/x,7[{\"a\":{\"_placeholder\":true,\"num\":1},\"b\":[{\"_placeholder\":true,"
        "\"num\":0}],\"c\":{\"_placeholder\":true,\"num\":1}}]";
  assert_int_equal(sio_decoder_feed_text(&d, hdr, strlen(hdr), &p), EG_EAGAIN);
  assert_int_equal(sio_decoder_feed_binary(&d, (const uint8_t *)"zero", 4, &p), EG_EAGAIN);
  assert_int_equal(sio_decoder_feed_binary(&d, (const uint8_t *)"", 0, &p), 0);
  assert_int_equal(p.type, SIO_BINARY_ACK);
  assert_int_equal(p.id, 7);
  assert_string_equal(p.nsp, "/x");
  json_t *o = json_array_get(p.data, 0);
  bytes = sio_bin_data(json_object_get(o, "a"), &len);
  assert_non_null(bytes);
  assert_int_equal(len, 0);
  bytes = sio_bin_data(json_array_get(json_object_get(o, "b"), 0), &len);
  assert_int_equal(len, 4);
  assert_memory_equal(bytes, "zero", 4);
  assert_true(sio_bin_is(json_object_get(o, "c")));
  sio_packet_clear(&p);

  /* Zero attachments complete at once. */
  assert_int_equal(sio_decoder_feed_text(&d, "50-[\"a\"]", 8, &p), 0);
  assert_int_equal(p.type, SIO_BINARY_EVENT);
  sio_packet_clear(&p);
  sio_decoder_free(&d);

  /* Errors (each sticky): text while buffers are expected; binary when none is. */
  sio_decoder_init(&d, &lim);
  assert_int_equal(sio_decoder_feed_text(&d, hdr, strlen(hdr), &p), EG_EAGAIN);
  assert_int_equal(sio_decoder_feed_text(&d, "2[\"a\"]", 6, &p), EG_EPROTO);
  assert_int_equal(sio_decoder_feed_text(&d, "2[\"a\"]", 6, &p), EG_EPROTO);
  sio_decoder_free(&d);

  sio_decoder_init(&d, &lim);
  assert_int_equal(sio_decoder_feed_binary(&d, (const uint8_t *)"x", 1, &p), EG_EPROTO);
  assert_int_equal(sio_decoder_feed_text(&d, "2[\"a\"]", 6, &p), EG_EPROTO);
  sio_decoder_free(&d);

  /* Placeholder numbers out of range or not integers. */
  static const char *bad[] = {
      "51-[\"a\",{\"_placeholder\":true,\"num\":1}]",
      "51-[\"a\",{\"_placeholder\":true,\"num\":-1}]",
      "51-[\"a\",{\"_placeholder\":true,\"num\":\"0\"}]",
      "51-[\"a\",{\"_placeholder\":true,\"num\":0.0}]",
      "51-[\"a\",{\"_placeholder\":true}]",
      "50-[\"a\",{\"_placeholder\":true,\"num\":0}]",
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(bad); i++) {
    sio_decoder_init(&d, &lim);
    int rc = sio_decoder_feed_text(&d, bad[i], strlen(bad[i]), &p);
    if (rc == EG_EAGAIN)
      rc = sio_decoder_feed_binary(&d, (const uint8_t *)"x", 1, &p);
    assert_int_equal(rc, EG_EPROTO);
    sio_decoder_free(&d);
  }
  /* A placeholder-shaped object that is not "_placeholder":true stays as it is. */
  sio_decoder_init(&d, &lim);
  hdr = "51-[\"a\",{\"_placeholder\":false,\"num\":0},{\"_placeholder\":true,\"num\":0}]";
  assert_int_equal(sio_decoder_feed_text(&d, hdr, strlen(hdr), &p), EG_EAGAIN);
  assert_int_equal(sio_decoder_feed_binary(&d, (const uint8_t *)"x", 1, &p), 0);
  assert_false(sio_bin_is(json_array_get(p.data, 1)));
  assert_true(sio_bin_is(json_array_get(p.data, 2)));
  sio_packet_clear(&p);
  sio_decoder_free(&d);

  /* Binary size limit. */
  struct sio_limits small = lim;
  small.max_binary = 5;
  sio_decoder_init(&d, &small);
  hdr = "52-[\"a\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]";
  assert_int_equal(sio_decoder_feed_text(&d, hdr, strlen(hdr), &p), EG_EAGAIN);
  assert_int_equal(sio_decoder_feed_binary(&d, (const uint8_t *)"abc", 3, &p), EG_EAGAIN);
  assert_int_equal(sio_decoder_feed_binary(&d, (const uint8_t *)"abc", 3, &p), EG_ETOOBIG);
  assert_int_equal(sio_decoder_feed_binary(&d, (const uint8_t *)"a", 1, &p), EG_ETOOBIG);
  sio_decoder_free(&d);
  /* Freeing with a packet still pending releases it (LeakSanitizer checks). */
  sio_decoder_init(&d, &lim);
  assert_int_equal(sio_decoder_feed_text(&d, hdr, strlen(hdr), &p), EG_EAGAIN);
  assert_int_equal(sio_decoder_feed_binary(&d, (const uint8_t *)"abc", 3, &p), EG_EAGAIN);
  sio_decoder_free(&d);
}

/* ---- encoding ----------------------------------------------------------------------------- */

static void expect_encode(enum sio_type type, const char *nsp, int64_t id, const char *json,
                          unsigned flags, const char *want) {
  json_t *data = json ? json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
  if (json)
    assert_non_null(data);
  struct sio_encoded e;
  assert_int_equal(sio_encode(type, nsp, id, data, flags, &e), 0);
  assert_string_equal(e.text, want);
  assert_int_equal(e.len, strlen(want));
  assert_int_equal(e.nattach, 0);
  /* And it decodes back to the same packet. */
  const char *t = e.text + ((flags & SIO_ENC_EIO_PREFIX) ? 1 : 0);
  struct sio_packet p;
  assert_int_equal(sio_decode_text(t, strlen(t), &lim, &p), 0);
  assert_int_equal(p.type, type);
  assert_string_equal(p.nsp, nsp ? nsp : "/");
  assert_int_equal(p.id, id);
  if (data)
    assert_true(json_equal(p.data, data));
  else
    assert_null(p.data);
  sio_packet_clear(&p);
  sio_encoded_free(&e);
  json_decref(data);
}

static void test_encode(void **state) {
  (void)state;
  expect_encode(SIO_EVENT, NULL, SIO_NO_ID, "[\"hello\",1]", 0, "2[\"hello\",1]");
  expect_encode(SIO_ACK, "/admin", 13, "[\"bar\"]", 0, "3/admin,13[\"bar\"]");
  expect_encode(SIO_CONNECT, "/admin", SIO_NO_ID, "{\"token\":\"123\"}", 0,
                "0/admin,{\"token\":\"123\"}");
  expect_encode(SIO_CONNECT_ERROR, "/", SIO_NO_ID, "{\"message\":\"Not authorized\"}", 0,
                "4{\"message\":\"Not authorized\"}");
  expect_encode(SIO_CONNECT, "/", SIO_NO_ID, "{\"sid\":\"abc\"}", SIO_ENC_EIO_PREFIX,
                "40{\"sid\":\"abc\"}");
  expect_encode(SIO_DISCONNECT, "/admin", SIO_NO_ID, NULL, 0, "1/admin,");
  expect_encode(SIO_DISCONNECT, NULL, SIO_NO_ID, NULL, 0, "1");
  expect_encode(SIO_EVENT, "/", 9007199254740991LL, "[\"x\",{}]", SIO_ENC_EIO_PREFIX,
                "429007199254740991[\"x\",{}]");
  expect_encode(SIO_ACK, "/", 0, "[]", 0, "30[]");
  /* Escaping like JSON.stringify: quotes, backslashes, controls; UTF-8 as is. */
  expect_encode(SIO_EVENT, NULL, SIO_NO_ID,
                "[\"m\",\"q\\\"b\\\\n\\n\\t\\u0001\\u001f/\xe2\x82\xac\\u0000\"]", 0,
                "2[\"m\",\"q\\\"b\\\\n\\n\\t\\u0001\\u001f/\xe2\x82\xac\\u0000\"]");
  /* Numbers: shortest round-trip reals; object key order kept. */
  expect_encode(SIO_EVENT, NULL, SIO_NO_ID,
                "[\"n\",0.1,1.5,-2.25e-07,1e+300,1e21,2.0,-0.0,123456789012,{\"z\":1,\"a\":2}]", 0,
                "2[\"n\",0.1,1.5,-2.25e-7,1e+300,1e+21,2.0,-0.0,123456789012,{\"z\":1,\"a\":2}]");
  expect_encode(SIO_EVENT, NULL, SIO_NO_ID,
                "[\"i\",0,-1,9223372036854775807,-9223372036854775808]", 0,
                "2[\"i\",0,-1,9223372036854775807,-9223372036854775808]");
  expect_encode(SIO_EVENT, NULL, SIO_NO_ID, "[\"t\",true,false,null,[[],[{}]]]", 0,
                "2[\"t\",true,false,null,[[],[{}]]]");
}

static void test_encode_binary(void **state) {
  (void)state;
  /* ["hello", <01 02 03>] -> BINARY_EVENT with one attachment. */
  json_t *data = json_pack("[so]", "hello", sio_bin_new("\x01\x02\x03", 3));
  assert_true(sio_has_binary(data));
  struct sio_encoded e;
  assert_int_equal(sio_encode(SIO_EVENT, NULL, SIO_NO_ID, data, 0, &e), 0);
  assert_string_equal(e.text, "51-[\"hello\",{\"_placeholder\":true,\"num\":0}]");
  assert_int_equal(e.nattach, 1);
  assert_int_equal(e.attach[0].len, 3);
  assert_memory_equal(e.attach[0].data, "\x01\x02\x03", 3);

  /* Round trip through the decoder gives back an equal value. */
  struct sio_decoder d;
  struct sio_packet p;
  sio_decoder_init(&d, &lim);
  assert_int_equal(sio_decoder_feed_text(&d, e.text, e.len, &p), EG_EAGAIN);
  assert_int_equal(sio_decoder_feed_binary(&d, e.attach[0].data, e.attach[0].len, &p), 0);
  assert_true(json_equal(p.data, data));
  sio_packet_clear(&p);
  sio_encoded_free(&e);
  json_decref(data);

  /* Ack with nested buffers: numbered depth-first, in order. */
  data = json_pack("[{s:o,s:[o,i]},o]", "k", sio_bin_new("A", 1), "l", sio_bin_new("BB", 2), 5,
                   sio_bin_new("", 0));
  assert_int_equal(sio_encode(SIO_ACK, "/n", 4, data, SIO_ENC_EIO_PREFIX, &e), 0);
  assert_string_equal(e.text, "463-/n,4[{\"k\":{\"_placeholder\":true,\"num\":0},\"l\":[{\"_"
                              "placeholder\":true,\"num\":1},5]},{\"_placeholder\":true,"
                              "\"num\":2}]");
  assert_int_equal(e.nattach, 3);
  assert_int_equal(e.attach[1].len, 2);
  assert_memory_equal(e.attach[1].data, "BB", 2);
  assert_int_equal(e.attach[2].len, 0);
  assert_int_equal(sio_decoder_feed_text(&d, e.text + 1, e.len - 1, &p), EG_EAGAIN);
  for (size_t i = 0; i < 3; i++) {
    int rc = sio_decoder_feed_binary(&d, e.attach[i].data, e.attach[i].len, &p);
    assert_int_equal(rc, i < 2 ? EG_EAGAIN : 0);
  }
  assert_int_equal(p.type, SIO_BINARY_ACK);
  assert_true(json_equal(p.data, data));
  sio_packet_clear(&p);
  sio_encoded_free(&e);
  json_decref(data);
  sio_decoder_free(&d);

  /* BINARY_EVENT without buffers stays binary with 0 attachments. */
  data = json_pack("[s]", "x");
  assert_false(sio_has_binary(data));
  assert_int_equal(sio_encode(SIO_BINARY_EVENT, NULL, SIO_NO_ID, data, 0, &e), 0);
  assert_string_equal(e.text, "50-[\"x\"]");
  sio_encoded_free(&e);
  json_decref(data);

  /* A checked jansson setter refuses the marker key: user data cannot forge a bin node. */
  json_t *o = json_object();
  assert_int_not_equal(json_object_set_new(o, SIO_BIN_KEY, json_string("x")), 0);
  json_decref(o);
  size_t len = 7;
  assert_null(sio_bin_data(NULL, &len));
  assert_int_equal(len, 0);
}

static void test_encode_errors(void **state) {
  (void)state;
  struct sio_encoded e;
  json_t *arr = json_pack("[s]", "x");
  json_t *obj = json_pack("{s:i}", "a", 1);
  json_t *empty = json_array();
  json_t *bin = json_pack("[so]", "x", sio_bin_new("a", 1));
  assert_int_equal(sio_encode(SIO_EVENT, "admin", SIO_NO_ID, arr, 0, &e), EG_EINVAL);
  assert_null(e.text);
  assert_int_equal(sio_encode(SIO_EVENT, "/a,b", SIO_NO_ID, arr, 0, &e), EG_EINVAL);
  assert_int_equal(sio_encode(SIO_EVENT, "/", SIO_MAX_ID + 1, arr, 0, &e), EG_EINVAL);
  assert_int_equal(sio_encode(SIO_EVENT, "/", -2, arr, 0, &e), EG_EINVAL);
  assert_int_equal(sio_encode(SIO_EVENT, "/", SIO_NO_ID, empty, 0, &e), EG_EINVAL);
  assert_int_equal(sio_encode(SIO_EVENT, "/", SIO_NO_ID, obj, 0, &e), EG_EINVAL);
  assert_int_equal(sio_encode(SIO_EVENT, "/", SIO_NO_ID, NULL, 0, &e), EG_EINVAL);
  assert_int_equal(sio_encode(SIO_CONNECT, "/", SIO_NO_ID, arr, 0, &e), EG_EINVAL);
  assert_int_equal(sio_encode(SIO_DISCONNECT, "/", SIO_NO_ID, obj, 0, &e), EG_EINVAL);
  assert_int_equal(sio_encode(SIO_ACK, "/", 1, obj, 0, &e), EG_EINVAL);
  assert_int_equal(sio_encode(SIO_CONNECT_ERROR, "/", SIO_NO_ID, bin, 0, &e), EG_EINVAL);
  assert_int_equal(sio_encode((enum sio_type)7, "/", SIO_NO_ID, arr, 0, &e), EG_EINVAL);
  /* Too deep (also what a cycle would be). */
  json_t *deep = json_pack("[s]", "d");
  json_t *cur = deep;
  for (int i = 0; i < 80; i++) {
    json_t *next = json_array();
    json_array_append_new(cur, next);
    cur = next;
  }
  assert_int_equal(sio_encode(SIO_EVENT, "/", SIO_NO_ID, deep, 0, &e), EG_EINVAL);
  json_decref(deep);
  json_decref(arr);
  json_decref(obj);
  json_decref(empty);
  json_decref(bin);
}

/* The reference for reals: the shortest "%.*g" that reads back, by a linear scan, with
   JavaScript's exponent form and ".0" after integral values. */
static void real_reference(double v, char *out, size_t cap) {
  char tmp[40];
  int len = 0;
  for (int prec = 1; prec <= 17; prec++) {
    len = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v)
      break;
  }
  char *x = strchr(tmp, 'e');
  if (x != NULL) {
    char *d = x + 2, *z = d;
    while (*z == '0' && z[1] != '\0')
      z++;
    memmove(d, z, strlen(z) + 1);
  } else if (strchr(tmp, '.') == NULL) {
    strcat(tmp, ".0");
  }
  snprintf(out, cap, "2[\"e\",%s]", tmp);
  (void)len;
}

static void check_real(double v) {
  char want[64];
  real_reference(v, want, sizeof want);
  json_t *a = json_pack("[sf]", "e", v);
  struct sio_encoded e;
  assert_int_equal(sio_encode(SIO_EVENT, NULL, SIO_NO_ID, a, 0, &e), 0);
  if (strcmp(e.text, want) != 0)
    fail_msg("%.17g: got %s, want %s", v, e.text, want);
  sio_encoded_free(&e);
  json_decref(a);
}

/* Reals are written in the same shortest form as a linear scan of the precisions would
   give (the encoder searches faster below 1): scores (floats widened), random doubles in
   every magnitude, powers of two, short decimals, the edges. */
static void test_encode_reals(void **state) {
  (void)state;
  static const double fixed[] = {
      0.0,   -0.0,    0.5,   0.25,   0.1,    0.2,   0.3,  1.0,  2.0,  1e-7, 1e21, 1e22, -0.75,
      0.999999, 5e-324, 2.2250738585072014e-308, 0.9999999999999999, 123.456, 1e300, 0.1f, 0.7f};
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
    check_real(fixed[i]);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 5000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    float f = (float)(x >> 40) / (float)(1u << 24); /* a score in [0, 1) */
    check_real((double)f);
    check_real(-(double)f);
    double d;
    uint64_t bits = x & 0x3FFFFFFFFFFFFFFFull; /* finite, positive, below 2 */
    memcpy(&d, &bits, sizeof d);
    check_real(d);
    check_real((double)(x % 100000) / 1000.0); /* short decimals */
    check_real(ldexp(1.0, (int)(x % 200) - 150));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode_examples), cmocka_unit_test(test_decode_errors),
      cmocka_unit_test(test_decoder_binary),  cmocka_unit_test(test_encode),
      cmocka_unit_test(test_encode_binary),   cmocka_unit_test(test_encode_errors),
      cmocka_unit_test(test_encode_reals),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
