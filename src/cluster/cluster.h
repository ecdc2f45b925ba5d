/*
 * cluster: several engram nodes behind a load balancer, on PostgreSQL (data, shared by
 * the store) and Redis (Socket.IO fan-out between nodes, memory index invalidation).
 *
 * ---- Redis adapter (wire-compatible with npm @socket.io/redis-adapter 8 / -emitter 5) ----
 *   Channels (prefix = "socket.io" unless the URL says ?key=<prefix>):
 *     <prefix>#<nsp>#            a broadcast to the whole namespace or to several rooms
 *     <prefix>#<nsp>#<room>#     a broadcast to exactly one room
 *   Message: msgpack [uid, packet, opts] with
 *     uid    = the sending node's 6-character id ("emitter" for @socket.io/redis-emitter);
 *     packet = {type: 2 (EVENT), data: [event, args...], nsp: "/"};
 *     opts   = {rooms: [..], except: [..], flags: {}}.
 *   Every node PSUBSCRIBEs "<prefix>#<nsp>#*", ignores its own uid, and delivers the rest
 *   to its local sockets (rooms/except as given). A local broadcast (sio_broadcast) is
 *   delivered locally and published once. The `except` socket of a local broadcast is
 *   sent as its socket id in opts.except (socket.io's convention); it only exists here.
 *   Binary attachments are not forwarded (engram's events are JSON); such a broadcast is
 *   still delivered locally and counted in publish_skipped.
 *   The request channel (<prefix>-request#<nsp>#: fetchSockets, serverSideEmit...) is not
 *   served.
 *   Delivery is at most once (Redis pub/sub): what is published while a node's
 *   subscription is down is not replayed to it.
 *
 * ---- Memory across nodes --------------------------------------------------------------------
 *   A node that stores something for a user (a chat-message broadcast to "user:<id>", a
 *   chat deleted) makes the user's in-process vector index stale on the other nodes.
 *   They learn it from the same pub/sub stream: a remote chat-message broadcast to room
 *   "user:<id>", and a message on "<prefix>#engram#invalidate" (payload "<uid> <user
 *   id>"; cluster_invalidate_user() publishes one), both call recall_invalidate() for
 *   that user; the index reloads from PostgreSQL on next use.
 *
 * ---- Per-chat order across nodes -----------------------------------------------------------
 *   cluster_chat_lock_ops() implements chat's lock seam (chat.h) with a Redis lock per
 *   chat: SET <prefix>#engram#lock#<chat> <token> NX PX <ttl> (default 10 s, extended
 *   every third of it while the message is answered), released by a compare-and-delete
 *   script; a node waits with backoff (2..50 ms) and goes ahead after twice the TTL.
 *   Redis and not a PostgreSQL advisory lock because an advisory lock pins one
 *   PostgreSQL connection per chat being answered for the whole model call (seconds),
 *   where the Redis lock costs one round trip on the already-open connection. The token
 *   is a fencing counter (INCR <prefix>#engram#fence, in the same script as the SET):
 *   a holder whose lock expired meanwhile (Redis unreachable longer than the TTL) finds
 *   out at the next refresh or at release (logged, counted in lock_lost). The store does
 *   not check the token. A node that dies holding a lock delays that chat by the TTL.
 *
 * Threads: everything on the loop thread (hiredis async on libuv). Redis outages: both
 * connections reconnect every second (a connect not done within 1.5 s is abandoned:
 * hiredis 0.14's libuv adapter never reports a refused connect); while down, broadcasts
 * stay local (counted in publish_errors) and locks are granted locally (counted in
 * lock_degraded) so a node keeps serving its own clients.
 * Return codes: 0, EG_EINVAL (bad URL), EG_ECLOSED (closing).
 */
#ifndef ENGRAM_CLUSTER_H
#define ENGRAM_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "base/base.h"

struct sio_nsp;
struct recall;
struct cluster;

struct cluster_opts {
  uv_loop_t *loop;
  /* redis://[:password@]host[:port][/db][?key=prefix][&lock=0]; lock=0 turns the
     per-chat lock off (cluster_chat_lock_ops returns NULL). */
  const char *redis_url;
  struct recall *recall; /* NULL: no invalidation on receive */
  uint32_t lock_ttl_ms;  /* 0 = 10000 */
};

EG_WUR int cluster_new(const struct cluster_opts *o, struct cluster **out);
/* Installs the Redis adapter on nsp (before sockets connect). One namespace per cluster. */
void cluster_attach(struct cluster *cl, struct sio_nsp *nsp);
/* chat's lock seam (chat.h) over Redis (see "Per-chat order"); valid while cl lives.
   NULL when the URL says lock=0. */
struct chat_lock_ops;
const struct chat_lock_ops *cluster_chat_lock_ops(struct cluster *cl);
/* Tells the other nodes that user_id's memories changed. */
void cluster_invalidate_user(struct cluster *cl, const char *user_id);
/* Both Redis connections are up (for /readyz). */
bool cluster_ready(const struct cluster *cl);
/* Disconnects from Redis; on_closed runs once the handles are closed. Then free. */
void cluster_close(struct cluster *cl, void (*on_closed)(void *ud), void *ud);
void cluster_free(struct cluster *cl);

struct cluster_stats {
  bool pub_up, sub_up;
  uint64_t published, publish_errors, publish_skipped;
  uint64_t received, ignored, delivered; /* remote broadcasts; sockets reached */
  uint64_t decode_errors, reconnects;
  uint64_t invalidations_sent, invalidations_received;
  uint64_t locks, lock_waits, lock_lost, lock_degraded;
  struct histo publish_rtt; /* PUBLISH sent -> reply */
  struct histo lock_wait;   /* lock asked -> granted */
};
void cluster_stats(const struct cluster *cl, struct cluster_stats *st);
/* Appends the cluster's Prometheus metrics. 0 or EG_ETOOBIG. */
EG_WUR int cluster_metrics_render(const struct cluster *cl, struct buf *b);

/* ---- codec (pure; also used by the fuzz target) ----------------------------------------- */

/* A decoded adapter message; it owns copies of everything (cluster_msg_free). */
struct cluster_msg {
  char uid[32];
  char nsp[256];
  int type;      /* 2 = EVENT */
  json_t *data;  /* [event, args...] (owned: json_decref) */
  json_t *rooms; /* array of strings (owned) */
  json_t *except;
};
/* Decodes one whole msgpack [uid, packet, opts] (Redis delivers messages whole). 0,
   EG_EPROTO (malformed, wrong shape, trailing bytes, invalid UTF-8, nesting deeper than
   32) or EG_ETOOBIG (more than 1 MB). On error nothing is owned. */
EG_WUR int cluster_msg_decode(const uint8_t *p, size_t n, struct cluster_msg *m);
void cluster_msg_free(struct cluster_msg *m);
/* Encodes [uid, {type:2, data, nsp}, {rooms, except, flags:{}}] into out (capped).
   data must be a JSON array; rooms/except string arrays of n entries. */
EG_WUR int cluster_msg_encode(const char *uid, const char *nsp, const json_t *data,
                              const char *const *rooms, size_t nrooms,
                              const char *const *except, size_t nexcept, struct buf *out);

#endif
