/*
 * http: the HTTP/1.1 server, WebSocket connections, a small router, cookies, CORS and a
 * static-file helper. Built on net (src/net/net.h) and the frame codec in proto/ws.h.
 *
 * Threads: every function here runs on the server's loop thread (except the pure cookie
 * helpers, callable anywhere).
 *
 * Requests
 *   The server parses each request incrementally (src/http/parser.c), reads the whole body
 *   (Content-Length or chunked, capped at limits.max_body -> 413), then calls the handler
 *   once. The handler answers exactly once, now or later (long-polling holds a request):
 *   http_respond*, http_ws_accept, or http_serve_static. Pipelined requests are queued:
 *   the next request is not dispatched before the previous one is answered, and
 *   responses go out in request order.
 *   Answered automatically, without calling the handler: malformed requests (400),
 *   header block over limits.max_header (431), request line too long (414), body over
 *   limits.max_body (413), unsupported Transfer-Encoding or unknown method (501),
 *   HTTP/2+ or HTTP/0.9 (505), CORS preflights (OPTIONS with Origin and
 *   Access-Control-Request-Method: 204), and 408 + close when the head is not complete
 *   within limits.header_timeout_ms. Idle keep-alive connections close after
 *   limits.idle_timeout_ms. HTTP/1.0 (without keep-alive) and "Connection: close"
 *   requests close after their response.
 *
 * Request lifetime (read this)
 *   A struct http_req is valid from the handler call until the handler answers it: after
 *   http_respond* / http_ws_accept(success) / http_serve_static returns, the pointer is
 *   invalid. Slices from accessors point into the request and share that lifetime.
 *   If the client goes away first (EOF, reset, server stop) while the request is pending
 *   (a half-close (EOF) of a request without an abort callback is not "going away": it
 *   is answered, then the connection closes):
 *   - with an abort callback (http_req_on_abort): it is called once; the request is valid
 *     during the call (answering it there is a harmless no-op) and freed right after it
 *     returns. Drop every pointer to it in the callback.
 *   - without one: the request stays valid until the handler answers; that answer
 *     returns EG_ECLOSED, sends nothing and frees the request.
 *
 * Responses
 *   The server adds Content-Length, Date, Connection (keep-alive/close) and, when the
 *   request's Origin is allowed by opts.cors_origins, Access-Control-Allow-Origin (the
 *   Origin echoed, or "*" for an any-origin server without credentials), Vary: Origin
 *   and Access-Control-Allow-Credentials: true (cors_credentials). HEAD responses carry
 *   the headers of the body but no body.
 *
 * WebSocket (RFC 6455)
 *   http_ws_accept() checks the upgrade (GET, HTTP/1.1, Upgrade: websocket, Connection:
 *   upgrade, Sec-WebSocket-Version: 13, a valid Sec-WebSocket-Key), writes the 101 and
 *   turns the connection into a struct ws_conn. Incoming: frames must be masked (1002),
 *   fragments are joined, text must be UTF-8 (1007), messages over limits.ws_max_message
 *   close with 1009, bad frames with 1002; pings are answered with pongs. Outgoing: no
 *   fragmentation; frames are unmasked. Backpressure: when ws_backlog() passes
 *   limits.ws_high_water the server stops reading from that client (on_drain fires when
 *   the backlog drops under half of it); a send that would take the backlog past
 *   limits.ws_max_backlog closes the connection (code 1008 reported, nothing sent).
 *   cb->on_close is called exactly once, after which the ws_conn pointer is invalid.
 *
 * Errors: functions returning int return 0 or a negative EG_E* code (base.h), as listed.
 *
 * API changes after the first commit are additive only; each is noted here:
 *   http_limits.max_conn_per_addr (passed to net's max_per_addr);
 *   net.h: net_conn_cbs.on_read takes writable data; net_server_write_calls;
 *   http_server_opts.request_ids and .access_log, http_req_request_id (2026-11-26).
 *
 * Request ids (opts.request_ids)
 *   Every dispatched request gets an id: the client's X-Request-Id when it is valid
 *   (log_request_id_valid: 1..64 of [A-Za-z0-9._-]), else a new one (log_request_id_new).
 *   Every response to it (101 included) carries it as X-Request-Id, and every line logged
 *   while the handler (or the automatic preflight answer) runs carries it as
 *   "request_id" (base.h log context). A handler that answers later from another
 *   callback sets the context itself if it wants it (http_req_request_id).
 * Access log (opts.access_log)
 *   One info line per answered request, when it is answered: "METHOD /path STATUS", with
 *   the fields method, path (as sent, without the query string: queries may carry
 *   tokens), status, duration_ms (from the request's first byte to the answer) and its
 *   request id. A request whose client left before the answer is logged with status 499.
 *   The automatic answers to unparseable requests (400, 408, 413, 414, 431, 501, 505)
 *   are not logged: no request exists for them.
 */
#ifndef ENGRAM_HTTP_H
#define ENGRAM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/base.h"
#include "net/net.h"
#include "proto/ws.h"

struct http_server;
struct http_req;
struct ws_conn;
struct http_router;

enum http_method {
  HTTP_METHOD_UNKNOWN = 0,
  HTTP_GET,
  HTTP_HEAD,
  HTTP_POST,
  HTTP_PUT,
  HTTP_DELETE,
  HTTP_PATCH,
  HTTP_OPTIONS,
  HTTP_CONNECT,
  HTTP_TRACE,
  HTTP__METHOD_COUNT
};
/* "GET", ...; "UNKNOWN" for HTTP_METHOD_UNKNOWN. */
const char *http_method_name(enum http_method m);
/* Reason phrase for a status ("Not Found"); "Unknown" if none. */
const char *http_status_text(int status);

/* ---- server ------------------------------------------------------------------------------ */

/* Zero in any field means its default. */
struct http_limits {
  size_t max_header;          /* request line + headers, bytes; 16 KiB (-> 431) */
  size_t max_body;            /* request body; 1 MiB (-> 413) */
  uint64_t header_timeout_ms; /* whole head must arrive within; 10 s (-> 408, close) */
  uint64_t idle_timeout_ms;   /* keep-alive idle between requests; 60 s */
  size_t ws_max_message;      /* one incoming WS message; 1 MiB (-> close 1009) */
  size_t ws_high_water;       /* outbound WS backlog where reading pauses; 1 MiB */
  size_t ws_max_backlog;      /* outbound WS backlog cap -> close; 16 MiB */
  unsigned max_conn_per_addr; /* open connections from one client IP (more: closed at
                                 accept, see net.h max_per_addr); 0 = no cap */
};
/* Fills every zero field of l with its default. */
void http_limits_fill(struct http_limits *l);

struct http_server_opts {
  const char *host; /* NULL = "0.0.0.0" */
  int port;         /* 0 = any free port (http_server_port) */
  struct http_limits limits;
  /* Allowed CORS origins, NULL-terminated ("https://app.example.com"); NULL = none,
     {"*", NULL} = any. */
  const char *const *cors_origins;
  bool cors_credentials; /* send Access-Control-Allow-Credentials: true */
  int backlog;           /* listen backlog; 0 = 511 */
  bool request_ids;      /* X-Request-Id in and out, log context (see above) */
  bool access_log;       /* one info log line per answered request (see above) */
};

typedef void (*http_handler_fn)(struct http_req *req, void *ud);

/* Listens and serves. EG_EIO (bind failed, logged), EG_EINVAL. The options are copied
   (including the origin strings). */
EG_WUR int http_server_start(uv_loop_t *loop, const struct http_server_opts *o,
                             http_handler_fn on_request, void *ud, struct http_server **out);
int http_server_port(const struct http_server *s);
uv_loop_t *http_server_loop(const struct http_server *s);
/* Stops accepting, closes idle connections now, closes the others after their pending
   response; open WebSockets get close 1001. Pending requests with abort callbacks are
   aborted. on_closed(ud) runs once everything is closed; the server is freed then. */
void http_server_stop(struct http_server *s, void (*on_closed)(void *ud), void *ud);
/* True if origin is allowed by the server's cors_origins. */
bool http_server_origin_allowed(const struct http_server *s, struct slice origin);

/* ---- requests ---------------------------------------------------------------------------- */

enum http_method http_req_method(const struct http_req *r);
struct slice http_req_method_str(const struct http_req *r);
/* The request-target as sent ("/a%20b?x=1"). */
struct slice http_req_target(const struct http_req *r);
/* The path, percent-decoded, without the query ("/a b"). */
struct slice http_req_path(const struct http_req *r);
/* The raw query string after '?', without it ("" if none). */
struct slice http_req_query_string(const struct http_req *r);
/* First query parameter named name, decoded ('+' is a space). false if absent. */
bool http_req_query(struct http_req *r, const char *name, struct slice *out);
/* First header named name (case-insensitive), value trimmed. false if absent. */
bool http_req_header(const struct http_req *r, const char *name, struct slice *out);
/* Iterate headers: i from 0 while it returns true. */
bool http_req_header_at(const struct http_req *r, size_t i, struct slice *name,
                        struct slice *value);
/* Cookie named name from the Cookie header(s) (quotes stripped). false if absent. */
bool http_req_cookie(const struct http_req *r, const char *name, struct slice *out);
/* The whole body (empty slice if none). */
struct slice http_req_body(const struct http_req *r);
/* The peer as "ip:port" ("[ip6]:port"). */
const char *http_req_remote(const struct http_req *r);
/* Unique per server, increasing. */
uint64_t http_req_id(const struct http_req *r);
/* The request id (see "Request ids"), NUL-terminated; "" when the server has no
   request_ids. Valid as long as r. */
const char *http_req_request_id(const struct http_req *r);
int http_req_version_minor(const struct http_req *r); /* 0 or 1 */
struct http_server *http_req_server(const struct http_req *r);
uv_loop_t *http_req_loop(const struct http_req *r);
/* Router parameter (":id" in the pattern) of the matched route, decoded. */
bool http_req_param(const struct http_req *r, const char *name, struct slice *out);
/* One pointer for the handler's own use (NULL at start). */
void http_req_set_data(struct http_req *r, void *data);
void *http_req_data(const struct http_req *r);

/* See "Request lifetime" above. Replaces any earlier callback. */
void http_req_on_abort(struct http_req *r, void (*cb)(struct http_req *r, void *ud),
                       void *ud);

/* ---- responses --------------------------------------------------------------------------- */

struct http_header {
  const char *name;
  const char *value;
};

/* Sends the response and ends the request (r invalid afterwards). content_type may be
   NULL (no Content-Type). Returns 0; EG_ECLOSED if the client is gone (nothing sent, r
   freed); EG_EINVAL for a status outside 100..599 or a header with CR/LF (r then still
   answered with 500). */
EG_WUR int http_respond(struct http_req *r, int status, const char *content_type,
                        const void *body, size_t len);
/* Same, with extra headers (e.g. Set-Cookie, several allowed; Location; Cache-Control). */
EG_WUR int http_respond_ex(struct http_req *r, int status, const char *content_type,
                           const struct http_header *hdrs, size_t nhdrs, const void *body,
                           size_t len);
/* JSON body (application/json; charset=utf-8) from a NUL-terminated string. */
EG_WUR int http_respond_json(struct http_req *r, int status, const char *json);
/* {"message": message} as JSON (the REST error shape). */
EG_WUR int http_respond_error(struct http_req *r, int status, const char *message);

/* ---- router ------------------------------------------------------------------------------ */

/* Patterns are absolute paths whose segments are literals, ":name" parameters (one
   non-empty segment) or a final "*" (the rest, possibly empty, as parameter "*").
   Matching is on the raw path, segment by segment; parameters are percent-decoded.
   Routes are tried in the order added. */
struct http_router *http_router_new(void);
void http_router_free(struct http_router *rt);
/* HTTP_METHOD_UNKNOWN as method matches any method. EG_EINVAL for a bad pattern. */
EG_WUR int http_router_add(struct http_router *rt, enum http_method m, const char *pattern,
                           http_handler_fn fn, void *ud);
/* Called when no route's path matches (default: 404 {"message":"Not found"}). */
void http_router_set_fallback(struct http_router *rt, http_handler_fn fn, void *ud);
/* Dispatches r: the first route matching method and path; if paths match but no method
   does, 405 with Allow; otherwise the fallback. Usable as the server handler:
   http_server_start(loop, &o, http_router_dispatch, router, &s). HEAD falls back to GET
   routes. */
void http_router_dispatch(struct http_req *r, void *router);

/* ---- cookies (pure) ----------------------------------------------------------------------- */

/* Iterates "a=1; b=2" pairs of a Cookie header value. Pairs without '=' are skipped;
   surrounding whitespace is trimmed; a value in double quotes is unquoted. */
struct http_cookie_iter {
  const char *p, *end;
};
void http_cookie_iter_init(struct http_cookie_iter *it, struct slice header);
bool http_cookie_next(struct http_cookie_iter *it, struct slice *name, struct slice *value);
/* First cookie named name in a Cookie header value. */
bool http_cookie_find(struct slice header, const char *name, struct slice *value);

enum http_same_site { HTTP_SAMESITE_UNSET, HTTP_SAMESITE_LAX, HTTP_SAMESITE_STRICT,
                      HTTP_SAMESITE_NONE };
struct http_set_cookie {
  const char *name;  /* RFC 6265 token */
  const char *value; /* cookie-octets (no quotes, spaces, commas, semicolons, backslashes) */
  const char *path;  /* NULL = no Path */
  const char *domain;
  int64_t max_age; /* seconds; < 0 = no Max-Age attribute; 0 deletes */
  int64_t expires_ms; /* wall-clock ms for Expires; 0 = none */
  bool http_only, secure;
  enum http_same_site same_site;
};
/* Appends a Set-Cookie header VALUE ("token=abc; Path=/; HttpOnly; SameSite=Lax") to out.
   EG_EINVAL for a bad name/value/attribute, EG_ETOOBIG from out's cap. */
EG_WUR int http_set_cookie_build(const struct http_set_cookie *c, struct buf *out);

/* ---- static files -------------------------------------------------------------------------- */

/* A compiled-in file. etag may be NULL (then a strong ETag is computed from the data on
   first use and cached in etag_buf). gz/gz_len: an optional gzip-compressed copy sent
   when the client accepts gzip. */
struct http_static_file {
  const char *content_type;
  const uint8_t *data;
  size_t len;
  const uint8_t *gz;
  size_t gz_len;
  const char *etag;
  char etag_buf[24];
};
/* Answers GET/HEAD with the file (200, or 304 when If-None-Match matches), ETag,
   Cache-Control (cache_control, or "no-cache" if NULL), Vary: Accept-Encoding and
   Content-Encoding: gzip when serving gz. Other methods get 405. Returns as
   http_respond. */
EG_WUR int http_serve_static(struct http_req *r, struct http_static_file *f,
                             const char *cache_control);

/* ---- WebSocket ------------------------------------------------------------------------------ */

struct ws_callbacks {
  /* A whole message: opcode WS_OP_TEXT (valid UTF-8) or WS_OP_BINARY. data is valid only
     during the call. Required. */
  void (*on_message)(struct ws_conn *ws, int opcode, const uint8_t *data, size_t len,
                     void *ud);
  /* The WebSocket is closed (handshake done, error, or TCP dropped: code 1006). Called
     exactly once; ws is invalid after it returns. Required. */
  void (*on_close)(struct ws_conn *ws, int code, void *ud);
  /* The outbound backlog fell under ws_high_water/2 after passing ws_high_water.
     Optional. */
  void (*on_drain)(struct ws_conn *ws, void *ud);
};

/* Upgrades r. Returns 0: 101 sent, *out set, r invalid; messages arrive later from the
   loop (never inside this call). EG_EINVAL: not a valid WebSocket upgrade request;
   nothing sent, r still pending (answer it, typically 400). EG_ECLOSED: client gone
   (r freed). */
EG_WUR int http_ws_accept(struct http_req *r, const struct ws_callbacks *cb, void *ud,
                          struct ws_conn **out);
/* Same, with extra headers in the 101 response (e.g. Set-Cookie). */
EG_WUR int http_ws_accept_ex(struct http_req *r, const struct ws_callbacks *cb, void *ud,
                             const struct http_header *hdrs, size_t nhdrs,
                             struct ws_conn **out);
/* True if r looks like a WebSocket upgrade (Upgrade: websocket). */
bool http_req_is_upgrade(const struct http_req *r);

/* Send one message (copied into the write queue). opcode WS_OP_TEXT or WS_OP_BINARY.
   Returns 0; EG_ECLOSED (closing/closed: dropped); EG_ETOOBIG (backlog cap passed: the
   connection is being closed, on_close follows with 1008). Text is not re-validated. */
EG_WUR int ws_send(struct ws_conn *ws, int opcode, const void *p, size_t n);
EG_WUR int ws_send_text(struct ws_conn *ws, const void *p, size_t n);
EG_WUR int ws_send_binary(struct ws_conn *ws, const void *p, size_t n);
/* One message made of several pieces (e.g. an Engine.IO type byte + payload). */
EG_WUR int ws_sendv(struct ws_conn *ws, int opcode, const uv_buf_t *parts, unsigned nparts);
/* Zero-copy broadcast: build a complete frame once with ws_frame_new (pieces joined),
   send it to many connections with ws_send_frame (each takes its own reference), then
   net_sbuf_unref it. */
struct net_sbuf *ws_frame_new(int opcode, const uv_buf_t *parts, unsigned nparts);
EG_WUR int ws_send_frame(struct ws_conn *ws, struct net_sbuf *frame);
/* Starts the close handshake (code 1000..4999, reason may be NULL); on_close(code) follows
   once the peer answers (or after 2 s). Nothing is delivered after this call. */
void ws_close(struct ws_conn *ws, int code, const char *reason);
/* Bytes queued for this connection. */
size_t ws_backlog(const struct ws_conn *ws);
/* Rebinds callbacks (e.g. Engine.IO handing the socket to a session). */
void ws_set_callbacks(struct ws_conn *ws, const struct ws_callbacks *cb, void *ud);
/* The peer as "ip:port". */
const char *ws_remote(const struct ws_conn *ws);

#endif
