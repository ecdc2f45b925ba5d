/*
 * eio: Engine.IO v4 sessions (see eio.h for the wire behaviour).
 *
 * Session states
 *
 *     (handshake) --> OPEN --eio_close/ping timeout/error--> CLOSED (unlisted, freed when
 *                      |                                       the last ref goes)
 *                      +--polling, server closes, no GET pending--> CLOSING (listed:
 *                           the next GET gets the close packet, or the linger timer ends it)
 *
 *   Upgrade sub-state of a polling session (upg):
 *     NONE --WebSocket with this sid--> PROBING --"2probe"--> PROBED --"5"--> (transport
 *     becomes WEBSOCKET, upg NONE, upgraded = 1). Anything else on the probe socket, its
 *     close, or upgrade_timeout aborts back to NONE (the probe WebSocket is closed).
 *
 *   Heartbeat node (hb) lanes: LANE_PING (waiting to send the next ping), LANE_PONG
 *   (ping sent, waiting for the pong), LANE_LINGER (CLOSING polling session). The upgrade
 *   timeout uses its own node (upn) on LANE_UPGRADE. Every lane has one fixed duration,
 *   so insertions are O(1) (timerq.h).
 *
 * References (refs) keep a session's memory alive: the sid table holds one while it is
 * listed, a pending GET one, the WebSocket transport and the probe WebSocket one each,
 * and every callback into the application one for its duration. State changes never
 * free memory; dropping the last reference does.
 */
#include "eio/eio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eio/timerq.h"
#include "proto/eio.h"

static inline void ignore_rc(int rc) { (void)rc; }

enum { LANE_PING = 0, LANE_PONG = 1, LANE_LINGER = 2, LANE_UPGRADE = 3 };
enum { ST_OPEN = 0, ST_CLOSING = 1, ST_CLOSED = 2 };
enum { UPG_NONE = 0, UPG_PROBING = 1, UPG_PROBED = 2 };

enum eio_errcode {
  E_UNKNOWN_TRANSPORT = 0,
  E_UNKNOWN_SID = 1,
  E_BAD_HANDSHAKE_METHOD = 2,
  E_BAD_REQUEST = 3,
  E_FORBIDDEN = 4,
  E_UNSUPPORTED_PROTOCOL_VERSION = 5,
};
static const char *const err_messages[] = {
    "Transport unknown", "Session ID unknown",  "Bad handshake method",
    "Bad request",       "Forbidden",           "Unsupported protocol version",
};

struct eio_session {
  struct eio_server *srv;
  struct eio_session *hnext; /* sid hash chain */
  struct eio_session *fnext; /* server flush list */
  struct tq_node hb;         /* heartbeat / linger */
  struct tq_node upn;        /* upgrade timeout */
  struct http_req *get;      /* pending long-poll GET */
  struct ws_conn *ws;        /* WebSocket transport */
  struct ws_conn *probe;     /* WebSocket being upgraded to */
  struct buf out;            /* polling payload waiting for a GET (data NULL when empty) */
  void *data;
  uint32_t refs;
  uint8_t transport;
  uint8_t state;
  uint8_t upg;
  uint8_t upgraded : 1, in_flush : 1, hb_refreshed : 1, listed : 1, app_open : 1;
  char sid[EIO_SID_LEN + 1];
};

struct eio_server {
  uv_loop_t *loop;
  struct eio_opts o;
  struct eio_callbacks cb;
  void *ud;
  struct eio_session **table; /* sid hash buckets */
  size_t nbuckets, count;
  size_t live; /* allocated sessions (listed or not) */
  size_t open_by[2]; /* sessions in ST_OPEN, by transport (eio_server_stats) */
  uint64_t upgrades;
  struct tq tq;
  uv_idle_t idle;
  struct eio_session *flush_head;
  bool closing, tq_closed, idle_closed;
  void (*on_closed)(void *ud);
  void *closed_ud;
};

static void sess_close(struct eio_session *s, const char *reason);
static void srv_maybe_free(struct eio_server *srv);

/* Every state change after the handshake goes through here: it keeps the per-transport
   counts of open sessions. */
static void set_state(struct eio_session *s, uint8_t st) {
  if (s->state == ST_OPEN && st != ST_OPEN)
    s->srv->open_by[s->transport]--;
  else if (s->state != ST_OPEN && st == ST_OPEN)
    s->srv->open_by[s->transport]++;
  s->state = st;
}

/* ---- query string ------------------------------------------------------------------------- */

void eio_query_parse(struct slice qs, struct eio_query *q) {
  memset(q, 0, sizeof(*q));
  const char *p = qs.p, *end = qs.p + qs.len;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(pe - p));
    struct slice k = {p, (size_t)((eq ? eq : pe) - p)};
    struct slice v = {eq ? eq + 1 : pe, eq ? (size_t)(pe - eq - 1) : 0};
    if (!q->has_eio && slice_eq_cstr(k, "EIO")) {
      q->eio = v;
      q->has_eio = true;
    } else if (!q->has_transport && slice_eq_cstr(k, "transport")) {
      q->transport = v;
      q->has_transport = true;
    } else if (!q->has_sid && slice_eq_cstr(k, "sid")) {
      q->sid = v;
      q->has_sid = true;
    }
    p = amp ? amp + 1 : end;
  }
}

/* ---- sid table ---------------------------------------------------------------------------- */

static uint64_t sid_hash(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h ^= (uint8_t)p[i];
    h *= 1099511628211ull;
  }
  return h;
}

static struct eio_session *table_find(struct eio_server *srv, struct slice sid) {
  if (sid.len != EIO_SID_LEN || srv->nbuckets == 0)
    return NULL;
  struct eio_session *s = srv->table[sid_hash(sid.p, sid.len) & (srv->nbuckets - 1)];
  for (; s; s = s->hnext) {
    if (memcmp(s->sid, sid.p, EIO_SID_LEN) == 0)
      return s;
  }
  return NULL;
}

static void table_grow(struct eio_server *srv) {
  size_t n = srv->nbuckets ? srv->nbuckets * 2 : 64;
  struct eio_session **t = xcalloc(n, sizeof(*t));
  for (size_t i = 0; i < srv->nbuckets; i++) {
    struct eio_session *s = srv->table[i], *next;
    for (; s; s = next) {
      next = s->hnext;
      size_t b = sid_hash(s->sid, EIO_SID_LEN) & (n - 1);
      s->hnext = t[b];
      t[b] = s;
    }
  }
  free(srv->table);
  srv->table = t;
  srv->nbuckets = n;
}

static void table_add(struct eio_server *srv, struct eio_session *s) {
  if (srv->count + 1 > srv->nbuckets)
    table_grow(srv);
  size_t b = sid_hash(s->sid, EIO_SID_LEN) & (srv->nbuckets - 1);
  s->hnext = srv->table[b];
  srv->table[b] = s;
  srv->count++;
  s->listed = 1;
}

static void table_del(struct eio_server *srv, struct eio_session *s) {
  if (!s->listed)
    return;
  struct eio_session **pp = &srv->table[sid_hash(s->sid, EIO_SID_LEN) & (srv->nbuckets - 1)];
  for (; *pp; pp = &(*pp)->hnext) {
    if (*pp == s) {
      *pp = s->hnext;
      break;
    }
  }
  s->hnext = NULL;
  s->listed = 0;
  srv->count--;
}

/* ---- references ----------------------------------------------------------------------------- */

static void sess_hold(struct eio_session *s) { s->refs++; }

static void sess_release(struct eio_session *s) {
  if (--s->refs > 0)
    return;
  struct eio_server *srv = s->srv;
  tq_del(&srv->tq, &s->hb);
  tq_del(&srv->tq, &s->upn);
  buf_free(&s->out);
  free(s);
  srv->live--;
  srv_maybe_free(srv);
}

/* ---- output ----------------------------------------------------------------------------------- */

static const struct http_header poll_headers[] = {{"Cache-Control", "no-store"}};

/* Answers the pending GET with whatever is buffered (noop when nothing is). */
static void poll_respond(struct eio_session *s) {
  struct http_req *req = s->get;
  if (!req)
    return;
  s->get = NULL;
  http_req_on_abort(req, NULL, NULL);
  bool empty = !s->out.data || s->out.len == 0;
  const void *body = empty ? "6" : (const void *)s->out.data;
  size_t len = empty ? 1 : s->out.len;
  int rc = http_respond_ex(req, 200, "text/plain; charset=UTF-8", poll_headers, 1, body, len);
  (void)rc; /* a client that left is noticed by the heartbeat */
  buf_free(&s->out);
  buf_init(&s->out, s->srv->o.max_buffer);
  sess_release(s);
}

static void on_idle(uv_idle_t *h);

static void flush_schedule(struct eio_session *s) {
  struct eio_server *srv = s->srv;
  if (s->in_flush || srv->closing)
    return;
  s->in_flush = 1;
  sess_hold(s);
  s->fnext = srv->flush_head;
  srv->flush_head = s;
  uv_idle_start(&srv->idle, on_idle);
}

static void on_idle(uv_idle_t *h) {
  struct eio_server *srv = h->data;
  uv_idle_stop(h);
  while (srv->flush_head) {
    struct eio_session *s = srv->flush_head;
    srv->flush_head = s->fnext;
    s->fnext = NULL;
    s->in_flush = 0;
    if (s->get && s->out.len > 0)
      poll_respond(s);
    sess_release(s);
  }
}

/* Queues one packet on a polling session. */
static int poll_queue(struct eio_session *s, const struct eio_packet *pkt) {
  if (eio_payload_append(&s->out, pkt) != 0) {
    log_warn("eio: session %s: polling buffer over %zu bytes, closing", s->sid,
             s->srv->o.max_buffer);
    sess_close(s, "transport error");
    return EG_ETOOBIG;
  }
  if (s->get)
    flush_schedule(s);
  return 0;
}

static int ws_put(struct ws_conn *ws, const struct eio_packet *pkt) {
  if (pkt->binary)
    return ws_send_binary(ws, pkt->data, pkt->len);
  uint8_t prefix[1];
  size_t pl = eio_ws_prefix(pkt, prefix);
  uv_buf_t parts[2] = {uv_buf_init((char *)prefix, (unsigned)pl),
                       uv_buf_init((char *)(uintptr_t)pkt->data, (unsigned)pkt->len)};
  return ws_sendv(ws, WS_OP_TEXT, parts, pkt->len ? 2 : 1);
}

static int sess_send(struct eio_session *s, const struct eio_packet *pkt) {
  if (s->state != ST_OPEN)
    return EG_ECLOSED;
  if (s->transport == EIO_TRANSPORT_WEBSOCKET && s->ws) {
    int rc = ws_put(s->ws, pkt);
    return rc == EG_ETOOBIG ? EG_ETOOBIG : rc;
  }
  return poll_queue(s, pkt);
}

/* Moves the polling buffer to the WebSocket, packet by packet. */
static void move_buffer_to_ws(struct eio_session *s) {
  if (!s->out.data || s->out.len == 0)
    return;
  struct buf old = s->out;
  buf_init(&s->out, s->srv->o.max_buffer);
  struct eio_payload_decoder d;
  eio_payload_decoder_init(&d, SIZE_MAX, SIZE_MAX);
  size_t off = 0;
  while (off < old.len) {
    struct eio_packet pkt;
    size_t used = 0;
    int rc = eio_payload_decode(&d, old.data + off, old.len - off, true, &used, &pkt);
    if (rc != 0)
      break;
    off += used;
    if (ws_put(s->ws, &pkt) != 0)
      break;
  }
  buf_free(&old);
}

/* ---- closing ------------------------------------------------------------------------------------- */

static const struct ws_callbacks ws_cbs;
static const struct ws_callbacks probe_cbs;

static void app_close(struct eio_session *s, const char *reason) {
  if (!s->app_open)
    return;
  s->app_open = 0;
  sess_hold(s);
  s->srv->cb.on_close(s, reason, s->srv->ud);
  sess_release(s);
}

static void abort_upgrade(struct eio_session *s) {
  tq_del(&s->srv->tq, &s->upn);
  s->upg = UPG_NONE;
  if (s->probe) {
    struct ws_conn *p = s->probe;
    s->probe = NULL;
    ws_set_callbacks(p, &probe_cbs, NULL);
    ws_close(p, 1000, NULL);
    sess_release(s);
  }
}

/* Ends the session: unlists it, stops its timers, closes its transports, tells the app. */
static void sess_close(struct eio_session *s, const char *reason) {
  if (s->state == ST_CLOSED)
    return;
  struct eio_server *srv = s->srv;
  log_debug("eio: session %s closes: %s", s->sid, reason);
  sess_hold(s);
  bool was_open = s->state == ST_OPEN;
  set_state(s, ST_CLOSED);
  tq_del(&srv->tq, &s->hb);
  abort_upgrade(s);
  if (s->listed) {
    table_del(srv, s);
    sess_release(s);
  }
  if (s->get) {
    /* Polling: a pending GET carries the close packet (the reference server's
       "transport writable - closing right away"). */
    if (was_open) {
      struct eio_packet close = {EIO_CLOSE, false, NULL, 0};
      ignore_rc(eio_payload_append(&s->out, &close));
    }
    poll_respond(s);
  }
  if (s->ws) {
    struct ws_conn *ws = s->ws;
    s->ws = NULL;
    ws_set_callbacks(ws, &probe_cbs, NULL);
    ws_close(ws, 1000, NULL);
    sess_release(s);
  }
  buf_free(&s->out);
  if (was_open)
    app_close(s, reason);
  sess_release(s);
}

/* Server-initiated close. A polling session with no GET pending lingers (listed, in
   CLOSING) so that its next GET receives the close packet. */
static void sess_close_graceful(struct eio_session *s, const char *reason) {
  if (s->state != ST_OPEN)
    return;
  if (s->transport == EIO_TRANSPORT_POLLING && !s->get && !s->srv->closing) {
    struct eio_packet close = {EIO_CLOSE, false, NULL, 0};
    abort_upgrade(s);
    ignore_rc(eio_payload_append(&s->out, &close));
    set_state(s, ST_CLOSING);
    tq_add(&s->srv->tq, LANE_LINGER, &s->hb, s->srv->o.ping_timeout_ms + 1000);
    app_close(s, reason);
    return;
  }
  sess_close(s, reason);
}

void eio_close(struct eio_session *s) { sess_close_graceful(s, "forced close"); }

/* ---- timers ---------------------------------------------------------------------------------------- */

static void on_tq(struct tq *q, struct tq_node *n) {
  struct eio_server *srv = q->data;
  if (n->kind == 1) { /* upgrade timeout */
    struct eio_session *s = EG_CONTAINER_OF(n, struct eio_session, upn);
    abort_upgrade(s);
    return;
  }
  struct eio_session *s = EG_CONTAINER_OF(n, struct eio_session, hb);
  if (s->state == ST_CLOSING) {
    /* The linger ended without a GET. */
    set_state(s, ST_OPEN); /* so that sess_close runs its full path, app already told */
    sess_close(s, "forced close");
    return;
  }
  if (s->state != ST_OPEN)
    return;
  /* The heartbeat node's kind says which wait ended: 0 = the next ping is due (it was on
     LANE_PING), 2 = the pong is overdue (LANE_PONG). */
  if (n->kind == 2) {
    sess_close(s, "ping timeout");
    return;
  }
  struct eio_packet ping = {EIO_PING, false, NULL, 0};
  s->hb_refreshed = 0;
  s->hb.kind = 2;
  tq_add(&srv->tq, LANE_PONG, &s->hb, srv->o.ping_timeout_ms);
  sess_hold(s);
  ignore_rc(sess_send(s, &ping));
  sess_release(s);
}

static void schedule_ping(struct eio_session *s) {
  s->hb.kind = 0;
  tq_add(&s->srv->tq, LANE_PING, &s->hb, s->srv->o.ping_interval_ms);
}

/* ---- incoming packets ------------------------------------------------------------------------------ */

/* One packet from the session's current transport. Returns false when the session was
   closed by it. */
static bool on_packet(struct eio_session *s, const struct eio_packet *pkt) {
  struct eio_server *srv = s->srv;
  if (s->state != ST_OPEN)
    return false;
  if (s->hb.kind == 2 && !s->hb_refreshed && pkt->type != EIO_PONG) {
    s->hb_refreshed = 1;
    tq_add(&srv->tq, LANE_PONG, &s->hb, srv->o.ping_timeout_ms);
  }
  switch (pkt->type) {
  case EIO_PONG:
    schedule_ping(s);
    return true;
  case EIO_PING:
    sess_close(s, "transport error"); /* invalid heartbeat direction in v4 */
    return false;
  case EIO_CLOSE:
    /* The client closes: a pending poll ends with a noop, buffered packets are
       dropped (the reference polling transport's onClose). */
    if (s->get) {
      buf_reset(&s->out);
      poll_respond(s);
    }
    sess_close(s, "transport close");
    return false;
  case EIO_MESSAGE:
    sess_hold(s);
    srv->cb.on_message(s, pkt->binary, pkt->data, pkt->len, srv->ud);
    bool open = s->state == ST_OPEN;
    sess_release(s);
    return open;
  default:
    return true; /* open, upgrade, noop: ignored, as the reference does */
  }
}

/* ---- WebSocket transport ---------------------------------------------------------------------------- */

static void ws_on_message(struct ws_conn *ws, int opcode, const uint8_t *data, size_t len,
                          void *ud) {
  struct eio_session *s = ud;
  if (!s || s->ws != ws)
    return;
  if (len > s->srv->o.max_payload) {
    sess_close(s, "transport error");
    return;
  }
  struct eio_packet pkt;
  int rc = opcode == WS_OP_BINARY ? eio_decode_ws_binary(data, len, &pkt)
                                  : eio_decode_ws_text(data, len, &pkt);
  if (rc != 0) {
    sess_close(s, "parse error");
    return;
  }
  (void)on_packet(s, &pkt);
}

static void ws_on_close(struct ws_conn *ws, int code, void *ud) {
  (void)code;
  struct eio_session *s = ud;
  if (!s || s->ws != ws)
    return;
  s->ws = NULL;
  sess_close(s, "transport close");
  sess_release(s);
}

static const struct ws_callbacks ws_cbs = {ws_on_message, ws_on_close, NULL};

/* The probe WebSocket of an upgrading polling session. */
static void probe_on_message(struct ws_conn *ws, int opcode, const uint8_t *data, size_t len,
                             void *ud) {
  struct eio_session *s = ud;
  if (!s || s->probe != ws || s->state != ST_OPEN)
    return;
  struct eio_packet pkt;
  if (opcode != WS_OP_TEXT || eio_decode_ws_text(data, len, &pkt) != 0) {
    abort_upgrade(s);
    return;
  }
  if (pkt.type == EIO_PING && pkt.len == 5 && memcmp(pkt.data, "probe", 5) == 0 &&
      s->upg == UPG_PROBING) {
    struct eio_packet pong = {EIO_PONG, false, (const uint8_t *)"probe", 5};
    (void)ws_put(ws, &pong);
    s->upg = UPG_PROBED;
    /* Let the client pause polling: answer the pending GET now (noop if nothing). */
    poll_respond(s);
    return;
  }
  if (pkt.type == EIO_UPGRADE && s->upg == UPG_PROBED) {
    tq_del(&s->srv->tq, &s->upn);
    s->upg = UPG_NONE;
    s->upgraded = 1;
    s->srv->open_by[EIO_TRANSPORT_POLLING]--; /* open: checked above */
    s->srv->open_by[EIO_TRANSPORT_WEBSOCKET]++;
    s->srv->upgrades++;
    s->transport = EIO_TRANSPORT_WEBSOCKET;
    s->ws = s->probe; /* the probe's reference becomes the transport's */
    s->probe = NULL;
    ws_set_callbacks(s->ws, &ws_cbs, s);
    if (s->get)
      poll_respond(s); /* noop, or what was buffered */
    move_buffer_to_ws(s);
    return;
  }
  abort_upgrade(s);
}

static void probe_on_close(struct ws_conn *ws, int code, void *ud) {
  (void)code;
  struct eio_session *s = ud;
  if (!s || s->probe != ws)
    return;
  s->probe = NULL;
  tq_del(&s->srv->tq, &s->upn);
  s->upg = UPG_NONE;
  sess_release(s);
}

static const struct ws_callbacks probe_cbs = {probe_on_message, probe_on_close, NULL};

/* ---- HTTP ---------------------------------------------------------------------------------------------- */

static void respond_error(struct http_req *req, bool upgrade, int code, const char *message) {
  if (!message)
    message = err_messages[code];
  int rc;
  if (upgrade) {
    rc = http_respond(req, 400, "text/html", message, strlen(message));
  } else {
    struct buf b;
    buf_init(&b, 4096);
    ignore_rc(buf_printf(&b, "{\"code\":%d,\"message\":\"", code));
    for (const char *p = message; *p; p++) {
      if ((unsigned char)*p < 0x20)
        continue;
      if (*p == '"' || *p == '\\')
        ignore_rc(buf_append_byte(&b, '\\'));
      ignore_rc(buf_append_byte(&b, (uint8_t)*p));
    }
    ignore_rc(buf_append_str(&b, "\"}"));
    rc = http_respond(req, code == E_FORBIDDEN ? 403 : 400, "application/json", b.data, b.len);
    buf_free(&b);
  }
  (void)rc;
}

static void get_on_abort(struct http_req *req, void *ud) {
  struct eio_session *s = ud;
  if (s->get != req)
    return;
  s->get = NULL;
  sess_close(s, "transport error"); /* poll connection closed prematurely */
  sess_release(s);
}

static void on_poll_get(struct eio_session *s, struct http_req *req) {
  if (s->get) {
    /* Overlapping polls: the reference closes the session and answers 400. */
    ignore_rc(http_respond(req, 400, NULL, NULL, 0));
    sess_close(s, "transport error");
    return;
  }
  if (s->state == ST_CLOSING) {
    /* The close packet is waiting in out: deliver it and finish. */
    s->get = req;
    sess_hold(s);
    poll_respond(s);
    set_state(s, ST_OPEN);
    s->app_open = 0;
    sess_close(s, "forced close");
    return;
  }
  s->get = req;
  sess_hold(s);
  http_req_on_abort(req, get_on_abort, s);
  if (s->out.len > 0 || s->upg == UPG_PROBED)
    poll_respond(s);
}

static void on_poll_post(struct eio_session *s, struct http_req *req) {
  struct eio_server *srv = s->srv;
  struct slice ct;
  if (http_req_header(req, "content-type", &ct) &&
      slice_case_eq_cstr(ct, "application/octet-stream")) {
    ignore_rc(http_respond(req, 400, NULL, NULL, 0));
    sess_close(s, "transport error");
    return;
  }
  struct slice body = http_req_body(req);
  if (body.len > srv->o.max_payload) {
    ignore_rc(http_respond(req, 413, NULL, NULL, 0));
    sess_close(s, "transport error");
    return;
  }
  if (s->state == ST_CLOSING) {
    ignore_rc(http_respond(req, 200, "text/html", "ok", 2));
    return;
  }
  /* Binary packets are base64-decoded in place; the body buffer belongs to the request,
     which is ours until we answer it, and nothing reads it afterwards. */
  uint8_t *b = (uint8_t *)(uintptr_t)body.p;
  struct eio_payload_decoder d;
  eio_payload_decoder_init(&d, SIZE_MAX, srv->o.max_payload);
  size_t off = 0;
  bool bad = false;
  sess_hold(s);
  while (off < body.len && s->state == ST_OPEN) {
    struct eio_packet pkt;
    size_t used = 0;
    int rc = eio_payload_decode(&d, b + off, body.len - off, true, &used, &pkt);
    if (rc == EG_EAGAIN)
      break;
    if (rc != 0) {
      bad = true;
      break;
    }
    off += used;
    if (!on_packet(s, &pkt))
      break;
  }
  if (body.len == 0)
    bad = true;
  ignore_rc(http_respond(req, 200, "text/html", "ok", 2));
  if (bad)
    sess_close(s, "parse error");
  sess_release(s);
}

static int handshake(struct eio_server *srv, struct http_req *req, bool websocket) {
  struct eio_session *s = xcalloc(1, sizeof(*s));
  s->srv = srv;
  srv->live++;
  tq_node_init(&s->hb);
  tq_node_init(&s->upn);
  s->upn.kind = 1;
  buf_init(&s->out, srv->o.max_buffer);
  do {
    eio_sid_new(s->sid);
  } while (table_find(srv, (struct slice){s->sid, EIO_SID_LEN}));
  s->transport = websocket ? EIO_TRANSPORT_WEBSOCKET : EIO_TRANSPORT_POLLING;
  s->state = ST_OPEN;
  srv->open_by[s->transport]++;
  s->refs = 1; /* our own while setting up */
  table_add(srv, s);
  sess_hold(s); /* the table's */

  struct buf open;
  buf_init(&open, 1024);
  ignore_rc(buf_append_byte(&open, '0'));
  ignore_rc(eio_open_json(&open, s->sid, !websocket && srv->o.allow_upgrades && srv->o.allow_websocket,
                      srv->o.ping_interval_ms, srv->o.ping_timeout_ms,
                      (uint32_t)srv->o.max_payload));
  struct eio_packet op = {EIO_OPEN, false, open.data + 1, open.len - 1};
  ignore_rc(eio_payload_append(&s->out, &op));
  buf_free(&open);

  s->app_open = 1;
  srv->cb.on_open(s, req, srv->ud);
  if (s->state != ST_OPEN) {
    /* Closed by the application inside on_open: refuse the request. */
    respond_error(req, websocket, E_BAD_REQUEST, NULL);
    sess_release(s);
    return 0;
  }
  schedule_ping(s);
  if (websocket) {
    struct ws_conn *ws;
    int rc = http_ws_accept(req, &ws_cbs, s, &ws);
    if (rc == EG_EINVAL) {
      respond_error(req, true, E_BAD_REQUEST, NULL);
      sess_close(s, "transport error");
    } else if (rc != 0) {
      sess_close(s, "transport close");
    } else {
      s->ws = ws;
      sess_hold(s);
      move_buffer_to_ws(s);
    }
  } else {
    s->get = req;
    sess_hold(s);
    poll_respond(s);
  }
  sess_release(s);
  return 0;
}

void eio_http_handler(struct http_req *req, void *ud) {
  struct eio_server *srv = ud;
  if (srv->closing) {
    ignore_rc(http_respond(req, 503, NULL, NULL, 0));
    return;
  }
  struct eio_query q;
  eio_query_parse(http_req_query_string(req), &q);
  bool upgrade_hdr = http_req_is_upgrade(req);
  bool is_ws = q.has_transport && slice_eq_cstr(q.transport, "websocket");
  bool is_poll = q.has_transport && slice_eq_cstr(q.transport, "polling");
  bool upgrade = upgrade_hdr && is_ws;
  if ((!is_ws && !is_poll) || (is_ws && !srv->o.allow_websocket) ||
      (is_poll && !srv->o.allow_polling)) {
    respond_error(req, upgrade_hdr, E_UNKNOWN_TRANSPORT, NULL);
    return;
  }
  struct slice origin;
  if (http_req_header(req, "origin", &origin)) {
    for (size_t i = 0; i < origin.len; i++) {
      unsigned char c = (unsigned char)origin.p[i];
      if ((c < 0x20 && c != '\t') || c == 0x7f) {
        respond_error(req, upgrade, E_BAD_REQUEST, NULL);
        return;
      }
    }
  }
  bool v4 = q.has_eio && slice_eq_cstr(q.eio, "4");
  if (q.has_sid) {
    struct eio_session *s = table_find(srv, q.sid);
    if (!s) {
      respond_error(req, upgrade, E_UNKNOWN_SID, NULL);
      return;
    }
    enum eio_transport t = is_ws ? EIO_TRANSPORT_WEBSOCKET : EIO_TRANSPORT_POLLING;
    if ((!upgrade && (enum eio_transport)s->transport != t) || !v4) {
      respond_error(req, upgrade, E_BAD_REQUEST, NULL);
      return;
    }
    if (upgrade) {
      /* An upgrade attempt: only from polling, once, not while another runs. */
      if (s->transport != EIO_TRANSPORT_POLLING || s->upgraded || s->upg != UPG_NONE ||
          s->state != ST_OPEN || !srv->o.allow_upgrades) {
        struct ws_conn *ws;
        if (http_ws_accept(req, &probe_cbs, NULL, &ws) == 0)
          ws_close(ws, 1000, NULL);
        else
          respond_error(req, true, E_BAD_REQUEST, NULL);
        return;
      }
      struct ws_conn *ws;
      int rc = http_ws_accept(req, &probe_cbs, s, &ws);
      if (rc == EG_EINVAL) {
        respond_error(req, true, E_BAD_REQUEST, NULL);
        return;
      }
      if (rc != 0)
        return;
      s->probe = ws;
      sess_hold(s);
      s->upg = UPG_PROBING;
      tq_add(&srv->tq, LANE_UPGRADE, &s->upn, srv->o.upgrade_timeout_ms);
      return;
    }
    switch (http_req_method(req)) {
    case HTTP_GET:
      on_poll_get(s, req);
      break;
    case HTTP_POST:
      on_poll_post(s, req);
      break;
    default:
      ignore_rc(http_respond(req, 500, NULL, NULL, 0));
      break;
    }
    return;
  }
  if (http_req_method(req) != HTTP_GET) {
    respond_error(req, upgrade, E_BAD_HANDSHAKE_METHOD, NULL);
    return;
  }
  if (is_ws && !upgrade) {
    respond_error(req, false, E_BAD_REQUEST, NULL);
    return;
  }
  if (srv->o.allow_request) {
    const char *msg = NULL;
    void *aud = srv->o.allow_request_ud ? srv->o.allow_request_ud : srv->ud;
    if (srv->o.allow_request(req, aud, &msg) != 0) {
      respond_error(req, upgrade, E_FORBIDDEN, msg);
      return;
    }
  }
  if (!v4) {
    respond_error(req, upgrade, E_UNSUPPORTED_PROTOCOL_VERSION, NULL);
    return;
  }
  (void)handshake(srv, req, is_ws);
}

/* ---- sending ------------------------------------------------------------------------------------------- */

int eio_send_text(struct eio_session *s, const void *data, size_t len) {
  struct eio_packet pkt = {EIO_MESSAGE, false, data, len};
  return sess_send(s, &pkt);
}

int eio_send_binary(struct eio_session *s, const void *data, size_t len) {
  struct eio_packet pkt = {EIO_MESSAGE, true, data, len};
  return sess_send(s, &pkt);
}

int eio_send_packet(struct eio_session *s, const char *p, size_t len) {
  if (len == 0 || p[0] < '0' || p[0] > '6')
    return EG_EINVAL;
  if (s->state != ST_OPEN)
    return EG_ECLOSED;
  if (s->transport == EIO_TRANSPORT_WEBSOCKET && s->ws)
    return ws_send_text(s->ws, p, len);
  struct eio_packet pkt = {(enum eio_type)(p[0] - '0'), false, (const uint8_t *)p + 1, len - 1};
  return poll_queue(s, &pkt);
}

int eio_send_packetv(struct eio_session *s, const uv_buf_t *parts, unsigned nparts) {
  if (nparts == 0 || parts[0].len == 0 || parts[0].base[0] < '0' || parts[0].base[0] > '6')
    return EG_EINVAL;
  if (s->state != ST_OPEN)
    return EG_ECLOSED;
  if (s->transport == EIO_TRANSPORT_WEBSOCKET && s->ws)
    return ws_sendv(s->ws, WS_OP_TEXT, parts, nparts);
  struct buf b;
  buf_init(&b, s->srv->o.max_buffer);
  int rc = 0;
  for (unsigned i = 0; rc == 0 && i < nparts; i++)
    rc = buf_append(&b, parts[i].base, parts[i].len);
  if (rc == 0)
    rc = eio_send_packet(s, (const char *)b.data, b.len);
  buf_free(&b);
  return rc;
}

int eio_send_packet_shared(struct eio_session *s, struct net_sbuf *frame, const char *p,
                           size_t len) {
  if (s->state != ST_OPEN)
    return EG_ECLOSED;
  if (frame && s->transport == EIO_TRANSPORT_WEBSOCKET && s->ws)
    return ws_send_frame(s->ws, frame);
  return eio_send_packet(s, p, len);
}

int eio_send_binary_shared(struct eio_session *s, struct net_sbuf *frame, const void *data,
                           size_t len) {
  if (s->state != ST_OPEN)
    return EG_ECLOSED;
  if (frame && s->transport == EIO_TRANSPORT_WEBSOCKET && s->ws)
    return ws_send_frame(s->ws, frame);
  return eio_send_binary(s, data, len);
}

/* ---- accessors ------------------------------------------------------------------------------------------ */

const char *eio_session_id(const struct eio_session *s) { return s->sid; }
enum eio_transport eio_session_transport(const struct eio_session *s) {
  return (enum eio_transport)s->transport;
}
bool eio_session_open(const struct eio_session *s) { return s->state == ST_OPEN; }
void eio_session_set_data(struct eio_session *s, void *data) { s->data = data; }
void *eio_session_data(const struct eio_session *s) { return s->data; }
struct eio_server *eio_session_server(const struct eio_session *s) { return s->srv; }
size_t eio_session_backlog(const struct eio_session *s) {
  if (s->ws)
    return ws_backlog(s->ws);
  return s->out.len;
}
size_t eio_server_count(const struct eio_server *srv) { return srv->count; }
void eio_server_stats(const struct eio_server *srv, struct eio_stats *out) {
  out->polling = srv->open_by[EIO_TRANSPORT_POLLING];
  out->websocket = srv->open_by[EIO_TRANSPORT_WEBSOCKET];
  out->upgrades = srv->upgrades;
}
const struct eio_opts *eio_server_opts(const struct eio_server *srv) { return &srv->o; }
uv_loop_t *eio_server_loop(const struct eio_server *srv) { return srv->loop; }

/* ---- server -------------------------------------------------------------------------------------------- */

void eio_opts_default(struct eio_opts *o) {
  memset(o, 0, sizeof(*o));
  o->ping_interval_ms = 25000;
  o->ping_timeout_ms = 20000;
  o->upgrade_timeout_ms = 10000;
  o->max_payload = 1000000;
  o->max_buffer = 16u << 20;
  o->allow_polling = true;
  o->allow_websocket = true;
  o->allow_upgrades = true;
}

int eio_server_new(uv_loop_t *loop, const struct eio_opts *o, const struct eio_callbacks *cb,
                   void *ud, struct eio_server **out) {
  if (!loop || !o || !cb || !cb->on_open || !cb->on_message || !cb->on_close ||
      o->ping_interval_ms == 0 || o->ping_timeout_ms == 0 || o->max_payload == 0)
    return EG_EINVAL;
  struct eio_server *srv = xcalloc(1, sizeof(*srv));
  srv->loop = loop;
  srv->o = *o;
  if (srv->o.max_buffer == 0)
    srv->o.max_buffer = 16u << 20;
  if (srv->o.upgrade_timeout_ms == 0)
    srv->o.upgrade_timeout_ms = 10000;
  srv->cb = *cb;
  srv->ud = ud;
  tq_init(&srv->tq, loop, on_tq, srv);
  uv_idle_init(loop, &srv->idle);
  srv->idle.data = srv;
  *out = srv;
  return 0;
}

static void srv_maybe_free(struct eio_server *srv) {
  if (!srv->closing || srv->live > 0 || !srv->tq_closed || !srv->idle_closed)
    return;
  void (*cb)(void *) = srv->on_closed;
  void *ud = srv->closed_ud;
  free(srv->table);
  free(srv);
  if (cb)
    cb(ud);
}

static void on_tq_closed(struct tq *q) {
  struct eio_server *srv = q->data;
  srv->tq_closed = true;
  srv_maybe_free(srv);
}

static void on_idle_closed(uv_handle_t *h) {
  struct eio_server *srv = h->data;
  srv->idle_closed = true;
  srv_maybe_free(srv);
}

void eio_server_close(struct eio_server *srv, void (*on_closed)(void *ud), void *ud) {
  if (srv->closing)
    return;
  srv->on_closed = on_closed;
  srv->closed_ud = ud;
  /* Flush what is queued first, then close every session. */
  on_idle(&srv->idle);
  srv->closing = true;
  srv->live++; /* keep srv while iterating */
  for (size_t i = 0; i < srv->nbuckets; i++) {
    while (srv->table[i])
      sess_close(srv->table[i], "server shutting down");
  }
  tq_close(&srv->tq, on_tq_closed);
  uv_close((uv_handle_t *)&srv->idle, on_idle_closed);
  srv->live--;
  srv_maybe_free(srv);
}
