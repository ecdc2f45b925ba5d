/*
 * libFuzzer target for the web module's header matchers (src/web/web.c):
 * web_accepts_gzip (Accept-Encoding) and web_etag_matches (If-None-Match). Properties:
 *   - no read outside the input (the input is an exact-size heap copy);
 *   - both are pure: the same answer twice;
 *   - appending ", gzip;q=0" always refuses gzip; appending ", gzip" accepts it unless
 *     an earlier gzip element already decided (the last gzip element wins);
 *   - a value that is exactly the ETag, or "W/" + it, or "*", matches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "web/web.h"

#define CHECK(c)                                                                               \
  do {                                                                                         \
    if (!(c)) {                                                                                \
      fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                   \
      abort();                                                                                 \
    }                                                                                          \
  } while (0)

static const char ETAG[] = "\"0123456789abcdef\"";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = xmalloc(size ? size : 1);
  memcpy(s, data, size);
  struct slice v = {s, size};
  bool a = web_accepts_gzip(v);
  CHECK(a == web_accepts_gzip(v));
  bool m = web_etag_matches(v, ETAG);
  CHECK(m == web_etag_matches(v, ETAG));

  char *t = xmalloc(size + 16);
  memcpy(t, data, size);
  memcpy(t + size, ", gzip;q=0", 10);
  CHECK(!web_accepts_gzip((struct slice){t, size + 10}));
  memcpy(t + size, ", gzip", 6);
  CHECK(web_accepts_gzip((struct slice){t, size + 6}));
  free(t);

  CHECK(web_etag_matches(SLICE_LIT("\"0123456789abcdef\""), ETAG));
  CHECK(web_etag_matches(SLICE_LIT("W/\"0123456789abcdef\""), ETAG));
  free(s);
  return 0;
}
