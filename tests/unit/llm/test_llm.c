/*
 * Tests for src/llm: every provider through a real uv loop. gemini and openai talk to the
 * fake model server (tests/fakes/fake-llm.mjs, spawned once, reset per test), which
 * records each request so the request bodies and headers are checked against the
 * published formats; the fake's scripted behaviours cover retries, in-band errors,
 * truncation, malformed JSON, safety blocks, timeouts and cancellation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "httpc/httpc.h"
#include "llm/fake_llm.h"
#include "llm/llm.h"
#include "llm/llm_int.h"
#include "test_time.h"

#include "../../../fuzz/llmchunk/oai_ref.h"

static struct fake_llm fake;

/* ---- fixtures ----------------------------------------------------------------------- */

static const struct llm_memory memories[] = {
    {LLM_ROLE_USER, "I have a dog named Rex", 22, 1700000000000, 0.9},
    {LLM_ROLE_MODEL, "Rex sounds lovely", 17, 0, 0.5},
};
static const struct llm_msg history[] = {
    {LLM_ROLE_USER, "hello", 5, 0}, {LLM_ROLE_MODEL, "hi!", 3, 0}, {LLM_ROLE_USER, "one", 3, 0},
    {LLM_ROLE_USER, "two", 3, 0},   {LLM_ROLE_MODEL, "ok", 2, 0},
};
static const char *const QUESTION = "what is my dog's name? \xC3\xA9t\xC3\xA9";

static struct llm_prompt prompt(void) {
  struct llm_prompt p = {0};
  p.system = "SYS";
  p.memories = memories;
  p.n_memories = 2;
  p.history = history;
  p.n_history = 5;
  p.message = QUESTION;
  p.message_len = strlen(QUESTION);
  return p;
}

struct out {
  int done;
  int status;
  char *message;
  char *code;
  char *finish;
  int64_t prompt_tokens, output_tokens;
  int http_status;
  struct buf text;
  int n_delta;
  int cancel_after;
  struct llm_stream *s;
};

static void on_delta(void *ud, const char *t, size_t n) {
  struct out *o = ud;
  assert_true(n > 0);
  assert_int_equal(o->done, 0);
  o->n_delta++;
  assert_int_equal(buf_append(&o->text, t, n), 0);
  if (o->cancel_after && o->n_delta == o->cancel_after)
    llm_stream_cancel(o->s);
}

static void on_done(void *ud, const struct llm_result *r) {
  struct out *o = ud;
  o->done++;
  o->status = r->status;
  o->message = r->message ? xstrdup(r->message) : NULL;
  o->code = r->code ? xstrdup(r->code) : NULL;
  o->finish = r->finish_reason ? xstrdup(r->finish_reason) : NULL;
  o->prompt_tokens = r->prompt_tokens;
  o->output_tokens = r->output_tokens;
  o->http_status = r->http_status;
}

static void out_init(struct out *o) {
  memset(o, 0, sizeof *o);
  buf_init(&o->text, 1u << 20);
  assert_int_equal(buf_append(&o->text, "", 0), 0); /* always NUL-terminated */
}

static void out_free(struct out *o) {
  buf_free(&o->text);
  free(o->message);
  free(o->code);
  free(o->finish);
}

struct env {
  uv_loop_t loop;
  struct httpc *h;
  struct llm_config cfg;
  int closed;
};

static void env_init(struct env *e, const char *provider) {
  memset(e, 0, sizeof *e);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  assert_int_equal(httpc_new(&e->loop, &e->h), 0);
  fake_llm_reset(&fake);
  llm_config_defaults(&e->cfg);
  e->cfg.provider = provider;
  e->cfg.gemini_base_url = fake.base;
  e->cfg.gemini_api_key = "secret-gemini-key";
  static char oa[96];
  snprintf(oa, sizeof oa, "%s/v1", fake.base);
  e->cfg.openai_base_url = oa;
  e->cfg.model = strcmp(provider, "gemini") == 0 ? "gemini-2.5-flash" : "fake-model";
  e->cfg.backoff_base_ms = 20;
  e->cfg.first_byte_timeout_ms = 5000;
  e->cfg.idle_timeout_ms = 5000;
  e->cfg.total_timeout_ms = 15000;
  e->cfg.offline_chunk_delay_ms = 1;
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

static void wait_done(struct env *e, struct out *o) {
  uint64_t t0 = clock_mono_ms();
  while (o->done == 0 && clock_mono_ms() - t0 < (uint64_t)test_ms(20000))
    uv_run(&e->loop, UV_RUN_ONCE);
  assert_int_equal(o->done, 1);
}

/* Runs one completion with the env's config; the provider is freed afterwards. */
static void run(struct env *e, struct out *o) {
  struct llm_provider *p;
  assert_int_equal(llm_provider_new(&e->loop, e->h, &e->cfg, &p), 0);
  struct llm_prompt pr = prompt();
  struct llm_callbacks cb = {on_delta, on_done, o};
  assert_int_equal(llm_stream_start(p, &pr, &cb, &o->s), 0);
  assert_int_equal(o->done, 0);
  wait_done(e, o);
  llm_provider_free(p);
}

static json_t *requests(void) {
  json_t *r = fake_llm_requests(&fake);
  assert_non_null(r);
  return r;
}

static const char *jstr(json_t *o, const char *path) {
  /* "a.b.0.c" */
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  json_t *cur = o;
  for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, ".")) {
    if (json_is_array(cur))
      cur = json_array_get(cur, (size_t)atoi(tok));
    else
      cur = json_object_get(cur, tok);
  }
  return json_string_value(cur);
}

static void expect_fail(struct out *o, int status, const char *msg_part) {
  assert_int_equal(o->status, status);
  assert_non_null(o->message);
  if (msg_part && strstr(o->message, msg_part) == NULL) {
    print_error("message \"%s\" lacks \"%s\"\n", o->message, msg_part);
    fail();
  }
  assert_string_equal(o->code, "llm_unavailable");
  assert_null(strstr(o->message, "secret"));
}

static char expected_echo[256];
static const char *echo(void) {
  snprintf(expected_echo, sizeof expected_echo, "You said: %s", QUESTION);
  return expected_echo;
}

/* ---- gemini ------------------------------------------------------------------------- */

/* llm__utf8_valid and llm__utf8_sanitize agree, at every position of a bad byte (the
   ASCII fast path reads 8 bytes at a time), and sanitize replaces each bad byte by U+FFFD. */
static void test_utf8_valid_and_sanitize(void **state) {
  (void)state;
  static const char *const bad[] = {"\x80", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                                    "\xE2\x82", "\xFF"};
  static const char *const good[] = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "a"};
  for (size_t pos = 0; pos < 20; pos++) {
    char t[64];
    memset(t, 'x', pos);
    for (size_t g = 0; g < sizeof good / sizeof good[0]; g++) {
      size_t n = pos;
      memcpy(t + n, good[g], strlen(good[g]));
      n += strlen(good[g]);
      memcpy(t + n, "tail-tail", 9);
      n += 9;
      assert_true(llm__utf8_valid(t, n));
      struct buf b;
      buf_init(&b, 1024);
      assert_int_equal(llm__utf8_sanitize(t, n, &b), 0);
      assert_int_equal(b.len, n);
      assert_memory_equal(b.data, t, n);
      buf_free(&b);
    }
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
      size_t n = pos, bl = strlen(bad[k]);
      memcpy(t + n, bad[k], bl);
      n += bl;
      memcpy(t + n, "tail-tail", 9);
      n += 9;
      assert_false(llm__utf8_valid(t, n));
      struct buf b;
      buf_init(&b, 1024);
      assert_int_equal(llm__utf8_sanitize(t, n, &b), 0);
      assert_true(llm__utf8_valid((const char *)b.data, b.len));
      assert_memory_equal(b.data, t, pos);
      assert_memory_equal(b.data + pos, "\xEF\xBF\xBD", 3);
      assert_memory_equal(b.data + b.len - 9, "tail-tail", 9);
      buf_free(&b);
    }
  }
  assert_true(llm__utf8_valid("", 0));
}

/* The OpenAI chunk read without jansson: the steps it finds, what it leaves to jansson,
   and agreement with the jansson reference (fuzz/llmchunk/oai_ref.h) on each input. */
struct oai_case {
  const char *text;
  int fast; /* 0 or LLM_EVENT_FALLBACK */
  const char *steps; /* "t:<text>|f:<reason>|..." when fast == 0 */
};

static void test_openai_chunk_fast(void **state) {
  (void)state;
  static const struct oai_case cases[] = {
      {"{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"choices\":[{\"index\":0,"
       "\"delta\":{\"role\":\"assistant\",\"content\":\"Noted. \"},\"finish_reason\":null}]}",
       0, "t:Noted. |"},
      {"{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}", 0, "f:stop|"},
      {"{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other\"}},{\"index\":0,\"delta\":"
       "{\"content\":\"a\\\"b\\\\c\\n\\/\"},\"finish_reason\":\"length\"}]}",
       0, "t:a\"b\\c\n/|f:length|"},
      {" { \"choices\" : [ { \"index\" : 0.0 , \"message\" : { \"refusal\" : \"r\" , \"content\" "
       ": \"m\" } , \"finish_reason\" : \"content_filter\" } ] } ",
       0, "t:m|t:r|f:content_filter|"},
      {"{\"choices\":[1,\"s\",null,{\"delta\":\"str\",\"message\":{\"content\":\"from message\"}}],"
       "\"x\":[{\"a\":[1,2,{}]}],\"usage\":null}",
       0, "t:from message|"},
      {"{\"choices\":[{\"index\":-0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"\"}]}", 0,
       "t:|"},
      {"{}", 0, ""},
      {"{\"choices\":[],\"usage\":{\"prompt_tokens\":3}}", LLM_EVENT_FALLBACK, NULL},
      {"{\"object\":\"error\",\"message\":\"bad\"}", LLM_EVENT_FALLBACK, NULL},
      {"{\"error\":null,\"choices\":[]}", LLM_EVENT_FALLBACK, NULL},
      {"{\"choices\":[{\"delta\":{\"content\":\"x\",\"content\":\"y\"}}]}", LLM_EVENT_FALLBACK,
       NULL},
      {"{\"choices\":[{\"delta\":{\"content\":\"caf\\u00e9\"}}]}", LLM_EVENT_FALLBACK, NULL},
      {"{\"choices\":[{\"delta\":{\"content\":\"caf\xc3\xa9\"}}]}", LLM_EVENT_FALLBACK, NULL},
      {"{\"choices\":[{\"index\":12345678901234567890}]}", LLM_EVENT_FALLBACK, NULL},
      {"[{\"choices\":[]}]", LLM_EVENT_FALLBACK, NULL},
      {"{\"choices\":[}", LLM_EVENT_FALLBACK, NULL},
      {"{\"choices\":[]} x", LLM_EVENT_FALLBACK, NULL},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const char *t = cases[c].text;
    struct buf a, b, got;
    buf_init(&a, 4096);
    buf_init(&b, 4096);
    buf_init(&got, 4096);
    struct llm__oai_chunk fa, fb;
    int fast = llm__openai_chunk_fast(t, strlen(t), &a, &fa);
    if (fast != cases[c].fast)
      fail_msg("case %zu: %d, expected %d", c, fast, cases[c].fast);
    if (fast == 0) {
      for (size_t i = 0; i < fa.n; i++) {
        assert_int_equal(buf_printf(&got, "%s:", fa.step[i].finish ? "f" : "t"), 0);
        assert_int_equal(buf_append(&got, a.data + fa.step[i].off, fa.step[i].len), 0);
        assert_int_equal(buf_append_byte(&got, '|'), 0);
      }
      assert_int_equal(got.len, strlen(cases[c].steps));
      assert_memory_equal(got.data, cases[c].steps, got.len);
      assert_int_equal(oai_ref(t, strlen(t), &b, &fb), 0);
      assert_int_equal(fa.n, fb.n);
      for (size_t i = 0; i < fa.n; i++) {
        assert_int_equal(fa.step[i].finish, fb.step[i].finish);
        assert_int_equal(fa.step[i].len, fb.step[i].len);
        assert_memory_equal(a.data + fa.step[i].off, b.data + fb.step[i].off, fa.step[i].len);
      }
    }
    buf_free(&a);
    buf_free(&b);
    buf_free(&got);
  }
}

static void test_gemini_stream_and_request(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "gemini");
  e.cfg.temperature = 0.5;
  e.cfg.max_output_tokens = 256;
  struct out o;
  out_init(&o);
  run(&e, &o);
  assert_int_equal(o.status, 0);
  assert_null(o.message);
  assert_null(o.code);
  assert_string_equal((char *)o.text.data, echo());
  assert_true(o.n_delta >= 2);
  assert_string_equal(o.finish, "STOP");
  assert_true(o.prompt_tokens > 0);
  assert_true(o.output_tokens > 0);
  json_t *r = requests();
  assert_int_equal(json_array_size(r), 1);
  json_t *q = json_array_get(r, 0);
  assert_string_equal(jstr(q, "path"), "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
  assert_string_equal(jstr(q, "query.alt"), "sse");
  assert_string_equal(jstr(q, "headers.x-goog-api-key"), "secret-gemini-key");
  assert_string_equal(jstr(q, "headers.content-type"), "application/json");
  assert_null(json_object_get(json_object_get(q, "query"), "key")); /* key not in the URL */
  json_t *b = json_object_get(q, "body");
  json_t *contents = json_object_get(b, "contents");
  /* hello / hi! / one+two as two parts of one turn / ok / the question */
  assert_int_equal(json_array_size(contents), 5);
  assert_string_equal(jstr(contents, "0.role"), "user");
  assert_string_equal(jstr(contents, "0.parts.0.text"), "hello");
  assert_string_equal(jstr(contents, "1.role"), "model");
  assert_string_equal(jstr(contents, "1.parts.0.text"), "hi!");
  assert_string_equal(jstr(contents, "2.role"), "user");
  assert_string_equal(jstr(contents, "2.parts.0.text"), "one");
  assert_string_equal(jstr(contents, "2.parts.1.text"), "two");
  assert_string_equal(jstr(contents, "3.role"), "model");
  assert_string_equal(jstr(contents, "4.role"), "user");
  assert_string_equal(jstr(contents, "4.parts.0.text"), QUESTION);
  assert_string_equal(jstr(b, "systemInstruction.parts.0.text"),
                      "SYS\n\nRelevant memories from earlier conversations:\n"
                      "- [2023-11-14] user: I have a dog named Rex\n"
                      "- [unknown date] assistant: Rex sounds lovely\n");
  assert_null(json_object_get(json_object_get(b, "systemInstruction"), "role"));
  json_t *gc = json_object_get(b, "generationConfig");
  assert_int_equal(json_integer_value(json_object_get(gc, "candidateCount")), 1);
  assert_int_equal(json_integer_value(json_object_get(gc, "maxOutputTokens")), 256);
  assert_true(json_real_value(json_object_get(gc, "temperature")) == 0.5);
  json_decref(r);
  out_free(&o);
  env_free(&e);
}

static void test_gemini_line_endings_and_splits(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "gemini");
  const char *scripts[] = {
      "[{\"type\":\"stream\",\"eol\":\"lf\",\"keepalive\":2,\"text\":\"one two three four\"}]",
      "[{\"type\":\"stream\",\"eol\":\"cr\",\"text\":\"one two three four\"}]",
      "[{\"type\":\"stream\",\"delayMs\":5,\"chunks\":[\"one \",\"two \",\"three \",\"4\"]}]",
  };
  /* Raw bytes cut inside "data", between CR and LF, inside a UTF-8 character and between
     the two line ends of the last event; each piece arrives in its own read. */
  const char *raw =
      "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"one two \"}]}}]}\r\n\r\n"
      "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"three "
      "\xC3\xA9\"}]}}]}\r\n\r\n"
      "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\xC3\xA9 four\"}]},"
      "\"finishReason\": \"STOP\"}]}\r\n\r\n";
  size_t len = strlen(raw);
  json_int_t cuts[4] = {2, (json_int_t)(strchr(raw, '\r') - raw + 1),
                        (json_int_t)(strstr(raw, "\"\xC3\xA9 four") - raw + 2),
                        (json_int_t)len - 2};
  json_t *sc = json_pack("[{s:s, s:i, s:s, s:[IIII]}]", "type", "raw", "delayMs", 40, "body",
                         raw, "splitAt", cuts[0], cuts[1], cuts[2], cuts[3]);
  char *raw_script = json_dumps(sc, JSON_COMPACT);
  json_decref(sc);
  const char *want[] = {"one two three four", "one two three four", "one two three 4",
                        "one two three \xC3\xA9\xC3\xA9 four"};
  for (size_t i = 0; i <= EG_ARRAY_LEN(scripts); i++) {
    fake_llm_script(&fake, i < EG_ARRAY_LEN(scripts) ? scripts[i] : raw_script);
    struct out o;
    out_init(&o);
    run(&e, &o);
    if (o.status != 0)
      print_error("script %zu: %s\n", i, o.message);
    assert_int_equal(o.status, 0);
    assert_string_equal((char *)o.text.data, want[i]);
    if (i == EG_ARRAY_LEN(scripts))
      assert_true(o.n_delta == 3);
    out_free(&o);
  }
  free(raw_script);
  env_free(&e);
}

static void test_gemini_retry_429_retrydelay(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "gemini");
  e.cfg.backoff_base_ms = 20000; /* the body's RetryInfo must decide, not the backoff */
  fake_llm_script(&fake, "[{\"type\":\"rate_limit\",\"retryDelay\":\"0.3s\"}]");
  struct out o;
  out_init(&o);
  uint64_t t0 = clock_mono_ms();
  run(&e, &o);
  uint64_t took = clock_mono_ms() - t0;
  assert_int_equal(o.status, 0);
  assert_string_equal((char *)o.text.data, echo());
  assert_true(took >= 290 && took < (uint64_t)test_ms(8000));
  json_t *r = requests();
  assert_int_equal(json_array_size(r), 2);
  json_decref(r);
  out_free(&o);
  /* A daily quota is not retried. */
  fake_llm_reset(&fake);
  fake_llm_script(&fake, "[{\"type\":\"rate_limit\",\"retryDelay\":\"1s\",\"daily\":true}]");
  out_init(&o);
  run(&e, &o);
  expect_fail(&o, EG_ELIMIT, "HTTP 429");
  assert_int_equal(o.http_status, 429);
  r = requests();
  assert_int_equal(json_array_size(r), 1);
  json_decref(r);
  out_free(&o);
  env_free(&e);
}

static void test_gemini_500_retried_then_error(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "gemini");
  fake_llm_script(&fake,
                  "[{\"type\":\"status\",\"status\":500},{\"type\":\"status\",\"status\":503},"
                  "{\"type\":\"status\",\"status\":503}]");
  struct out o;
  out_init(&o);
  run(&e, &o);
  expect_fail(&o, EG_EUPSTREAM, "HTTP 503 UNAVAILABLE");
  assert_non_null(strstr(o.message, "3 attempts"));
  assert_int_equal(o.n_delta, 0);
  json_t *r = requests();
  assert_int_equal(json_array_size(r), 3);
  json_decref(r);
  out_free(&o);
  env_free(&e);
}

static void test_gemini_failures_in_stream(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "gemini");
  struct {
    const char *script;
    int status;
    const char *msg;
    bool partial_text;
  } cases[] = {
      {"[{\"type\":\"midstream_error\",\"text\":\"partial answer here\"}]", EG_EUPSTREAM,
       "UNAVAILABLE", true},
      {"[{\"type\":\"named_error\",\"text\":\"partial answer\"}]", EG_EUPSTREAM, "error", true},
      {"[{\"type\":\"truncate\",\"text\":\"partial answer here\"}]", EG_EUPSTREAM, "cut off",
       true},
      {"[{\"type\":\"truncate_clean\",\"text\":\"partial answer here\"}]", EG_EUPSTREAM,
       "without a finish reason", true},
      {"[{\"type\":\"malformed\"}]", EG_EUPSTREAM, "malformed JSON", false},
      {"[{\"type\":\"blocked\",\"blockReason\":\"PROHIBITED_CONTENT\"}]", EG_EUPSTREAM,
       "blockReason PROHIBITED_CONTENT", false},
      {"[{\"type\":\"safety\"}]", EG_EUPSTREAM, "finishReason SAFETY", false},
      {"[{\"type\":\"empty\"}]", EG_EUPSTREAM, "empty answer", false},
      {"[{\"type\":\"empty\",\"finishReason\":\"MAX_TOKENS\"}]", EG_EUPSTREAM, "MAX_TOKENS",
       false},
      /* Twice: libcurl itself retries once when a reused connection dies unanswered. */
      {"[{\"type\":\"reset\"},{\"type\":\"reset\"}]", EG_EIO, "Could not reach", false},
  };
  e.cfg.max_tries = 1;
  for (size_t i = 0; i < EG_ARRAY_LEN(cases); i++) {
    fake_llm_script(&fake, cases[i].script);
    struct out o;
    out_init(&o);
    run(&e, &o);
    expect_fail(&o, cases[i].status, cases[i].msg);
    if (cases[i].partial_text)
      assert_true(o.text.len > 0);
    else
      assert_int_equal(o.text.len, 0);
    out_free(&o);
  }
  env_free(&e);
}

static void test_gemini_http_errors(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "gemini");
  e.cfg.gemini_api_key = "invalid-key";
  struct out o;
  out_init(&o);
  run(&e, &o);
  expect_fail(&o, EG_EAUTH, "API_KEY_INVALID");
  assert_int_equal(o.http_status, 400);
  out_free(&o);
  e.cfg.gemini_api_key = "secret-gemini-key";
  e.cfg.model = "missing-model";
  out_init(&o);
  run(&e, &o);
  expect_fail(&o, EG_EUPSTREAM, "not found");
  assert_non_null(strstr(o.message, "missing-model"));
  out_free(&o);
  json_t *r = requests();
  assert_int_equal(json_array_size(r), 2); /* 400 and 404 are not retried */
  json_decref(r);
  env_free(&e);
}

static void test_gemini_timeouts(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "gemini");
  e.cfg.first_byte_timeout_ms = 200;
  e.cfg.idle_timeout_ms = 250;
  e.cfg.max_tries = 1;
  fake_llm_script(&fake, "[{\"type\":\"hang\"}]");
  struct out o;
  out_init(&o);
  run(&e, &o);
  expect_fail(&o, EG_ETIMEOUT, "first byte");
  out_free(&o);
  fake_llm_script(&fake, "[{\"type\":\"stall\",\"text\":\"some words then silence\"}]");
  out_init(&o);
  uint64_t t0 = clock_mono_ms();
  run(&e, &o);
  expect_fail(&o, EG_ETIMEOUT, "idle");
  assert_true(clock_mono_ms() - t0 >= 240);
  assert_string_equal((char *)o.text.data, "some words then silence");
  out_free(&o);
  env_free(&e);
}

static void test_gemini_cancel_midstream(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "gemini");
  /* the chunks' pace scales with the deadline, so "did not wait" keeps its meaning */
  char script[160];
  snprintf(script, sizeof script,
           "[{\"type\":\"stream\",\"chunks\":[\"a\",\"b\",\"c\",\"d\",\"e\"],\"delayMs\":%d}]",
           test_ms(300));
  fake_llm_script(&fake, script);
  struct out o;
  out_init(&o);
  o.cancel_after = 2;
  uint64_t t0 = clock_mono_ms();
  run(&e, &o);
  assert_int_equal(o.status, EG_ECANCELED);
  assert_null(o.code);
  assert_string_equal(o.message, "generation cancelled");
  assert_string_equal((char *)o.text.data, "ab");
  assert_true(clock_mono_ms() - t0 < (uint64_t)test_ms(1300)); /* not the rest (1.5 s) */
  out_free(&o);
  /* Cancel from outside a callback, while waiting for the first byte. */
  fake_llm_script(&fake, "[{\"type\":\"hang\"}]");
  struct llm_provider *p;
  assert_int_equal(llm_provider_new(&e.loop, e.h, &e.cfg, &p), 0);
  struct llm_prompt pr = prompt();
  out_init(&o);
  struct llm_callbacks cb = {on_delta, on_done, &o};
  assert_int_equal(llm_stream_start(p, &pr, &cb, &o.s), 0);
  for (int i = 0; i < 20; i++)
    uv_run(&e.loop, UV_RUN_NOWAIT);
  llm_stream_cancel(o.s);
  assert_int_equal(o.done, 0);
  wait_done(&e, &o);
  assert_int_equal(o.status, EG_ECANCELED);
  out_free(&o);
  /* Freeing the provider cancels what runs. */
  fake_llm_script(&fake, "[{\"type\":\"hang\"}]");
  out_init(&o);
  assert_int_equal(llm_stream_start(p, &pr, &cb, &o.s), 0);
  llm_provider_free(p);
  wait_done(&e, &o);
  assert_int_equal(o.status, EG_ECANCELED);
  out_free(&o);
  env_free(&e);
}

static void test_gemini_non_streamed(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "gemini");
  e.cfg.stream = false;
  struct out o;
  out_init(&o);
  run(&e, &o);
  assert_int_equal(o.status, 0);
  assert_string_equal((char *)o.text.data, echo());
  assert_int_equal(o.n_delta, 1);
  json_t *r = requests();
  assert_string_equal(jstr(r, "0.path"), "/v1beta/models/gemini-2.5-flash:generateContent");
  json_decref(r);
  out_free(&o);
  env_free(&e);
}

/* ---- openai ------------------------------------------------------------------------- */

static void test_openai_stream_and_request(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "openai");
  e.cfg.openai_api_key = "sk-secret";
  e.cfg.max_output_tokens = 100;
  struct out o;
  out_init(&o);
  run(&e, &o);
  assert_int_equal(o.status, 0);
  assert_string_equal((char *)o.text.data, echo());
  assert_string_equal(o.finish, "stop");
  assert_true(o.prompt_tokens > 0); /* from the include_usage chunk with empty choices */
  json_t *r = requests();
  json_t *q = json_array_get(r, 0);
  assert_string_equal(jstr(q, "path"), "/v1/chat/completions");
  assert_string_equal(jstr(q, "headers.authorization"), "Bearer sk-secret");
  json_t *b = json_object_get(q, "body");
  assert_string_equal(jstr(b, "model"), "fake-model");
  assert_true(json_is_true(json_object_get(b, "stream")));
  assert_true(
      json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage")));
  assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 100);
  json_t *m = json_object_get(b, "messages");
  assert_int_equal(json_array_size(m), 7);
  assert_string_equal(jstr(m, "0.role"), "system");
  assert_non_null(strstr(jstr(m, "0.content"), "SYS\n\nRelevant memories from earlier"));
  assert_string_equal(jstr(m, "1.role"), "user");
  assert_string_equal(jstr(m, "2.role"), "assistant");
  assert_string_equal(jstr(m, "2.content"), "hi!");
  assert_string_equal(jstr(m, "4.role"), "user");
  assert_string_equal(jstr(m, "4.content"), "two"); /* not merged for OpenAI */
  assert_string_equal(jstr(m, "5.role"), "assistant");
  assert_string_equal(jstr(m, "6.role"), "user");
  assert_string_equal(jstr(m, "6.content"), QUESTION);
  json_decref(r);
  out_free(&o);
  /* Without a key: no Authorization header. */
  fake_llm_reset(&fake);
  e.cfg.openai_api_key = NULL;
  out_init(&o);
  run(&e, &o);
  assert_int_equal(o.status, 0);
  r = requests();
  assert_null(
      json_object_get(json_object_get(json_array_get(r, 0), "headers"), "authorization"));
  json_decref(r);
  out_free(&o);
  env_free(&e);
}

static void test_openai_dialects(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "openai");
  const char *ok[] = {
      "[{\"type\":\"stream\",\"dialect\":\"ollama\"}]",
      "[{\"type\":\"stream\",\"dialect\":\"llamacpp\",\"keepalive\":3}]",
      "[{\"type\":\"stream\",\"dialect\":\"vllm\"}]",
      "[{\"type\":\"stream\",\"noDone\":true}]", /* finish_reason, no [DONE] */
      "[{\"type\":\"stream\",\"eol\":\"crlf\",\"delayMs\":10}]",
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(ok); i++) {
    fake_llm_script(&fake, ok[i]);
    struct out o;
    out_init(&o);
    run(&e, &o);
    if (o.status != 0)
      print_error("case %zu: %s\n", i, o.message);
    assert_int_equal(o.status, 0);
    assert_string_equal((char *)o.text.data, echo());
    out_free(&o);
  }
  env_free(&e);
}

static void test_openai_failures(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "openai");
  e.cfg.openai_api_key = "sk-secret";
  struct {
    const char *script;
    int status;
    const char *msg;
    int requests;
  } cases[] = {
      {"[{\"type\":\"midstream_error\",\"dialect\":\"vllm\",\"error\":\"boom\"}]", EG_EUPSTREAM,
       "boom", 1},
      {"[{\"type\":\"midstream_error\",\"dialect\":\"llamacpp\"}]", EG_EUPSTREAM,
       "middle of its answer", 1},
      {"[{\"type\":\"named_error\"}]", EG_EUPSTREAM, "boom", 1},
      {"[{\"type\":\"raw\",\"chunks\":[\"data: {\\\"object\\\":\\\"error\\\",\\\"message\\\":"
       "\\\"legacy vllm\\\",\\\"code\\\":400}\\n\\n\"]}]",
       EG_EUPSTREAM, "legacy vllm", 1},
      {"[{\"type\":\"truncate\"}]", EG_EUPSTREAM, "cut off", 1},
      {"[{\"type\":\"truncate_clean\"}]", EG_EUPSTREAM, "without a finish_reason or [DONE]", 1},
      {"[{\"type\":\"malformed\"}]", EG_EUPSTREAM, "malformed JSON", 1},
      {"[{\"type\":\"empty\"}]", EG_EUPSTREAM, "empty answer", 1},
      {"[{\"type\":\"rate_limit\",\"quota\":true}]", EG_ELIMIT, "quota", 1},
      {"[{\"type\":\"status\",\"status\":401}]", EG_EAUTH, "OPENAI_API_KEY", 1},
      {"[{\"type\":\"status\",\"status\":500},{\"type\":\"status\",\"status\":502},"
       "{\"type\":\"status\",\"status\":500}]",
       EG_EUPSTREAM, "HTTP 500", 3},
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(cases); i++) {
    fake_llm_reset(&fake);
    fake_llm_script(&fake, cases[i].script);
    struct out o;
    out_init(&o);
    run(&e, &o);
    expect_fail(&o, cases[i].status, cases[i].msg);
    json_t *r = requests();
    assert_int_equal(json_array_size(r), (size_t)cases[i].requests);
    json_decref(r);
    out_free(&o);
  }
  /* x-should-retry: false is obeyed. */
  fake_llm_reset(&fake);
  fake_llm_script(&fake, "[{\"type\":\"status\",\"status\":503,"
                         "\"headers\":{\"x-should-retry\":\"false\"}}]");
  {
    struct out o;
    out_init(&o);
    run(&e, &o);
    expect_fail(&o, EG_EUPSTREAM, "HTTP 503");
    json_t *r = requests();
    assert_int_equal(json_array_size(r), 1);
    json_decref(r);
    out_free(&o);
  }
  /* 429 with retry-after-ms is retried and then succeeds. */
  fake_llm_reset(&fake);
  fake_llm_script(&fake, "[{\"type\":\"rate_limit\",\"retryAfterMs\":100}]");
  struct out o;
  out_init(&o);
  run(&e, &o);
  assert_int_equal(o.status, 0);
  assert_string_equal((char *)o.text.data, echo());
  out_free(&o);
  env_free(&e);
}

static void test_openai_non_streamed(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "openai");
  e.cfg.stream = false;
  struct out o;
  out_init(&o);
  run(&e, &o);
  assert_int_equal(o.status, 0);
  assert_string_equal((char *)o.text.data, echo());
  json_t *r = requests();
  assert_true(
      json_is_false(json_object_get(json_object_get(json_array_get(r, 0), "body"), "stream")));
  json_decref(r);
  out_free(&o);
  env_free(&e);
}

/* Raw upstream quirks: bytes that are not UTF-8 inside an event (replaced with U+FFFD, the
   rest of the answer kept), a server that answers a stream request with one JSON body,
   and upstream error text that repeats our key (redacted). */
static void test_upstream_quirks(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "gemini");
  static const char sse[] = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": "
                            "\"a\xC3\x28 b\xFF c\x80\"}]}}]}\r\n\r\n"
                            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" "
                            "d\"}]},\"finishReason\": \"STOP\"}]}\r\n\r\n";
  char b64[sodium_base64_ENCODED_LEN(sizeof sse, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(b64, sizeof b64, (const unsigned char *)sse, sizeof sse - 1,
                    sodium_base64_VARIANT_ORIGINAL);
  json_t *sc =
      json_pack("[{s:s, s:s, s:[i]}]", "type", "raw", "bodyBase64", b64, "splitAt", 60);
  char *js = json_dumps(sc, JSON_COMPACT);
  json_decref(sc);
  fake_llm_script(&fake, js);
  free(js);
  struct out o;
  out_init(&o);
  run(&e, &o);
  assert_int_equal(o.status, 0);
  assert_string_equal((char *)o.text.data, "a\xEF\xBF\xBD( b\xEF\xBF\xBD c\xEF\xBF\xBD d");
  out_free(&o);
  /* Upstream error text with the key in it. */
  fake_llm_script(
      &fake,
      "[{\"type\":\"status\",\"status\":400,\"error\":\"bad key secret-gemini-key given\"}]");
  out_init(&o);
  run(&e, &o);
  expect_fail(&o, EG_EUPSTREAM, "bad key ***");
  out_free(&o);
  env_free(&e);
  /* OpenAI-compatible server that ignores stream:true and sends one JSON body. */
  env_init(&e, "openai");
  fake_llm_script(
      &fake,
      "[{\"type\":\"raw\",\"headers\":{\"Content-Type\":\"application/json\"},\"chunks\":["
      "\"{\\\"id\\\":\\\"x\\\",\\\"object\\\":\\\"chat.completion\\\",\\\"choices\\\":[{"
      "\\\"index\\\":0,\\\"message\\\":{\\\"role\\\":\\\"assistant\\\",\\\"content\\\":"
      "\\\"whole answer\\\"},\\\"finish_reason\\\":\\\"stop\\\"}]}\"]}]");
  out_init(&o);
  run(&e, &o);
  assert_int_equal(o.status, 0);
  assert_string_equal((char *)o.text.data, "whole answer");
  out_free(&o);
  /* An event stream labelled text/plain. */
  fake_llm_script(&fake,
                  "[{\"type\":\"raw\",\"headers\":{\"Content-Type\":\"text/plain\"},"
                  "\"chunks\":[\"data: {\\\"choices\\\":[{\\\"delta\\\":{\\\"content\\\":"
                  "\\\"plain\\\"},\\\"finish_reason\\\":\\\"stop\\\"}]}\\n\\n\","
                  "\"data: [DONE]\\n\\n\"]}]");
  out_init(&o);
  run(&e, &o);
  assert_int_equal(o.status, 0);
  assert_string_equal((char *)o.text.data, "plain");
  out_free(&o);
  env_free(&e);
}

/* ---- offline replay of the contract's edge cases (PROVIDER-CONTRACTS section 5) ----- */

struct replay_case {
  const char *name;
  bool gemini;
  const char *ct;
  const char *body;
  int status;
  const char *text; /* expected answer (also checked on failure: partial text) */
};

#define GEM_EV(t)                                                                              \
  "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"" t                         \
  "\"}],\"role\": \"model\"},\"index\": 0}]}"
#define GEM_FIN(t)                                                                             \
  "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"" t                         \
  "\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}]}"
#define OA_EV(t)                                                                               \
  "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" t "\"},\"finish_reason\":null}" \
                                                                 "]}"
#define OA_FIN "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}"

static const struct replay_case replay_cases[] = {
    {"gemini crlf", true, "text/event-stream",
     GEM_EV("Hel") "\r\n\r\n" GEM_FIN("lo") "\r\n\r\n", 0, "Hello"},
    {"gemini lf", true, "text/event-stream", GEM_EV("Hel") "\n\n" GEM_FIN("lo") "\n\n", 0,
     "Hello"},
    {"gemini cr", true, "text/event-stream", GEM_EV("Hel") "\r\r" GEM_FIN("lo") "\r\r", 0,
     "Hello"},
    {"gemini mixed eol, bom, keep-alives", true, "text/event-stream",
     "\xEF\xBB\xBF:\r\n\r\n" GEM_EV("Hel") "\r\n\n: ping\r" GEM_FIN("lo") "\n\r\n", 0, "Hello"},
    {"gemini multi-line data", true, "text/event-stream",
     "data: {\"candidates\": [{\"content\":\ndata:  {\"parts\": [{\"text\": \"Hi\"}]},\n"
     "data: \"finishReason\": \"STOP\"}]}\n\n",
     0, "Hi"},
    {"gemini final event without its blank line", true, "text/event-stream",
     GEM_EV("a") "\r\n\r\n" GEM_FIN("b"), 0, "ab"},
    {"gemini thought and signature-only parts", true, "text/event-stream",
     "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"hmm\", \"thought\": "
     "true}, "
     "{\"thoughtSignature\": \"c2ln\"}, {\"text\": \"answer\"}]}, \"finishReason\": "
     "\"STOP\"}]}\n\n",
     0, "answer"},
    {"gemini escapes and non-ASCII", true, "text/event-stream",
     GEM_FIN("\\\"q\\\" \\u00e9 \xE2\x82\xAC \\ud83d\\ude00") "\n\n", 0,
     "\"q\" \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"},
    {"gemini unknown finish reason with text", true, "text/event-stream",
     "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"x\"}]}, "
     "\"finishReason\": "
     "\"SOMETHING_NEW\"}]}\n\n",
     0, "x"},
    {"gemini blocked prompt", true, "text/event-stream",
     "data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\"}}\r\n\r\n", EG_EUPSTREAM, ""},
    {"gemini no content, OTHER", true, "text/event-stream",
     "data: {\"candidates\": [{\"finishReason\": \"OTHER\", \"index\": 0}]}\n\n", EG_EUPSTREAM,
     ""},
    {"gemini truncated mid-event", true, "text/event-stream",
     GEM_EV("par") "\r\n\r\ndata: {\"candidates\": [{\"content\": {\"pa", EG_EUPSTREAM, "par"},
    {"gemini ends without finishReason", true, "text/event-stream", GEM_EV("par") "\r\n\r\n",
     EG_EUPSTREAM, "par"},
    {"gemini in-band error", true, "text/event-stream",
     GEM_EV("par") "\r\n\r\ndata: {\"error\": {\"code\": 503, \"message\": \"overloaded\", "
                   "\"status\": \"UNAVAILABLE\"}}\r\n\r\n",
     EG_EUPSTREAM, "par"},
    {"gemini JSON array (no alt=sse)", true, "application/json",
     "[{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}]}}]}\r\n,\r\n"
     "{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo\"}]}, \"finishReason\": "
     "\"STOP\"}]}]",
     0, "Hello"},
    {"openai reference", false, "text/event-stream",
     "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
     "\"finish_reason\":null}],\"usage\":null}\n\n" OA_EV(
         "Hi") "\n\n" OA_FIN
               "\n\ndata: "
               "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n"
               "data: [DONE]\n\n",
     0, "Hi"},
    {"llama.cpp null content and ping", false, "text/event-stream",
     ":\n\ndata: "
     "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null},"
     "\"finish_reason\":null}]}\n\n" OA_EV("Hi") "\n\n" OA_FIN "\n\ndata: [DONE]\n\n",
     0, "Hi"},
    {"ollama legacy role on every chunk", false, "text/event-stream",
     "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},"
     "\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"role\":"
     "\"assistant\",\"content\":\"\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
     0, "Hi"},
    {"finish without [DONE]", false, "text/event-stream", OA_EV("Hi") "\n\n" OA_FIN "\n\n", 0,
     "Hi"},
    {"[DONE] without finish", false, "text/event-stream", OA_EV("Hi") "\n\ndata: [DONE]\n\n", 0,
     "Hi"},
    {"truncated before [DONE]", false, "text/event-stream", OA_EV("Hi") "\n\n", EG_EUPSTREAM,
     "Hi"},
    {"vllm error then [DONE]", false, "text/event-stream",
     OA_EV("Hi") "\n\ndata: {\"error\":{\"message\":\"boom\",\"type\":\"InternalServerError\","
                 "\"param\":null,\"code\":500}}\n\ndata: [DONE]\n\n",
     EG_EUPSTREAM, "Hi"},
    {"named error event", false, "text/event-stream",
     OA_EV("Hi") "\n\nevent: error\ndata: {\"error\":{\"message\":\"x\"}}\n\n", EG_EUPSTREAM,
     "Hi"},
    {"invalid UTF-8 replaced", false, "text/event-stream",
     OA_EV("a\xC3\x28 \xFF \x80") "\n\n" OA_FIN "\n\n", 0,
     "a\xEF\xBF\xBD( \xEF\xBF\xBD \xEF\xBF\xBD"},
    {"content filter", false, "text/event-stream",
     OA_EV("Hi") "\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
                 "\"content_filter\"}]}\n\n",
     EG_EUPSTREAM, "Hi"},
    {"second choice ignored", false, "text/event-stream",
     "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"no\"}},{\"index\":0,\"delta\":"
     "{\"content\":\"yes\"},\"finish_reason\":\"stop\"}]}\n\n",
     0, "yes"},
    {"not JSON", false, "text/event-stream", "data: {oops}\n\n", EG_EUPSTREAM, ""},
};

static void test_replay_edge_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < EG_ARRAY_LEN(replay_cases); i++) {
    const struct replay_case *c = &replay_cases[i];
    size_t n = strlen(c->body);
    /* Whole, then every chunk size from 1 byte up. */
    for (size_t chunk = 0; chunk <= n; chunk++) {
      struct buf t;
      buf_init(&t, 1u << 20);
      assert_int_equal(buf_append(&t, "", 0), 0);
      int st;
      bool fin;
      llm__replay(c->gemini ? &llm__gemini_dialect : &llm__openai_dialect, c->ct, true,
                  (const uint8_t *)c->body, n, chunk, &t, &st, &fin);
      if (st != c->status || strcmp((char *)t.data, c->text) != 0) {
        print_error("case \"%s\" chunk %zu: status %d text \"%s\"\n", c->name, chunk, st,
                    (char *)t.data);
        fail();
      }
      buf_free(&t);
    }
  }
  /* An event above the 4 MiB cap fails cleanly. */
  size_t big = (4u << 20) + 100;
  char *b = xmalloc(big + 64);
  int k = snprintf(b, 64, "data: {\"choices\":[{\"delta\":{\"content\":\"");
  memset(b + k, 'x', big);
  memcpy(b + k + big, "\"}}]}\n\n", 8);
  struct buf t;
  buf_init(&t, 16u << 20);
  int st;
  bool fin;
  llm__replay(&llm__openai_dialect, "text/event-stream", true, (const uint8_t *)b, strlen(b),
              65536, &t, &st, &fin);
  assert_int_equal(st, EG_EUPSTREAM);
  assert_int_equal(t.len, 0);
  buf_free(&t);
  free(b);
}

/* ---- offline ------------------------------------------------------------------------ */

static void test_offline(void **state) {
  (void)state;
  struct env e;
  env_init(&e, "offline");
  struct out a, b;
  out_init(&a);
  out_init(&b);
  run(&e, &a);
  run(&e, &b);
  assert_int_equal(a.status, 0);
  assert_string_equal((char *)a.text.data, (char *)b.text.data); /* deterministic */
  assert_true(a.n_delta > 5);
  const char *t = (const char *)a.text.data;
  assert_non_null(strstr(t, "No language model is configured"));
  assert_non_null(strstr(t, "On 2023-11-14 you said: \"I have a dog named Rex\""));
  assert_non_null(strstr(t, "I said: \"Rex sounds lovely\""));
  assert_non_null(strstr(t, "the last thing you said here was \"two\""));
  assert_non_null(strstr(t, QUESTION));
  assert_non_null(strstr(t, "GEMINI_API_KEY"));
  assert_non_null(strstr(t, "OPENAI_BASE_URL"));
  assert_non_null(strstr(t, "http://localhost:11434/v1"));
  out_free(&a);
  out_free(&b);
  /* Without memories it says so; invalid UTF-8 in the message is replaced. */
  struct llm_provider *p;
  assert_int_equal(llm_provider_new(&e.loop, NULL, &e.cfg, &p), 0);
  assert_string_equal(llm_provider_name(p), "offline");
  struct llm_prompt pr = {.message = "bad \xFF byte", .message_len = 10};
  out_init(&a);
  struct llm_callbacks cb = {on_delta, on_done, &a};
  assert_int_equal(llm_stream_start(p, &pr, &cb, &a.s), 0);
  wait_done(&e, &a);
  assert_non_null(strstr((char *)a.text.data, "nothing related"));
  assert_non_null(strstr((char *)a.text.data, "bad \xEF\xBF\xBD byte"));
  out_free(&a);
  /* Cancel after the first chunk. */
  out_init(&a);
  a.cancel_after = 1;
  cb.ud = &a;
  assert_int_equal(llm_stream_start(p, &pr, &cb, &a.s), 0);
  wait_done(&e, &a);
  assert_int_equal(a.status, EG_ECANCELED);
  assert_int_equal(a.n_delta, 1);
  out_free(&a);
  /* Empty message is refused without a callback. */
  struct llm_prompt empty = {.message = "", .message_len = 0};
  assert_int_equal(llm_stream_start(p, &empty, &cb, NULL), EG_EINVAL);
  llm_provider_free(p);
  env_free(&e);
}

static void closed_cb_int(void *ud) {
  *(int *)ud = 1;
}

static void test_config(void **state) {
  (void)state;
  unsetenv("ENGRAM_LLM");
  unsetenv("GEMINI_API_KEY");
  unsetenv("OPENAI_BASE_URL");
  unsetenv("ENGRAM_LLM_MODEL");
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct httpc *h;
  assert_int_equal(httpc_new(&loop, &h), 0);
  struct llm_config c;
  struct llm_provider *p;
  llm_config_from_env(&c);
  assert_int_equal(llm_provider_new(&loop, h, &c, &p), 0);
  assert_string_equal(llm_provider_name(p), "offline");
  llm_provider_free(p);
  setenv("OPENAI_BASE_URL", "http://localhost:11434/v1", 1);
  setenv("ENGRAM_LLM_MODEL", "llama3.2", 1);
  llm_config_from_env(&c);
  assert_int_equal(llm_provider_new(&loop, h, &c, &p), 0);
  assert_string_equal(llm_provider_name(p), "openai");
  assert_string_equal(llm_provider_model(p), "llama3.2");
  llm_provider_free(p);
  setenv("GEMINI_API_KEY", "k", 1);
  unsetenv("ENGRAM_LLM_MODEL");
  llm_config_from_env(&c);
  assert_int_equal(llm_provider_new(&loop, h, &c, &p), 0);
  assert_string_equal(llm_provider_name(p), "gemini");
  assert_string_equal(llm_provider_model(p), "gemini-2.5-flash");
  llm_provider_free(p);
  setenv("ENGRAM_LLM", "offline", 1);
  llm_config_from_env(&c);
  assert_int_equal(llm_provider_new(&loop, h, &c, &p), 0);
  assert_string_equal(llm_provider_name(p), "offline");
  llm_provider_free(p);
  setenv("ENGRAM_LLM", "nonsense", 1);
  llm_config_from_env(&c);
  assert_int_equal(llm_provider_new(&loop, h, &c, &p), EG_EINVAL);
  setenv("ENGRAM_LLM", "openai", 1);
  setenv("OPENAI_BASE_URL", "localhost:11434/v1", 1); /* no scheme */
  llm_config_from_env(&c);
  assert_int_equal(llm_provider_new(&loop, h, &c, &p), EG_EINVAL);
  setenv("ENGRAM_LLM", "gemini", 1);
  unsetenv("GEMINI_API_KEY");
  llm_config_from_env(&c);
  assert_int_equal(llm_provider_new(&loop, h, &c, &p), EG_EINVAL);
  unsetenv("ENGRAM_LLM");
  unsetenv("OPENAI_BASE_URL");
  int closed = 0;
  httpc_close(h, closed_cb_int, &closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_format_memories(void **state) {
  (void)state;
  struct llm_prompt pr = prompt();
  struct buf b;
  buf_init(&b, 4096);
  assert_int_equal(llm_format_memories(&pr, &b), 0);
  assert_string_equal((char *)b.data, "Relevant memories from earlier conversations:\n"
                                      "- [2023-11-14] user: I have a dog named Rex\n"
                                      "- [unknown date] assistant: Rex sounds lovely\n");
  buf_reset(&b);
  pr.n_memories = 0;
  assert_int_equal(llm_format_memories(&pr, &b), 0);
  assert_int_equal(b.len, 0);
  buf_free(&b);
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
      cmocka_unit_test(test_format_memories),
      cmocka_unit_test(test_config),
      cmocka_unit_test(test_offline),
      cmocka_unit_test(test_utf8_valid_and_sanitize),
      cmocka_unit_test(test_openai_chunk_fast),
      cmocka_unit_test(test_gemini_stream_and_request),
      cmocka_unit_test(test_gemini_line_endings_and_splits),
      cmocka_unit_test(test_gemini_retry_429_retrydelay),
      cmocka_unit_test(test_gemini_500_retried_then_error),
      cmocka_unit_test(test_gemini_failures_in_stream),
      cmocka_unit_test(test_gemini_http_errors),
      cmocka_unit_test(test_gemini_timeouts),
      cmocka_unit_test(test_gemini_cancel_midstream),
      cmocka_unit_test(test_gemini_non_streamed),
      cmocka_unit_test(test_openai_stream_and_request),
      cmocka_unit_test(test_openai_dialects),
      cmocka_unit_test(test_openai_failures),
      cmocka_unit_test(test_openai_non_streamed),
      cmocka_unit_test(test_upstream_quirks),
      cmocka_unit_test(test_replay_edge_cases),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
