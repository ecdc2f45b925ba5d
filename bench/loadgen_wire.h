/*
 * loadgen_wire: the client-side wire decoding of the transport load generator
 * (bench/loadgen.c), header-only so that its unit test (tests/unit/bench/) and its fuzz
 * target (fuzz/loadgen_wire/) compile the very same code.
 *
 * It is the smallest decoding a benchmark client needs, built to cost almost nothing per
 * message, so that the load generator stays much cheaper than the server it measures:
 *
 * 1. lgw_http: an incremental scanner of the HTTP/1.1 response head that answers the
 *    WebSocket upgrade. It keeps no copy of the head: it parses the status code from the
 *    status line ("HTTP/1.1 101 ...") and looks for the blank line that ends the head.
 *
 *      state STATUS: reading "HTTP/1.x SSS" (12 bytes, checked byte by byte)
 *      state HEAD:   skipping header lines, matching "\r\n\r\n" across chunks
 *      state DONE:   head complete; the caller feeds the rest to the frame parser
 *
 * 2. lgw_ws: an incremental parser of RFC 6455 frames as a client receives them (the
 *    server never masks; a masked frame is a protocol error, section 5.1). It yields
 *    payload chunks as slices of the caller's input (no copy):
 *
 *      byte 0: FIN, RSV1-3 (must be 0: no extension is negotiated), opcode
 *      byte 1: MASK (must be 0), payload length 0..125, 126 (16-bit follows), 127 (64-bit
 *              follows, most significant bit 0)
 *      [extended length, big-endian], payload
 *
 *      state HDR0 -> HDR1 -> [LEN: 2 or 8 bytes] -> PAYLOAD -> HDR0
 *
 *    Checks: reserved bits, unknown opcodes (3-7, 0xB-0xF), control frames (close, ping,
 *    pong) longer than 125 bytes or fragmented, a 64-bit length with its top bit set, a
 *    frame above the caller's maximum payload. Every error is sticky.
 *
 * 3. lgw_classify: names one complete Engine.IO v4 text packet (possibly carrying a
 *    Socket.IO v5 packet) from its first bytes alone: open, close, ping, pong, message,
 *    noop, and for messages the Socket.IO type, namespace skipped, and the ack id. The
 *    load generator keeps only a short prefix of each message (LGW_PREFIX bytes), never the
 *    whole payload.
 *
 * Return codes (base.h): 0 (an event, or the head is complete), EG_EAGAIN (all input
 * consumed, need more), EG_EPROTO (malformed), EG_ETOOBIG (over a limit).
 * No allocation, no I/O; any thread.
 */
#ifndef ENGRAM_BENCH_LOADGEN_WIRE_H
#define ENGRAM_BENCH_LOADGEN_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/base.h"

/* ---- HTTP response head --------------------------------------------------------------- */

enum lgw_http_state { LGW_HTTP_STATUS, LGW_HTTP_HEAD, LGW_HTTP_DONE, LGW_HTTP_ERROR };

struct lgw_http {
  uint8_t state;  /* enum lgw_http_state */
  uint8_t pos;    /* bytes of the status line prefix seen (0..12) */
  uint8_t match;  /* how many bytes of "\r\n\r\n" matched so far */
  int status;     /* the status code, once parsed */
  size_t seen;    /* bytes of head seen */
  size_t max;     /* cap on the head size */
  int err;        /* sticky error */
};

static inline void lgw_http_init(struct lgw_http *h, size_t max_head) {
  memset(h, 0, sizeof *h);
  h->max = max_head;
}

/* Feeds bytes of the response. Returns 0 once the head is complete (*used counts the bytes
   up to and including its blank line; the rest belongs to the WebSocket stream), EG_EAGAIN
   after consuming everything, or a sticky EG_EPROTO / EG_ETOOBIG. */
static inline int lgw_http_feed(struct lgw_http *h, const uint8_t *b, size_t n, size_t *used) {
  static const char proto[] = "HTTP/1.";
  size_t i = 0;
  *used = 0;
  if (h->state == LGW_HTTP_ERROR)
    return h->err;
  if (h->state == LGW_HTTP_DONE)
    return 0;
  while (i < n) {
    uint8_t c = b[i++];
    h->seen++;
    if (h->seen > h->max) {
      h->err = EG_ETOOBIG;
      goto fail;
    }
    if (h->state == LGW_HTTP_STATUS) {
      /* "HTTP/1." [01] " " DIGIT DIGIT DIGIT */
      uint8_t p = h->pos;
      bool ok;
      if (p < 7)
        ok = c == (uint8_t)proto[p];
      else if (p == 7)
        ok = c == '0' || c == '1';
      else if (p == 8)
        ok = c == ' ';
      else
        ok = c >= '0' && c <= '9';
      if (!ok) {
        h->err = EG_EPROTO;
        goto fail;
      }
      if (p >= 9)
        h->status = h->status * 10 + (c - '0');
      h->pos++;
      if (h->pos == 12)
        h->state = LGW_HTTP_HEAD;
      continue;
    }
    /* LGW_HTTP_HEAD: find CR LF CR LF. A bare LF is tolerated as a line end by browsers,
       but a server speaking to us sends CR LF; anything else resets the match. */
    if (c == '\r')
      h->match = (h->match == 2) ? 3 : 1;
    else if (c == '\n' && (h->match == 1 || h->match == 3))
      h->match++;
    else
      h->match = 0;
    if (h->match == 4) {
      h->state = LGW_HTTP_DONE;
      *used = i;
      return 0;
    }
  }
  *used = i;
  return EG_EAGAIN;
fail:
  h->state = LGW_HTTP_ERROR;
  *used = i;
  return h->err;
}

/* ---- WebSocket frames (client side) ----------------------------------------------------- */

enum lgw_ws_state { LGW_WS_HDR0, LGW_WS_HDR1, LGW_WS_LEN, LGW_WS_PAYLOAD, LGW_WS_ERROR };

enum {
  LGW_OP_CONT = 0x0,
  LGW_OP_TEXT = 0x1,
  LGW_OP_BINARY = 0x2,
  LGW_OP_CLOSE = 0x8,
  LGW_OP_PING = 0x9,
  LGW_OP_PONG = 0xA,
};

struct lgw_ws {
  uint8_t state;     /* enum lgw_ws_state */
  uint8_t opcode;    /* of the current frame */
  uint8_t fin;       /* FIN bit of the current frame */
  uint8_t need;      /* extended length bytes still to read */
  uint8_t in_msg;    /* a fragmented data message is open (continuation expected) */
  uint64_t len;      /* payload length of the current frame */
  uint64_t left;     /* payload bytes still to deliver */
  uint64_t max;      /* cap on one frame's payload */
  int err;           /* sticky error */
};

/* One event: a chunk (possibly empty) of the current frame's payload. `first` marks the
   frame's first event, `last` its last; a zero-length frame gives one event with both. */
struct lgw_ws_ev {
  uint8_t opcode;
  bool fin;
  bool first;
  bool last;
  uint64_t frame_len;
  const uint8_t *data;
  size_t len;
};

static inline void lgw_ws_init(struct lgw_ws *p, uint64_t max_payload) {
  memset(p, 0, sizeof *p);
  p->max = max_payload;
}

static inline int lgw_ws__fail(struct lgw_ws *p, int err) {
  p->state = LGW_WS_ERROR;
  p->err = err;
  return err;
}

/* Checks a completed header and moves to PAYLOAD. */
static inline int lgw_ws__header_done(struct lgw_ws *p) {
  bool control = (p->opcode & 0x8) != 0;
  if (control && p->len > 125)
    return lgw_ws__fail(p, EG_EPROTO);
  if (p->len > p->max)
    return lgw_ws__fail(p, EG_ETOOBIG);
  if (!control) {
    if (p->opcode == LGW_OP_CONT && !p->in_msg)
      return lgw_ws__fail(p, EG_EPROTO); /* continuation with no message open */
    if (p->opcode != LGW_OP_CONT && p->in_msg)
      return lgw_ws__fail(p, EG_EPROTO); /* new message inside a fragmented one */
    p->in_msg = !p->fin;
  }
  p->left = p->len;
  p->state = LGW_WS_PAYLOAD;
  return 0;
}

/* Feeds bytes. Returns 0 with *ev filled (*used bytes consumed, ev->data points into b),
   EG_EAGAIN when all of b was consumed without completing an event, or a sticky error.
   *ev is always written (zeroed when there is no event). */
static inline int lgw_ws_feed(struct lgw_ws *p, const uint8_t *b, size_t n, size_t *used,
                              struct lgw_ws_ev *ev) {
  size_t i = 0;
  *used = 0;
  *ev = (struct lgw_ws_ev){0};
  if (p->state == LGW_WS_ERROR)
    return p->err;
  for (;;) {
    switch (p->state) {
    case LGW_WS_HDR0: {
      if (i == n)
        goto more;
      uint8_t c = b[i++];
      uint8_t op = c & 0x0F;
      if (c & 0x70) {
        *used = i;
        return lgw_ws__fail(p, EG_EPROTO); /* RSV bits without an extension */
      }
      if ((op > 2 && op < 8) || op > 0xA) {
        *used = i;
        return lgw_ws__fail(p, EG_EPROTO); /* reserved opcode */
      }
      if ((op & 0x8) && !(c & 0x80)) {
        *used = i;
        return lgw_ws__fail(p, EG_EPROTO); /* fragmented control frame */
      }
      p->opcode = op;
      p->fin = (c & 0x80) != 0;
      p->state = LGW_WS_HDR1;
      break;
    }
    case LGW_WS_HDR1: {
      if (i == n)
        goto more;
      uint8_t c = b[i++];
      if (c & 0x80) {
        *used = i;
        return lgw_ws__fail(p, EG_EPROTO); /* servers never mask */
      }
      uint8_t l = c & 0x7F;
      p->len = 0;
      if (l < 126) {
        p->len = l;
        int rc = lgw_ws__header_done(p);
        if (rc < 0) {
          *used = i;
          return rc;
        }
        /* A zero-length frame is delivered right away as one empty event. */
        if (p->len == 0)
          goto deliver;
      } else {
        p->need = (l == 126) ? 2 : 8;
        p->state = LGW_WS_LEN;
      }
      break;
    }
    case LGW_WS_LEN: {
      if (i == n)
        goto more;
      uint8_t c = b[i++];
      if (p->need == 8 && p->len == 0 && (c & 0x80)) {
        *used = i;
        return lgw_ws__fail(p, EG_EPROTO); /* 64-bit length with the top bit set */
      }
      p->len = (p->len << 8) | c;
      if (--p->need == 0) {
        int rc = lgw_ws__header_done(p);
        if (rc < 0) {
          *used = i;
          return rc;
        }
        if (p->len == 0)
          goto deliver;
      }
      break;
    }
    case LGW_WS_PAYLOAD:
      if (i == n)
        goto more;
      goto deliver;
    default:
      *used = i;
      return p->err;
    }
  }
deliver: {
  size_t take = (size_t)EG_MIN((uint64_t)(n - i), p->left);
  ev->opcode = p->opcode;
  ev->fin = p->fin != 0;
  ev->first = p->left == p->len;
  ev->frame_len = p->len;
  ev->data = b + i;
  ev->len = take;
  p->left -= take;
  ev->last = p->left == 0;
  i += take;
  if (p->left == 0)
    p->state = LGW_WS_HDR0;
  *used = i;
  return 0;
}
more:
  *used = i;
  return EG_EAGAIN;
}

/* ---- Engine.IO / Socket.IO packet classification ---------------------------------------- */

#define LGW_PREFIX 48 /* bytes of each message the load generator keeps */

enum lgw_kind {
  LGW_BAD = 0,          /* empty or not an Engine.IO packet */
  LGW_EIO_OPEN,         /* 0{...} */
  LGW_EIO_CLOSE,        /* 1 */
  LGW_EIO_PING,         /* 2 (with optional data, "2probe") */
  LGW_EIO_PONG,         /* 3 */
  LGW_EIO_UPGRADE,      /* 5 */
  LGW_EIO_NOOP,         /* 6 */
  LGW_EIO_MESSAGE,      /* 4 whose body is not a Socket.IO packet we name */
  LGW_SIO_CONNECT,      /* 40... */
  LGW_SIO_DISCONNECT,   /* 41... */
  LGW_SIO_EVENT,        /* 42... */
  LGW_SIO_ACK,          /* 43... */
  LGW_SIO_CONNECT_ERROR,/* 44... */
  LGW_SIO_BINARY,       /* 45 / 46 */
};

struct lgw_pkt {
  int kind;        /* enum lgw_kind */
  int64_t ack_id;  /* -1 when the packet carries none (or it did not fit the prefix) */
  size_t body_off; /* offset of the JSON body (or data) within the prefix */
};

/* Classifies one complete text message from its first `len` bytes (len = min(message
   length, LGW_PREFIX) normally; any length works). Never fails: unknown input is LGW_BAD. */
static inline struct lgw_pkt lgw_classify(const uint8_t *p, size_t len) {
  struct lgw_pkt r = {LGW_BAD, -1, 0};
  if (len == 0)
    return r;
  switch (p[0]) {
  case '0': r.kind = LGW_EIO_OPEN; r.body_off = 1; return r;
  case '1': r.kind = LGW_EIO_CLOSE; r.body_off = 1; return r;
  case '2': r.kind = LGW_EIO_PING; r.body_off = 1; return r;
  case '3': r.kind = LGW_EIO_PONG; r.body_off = 1; return r;
  case '5': r.kind = LGW_EIO_UPGRADE; r.body_off = 1; return r;
  case '6': r.kind = LGW_EIO_NOOP; r.body_off = 1; return r;
  case '4': break;
  default: return r;
  }
  r.kind = LGW_EIO_MESSAGE;
  r.body_off = 1;
  if (len < 2)
    return r;
  size_t i = 2;
  int kind;
  switch (p[1]) {
  case '0': kind = LGW_SIO_CONNECT; break;
  case '1': kind = LGW_SIO_DISCONNECT; break;
  case '2': kind = LGW_SIO_EVENT; break;
  case '3': kind = LGW_SIO_ACK; break;
  case '4': kind = LGW_SIO_CONNECT_ERROR; break;
  case '5':
  case '6':
    /* Binary packets: "<n>-" attachment count first. */
    while (i < len && p[i] >= '0' && p[i] <= '9')
      i++;
    if (i == len || p[i] != '-')
      return r;
    i++;
    kind = LGW_SIO_BINARY;
    break;
  default: return r;
  }
  /* Optional namespace "/name," (the default "/" is omitted by encoders). */
  if (i < len && p[i] == '/') {
    while (i < len && p[i] != ',')
      i++;
    if (i == len) { /* namespace longer than what we kept: still the right type */
      r.kind = kind;
      r.body_off = len;
      return r;
    }
    i++;
  }
  /* Optional ack id: decimal digits, at most 15 of them (below 2^53). */
  size_t d0 = i;
  int64_t id = 0;
  while (i < len && p[i] >= '0' && p[i] <= '9' && i - d0 < 15) {
    id = id * 10 + (p[i] - '0');
    i++;
  }
  if (i < len && p[i] >= '0' && p[i] <= '9')
    return r; /* an id over 15 digits: not ours, leave it as a plain message */
  r.kind = kind;
  r.ack_id = (i > d0) ? id : -1;
  r.body_off = i;
  return r;
}

#endif
