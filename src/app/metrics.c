/*
 * GET /metrics in the Prometheus text format (version 0.0.4): what the server is doing
 * now (connections, sockets by transport, running and queued generations, outbound model
 * requests, index size) and what it did since start (messages, answers, errors by code,
 * latency histograms of the model, recall and the server's own share of an answer, group
 * commits).
 */
#include "app/app.h"

#include <stdlib.h>

#include "chat/chat.h"
#include "http/http.h"
#include "httpc/httpc.h"
#include "memory/memory.h"
#include "recall/recall.h"
#include "sio/sio.h"
#include "store/store_async.h"

static int gauge(struct buf *b, const char *name, const char *help, const char *type,
                 double v) {
  return buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name,
                    v);
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
#define G(name, help, v)                                                                    \
  if (!rc)                                                                                  \
  rc = gauge(b, name, help, "gauge", (double)(v))
#define C(name, help, v)                                                                    \
  if (!rc)                                                                                  \
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
  C("engram_store_inserts_total", "Messages committed by the group-commit writer.",
    ss.inserts);
  C("engram_store_transactions_total", "Transactions of the group-commit writer.",
    ss.transactions);
  G("engram_store_max_batch", "Largest group commit.", ss.max_batch);
  C("engram_recall_searches_total", "Memory searches.", rs.searches);
  C("engram_memories_embedded_total", "Memories embedded and indexed.", rs.remembered);
  C("engram_memories_backfilled_total", "Memories embedded by the backfill.", rs.backfilled);
  C("engram_embed_failures_total", "Embedding failures (left for the backfill).",
    rs.embed_failures);
#undef G
#undef C
  if (!rc)
    rc = buf_printf(b, "# HELP engram_errors_total ai-message errors by code.\n"
                       "# TYPE engram_errors_total counter\n"
                       "engram_errors_total{code=\"bad_request\"} %llu\n"
                       "engram_errors_total{code=\"not_found\"} %llu\n"
                       "engram_errors_total{code=\"too_large\"} %llu\n"
                       "engram_errors_total{code=\"rate_limited\"} %llu\n"
                       "engram_errors_total{code=\"llm_unavailable\"} %llu\n"
                       "engram_errors_total{code=\"internal\"} %llu\n",
                    (unsigned long long)cs.errors_bad_request,
                    (unsigned long long)cs.errors_not_found,
                    (unsigned long long)cs.errors_too_large,
                    (unsigned long long)cs.errors_rate_limited,
                    (unsigned long long)cs.errors_llm_unavailable,
                    (unsigned long long)cs.errors_internal);
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
       "Server time of an answered ai-message, model time excluded.",
       offsetof(struct chat_stats, overhead)},
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
