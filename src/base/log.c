/* One line per event on stderr, as text or JSON (see base.h), with the calling thread's
   log context (request id, socket id). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

static enum log_level min_level = LOG_INFO;
static bool json_format;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static _Thread_local struct log_ctx tls_ctx;

void log_init_from_env(void) {
  const char *lvl = getenv("ENGRAM_LOG_LEVEL");
  if (lvl) {
    for (int i = 0; i < 4; i++)
      if (strcmp(lvl, level_names[i]) == 0)
        min_level = (enum log_level)i;
  }
  const char *fmt = getenv("ENGRAM_LOG_FORMAT");
  json_format = fmt && strcmp(fmt, "json") == 0;
}

bool log_enabled(enum log_level lvl) {
  return lvl >= min_level;
}

/* ---- context ------------------------------------------------------------------------- */

void log_ctx_get(struct log_ctx *out) {
  *out = tls_ctx;
}

void log_ctx_set(const struct log_ctx *ctx) {
  tls_ctx = *ctx;
}

static void copy_field(char *dst, size_t cap, const char *src, size_t len) {
  if (!src)
    len = 0;
  if (len > cap - 1)
    len = cap - 1;
  if (len)
    memcpy(dst, src, len);
  dst[len] = '\0';
}

void log_ctx_set_request_id(const char *id, size_t len) {
  copy_field(tls_ctx.request_id, sizeof tls_ctx.request_id, id, len);
}

void log_ctx_set_sid(const char *sid) {
  copy_field(tls_ctx.sid, sizeof tls_ctx.sid, sid, sid ? strlen(sid) : 0);
}

bool log_request_id_valid(const char *id, size_t len) {
  if (!id || len == 0 || len > LOG_REQUEST_ID_MAX)
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = id[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

/* Ids come from a per-thread random seed plus a counter, mixed by splitmix64 (a
   bijection): distinct within a thread by construction, and across threads, processes
   and nodes with the odds of a 64-bit random collision, at no system call per id (the
   CSPRNG costs a getrandom() each; ids need not be secret). */
void log_request_id_new(char out[LOG_REQUEST_ID_MAX + 1]) {
  static _Thread_local uint64_t seed, counter;
  static const char hex[] = "0123456789abcdef";
  if (seed == 0) {
    while (seed == 0)
      rand_bytes(&seed, sizeof seed);
  }
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * ++counter;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  for (int i = 15; i >= 0; i--, z >>= 4)
    out[i] = hex[z & 15];
  out[16] = '\0';
}

/* ---- lines --------------------------------------------------------------------------- */

/* A bounded writer: appends while there is room (keeping `reserve` bytes free for the
   line's end), cuts silently otherwise. */
struct lw {
  char *p;
  size_t len, cap;
};

static void lw_putn(struct lw *w, const char *s, size_t n, size_t reserve) {
  size_t room = w->cap > w->len + reserve ? w->cap - w->len - reserve : 0;
  if (n > room)
    n = room;
  memcpy(w->p + w->len, s, n);
  w->len += n;
}

static void lw_put(struct lw *w, const char *s, size_t reserve) {
  lw_putn(w, s, strlen(s), reserve);
}

/* JSON string contents of s; stops (never half an escape) when fewer than reserve + 6
   bytes are left. */
static void lw_json(struct lw *w, const char *s, size_t reserve) {
  for (; *s; s++) {
    if (w->len + reserve + 6 >= w->cap)
      return;
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      w->p[w->len++] = '\\';
      w->p[w->len++] = (char)c;
    } else if (c < 0x20) {
      w->len += (size_t)snprintf(w->p + w->len, 7, "\\u%04x", c);
    } else {
      w->p[w->len++] = (char)c;
    }
  }
}

/* The end of a line (context and fields), built first so that the message can be cut to
   leave room for it. Each value takes at most LOG_FIELD_MAX + 6 bytes once escaped, so
   the tail always fits. */
#define LOG_MAX_FIELDS 6
#define LOG_TAIL_MAX ((LOG_MAX_FIELDS + 2) * (LOG_FIELD_MAX + 48) + 8)

static void tail_str(struct lw *w, bool json, const char *key, const char *v) {
  char esc[LOG_FIELD_MAX + 8];
  struct lw e = {esc, 0, LOG_FIELD_MAX + 6};
  if (json)
    lw_json(&e, v, 0);
  else
    lw_put(&e, v, 0);
  lw_put(w, json ? ",\"" : " ", 0);
  lw_put(w, key, 0);
  lw_put(w, json ? "\":\"" : "=", 0);
  lw_putn(w, esc, e.len, 0);
  if (json)
    lw_put(w, "\"", 0);
}

/* A number with at most 3 decimals, trailing zeros dropped ("200", "0.032", "-1.5"), by
   integer arithmetic: printf's %g costs microseconds. Beyond 1e15 (and NaN): %g. */
static void fmt_num(char out[32], double v) {
  if (!(v > -1e15 && v < 1e15)) {
    snprintf(out, 32, "%g", v);
    return;
  }
  bool neg = v < 0;
  uint64_t m = (uint64_t)((neg ? -v : v) * 1000.0 + 0.5);
  uint64_t ip = m / 1000;
  unsigned frac = (unsigned)(m % 1000);
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + ip % 10);
    ip /= 10;
  } while (ip);
  char *p = out;
  if (neg && (m != 0))
    *p++ = '-';
  while (n)
    *p++ = tmp[--n];
  if (frac) {
    *p++ = '.';
    int d[3] = {(int)(frac / 100), (int)(frac / 10 % 10), (int)(frac % 10)};
    int last = d[2] ? 3 : d[1] ? 2 : 1;
    for (int i = 0; i < last; i++)
      *p++ = (char)('0' + d[i]);
  }
  *p = '\0';
}

static void tail_num(struct lw *w, bool json, const char *key, double v) {
  char num[32];
  fmt_num(num, v);
  lw_put(w, json ? ",\"" : " ", 0);
  lw_put(w, key, 0);
  lw_put(w, json ? "\":" : "=", 0);
  lw_put(w, num, 0);
}

void log_format_line(char *out, size_t cap, bool json, const char *ts, enum log_level lvl,
                     const struct log_ctx *ctx, const struct log_field *f, size_t nf,
                     const char *msg) {
  if (cap == 0)
    return;
  char tail[LOG_TAIL_MAX];
  struct lw t = {tail, 0, sizeof tail};
  if (nf > LOG_MAX_FIELDS)
    nf = LOG_MAX_FIELDS;
  for (size_t i = 0; i < nf; i++) {
    if (f[i].str)
      tail_str(&t, json, f[i].key, f[i].str);
    else
      tail_num(&t, json, f[i].key, f[i].num);
  }
  if (ctx && ctx->request_id[0])
    tail_str(&t, json, "request_id", ctx->request_id);
  if (ctx && ctx->sid[0])
    tail_str(&t, json, "sid", ctx->sid);
  if (json)
    lw_put(&t, "}", 0);

  struct lw w = {out, 0, cap - 1}; /* one byte for the NUL */
  if (json) {
    lw_put(&w, "{\"ts\":\"", 0);
    lw_put(&w, ts, 0);
    lw_put(&w, "\",\"level\":\"", 0);
    lw_put(&w, level_names[lvl], 0);
    lw_put(&w, "\",\"msg\":\"", 0);
    lw_json(&w, msg, t.len + 1);
    lw_put(&w, "\"", 0);
  } else {
    char head[48];
    snprintf(head, sizeof head, "%s %-5s ", ts, level_names[lvl]);
    lw_put(&w, head, 0);
    lw_put(&w, msg, t.len);
  }
  lw_putn(&w, tail, t.len, 0);
  out[w.len] = '\0';
}

static void log_write(enum log_level lvl, const struct log_field *f, size_t nf, const char *fmt,
                      va_list ap) {
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  /* The timestamp: its seconds part is formatted once per second (gmtime and printf
     cost more than the rest of the line). */
  static _Thread_local int64_t ts_sec = -1;
  static _Thread_local char ts[25];
  int64_t now = clock_wall_ms();
  if (now < 0 || now / 1000 != ts_sec) {
    clock_iso8601(now, ts);
    ts_sec = now >= 0 ? now / 1000 : -1;
  } else {
    unsigned ms = (unsigned)(now % 1000);
    ts[20] = (char)('0' + ms / 100);
    ts[21] = (char)('0' + ms / 10 % 10);
    ts[22] = (char)('0' + ms % 10);
  }
  /* The whole line in one buffer, written at once: lines of several threads (and
     processes sharing the stream) never interleave. */
  char line[6 * 2048 + LOG_TAIL_MAX + 64];
  log_format_line(line, sizeof line - 1, json_format, ts, lvl, &tls_ctx, f, nf, msg);
  size_t n = strlen(line);
  line[n++] = '\n';
  flockfile(stderr);
  fwrite(line, 1, n, stderr);
  funlockfile(stderr);
}

void log_msg(enum log_level lvl, const char *fmt, ...) {
  if (!log_enabled(lvl))
    return;
  va_list ap;
  va_start(ap, fmt);
  log_write(lvl, NULL, 0, fmt, ap);
  va_end(ap);
}

void log_fields(enum log_level lvl, const struct log_field *f, size_t nf, const char *fmt,
                ...) {
  if (!log_enabled(lvl))
    return;
  va_list ap;
  va_start(ap, fmt);
  log_write(lvl, f, nf, fmt, ap);
  va_end(ap);
}
