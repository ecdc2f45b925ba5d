/* Engine.IO v4 packet codec (see eio.h). */
#include <string.h>

#include "proto/eio.h"

/* ---- base64 --------------------------------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0-63 for alphabet characters, -1 otherwise. */
static const int8_t b64_value[256] = {
    ['A'] = 0,  ['B'] = 1,  ['C'] = 2,  ['D'] = 3,  ['E'] = 4,  ['F'] = 5,  ['G'] = 6,
    ['H'] = 7,  ['I'] = 8,  ['J'] = 9,  ['K'] = 10, ['L'] = 11, ['M'] = 12, ['N'] = 13,
    ['O'] = 14, ['P'] = 15, ['Q'] = 16, ['R'] = 17, ['S'] = 18, ['T'] = 19, ['U'] = 20,
    ['V'] = 21, ['W'] = 22, ['X'] = 23, ['Y'] = 24, ['Z'] = 25, ['a'] = 26, ['b'] = 27,
    ['c'] = 28, ['d'] = 29, ['e'] = 30, ['f'] = 31, ['g'] = 32, ['h'] = 33, ['i'] = 34,
    ['j'] = 35, ['k'] = 36, ['l'] = 37, ['m'] = 38, ['n'] = 39, ['o'] = 40, ['p'] = 41,
    ['q'] = 42, ['r'] = 43, ['s'] = 44, ['t'] = 45, ['u'] = 46, ['v'] = 47, ['w'] = 48,
    ['x'] = 49, ['y'] = 50, ['z'] = 51, ['0'] = 52, ['1'] = 53, ['2'] = 54, ['3'] = 55,
    ['4'] = 56, ['5'] = 57, ['6'] = 58, ['7'] = 59, ['8'] = 60, ['9'] = 61, ['+'] = 62,
    ['/'] = 63,
};

/* The table above marks non-alphabet bytes with 0 like 'A'; this tells them apart. */
static int b64_val(uint8_t c) {
  if (c == 'A')
    return 0;
  int8_t v = b64_value[c];
  return v == 0 ? -1 : v;
}

static void b64_encode_with(const char *alpha, const uint8_t *in, size_t n, char *out,
                            bool pad) {
  size_t i = 0, o = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = alpha[v >> 18];
    out[o++] = alpha[(v >> 12) & 63];
    out[o++] = alpha[(v >> 6) & 63];
    out[o++] = alpha[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = alpha[v >> 18];
    out[o++] = alpha[(v >> 12) & 63];
    if (pad) {
      out[o++] = '=';
      out[o++] = '=';
    }
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = alpha[v >> 18];
    out[o++] = alpha[(v >> 12) & 63];
    out[o++] = alpha[(v >> 6) & 63];
    if (pad)
      out[o++] = '=';
  }
}

void eio_base64_encode(const uint8_t *in, size_t n, char *out) {
  b64_encode_with(b64_alphabet, in, n, out, true);
}

int eio_base64_decode(const char *in_, size_t n, uint8_t *out, size_t *out_len) {
  const uint8_t *in = (const uint8_t *)in_;
  size_t o = 0;
  *out_len = 0;
  /* Strip padding: at most two '=' and only when they complete a 4-character group. */
  if (n > 0 && in[n - 1] == '=') {
    if (n % 4 != 0)
      return EG_EPROTO;
    n--;
    if (in[n - 1] == '=')
      n--;
  }
  if (n % 4 == 1)
    return EG_EPROTO;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    int a = b64_val(in[i]), b = b64_val(in[i + 1]), c = b64_val(in[i + 2]),
        d = b64_val(in[i + 3]);
    if ((a | b | c | d) < 0)
      return EG_EPROTO;
    uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
    out[o++] = (uint8_t)(v >> 16);
    out[o++] = (uint8_t)(v >> 8);
    out[o++] = (uint8_t)v;
  }
  size_t rest = n - i;
  if (rest >= 2) {
    int a = b64_val(in[i]), b = b64_val(in[i + 1]);
    int c = rest == 3 ? b64_val(in[i + 2]) : 0;
    if ((a | b | c) < 0)
      return EG_EPROTO;
    uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
    /* Unused low bits must be zero (canonical encoding). */
    if ((rest == 2 && (v & 0xffff)) || (rest == 3 && (v & 0xff)))
      return EG_EPROTO;
    out[o++] = (uint8_t)(v >> 16);
    if (rest == 3)
      out[o++] = (uint8_t)(v >> 8);
  }
  *out_len = o;
  return 0;
}

/* ---- WebSocket transport ------------------------------------------------------------ */

static bool type_ok(uint8_t c) { return c >= '0' && c <= '6'; }

int eio_decode_ws_text(const uint8_t *b, size_t n, struct eio_packet *pkt) {
  if (n == 0 || !type_ok(b[0]))
    return EG_EPROTO;
  pkt->type = (enum eio_type)(b[0] - '0');
  pkt->binary = false;
  pkt->data = b + 1;
  pkt->len = n - 1;
  return 0;
}

int eio_decode_ws_binary(const uint8_t *b, size_t n, struct eio_packet *pkt) {
  pkt->type = EIO_MESSAGE;
  pkt->binary = true;
  pkt->data = b;
  pkt->len = n;
  return 0;
}

size_t eio_ws_prefix(const struct eio_packet *pkt, uint8_t out[1]) {
  if (pkt->binary)
    return 0;
  out[0] = eio_type_char(pkt->type);
  return 1;
}

/* ---- polling payloads ------------------------------------------------------------------- */

void eio_payload_decoder_init(struct eio_payload_decoder *d, size_t max_packets,
                              size_t max_payload) {
  memset(d, 0, sizeof *d);
  d->max_packets = max_packets;
  d->max_payload = max_payload;
}

static int payload_fail(struct eio_payload_decoder *d, int err) {
  d->err = err;
  return err;
}

int eio_payload_decode(struct eio_payload_decoder *d, uint8_t *b, size_t n, bool final,
                       size_t *used, struct eio_packet *pkt) {
  *used = 0;
  if (d->err)
    return d->err;
  const uint8_t *sep = n ? memchr(b, EIO_RECORD_SEP, n) : NULL;
  size_t len, take;
  if (sep) {
    len = (size_t)(sep - b);
    take = len + 1;
  } else if (final) {
    if (n == 0) {
      /* The end: an empty payload, or one ending in a separator, is malformed. */
      if (d->packets == 0 || d->after_sep)
        return payload_fail(d, EG_EPROTO);
      return EG_EAGAIN;
    }
    len = take = n;
  } else {
    if (n > d->max_payload - d->consumed)
      return payload_fail(d, EG_ETOOBIG);
    return EG_EAGAIN;
  }
  if (take > d->max_payload - d->consumed || d->packets >= d->max_packets)
    return payload_fail(d, EG_ETOOBIG);
  if (len == 0)
    return payload_fail(d, EG_EPROTO);
  if (b[0] == 'b') {
    size_t out_len;
    if (eio_base64_decode((const char *)b + 1, len - 1, b + 1, &out_len) != 0)
      return payload_fail(d, EG_EPROTO);
    pkt->type = EIO_MESSAGE;
    pkt->binary = true;
    pkt->data = b + 1;
    pkt->len = out_len;
  } else {
    if (!type_ok(b[0]))
      return payload_fail(d, EG_EPROTO);
    pkt->type = (enum eio_type)(b[0] - '0');
    pkt->binary = false;
    pkt->data = b + 1;
    pkt->len = len - 1;
  }
  d->packets++;
  d->consumed += take;
  d->after_sep = sep != NULL;
  *used = take;
  return 0;
}

static size_t packet_text_len(const struct eio_packet *pkt) {
  return 1 + (pkt->binary ? eio_base64_len(pkt->len) : pkt->len);
}

/* Writes the packet into room reserved by the caller. */
static void packet_write(struct buf *out, const struct eio_packet *pkt) {
  uint8_t *w = out->data + out->len;
  if (pkt->binary) {
    w[0] = 'b';
    eio_base64_encode(pkt->data, pkt->len, (char *)w + 1);
  } else {
    w[0] = eio_type_char(pkt->type);
    if (pkt->len)
      memcpy(w + 1, pkt->data, pkt->len);
  }
  out->len += packet_text_len(pkt);
  out->data[out->len] = '\0';
}

int eio_packet_encode(struct buf *out, const struct eio_packet *pkt) {
  if (pkt->binary && pkt->type != EIO_MESSAGE)
    return EG_EINVAL;
  size_t need = packet_text_len(pkt);
  int rc = buf_reserve(out, need);
  if (rc)
    return rc;
  packet_write(out, pkt);
  return 0;
}

int eio_payload_append(struct buf *out, const struct eio_packet *pkt) {
  if (pkt->binary && pkt->type != EIO_MESSAGE)
    return EG_EINVAL;
  size_t sep = out->len ? 1 : 0;
  int rc = buf_reserve(out, sep + packet_text_len(pkt));
  if (rc)
    return rc;
  if (sep)
    out->data[out->len++] = EIO_RECORD_SEP;
  packet_write(out, pkt);
  return 0;
}

/* ---- handshake ------------------------------------------------------------------------ */

void eio_sid_new(char out[EIO_SID_LEN + 1]) {
  static const char url_alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  uint8_t raw[15];
  rand_bytes(raw, sizeof raw);
  b64_encode_with(url_alphabet, raw, sizeof raw, out, false);
  out[EIO_SID_LEN] = '\0';
}

static int append_json_string(struct buf *out, const char *s) {
  int rc = buf_append_byte(out, '"');
  for (; rc == 0 && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      rc = buf_printf(out, "\\%c", c);
    else if (c < 0x20)
      rc = buf_printf(out, "\\u%04x", c);
    else
      rc = buf_append_byte(out, c);
  }
  return rc ? rc : buf_append_byte(out, '"');
}

int eio_open_json(struct buf *out, const char *sid, bool upgrade_websocket,
                  uint32_t ping_interval_ms, uint32_t ping_timeout_ms, uint32_t max_payload) {
  size_t start = out->len;
  int rc = buf_append_str(out, "{\"sid\":");
  if (rc == 0)
    rc = append_json_string(out, sid);
  if (rc == 0)
    rc = buf_printf(out,
                    ",\"upgrades\":[%s],\"pingInterval\":%u,\"pingTimeout\":%u,"
                    "\"maxPayload\":%u}",
                    upgrade_websocket ? "\"websocket\"" : "", ping_interval_ms,
                    ping_timeout_ms, max_payload);
  if (rc) {
    out->len = start;
    if (out->data)
      out->data[start] = '\0';
  }
  return rc;
}
