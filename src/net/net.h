/*
 * net: libuv glue for the transport. A TCP listener that hands out connections, a write
 * queue per connection that coalesces all writes of one loop turn into one writev, coarse
 * per-connection timeouts, shared refcounted buffers for broadcasts, and jobs on the libuv
 * thread pool.
 *
 * Threads: everything here runs on the loop thread of the server, except net_job_submit's
 * work function (a pool thread) and the net_sbuf refcount (atomic, any thread).
 *
 * Memory (performance is a feature):
 * - Reads go into ONE 64 KiB buffer per server (alloc_cb). on_read sees the bytes there;
 *   only bytes the consumer leaves unconsumed are copied into a per-connection leftover
 *   buffer, allocated lazily and freed when empty. An idle connection holds no buffers.
 * - Writes are queued in segments (small writes are copied into the tail segment, shared
 *   buffers are referenced without a copy). The queue of every connection written to in a
 *   loop turn is flushed once, in a uv_check handle (after I/O callbacks) or a uv_prepare
 *   handle (before the loop blocks, for writes made from timers/async callbacks):
 *   uv_try_write first, then one uv_write for the rest, at most one in flight.
 * - struct net_conn is embedded as the FIRST member of the consumer's own connection struct
 *   (conn_size in net_server_opts): one allocation per connection.
 *
 * Lifetime: a connection is freed by net only in its uv_close callback, after
 * cbs->on_close returned. After net_conn_close/net_conn_abort no other callback than
 * on_close is made.
 *
 * Return codes: 0 or a negative EG_E* code (base.h); libuv errors map to EG_EIO unless
 * stated.
 *
 * Changes after the first commit: on_read's data became `uint8_t *` (writable scratch);
 * net_server_write_calls() added; net_server_opts.max_per_addr (per-address connection
 * cap) and net_server_refused_per_addr() added. Writes are refused (EG_ECLOSED) once close was asked.
 */
#ifndef ENGRAM_NET_H
#define ENGRAM_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/base.h"

#define NET_READ_BUF_SIZE (64 * 1024)
/* Number of timeout classes a server offers (see net_conn_timeout). Class
   NET_TIMEOUT_CLASSES - 1 is used internally for lingering close. */
#define NET_TIMEOUT_CLASSES 4
#define NET_TIMEOUT_NONE (-1)

struct net_server;
struct net_conn;
struct net_seg; /* private: one write-queue segment */
struct net_addr_count; /* private: open connections of one peer address */

/* ---- shared buffers ------------------------------------------------------------------- */

/* A refcounted immutable byte buffer (e.g. one encoded WebSocket frame broadcast to many
   connections). Created with one reference; the refcount is atomic. */
struct net_sbuf {
  uint32_t refs; /* atomic */
  uint32_t flags;
  size_t len;
  uint8_t data[];
};
struct net_sbuf *net_sbuf_new(size_t len); /* data uninitialised, len bytes */
struct net_sbuf *net_sbuf_from(const void *p, size_t len);
struct net_sbuf *net_sbuf_ref(struct net_sbuf *b);
void net_sbuf_unref(struct net_sbuf *b); /* NULL is fine */

/* ---- connections ----------------------------------------------------------------------- */

struct net_conn_cbs {
  /* Bytes arrived. data is valid only during the call and is scratch memory the consumer
     may modify in place (e.g. to unmask WebSocket payloads). Returns how many bytes were
     consumed; the rest is kept (copied to the leftover buffer) and presented again, in
     front of newer bytes, on the next call. Required. */
  size_t (*on_read)(struct net_conn *c, uint8_t *data, size_t n);
  /* The peer closed its side (status EG_ECLOSED) or a read/write failed (EG_EIO).
     Delivered at most once. The consumer usually calls net_conn_close/abort here; if it
     does not, the connection stays open for writing (half-close). Required. */
  void (*on_eof)(struct net_conn *c, int status);
  /* Called once the write backlog has fallen to zero (or below low water set by
     net_conn_set_low_water) after having been above it. Optional. */
  void (*on_drain)(struct net_conn *c);
  /* A timeout class set with net_conn_timeout expired (the conn is removed from it).
     Optional (if NULL the connection is aborted). */
  void (*on_timeout)(struct net_conn *c, int cls);
  /* The handle is closed: release everything the consumer holds. The memory of c (and of
     the struct it is embedded in) is freed by net right after. Required. */
  void (*on_close)(struct net_conn *c);
};

/* Private fields: use the functions below. Kept small on purpose (no inline buffers). */
struct net_conn {
  uv_tcp_t tcp;
  struct net_server *srv;
  const struct net_conn_cbs *cbs;
  struct net_conn *all_prev, *all_next; /* server's list of connections */
  struct net_conn *dirty_next;          /* server's flush list */
  struct net_conn *t_prev, *t_next;     /* timeout list of class tcls */
  uint64_t deadline_ms;
  struct net_seg *out_head, *out_tail;  /* queued, not yet handed to the kernel */
  struct net_seg *inflight;             /* handed to the pending uv_write */
  size_t backlog;                       /* bytes queued + in flight */
  size_t low_water;
  struct buf in;                        /* leftover input, NULL data when empty */
  size_t max_in;                        /* cap of leftover before reading pauses */
  int8_t tcls;
  uint16_t flags;
  struct net_addr_count *addr; /* this peer's entry when max_per_addr is set, else NULL */
};

/* Queue bytes (copied). EG_ECLOSED if the conn is closing or failed. */
EG_WUR int net_conn_write(struct net_conn *c, const void *p, size_t n);
/* Queue several pieces (each copied), in order. */
EG_WUR int net_conn_writev(struct net_conn *c, const uv_buf_t *bufs, unsigned nbufs);
/* Queue bytes [off, off+len) of a shared buffer without copying (takes a new reference). */
EG_WUR int net_conn_write_sbuf(struct net_conn *c, struct net_sbuf *b, size_t off,
                               size_t len);
/* Bytes queued or in flight. */
size_t net_conn_backlog(const struct net_conn *c);
/* on_drain fires when the backlog falls to <= low (after having been above it). */
void net_conn_set_low_water(struct net_conn *c, size_t low);

/* Stop delivering input (bytes keep being buffered up to max_in, then reading stops;
   EOF is still reported). */
void net_conn_pause(struct net_conn *c);
/* Deliver again: leftover bytes are re-presented to on_read from the loop (never
   synchronously inside this call). */
void net_conn_resume(struct net_conn *c);
/* Stop reading from the socket entirely (backpressure) / start again. */
void net_conn_read_stop(struct net_conn *c);
void net_conn_read_start(struct net_conn *c);
/* Cap of the leftover buffer (default 64 KiB): past it reading stops until consumed. */
void net_conn_set_max_in(struct net_conn *c, size_t max);

/* Graceful close: stop delivering input, flush the queue, shutdown(SHUT_WR), drain and
   discard input until EOF or 2 s (lingering close, so a response is not lost to a RST),
   then close. */
void net_conn_close(struct net_conn *c);
/* Close now, dropping whatever is queued. */
void net_conn_abort(struct net_conn *c);
bool net_conn_closing(const struct net_conn *c);

/* Put the connection on timeout class cls (0 .. NET_TIMEOUT_CLASSES-2), whose duration
   was set by net_server_set_timeout, restarting its clock; NET_TIMEOUT_NONE removes it.
   O(1): each class is a list sorted by deadline, one uv_timer per server. */
void net_conn_timeout(struct net_conn *c, int cls);

/* Peer address as "ip:port" ("[ip6]:port") into out; returns 0 or EG_EIO. */
int net_conn_peer(const struct net_conn *c, char *out, size_t outlen);
uv_loop_t *net_conn_loop(const struct net_conn *c);

/* ---- servers -------------------------------------------------------------------------- */

struct net_server_opts {
  const char *host; /* "127.0.0.1", "0.0.0.0", "::"; NULL = "0.0.0.0" */
  int port;         /* 0 = any free port (see net_server_port) */
  int backlog;      /* listen backlog; 0 = 511 */
  size_t conn_size; /* >= sizeof(struct net_conn); the consumer's struct embedding it */
  /* A connection was accepted. c points to conn_size zeroed bytes whose net_conn part is
     set up; the callback must set c->cbs (net_conn_set_cbs). Returning non-zero closes it. */
  int (*on_accept)(struct net_server *s, struct net_conn *c, void *ud);
  void *ud;
  /* Open connections allowed from one peer IP address; one more is closed at once, before
     on_accept (counted by net_server_refused_per_addr). 0 = no cap. (Added after v1.) */
  unsigned max_per_addr;
};

/* Bind and listen. EG_EIO (bind/listen failure, message logged), EG_EINVAL. */
EG_WUR int net_server_start(uv_loop_t *loop, const struct net_server_opts *o,
                            struct net_server **out);
void net_conn_set_cbs(struct net_conn *c, const struct net_conn_cbs *cbs);
/* The bound port (useful with port 0). */
int net_server_port(const struct net_server *s);
void *net_server_ud(const struct net_server *s);
uv_loop_t *net_server_loop(const struct net_server *s);
/* Duration of timeout class cls in ms (0 disables the class). */
void net_server_set_timeout(struct net_server *s, int cls, uint64_t ms);
/* Number of open connections. */
size_t net_server_conn_count(const struct net_server *s);
/* Connections closed at accept by the max_per_addr cap so far. (Added after v1.) */
uint64_t net_server_refused_per_addr(const struct net_server *s);
/* Write system calls made so far (uv_try_write + uv_write), for tests and metrics: with
   coalescing, many net_conn_write calls in one loop turn cost one. (Added after v1.) */
uint64_t net_server_write_calls(const struct net_server *s);
/* Calls fn for every open connection (fn may close c). */
void net_server_foreach(struct net_server *s, void (*fn)(struct net_conn *c, void *ud),
                        void *ud);
/* Stop accepting (closes the listener now). Existing connections are not touched; once
   the listener is closed AND the last connection closed, on_closed(ud) is called and the
   server is freed. */
void net_server_stop(struct net_server *s, void (*on_closed)(void *ud), void *ud);

/* ---- process, jobs ----------------------------------------------------------------------- */

/* Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit (or the
   old one if raising failed). */
long net_raise_nofile(void);

/* Run work(ud) on the libuv thread pool, then done(ud, status) on the loop thread
   (status 0, or EG_ECANCELED if the job was cancelled by loop shutdown). EG_EIO if libuv
   refuses. The job record is freed by net. */
EG_WUR int net_job_submit(uv_loop_t *loop, void (*work)(void *ud),
                          void (*done)(void *ud, int status), void *ud);

#endif
