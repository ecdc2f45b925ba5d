/* RFC 6455 WebSocket frame codec (see ws.h). */
#include <string.h>

#include <openssl/sha.h>

#include "proto/eio.h"
#include "proto/ws.h"

/* Parser states (see struct ws_parser). */
enum {
  ST_HDR0,    /* expecting byte 0: FIN, RSV1-3, opcode */
  ST_HDR1,    /* expecting byte 1: MASK, 7-bit length */
  ST_LEN,     /* reading `need` more extended-length bytes */
  ST_MASK,    /* reading `need` more mask-key bytes */
  ST_PAYLOAD, /* header reported; payload bytes pending (END once done == payload_len) */
  ST_ERROR,   /* sticky error */
};

uint16_t ws_err_close_code(int err) {
  switch (err) {
  case EG_EPROTO:
    return WS_CLOSE_PROTOCOL;
  case EG_ETOOBIG:
    return WS_CLOSE_TOO_BIG;
  case EG_EUTF8:
    return WS_CLOSE_INVALID_DATA;
  default:
    return WS_CLOSE_INTERNAL;
  }
}

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/* State: 0 at a boundary; otherwise bits 0-7 = continuation bytes still needed, bits 8-15
   = lowest allowed next byte, bits 16-23 = highest allowed next byte. UTF8_BAD is sticky. */
#define UTF8_BAD 0xffffffffu
#define UTF8_ST(need, lo, hi) ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)

static uint32_t utf8_run(uint32_t st, const uint8_t *p, size_t n) {
  size_t i = 0;
  if (st == UTF8_BAD)
    return st;
  while (i < n) {
    if (st == 0) {
      while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull)
          break;
        i += 8;
      }
      if (i >= n)
        break;
      uint8_t c = p[i++];
      if (c < 0x80)
        continue;
      if (c < 0xC2)
        return UTF8_BAD; /* continuation byte, or overlong 2-byte lead */
      if (c < 0xE0) {
        st = UTF8_ST(1, 0x80, 0xBF);
      } else if (c < 0xF0) {
        st = UTF8_ST(2, c == 0xE0 ? 0xA0 : 0x80, c == 0xED ? 0x9F : 0xBF);
      } else if (c < 0xF5) {
        st = UTF8_ST(3, c == 0xF0 ? 0x90 : 0x80, c == 0xF4 ? 0x8F : 0xBF);
      } else {
        return UTF8_BAD;
      }
    } else {
      uint8_t c = p[i++];
      uint32_t need = st & 0xff, lo = (st >> 8) & 0xff, hi = (st >> 16) & 0xff;
      if (c < lo || c > hi)
        return UTF8_BAD;
      need--;
      st = need ? UTF8_ST(need, 0x80, 0xBF) : 0;
    }
  }
  return st;
}

void ws_utf8_init(struct ws_utf8 *v) { v->state = 0; }

int ws_utf8_feed(struct ws_utf8 *v, const uint8_t *p, size_t n) {
  v->state = utf8_run(v->state, p, n);
  return v->state == UTF8_BAD ? EG_EUTF8 : 0;
}

bool ws_utf8_complete(const struct ws_utf8 *v) { return v->state == 0; }

bool ws_utf8_validate(const uint8_t *p, size_t n) { return utf8_run(0, p, n) == 0; }

/* ---- masking -------------------------------------------------------------------------- */

void ws_mask(uint8_t *data, size_t n, const uint8_t key[4], uint64_t offset) {
  uint8_t k[8];
  for (int i = 0; i < 8; i++)
    k[i] = key[(offset + (uint64_t)i) & 3];
  size_t i = 0;
  if (n >= 8) {
    uint64_t kw;
    memcpy(&kw, k, 8);
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      memcpy(&w, data + i, 8);
      w ^= kw;
      memcpy(data + i, &w, 8);
    }
  }
  for (; i < n; i++)
    data[i] ^= k[i & 7];
}

/* ---- frame parser --------------------------------------------------------------------- */

void ws_parser_init(struct ws_parser *p, enum ws_role role, uint64_t max_payload) {
  memset(p, 0, sizeof *p);
  p->role = role;
  p->max_payload = max_payload;
  p->state = ST_HDR0;
}

static int parser_fail(struct ws_parser *p, int err) {
  p->err = err;
  p->state = ST_ERROR;
  return err;
}

static bool is_control(uint8_t op) { return (op & 0x8) != 0; }

/* Checks a complete header; 0 or an error. */
static int header_done(struct ws_parser *p) {
  if (p->payload_len > p->max_payload)
    return EG_ETOOBIG;
  if (!is_control(p->opcode)) {
    /* Data frames: track the fragmentation sequence. */
    if (p->opcode == WS_OP_CONT) {
      if (!p->in_message)
        return EG_EPROTO;
    } else if (p->in_message) {
      return EG_EPROTO;
    }
    p->in_message = !p->fin;
  }
  return 0;
}

static void fill_event(const struct ws_parser *p, struct ws_frame_event *ev,
                       enum ws_event_type type) {
  ev->type = type;
  ev->opcode = p->opcode;
  ev->fin = p->fin;
  ev->payload_len = p->payload_len;
  ev->offset = p->done;
  ev->data = NULL;
  ev->len = 0;
}

int ws_parser_feed(struct ws_parser *p, uint8_t *b, size_t n, size_t *used,
                   struct ws_frame_event *ev) {
  size_t i = 0;
  int rc;
  *used = 0;
  if (p->state == ST_ERROR)
    return p->err;
  while (p->state != ST_PAYLOAD) {
    if (i >= n) {
      *used = i;
      return EG_EAGAIN;
    }
    uint8_t c = b[i++];
    switch (p->state) {
    case ST_HDR0:
      if (c & 0x70) { /* RSV1-3: no extension was negotiated */
        *used = i;
        return parser_fail(p, EG_EPROTO);
      }
      p->fin = (c & 0x80) != 0;
      p->opcode = c & 0x0f;
      if ((p->opcode > WS_OP_BINARY && p->opcode < WS_OP_CLOSE) || p->opcode > WS_OP_PONG ||
          (is_control(p->opcode) && !p->fin)) {
        *used = i;
        return parser_fail(p, EG_EPROTO);
      }
      p->state = ST_HDR1;
      break;
    case ST_HDR1:
      p->masked = (c & 0x80) != 0;
      if (p->masked != (p->role == WS_ROLE_SERVER)) {
        *used = i;
        return parser_fail(p, EG_EPROTO);
      }
      p->payload_len = c & 0x7f;
      p->done = 0;
      if (is_control(p->opcode) && p->payload_len > WS_MAX_CONTROL_PAYLOAD) {
        *used = i;
        return parser_fail(p, EG_EPROTO);
      }
      if (p->payload_len == 126) {
        p->payload_len = 0;
        p->need = 2;
        p->state = ST_LEN;
      } else if (p->payload_len == 127) {
        p->payload_len = 0;
        p->need = 8;
        p->state = ST_LEN;
      } else {
        p->need = 4;
        p->state = ST_MASK;
      }
      break;
    case ST_LEN:
      if (p->need == 8 && (c & 0x80)) { /* the 64-bit length's top bit must be 0 */
        *used = i;
        return parser_fail(p, EG_EPROTO);
      }
      p->payload_len = p->payload_len << 8 | c;
      if (--p->need == 0) {
        p->need = 4;
        p->state = ST_MASK;
      }
      break;
    case ST_MASK:
      p->mask[4 - p->need] = c;
      p->need--;
      break;
    }
    if (p->state == ST_MASK && (!p->masked || p->need == 0)) {
      /* The header is complete (an unmasked frame has no key to read). */
      rc = header_done(p);
      *used = i;
      if (rc)
        return parser_fail(p, rc);
      p->state = ST_PAYLOAD;
      fill_event(p, ev, WS_EV_HEADER);
      return 0;
    }
  }
  /* ST_PAYLOAD */
  uint64_t left = p->payload_len - p->done;
  if (left == 0) {
    fill_event(p, ev, WS_EV_END);
    p->state = ST_HDR0;
    *used = 0;
    return 0;
  }
  if (n == 0) {
    *used = 0;
    return EG_EAGAIN;
  }
  size_t take = left < (uint64_t)n ? (size_t)left : n;
  if (p->masked)
    ws_mask(b, take, p->mask, p->done);
  fill_event(p, ev, WS_EV_PAYLOAD);
  ev->data = b;
  ev->len = take;
  p->done += take;
  *used = take;
  return 0;
}

/* ---- close frames --------------------------------------------------------------------- */

static bool close_code_ok(unsigned code) {
  if (code < 1000 || code >= 5000)
    return false;
  if (code >= 1004 && code <= 1006)
    return false;
  if (code >= 1015 && code <= 2999)
    return false;
  return true;
}

int ws_close_parse(const uint8_t *p, size_t n, uint16_t *code, const uint8_t **reason,
                   size_t *reason_len) {
  *reason = (const uint8_t *)"";
  *reason_len = 0;
  if (n == 0) {
    *code = WS_CLOSE_NO_STATUS;
    return 0;
  }
  if (n == 1)
    return EG_EPROTO;
  unsigned c = (unsigned)p[0] << 8 | p[1];
  if (!close_code_ok(c))
    return EG_EPROTO;
  if (!ws_utf8_validate(p + 2, n - 2))
    return EG_EUTF8;
  *code = (uint16_t)c;
  *reason = p + 2;
  *reason_len = n - 2;
  return 0;
}

/* ---- message assembler ---------------------------------------------------------------- */

static const uint8_t empty_payload[1] = {0};

void ws_assembler_init(struct ws_assembler *a, enum ws_role role, size_t max_frame,
                       size_t max_message) {
  memset(a, 0, sizeof *a);
  ws_parser_init(&a->parser, role, max_frame);
  a->max_message = max_message;
  buf_init(&a->msg, max_message);
  ws_utf8_init(&a->utf8);
}

void ws_assembler_free(struct ws_assembler *a) { buf_free(&a->msg); }

static int asm_fail(struct ws_assembler *a, int err) {
  a->err = err;
  return err;
}

int ws_assembler_feed(struct ws_assembler *a, uint8_t *b, size_t n, size_t *used,
                      struct ws_message *msg) {
  size_t off = 0, u;
  struct ws_frame_event ev;
  int rc;
  *used = 0;
  if (a->err)
    return a->err;
  for (;;) {
    rc = ws_parser_feed(&a->parser, b + off, n - off, &u, &ev);
    off += u;
    *used = off;
    if (rc == EG_EAGAIN)
      return EG_EAGAIN;
    if (rc < 0)
      return asm_fail(a, rc);
    bool control = is_control(ev.opcode);
    switch (ev.type) {
    case WS_EV_HEADER:
      if (control) {
        a->ctl_len = 0;
        break;
      }
      if (ev.opcode != WS_OP_CONT) {
        a->msg_opcode = ev.opcode;
        buf_reset(&a->msg);
        ws_utf8_init(&a->utf8);
        a->direct_data = NULL;
      }
      if (ev.payload_len > a->max_message - a->msg.len)
        return asm_fail(a, EG_ETOOBIG);
      /* A whole single-frame message inside b: hand it out in place. */
      a->direct = ev.opcode != WS_OP_CONT && ev.fin && ev.payload_len <= n - off;
      break;
    case WS_EV_PAYLOAD:
      if (control) {
        memcpy(a->ctl + a->ctl_len, ev.data, ev.len);
        a->ctl_len += ev.len;
        break;
      }
      if (a->msg_opcode == WS_OP_TEXT && ws_utf8_feed(&a->utf8, ev.data, ev.len) != 0)
        return asm_fail(a, EG_EUTF8);
      if (a->direct) {
        a->direct_data = ev.data; /* the whole payload, in one event */
      } else if (buf_append(&a->msg, ev.data, ev.len) != 0) {
        return asm_fail(a, EG_ETOOBIG);
      }
      break;
    case WS_EV_END:
      memset(msg, 0, sizeof *msg);
      if (control) {
        msg->opcode = ev.opcode;
        msg->data = a->ctl_len ? a->ctl : empty_payload;
        msg->len = a->ctl_len;
        if (ev.opcode == WS_OP_CLOSE) {
          rc = ws_close_parse(a->ctl, a->ctl_len, &msg->close_code, &msg->reason,
                              &msg->reason_len);
          if (rc)
            return asm_fail(a, rc);
        }
        return 0;
      }
      if (!ev.fin)
        break; /* wait for the continuation frames */
      if (a->msg_opcode == WS_OP_TEXT && !ws_utf8_complete(&a->utf8))
        return asm_fail(a, EG_EUTF8);
      msg->opcode = a->msg_opcode;
      if (a->direct) {
        msg->data = a->direct_data ? a->direct_data : empty_payload;
        msg->len = (size_t)ev.payload_len;
      } else {
        msg->data = a->msg.len ? a->msg.data : empty_payload;
        msg->len = a->msg.len;
      }
      a->msg_opcode = 0;
      a->direct = false;
      return 0;
    }
  }
}

/* ---- encoders ------------------------------------------------------------------------- */

size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], unsigned opcode, bool fin, uint64_t len,
                       const uint8_t *mask_key) {
  size_t k = 0;
  uint8_t mbit = mask_key ? 0x80 : 0;
  out[k++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
  if (len < 126) {
    out[k++] = (uint8_t)(mbit | len);
  } else if (len <= 0xffff) {
    out[k++] = mbit | 126;
    out[k++] = (uint8_t)(len >> 8);
    out[k++] = (uint8_t)len;
  } else {
    out[k++] = mbit | 127;
    for (int s = 56; s >= 0; s -= 8)
      out[k++] = (uint8_t)(len >> s);
  }
  if (mask_key) {
    memcpy(out + k, mask_key, 4);
    k += 4;
  }
  return k;
}

size_t ws_control_frame(uint8_t out[WS_MAX_CONTROL_FRAME], unsigned opcode,
                        const uint8_t *payload, size_t len, const uint8_t *mask_key) {
  if (len > WS_MAX_CONTROL_PAYLOAD ||
      (opcode != WS_OP_CLOSE && opcode != WS_OP_PING && opcode != WS_OP_PONG))
    return 0;
  size_t h = ws_frame_header(out, opcode, true, len, mask_key);
  if (len)
    memcpy(out + h, payload, len);
  if (mask_key)
    ws_mask(out + h, len, mask_key, 0);
  return h + len;
}

size_t ws_close_frame(uint8_t out[WS_MAX_CONTROL_FRAME], uint16_t code, const char *reason,
                      size_t reason_len, const uint8_t *mask_key) {
  uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
  size_t len = 0;
  if (code != 0) {
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (reason == NULL)
      reason_len = 0;
    if (reason_len > WS_MAX_CONTROL_PAYLOAD - 2) {
      reason_len = WS_MAX_CONTROL_PAYLOAD - 2;
      /* Do not cut a UTF-8 sequence: back up over continuation bytes to its lead byte. */
      while (reason_len > 0 && ((uint8_t)reason[reason_len] & 0xC0) == 0x80)
        reason_len--;
    }
    if (reason_len)
      memcpy(payload + 2, reason, reason_len);
    len = 2 + reason_len;
  }
  return ws_control_frame(out, WS_OP_CLOSE, payload, len, mask_key);
}

/* ---- handshake ------------------------------------------------------------------------ */

int ws_accept_key(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  uint8_t raw[24];
  size_t raw_len;
  if (key == NULL || len != 24 || key[22] != '=' || key[23] != '=')
    return EG_EINVAL;
  if (eio_base64_decode(key, len, raw, &raw_len) != 0 || raw_len != 16)
    return EG_EINVAL;
  char cat[24 + sizeof guid - 1];
  memcpy(cat, key, 24);
  memcpy(cat + 24, guid, sizeof guid - 1);
  uint8_t digest[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)cat, sizeof cat, digest);
  eio_base64_encode(digest, sizeof digest, out);
  out[WS_ACCEPT_LEN] = '\0';
  return 0;
}
