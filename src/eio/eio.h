/*
 * eio: Engine.IO v4 server sessions over the http module: HTTP long-polling and
 * WebSocket transports, the polling -> websocket upgrade, the server-driven heartbeat,
 * maxPayload, and the reference server's exact error answers. Socket.IO (src/sio) is
 * built on it; a plain Engine.IO program (examples/eio-echo.c) can use it directly.
 *
 * Using it
 *     struct eio_opts o;  eio_opts_default(&o);  o.ping_interval_ms = 300; ...
 *     struct eio_callbacks cb = { .on_open = ..., .on_message = ..., .on_close = ... };
 *     eio_server_new(loop, &o, &cb, ud, &eio);
 *     // route every request under the Engine.IO path to it, e.g. with the http router:
 *     http_router_add(rt, HTTP_METHOD_UNKNOWN, "/engine.io/" "*", eio_http_handler, eio);
 *   then send with eio_send_text / eio_send_binary, close with eio_close.
 *
 * Wire behaviour (as the reference `engine.io` 6.x server)
 *   - Query: EIO=4 (anything else at handshake -> 400 code 5), transport=polling|websocket
 *     (else 400 code 0), sid=<20 chars> for an existing session (unknown -> 400 code 1).
 *   - Handshake: GET only (else 400 code 2); transport=websocket without an Upgrade
 *     header -> 400 code 3; the allow_request hook may refuse (403 code 4 with its
 *     message). Errors are 400 (403 for code 4) with {"code":N,"message":"..."}; on a
 *     WebSocket upgrade request they are "400 Bad Request" with the message as text, as
 *     the reference's abortUpgrade does.
 *   - The open packet: {"sid","upgrades","pingInterval","pingTimeout","maxPayload"};
 *     upgrades is ["websocket"] on polling, [] on websocket.
 *   - Polling: one pending GET at a time (a second one -> 400 and the session closes
 *     with "transport error"; the first GET gets the close packet); output accumulates in
 *     one payload buffer and is answered at the end of the loop turn (packets joined by
 *     0x1e, binary as "b<base64>"). POST bodies: 200 "ok"; over max_payload -> 413 and
 *     the session closes; Content-Type application/octet-stream -> 400 and close.
 *   - Upgrade: a WebSocket with the sid of a polling session; "2probe" -> "3probe" plus a
 *     noop to the pending GET so the client pauses polling; "5" switches the session to
 *     the WebSocket (buffered output moves there). Any other packet, a close, or
 *     upgrade_timeout_ms aborts the attempt. Once upgraded, polling requests -> 400 code 3
 *     and further WebSockets for that sid are closed.
 *   - Heartbeat: the server sends "2" every ping_interval_ms and closes the session
 *     ("ping timeout") when no "3" comes within ping_timeout_ms. A ping from the client is
 *     an error (v4). Any other packet while waiting for a pong extends the wait once.
 *   - A WebSocket message over max_payload closes the connection (1009).
 *
 * Close reasons given to on_close: "transport close" (the client closed or sent a close
 * packet), "transport error" (protocol violation, a too large message, an aborted poll,
 * a concurrent poll), "ping timeout", "forced close" (eio_close), "server shutting down"
 * (eio_server_close).
 *
 * Memory: a session is one ~200-byte struct (no inline buffers; the polling output
 * buffer exists only while it holds data). Timeouts of all sessions share one uv_timer
 * (timerq.h): no per-session timers.
 *
 * Threads: the loop thread only. Lifetime: a session is valid from on_open until
 * on_close returns; eio_close() may be called from any callback (the session is freed
 * later, never inside the call).
 *
 * Return codes: 0 or a negative EG_E* code: EG_ECLOSED (session closing/closed),
 * EG_ETOOBIG (output backlog cap passed: the session is being closed), EG_EINVAL.
 */
#ifndef ENGRAM_EIO_H
#define ENGRAM_EIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/base.h"
#include "http/http.h"
#include "net/net.h"

struct eio_server;
struct eio_session;

enum eio_transport { EIO_TRANSPORT_POLLING = 0, EIO_TRANSPORT_WEBSOCKET = 1 };

struct eio_opts {
  uint32_t ping_interval_ms;   /* 25000 */
  uint32_t ping_timeout_ms;    /* 20000 */
  uint32_t upgrade_timeout_ms; /* 10000 */
  size_t max_payload;          /* 1000000: polling POST body / one WebSocket message */
  size_t max_buffer;           /* 16 MiB: output buffered for a polling session */
  bool allow_polling;          /* true */
  bool allow_websocket;        /* true */
  bool allow_upgrades;         /* true */
  /* Called for every handshake (new session) before anything is created. Return 0 to
     accept; non-zero refuses with 403 {"code":4,"message":*message or "Forbidden"}.
     Read the request's headers here (Origin, Cookie, Authorization). May be NULL. */
  int (*allow_request)(struct http_req *req, void *ud, const char **message);
  void *allow_request_ud; /* its ud (NULL: the server's ud given to eio_server_new) */
};

struct eio_callbacks {
  /* A new session. req is the handshake request, valid only during the call (copy what
     you need: cookies, Authorization, Origin, remote address). Sending here is fine
     (it goes after the open packet). Required. */
  void (*on_open)(struct eio_session *s, struct http_req *req, void *ud);
  /* A message packet: text (binary == false; not NUL-terminated) or binary. data is valid
     only during the call. Required. */
  void (*on_message)(struct eio_session *s, bool binary, const uint8_t *data, size_t len,
                     void *ud);
  /* The session closed (reason: see above). The last callback for s. Required. */
  void (*on_close)(struct eio_session *s, const char *reason, void *ud);
};

/* Fills o with the defaults listed above. */
void eio_opts_default(struct eio_opts *o);

/* Creates a server on loop. The options and callbacks are copied. EG_EINVAL. */
EG_WUR int eio_server_new(uv_loop_t *loop, const struct eio_opts *o,
                          const struct eio_callbacks *cb, void *ud, struct eio_server **out);
/* Handles one HTTP request for the Engine.IO path (an http_handler_fn: ud is the
   struct eio_server). Answers it now or later. */
void eio_http_handler(struct http_req *req, void *ud);
/* Closes every session ("server shutting down"), then frees the server once the last
   session and its timer are gone; on_closed(ud) runs then (may be NULL). Requests that
   arrive afterwards get 503. */
void eio_server_close(struct eio_server *srv, void (*on_closed)(void *ud), void *ud);
/* Open sessions. */
size_t eio_server_count(const struct eio_server *srv);
/* Sessions open now by transport (a session being upgraded counts as polling until the
   upgrade completes, then as websocket; a closed polling session waiting to hand its
   close packet to the next GET counts as neither), and upgrades completed since start.
   (Added for /metrics.) */
struct eio_stats {
  size_t polling, websocket;
  uint64_t upgrades;
};
void eio_server_stats(const struct eio_server *srv, struct eio_stats *out);
const struct eio_opts *eio_server_opts(const struct eio_server *srv);
uv_loop_t *eio_server_loop(const struct eio_server *srv);

/* ---- sessions ----------------------------------------------------------------------------- */

/* Sends a message packet. Text is sent as-is (must be UTF-8 for WebSocket peers). */
EG_WUR int eio_send_text(struct eio_session *s, const void *data, size_t len);
EG_WUR int eio_send_binary(struct eio_session *s, const void *data, size_t len);
/* Sends a whole Engine.IO text packet already starting with its type digit (e.g. "4..."
   as sio_encode(SIO_ENC_EIO_PREFIX) writes it): saves a copy on WebSocket. */
EG_WUR int eio_send_packet(struct eio_session *s, const char *pkt, size_t len);
/* Same, with the packet given in pieces (joined; no copy on WebSocket). */
EG_WUR int eio_send_packetv(struct eio_session *s, const uv_buf_t *parts, unsigned nparts);
/* Broadcast form of eio_send_packet: frame is a ready WebSocket frame of the same packet
   (ws_frame_new(WS_OP_TEXT, ...)), sent by reference to WebSocket sessions; polling
   sessions copy pkt. frame may be NULL (then built per call, for polling-only use). */
EG_WUR int eio_send_packet_shared(struct eio_session *s, struct net_sbuf *frame,
                                  const char *pkt, size_t len);
/* Broadcast form of eio_send_binary: frame is a ready WebSocket binary frame of data. */
EG_WUR int eio_send_binary_shared(struct eio_session *s, struct net_sbuf *frame,
                                  const void *data, size_t len);
/* Closes the session ("forced close"): polling sessions get a close packet, WebSocket
   sessions a close frame. on_close follows (from this call's caller's turn: it may be
   called before eio_close returns, so do not touch s afterwards). */
void eio_close(struct eio_session *s);

const char *eio_session_id(const struct eio_session *s); /* 20 chars + NUL */
enum eio_transport eio_session_transport(const struct eio_session *s);
bool eio_session_open(const struct eio_session *s);
void eio_session_set_data(struct eio_session *s, void *data);
void *eio_session_data(const struct eio_session *s);
struct eio_server *eio_session_server(const struct eio_session *s);
/* Bytes waiting to go out (polling buffer or WebSocket backlog). */
size_t eio_session_backlog(const struct eio_session *s);

/* ---- query parsing (pure; exposed for tests and fuzzing) ----------------------------------- */

/* The Engine.IO parameters of a query string ("EIO=4&transport=polling&sid=..."). Each
   is the first occurrence, still percent-encoded (none of the valid values need
   decoding; a value that does is simply not a valid one). */
struct eio_query {
  struct slice eio, transport, sid;
  bool has_eio, has_transport, has_sid;
};
/* Never fails: unknown parameters are skipped. */
void eio_query_parse(struct slice qs, struct eio_query *q);

#endif
