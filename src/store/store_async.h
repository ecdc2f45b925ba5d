/*
 * store_async: how the loop thread uses the (blocking) store without blocking.
 *
 * - store_async_run(): run any closure on the libuv thread pool (uv_queue_work) with the
 *   store, then call `done` back on the loop thread with the closure's return code.
 * - store_async_insert(): the group-commit writer for message inserts. One dedicated
 *   writer thread takes every insert queued while the previous transaction was committing
 *   and commits them all in one transaction (store_message_insert_batch: one fsync for the
 *   lot; with SQLite the fsync runs on a syncer thread while the next batch is written),
 *   then calls each completion back on the loop thread (uv_async). A completion with
 *   status 0 means the message is durable (see store.h "Durability"): ack it.
 *
 * Threads: every function here is called on the loop thread that store_async_new() was
 * given; every callback runs on that thread. The work function of store_async_run() runs on
 * a pool thread and may call any store_* function.
 *
 * Log context: the caller's log context (base.h: request id, socket id) is kept with each
 * closure and insert and set again while its work function and its callback run, so
 * their log lines name the request or socket that asked.
 *
 * Lifetime: store_async_close() stops accepting work, lets queued inserts commit and
 * running closures finish (their callbacks still run, with their real status), then frees
 * and calls on_closed. The store itself is the caller's and must outlive the store_async.
 */
#ifndef ENGRAM_STORE_ASYNC_H
#define ENGRAM_STORE_ASYNC_H

#include <uv.h>

#include "store/store.h"

struct store_async;

/* Creates the async layer on loop for store s and starts the writer thread.
   Returns 0 and *out, or EG_EIO (thread or uv handle creation failed). */
EG_WUR int store_async_new(uv_loop_t *loop, struct store *s, struct store_async **out);
/* See "Lifetime" above. on_closed may be NULL. Call once. */
void store_async_close(struct store_async *a, void (*on_closed)(void *arg), void *arg);

/* Runs work(s, arg) on the thread pool, then done(arg, status) on the loop thread where
   status is work's return value. Returns 0 (done will run) or EG_ECLOSED (closing; done
   will not run). */
typedef int (*store_work_fn)(struct store *s, void *arg);
typedef void (*store_done_fn)(void *arg, int status);
EG_WUR int store_async_run(struct store_async *a, store_work_fn work, store_done_fn done,
                           void *arg);

/* Queues m for the group-commit writer. m and the strings it points to must stay valid
   until cb runs; the writer fills m->id, m->created_at and m->existed as
   store_message_insert does. cb(arg, status, m) runs on the loop thread with status 0
   (durable; also for an idempotent repeat, m->existed) or what store_message_insert
   would return. Returns 0 (cb will run) or EG_ECLOSED (closing; cb will not run). */
typedef void (*store_insert_cb)(void *arg, int status, struct store_message_new *m);
EG_WUR int store_async_insert(struct store_async *a, struct store_message_new *m,
                              store_insert_cb cb, void *arg);

/* Counters of the writer since creation (for /metrics and the benchmark). */
struct store_async_stats {
  uint64_t inserts;      /* messages committed through the writer */
  uint64_t transactions; /* transactions the writer committed */
  uint64_t max_batch;    /* largest batch in one transaction */
  uint64_t syncs;        /* fsyncs of the syncer thread (deferred sync; 0 otherwise) */
};
void store_async_stats(struct store_async *a, struct store_async_stats *st);

#endif
