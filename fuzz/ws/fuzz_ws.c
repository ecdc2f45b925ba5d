/*
 * libFuzzer target for src/proto/ws. The first input byte picks the role and the limits;
 * the rest is a byte stream off a socket. Checks:
 *   - feeding it whole and feeding it split (at a point taken from the input, and byte by
 *     byte for short inputs) give the same messages and the same final status;
 *   - every data message re-encoded with ws_frame_header (+ mask) parses back the same;
 *   - the one-shot and incremental UTF-8 validators agree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "proto/ws.h"

#define CHECK(c)                                                                            \
  do {                                                                                      \
    if (!(c)) {                                                                             \
      fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                \
      abort();                                                                              \
    }                                                                                       \
  } while (0)

/* Runs the assembler; appends "opcode len hash" per message and the final status. */
static void run(enum ws_role role, size_t max_frame, size_t max_msg, const uint8_t *in,
                size_t n, size_t step, struct buf *log, bool reencode) {
  struct ws_assembler a;
  ws_assembler_init(&a, role, max_frame, max_msg);
  uint8_t *copy = xmalloc(n ? n : 1);
  if (n)
    memcpy(copy, in, n);
  int rc = EG_EAGAIN;
  for (size_t start = 0; start < n || start == 0; start += step) {
    size_t end = EG_MIN(n, start + step), off = start, used;
    for (;;) {
      struct ws_message m;
      rc = ws_assembler_feed(&a, copy + off, end - off, &used, &m);
      CHECK(used <= end - off);
      off += used;
      if (rc != 0)
        break;
      uint32_t h = 2166136261u;
      for (size_t i = 0; i < m.len; i++)
        h = (h ^ m.data[i]) * 16777619u;
      CHECK(buf_printf(log, "%u:%zu:%08x:%u;", m.opcode, m.len, h, m.close_code) == 0);
      if (m.opcode == WS_OP_TEXT)
        CHECK(ws_utf8_validate(m.data, m.len));
      if (reencode && (m.opcode == WS_OP_TEXT || m.opcode == WS_OP_BINARY)) {
        /* Re-encode as the peer would have sent it and parse it back. */
        static const uint8_t key[4] = {1, 2, 3, 4};
        const uint8_t *k = role == WS_ROLE_SERVER ? key : NULL;
        uint8_t *frame = xmalloc(m.len + WS_MAX_HEADER);
        size_t hl = ws_frame_header(frame, m.opcode, true, m.len, k);
        if (m.len)
          memcpy(frame + hl, m.data, m.len);
        if (k)
          ws_mask(frame + hl, m.len, k, 0);
        struct ws_assembler b;
        ws_assembler_init(&b, role, max_msg, max_msg);
        struct ws_message m2;
        size_t u2;
        CHECK(ws_assembler_feed(&b, frame, hl + m.len, &u2, &m2) == 0);
        CHECK(u2 == hl + m.len && m2.opcode == m.opcode && m2.len == m.len);
        CHECK(m.len == 0 || memcmp(m2.data, m.data, m.len) == 0);
        ws_assembler_free(&b);
        free(frame);
      }
    }
    if (rc != EG_EAGAIN)
      break;
    CHECK(off == end);
    if (n == 0)
      break;
  }
  CHECK(buf_printf(log, "rc=%d", rc) == 0);
  if (rc < 0 && rc != EG_EAGAIN)
    CHECK(ws_err_close_code(rc) >= 1002);
  ws_assembler_free(&a);
  free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t cfg = data[0];
  data++;
  size--;
  enum ws_role role = (cfg & 1) ? WS_ROLE_SERVER : WS_ROLE_CLIENT;
  size_t max_frame = (cfg & 2) ? 64 : 1 << 16;
  size_t max_msg = (cfg & 4) ? 100 : 1 << 16;
  if (max_frame > max_msg)
    max_frame = max_msg;

  struct buf whole, split;
  buf_init(&whole, 1 << 24);
  buf_init(&split, 1 << 24);
  run(role, max_frame, max_msg, data, size, size ? size : 1, &whole, true);
  size_t step = 1 + (size_t)(cfg >> 3);
  if (size > 4096)
    step = 1 + size / 7;
  run(role, max_frame, max_msg, data, size, step, &split, false);
  if (whole.len != split.len || memcmp(whole.data, split.data, whole.len) != 0) {
    fprintf(stderr, "whole: %s\nsplit: %s\n", whole.data, split.data);
    abort();
  }
  buf_free(&whole);
  buf_free(&split);

  /* UTF-8: one-shot vs incremental at a split point. */
  bool ok = ws_utf8_validate(data, size);
  size_t k = size ? cfg % (size + 1) : 0;
  struct ws_utf8 v;
  ws_utf8_init(&v);
  int rc = ws_utf8_feed(&v, data, k);
  if (rc == 0)
    rc = ws_utf8_feed(&v, data + k, size - k);
  CHECK(ok == (rc == 0 && ws_utf8_complete(&v)));
  return 0;
}
