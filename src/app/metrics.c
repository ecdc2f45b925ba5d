/*
 * GET /metrics in the Prometheus text format (version 0.0.4): what the server is doing
 * now (connections, sockets by transport, running and queued generations, outbound model
 * requests, index size, the database connection pool) and what it did since start
 * (messages, answers, errors by code, latency histograms of the model, recall and the
 * server's own share of an answer, group commits, transport upgrades, database
 * reconnects). The list with meanings is in deploy/README.md ("Health, metrics, logs").
 */
#include "app/app.h"

#include <stdlib.h>

#include "chat/chat.h"
#include "eio/eio.h"
#include "http/http.h"
#include "httpc/httpc.h"
#include "memory/memory.h"
#include "recall/recall.h"
#include "sio/sio.h"
#include "store/store.h"
#include "store/store_async.h"

static int gauge(struct buf *b, const char *name, const char *help, const char *type,
                 double v) {
  return buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name,
                    v);
}

/* Engine.IO sockets by transport, and upgrades. */
static int render_transports(const struct app_metrics_src *m, struct buf *b) {
  struct eio_stats es = {0};
  struct eio_server *eio = m->io ? sio_server_eio(m->io) : NULL;
  if (eio)
    eio_server_stats(eio, &es);
  return buf_printf(b,
                    "# HELP engram_sockets Connected Engine.IO sockets by transport (an "
                    "upgrade moves one from polling to websocket).\n"
                    "# TYPE engram_sockets gauge\n"
                    "engram_sockets{transport=\"websocket\"} %zu\n"
                    "engram_sockets{transport=\"polling\"} %zu\n"
                    "# HELP engram_transport_upgrades_total Polling sockets upgraded to "
                    "WebSocket.\n"
                    "# TYPE engram_transport_upgrades_total counter\n"
                    "engram_transport_upgrades_total %llu\n",
                    es.websocket, es.polling, (unsigned long long)es.upgrades);
}

/* The database connection pool: SQLite has reader connections and one writer, PostgreSQL
   one pool for both (role "all"). */
static int render_db_pool(const struct app_metrics_src *m, struct buf *b) {
  if (!m->store)
    return 0;
  struct store_pool_stats ps;
  store_pool_stats(m->store, &ps);
  const char *be = store_backend(m->store);
  bool sqlite = ps.writer_size > 0;
  const char *role = sqlite ? "reader" : "all";
  static const struct {
    const char *name, *help;
  } g[] = {
      {"engram_db_pool_size", "Database connections the pool may open."},
      {"engram_db_pool_open", "Database connections open."},
      {"engram_db_pool_in_use", "Database connections running a call now."},
      {"engram_db_pool_waiters", "Database calls waiting for a free connection."},
  };
  unsigned v[4] = {ps.size, ps.open, ps.in_use, ps.waiters};
  unsigned w[4] = {ps.writer_size, ps.writer_size, ps.writer_in_use, ps.writer_waiters};
  int rc = 0;
  for (size_t i = 0; i < EG_ARRAY_LEN(g) && !rc; i++) {
    rc = buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s{backend=\"%s\",role=\"%s\"} %u\n",
                    g[i].name, g[i].help, g[i].name, g[i].name, be, role, v[i]);
    if (!rc && sqlite)
      rc = buf_printf(b, "%s{backend=\"%s\",role=\"writer\"} %u\n", g[i].name, be, w[i]);
  }
  if (!rc)
    rc = buf_printf(b,
                    "# HELP engram_db_reconnects_total Broken database connections reset.\n"
                    "# TYPE engram_db_reconnects_total counter\n"
                    "engram_db_reconnects_total{backend=\"%s\"} %llu\n",
                    be, (unsigned long long)ps.reconnects);
  return rc;
}

int app_metrics_render(const struct app_metrics_src *m, struct buf *b) {
  struct chat_stats cs;
  chat_stats(m->chat, &cs);
  struct recall_stats rs;
  recall_stats(m->recall, &rs);
  struct store_async_stats ss;
  store_async_stats(m->async, &ss);
  struct mem_index_stats is;
  mem_index_stats(m->index, &is);
  int rc = 0;
#define G(name, help, v)                                                                       \
  if (!rc)                                                                                     \
  rc = gauge(b, name, help, "gauge", (double)(v))
#define C(name, help, v)                                                                       \
  if (!rc)                                                                                     \
  rc = gauge(b, name, help, "counter", (double)(v))
  G("engram_engineio_clients", "Connected Engine.IO clients.", sio_server_client_count(m->io));
  G("engram_socketio_sockets", "Connected Socket.IO sockets in the main namespace.",
    sio_nsp_count(m->nsp));
  G("engram_generations_running", "ai-messages being handled (incl. queued).", cs.running);
  G("engram_generations_queued", "ai-messages waiting behind another of their chat.",
    cs.queued);
  G("engram_model_requests_active", "Outbound model and embedding HTTP requests.",
    httpc_active(m->httpc));
  G("engram_index_users", "Users whose vectors are loaded in memory.", is.users);
  G("engram_index_rows", "Memories loaded in the vector index.", is.rows);
  G("engram_index_bytes", "RAM used by the vector index.", is.bytes);
  C("engram_index_evictions_total", "Users evicted from the vector index.", is.evictions);
  C("engram_ai_messages_total", "ai-messages received.", cs.messages);
  C("engram_answers_total", "Answers completed.", cs.answers);
  C("engram_answers_cancelled_total", "Answers cancelled by the user.", cs.cancelled);
  C("engram_duplicates_total", "ai-messages repeated with a known clientId.", cs.duplicates);
  C("engram_store_inserts_total", "Messages committed by the group-commit writer.", ss.inserts);
  C("engram_store_transactions_total", "Transactions of the group-commit writer.",
    ss.transactions);
  G("engram_store_max_batch", "Largest group commit.", ss.max_batch);
  C("engram_store_syncs_total", "fsyncs of the group-commit syncer (SQLite).", ss.syncs);
  C("engram_recall_searches_total", "Memory searches.", rs.searches);
  C("engram_memories_embedded_total", "Memories embedded and indexed.", rs.remembered);
  C("engram_memories_backfilled_total", "Memories embedded by the backfill.", rs.backfilled);
  C("engram_embed_failures_total", "Embedding failures (left for the backfill).",
    rs.embed_failures);
#undef G
#undef C
  if (!rc)
    rc = render_transports(m, b);
  if (!rc)
    rc = render_db_pool(m, b);
  if (!rc)
    rc = buf_printf(
        b,
        "# HELP engram_errors_total ai-message errors by code.\n"
        "# TYPE engram_errors_total counter\n"
        "engram_errors_total{code=\"bad_request\"} %llu\n"
        "engram_errors_total{code=\"not_found\"} %llu\n"
        "engram_errors_total{code=\"too_large\"} %llu\n"
        "engram_errors_total{code=\"rate_limited\"} %llu\n"
        "engram_errors_total{code=\"llm_unavailable\"} %llu\n"
        "engram_errors_total{code=\"internal\"} %llu\n",
        (unsigned long long)cs.errors_bad_request, (unsigned long long)cs.errors_not_found,
        (unsigned long long)cs.errors_too_large, (unsigned long long)cs.errors_rate_limited,
        (unsigned long long)cs.errors_llm_unavailable, (unsigned long long)cs.errors_internal);
  static const struct {
    const char *name, *help;
    size_t off;
  } hs[] = {
      {"engram_model_first_byte_seconds", "Model request to first streamed text.",
       offsetof(struct chat_stats, llm_first_byte)},
      {"engram_model_seconds", "Model request to end of answer.",
       offsetof(struct chat_stats, llm_total)},
      {"engram_recall_seconds", "Memory recall (search and fusion).",
       offsetof(struct chat_stats, recall)},
      {"engram_answer_overhead_seconds",
       "Server time of an answered ai-message up to its answer stored, model time excluded.",
       offsetof(struct chat_stats, overhead)},
      {"engram_answer_latency_seconds",
       "ai-message received to ai-response written, model time excluded.",
       offsetof(struct chat_stats, latency)},
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(hs) && !rc; i++) {
    rc = buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", hs[i].name, hs[i].help,
                    hs[i].name);
    if (!rc)
      rc = histo_prometheus((const struct histo *)(const void *)((const char *)&cs + hs[i].off),
                            hs[i].name, "", b);
  }
  return rc;
}
