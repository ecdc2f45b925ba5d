/*
 * http internals: the incremental HTTP/1.1 request parser (parser.c) and helpers shared
 * by the http files and their tests. Not part of the public API.
 *
 * The parser is a pure state machine: no sockets, no loop, no allocation. Feed it bytes as
 * they arrive; it returns one event at a time:
 *
 *   URL        a chunk of the request-target (chunks of one target are consecutive)
 *   HDR_NAME   a chunk of a header name
 *   HDR_VALUE  a chunk of a header value (leading OWS skipped; trailing OWS may be
 *              included: HDR_END's trim says how many bytes to drop from the end)
 *   HDR_END    one header line complete
 *   HEAD_DONE  request line and headers complete; the parser fields method_id,
 *              version_minor, keep_alive, upgrade, expect_continue, chunked,
 *              content_length describe the request
 *   BODY       a chunk of the body (de-chunked)
 *   MSG_DONE   the request is complete; the parser is ready for the next one
 *
 * Errors are sticky; p->status holds the HTTP status to answer (400, 413, 414, 431, 501,
 * 505). Lines end with CRLF; a bare LF is accepted too (RFC 9112 2.2), a bare CR is not.
 *
 * States (p->state):
 *   START       before a request line (empty lines are skipped)
 *   METHOD      method token
 *   URL         request-target, up to SP
 *   VER         "HTTP/x.y" (p->vpos = position)
 *   REQ_LF      LF after the request line's CR
 *   HDR_START   start of a header line, or the empty line ending the head
 *   HDR_NAME    header name, up to ':'
 *   HDR_OWS     whitespace after ':'
 *   HDR_VALUE   header value, up to CR/LF
 *   HDR_LF      LF after a header line's CR
 *   HEAD_LF     LF after the empty line's CR
 *   MSG_PENDING HEAD_DONE reported, MSG_DONE (no body) still to report
 *   BODY_CL     Content-Length body
 *   CHUNK_SIZE  hex chunk size; CHUNK_EXT extension (skipped); CHUNK_SIZE_LF
 *   CHUNK_DATA  chunk payload; CHUNK_CR / CHUNK_LF the CRLF after it
 *   TRAILER     start of a trailer line or the final empty line; TRAILER_LINE inside one
 *               (trailers are skipped); TRAILER_LF the final LF
 *   ERROR       sticky
 */
#ifndef ENGRAM_HTTP_INT_H
#define ENGRAM_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "http/http.h"

#define HTTP_MAX_HEADERS 100

enum http_pev {
  HTTP_PEV_URL,
  HTTP_PEV_HDR_NAME,
  HTTP_PEV_HDR_VALUE,
  HTTP_PEV_HDR_END,
  HTTP_PEV_HEAD_DONE,
  HTTP_PEV_BODY,
  HTTP_PEV_MSG_DONE,
};

struct http_pevent {
  enum http_pev type;
  const uint8_t *data; /* URL, HDR_NAME, HDR_VALUE, BODY: points into the fed buffer */
  size_t len;
  size_t trim; /* HDR_END: trailing whitespace bytes to drop from the value */
};

struct http_parser {
  /* configuration (kept across requests) */
  size_t max_header;
  uint64_t max_body;
  /* results, valid from HEAD_DONE until the next request starts */
  enum http_method method_id;
  uint8_t version_minor;
  bool keep_alive, upgrade, conn_upgrade, expect_continue, chunked;
  uint64_t content_length;
  /* private */
  int err;
  int status;
  uint8_t state;
  uint8_t vpos;
  uint8_t method_len;
  uint8_t hname_len;
  uint8_t hkind;
  uint8_t tok_len;
  bool tok_long;
  bool has_cl, has_te, te_other, te_chunked_last, cl_digit, conn_close, conn_ka;
  char method[12];
  char hname[20];
  char tok[16];
  uint16_t nheaders;
  size_t head_bytes;
  size_t trail_ws;
  size_t ext_bytes;
  uint64_t cl_value;
  uint64_t remaining; /* body bytes left (CL) or chunk bytes left */
  uint64_t body_total;
  uint8_t size_digits;
};

void http_parser_init(struct http_parser *p, size_t max_header, uint64_t max_body);
/* Feeds b[0..n). Returns 0 with *ev (and *used bytes consumed; call again with the
   rest, even with 0 bytes left: MSG_DONE may follow HEAD_DONE without input), EG_EAGAIN
   when all of b was consumed without an event, or a sticky error (EG_EPROTO, EG_ETOOBIG,
   EG_EUNSUPPORTED) with p->status set. */
EG_WUR int http_parser_feed(struct http_parser *p, const uint8_t *b, size_t n, size_t *used,
                            struct http_pevent *ev);

/* True when HEAD_DONE was reported and MSG_DONE is due without further input. */
bool http_parser_msg_pending(const struct http_parser *p);

/* Percent-decodes in[0..n) into out (at least n bytes); plus_space turns '+' into ' '.
   Returns the decoded length; invalid escapes are kept as they are. */
size_t http__pct_decode(const char *in, size_t n, char *out, bool plus_space);
enum http_method http__method_from(const char *s, size_t n);
/* Formats the current time as an IMF-fixdate into out[30] (cached per second). */
void http__date(char out[30]);

#endif
