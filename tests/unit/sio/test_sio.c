/*
 * Unit tests for src/sio (and the eio session machine under it), seen from the server
 * side: a Socket.IO server runs on a libuv loop in a thread, and the test drives raw
 * Engine.IO long-polling requests at it over loopback (plain blocking sockets, no client
 * library), checking both the wire and what the application's callbacks observed:
 * middleware (async accept/refuse), acks both ways with timeout, rooms and broadcast with
 * except, disconnect reasons, connect timeout, malformed packets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include "http/http.h"
#include "sio/sio.h"
#include "test_time.h"

/* ---- server side (loop thread) -------------------------------------------------------------- */

static struct {
  uv_loop_t loop;
  uv_async_t stop;
  struct http_server *http;
  struct sio_server *io;
  pthread_t thread;
  int port;
  pthread_mutex_t mu;
  char log[8192];
} G;

static void logf_(const char *fmt, ...) {
  pthread_mutex_lock(&G.mu);
  size_t n = strlen(G.log);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(G.log + n, sizeof(G.log) - n, fmt, ap);
  va_end(ap);
  n = strlen(G.log);
  if (n + 1 < sizeof(G.log))
    strcat(G.log, "\n");
  pthread_mutex_unlock(&G.mu);
}

static bool log_has(const char *needle, int ms) {
  for (int i = 0; i <= test_ms(ms) / 10; i++) {
    pthread_mutex_lock(&G.mu);
    bool ok = strstr(G.log, needle) != NULL;
    pthread_mutex_unlock(&G.mu);
    if (ok)
      return true;
    usleep(10000);
  }
  return false;
}

/* Assertions on the loop thread must not longjmp into the test thread: log instead, and
   the test checks that no FAIL was logged. */
#define CHECK(expr)                                                                        \
  do {                                                                                     \
    if (!(expr))                                                                           \
      logf_("FAIL %s:%d %s", __FILE__, __LINE__, #expr);                                   \
  } while (0)

static void on_conn(struct sio_socket *s, void *ud) {
  (void)ud;
  logf_("conn %s", sio_nsp_name(sio_socket_nsp(s)));
}

static void on_disc(struct sio_socket *s, const char *reason, void *ud) {
  (void)ud, (void)s;
  logf_("disc %s", reason);
}

static void on_echo(struct sio_socket *s, const char *ev, json_t *args, int64_t ack, void *ud) {
  (void)ev, (void)ud;
  if (ack != SIO_NO_ACK)
    CHECK(sio_ack(s, ack, json_copy(args)) == 0);
}

static void on_join(struct sio_socket *s, const char *ev, json_t *args, int64_t ack, void *ud) {
  (void)ev, (void)ud, (void)args;
  CHECK(sio_join(s, "r") == 0);
  CHECK(sio_join(s, "r") == 0); /* twice is fine */
  CHECK(sio_in_room(s, "r"));
  if (ack != SIO_NO_ACK)
    CHECK(sio_ack(s, ack, NULL) == 0);
}

static void on_bcast(struct sio_socket *s, const char *ev, json_t *args, int64_t ack,
                     void *ud) {
  (void)ev, (void)ud, (void)ack;
  /* To room "r" and room "r2" (a member of both gets it once), except the sender. */
  const char *rooms[] = {"r", "r2"};
  struct sio_bcast to = {.rooms = rooms, .nrooms = 2, .except = s};
  int n = sio_broadcast(sio_socket_nsp(s), &to, "room", json_copy(args));
  logf_("bcast reached %d", n);
}

/* The same as JSON text (sio_broadcast_raw): the args re-serialised without brackets. */
static void on_rawbcast(struct sio_socket *s, const char *ev, json_t *args, int64_t ack,
                        void *ud) {
  (void)ev, (void)ud, (void)ack;
  const char *rooms[] = {"r", "r2"};
  struct sio_bcast to = {.rooms = rooms, .nrooms = 2, .except = s};
  char *t = json_dumps(args, JSON_COMPACT);
  size_t n = strlen(t);
  int r = sio_broadcast_raw(sio_socket_nsp(s), &to, "room", (struct slice){t + 1, n - 2});
  free(t);
  logf_("rawbcast reached %d", r);
  CHECK(sio_broadcast_raw(sio_socket_nsp(s), &to, "bad\"name", SLICE_LIT("1")) == EG_EINVAL);
  CHECK(sio_broadcast_raw(sio_socket_nsp(s), &to, "connect", SLICE_LIT("1")) == EG_EINVAL);
}

static void on_answer(struct sio_socket *s, int status, json_t *args, void *ud) {
  (void)ud;
  if (status == 0) {
    char *j = json_dumps(args, JSON_COMPACT);
    logf_("ack %s", j);
    free(j);
  } else {
    logf_("ack status %s socket %s", eg_errname(status), s ? "yes" : "no");
  }
}

static void on_ask(struct sio_socket *s, const char *ev, json_t *args, int64_t ack, void *ud) {
  (void)ev, (void)ud, (void)ack;
  json_int_t t = json_integer_value(json_array_get(args, 0));
  CHECK(sio_emit_ack(s, "q", json_pack("[i]", (int)t), (uint32_t)t, on_answer, NULL) == 0);
}

static void on_kick(struct sio_socket *s, const char *ev, json_t *args, int64_t ack, void *ud) {
  (void)ev, (void)ud, (void)ack, (void)args;
  sio_disconnect(s, true);
}

static void on_raw_echo(struct sio_socket *s, const char *ev, struct slice args, int64_t ack,
                        void *ud) {
  (void)ud;
  logf_("raw %s %.*s", ev, (int)args.len, args.p);
  if (ack != SIO_NO_ACK)
    CHECK(sio_ack_raw(s, ack, args) == 0);
  else
    CHECK(sio_emit_raw(s, "rawecho", args) == 0);
  CHECK(sio_emit_raw(s, "bad\"name", args) == EG_EINVAL);
}

struct later {
  uv_timer_t t;
  struct sio_socket *s;
  bool ok;
};
static void later_closed(uv_handle_t *h) { free(h->data); }
static void later_cb(uv_timer_t *t) {
  struct later *l = t->data;
  if (l->ok)
    sio_accept(l->s);
  else
    sio_refuse(l->s, "nope", json_pack("{si}", "code", 7));
  uv_close((uv_handle_t *)t, later_closed);
}

static void mw(struct sio_socket *s, const json_t *auth, void *ud) {
  (void)ud;
  const char *tok = json_string_value(json_object_get(auth, "token"));
  struct slice ua;
  logf_("mw ua=%s", sio_socket_header(s, "user-agent", &ua) ? "yes" : "no");
  struct later *l = calloc(1, sizeof(*l));
  l->s = s;
  l->ok = tok && strcmp(tok, "ok") == 0;
  uv_timer_init(&G.loop, &l->t);
  l->t.data = l;
  uv_timer_start(&l->t, later_cb, 20, 0);
}

static void on_stop_closed(void *ud) {
  (void)ud;
  http_server_stop(G.http, NULL, NULL);
}

static void on_stop(uv_async_t *a) {
  uv_close((uv_handle_t *)a, NULL);
  sio_server_close(G.io, on_stop_closed, NULL);
}

static void *loop_main(void *arg) {
  (void)arg;
  uv_run(&G.loop, UV_RUN_DEFAULT);
  return NULL;
}

static int setup(void **state) {
  (void)state;
  memset(&G, 0, sizeof(G));
  pthread_mutex_init(&G.mu, NULL);
  uv_loop_init(&G.loop);
  struct sio_opts o;
  sio_opts_default(&o);
  o.eio.ping_interval_ms = 2000;
  o.eio.ping_timeout_ms = 2000;
  o.connect_timeout_ms = 300;
  assert_int_equal(sio_server_new(&G.loop, &o, &G.io), 0);
  struct sio_nsp *root = sio_of(G.io, "/");
  assert_null(sio_of(G.io, "bad"));
  sio_on_connection(root, on_conn, NULL);
  sio_on_disconnect(root, on_disc, NULL);
  sio_on(root, "echo", on_echo, NULL);
  sio_on(root, "join", on_join, NULL);
  sio_on(root, "bcast", on_bcast, NULL);
  sio_on(root, "rawbcast", on_rawbcast, NULL);
  sio_on(root, "ask", on_ask, NULL);
  sio_on(root, "kick", on_kick, NULL);
  sio_on_raw(root, "rawecho", on_raw_echo, NULL);
  struct sio_nsp *m = sio_of(G.io, "/mw");
  sio_use(m, mw, NULL);
  sio_on_connection(m, on_conn, NULL);
  struct http_server_opts ho = {0};
  ho.host = "127.0.0.1";
  assert_int_equal(http_server_start(&G.loop, &ho, sio_http_handler, G.io, &G.http), 0);
  G.port = http_server_port(G.http);
  uv_async_init(&G.loop, &G.stop, on_stop);
  pthread_create(&G.thread, NULL, loop_main, NULL);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  pthread_mutex_lock(&G.mu);
  bool failed = strstr(G.log, "FAIL") != NULL;
  pthread_mutex_unlock(&G.mu);
  if (failed)
    fprintf(stderr, "server-side checks failed:\n%s", G.log);
  uv_async_send(&G.stop);
  pthread_join(G.thread, NULL);
  assert_int_equal(uv_loop_close(&G.loop), 0);
  pthread_mutex_destroy(&G.mu);
  return failed ? -1 : 0;
}

/* ---- client side (test thread): raw HTTP long-polling ------------------------------------------- */

/* One HTTP/1.1 request with Connection: close; returns the status, body in out. */
static int http(const char *method, const char *qs, const char *body, char *out, size_t outlen) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)G.port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char req[4096];
  size_t bl = body ? strlen(body) : 0;
  int n = snprintf(req, sizeof(req),
                   "%s /socket.io/?EIO=4&transport=polling%s HTTP/1.1\r\nHost: x\r\n"
                   "User-Agent: unit\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s",
                   method, qs, bl, body ? body : "");
  assert_int_equal(write(fd, req, (size_t)n), n);
  static char resp[1 << 16];
  size_t got = 0;
  ssize_t r;
  while ((r = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
    got += (size_t)r;
  close(fd);
  resp[got] = 0;
  int status = 0;
  sscanf(resp, "HTTP/1.1 %d", &status);
  char *b = strstr(resp, "\r\n\r\n");
  snprintf(out, outlen, "%s", b ? b + 4 : "");
  return status;
}

struct client {
  char qs[64];
};

static void handshake(struct client *c) {
  char out[1024];
  assert_int_equal(http("GET", "", NULL, out, sizeof(out)), 200);
  assert_int_equal(out[0], '0');
  char *sid = strstr(out, "\"sid\":\"");
  assert_non_null(sid);
  snprintf(c->qs, sizeof(c->qs), "&sid=%.20s", sid + 7);
}

static void post(struct client *c, const char *payload) {
  char out[64];
  assert_int_equal(http("POST", c->qs, payload, out, sizeof(out)), 200);
  assert_string_equal(out, "ok");
}

static void poll_expect(struct client *c, const char *prefix) {
  char out[4096];
  assert_int_equal(http("GET", c->qs, NULL, out, sizeof(out)), 200);
  if (strncmp(out, prefix, strlen(prefix)) != 0)
    fail_msg("poll got \"%s\", expected prefix \"%s\"", out, prefix);
}

static void connect_root(struct client *c) {
  handshake(c);
  post(c, "40");
  poll_expect(c, "40{\"sid\":\"");
}

/* ---- tests ---------------------------------------------------------------------------------------- */

static void test_echo_ack(void **state) {
  (void)state;
  struct client c;
  connect_root(&c);
  assert_true(log_has("conn /", 1000));
  post(&c, "421[\"echo\",\"x\",{\"y\":[1,2]}]\x1e" "42[\"echo\",\"no ack\"]\x1e" "427[\"echo\"]");
  poll_expect(&c, "431[\"x\",{\"y\":[1,2]}]\x1e" "437[]");
  post(&c, "41");
  assert_true(log_has("disc client namespace disconnect", 1000));
}

static void test_middleware(void **state) {
  (void)state;
  struct client c;
  handshake(&c);
  post(&c, "40/mw,{\"token\":\"bad\"}");
  poll_expect(&c, "44/mw,{\"message\":\"nope\",\"data\":{\"code\":7}}");
  assert_true(log_has("mw ua=yes", 1000));
  post(&c, "40/mw,{\"token\":\"ok\"}");
  poll_expect(&c, "40/mw,{\"sid\":\"");
  assert_true(log_has("conn /mw", 1000));
  post(&c, "40/nope,");
  poll_expect(&c, "44/nope,{\"message\":\"Invalid namespace\"}");
  post(&c, "1"); /* Engine.IO close: the /mw socket goes with "transport close" */
}

static void test_rooms(void **state) {
  (void)state;
  struct client a, b, s;
  connect_root(&a);
  connect_root(&b);
  connect_root(&s);
  post(&a, "420[\"join\"]");
  poll_expect(&a, "430[]");
  post(&b, "420[\"join\"]");
  poll_expect(&b, "430[]");
  post(&a, "42[\"bcast\",\"hi\"]");
  assert_true(log_has("bcast reached 1", 1000)); /* b only: a excluded, s not in r */
  poll_expect(&b, "42[\"room\",\"hi\"]");
  post(&s, "42[\"bcast\",\"all\"]");
  assert_true(log_has("bcast reached 2", 1000));
  poll_expect(&a, "42[\"room\",\"all\"]");
  poll_expect(&b, "42[\"room\",\"all\"]");
  post(&s, "421[\"echo\",1]"); /* s did not receive its own broadcast */
  poll_expect(&s, "431[1]");
  /* The raw broadcast: the same bytes, the same recipients. */
  post(&a, "42[\"rawbcast\",{\"k\":\"v\\\"q\"},2]");
  assert_true(log_has("rawbcast reached 1", 1000));
  poll_expect(&b, "42[\"room\",{\"k\":\"v\\\"q\"},2]");
  post(&s, "42[\"rawbcast\"]");
  assert_true(log_has("rawbcast reached 2", 1000));
  poll_expect(&a, "42[\"room\"]");
  poll_expect(&b, "42[\"room\"]");
  post(&s, "421[\"echo\",2]");
  poll_expect(&s, "431[2]");
  post(&a, "1");
  post(&b, "1");
  post(&s, "1");
}

static void test_server_ack(void **state) {
  (void)state;
  struct client c;
  connect_root(&c);
  post(&c, "42[\"ask\",1000]");
  poll_expect(&c, "420[\"q\",1000]");
  post(&c, "430[\"answer\",2]");
  assert_true(log_has("ack [\"answer\",2]", 1000));
  post(&c, "42[\"ask\",100]");
  poll_expect(&c, "421[\"q\",100]");
  assert_true(log_has("ack status TIMEOUT socket yes", 1000));
  post(&c, "431[\"late\"]"); /* a late ack is ignored */
  post(&c, "42[\"ask\",5000]");
  poll_expect(&c, "422[\"q\",5000]");
  post(&c, "42[\"kick\"]"); /* sio_disconnect(close): pending acks fail with CLOSED */
  assert_true(log_has("ack status CLOSED socket no", 1000));
  assert_true(log_has("disc server namespace disconnect", 1000));
  poll_expect(&c, "41\x1e" "1");
}

static void test_timeouts_and_errors(void **state) {
  (void)state;
  char out[256];
  struct client c;
  handshake(&c); /* no CONNECT: closed after connect_timeout (300 ms) */
  usleep(500000); /* (not scaled: the poll below waits for the close anyway, and past the
                     4 s ping window the session would be gone) */
  poll_expect(&c, "1");
  assert_int_equal(http("GET", c.qs, NULL, out, sizeof(out)), 400);
  assert_string_equal(out, "{\"code\":1,\"message\":\"Session ID unknown\"}");

  struct client d;
  connect_root(&d);
  post(&d, "42{\"not\":\"an array\"}"); /* malformed: the connection closes */
  assert_true(log_has("disc forced close", 1000));
  poll_expect(&d, "1");
}

static void test_raw_fast_path(void **state) {
  (void)state;
  struct client c;
  connect_root(&c);
  post(&c, "421[\"rawecho\",\"hi\",{\"a\":[1,2]}]");
  poll_expect(&c, "431[\"hi\",{\"a\":[1,2]}]");
  assert_true(log_has("raw rawecho \"hi\",{\"a\":[1,2]}", 1000));
  post(&c, "42[\"rawecho\"]");
  poll_expect(&c, "42[\"rawecho\"]");
  /* Outside the scanner's subset: the slow path re-serialises for the raw handler. */
  post(&c, "422[\"rawecho\",\"\\u0041\",1234567890123456789]");
  poll_expect(&c, "432[\"A\",1234567890123456789]");
  /* Malformed JSON is still a protocol error (the slow path decides). */
  post(&c, "42[\"rawecho\",]");
  assert_true(log_has("disc forced close", 1000));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_echo_ack, setup, teardown),
      cmocka_unit_test_setup_teardown(test_middleware, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rooms, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_ack, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeouts_and_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_raw_fast_path, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
