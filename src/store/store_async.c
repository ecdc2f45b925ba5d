/*
 * store_async.c: closures on the libuv thread pool, and the group-commit writer.
 *
 * Writer protocol. The loop thread appends inserts to `queue` under `mu` and signals
 * `cond`. The writer thread sleeps on `cond`; when woken it takes the WHOLE queue (up to
 * SA_BATCH_MAX entries), inserts it in one transaction (store_message_insert_batch), moves
 * the entries to `done`, and uv_async_send()s the loop. Inserts that arrive while a
 * transaction is committing wait in `queue` and form the next batch: under load each fsync
 * covers every message that arrived during the previous one.
 *
 * Deferred sync. When the store defers durability (store_sync_deferred: SQLite), the writer
 * commits with store_message_insert_batch_nosync and hands the batch to the syncer thread
 * (`committed`), then starts the next batch at once; the syncer fsyncs (store_sync) and
 * only then moves every batch committed before that fsync began to `done`. So the disk
 * flush of batch k overlaps the writing of batch k+1, and one fsync may cover several
 * batches. A failed fsync fails the batches it was to cover (EG_EIO): they may be lost on
 * a power failure, so they are never reported stored. Without deferral (PostgreSQL) the
 * writer moves batches to `done` itself.
 *
 * The async handle is unreferenced while no insert is outstanding, so an idle store_async
 * does not keep uv_run() alive; it is referenced while completions are owed.
 *
 * Close: `closing` refuses new work; the writer drains the queue and exits (`writer_done`);
 * when the writer is done, every completion has been delivered and no pool job is running,
 * the async handle is closed and on_closed runs.
 */
#include "store/store_async.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SA_BATCH_MAX 4096

struct sa_ins {
  struct sa_ins *next;
  struct store_message_new *m;
  store_insert_cb cb;
  void *arg;
  int status;
  struct log_ctx ctx; /* the submitter's log context, back for the callback */
};

struct sa_job {
  uv_work_t req;
  struct store_async *a;
  store_work_fn work;
  store_done_fn done;
  void *arg;
  int status;
  struct log_ctx ctx; /* the submitter's log context, for the work and the callback */
};

struct store_async {
  uv_loop_t *loop;
  struct store *s;
  uv_async_t async;
  pthread_t writer;
  pthread_t syncer;
  bool deferred; /* store_sync_deferred(s): the syncer thread runs */
  pthread_mutex_t mu;
  pthread_cond_t cond;      /* queue or stopping changed: the writer */
  pthread_cond_t sync_cond; /* committed or writer_exited changed: the syncer */
  /* under mu */
  struct sa_ins *queue, **queue_tail;
  struct sa_ins *committed, **committed_tail; /* written, not yet fsynced */
  struct sa_ins *done, **done_tail;
  bool stopping;
  bool writer_exited; /* the writer thread is past its loop (deferred mode) */
  bool writer_done;   /* every queued insert is in `done` and no thread will add more */
  struct store_async_stats stats;
  /* loop thread only */
  bool closing;
  bool finalizing;
  bool writer_started;
  size_t jobs;        /* pool closures in flight */
  size_t outstanding; /* inserts whose callback has not run */
  void (*on_closed)(void *arg);
  void *closed_arg;
};

static void *writer_main(void *arg) {
  struct store_async *a = arg;
  pthread_setname_np(pthread_self(), "engram-writer"); /* per-thread CPU in bench/pipeline.sh */
  struct store_message_new *batch = NULL;
  int *status = NULL;
  size_t cap = 0;
  pthread_mutex_lock(&a->mu);
  for (;;) {
    while (!a->queue && !a->stopping)
      pthread_cond_wait(&a->cond, &a->mu);
    if (!a->queue)
      break; /* stopping and drained */
    /* Take everything queued (bounded), leave the rest for the next transaction. */
    struct sa_ins *head = a->queue, *last = head;
    size_t n = 1;
    while (last->next && n < SA_BATCH_MAX) {
      last = last->next;
      n++;
    }
    a->queue = last->next;
    if (!a->queue)
      a->queue_tail = &a->queue;
    last->next = NULL;
    pthread_mutex_unlock(&a->mu);

    if (n > cap) {
      cap = n;
      batch = xrealloc(batch, cap * sizeof(*batch));
      status = xrealloc(status, cap * sizeof(*status));
    }
    size_t i = 0;
    for (struct sa_ins *e = head; e; e = e->next)
      batch[i++] = *e->m;
    int rc = a->deferred ? store_message_insert_batch_nosync(a->s, batch, n, status)
                         : store_message_insert_batch(a->s, batch, n, status);
    if (rc != 0)
      log_error("store: group commit of %zu messages failed: %s", n, eg_strerror(rc));
    i = 0;
    for (struct sa_ins *e = head; e; e = e->next, i++) {
      *e->m = batch[i];
      e->status = status[i];
    }

    pthread_mutex_lock(&a->mu);
    a->stats.inserts += n;
    a->stats.transactions++;
    if (n > a->stats.max_batch)
      a->stats.max_batch = n;
    if (a->deferred) {
      *a->committed_tail = head;
      a->committed_tail = &last->next;
      pthread_cond_signal(&a->sync_cond);
    } else {
      *a->done_tail = head;
      a->done_tail = &last->next;
      uv_async_send(&a->async);
    }
  }
  if (a->deferred) {
    a->writer_exited = true;
    pthread_cond_signal(&a->sync_cond);
  } else {
    /* Sent under the lock: the loop cannot see writer_done (and close the handle) before
       this send is over. */
    a->writer_done = true;
    uv_async_send(&a->async);
  }
  pthread_mutex_unlock(&a->mu);
  free(batch);
  free(status);
  return NULL;
}

static void *syncer_main(void *arg) {
  struct store_async *a = arg;
  pthread_setname_np(pthread_self(), "engram-syncer");
  pthread_mutex_lock(&a->mu);
  for (;;) {
    while (!a->committed && !a->writer_exited)
      pthread_cond_wait(&a->sync_cond, &a->mu);
    if (!a->committed)
      break; /* the writer has exited and everything it committed is delivered */
    struct sa_ins *head = a->committed;
    struct sa_ins **tail = a->committed_tail;
    a->committed = NULL;
    a->committed_tail = &a->committed;
    pthread_mutex_unlock(&a->mu);

    /* Every batch in the list had returned from its commit before this call. */
    int rc = store_sync(a->s);
    if (rc != 0) {
      log_error("store: the disk refused to sync committed messages: %s", eg_strerror(rc));
      for (struct sa_ins *e = head; e; e = e->next)
        if (e->status == 0)
          e->status = rc;
    }

    pthread_mutex_lock(&a->mu);
    a->stats.syncs++;
    *a->done_tail = head;
    a->done_tail = tail;
    uv_async_send(&a->async);
  }
  a->writer_done = true; /* sent under the lock: see the end of writer_main */
  uv_async_send(&a->async);
  pthread_mutex_unlock(&a->mu);
  return NULL;
}

static void on_handle_closed(uv_handle_t *h) {
  struct store_async *a = h->data;
  if (a->writer_started) {
    pthread_join(a->writer, NULL);
    if (a->deferred)
      pthread_join(a->syncer, NULL);
  }
  pthread_mutex_destroy(&a->mu);
  pthread_cond_destroy(&a->cond);
  pthread_cond_destroy(&a->sync_cond);
  void (*cb)(void *) = a->on_closed;
  void *arg = a->closed_arg;
  free(a);
  if (cb)
    cb(arg);
}

static void maybe_finalize(struct store_async *a) {
  if (!a->closing || a->finalizing || a->jobs > 0 || a->outstanding > 0)
    return;
  pthread_mutex_lock(&a->mu);
  bool done = a->writer_done;
  pthread_mutex_unlock(&a->mu);
  if (!done)
    return;
  a->finalizing = true;
  uv_close((uv_handle_t *)&a->async, on_handle_closed);
}

static void on_async(uv_async_t *h) {
  struct store_async *a = h->data;
  pthread_mutex_lock(&a->mu);
  struct sa_ins *list = a->done;
  a->done = NULL;
  a->done_tail = &a->done;
  pthread_mutex_unlock(&a->mu);
  while (list) {
    struct sa_ins *e = list;
    list = e->next;
    a->outstanding--;
    struct log_ctx saved;
    log_ctx_get(&saved);
    log_ctx_set(&e->ctx);
    e->cb(e->arg, e->status, e->m);
    log_ctx_set(&saved);
    free(e);
  }
  if (a->outstanding == 0 && !a->finalizing)
    uv_unref((uv_handle_t *)&a->async);
  maybe_finalize(a);
}

int store_async_new(uv_loop_t *loop, struct store *s, struct store_async **out) {
  struct store_async *a = xcalloc(1, sizeof(*a));
  a->loop = loop;
  a->s = s;
  a->queue_tail = &a->queue;
  a->committed_tail = &a->committed;
  a->done_tail = &a->done;
  a->deferred = store_sync_deferred(s);
  if (uv_async_init(loop, &a->async, on_async) != 0) {
    free(a);
    return EG_EIO;
  }
  a->async.data = a;
  uv_unref((uv_handle_t *)&a->async);
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->cond, NULL);
  pthread_cond_init(&a->sync_cond, NULL);
  if (a->deferred && pthread_create(&a->syncer, NULL, syncer_main, a) != 0)
    a->deferred = false; /* no syncer thread: the writer's commits fsync themselves */
  if (pthread_create(&a->writer, NULL, writer_main, a) != 0) {
    if (a->deferred) { /* the syncer exits at once: the writer counts as gone */
      pthread_mutex_lock(&a->mu);
      a->writer_exited = true;
      pthread_cond_signal(&a->sync_cond);
      pthread_mutex_unlock(&a->mu);
      pthread_join(a->syncer, NULL);
      a->deferred = false;
    }
    /* No writer: close the handle; a is freed in its close callback. */
    a->closing = true;
    a->finalizing = true;
    uv_close((uv_handle_t *)&a->async, on_handle_closed);
    return EG_EIO;
  }
  a->writer_started = true;
  *out = a;
  return 0;
}

void store_async_close(struct store_async *a, void (*on_closed)(void *arg), void *arg) {
  a->closing = true;
  a->on_closed = on_closed;
  a->closed_arg = arg;
  uv_ref((uv_handle_t *)&a->async);
  pthread_mutex_lock(&a->mu);
  a->stopping = true;
  pthread_cond_signal(&a->cond);
  pthread_mutex_unlock(&a->mu);
  maybe_finalize(a);
}

static void job_work(uv_work_t *req) {
  struct sa_job *j = EG_CONTAINER_OF(req, struct sa_job, req);
  struct log_ctx saved;
  log_ctx_get(&saved);
  log_ctx_set(&j->ctx); /* the store's log lines name the request or socket */
  j->status = j->work(j->a->s, j->arg);
  log_ctx_set(&saved);
}

static void job_after(uv_work_t *req, int status) {
  struct sa_job *j = EG_CONTAINER_OF(req, struct sa_job, req);
  struct store_async *a = j->a;
  a->jobs--;
  struct log_ctx saved;
  log_ctx_get(&saved);
  log_ctx_set(&j->ctx);
  j->done(j->arg, status == UV_ECANCELED ? EG_ECANCELED : j->status);
  log_ctx_set(&saved);
  free(j);
  maybe_finalize(a);
}

int store_async_run(struct store_async *a, store_work_fn work, store_done_fn done, void *arg) {
  if (a->closing)
    return EG_ECLOSED;
  struct sa_job *j = xcalloc(1, sizeof(*j));
  j->a = a;
  j->work = work;
  j->done = done;
  j->arg = arg;
  log_ctx_get(&j->ctx);
  if (uv_queue_work(a->loop, &j->req, job_work, job_after) != 0) {
    free(j);
    return EG_EIO;
  }
  a->jobs++;
  return 0;
}

int store_async_insert(struct store_async *a, struct store_message_new *m, store_insert_cb cb,
                       void *arg) {
  if (a->closing)
    return EG_ECLOSED;
  struct sa_ins *e = xcalloc(1, sizeof(*e));
  e->m = m;
  e->cb = cb;
  e->arg = arg;
  log_ctx_get(&e->ctx);
  if (a->outstanding++ == 0)
    uv_ref((uv_handle_t *)&a->async);
  pthread_mutex_lock(&a->mu);
  *a->queue_tail = e;
  a->queue_tail = &e->next;
  pthread_cond_signal(&a->cond);
  pthread_mutex_unlock(&a->mu);
  return 0;
}

void store_async_stats(struct store_async *a, struct store_async_stats *st) {
  pthread_mutex_lock(&a->mu);
  *st = a->stats;
  pthread_mutex_unlock(&a->mu);
}
