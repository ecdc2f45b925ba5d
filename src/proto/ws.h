/*
 * proto/ws: RFC 6455 WebSocket framing, as a pure codec (no sockets, no loop).
 *
 * What it owns
 *   - struct ws_parser: an incremental frame parser. Feed it any bytes as they come off
 *     the socket; it reports frame headers, payload chunks (unmasked in place, never
 *     copied) and frame ends. It checks everything RFC 6455 section 5 asks of one frame
 *     plus the fragmentation sequence (continuation without a start, a new data frame
 *     inside a fragmented message).
 *   - struct ws_assembler: on top of the parser, whole messages: joins fragments (control
 *     frames may arrive between them), caps the message size, validates UTF-8 of text
 *     messages incrementally across fragments, parses close frames. A single-frame message
 *     that lies whole inside the fed buffer is handed out in place (zero copy).
 *   - Encoders that write a frame header into a small caller array (so the payload can go
 *     out with writev, without a copy), plus close/ping/pong frame builders.
 *   - The handshake helper ws_accept_key() and the UTF-8 validator.
 *
 * Threads: none of this touches global state; a parser/assembler belongs to one
 * connection and is used from one thread at a time.
 *
 * Errors (all functions returning int): 0, EG_EAGAIN (need more input), or a negative
 * EG_E* code. Parser and assembler errors are sticky: once feed returned an error, every
 * later call returns the same error without reading input. ws_err_close_code() maps an
 * error to the close status to send before closing the TCP connection:
 *   EG_EPROTO -> 1002 (protocol error)     EG_ETOOBIG -> 1009 (message too big)
 *   EG_EUTF8  -> 1007 (invalid payload)    anything else -> 1011 (internal error)
 *
 * Memory: the parser never allocates. The assembler allocates one capped buffer for
 * fragmented messages (never more than max_message bytes); ws_assembler_free() releases it.
 *
 * Roles: a server requires every received frame to be masked (RFC 6455 5.1) and sends
 * unmasked frames; a client (our benchmark load generator) is the reverse.
 */
#ifndef ENGRAM_PROTO_WS_H
#define ENGRAM_PROTO_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- constants ------------------------------------------------------------------------ */

enum ws_opcode {
  WS_OP_CONT = 0x0,
  WS_OP_TEXT = 0x1,
  WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8,
  WS_OP_PING = 0x9,
  WS_OP_PONG = 0xA,
};

enum ws_close_code {
  WS_CLOSE_NORMAL = 1000,
  WS_CLOSE_GOING_AWAY = 1001,
  WS_CLOSE_PROTOCOL = 1002,
  WS_CLOSE_UNSUPPORTED = 1003,
  WS_CLOSE_NO_STATUS = 1005, /* never sent; reported when a close frame has no payload */
  WS_CLOSE_ABNORMAL = 1006,  /* never sent */
  WS_CLOSE_INVALID_DATA = 1007,
  WS_CLOSE_POLICY = 1008,
  WS_CLOSE_TOO_BIG = 1009,
  WS_CLOSE_EXTENSION = 1010,
  WS_CLOSE_INTERNAL = 1011,
};

enum ws_role {
  WS_ROLE_SERVER, /* receives masked frames (rejects unmasked with 1002) */
  WS_ROLE_CLIENT, /* receives unmasked frames (rejects masked with 1002) */
};

#define WS_MAX_HEADER 14          /* 2 + 8 (64-bit length) + 4 (mask key) */
#define WS_MAX_CONTROL_PAYLOAD 125
#define WS_MAX_CONTROL_FRAME (WS_MAX_HEADER + WS_MAX_CONTROL_PAYLOAD)
#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

/* Maps a parser/assembler error to the close status to send (see the top of this file). */
uint16_t ws_err_close_code(int err);

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/* Incremental UTF-8 validator (RFC 3629: no overlong forms, no surrogates, nothing above
   U+10FFFF). A sequence may be split across any number of feeds. */
struct ws_utf8 {
  uint32_t state; /* 0 = at a character boundary; private otherwise */
};

void ws_utf8_init(struct ws_utf8 *v);
/* 0, or EG_EUTF8 as soon as the bytes so far cannot start any valid UTF-8 text. Sticky. */
EG_WUR int ws_utf8_feed(struct ws_utf8 *v, const uint8_t *p, size_t n);
/* True when the text fed so far ends at a character boundary (no truncated sequence). */
bool ws_utf8_complete(const struct ws_utf8 *v);
/* One-shot: true when p[0..n) is complete, valid UTF-8. */
bool ws_utf8_validate(const uint8_t *p, size_t n);

/* ---- frame parser ----------------------------------------------------------------------- */

enum ws_event_type {
  WS_EV_HEADER,  /* a frame header is complete: opcode, fin, payload_len are set */
  WS_EV_PAYLOAD, /* data/len: the next chunk of the payload (never empty), unmasked */
  WS_EV_END,     /* the frame's payload is complete (also sent for empty payloads) */
};

struct ws_frame_event {
  enum ws_event_type type;
  uint8_t opcode;       /* enum ws_opcode of the current frame (all events) */
  bool fin;             /* FIN bit of the current frame (all events) */
  uint64_t payload_len; /* whole payload length of the current frame (all events) */
  uint64_t offset;      /* WS_EV_PAYLOAD: offset of data within the frame payload */
  uint8_t *data;        /* WS_EV_PAYLOAD: points into the buffer given to feed */
  size_t len;
};

/* Parser states (private; listed so the struct can live inline in a connection):
     HDR0      first byte: FIN, RSV1-3, opcode
     HDR1      second byte: MASK, 7-bit length
     LEN       2 or 8 extended length bytes, big-endian
     MASK      4 mask-key bytes
     PAYLOAD   payload bytes (unmasked in place as they pass)
     ERROR     sticky error in err */
struct ws_parser {
  uint64_t max_payload; /* cap on one frame's payload; larger -> EG_ETOOBIG (1009) */
  enum ws_role role;
  int err;         /* sticky error, 0 when none */
  uint8_t state;   /* private */
  uint8_t need;    /* private: header bytes still to read in LEN/MASK */
  uint8_t opcode;  /* current frame */
  bool fin;        /* current frame */
  bool masked;     /* current frame */
  bool in_message; /* a fragmented data message is open (expecting continuations) */
  uint8_t mask[4];
  uint64_t payload_len; /* current frame */
  uint64_t done;        /* payload bytes of the current frame already reported */
};

/* Sets up a parser. max_payload caps a single frame's payload (a larger announced length
   fails at once with EG_ETOOBIG, before any payload is read). */
void ws_parser_init(struct ws_parser *p, enum ws_role role, uint64_t max_payload);

/* Feeds b[0..n). Reads at most up to the next event and returns:
     0          *ev is set, *used = bytes consumed from b (call again with b + *used,
                even when nothing is left: WS_EV_END consumes no bytes and may be due);
     EG_EAGAIN  all n bytes consumed (*used == n), no event yet: feed more when it comes.
                This is the only "done" signal: loop until EG_EAGAIN or an error;
     <0         sticky error (*used = bytes consumed before the error): send a close frame
                with ws_err_close_code(err) and close.
   Payload bytes are unmasked IN PLACE in b (that is why b is not const); WS_EV_PAYLOAD's
   data points into b and stays valid as long as b does. Checks: RSV bits must be 0 (no
   extensions are negotiated); opcode must be known; control frames must have FIN set and
   payload <= 125; the 64-bit length must have its top bit clear; masking as the role
   demands; CONT only inside a fragmented message; TEXT/BINARY not inside one. Non-minimal
   length encodings are accepted (RFC 6455 allows a receiver to). */
EG_WUR int ws_parser_feed(struct ws_parser *p, uint8_t *b, size_t n, size_t *used,
                          struct ws_frame_event *ev);

/* ---- message assembler ------------------------------------------------------------------ */

struct ws_message {
  uint8_t opcode;     /* WS_OP_TEXT, WS_OP_BINARY, WS_OP_CLOSE, WS_OP_PING or WS_OP_PONG */
  const uint8_t *data; /* the whole (unfragmented, unmasked) payload; see feed for lifetime */
  size_t len;
  /* WS_OP_CLOSE only: the status (WS_CLOSE_NO_STATUS when the frame had no payload) and
     the reason (valid UTF-8, data/len of the reason text, may be empty). */
  uint16_t close_code;
  const uint8_t *reason;
  size_t reason_len;
};

struct ws_assembler {
  struct ws_parser parser;
  size_t max_message; /* cap on a whole (reassembled) data message */
  int err;            /* sticky */
  struct buf msg;     /* fragments collected so far (capped at max_message) */
  uint8_t msg_opcode; /* opcode of the message being collected (TEXT/BINARY), 0 if none */
  bool direct;        /* private: current frame is handed out in place */
  const uint8_t *direct_data; /* private: its payload inside the fed buffer */
  struct ws_utf8 utf8;
  uint8_t ctl[WS_MAX_CONTROL_PAYLOAD]; /* a control frame's payload, when split */
  size_t ctl_len;
};

/* max_frame caps one frame's payload; max_message caps a whole message (fragments joined).
   Use the same value for both unless you have a reason not to. */
void ws_assembler_init(struct ws_assembler *a, enum ws_role role, size_t max_frame,
                       size_t max_message);
void ws_assembler_free(struct ws_assembler *a);

/* Feeds b[0..n) (unmasked in place). Returns:
     0          *msg is a complete message; *used = bytes consumed. msg->data points either
                into b (a single frame found whole in this call: zero copy) or into the
                assembler's own buffer; either way it is valid only until the next call
                to feed (or ws_assembler_free) and while b is unchanged. Call again with
                b + *used for the rest.
                A message is always returned by the call that consumes its last byte, so
                `while (pos < n)` loops are fine here (unlike with the bare parser).
     EG_EAGAIN  all n bytes consumed, no complete message yet. The assembler keeps what it
                needs (partial fragments are copied into its buffer), so the caller may
                reuse/compact b.
     <0         sticky error: EG_EPROTO (1002), EG_ETOOBIG (1009), EG_EUTF8 (1007).
                ws_err_close_code() gives the status to send.
   Text messages are checked for UTF-8 incrementally (a bad byte fails at once, without
   waiting for the end). Close frames are checked: a 1-byte payload, a status that may not
   be sent (<1000, 1004-1006, 1015, 1016-2999, >= 5000) -> EG_EPROTO; a reason that is not
   UTF-8 -> EG_EUTF8. Ping/pong/close are returned as messages too (a control frame may
   come between the fragments of a data message); answering pings is the caller's job. */
EG_WUR int ws_assembler_feed(struct ws_assembler *a, uint8_t *b, size_t n, size_t *used,
                             struct ws_message *msg);

/* Parses a close frame's payload (exposed for those who use the bare parser).
   0 with *code (WS_CLOSE_NO_STATUS when n == 0) and the reason slice; EG_EPROTO for a
   1-byte payload or a status that may not appear on the wire; EG_EUTF8 for a bad reason. */
EG_WUR int ws_close_parse(const uint8_t *p, size_t n, uint16_t *code, const uint8_t **reason,
                          size_t *reason_len);

/* ---- encoders --------------------------------------------------------------------------- */

/* Writes a frame header into out and returns its length (2..14). mask_key NULL means an
   unmasked frame (what a server sends); a client passes 4 random bytes and must then mask
   the payload with ws_mask(). opcode must be a valid enum ws_opcode (not checked). The
   shortest length encoding is used. */
size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], unsigned opcode, bool fin, uint64_t len,
                       const uint8_t *mask_key);

/* XORs data[0..n) with the mask key, as if data began at byte `offset` of the payload
   (so a payload can be masked in pieces). Its own inverse. */
void ws_mask(uint8_t *data, size_t n, const uint8_t key[4], uint64_t offset);

/* Builds a whole control frame (header + payload, masked when mask_key is given) in out
   and returns its length, or 0 when len > 125 or opcode is not a control opcode. */
size_t ws_control_frame(uint8_t out[WS_MAX_CONTROL_FRAME], unsigned opcode,
                        const uint8_t *payload, size_t len, const uint8_t *mask_key);

/* Builds a whole close frame with a status and a reason (truncated at a UTF-8 character
   boundary to fit the 125-byte limit) and returns its length. code 0 sends an empty close
   frame (no status, no reason). */
size_t ws_close_frame(uint8_t out[WS_MAX_CONTROL_FRAME], uint16_t code, const char *reason,
                      size_t reason_len, const uint8_t *mask_key);

/* ---- handshake ---------------------------------------------------------------------------- */

/* Computes Sec-WebSocket-Accept from the client's Sec-WebSocket-Key (already trimmed of
   surrounding spaces): base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
   Writes 28 characters and a NUL into out. Returns 0, or EG_EINVAL when the key is not
   the base64 form of 16 bytes (24 characters ending in "=="), as RFC 6455 4.2.1 asks. */
EG_WUR int ws_accept_key(const char *key, size_t len, char out[WS_ACCEPT_LEN + 1]);

#endif
