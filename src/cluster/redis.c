/*
 * The Redis side of the cluster (see cluster.h): two hiredis async connections on the
 * libuv loop, "pub" (PUBLISH, commands) and "sub" (PSUBSCRIBE/SUBSCRIBE, subscribed mode
 * for its whole life), a 1 s timer that reconnects whichever is down, and the Socket.IO
 * adapter that publishes local broadcasts and delivers remote ones.
 *
 * Rooms stay in sio's local adapter: sio exposes sio_local_broadcast() for wrappers but
 * not its join/leave, so this adapter's join/leave put the local adapter back for the
 * duration of one sio_join/sio_leave call (ops->destroy is NULL, so the swap frees
 * nothing). Everything runs on the loop thread, so nothing can observe the swap.
 */
#include "cluster/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "chat/chat.h"
#include "recall/recall.h"
#include "sio/sio.h"

#define RETRY_MS 1000
#define CONNECT_TIMEOUT_MS 1500
#define DEAD_MS 2500
#define MAX_PENDING 10000 /* PUBLISHes awaiting a reply before new ones are dropped */
#define MAX_PUBLISH (1u << 20)

struct cluster {
  uv_loop_t *loop;
  char *host, *password, *prefix;
  int port;
  char uid[8];
  struct recall *recall;
  struct sio_nsp *nsp;
  char *chan;       /* <prefix>#<nsp># */
  char *pattern;    /* <prefix>#<nsp>#* */
  char *chan_inval; /* <prefix>#engram#invalidate */
  redisAsyncContext *pub, *sub;
  bool pub_up, sub_up, ever_up;
  uint64_t pub_since, sub_since; /* when the connection was opened (ms) */
  uint64_t outstanding;          /* commands sent on pub, not answered yet */
  uint64_t last_progress;        /* ms: last reply on pub, or first command after idle */
  uv_timer_t retry;
  bool closing;
  bool delivering; /* a remote broadcast is being delivered: do not publish it again */
  uint64_t pending;
  struct buf out;
  struct cluster_stats st;
  uint32_t lock_ttl_ms;
  bool no_lock;          /* ?lock=0: in-process order only (benchmarks, single-writer setups) */
  struct lockreq *locks; /* acquiring or held, one per chat at most */
  struct chat_lock_ops lock_ops;
  void (*on_closed)(void *ud);
  void *closed_ud;
};

/* ---- URL ------------------------------------------------------------------------- */

/* redis://[[user]:password@]host[:port][/db][?key=prefix] */
static int parse_url(struct cluster *cl, const char *url) {
  const char *p = url;
  if (strncmp(p, "redis://", 8) != 0)
    return EG_EINVAL;
  p += 8;
  const char *end = p + strcspn(p, "/?");
  const char *at = memchr(p, '@', (size_t)(end - p));
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon && at > colon + 1)
      cl->password = xstrndup(colon + 1, (size_t)(at - colon - 1));
    p = at + 1;
  }
  const char *colon = memchr(p, ':', (size_t)(end - p));
  const char *hend = colon ? colon : end;
  cl->host = hend > p ? xstrndup(p, (size_t)(hend - p)) : xstrdup("127.0.0.1");
  cl->port = 6379;
  if (colon) {
    char *e;
    long port = strtol(colon + 1, &e, 10);
    if (e != end || port <= 0 || port > 65535)
      return EG_EINVAL;
    cl->port = (int)port;
  }
  const char *q = strchr(end, '?');
  cl->prefix = NULL;
  for (; q && *q; q = strchr(q + 1, '&')) {
    if (strncmp(q + 1, "lock=0", 6) == 0 && (q[7] == '&' || q[7] == '\0'))
      cl->no_lock = true;
    if (strncmp(q + 1, "key=", 4) == 0) {
      const char *v = q + 5;
      size_t len = strcspn(v, "&");
      if (len == 0)
        return EG_EINVAL;
      free(cl->prefix);
      cl->prefix = xstrndup(v, len);
    }
  }
  if (!cl->prefix)
    cl->prefix = xstrdup("socket.io");
  return 0;
}

/* ---- connections ----------------------------------------------------------------- */

static void connect_missing(struct cluster *cl);

/* Liveness of pub: count commands sent and answered. hiredis 0.14's libuv adapter also
   drops socket errors after connect (a reset connection never reports anything), so a
   connection with commands unanswered for DEAD_MS is treated as dead (on_retry), and an
   idle one gets a PING every second. */
static void pub_sent(struct cluster *cl) {
  if (cl->outstanding++ == 0)
    cl->last_progress = clock_mono_ms();
}
static void pub_answered(struct cluster *cl, const redisAsyncContext *ac) {
  if (ac == cl->pub && cl->outstanding) {
    cl->outstanding--;
    cl->last_progress = clock_mono_ms();
  }
}

static void on_any_reply(redisAsyncContext *ac, void *r, void *priv) {
  (void)ac, (void)priv;
  const redisReply *rep = r;
  if (rep && rep->type == REDIS_REPLY_ERROR)
    log_warn("cluster: redis: %s", rep->str);
}

static void on_pub_connect(const redisAsyncContext *ac, int status) {
  struct cluster *cl = ac->data;
  if (status != REDIS_OK) {
    log_warn("cluster: redis %s:%d (pub): %s", cl->host, cl->port, ac->errstr);
    cl->pub = NULL; /* hiredis frees it after this callback */
    return;
  }
  cl->pub_up = true;
  log_info("cluster: redis %s:%d connected (pub)", cl->host, cl->port);
}

static void on_sub_connect(const redisAsyncContext *ac, int status) {
  struct cluster *cl = ac->data;
  if (status != REDIS_OK) {
    log_warn("cluster: redis %s:%d (sub): %s", cl->host, cl->port, ac->errstr);
    cl->sub = NULL;
    return;
  }
  cl->sub_up = true;
  log_info("cluster: redis %s:%d connected (sub)", cl->host, cl->port);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  struct cluster *cl = ac->data;
  if (ac == cl->pub) {
    cl->pub = NULL;
    cl->pub_up = false;
    cl->outstanding = 0;
  } else if (ac == cl->sub) {
    cl->sub = NULL;
    cl->sub_up = false;
  }
  if (!cl->closing)
    log_warn("cluster: redis %s:%d disconnected%s%s", cl->host, cl->port,
             status == REDIS_OK ? "" : ": ", status == REDIS_OK ? "" : ac->errstr);
}

static void on_sub_message(redisAsyncContext *ac, void *r, void *priv);

static redisAsyncContext *open_conn(struct cluster *cl, bool sub) {
  redisAsyncContext *ac = redisAsyncConnect(cl->host, cl->port);
  if (!ac)
    return NULL;
  if (ac->err) {
    log_warn("cluster: redis %s:%d: %s", cl->host, cl->port, ac->errstr);
    redisAsyncFree(ac);
    return NULL;
  }
  ac->data = cl;
  if (redisLibuvAttach(ac, cl->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    return NULL;
  }
  redisAsyncSetConnectCallback(ac, sub ? on_sub_connect : on_pub_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  /* Commands queue until the connection is up. */
  if (cl->password)
    redisAsyncCommand(ac, on_any_reply, NULL, "AUTH %s", cl->password);
  if (sub) {
    redisAsyncCommand(ac, on_sub_message, NULL, "PSUBSCRIBE %s", cl->pattern);
    redisAsyncCommand(ac, on_sub_message, NULL, "SUBSCRIBE %s", cl->chan_inval);
  }
  return ac;
}

static void connect_missing(struct cluster *cl) {
  if (cl->closing)
    return;
  if (!cl->pub) {
    if (cl->ever_up)
      cl->st.reconnects++;
    cl->pub = open_conn(cl, false);
    cl->pub_since = clock_mono_ms();
  }
  if (!cl->sub && cl->pattern) {
    if (cl->ever_up)
      cl->st.reconnects++;
    cl->sub = open_conn(cl, true);
    cl->sub_since = clock_mono_ms();
  }
  cl->ever_up = true;
}

static void on_ping(redisAsyncContext *ac, void *r, void *priv) {
  (void)r, (void)priv;
  pub_answered(ac->data, ac);
}

/* hiredis 0.14's libuv adapter drops poll errors (redisLibuvPoll returns on status != 0),
   so a connection refused after EINPROGRESS never reaches the connect callback: a
   connection not up within CONNECT_TIMEOUT_MS is freed here and opened again. */
static void drop_stuck(redisAsyncContext **acp, bool up, uint64_t since) {
  if (*acp && !up && clock_mono_ms() - since >= CONNECT_TIMEOUT_MS) {
    redisAsyncContext *ac = *acp;
    *acp = NULL;
    redisAsyncFree(ac);
  }
}

static void on_retry(uv_timer_t *t) {
  struct cluster *cl = t->data;
  drop_stuck(&cl->pub, cl->pub_up, cl->pub_since);
  drop_stuck(&cl->sub, cl->sub_up, cl->sub_since);
  if (cl->pub && cl->pub_up && cl->outstanding &&
      clock_mono_ms() - cl->last_progress >= DEAD_MS) {
    /* Dead without a word: free both connections (same server); pending callbacks run
       with no reply (locks granted locally, publishes counted as errors). */
    log_warn("cluster: redis %s:%d does not answer: reconnecting", cl->host, cl->port);
    redisAsyncContext *p = cl->pub, *sb = cl->sub;
    cl->pub = cl->sub = NULL;
    cl->pub_up = cl->sub_up = false;
    cl->outstanding = 0;
    redisAsyncFree(p);
    if (sb)
      redisAsyncFree(sb);
  } else if (cl->pub && cl->pub_up && cl->outstanding == 0) {
    if (redisAsyncCommand(cl->pub, on_ping, NULL, "PING") == REDIS_OK)
      pub_sent(cl);
  }
  connect_missing(cl);
}

/* ---- receiving ------------------------------------------------------------------- */

static void deliver_remote(struct cluster *cl, const struct cluster_msg *m) {
  size_t nr = json_array_size(m->rooms), ne = json_array_size(m->except);
  const char **rooms = xcalloc(nr + ne + 1, sizeof *rooms);
  const char **except = rooms + nr;
  const char *ev = json_string_value(json_array_get(m->data, 0));
  bool stored = ev && strcmp(ev, "chat-message") == 0;
  for (size_t i = 0; i < nr; i++) {
    rooms[i] = json_string_value(json_array_get(m->rooms, i));
    /* A message was stored (and remembered) for this user on another node: the index
       here is stale. Other events (an emitter's notice) change no memory. */
    if (stored && cl->recall && strncmp(rooms[i], "user:", 5) == 0 && rooms[i][5]) {
      recall_invalidate(cl->recall, rooms[i] + 5);
      cl->st.invalidations_received++;
    }
  }
  for (size_t i = 0; i < ne; i++)
    except[i] = json_string_value(json_array_get(m->except, i));
  const char *event = json_string_value(json_array_get(m->data, 0));
  if (!event) {
    cl->st.ignored++;
    free(rooms);
    return;
  }
  json_t *args = json_array();
  for (size_t i = 1; i < json_array_size(m->data); i++)
    json_array_append(args, json_array_get(m->data, i));
  struct sio_bcast to = {
      .rooms = rooms, .nrooms = nr, .except_rooms = except, .nexcept_rooms = ne};
  cl->delivering = true;
  int rc = sio_broadcast(cl->nsp, &to, event, args);
  cl->delivering = false;
  if (rc > 0)
    cl->st.delivered += (uint64_t)rc;
  else if (rc < 0)
    log_debug("cluster: remote broadcast %s not delivered: %s", event, eg_strerror(rc));
  free(rooms);
}

static void on_broadcast_msg(struct cluster *cl, const redisReply *payload) {
  cl->st.received++;
  struct cluster_msg m;
  if (cluster_msg_decode((const uint8_t *)payload->str, payload->len, &m) != 0) {
    cl->st.decode_errors++;
    log_debug("cluster: undecodable adapter message (%zu bytes)", payload->len);
    return;
  }
  if (strcmp(m.uid, cl->uid) == 0 || !cl->nsp || strcmp(m.nsp, sio_nsp_name(cl->nsp)) != 0 ||
      m.type != 2) {
    cl->st.ignored++;
  } else {
    deliver_remote(cl, &m);
  }
  cluster_msg_free(&m);
}

/* Invalidation payload: "<uid> <user id>". */
static void on_invalidate_msg(struct cluster *cl, const redisReply *payload) {
  const char *sp = memchr(payload->str, ' ', payload->len);
  if (!sp)
    return;
  size_t ulen = (size_t)(sp - payload->str);
  size_t idlen = payload->len - ulen - 1;
  if ((ulen == strlen(cl->uid) && memcmp(payload->str, cl->uid, ulen) == 0) || idlen == 0 ||
      idlen > 64)
    return;
  char id[65];
  memcpy(id, sp + 1, idlen);
  id[idlen] = '\0';
  cl->st.invalidations_received++;
  if (cl->recall)
    recall_invalidate(cl->recall, id);
}

static bool is_str(const redisReply *r, const char *s) {
  return r->type == REDIS_REPLY_STRING && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

static void on_sub_message(redisAsyncContext *ac, void *r, void *priv) {
  (void)priv;
  struct cluster *cl = ac->data;
  const redisReply *rep = r;
  if (!rep || cl->closing)
    return;
  if (rep->type == REDIS_REPLY_ERROR) {
    log_warn("cluster: redis subscribe: %s", rep->str);
    return;
  }
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3)
    return;
  if (is_str(rep->element[0], "pmessage") && rep->elements == 4 &&
      rep->element[3]->type == REDIS_REPLY_STRING)
    on_broadcast_msg(cl, rep->element[3]);
  else if (is_str(rep->element[0], "message") && rep->element[2]->type == REDIS_REPLY_STRING)
    on_invalidate_msg(cl, rep->element[2]);
}

/* ---- publishing ------------------------------------------------------------------ */

static void on_published(redisAsyncContext *ac, void *r, void *priv) {
  pub_answered(((struct cluster *)ac->data), ac);
  struct cluster *cl = ac->data;
  cl->pending--;
  const redisReply *rep = r;
  if (!rep || rep->type == REDIS_REPLY_ERROR) {
    cl->st.publish_errors++;
    return;
  }
  uint64_t t0 = (uint64_t)(uintptr_t)priv;
  histo_add(&cl->st.publish_rtt, (clock_mono_ns() - t0) / 1000);
}

static int publish(struct cluster *cl, const char *chan, size_t chlen, const void *msg,
                   size_t len) {
  if (!cl->pub || !cl->pub_up || cl->pending >= MAX_PENDING) {
    cl->st.publish_errors++;
    return EG_ECLOSED;
  }
  uint64_t t0 = clock_mono_ns();
  if (redisAsyncCommand(cl->pub, on_published, (void *)(uintptr_t)t0, "PUBLISH %b %b", chan,
                        chlen, msg, len) != REDIS_OK) {
    cl->st.publish_errors++;
    return EG_EIO;
  }
  cl->pending++;
  pub_sent(cl);
  cl->st.published++;
  return 0;
}

static void publish_broadcast(struct cluster *cl, const struct sio_bcast *to,
                              const struct sio_bpacket *pkt) {
  if (pkt->nattach || !pkt->data) {
    cl->st.publish_skipped++;
    return;
  }
  size_t nr = to ? to->nrooms + (to->room ? 1 : 0) : 0;
  size_t ne = to ? to->nexcept_rooms + (to->except ? 1 : 0) : 0;
  const char **rooms = xcalloc(nr + ne + 1, sizeof *rooms);
  const char **except = rooms + nr;
  size_t k = 0;
  for (size_t i = 0; to && i < to->nrooms; i++)
    rooms[k++] = to->rooms[i];
  if (to && to->room)
    rooms[k++] = to->room;
  k = 0;
  for (size_t i = 0; to && i < to->nexcept_rooms; i++)
    except[k++] = to->except_rooms[i];
  if (to && to->except)
    except[k++] = sio_socket_id(to->except);
  buf_reset(&cl->out);
  int rc = cluster_msg_encode(cl->uid, sio_nsp_name(cl->nsp), pkt->data, rooms, nr, except, ne,
                              &cl->out);
  if (rc == 0) {
    char chan[600];
    int chlen = nr == 1 ? snprintf(chan, sizeof chan, "%s%s#", cl->chan, rooms[0])
                        : snprintf(chan, sizeof chan, "%s", cl->chan);
    if (chlen > 0 && (size_t)chlen < sizeof chan)
      (void)publish(cl, chan, (size_t)chlen, cl->out.data, cl->out.len);
    else
      cl->st.publish_skipped++;
  } else {
    cl->st.publish_skipped++;
  }
  free(rooms);
}

/* ---- the adapter ----------------------------------------------------------------- */

static const struct sio_adapter_ops cluster_ops;

static int ad_join(void *a, struct sio_socket *s, const char *room) {
  struct cluster *cl = a;
  sio_nsp_set_adapter(cl->nsp, NULL, NULL);
  int rc = sio_join(s, room);
  sio_nsp_set_adapter(cl->nsp, &cluster_ops, cl);
  return rc;
}

static void ad_leave(void *a, struct sio_socket *s, const char *room) {
  struct cluster *cl = a;
  sio_nsp_set_adapter(cl->nsp, NULL, NULL);
  sio_leave(s, room);
  sio_nsp_set_adapter(cl->nsp, &cluster_ops, cl);
}

static void ad_leave_all(void *a, struct sio_socket *s) {
  struct cluster *cl = a;
  sio_nsp_set_adapter(cl->nsp, NULL, NULL);
  sio_leave_all(s);
  sio_nsp_set_adapter(cl->nsp, &cluster_ops, cl);
}

static int ad_broadcast(void *a, struct sio_nsp *nsp, const struct sio_bcast *to,
                        const struct sio_bpacket *pkt) {
  struct cluster *cl = a;
  if (!cl->delivering) {
    publish_broadcast(cl, to, pkt);
    /* The user's memories changed here: tell the others through the same message (a
       remote "user:<id>" broadcast invalidates on receipt). */
  }
  return sio_local_broadcast(nsp, to, pkt);
}

static const struct sio_adapter_ops cluster_ops = {ad_join, ad_leave, ad_leave_all,
                                                   ad_broadcast, NULL};

/* ---- per-chat lock (see cluster.h) ----------------------------------------------- */

/* One round trip per attempt: a fencing token from the shared counter, then SET NX PX. */
static const char LOCK_SCRIPT[] =
    "local t = redis.call('incr', KEYS[2]) "
    "if redis.call('set', KEYS[1], t, 'NX', 'PX', ARGV[1]) then return t else return 0 end";
static const char UNLOCK_SCRIPT[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end";

static const char REFRESH_SCRIPT[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], "
    "ARGV[2]) else return 0 end";

#define LOCK_RETRY_MIN_MS 2
#define LOCK_RETRY_MAX_MS 50

struct lockreq {
  struct cluster *cl;
  struct lockreq *next;
  char chat[ID_LEN + 8];
  void (*granted)(void *arg);
  void *arg;
  long long token; /* 0 until held; -1 granted without Redis */
  uint64_t t0;
  uint32_t backoff_ms;
  bool waited;
  uv_timer_t timer;
};

static void lock_try(struct lockreq *q);

static void lockreq_closed(uv_handle_t *h) {
  free(h->data);
}

static void lock_unlink(struct lockreq *q) {
  for (struct lockreq **pp = &q->cl->locks; *pp; pp = &(*pp)->next) {
    if (*pp == q) {
      *pp = q->next;
      break;
    }
  }
  uv_close((uv_handle_t *)&q->timer, lockreq_closed);
}

static void on_refresh_reply(redisAsyncContext *ac, void *r, void *priv) {
  pub_answered(((struct cluster *)ac->data), ac);
  (void)priv;
  struct cluster *cl = ac->data;
  const redisReply *rep = r;
  if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0) {
    cl->st.lock_lost++;
    log_warn("cluster: a chat lock expired while its message was being answered");
  }
}

/* Held: extend the TTL every third of it while the message is being answered. */
static void on_lock_refresh(uv_timer_t *t) {
  struct lockreq *q = t->data;
  struct cluster *cl = q->cl;
  if (!cl->pub || !cl->pub_up)
    return;
  char key[ID_LEN + 300], tok[24], ttl[16];
  snprintf(key, sizeof key, "%s#engram#lock#%s", cl->prefix, q->chat);
  snprintf(tok, sizeof tok, "%lld", q->token);
  snprintf(ttl, sizeof ttl, "%u", cl->lock_ttl_ms);
  if (redisAsyncCommand(cl->pub, on_refresh_reply, NULL, "EVAL %s 1 %s %s %s", REFRESH_SCRIPT,
                        key, tok, ttl) != REDIS_OK)
    log_debug("cluster: lock refresh not sent");
  else
    pub_sent(cl);
}

static void lock_grant(struct lockreq *q, long long token) {
  q->token = token;
  if (token > 0) {
    q->cl->st.locks++;
    histo_add(&q->cl->st.lock_wait, (clock_mono_ns() - q->t0) / 1000);
    uint64_t every = EG_MAX(q->cl->lock_ttl_ms / 3, 1);
    uv_timer_start(&q->timer, on_lock_refresh, every, every);
  } else {
    q->cl->st.lock_degraded++;
  }
  q->granted(q->arg);
}

static void on_lock_retry(uv_timer_t *t) {
  lock_try(t->data);
}

static void on_lock_reply(redisAsyncContext *ac, void *r, void *priv) {
  pub_answered(((struct cluster *)ac->data), ac);
  (void)ac;
  struct lockreq *q = priv;
  const redisReply *rep = r;
  if (!rep || rep->type != REDIS_REPLY_INTEGER) {
    if (rep && rep->type == REDIS_REPLY_ERROR)
      log_warn("cluster: chat lock: %s", rep->str);
    lock_grant(q, -1); /* Redis gone: keep serving this node's clients */
    return;
  }
  if (rep->integer > 0) {
    lock_grant(q, rep->integer);
    return;
  }
  /* Held by another node: retry with backoff; past twice the TTL (a holder that never
     releases would have expired by then) go ahead. */
  if (!q->waited) {
    q->waited = true;
    q->cl->st.lock_waits++;
  }
  if ((clock_mono_ns() - q->t0) / 1000000 > 2ull * q->cl->lock_ttl_ms) {
    lock_grant(q, -1);
    return;
  }
  q->backoff_ms =
      q->backoff_ms ? EG_MIN(q->backoff_ms * 2, LOCK_RETRY_MAX_MS) : LOCK_RETRY_MIN_MS;
  uv_timer_start(&q->timer, on_lock_retry, q->backoff_ms, 0);
}

static void lock_try(struct lockreq *q) {
  struct cluster *cl = q->cl;
  char key[ID_LEN + 300], fence[300], ttl[16];
  snprintf(key, sizeof key, "%s#engram#lock#%s", cl->prefix, q->chat);
  snprintf(fence, sizeof fence, "%s#engram#fence", cl->prefix);
  snprintf(ttl, sizeof ttl, "%u", cl->lock_ttl_ms);
  if (!cl->pub || !cl->pub_up || cl->closing ||
      redisAsyncCommand(cl->pub, on_lock_reply, q, "EVAL %s 2 %s %s %s", LOCK_SCRIPT, key,
                        fence, ttl) != REDIS_OK) {
    lock_grant(q, -1);
    return;
  }
  pub_sent(cl);
}

static void lock_acquire(void *ud, const char *chat_id, void (*granted)(void *arg), void *arg) {
  struct cluster *cl = ud;
  struct lockreq *q = xcalloc(1, sizeof *q);
  q->cl = cl;
  snprintf(q->chat, sizeof q->chat, "%s", chat_id);
  q->granted = granted;
  q->arg = arg;
  q->t0 = clock_mono_ns();
  uv_timer_init(cl->loop, &q->timer);
  q->timer.data = q;
  q->next = cl->locks;
  cl->locks = q;
  lock_try(q);
}

static void on_unlock_reply(redisAsyncContext *ac, void *r, void *priv) {
  pub_answered(((struct cluster *)ac->data), ac);
  (void)priv;
  struct cluster *cl = ac->data;
  const redisReply *rep = r;
  if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0) {
    cl->st.lock_lost++; /* it expired (TTL) and maybe another node took it */
    log_warn("cluster: a chat lock expired before its message was finished");
  }
}

static void lock_release(void *ud, const char *chat_id) {
  struct cluster *cl = ud;
  struct lockreq *q = cl->locks;
  while (q && (q->token == 0 || strcmp(q->chat, chat_id) != 0))
    q = q->next;
  if (!q)
    return;
  if (q->token > 0 && cl->pub && cl->pub_up) {
    char key[ID_LEN + 300], tok[24];
    snprintf(key, sizeof key, "%s#engram#lock#%s", cl->prefix, q->chat);
    snprintf(tok, sizeof tok, "%lld", q->token);
    if (redisAsyncCommand(cl->pub, on_unlock_reply, NULL, "EVAL %s 1 %s %s", UNLOCK_SCRIPT, key,
                          tok) != REDIS_OK)
      log_warn("cluster: chat lock not released (it expires by itself)");
    else
      pub_sent(cl);
  }
  lock_unlink(q);
}

const struct chat_lock_ops *cluster_chat_lock_ops(struct cluster *cl) {
  if (cl->no_lock)
    return NULL;
  cl->lock_ops.acquire = lock_acquire;
  cl->lock_ops.release = lock_release;
  cl->lock_ops.ud = cl;
  return &cl->lock_ops;
}

/* ---- public ---------------------------------------------------------------------- */

int cluster_new(const struct cluster_opts *o, struct cluster **out) {
  *out = NULL;
  if (!o || !o->loop || !o->redis_url)
    return EG_EINVAL;
  struct cluster *cl = xcalloc(1, sizeof *cl);
  cl->loop = o->loop;
  cl->recall = o->recall;
  cl->lock_ttl_ms = o->lock_ttl_ms ? o->lock_ttl_ms : 10000;
  int rc = parse_url(cl, o->redis_url);
  if (rc) {
    log_error("cluster: bad Redis URL (redis://[:password@]host[:port][/db][?key=prefix])");
    cluster_free(cl);
    return rc;
  }
  static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  char rnd[ID_LEN + 1];
  id_new(rnd);
  for (int i = 0; i < 6; i++)
    cl->uid[i] = alnum[(unsigned char)rnd[ID_LEN - 1 - i] % 36];
  size_t n = strlen(cl->prefix) + 32;
  cl->chan_inval = xmalloc(n);
  snprintf(cl->chan_inval, n, "%s#engram#invalidate", cl->prefix);
  buf_init(&cl->out, MAX_PUBLISH);
  uv_timer_init(cl->loop, &cl->retry);
  cl->retry.data = cl;
  uv_timer_start(&cl->retry, on_retry, RETRY_MS, RETRY_MS);
  connect_missing(cl);
  *out = cl;
  return 0;
}

void cluster_attach(struct cluster *cl, struct sio_nsp *nsp) {
  cl->nsp = nsp;
  const char *name = sio_nsp_name(nsp);
  size_t n = strlen(cl->prefix) + strlen(name) + 4;
  free(cl->chan);
  free(cl->pattern);
  cl->chan = xmalloc(n);
  snprintf(cl->chan, n, "%s#%s#", cl->prefix, name);
  cl->pattern = xmalloc(n + 1);
  snprintf(cl->pattern, n + 1, "%s#%s#*", cl->prefix, name);
  sio_nsp_set_adapter(nsp, &cluster_ops, cl);
  if (cl->sub) {
    redisAsyncCommand(cl->sub, on_sub_message, NULL, "PSUBSCRIBE %s", cl->pattern);
  } else {
    connect_missing(cl);
  }
}

void cluster_invalidate_user(struct cluster *cl, const char *user_id) {
  if (!cl || !user_id)
    return;
  char msg[128];
  int len = snprintf(msg, sizeof msg, "%s %s", cl->uid, user_id);
  if (len <= 0 || (size_t)len >= sizeof msg)
    return;
  if (publish(cl, cl->chan_inval, strlen(cl->chan_inval), msg, (size_t)len) == 0)
    cl->st.invalidations_sent++;
}

bool cluster_ready(const struct cluster *cl) {
  return cl && cl->pub_up && cl->sub_up;
}

static void on_timer_closed(uv_handle_t *h) {
  struct cluster *cl = h->data;
  if (cl->on_closed) {
    void (*cb)(void *) = cl->on_closed;
    cl->on_closed = NULL;
    cb(cl->closed_ud);
  }
}

void cluster_close(struct cluster *cl, void (*on_closed)(void *ud), void *ud) {
  cl->closing = true;
  cl->on_closed = on_closed;
  cl->closed_ud = ud;
  uv_timer_stop(&cl->retry);
  /* redisAsyncFree runs the pending callbacks with a NULL reply and the disconnect
     callback; the libuv adapter closes its poll handle (freed in its close callback). */
  if (cl->pub) {
    redisAsyncContext *ac = cl->pub;
    redisAsyncFree(ac);
    cl->pub = NULL;
  }
  if (cl->sub) {
    redisAsyncContext *ac = cl->sub;
    redisAsyncFree(ac);
    cl->sub = NULL;
  }
  cl->pub_up = cl->sub_up = false;
  uv_close((uv_handle_t *)&cl->retry, on_timer_closed);
}

void cluster_free(struct cluster *cl) {
  if (!cl)
    return;
  free(cl->host);
  free(cl->password);
  free(cl->prefix);
  free(cl->chan);
  free(cl->pattern);
  free(cl->chan_inval);
  buf_free(&cl->out);
  free(cl);
}

void cluster_stats(const struct cluster *cl, struct cluster_stats *st) {
  *st = cl->st;
  st->pub_up = cl->pub_up;
  st->sub_up = cl->sub_up;
}

int cluster_metrics_render(const struct cluster *cl, struct buf *b) {
  struct cluster_stats s;
  cluster_stats(cl, &s);
  int rc = buf_printf(
      b,
      "# HELP engram_redis_up Redis connections up (pub, sub).\n# TYPE engram_redis_up gauge\n"
      "engram_redis_up{conn=\"pub\"} %d\nengram_redis_up{conn=\"sub\"} %d\n"
      "# HELP engram_redis_published_total Broadcasts published to other nodes.\n"
      "# TYPE engram_redis_published_total counter\nengram_redis_published_total %llu\n"
      "# HELP engram_redis_publish_errors_total Broadcasts not published (Redis down, "
      "backlog full, error reply).\n# TYPE engram_redis_publish_errors_total counter\n"
      "engram_redis_publish_errors_total %llu\n"
      "# HELP engram_redis_received_total Adapter messages received.\n"
      "# TYPE engram_redis_received_total counter\nengram_redis_received_total %llu\n"
      "# HELP engram_redis_delivered_total Local sockets reached by remote broadcasts.\n"
      "# TYPE engram_redis_delivered_total counter\nengram_redis_delivered_total %llu\n"
      "# HELP engram_redis_decode_errors_total Undecodable adapter messages.\n"
      "# TYPE engram_redis_decode_errors_total counter\nengram_redis_decode_errors_total "
      "%llu\n"
      "# HELP engram_redis_reconnects_total Redis reconnection attempts.\n"
      "# TYPE engram_redis_reconnects_total counter\nengram_redis_reconnects_total %llu\n"
      "# HELP engram_redis_publish_pending PUBLISHes awaiting a reply.\n"
      "# TYPE engram_redis_publish_pending gauge\nengram_redis_publish_pending %llu\n"
      "# HELP engram_memory_invalidations_total Per-user index invalidations over Redis.\n"
      "# TYPE engram_memory_invalidations_total counter\n"
      "engram_memory_invalidations_total{dir=\"sent\"} %llu\n"
      "engram_memory_invalidations_total{dir=\"received\"} %llu\n"
      "# HELP engram_redis_publish_seconds PUBLISH round trip.\n"
      "# TYPE engram_redis_publish_seconds histogram\n",
      s.pub_up, s.sub_up, (unsigned long long)s.published, (unsigned long long)s.publish_errors,
      (unsigned long long)s.received, (unsigned long long)s.delivered,
      (unsigned long long)s.decode_errors, (unsigned long long)s.reconnects,
      (unsigned long long)cl->pending, (unsigned long long)s.invalidations_sent,
      (unsigned long long)s.invalidations_received);
  if (!rc)
    rc = histo_prometheus(&s.publish_rtt, "engram_redis_publish_seconds", "", b);
  if (!rc)
    rc = buf_printf(
        b,
        "# HELP engram_chat_locks_total Per-chat cross-node locks by outcome (acquired; "
        "waited: had to wait for another node; lost: expired while held; local: granted "
        "without Redis).\n# TYPE engram_chat_locks_total counter\n"
        "engram_chat_locks_total{outcome=\"acquired\"} %llu\n"
        "engram_chat_locks_total{outcome=\"waited\"} %llu\n"
        "engram_chat_locks_total{outcome=\"lost\"} %llu\n"
        "engram_chat_locks_total{outcome=\"local\"} %llu\n"
        "# HELP engram_chat_lock_wait_seconds Time to acquire a chat lock.\n"
        "# TYPE engram_chat_lock_wait_seconds histogram\n",
        (unsigned long long)s.locks, (unsigned long long)s.lock_waits,
        (unsigned long long)s.lock_lost, (unsigned long long)s.lock_degraded);
  if (!rc)
    rc = histo_prometheus(&s.lock_wait, "engram_chat_lock_wait_seconds", "", b);
  return rc;
}
