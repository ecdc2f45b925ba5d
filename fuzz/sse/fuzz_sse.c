/*
 * libFuzzer target for src/proto/sse. The first input byte picks the parser options and
 * a chunk size; the rest is the stream. The stream is parsed twice, whole and in chunks,
 * and the two event logs (and results) must be identical: splitting reads must never
 * change what is parsed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "proto/sse.h"

struct acc {
  struct buf log;
};

static int on_event(void *ud, const struct sse_event *ev) {
  struct acc *a = ud;
  /* Length-prefixed fields so that the log is unambiguous. */
  size_t lens[3] = {ev->type.len, ev->data.len, ev->id.len};
  const char *ps[3] = {ev->type.p, ev->data.p, ev->id.p};
  for (int i = 0; i < 3; i++) {
    if (buf_append(&a->log, &lens[i], sizeof lens[i]) != 0 ||
        buf_append(&a->log, ps[i], lens[i]) != 0)
      return EG_ETOOBIG;
  }
  uint8_t eof = ev->at_eof;
  if (buf_append(&a->log, &eof, 1) != 0)
    return EG_ETOOBIG;
  return 0;
}

static int parse(const uint8_t *d, size_t n, size_t chunk, bool flush, size_t max_event,
                 struct acc *a) {
  struct sse_parser p;
  sse_init(&p, max_event, flush);
  int rc = 0;
  for (size_t pos = 0; pos < n && rc == 0; pos += chunk) {
    size_t k = EG_MIN(chunk, n - pos);
    rc = sse_feed(&p, d + pos, k, on_event, a);
  }
  if (rc == 0)
    rc = sse_finish(&p, on_event, a);
  sse_free(&p);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t ctl = data[0];
  data++;
  size--;
  bool flush = ctl & 1;
  size_t max_event = (ctl & 2) ? 64 : 0;
  size_t chunk = (size_t)(ctl >> 2) + 1;
  struct acc whole, split;
  buf_init(&whole.log, 1u << 26);
  buf_init(&split.log, 1u << 26);
  int rc1 = parse(data, size, size ? size : 1, flush, max_event, &whole);
  int rc2 = parse(data, size, chunk, flush, max_event, &split);
  if (rc1 != rc2)
    abort();
  if (rc1 == 0 &&
      (whole.log.len != split.log.len ||
       (whole.log.len && memcmp(whole.log.data, split.log.data, whole.log.len) != 0)))
    abort();
  buf_free(&whole.log);
  buf_free(&split.log);
  return 0;
}
