/*
 * The HTTP server and WebSocket connections over real sockets: the server runs on port 0
 * on a uv loop in a thread; the tests talk to it with plain blocking sockets.
 * Covers keep-alive, pipelining order, 431, 413, 408 slow-loris, idle timeout, 404/405,
 * 501/400/505, HTTP/1.0 close, abort callbacks, cookies/query/params, CORS, static files,
 * large responses, and WebSocket upgrade, echo, fragmentation, ping, close, 1009, 1002, 1007.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "http/http.h"
#include "test_time.h"

/* ---- the server under test ------------------------------------------------------------- */

static uv_loop_t loop;
static uv_thread_t thread;
static uv_async_t stop_async;
static struct http_server *server;
static struct http_router *router;
static int port;
static _Atomic int aborts;
static _Atomic int ws_closes;
static _Atomic int ws_last_code;
static _Atomic int ws_messages;
static _Atomic int server_closed;
static _Atomic int srv_failures;
static _Atomic int flood_toobig;

/* cmocka asserts may not run on the loop thread: count failures, check them after. */
#define SRV_CHECK(x)                                                                       \
  do {                                                                                     \
    if (!(x)) {                                                                            \
      fprintf(stderr, "server-side check failed: %s (line %d)\n", #x, __LINE__);          \
      srv_failures++;                                                                      \
    }                                                                                      \
  } while (0)

static void h_hello(struct http_req *r, void *ud) {
  (void)ud;
  SRV_CHECK(http_respond(r, 200, "text/plain", "hello", 5) == 0);
}

static void h_echo(struct http_req *r, void *ud) {
  (void)ud;
  struct slice b = http_req_body(r);
  if (http_respond(r, 200, "application/octet-stream", b.p, b.len) != 0)
    log_debug("test: client gone");
}

static void slow_fire(uv_timer_t *t) {
  struct http_req *r = t->data;
  if (http_respond(r, 200, "text/plain", "slow", 4) != 0)
    log_debug("test: client gone");
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void h_slow(struct http_req *r, void *ud) {
  (void)ud;
  uv_timer_t *t = xmalloc(sizeof *t);
  uv_timer_init(http_req_loop(r), t);
  t->data = r;
  uv_timer_start(t, slow_fire, 100, 0);
}

static void hold_abort(struct http_req *r, void *ud) {
  (void)ud;
  /* answering inside the abort callback is a harmless no-op */
  SRV_CHECK(http_respond(r, 200, NULL, "x", 1) == EG_ECLOSED);
  aborts++;
}

static void h_hold(struct http_req *r, void *ud) {
  (void)ud;
  http_req_on_abort(r, hold_abort, NULL);
}

static void h_info(struct http_req *r, void *ud) {
  (void)ud;
  struct slice tok = {"", 0}, q = {"", 0}, id = {"", 0}, path = http_req_path(r);
  (void)http_req_cookie(r, "token", &tok);
  (void)http_req_query(r, "q", &q);
  (void)http_req_param(r, "id", &id);
  if (!http_req_param(r, "*", &id) && id.len == 0)
    id = (struct slice){"", 0};
  char body[512];
  int n = snprintf(body, sizeof body, "path=%.*s token=%.*s q=%.*s id=%.*s remote=%s",
                   (int)path.len, path.p, (int)tok.len, tok.p, (int)q.len, q.p, (int)id.len,
                   id.p, strncmp(http_req_remote(r), "127.0.0.1:", 10) == 0 ? "ok" : "bad");
  struct buf sc;
  buf_init(&sc, 512);
  struct http_set_cookie c = {.name = "token", .value = "abc", .path = "/", .max_age = -1,
                              .http_only = true, .same_site = HTTP_SAMESITE_LAX};
  SRV_CHECK(http_set_cookie_build(&c, &sc) == 0);
  struct http_header h = {"Set-Cookie", (char *)sc.data};
  SRV_CHECK(http_respond_ex(r, 200, "text/plain", &h, 1, body, (size_t)n) == 0);
  buf_free(&sc);
}

static void h_big(struct http_req *r, void *ud) {
  (void)ud;
  size_t n = 3 * 1024 * 1024;
  char *b = xmalloc(n);
  for (size_t i = 0; i < n; i++)
    b[i] = (char)('a' + i % 26);
  SRV_CHECK(http_respond(r, 200, "text/plain", b, n) == 0);
  free(b);
}

static struct http_static_file file = {
    .content_type = "text/html", .data = (const uint8_t *)"<h1>hi</h1>", .len = 11,
    .gz = (const uint8_t *)"GZDATA", .gz_len = 6};

static void h_file(struct http_req *r, void *ud) {
  (void)ud;
  SRV_CHECK(http_serve_static(r, &file, "max-age=60") == 0);
}

/* WebSocket echo */
static void ws_msg(struct ws_conn *ws, int op, const uint8_t *d, size_t n, void *ud) {
  (void)ud;
  ws_messages++;
  if (n == 5 && memcmp(d, "close", 5) == 0) {
    ws_close(ws, 4000, "bye");
    return;
  }
  if (n == 5 && memcmp(d, "flood", 5) == 0) {
    /* the client does not read: the backlog passes ws_max_backlog (4 MiB) */
    char *chunk = xcalloc(1, 65536);
    for (int i = 0; i < 200; i++) {
      int rc = ws_send_binary(ws, chunk, 65536);
      if (rc == EG_ETOOBIG) {
        flood_toobig++;
        break;
      }
      SRV_CHECK(rc == 0);
    }
    free(chunk);
    return;
  }
  if (n == 4 && memcmp(d, "fill", 4) == 0) {
    /* past ws_high_water (64 KiB): reading pauses, on_drain fires once the client read */
    char *chunk = xcalloc(1, 65536);
    for (int i = 0; i < 8; i++)
      SRV_CHECK(ws_send_binary(ws, chunk, 65536) == 0);
    SRV_CHECK(ws_backlog(ws) > 0);
    free(chunk);
    return;
  }
  if (n == 9 && memcmp(d, "broadcast", 9) == 0) {
    uv_buf_t parts[2] = {uv_buf_init("4", 1), uv_buf_init("shared", 6)};
    struct net_sbuf *f = ws_frame_new(WS_OP_TEXT, parts, 2);
    SRV_CHECK(ws_send_frame(ws, f) == 0);
    SRV_CHECK(ws_send_frame(ws, f) == 0);
    net_sbuf_unref(f);
    return;
  }
  SRV_CHECK(ws_send(ws, op, d, n) == 0);
}

static void ws_closed(struct ws_conn *ws, int code, void *ud) {
  (void)ws;
  (void)ud;
  ws_last_code = code;
  ws_closes++;
}

static void ws_drained(struct ws_conn *ws, void *ud) {
  (void)ud;
  SRV_CHECK(ws_send_text(ws, "drained", 7) == 0);
}

static const struct ws_callbacks ws_cbs = {
    .on_message = ws_msg, .on_close = ws_closed, .on_drain = ws_drained};

static void h_ws(struct http_req *r, void *ud) {
  (void)ud;
  struct ws_conn *ws;
  struct http_header h = {"X-Test", "1"};
  int rc = http_ws_accept_ex(r, &ws_cbs, NULL, &h, 1, &ws);
  if (rc == EG_EINVAL)
    SRV_CHECK(http_respond_error(r, 400, "Bad \"upgrade\"") == 0);
}

static void on_server_closed(void *ud) {
  (void)ud;
  server_closed = 1;
}

static void on_stop(uv_async_t *a) {
  http_server_stop(server, on_server_closed, NULL);
  uv_close((uv_handle_t *)a, NULL);
}

static void loop_main(void *arg) {
  (void)arg;
  uv_run(&loop, UV_RUN_DEFAULT);
}

static int setup(void **state) {
  (void)state;
  server_closed = 0;
  static const char *const origins[] = {"http://allowed.test", NULL};
  assert_int_equal(uv_loop_init(&loop), 0);
  router = http_router_new();
  assert_int_equal(http_router_add(router, HTTP_GET, "/hello", h_hello, NULL), 0);
  assert_int_equal(http_router_add(router, HTTP_POST, "/echo", h_echo, NULL), 0);
  assert_int_equal(http_router_add(router, HTTP_PUT, "/echo", h_echo, NULL), 0);
  assert_int_equal(http_router_add(router, HTTP_GET, "/slow", h_slow, NULL), 0);
  assert_int_equal(http_router_add(router, HTTP_GET, "/hold", h_hold, NULL), 0);
  assert_int_equal(http_router_add(router, HTTP_GET, "/api/chat/:id", h_info, NULL), 0);
  assert_int_equal(http_router_add(router, HTTP_GET, "/static/*", h_info, NULL), 0);
  assert_int_equal(http_router_add(router, HTTP_GET, "/info", h_info, NULL), 0);
  assert_int_equal(http_router_add(router, HTTP_GET, "/big", h_big, NULL), 0);
  assert_int_equal(http_router_add(router, HTTP_METHOD_UNKNOWN, "/file", h_file, NULL), 0);
  assert_int_equal(http_router_add(router, HTTP_GET, "/ws", h_ws, NULL), 0);
  assert_int_equal(http_router_add(router, HTTP_GET, "/bad/*/x", h_ws, NULL), EG_EINVAL);
  struct http_server_opts o = {
      .host = "127.0.0.1",
      .port = 0,
      .limits = {.max_body = 4096,
                 .header_timeout_ms = 300,
                 .idle_timeout_ms = 600,
                 .ws_max_message = 4096,
                 .ws_high_water = 65536,
                 .ws_max_backlog = 4 << 20},
      .cors_origins = origins,
      .cors_credentials = true,
  };
  assert_int_equal(http_server_start(&loop, &o, http_router_dispatch, router, &server), 0);
  port = http_server_port(server);
  assert_true(port > 0);
  uv_async_init(&loop, &stop_async, on_stop);
  assert_int_equal(uv_thread_create(&thread, loop_main, NULL), 0);
  return 0;
}

static int teardown_stopped(void **state) {
  (void)state;
  uv_thread_join(&thread);
  assert_int_equal(srv_failures, 0);
  assert_int_equal(server_closed, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
  http_router_free(router);
  return 0;
}

static int teardown(void **state) {
  uv_async_send(&stop_async);
  return teardown_stopped(state);
}

/* ---- a tiny blocking client --------------------------------------------------------------- */

static int cl_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void cl_send(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    assert_true(w > 0);
    c += w;
    n -= (size_t)w;
  }
}

static void cl_sends(int fd, const char *s) { cl_send(fd, s, strlen(s)); }

struct reader {
  int fd;
  struct buf in;
};

static void rd_init(struct reader *r, int fd) {
  r->fd = fd;
  buf_init(&r->in, 64 << 20);
}

static void rd_free(struct reader *r) {
  buf_free(&r->in);
  close(r->fd);
}

/* Reads more; returns bytes read, 0 on EOF, -1 on timeout. */
static int rd_more(struct reader *r, int timeout_ms) {
  struct pollfd p = {.fd = r->fd, .events = POLLIN};
  int pr = poll(&p, 1, timeout_ms);
  if (pr == 0)
    return -1;
  char tmp[65536];
  ssize_t n = recv(r->fd, tmp, sizeof tmp, 0);
  if (n < 0)
    return 0; /* reset counts as closed */
  assert_int_equal(buf_append(&r->in, tmp, (size_t)n), 0);
  return (int)n;
}

/* Waits for EOF; true if it came within timeout. */
static bool rd_eof(struct reader *r, int timeout_ms) {
  uint64_t end = clock_mono_ms() + (uint64_t)test_ms(timeout_ms);
  for (;;) {
    uint64_t now = clock_mono_ms();
    if (now >= end)
      return false;
    int n = rd_more(r, (int)(end - now));
    if (n == 0)
      return true;
    if (n < 0)
      return false;
  }
}

struct resp {
  int status;
  char head[8192];
  char *body;
  size_t body_len;
};

/* Reads one response (Content-Length framed). */
static bool rd_response(struct reader *r, struct resp *out, int timeout_ms) {
  uint64_t end = clock_mono_ms() + (uint64_t)test_ms(timeout_ms);
  for (;;) {
    char *hend = r->in.len ? memmem(r->in.data, r->in.len, "\r\n\r\n", 4) : NULL;
    if (hend) {
      size_t hl = (size_t)(hend - (char *)r->in.data) + 4;
      assert_true(hl < sizeof out->head);
      memcpy(out->head, r->in.data, hl);
      out->head[hl] = '\0';
      assert_int_equal(sscanf(out->head, "HTTP/1.%*d %d", &out->status), 1);
      size_t cl = 0;
      char *c = strcasestr(out->head, "\r\nContent-Length:");
      if (c)
        cl = strtoul(c + 17, NULL, 10);
      if (r->in.len >= hl + cl) {
        out->body = xmemdup(r->in.data + hl, cl + 1);
        out->body[cl] = '\0';
        out->body_len = cl;
        buf_consume(&r->in, hl + cl);
        return true;
      }
    }
    uint64_t now = clock_mono_ms();
    if (now >= end)
      return false;
    int n = rd_more(r, (int)(end - now));
    if (n <= 0)
      return false;
  }
}

static void expect_response(struct reader *r, int status, const char *body) {
  struct resp rs;
  assert_true(rd_response(r, &rs, 3000));
  if (rs.status != status)
    fprintf(stderr, "head: %s\n", rs.head);
  assert_int_equal(rs.status, status);
  if (body)
    assert_string_equal(rs.body, body);
  free(rs.body);
}

/* ---- HTTP tests ------------------------------------------------------------------------------ */

static void test_keepalive(void **state) {
  (void)state;
  struct reader r;
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  expect_response(&r, 200, "hello");
  cl_sends(r.fd, "POST /echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd");
  expect_response(&r, 200, "abcd");
  /* chunked request body */
  cl_sends(r.fd, "PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                 "2\r\nde\r\n0\r\n\r\n");
  expect_response(&r, 200, "abcde");
  /* byte by byte */
  const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
  for (size_t i = 0; req[i]; i++)
    cl_send(r.fd, req + i, 1);
  expect_response(&r, 200, "hello");
  rd_free(&r);
}

static void test_pipelining(void **state) {
  (void)state;
  struct reader r;
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /slow HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /slow HTTP/1.1\r\n\r\n"
                 "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n");
  expect_response(&r, 200, "slow");
  expect_response(&r, 200, "hello");
  expect_response(&r, 200, "xyz");
  expect_response(&r, 200, "slow");
  expect_response(&r, 200, "hello");
  assert_true(rd_eof(&r, 3000));
  rd_free(&r);
}

static void test_limits(void **state) {
  (void)state;
  struct reader r;
  /* 431: header block over 16 KiB */
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /hello HTTP/1.1\r\nX-Big: ");
  char *big = xmalloc(20000);
  memset(big, 'a', 20000);
  cl_send(r.fd, big, 20000);
  free(big);
  cl_sends(r.fd, "\r\n\r\n");
  expect_response(&r, 431, NULL);
  assert_true(rd_eof(&r, 3000));
  rd_free(&r);
  /* 413: body over max_body (4096 here) */
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
  expect_response(&r, 413, NULL);
  assert_true(rd_eof(&r, 3000));
  rd_free(&r);
  /* 413 for chunked bodies too */
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n");
  char *chunk = xcalloc(1, 0x1000);
  memset(chunk, 'b', 0x1000);
  cl_send(r.fd, chunk, 0x1000);
  cl_sends(r.fd, "\r\n10\r\n");
  free(chunk);
  expect_response(&r, 413, NULL);
  rd_free(&r);
  /* 400, 501, 505 */
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n");
  expect_response(&r, 400, NULL);
  rd_free(&r);
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "BREW /pot HTTP/1.1\r\n\r\n");
  expect_response(&r, 501, NULL);
  rd_free(&r);
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET / HTTP/2.0\r\n\r\n");
  expect_response(&r, 505, NULL);
  rd_free(&r);
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET nonsense HTTP/1.1\r\n\r\n");
  expect_response(&r, 400, NULL);
  rd_free(&r);
}

static void test_timeouts(void **state) {
  (void)state;
  struct reader r;
  /* slow loris: part of a head, then nothing: 408 and close after header_timeout (300 ms) */
  rd_init(&r, cl_connect());
  uint64_t t0 = clock_mono_ms();
  cl_sends(r.fd, "GET /hello HTTP/1.1\r\nX-Slow: ");
  usleep(100 * 1000);
  cl_sends(r.fd, "a");
  expect_response(&r, 408, NULL);
  assert_true(rd_eof(&r, 3000));
  uint64_t dt = clock_mono_ms() - t0;
  assert_true(dt >= 250 && dt < (uint64_t)test_ms(2500));
  rd_free(&r);
  /* a connection that sends nothing is dropped too (silently) */
  rd_init(&r, cl_connect());
  t0 = clock_mono_ms();
  assert_true(rd_eof(&r, 3000));
  assert_int_equal(r.in.len, 0);
  assert_true(clock_mono_ms() - t0 >= 250);
  rd_free(&r);
  /* idle keep-alive connection: closed after idle_timeout (600 ms) */
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /hello HTTP/1.1\r\n\r\n");
  expect_response(&r, 200, "hello");
  t0 = clock_mono_ms();
  assert_true(rd_eof(&r, 3000));
  dt = clock_mono_ms() - t0;
  assert_true(dt >= 500 && dt < (uint64_t)test_ms(2500));
  rd_free(&r);
}

static void test_router_and_accessors(void **state) {
  (void)state;
  struct reader r;
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /nope HTTP/1.1\r\n\r\n");
  expect_response(&r, 404, "{\"message\":\"Not found\"}");
  cl_sends(r.fd, "DELETE /hello HTTP/1.1\r\n\r\n");
  struct resp rs;
  assert_true(rd_response(&r, &rs, 3000));
  assert_int_equal(rs.status, 405);
  assert_non_null(strstr(rs.head, "Allow: GET, HEAD, OPTIONS\r\n"));
  free(rs.body);
  /* HEAD: the head of the GET response, no body (the next response follows directly) */
  cl_sends(r.fd, "HEAD /hello HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
  while (!memmem(r.in.data ? (char *)r.in.data : "", r.in.len, "hello", 5))
    assert_true(rd_more(&r, 3000) > 0);
  assert_true(strncmp((char *)r.in.data, "HTTP/1.1 200 OK\r\n", 17) == 0);
  assert_non_null(strstr((char *)r.in.data, "Content-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\n"));
  buf_consume(&r.in, (size_t)(strstr((char *)r.in.data, "\r\n\r\n") - (char *)r.in.data) + 4);
  expect_response(&r, 200, "hello");
  cl_sends(r.fd, "GET /api/chat/ab%20c?q=a+b%26c&x=1 HTTP/1.1\r\n"
                 "Cookie: a=1; token=\"tok123\"; z=2\r\n\r\n");
  assert_true(rd_response(&r, &rs, 3000));
  assert_int_equal(rs.status, 200);
  assert_string_equal(rs.body, "path=/api/chat/ab c token=tok123 q=a b&c id=ab c remote=ok");
  assert_non_null(strstr(rs.head, "Set-Cookie: token=abc; Path=/; HttpOnly; SameSite=Lax\r\n"));
  free(rs.body);
  cl_sends(r.fd, "GET /static/css/site.css HTTP/1.1\r\n\r\n");
  assert_true(rd_response(&r, &rs, 3000));
  assert_string_equal(rs.body, "path=/static/css/site.css token= q= id=css/site.css remote=ok");
  free(rs.body);
  cl_sends(r.fd, "GET /api/chat/ HTTP/1.1\r\n\r\n"); /* empty :id does not match */
  expect_response(&r, 404, NULL);
  cl_sends(r.fd, "GET /api/chat/1/2 HTTP/1.1\r\n\r\n");
  expect_response(&r, 404, NULL);
  rd_free(&r);
}

static void test_http10_and_close(void **state) {
  (void)state;
  struct reader r;
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /hello HTTP/1.0\r\n\r\n");
  struct resp rs;
  assert_true(rd_response(&r, &rs, 3000));
  assert_int_equal(rs.status, 200);
  assert_true(strncmp(rs.head, "HTTP/1.0 200 OK\r\n", 17) == 0);
  assert_non_null(strstr(rs.head, "Connection: close\r\n"));
  free(rs.body);
  assert_true(rd_eof(&r, 3000));
  rd_free(&r);
  /* HTTP/1.0 keep-alive */
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  assert_true(rd_response(&r, &rs, 3000));
  assert_non_null(strstr(rs.head, "Connection: keep-alive\r\n"));
  free(rs.body);
  cl_sends(r.fd, "GET /hello HTTP/1.0\r\n\r\n");
  expect_response(&r, 200, "hello");
  assert_true(rd_eof(&r, 3000));
  rd_free(&r);
}

static void test_abort(void **state) {
  (void)state;
  int before = aborts;
  struct reader r;
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /hold HTTP/1.1\r\n\r\n");
  usleep(100 * 1000);
  assert_int_equal(aborts, before);
  rd_free(&r);
  for (int i = 0; i < test_ms(1000) / 10 && aborts == before; i++)
    usleep(10 * 1000);
  assert_int_equal(aborts, before + 1);
}

/* A client that half-closes after its request still gets the answer (no abort cb). */
static void test_half_close(void **state) {
  (void)state;
  struct reader r;
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /slow HTTP/1.1\r\n\r\n");
  shutdown(r.fd, SHUT_WR);
  struct resp rs;
  assert_true(rd_response(&r, &rs, 3000));
  assert_int_equal(rs.status, 200);
  assert_string_equal(rs.body, "slow");
  assert_non_null(strstr(rs.head, "Connection: close\r\n"));
  free(rs.body);
  assert_true(rd_eof(&r, 3000));
  rd_free(&r);
}

static void test_cors(void **state) {
  (void)state;
  struct reader r;
  struct resp rs;
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /hello HTTP/1.1\r\nOrigin: http://allowed.test\r\n\r\n");
  assert_true(rd_response(&r, &rs, 3000));
  assert_non_null(strstr(rs.head, "Access-Control-Allow-Origin: http://allowed.test\r\n"));
  assert_non_null(strstr(rs.head, "Vary: Origin\r\n"));
  assert_non_null(strstr(rs.head, "Access-Control-Allow-Credentials: true\r\n"));
  free(rs.body);
  cl_sends(r.fd, "GET /hello HTTP/1.1\r\nOrigin: http://evil.test\r\n\r\n");
  assert_true(rd_response(&r, &rs, 3000));
  assert_null(strstr(rs.head, "Access-Control-Allow-Origin"));
  free(rs.body);
  cl_sends(r.fd, "OPTIONS /echo HTTP/1.1\r\nOrigin: http://allowed.test\r\n"
                 "Access-Control-Request-Method: POST\r\n"
                 "Access-Control-Request-Headers: content-type\r\n\r\n");
  assert_true(rd_response(&r, &rs, 3000));
  assert_int_equal(rs.status, 204);
  assert_non_null(strstr(rs.head, "Access-Control-Allow-Origin: http://allowed.test\r\n"));
  assert_non_null(strstr(rs.head, "Access-Control-Allow-Headers: content-type\r\n"));
  assert_non_null(strstr(rs.head, "Access-Control-Allow-Methods: "));
  free(rs.body);
  rd_free(&r);
}

static void test_static_and_big(void **state) {
  (void)state;
  struct reader r;
  struct resp rs;
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /file HTTP/1.1\r\n\r\n");
  assert_true(rd_response(&r, &rs, 3000));
  assert_int_equal(rs.status, 200);
  assert_string_equal(rs.body, "<h1>hi</h1>");
  char *et = strstr(rs.head, "ETag: ");
  assert_non_null(et);
  char etag[64];
  assert_int_equal(sscanf(et + 6, "%63[^\r]", etag), 1);
  free(rs.body);
  char req[256];
  snprintf(req, sizeof req, "GET /file HTTP/1.1\r\nIf-None-Match: W/\"zz\", %s\r\n\r\n", etag);
  cl_sends(r.fd, req);
  expect_response(&r, 304, "");
  cl_sends(r.fd, "GET /file HTTP/1.1\r\nAccept-Encoding: br, gzip;q=0.8\r\n\r\n");
  assert_true(rd_response(&r, &rs, 3000));
  assert_string_equal(rs.body, "GZDATA");
  assert_non_null(strstr(rs.head, "Content-Encoding: gzip\r\n"));
  free(rs.body);
  cl_sends(r.fd, "GET /file HTTP/1.1\r\nAccept-Encoding: gzip;q=0\r\n\r\n");
  expect_response(&r, 200, "<h1>hi</h1>");
  cl_sends(r.fd, "POST /file HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  expect_response(&r, 405, NULL);
  /* 3 MiB response: goes through partial writes and uv_write */
  cl_sends(r.fd, "GET /big HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
  assert_true(rd_response(&r, &rs, 10000));
  assert_int_equal(rs.body_len, 3 * 1024 * 1024);
  for (size_t i = 0; i < rs.body_len; i += 4099)
    assert_int_equal(rs.body[i], 'a' + i % 26);
  free(rs.body);
  expect_response(&r, 200, "hello");
  rd_free(&r);
}

/* ---- WebSocket tests ---------------------------------------------------------------------- */

static void ws_send_frame_raw(int fd, int fin, int op, const void *p, size_t n, bool mask) {
  uint8_t h[14];
  size_t hl = 0;
  h[hl++] = (uint8_t)((fin ? 0x80 : 0) | op);
  uint8_t m = mask ? 0x80 : 0;
  if (n < 126) {
    h[hl++] = (uint8_t)(m | n);
  } else if (n < 65536) {
    h[hl++] = m | 126;
    h[hl++] = (uint8_t)(n >> 8);
    h[hl++] = (uint8_t)n;
  } else {
    h[hl++] = m | 127;
    for (int i = 7; i >= 0; i--)
      h[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  if (mask) {
    memcpy(h + hl, key, 4);
    hl += 4;
  }
  uint8_t *buf = xmalloc(hl + n + 1);
  memcpy(buf, h, hl);
  for (size_t i = 0; i < n; i++)
    buf[hl + i] = ((const uint8_t *)p)[i] ^ (mask ? key[i % 4] : 0);
  cl_send(fd, buf, hl + n);
  free(buf);
}

struct wsframe {
  int op;
  uint8_t data[70000];
  size_t len;
};

static bool ws_read_frame(struct reader *r, struct wsframe *f, int timeout_ms) {
  uint64_t end = clock_mono_ms() + (uint64_t)test_ms(timeout_ms);
  for (;;) {
    if (r->in.len >= 2) {
      const uint8_t *d = r->in.data;
      assert_int_equal(d[1] & 0x80, 0); /* server frames are unmasked */
      size_t len = d[1] & 0x7f, hl = 2;
      if (len == 126 && r->in.len >= 4) {
        len = (size_t)d[2] << 8 | d[3];
        hl = 4;
      } else if (len == 127 && r->in.len >= 10) {
        len = 0;
        for (int i = 2; i < 10; i++)
          len = len << 8 | d[i];
        hl = 10;
      } else if (len == 126 || len == 127) {
        goto more;
      }
      assert_true(len <= sizeof f->data);
      if (r->in.len >= hl + len) {
        f->op = d[0] & 0x0f;
        assert_true(d[0] & 0x80);
        memcpy(f->data, d + hl, len);
        f->len = len;
        buf_consume(&r->in, hl + len);
        return true;
      }
    }
  more:;
    uint64_t now = clock_mono_ms();
    if (now >= end)
      return false;
    if (rd_more(r, (int)(end - now)) <= 0)
      return false;
  }
}

static int ws_open(struct reader *r) {
  rd_init(r, cl_connect());
  cl_sends(r->fd, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n");
  /* read the 101 head */
  for (;;) {
    char *e = r->in.len ? memmem(r->in.data, r->in.len, "\r\n\r\n", 4) : NULL;
    if (e) {
      size_t hl = (size_t)(e - (char *)r->in.data) + 4;
      assert_true(strncmp((char *)r->in.data, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0);
      assert_non_null(memmem(r->in.data, hl, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", 52));
      assert_non_null(memmem(r->in.data, hl, "X-Test: 1\r\n", 11));
      buf_consume(&r->in, hl);
      return r->fd;
    }
    assert_true(rd_more(r, 3000) > 0);
  }
}

static int close_code_of(const struct wsframe *f) {
  assert_int_equal(f->op, 8);
  assert_true(f->len >= 2);
  return f->data[0] << 8 | f->data[1];
}

static void wait_closes(int n) {
  for (int i = 0; i < test_ms(3000) / 10 && ws_closes < n; i++)
    usleep(10 * 1000);
  assert_int_equal(ws_closes, n);
}

static void test_ws_echo(void **state) {
  (void)state;
  static struct wsframe f;
  struct reader r;
  int closes = ws_closes;
  ws_open(&r);
  ws_send_frame_raw(r.fd, 1, 1, "hello", 5, true);
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_int_equal(f.op, 1);
  assert_int_equal(f.len, 5);
  assert_memory_equal(f.data, "hello", 5);
  /* binary, 16-bit length */
  uint8_t bin[300];
  for (int i = 0; i < 300; i++)
    bin[i] = (uint8_t)i;
  ws_send_frame_raw(r.fd, 1, 2, bin, 300, true);
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_int_equal(f.op, 2);
  assert_int_equal(f.len, 300);
  assert_memory_equal(f.data, bin, 300);
  /* fragmented, with a ping between the fragments */
  ws_send_frame_raw(r.fd, 0, 1, "hel", 3, true);
  ws_send_frame_raw(r.fd, 1, 9, "pp", 2, true);
  ws_send_frame_raw(r.fd, 0, 0, "l", 1, true);
  ws_send_frame_raw(r.fd, 1, 0, "o!", 2, true);
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_int_equal(f.op, 0xA);
  assert_memory_equal(f.data, "pp", 2);
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_int_equal(f.op, 1);
  assert_int_equal(f.len, 6);
  assert_memory_equal(f.data, "hello!", 6);
  /* several frames in one write, byte by byte */
  uint8_t raw[64];
  raw[0] = 0x81;
  raw[1] = 0x80 | 3;
  memset(raw + 2, 0, 4);
  memcpy(raw + 6, "abc", 3);
  for (int i = 0; i < 9; i++)
    cl_send(r.fd, raw + i, 1);
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_memory_equal(f.data, "abc", 3);
  /* three messages in one write (one read on the server) */
  {
    uint8_t three[3 * 9];
    for (int k = 0; k < 3; k++) {
      three[k * 9] = 0x81;
      three[k * 9 + 1] = 0x80 | 3;
      memset(three + k * 9 + 2, 0, 4);
      three[k * 9 + 6] = 'm';
      three[k * 9 + 7] = (uint8_t)('0' + k);
      three[k * 9 + 8] = '!';
    }
    cl_send(r.fd, three, sizeof three);
    for (int k = 0; k < 3; k++) {
      assert_true(ws_read_frame(&r, &f, 3000));
      assert_int_equal(f.len, 3);
      assert_int_equal(f.data[1], '0' + k);
    }
  }
  /* zero-copy broadcast frames */
  ws_send_frame_raw(r.fd, 1, 1, "broadcast", 9, true);
  for (int i = 0; i < 2; i++) {
    assert_true(ws_read_frame(&r, &f, 3000));
    assert_int_equal(f.len, 7);
    assert_memory_equal(f.data, "4shared", 7);
  }
  /* client close: echoed, on_close(1000) */
  uint8_t cp[2] = {0x03, 0xe8};
  ws_send_frame_raw(r.fd, 1, 8, cp, 2, true);
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_int_equal(close_code_of(&f), 1000);
  assert_true(rd_eof(&r, 3000));
  wait_closes(closes + 1);
  assert_int_equal(ws_last_code, 1000);
  rd_free(&r);
}

static void test_ws_errors(void **state) {
  (void)state;
  static struct wsframe f;
  struct reader r;
  int closes = ws_closes;
  /* oversized message (ws_max_message 4096 here) -> 1009 */
  ws_open(&r);
  uint8_t *big = xcalloc(1, 5000);
  ws_send_frame_raw(r.fd, 1, 2, big, 5000, true);
  free(big);
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_int_equal(close_code_of(&f), 1009);
  assert_true(rd_eof(&r, 3000));
  wait_closes(++closes);
  assert_int_equal(ws_last_code, 1009);
  rd_free(&r);
  /* unmasked client frame -> 1002 */
  ws_open(&r);
  ws_send_frame_raw(r.fd, 1, 1, "hi", 2, false);
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_int_equal(close_code_of(&f), 1002);
  wait_closes(++closes);
  assert_int_equal(ws_last_code, 1002);
  rd_free(&r);
  /* invalid UTF-8 in text -> 1007 */
  ws_open(&r);
  ws_send_frame_raw(r.fd, 1, 1, "\xc3\x28", 2, true);
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_int_equal(close_code_of(&f), 1007);
  wait_closes(++closes);
  assert_int_equal(ws_last_code, 1007);
  rd_free(&r);
  /* server-initiated close with a code */
  ws_open(&r);
  ws_send_frame_raw(r.fd, 1, 1, "close", 5, true);
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_int_equal(close_code_of(&f), 4000);
  assert_memory_equal(f.data + 2, "bye", 3);
  uint8_t cp[2] = {0x0f, 0xa0};
  ws_send_frame_raw(r.fd, 1, 8, cp, 2, true);
  assert_true(rd_eof(&r, 3000));
  rd_free(&r);
  wait_closes(++closes);
  assert_int_equal(ws_last_code, 4000);
  /* TCP dropped -> 1006 */
  ws_open(&r);
  ws_send_frame_raw(r.fd, 1, 1, "x", 1, true);
  assert_true(ws_read_frame(&r, &f, 3000));
  rd_free(&r);
  wait_closes(++closes);
  assert_int_equal(ws_last_code, 1006);
  /* backpressure: past ws_high_water the server pauses, on_drain after the client read */
  ws_open(&r);
  ws_send_frame_raw(r.fd, 1, 1, "fill", 4, true);
  usleep(100 * 1000);
  for (int i = 0; i < 8; i++) {
    assert_true(ws_read_frame(&r, &f, 3000));
    assert_int_equal(f.op, 2);
    assert_int_equal(f.len, 65536);
  }
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_int_equal(f.op, 1);
  assert_memory_equal(f.data, "drained", 7);
  ws_send_frame_raw(r.fd, 1, 1, "ok", 2, true); /* reading resumed */
  assert_true(ws_read_frame(&r, &f, 3000));
  assert_memory_equal(f.data, "ok", 2);
  rd_free(&r);
  wait_closes(++closes);
  /* a client that does not read: the backlog cap closes the connection (1008) */
  ws_open(&r);
  ws_send_frame_raw(r.fd, 1, 1, "flood", 5, true);
  wait_closes(++closes);
  assert_int_equal(ws_last_code, 1008);
  assert_int_equal(flood_toobig, 1);
  rd_free(&r);
  /* a bad upgrade gets 400 from the handler */
  rd_init(&r, cl_connect());
  cl_sends(r.fd, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n");
  expect_response(&r, 400, "{\"message\":\"Bad \\\"upgrade\\\"\"}");
  rd_free(&r);
}

/* Last: stop with a held request and an open WebSocket (teardown checks it completes). */
static void test_stop_with_open_conns(void **state) {
  (void)state;
  struct reader r1, r2;
  ws_open(&r1);
  rd_init(&r2, cl_connect());
  cl_sends(r2.fd, "GET /hold HTTP/1.1\r\n\r\n");
  usleep(50 * 1000);
  int before = aborts;
  int closes = ws_closes;
  uv_async_send(&stop_async);
  static struct wsframe f;
  assert_true(ws_read_frame(&r1, &f, 3000));
  assert_int_equal(close_code_of(&f), 1001);
  assert_true(rd_eof(&r2, 3000));
  rd_free(&r1);
  rd_free(&r2);
  for (int i = 0; i < test_ms(3000) / 10 && !server_closed; i++)
    usleep(10 * 1000);
  assert_int_equal(server_closed, 1);
  assert_int_equal(aborts, before + 1);
  assert_int_equal(ws_closes, closes + 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keepalive),
      cmocka_unit_test(test_pipelining),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_timeouts),
      cmocka_unit_test(test_router_and_accessors),
      cmocka_unit_test(test_http10_and_close),
      cmocka_unit_test(test_abort),
      cmocka_unit_test(test_half_close),
      cmocka_unit_test(test_cors),
      cmocka_unit_test(test_static_and_big),
      cmocka_unit_test(test_ws_echo),
      cmocka_unit_test(test_ws_errors),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  /* the stop test runs in its own group */
  const struct CMUnitTest stop_tests[] = {cmocka_unit_test(test_stop_with_open_conns)};
  rc |= cmocka_run_group_tests(stop_tests, setup, teardown_stopped);
  return rc;
}
