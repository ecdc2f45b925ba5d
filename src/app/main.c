/*
 * engram: the chat server program. Stage 1 (transport only): GET /healthz and the
 * Socket.IO endpoint /socket.io/ with the diagnostic "echo" event (acks with its data,
 * or emits "echo" back when no ack is asked). PORT (default 3000). The app module takes
 * this file over to add configuration, REST routes and the chat pipeline.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "app/app.h"
#include "base/base.h"
#include "http/http.h"
#include "net/net.h"
#include "sio/sio.h"

struct engram {
  uv_loop_t *loop;
  struct http_server *http;
  struct http_router *router;
  struct sio_server *io;
  uv_signal_t sigint, sigterm;
  bool stopping;
};

static void on_echo(struct sio_socket *s, const char *ev, json_t *args, int64_t ack, void *ud) {
  (void)ev, (void)ud;
  int rc = ack != SIO_NO_ACK ? sio_ack(s, ack, json_copy(args))
                             : sio_emit(s, "echo", json_copy(args));
  if (rc != 0)
    log_debug("engram: echo failed: %s", eg_strerror(rc));
}

static void on_healthz(struct http_req *req, void *ud) {
  (void)ud;
  if (http_respond_json(req, 200, "{\"status\":\"ok\"}") != 0)
    log_debug("engram: healthz answer failed");
}

static void on_sio_closed(void *ud) {
  struct engram *e = ud;
  http_server_stop(e->http, NULL, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  struct engram *e = h->data;
  if (e->stopping)
    return;
  e->stopping = true;
  log_info("engram: shutting down");
  uv_close((uv_handle_t *)&e->sigint, NULL);
  uv_close((uv_handle_t *)&e->sigterm, NULL);
  sio_server_close(e->io, on_sio_closed, e);
}

int main(void) {
  log_init_from_env();
  signal(SIGPIPE, SIG_IGN);
  struct engram e = {0};
  e.loop = uv_default_loop();
  const char *port_env = getenv("PORT");
  int port = port_env && *port_env ? atoi(port_env) : 3000;
  long nofile = net_raise_nofile();

  struct sio_opts so;
  sio_opts_default(&so);
  if (sio_server_new(e.loop, &so, &e.io) != 0) {
    log_error("engram: cannot create the Socket.IO server");
    return 1;
  }
  sio_on(sio_of(e.io, "/"), "echo", on_echo, &e);

  e.router = http_router_new();
  if (http_router_add(e.router, HTTP_GET, "/healthz", on_healthz, &e) != 0 ||
      http_router_add(e.router, HTTP_METHOD_UNKNOWN, "/socket.io/*", sio_http_handler, e.io) !=
          0) {
    log_error("engram: bad route");
    return 1;
  }
  struct http_server_opts ho = {0};
  ho.port = port;
  if (http_server_start(e.loop, &ho, http_router_dispatch, e.router, &e.http) != 0) {
    log_error("engram: cannot listen on port %d", port);
    return 1;
  }
  uv_signal_init(e.loop, &e.sigint);
  uv_signal_init(e.loop, &e.sigterm);
  e.sigint.data = e.sigterm.data = &e;
  uv_signal_start(&e.sigint, on_signal, SIGINT);
  uv_signal_start(&e.sigterm, on_signal, SIGTERM);
  log_info("engram %s listening on port %d (open files limit %ld)", engram_version(),
           http_server_port(e.http), nofile);
  uv_run(e.loop, UV_RUN_DEFAULT);
  http_router_free(e.router);
  if (uv_loop_close(e.loop) != 0)
    log_warn("engram: loop closed with open handles");
  return 0;
}
