/*
 * libFuzzer target for the HTTP/1.1 request parser (src/http/parser.c). The first input
 * byte picks the limits; the rest is a byte stream off a socket. Checks:
 *   - feeding it whole, split at a point taken from the input, and byte by byte (short
 *     inputs) give the same joined event log and the same final status (a partial URL or
 *     header reported just before a limit error is cut from the log);
 *   - every event's data lies inside the buffer fed; used never exceeds what was fed;
 *   - errors are sticky and carry an HTTP status (400/413/414/431/501/505).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "http/http_int.h"

#define CHECK(c)                                                                            \
  do {                                                                                      \
    if (!(c)) {                                                                             \
      fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                \
      abort();                                                                              \
    }                                                                                       \
  } while (0)

static void logput(struct buf *log, const void *p, size_t n) {
  if (buf_append(log, p, n) != 0)
    abort();
}

static void run(const uint8_t *in, size_t n, size_t step, size_t max_header, uint64_t max_body,
                struct buf *log) {
  struct http_parser p;
  http_parser_init(&p, max_header, max_body);
  int last_type = -1;
  size_t off = 0;
  /* Log length at the last point that does not depend on how input was cut: a partial
     URL or header may be reported before a limit error in one cut and not in another. */
  size_t safe = log->len;
  int final = 0;
  while (off <= n) {
    size_t len = step ? EG_MIN(step, n - off) : n - off;
    uint8_t *piece = xmalloc(len ? len : 1);
    memcpy(piece, in + off, len);
    size_t pos = 0;
    for (;;) {
      struct http_pevent ev;
      size_t used = 0;
      int rc = http_parser_feed(&p, piece + pos, len - pos, &used, &ev);
      CHECK(used <= len - pos);
      pos += used;
      if (rc == EG_EAGAIN) {
        CHECK(pos == len);
        break;
      }
      if (rc < 0) {
        CHECK(p.status == 400 || p.status == 413 || p.status == 414 || p.status == 431 ||
              p.status == 501 || p.status == 505);
        size_t u2;
        CHECK(http_parser_feed(&p, piece, len, &u2, &ev) == rc);
        final = p.status;
        log->len = safe;
        free(piece);
        goto done;
      }
      if (ev.type == HTTP_PEV_URL || ev.type == HTTP_PEV_HDR_NAME ||
          ev.type == HTTP_PEV_HDR_VALUE || ev.type == HTTP_PEV_BODY) {
        CHECK(ev.len > 0);
        CHECK(ev.data >= piece && ev.data + ev.len <= piece + pos);
        if ((int)ev.type != last_type) {
          char t = (char)('A' + ev.type);
          logput(log, "|", 1);
          logput(log, &t, 1);
        }
        logput(log, ev.data, ev.len);
      } else {
        char t[64];
        int tl = snprintf(t, sizeof t, "|%c%zu", 'A' + ev.type, ev.trim);
        if (ev.type == HTTP_PEV_HEAD_DONE)
          tl = snprintf(t, sizeof t, "|H%d.%d.%d.%d.%d.%llu", p.method_id, p.keep_alive,
                        p.upgrade, p.chunked, p.expect_continue,
                        (unsigned long long)p.content_length);
        logput(log, t, (size_t)tl);
      }
      last_type = (int)ev.type;
      if (ev.type == HTTP_PEV_HDR_END || ev.type == HTTP_PEV_HEAD_DONE ||
          ev.type == HTTP_PEV_MSG_DONE || ev.type == HTTP_PEV_BODY)
        safe = log->len;
    }
    free(piece);
    off += len;
    if (off == n)
      break;
  }
done:;
  char t[32];
  int tl = snprintf(t, sizeof t, "|end%d", final);
  logput(log, t, (size_t)tl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t cfg = data[0];
  size_t max_header = (cfg & 1) ? 64 : 16384;
  uint64_t max_body = (cfg & 2) ? 16 : 1 << 20;
  data++;
  size--;
  struct buf a, b;
  buf_init(&a, 1 << 24);
  buf_init(&b, 1 << 24);
  run(data, size, 0, max_header, max_body, &a);
  size_t cut = size ? (size_t)(cfg >> 2) * size / 64 + 1 : 1;
  run(data, size, cut, max_header, max_body, &b);
  CHECK(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
  if (size <= 512) {
    buf_reset(&b);
    run(data, size, 1, max_header, max_body, &b);
    CHECK(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
  }
  buf_free(&a);
  buf_free(&b);
  return 0;
}
