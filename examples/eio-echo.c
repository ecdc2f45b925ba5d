/*
 * eio-echo: the Engine.IO reference test server on engram's transport library: path
 * /engine.io/, PORT (default 3000), pingInterval 300 ms, pingTimeout 200 ms, maxPayload
 * 1000000, CORS origin "*". Every message packet goes back on the same session unchanged
 * (text stays text, binary stays binary). SIGINT/SIGTERM stop it cleanly.
 *
 * Extension for engram's tests: a handshake whose Origin is "http://forbidden.example" is
 * refused by the allow_request hook (403 {"code":4,"message":"Origin not allowed"}).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/base.h"
#include "eio/eio.h"
#include "http/http.h"

struct app {
  uv_loop_t *loop;
  struct http_server *http;
  struct eio_server *eio;
  uv_signal_t sigint, sigterm;
  bool stopping;
};

static int allow_request(struct http_req *req, void *ud, const char **message) {
  (void)ud;
  struct slice origin;
  if (http_req_header(req, "origin", &origin) &&
      slice_eq_cstr(origin, "http://forbidden.example")) {
    *message = "Origin not allowed";
    return -1;
  }
  return 0;
}

static void on_open(struct eio_session *s, struct http_req *req, void *ud) {
  (void)s, (void)req, (void)ud;
}

static void on_message(struct eio_session *s, bool binary, const uint8_t *data, size_t len,
                       void *ud) {
  (void)ud;
  int rc = binary ? eio_send_binary(s, data, len) : eio_send_text(s, data, len);
  if (rc != 0)
    log_debug("eio-echo: send failed: %s", eg_strerror(rc));
}

static void on_close(struct eio_session *s, const char *reason, void *ud) {
  (void)ud;
  log_debug("eio-echo: %s closed: %s", eio_session_id(s), reason);
}

static void on_request(struct http_req *req, void *ud) {
  struct app *app = ud;
  struct slice path = http_req_path(req);
  if (path.len >= 11 && memcmp(path.p, "/engine.io/", 11) == 0) {
    eio_http_handler(req, app->eio);
    return;
  }
  if (http_respond_error(req, 404, "Not found") != 0)
    log_debug("eio-echo: respond failed");
}

static void on_eio_closed(void *ud) {
  struct app *app = ud;
  app->eio = NULL;
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
  eio_server_close(app->eio, on_eio_closed, app);
}

int main(void) {
  log_init_from_env();
  signal(SIGPIPE, SIG_IGN);
  struct app app = {0};
  app.loop = uv_default_loop();
  const char *port_env = getenv("PORT");
  int port = port_env && *port_env ? atoi(port_env) : 3000;

  struct eio_opts eo;
  eio_opts_default(&eo);
  eo.ping_interval_ms = 300;
  eo.ping_timeout_ms = 200;
  eo.max_payload = 1000000;
  eo.allow_request = allow_request;
  static const struct eio_callbacks cbs = {on_open, on_message, on_close};
  if (eio_server_new(app.loop, &eo, &cbs, &app, &app.eio) != 0) {
    log_error("eio-echo: cannot create the Engine.IO server");
    return 1;
  }
  static const char *const any_origin[] = {"*", NULL};
  struct http_server_opts ho = {0};
  ho.host = getenv("HOST") ? getenv("HOST") : "127.0.0.1";
  ho.port = port;
  ho.cors_origins = any_origin;
  ho.limits.max_body = 2 * eo.max_payload;
  ho.limits.ws_max_message = eo.max_payload + 16;
  if (http_server_start(app.loop, &ho, on_request, &app, &app.http) != 0) {
    log_error("eio-echo: cannot listen on port %d", port);
    return 1;
  }
  uv_signal_init(app.loop, &app.sigint);
  uv_signal_init(app.loop, &app.sigterm);
  app.sigint.data = app.sigterm.data = &app;
  uv_signal_start(&app.sigint, on_signal, SIGINT);
  uv_signal_start(&app.sigterm, on_signal, SIGTERM);
  log_info("eio-echo listening on %s:%d", ho.host, http_server_port(app.http));
  uv_run(app.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(app.loop) != 0)
    log_warn("eio-echo: loop closed with open handles");
  return 0;
}
