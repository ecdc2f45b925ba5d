/*
 * app: configuration, wiring and the engram program. The only module that knows every
 * other one; nothing includes app.h except main.c and the app's own files.
 */
#ifndef ENGRAM_APP_H
#define ENGRAM_APP_H

#include "base/base.h"

const char *engram_version(void);

struct chat;
struct recall;
struct store_async;
struct mem_index;
struct sio_server;
struct sio_nsp;
struct httpc;
struct store;

/* What /metrics reads (src/app/metrics.c). */
struct app_metrics_src {
  struct chat *chat;
  struct recall *recall;
  struct store_async *async;
  struct mem_index *index;
  struct sio_server *io;
  struct sio_nsp *nsp;
  struct httpc *httpc;
  struct store *store; /* its connection pool (store_pool_stats); may be NULL */
};
/* Appends the Prometheus text exposition to b. Returns 0 or EG_ETOOBIG. */
EG_WUR int app_metrics_render(const struct app_metrics_src *m, struct buf *b);

#endif
