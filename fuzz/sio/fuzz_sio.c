/*
 * libFuzzer target for src/proto/sio. The input is a Socket.IO text packet, optionally
 * followed by binary attachments: everything after the first '\n' is split at '\n' into
 * buffers fed to the decoder. Checks:
 *   - sio_decode_text and sio_decoder agree on the header and the payload;
 *   - every packet that decodes re-encodes (sio_encode), and the encoding decodes to the
 *     same type, namespace, id and payload (bin nodes included, via the attachments).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "proto/sio.h"

#define CHECK(c)                                                                            \
  do {                                                                                      \
    if (!(c)) {                                                                             \
      fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                \
      abort();                                                                              \
    }                                                                                       \
  } while (0)

static enum sio_type plain(enum sio_type t) {
  return t == SIO_BINARY_EVENT ? SIO_EVENT : t == SIO_BINARY_ACK ? SIO_ACK : t;
}

/* Encodes p and decodes the result (with its attachments); checks it is the same. */
static void round_trip(const struct sio_packet *p, const struct sio_limits *lim) {
  struct sio_encoded e;
  int rc = sio_encode(p->type, p->nsp, p->id, p->data, SIO_ENC_EIO_PREFIX, &e);
  CHECK(rc == 0);
  CHECK(e.text[0] == '4' && e.len == strlen(e.text));
  struct sio_decoder d;
  struct sio_limits big = *lim;
  big.max_packet = e.len + 16;
  big.max_attachments = e.nattach + 1;
  /* A buffer that several placeholders point to is re-encoded once per reference (as the
     socket.io parser does), so the round trip may carry more bytes than the input did. */
  big.max_binary = 1;
  for (size_t i = 0; i < e.nattach; i++)
    big.max_binary += e.attach[i].len;
  sio_decoder_init(&d, &big);
  struct sio_packet q;
  rc = sio_decoder_feed_text(&d, e.text + 1, e.len - 1, &q);
  for (size_t i = 0; i < e.nattach; i++) {
    CHECK(rc == EG_EAGAIN);
    rc = sio_decoder_feed_binary(&d, e.attach[i].data, e.attach[i].len, &q);
  }
  if (rc != 0)
    fprintf(stderr, "re-decode of %s: %s\n", e.text, eg_errname(rc));
  CHECK(rc == 0);
  CHECK(plain(q.type) == plain(p->type));
  CHECK(strcmp(q.nsp, p->nsp) == 0 && q.id == p->id);
  CHECK((q.data == NULL) == (p->data == NULL));
  CHECK(q.data == NULL || json_equal(q.data, p->data));
  sio_packet_clear(&q);
  sio_decoder_free(&d);
  sio_encoded_free(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct sio_limits lim = sio_limits_default();
  lim.max_packet = 1 << 16;
  lim.max_binary = 1 << 16;
  const char *s = (const char *)data;
  const char *nl = memchr(s, '\n', size);
  size_t tlen = nl ? (size_t)(nl - s) : size;

  struct sio_packet one;
  int rc1 = sio_decode_text(s, tlen, &lim, &one);

  struct sio_decoder d;
  struct sio_packet p;
  sio_decoder_init(&d, &lim);
  int rc = sio_decoder_feed_text(&d, s, tlen, &p);
  if (rc1 != 0) {
    CHECK(rc == rc1);
  } else {
    CHECK(rc == 0 || rc == EG_EAGAIN || rc == EG_EPROTO);
    if (one.type != SIO_BINARY_EVENT && one.type != SIO_BINARY_ACK)
      round_trip(&one, &lim);
  }
  /* Feed the attachments. */
  const char *b = nl ? nl + 1 : NULL;
  const char *end = s + size;
  while (rc == EG_EAGAIN && b != NULL) {
    const char *nx = memchr(b, '\n', (size_t)(end - b));
    size_t blen = nx ? (size_t)(nx - b) : (size_t)(end - b);
    rc = sio_decoder_feed_binary(&d, (const uint8_t *)b, blen, &p);
    b = nx ? nx + 1 : NULL;
  }
  if (rc == 0) {
    CHECK(rc1 == 0 && p.type == one.type && p.id == one.id && strcmp(p.nsp, one.nsp) == 0);
    round_trip(&p, &lim);
    sio_packet_clear(&p);
  }
  if (rc1 == 0)
    sio_packet_clear(&one);
  sio_decoder_free(&d);
  return 0;
}
