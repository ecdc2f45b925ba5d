/*
 * sse: incremental parser for server-sent events (text/event-stream), after the WHATWG
 * HTML "Server-sent events" parsing rules. A pure state machine: no I/O, no loop, memory
 * bounded by `max_event`.
 *
 * Input is fed in pieces of any size; a piece may end anywhere (inside a field name,
 * between the CR and LF of a CRLF, inside a UTF-8 sequence). Rules:
 * - Lines end at CRLF, LF or a lone CR. A CR that ends one piece followed by an LF that
 *   starts the next is one line end (state SSE_AFTER_CR).
 * - A UTF-8 BOM (EF BB BF) at the very start of the stream is dropped.
 * - A line starting with ':' is a comment (keep-alive) and is ignored.
 * - "field:value" with one optional space after the colon removed; a line without a
 *   colon is a field with an empty value.
 * - data: appended to the data buffer followed by LF; event: sets the type; id: sets the
 *   last event id (ignored when the value contains NUL); retry: digits only, sets the
 *   reconnection time. Other fields are ignored.
 * - A blank line dispatches: if the data buffer is empty nothing is dispatched (type
 *   reset); else the final LF is removed and the callback gets {type or "message", data,
 *   id}. Type and data are reset after dispatch; id persists (the "last event id").
 * - End of stream (sse_finish): by WHATWG an event without its terminating blank line is
 *   discarded; with `flush_on_eof` the unterminated last line is taken as a line and a
 *   pending event is dispatched with `at_eof` set, so the caller can decide (a truncated
 *   JSON payload will then fail to parse). `dropped_at_eof` tells whether anything was
 *   discarded.
 * - Limits: the bytes of one event (data + type + the current line) may not pass
 *   `max_event`: EG_ETOOBIG, sticky. Bytes are not checked for UTF-8 validity here; data
 *   is passed through byte-exact for the consumer to validate.
 *
 * Errors are sticky: after a non-zero return every later sse_feed/sse_finish returns the
 * same code. A callback that returns non-zero stops the parse; that value is returned
 * and becomes the sticky error.
 *
 * Thread: none; one parser per stream. Event slices are valid only during the callback.
 */
#ifndef ENGRAM_PROTO_SSE_H
#define ENGRAM_PROTO_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct sse_event {
  struct slice type; /* "message" when no event: field */
  struct slice data; /* joined data lines, without the final LF */
  struct slice id;   /* last event id (may be empty) */
  bool at_eof;       /* dispatched by sse_finish(flush_on_eof) without a blank line */
};

/* Return 0 to continue, non-zero (a negative EG_* code) to stop. */
typedef int (*sse_event_fn)(void *ud, const struct sse_event *ev);

enum sse_state {
  SSE_BOM,      /* at stream start: matching a possible UTF-8 BOM (bom_matched bytes) */
  SSE_LINE,     /* collecting a line into `line` */
  SSE_AFTER_CR, /* a line just ended with CR: a following LF belongs to it */
};

struct sse_parser {
  enum sse_state state;
  int err;             /* sticky error, 0 if none */
  uint8_t bom_matched; /* bytes of the BOM seen so far (SSE_BOM) */
  bool flush_on_eof;
  bool dropped_at_eof; /* set by sse_finish when an unfinished event was discarded */
  bool finished;
  int64_t retry_ms; /* last valid retry: value, -1 if none */
  size_t max_event;
  uint64_t events; /* events dispatched so far */
  struct buf line; /* current line (without its end) */
  struct buf data; /* data buffer of the pending event */
  struct buf type; /* event type of the pending event */
  struct buf id;   /* last event id */
  bool has_data;   /* at least one data: line in the pending event */
};

#define SSE_DEFAULT_MAX_EVENT (1u << 20)

/* max_event 0 = SSE_DEFAULT_MAX_EVENT. */
void sse_init(struct sse_parser *p, size_t max_event, bool flush_on_eof);
void sse_free(struct sse_parser *p);
/* Back to the initial state (keeps allocations, clears the sticky error and last id). */
void sse_reset(struct sse_parser *p);

/* Feeds n bytes, dispatching complete events to cb. Returns 0, EG_ETOOBIG, or the
   callback's non-zero value (sticky), or EG_EINVAL after sse_finish. */
EG_WUR int sse_feed(struct sse_parser *p, const uint8_t *b, size_t n, sse_event_fn cb,
                    void *ud);
/* End of stream: see the contract above. Returns 0 or the sticky error. */
EG_WUR int sse_finish(struct sse_parser *p, sse_event_fn cb, void *ud);

#endif
