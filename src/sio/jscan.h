/*
 * sio/jscan: an incremental JSON validator for the Socket.IO fast path (internal to the
 * transport). It checks that bytes form one JSON value (RFC 8259) without building a
 * tree, so an event whose handler takes raw JSON (sio_on_raw) costs no allocation.
 *
 * It deliberately covers a SUBSET: text that it accepts is always accepted by jansson
 * too, and whatever it is unsure about (a \u escape, a NUL or a byte >= 0x80, a number
 * with more than 15 digits, a fraction or an exponent of more than 2 digits) makes it answer
 * EG_EUNSUPPORTED, and the caller takes the slow path (jansson), which decides.
 *
 * States (one byte at a time; `stack` holds one bit per open container, 1 = object):
 *   VALUE      expecting a value (whitespace skipped)
 *   ARR_FIRST  just after '[': a value or ']'
 *   OBJ_FIRST  just after '{': a key or '}'
 *   OBJ_KEY    after ',' in an object: a key
 *   KEY / STR  inside a key / string value;  KEY_ESC / STR_ESC after a backslash
 *   COLON      after a key: ':'
 *   AFTER      after a value: ',' or the container's close (or the end at depth 0)
 *   NUM_*      inside a number (sign, leading zero, integer, fraction, exponent parts)
 *   LIT        inside true/false/null
 *   ERR        sticky error
 *
 * Errors: jscan_feed/jscan_finish return 0, EG_EPROTO (not JSON), EG_ETOOBIG (deeper than
 * max_depth, at most 64) or EG_EUNSUPPORTED (outside the subset). Sticky.
 */
#ifndef ENGRAM_SIO_JSCAN_H
#define ENGRAM_SIO_JSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct jscan {
  uint64_t stack;     /* bit d-1 set: the container at depth d is an object */
  uint32_t depth;
  uint32_t max_depth; /* <= 64 */
  uint8_t state;
  uint8_t lit;        /* LIT: which literal (0 true, 1 false, 2 null) */
  uint8_t lit_pos;    /* LIT: bytes matched so far */
  uint8_t digits;     /* NUM_*: digits in the current part */
  int err;
};

void jscan_init(struct jscan *j, uint32_t max_depth);
/* Feeds the next n bytes. 0 (so far so good) or a sticky error. */
EG_WUR int jscan_feed(struct jscan *j, const uint8_t *p, size_t n);
/* The input ended: 0 when it was exactly one complete value (plus whitespace). */
EG_WUR int jscan_finish(struct jscan *j);
/* One-shot form of the two. */
EG_WUR int jscan_validate(const uint8_t *p, size_t n, uint32_t max_depth);

#endif
