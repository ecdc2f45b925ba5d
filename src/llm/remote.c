/*
 * The HTTP side shared by the gemini and openai providers: one httpc request per stream,
 * the response routed by status and Content-Type:
 *
 *   status >= 400            mode 3: the body (capped) is an error envelope, read whole,
 *                            then classified by the dialect (http_error).
 *   2xx text/event-stream    mode 1: bytes go through the SSE parser (flush_on_eof, so a
 *                            last event cut at EOF shows up as a JSON error = truncation);
 *                            every event is checked for a named "error" event, the
 *                            "[DONE]" sentinel, malformed JSON and a top-level "error"
 *                            key before the dialect sees it.
 *   2xx anything else        mode 2: a whole JSON body (non-streamed call, a server that
 *                            ignored stream:true, or Gemini's JSON-array stream), parsed
 *                            at the end; an array is handled element by element.
 *
 * The stream ends in remote_done (httpc's on_done), the only place llm__finish is called
 * for remote streams.
 */
#include "llm/llm_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ERROR_BODY_MAX (16u * 1024u)
#define JSON_BODY_MAX (8u * 1024u * 1024u)
#define SSE_EVENT_MAX (4u * 1024u * 1024u)
#define MAX_SERVER_DELAY_MS 60000

const char *llm__error_text(json_t *body) {
  if (body == NULL)
    return NULL;
  json_t *e = json_object_get(body, "error");
  if (json_is_string(e))
    return json_string_value(e); /* Ollama native: {"error": "..."} */
  if (json_is_object(e)) {
    json_t *m = json_object_get(e, "message");
    if (json_is_string(m))
      return json_string_value(m);
  }
  json_t *m = json_object_get(body, "message"); /* vLLM legacy flat envelope */
  if (json_is_string(m))
    return json_string_value(m);
  return NULL;
}

int64_t llm__parse_duration_ms(const char *s) {
  if (s == NULL)
    return -1;
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0 || v > 1e9)
    return -1;
  if (strcmp(end, "s") == 0)
    return (int64_t)(v * 1000.0 + 0.5);
  if (strcmp(end, "ms") == 0)
    return (int64_t)(v + 0.5);
  return -1;
}

/* Copies at most 300 bytes of t (at a UTF-8 boundary) for messages. */
static void short_text(const char *t, char *out, size_t cap) {
  size_t n = t ? strlen(t) : 0;
  n = llm__utf8_cut(t ? t : "", n, EG_MIN(cap - 1, (size_t)300));
  memcpy(out, t ? t : "", n);
  out[n] = 0;
  for (size_t i = 0; i < n; i++)
    if (out[i] == '\n' || out[i] == '\r')
      out[i] = ' ';
}

static int handle_json(struct llm_stream *s, const char *p, size_t n, bool at_eof) {
  struct buf clean;
  buf_init(&clean, SSE_EVENT_MAX * 3);
  int rc = 0;
  if (!llm__utf8_valid(p, n)) { /* else parsed in place, without the copy */
    rc = llm__utf8_sanitize(p, n, &clean);
    p = (const char *)clean.data;
    n = clean.len;
  } else if (s->d->event_text != NULL) {
    rc = s->d->event_text(s, p, n);
    if (rc != LLM_EVENT_FALLBACK) {
      buf_free(&clean);
      return rc;
    }
    rc = 0;
  }
  json_error_t je;
  json_t *j = rc == 0 ? json_loadb(p, n, 0, &je) : NULL;
  buf_free(&clean);
  if (j == NULL) {
    if (at_eof)
      llm__fail(s, EG_EUPSTREAM,
                "The language model's answer was cut off: the stream ended inside an event.");
    else
      llm__fail(s, EG_EUPSTREAM, "The language model sent malformed JSON (%s).",
                rc == 0 ? je.text : "too large");
    return EG_EUPSTREAM;
  }
  rc = 0;
  if (json_is_object(j) && json_object_get(j, "error") != NULL &&
      !json_is_null(json_object_get(j, "error"))) {
    char msg[320];
    short_text(llm__error_text(j), msg, sizeof msg);
    json_t *e = json_object_get(j, "error");
    const char *st = json_string_value(json_object_get(e, "status"));
    if (s->text_bytes > 0)
      llm__fail(s, EG_EUPSTREAM,
                "The language model failed in the middle of its answer%s%s%s: %s",
                st ? " (" : "", st ? st : "", st ? ")" : "", *msg ? msg : "unknown error");
    else
      llm__fail(s, EG_EUPSTREAM, "The language model reported an error%s%s%s: %s",
                st ? " (" : "", st ? st : "", st ? ")" : "", *msg ? msg : "unknown error");
    rc = EG_EUPSTREAM;
  } else if (json_is_array(j) && s->mode == 2) {
    size_t i;
    json_t *el;
    json_array_foreach(j, i, el) {
      if (!json_is_object(el)) {
        llm__fail(s, EG_EUPSTREAM, "The language model sent an unexpected JSON value.");
        rc = EG_EUPSTREAM;
        break;
      }
      if (json_object_get(el, "error") != NULL) {
        char msg[320];
        short_text(llm__error_text(el), msg, sizeof msg);
        llm__fail(s, EG_EUPSTREAM, "The language model reported an error: %s", msg);
        rc = EG_EUPSTREAM;
        break;
      }
      rc = s->d->event(s, el);
      if (rc != 0)
        break;
    }
  } else if (!json_is_object(j)) {
    llm__fail(s, EG_EUPSTREAM, "The language model sent an unexpected JSON value.");
    rc = EG_EUPSTREAM;
  } else {
    rc = s->d->event(s, j);
  }
  json_decref(j);
  return rc;
}

static int on_sse_event(void *ud, const struct sse_event *ev) {
  struct llm_stream *s = ud;
  if (s->canceled)
    return EG_ECANCELED;
  if (slice_eq_cstr(ev->type, "error")) {
    json_t *j = json_loadb(ev->data.p, ev->data.len, 0, NULL);
    char msg[320];
    const char *t = llm__error_text(j);
    if (t == NULL && j == NULL) {
      struct buf b;
      buf_init(&b, ev->data.len * 3 + 8);
      if (llm__utf8_sanitize(ev->data.p, ev->data.len, &b) == 0 && buf_append_byte(&b, 0) == 0)
        short_text((const char *)b.data, msg, sizeof msg);
      else
        msg[0] = 0;
      buf_free(&b);
    } else {
      short_text(t, msg, sizeof msg);
    }
    llm__fail(s, EG_EUPSTREAM, "The language model reported an error: %s",
              *msg ? msg : "unknown error");
    json_decref(j);
    return EG_EUPSTREAM;
  }
  if (ev->data.len == 0)
    return 0;
  if (slice_eq_cstr(ev->data, "[DONE]")) {
    s->done_marker = true;
    return 0;
  }
  return handle_json(s, ev->data.p, ev->data.len, ev->at_eof);
}

static int remote_response(void *ud, const struct httpc_response *resp) {
  struct llm_stream *s = ud;
  s->http_status = resp->status;
  if (resp->status >= 400 || resp->status < 200) {
    s->mode = 3;
    buf_init(&s->body, ERROR_BODY_MAX);
    return 0;
  }
  const char *ct = httpc_response_header(resp, "content-type");
  if (s->streaming && (ct == NULL || strcasestr(ct, "event-stream") != NULL)) {
    s->mode = 1;
    sse_init(&s->sse, SSE_EVENT_MAX, true);
  } else {
    s->mode = 2;
    buf_init(&s->body, JSON_BODY_MAX);
  }
  return 0;
}

static int remote_data(void *ud, const uint8_t *p, size_t n) {
  struct llm_stream *s = ud;
  if (s->canceled)
    return EG_ECANCELED;
  switch (s->mode) {
  case 1: {
    int rc = sse_feed(&s->sse, p, n, on_sse_event, s);
    if (rc == EG_ETOOBIG)
      llm__fail(s, EG_EUPSTREAM, "The language model sent an event larger than %u bytes.",
                SSE_EVENT_MAX);
    return rc;
  }
  case 2:
    if (buf_append(&s->body, p, n) != 0) {
      llm__fail(s, EG_EUPSTREAM, "The language model's answer is larger than %u bytes.",
                JSON_BODY_MAX);
      return EG_ETOOBIG;
    }
    return 0;
  default:
    if (buf_append(&s->body, p, EG_MIN(n, s->body.max - s->body.len)) != 0)
      return 0;
    return 0;
  }
}

static int64_t remote_should_retry(void *ud, const struct httpc_response *resp) {
  struct llm_stream *s = ud;
  if (resp->status == 0)
    return 0;
  /* OpenAI's explicit override, honoured as its SDK does. */
  const char *xs = httpc_response_header(resp, "x-should-retry");
  if (xs != NULL && strcmp(xs, "false") == 0)
    return -1;
  if (s->d->retry_hint == NULL)
    return 0;
  json_t *j = json_loadb(resp->body.p, resp->body.len, 0, NULL);
  int64_t d = s->d->retry_hint(resp->status, j);
  json_decref(j);
  if (d > MAX_SERVER_DELAY_MS)
    return -1;
  if (d > 0 || d < 0)
    log_info("llm %s: HTTP %d, %s", s->d->name, resp->status,
             d < 0 ? "not retried (quota)" : "retrying after the server's delay");
  return d;
}

static void remote_done(void *ud, int err, const struct httpc_response *resp) {
  struct llm_stream *s = ud;
  s->req = NULL;
  if (s->canceled || s->fail) {
    llm__finish(s, s->fail ? s->fail : EG_ECANCELED);
    return;
  }
  if (resp->status >= 400 || s->mode == 3) {
    const char *bp = resp->body.len ? resp->body.p : (const char *)s->body.data;
    size_t bl = resp->body.len ? resp->body.len : s->body.len;
    json_t *j = bl ? json_loadb(bp, bl, 0, NULL) : NULL;
    struct buf msg;
    buf_init(&msg, 1024);
    int st = s->d->http_error(s, resp->status, j, &msg);
    const char *m = msg.len ? (const char *)msg.data : "The language model service failed";
    if (resp->attempts > 1)
      llm__fail(s, st, "%s (after %d attempts).", m, resp->attempts);
    else
      llm__fail(s, st, "%s.", m);
    buf_free(&msg);
    json_decref(j);
    llm__finish(s, st);
    return;
  }
  if (err != 0) {
    const char *why = resp->error && *resp->error ? resp->error : eg_strerror(err);
    if (err == EG_ETIMEOUT)
      llm__fail(s, EG_ETIMEOUT, "The language model did not answer in time (%s, %d attempt%s).",
                why, resp->attempts, resp->attempts == 1 ? "" : "s");
    else if (s->text_bytes > 0 || s->mode != 0)
      llm__fail(s, EG_EUPSTREAM,
                "The language model's answer was cut off: the connection broke mid-answer "
                "(%s).",
                why);
    else
      llm__fail(s, err == EG_EIO ? EG_EIO : EG_EUPSTREAM,
                "Could not reach the language model service (%s; %d attempt%s).", why,
                resp->attempts, resp->attempts == 1 ? "" : "s");
    llm__finish(s, s->fail);
    return;
  }
  if (s->mode == 1) {
    if (sse_finish(&s->sse, on_sse_event, s) != 0 && !s->fail)
      llm__fail(s, EG_EUPSTREAM, "The language model's stream could not be parsed.");
  } else if (s->mode == 2) {
    if (s->body.len == 0) {
      llm__fail(s, EG_EUPSTREAM, "The language model sent an empty response.");
    } else if (s->streaming && (memcmp(s->body.data, "data:", EG_MIN(s->body.len, 5)) == 0 ||
                                s->body.data[0] == ':')) {
      /* An event stream under another Content-Type (text/plain, ...): parse it as one. */
      s->mode = 1;
      sse_init(&s->sse, SSE_EVENT_MAX, true);
      if ((sse_feed(&s->sse, s->body.data, s->body.len, on_sse_event, s) != 0 ||
           sse_finish(&s->sse, on_sse_event, s) != 0) &&
          !s->fail)
        llm__fail(s, EG_EUPSTREAM, "The language model's stream could not be parsed.");
    } else if (handle_json(s, (const char *)s->body.data, s->body.len, false) != 0 &&
               !s->fail) {
      llm__fail(s, EG_EUPSTREAM, "The language model's response could not be parsed.");
    }
  }
  if (!s->fail && !s->canceled)
    s->d->end(s);
  llm__finish(s, s->fail);
}

int llm__remote_start(struct llm_provider *p, const struct llm__dialect *d, const char *url,
                      const struct httpc_header *headers, size_t n_headers, const char *body,
                      size_t body_len, bool streaming, const struct llm_callbacks *cb,
                      struct llm_stream **out) {
  struct llm_stream *s = llm__stream_new(p, cb);
  s->d = d;
  s->streaming = streaming;
  struct httpc_request r;
  memset(&r, 0, sizeof r);
  r.method = "POST";
  r.url = url;
  r.headers = headers;
  r.n_headers = n_headers;
  r.body = body;
  r.body_len = body_len;
  r.timeouts.connect_ms = p->cfg.connect_timeout_ms;
  r.timeouts.first_byte_ms = p->cfg.first_byte_timeout_ms;
  r.timeouts.idle_ms = p->cfg.idle_timeout_ms;
  r.timeouts.total_ms = p->cfg.total_timeout_ms;
  r.retry.max_tries = p->cfg.max_tries;
  r.retry.base_ms = p->cfg.backoff_base_ms;
  r.retry.max_ms = p->cfg.backoff_max_ms;
  r.retry.max_delay_ms = MAX_SERVER_DELAY_MS;
  r.on_response = remote_response;
  r.on_data = remote_data;
  r.on_done = remote_done;
  r.should_retry = remote_should_retry;
  r.ud = s;
  /* s->sse and s->body stay zeroed until a response arrives (remote_response). */
  int rc = httpc_start(p->http, &r, &s->req);
  if (rc != 0) {
    /* No callback will come: undo the stream without calling on_done. */
    s->ended = true;
    if (s->prev)
      s->prev->next = s->next;
    else
      p->streams = s->next;
    if (s->next)
      s->next->prev = s->prev;
    p->refs--;
    free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void llm__remote_cancel(struct llm_stream *s) {
  if (s->req)
    httpc_cancel(s->req);
}

/* ---- offline replay (fuzzing, tests) ----------------------------------------------- */

struct replay {
  struct buf *text;
  int status;
  bool finished;
};

static void replay_delta(void *ud, const char *t, size_t n) {
  struct replay *r = ud;
  if (buf_append(r->text, t, n) != 0)
    r->status = EG_ETOOBIG;
}

static void replay_done(void *ud, const struct llm_result *res) {
  struct replay *r = ud;
  if (r->status == 0)
    r->status = res->status;
  r->finished = res->finish_reason != NULL;
}

static const struct llm_provider_ops replay_ops = {.name = "replay"};

void llm__replay(const struct llm__dialect *d, const char *content_type, bool streaming,
                 const uint8_t *data, size_t n, size_t chunk, struct buf *text, int *status,
                 bool *finished) {
  struct llm_provider p;
  memset(&p, 0, sizeof p);
  p.ops = &replay_ops;
  p.model = "replay-model";
  p.refs = 1;
  struct replay r = {text, 0, false};
  struct llm_callbacks cb = {replay_delta, replay_done, &r};
  struct llm_stream *s = llm__stream_new(&p, &cb);
  s->d = d;
  s->streaming = streaming;
  struct httpc_header h[1] = {{"Content-Type", content_type}};
  struct httpc_response resp = {
      .status = 200, .headers = h, .n_headers = 1, .error = "", .attempts = 1};
  int err = remote_response(s, &resp);
  for (size_t off = 0; err == 0 && off < n;) {
    size_t k = chunk ? EG_MIN(chunk, n - off) : n - off;
    err = remote_data(s, data + off, k);
    off += k;
  }
  resp.body = (struct slice){"", 0};
  /* As httpc would report it: a callback's error ends the transfer with that code. */
  remote_done(s, err, &resp);
  *status = r.status;
  *finished = r.finished;
}
