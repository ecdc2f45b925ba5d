/* Unit tests for bench/loadgen_wire.h: the load generator's HTTP response head scanner,
   client-side WebSocket frame parser and Engine.IO/Socket.IO classifier. Every input is
   fed whole, byte by byte and split at every point, and must give the same events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../bench/loadgen_wire.h"

/* ---- helpers ----------------------------------------------------------------------------- */

/* What the parser produced: each frame reassembled, then the final return code. */
struct frame {
  uint8_t opcode;
  bool fin;
  uint64_t frame_len;
  size_t len;
  uint8_t data[1 << 17];
};

struct log {
  int nframes;
  struct frame *frames; /* up to 16 */
  int rc;               /* EG_EAGAIN at a clean end, or the error */
  size_t consumed;
};

static void log_init(struct log *l) {
  memset(l, 0, sizeof *l);
  l->frames = calloc(16, sizeof *l->frames);
  assert_non_null(l->frames);
}

static void log_free(struct log *l) {
  free(l->frames);
}

/* Feeds b in chunks ending at the given cut points (ascending, < n). */
static void run_ws(const uint8_t *b, size_t n, const size_t *cuts, size_t ncuts, uint64_t max,
                   struct log *l) {
  struct lgw_ws p;
  lgw_ws_init(&p, max);
  size_t start = 0;
  l->rc = EG_EAGAIN;
  for (size_t c = 0; c <= ncuts; c++) {
    size_t end = c < ncuts ? cuts[c] : n;
    const uint8_t *q = b + start;
    size_t left = end - start;
    for (;;) {
      struct lgw_ws_ev ev;
      size_t used = 0;
      int rc = lgw_ws_feed(&p, q, left, &used, &ev);
      assert_true(used <= left);
      q += used;
      left -= used;
      l->consumed += used;
      if (rc == EG_EAGAIN) {
        assert_int_equal(left, 0);
        break;
      }
      if (rc < 0) {
        l->rc = rc;
        /* Sticky: the same error again, nothing consumed. */
        size_t u2 = 99;
        assert_int_equal(lgw_ws_feed(&p, q, left, &u2, &ev), rc);
        assert_int_equal(u2, 0);
        return;
      }
      assert_int_equal(rc, 0);
      if (ev.first) {
        assert_true(l->nframes < 16);
        struct frame *f = &l->frames[l->nframes++];
        f->opcode = ev.opcode;
        f->fin = ev.fin;
        f->frame_len = ev.frame_len;
        f->len = 0;
      }
      assert_true(l->nframes > 0);
      struct frame *f = &l->frames[l->nframes - 1];
      assert_int_equal(f->opcode, ev.opcode);
      assert_true(f->len + ev.len <= sizeof f->data);
      memcpy(f->data + f->len, ev.data, ev.len);
      f->len += ev.len;
      if (ev.last)
        assert_int_equal(f->len, f->frame_len);
      else
        assert_true(f->len < f->frame_len);
    }
    start = end;
  }
}

static void assert_logs_equal(const struct log *a, const struct log *b) {
  assert_int_equal(a->rc, b->rc);
  assert_int_equal(a->nframes, b->nframes);
  for (int i = 0; i < a->nframes; i++) {
    assert_int_equal(a->frames[i].opcode, b->frames[i].opcode);
    assert_int_equal(a->frames[i].fin, b->frames[i].fin);
    assert_int_equal(a->frames[i].len, b->frames[i].len);
    assert_memory_equal(a->frames[i].data, b->frames[i].data, a->frames[i].len);
  }
}

/* Whole, byte by byte, and at every single split point: all must match `whole`. */
static void check_all_splits(const uint8_t *b, size_t n, uint64_t max, struct log *whole) {
  log_init(whole);
  run_ws(b, n, NULL, 0, max, whole);

  size_t *cuts = calloc(n + 1, sizeof *cuts);
  for (size_t i = 1; i < n; i++)
    cuts[i - 1] = i;
  struct log bytewise;
  log_init(&bytewise);
  run_ws(b, n, cuts, n > 0 ? n - 1 : 0, max, &bytewise);
  assert_logs_equal(whole, &bytewise);
  log_free(&bytewise);
  free(cuts);

  for (size_t s = 1; s < n; s++) {
    struct log split;
    log_init(&split);
    run_ws(b, n, &s, 1, max, &split);
    assert_logs_equal(whole, &split);
    log_free(&split);
  }
}

/* Appends an unmasked frame. */
static size_t put_frame(uint8_t *out, uint8_t b0, const void *p, size_t n) {
  size_t h = 0;
  out[h++] = b0;
  if (n < 126) {
    out[h++] = (uint8_t)n;
  } else if (n < 65536) {
    out[h++] = 126;
    out[h++] = (uint8_t)(n >> 8);
    out[h++] = (uint8_t)n;
  } else {
    out[h++] = 127;
    for (int i = 7; i >= 0; i--)
      out[h++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  memcpy(out + h, p, n);
  return h + n;
}

/* ---- WebSocket frames ------------------------------------------------------------------- */

static void test_ws_sequence(void **state) {
  (void)state;
  static uint8_t in[1 << 18];
  static uint8_t big[70000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t)(i * 7);
  size_t n = 0;
  n += put_frame(in + n, 0x81, "42[\"echo\",\"x\"]", 14);       /* text, 7-bit length */
  n += put_frame(in + n, 0x81, big, 300);                       /* 16-bit length */
  n += put_frame(in + n, 0x82, big, sizeof big);                /* 64-bit length */
  n += put_frame(in + n, 0x81, "", 0);                          /* empty text */
  n += put_frame(in + n, 0x01, "43", 2);                        /* fragment 1 */
  n += put_frame(in + n, 0x89, "hi", 2);                        /* ping in between */
  n += put_frame(in + n, 0x00, "1", 1);                         /* continuation */
  n += put_frame(in + n, 0x80, "[\"x\"]", 5);                   /* final fragment */
  n += put_frame(in + n, 0x8A, "", 0);                          /* empty pong */
  n += put_frame(in + n, 0x88, "\x03\xe8", 2);                  /* close 1000 */
  /* A 16-bit length that would fit in 7 bits (non-minimal: allowed). */
  in[n++] = 0x81;
  in[n++] = 126;
  in[n++] = 0;
  in[n++] = 2;
  in[n++] = '2';
  in[n++] = 'x';

  struct log whole;
  /* Byte by byte over 70 kB is quick, but every split of 70 kB is 70k runs: test the big
     frame's splits separately below and here only the small frames around it. */
  log_init(&whole);
  run_ws(in, n, NULL, 0, 1 << 20, &whole);
  assert_int_equal(whole.rc, EG_EAGAIN);
  assert_int_equal(whole.consumed, n);
  assert_int_equal(whole.nframes, 11);
  assert_int_equal(whole.frames[0].opcode, LGW_OP_TEXT);
  assert_memory_equal(whole.frames[0].data, "42[\"echo\",\"x\"]", 14);
  assert_int_equal(whole.frames[1].len, 300);
  assert_memory_equal(whole.frames[1].data, big, 300);
  assert_int_equal(whole.frames[2].opcode, LGW_OP_BINARY);
  assert_int_equal(whole.frames[2].len, sizeof big);
  assert_memory_equal(whole.frames[2].data, big, sizeof big);
  assert_int_equal(whole.frames[3].len, 0);
  assert_false(whole.frames[4].fin);
  assert_int_equal(whole.frames[5].opcode, LGW_OP_PING);
  assert_memory_equal(whole.frames[5].data, "hi", 2);
  assert_int_equal(whole.frames[6].opcode, LGW_OP_CONT);
  assert_false(whole.frames[6].fin);
  assert_true(whole.frames[7].fin);
  assert_int_equal(whole.frames[8].opcode, LGW_OP_PONG);
  assert_int_equal(whole.frames[9].opcode, LGW_OP_CLOSE);
  assert_int_equal(whole.frames[10].len, 2);
  assert_memory_equal(whole.frames[10].data, "2x", 2);

  /* Byte by byte over everything. */
  size_t *cuts = calloc(n, sizeof *cuts);
  for (size_t i = 1; i < n; i++)
    cuts[i - 1] = i;
  struct log bytewise;
  log_init(&bytewise);
  run_ws(in, n, cuts, n - 1, 1 << 20, &bytewise);
  assert_logs_equal(&whole, &bytewise);
  log_free(&bytewise);
  free(cuts);

  /* Every split point in the first 400 bytes and the last 100, and every 97th between. */
  for (size_t s = 1; s < n; s += (s < 400 || s > n - 100) ? 1 : 97) {
    struct log split;
    log_init(&split);
    run_ws(in, n, &s, 1, 1 << 20, &split);
    assert_logs_equal(&whole, &split);
    log_free(&split);
  }
  log_free(&whole);

  /* The small frames alone at every split point. */
  n = 0;
  n += put_frame(in + n, 0x81, "40{\"sid\":\"abc\"}", 15);
  n += put_frame(in + n, 0x81, big, 200);
  n += put_frame(in + n, 0x01, "4", 1);
  n += put_frame(in + n, 0x89, "", 0);
  n += put_frame(in + n, 0x80, "3", 1);
  check_all_splits(in, n, 1 << 20, &whole);
  assert_int_equal(whole.rc, EG_EAGAIN);
  assert_int_equal(whole.nframes, 5);
  log_free(&whole);
}

static void expect_error(const uint8_t *b, size_t n, uint64_t max, int err) {
  struct log whole;
  check_all_splits(b, n, max, &whole);
  assert_int_equal(whole.rc, err);
  log_free(&whole);
}

static void test_ws_malformed(void **state) {
  (void)state;
  /* Masked frame from a server. */
  expect_error((const uint8_t *)"\x81\x82\x01\x02\x03\x04" "ab", 8, 1 << 20, EG_EPROTO);
  /* RSV1, RSV2, RSV3 set. */
  expect_error((const uint8_t *)"\xC1\x01x", 3, 1 << 20, EG_EPROTO);
  expect_error((const uint8_t *)"\xA1\x01x", 3, 1 << 20, EG_EPROTO);
  expect_error((const uint8_t *)"\x91\x01x", 3, 1 << 20, EG_EPROTO);
  /* Reserved opcodes 3..7 and 0xB..0xF. */
  expect_error((const uint8_t *)"\x83\x00", 2, 1 << 20, EG_EPROTO);
  expect_error((const uint8_t *)"\x87\x00", 2, 1 << 20, EG_EPROTO);
  expect_error((const uint8_t *)"\x8B\x00", 2, 1 << 20, EG_EPROTO);
  expect_error((const uint8_t *)"\x8F\x00", 2, 1 << 20, EG_EPROTO);
  /* Control frame over 125 bytes, and a fragmented one. */
  expect_error((const uint8_t *)"\x89\x7E\x00\x7E", 4, 1 << 20, EG_EPROTO);
  expect_error((const uint8_t *)"\x09\x00", 2, 1 << 20, EG_EPROTO);
  /* 64-bit length with the top bit set. */
  expect_error((const uint8_t *)"\x82\x7F\x80\x00\x00\x00\x00\x00\x00\x01", 10, 1 << 20,
               EG_EPROTO);
  /* Over the caller's maximum (16-bit and 64-bit lengths). */
  expect_error((const uint8_t *)"\x82\x7E\x01\x00", 4, 255, EG_ETOOBIG);
  expect_error((const uint8_t *)"\x82\x7F\x00\x00\x00\x01\x00\x00\x00\x00", 10, 1 << 20,
               EG_ETOOBIG);
  expect_error((const uint8_t *)"\x82\x0A", 2, 9, EG_ETOOBIG);
  /* Continuation with no message open; a new message inside a fragmented one. */
  expect_error((const uint8_t *)"\x80\x01x", 3, 1 << 20, EG_EPROTO);
  expect_error((const uint8_t *)"\x01\x01x\x81\x01y", 6, 1 << 20, EG_EPROTO);
  /* Frames before the error are still delivered. */
  struct log l;
  check_all_splits((const uint8_t *)"\x81\x02hi\xC1\x00", 6, 1 << 20, &l);
  assert_int_equal(l.rc, EG_EPROTO);
  assert_int_equal(l.nframes, 1);
  assert_memory_equal(l.frames[0].data, "hi", 2);
  log_free(&l);
}

/* ---- HTTP response head -------------------------------------------------------------------- */

static void http_run(const char *s, size_t n, const size_t *cuts, size_t ncuts, size_t max,
                     int *rc_out, int *status, size_t *consumed) {
  struct lgw_http h;
  lgw_http_init(&h, max);
  size_t start = 0, total = 0;
  int rc = EG_EAGAIN;
  for (size_t c = 0; c <= ncuts; c++) {
    size_t end = c < ncuts ? cuts[c] : n;
    size_t used;
    rc = lgw_http_feed(&h, (const uint8_t *)s + start, end - start, &used);
    total += used;
    if (rc != EG_EAGAIN)
      break;
    assert_int_equal(used, end - start);
    start = end;
  }
  *rc_out = rc;
  *status = h.status;
  *consumed = total;
  if (rc < 0) {
    size_t u;
    assert_int_equal(lgw_http_feed(&h, (const uint8_t *)"x", 1, &u), rc); /* sticky */
  }
}

static void http_check(const char *s, size_t max, int want_rc, int want_status,
                       size_t want_used) {
  size_t n = strlen(s);
  int rc, st;
  size_t used;
  http_run(s, n, NULL, 0, max, &rc, &st, &used);
  assert_int_equal(rc, want_rc);
  if (rc == 0) {
    assert_int_equal(st, want_status);
    assert_int_equal(used, want_used);
  }
  size_t *cuts = calloc(n + 1, sizeof *cuts);
  for (size_t i = 1; i < n; i++)
    cuts[i - 1] = i;
  int rc2, st2;
  size_t used2;
  http_run(s, n, cuts, n ? n - 1 : 0, max, &rc2, &st2, &used2);
  assert_int_equal(rc2, rc);
  if (rc == 0) {
    assert_int_equal(st2, st);
    assert_int_equal(used2, used);
  }
  for (size_t k = 1; k < n; k++) {
    http_run(s, n, &k, 1, max, &rc2, &st2, &used2);
    assert_int_equal(rc2, rc);
    if (rc == 0) {
      assert_int_equal(st2, st);
      assert_int_equal(used2, used);
    }
  }
  free(cuts);
}

static void test_http(void **state) {
  (void)state;
  const char *ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                   "\r\n";
  size_t head = strlen(ok);
  char with_data[512];
  snprintf(with_data, sizeof with_data, "%s\x81\x03"
                                        "0{}",
           ok);
  http_check(ok, 16384, 0, 101, head);
  http_check(with_data, 16384, 0, 101, head); /* stops at the blank line */
  http_check("HTTP/1.0 400 Bad Request\r\n\r\n", 16384, 0, 400, 28);
  http_check("HTTP/1.1 101 X\r\nA: b\r\n", 16384, EG_EAGAIN, 0, 0); /* incomplete */
  http_check("HTTP/1.1 101 X\r\n\n\r\n", 16384, EG_EAGAIN, 0, 0);   /* LF alone: not an end */
  http_check("HTTP/2.0 101 X\r\n\r\n", 16384, EG_EPROTO, 0, 0);
  http_check("HTTP/1.1 1x1 X\r\n\r\n", 16384, EG_EPROTO, 0, 0);
  http_check("http/1.1 101 X\r\n\r\n", 16384, EG_EPROTO, 0, 0);
  http_check("HTTP/1.1  101 X\r\n\r\n", 16384, EG_EPROTO, 0, 0);
  http_check(ok, 40, EG_ETOOBIG, 0, 0);
}

/* ---- classification ---------------------------------------------------------------------- */

static struct lgw_pkt cls(const char *s) {
  return lgw_classify((const uint8_t *)s, strlen(s));
}

static void test_classify(void **state) {
  (void)state;
  struct lgw_pkt k;
  k = cls("0{\"sid\":\"x\",\"pingInterval\":25000}");
  assert_int_equal(k.kind, LGW_EIO_OPEN);
  assert_int_equal(k.body_off, 1);
  assert_int_equal(cls("1").kind, LGW_EIO_CLOSE);
  assert_int_equal(cls("2").kind, LGW_EIO_PING);
  assert_int_equal(cls("2probe").kind, LGW_EIO_PING);
  assert_int_equal(cls("3").kind, LGW_EIO_PONG);
  assert_int_equal(cls("5").kind, LGW_EIO_UPGRADE);
  assert_int_equal(cls("6").kind, LGW_EIO_NOOP);
  assert_int_equal(cls("").kind, LGW_BAD);
  assert_int_equal(cls("7").kind, LGW_BAD);
  assert_int_equal(cls("x").kind, LGW_BAD);
  assert_int_equal(cls("4").kind, LGW_EIO_MESSAGE);
  assert_int_equal(cls("4hello").kind, LGW_EIO_MESSAGE);
  assert_int_equal(cls("49").kind, LGW_EIO_MESSAGE);

  k = cls("40{\"sid\":\"abc\"}");
  assert_int_equal(k.kind, LGW_SIO_CONNECT);
  assert_int_equal(k.ack_id, -1);
  assert_int_equal(k.body_off, 2);
  k = cls("40/admin,{\"sid\":\"abc\"}");
  assert_int_equal(k.kind, LGW_SIO_CONNECT);
  assert_int_equal(k.body_off, 9);
  assert_int_equal(cls("41").kind, LGW_SIO_DISCONNECT);
  k = cls("42[\"hello\",1]");
  assert_int_equal(k.kind, LGW_SIO_EVENT);
  assert_int_equal(k.ack_id, -1);
  assert_int_equal(k.body_off, 2);
  k = cls("4212[\"echo\"]");
  assert_int_equal(k.kind, LGW_SIO_EVENT);
  assert_int_equal(k.ack_id, 12);
  k = cls("43/admin,13[\"bar\"]");
  assert_int_equal(k.kind, LGW_SIO_ACK);
  assert_int_equal(k.ack_id, 13);
  assert_int_equal(k.body_off, 11);
  k = cls("430[\"x\"]");
  assert_int_equal(k.kind, LGW_SIO_ACK);
  assert_int_equal(k.ack_id, 0);
  k = cls("43999999999999999[]"); /* 15 digits: the largest id we read */
  assert_int_equal(k.kind, LGW_SIO_ACK);
  assert_int_equal(k.ack_id, 999999999999999LL);
  assert_int_equal(cls("431234567890123456[]").kind, LGW_EIO_MESSAGE); /* 18 digits */
  k = cls("44{\"message\":\"Not authorized\"}");
  assert_int_equal(k.kind, LGW_SIO_CONNECT_ERROR);
  assert_int_equal(k.body_off, 2);
  k = cls("451-[\"hello\",{\"_placeholder\":true,\"num\":0}]");
  assert_int_equal(k.kind, LGW_SIO_BINARY);
  assert_int_equal(k.ack_id, -1);
  k = cls("461-/admin,7[{\"_placeholder\":true,\"num\":0}]");
  assert_int_equal(k.kind, LGW_SIO_BINARY);
  assert_int_equal(k.ack_id, 7);
  assert_int_equal(cls("451[]").kind, LGW_EIO_MESSAGE); /* no '-' after the count */
  /* A namespace longer than the kept prefix: the type is still known. */
  k = lgw_classify((const uint8_t *)"43/a-very-long-namespace", 10);
  assert_int_equal(k.kind, LGW_SIO_ACK);
  assert_int_equal(k.ack_id, -1);
  assert_int_equal(k.body_off, 10);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_ws_sequence),
    cmocka_unit_test(test_ws_malformed),
    cmocka_unit_test(test_http),
    cmocka_unit_test(test_classify),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
