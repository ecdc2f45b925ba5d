/* Unit tests for src/proto/ws: frame parser, message assembler, encoders, UTF-8, handshake.
   Every input is fed whole, byte by byte and split at every point (golden message logs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "proto/ws.h"

/* ---- harness -------------------------------------------------------------------------- */

/* Appends a printable form of a message to log: "T:Hello;" "B:<hex>;" "C:1000:bye;" */
static void log_msg_to(struct buf *log, const struct ws_message *m) {
  char c = '?';
  switch (m->opcode) {
  case WS_OP_TEXT:
    c = 'T';
    break;
  case WS_OP_BINARY:
    c = 'B';
    break;
  case WS_OP_CLOSE:
    c = 'C';
    break;
  case WS_OP_PING:
    c = 'I';
    break;
  case WS_OP_PONG:
    c = 'O';
    break;
  }
  assert_int_equal(buf_printf(log, "%c:", c), 0);
  if (m->opcode == WS_OP_CLOSE) {
    assert_int_equal(buf_printf(log, "%u:%.*s;", m->close_code, (int)m->reason_len,
                                (const char *)m->reason),
                     0);
    return;
  }
  if (m->opcode == WS_OP_BINARY && m->len > 16) {
    /* Large binary: length and a checksum keep the log short. */
    unsigned sum = 0;
    for (size_t i = 0; i < m->len; i++)
      sum = sum * 31 + m->data[i];
    assert_int_equal(buf_printf(log, "len=%zu,sum=%08x;", m->len, sum), 0);
    return;
  }
  for (size_t i = 0; i < m->len; i++) {
    uint8_t b = m->data[i];
    if (m->opcode == WS_OP_BINARY || b < 0x20 || b >= 0x7f)
      assert_int_equal(buf_printf(log, "\\x%02x", b), 0);
    else
      assert_int_equal(buf_append_byte(log, b), 0);
  }
  assert_int_equal(buf_append_byte(log, ';'), 0);
}

/* Feeds `in` to a fresh assembler in chunks ending at cuts[0..ncuts) then n. Returns the
   message log followed by "EAGAIN" or "ERR:<name>" (malloc'd). */
static char *run_asm(enum ws_role role, const uint8_t *in, size_t n, const size_t *cuts,
                     size_t ncuts, size_t max_frame, size_t max_msg) {
  struct ws_assembler a;
  struct buf log;
  buf_init(&log, 1 << 20);
  ws_assembler_init(&a, role, max_frame, max_msg);
  uint8_t *copy = xmemdup(in, n ? n : 1);
  size_t start = 0;
  int rc = EG_EAGAIN;
  for (size_t c = 0; c <= ncuts && rc == EG_EAGAIN; c++) {
    size_t end = c < ncuts ? cuts[c] : n;
    size_t off = start, used;
    for (;;) {
      struct ws_message m;
      rc = ws_assembler_feed(&a, copy + off, end - off, &used, &m);
      assert_true(used <= end - off);
      off += used;
      if (rc != 0)
        break;
      log_msg_to(&log, &m);
    }
    if (rc == EG_EAGAIN)
      assert_int_equal(off, end);
    start = end;
  }
  if (rc == EG_EAGAIN) {
    assert_int_equal(buf_append_str(&log, "EAGAIN"), 0);
  } else {
    assert_int_equal(buf_printf(&log, "ERR:%s", eg_errname(rc)), 0);
    /* Errors are sticky. */
    size_t used;
    struct ws_message m;
    uint8_t more[2] = {0x81, 0x00};
    assert_int_equal(ws_assembler_feed(&a, more, 2, &used, &m), rc);
    assert_int_equal(used, 0);
  }
  ws_assembler_free(&a);
  free(copy);
  char *s = buf_steal(&log, NULL);
  return s ? s : xstrdup("");
}

/* Checks the log for the whole input, byte by byte, and split at every point (sampled for
   big inputs). */
static void check_asm(enum ws_role role, const uint8_t *in, size_t n, size_t max,
                      const char *expect) {
  char *got = run_asm(role, in, n, NULL, 0, max, max);
  assert_string_equal(got, expect);
  free(got);
  size_t *cuts = xmalloc((n + 1) * sizeof *cuts);
  for (size_t i = 0; i < n; i++)
    cuts[i] = i;
  got = run_asm(role, in, n, cuts, n, max, max);
  assert_string_equal(got, expect);
  free(got);
  size_t step = n > 3000 ? 997 : 1;
  for (size_t k = 1; k < n; k += (k < 20 ? 1 : step)) {
    got = run_asm(role, in, n, &k, 1, max, max);
    assert_string_equal(got, expect);
    free(got);
  }
  free(cuts);
}

#define CHECK(role, lit, expect)                                                           \
  check_asm(role, (const uint8_t *)(lit), sizeof(lit) - 1, 1 << 20, expect)

/* Builds a masked client frame (what a browser sends) into out; returns its length. */
static size_t client_frame(uint8_t *out, unsigned op, bool fin, const void *payload,
                           size_t len) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  size_t h = ws_frame_header(out, op, fin, len, key);
  memcpy(out + h, payload, len);
  ws_mask(out + h, len, key, 0);
  return h + len;
}

/* ---- RFC 6455 section 5.7 examples ------------------------------------------------------ */

static void test_rfc_examples(void **state) {
  (void)state;
  /* A single-frame unmasked text message (server to client). */
  CHECK(WS_ROLE_CLIENT, "\x81\x05Hello", "T:Hello;EAGAIN");
  /* A single-frame masked text message (client to server). */
  CHECK(WS_ROLE_SERVER, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", "T:Hello;EAGAIN");
  /* A fragmented unmasked text message. */
  CHECK(WS_ROLE_CLIENT, "\x01\x03Hel\x80\x02lo", "T:Hello;EAGAIN");
  /* Unmasked ping, masked pong. */
  CHECK(WS_ROLE_CLIENT, "\x89\x05Hello", "I:Hello;EAGAIN");
  CHECK(WS_ROLE_SERVER, "\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", "O:Hello;EAGAIN");

  /* 256 bytes binary in one unmasked frame (16-bit length). */
  uint8_t big[10 + 65536];
  memcpy(big, "\x82\x7e\x01\x00", 4);
  for (int i = 0; i < 256; i++)
    big[4 + i] = (uint8_t)i;
  char expect[64];
  unsigned sum = 0;
  for (int i = 0; i < 256; i++)
    sum = sum * 31 + (uint8_t)i;
  snprintf(expect, sizeof expect, "B:len=256,sum=%08x;EAGAIN", sum);
  check_asm(WS_ROLE_CLIENT, big, 4 + 256, 1 << 20, expect);

  /* 64 KiB binary in one unmasked frame (64-bit length). */
  memcpy(big, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
  sum = 0;
  for (int i = 0; i < 65536; i++) {
    big[10 + i] = (uint8_t)(i * 7);
    sum = sum * 31 + (uint8_t)(i * 7);
  }
  snprintf(expect, sizeof expect, "B:len=65536,sum=%08x;EAGAIN", sum);
  check_asm(WS_ROLE_CLIENT, big, sizeof big, 1 << 20, expect);
}

static void test_sequences(void **state) {
  (void)state;
  /* Control frames between fragments; empty frames; several messages in one buffer. */
  CHECK(WS_ROLE_CLIENT, "\x01\x03Hel\x89\x01x\x00\x00\x8a\x00\x80\x02lo\x82\x00\x81\x00",
        "I:x;O:;T:Hello;B:;T:;EAGAIN");
  /* Non-minimal length encodings are accepted. */
  CHECK(WS_ROLE_CLIENT, "\x82\x7e\x00\x03\x01\x02\x03", "B:\\x01\\x02\\x03;EAGAIN");
  CHECK(WS_ROLE_CLIENT, "\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x01\xff", "B:\\xff;EAGAIN");
  /* Close frames: empty, with a status, with a status and a reason. */
  CHECK(WS_ROLE_CLIENT, "\x88\x00", "C:1005:;EAGAIN");
  CHECK(WS_ROLE_CLIENT, "\x88\x02\x03\xe8", "C:1000:;EAGAIN");
  CHECK(WS_ROLE_CLIENT, "\x88\x05\x0f\xa0" "bye", "C:4000:bye;EAGAIN");
  /* UTF-8 split across fragments ("é" = c3 a9, "€" = e2 82 ac). */
  CHECK(WS_ROLE_CLIENT, "\x01\x01\xc3\x00\x01\xa9\x00\x02\xe2\x82\x80\x01\xac",
        "T:\\xc3\\xa9\\xe2\\x82\\xac;EAGAIN");
  /* A partial frame at the end waits. */
  CHECK(WS_ROLE_CLIENT, "\x81\x05Hel", "EAGAIN");
  CHECK(WS_ROLE_CLIENT, "", "EAGAIN");

  /* Masked fragments with interleaved ping, built with the encoder. */
  uint8_t in[256];
  size_t n = 0;
  n += client_frame(in + n, WS_OP_BINARY, false, "\x00\x01", 2);
  n += client_frame(in + n, WS_OP_PING, true, "p", 1);
  n += client_frame(in + n, WS_OP_CONT, false, "\x02", 1);
  n += client_frame(in + n, WS_OP_CONT, true, "", 0);
  n += client_frame(in + n, WS_OP_TEXT, true, "ok", 2);
  n += client_frame(in + n, WS_OP_CLOSE, true, "\x03\xe9gone", 6);
  /* The ping comes out first: it completes before the binary message. */
  check_asm(WS_ROLE_SERVER, in, n, 1 << 20, "I:p;B:\\x00\\x01\\x02;T:ok;C:1001:gone;EAGAIN");
}

static void test_errors(void **state) {
  (void)state;
  /* RSV bits. */
  CHECK(WS_ROLE_CLIENT, "\xc1\x00", "ERR:PROTO");
  CHECK(WS_ROLE_CLIENT, "\x91\x00", "ERR:PROTO");
  CHECK(WS_ROLE_CLIENT, "\xa1\x00", "ERR:PROTO");
  /* Unknown opcodes. */
  CHECK(WS_ROLE_CLIENT, "\x83\x00", "ERR:PROTO");
  CHECK(WS_ROLE_CLIENT, "\x87\x00", "ERR:PROTO");
  CHECK(WS_ROLE_CLIENT, "\x8b\x00", "ERR:PROTO");
  CHECK(WS_ROLE_CLIENT, "\x8f\x00", "ERR:PROTO");
  /* Fragmented control frame; control frame over 125 bytes. */
  CHECK(WS_ROLE_CLIENT, "\x09\x00", "ERR:PROTO");
  CHECK(WS_ROLE_CLIENT, "\x89\x7e\x00\x7e", "ERR:PROTO");
  /* 64-bit length with the top bit set. */
  CHECK(WS_ROLE_CLIENT, "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", "ERR:PROTO");
  /* Masking against the role. */
  CHECK(WS_ROLE_SERVER, "\x81\x00", "ERR:PROTO");
  CHECK(WS_ROLE_CLIENT, "\x81\x80\x01\x02\x03\x04", "ERR:PROTO");
  /* Continuation without a start; a new data frame inside a fragmented message. */
  CHECK(WS_ROLE_CLIENT, "\x80\x00", "ERR:PROTO");
  CHECK(WS_ROLE_CLIENT, "\x01\x01" "a\x81\x01" "b", "ERR:PROTO");
  CHECK(WS_ROLE_CLIENT, "\x02\x01" "a\x82\x01" "b", "ERR:PROTO");
  /* Messages before an error still come out. */
  CHECK(WS_ROLE_CLIENT, "\x81\x01" "a\xc1\x00", "T:a;ERR:PROTO");
  /* Close frames: 1-byte payload, statuses that may not be sent, bad reason. */
  CHECK(WS_ROLE_CLIENT, "\x88\x01\x03", "ERR:PROTO");
  CHECK(WS_ROLE_CLIENT, "\x88\x02\x03\xe7", "ERR:PROTO");     /* 999 */
  CHECK(WS_ROLE_CLIENT, "\x88\x02\x03\xec", "ERR:PROTO");     /* 1004 */
  CHECK(WS_ROLE_CLIENT, "\x88\x02\x03\xed", "ERR:PROTO");     /* 1005 */
  CHECK(WS_ROLE_CLIENT, "\x88\x02\x03\xee", "ERR:PROTO");     /* 1006 */
  CHECK(WS_ROLE_CLIENT, "\x88\x02\x03\xf7", "ERR:PROTO");     /* 1015 */
  CHECK(WS_ROLE_CLIENT, "\x88\x02\x0b\xb7", "ERR:PROTO");     /* 2999 */
  CHECK(WS_ROLE_CLIENT, "\x88\x02\x13\x88", "ERR:PROTO");     /* 5000 */
  CHECK(WS_ROLE_CLIENT, "\x88\x02\x0b\xb8", "C:3000:;EAGAIN"); /* 3000 is fine */
  CHECK(WS_ROLE_CLIENT, "\x88\x04\x03\xe8\xc3\x28", "ERR:UTF8");
  /* Invalid UTF-8 text: overlong, surrogate, above U+10FFFF, bad lead bytes, truncated. */
  CHECK(WS_ROLE_CLIENT, "\x81\x02\xc0\xaf", "ERR:UTF8");
  CHECK(WS_ROLE_CLIENT, "\x81\x03\xe0\x80\xaf", "ERR:UTF8");
  CHECK(WS_ROLE_CLIENT, "\x81\x04\xf0\x80\x80\xaf", "ERR:UTF8");
  CHECK(WS_ROLE_CLIENT, "\x81\x03\xed\xa0\x80", "ERR:UTF8");
  CHECK(WS_ROLE_CLIENT, "\x81\x04\xf4\x90\x80\x80", "ERR:UTF8");
  CHECK(WS_ROLE_CLIENT, "\x81\x01\xff", "ERR:UTF8");
  CHECK(WS_ROLE_CLIENT, "\x81\x01\x80", "ERR:UTF8");
  CHECK(WS_ROLE_CLIENT, "\x81\x02\xe2\x82", "ERR:UTF8");
  CHECK(WS_ROLE_CLIENT, "\x01\x02\xe2\x82\x80\x00", "ERR:UTF8");
  /* Bad UTF-8 fails at once, before the message ends (fail fast). */
  CHECK(WS_ROLE_CLIENT, "\x01\x01\xff", "ERR:UTF8");
  /* Binary messages are not UTF-8 checked. */
  CHECK(WS_ROLE_CLIENT, "\x82\x01\xff", "B:\\xff;EAGAIN");

  /* Frame and message limits. */
  char *got;
  const uint8_t f11[] = "\x82\x0b" "0123456789a";
  got = run_asm(WS_ROLE_CLIENT, f11, sizeof f11 - 1, NULL, 0, 10, 100);
  assert_string_equal(got, "ERR:TOOBIG");
  free(got);
  got = run_asm(WS_ROLE_CLIENT, f11, sizeof f11 - 1, NULL, 0, 11, 11);
  assert_string_equal(got, "B:\\x30\\x31\\x32\\x33\\x34\\x35\\x36\\x37\\x38\\x39\\x61;EAGAIN");
  free(got);
  const uint8_t frag[] = "\x02\x06" "012345\x80\x06" "678901";
  got = run_asm(WS_ROLE_CLIENT, frag, sizeof frag - 1, NULL, 0, 10, 10);
  assert_string_equal(got, "ERR:TOOBIG");
  free(got);
  /* A huge announced length fails before any payload arrives. */
  const uint8_t huge[] = "\x82\x7f\x00\x00\x01\x00\x00\x00\x00\x00";
  got = run_asm(WS_ROLE_CLIENT, huge, sizeof huge - 1, NULL, 0, 1 << 20, 1 << 20);
  assert_string_equal(got, "ERR:TOOBIG");
  free(got);

  assert_int_equal(ws_err_close_code(EG_EPROTO), 1002);
  assert_int_equal(ws_err_close_code(EG_ETOOBIG), 1009);
  assert_int_equal(ws_err_close_code(EG_EUTF8), 1007);
  assert_int_equal(ws_err_close_code(EG_ENOMEM), 1011);
}

/* ---- bare parser events ------------------------------------------------------------------ */

static void test_parser_events(void **state) {
  (void)state;
  uint8_t in[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58\x88\x80\x01\x02\x03\x04";
  size_t n = sizeof in - 1;
  /* Byte by byte: header, five 1-byte chunks (each unmasked in place), end; then close. */
  struct ws_parser p;
  ws_parser_init(&p, WS_ROLE_SERVER, 1000);
  struct buf log;
  buf_init(&log, 4096);
  for (size_t i = 0; i <= n; i++) {
    size_t len = i < n ? 1 : 0, off = 0, used;
    for (;;) {
      struct ws_frame_event ev;
      int rc = ws_parser_feed(&p, in + i + off, len - off, &used, &ev);
      off += used;
      if (rc == EG_EAGAIN)
        break;
      assert_int_equal(rc, 0);
      if (ev.type == WS_EV_HEADER)
        assert_int_equal(buf_printf(&log, "H%u/%d/%llu ", ev.opcode, ev.fin,
                                    (unsigned long long)ev.payload_len),
                         0);
      else if (ev.type == WS_EV_PAYLOAD)
        assert_int_equal(buf_printf(&log, "P%llu:%.*s ", (unsigned long long)ev.offset,
                                    (int)ev.len, (char *)ev.data),
                         0);
      else
        assert_int_equal(buf_append_str(&log, "E "), 0);
    }
    assert_int_equal(off, len);
  }
  assert_string_equal((char *)log.data, "H1/1/5 P0:H P1:e P2:l P3:l P4:o E H8/1/0 E ");
  assert_memory_equal(in + 6, "Hello", 5); /* unmasked in place */
  buf_free(&log);
}

static void test_zero_copy(void **state) {
  (void)state;
  uint8_t in[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
  struct ws_assembler a;
  ws_assembler_init(&a, WS_ROLE_SERVER, 100, 100);
  struct ws_message m;
  size_t used;
  assert_int_equal(ws_assembler_feed(&a, in, sizeof in - 1, &used, &m), 0);
  assert_int_equal(used, sizeof in - 1);
  assert_ptr_equal(m.data, in + 6);
  assert_int_equal(m.len, 5);
  assert_null(a.msg.data); /* nothing was copied or allocated */
  assert_int_equal(ws_assembler_feed(&a, in + used, 0, &used, &m), EG_EAGAIN);
  ws_assembler_free(&a);
}

/* ---- encoders ---------------------------------------------------------------------------- */

static void test_encoders(void **state) {
  (void)state;
  uint8_t h[WS_MAX_HEADER];
  assert_int_equal(ws_frame_header(h, WS_OP_TEXT, true, 5, NULL), 2);
  assert_memory_equal(h, "\x81\x05", 2);
  assert_int_equal(ws_frame_header(h, WS_OP_BINARY, false, 125, NULL), 2);
  assert_memory_equal(h, "\x02\x7d", 2);
  assert_int_equal(ws_frame_header(h, WS_OP_BINARY, true, 126, NULL), 4);
  assert_memory_equal(h, "\x82\x7e\x00\x7e", 4);
  assert_int_equal(ws_frame_header(h, WS_OP_BINARY, true, 65535, NULL), 4);
  assert_memory_equal(h, "\x82\x7e\xff\xff", 4);
  assert_int_equal(ws_frame_header(h, WS_OP_BINARY, true, 65536, NULL), 10);
  assert_memory_equal(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
  const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  assert_int_equal(ws_frame_header(h, WS_OP_BINARY, true, 70000, key), 14);
  assert_memory_equal(h, "\x82\xff\x00\x00\x00\x00\x00\x01\x11\x70\x37\xfa\x21\x3d", 14);

  /* Masking in pieces equals masking at once. */
  uint8_t a[37], b[37];
  for (int i = 0; i < 37; i++)
    a[i] = b[i] = (uint8_t)(i * 13);
  ws_mask(a, 37, key, 0);
  ws_mask(b, 5, key, 0);
  ws_mask(b + 5, 19, key, 5);
  ws_mask(b + 24, 13, key, 24);
  assert_memory_equal(a, b, 37);

  uint8_t f[WS_MAX_CONTROL_FRAME];
  assert_int_equal(ws_control_frame(f, WS_OP_PING, (const uint8_t *)"Hello", 5, NULL), 7);
  assert_memory_equal(f, "\x89\x05Hello", 7);
  assert_int_equal(ws_control_frame(f, WS_OP_PONG, (const uint8_t *)"Hello", 5, key), 11);
  assert_memory_equal(f, "\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
  uint8_t big[126] = {0};
  assert_int_equal(ws_control_frame(f, WS_OP_PING, big, 126, NULL), 0);
  assert_int_equal(ws_control_frame(f, WS_OP_TEXT, big, 1, NULL), 0);

  assert_int_equal(ws_close_frame(f, 0, NULL, 0, NULL), 2);
  assert_memory_equal(f, "\x88\x00", 2);
  assert_int_equal(ws_close_frame(f, 1000, "bye", 3, NULL), 7);
  assert_memory_equal(f, "\x88\x05\x03\xe8" "bye", 7);
  /* A long reason is cut at a character boundary: 100 x "é" = 200 bytes -> 122 bytes. */
  char reason[200];
  for (int i = 0; i < 100; i++)
    memcpy(reason + 2 * i, "\xc3\xa9", 2);
  size_t len = ws_close_frame(f, 1009, reason, sizeof reason, NULL);
  assert_int_equal(len, 2 + 2 + 122);
  assert_int_equal(f[1], 124);
  assert_true(ws_utf8_validate(f + 4, 122));

  /* Encoder output parses back (masked client frames in the server role). */
  uint8_t frame[WS_MAX_CONTROL_FRAME];
  size_t hl = ws_frame_header(frame, WS_OP_TEXT, true, 11, key);
  memcpy(frame + hl, "hello world", 11);
  ws_mask(frame + hl, 11, key, 0);
  check_asm(WS_ROLE_SERVER, frame, hl + 11, 100, "T:hello world;EAGAIN");
  len = ws_close_frame(frame, 1001, "going", 5, key);
  check_asm(WS_ROLE_SERVER, frame, len, 100, "C:1001:going;EAGAIN");
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

static void test_utf8(void **state) {
  (void)state;
  static const char *good[] = {
      "",
      "plain ascii long enough to take the fast path",
      "\xc2\x80\xdf\xbf",              /* U+0080, U+07FF */
      "\xe0\xa0\x80\xed\x9f\xbf",      /* U+0800, U+D7FF */
      "\xee\x80\x80\xef\xbf\xbf",      /* U+E000, U+FFFF */
      "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", /* U+10000, U+10FFFF */
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", /* "κόσμε" */
  };
  static const char *bad[] = {
      "\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf",
      "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80",
      "\xfe", "\xff", "\xc2", "\xe2\x82", "\xf0\x90\x80", "\xc2\x41", "abcdefgh\xff",
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(good); i++) {
    size_t n = strlen(good[i]);
    assert_true(ws_utf8_validate((const uint8_t *)good[i], n));
    for (size_t k = 0; k <= n; k++) {
      struct ws_utf8 v;
      ws_utf8_init(&v);
      assert_int_equal(ws_utf8_feed(&v, (const uint8_t *)good[i], k), 0);
      assert_int_equal(ws_utf8_feed(&v, (const uint8_t *)good[i] + k, n - k), 0);
      assert_true(ws_utf8_complete(&v));
    }
  }
  for (size_t i = 0; i < EG_ARRAY_LEN(bad); i++) {
    size_t n = strlen(bad[i]);
    assert_false(ws_utf8_validate((const uint8_t *)bad[i], n));
    for (size_t k = 0; k <= n; k++) {
      struct ws_utf8 v;
      ws_utf8_init(&v);
      int rc = ws_utf8_feed(&v, (const uint8_t *)bad[i], k);
      if (rc == 0)
        rc = ws_utf8_feed(&v, (const uint8_t *)bad[i] + k, n - k);
      assert_true(rc == EG_EUTF8 || !ws_utf8_complete(&v));
    }
  }
  /* Sticky. */
  struct ws_utf8 v;
  ws_utf8_init(&v);
  assert_int_equal(ws_utf8_feed(&v, (const uint8_t *)"\xff", 1), EG_EUTF8);
  assert_int_equal(ws_utf8_feed(&v, (const uint8_t *)"a", 1), EG_EUTF8);
}

/* ---- handshake -------------------------------------------------------------------------- */

static void test_accept_key(void **state) {
  (void)state;
  char out[WS_ACCEPT_LEN + 1];
  assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0);
  assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=", 23, out), EG_EINVAL);
  assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==x", 25, out), EG_EINVAL);
  assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZ!==", 24, out), EG_EINVAL);
  assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQAA", 24, out), EG_EINVAL);
  assert_int_equal(ws_accept_key(NULL, 0, out), EG_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc_examples), cmocka_unit_test(test_sequences),
      cmocka_unit_test(test_errors),       cmocka_unit_test(test_parser_events),
      cmocka_unit_test(test_zero_copy),    cmocka_unit_test(test_encoders),
      cmocka_unit_test(test_utf8),         cmocka_unit_test(test_accept_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
