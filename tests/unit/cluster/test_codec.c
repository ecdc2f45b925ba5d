/* Unit tests for src/cluster/codec.c: the socket.io Redis adapter message. The golden
   inputs are what npm @socket.io/redis-emitter 5.1 (notepack.io) publishes. Messages
   come whole from Redis (hiredis frames them), so besides the whole input every prefix
   and every input with trailing bytes must be refused cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/cluster.h"

/* emitter.to("user:abc").emit("notice", {text:"hi", n:42, f:1.5, ok:true, l:[1,"two",null]}) */
static const char GOLDEN1[] =
    "93a7656d697474657283a47479706502a46461746192a66e6f7469636585a474657874a26869a16e2aa166cb"
    "3ff8000000000000a26f6bc3a16c9301a374776fc0a36e7370a12f83a5726f6f6d7391a8757365723a616263"
    "a5666c61677380a665786365707490";
/* emitter.except("r1").emit("x", undefined, Buffer.from([1,2])) */
static const char GOLDEN2[] = "93a7656d697474657283a47479706502a46461746193a178c0c4020102a36e"
                              "7370a12f83a5726f6f6d7390a5666c61677380a665786365707491a27231";

static size_t unhex(const char *h, uint8_t *out) {
  size_t n = strlen(h) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(h + 2 * i, "%2x", &v);
    out[i] = (uint8_t)v;
  }
  return n;
}

static void assert_json(const json_t *v, const char *expect) {
  char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(s, expect);
  free(s);
}

static void test_golden_emitter(void **state) {
  (void)state;
  uint8_t b[512];
  size_t n = unhex(GOLDEN1, b);
  struct cluster_msg m;
  assert_int_equal(cluster_msg_decode(b, n, &m), 0);
  assert_string_equal(m.uid, "emitter");
  assert_string_equal(m.nsp, "/");
  assert_int_equal(m.type, 2);
  assert_json(m.data, "[\"notice\",{\"f\":1.5,\"l\":[1,\"two\",null],\"n\":42,\"ok\":true,"
                      "\"text\":\"hi\"}]");
  assert_json(m.rooms, "[\"user:abc\"]");
  assert_json(m.except, "[]");
  cluster_msg_free(&m);

  n = unhex(GOLDEN2, b);
  assert_int_equal(cluster_msg_decode(b, n, &m), 0);
  assert_json(m.data, "[\"x\",null,null]"); /* undefined and binary: null */
  assert_json(m.rooms, "[]");
  assert_json(m.except, "[\"r1\"]");
  cluster_msg_free(&m);
}

static void test_prefixes_and_trailing(void **state) {
  (void)state;
  uint8_t b[512];
  size_t n = unhex(GOLDEN1, b);
  struct cluster_msg m;
  for (size_t k = 0; k < n; k++)
    assert_int_equal(cluster_msg_decode(b, k, &m), EG_EPROTO);
  b[n] = 0xc0;
  assert_int_equal(cluster_msg_decode(b, n + 1, &m), EG_EPROTO);
  /* Every single-byte corruption is either refused or decoded into an owned message. */
  for (size_t k = 0; k < n; k++) {
    for (unsigned v = 0; v < 256; v += 37) {
      uint8_t c[512];
      memcpy(c, b, n);
      c[k] = (uint8_t)v;
      if (cluster_msg_decode(c, n, &m) == 0)
        cluster_msg_free(&m);
    }
  }
}

static void test_round_trip(void **state) {
  (void)state;
  json_t *data = json_loads("[\"chat-message\",{\"chat\":\"c1\",\"message\":{\"id\":\"m\","
                            "\"content\":\"h\\u00e9llo\",\"\":\"\",\"n\":-7,\"big\":1e300,\"t\":false}}]",
                            0, NULL);
  assert_non_null(data);
  const char *rooms[] = {"user:u1"};
  const char *except[] = {"sockid", "r2"};
  struct buf out;
  buf_init(&out, 1 << 16);
  assert_int_equal(cluster_msg_encode("abc123", "/", data, rooms, 1, except, 2, &out), 0);
  struct cluster_msg m;
  assert_int_equal(cluster_msg_decode(out.data, out.len, &m), 0);
  assert_string_equal(m.uid, "abc123");
  assert_true(json_equal(m.data, data));
  assert_json(m.rooms, "[\"user:u1\"]");
  assert_json(m.except, "[\"sockid\",\"r2\"]");
  cluster_msg_free(&m);
  /* The cap: refused, buffer unchanged. */
  struct buf small;
  buf_init(&small, 16);
  assert_int_equal(cluster_msg_encode("abc123", "/", data, rooms, 1, except, 2, &small),
                   EG_ETOOBIG);
  assert_int_equal(small.len, 0);
  json_t *obj = json_object();
  assert_int_equal(cluster_msg_encode("a", "/", obj, NULL, 0, NULL, 0, &out), EG_EINVAL);
  json_decref(obj);
  buf_free(&small);
  buf_free(&out);
  json_decref(data);
}

static void test_malformed(void **state) {
  (void)state;
  struct cluster_msg m;
  static const char *bad[] = {
      "c0", /* nil */
      "92a16182a474797065"
      "02a46461746190", /* [a, {type:2,data:[]}] ok? see below */
      "9301"
      "80"
      "80", /* uid not a string */
      "93a16181a47479706502"
      "80", /* packet without data */
      "93a16182a474797065"
      "02a464617461a178"
      "80", /* data not an array */
      "93a16182a47479706502a4646174619101"
      "c3", /* opts not a map */
      "93a16182a47479706502a46461746191a2ff"
      "fe"
      "80", /* invalid UTF-8 */
      "93a16182a47479706502a4646174619181"
      "01"
      "01"
      "80", /* integer map key */
      "93a16182a47479706507a46461746190"
      "80", /* type out of range */
      "93a16183a47479706502a46461746190a36e737001"
      "80", /* nsp not a string */
      "93a16182a47479706502a46461746190"
      "81a5726f6f6d73"
      "91c3", /* room not a string */
  };
  uint8_t b[256];
  /* The second one is valid (no opts -> no rooms): a sanity check of the shapes. */
  size_t n = unhex(bad[1], b);
  assert_int_equal(cluster_msg_decode(b, n, &m), 0);
  assert_json(m.rooms, "[]");
  cluster_msg_free(&m);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    if (i == 1)
      continue;
    n = unhex(bad[i], b);
    assert_int_equal(cluster_msg_decode(b, n, &m), EG_EPROTO);
    assert_null(m.data);
  }
  /* Declared sizes larger than the input (msgpack-c would allocate them first): refused
     before any allocation. */
  static const char *huge[] = {
      "93a16182a47479706502a464617461dfffffffff",   /* map32 of 4G entries */
      "93a16182a47479706502a464617461ddffffffff",   /* array32 */
      "93a16182a47479706502a464617461dbffffffff",   /* str32 */
      "93a16182a47479706502a464617461c6ffffffff",   /* bin32 */
      "93a16182a47479706502a464617461c9ffffffff01", /* ext32 */
      "dc0003c0c0",                                 /* array16 short by one */
  };
  for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
    n = unhex(huge[i], b);
    assert_int_equal(cluster_msg_decode(b, n, &m), EG_EPROTO);
  }
  /* Nesting deeper than 32 levels. */
  uint8_t deep[128];
  size_t k = unhex("93a16182a47479706502a464617461", deep);
  for (int i = 0; i < 40; i++)
    deep[k++] = 0x91;
  deep[k++] = 0xc0;
  assert_int_not_equal(cluster_msg_decode(deep, k, &m), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden_emitter),
      cmocka_unit_test(test_prefixes_and_trailing),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
