/*
 * Fuzz target for bench/loadgen_wire.h (the load generator's client-side decoding).
 * Input: byte 0 picks a split point, byte 1 a frame size cap; the rest is a server's
 * byte stream: an HTTP response head, then WebSocket frames. The stream is decoded whole
 * and in two pieces split at the chosen point; both runs must give the same head status,
 * the same frames (opcode, fin, payload) and the same final result. Every complete text
 * message is classified (the classifier must accept any bytes).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../bench/loadgen_wire.h"

struct run {
  int http_rc, http_status, ws_rc;
  size_t http_used, frames, bytes;
  uint64_t hash; /* over opcodes, fin bits, payload bytes and classifications */
};

static uint64_t mix(uint64_t h, uint64_t v) {
  return (h ^ v) * 0x100000001b3ull;
}

static void decode(const uint8_t *b, size_t n, size_t split, uint64_t max, struct run *r) {
  memset(r, 0, sizeof *r);
  r->hash = 0xcbf29ce484222325ull;
  struct lgw_http h;
  lgw_http_init(&h, 4096);
  struct lgw_ws p;
  lgw_ws_init(&p, max);
  uint8_t pfx[LGW_PREFIX];
  size_t pfx_len = 0;
  uint8_t msg_op = 0;
  bool in_head = true;
  r->http_rc = EG_EAGAIN;
  r->ws_rc = EG_EAGAIN;
  size_t cuts[2] = {split, n};
  size_t start = 0;
  for (int c = 0; c < 2; c++) {
    const uint8_t *q = b + start;
    size_t left = cuts[c] - start;
    start = cuts[c];
    if (in_head) {
      size_t used;
      r->http_rc = lgw_http_feed(&h, q, left, &used);
      if (used > left)
        abort();
      r->http_used += used;
      if (r->http_rc == EG_EAGAIN)
        continue;
      if (r->http_rc < 0)
        return;
      r->http_status = h.status;
      in_head = false;
      q += used;
      left -= used;
    }
    while (left > 0) {
      struct lgw_ws_ev ev;
      size_t used;
      int rc = lgw_ws_feed(&p, q, left, &used, &ev);
      if (used > left)
        abort();
      q += used;
      left -= used;
      if (rc == EG_EAGAIN) {
        if (left != 0)
          abort();
        break;
      }
      if (rc < 0) {
        r->ws_rc = rc;
        return;
      }
      if (ev.len > ev.frame_len)
        abort();
      if (ev.first) {
        r->frames++;
        r->hash = mix(r->hash, ev.opcode | (ev.fin ? 0x100u : 0));
        if (!(ev.opcode & 8) && ev.opcode != LGW_OP_CONT) {
          msg_op = ev.opcode;
          pfx_len = 0;
        }
      }
      for (size_t i = 0; i < ev.len; i++)
        r->hash = mix(r->hash, ev.data[i]);
      r->bytes += ev.len;
      if (!(ev.opcode & 8)) {
        size_t take = EG_MIN(ev.len, (size_t)(LGW_PREFIX - pfx_len));
        memcpy(pfx + pfx_len, ev.data, take);
        pfx_len += take;
        if (ev.last && ev.fin && msg_op == LGW_OP_TEXT) {
          struct lgw_pkt k = lgw_classify(pfx, pfx_len);
          if (k.body_off > pfx_len)
            abort();
          r->hash = mix(r->hash, (uint64_t)k.kind * 31 + (uint64_t)k.ack_id);
        }
      }
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  const uint8_t *b = data + 2;
  size_t n = size - 2;
  size_t split = n ? data[0] % (n + 1) : 0;
  uint64_t max = data[1] < 128 ? data[1] * 64u : (1u << 20);
  struct run whole, parts;
  decode(b, n, n, max, &whole);
  decode(b, n, split, max, &parts);
  if (whole.http_rc != parts.http_rc || whole.http_status != parts.http_status ||
      whole.ws_rc != parts.ws_rc || whole.frames != parts.frames ||
      whole.bytes != parts.bytes || whole.hash != parts.hash)
    abort();
  /* The classifier on the raw input (any bytes, any length). */
  struct lgw_pkt k = lgw_classify(b, n);
  if (k.body_off > n)
    abort();
  return 0;
}
