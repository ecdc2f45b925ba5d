/*
 * base: the few things every module uses.
 *
 * - Error codes: 0 is success, every failure is a negative EG_E* code from one table
 *   (EG_ERRNO_MAP); eg_strerror() names it. Modules map errno, curl, SQLite and libpq
 *   codes to these at their edge.
 * - Memory: xmalloc & co. abort on out-of-memory, so callers never check for NULL.
 * - struct buf: one growable byte buffer with a hard cap fixed at init (buf_init).
 *   Appending past the cap fails with EG_ETOOBIG and leaves the buffer unchanged.
 * - Slices (struct slice) point into someone else's memory and never own it.
 * - Logging: one line per event on stderr, text or JSON (ENGRAM_LOG_FORMAT=json),
 *   filtered by ENGRAM_LOG_LEVEL (debug|info|warn|error). Never log secrets.
 * - Ids: 24 lowercase hex characters shaped like MongoDB ObjectIds
 *   (4-byte big-endian seconds + 8 random bytes from the CSPRNG).
 * - Clocks: monotonic milliseconds/nanoseconds and wall-clock milliseconds.
 * - struct hmap: a string-keyed hash map (keys copied, values are the caller's pointers).
 * - struct histo: a latency histogram with fixed buckets (Prometheus-style, cumulative on
 *   output), recorded on one thread and read on the same one.
 *
 * Thread-safety: everything here may be called from any thread.
 */
#ifndef ENGRAM_BASE_H
#define ENGRAM_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EG_WUR __attribute__((warn_unused_result))
#define EG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define EG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define EG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EG_MAX(a, b) ((a) > (b) ? (a) : (b))
#define EG_CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

/* ---- errors ------------------------------------------------------------------------ */

#define EG_ERRNO_MAP(X)                                                                    \
  X(NOMEM, "out of memory")                                                                \
  X(AGAIN, "need more input")                                                              \
  X(PROTO, "protocol error")                                                               \
  X(TOOBIG, "too large")                                                                   \
  X(INVAL, "invalid argument")                                                             \
  X(NOTFOUND, "not found")                                                                 \
  X(EXISTS, "already exists")                                                              \
  X(IO, "input/output error")                                                              \
  X(TIMEOUT, "timed out")                                                                  \
  X(CLOSED, "connection closed")                                                           \
  X(DB, "database error")                                                                  \
  X(AUTH, "authentication failed")                                                         \
  X(FORBIDDEN, "forbidden")                                                                \
  X(UPSTREAM, "upstream error")                                                            \
  X(CANCELED, "canceled")                                                                  \
  X(UTF8, "invalid UTF-8")                                                                 \
  X(LIMIT, "rate limited")                                                                 \
  X(UNSUPPORTED, "not supported")                                                          \
  X(INTERNAL, "internal error")

enum eg_err {
  EG_OK = 0,
  EG__ERR_FIRST = -1000,
#define EG__ERR_ENUM(name, text) EG_E##name,
  EG_ERRNO_MAP(EG__ERR_ENUM)
#undef EG__ERR_ENUM
};

/* Returns a static description of an EG_E* code (or "unknown error"). */
const char *eg_strerror(int code);
/* Returns the short name of an EG_E* code ("TOOBIG"), or "UNKNOWN". */
const char *eg_errname(int code);

/* ---- memory ------------------------------------------------------------------------ */

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);

/* ---- slices ------------------------------------------------------------------------ */

struct slice {
  const char *p;
  size_t len;
};

#define SLICE_LIT(s) ((struct slice){(s), sizeof(s) - 1})
struct slice slice_from_cstr(const char *s);
bool slice_eq(struct slice a, struct slice b);
bool slice_eq_cstr(struct slice a, const char *s);
bool slice_case_eq_cstr(struct slice a, const char *s); /* ASCII case-insensitive */

/* ---- capped byte buffer --------------------------------------------------------------- */

struct buf {
  uint8_t *data;
  size_t len; /* bytes in use */
  size_t cap; /* bytes allocated */
  size_t max; /* hard cap on len */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, keeps the allocation */
/* Make room for n more bytes. EG_ETOOBIG if len + n would pass max. */
EG_WUR int buf_reserve(struct buf *b, size_t n);
EG_WUR int buf_append(struct buf *b, const void *p, size_t n);
EG_WUR int buf_append_str(struct buf *b, const char *s);
EG_WUR int buf_append_byte(struct buf *b, uint8_t c);
EG_WUR int buf_printf(struct buf *b, const char *fmt, ...) EG_PRINTF(2, 3);
EG_WUR int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Appends s[0..n) as a JSON string literal with its quotes, escaped as JSON.stringify
   does for valid UTF-8: `"` and `\` and the control bytes below 0x20 (\b \f \n \r \t,
   else \u00xx with lowercase hex; jansson writes the same but uppercase hex); every other
   byte as is (the caller passes valid UTF-8). EG_ETOOBIG (buffer unchanged) past the cap. */
EG_WUR int buf_append_json_str(struct buf *b, const char *s, size_t n);
/* Drop the first n bytes (n <= len), moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);
/* Hand the bytes to the caller (NUL-terminated, may be NULL when empty) and reset b. */
char *buf_steal(struct buf *b, size_t *len);

/* ---- logging ------------------------------------------------------------------------ */

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_init_from_env(void);
bool log_enabled(enum log_level lvl);
void log_msg(enum log_level lvl, const char *fmt, ...) EG_PRINTF(2, 3);
#define log_debug(...)                                                                      \
  do {                                                                                      \
    if (log_enabled(LOG_DEBUG))                                                             \
      log_msg(LOG_DEBUG, __VA_ARGS__);                                                      \
  } while (0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Log context: fields added to every line the calling thread logs while they are set
   (JSON: "request_id" and "sid" members; text: " request_id=... sid=..." at the end).
   The http server sets the request id while it hands a request to its handler, the
   Socket.IO server sets the socket id while it runs a socket's handlers. Values are
   copied (the caller's strings may go away); a value too long is cut. Save the context
   with log_ctx_get before changing it and put it back with log_ctx_set. */
#define LOG_REQUEST_ID_MAX 64
#define LOG_SID_MAX 32
struct log_ctx {
  char request_id[LOG_REQUEST_ID_MAX + 1]; /* "" = none */
  char sid[LOG_SID_MAX + 1];               /* "" = none */
};
void log_ctx_get(struct log_ctx *out);
void log_ctx_set(const struct log_ctx *ctx);
/* Sets one field (NULL or len 0 clears it), leaving the other as it is. */
void log_ctx_set_request_id(const char *id, size_t len);
void log_ctx_set_sid(const char *sid);
/* True when id[0..len) may be used as a request id taken from a client's X-Request-Id:
   1..LOG_REQUEST_ID_MAX characters of [A-Za-z0-9._-] (nothing a log reader or a header
   could misread). */
bool log_request_id_valid(const char *id, size_t len);
/* Writes a new request id (16 lowercase hex characters; unique per thread, random across
   threads and processes: a CSPRNG seed per thread and a counter) and a NUL. */
void log_request_id_new(char out[LOG_REQUEST_ID_MAX + 1]);
/* Extra fields of one line: JSON members after "msg" (a string, or a number when str is
   NULL), " key=value" in text. Keys are plain identifiers; a string value longer than
   LOG_FIELD_MAX bytes is cut. */
#define LOG_FIELD_MAX 256
struct log_field {
  const char *key;
  const char *str; /* NULL: num */
  double num;      /* printed with at most 3 decimals ("200", "0.032") */
};
/* log_msg with fields (access logs: method, path, status, duration_ms). */
void log_fields(enum log_level lvl, const struct log_field *f, size_t nf, const char *fmt, ...)
    EG_PRINTF(4, 5);
/* Writes to out (NUL-terminated, cut to cap) a line format's JSON or text rendering of a
   log event: what log_msg writes to stderr, without the newline. Exposed for tests. */
void log_format_line(char *out, size_t cap, bool json, const char *ts, enum log_level lvl,
                     const struct log_ctx *ctx, const struct log_field *f, size_t nf,
                     const char *msg);

/* ---- ids ----------------------------------------------------------------------------- */

#define ID_LEN 24
/* Writes a new id and a terminating NUL into out[ID_LEN + 1]. */
void id_new(char out[ID_LEN + 1]);
/* Same, with a given creation time in seconds since the epoch (imports, tests). */
void id_new_at(char out[ID_LEN + 1], uint32_t seconds);
/* True when s[0..len) is 24 lowercase hex characters. */
bool id_valid(const char *s, size_t len);

/* ---- random -------------------------------------------------------------------------- */

/* Cryptographically secure random bytes (libsodium). */
void rand_bytes(void *out, size_t n);

/* ---- clocks -------------------------------------------------------------------------- */

uint64_t clock_mono_ns(void);
uint64_t clock_mono_ms(void);
int64_t clock_wall_ms(void);
/* Formats a wall-clock time as ISO 8601 UTC with milliseconds ("2026-01-02T03:04:05.678Z"),
   the form JavaScript's Date#toISOString gives. out needs 25 bytes. */
void clock_iso8601(int64_t wall_ms, char out[25]);
/* Parses the ISO 8601 forms above (also without milliseconds, and with +hh:mm offsets).
   Returns 0 or EG_EINVAL. */
EG_WUR int clock_parse_iso8601(const char *s, size_t len, int64_t *wall_ms);

/* ---- latency histogram ------------------------------------------------------------------ */

#define HISTO_BUCKETS 16
/* Upper bounds of the buckets in microseconds: 100 us .. 60 s, then +Inf. */
extern const uint64_t histo_bounds_us[HISTO_BUCKETS];

struct histo {
  uint64_t counts[HISTO_BUCKETS + 1]; /* per bucket (not cumulative); the last is +Inf */
  uint64_t count;
  uint64_t sum_us;
};

void histo_add(struct histo *h, uint64_t us);
/* The value at quantile q (0..1) as the upper bound of its bucket (an overestimate). */
uint64_t histo_quantile_us(const struct histo *h, double q);
/* Appends the Prometheus text exposition of h as `name` (seconds) with optional labels
   ("" or `a="b"`) to out. */
EG_WUR int histo_prometheus(const struct histo *h, const char *name, const char *labels,
                            struct buf *out);

/* ---- string-keyed hash map ------------------------------------------------------------- */

struct hmap_entry {
  struct hmap_entry *next;
  uint64_t hash;
  void *value;
  size_t klen;
  char key[]; /* NUL-terminated copy */
};

struct hmap {
  struct hmap_entry **slots;
  size_t nslots; /* a power of two, or 0 before the first insert */
  size_t count;
};

/* A zeroed struct hmap is an empty map. */
void hmap_free(struct hmap *m); /* frees the entries, not the values */
void *hmap_get(const struct hmap *m, const char *key);
/* Sets key to value (replacing); returns the previous value or NULL. */
void *hmap_put(struct hmap *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *hmap_del(struct hmap *m, const char *key);
/* Iteration: for (struct hmap_entry *e = hmap_first(m, &i); e; e = hmap_next(m, e, &i)).
   The map must not change meanwhile, except hmap_del of the current entry after
   hmap_next moved past it. */
struct hmap_entry *hmap_first(const struct hmap *m, size_t *slot);
struct hmap_entry *hmap_next(const struct hmap *m, struct hmap_entry *e, size_t *slot);

#endif
