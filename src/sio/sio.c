/*
 * sio: the Socket.IO v5 server (see sio.h for the behaviour and the API).
 *
 * Objects
 *   sio_server  one per program; owns the Engine.IO server, the namespaces, a shared
 *               packet decoder, and one timer queue (connect timeouts, ack timeouts).
 *   sio_client  one per Engine.IO session: its sockets (one per joined namespace), the
 *               binary packet being reassembled (allocated only then), the kept
 *               handshake headers (one allocation), the connect-timeout node.
 *   sio_socket  one per (client, namespace): state CONNECTING (middleware running) ->
 *               CONNECTED -> GONE. Room memberships, pending server->client acks.
 *   sio_room    per namespace, in a hash by name; members are sio_member nodes linked
 *               both in the room (doubly) and in the socket (singly), so leaving a room
 *               is O(1) once the node is found among the socket's few memberships.
 *
 * References keep memory alive across callbacks: a client is held by its Engine.IO
 * session and by each socket; a socket by its client list entry and during callbacks.
 */
#include "sio/sio.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eio/timerq.h"
#include "proto/eio.h"
#include "sio/jscan.h"
#include "proto/sio.h"

static inline void ignore_rc(int rc) { (void)rc; }

enum { LANE_CONNECT = 0, LANE_ACK = 1 };
enum { SOCK_CONNECTING = 0, SOCK_CONNECTED = 1, SOCK_GONE = 2 };
enum { TQK_CONNECT = 0, TQK_ACK = 1 };

struct sio_handler {
  struct sio_handler *next;
  char *event; /* NULL = catch-all */
  sio_event_fn fn;
  void *ud;
  sio_raw_fn raw; /* fast-path handler (sio_on_raw) */
  void *raw_ud;
};

struct sio_mw {
  sio_middleware_fn fn;
  void *ud;
};

struct sio_room;

struct sio_member {
  struct sio_room *room;
  struct sio_socket *sock;
  struct sio_member *rprev, *rnext; /* in the room */
  struct sio_member *snext;         /* in the socket */
};

struct sio_room {
  struct sio_room *hnext;
  uint64_t hash;
  struct sio_member *head;
  size_t count;
  char name[]; /* NUL-terminated */
};

struct sio_nsp {
  struct sio_server *io;
  struct sio_nsp *next;
  char *name;
  struct sio_mw *mws;
  size_t nmw;
  struct sio_handler *handlers;
  sio_connection_fn on_conn;
  void *on_conn_ud;
  sio_disconnect_fn on_disc;
  void *on_disc_ud;
  struct sio_socket *head; /* connected sockets */
  size_t count;
  struct sio_room **rooms;
  size_t nbuckets, nrooms;
  const struct sio_adapter_ops *ops;
  void *adapter;
  uint32_t gen; /* broadcast generation (dedup) */
};

struct sio_pending_ack {
  struct sio_pending_ack *next;
  struct tq_node tn;
  struct sio_socket *sock;
  int64_t id;
  sio_ack_fn cb;
  void *ud;
};

struct sio_client {
  struct sio_server *io;
  struct eio_session *es; /* NULL once the session closed */
  struct sio_socket *sockets;
  struct sio_decoder *bin; /* binary packet being reassembled */
  struct tq_node ct;       /* connect timeout */
  char *hdrs;              /* "name\0value\0" pairs, then "\0" */
  char *remote;
  uint32_t refs;
  uint32_t nconnected;
};

struct sio_socket {
  struct sio_client *c;
  struct sio_nsp *nsp;
  struct sio_socket *cnext;        /* in the client */
  struct sio_socket *nprev, *nnext; /* in the namespace (connected) */
  struct sio_member *rooms;
  struct sio_pending_ack *acks;
  json_t *auth;
  void *data;
  int64_t next_ack;
  uint32_t gen;
  uint32_t refs;
  uint8_t state;
  uint8_t mw;
  char id[SIO_ID_LEN + 1];
};

struct sio_server {
  uv_loop_t *loop;
  struct sio_opts o;
  const char **keep; /* header names to keep */
  struct eio_server *eio;
  struct sio_nsp *nsps;
  struct tq tq;
  struct sio_decoder dec;
  struct sio_limits lim;
  size_t clients;
  bool closing;
  bool has_raw; /* some namespace has a raw handler: try the fast path */
  void (*on_closed)(void *ud);
  void *closed_ud;
};

static const char *const default_keep[] = {"cookie", "authorization", "origin", "user-agent",
                                           NULL};

static void sock_gone(struct sio_socket *s, const char *reason);
static void client_close_conn(struct sio_client *c);

/* ---- refs ----------------------------------------------------------------------------------- */

static void client_release(struct sio_client *c) {
  if (--c->refs > 0)
    return;
  if (c->bin) {
    sio_decoder_free(c->bin);
    free(c->bin);
  }
  free(c->hdrs);
  free(c->remote);
  free(c);
}

static void sock_hold(struct sio_socket *s) { s->refs++; }

static void sock_release(struct sio_socket *s) {
  if (--s->refs > 0)
    return;
  json_decref(s->auth);
  struct sio_client *c = s->c;
  free(s);
  client_release(c);
}

/* ---- sending ----------------------------------------------------------------------------------- */

/* Sends an encoded packet (text + attachments) to one client. */
static int client_send(struct sio_client *c, const struct sio_encoded *e) {
  if (!c->es)
    return EG_ECLOSED;
  int rc = eio_send_packet(c->es, e->text, e->len);
  for (size_t i = 0; rc == 0 && i < e->nattach && c->es; i++)
    rc = eio_send_binary(c->es, e->attach[i].data, e->attach[i].len);
  return rc;
}

static int send_packet(struct sio_client *c, enum sio_type type, const char *nsp, int64_t id,
                       const json_t *data) {
  struct sio_encoded e;
  int rc = sio_encode(type, nsp, id, data, SIO_ENC_EIO_PREFIX, &e);
  if (rc != 0)
    return rc;
  rc = client_send(c, &e);
  sio_encoded_free(&e);
  return rc;
}

static const char *const reserved[] = {"connect",       "connect_error",  "disconnect",
                                       "disconnecting", "newListener",    "removeListener",
                                       NULL};

static bool is_reserved(const char *ev) {
  for (size_t i = 0; reserved[i]; i++) {
    if (strcmp(ev, reserved[i]) == 0)
      return true;
  }
  return false;
}

/* [event, args...] from the stolen args (NULL = none; a non-array is one argument).
   Built in place when we hold the only reference, else in a new array, so a caller that
   passed json_incref(borrowed) never sees its array change. */
static json_t *event_array(const char *event, json_t *args) {
  if (args && json_is_array(args) && args->refcount == 1) {
    json_array_insert_new(args, 0, json_string(event));
    return args;
  }
  json_t *a = json_array();
  json_array_append_new(a, json_string(event));
  if (json_is_array(args))
    json_array_extend(a, args);
  else if (args)
    json_array_append(a, args);
  json_decref(args);
  return a;
}

int sio_emit(struct sio_socket *s, const char *event, json_t *args) {
  if (!event || is_reserved(event)) {
    json_decref(args);
    return EG_EINVAL;
  }
  if (s->state != SOCK_CONNECTED) {
    json_decref(args);
    return EG_ECLOSED;
  }
  json_t *arr = event_array(event, args);
  int rc = send_packet(s->c, SIO_EVENT, s->nsp->name, SIO_NO_ID, arr);
  json_decref(arr);
  return rc;
}

int sio_emit_ack(struct sio_socket *s, const char *event, json_t *args, uint32_t timeout_ms,
                 sio_ack_fn cb, void *ud) {
  if (!event || is_reserved(event) || !cb) {
    json_decref(args);
    return EG_EINVAL;
  }
  if (s->state != SOCK_CONNECTED) {
    json_decref(args);
    return EG_ECLOSED;
  }
  json_t *arr = event_array(event, args);
  int64_t id = s->next_ack++;
  int rc = send_packet(s->c, SIO_EVENT, s->nsp->name, id, arr);
  json_decref(arr);
  if (rc != 0)
    return rc;
  struct sio_pending_ack *a = xcalloc(1, sizeof(*a));
  tq_node_init(&a->tn);
  a->tn.kind = TQK_ACK;
  a->sock = s;
  a->id = id;
  a->cb = cb;
  a->ud = ud;
  a->next = s->acks;
  s->acks = a;
  if (timeout_ms > 0)
    tq_add(&s->c->io->tq, LANE_ACK, &a->tn, timeout_ms);
  return 0;
}

int sio_ack(struct sio_socket *s, int64_t ack, json_t *args) {
  if (ack < 0) {
    json_decref(args);
    return EG_EINVAL;
  }
  if (s->state != SOCK_CONNECTED) {
    json_decref(args);
    return EG_ECLOSED;
  }
  if (!args)
    args = json_array();
  int rc = send_packet(s->c, SIO_ACK, s->nsp->name, ack, args);
  json_decref(args);
  return rc;
}

/* ---- rooms (local adapter) ---------------------------------------------------------------------- */

static uint64_t str_hash(const char *p) {
  uint64_t h = 1469598103934665603ull;
  for (; *p; p++) {
    h ^= (uint8_t)*p;
    h *= 1099511628211ull;
  }
  return h;
}

static struct sio_room *room_find(struct sio_nsp *n, const char *name, uint64_t h) {
  if (!n->nbuckets)
    return NULL;
  for (struct sio_room *r = n->rooms[h & (n->nbuckets - 1)]; r; r = r->hnext) {
    if (r->hash == h && strcmp(r->name, name) == 0)
      return r;
  }
  return NULL;
}

static void rooms_grow(struct sio_nsp *n) {
  size_t nb = n->nbuckets ? n->nbuckets * 2 : 16;
  struct sio_room **t = xcalloc(nb, sizeof(*t));
  for (size_t i = 0; i < n->nbuckets; i++) {
    struct sio_room *r = n->rooms[i], *next;
    for (; r; r = next) {
      next = r->hnext;
      r->hnext = t[r->hash & (nb - 1)];
      t[r->hash & (nb - 1)] = r;
    }
  }
  free(n->rooms);
  n->rooms = t;
  n->nbuckets = nb;
}

static void room_drop(struct sio_nsp *n, struct sio_room *r) {
  struct sio_room **pp = &n->rooms[r->hash & (n->nbuckets - 1)];
  for (; *pp; pp = &(*pp)->hnext) {
    if (*pp == r) {
      *pp = r->hnext;
      break;
    }
  }
  n->nrooms--;
  free(r);
}

static int local_join(void *a, struct sio_socket *s, const char *room) {
  struct sio_nsp *n = a;
  uint64_t h = str_hash(room);
  for (struct sio_member *m = s->rooms; m; m = m->snext) {
    if (m->room->hash == h && strcmp(m->room->name, room) == 0)
      return 0; /* already in */
  }
  struct sio_room *r = room_find(n, room, h);
  if (!r) {
    if (n->nrooms + 1 > n->nbuckets)
      rooms_grow(n);
    size_t len = strlen(room);
    r = xcalloc(1, sizeof(*r) + len + 1);
    memcpy(r->name, room, len + 1);
    r->hash = h;
    r->hnext = n->rooms[h & (n->nbuckets - 1)];
    n->rooms[h & (n->nbuckets - 1)] = r;
    n->nrooms++;
  }
  struct sio_member *m = xmalloc(sizeof(*m));
  m->room = r;
  m->sock = s;
  m->rprev = NULL;
  m->rnext = r->head;
  if (r->head)
    r->head->rprev = m;
  r->head = m;
  r->count++;
  m->snext = s->rooms;
  s->rooms = m;
  return 0;
}

static void member_unlink(struct sio_nsp *n, struct sio_member *m) {
  struct sio_room *r = m->room;
  if (m->rprev)
    m->rprev->rnext = m->rnext;
  else
    r->head = m->rnext;
  if (m->rnext)
    m->rnext->rprev = m->rprev;
  if (--r->count == 0)
    room_drop(n, r);
  free(m);
}

static void local_leave(void *a, struct sio_socket *s, const char *room) {
  struct sio_nsp *n = a;
  uint64_t h = str_hash(room);
  for (struct sio_member **pp = &s->rooms; *pp; pp = &(*pp)->snext) {
    struct sio_member *m = *pp;
    if (m->room->hash == h && strcmp(m->room->name, room) == 0) {
      *pp = m->snext;
      member_unlink(n, m);
      return;
    }
  }
}

static void local_leave_all(void *a, struct sio_socket *s) {
  struct sio_nsp *n = a;
  while (s->rooms) {
    struct sio_member *m = s->rooms;
    s->rooms = m->snext;
    member_unlink(n, m);
  }
}

static void deliver(struct sio_socket *s, const struct sio_bpacket *p) {
  struct eio_session *es = s->c->es;
  if (!es)
    return;
  int rc = eio_send_packet_shared(es, p->frame, p->text, p->len);
  for (size_t i = 0; rc == 0 && i < p->nattach && s->c->es; i++)
    rc = eio_send_binary_shared(es, p->attach[i].frame, p->attach[i].data, p->attach[i].len);
}

static void mark_room(struct sio_nsp *n, const char *name, uint32_t gen) {
  struct sio_room *r = room_find(n, name, str_hash(name));
  for (struct sio_member *m = r ? r->head : NULL; m; m = m->rnext)
    m->sock->gen = gen;
}

int sio_local_broadcast(struct sio_nsp *n, const struct sio_bcast *to,
                        const struct sio_bpacket *p) {
  uint32_t gen = ++n->gen;
  if (gen == 0)
    gen = ++n->gen; /* 0 is every socket's initial mark */
  int reached = 0;
  if (to) {
    for (size_t i = 0; i < to->nexcept_rooms; i++)
      mark_room(n, to->except_rooms[i], gen);
    if (to->except)
      ((struct sio_socket *)(uintptr_t)to->except)->gen = gen;
  }
  size_t nrooms = to ? to->nrooms + (to->room ? 1 : 0) : 0;
  if (nrooms == 0) {
    for (struct sio_socket *s = n->head, *next; s; s = next) {
      next = s->nnext;
      if (s->gen == gen)
        continue;
      s->gen = gen;
      deliver(s, p);
      reached++;
    }
    return reached;
  }
  for (size_t i = 0; i < nrooms; i++) {
    const char *name = i < to->nrooms ? to->rooms[i] : to->room;
    struct sio_room *r = room_find(n, name, str_hash(name));
    /* next is read before delivering: a send that overflows a client's backlog may
       close it synchronously, which unlinks (and frees) its membership. */
    for (struct sio_member *m = r ? r->head : NULL, *next; m; m = next) {
      next = m->rnext;
      struct sio_socket *s = m->sock;
      if (s->gen == gen || s->state != SOCK_CONNECTED)
        continue;
      s->gen = gen;
      deliver(s, p);
      reached++;
    }
  }
  return reached;
}

static int local_broadcast(void *a, struct sio_nsp *n, const struct sio_bcast *to,
                           const struct sio_bpacket *p) {
  (void)a;
  return sio_local_broadcast(n, to, p);
}

static const struct sio_adapter_ops local_ops = {local_join, local_leave, local_leave_all,
                                                 local_broadcast, NULL};

int sio_join(struct sio_socket *s, const char *room) {
  if (!room || !*room)
    return EG_EINVAL;
  if (s->state == SOCK_GONE)
    return EG_ECLOSED;
  return s->nsp->ops->join(s->nsp->adapter, s, room);
}

void sio_leave(struct sio_socket *s, const char *room) {
  if (room)
    s->nsp->ops->leave(s->nsp->adapter, s, room);
}

void sio_leave_all(struct sio_socket *s) { s->nsp->ops->leave_all(s->nsp->adapter, s); }

bool sio_in_room(const struct sio_socket *s, const char *room) {
  for (struct sio_member *m = s->rooms; m; m = m->snext) {
    if (strcmp(m->room->name, room) == 0)
      return true;
  }
  return false;
}

int sio_broadcast(struct sio_nsp *n, const struct sio_bcast *to, const char *event,
                  json_t *args) {
  if (!event || is_reserved(event)) {
    json_decref(args);
    return EG_EINVAL;
  }
  json_t *arr = event_array(event, args);
  struct sio_encoded e;
  int rc = sio_encode(SIO_EVENT, n->name, SIO_NO_ID, arr, SIO_ENC_EIO_PREFIX, &e);
  if (rc != 0) {
    json_decref(arr);
    return rc;
  }
  uv_buf_t part = uv_buf_init(e.text, (unsigned)e.len);
  struct sio_bpacket p = {e.text, e.len, ws_frame_new(WS_OP_TEXT, &part, 1), e.nattach, NULL,
                          arr};
  struct sio_attachment_ref *att = NULL;
  if (e.nattach) {
    att = xcalloc(e.nattach, sizeof(*att));
    for (size_t i = 0; i < e.nattach; i++) {
      uv_buf_t bp = uv_buf_init((char *)(uintptr_t)e.attach[i].data, (unsigned)e.attach[i].len);
      att[i].data = e.attach[i].data;
      att[i].len = e.attach[i].len;
      att[i].frame = ws_frame_new(WS_OP_BINARY, &bp, 1);
    }
    p.attach = att;
  }
  rc = n->ops->broadcast(n->adapter, n, to, &p);
  net_sbuf_unref(p.frame);
  for (size_t i = 0; i < e.nattach; i++)
    net_sbuf_unref(att[i].frame);
  free(att);
  sio_encoded_free(&e);
  json_decref(arr);
  return rc;
}

void sio_nsp_set_adapter(struct sio_nsp *n, const struct sio_adapter_ops *ops, void *a) {
  if (n->ops && n->ops->destroy)
    n->ops->destroy(n->adapter);
  n->ops = ops ? ops : &local_ops;
  n->adapter = ops ? a : n;
}

/* ---- namespaces ------------------------------------------------------------------------------------- */

static bool nsp_name_valid(const char *name) {
  size_t len = strlen(name);
  return len >= 1 && len <= SIO_NSP_MAX && name[0] == '/' && !strchr(name, ',');
}

static struct sio_nsp *nsp_find(struct sio_server *io, const char *name) {
  for (struct sio_nsp *n = io->nsps; n; n = n->next) {
    if (strcmp(n->name, name) == 0)
      return n;
  }
  return NULL;
}

struct sio_nsp *sio_of(struct sio_server *io, const char *name) {
  if (!name || !nsp_name_valid(name))
    return NULL;
  struct sio_nsp *n = nsp_find(io, name);
  if (n)
    return n;
  n = xcalloc(1, sizeof(*n));
  n->io = io;
  n->name = xstrdup(name);
  n->ops = &local_ops;
  n->adapter = n;
  n->next = io->nsps;
  io->nsps = n;
  return n;
}

const char *sio_nsp_name(const struct sio_nsp *n) { return n->name; }
size_t sio_nsp_count(const struct sio_nsp *n) { return n->count; }

void sio_use(struct sio_nsp *n, sio_middleware_fn fn, void *ud) {
  if (n->nmw >= 255)
    return;
  n->mws = xrealloc(n->mws, (n->nmw + 1) * sizeof(*n->mws));
  n->mws[n->nmw++] = (struct sio_mw){fn, ud};
}

void sio_on_connection(struct sio_nsp *n, sio_connection_fn fn, void *ud) {
  n->on_conn = fn;
  n->on_conn_ud = ud;
}

void sio_on_disconnect(struct sio_nsp *n, sio_disconnect_fn fn, void *ud) {
  n->on_disc = fn;
  n->on_disc_ud = ud;
}

static struct sio_handler *handler_get(struct sio_nsp *n, const char *event) {
  for (struct sio_handler *h = n->handlers; h; h = h->next) {
    if ((!event && !h->event) || (event && h->event && strcmp(event, h->event) == 0))
      return h;
  }
  struct sio_handler *h = xcalloc(1, sizeof(*h));
  h->event = event ? xstrdup(event) : NULL;
  h->next = n->handlers;
  n->handlers = h;
  return h;
}

void sio_on(struct sio_nsp *n, const char *event, sio_event_fn fn, void *ud) {
  struct sio_handler *h = handler_get(n, event);
  h->fn = fn;
  h->ud = ud;
}

void sio_on_raw(struct sio_nsp *n, const char *event, sio_raw_fn fn, void *ud) {
  struct sio_handler *h = handler_get(n, event);
  h->raw = fn;
  h->raw_ud = ud;
  n->io->has_raw = true;
}

static void nsp_free(struct sio_nsp *n) {
  if (n->ops && n->ops->destroy)
    n->ops->destroy(n->adapter);
  while (n->handlers) {
    struct sio_handler *h = n->handlers;
    n->handlers = h->next;
    free(h->event);
    free(h);
  }
  for (size_t i = 0; i < n->nbuckets; i++) {
    while (n->rooms[i]) {
      struct sio_room *r = n->rooms[i];
      n->rooms[i] = r->hnext;
      free(r);
    }
  }
  free(n->rooms);
  free(n->mws);
  free(n->name);
  free(n);
}

/* ---- sockets: connect ---------------------------------------------------------------------------- */

static void sock_new_id(struct sio_socket *s) { eio_sid_new(s->id); }

/* The application's code for a socket runs with the socket's id in the log context
   ("sid" in JSON log lines). */
static void sid_enter(const struct sio_socket *s, struct log_ctx *saved) {
  log_ctx_get(saved);
  log_ctx_set_sid(s->id);
}
static void sid_leave(const struct log_ctx *saved) {
  log_ctx_set(saved);
}

static void run_middleware(struct sio_socket *s);

static void sock_connected(struct sio_socket *s) {
  struct sio_client *c = s->c;
  struct sio_nsp *n = s->nsp;
  s->state = SOCK_CONNECTED;
  s->nprev = NULL;
  s->nnext = n->head;
  if (n->head)
    n->head->nprev = s;
  n->head = s;
  n->count++;
  c->nconnected++;
  tq_del(&c->io->tq, &c->ct);
  json_t *hello = json_pack("{ss}", "sid", s->id);
  ignore_rc(send_packet(c, SIO_CONNECT, n->name, SIO_NO_ID, hello));
  json_decref(hello);
  struct log_ctx saved;
  sid_enter(s, &saved);
  log_debug("sio: socket connected to %s over %s", n->name,
            c->es && eio_session_transport(c->es) == EIO_TRANSPORT_WEBSOCKET ? "websocket"
                                                                             : "polling");
  if (n->on_conn) {
    sock_hold(s);
    n->on_conn(s, n->on_conn_ud);
    sock_release(s);
  }
  sid_leave(&saved);
  json_decref(s->auth);
  s->auth = NULL;
}

static void run_middleware(struct sio_socket *s) {
  struct sio_nsp *n = s->nsp;
  if (s->mw >= n->nmw) {
    sock_connected(s);
    return;
  }
  struct sio_mw *m = &n->mws[s->mw];
  struct log_ctx saved;
  sid_enter(s, &saved);
  sock_hold(s);
  m->fn(s, s->auth, m->ud);
  sock_release(s);
  sid_leave(&saved);
}

/* Removes s from its client's list (dropping that reference). */
static void client_unlist(struct sio_socket *s) {
  struct sio_client *c = s->c;
  for (struct sio_socket **pp = &c->sockets; *pp; pp = &(*pp)->cnext) {
    if (*pp == s) {
      *pp = s->cnext;
      s->cnext = NULL;
      sock_release(s);
      return;
    }
  }
}

void sio_accept(struct sio_socket *s) {
  if (s->state != SOCK_CONNECTING)
    return;
  if (!s->c->es) {
    /* The client left while the middleware ran: the socket only needed freeing. */
    s->state = SOCK_GONE;
    client_unlist(s);
    return;
  }
  s->mw++;
  run_middleware(s);
}

void sio_refuse(struct sio_socket *s, const char *message, json_t *data) {
  if (s->state != SOCK_CONNECTING) {
    json_decref(data);
    return;
  }
  s->state = SOCK_GONE;
  struct sio_client *c = s->c;
  if (c->es) {
    json_t *err = json_pack("{ss}", "message", message ? message : "Forbidden");
    if (data)
      json_object_set_new(err, "data", data);
    ignore_rc(send_packet(c, SIO_CONNECT_ERROR, s->nsp->name, SIO_NO_ID, err));
    json_decref(err);
  } else {
    json_decref(data);
  }
  client_unlist(s);
}

static void handle_connect(struct sio_client *c, struct sio_packet *p) {
  struct sio_server *io = c->io;
  struct sio_nsp *n = nsp_find(io, p->nsp);
  if (!n) {
    json_t *err = json_pack("{ss}", "message", "Invalid namespace");
    ignore_rc(send_packet(c, SIO_CONNECT_ERROR, p->nsp, SIO_NO_ID, err));
    json_decref(err);
    return;
  }
  struct sio_socket *s = xcalloc(1, sizeof(*s));
  s->c = c;
  c->refs++;
  s->nsp = n;
  s->refs = 1; /* the client list's */
  s->state = SOCK_CONNECTING;
  sock_new_id(s);
  s->auth = p->data ? p->data : json_object();
  p->data = NULL;
  s->cnext = c->sockets;
  c->sockets = s;
  run_middleware(s);
}

/* ---- sockets: disconnect --------------------------------------------------------------------------- */

static void fail_acks(struct sio_socket *s) {
  while (s->acks) {
    struct sio_pending_ack *a = s->acks;
    s->acks = a->next;
    tq_del(&s->c->io->tq, &a->tn);
    a->cb(NULL, EG_ECLOSED, NULL, a->ud);
    free(a);
  }
}

/* Takes s out of everything; on_disconnect if it was connected. */
static void sock_gone(struct sio_socket *s, const char *reason) {
  if (s->state == SOCK_GONE)
    return;
  bool was_connected = s->state == SOCK_CONNECTED;
  if (s->state == SOCK_CONNECTING) {
    /* Middleware pending: the app still holds s and must call accept/refuse; the
       client list keeps it until then (sio_accept/refuse see c->es == NULL). */
    return;
  }
  struct sio_nsp *n = s->nsp;
  struct sio_client *c = s->c;
  sock_hold(s);
  s->state = SOCK_GONE;
  if (s->nprev)
    s->nprev->nnext = s->nnext;
  else
    n->head = s->nnext;
  if (s->nnext)
    s->nnext->nprev = s->nprev;
  s->nprev = s->nnext = NULL;
  n->count--;
  c->nconnected--;
  n->ops->leave_all(n->adapter, s);
  fail_acks(s);
  if (was_connected) {
    struct log_ctx saved;
    sid_enter(s, &saved);
    log_debug("sio: socket left %s: %s", n->name, reason);
    if (n->on_disc)
      n->on_disc(s, reason, n->on_disc_ud);
    sid_leave(&saved);
  }
  client_unlist(s);
  sock_release(s);
}

void sio_disconnect(struct sio_socket *s, bool close_conn) {
  struct sio_client *c = s->c;
  if (close_conn) {
    c->refs++;
    for (struct sio_socket *x = c->sockets, *next; x; x = next) {
      next = x->cnext;
      if (x->state == SOCK_CONNECTED) {
        ignore_rc(send_packet(c, SIO_DISCONNECT, x->nsp->name, SIO_NO_ID, NULL));
        sock_gone(x, "server namespace disconnect");
      }
    }
    client_close_conn(c);
    client_release(c);
    return;
  }
  if (s->state != SOCK_CONNECTED)
    return;
  ignore_rc(send_packet(c, SIO_DISCONNECT, s->nsp->name, SIO_NO_ID, NULL));
  sock_gone(s, "server namespace disconnect");
}

static void client_close_conn(struct sio_client *c) {
  if (c->es)
    eio_close(c->es);
}

/* ---- incoming packets -------------------------------------------------------------------------------- */

static struct sio_socket *client_socket(struct sio_client *c, const char *nsp) {
  for (struct sio_socket *s = c->sockets; s; s = s->cnext) {
    if (s->state != SOCK_GONE && strcmp(s->nsp->name, nsp) == 0)
      return s;
  }
  return NULL;
}

static void dispatch_event(struct sio_socket *s, struct sio_packet *p) {
  struct sio_nsp *n = s->nsp;
  json_t *data = p->data;
  json_t *name = json_array_get(data, 0);
  const char *ev = json_string_value(name);
  if (!ev || is_reserved(ev))
    return;
  json_incref(name);
  json_array_remove(data, 0);
  struct sio_handler *h = NULL, *any = NULL;
  for (struct sio_handler *x = n->handlers; x; x = x->next) {
    if (!x->event)
      any = x;
    else if (strcmp(x->event, ev) == 0) {
      h = x;
      break;
    }
  }
  if (!h)
    h = any;
  struct log_ctx saved;
  sid_enter(s, &saved);
  if (h && h->fn) {
    sock_hold(s);
    h->fn(s, ev, data, p->id, h->ud);
    sock_release(s);
  } else if (h && h->raw) {
    /* A raw-only handler reached by the slow path: re-serialise the arguments. */
    if (sio_has_binary(data)) {
      log_debug("sio: binary arguments for raw-only handler \"%s\" dropped", ev);
    } else {
      char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
      if (text) {
        size_t len = strlen(text);
        struct slice args = {text + 1, len >= 2 ? len - 2 : 0}; /* without [ ] */
        sock_hold(s);
        h->raw(s, ev, args, p->id, h->raw_ud);
        sock_release(s);
        free(text);
      }
    }
  }
  sid_leave(&saved);
  json_decref(name);
}

static void dispatch_ack(struct sio_socket *s, struct sio_packet *p) {
  for (struct sio_pending_ack **pp = &s->acks; *pp; pp = &(*pp)->next) {
    struct sio_pending_ack *a = *pp;
    if (a->id == p->id) {
      *pp = a->next;
      tq_del(&s->c->io->tq, &a->tn);
      struct log_ctx saved;
      sid_enter(s, &saved);
      sock_hold(s);
      a->cb(s, 0, p->data, a->ud);
      sock_release(s);
      sid_leave(&saved);
      free(a);
      return;
    }
  }
}

/* One decoded packet. Returns false when the connection must close. */
static bool handle_packet(struct sio_client *c, struct sio_packet *p) {
  struct sio_socket *s = client_socket(c, p->nsp);
  if (p->type == SIO_CONNECT) {
    if (s) {
      /* A repeated CONNECT (socket.io-client sends one per connect() call, e.g.
         `io(); socket.connect()`). The reference server sees both before registering
         the first socket and answers both; we answer again with the same sid. */
      if (s->state == SOCK_CONNECTED) {
        json_t *hello = json_pack("{ss}", "sid", s->id);
        ignore_rc(send_packet(c, SIO_CONNECT, s->nsp->name, SIO_NO_ID, hello));
        json_decref(hello);
      }
      return true;
    }
    handle_connect(c, p);
    return true;
  }
  if (!s || s->state != SOCK_CONNECTED || p->type == SIO_CONNECT_ERROR) {
    log_debug("sio: packet type %d for namespace %s in invalid state", (int)p->type, p->nsp);
    return false;
  }
  switch (p->type) {
  case SIO_EVENT:
  case SIO_BINARY_EVENT:
    dispatch_event(s, p);
    break;
  case SIO_ACK:
  case SIO_BINARY_ACK:
    dispatch_ack(s, p);
    break;
  case SIO_DISCONNECT:
    sock_gone(s, "client namespace disconnect");
    break;
  default:
    break;
  }
  return true;
}

/* ---- fast path (raw JSON arguments) ---------------------------------------------------------------- */

/* "4" (Engine.IO message) + type + [nsp ","] + [id]: the head of a packet, in out. */
static size_t raw_head(char *out, size_t cap, char type, const char *nsp, int64_t id) {
  size_t n = 0;
  out[n++] = '4';
  out[n++] = type;
  if (strcmp(nsp, "/") != 0) {
    size_t l = strlen(nsp);
    if (n + l + 1 >= cap)
      return 0;
    memcpy(out + n, nsp, l);
    n += l;
    out[n++] = ',';
  }
  if (id >= 0) {
    int w = snprintf(out + n, cap - n, "%lld", (long long)id);
    if (w < 0 || (size_t)w >= cap - n)
      return 0;
    n += (size_t)w;
  }
  return n;
}

int sio_ack_raw(struct sio_socket *s, int64_t ack, struct slice args) {
  if (ack < 0)
    return EG_EINVAL;
  if (s->state != SOCK_CONNECTED || !s->c->es)
    return EG_ECLOSED;
  char head[SIO_NSP_MAX + 32];
  size_t hl = raw_head(head, sizeof(head) - 1, '3', s->nsp->name, ack);
  if (hl == 0)
    return EG_EINVAL;
  head[hl++] = '[';
  uv_buf_t parts[3] = {uv_buf_init(head, (unsigned)hl),
                       uv_buf_init((char *)(uintptr_t)args.p, (unsigned)args.len),
                       uv_buf_init((char *)"]", 1)};
  return eio_send_packetv(s->c->es, parts, 3);
}

int sio_emit_raw(struct sio_socket *s, const char *event, struct slice args) {
  if (!event || is_reserved(event))
    return EG_EINVAL;
  for (const char *p = event; *p; p++) {
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
      return EG_EINVAL;
  }
  if (s->state != SOCK_CONNECTED || !s->c->es)
    return EG_ECLOSED;
  char head[SIO_NSP_MAX + 32];
  size_t hl = raw_head(head, sizeof(head) - 2, '2', s->nsp->name, SIO_NO_ID);
  if (hl == 0)
    return EG_EINVAL;
  head[hl++] = '[';
  head[hl++] = '"';
  uv_buf_t parts[5] = {uv_buf_init(head, (unsigned)hl),
                       uv_buf_init((char *)(uintptr_t)event, (unsigned)strlen(event)),
                       uv_buf_init((char *)(args.len ? "\"," : "\""), args.len ? 2 : 1),
                       uv_buf_init((char *)(uintptr_t)args.p, (unsigned)args.len),
                       uv_buf_init((char *)"]", 1)};
  return eio_send_packetv(s->c->es, parts, 5);
}

int sio_broadcast_raw(struct sio_nsp *n, const struct sio_bcast *to, const char *event,
                      struct slice args) {
  if (!event || is_reserved(event))
    return EG_EINVAL;
  size_t el = strlen(event);
  for (size_t i = 0; i < el; i++) {
    if (event[i] == '"' || event[i] == '\\' || (unsigned char)event[i] < 0x20)
      return EG_EINVAL;
  }
  char head[SIO_NSP_MAX + 32];
  size_t hl = raw_head(head, sizeof(head), '2', n->name, SIO_NO_ID);
  if (hl == 0)
    return EG_EINVAL;
  size_t len = hl + 2 + el + 2 + args.len + 1;
  char *text = xmalloc(len + 1);
  size_t k = 0;
  memcpy(text, head, hl);
  k += hl;
  text[k++] = '[';
  text[k++] = '"';
  memcpy(text + k, event, el);
  k += el;
  text[k++] = '"';
  if (args.len) {
    text[k++] = ',';
    memcpy(text + k, args.p, args.len);
    k += args.len;
  }
  text[k++] = ']';
  text[k] = 0;
  json_t *data = NULL;
  if (n->ops != &local_ops) {
    data = json_loadb(text + hl, k - hl, JSON_ALLOW_NUL, NULL);
    if (data == NULL) {
      free(text);
      return EG_EINVAL;
    }
  }
  uv_buf_t part = uv_buf_init(text, (unsigned)k);
  struct sio_bpacket p = {text, k, ws_frame_new(WS_OP_TEXT, &part, 1), 0, NULL, data};
  int rc = n->ops->broadcast(n->adapter, n, to, &p);
  net_sbuf_unref(p.frame);
  json_decref(data);
  free(text);
  return rc;
}

/* Tries to dispatch a text packet to a raw handler without building a tree. Returns
   false when the packet is not a plain EVENT for a connected socket with a raw handler,
   or its JSON is outside the scanner's subset: the caller then takes the slow path,
   which also answers every error exactly as usual. */
static bool try_fast(struct sio_client *c, const uint8_t *d, size_t len) {
  struct sio_server *io = c->io;
  if (len < 4 || d[0] != '2' || len > io->lim.max_packet)
    return false;
  size_t i = 1;
  const uint8_t *nsp = (const uint8_t *)"/";
  size_t nsp_len = 1;
  if (d[i] == '/') {
    const uint8_t *comma = memchr(d + i, ',', len - i);
    if (!comma)
      return false;
    nsp = d + i;
    nsp_len = (size_t)(comma - nsp);
    i = (size_t)(comma - d) + 1;
  }
  int64_t id = SIO_NO_ACK;
  if (i < len && d[i] >= '0' && d[i] <= '9') {
    id = 0;
    size_t start = i;
    while (i < len && d[i] >= '0' && d[i] <= '9') {
      if (i - start >= 15)
        return false;
      id = id * 10 + (d[i++] - '0');
    }
  }
  if (i + 2 >= len || d[i] != '[' || d[i + 1] != '"')
    return false;
  const uint8_t *payload = d + i;
  size_t plen = len - i;
  struct sio_socket *s = NULL;
  for (struct sio_socket *x = c->sockets; x; x = x->cnext) {
    if (x->state == SOCK_CONNECTED && strlen(x->nsp->name) == nsp_len &&
        memcmp(x->nsp->name, nsp, nsp_len) == 0) {
      s = x;
      break;
    }
  }
  if (!s)
    return false;
  /* The event name: a plain string (no escapes). */
  char ev[128];
  size_t k = 2, el = 0;
  for (; k < plen && payload[k] != '"'; k++) {
    uint8_t ch = payload[k];
    if (ch == '\\' || ch < 0x20 || ch >= 0x80 || el + 1 >= sizeof(ev))
      return false;
    ev[el++] = (char)ch;
  }
  if (k >= plen)
    return false;
  ev[el] = 0;
  struct sio_handler *h = NULL;
  for (struct sio_handler *x = s->nsp->handlers; x; x = x->next) {
    if (x->event && strcmp(x->event, ev) == 0) {
      h = x;
      break;
    }
  }
  if (!h || !h->raw || is_reserved(ev))
    return false;
  if (jscan_validate(payload, plen, (uint32_t)io->lim.max_depth) != 0)
    return false;
  /* Valid JSON array: after the name comes ']' or ',' (maybe after whitespace), and the
     last non-space byte is the closing ']'. */
  size_t a = k + 1;
  while (a < plen && (payload[a] == ' ' || payload[a] == '\t' || payload[a] == '\n' ||
                      payload[a] == '\r'))
    a++;
  size_t end = plen;
  while (end > 0 && payload[end - 1] != ']')
    end--;
  struct slice args = {"", 0};
  if (a < plen && payload[a] == ',' && end > a + 1)
    args = (struct slice){(const char *)payload + a + 1, end - 1 - (a + 1)};
  struct log_ctx saved;
  sid_enter(s, &saved);
  sock_hold(s);
  h->raw(s, ev, args, id, h->raw_ud);
  sock_release(s);
  sid_leave(&saved);
  return true;
}

/* ---- Engine.IO callbacks --------------------------------------------------------------------------------- */

static void keep_headers(struct sio_client *c, struct http_req *req) {
  struct sio_server *io = c->io;
  struct buf b;
  buf_init(&b, 64 * 1024);
  for (size_t i = 0; io->keep[i]; i++) {
    struct slice v;
    if (!http_req_header(req, io->keep[i], &v))
      continue;
    if (buf_append(&b, io->keep[i], strlen(io->keep[i]) + 1) != 0 ||
        buf_append(&b, v.p, v.len) != 0 || buf_append_byte(&b, 0) != 0)
      break;
  }
  if (b.len > 0 && buf_append_byte(&b, 0) == 0) {
    size_t n;
    c->hdrs = buf_steal(&b, &n);
  }
  buf_free(&b);
  const char *r = http_req_remote(req);
  c->remote = xstrdup(r ? r : "");
}

static void eio_on_open(struct eio_session *es, struct http_req *req, void *ud) {
  struct sio_server *io = ud;
  struct sio_client *c = xcalloc(1, sizeof(*c));
  c->io = io;
  c->es = es;
  c->refs = 1; /* the session's */
  tq_node_init(&c->ct);
  c->ct.kind = TQK_CONNECT;
  keep_headers(c, req);
  eio_session_set_data(es, c);
  io->clients++;
  tq_add(&io->tq, LANE_CONNECT, &c->ct, io->o.connect_timeout_ms);
}

static void eio_on_message(struct eio_session *es, bool binary, const uint8_t *data, size_t len,
                           void *ud) {
  struct sio_server *io = ud;
  struct sio_client *c = eio_session_data(es);
  struct sio_packet p;
  memset(&p, 0, sizeof(p));
  int rc;
  if (binary) {
    if (!c->bin) {
      rc = EG_EPROTO;
    } else {
      rc = sio_decoder_feed_binary(c->bin, data, len, &p);
      if (rc != EG_EAGAIN) {
        sio_decoder_free(c->bin);
        free(c->bin);
        c->bin = NULL;
      }
    }
  } else if (c->bin) {
    rc = EG_EPROTO; /* a text packet while attachments were expected */
  } else if (io->has_raw && try_fast(c, data, len)) {
    return;
  } else {
    rc = sio_decoder_feed_text(&io->dec, (const char *)data, len, &p);
    if (rc == EG_EAGAIN) {
      /* A binary packet header: move the shared decoder's state to this client. */
      c->bin = xmalloc(sizeof(*c->bin));
      *c->bin = io->dec;
      sio_decoder_init(&io->dec, &io->lim);
    } else if (rc != 0) {
      sio_decoder_free(&io->dec);
      sio_decoder_init(&io->dec, &io->lim);
    }
  }
  if (rc == EG_EAGAIN)
    return;
  if (rc != 0) {
    log_debug("sio: %s: malformed packet (%s), closing", eio_session_id(es), eg_errname(rc));
    eio_close(es);
    return;
  }
  c->refs++;
  bool ok = handle_packet(c, &p);
  sio_packet_clear(&p);
  if (!ok && c->es)
    eio_close(c->es);
  client_release(c);
}

static void eio_on_close(struct eio_session *es, const char *reason, void *ud) {
  struct sio_server *io = ud;
  struct sio_client *c = eio_session_data(es);
  c->refs++;
  c->es = NULL;
  tq_del(&io->tq, &c->ct);
  for (struct sio_socket *s = c->sockets, *next; s; s = next) {
    next = s->cnext;
    sock_gone(s, reason);
  }
  io->clients--;
  client_release(c); /* the session's */
  client_release(c);
}

/* ---- timers ------------------------------------------------------------------------------------------------- */

static void on_tq(struct tq *q, struct tq_node *n) {
  (void)q;
  if (n->kind == TQK_CONNECT) {
    struct sio_client *c = EG_CONTAINER_OF(n, struct sio_client, ct);
    if (c->nconnected == 0 && c->es)
      eio_close(c->es);
    return;
  }
  struct sio_pending_ack *a = EG_CONTAINER_OF(n, struct sio_pending_ack, tn);
  struct sio_socket *s = a->sock;
  for (struct sio_pending_ack **pp = &s->acks; *pp; pp = &(*pp)->next) {
    if (*pp == a) {
      *pp = a->next;
      break;
    }
  }
  sock_hold(s);
  a->cb(s, EG_ETIMEOUT, NULL, a->ud);
  sock_release(s);
  free(a);
}

/* ---- server ----------------------------------------------------------------------------------------------------- */

void sio_opts_default(struct sio_opts *o) {
  memset(o, 0, sizeof(*o));
  o->path = "/socket.io/";
  eio_opts_default(&o->eio);
  o->connect_timeout_ms = 45000;
  o->max_attachments = 10;
  o->max_depth = 32;
}

int sio_server_new(uv_loop_t *loop, const struct sio_opts *o, struct sio_server **out) {
  struct sio_server *io = xcalloc(1, sizeof(*io));
  io->loop = loop;
  io->o = *o;
  if (io->o.connect_timeout_ms == 0)
    io->o.connect_timeout_ms = 45000;
  const char *const *keep = o->keep_headers ? o->keep_headers : default_keep;
  size_t nk = 0;
  while (keep[nk])
    nk++;
  io->keep = xcalloc(nk + 1, sizeof(*io->keep));
  for (size_t i = 0; i < nk; i++)
    io->keep[i] = xstrdup(keep[i]);
  io->lim = sio_limits_default();
  io->lim.max_packet = o->eio.max_payload;
  io->lim.max_binary = o->eio.max_payload;
  if (o->max_attachments)
    io->lim.max_attachments = o->max_attachments;
  if (o->max_depth)
    io->lim.max_depth = o->max_depth;
  sio_decoder_init(&io->dec, &io->lim);
  static const struct eio_callbacks cbs = {eio_on_open, eio_on_message, eio_on_close};
  int rc = eio_server_new(loop, &o->eio, &cbs, io, &io->eio);
  if (rc != 0) {
    sio_decoder_free(&io->dec);
    for (size_t i = 0; io->keep[i]; i++)
      free((void *)io->keep[i]);
    free(io->keep);
    free(io);
    return rc;
  }
  tq_init(&io->tq, loop, on_tq, io);
  *out = io;
  return 0;
}

void sio_http_handler(struct http_req *req, void *ud) {
  struct sio_server *io = ud;
  if (io->closing) { /* the Engine.IO server may be freed already (sio_server_close) */
    if (http_respond(req, 503, NULL, NULL, 0) != 0)
      log_debug("sio: 503 while closing not sent");
    return;
  }
  eio_http_handler(req, io->eio);
}

struct eio_server *sio_server_eio(const struct sio_server *io) { return io->eio; }
size_t sio_server_client_count(const struct sio_server *io) { return io->clients; }

static void sio_free(struct tq *q) {
  struct sio_server *io = q->data;
  while (io->nsps) {
    struct sio_nsp *n = io->nsps;
    io->nsps = n->next;
    nsp_free(n);
  }
  sio_decoder_free(&io->dec);
  for (size_t i = 0; io->keep[i]; i++)
    free((void *)io->keep[i]);
  free(io->keep);
  void (*cb)(void *) = io->on_closed;
  void *ud = io->closed_ud;
  free(io);
  if (cb)
    cb(ud);
}

static void on_eio_closed(void *ud) {
  struct sio_server *io = ud;
  tq_close(&io->tq, sio_free);
}

void sio_server_close(struct sio_server *io, void (*on_closed)(void *ud), void *ud) {
  if (io->closing)
    return;
  io->closing = true;
  io->on_closed = on_closed;
  io->closed_ud = ud;
  eio_server_close(io->eio, on_eio_closed, io);
}

/* ---- socket accessors ---------------------------------------------------------------------------------------- */

const char *sio_socket_id(const struct sio_socket *s) { return s->id; }
struct sio_nsp *sio_socket_nsp(const struct sio_socket *s) { return s->nsp; }
struct sio_server *sio_socket_server(const struct sio_socket *s) { return s->c->io; }
bool sio_socket_connected(const struct sio_socket *s) { return s->state == SOCK_CONNECTED; }
void sio_socket_set_data(struct sio_socket *s, void *data) { s->data = data; }
void *sio_socket_data(const struct sio_socket *s) { return s->data; }
const json_t *sio_socket_auth(const struct sio_socket *s) { return s->auth; }
const char *sio_socket_remote(const struct sio_socket *s) {
  return s->c->remote ? s->c->remote : "";
}
enum eio_transport sio_socket_transport(const struct sio_socket *s) {
  return s->c->es ? eio_session_transport(s->c->es) : EIO_TRANSPORT_POLLING;
}

bool sio_socket_header(const struct sio_socket *s, const char *name, struct slice *out) {
  const char *p = s->c->hdrs;
  if (!p)
    return false;
  while (*p) {
    const char *v = p + strlen(p) + 1;
    if (strcasecmp(p, name) == 0) {
      *out = slice_from_cstr(v);
      return true;
    }
    p = v + strlen(v) + 1;
  }
  return false;
}
