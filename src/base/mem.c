/* Allocation that aborts on out-of-memory, and slices. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

static void oom(size_t n) {
  fprintf(stderr, "engram: out of memory allocating %zu bytes\n", n);
  abort();
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL)
    oom(n);
  return p;
}

void *xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (p == NULL)
    oom(count * size);
  return p;
}

void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL)
    oom(n);
  return q;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *xstrndup(const char *s, size_t n) {
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

void *xmemdup(const void *p, size_t n) {
  void *q = xmalloc(n);
  if (n)
    memcpy(q, p, n);
  return q;
}

struct slice slice_from_cstr(const char *s) {
  return (struct slice){s, s ? strlen(s) : 0};
}

bool slice_eq(struct slice a, struct slice b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

bool slice_eq_cstr(struct slice a, const char *s) { return slice_eq(a, slice_from_cstr(s)); }

bool slice_case_eq_cstr(struct slice a, const char *s) {
  size_t n = strlen(s);
  if (n != a.len)
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a.p[i], y = (unsigned char)s[i];
    if (x >= 'A' && x <= 'Z')
      x = (unsigned char)(x + 32);
    if (y >= 'A' && y <= 'Z')
      y = (unsigned char)(y + 32);
    if (x != y)
      return false;
  }
  return true;
}
