/*
 * libFuzzer target for src/proto/sse and the providers' stream parsing on top of it.
 * The first input byte picks the parser options and a chunk size; the rest is the
 * stream. The stream is parsed twice, whole and in chunks, and the two event logs (and
 * results) must be identical: splitting reads must never change what is parsed. Then the
 * same bytes are replayed as a model answer through the gemini and openai dialects
 * (llm__replay: SSE or a JSON body, no network), whole and in chunks: same text, same
 * status, the text always valid UTF-8, and a Gemini success always has a finish reason.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "llm/llm_int.h"
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

static bool valid_utf8(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    size_t len = c < 0x80             ? 1
                 : (c & 0xE0) == 0xC0 ? 2
                 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4
                                      : 0;
    if (len == 0 || i + len > n || (len == 2 && c < 0xC2))
      return false;
    for (size_t k = 1; k < len; k++)
      if ((p[i + k] & 0xC0) != 0x80)
        return false;
    i += len;
  }
  return true;
}

static void replay(const struct llm__dialect *d, bool json, const uint8_t *data, size_t size,
                   size_t chunk) {
  const char *ct = json ? "application/json" : "text/event-stream";
  struct buf t1, t2;
  buf_init(&t1, 1u << 26);
  buf_init(&t2, 1u << 26);
  int st1, st2;
  bool f1, f2;
  llm__replay(d, ct, true, data, size, 0, &t1, &st1, &f1);
  llm__replay(d, ct, true, data, size, chunk, &t2, &st2, &f2);
  if (st1 != st2 || f1 != f2 || t1.len != t2.len ||
      (t1.len && memcmp(t1.data, t2.data, t1.len) != 0))
    abort();
  if (!valid_utf8(t1.data, t1.len))
    abort();
  if (st1 == 0 && d == &llm__gemini_dialect && !f1)
    abort();
  if (st1 == 0 && t1.len == 0)
    abort(); /* an empty answer is never a success */
  buf_free(&t1);
  buf_free(&t2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool quiet;
  if (!quiet) {
    setenv("ENGRAM_LOG_LEVEL", "error", 1);
    log_init_from_env();
    quiet = true;
  }
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
  replay(&llm__gemini_dialect, ctl & 2, data, size, chunk);
  replay(&llm__openai_dialect, ctl & 2, data, size, chunk);
  return 0;
}
