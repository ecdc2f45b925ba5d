/*
 * libFuzzer target for src/proto/eio. The input is a polling payload (POST body). Checks:
 *   - decoding it whole and fed in pieces (at a point taken from the input) gives the same
 *     packets and the same status;
 *   - the decoded packets re-encoded with eio_payload_append decode to the same packets;
 *   - the input as a WebSocket text frame decodes to the same first packet when valid;
 *   - base64 of the input round-trips, and decoding it as base64 never overruns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "proto/eio.h"

#define CHECK(c)                                                                            \
  do {                                                                                      \
    if (!(c)) {                                                                             \
      fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                \
      abort();                                                                              \
    }                                                                                       \
  } while (0)

struct pkts {
  struct eio_packet p[64];
  uint8_t *bytes[64];
  size_t n;
  int rc;
};

static void pkts_free(struct pkts *ps) {
  for (size_t i = 0; i < ps->n; i++)
    free(ps->bytes[i]);
  ps->n = 0;
}

/* Decodes in[0..n) fed in chunks of `step`, the way an HTTP body arrives. */
static void decode(const uint8_t *in, size_t n, size_t step, struct pkts *out) {
  struct eio_payload_decoder d;
  eio_payload_decoder_init(&d, 64, 1 << 20);
  struct buf conn;
  buf_init(&conn, 1 << 22);
  out->n = 0;
  int rc = EG_EAGAIN;
  size_t start = 0;
  do {
    size_t end = EG_MIN(n, start + step);
    CHECK(buf_append(&conn, in + start, end - start) == 0);
    start = end;
    for (;;) {
      struct eio_packet p;
      size_t used;
      rc = eio_payload_decode(&d, conn.data, conn.len, start == n, &used, &p);
      if (rc != 0)
        break;
      CHECK(used <= conn.len && out->n < 64);
      out->bytes[out->n] = xmemdup(p.len ? p.data : (const uint8_t *)"", p.len ? p.len : 1);
      out->p[out->n] = p;
      out->p[out->n].data = out->bytes[out->n];
      out->n++;
      buf_consume(&conn, used);
    }
  } while (rc == EG_EAGAIN && start < n);
  out->rc = rc;
  buf_free(&conn);
}

static bool same(const struct pkts *a, const struct pkts *b) {
  if (a->n != b->n || a->rc != b->rc)
    return false;
  for (size_t i = 0; i < a->n; i++)
    if (a->p[i].type != b->p[i].type || a->p[i].binary != b->p[i].binary ||
        a->p[i].len != b->p[i].len || memcmp(a->p[i].data, b->p[i].data, a->p[i].len) != 0)
      return false;
  return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct pkts whole, split, again;
  decode(data, size, size ? size : 1, &whole);
  size_t step = size ? 1 + (data[0] % (size < 64 ? 1 : 17)) : 1;
  decode(data, size, step, &split);
  CHECK(same(&whole, &split));

  if (whole.rc == EG_EAGAIN) {
    /* Valid payload: re-encode and decode again. */
    struct buf out;
    buf_init(&out, 1 << 22);
    for (size_t i = 0; i < whole.n; i++)
      CHECK(eio_payload_append(&out, &whole.p[i]) == 0);
    decode(out.data, out.len, out.len ? out.len : 1, &again);
    CHECK(same(&whole, &again));
    pkts_free(&again);
    buf_free(&out);
    /* As a WebSocket text frame (no separators): the same single packet. */
    if (whole.n == 1 && !whole.p[0].binary) {
      struct eio_packet p;
      CHECK(eio_decode_ws_text(data, size, &p) == 0);
      CHECK(p.type == whole.p[0].type && p.len == whole.p[0].len);
    }
  } else {
    CHECK(whole.rc == EG_EPROTO || whole.rc == EG_ETOOBIG);
  }
  pkts_free(&whole);
  pkts_free(&split);

  /* base64: encode/decode round trip; decoding arbitrary text in place is safe. */
  size_t elen = eio_base64_len(size);
  char *enc = xmalloc(elen + 1);
  eio_base64_encode(data, size, enc);
  uint8_t *dec = xmalloc(elen / 4 * 3 + 3);
  size_t dlen;
  CHECK(eio_base64_decode(enc, elen, dec, &dlen) == 0);
  CHECK(dlen == size && (size == 0 || memcmp(dec, data, size) == 0));
  uint8_t *copy = xmalloc(size ? size : 1);
  if (size)
    memcpy(copy, data, size);
  if (eio_base64_decode((const char *)copy, size, copy, &dlen) == 0) {
    CHECK(dlen <= size);
    /* Canonical: re-encoding gives the input back (modulo missing padding). */
    char *re = xmalloc(eio_base64_len(dlen) + 1);
    eio_base64_encode(copy, dlen, re);
    CHECK(memcmp(re, data, size) == 0);
    free(re);
  }
  free(copy);
  free(dec);
  free(enc);
  return 0;
}
