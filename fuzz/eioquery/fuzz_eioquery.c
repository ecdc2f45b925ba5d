/* libFuzzer target: the Engine.IO query-string parser (eio_query_parse). Checks that
   every slice it returns lies inside the input and that the parse does not depend on
   anything after a parameter's end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eio/eio.h"

static void inside(struct slice s, const uint8_t *d, size_t n) {
  if (s.len && (s.p < (const char *)d || s.p + s.len > (const char *)d + n))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct eio_query q;
  eio_query_parse((struct slice){(const char *)data, size}, &q);
  if (q.has_eio)
    inside(q.eio, data, size);
  if (q.has_transport)
    inside(q.transport, data, size);
  if (q.has_sid)
    inside(q.sid, data, size);
  /* Parsing a prefix ending at '&' gives the same answers for what it contains. */
  const uint8_t *amp = size ? memchr(data, '&', size) : NULL;
  if (amp) {
    struct eio_query p;
    eio_query_parse((struct slice){(const char *)data, (size_t)(amp - data)}, &p);
    if (p.has_eio && (!q.has_eio || p.eio.p != q.eio.p || p.eio.len != q.eio.len))
      abort();
    if (p.has_sid && (!q.has_sid || p.sid.p != q.sid.p))
      abort();
  }
  return 0;
}
