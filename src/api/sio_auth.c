/* Socket.IO handshake auth: the Engine.IO Origin check and the connect middleware. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_int.h"
#include "http/http.h"
#include "sio/sio.h"

void api_socketio_handler(struct http_req *req, void *ud) {
  const struct api_deps *d = api__deps(ud);
  struct slice origin = {"", 0}, host = {"", 0};
  if (http_req_header(req, "Origin", &origin)) {
    (void)http_req_header(req, "Host", &host);
    if (!auth_origin_allowed(origin, host, d->cookie_secure ? "https" : "http", d->public_url,
                             d->origins)) {
      api__stats(ud)->origin_refused++;
      log_info("api: refused a Socket.IO request from origin %.*s",
               (int)EG_MIN(origin.len, 200), origin.p);
      if (http_respond_json(req, 403, "{\"code\":4,\"message\":\"Origin not allowed\"}") != 0)
        log_debug("api: 403 answer failed");
      return;
    }
  }
  sio_http_handler(req, d->io);
}

struct hs {
  struct sio_socket *s;
  struct api *a;
};

static void hs_done(void *arg, int status, const char *user_id, const char *message) {
  struct hs *h = arg;
  const struct api_deps *d = api__deps(h->a);
  struct api_stats *st = api__stats(h->a);
  if (status == 0)
    st->handshakes_ok++;
  else if (message == NULL || strcmp(message, AUTH_MSG_INVALID_TOKEN) == 0)
    st->handshakes_invalid++;
  else if (strcmp(message, AUTH_MSG_NO_TOKEN) == 0)
    st->handshakes_no_token++;
  else if (strcmp(message, AUTH_MSG_USER_NOT_FOUND) == 0)
    st->handshakes_no_user++;
  if (status == 0) {
    /* The socket is still connecting here (sio_socket_connected() is false until the
       accept), and stays allocated until sio_accept. If its client left during the
       lookup, sio_accept only frees it: whatever on_socket_user attached then is the
       hook owner's to release (sio has no public "still pending" test yet). */
    if (d->on_socket_user != NULL)
      d->on_socket_user(d->ud, h->s, user_id);
    sio_accept(h->s);
  } else {
    sio_refuse(h->s, message ? message : AUTH_MSG_INVALID_TOKEN, NULL);
  }
  free(h);
}

void api_sio_credentials(struct sio_socket *s, const json_t *auth, struct slice *cookie,
                         struct slice *token, struct slice *authorization) {
  *cookie = *token = *authorization = (struct slice){"", 0};
  (void)sio_socket_header(s, "cookie", cookie);
  (void)sio_socket_header(s, "authorization", authorization);
  json_t *t = json_is_object(auth) ? json_object_get(auth, "token") : NULL;
  if (json_is_string(t))
    *token = (struct slice){json_string_value(t), json_string_length(t)};
}

void api_sio_middleware(struct sio_socket *s, const json_t *auth, void *ud) {
  struct slice cookie, tok, authz;
  api_sio_credentials(s, auth, &cookie, &tok, &authz);
  struct hs *h = xmalloc(sizeof *h);
  h->s = s;
  h->a = ud;
  if (api_handshake(ud, cookie, tok, authz, hs_done, h) != 0) {
    sio_refuse(s, "Server shutting down", NULL);
    free(h);
  }
}
