/*
 * proto/sio: Socket.IO protocol v5 packets, as a pure codec (no sockets, no sessions:
 * those are src/sio). Rules follow the reference socket.io-parser v4.
 *
 * Wire format (one Engine.IO MESSAGE carries one packet):
 *     <type>[<#attachments>-][<nsp>,][<ack id>][<JSON payload>]
 *   type: 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR, 5 BINARY_EVENT,
 *         6 BINARY_ACK. The namespace is written only when it is not "/".
 *   Examples:  2["hello",1]            3/admin,13["bar"]        0/admin,{"token":"123"}
 *              4{"message":"Not authorized"}     51-["hello",{"_placeholder":true,"num":0}]
 *   A BINARY_* packet announces N attachments; the next N Engine.IO binary messages are
 *   the buffers, and each {"_placeholder":true,"num":k} in the JSON stands for buffer k.
 *
 * Payload validity (decoder): CONNECT: an object, or absent. DISCONNECT: absent.
 *   EVENT/BINARY_EVENT: a non-empty array whose first element is a string (the event
 *   name; reserved names are the server's concern). ACK/BINARY_ACK: an array.
 *   CONNECT_ERROR: an object or a string, or absent. Namespace: starts with '/', at most
 *   SIO_NSP_MAX bytes, no NUL byte (it runs to the first ','). Ack id: decimal, at most
 *   2^53 - 1 (JavaScript's safe integers).
 *
 * Binary buffers inside jansson values ("bin nodes")
 *   A buffer is a JSON object with exactly one member whose key is SIO_BIN_KEY (it begins
 *   with the byte 0xff, which is not UTF-8, so no decoded JSON can ever produce it and
 *   jansson's checked setters refuse it) and whose value is a jansson string holding the
 *   raw bytes (made with json_stringn_nocheck; may contain NULs and invalid UTF-8).
 *   Make one with sio_bin_new(), test with sio_bin_is(), read with sio_bin_data().
 *   - The decoder replaces every placeholder of a BINARY_* packet by a bin node holding a
 *     copy of buffer k, so the application sees the buffers where the sender put them.
 *   - The encoder finds bin nodes anywhere in the value (arrays, objects, nested), writes
 *     {"_placeholder":true,"num":k} in their place, numbers them in depth-first order,
 *     switches EVENT->BINARY_EVENT and ACK->BINARY_ACK, and lists the attachments.
 *   So an echo server passes the decoded data straight back to the encoder and binary
 *   goes back as binary. Do not json_dumps() a value that holds bin nodes yourself (the
 *   bytes would be written raw); use sio_encode().
 *
 * Ownership: a decoded packet owns its json (json_decref via sio_packet_clear). Encoded
 * output owns its text (sio_encoded_free); its attachment slices point INTO the bin nodes
 * of the value that was encoded, so keep that value alive until they are written.
 *
 * Errors: 0, EG_EAGAIN (binary packet waiting for attachments), EG_EPROTO (malformed),
 * EG_ETOOBIG (a limit), EG_EINVAL (encoder given an invalid packet). Decoder errors are
 * sticky. Threads: no global state; any thread.
 */
#ifndef ENGRAM_PROTO_SIO_H
#define ENGRAM_PROTO_SIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/base.h"

enum sio_type {
  SIO_CONNECT = 0,
  SIO_DISCONNECT = 1,
  SIO_EVENT = 2,
  SIO_ACK = 3,
  SIO_CONNECT_ERROR = 4,
  SIO_BINARY_EVENT = 5,
  SIO_BINARY_ACK = 6,
};

#define SIO_NSP_MAX 255                  /* bytes of a namespace name */
#define SIO_NO_ID (-1)                   /* packet has no ack id */
#define SIO_MAX_ID 9007199254740991LL    /* 2^53 - 1 */
#define SIO_BIN_KEY "\xff" "sio-bin"     /* see "bin nodes" above */
#define SIO_BIN_KEY_LEN 8

/* Limits for decoding (all required; sio_limits_default() gives sane values). */
struct sio_limits {
  size_t max_packet;      /* bytes of a text packet (default 1000000, Engine.IO maxPayload) */
  size_t max_depth;       /* JSON nesting depth (default 32) */
  size_t max_attachments; /* binary attachments per packet (default 10) */
  size_t max_binary;      /* bytes of all attachments of a packet (default 1000000) */
};

struct sio_limits sio_limits_default(void);

struct sio_packet {
  enum sio_type type;
  size_t attachments;        /* BINARY_*: announced count (all received once decoded) */
  char nsp[SIO_NSP_MAX + 1]; /* NUL-terminated; "/" when the packet named none */
  size_t nsp_len;
  int64_t id;                /* ack id, or SIO_NO_ID */
  json_t *data;              /* owned payload, NULL when absent; bin nodes for buffers */
};

/* Releases p->data and leaves p empty (safe to call twice). */
void sio_packet_clear(struct sio_packet *p);

/* ---- bin nodes ------------------------------------------------------------------------ */

/* A new bin node (new reference) holding a copy of data[0..len). */
json_t *sio_bin_new(const void *data, size_t len);
/* True when v is a bin node. */
bool sio_bin_is(const json_t *v);
/* The bytes of a bin node (NULL and *len 0 if v is not one). Valid while v lives. */
const uint8_t *sio_bin_data(const json_t *v, size_t *len);
/* True when v holds a bin node anywhere (what decides BINARY_EVENT vs EVENT). */
bool sio_has_binary(const json_t *v);

/* ---- decoding ------------------------------------------------------------------------- */

/* One-shot decode of a text packet (no binary reconstruction: a BINARY_* packet comes
   back with its placeholders untouched and attachments set). Mostly for tests/fuzzing;
   servers use struct sio_decoder. 0 with *out filled (caller clears it), or an error
   (*out then holds nothing to free). */
EG_WUR int sio_decode_text(const char *b, size_t n, const struct sio_limits *lim,
                           struct sio_packet *out);

/* The per-connection decoder: text packets, then, for BINARY_* packets, their buffers.
   States: IDLE (expects a text packet) -> WAIT_BINARY (collecting N buffers) -> IDLE. */
struct sio_decoder {
  struct sio_limits lim;
  int err;                   /* sticky */
  struct sio_packet pending; /* BINARY_* header waiting for its buffers */
  bool waiting;
  size_t received;           /* buffers received for pending */
  size_t binary_bytes;       /* their total size */
  json_t *buffers;           /* array of bin nodes received so far */
};

void sio_decoder_init(struct sio_decoder *d, const struct sio_limits *lim);
void sio_decoder_free(struct sio_decoder *d);

/* Feeds the data of an Engine.IO text MESSAGE. Returns 0 with a complete packet in *out
   (caller owns it; sio_packet_clear), EG_EAGAIN when it was a BINARY_* header now waiting
   for its buffers (N >= 1; a BINARY_* packet announcing 0 attachments completes at once),
   or an error: EG_EPROTO (malformed, invalid payload, or a text packet while buffers were
   expected), EG_ETOOBIG (n > max_packet, too deep, too many attachments). */
EG_WUR int sio_decoder_feed_text(struct sio_decoder *d, const char *b, size_t n,
                                 struct sio_packet *out);

/* Feeds the data of an Engine.IO binary MESSAGE. Returns 0 with the completed packet in
   *out (placeholders replaced by bin nodes), EG_EAGAIN when more buffers are expected, or
   EG_EPROTO (no binary packet pending, or a placeholder whose num is out of range),
   EG_ETOOBIG (buffers larger than max_binary in all). The bytes are copied. */
EG_WUR int sio_decoder_feed_binary(struct sio_decoder *d, const uint8_t *b, size_t n,
                                   struct sio_packet *out);

/* ---- encoding ------------------------------------------------------------------------- */

struct sio_attachment {
  const uint8_t *data; /* points into a bin node of the encoded value */
  size_t len;
};

struct sio_encoded {
  char *text;  /* the packet text, NUL-terminated, xmalloc'd (see SIO_ENC_EIO_PREFIX) */
  size_t len;  /* bytes of text */
  size_t nattach;
  struct sio_attachment *attach; /* nattach entries (NULL when 0), xmalloc'd */
};

/* Flags for sio_encode. */
#define SIO_ENC_EIO_PREFIX 1u /* start text with '4' (Engine.IO MESSAGE), so text is a
                                 whole Engine.IO text packet for WS/polling */

/* Encodes a packet. nsp NULL means "/". id SIO_NO_ID for none. data may be NULL (no
   payload) and is not modified or consumed (borrowed). EVENT/ACK whose data holds bin
   nodes become BINARY_EVENT/BINARY_ACK with attachments; BINARY_* given without bin
   nodes are written as BINARY_* with 0 attachments. Checks the payload against the same
   rules as the decoder (EG_EINVAL otherwise) and the namespace (starts with '/', no ',',
   at most SIO_NSP_MAX bytes). A typical event costs one allocation (the text).
   Numbers: integers as jansson writes them; reals with 17 significant digits. */
EG_WUR int sio_encode(enum sio_type type, const char *nsp, int64_t id, const json_t *data,
                      unsigned flags, struct sio_encoded *out);
void sio_encoded_free(struct sio_encoded *e);

/* A real as sio_encode writes it (shortest form that reads back, JavaScript's exponent
   form, ".0" after integral values, "null" when not finite), NUL-terminated; returns its
   length. For callers that write JSON text themselves (sio_emit_raw). */
#define SIO_REAL_MAX 40
size_t sio_format_real(double v, char out[SIO_REAL_MAX]);

#endif
