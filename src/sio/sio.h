/*
 * sio: a Socket.IO v5 server in C, on Engine.IO v4 sessions (src/eio).
 *
 * ---- A short tutorial ---------------------------------------------------------------------
 *
 *   struct sio_opts o;
 *   sio_opts_default(&o);                 // path "/socket.io/", pings 25 s/20 s, 1 MB ...
 *   struct sio_server *io;
 *   sio_server_new(loop, &o, &io);
 *   // Route the Engine.IO path of your HTTP server to it:
 *   http_router_add(rt, HTTP_METHOD_UNKNOWN, "/socket.io/" "*", sio_http_handler, io);
 *
 *   struct sio_nsp *root = sio_of(io, "/");   // namespaces exist once the app creates them
 *   sio_on_connection(root, on_conn, app);
 *   sio_on(root, "chat", on_chat, app);       // handlers are per namespace, by event name
 *   sio_on_disconnect(root, on_gone, app);
 *   sio_use(root, check_token, app);          // connect middleware, in order
 *
 *   static void check_token(struct sio_socket *s, const json_t *auth, void *ud) {
 *     // Synchronously or later (after a DB lookup on a worker thread):
 *     sio_accept(s);                            // or: sio_refuse(s, "Not authorized", NULL);
 *   }
 *   static void on_chat(struct sio_socket *s, const char *event, json_t *args,
 *                       int64_t ack, void *ud) {
 *     // args: a JSON array of the event's arguments (binary buffers are "bin nodes",
 *     // see proto/sio.h). Borrowed: json_incref it to keep it.
 *     if (ack != SIO_NO_ACK) sio_ack(s, ack, json_pack("[s]", "ok"));   // steals
 *     sio_emit(s, "chat", json_pack("[s]", "hello"));                     // steals
 *     sio_join(s, "room1");
 *     sio_broadcast(sio_socket_nsp(s), &(struct sio_bcast){.room = "room1",
 *                   .except = s}, "chat", json_pack("[s]", "to the room"));
 *   }
 *
 *   Server -> client with an ack: sio_emit_ack(s, "question", args, 5000, on_answer, ud);
 *   on_answer(s, status, args, ud) runs once: status 0 with the client's ack arguments,
 *   EG_ETIMEOUT after the timeout, or EG_ECLOSED if the socket went away first (then s is
 *   NULL).
 *
 * ---- Behaviour (as the reference `socket.io` 4.x server) -----------------------------------
 *   - CONNECT to a namespace the app did not create: CONNECT_ERROR
 *     {"message":"Invalid namespace"}. Middleware refusal: CONNECT_ERROR
 *     {"message":<msg>[,"data":<data>]} (the client's connect_error with that message).
 *     Success: CONNECT {"sid":<socket id>} then on_connection.
 *   - No CONNECT to any namespace within connect_timeout_ms: the connection is closed.
 *   - A second CONNECT to a namespace already joined, a packet for a namespace not
 *     joined, or any malformed packet (sio_decoder rules, proto/sio.h) closes the whole
 *     connection (the reference's "invalid state"/"parse error").
 *   - Event names reserved by the protocol ("connect", "connect_error", "disconnect",
 *     "disconnecting", "newListener", "removeListener") are never dispatched from clients.
 *   - Socket ids: 20 URL-safe characters from the CSPRNG (like Engine.IO sids).
 *   - Disconnect reasons given to on_disconnect: "client namespace disconnect",
 *     "server namespace disconnect", "transport close", "transport error",
 *     "ping timeout", "parse error", "forced close", "server shutting down".
 *
 * ---- Rooms and broadcasts ---------------------------------------------------------------------
 *   Rooms are per namespace, created on first join and dropped when empty. join/leave are
 *   O(1) on average (a hash of rooms; each membership is a node linked both in the room
 *   and in the socket). A broadcast encodes its packet ONCE into a refcounted buffer and
 *   builds ONE WebSocket frame that every WebSocket recipient references; a socket in
 *   several targeted rooms receives it once. The adapter seam (struct sio_adapter_ops)
 *   lets a Redis adapter forward broadcasts to other nodes later; the default adapter is
 *   local.
 *
 * ---- Threads, lifetime, ownership ----------------------------------------------------------------
 *   Everything runs on the loop thread. A struct sio_socket is valid from the middleware
 *   call (or on_connection) until on_disconnect returns. A socket whose middleware is
 *   still pending stays allocated until the app calls sio_accept/sio_refuse exactly once,
 *   even if the client left meanwhile (sio_socket_connected() is then false and the
 *   call only frees it). JSON arguments given to sio_emit*, sio_ack, sio_broadcast are
 *   STOLEN (reference taken over; NULL means no arguments); JSON given to handlers is
 *   borrowed.
 *
 * Return codes: 0 or a negative EG_E* code: EG_ECLOSED (socket disconnected),
 * EG_EINVAL (bad arguments, e.g. a reserved event name), EG_ETOOBIG (a limit).
 */
#ifndef ENGRAM_SIO_H
#define ENGRAM_SIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "base/base.h"
#include "eio/eio.h"
#include "http/http.h"

struct sio_server;
struct sio_nsp;
struct sio_socket;

#define SIO_NO_ACK (-1)
#define SIO_ID_LEN 20

struct sio_opts {
  const char *path;            /* informational: the prefix the app routes ("/socket.io/") */
  struct eio_opts eio;         /* Engine.IO options (pings, max payload, allow_request) */
  uint32_t connect_timeout_ms; /* 45000 */
  size_t max_attachments;      /* binary attachments per packet: 10 */
  size_t max_depth;            /* JSON nesting: 32 */
  /* Request headers kept for the connection's lifetime (sio_socket_header), lower
     case, NULL-terminated; NULL = {"cookie", "authorization", "origin", "user-agent"}.
     Only present headers cost memory (one small allocation per connection). */
  const char *const *keep_headers;
};

void sio_opts_default(struct sio_opts *o);

EG_WUR int sio_server_new(uv_loop_t *loop, const struct sio_opts *o, struct sio_server **out);
/* The http_handler_fn for the Socket.IO path (ud is the struct sio_server). */
void sio_http_handler(struct http_req *req, void *ud);
/* Disconnects everyone ("server shutting down"), then frees the server (and its
   namespaces) once the Engine.IO side is gone; on_closed(ud) runs then. */
void sio_server_close(struct sio_server *io, void (*on_closed)(void *ud), void *ud);
struct eio_server *sio_server_eio(const struct sio_server *io);
/* Connected Engine.IO clients. */
size_t sio_server_client_count(const struct sio_server *io);

/* ---- namespaces ---------------------------------------------------------------------------- */

/* The namespace called name ("/", "/admin"), created on first use. NULL for a name that
   is not a valid namespace (must start with '/', no ',', <= 255 bytes). */
struct sio_nsp *sio_of(struct sio_server *io, const char *name);
const char *sio_nsp_name(const struct sio_nsp *nsp);
size_t sio_nsp_count(const struct sio_nsp *nsp); /* connected sockets */

/* Middleware: decide with sio_accept/sio_refuse, now or later. auth is the CONNECT
   payload (an object; {} when the client sent none), borrowed: valid until the decision
   (also via sio_socket_auth). */
typedef void (*sio_middleware_fn)(struct sio_socket *s, const json_t *auth, void *ud);
void sio_use(struct sio_nsp *nsp, sio_middleware_fn fn, void *ud);
/* Accept / refuse a socket whose middleware is running (each middleware ends with one of
   them; the next middleware runs after an accept). message: the connect_error text;
   data: optional extra JSON (stolen) sent as "data". */
void sio_accept(struct sio_socket *s);
void sio_refuse(struct sio_socket *s, const char *message, json_t *data);

typedef void (*sio_connection_fn)(struct sio_socket *s, void *ud);
typedef void (*sio_event_fn)(struct sio_socket *s, const char *event, json_t *args,
                             int64_t ack, void *ud);
typedef void (*sio_disconnect_fn)(struct sio_socket *s, const char *reason, void *ud);
void sio_on_connection(struct sio_nsp *nsp, sio_connection_fn fn, void *ud);
/* Handler for one event name (replaces an earlier one); event NULL = any event without
   its own handler. */
void sio_on(struct sio_nsp *nsp, const char *event, sio_event_fn fn, void *ud);
void sio_on_disconnect(struct sio_nsp *nsp, sio_disconnect_fn fn, void *ud);

/* Fast path: a handler that takes the arguments as raw JSON text, without a jansson tree
   (no allocation per event). args is the text of the arguments as they came, the
   elements of the packet's array after the event name, comma-separated, without the
   brackets ("" when none): for 42["echo","hi",{"a":1}] it is "hi",{"a":1} with quotes.
   Packets outside the scanner's subset (jscan.h: \u escapes, non-ASCII, long numbers)
   reach it re-serialised from the tree. Binary arguments never reach a raw handler:
   register a tree handler (sio_on) for the same event too; when both exist, plain
   packets go to the raw one and binary ones to the tree one. */
typedef void (*sio_raw_fn)(struct sio_socket *s, const char *event, struct slice args,
                           int64_t ack, void *ud);
void sio_on_raw(struct sio_nsp *nsp, const char *event, sio_raw_fn fn, void *ud);
/* Ack / emit with raw JSON arguments (same form as above: comma-separated values, no
   brackets; the caller guarantees they are valid JSON). The event name must not need
   JSON escaping (EG_EINVAL otherwise). */
EG_WUR int sio_ack_raw(struct sio_socket *s, int64_t ack, struct slice args);
EG_WUR int sio_emit_raw(struct sio_socket *s, const char *event, struct slice args);

/* ---- sockets ---------------------------------------------------------------------------------- */

const char *sio_socket_id(const struct sio_socket *s);
struct sio_nsp *sio_socket_nsp(const struct sio_socket *s);
struct sio_server *sio_socket_server(const struct sio_socket *s);
bool sio_socket_connected(const struct sio_socket *s);
void sio_socket_set_data(struct sio_socket *s, void *data);
void *sio_socket_data(const struct sio_socket *s);
/* The CONNECT auth payload: valid during middleware and on_connection, NULL after. */
const json_t *sio_socket_auth(const struct sio_socket *s);
/* A kept handshake header (see keep_headers) of the connection; false if absent. */
bool sio_socket_header(const struct sio_socket *s, const char *name, struct slice *out);
/* The peer address "ip:port" as seen at the handshake. */
const char *sio_socket_remote(const struct sio_socket *s);
/* The Engine.IO transport in use now. */
enum eio_transport sio_socket_transport(const struct sio_socket *s);

/* Emit an event (args: a JSON array or NULL; stolen). */
EG_WUR int sio_emit(struct sio_socket *s, const char *event, json_t *args);
typedef void (*sio_ack_fn)(struct sio_socket *s, int status, json_t *args, void *ud);
/* Emit expecting an ack within timeout_ms (0 = no timeout). cb runs exactly once (see
   the tutorial), never inside this call. */
EG_WUR int sio_emit_ack(struct sio_socket *s, const char *event, json_t *args,
                        uint32_t timeout_ms, sio_ack_fn cb, void *ud);
/* Answer a client's ack request (ack as given to the handler; args stolen). Once. */
EG_WUR int sio_ack(struct sio_socket *s, int64_t ack, json_t *args);
/* Leave the namespace: the client gets DISCONNECT, on_disconnect runs with "server
   namespace disconnect". close_conn also closes the whole Engine.IO connection. */
void sio_disconnect(struct sio_socket *s, bool close_conn);

/* Rooms (names are any non-empty strings, copied). */
EG_WUR int sio_join(struct sio_socket *s, const char *room);
void sio_leave(struct sio_socket *s, const char *room);
void sio_leave_all(struct sio_socket *s);
bool sio_in_room(const struct sio_socket *s, const char *room);

/* Broadcast target: everyone in the namespace (rooms NULL/0 and room NULL), or in any of
   the rooms; minus `except` and the members of except_rooms. */
struct sio_bcast {
  const char *room;               /* one room (convenience) */
  const char *const *rooms;       /* or several */
  size_t nrooms;
  const char *const *except_rooms;
  size_t nexcept_rooms;
  const struct sio_socket *except; /* typically the sender */
};
/* Returns the number of sockets reached locally (>= 0) or an error. args stolen. */
int sio_broadcast(struct sio_nsp *nsp, const struct sio_bcast *to, const char *event,
                  json_t *args);
/* The same with the arguments as JSON text (as sio_emit_raw: the arguments without the
   brackets, valid JSON the caller vouches for; the event name must not need escaping):
   no tree is built or encoded. Only an adapter other than the local one (Redis) gets
   pkt->data, parsed from the text for it (EG_EINVAL if that fails). */
int sio_broadcast_raw(struct sio_nsp *nsp, const struct sio_bcast *to, const char *event,
                      struct slice args);

/* ---- adapter seam ------------------------------------------------------------------------------ */

/* What a broadcast hands to the adapter: the packet encoded once. */
struct sio_attachment_ref {
  const uint8_t *data;
  size_t len;
  struct net_sbuf *frame; /* its WebSocket binary frame (shared) */
};
struct sio_bpacket {
  const char *text;      /* Engine.IO text packet ("4" + Socket.IO packet) */
  size_t len;
  struct net_sbuf *frame; /* its WebSocket text frame (shared) */
  size_t nattach;         /* binary attachments, each one Engine.IO binary message */
  const struct sio_attachment_ref *attach;
  const json_t *data;     /* [event, args...] as encoded (for adapters that re-encode) */
};
/* Rooms and broadcast as seen by a namespace. The local adapter implements them in
   memory; a cluster adapter would wrap it and also publish to other nodes. Each op
   returns 0 or an error (broadcast: sockets reached). */
struct sio_adapter_ops {
  int (*join)(void *a, struct sio_socket *s, const char *room);
  void (*leave)(void *a, struct sio_socket *s, const char *room);
  void (*leave_all)(void *a, struct sio_socket *s);
  int (*broadcast)(void *a, struct sio_nsp *nsp, const struct sio_bcast *to,
                   const struct sio_bpacket *pkt);
  void (*destroy)(void *a);
};
/* Replace a namespace's adapter (before any socket connects). The default is local. */
void sio_nsp_set_adapter(struct sio_nsp *nsp, const struct sio_adapter_ops *ops, void *a);
/* The local adapter's functions, for wrappers: deliver pkt to the local sockets. */
int sio_local_broadcast(struct sio_nsp *nsp, const struct sio_bcast *to,
                        const struct sio_bpacket *pkt);

#endif
