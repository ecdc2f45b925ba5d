/* eio/timerq: sorted intrusive timeout lists on one uv_timer (see timerq.h). */
#include "eio/timerq.h"

#include <stddef.h>

#include "base/base.h"

static void tq__on_timer(uv_timer_t *t);

static void tq__rearm(struct tq *q) {
  if (q->closing)
    return;
  uint64_t min = UINT64_MAX;
  for (int i = 0; i < TQ_MAX_LANES; i++) {
    if (q->lanes[i].head && q->lanes[i].head->deadline < min)
      min = q->lanes[i].head->deadline;
  }
  if (min == q->armed)
    return;
  q->armed = min;
  if (min == UINT64_MAX) {
    uv_timer_stop(&q->timer);
    return;
  }
  uint64_t now = uv_now(q->loop);
  uv_timer_start(&q->timer, tq__on_timer, min > now ? min - now : 0, 0);
}

static void tq__on_timer(uv_timer_t *t) {
  struct tq *q = t->data;
  q->armed = UINT64_MAX;
  tq_run(q, uv_now(q->loop));
}

void tq_init(struct tq *q, uv_loop_t *loop, tq_fire_fn fire, void *data) {
  for (int i = 0; i < TQ_MAX_LANES; i++)
    q->lanes[i].head = q->lanes[i].tail = NULL;
  q->loop = loop;
  q->fire = fire;
  q->data = data;
  q->armed = UINT64_MAX;
  q->closing = false;
  q->on_closed = NULL;
  uv_timer_init(loop, &q->timer);
  q->timer.data = q;
  uv_unref((uv_handle_t *)&q->timer);
}

static void tq__closed(uv_handle_t *h) {
  struct tq *q = h->data;
  if (q->on_closed)
    q->on_closed(q);
}

void tq_close(struct tq *q, void (*on_closed)(struct tq *q)) {
  q->closing = true;
  q->on_closed = on_closed;
  for (int i = 0; i < TQ_MAX_LANES; i++)
    q->lanes[i].head = q->lanes[i].tail = NULL;
  uv_timer_stop(&q->timer);
  uv_close((uv_handle_t *)&q->timer, tq__closed);
}

void tq_del(struct tq *q, struct tq_node *n) {
  if (n->lane < 0)
    return;
  struct tq_lane *l = &q->lanes[n->lane];
  if (n->prev)
    n->prev->next = n->next;
  else
    l->head = n->next;
  if (n->next)
    n->next->prev = n->prev;
  else
    l->tail = n->prev;
  n->prev = n->next = NULL;
  n->lane = -1;
  /* The timer stays armed for the old head; it fires early at worst and re-arms. */
}

void tq_add(struct tq *q, int lane, struct tq_node *n, uint64_t ms) {
  tq_del(q, n);
  if (q->closing)
    return;
  struct tq_lane *l = &q->lanes[lane];
  n->deadline = uv_now(q->loop) + ms;
  n->lane = (int8_t)lane;
  struct tq_node *after = l->tail;
  while (after && after->deadline > n->deadline)
    after = after->prev;
  n->prev = after;
  n->next = after ? after->next : l->head;
  if (n->next)
    n->next->prev = n;
  else
    l->tail = n;
  if (after)
    after->next = n;
  else
    l->head = n;
  if (n->deadline < q->armed)
    tq__rearm(q);
}

void tq_run(struct tq *q, uint64_t now) {
  for (;;) {
    struct tq_node *first = NULL;
    for (int i = 0; i < TQ_MAX_LANES; i++) {
      struct tq_node *h = q->lanes[i].head;
      if (h && h->deadline <= now && (!first || h->deadline < first->deadline))
        first = h;
    }
    if (!first || q->closing)
      break;
    tq_del(q, first);
    q->fire(q, first);
  }
  q->armed = UINT64_MAX; /* force a re-arm from the current heads */
  if (!q->closing) {
    uv_timer_stop(&q->timer);
    tq__rearm(q);
  }
}
