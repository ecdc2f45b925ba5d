/*
 * Fuzz target: store__fts_terms, the splitter that turns user text into the words of a
 * keyword search (quoted one by one into FTS5 / tsquery syntax by the back ends). It must
 * never let syntax through: every term is 1..64 bytes of [0-9a-z] and non-ASCII bytes
 * forming valid UTF-8, terms are distinct, at most STORE_FTS_TERMS_MAX of them, and the
 * output fits the documented buffer size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

static size_t utf8_ok(const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    size_t k = c < 0x80                 ? 1
               : c >= 0xC2 && c <= 0xDF ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
    if (k == 0 || i + k > n)
      return 0;
    for (size_t j = 1; j < k; j++)
      if ((p[i + j] & 0xC0) != 0x80)
        return 0;
    i += k;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *q = malloc(size + 1);
  memcpy(q, data, size);
  q[size] = 0;
  size_t len = strlen(q);
  /* Exactly the documented size, so ASan catches any overflow. */
  char *buf = malloc(len + STORE_FTS_TERMS_MAX + 1);
  const char *t[STORE_FTS_TERMS_MAX];
  size_t n = store__fts_terms(q, buf, t);
  if (n > STORE_FTS_TERMS_MAX)
    abort();
  for (size_t i = 0; i < n; i++) {
    size_t tl = strlen(t[i]);
    if (tl == 0 || tl > 64)
      abort();
    for (size_t j = 0; j < tl; j++) {
      unsigned char c = (unsigned char)t[i][j];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c >= 0x80))
        abort();
    }
    if (!utf8_ok((const unsigned char *)t[i], tl))
      abort();
    for (size_t j = 0; j < i; j++)
      if (strcmp(t[i], t[j]) == 0)
        abort();
  }
  free(buf);
  free(q);
  return 0;
}
