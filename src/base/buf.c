/* The capped byte buffer (see base.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

void buf_init(struct buf *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

void buf_free(struct buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void buf_reset(struct buf *b) {
  b->len = 0;
}

int buf_reserve(struct buf *b, size_t n) {
  if (n > b->max || b->len > b->max - n)
    return EG_ETOOBIG;
  size_t need = b->len + n + 1; /* room for a NUL terminator */
  if (need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  if (cap > b->max + 1)
    cap = b->max + 1;
  b->data = xrealloc(b->data, cap);
  b->cap = cap;
  return 0;
}

int buf_append(struct buf *b, const void *p, size_t n) {
  int rc = buf_reserve(b, n);
  if (rc)
    return rc;
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int buf_append_str(struct buf *b, const char *s) {
  return buf_append(b, s, strlen(s));
}

int buf_append_byte(struct buf *b, uint8_t c) {
  return buf_append(b, &c, 1);
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    return EG_EINVAL;
  int rc = buf_reserve(b, (size_t)n);
  if (rc)
    return rc;
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

/* 1 for the bytes that need an escape in a JSON string. */
static const uint8_t json_esc[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,         1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ['"'] = 1, ['\\'] = 1,
};

int buf_append_json_str(struct buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *)s;
  size_t len0 = b->len;
  int rc = buf_reserve(b, n + 2); /* the common case (nothing to escape) in one step */
  if (rc)
    return rc;
  b->data[b->len++] = '"';
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    /* Eight bytes at a time while none is below 0x20, '"' or '\\' (exact word tests:
       a byte below n, a zero byte). */
    while (i + 8 <= n) {
      uint64_t w, q, k;
      memcpy(&w, u + i, 8);
      q = w ^ 0x2222222222222222ull;
      k = w ^ 0x5C5C5C5C5C5C5C5Cull;
      if ((((w - 0x2020202020202020ull) & ~w) | ((q - 0x0101010101010101ull) & ~q) |
           ((k - 0x0101010101010101ull) & ~k)) &
          0x8080808080808080ull)
        break;
      i += 8;
    }
    if (i >= n)
      break;
    if (!json_esc[u[i]])
      continue;
    char esc[6] = {'\\', 0, '0', '0', 0, 0};
    size_t elen = 2;
    switch (u[i]) {
    case '"':
      esc[1] = '"';
      break;
    case '\\':
      esc[1] = '\\';
      break;
    case '\b':
      esc[1] = 'b';
      break;
    case '\f':
      esc[1] = 'f';
      break;
    case '\n':
      esc[1] = 'n';
      break;
    case '\r':
      esc[1] = 'r';
      break;
    case '\t':
      esc[1] = 't';
      break;
    default:
      esc[1] = 'u';
      esc[4] = hex[u[i] >> 4];
      esc[5] = hex[u[i] & 15];
      elen = 6;
    }
    rc = buf_append(b, u + run, i - run);
    if (rc == 0)
      rc = buf_append(b, esc, elen);
    if (rc)
      goto fail;
    run = i + 1;
  }
  rc = buf_reserve(b, n - run + 1);
  if (rc)
    goto fail;
  memcpy(b->data + b->len, u + run, n - run);
  b->len += n - run;
  b->data[b->len++] = '"';
  b->data[b->len] = '\0';
  return 0;
fail:
  b->len = len0;
  if (b->data)
    b->data[len0] = '\0';
  return rc;
}

void buf_consume(struct buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

char *buf_steal(struct buf *b, size_t *len) {
  char *p = (char *)b->data;
  if (len)
    *len = b->len;
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  return p;
}
