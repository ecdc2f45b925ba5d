/*
 * loadgen: a cheap load generator for Engine.IO v4 / Socket.IO v5 over WebSocket, and for
 * raw TCP echo (the kernel floor).
 *
 *   loadgen --port P [--host 127.0.0.1] [--proto sio|tcp] [--mode echo|idle]
 *           [--conns N] [--inflight K] [--size S] [--warmup W] [--duration T]
 *           [--hold H] [--settle S] [--procs P] [--server-pid PID]
 *           [--event echo] [--no-ack] [--path /socket.io/] [--header "K: V"]...
 *           [--auth '{"token":"..."}'] [--concurrency C] [--label NAME] [--no-spread]
 *
 * Modes
 * - echo: N connections, each keeps K requests in flight. In sio mode a request is
 *   `42<id>["<event>","xxx..."]` (S bytes of data) and its round trip ends at the ack
 *   `43<id>[...]` (or, with --no-ack, at the next `<event>` event the server emits, in
 *   order). In tcp mode a request is S raw bytes and its round trip ends when S bytes have
 *   come back (TCP keeps order, so the oldest request completes). After a warm-up of W
 *   seconds, a window of T seconds is measured.
 * - idle: N connections are opened and connected (Socket.IO CONNECT acknowledged), then
 *   held for H seconds while the load generator answers the server's pings. Connections
 *   lost during the hold are counted as errors.
 *
 * What it reports (one human block, then one `RESULT key=value ...` line for scripts):
 * round trips per second, latency p50/p99/p99.9 (a fixed log-linear histogram, no
 * per-sample allocation), and with --server-pid: the server's CPU microseconds per round
 * trip (utime+stime from /proc/PID/stat over the window) and in idle mode its RSS per
 * connection ((VmRSS with the connections held, after settling) - (VmRSS before)) / N.
 * The load generator's own CPU per round trip is reported too, and in both modes the connect
 * latency p50/p99 (from a connection's first attempt to its Socket.IO CONNECT ack).
 *
 * --concurrency C bounds the handshakes in progress at once, over all workers (default
 * 512): more than the server's listen backlog only makes the kernel drop SYNs, which the
 * client retries after a second or more.
 *
 * Structure: the parent forks P worker processes (each at most ~5,000 connections, the
 * open-file limit being 20,000 per process here), each with one epoll loop. The parent
 * drives the phases over a control pipe per worker (G = start traffic, R = reset counters,
 * window start, S = stop and report, Q = quit) and reads each worker's ready message and
 * report over a result pipe, so the server's CPU window and the workers' counting window
 * coincide. Workers exit when the parent goes away (control pipe EOF).
 *
 * Cheapness: one recv() per readable event into a per-worker buffer, incremental parsing
 * that keeps only a 48-byte prefix of each message (bench/loadgen_wire.h), one send() per
 * request built on the stack, one clock read per epoll batch.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "loadgen_wire.h"

#define MAX_INFLIGHT 64
#define MAX_HEADERS 8
#define RBUF_SIZE (256 * 1024)
#define MAX_PROCS 64
#define ERRLEN 160

/* ---- options ------------------------------------------------------------------------- */

enum proto { PROTO_SIO, PROTO_TCP };
enum mode { MODE_ECHO, MODE_IDLE };

struct opts {
  const char *host;
  int port;
  int proto;
  int mode;
  long conns;
  int inflight;
  int size;
  double warmup, duration, hold, settle, connect_timeout;
  int procs;
  long server_pid;
  const char *event;
  bool ack;
  const char *path;
  const char *headers[MAX_HEADERS];
  int nheaders;
  const char *auth;
  int concurrency;
  const char *label;
  bool spread;
};

static struct opts O = {
  .host = "127.0.0.1",
  .port = 0,
  .proto = PROTO_SIO,
  .mode = MODE_ECHO,
  .conns = 100,
  .inflight = 1,
  .size = 32,
  .warmup = 2,
  .duration = 10,
  .hold = 5,
  .settle = 2,
  .connect_timeout = 60,
  .procs = 0,
  .server_pid = 0,
  .event = "echo",
  .ack = true,
  .path = "/socket.io/",
  .concurrency = 512,
  .label = "",
  .spread = true,
};

/* ---- latency histogram: log-linear, 64 sub-buckets per power of two, in ns ------------ */

#define H_SUB_BITS 6
#define H_SUB (1u << H_SUB_BITS)
#define H_BUCKETS (H_SUB * 2 + H_SUB * 40)

static unsigned hist_index(uint64_t v) {
  if (v < 2 * H_SUB)
    return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - H_SUB_BITS;
  unsigned idx = 2 * H_SUB + (msb - H_SUB_BITS - 1) * H_SUB + (unsigned)((v >> shift) - H_SUB);
  return idx < H_BUCKETS ? idx : H_BUCKETS - 1;
}

/* The middle of bucket idx, in ns. */
static double hist_value(unsigned idx) {
  if (idx < 2 * H_SUB)
    return idx;
  unsigned k = idx - 2 * H_SUB;
  unsigned msb = k / H_SUB + H_SUB_BITS + 1;
  unsigned shift = msb - H_SUB_BITS;
  uint64_t lo = ((uint64_t)(H_SUB + k % H_SUB)) << shift;
  return (double)lo + (double)(1ull << shift) / 2.0;
}

static double hist_pct(const uint64_t *h, uint64_t total, double pct) {
  if (total == 0)
    return 0;
  uint64_t want = (uint64_t)((double)total * pct / 100.0);
  if (want >= total)
    want = total - 1;
  uint64_t acc = 0;
  for (unsigned i = 0; i < H_BUCKETS; i++) {
    acc += h[i];
    if (acc > want)
      return hist_value(i);
  }
  return hist_value(H_BUCKETS - 1);
}

/* ---- worker <-> parent messages ------------------------------------------------------ */

struct ready_msg {
  uint64_t ready;
  uint64_t failed;
  char err[ERRLEN];
};

struct report_msg {
  uint64_t rt;          /* round trips completed in the window */
  uint64_t lat_sum_ns;  /* sum of their latencies */
  uint64_t errors;      /* connections lost in the window */
  uint64_t open;        /* connections open at the end */
  uint64_t cpu_us;      /* the worker's own CPU in the window */
  uint64_t pings;       /* server pings answered in the window */
  uint64_t unexpected;  /* packets we did not expect (counted, ignored) */
  char err[ERRLEN];
  uint64_t hist[H_BUCKETS];
  uint64_t connects;         /* connections that became ready (whole run, not the window) */
  uint64_t chist[H_BUCKETS]; /* their connect latency: attempt start -> ready (ns) */
};

/* ---- worker -------------------------------------------------------------------------- */

enum cstate { C_CONNECTING, C_HTTP, C_EIO_OPEN, C_SIO_CONNECT, C_READY, C_CLOSED };

struct conn {
  int fd;
  uint8_t state;
  uint8_t out_armed;  /* EPOLLOUT registered for pending output */
  uint8_t pfx_len;    /* bytes kept of the current data message */
  uint8_t ctl_len;    /* bytes of the current control frame */
  uint8_t msg_op;     /* opcode of the current data message */
  uint8_t head;       /* FIFO modes: oldest request's slot */
  uint8_t inflight;   /* requests in flight */
  uint8_t mask[4];    /* this connection's masking key */
  uint64_t busy;      /* ack mode: bitmask of slots in flight */
  uint64_t rx;        /* tcp mode: bytes received not yet matched to a request */
  uint64_t t_start;   /* when the connection attempt began (ns) */
  struct lgw_ws ws;
  struct lgw_http *http; /* during the handshake only */
  uint8_t *ctl;          /* control frame payload (lazily, 125 bytes) */
  uint8_t *out;          /* pending output (lazily) */
  uint32_t out_len, out_off;
  uint8_t pfx[LGW_PREFIX];
};

struct worker {
  int id;
  long nconns;
  int ctl_fd, res_fd;
  int ep;
  struct sockaddr_in addr;
  struct sockaddr_in src; /* source address to bind, when spreading (sin_family 0: none) */
  struct conn *conns;
  uint64_t *ts; /* nconns * inflight send times */
  long opened, pending, ready, failed, open_now;
  long concurrency; /* this worker's share of --concurrency */
  bool ready_sent, running, counting;
  uint64_t now;
  uint8_t *rbuf;
  /* request template: "42" | id digits | body */
  uint8_t body[4096];
  size_t body_len;
  char evprefix[128];
  size_t evprefix_len;
  uint8_t connect_pkt[2048];
  size_t connect_len;
  char http_req[4096];
  size_t http_len;
  struct report_msg rep;
  uint64_t connects, chist[H_BUCKETS]; /* kept across the 'R' reset */
  struct rusage ru0;
  char first_err[ERRLEN];
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void w_note_err(struct worker *w, const char *fmt, ...) EG_PRINTF(2, 3);
static void w_note_err(struct worker *w, const char *fmt, ...) {
  if (w->first_err[0])
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->first_err, sizeof w->first_err, fmt, ap);
  va_end(ap);
}

static int write_full(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t k = write(fd, b, n);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    b += k;
    n -= (size_t)k;
  }
  return 0;
}

static int read_full(int fd, void *p, size_t n) {
  uint8_t *b = p;
  while (n > 0) {
    ssize_t k = read(fd, b, n);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (k == 0)
      return -1;
    b += k;
    n -= (size_t)k;
  }
  return 0;
}

static void conn_close(struct worker *w, struct conn *c, bool error) {
  if (c->state == C_CLOSED)
    return;
  bool was_ready = c->state == C_READY;
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  if (was_ready) {
    w->open_now--;
    if (error && w->counting)
      w->rep.errors++;
  } else {
    w->pending--;
    w->failed++;
  }
  c->state = C_CLOSED;
  free(c->http);
  c->http = NULL;
  free(c->ctl);
  c->ctl = NULL;
  free(c->out);
  c->out = NULL;
  c->out_len = c->out_off = 0;
}

static void conn_arm(struct worker *w, struct conn *c, bool out) {
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
  if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
    c->out_armed = out;
}

/* Sends bytes, queueing what the socket does not take now. */
static void conn_send(struct worker *w, struct conn *c, const uint8_t *p, size_t n) {
  if (c->state == C_CLOSED)
    return;
  if (c->out_len == 0) {
    ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
    if (k == (ssize_t)n)
      return;
    if (k < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        w_note_err(w, "send: %s", strerror(errno));
        conn_close(w, c, true);
        return;
      }
      k = 0;
    }
    p += k;
    n -= (size_t)k;
  }
  /* Queue the rest. */
  size_t have = c->out_len - c->out_off;
  uint8_t *nb = xmalloc(have + n);
  if (have)
    memcpy(nb, c->out + c->out_off, have);
  memcpy(nb + have, p, n);
  free(c->out);
  c->out = nb;
  c->out_off = 0;
  c->out_len = (uint32_t)(have + n);
  if (!c->out_armed)
    conn_arm(w, c, true);
}

static void conn_flush(struct worker *w, struct conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      w_note_err(w, "send: %s", strerror(errno));
      conn_close(w, c, true);
      return;
    }
    c->out_off += (uint32_t)k;
  }
  free(c->out);
  c->out = NULL;
  c->out_len = c->out_off = 0;
  conn_arm(w, c, false);
}

/* Writes a masked client frame (header + mask + payload) into out; returns its length. */
static size_t ws_frame(uint8_t *out, uint8_t opcode, const uint8_t mask[4], const uint8_t *p,
                       size_t n) {
  size_t h = 0;
  out[h++] = (uint8_t)(0x80 | opcode);
  if (n < 126) {
    out[h++] = (uint8_t)(0x80 | n);
  } else if (n < 65536) {
    out[h++] = 0x80 | 126;
    out[h++] = (uint8_t)(n >> 8);
    out[h++] = (uint8_t)n;
  } else {
    out[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      out[h++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  memcpy(out + h, mask, 4);
  h += 4;
  for (size_t i = 0; i < n; i++)
    out[h + i] = p[i] ^ mask[i & 3];
  return h + n;
}

static void send_text(struct worker *w, struct conn *c, const uint8_t *p, size_t n) {
  uint8_t stack[4096 + 14];
  uint8_t *out = n + 14 <= sizeof stack ? stack : xmalloc(n + 14);
  size_t len = ws_frame(out, LGW_OP_TEXT, c->mask, p, n);
  conn_send(w, c, out, len);
  if (out != stack)
    free(out);
}

/* Builds request number `slot` into out (unmasked payload for sio, raw bytes for tcp). */
static size_t build_request(struct worker *w, unsigned slot, uint8_t *out) {
  if (O.proto == PROTO_TCP) {
    memset(out, 'x', (size_t)O.size);
    return (size_t)O.size;
  }
  size_t n = 0;
  out[n++] = '4';
  out[n++] = '2';
  if (O.ack) { /* the ack id, in decimal (slot < 64) */
    if (slot >= 10)
      out[n++] = (uint8_t)('0' + slot / 10);
    out[n++] = (uint8_t)('0' + slot % 10);
  }
  memcpy(out + n, w->body, w->body_len);
  return n + w->body_len;
}

/* Sends `count` new requests on c in one write. */
static void send_requests(struct worker *w, struct conn *c, unsigned count) {
  uint8_t out[MAX_INFLIGHT * 160];
  uint8_t *big = NULL;
  size_t per = (size_t)O.size + 64 + w->body_len;
  uint8_t *dst = per * count <= sizeof out ? out : (big = xmalloc(per * count));
  size_t len = 0;
  uint64_t *ts = w->ts + (size_t)(c - w->conns) * (size_t)O.inflight;
  for (unsigned i = 0; i < count; i++) {
    unsigned slot;
    if (O.proto == PROTO_SIO && O.ack) {
      uint64_t freeb = ~c->busy & (O.inflight == 64 ? ~0ull : ((1ull << O.inflight) - 1));
      if (freeb == 0)
        break;
      slot = (unsigned)__builtin_ctzll(freeb);
      c->busy |= 1ull << slot;
    } else {
      if (c->inflight >= O.inflight)
        break;
      slot = (c->head + c->inflight) % (unsigned)O.inflight;
    }
    c->inflight++;
    ts[slot] = w->now;
    if (O.proto == PROTO_TCP) {
      len += build_request(w, slot, dst + len);
    } else {
      uint8_t payload[4096 + 32];
      size_t pn = build_request(w, slot, payload);
      len += ws_frame(dst + len, LGW_OP_TEXT, c->mask, payload, pn);
    }
  }
  if (len)
    conn_send(w, c, dst, len);
  free(big);
}

static void complete(struct worker *w, struct conn *c, unsigned slot) {
  uint64_t *ts = w->ts + (size_t)(c - w->conns) * (size_t)O.inflight;
  if (w->counting) {
    uint64_t lat = w->now > ts[slot] ? w->now - ts[slot] : 0;
    w->rep.rt++;
    w->rep.lat_sum_ns += lat;
    w->rep.hist[hist_index(lat)]++;
  }
  c->inflight--;
  if (w->running)
    send_requests(w, c, 1);
}

static void complete_fifo(struct worker *w, struct conn *c) {
  if (c->inflight == 0) {
    if (w->counting)
      w->rep.unexpected++;
    return;
  }
  unsigned slot = c->head;
  c->head = (uint8_t)((c->head + 1) % (unsigned)O.inflight);
  complete(w, c, slot);
}

static void conn_became_ready(struct worker *w, struct conn *c) {
  c->state = C_READY;
  w->connects++;
  w->chist[hist_index(w->now - c->t_start)]++;
  w->pending--;
  w->ready++;
  w->open_now++;
  free(c->http);
  c->http = NULL;
  if (w->running)
    send_requests(w, c, (unsigned)O.inflight);
}

/* One complete Engine.IO text message (its first pfx_len bytes in c->pfx). */
static void on_message(struct worker *w, struct conn *c) {
  struct lgw_pkt k = lgw_classify(c->pfx, c->pfx_len);
  switch (k.kind) {
  case LGW_EIO_PING:
    send_text(w, c, (const uint8_t *)"3", 1);
    if (w->counting)
      w->rep.pings++;
    return;
  case LGW_EIO_OPEN:
    if (c->state == C_EIO_OPEN) {
      c->state = C_SIO_CONNECT;
      send_text(w, c, w->connect_pkt, w->connect_len);
    }
    return;
  case LGW_SIO_CONNECT:
    if (c->state == C_SIO_CONNECT)
      conn_became_ready(w, c);
    return;
  case LGW_SIO_ACK:
    if (c->state == C_READY && O.ack && k.ack_id >= 0 && k.ack_id < O.inflight &&
        (c->busy & (1ull << k.ack_id))) {
      c->busy &= ~(1ull << k.ack_id);
      complete(w, c, (unsigned)k.ack_id);
      return;
    }
    break;
  case LGW_SIO_EVENT:
    if (c->state == C_READY && !O.ack && c->pfx_len - k.body_off >= w->evprefix_len &&
        memcmp(c->pfx + k.body_off, w->evprefix, w->evprefix_len) == 0) {
      complete_fifo(w, c);
      return;
    }
    break;
  case LGW_SIO_CONNECT_ERROR:
    w_note_err(w, "CONNECT_ERROR %.*s", (int)(c->pfx_len - k.body_off), c->pfx + k.body_off);
    conn_close(w, c, true);
    return;
  case LGW_SIO_DISCONNECT:
  case LGW_EIO_CLOSE:
    w_note_err(w, "server closed the session (%.*s)", (int)c->pfx_len, c->pfx);
    conn_close(w, c, true);
    return;
  default:
    break;
  }
  if (w->counting)
    w->rep.unexpected++;
}

static void on_control(struct worker *w, struct conn *c, uint8_t op) {
  if (op == LGW_OP_PING) {
    uint8_t out[125 + 14];
    size_t n = ws_frame(out, LGW_OP_PONG, c->mask, c->ctl, c->ctl_len);
    conn_send(w, c, out, n);
  } else if (op == LGW_OP_CLOSE) {
    unsigned code = c->ctl_len >= 2 ? (unsigned)(c->ctl[0] << 8 | c->ctl[1]) : 0;
    w_note_err(w, "websocket close %u %.*s", code, c->ctl_len > 2 ? c->ctl_len - 2 : 0,
               (const char *)c->ctl + 2);
    conn_close(w, c, true);
  }
}

/* Feeds received WebSocket bytes through the frame parser. */
static void feed_ws(struct worker *w, struct conn *c, const uint8_t *b, size_t n) {
  while (n > 0 && c->state != C_CLOSED) {
    struct lgw_ws_ev ev = {0};
    size_t used;
    int rc = lgw_ws_feed(&c->ws, b, n, &used, &ev);
    b += used;
    n -= used;
    if (rc == EG_EAGAIN)
      return;
    if (rc < 0) {
      w_note_err(w, "websocket framing: %s", eg_strerror(rc));
      conn_close(w, c, true);
      return;
    }
    if (ev.opcode & 0x8) {
      if (ev.first) {
        c->ctl_len = 0;
        if (c->ctl == NULL)
          c->ctl = xmalloc(125);
      }
      memcpy(c->ctl + c->ctl_len, ev.data, ev.len);
      c->ctl_len = (uint8_t)(c->ctl_len + ev.len);
      if (ev.last)
        on_control(w, c, ev.opcode);
      continue;
    }
    if (ev.first && ev.opcode != LGW_OP_CONT) {
      c->msg_op = ev.opcode;
      c->pfx_len = 0;
    }
    if (c->pfx_len < LGW_PREFIX) {
      size_t take = EG_MIN(ev.len, (size_t)(LGW_PREFIX - c->pfx_len));
      memcpy(c->pfx + c->pfx_len, ev.data, take);
      c->pfx_len = (uint8_t)(c->pfx_len + take);
    }
    if (ev.last && ev.fin) {
      if (c->msg_op == LGW_OP_TEXT)
        on_message(w, c);
      else if (w->counting)
        w->rep.unexpected++; /* binary: not used by this benchmark */
    }
  }
}

static void on_readable(struct worker *w, struct conn *c) {
  ssize_t n = recv(c->fd, w->rbuf, RBUF_SIZE, 0);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return;
    if (n == 0)
      w_note_err(w, "server closed the connection");
    else
      w_note_err(w, "recv: %s", strerror(errno));
    conn_close(w, c, true);
    return;
  }
  const uint8_t *b = w->rbuf;
  size_t len = (size_t)n;
  if (O.proto == PROTO_TCP) {
    c->rx += len;
    while (c->rx >= (uint64_t)O.size && c->state == C_READY) {
      c->rx -= (uint64_t)O.size;
      complete_fifo(w, c);
    }
    return;
  }
  if (c->state == C_HTTP) {
    size_t used;
    int rc = lgw_http_feed(c->http, b, len, &used);
    if (rc == EG_EAGAIN)
      return;
    if (rc < 0 || c->http->status != 101) {
      if (rc < 0)
        w_note_err(w, "upgrade response: %s", eg_strerror(rc));
      else
        w_note_err(w, "upgrade refused: HTTP %d", c->http->status);
      conn_close(w, c, true);
      return;
    }
    c->state = C_EIO_OPEN;
    b += used;
    len -= used;
  }
  feed_ws(w, c, b, len);
}

static void on_connected(struct worker *w, struct conn *c) {
  int err = 0;
  socklen_t el = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
    w_note_err(w, "connect: %s", strerror(err ? err : errno));
    conn_close(w, c, true);
    return;
  }
  conn_arm(w, c, false);
  if (O.proto == PROTO_TCP) {
    conn_became_ready(w, c);
    return;
  }
  c->state = C_HTTP;
  c->http = xmalloc(sizeof *c->http);
  lgw_http_init(c->http, 16384);
  conn_send(w, c, (const uint8_t *)w->http_req, w->http_len);
}

static void open_one(struct worker *w) {
  struct conn *c = &w->conns[w->opened++];
  memset(c, 0, sizeof *c);
  c->t_start = now_ns(); /* not w->now: a burst of opens takes a while */
  rand_bytes(c->mask, sizeof c->mask);
  lgw_ws_init(&c->ws, 1u << 24);
  w->pending++;
  c->state = C_CONNECTING;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    w_note_err(w, "socket: %s", strerror(errno));
    conn_close(w, c, true);
    return;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (w->src.sin_family == AF_INET) {
    /* The port is chosen at connect() time, by the whole 4-tuple. */
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(c->fd, (struct sockaddr *)&w->src, sizeof w->src) < 0) {
      w_note_err(w, "bind: %s", strerror(errno));
      conn_close(w, c, true);
      return;
    }
  }
  int rc = connect(c->fd, (struct sockaddr *)&w->addr, sizeof w->addr);
  if (rc < 0 && errno != EINPROGRESS) {
    w_note_err(w, "connect: %s", strerror(errno));
    conn_close(w, c, true);
    return;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  c->out_armed = 1;
  if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
    w_note_err(w, "epoll_ctl: %s", strerror(errno));
    conn_close(w, c, true);
  }
}

static uint64_t rusage_us(const struct rusage *r) {
  return (uint64_t)r->ru_utime.tv_sec * 1000000u + (uint64_t)r->ru_utime.tv_usec +
         (uint64_t)r->ru_stime.tv_sec * 1000000u + (uint64_t)r->ru_stime.tv_usec;
}

static void check_timeouts(struct worker *w) {
  uint64_t limit = (uint64_t)(O.connect_timeout * 1e9);
  for (long i = 0; i < w->opened; i++) {
    struct conn *c = &w->conns[i];
    if (c->state < C_READY && w->now - c->t_start > limit) {
      w_note_err(w, "connection not ready after %.0f s (state %d)", O.connect_timeout,
                 c->state);
      conn_close(w, c, true);
    }
  }
}

/* Returns false when the worker should exit. */
static bool on_command(struct worker *w) {
  char cmd;
  ssize_t n = read(w->ctl_fd, &cmd, 1);
  if (n <= 0)
    return false;
  switch (cmd) {
  case 'G':
    w->running = true;
    for (long i = 0; i < w->opened; i++)
      if (w->conns[i].state == C_READY)
        send_requests(w, &w->conns[i], (unsigned)O.inflight);
    break;
  case 'R':
    memset(&w->rep, 0, sizeof w->rep);
    w->counting = true;
    getrusage(RUSAGE_SELF, &w->ru0);
    break;
  case 'S': {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    w->counting = false;
    w->running = false;
    w->rep.cpu_us = rusage_us(&ru) - rusage_us(&w->ru0);
    w->rep.open = (uint64_t)w->open_now;
    w->rep.connects = w->connects;
    memcpy(w->rep.chist, w->chist, sizeof w->rep.chist);
    memcpy(w->rep.err, w->first_err, sizeof w->rep.err);
    if (write_full(w->res_fd, &w->rep, sizeof w->rep) < 0)
      return false;
    break;
  }
  case 'Q':
  default:
    return false;
  }
  return true;
}

/* Closes every connection with a reset (SO_LINGER 0), so that tens of thousands of client
   ports do not sit in TIME_WAIT between runs. */
static void close_all(struct worker *w) {
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  for (long i = 0; i < w->opened; i++) {
    struct conn *c = &w->conns[i];
    if (c->state != C_CLOSED && c->fd >= 0) {
      setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(c->fd);
      c->fd = -1;
    }
  }
}

static int worker_main(struct worker *w) {
  w->ep = epoll_create1(EPOLL_CLOEXEC);
  w->conns = xcalloc((size_t)w->nconns, sizeof *w->conns);
  w->ts = xcalloc((size_t)w->nconns * (size_t)O.inflight, sizeof *w->ts);
  w->rbuf = xmalloc(RBUF_SIZE);
  struct epoll_event cev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(w->ep, EPOLL_CTL_ADD, w->ctl_fd, &cev);
  struct epoll_event evs[512];
  uint64_t last_check = 0;
  w->now = now_ns();
  for (;;) {
    while (w->opened < w->nconns && w->pending < w->concurrency)
      open_one(w);
    if (!w->ready_sent && w->opened == w->nconns && w->pending == 0) {
      struct ready_msg m = {.ready = (uint64_t)w->ready, .failed = (uint64_t)w->failed};
      memcpy(m.err, w->first_err, sizeof m.err);
      if (write_full(w->res_fd, &m, sizeof m) < 0)
        return 1;
      w->ready_sent = true;
    }
    int n = epoll_wait(w->ep, evs, (int)EG_ARRAY_LEN(evs), 100);
    if (n < 0 && errno != EINTR)
      return 1;
    w->now = now_ns();
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c == NULL) {
        if (!on_command(w)) {
          close_all(w);
          return 0;
        }
        continue;
      }
      if (c->state == C_CLOSED)
        continue;
      if (c->state == C_CONNECTING) {
        on_connected(w, c);
        continue;
      }
      if (evs[i].events & EPOLLOUT)
        conn_flush(w, c);
      if (c->state != C_CLOSED && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        on_readable(w, c);
    }
    if (!w->ready_sent && w->now - last_check > 100000000ull) {
      check_timeouts(w);
      last_check = w->now;
    }
  }
}

static void worker_prepare(struct worker *w) {
  memset(&w->addr, 0, sizeof w->addr);
  w->addr.sin_family = AF_INET;
  w->addr.sin_port = htons((uint16_t)O.port);
  inet_pton(AF_INET, O.host, &w->addr.sin_addr);
  /* On loopback, each worker connects from its own source address (127.0.0.2, .3, ...):
     with one source address, Linux's search for a free ephemeral port slows down sharply
     past ~14,000 connections to one server port (it scans one parity half of the range
     first), and the whole range holds only ~28,000. */
  if (O.spread && (ntohl(w->addr.sin_addr.s_addr) >> 24) == 127) {
    w->src.sin_family = AF_INET;
    w->src.sin_addr.s_addr = htonl(0x7F000002u + (uint32_t)(w->id % 250));
  }
  if (O.proto == PROTO_TCP)
    return;
  /* body: ["<event>","xxx..."] */
  int n = snprintf((char *)w->body, sizeof w->body, "[\"%s\",\"", O.event);
  memset(w->body + n, 'x', (size_t)O.size);
  n += O.size;
  w->body[n++] = '"';
  w->body[n++] = ']';
  w->body_len = (size_t)n;
  w->evprefix_len = (size_t)snprintf(w->evprefix, sizeof w->evprefix, "[\"%s\"", O.event);
  w->connect_len = (size_t)snprintf((char *)w->connect_pkt, sizeof w->connect_pkt, "40%s",
                                    O.auth ? O.auth : "");
  int h = snprintf(w->http_req, sizeof w->http_req,
                   "GET %s?EIO=4&transport=websocket HTTP/1.1\r\n"
                   "Host: %s:%d\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n",
                   O.path, O.host, O.port);
  for (int i = 0; i < O.nheaders; i++)
    h += snprintf(w->http_req + h, sizeof w->http_req - (size_t)h, "%s\r\n", O.headers[i]);
  h += snprintf(w->http_req + h, sizeof w->http_req - (size_t)h, "\r\n");
  w->http_len = (size_t)h;
}

/* ---- parent -------------------------------------------------------------------------- */

struct child {
  pid_t pid;
  int ctl, res;
  long conns;
  bool alive;
};

static struct child kids[MAX_PROCS];
static int nkids;

static void kill_kids(void) {
  for (int i = 0; i < nkids; i++)
    if (kids[i].pid > 0)
      kill(kids[i].pid, SIGKILL);
}

static void on_signal(int sig) {
  kill_kids();
  signal(sig, SIG_DFL);
  raise(sig);
}

/* utime+stime of a process in microseconds, or -1. */
static int64_t proc_cpu_us(long pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (p == NULL)
    return -1;
  /* Fields after ")": 3 state, 4 ppid, ... 14 utime, 15 stime. */
  unsigned long long ut = 0, st = 0;
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  long hz = sysconf(_SC_CLK_TCK);
  return (int64_t)((ut + st) * 1000000ull / (unsigned long long)hz);
}

/* VmRSS of a process in KiB, or -1. */
static int64_t proc_rss_kb(long pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  char line[256];
  int64_t kb = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtoll(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kb;
}

static void sleep_s(double s) {
  if (s <= 0)
    return;
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

static void broadcast(char cmd) {
  for (int i = 0; i < nkids; i++)
    if (kids[i].alive && write_full(kids[i].ctl, &cmd, 1) < 0)
      kids[i].alive = false;
}

/* Reads one fixed-size message from every live child, waiting at most timeout_s. */
static int gather(void *msgs, size_t size, double timeout_s) {
  uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
  int got = 0;
  bool done[MAX_PROCS] = {false};
  for (int i = 0; i < nkids; i++)
    if (!kids[i].alive)
      done[i] = true;
  for (;;) {
    int left = 0;
    struct pollfd pf[MAX_PROCS];
    int map[MAX_PROCS];
    for (int i = 0; i < nkids; i++)
      if (!done[i]) {
        pf[left].fd = kids[i].res;
        pf[left].events = POLLIN;
        map[left++] = i;
      }
    if (left == 0)
      return got;
    uint64_t t = now_ns();
    if (t >= deadline)
      return got;
    int rc = poll(pf, (nfds_t)left, (int)((deadline - t) / 1000000u) + 1);
    if (rc < 0 && errno != EINTR)
      return got;
    for (int j = 0; j < left && rc > 0; j++) {
      if (!pf[j].revents)
        continue;
      int i = map[j];
      done[i] = true;
      if (read_full(kids[i].res, (uint8_t *)msgs + (size_t)i * size, size) == 0)
        got++;
      else
        kids[i].alive = false;
    }
  }
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [--host 127.0.0.1] [--proto sio|tcp] [--mode echo|idle]\n"
          "  [--conns N] [--inflight K<=64] [--size BYTES] [--warmup S] [--duration S]\n"
          "  [--hold S] [--settle S] [--connect-timeout S] [--procs P] [--server-pid PID]\n"
          "  [--event NAME] [--no-ack] [--path /socket.io/] [--header 'K: V']...\n"
          "  [--auth JSON] [--concurrency C] [--label NAME] [--no-spread]\n");
  exit(2);
}

static void parse_args(int argc, char **argv) {
  enum {
    OPT_HOST = 1000, OPT_PORT, OPT_PROTO, OPT_MODE, OPT_CONNS, OPT_INFLIGHT, OPT_SIZE,
    OPT_WARMUP, OPT_DURATION, OPT_HOLD, OPT_SETTLE, OPT_CTIMEOUT, OPT_PROCS, OPT_PID,
    OPT_EVENT, OPT_NOACK, OPT_PATH, OPT_HEADER, OPT_AUTH, OPT_CONC, OPT_LABEL, OPT_HELP,
    OPT_NOSPREAD,
  };
  static const struct option lo[] = {
    {"host", 1, 0, OPT_HOST}, {"port", 1, 0, OPT_PORT}, {"proto", 1, 0, OPT_PROTO},
    {"mode", 1, 0, OPT_MODE}, {"conns", 1, 0, OPT_CONNS}, {"inflight", 1, 0, OPT_INFLIGHT},
    {"size", 1, 0, OPT_SIZE}, {"warmup", 1, 0, OPT_WARMUP}, {"duration", 1, 0, OPT_DURATION},
    {"hold", 1, 0, OPT_HOLD}, {"settle", 1, 0, OPT_SETTLE},
    {"connect-timeout", 1, 0, OPT_CTIMEOUT}, {"procs", 1, 0, OPT_PROCS},
    {"server-pid", 1, 0, OPT_PID}, {"event", 1, 0, OPT_EVENT}, {"no-ack", 0, 0, OPT_NOACK},
    {"path", 1, 0, OPT_PATH}, {"header", 1, 0, OPT_HEADER}, {"auth", 1, 0, OPT_AUTH},
    {"concurrency", 1, 0, OPT_CONC}, {"label", 1, 0, OPT_LABEL}, {"help", 0, 0, OPT_HELP},
    {"no-spread", 0, 0, OPT_NOSPREAD},
    {0, 0, 0, 0},
  };
  int o;
  while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (o) {
    case OPT_HOST: O.host = optarg; break;
    case OPT_PORT: O.port = atoi(optarg); break;
    case OPT_PROTO:
      if (strcmp(optarg, "sio") == 0)
        O.proto = PROTO_SIO;
      else if (strcmp(optarg, "tcp") == 0)
        O.proto = PROTO_TCP;
      else
        usage();
      break;
    case OPT_MODE:
      if (strcmp(optarg, "echo") == 0)
        O.mode = MODE_ECHO;
      else if (strcmp(optarg, "idle") == 0)
        O.mode = MODE_IDLE;
      else
        usage();
      break;
    case OPT_CONNS: O.conns = atol(optarg); break;
    case OPT_INFLIGHT: O.inflight = atoi(optarg); break;
    case OPT_SIZE: O.size = atoi(optarg); break;
    case OPT_WARMUP: O.warmup = atof(optarg); break;
    case OPT_DURATION: O.duration = atof(optarg); break;
    case OPT_HOLD: O.hold = atof(optarg); break;
    case OPT_SETTLE: O.settle = atof(optarg); break;
    case OPT_CTIMEOUT: O.connect_timeout = atof(optarg); break;
    case OPT_PROCS: O.procs = atoi(optarg); break;
    case OPT_PID: O.server_pid = atol(optarg); break;
    case OPT_EVENT: O.event = optarg; break;
    case OPT_NOACK: O.ack = false; break;
    case OPT_PATH: O.path = optarg; break;
    case OPT_HEADER:
      if (O.nheaders == MAX_HEADERS)
        usage();
      O.headers[O.nheaders++] = optarg;
      break;
    case OPT_AUTH: O.auth = optarg; break;
    case OPT_CONC: O.concurrency = atoi(optarg); break;
    case OPT_LABEL: O.label = optarg; break;
    case OPT_NOSPREAD: O.spread = false; break;
    default: usage();
    }
  }
  if (O.port <= 0 || O.port > 65535 || O.conns <= 0 || O.inflight < 1 ||
      O.inflight > MAX_INFLIGHT || O.size < 1 || O.size > 4000 || O.concurrency < 1 ||
      strlen(O.event) > 100 || (O.auth && strlen(O.auth) > 2000))
    usage();
  if (O.procs <= 0)
    O.procs = (int)((O.conns + 4999) / 5000);
  if (O.procs > MAX_PROCS)
    O.procs = MAX_PROCS;
  if (O.procs > O.conns)
    O.procs = (int)O.conns;
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  raise_nofile();
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  const char *proto_name = O.proto == PROTO_TCP ? "tcp" : "sio";
  const char *mode_name = O.mode == MODE_ECHO ? "echo" : "idle";

  int64_t rss0 = O.server_pid ? proc_rss_kb(O.server_pid) : -1;

  for (int i = 0; i < O.procs; i++) {
    int ctl[2], res[2];
    if (pipe2(ctl, O_CLOEXEC) < 0 || pipe2(res, O_CLOEXEC) < 0) {
      perror("pipe");
      kill_kids();
      return 1;
    }
    long share = O.conns / O.procs + (i < O.conns % O.procs ? 1 : 0);
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      kill_kids();
      return 1;
    }
    if (pid == 0) {
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      for (int j = 0; j < nkids; j++) {
        close(kids[j].ctl);
        close(kids[j].res);
      }
      close(ctl[1]);
      close(res[0]);
      static struct worker w;
      w.id = i;
      w.nconns = share;
      w.concurrency = EG_MAX(1, O.concurrency / O.procs);
      w.ctl_fd = ctl[0];
      w.res_fd = res[1];
      worker_prepare(&w);
      _exit(worker_main(&w));
    }
    close(ctl[0]);
    close(res[1]);
    kids[nkids++] = (struct child){pid, ctl[1], res[0], share, true};
  }

  /* Phase 1: every worker connects its share. */
  uint64_t t_conn0 = now_ns();
  struct ready_msg *rm = xcalloc((size_t)nkids, sizeof *rm);
  gather(rm, sizeof *rm, O.connect_timeout + 10);
  double connect_s = (double)(now_ns() - t_conn0) / 1e9;
  uint64_t ready = 0, failed = 0;
  const char *first_err = "";
  for (int i = 0; i < nkids; i++) {
    ready += rm[i].ready;
    failed += rm[i].failed;
    if (!first_err[0] && rm[i].err[0])
      first_err = rm[i].err;
  }
  failed = (uint64_t)O.conns - ready; /* includes workers that never reported */
  fprintf(stderr, "loadgen %s: %s/%s %" PRIu64 " of %ld connections ready in %.2f s%s%s\n",
          O.label, proto_name, mode_name, ready, O.conns, connect_s, first_err[0] ? ": " : "",
          first_err);

  /* Phase 2: the measured window. */
  int64_t rss1 = -1;
  if (O.mode == MODE_ECHO) {
    broadcast('G');
    sleep_s(O.warmup);
  } else {
    sleep_s(O.settle);
    rss1 = O.server_pid ? proc_rss_kb(O.server_pid) : -1;
  }
  int64_t cpu0 = O.server_pid ? proc_cpu_us(O.server_pid) : -1;
  uint64_t t0 = now_ns();
  broadcast('R');
  sleep_s(O.mode == MODE_ECHO ? O.duration : O.hold);
  broadcast('S');
  uint64_t t1 = now_ns();
  int64_t cpu1 = O.server_pid ? proc_cpu_us(O.server_pid) : -1;
  int64_t rss2 = O.server_pid ? proc_rss_kb(O.server_pid) : -1;

  struct report_msg *rep = xcalloc((size_t)nkids, sizeof *rep);
  int got = gather(rep, sizeof *rep, 10);
  broadcast('Q');
  for (int i = 0; i < nkids; i++) {
    close(kids[i].ctl);
    int st;
    waitpid(kids[i].pid, &st, 0);
    kids[i].pid = 0;
  }

  struct report_msg tot;
  memset(&tot, 0, sizeof tot);
  for (int i = 0; i < nkids; i++) {
    tot.rt += rep[i].rt;
    tot.lat_sum_ns += rep[i].lat_sum_ns;
    tot.errors += rep[i].errors;
    tot.open += rep[i].open;
    tot.cpu_us += rep[i].cpu_us;
    tot.pings += rep[i].pings;
    tot.unexpected += rep[i].unexpected;
    tot.connects += rep[i].connects;
    for (unsigned b = 0; b < H_BUCKETS; b++) {
      tot.hist[b] += rep[i].hist[b];
      tot.chist[b] += rep[i].chist[b];
    }
    if (!first_err[0] && rep[i].err[0])
      first_err = rep[i].err;
  }
  uint64_t lost_workers = (uint64_t)(nkids - got);
  double secs = (double)(t1 - t0) / 1e9;
  double rate = tot.rt / secs;
  double p50 = hist_pct(tot.hist, tot.rt, 50) / 1e3;
  double p99 = hist_pct(tot.hist, tot.rt, 99) / 1e3;
  double p999 = hist_pct(tot.hist, tot.rt, 99.9) / 1e3;
  double mean = tot.rt ? (double)tot.lat_sum_ns / (double)tot.rt / 1e3 : 0;
  double c50 = hist_pct(tot.chist, tot.connects, 50) / 1e6;
  double c99 = hist_pct(tot.chist, tot.connects, 99) / 1e6;
  double srv_cpu = (cpu0 >= 0 && cpu1 >= 0) ? (double)(cpu1 - cpu0) : -1;
  double srv_per_rt = (srv_cpu >= 0 && tot.rt) ? srv_cpu / (double)tot.rt : -1;
  double lg_per_rt = tot.rt ? (double)tot.cpu_us / (double)tot.rt : -1;
  double rss_per_conn = (rss0 >= 0 && rss1 >= 0 && ready) ? (double)(rss1 - rss0) * 1024.0 / (double)ready : -1;

  if (O.mode == MODE_ECHO) {
    printf("%s %s echo: %ld conns x %d in flight, %d B: %.0f round trips/s, latency p50 %.1f us "
           "p99 %.1f us p99.9 %.1f us mean %.1f us\n",
           O.label, proto_name, O.conns, O.inflight, O.size, rate, p50, p99, p999, mean);
    if (srv_per_rt >= 0)
      printf("  server CPU %.2f us per round trip (%.0f%% of a core); loadgen CPU %.2f us per "
             "round trip\n",
             srv_per_rt, srv_cpu / secs / 1e4, lg_per_rt);
  } else {
    printf("%s %s idle: %" PRIu64 " of %ld connections held %.0f s, %" PRIu64
           " lost, %" PRIu64 " open at the end, %" PRIu64 " pings answered\n",
           O.label, proto_name, ready, O.conns, secs, tot.errors, tot.open, tot.pings);
    if (rss_per_conn >= 0)
      printf("  server RSS %" PRId64 " KiB -> %" PRId64 " KiB: %.0f B per connection; server "
             "CPU while idle %.1f%% of a core\n",
             rss0, rss1, rss_per_conn, srv_cpu >= 0 ? srv_cpu / secs / 1e4 : -1.0);
  }
  printf(
      "  connect latency (attempt -> Socket.IO CONNECT acknowledged): p50 %.1f ms p99 %.1f ms "
      "over %" PRIu64 " connections\n",
      c50, c99, tot.connects);
  if (first_err[0])
    printf("  first error: %s\n", first_err);
  printf("RESULT label=%s proto=%s mode=%s conns=%ld inflight=%d size=%d ready=%" PRIu64
         " failed=%" PRIu64 " errors=%" PRIu64 " open=%" PRIu64 " rt=%" PRIu64
         " secs=%.3f rate=%.1f p50_us=%.1f p99_us=%.1f p999_us=%.1f mean_us=%.1f"
         " srv_cpu_us=%.0f srv_us_per_rt=%.3f lg_us_per_rt=%.3f rss0_kb=%" PRId64
         " rss1_kb=%" PRId64 " rss2_kb=%" PRId64 " rss_per_conn_b=%.0f connect_s=%.2f"
         " pings=%" PRIu64 " unexpected=%" PRIu64 " lost_workers=%" PRIu64
         " connect_p50_ms=%.1f connect_p99_ms=%.1f\n",
         O.label[0] ? O.label : "-", proto_name, mode_name, O.conns, O.inflight, O.size, ready,
         failed, tot.errors, tot.open, tot.rt, secs, rate, p50, p99, p999, mean, srv_cpu,
         srv_per_rt, lg_per_rt, rss0, rss1, rss2, rss_per_conn, connect_s, tot.pings,
         tot.unexpected, lost_workers, c50, c99);
  fflush(stdout);
  free(rm);
  free(rep);
  bool ok = ready == (uint64_t)O.conns && lost_workers == 0 &&
            (O.mode == MODE_IDLE ? tot.errors == 0 && tot.open == ready : tot.rt > 0);
  return ok ? 0 : 1;
}
