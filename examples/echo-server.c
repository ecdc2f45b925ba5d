/*
 * echo-server: the Socket.IO reference test server (the one socket.io-protocol's test
 * suite and the socket.io-client tests run against), on engram's transport library.
 *
 *   PORT (default 3000), path /socket.io/, pingInterval 300 ms, pingTimeout 200 ms,
 *   maxPayload 1000000, connectTimeout 1000 ms, CORS origin "*".
 *   Namespaces "/" and "/custom":
 *     on connection: emit "auth" with the handshake auth payload
 *     "message" (...args)          -> emit "message-back" (...args)
 *     "message-with-ack" (...args) -> ack (...args)
 *   Binary attachments are kept as binary both ways.
 *
 * Extensions used by engram's tests (not in the reference server):
 *   "/refuse" namespace: its middleware refuses every connection, asynchronously (after
 *       10 ms, as if a database had been asked), with the message "refused by middleware";
 *       the client sees connect_error with that message.
 *   "server-ack" (timeoutMs, ...args): the server emits "ack-request" (...args) with an ack
 *       callback and that timeout; when the client acks (...r) it emits "ack-response"
 *       (...r); when the timeout passes it emits "ack-timeout" (timeoutMs).
 *   "join" (room) / "leave" (room): join or leave a room, then ack ().
 *   "to-room" (room, ...args): "room-message" (room, ...args) to every member of room.
 *   "to-others" (...args): "others-message" (...args) to the namespace except the sender.
 *   "disconnect-me": the server disconnects this socket (client sees "io server
 *       disconnect").
 *
 * Environment overrides (tests under load; the defaults are the reference's):
 *   PING_INTERVAL, PING_TIMEOUT, CONNECT_TIMEOUT (milliseconds), HOST (127.0.0.1).
 *
 * SIGINT/SIGTERM stop it cleanly (everything freed, exit 0).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "base/base.h"
#include "http/http.h"
#include "sio/sio.h"

struct app {
  uv_loop_t *loop;
  struct http_server *http;
  struct sio_server *io;
  uv_signal_t sigint, sigterm;
  bool stopping;
};

/* A copy of args (handlers get borrowed JSON; emitting steals). */
static json_t *dup_args(json_t *args) { return json_copy(args); }

static void on_connection(struct sio_socket *s, void *ud) {
  (void)ud;
  const json_t *auth = sio_socket_auth(s);
  json_t *args = json_array();
  json_array_append_new(args, auth ? json_deep_copy(auth) : json_object());
  if (sio_emit(s, "auth", args) != 0)
    log_debug("echo-server: emit auth failed");
}

static void on_message(struct sio_socket *s, const char *ev, json_t *args, int64_t ack,
                       void *ud) {
  (void)ev, (void)ack, (void)ud;
  if (sio_emit(s, "message-back", dup_args(args)) != 0)
    log_debug("echo-server: emit failed");
}

static void on_message_with_ack(struct sio_socket *s, const char *ev, json_t *args, int64_t ack,
                                void *ud) {
  (void)ev, (void)ud;
  if (ack != SIO_NO_ACK && sio_ack(s, ack, dup_args(args)) != 0)
    log_debug("echo-server: ack failed");
}

/* The same two handlers on the fast path: plain-JSON events never become jansson trees
   (binary ones still reach the tree handlers above). */
static void on_message_raw(struct sio_socket *s, const char *ev, struct slice args,
                           int64_t ack, void *ud) {
  (void)ev, (void)ack, (void)ud;
  if (sio_emit_raw(s, "message-back", args) != 0)
    log_debug("echo-server: emit failed");
}

static void on_message_with_ack_raw(struct sio_socket *s, const char *ev, struct slice args,
                                    int64_t ack, void *ud) {
  (void)ev, (void)ud;
  if (ack != SIO_NO_ACK && sio_ack_raw(s, ack, args) != 0)
    log_debug("echo-server: ack failed");
}

struct ack_ctx {
  uint32_t timeout_ms;
};

static void on_ack_answer(struct sio_socket *s, int status, json_t *args, void *ud) {
  struct ack_ctx *ctx = ud;
  if (s && status == 0) {
    if (sio_emit(s, "ack-response", json_copy(args)) != 0)
      log_debug("echo-server: emit failed");
  } else if (s && status == EG_ETIMEOUT) {
    if (sio_emit(s, "ack-timeout", json_pack("[I]", (json_int_t)ctx->timeout_ms)) != 0)
      log_debug("echo-server: emit failed");
  }
  free(ctx);
}

static void on_server_ack(struct sio_socket *s, const char *ev, json_t *args, int64_t ack,
                          void *ud) {
  (void)ev, (void)ack, (void)ud;
  json_t *a = json_copy(args);
  json_int_t t = json_integer_value(json_array_get(a, 0));
  json_array_remove(a, 0);
  struct ack_ctx *ctx = xmalloc(sizeof(*ctx));
  ctx->timeout_ms = t > 0 && t < 600000 ? (uint32_t)t : 1000;
  if (sio_emit_ack(s, "ack-request", a, ctx->timeout_ms, on_ack_answer, ctx) != 0)
    free(ctx);
}

static void on_join(struct sio_socket *s, const char *ev, json_t *args, int64_t ack, void *ud) {
  (void)ud;
  const char *room = json_string_value(json_array_get(args, 0));
  if (room) {
    if (strcmp(ev, "join") == 0) {
      if (sio_join(s, room) != 0)
        log_debug("echo-server: join failed");
    } else {
      sio_leave(s, room);
    }
  }
  if (ack != SIO_NO_ACK && sio_ack(s, ack, NULL) != 0)
    log_debug("echo-server: ack failed");
}

static void on_to_room(struct sio_socket *s, const char *ev, json_t *args, int64_t ack,
                       void *ud) {
  (void)ev, (void)ack, (void)ud;
  const char *room = json_string_value(json_array_get(args, 0));
  if (!room)
    return;
  struct sio_bcast to = {.room = room};
  if (sio_broadcast(sio_socket_nsp(s), &to, "room-message", json_copy(args)) < 0)
    log_debug("echo-server: broadcast failed");
}

static void on_to_others(struct sio_socket *s, const char *ev, json_t *args, int64_t ack,
                         void *ud) {
  (void)ev, (void)ack, (void)ud;
  struct sio_bcast to = {.except = s};
  if (sio_broadcast(sio_socket_nsp(s), &to, "others-message", json_copy(args)) < 0)
    log_debug("echo-server: broadcast failed");
}

static void on_disconnect_me(struct sio_socket *s, const char *ev, json_t *args, int64_t ack,
                             void *ud) {
  (void)ev, (void)args, (void)ack, (void)ud;
  sio_disconnect(s, false);
}

/* ---- /refuse: an asynchronous refusing middleware ---------------------------------------- */

struct refuse_ctx {
  uv_timer_t timer;
  struct sio_socket *s;
};

static void refuse_closed(uv_handle_t *h) { free(h->data); }

static void refuse_later(uv_timer_t *t) {
  struct refuse_ctx *ctx = t->data;
  sio_refuse(ctx->s, "refused by middleware", NULL);
  uv_close((uv_handle_t *)t, refuse_closed);
}

static void refuse_mw(struct sio_socket *s, const json_t *auth, void *ud) {
  (void)auth;
  struct app *app = ud;
  struct refuse_ctx *ctx = xcalloc(1, sizeof(*ctx));
  ctx->s = s;
  uv_timer_init(app->loop, &ctx->timer);
  ctx->timer.data = ctx;
  uv_timer_start(&ctx->timer, refuse_later, 10, 0);
}

static void setup_nsp(struct sio_nsp *n) {
  sio_on_connection(n, on_connection, NULL);
  sio_on(n, "message", on_message, NULL);
  sio_on(n, "message-with-ack", on_message_with_ack, NULL);
  sio_on_raw(n, "message", on_message_raw, NULL);
  sio_on_raw(n, "message-with-ack", on_message_with_ack_raw, NULL);
  sio_on(n, "server-ack", on_server_ack, NULL);
  sio_on(n, "join", on_join, NULL);
  sio_on(n, "leave", on_join, NULL);
  sio_on(n, "to-room", on_to_room, NULL);
  sio_on(n, "to-others", on_to_others, NULL);
  sio_on(n, "disconnect-me", on_disconnect_me, NULL);
}

/* ---- HTTP and shutdown ---------------------------------------------------------------------- */

static void on_request(struct http_req *req, void *ud) {
  struct app *app = ud;
  struct slice path = http_req_path(req);
  if (path.len >= 11 && memcmp(path.p, "/socket.io/", 11) == 0) {
    sio_http_handler(req, app->io);
    return;
  }
  if (http_respond_error(req, 404, "Not found") != 0)
    log_debug("echo-server: respond failed");
}

static void on_sio_closed(void *ud) {
  struct app *app = ud;
  app->io = NULL;
  http_server_stop(app->http, NULL, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  struct app *app = h->data;
  if (app->stopping)
    return;
  app->stopping = true;
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
  sio_server_close(app->io, on_sio_closed, app);
}

static uint32_t env_ms(const char *name, uint32_t dflt) {
  const char *v = getenv(name);
  long n = v && *v ? strtol(v, NULL, 10) : 0;
  return n > 0 && n < 3600000 ? (uint32_t)n : dflt;
}

int main(void) {
  log_init_from_env();
  signal(SIGPIPE, SIG_IGN);
  struct app app = {0};
  app.loop = uv_default_loop();
  const char *port_env = getenv("PORT");
  int port = port_env && *port_env ? atoi(port_env) : 3000;

  struct sio_opts so;
  sio_opts_default(&so);
  so.eio.ping_interval_ms = env_ms("PING_INTERVAL", 300);
  so.eio.ping_timeout_ms = env_ms("PING_TIMEOUT", 200);
  so.eio.max_payload = 1000000;
  so.connect_timeout_ms = env_ms("CONNECT_TIMEOUT", 1000);
  if (sio_server_new(app.loop, &so, &app.io) != 0) {
    log_error("echo-server: cannot create the Socket.IO server");
    return 1;
  }
  setup_nsp(sio_of(app.io, "/"));
  setup_nsp(sio_of(app.io, "/custom"));
  struct sio_nsp *refuse = sio_of(app.io, "/refuse");
  setup_nsp(refuse);
  sio_use(refuse, refuse_mw, &app);

  static const char *const any_origin[] = {"*", NULL};
  struct http_server_opts ho = {0};
  ho.host = "127.0.0.1";
  if (getenv("HOST"))
    ho.host = getenv("HOST");
  ho.port = port;
  ho.cors_origins = any_origin;
  ho.limits.max_body = 2 * so.eio.max_payload;
  ho.limits.ws_max_message = so.eio.max_payload + 16;
  if (http_server_start(app.loop, &ho, on_request, &app, &app.http) != 0) {
    log_error("echo-server: cannot listen on port %d", port);
    return 1;
  }
  uv_signal_init(app.loop, &app.sigint);
  uv_signal_init(app.loop, &app.sigterm);
  app.sigint.data = app.sigterm.data = &app;
  uv_signal_start(&app.sigint, on_signal, SIGINT);
  uv_signal_start(&app.sigterm, on_signal, SIGTERM);
  log_info("echo-server listening on %s:%d", ho.host, http_server_port(app.http));
  uv_run(app.loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(app.loop);
  if (rc != 0)
    log_warn("echo-server: loop closed with open handles");
  return 0;
}
