/*
 * proto/eio: Engine.IO protocol v4 packets, as a pure codec (no sockets, no loop, no
 * sessions: those are src/eio).
 *
 * Wire format (https://socket.io/docs/v4/engine-io-protocol/)
 *   Packet types: 0 open, 1 close, 2 ping, 3 pong, 4 message, 5 upgrade, 6 noop.
 *   - WebSocket text frame   = one packet: "<type digit><data>"     e.g. "4hello", "2probe"
 *   - WebSocket binary frame = one binary MESSAGE packet, the frame payload is the data
 *     (no type byte).
 *   - HTTP long-polling payload (GET response body, POST request body) = packets joined by
 *     the record separator 0x1e; a text packet is "<type digit><data>", a binary message
 *     is "b<base64 of the data>".                 e.g. "4hello\x1e4€\x1ebAQIDBA=="
 *   The open packet's data is JSON:
 *   {"sid":"...","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,
 *    "maxPayload":1000000}
 *
 * Decoders hand out slices into the caller's buffer (data/len); nothing is allocated.
 * Binary packets of a polling payload are base64-decoded IN PLACE (decoding only shrinks),
 * which is why those decoders take a non-const buffer. Encoders append to a capped
 * struct buf (base.h) or write a one-byte prefix for writev.
 *
 * Errors: 0, EG_EAGAIN (need more input), EG_EPROTO (malformed), EG_ETOOBIG (a limit),
 * EG_EINVAL (bad argument to an encoder). The payload decoder's errors are sticky.
 * Threads: no global state; any thread.
 */
#ifndef ENGRAM_PROTO_EIO_H
#define ENGRAM_PROTO_EIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

enum eio_type {
  EIO_OPEN = 0,
  EIO_CLOSE = 1,
  EIO_PING = 2,
  EIO_PONG = 3,
  EIO_MESSAGE = 4,
  EIO_UPGRADE = 5,
  EIO_NOOP = 6,
};

#define EIO_RECORD_SEP 0x1e

struct eio_packet {
  enum eio_type type;
  bool binary;         /* binary MESSAGE (WS binary frame, or "b..." in a polling payload) */
  const uint8_t *data; /* points into the decoder's input buffer; may be NULL when len 0 */
  size_t len;
};

/* The ASCII digit of a packet type ('0'..'6'). */
static inline uint8_t eio_type_char(enum eio_type t) { return (uint8_t)('0' + (int)t); }

/* ---- WebSocket transport ----------------------------------------------------------------- */

/* Decodes a WebSocket text frame's payload (already UTF-8-checked by the ws layer) as one
   packet: 0 with *pkt (data = b + 1), EG_EPROTO when empty or the type is not 0-6. */
EG_WUR int eio_decode_ws_text(const uint8_t *b, size_t n, struct eio_packet *pkt);
/* A WebSocket binary frame's payload is one binary MESSAGE: always 0. */
EG_WUR int eio_decode_ws_binary(const uint8_t *b, size_t n, struct eio_packet *pkt);

/* For sending over WebSocket with writev and no copy: a text packet goes out as a TEXT
   frame whose payload is [prefix][data] where the prefix is the 1-byte type digit; a
   binary packet goes out as a BINARY frame with no prefix. Writes the prefix to out and
   returns its length (1 for text, 0 for binary). The frame's payload length is
   prefix length + pkt->len; the opcode is WS_OP_BINARY if pkt->binary, else WS_OP_TEXT. */
size_t eio_ws_prefix(const struct eio_packet *pkt, uint8_t out[1]);

/* ---- HTTP long-polling transport ---------------------------------------------------------- */

/* Splits a polling payload (a POST body) into packets.
   Limits: max_packets packets per payload, max_payload bytes of payload in all (the
   body size, counted as consumed; the HTTP layer should cap the body too). */
struct eio_payload_decoder {
  size_t max_packets;
  size_t max_payload;
  size_t packets;  /* packets returned so far */
  size_t consumed; /* bytes consumed so far */
  int err;         /* sticky */
  bool after_sep;  /* private: the last packet ended in a separator */
};

void eio_payload_decoder_init(struct eio_payload_decoder *d, size_t max_packets,
                              size_t max_payload);

/* Feeds b[0..n), the unconsumed part of the body received so far; `final` is true when
   b ends where the body ends. Returns:
     0          *pkt is the next packet, *used = bytes consumed (the packet and its
                separator). A binary packet was base64-decoded in place: pkt->data points
                into b. Call again with b + *used.
     EG_EAGAIN  no complete packet in b: if !final, keep b[*used..n) (*used is 0 here),
                append more body bytes after it and call again; if final, the payload is
                done (every packet was returned).
     EG_EPROTO  malformed: empty payload, empty packet (e.g. a trailing separator), a
                type that is not 0-6, bad base64. Sticky.
     EG_ETOOBIG more than max_packets packets or max_payload bytes. Sticky.
   Text packet data is not UTF-8-checked here (the HTTP layer decides what the body's
   charset rules are; Socket.IO JSON is checked by jansson later). */
EG_WUR int eio_payload_decode(struct eio_payload_decoder *d, uint8_t *b, size_t n, bool final,
                              size_t *used, struct eio_packet *pkt);

/* Appends one packet to a polling payload being built in out, with a separator before it
   when out is not empty (so out must hold only this payload). Binary packets are written
   as "b" + base64. EG_ETOOBIG when out's cap would be passed (out is then unchanged). */
EG_WUR int eio_payload_append(struct buf *out, const struct eio_packet *pkt);

/* Appends one packet as text, "<type digit><data>" (binary: "b<base64>"), without any
   separator: the form of a single packet (e.g. a polling response of one packet). */
EG_WUR int eio_packet_encode(struct buf *out, const struct eio_packet *pkt);

/* ---- base64 (standard alphabet, '=' padding) --------------------------------------------- */

/* Length of the base64 text for n bytes (with padding), without a NUL. */
static inline size_t eio_base64_len(size_t n) { return (n + 2) / 3 * 4; }
/* Writes eio_base64_len(n) characters to out (no NUL). */
void eio_base64_encode(const uint8_t *in, size_t n, char *out);
/* Decodes in[0..n) into out (out may equal in: decoding in place is safe), *out_len bytes.
   Accepts padded and unpadded text; rejects other characters, misplaced '=', a length of
   4k+1, and non-zero unused bits. Returns 0 or EG_EPROTO. out needs n / 4 * 3 + 2 bytes. */
EG_WUR int eio_base64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len);

/* ---- handshake ---------------------------------------------------------------------------- */

#define EIO_SID_LEN 20
/* A new session id: 20 characters of URL-safe base64 from 15 CSPRNG bytes, plus a NUL. */
void eio_sid_new(char out[EIO_SID_LEN + 1]);

/* Appends the open packet's JSON (not the "0" type digit) to out:
   {"sid":"<sid>","upgrades":["websocket"],"pingInterval":N,"pingTimeout":N,"maxPayload":N}
   ("upgrades":[] when upgrade_websocket is false, e.g. already on WebSocket). sid is
   JSON-escaped. 0 or EG_ETOOBIG. */
EG_WUR int eio_open_json(struct buf *out, const char *sid, bool upgrade_websocket,
                         uint32_t ping_interval_ms, uint32_t ping_timeout_ms,
                         uint32_t max_payload);

#endif
