/*
 * OpenAI-compatible provider (OpenAI, Ollama /v1, llama.cpp server, vLLM). Request:
 *
 *   POST {base}/chat/completions        (base includes /v1)
 *   Authorization: Bearer <key>         (only when a key is configured)
 *   {"model":..., "messages":[{"role":"system","content": system + memories},
 *     {"role":"user"|"assistant","content":...}..., {"role":"user","content": message}],
 *    "stream":true, "stream_options":{"include_usage":true}, ...}
 *
 * Answer events are chat.completion.chunk objects, read defensively (PROVIDER-CONTRACTS
 * section 3): `choices` may be empty (usage chunk), `delta` may lack `content`, content
 * may be null or "", the role may repeat on every chunk (old Ollama), finish_reason may
 * come with or without content. Finished = [DONE] seen or a finish_reason seen; anything
 * else is truncated. Every event is checked for a top-level "error" first (remote.c), so
 * vLLM's error-then-[DONE] is a failure. A non-streamed answer (stream false, or a server
 * that ignores stream) is one chat.completion object.
 */
#include "llm/llm_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int openai_event(struct llm_stream *s, json_t *obj) {
  const char *kind = json_string_value(json_object_get(obj, "object"));
  if (kind != NULL && strcmp(kind, "error") == 0) {
    /* vLLM before v0.10.1: a flat {"object":"error","message":...} envelope. */
    const char *m = llm__error_text(obj);
    char msg[320] = "";
    if (m != NULL) {
      size_t n = llm__utf8_cut(m, strlen(m), 300);
      memcpy(msg, m, n);
      msg[n] = 0;
    }
    llm__fail(s, EG_EUPSTREAM, "The language model reported an error: %s",
              *msg ? msg : "unknown error");
    return EG_EUPSTREAM;
  }
  json_t *usage = json_object_get(obj, "usage");
  if (json_is_object(usage)) {
    json_t *pt = json_object_get(usage, "prompt_tokens");
    json_t *ct = json_object_get(usage, "completion_tokens");
    if (json_is_integer(pt))
      s->prompt_tokens = json_integer_value(pt);
    if (json_is_integer(ct))
      s->output_tokens = json_integer_value(ct);
  }
  json_t *choices = json_object_get(obj, "choices");
  size_t i;
  json_t *ch;
  json_array_foreach(choices, i, ch) {
    json_t *idx = json_object_get(ch, "index");
    if (json_is_integer(idx) && json_integer_value(idx) != 0)
      continue; /* only the first choice is used */
    json_t *delta = json_object_get(ch, "delta");
    if (!json_is_object(delta))
      delta = json_object_get(ch, "message"); /* non-streamed answer */
    json_t *c = json_object_get(delta, "content");
    if (json_is_string(c))
      llm__emit(s, json_string_value(c), json_string_length(c));
    json_t *ref = json_object_get(delta, "refusal");
    if (json_is_string(ref))
      llm__emit(s, json_string_value(ref), json_string_length(ref));
    const char *fr = json_string_value(json_object_get(ch, "finish_reason"));
    if (fr != NULL && *fr) {
      s->finished = true;
      llm__set_finish_reason(s, fr);
      if (strcmp(fr, "content_filter") == 0) {
        llm__fail(s, EG_EUPSTREAM,
                  "The answer was blocked by the model's content filter (finish_reason "
                  "content_filter).");
        return EG_EUPSTREAM;
      }
    }
  }
  return 0;
}

static void openai_end(struct llm_stream *s) {
  if (!s->finished && !s->done_marker) {
    llm__fail(s, EG_EUPSTREAM,
              "The language model's answer was cut off: the stream ended without a "
              "finish_reason or [DONE].");
    return;
  }
  if (s->text_bytes == 0)
    llm__fail(s, EG_EUPSTREAM,
              "The language model returned an empty answer (finish_reason %s).",
              s->finish_reason ? s->finish_reason : "none");
}

static int openai_http_error(struct llm_stream *s, int status, json_t *body, struct buf *msg) {
  (void)s;
  json_t *err = json_object_get(body, "error");
  const char *code = json_string_value(json_object_get(err, "code"));
  const char *type = json_string_value(json_object_get(err, "type"));
  const char *text = llm__error_text(body);
  char shortmsg[320] = "";
  if (text) {
    size_t n = llm__utf8_cut(text, strlen(text), 300);
    memcpy(shortmsg, text, n);
    shortmsg[n] = 0;
  }
  int rc, st = EG_EUPSTREAM;
  if (status == 401) {
    st = EG_EAUTH;
    /* OpenAI's 401 text echoes part of the key: do not repeat it. */
    rc = buf_printf(msg, "The model server rejected the API key (HTTP 401); check "
                         "OPENAI_API_KEY");
  } else if (status == 403) {
    st = EG_EAUTH;
    rc = buf_printf(msg, "The model server refused the request (HTTP 403): %s", shortmsg);
  } else if (status == 429) {
    st = EG_ELIMIT;
    bool quota = (code && strcmp(code, "insufficient_quota") == 0) ||
                 (type && strcmp(type, "insufficient_quota") == 0);
    rc = buf_printf(msg, "%s (HTTP 429): %s",
                    quota ? "The model server's quota is exhausted"
                          : "The model server is rate limiting requests",
                    shortmsg);
  } else if (status == 404) {
    rc = buf_printf(msg,
                    "The model \"%s\" or the endpoint was not found on the model server "
                    "(HTTP 404): %s",
                    s->p->model, shortmsg);
  } else {
    rc = buf_printf(msg, "The model server returned HTTP %d%s%s", status, *shortmsg ? ": " : "",
                    shortmsg);
  }
  if (rc != 0)
    buf_reset(msg);
  return st;
}

static int64_t openai_retry_hint(int status, json_t *body) {
  json_t *err = json_object_get(body, "error");
  const char *code = json_string_value(json_object_get(err, "code"));
  const char *type = json_string_value(json_object_get(err, "type"));
  if (status == 429 && ((code && strcmp(code, "insufficient_quota") == 0) ||
                        (type && strcmp(type, "insufficient_quota") == 0)))
    return -1; /* billing, permanent */
  return 0;
}

const struct llm__dialect llm__openai_dialect = {
    .name = "openai",
    .event = openai_event,
    .end = openai_end,
    .http_error = openai_http_error,
    .retry_hint = openai_retry_hint,
};

/* Appends `,{"role":...,"content":...}` (no comma before the first) with the text made
   valid UTF-8 (scratch is reused between calls). */
static int add_msg(struct buf *body, struct buf *scratch, bool first, const char *role,
                   const char *text, size_t len) {
  int rc = 0;
  if (!llm__utf8_valid(text, len)) {
    buf_reset(scratch);
    rc = llm__utf8_sanitize(text, len, scratch);
    text = scratch->len ? (const char *)scratch->data : "";
    len = scratch->len;
  }
  if (rc == 0)
    rc = buf_append_str(body, first ? "{\"role\":" : ",{\"role\":");
  if (rc == 0)
    rc = buf_append_json_str(body, role, strlen(role));
  if (rc == 0)
    rc = buf_append_str(body, ",\"content\":");
  if (rc == 0)
    rc = buf_append_json_str(body, text, len);
  if (rc == 0)
    rc = buf_append_byte(body, '}');
  return rc;
}

/* The request body, written directly (the same bytes as jansson's compact dump of
   {model, messages, stream, stream_options?, temperature?, max_tokens?} in that order,
   without building the objects: this is on every ai-message's path). */
static int openai_body(struct llm_provider *p, const struct llm_prompt *prompt,
                       struct buf *body) {
  struct buf sys, scratch;
  buf_init(&sys, 4u << 20);
  buf_init(&scratch, body->max);
  int rc = buf_append_str(body, "{\"model\":");
  if (rc == 0)
    rc = buf_append_json_str(body, p->model, strlen(p->model));
  if (rc == 0)
    rc = buf_append_str(body, ",\"messages\":[");
  if (rc == 0)
    rc = llm__system_text(prompt, &sys);
  if (rc == 0)
    rc =
        add_msg(body, &scratch, true, "system", sys.len ? (const char *)sys.data : "", sys.len);
  for (size_t i = 0; rc == 0 && i < prompt->n_history; i++) {
    const struct llm_msg *m = &prompt->history[i];
    if (m->len == 0)
      continue;
    rc = add_msg(body, &scratch, false, m->role == LLM_ROLE_MODEL ? "assistant" : "user",
                 m->text, m->len);
  }
  if (rc == 0)
    rc = add_msg(body, &scratch, false, "user", prompt->message, prompt->message_len);
  if (rc == 0)
    rc = buf_append_str(body, p->cfg.stream ? "],\"stream\":true,\"stream_options\":{"
                                              "\"include_usage\":true}"
                                            : "],\"stream\":false");
  if (rc == 0 && p->cfg.temperature >= 0) {
    /* jansson's own form of a real ("%.17g", ".0" when integral). */
    json_t *t = json_real(p->cfg.temperature);
    char *txt = t ? json_dumps(t, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    rc = txt ? buf_printf(body, ",\"temperature\":%s", txt) : EG_ENOMEM;
    free(txt);
    json_decref(t);
  }
  if (rc == 0 && p->cfg.max_output_tokens > 0) {
    /* OpenAI itself wants max_completion_tokens; the compatible servers know max_tokens. */
    bool official = strstr(p->cfg.openai_base_url, "api.openai.com") != NULL;
    rc = buf_printf(body, ",\"%s\":%lld", official ? "max_completion_tokens" : "max_tokens",
                    (long long)p->cfg.max_output_tokens);
  }
  if (rc == 0)
    rc = buf_append_byte(body, '}');
  buf_free(&sys);
  buf_free(&scratch);
  return rc;
}

static int openai_start(struct llm_provider *p, const struct llm_prompt *prompt,
                        const struct llm_callbacks *cb, struct llm_stream **out) {
  int rc = 0;
  char *auth = NULL;
  struct buf body, url;
  buf_init(&body, 64u << 20);
  buf_init(&url, 8192);
  rc = openai_body(p, prompt, &body);
  if (rc != 0)
    goto out;
  const char *base = p->cfg.openai_base_url;
  size_t blen = strlen(base);
  while (blen > 0 && base[blen - 1] == '/')
    blen--;
  rc = buf_printf(&url, "%.*s/chat/completions", (int)blen, base);
  if (rc != 0)
    goto out;
  struct httpc_header h[3] = {
      {"Content-Type", "application/json"},
      {"Accept", p->cfg.stream ? "text/event-stream" : "application/json"},
      {"Authorization", ""},
  };
  size_t nh = 2;
  if (p->cfg.openai_api_key && *p->cfg.openai_api_key) {
    size_t n = strlen(p->cfg.openai_api_key) + 8;
    auth = xmalloc(n);
    snprintf(auth, n, "Bearer %s", p->cfg.openai_api_key);
    h[2].value = auth;
    nh = 3;
  }
  rc = llm__remote_start(p, &llm__openai_dialect, (const char *)url.data, h, nh,
                         (const char *)body.data, body.len, p->cfg.stream, cb, out);
out:
  if (rc == EG_ETOOBIG)
    rc = EG_EINVAL;
  free(auth);
  buf_free(&body);
  buf_free(&url);
  return rc;
}

static void openai_cancel(struct llm_stream *s) {
  llm__remote_cancel(s);
}

const struct llm_provider_ops llm__openai_ops = {
    .name = "openai",
    .start = openai_start,
    .cancel = openai_cancel,
    .destroy = NULL,
};
