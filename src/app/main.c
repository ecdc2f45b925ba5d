/*
 * engram: the chat server program and its operator commands.
 *
 *   engram [serve] [--flag value ...]    run the server (what a bare `engram` does)
 *   engram user add|list|delete ...      accounts
 *   engram migrate                       apply schema migrations
 *   engram export --user EMAIL           a user's chats and messages as JSON
 *   engram --help | --version
 *
 * The server wires the modules together (ARCHITECTURE.md section 1): store (+ its async
 * layer), auth/api (REST + Socket.IO handshake), recall (embedder + vector index), llm
 * (provider on the shared curl client), chat (the ai-message pipeline), on one libuv loop.
 * Shutdown (SIGTERM/SIGINT): stop taking new messages, let running answers finish until
 * the deadline, close Socket.IO, stop the HTTP server, flush the store, exit 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <uv.h>

#include "api/api.h"
#include "app/app.h"
#include "app/config.h"
#include "auth/auth.h"
#include "base/base.h"
#include "chat/chat.h"
#include "cluster/cluster.h"
#include "http/http.h"
#include "httpc/httpc.h"
#include "llm/llm.h"
#include "memory/memory.h"
#include "net/net.h"
#include "recall/recall.h"
#include "sio/sio.h"
#include "store/store.h"
#include "store/store_async.h"
#include "web/web.h"

#define BACKFILL_EVERY_MS 60000

struct engram {
  struct config cfg;
  uv_loop_t *loop;
  struct store *store;
  struct store_async *async;
  struct auth_jwt jwt;
  struct httpc *httpc;
  struct mem_embedder *embedder;
  struct mem_index *index;
  struct mem_pinecone *pinecone; /* NULL with builtin vectors */
  struct recall *recall;
  struct llm_provider *llm;
  struct chat *chat;
  struct api *api;
  struct cluster *cluster; /* NULL without ENGRAM_REDIS_URL */
  struct sio_server *io;
  struct http_router *router;
  struct http_server *http;
  char **origins; /* NULL-terminated CORS list */
  uv_signal_t sigint, sigterm;
  uv_timer_t backfill;
  bool stopping;
  int exit_code;
};

/* ---- small handlers ----------------------------------------------------------------------- */

static void on_echo(struct sio_socket *s, const char *ev, json_t *args, int64_t ack, void *ud) {
  (void)ev, (void)ud;
  int rc = ack != SIO_NO_ACK ? sio_ack(s, ack, json_incref(args))
                             : sio_emit(s, "echo", json_incref(args));
  if (rc != 0 && rc != EG_ECLOSED)
    log_debug("engram: echo failed: %s", eg_strerror(rc));
}

/* Readiness: the store answers a round trip (store_ping on the pool), Redis is connected
   when configured, the model provider is set up, the server is not stopping. 503 says
   what is missing. */
struct readyz {
  struct engram *e;
  struct http_req *req;
};

static int readyz_ping(struct store *s, void *arg) {
  (void)arg;
  return store_ping(s);
}

static void readyz_answer(struct engram *e, struct http_req *req, bool store_ok) {
  bool redis = !e->cluster || cluster_ready(e->cluster);
  bool ok = store_ok && redis && e->llm && !e->stopping;
  char body[160];
  const char *rs = !e->cluster ? "null" : redis ? "true" : "false";
  snprintf(body, sizeof body, "{\"status\":\"%s\",\"store\":%s,\"redis\":%s,\"model\":%s}",
           ok ? "ready" : "not ready", store_ok ? "true" : "false", rs,
           e->llm ? "true" : "false");
  if (http_respond_json(req, ok ? 200 : 503, body) != 0)
    log_debug("engram: readyz answer failed");
}

static void readyz_done(void *arg, int status) {
  struct readyz *r = arg;
  readyz_answer(r->e, r->req, status == 0);
  free(r);
}

static void on_readyz(struct http_req *req, void *ud) {
  struct engram *e = ud;
  struct readyz *r = xmalloc(sizeof *r);
  r->e = e;
  r->req = req;
  if (store_async_run(e->async, readyz_ping, readyz_done, r) != 0) {
    free(r);
    readyz_answer(e, req, false);
  }
}

/* The same on the raw fast path (plain JSON arguments: no jansson tree, no allocation). */
static void on_echo_raw(struct sio_socket *s, const char *ev, struct slice args, int64_t ack,
                        void *ud) {
  (void)ev, (void)ud;
  int rc = ack != SIO_NO_ACK ? sio_ack_raw(s, ack, args) : sio_emit_raw(s, "echo", args);
  if (rc != 0 && rc != EG_ECLOSED)
    log_debug("engram: echo failed: %s", eg_strerror(rc));
}

static void on_healthz(struct http_req *req, void *ud) {
  (void)ud;
  if (http_respond_json(req, 200, "{\"status\":\"ok\"}") != 0)
    log_debug("engram: healthz answer failed");
}

static void on_metrics(struct http_req *req, void *ud) {
  struct engram *e = ud;
  struct app_metrics_src src = {.chat = e->chat,
                                .recall = e->recall,
                                .async = e->async,
                                .index = e->index,
                                .io = e->io,
                                .nsp = sio_of(e->io, "/"),
                                .httpc = e->httpc,
                                .store = e->store};
  struct buf b;
  buf_init(&b, 1 << 20);
  int rc = app_metrics_render(&src, &b);
  if (!rc && e->cluster)
    rc = cluster_metrics_render(e->cluster, &b);
  rc = rc ? http_respond_error(req, 500, "metrics too large")
          : http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                         (const char *)b.data, b.len);
  if (rc)
    log_debug("engram: metrics answer failed");
  buf_free(&b);
}

static void on_socket_user(void *ud, struct sio_socket *s, const char *user_id) {
  struct engram *e = ud;
  chat_socket_user(e->chat, s, user_id);
}

static void on_chat_deleted(void *ud, const char *user_id, const char *chat_id) {
  struct engram *e = ud;
  chat_forget_chat(e->chat, chat_id);
  recall_invalidate(e->recall, user_id);
  cluster_invalidate_user(e->cluster, user_id);
}

static void on_backfill_timer(uv_timer_t *t) {
  struct engram *e = t->data;
  recall_backfill_kick(e->recall);
}

/* ---- shutdown: chat -> sio -> http -> cluster -> store -> llm/httpc ------------------------ */

static void on_httpc_closed(void *ud) {
  struct engram *e = ud;
  (void)e;
  log_info("engram: stopped");
}

static void on_async_closed(void *ud) {
  struct engram *e = ud;
  llm_provider_free(e->llm);
  e->llm = NULL;
  mem_embedder_free(e->embedder);
  e->embedder = NULL;
  if (e->pinecone)
    mem_pinecone_free(e->pinecone);
  e->pinecone = NULL;
  httpc_close(e->httpc, on_httpc_closed, e);
}

static void on_cluster_closed(void *ud) {
  struct engram *e = ud;
  store_async_close(e->async, on_async_closed, e);
}

static void on_http_closed(void *ud) {
  struct engram *e = ud;
  if (e->cluster)
    cluster_close(e->cluster, on_cluster_closed, e);
  else
    store_async_close(e->async, on_async_closed, e);
}

/* The HTTP server stops dispatching at once (http_server_stop), in the same turn as the
   Socket.IO server is freed: no request reaches its handlers after that. */
static void on_sio_closed(void *ud) {
  struct engram *e = ud;
  http_server_stop(e->http, on_http_closed, e);
}

static void on_chat_idle(void *ud) {
  struct engram *e = ud;
  uv_close((uv_handle_t *)&e->backfill, NULL);
  sio_server_close(e->io, on_sio_closed, e);
}

static void on_signal(uv_signal_t *h, int signum) {
  struct engram *e = h->data;
  if (e->stopping) {
    log_warn("engram: second signal: exiting now");
    exit(1);
  }
  e->stopping = true;
  log_info("engram: %s: finishing running answers (up to %lld ms), then stopping",
           signum == SIGTERM ? "SIGTERM" : "SIGINT", e->cfg.shutdown_ms);
  uv_close((uv_handle_t *)&e->sigint, NULL);
  uv_close((uv_handle_t *)&e->sigterm, NULL);
  chat_shutdown(e->chat, (uint32_t)e->cfg.shutdown_ms, on_chat_idle, e);
}

/* ---- setup ---------------------------------------------------------------------------------- */

static char **split_origins(const char *list) {
  size_t n = 1;
  for (const char *p = list; *p; p++)
    n += *p == ',';
  char **v = xcalloc(n + 1, sizeof *v);
  size_t k = 0;
  const char *p = list;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    while (len && (*p == ' ' || *p == '\t'))
      p++, len--;
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
      len--;
    if (len)
      v[k++] = xstrndup(p, len);
    if (!end)
      break;
    p = end + 1;
  }
  return v;
}

static int make_dir(const char *path) {
  if (mkdir(path, 0700) == 0 || errno == EEXIST)
    return 0;
  log_error("engram: cannot create the data folder %s: %s", path, strerror(errno));
  return EG_EIO;
}

static int setup(struct engram *e) {
  struct config *c = &e->cfg;
  int rc;
  if (strncmp(c->db, "postgres", 8) != 0 && (rc = make_dir(c->data_dir)) != 0)
    return rc;
  if ((rc = store_open(c->db, c->data_dir, &e->store)) != 0) {
    log_error("engram: cannot open the store (%s): %s", c->db, eg_strerror(rc));
    return rc;
  }
  /* Only the Pinecone mode's keyword side searches the store's keyword index: without it,
     every memory written costs less (store_keyword_index). */
  if ((rc = store_keyword_index(e->store, strcmp(c->vectors, "pinecone") == 0)) != 0) {
    log_error("engram: cannot set up the store's keyword index: %s", eg_strerror(rc));
    return rc;
  }
  if ((rc = store_async_new(e->loop, e->store, &e->async)) != 0)
    return rc;
  if ((rc = auth_jwt_init(&e->jwt, c->jwt_secret, c->data_dir, c->token_ttl_s)) != 0)
    return rc;
  if ((rc = httpc_new(e->loop, &e->httpc)) != 0)
    return rc;

  if (strcmp(c->embedder, "hash") == 0) {
    e->embedder = mem_embedder_hash_new(e->loop);
  } else {
    bool gem = strcmp(c->embedder, "gemini") == 0;
    const char *key = gem ? c->gemini_api_key : c->openai_api_key;
    const char *url = gem ? c->gemini_base_url : c->openai_base_url;
    struct mem_remote_config ec = {.kind = c->embedder,
                                   .base_url = *url ? url : NULL,
                                   .api_key = *key ? key : NULL,
                                   .model = *c->embed_model ? c->embed_model : NULL};
    if ((rc = mem_embedder_remote_new(e->loop, e->httpc, &ec, &e->embedder)) != 0) {
      log_error("engram: embedder %s: %s", c->embedder, eg_strerror(rc));
      return rc;
    }
  }
  e->index = mem_index_new(e->embedder->dim, (size_t)c->memory_budget_mb << 20);
  if (strcmp(c->vectors, "pinecone") == 0) {
    struct mem_pinecone_config pc = {.host = c->pinecone_index_host,
                                     .api_key = c->pinecone_api_key};
    if ((rc = mem_pinecone_new(e->loop, e->httpc, &pc, &e->pinecone)) != 0) {
      log_error("engram: Pinecone (PINECONE_INDEX_HOST and PINECONE_API_KEY): %s",
                eg_strerror(rc));
      return rc;
    }
  }
  struct recall_deps rd = {.loop = e->loop,
                           .store = e->store,
                           .async = e->async,
                           .embedder = e->embedder,
                           .index = e->index,
                           .pinecone = e->pinecone,
                           .neighbours = true};
  if ((rc = recall_new(&rd, &e->recall)) != 0)
    return rc;

  struct llm_config lc;
  llm_config_defaults(&lc);
  llm_config_from_env(&lc); /* timeouts and tries (ENGRAM_LLM_TIMEOUT_MS, ENGRAM_LLM_MAX_TRIES) */
  lc.provider = c->llm;
  lc.model = *c->llm_model ? c->llm_model : NULL;
  lc.gemini_base_url = c->gemini_base_url;
  lc.gemini_api_key = c->gemini_api_key;
  lc.openai_base_url = c->openai_base_url;
  lc.openai_api_key = *c->openai_api_key ? c->openai_api_key : NULL;
  if ((rc = llm_provider_new(e->loop, e->httpc, &lc, &e->llm)) != 0) {
    log_error("engram: cannot set up the %s model provider (check its settings)", c->llm);
    return rc;
  }

  if (*c->redis_url) { /* several nodes: Redis fan-out, per-chat lock, invalidation */
    struct cluster_opts co = {.loop = e->loop, .redis_url = c->redis_url, .recall = e->recall};
    if ((rc = cluster_new(&co, &e->cluster)) != 0)
      return rc;
  }
  struct chat_deps cd = {.loop = e->loop,
                         .async = e->async,
                         .recall = e->recall,
                         .embedder = e->embedder,
                         .llm = e->llm,
                         .system_prompt = c->system_prompt,
                         .recall_k = (size_t)c->recall_k,
                         .history = (size_t)c->history,
                         .context_chars = (size_t)c->context_chars,
                         .max_content = (size_t)c->max_content,
                         .rate_per_min = (unsigned)c->rate_messages,
                         .lock = e->cluster ? cluster_chat_lock_ops(e->cluster) : NULL};
  if ((rc = chat_new(&cd, &e->chat)) != 0)
    return rc;

  struct sio_opts so;
  sio_opts_default(&so);
  so.eio.ping_interval_ms = (uint32_t)c->ping_interval_ms;
  so.eio.ping_timeout_ms = (uint32_t)c->ping_timeout_ms;
  so.eio.max_payload = (size_t)c->max_payload;
  if ((rc = sio_server_new(e->loop, &so, &e->io)) != 0)
    return rc;

  struct api_deps ad = {.loop = e->loop,
                        .store = e->store,
                        .async = e->async,
                        .jwt = &e->jwt,
                        .cookie_secure = c->cookie_secure,
                        .public_url = c->public_url,
                        .origins = c->origins,
                        .io = e->io,
                        .recall = e->recall,
                        .on_chat_deleted = on_chat_deleted,
                        .on_socket_user = on_socket_user,
                        .ud = e};
  if ((rc = api_new(&ad, &e->api)) != 0)
    return rc;
  struct sio_nsp *root = sio_of(e->io, "/");
  sio_use(root, api_sio_middleware, e->api);
  chat_attach(e->chat, root);
  if (e->cluster)
    cluster_attach(e->cluster, root); /* before any socket connects */
  sio_on(root, "echo", on_echo, e); /* binary arguments */
  sio_on_raw(root, "echo", on_echo_raw, e);

  e->router = http_router_new();
  if ((rc = http_router_add(e->router, HTTP_GET, "/healthz", on_healthz, e)) != 0 ||
      (rc = http_router_add(e->router, HTTP_GET, "/readyz", on_readyz, e)) != 0 ||
      (rc = web_register(e->router)) != 0 || /* before /socket.io/ + "*": first match wins */
      (rc = http_router_add(e->router, HTTP_GET, "/metrics", on_metrics, e)) != 0 ||
      (rc = http_router_add(e->router, HTTP_METHOD_UNKNOWN, "/socket.io/*",
                            api_socketio_handler, e->api)) != 0 ||
      (rc = api_register(e->api, e->router)) != 0) {
    log_error("engram: bad route: %s", eg_strerror(rc));
    return rc;
  }

  e->origins = split_origins(c->origins);
  struct http_server_opts ho = {.host = c->host, .port = (int)c->port};
  ho.limits.max_body = (size_t)c->max_body;
  ho.limits.header_timeout_ms = (uint64_t)c->header_timeout_ms;
  ho.limits.idle_timeout_ms = (uint64_t)c->idle_timeout_ms;
  ho.limits.ws_max_message = (size_t)c->max_payload;
  ho.limits.max_conn_per_addr = c->max_conn_per_ip > 0 ? (unsigned)c->max_conn_per_ip : 0;
  ho.cors_origins = (const char *const *)e->origins;
  ho.cors_credentials = true;
  ho.request_ids = true; /* X-Request-Id, and request_id in every log line of a request */
  ho.access_log = c->access_log;
  if ((rc = http_server_start(e->loop, &ho, http_router_dispatch, e->router, &e->http)) != 0) {
    log_error("engram: cannot listen on %s:%lld", c->host, c->port);
    return rc;
  }

  uv_timer_init(e->loop, &e->backfill);
  e->backfill.data = e;
  uv_timer_start(&e->backfill, on_backfill_timer, 1000, BACKFILL_EVERY_MS);
  return 0;
}

static int serve(struct engram *e) {
  e->loop = uv_default_loop();
  long nofile = net_raise_nofile();
  int rc = setup(e);
  if (rc) {
    log_error("engram: start-up failed: %s", eg_strerror(rc));
    return 1;
  }
  uv_signal_init(e->loop, &e->sigint);
  uv_signal_init(e->loop, &e->sigterm);
  e->sigint.data = e->sigterm.data = e;
  uv_signal_start(&e->sigint, on_signal, SIGINT);
  uv_signal_start(&e->sigterm, on_signal, SIGTERM);
  log_info("engram %s listening on http://%s:%d | store %s | embedder %s (%s) | vectors "
           "%s | model %s (%s) | open files limit %ld",
           engram_version(), e->cfg.host, http_server_port(e->http), store_describe(e->store),
           e->embedder->name, e->embedder->model, e->pinecone ? "pinecone" : "builtin",
           llm_provider_name(e->llm),
           llm_provider_model(e->llm), nofile);
  uv_run(e->loop, UV_RUN_DEFAULT);

  http_router_free(e->router);
  api_free(e->api);
  recall_free(e->recall);
  cluster_free(e->cluster);
  mem_index_free(e->index);
  chat_free(e->chat);
  uv_run(e->loop, UV_RUN_DEFAULT); /* the chat's timer close */
  store_close(e->store);
  auth_jwt_free(&e->jwt);
  for (char **p = e->origins; p && *p; p++)
    free(*p);
  free(e->origins);
  if (uv_loop_close(e->loop) != 0)
    log_warn("engram: loop closed with open handles");
  return e->exit_code;
}

static void usage(FILE *out) {
  fprintf(out,
          "engram %s: a real-time AI chat server with long-term memory\n\n"
          "Usage:\n"
          "  engram [serve] [--flag value ...]   run the server (http://localhost:3000)\n"
          "  engram user add EMAIL (--password-file F | --password-stdin) [--first X] "
          "[--last Y]\n"
          "  engram user list | engram user delete EMAIL\n"
          "  engram migrate                      apply schema migrations\n"
          "  engram export --user EMAIL          a user's chats and messages as JSON\n"
          "  engram import --user EMAIL FILE...  chats and messages from mongoexport files\n"
          "  engram memory search --user EMAIL [--k N] QUERY...\n"
          "  engram memory list --user EMAIL [--limit N] [--before ID]\n"
          "  engram memory forget --user EMAIL (--all | ID...)\n"
          "  engram --help | --version\n\n",
          engram_version());
  config_print_help(out);
}

int main(int argc, char **argv) {
  log_init_from_env();
  signal(SIGPIPE, SIG_IGN);
  const char *cmd = argc > 1 && strncmp(argv[1], "--", 2) != 0 ? argv[1] : "serve";
  int first = argc > 1 && strncmp(argv[1], "--", 2) != 0 ? 2 : 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--version")) {
      printf("engram %s\n", engram_version());
      return 0;
    }
  }
  struct engram e = {0};
  char **rest;
  int nrest;
  if (config_load(&e.cfg, argc, argv, first, &rest, &nrest, stderr) != 0) {
    config_free(&e.cfg);
    return 2;
  }
  int rc;
  struct cli_env env = {.db = e.cfg.db, .data_dir = e.cfg.data_dir, .in = stdin,
                        .out = stdout, .err = stderr};
  /* The operator commands take their own words: argv[0] is the command's name. */
  char **cargv = xcalloc((size_t)nrest + 2, sizeof *cargv);
  cargv[0] = (char *)cmd;
  for (int i = 0; i < nrest; i++)
    cargv[i + 1] = rest[i];
  if (!strcmp(cmd, "serve")) {
    if (nrest) {
      fprintf(stderr, "engram: unknown argument '%s' (see engram --help)\n", rest[0]);
      rc = 2;
    } else {
      rc = serve(&e);
    }
  } else if (!strcmp(cmd, "user")) {
    rc = cli_user(nrest + 1, cargv, &env);
  } else if (!strcmp(cmd, "migrate")) {
    rc = cli_migrate(nrest + 1, cargv, &env);
  } else if (!strcmp(cmd, "export")) {
    rc = cli_export(nrest + 1, cargv, &env);
  } else if (!strcmp(cmd, "memory")) {
    rc = cli_memory(nrest + 1, cargv, &env);
  } else if (!strcmp(cmd, "import")) {
    rc = cli_import(nrest + 1, cargv, &env);
  } else {
    fprintf(stderr, "engram: unknown command '%s' (see engram --help)\n", cmd);
    rc = 2;
  }
  free(cargv);
  config_free(&e.cfg);
  return rc;
}
