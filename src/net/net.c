/*
 * net: listener, connections, the coalescing write queue, timeouts, jobs.
 *
 * Write path. net_conn_write* only queue: bytes go into segments on the connection and
 * the connection is put on the server's dirty list. A uv_check handle (runs right after
 * the I/O callbacks of a loop turn) and a uv_prepare handle (runs before the loop blocks,
 * catching writes made by timers and other non-I/O callbacks) flush every dirty
 * connection: one uv_try_write of all queued segments as one iovec array, and if the
 * kernel did not take everything, one uv_write of the rest. While that write is in flight
 * new bytes queue behind it; its callback marks the connection dirty again. So a
 * connection costs one writev per loop turn, however many messages were written to it.
 * Both handles are started only while the dirty list is non-empty.
 *
 * Read path. alloc_cb hands out the server's single 64 KiB read buffer. on_read gets the
 * bytes there (or, if the previous call left bytes unconsumed, the connection's leftover
 * buffer with the new bytes appended).
 *
 * Timeouts. Each timeout class has one duration, so appending a connection at the tail
 * keeps the class's list sorted by deadline: add/remove/reset are O(1), and one uv_timer
 * armed at the earliest head deadline serves the whole server.
 *
 * Closing. Graceful close = flush, shutdown(SHUT_WR), then read and discard until EOF or
 * 2 s (the linger class), then uv_close. The connection memory is freed in the uv_close
 * callback only.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "net/net.h"

#define SEG_DEFAULT 4000
#define SEG_FREE_MAX 64
#define IOV_BATCH 64
#define LINGER_MS 2000
#define LINGER_CLASS (NET_TIMEOUT_CLASSES - 1)
#define MAX_IN_DEFAULT (64 * 1024)

enum {
  F_DIRTY = 1 << 0,     /* on the server's dirty list */
  F_PAUSED = 1 << 1,    /* input not delivered */
  F_REDELIVER = 1 << 2, /* leftover to present again at the next flush pass */
  F_CLOSING = 1 << 3,   /* graceful close requested */
  F_SHUTDOWN = 1 << 4,  /* shutdown(SHUT_WR) issued */
  F_LINGER = 1 << 5,    /* discarding input until EOF/timeout */
  F_CLOSED = 1 << 6,    /* uv_close called */
  F_EOF = 1 << 7,       /* on_eof delivered (or read side dead) */
  F_FAILED = 1 << 8,    /* a write failed */
  F_ABOVE_LOW = 1 << 9, /* backlog went above low_water since the last on_drain */
  F_READ_STOP = 1 << 10,/* reading stopped (backpressure or leftover cap) */
  F_USER_STOP = 1 << 11,/* reading stopped by net_conn_read_stop */
};

struct net_seg {
  struct net_seg *next;
  struct net_sbuf *ref; /* shared buffer, or NULL for an owned segment */
  const uint8_t *p;     /* first unsent byte */
  size_t len;           /* unsent bytes */
  size_t cap;           /* owned: capacity of data[] */
  uint8_t data[];
};

struct net_wreq {
  uv_write_t req;
  struct net_conn *c;
};

struct tq {
  struct net_conn *head, *tail;
  uint64_t ms;
};

struct net_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_check_t check;
  uv_prepare_t prepare;
  uv_timer_t timer;
  struct net_server_opts opts;
  int port;
  uint8_t *rbuf;
  struct net_conn *all;
  size_t nconns;
  struct net_conn *dirty;
  struct tq tq[NET_TIMEOUT_CLASSES];
  uint64_t timer_due; /* 0 = not armed */
  struct net_seg *free_segs;
  int nfree;
  bool flushing_active;
  uint64_t write_calls;
  bool stopping;
  bool listener_closed;
  int handles_to_close;
  void (*on_closed)(void *ud);
  void *closed_ud;
  struct hmap per_addr; /* peer IP text -> struct net_addr_count (max_per_addr only) */
  uint64_t refused_per_addr;
};

struct net_addr_count {
  size_t n;
  char key[48];
};

static void conn_flush(struct net_conn *c);
static void conn_start_shutdown(struct net_conn *c);
static void conn_uv_close(struct net_conn *c);
static void server_maybe_finish(struct net_server *s);

/* ---- shared buffers ---------------------------------------------------------------------- */

struct net_sbuf *net_sbuf_new(size_t len) {
  struct net_sbuf *b = xmalloc(sizeof *b + (len ? len : 1));
  atomic_init((_Atomic uint32_t *)&b->refs, 1);
  b->flags = 0;
  b->len = len;
  return b;
}

struct net_sbuf *net_sbuf_from(const void *p, size_t len) {
  struct net_sbuf *b = net_sbuf_new(len);
  if (len)
    memcpy(b->data, p, len);
  return b;
}

struct net_sbuf *net_sbuf_ref(struct net_sbuf *b) {
  atomic_fetch_add_explicit((_Atomic uint32_t *)&b->refs, 1, memory_order_relaxed);
  return b;
}

void net_sbuf_unref(struct net_sbuf *b) {
  if (b == NULL)
    return;
  if (atomic_fetch_sub_explicit((_Atomic uint32_t *)&b->refs, 1, memory_order_acq_rel) == 1)
    free(b);
}

/* ---- segments -------------------------------------------------------------------------- */

static struct net_seg *seg_new(struct net_server *s, size_t need) {
  struct net_seg *g;
  if (need <= SEG_DEFAULT && s->free_segs) {
    g = s->free_segs;
    s->free_segs = g->next;
    s->nfree--;
  } else {
    size_t cap = need < SEG_DEFAULT ? SEG_DEFAULT : need;
    g = xmalloc(sizeof *g + cap);
    g->cap = cap;
  }
  g->next = NULL;
  g->ref = NULL;
  g->p = g->data;
  g->len = 0;
  return g;
}

static void seg_free(struct net_server *s, struct net_seg *g) {
  if (g->ref) {
    net_sbuf_unref(g->ref);
    free(g);
    return;
  }
  if (g->cap == SEG_DEFAULT && s->nfree < SEG_FREE_MAX) {
    g->next = s->free_segs;
    s->free_segs = g;
    s->nfree++;
    return;
  }
  free(g);
}

static void seg_list_free(struct net_server *s, struct net_seg *g) {
  while (g) {
    struct net_seg *n = g->next;
    seg_free(s, g);
    g = n;
  }
}

/* ---- flush scheduling -------------------------------------------------------------------- */

static void flush_all(struct net_server *s);

static void on_check(uv_check_t *h) { flush_all(h->data); }
static void on_prepare(uv_prepare_t *h) { flush_all(h->data); }

static void mark_dirty(struct net_conn *c) {
  struct net_server *s = c->srv;
  if (c->flags & (F_DIRTY | F_CLOSED))
    return;
  c->flags |= F_DIRTY;
  c->dirty_next = s->dirty;
  s->dirty = c;
  if (!s->flushing_active) {
    uv_check_start(&s->check, on_check);
    uv_prepare_start(&s->prepare, on_prepare);
    s->flushing_active = true;
  }
}

static void redeliver(struct net_conn *c);

static void flush_all(struct net_server *s) {
  /* Redelivery may queue writes (and mark connections dirty again): loop until quiet. */
  while (s->dirty) {
    struct net_conn *c = s->dirty;
    s->dirty = c->dirty_next;
    c->dirty_next = NULL;
    c->flags &= ~F_DIRTY;
    if (c->flags & F_CLOSED)
      continue;
    if (c->flags & F_REDELIVER) {
      c->flags &= ~F_REDELIVER;
      redeliver(c);
      if (c->flags & F_CLOSED)
        continue;
    }
    conn_flush(c);
  }
  if (s->flushing_active) {
    uv_check_stop(&s->check);
    uv_prepare_stop(&s->prepare);
    s->flushing_active = false;
  }
}

/* ---- timeouts ----------------------------------------------------------------------------- */

static void tq_unlink(struct net_conn *c) {
  if (c->tcls < 0)
    return;
  struct tq *q = &c->srv->tq[c->tcls];
  if (c->t_prev)
    c->t_prev->t_next = c->t_next;
  else
    q->head = c->t_next;
  if (c->t_next)
    c->t_next->t_prev = c->t_prev;
  else
    q->tail = c->t_prev;
  c->t_prev = c->t_next = NULL;
  c->tcls = NET_TIMEOUT_NONE;
}

static void on_timer(uv_timer_t *t);

static void timer_arm(struct net_server *s, uint64_t due) {
  if (s->timer_due != 0 && s->timer_due <= due)
    return;
  uint64_t now = uv_now(s->loop);
  s->timer_due = due;
  uv_timer_start(&s->timer, on_timer, due > now ? due - now : 0, 0);
}

static void timer_rearm(struct net_server *s) {
  uint64_t due = 0;
  for (int i = 0; i < NET_TIMEOUT_CLASSES; i++)
    if (s->tq[i].head && (due == 0 || s->tq[i].head->deadline_ms < due))
      due = s->tq[i].head->deadline_ms;
  s->timer_due = 0;
  if (due)
    timer_arm(s, due);
  else
    uv_timer_stop(&s->timer);
}

static void on_timer(uv_timer_t *t) {
  struct net_server *s = t->data;
  uint64_t now = uv_now(s->loop);
  s->timer_due = 0;
  for (int i = 0; i < NET_TIMEOUT_CLASSES; i++) {
    struct tq *q = &s->tq[i];
    while (q->head && q->head->deadline_ms <= now) {
      struct net_conn *c = q->head;
      tq_unlink(c);
      if (i == LINGER_CLASS || c->cbs == NULL || c->cbs->on_timeout == NULL)
        conn_uv_close(c);
      else
        c->cbs->on_timeout(c, i);
    }
  }
  timer_rearm(s);
}

static void conn_timeout_set(struct net_conn *c, int cls) {
  tq_unlink(c);
  if (cls < 0 || cls >= NET_TIMEOUT_CLASSES || (c->flags & F_CLOSED))
    return;
  struct net_server *s = c->srv;
  struct tq *q = &s->tq[cls];
  if (q->ms == 0)
    return;
  c->deadline_ms = uv_now(s->loop) + q->ms;
  c->tcls = (int8_t)cls;
  c->t_prev = q->tail;
  c->t_next = NULL;
  if (q->tail)
    q->tail->t_next = c;
  else
    q->head = c;
  q->tail = c;
  timer_arm(s, c->deadline_ms);
}

void net_conn_timeout(struct net_conn *c, int cls) {
  if (cls == LINGER_CLASS)
    return; /* reserved */
  conn_timeout_set(c, cls);
}

void net_server_set_timeout(struct net_server *s, int cls, uint64_t ms) {
  if (cls >= 0 && cls < LINGER_CLASS)
    s->tq[cls].ms = ms;
}

/* ---- writing ----------------------------------------------------------------------------- */

static void backlog_add(struct net_conn *c, size_t n) {
  c->backlog += n;
  if (c->backlog > c->low_water)
    c->flags |= F_ABOVE_LOW;
}

static void backlog_sub(struct net_conn *c, size_t n) {
  c->backlog -= n;
}

static void maybe_drain(struct net_conn *c) {
  if ((c->flags & F_ABOVE_LOW) && c->backlog <= c->low_water &&
      !(c->flags & (F_CLOSED | F_FAILED))) {
    c->flags &= ~F_ABOVE_LOW;
    if (c->cbs && c->cbs->on_drain && !(c->flags & F_CLOSING))
      c->cbs->on_drain(c);
  }
}

static void append_owned(struct net_conn *c, const void *p, size_t n) {
  struct net_seg *t = c->out_tail;
  if (t && t->ref == NULL) {
    size_t room = t->cap - (size_t)(t->p - t->data) - t->len;
    if (room >= n) {
      memcpy((uint8_t *)t->p + t->len, p, n);
      t->len += n;
      return;
    }
    if (room > 0) {
      memcpy((uint8_t *)t->p + t->len, p, room);
      t->len += room;
      p = (const uint8_t *)p + room;
      n -= room;
    }
  }
  struct net_seg *g = seg_new(c->srv, n);
  memcpy(g->data, p, n);
  g->len = n;
  if (c->out_tail)
    c->out_tail->next = g;
  else
    c->out_head = g;
  c->out_tail = g;
}

static bool can_write(const struct net_conn *c) {
  return !(c->flags & (F_CLOSING | F_CLOSED | F_FAILED | F_SHUTDOWN));
}

int net_conn_write(struct net_conn *c, const void *p, size_t n) {
  if (!can_write(c))
    return EG_ECLOSED;
  if (n == 0)
    return 0;
  append_owned(c, p, n);
  backlog_add(c, n);
  mark_dirty(c);
  return 0;
}

int net_conn_writev(struct net_conn *c, const uv_buf_t *bufs, unsigned nbufs) {
  if (!can_write(c))
    return EG_ECLOSED;
  size_t total = 0;
  for (unsigned i = 0; i < nbufs; i++)
    total += bufs[i].len;
  if (total == 0)
    return 0;
  /* Make one segment big enough for all the pieces unless the tail has room. */
  struct net_seg *t = c->out_tail;
  bool fits = t && t->ref == NULL && t->cap - (size_t)(t->p - t->data) - t->len >= total;
  if (!fits) {
    struct net_seg *g = seg_new(c->srv, total);
    if (c->out_tail)
      c->out_tail->next = g;
    else
      c->out_head = g;
    c->out_tail = g;
  }
  for (unsigned i = 0; i < nbufs; i++)
    if (bufs[i].len)
      append_owned(c, bufs[i].base, bufs[i].len);
  backlog_add(c, total);
  mark_dirty(c);
  return 0;
}

int net_conn_write_sbuf(struct net_conn *c, struct net_sbuf *b, size_t off, size_t len) {
  if (!can_write(c))
    return EG_ECLOSED;
  if (off > b->len || len > b->len - off)
    return EG_EINVAL;
  if (len == 0)
    return 0;
  if (len <= 256) { /* small: copying is cheaper than a segment */
    append_owned(c, b->data + off, len);
  } else {
    struct net_seg *g = xmalloc(sizeof *g);
    g->next = NULL;
    g->ref = net_sbuf_ref(b);
    g->p = b->data + off;
    g->len = len;
    g->cap = 0;
    if (c->out_tail)
      c->out_tail->next = g;
    else
      c->out_head = g;
    c->out_tail = g;
  }
  backlog_add(c, len);
  mark_dirty(c);
  return 0;
}

size_t net_conn_backlog(const struct net_conn *c) { return c->backlog; }
void net_conn_set_low_water(struct net_conn *c, size_t low) { c->low_water = low; }

static void conn_fail(struct net_conn *c) {
  if (c->flags & F_FAILED)
    return;
  c->flags |= F_FAILED;
  if (!(c->flags & F_EOF) && !(c->flags & F_CLOSING)) {
    c->flags |= F_EOF;
    if (c->cbs && c->cbs->on_eof)
      c->cbs->on_eof(c, EG_EIO);
  }
  conn_uv_close(c);
}

static void on_write(uv_write_t *req, int status) {
  struct net_wreq *w = EG_CONTAINER_OF(req, struct net_wreq, req);
  struct net_conn *c = w->c;
  free(w);
  struct net_seg *g = c->inflight;
  size_t n = 0;
  for (struct net_seg *x = g; x; x = x->next)
    n += x->len;
  c->inflight = NULL;
  seg_list_free(c->srv, g);
  backlog_sub(c, n);
  if (c->flags & F_CLOSED)
    return;
  if (status < 0) {
    conn_fail(c);
    return;
  }
  if (c->out_head)
    mark_dirty(c);
  else if ((c->flags & F_CLOSING) && !(c->flags & F_SHUTDOWN))
    conn_start_shutdown(c);
  maybe_drain(c);
}

static void conn_flush(struct net_conn *c) {
  if (c->inflight || (c->flags & (F_CLOSED | F_FAILED)))
    return;
  while (c->out_head) {
    uv_buf_t iov[IOV_BATCH];
    unsigned n = 0;
    size_t batch = 0;
    for (struct net_seg *g = c->out_head; g && n < IOV_BATCH; g = g->next) {
      iov[n++] = uv_buf_init((char *)g->p, (unsigned)g->len);
      batch += g->len;
    }
    c->srv->write_calls++;
    int r = uv_try_write((uv_stream_t *)&c->tcp, iov, n);
    if (r == UV_EAGAIN || r == UV_ENOSYS)
      r = 0;
    if (r < 0) {
      conn_fail(c);
      return;
    }
    size_t done = (size_t)r;
    backlog_sub(c, done);
    while (done > 0) {
      struct net_seg *g = c->out_head;
      if (done >= g->len) {
        done -= g->len;
        c->out_head = g->next;
        if (c->out_head == NULL)
          c->out_tail = NULL;
        seg_free(c->srv, g);
      } else {
        g->p += done;
        g->len -= done;
        done = 0;
      }
    }
    if (c->out_head == NULL)
      break;
    if ((size_t)r == batch)
      continue; /* a full batch went out and more is queued: try again */
    /* The kernel is full: hand the rest (one batch) to uv_write, at most one in flight. */
    n = 0;
    struct net_seg *last = NULL;
    for (struct net_seg *g = c->out_head; g && n < IOV_BATCH; g = g->next) {
      iov[n++] = uv_buf_init((char *)g->p, (unsigned)g->len);
      last = g;
    }
    struct net_wreq *w = xmalloc(sizeof *w);
    w->c = c;
    c->inflight = c->out_head;
    c->out_head = last->next;
    if (c->out_head == NULL)
      c->out_tail = NULL;
    last->next = NULL;
    int wr = uv_write(&w->req, (uv_stream_t *)&c->tcp, iov, n, on_write);
    if (wr < 0) {
      free(w);
      /* put the segments back so they are freed with the connection */
      last->next = c->out_head;
      if (c->out_head == NULL)
        c->out_tail = last;
      c->out_head = c->inflight;
      c->inflight = NULL;
      conn_fail(c);
    }
    return;
  }
  if ((c->flags & F_CLOSING) && !(c->flags & F_SHUTDOWN))
    conn_start_shutdown(c);
  maybe_drain(c);
}

/* ---- reading -------------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  struct net_conn *c = h->data;
  struct net_server *s = c->srv;
  if (s->rbuf == NULL)
    s->rbuf = xmalloc(NET_READ_BUF_SIZE);
  *buf = uv_buf_init((char *)s->rbuf, NET_READ_BUF_SIZE);
}

static void read_stop(struct net_conn *c) {
  if (!(c->flags & F_READ_STOP)) {
    c->flags |= F_READ_STOP;
    uv_read_stop((uv_stream_t *)&c->tcp);
  }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void read_start(struct net_conn *c) {
  if ((c->flags & F_READ_STOP) && !(c->flags & (F_CLOSED | F_USER_STOP)) &&
      !((c->flags & F_EOF) && !(c->flags & F_LINGER))) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
      c->flags &= ~F_READ_STOP;
  }
}

static void keep_leftover(struct net_conn *c, const uint8_t *p, size_t n) {
  if (c->in.max == 0)
    buf_init(&c->in, c->max_in + NET_READ_BUF_SIZE);
  if (buf_append(&c->in, p, n) != 0) {
    /* Cannot happen: reading stops at max_in, one read adds at most 64 KiB. */
    log_error("net: leftover buffer overflow");
    conn_fail(c);
    return;
  }
  if (c->in.len >= c->max_in)
    read_stop(c);
}

/* Presents (leftover + new) bytes to the consumer. */
static void deliver(struct net_conn *c, uint8_t *p, size_t n) {
  if (c->in.len > 0) {
    keep_leftover(c, p, n);
    if (c->flags & F_CLOSED)
      return;
    size_t used = c->cbs->on_read(c, c->in.data, c->in.len);
    if (c->flags & F_CLOSED)
      return;
    buf_consume(&c->in, used);
  } else {
    size_t used = c->cbs->on_read(c, p, n);
    if (c->flags & F_CLOSED)
      return;
    if (used < n)
      keep_leftover(c, p + used, n - used);
  }
  if (c->in.len == 0 && c->in.data) {
    buf_free(&c->in);
  }
  if (c->in.len < c->max_in && !(c->flags & F_USER_STOP))
    read_start(c);
}

static void redeliver(struct net_conn *c) {
  if ((c->flags & (F_PAUSED | F_CLOSING | F_CLOSED)) || c->in.len == 0) {
    if (!(c->flags & (F_PAUSED | F_CLOSING)))
      read_start(c);
    return;
  }
  size_t used = c->cbs->on_read(c, c->in.data, c->in.len);
  if (c->flags & F_CLOSED)
    return;
  buf_consume(&c->in, used);
  if (c->in.len == 0)
    buf_free(&c->in);
  if (c->in.len < c->max_in && !(c->flags & F_USER_STOP))
    read_start(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  struct net_conn *c = st->data;
  if (c->flags & F_CLOSED)
    return;
  if (nread == 0)
    return;
  if (nread < 0) {
    read_stop(c);
    if (c->flags & F_LINGER) {
      conn_uv_close(c);
      return;
    }
    if (!(c->flags & F_EOF)) {
      c->flags |= F_EOF;
      if (!(c->flags & F_CLOSING) && c->cbs && c->cbs->on_eof)
        c->cbs->on_eof(c, nread == UV_EOF ? EG_ECLOSED : EG_EIO);
    }
    if (nread != UV_EOF && !(c->flags & F_CLOSED))
      conn_uv_close(c);
    return;
  }
  if (c->flags & (F_LINGER | F_CLOSING))
    return; /* discard */
  uint8_t *p = (uint8_t *)buf->base;
  if (c->flags & F_PAUSED) {
    keep_leftover(c, p, (size_t)nread);
    return;
  }
  deliver(c, p, (size_t)nread);
}

void net_conn_pause(struct net_conn *c) { c->flags |= F_PAUSED; }

void net_conn_resume(struct net_conn *c) {
  if (!(c->flags & F_PAUSED) || (c->flags & F_CLOSED))
    return;
  c->flags &= ~F_PAUSED;
  c->flags |= F_REDELIVER;
  mark_dirty(c);
}

void net_conn_read_stop(struct net_conn *c) {
  c->flags |= F_USER_STOP;
  read_stop(c);
}

void net_conn_read_start(struct net_conn *c) {
  c->flags &= ~F_USER_STOP;
  if (c->in.len < c->max_in)
    read_start(c);
}

void net_conn_set_max_in(struct net_conn *c, size_t max) {
  c->max_in = max ? max : MAX_IN_DEFAULT;
  if (c->in.max)
    c->in.max = c->max_in + NET_READ_BUF_SIZE;
}

/* ---- closing ------------------------------------------------------------------------------- */

static void on_close_cb(uv_handle_t *h) {
  struct net_conn *c = h->data;
  struct net_server *s = c->srv;
  if (c->cbs && c->cbs->on_close)
    c->cbs->on_close(c);
  if (c->flags & F_DIRTY) {
    struct net_conn **pp = &s->dirty;
    while (*pp && *pp != c)
      pp = &(*pp)->dirty_next;
    if (*pp)
      *pp = c->dirty_next;
  }
  seg_list_free(s, c->out_head);
  seg_list_free(s, c->inflight);
  buf_free(&c->in);
  if (c->all_prev)
    c->all_prev->all_next = c->all_next;
  else
    s->all = c->all_next;
  if (c->all_next)
    c->all_next->all_prev = c->all_prev;
  s->nconns--;
  if (c->addr && --c->addr->n == 0) {
    hmap_del(&s->per_addr, c->addr->key);
    free(c->addr);
  }
  free(c);
  server_maybe_finish(s);
}

static void conn_uv_close(struct net_conn *c) {
  if (c->flags & F_CLOSED)
    return;
  c->flags |= F_CLOSED | F_CLOSING;
  tq_unlink(c);
  uv_close((uv_handle_t *)&c->tcp, on_close_cb);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  struct net_conn *c = req->data;
  free(req);
  if (c->flags & F_CLOSED)
    return;
  if (status < 0 || (c->flags & F_EOF)) {
    conn_uv_close(c);
    return;
  }
  c->flags |= F_LINGER;
  conn_timeout_set(c, LINGER_CLASS);
  c->flags &= ~F_USER_STOP;
  read_start(c);
}

static void conn_start_shutdown(struct net_conn *c) {
  c->flags |= F_SHUTDOWN;
  if (c->srv->tq[LINGER_CLASS].ms == 0)
    c->srv->tq[LINGER_CLASS].ms = LINGER_MS;
  uv_shutdown_t *req = xmalloc(sizeof *req);
  req->data = c;
  if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
    free(req);
    conn_uv_close(c);
  }
}

void net_conn_close(struct net_conn *c) {
  if (c->flags & (F_CLOSING | F_CLOSED))
    return;
  c->flags |= F_CLOSING;
  tq_unlink(c);
  buf_free(&c->in);
  if (c->flags & F_FAILED) {
    conn_uv_close(c);
    return;
  }
  /* Flush from the loop (never re-entering the consumer from here). */
  if (c->backlog == 0 && !c->inflight)
    conn_start_shutdown(c);
  else
    mark_dirty(c);
}

void net_conn_abort(struct net_conn *c) {
  c->flags |= F_CLOSING;
  conn_uv_close(c);
}

bool net_conn_closing(const struct net_conn *c) {
  return (c->flags & (F_CLOSING | F_CLOSED | F_FAILED)) != 0;
}

int net_conn_peer(const struct net_conn *c, char *out, size_t outlen) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
    return EG_EIO;
  char ip[64];
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    uv_ip6_name(a, ip, sizeof ip);
    snprintf(out, outlen, "[%s]:%d", ip, ntohs(a->sin6_port));
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, ip, sizeof ip);
    snprintf(out, outlen, "%s:%d", ip, ntohs(a->sin_port));
  }
  return 0;
}

uv_loop_t *net_conn_loop(const struct net_conn *c) { return c->srv->loop; }

void net_conn_set_cbs(struct net_conn *c, const struct net_conn_cbs *cbs) { c->cbs = cbs; }

/* ---- server ------------------------------------------------------------------------------- */

/* Counts c against its peer address; false when the address is at its cap (or unknown). */
static bool addr_admit(struct net_server *s, struct net_conn *c) {
  struct sockaddr_storage peer;
  int len = sizeof peer;
  char key[48];
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &len) != 0)
    return false;
  if (peer.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&peer, key, sizeof key);
  else
    uv_ip4_name((struct sockaddr_in *)&peer, key, sizeof key);
  struct net_addr_count *a = hmap_get(&s->per_addr, key);
  if (a && a->n >= s->opts.max_per_addr)
    return false;
  if (!a) {
    a = xcalloc(1, sizeof *a);
    snprintf(a->key, sizeof a->key, "%s", key);
    hmap_put(&s->per_addr, a->key, a);
  }
  a->n++;
  c->addr = a;
  return true;
}

static void on_connection(uv_stream_t *ls, int status) {
  struct net_server *s = ls->data;
  if (status < 0) {
    log_warn("net: accept failed: %s", uv_strerror(status));
    return;
  }
  struct net_conn *c = xcalloc(1, s->opts.conn_size);
  c->srv = s;
  c->tcls = NET_TIMEOUT_NONE;
  c->max_in = MAX_IN_DEFAULT;
  uv_tcp_init(s->loop, &c->tcp);
  c->tcp.data = c;
  c->all_next = s->all;
  if (s->all)
    s->all->all_prev = c;
  s->all = c;
  s->nconns++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    c->flags |= F_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, on_close_cb);
    return;
  }
  if (s->opts.max_per_addr > 0 && !addr_admit(s, c)) {
    s->refused_per_addr++;
    c->flags |= F_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, on_close_cb);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (s->opts.on_accept(s, c, s->opts.ud) != 0 || c->cbs == NULL) {
    net_conn_abort(c);
    return;
  }
  if (c->flags & F_CLOSED)
    return;
  c->flags |= F_READ_STOP;
  read_start(c);
}

static void free_server_cb(uv_handle_t *h) { free(h->data); }

int net_server_start(uv_loop_t *loop, const struct net_server_opts *o,
                     struct net_server **out) {
  if (o->conn_size < sizeof(struct net_conn) || o->on_accept == NULL)
    return EG_EINVAL;
  struct net_server *s = xcalloc(1, sizeof *s);
  s->loop = loop;
  s->opts = *o;
  const char *host = o->host ? o->host : "0.0.0.0";
  struct sockaddr_storage addr;
  int rc;
  if (strchr(host, ':'))
    rc = uv_ip6_addr(host, o->port, (struct sockaddr_in6 *)&addr);
  else
    rc = uv_ip4_addr(host, o->port, (struct sockaddr_in *)&addr);
  if (rc != 0) {
    free(s);
    return EG_EINVAL;
  }
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, o->backlog > 0 ? o->backlog : 511,
                   on_connection);
  if (rc != 0) {
    log_error("net: cannot listen on %s:%d: %s", host, o->port, uv_strerror(rc));
    uv_close((uv_handle_t *)&s->listener, free_server_cb);
    return EG_EIO;
  }
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen);
  s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&bound)->sin_port);
  uv_check_init(loop, &s->check);
  s->check.data = s;
  uv_prepare_init(loop, &s->prepare);
  s->prepare.data = s;
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  s->tq[LINGER_CLASS].ms = LINGER_MS;
  *out = s;
  return 0;
}

int net_server_port(const struct net_server *s) { return s->port; }
void *net_server_ud(const struct net_server *s) { return s->opts.ud; }
uv_loop_t *net_server_loop(const struct net_server *s) { return s->loop; }
size_t net_server_conn_count(const struct net_server *s) { return s->nconns; }
uint64_t net_server_write_calls(const struct net_server *s) { return s->write_calls; }
uint64_t net_server_refused_per_addr(const struct net_server *s) { return s->refused_per_addr; }

void net_server_foreach(struct net_server *s, void (*fn)(struct net_conn *c, void *ud),
                        void *ud) {
  struct net_conn *c = s->all;
  while (c) {
    struct net_conn *next = c->all_next; /* fn may close c (freed later, in the loop) */
    if (!(c->flags & F_CLOSED))
      fn(c, ud);
    c = next;
  }
}

static void on_handle_closed(uv_handle_t *h) {
  struct net_server *s = h->data;
  if (--s->handles_to_close > 0)
    return;
  void (*cb)(void *) = s->on_closed;
  void *ud = s->closed_ud;
  seg_list_free(s, NULL);
  while (s->free_segs) {
    struct net_seg *g = s->free_segs;
    s->free_segs = g->next;
    free(g);
  }
  free(s->rbuf);
  hmap_free(&s->per_addr);
  free(s);
  if (cb)
    cb(ud);
}

static void on_listener_closed(uv_handle_t *h) {
  struct net_server *s = h->data;
  s->listener_closed = true;
  server_maybe_finish(s);
}

static void server_maybe_finish(struct net_server *s) {
  if (!s->stopping || !s->listener_closed || s->nconns > 0 || s->handles_to_close > 0)
    return;
  s->handles_to_close = 3;
  uv_close((uv_handle_t *)&s->check, on_handle_closed);
  uv_close((uv_handle_t *)&s->prepare, on_handle_closed);
  uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}

void net_server_stop(struct net_server *s, void (*on_closed)(void *ud), void *ud) {
  if (s->stopping)
    return;
  s->stopping = true;
  s->on_closed = on_closed;
  s->closed_ud = ud;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}

/* ---- process, jobs ------------------------------------------------------------------------ */

long net_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return -1;
  if (rl.rlim_cur < rl.rlim_max) {
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      return (long)old;
  }
  return (long)rl.rlim_cur;
}

struct net_job {
  uv_work_t req;
  void (*work)(void *);
  void (*done)(void *, int);
  void *ud;
};

static void job_work(uv_work_t *req) {
  struct net_job *j = EG_CONTAINER_OF(req, struct net_job, req);
  j->work(j->ud);
}

static void job_done(uv_work_t *req, int status) {
  struct net_job *j = EG_CONTAINER_OF(req, struct net_job, req);
  void (*done)(void *, int) = j->done;
  void *ud = j->ud;
  free(j);
  if (done)
    done(ud, status == UV_ECANCELED ? EG_ECANCELED : 0);
}

int net_job_submit(uv_loop_t *loop, void (*work)(void *ud), void (*done)(void *ud, int status),
                   void *ud) {
  struct net_job *j = xmalloc(sizeof *j);
  j->work = work;
  j->done = done;
  j->ud = ud;
  if (uv_queue_work(loop, &j->req, job_work, job_done) != 0) {
    free(j);
    return EG_EIO;
  }
  return 0;
}
