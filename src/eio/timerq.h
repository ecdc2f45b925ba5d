/*
 * eio/timerq: many cheap timeouts on one uv_timer (internal to the transport: used by
 * src/eio for heartbeats and by src/sio for connect and ack timeouts).
 *
 * 19,000 sessions each pinging every pingInterval would need 19,000 uv_timers (about
 * 150 bytes and a heap insertion each). Instead every timeout is an intrusive node
 * (struct tq_node, 32 bytes, embedded in the session) on a doubly-linked list sorted by
 * deadline, and one uv_timer per queue is armed for the earliest deadline.
 *
 * Insertion walks from the TAIL, so it is O(1) whenever deadlines arrive in order, which
 * is the case when every node of a queue uses the same duration (ping interval, ping
 * timeout, connect timeout): give each such duration its own queue (tq_lane) sharing the
 * owner's single uv_timer (struct tq). Removal is O(1).
 *
 * Threads: the loop thread only. A node's callback runs after the node was removed; it
 * may re-add it, remove others, or free its owner.
 */
#ifndef ENGRAM_EIO_TIMERQ_H
#define ENGRAM_EIO_TIMERQ_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define TQ_MAX_LANES 4

struct tq_node {
  struct tq_node *prev, *next; /* NULL/NULL and lane == -1 when not queued */
  uint64_t deadline;           /* uv_now() milliseconds */
  int8_t lane;
  uint8_t kind; /* free for the owner: which of its timeouts this is */
};

struct tq_lane {
  struct tq_node *head, *tail;
};

struct tq;
/* Called for an expired node (already unqueued). */
typedef void (*tq_fire_fn)(struct tq *q, struct tq_node *n);

struct tq {
  uv_timer_t timer;
  uv_loop_t *loop;
  struct tq_lane lanes[TQ_MAX_LANES];
  tq_fire_fn fire;
  uint64_t armed; /* deadline the uv_timer is set for, UINT64_MAX when stopped */
  bool closing;
  void (*on_closed)(struct tq *q);
  void *data; /* owner */
};

/* Initialises q on loop (one uv_timer, unref'd so it never keeps the loop alive). */
void tq_init(struct tq *q, uv_loop_t *loop, tq_fire_fn fire, void *data);
/* Stops and closes the timer; on_closed(q) runs from the uv_close callback (may be NULL
   when q outlives the loop run). Queued nodes are simply forgotten. */
void tq_close(struct tq *q, void (*on_closed)(struct tq *q));

static inline void tq_node_init(struct tq_node *n) {
  n->prev = n->next = 0;
  n->lane = -1;
  n->kind = 0;
  n->deadline = 0;
}
static inline bool tq_queued(const struct tq_node *n) { return n->lane >= 0; }

/* (Re)queues n to fire after ms milliseconds on the given lane (removing it from where it
   was first). */
void tq_add(struct tq *q, int lane, struct tq_node *n, uint64_t ms);
/* Unqueues n (no-op when not queued). */
void tq_del(struct tq *q, struct tq_node *n);
/* Fires every node whose deadline is <= now (what the uv_timer callback does); exposed for
   tests. */
void tq_run(struct tq *q, uint64_t now);

#endif
