/*
 * Tests for src/httpc: the pure helpers, then real requests through a uv loop against
 * the fake model server (tests/fakes/fake-llm.mjs, spawned once, reset per test):
 * buffered and streamed bodies, retries on 429/5xx (Retry-After, retry-after-ms),
 * connection errors, first-byte / idle / total timeouts, cancellation from inside and
 * outside callbacks, callback aborts, body caps, close with requests pending; and against
 * a small keep-alive server of its own: connection reuse, and an idle connection closed by
 * the peer (dropped, not polled in a loop, and the next request still succeeds).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "httpc/httpc.h"
#include "llm/fake_llm.h"
#include "test_time.h"

static struct fake_llm fake;

/* ---- pure helpers ------------------------------------------------------------------- */

static void test_retry_after(void **state) {
  (void)state;
  int64_t d;
  assert_int_equal(httpc_parse_retry_after("120", 0, &d), 0);
  assert_int_equal(d, 120000);
  assert_int_equal(httpc_parse_retry_after(" 0 ", 0, &d), 0);
  assert_int_equal(d, 0);
  /* Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 */
  int64_t now = 1445412480000 - 5000;
  assert_int_equal(httpc_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now, &d), 0);
  assert_int_equal(d, 5000);
  assert_int_equal(httpc_parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", now, &d), 0);
  assert_int_equal(d, 5000);
  assert_int_equal(httpc_parse_retry_after("Wed Oct 21 07:28:00 2015", now, &d), 0);
  assert_int_equal(d, 5000);
  /* In the past: 0. */
  assert_int_equal(httpc_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now + 60000, &d),
                   0);
  assert_int_equal(d, 0);
  assert_int_equal(httpc_parse_retry_after("soon", 0, &d), EG_EINVAL);
  assert_int_equal(httpc_parse_retry_after("12s", 0, &d), EG_EINVAL);
  assert_int_equal(httpc_parse_retry_after("", 0, &d), EG_EINVAL);
  assert_int_equal(httpc_parse_retry_after(NULL, 0, &d), EG_EINVAL);
  assert_int_equal(httpc_parse_retry_after("99999999999999", 0, &d), EG_EINVAL);
}

static void test_retry_delay(void **state) {
  (void)state;
  struct httpc_retry r = {.max_tries = 5, .base_ms = 100, .max_ms = 1000, .max_delay_ms = 5000};
  /* Backoff with jitter in [d/2, d]. */
  for (uint32_t rnd = 0; rnd < 2000; rnd += 97) {
    int64_t d1 = httpc_retry_delay(NULL, &r, 1, 0, rnd);
    int64_t d3 = httpc_retry_delay(NULL, &r, 3, 0, rnd);
    int64_t d9 = httpc_retry_delay(NULL, &r, 9, 0, rnd);
    assert_true(d1 >= 50 && d1 <= 100);
    assert_true(d3 >= 200 && d3 <= 400);
    assert_true(d9 >= 500 && d9 <= 1000);
  }
  assert_int_not_equal(httpc_retry_delay(NULL, &r, 1, 0, 0),
                       httpc_retry_delay(NULL, &r, 1, 0, 7));
  struct httpc_header h1[] = {{"Retry-After", "2"}};
  struct httpc_response resp = {.status = 429, .headers = h1, .n_headers = 1};
  assert_int_equal(httpc_retry_delay(&resp, &r, 1, 0, 0), 2000);
  struct httpc_header h2[] = {{"retry-after", "2"}, {"Retry-After-Ms", "150.5"}};
  resp.headers = h2;
  resp.n_headers = 2;
  assert_int_equal(httpc_retry_delay(&resp, &r, 1, 0, 0), 150);
  struct httpc_header h3[] = {{"Retry-After", "60"}};
  resp.headers = h3;
  resp.n_headers = 1;
  assert_int_equal(httpc_retry_delay(&resp, &r, 1, 0, 0), -1); /* above max_delay */
  struct httpc_header h4[] = {{"Retry-After", "garbage"}};
  resp.headers = h4;
  int64_t d = httpc_retry_delay(&resp, &r, 2, 0, 0);
  assert_true(d >= 100 && d <= 200);
  /* Defaults when zero. */
  struct httpc_retry z = {0};
  d = httpc_retry_delay(NULL, &z, 1, 0, 12345);
  assert_true(d >= 250 && d <= 500);
  d = httpc_retry_delay(NULL, &z, 30, 0, 12345);
  assert_true(d >= 4000 && d <= 8000);
}

static void test_status_helpers(void **state) {
  (void)state;
  assert_int_equal(httpc_status_err(200), 0);
  assert_int_equal(httpc_status_err(304), 0);
  assert_int_equal(httpc_status_err(400), EG_EINVAL);
  assert_int_equal(httpc_status_err(401), EG_EAUTH);
  assert_int_equal(httpc_status_err(403), EG_EFORBIDDEN);
  assert_int_equal(httpc_status_err(404), EG_ENOTFOUND);
  assert_int_equal(httpc_status_err(429), EG_ELIMIT);
  assert_int_equal(httpc_status_err(500), EG_EUPSTREAM);
  assert_int_equal(httpc_status_err(599), EG_EUPSTREAM);
  assert_true(httpc_status_retryable(429));
  assert_true(httpc_status_retryable(503));
  assert_true(httpc_status_retryable(408));
  assert_false(httpc_status_retryable(501));
  assert_false(httpc_status_retryable(404));
  struct httpc_header h[] = {{"Content-Type", "text/plain"}, {"X-A", "1"}};
  struct httpc_response resp = {.headers = h, .n_headers = 2};
  assert_string_equal(httpc_response_header(&resp, "content-type"), "text/plain");
  assert_null(httpc_response_header(&resp, "x-b"));
}

/* ---- live requests ------------------------------------------------------------------ */

struct call {
  int done;
  int err;
  int status;
  int attempts;
  int n_response;
  int n_data;
  int response_after_data; /* on_response came after a data chunk: a bug */
  struct buf body;
  char *done_body;
  char error[256];
  uint64_t t_response, t_first_data, t_done;
  int cancel_after_data; /* cancel from on_data after this many chunks */
  int abort_response;    /* on_response returns this */
  struct httpc_req *req;
  char *hdr_ct;
  struct log_ctx ctx_response, ctx_data, ctx_done; /* log context seen by each callback */
};

static void call_init(struct call *c) {
  memset(c, 0, sizeof *c);
  buf_init(&c->body, 1u << 24);
}

static void call_free(struct call *c) {
  buf_free(&c->body);
  free(c->done_body);
  free(c->hdr_ct);
}

static int on_resp(void *ud, const struct httpc_response *r) {
  struct call *c = ud;
  c->n_response++;
  c->status = r->status;
  c->t_response = clock_mono_ms();
  log_ctx_get(&c->ctx_response);
  if (c->n_data)
    c->response_after_data = 1;
  const char *ct = httpc_response_header(r, "content-type");
  c->hdr_ct = ct ? xstrdup(ct) : NULL;
  return c->abort_response;
}

static int on_data(void *ud, const uint8_t *p, size_t n) {
  struct call *c = ud;
  if (c->n_data == 0)
    c->t_first_data = clock_mono_ms();
  c->n_data++;
  log_ctx_get(&c->ctx_data);
  assert_int_equal(buf_append(&c->body, p, n), 0);
  if (c->cancel_after_data && c->n_data == c->cancel_after_data)
    httpc_cancel(c->req);
  return 0;
}

static void on_done(void *ud, int err, const struct httpc_response *r) {
  struct call *c = ud;
  c->done++;
  c->err = err;
  c->attempts = r->attempts;
  if (r->status)
    c->status = r->status;
  c->t_done = clock_mono_ms();
  log_ctx_get(&c->ctx_done);
  c->done_body = xstrndup(r->body.p, r->body.len);
  snprintf(c->error, sizeof c->error, "%s", r->error ? r->error : "");
}

struct env {
  uv_loop_t loop;
  struct httpc *h;
  int closed;
};

static void env_init(struct env *e) {
  memset(e, 0, sizeof *e);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  assert_int_equal(httpc_new(&e->loop, &e->h), 0);
  fake_llm_reset(&fake);
}

static void closed_cb(void *ud) {
  ((struct env *)ud)->closed = 1;
}

static void env_free(struct env *e) {
  httpc_close(e->h, closed_cb, e);
  for (int i = 0; i < 1000 && !e->closed; i++)
    uv_run(&e->loop, UV_RUN_ONCE);
  assert_true(e->closed);
  uv_run(&e->loop, UV_RUN_NOWAIT);
  assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void run_until(struct env *e, struct call *c, int n) {
  uint64_t t0 = clock_mono_ms();
  while (c->done < n && clock_mono_ms() - t0 < (uint64_t)test_ms(20000))
    uv_run(&e->loop, UV_RUN_ONCE);
  assert_int_equal(c->done, n);
}

static struct httpc_request post(const char *url, const char *body, struct call *c,
                                 bool stream) {
  static const struct httpc_header h[] = {
      {"Content-Type", "application/json"}, {"x-goog-api-key", "test-key"}, {"X-Test", "yes"}};
  struct httpc_request r = {0};
  r.method = "POST";
  r.url = url;
  r.headers = h;
  r.n_headers = 3;
  r.body = body;
  r.body_len = body ? strlen(body) : 0;
  r.on_response = on_resp;
  r.on_data = stream ? on_data : NULL;
  r.on_done = on_done;
  r.ud = c;
  return r;
}

static char url_buf[512];
static const char *url(const char *path) {
  snprintf(url_buf, sizeof url_buf, "%s%s", fake.base, path);
  return url_buf;
}

#define GEN_PATH "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
#define GEN_BODY "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi there\"}]}]}"

static void test_buffered_get(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  struct call c;
  call_init(&c);
  struct httpc_request r = {
      .url = url("/__health"), .on_done = on_done, .on_response = on_resp, .ud = &c};
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  assert_int_equal(c.done, 0); /* never from inside httpc_start */
  assert_int_equal(httpc_active(e.h), 1);
  run_until(&e, &c, 1);
  assert_int_equal(c.err, 0);
  assert_int_equal(c.status, 200);
  assert_int_equal(c.n_response, 1);
  assert_int_equal(c.attempts, 1);
  assert_string_equal(c.done_body, "{\"ok\":true}");
  assert_non_null(c.hdr_ct);
  assert_non_null(strstr(c.hdr_ct, "application/json"));
  assert_int_equal(httpc_active(e.h), 0);
  call_free(&c);
  env_free(&e);
}

static void test_stream_and_request_recorded(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  fake_llm_script(&fake,
                  "[{\"type\":\"stream\",\"chunks\":[\"a \",\"b \",\"c\"],\"delayMs\":60}]");
  struct call c;
  call_init(&c);
  struct httpc_request r = post(url(GEN_PATH), GEN_BODY, &c, true);
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  run_until(&e, &c, 1);
  assert_int_equal(c.err, 0);
  assert_int_equal(c.status, 200);
  assert_int_equal(c.n_response, 1);
  assert_false(c.response_after_data);
  assert_true(c.n_data >= 3); /* chunks arrive as they are written */
  assert_true(c.t_done - c.t_first_data >= 100);
  assert_non_null(strstr((char *)c.body.data, "\"text\":\"a \""));
  assert_non_null(strstr((char *)c.body.data, "\"finishReason\":\"STOP\""));
  assert_string_equal(c.done_body, ""); /* streamed, not buffered */
  json_t *reqs = fake_llm_requests(&fake);
  assert_int_equal(json_array_size(reqs), 1);
  json_t *q = json_array_get(reqs, 0);
  assert_string_equal(json_string_value(json_object_get(q, "method")), "POST");
  assert_string_equal(json_string_value(json_object_get(q, "path")),
                      "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
  json_t *h = json_object_get(q, "headers");
  assert_string_equal(json_string_value(json_object_get(h, "x-test")), "yes");
  assert_string_equal(json_string_value(json_object_get(h, "x-goog-api-key")), "test-key");
  assert_null(json_object_get(h, "expect"));
  json_t *b = json_object_get(q, "body");
  assert_string_equal(
      json_string_value(json_object_get(
          json_array_get(
              json_object_get(json_array_get(json_object_get(b, "contents"), 0), "parts"), 0),
          "text")),
      "hi there");
  json_decref(reqs);
  call_free(&c);
  env_free(&e);
}

/* The callbacks run with the log context of the code that started the request (its
   request id or socket id), not with whatever the loop has when they fire. */
static void test_log_context(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  fake_llm_script(&fake, "[{\"type\":\"stream\",\"chunks\":[\"a \",\"b\"],\"delayMs\":20}]");
  struct call c;
  call_init(&c);
  struct log_ctx saved;
  log_ctx_get(&saved);
  log_ctx_set_request_id("req-httpc-1", 11);
  log_ctx_set_sid("sock-httpc-000000001");
  struct httpc_request r = post(url(GEN_PATH), GEN_BODY, &c, true);
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  log_ctx_set_request_id("loop", 4);
  log_ctx_set_sid(NULL);
  run_until(&e, &c, 1);
  assert_int_equal(c.err, 0);
  assert_true(c.n_data >= 1);
  const struct log_ctx *seen[] = {&c.ctx_response, &c.ctx_data, &c.ctx_done};
  for (size_t i = 0; i < EG_ARRAY_LEN(seen); i++) {
    assert_string_equal(seen[i]->request_id, "req-httpc-1");
    assert_string_equal(seen[i]->sid, "sock-httpc-000000001");
  }
  struct log_ctx now;
  log_ctx_get(&now);
  assert_string_equal(now.request_id, "loop"); /* put back after each callback */
  assert_string_equal(now.sid, "");
  log_ctx_set(&saved);
  call_free(&c);
  env_free(&e);
}

static void test_retry_429_retry_after(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  /* Retry-After in seconds (1 s), then retry-after-ms; then success. */
  fake_llm_script(&fake, "[{\"type\":\"rate_limit\",\"retryAfter\":1},"
                         "{\"type\":\"rate_limit\",\"retryAfterMs\":150}]");
  struct call c;
  call_init(&c);
  struct httpc_request r = post(url(GEN_PATH), GEN_BODY, &c, true);
  r.retry.max_tries = 3;
  r.retry.base_ms = 20000; /* the headers, not the backoff (>= 10 s), must decide */
  uint64_t t0 = clock_mono_ms();
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  run_until(&e, &c, 1);
  uint64_t took = clock_mono_ms() - t0;
  assert_int_equal(c.err, 0);
  assert_int_equal(c.status, 200);
  assert_int_equal(c.attempts, 3);
  assert_int_equal(c.n_response, 1); /* the 429s were never delivered */
  assert_true(took >= 1150);
  assert_true(took < 8000);
  json_t *reqs = fake_llm_requests(&fake);
  assert_int_equal(json_array_size(reqs), 3);
  json_decref(reqs);
  call_free(&c);
  env_free(&e);
}

static void test_retry_500_then_error(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  fake_llm_script(&fake,
                  "[{\"type\":\"status\",\"status\":500},{\"type\":\"status\",\"status\":503},"
                  "{\"type\":\"status\",\"status\":500,\"error\":\"final failure\"}]");
  struct call c;
  call_init(&c);
  struct httpc_request r = post(url(GEN_PATH), GEN_BODY, &c, true);
  r.retry.max_tries = 3;
  r.retry.base_ms = 20;
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  run_until(&e, &c, 1);
  assert_int_equal(c.err, EG_EUPSTREAM);
  assert_int_equal(c.status, 500);
  assert_int_equal(c.attempts, 3);
  assert_int_equal(c.n_response, 1);
  /* The final error body is delivered through on_data. */
  assert_non_null(strstr((char *)c.body.data, "final failure"));
  json_t *reqs = fake_llm_requests(&fake);
  assert_int_equal(json_array_size(reqs), 3);
  json_decref(reqs);
  call_free(&c);
  env_free(&e);
}

static int64_t never_retry(void *ud, const struct httpc_response *resp) {
  (void)ud;
  assert_int_equal(resp->status, 429);
  assert_non_null(strstr(resp->body.p, "insufficient_quota"));
  return -1;
}

static void test_retry_hook_vetoes(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  fake_llm_script(&fake, "[{\"type\":\"rate_limit\",\"quota\":true}]");
  struct call c;
  call_init(&c);
  struct httpc_request r =
      post(url("/v1/chat/completions"),
           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &c, false);
  r.retry.max_tries = 4;
  r.should_retry = never_retry;
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  run_until(&e, &c, 1);
  assert_int_equal(c.err, EG_ELIMIT);
  assert_int_equal(c.attempts, 1);
  assert_non_null(strstr(c.done_body, "insufficient_quota"));
  call_free(&c);
  env_free(&e);
}

static void test_connection_refused(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  /* A port nobody listens on: bind one, read its number, close it. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  close(fd);
  char u[128];
  snprintf(u, sizeof u, "http://127.0.0.1:%d/x", ntohs(a.sin_port));
  struct call c;
  call_init(&c);
  struct httpc_request r = post(u, "{}", &c, true);
  r.retry.max_tries = 2;
  r.retry.base_ms = 10;
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  run_until(&e, &c, 1);
  assert_int_equal(c.err, EG_EIO);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.attempts, 2);
  assert_int_equal(c.n_response, 0);
  assert_true(strlen(c.error) > 0);
  call_free(&c);
  env_free(&e);
}

static void test_first_byte_timeout(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  fake_llm_script(&fake, "[{\"type\":\"hang\"},{\"type\":\"hang\"}]");
  struct call c;
  call_init(&c);
  struct httpc_request r = post(url(GEN_PATH), GEN_BODY, &c, true);
  r.timeouts.first_byte_ms = 200;
  r.retry.max_tries = 2;
  r.retry.base_ms = 10;
  uint64_t t0 = clock_mono_ms();
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  run_until(&e, &c, 1);
  uint64_t took = clock_mono_ms() - t0;
  assert_int_equal(c.err, EG_ETIMEOUT);
  assert_int_equal(c.attempts, 2); /* first-byte timeouts are retried */
  assert_true(took >= 400 && took < (uint64_t)test_ms(5000));
  assert_non_null(strstr(c.error, "first byte"));
  call_free(&c);
  env_free(&e);
}

static void test_idle_timeout(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  fake_llm_script(&fake, "[{\"type\":\"stall\",\"chunks\":[\"x\"]}]");
  struct call c;
  call_init(&c);
  struct httpc_request r = post(url(GEN_PATH), GEN_BODY, &c, true);
  r.timeouts.first_byte_ms = 0; /* the idle timer must arm itself on the first byte */
  r.timeouts.idle_ms = 250;
  r.retry.max_tries = 3;
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  run_until(&e, &c, 1);
  assert_int_equal(c.err, EG_ETIMEOUT);
  assert_int_equal(c.attempts, 1); /* delivered already: no retry */
  assert_int_equal(c.n_response, 1);
  assert_true(c.n_data >= 1);
  assert_true(c.t_done - c.t_first_data >= 240);
  assert_non_null(strstr(c.error, "idle"));
  call_free(&c);
  env_free(&e);
}

static void test_total_timeout(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  fake_llm_script(&fake,
                  "[{\"type\":\"stream\",\"chunks\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"],"
                  "\"delayMs\":100}]");
  struct call c;
  call_init(&c);
  struct httpc_request r = post(url(GEN_PATH), GEN_BODY, &c, true);
  r.timeouts.idle_ms = 1000;
  r.timeouts.total_ms = 300;
  uint64_t t0 = clock_mono_ms();
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  run_until(&e, &c, 1);
  assert_int_equal(c.err, EG_ETIMEOUT);
  uint64_t took = clock_mono_ms() - t0;
  assert_true(took >= 290 && took < (uint64_t)test_ms(3000));
  assert_non_null(strstr(c.error, "total"));
  call_free(&c);
  env_free(&e);
}

static void test_cancel_inside_data(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  fake_llm_script(
      &fake, "[{\"type\":\"stream\",\"chunks\":[\"a\",\"b\",\"c\",\"d\"],\"delayMs\":50}]");
  struct call c;
  call_init(&c);
  c.cancel_after_data = 1;
  struct httpc_request r = post(url(GEN_PATH), GEN_BODY, &c, true);
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  run_until(&e, &c, 1);
  assert_int_equal(c.err, EG_ECANCELED);
  assert_int_equal(c.n_data, 1);
  /* Run a little more: nothing else may arrive. */
  uint64_t t0 = clock_mono_ms();
  while (clock_mono_ms() - t0 < 100)
    uv_run(&e.loop, UV_RUN_NOWAIT);
  assert_int_equal(c.n_data, 1);
  assert_int_equal(c.done, 1);
  call_free(&c);
  env_free(&e);
}

static void test_cancel_outside(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  /* Cancel right after start (queued), and cancel a hanging request from a timer. */
  struct call c1, c2;
  call_init(&c1);
  call_init(&c2);
  struct httpc_request r1 = post(url(GEN_PATH), GEN_BODY, &c1, true);
  assert_int_equal(httpc_start(e.h, &r1, &c1.req), 0);
  httpc_cancel(c1.req);
  assert_int_equal(c1.done, 0); /* never from inside httpc_cancel */
  run_until(&e, &c1, 1);
  assert_int_equal(c1.err, EG_ECANCELED);
  assert_int_equal(c1.n_response, 0);
  fake_llm_script(&fake, "[{\"type\":\"hang\"}]");
  struct httpc_request r2 = post(url(GEN_PATH), GEN_BODY, &c2, true);
  assert_int_equal(httpc_start(e.h, &r2, &c2.req), 0);
  uint64_t t0 = clock_mono_ms();
  while (clock_mono_ms() - t0 < 150)
    uv_run(&e.loop, UV_RUN_NOWAIT);
  assert_int_equal(c2.done, 0);
  httpc_cancel(c2.req);
  run_until(&e, &c2, 1);
  assert_int_equal(c2.err, EG_ECANCELED);
  call_free(&c1);
  call_free(&c2);
  env_free(&e);
}

static void test_callback_abort_and_caps(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  struct call c;
  call_init(&c);
  c.abort_response = EG_EPROTO;
  struct httpc_request r = post(url(GEN_PATH), GEN_BODY, &c, true);
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  run_until(&e, &c, 1);
  assert_int_equal(c.err, EG_EPROTO);
  assert_int_equal(c.n_data, 0);
  call_free(&c);
  /* Buffered body over max_body. */
  call_init(&c);
  r = post(url(GEN_PATH), GEN_BODY, &c, false);
  r.max_body = 16;
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  run_until(&e, &c, 1);
  assert_int_equal(c.err, EG_ETOOBIG);
  call_free(&c);
  env_free(&e);
}

static void test_invalid_and_close(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  struct call c;
  call_init(&c);
  struct httpc_request r = post("ftp://x/", NULL, &c, false);
  assert_int_equal(httpc_start(e.h, &r, NULL), EG_EINVAL);
  r = post(url("/x"), NULL, &c, false);
  r.method = "GE T";
  assert_int_equal(httpc_start(e.h, &r, NULL), EG_EINVAL);
  struct httpc_header bad[] = {{"X-A", "a\r\nInjected: 1"}};
  r = post(url("/x"), NULL, &c, false);
  r.headers = bad;
  r.n_headers = 1;
  assert_int_equal(httpc_start(e.h, &r, NULL), EG_EINVAL);
  r = post(url("/x"), NULL, &c, false);
  r.on_done = NULL;
  assert_int_equal(httpc_start(e.h, &r, NULL), EG_EINVAL);
  assert_int_equal(c.done, 0);
  /* Close with a hanging request: it is cancelled first, then the client closes. */
  fake_llm_script(&fake, "[{\"type\":\"hang\"}]");
  r = post(url(GEN_PATH), GEN_BODY, &c, true);
  assert_int_equal(httpc_start(e.h, &r, &c.req), 0);
  uint64_t t0 = clock_mono_ms();
  while (clock_mono_ms() - t0 < 100)
    uv_run(&e.loop, UV_RUN_NOWAIT);
  env_free(&e);
  assert_int_equal(c.done, 1);
  assert_int_equal(c.err, EG_ECANCELED);
  call_free(&c);
}

static void test_many_concurrent(void **state) {
  (void)state;
  struct env e;
  env_init(&e);
  enum { N = 20 };
  struct call c[N];
  for (int i = 0; i < N; i++) {
    call_init(&c[i]);
    struct httpc_request r = post(url(GEN_PATH), GEN_BODY, &c[i], i % 2 == 0);
    assert_int_equal(httpc_start(e.h, &r, &c[i].req), 0);
  }
  uint64_t t0 = clock_mono_ms();
  int done = 0;
  while (done < N && clock_mono_ms() - t0 < (uint64_t)test_ms(20000)) {
    uv_run(&e.loop, UV_RUN_ONCE);
    done = 0;
    for (int i = 0; i < N; i++)
      done += c[i].done;
  }
  assert_int_equal(done, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(c[i].err, 0);
    assert_int_equal(c[i].status, 200);
    const char *b = i % 2 == 0 ? (const char *)c[i].body.data : c[i].done_body;
    assert_non_null(strstr(b, "You said: "));
    call_free(&c[i]);
  }
  env_free(&e);
}

/* ---- connection reuse against a keep-alive server ------------------------------------ */

/* Serves connections one after another: each request (a head, no body) gets "ok" with
   Content-Length. The first connection is closed by the server right after its first
   answer (an idle connection the peer dropped); later ones stay open until the client
   closes them. */
struct ka_server {
  int lfd;
  int port;
  int conns;    /* connections accepted */
  int requests; /* requests read (counted before each answer is written) */
  int stop;
  pthread_t th;
};

static void *ka_main(void *arg) {
  struct ka_server *k = arg;
  for (;;) {
    int fd = accept(k->lfd, NULL, NULL);
    if (fd < 0 || __atomic_load_n(&k->stop, __ATOMIC_SEQ_CST)) {
      if (fd >= 0)
        close(fd);
      return NULL;
    }
    int conn = __atomic_add_fetch(&k->conns, 1, __ATOMIC_SEQ_CST);
    char b[4096];
    size_t have = 0;
    for (;;) {
      ssize_t n = read(fd, b + have, sizeof b - 1 - have);
      if (n <= 0)
        break;
      have += (size_t)n;
      b[have] = 0;
      char *end = strstr(b, "\r\n\r\n");
      if (end == NULL)
        continue;
      size_t used = (size_t)(end + 4 - b);
      memmove(b, b + used, have - used);
      have -= used;
      /* counted before the answer goes out: once the client has it, the count is in */
      __atomic_add_fetch(&k->requests, 1, __ATOMIC_SEQ_CST);
      static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
      if (write(fd, resp, sizeof resp - 1) != (ssize_t)(sizeof resp - 1))
        break;
      if (conn == 1)
        break;
    }
    close(fd);
  }
}

static void ka_start(struct ka_server *k) {
  memset(k, 0, sizeof *k);
  k->lfd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(k->lfd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(k->lfd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(k->lfd, 16), 0);
  socklen_t al = sizeof a;
  assert_int_equal(getsockname(k->lfd, (struct sockaddr *)&a, &al), 0);
  k->port = ntohs(a.sin_port);
  assert_int_equal(pthread_create(&k->th, NULL, ka_main, k), 0);
}

static void ka_stop(struct ka_server *k) {
  __atomic_store_n(&k->stop, 1, __ATOMIC_SEQ_CST);
  int fd = socket(AF_INET, SOCK_STREAM, 0); /* wake accept */
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)k->port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  (void)connect(fd, (struct sockaddr *)&a, sizeof a);
  close(fd);
  pthread_join(k->th, NULL);
  close(k->lfd);
}

static void ka_get(struct env *e, const char *u) {
  struct call c;
  call_init(&c);
  struct httpc_request r = {.url = u, .on_done = on_done, .on_response = on_resp, .ud = &c};
  assert_int_equal(httpc_start(e->h, &r, &c.req), 0);
  run_until(e, &c, 1);
  assert_int_equal(c.err, 0);
  assert_int_equal(c.status, 200);
  assert_string_equal(c.done_body, "ok");
  call_free(&c);
}

static void on_tick(uv_timer_t *t) {
  (void)t;
}

static void test_reuse_and_idle_close(void **state) {
  (void)state;
  struct ka_server k;
  ka_start(&k);
  struct env e;
  env_init(&e);
  char u[64];
  snprintf(u, sizeof u, "http://127.0.0.1:%d/x", k.port);
  ka_get(&e, u); /* connection 1, which the server then closes while it is idle */
  for (int i = 0; i < 200 && __atomic_load_n(&k.conns, __ATOMIC_SEQ_CST) < 1; i++)
    usleep(1000);
  usleep(20000);
  /* The peer's close makes the idle socket readable: the watch is dropped, so the loop
     does not spin on it (a few iterations in 50 ms, not thousands). */
  uv_timer_t t;
  uv_timer_init(&e.loop, &t);
  uv_timer_start(&t, on_tick, 50, 0);
  int iters = 0;
  while (uv_is_active((uv_handle_t *)&t) && iters < 100000) {
    uv_run(&e.loop, UV_RUN_ONCE);
    iters++;
  }
  assert_true(iters < 100);
  uv_close((uv_handle_t *)&t, NULL);
  ka_get(&e, u); /* a new connection (2) */
  ka_get(&e, u); /* reuses connection 2 */
  ka_get(&e, u);
  assert_int_equal(__atomic_load_n(&k.conns, __ATOMIC_SEQ_CST), 2);
  assert_int_equal(__atomic_load_n(&k.requests, __ATOMIC_SEQ_CST), 4);
  env_free(&e);
  ka_stop(&k);
}

static int setup(void **state) {
  (void)state;
  return fake_llm_start(&fake);
}

static int teardown(void **state) {
  (void)state;
  fake_llm_stop(&fake);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_retry_after),
      cmocka_unit_test(test_retry_delay),
      cmocka_unit_test(test_status_helpers),
      cmocka_unit_test(test_buffered_get),
      cmocka_unit_test(test_stream_and_request_recorded),
      cmocka_unit_test(test_log_context),
      cmocka_unit_test(test_retry_429_retry_after),
      cmocka_unit_test(test_retry_500_then_error),
      cmocka_unit_test(test_retry_hook_vetoes),
      cmocka_unit_test(test_connection_refused),
      cmocka_unit_test(test_first_byte_timeout),
      cmocka_unit_test(test_idle_timeout),
      cmocka_unit_test(test_total_timeout),
      cmocka_unit_test(test_cancel_inside_data),
      cmocka_unit_test(test_cancel_outside),
      cmocka_unit_test(test_callback_abort_and_caps),
      cmocka_unit_test(test_invalid_and_close),
      cmocka_unit_test(test_many_concurrent),
      cmocka_unit_test(test_reuse_and_idle_close),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
