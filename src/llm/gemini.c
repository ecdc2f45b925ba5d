/*
 * Gemini provider (v1beta REST). Request:
 *
 *   POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse   (stream)
 *   POST {base}/v1beta/models/{model}:generateContent                 (no stream)
 *   x-goog-api-key: <key>; Content-Type: application/json
 *   {"contents":[{"role":"user"|"model","parts":[{"text":...}]}...],
 *    "systemInstruction":{"parts":[{"text": system + memories block}]},
 *    "generationConfig":{...}}
 *
 * Consecutive messages of the same role (e.g. a user message whose answer failed, then
 * the next one) become one turn with several text parts, so turns alternate as older
 * models require, and message boundaries are kept. Answer: every event is a whole
 * GenerateContentResponse; text is the concatenation of candidates[0].content.parts[].text
 * (parts without text and "thought" parts are skipped). There is no [DONE]: the answer is
 * complete when the byte stream ends after a finishReason (or a promptFeedback.blockReason,
 * which is a failure). Safety-type finish reasons are failures; an answer with no text is a
 * failure.
 */
#include "llm/llm_int.h"

#include <stdlib.h>
#include <string.h>

static bool blocked_reason(const char *r) {
  static const char *const list[] = {"SAFETY",
                                     "RECITATION",
                                     "BLOCKLIST",
                                     "PROHIBITED_CONTENT",
                                     "SPII",
                                     "LANGUAGE",
                                     "IMAGE_SAFETY",
                                     "IMAGE_PROHIBITED_CONTENT",
                                     "IMAGE_RECITATION"};
  for (size_t i = 0; i < EG_ARRAY_LEN(list); i++)
    if (strcmp(r, list[i]) == 0)
      return true;
  return false;
}

static int gemini_event(struct llm_stream *s, json_t *obj) {
  json_t *usage = json_object_get(obj, "usageMetadata");
  if (json_is_object(usage)) {
    json_t *pt = json_object_get(usage, "promptTokenCount");
    json_t *ct = json_object_get(usage, "candidatesTokenCount");
    if (json_is_integer(pt))
      s->prompt_tokens = json_integer_value(pt);
    if (json_is_integer(ct))
      s->output_tokens = json_integer_value(ct);
  }
  json_t *fb = json_object_get(obj, "promptFeedback");
  const char *block = json_string_value(json_object_get(fb, "blockReason"));
  json_t *cands = json_object_get(obj, "candidates");
  if (block != NULL && (!json_is_array(cands) || json_array_size(cands) == 0)) {
    s->finished = true;
    llm__set_finish_reason(s, block);
    llm__fail(s, EG_EUPSTREAM,
              "The prompt was blocked by the model's safety filters (blockReason %s).", block);
    return EG_EUPSTREAM;
  }
  json_t *c0 = json_array_get(cands, 0);
  if (!json_is_object(c0))
    return 0; /* e.g. a usage-only event */
  json_t *parts = json_object_get(json_object_get(c0, "content"), "parts");
  size_t i;
  json_t *part;
  json_array_foreach(parts, i, part) {
    if (json_is_true(json_object_get(part, "thought")))
      continue;
    json_t *t = json_object_get(part, "text");
    if (json_is_string(t))
      llm__emit(s, json_string_value(t), json_string_length(t));
  }
  const char *fr = json_string_value(json_object_get(c0, "finishReason"));
  if (fr != NULL && strcmp(fr, "FINISH_REASON_UNSPECIFIED") != 0) {
    s->finished = true;
    llm__set_finish_reason(s, fr);
    if (blocked_reason(fr)) {
      llm__fail(s, EG_EUPSTREAM,
                "The answer was blocked by the model's safety filters (finishReason %s).", fr);
      return EG_EUPSTREAM;
    }
  }
  return 0;
}

static void gemini_end(struct llm_stream *s) {
  if (!s->finished) {
    llm__fail(s, EG_EUPSTREAM,
              "The language model's answer was cut off: the stream ended without a finish "
              "reason.");
    return;
  }
  if (s->text_bytes == 0) {
    const char *fr = s->finish_reason ? s->finish_reason : "none";
    if (strcmp(fr, "MAX_TOKENS") == 0)
      llm__fail(s, EG_EUPSTREAM,
                "The language model returned no text: it ran out of output tokens "
                "(finishReason MAX_TOKENS).");
    else
      llm__fail(s, EG_EUPSTREAM,
                "The language model returned an empty answer (finishReason %s).", fr);
  }
}

static bool has_detail_reason(json_t *err, const char *reason) {
  size_t i;
  json_t *d;
  json_array_foreach(json_object_get(err, "details"), i, d) {
    const char *r = json_string_value(json_object_get(d, "reason"));
    if (r && strcmp(r, reason) == 0)
      return true;
  }
  return false;
}

static int gemini_http_error(struct llm_stream *s, int status, json_t *body, struct buf *msg) {
  json_t *err = json_object_get(body, "error");
  const char *st = json_string_value(json_object_get(err, "status"));
  const char *text = llm__error_text(body);
  char shortmsg[320] = "";
  if (text) {
    size_t n = llm__utf8_cut(text, strlen(text), 300);
    memcpy(shortmsg, text, n);
    shortmsg[n] = 0;
  }
  int rc = 0, code = EG_EUPSTREAM;
  if (status == 400 && has_detail_reason(err, "API_KEY_INVALID")) {
    code = EG_EAUTH;
    rc = buf_printf(msg, "Gemini rejected the API key (HTTP 400 API_KEY_INVALID); check "
                         "GEMINI_API_KEY");
  } else if (status == 401 || status == 403) {
    code = EG_EAUTH;
    rc = buf_printf(msg, "Gemini refused the request (HTTP %d %s): %s", status, st ? st : "",
                    shortmsg);
  } else if (status == 429) {
    code = EG_ELIMIT;
    rc = buf_printf(msg, "Gemini rate limit or quota exceeded (HTTP 429 %s): %s",
                    st ? st : "RESOURCE_EXHAUSTED", shortmsg);
  } else if (status == 404) {
    rc = buf_printf(msg, "Gemini model \"%s\" was not found (HTTP 404): %s", s->p->model,
                    shortmsg);
  } else {
    rc = buf_printf(msg, "Gemini returned HTTP %d%s%s%s%s", status, st ? " " : "", st ? st : "",
                    *shortmsg ? ": " : "", shortmsg);
  }
  if (rc != 0)
    buf_reset(msg);
  return code;
}

static int64_t gemini_retry_hint(int status, json_t *body) {
  if (status != 429)
    return 0;
  json_t *err = json_object_get(body, "error");
  size_t i;
  json_t *d;
  int64_t delay = 0;
  json_array_foreach(json_object_get(err, "details"), i, d) {
    const char *type = json_string_value(json_object_get(d, "@type"));
    if (type == NULL)
      continue;
    if (strstr(type, "RetryInfo")) {
      int64_t ms = llm__parse_duration_ms(json_string_value(json_object_get(d, "retryDelay")));
      if (ms >= 0)
        delay = ms > 0 ? ms : 1;
    } else if (strstr(type, "QuotaFailure")) {
      size_t k;
      json_t *v;
      json_array_foreach(json_object_get(d, "violations"), k, v) {
        const char *q = json_string_value(json_object_get(v, "quotaId"));
        if (q && strstr(q, "PerDay"))
          return -1; /* a daily quota does not come back before the reset */
      }
    }
  }
  return delay;
}

const struct llm__dialect llm__gemini_dialect = {
    .name = "gemini",
    .event = gemini_event,
    .end = gemini_end,
    .http_error = gemini_http_error,
    .retry_hint = gemini_retry_hint,
};

static json_t *text_content(const char *role, const char *text, size_t len) {
  json_t *part = json_object();
  json_object_set_new(part, "text", json_stringn(text, len));
  json_t *parts = json_array();
  json_array_append_new(parts, part);
  json_t *c = json_object();
  if (role)
    json_object_set_new(c, "role", json_string(role));
  json_object_set_new(c, "parts", parts);
  return c;
}

/* Appends a text part to a content (consecutive turns of one role). */
static void append_part(json_t *content, const char *text, size_t len) {
  json_t *part = json_object();
  json_object_set_new(part, "text", json_stringn(text, len));
  json_array_append_new(json_object_get(content, "parts"), part);
}

/* Adds a message; invalid UTF-8 is replaced (jansson only accepts valid UTF-8). */
static int add_msg(json_t *contents, const char *role, const char *text, size_t len) {
  struct buf clean;
  buf_init(&clean, (len + 1) * 3);
  int rc = llm__utf8_sanitize(text, len, &clean);
  if (rc != 0)
    goto out;
  const char *t = clean.len ? (const char *)clean.data : "";
  size_t n = json_array_size(contents);
  json_t *last = n ? json_array_get(contents, n - 1) : NULL;
  const char *last_role = json_string_value(json_object_get(last, "role"));
  if (last_role && strcmp(last_role, role) == 0)
    append_part(last, t, clean.len);
  else
    json_array_append_new(contents, text_content(role, t, clean.len));
out:
  buf_free(&clean);
  return rc;
}

static int gemini_start(struct llm_provider *p, const struct llm_prompt *prompt,
                        const struct llm_callbacks *cb, struct llm_stream **out) {
  int rc = 0;
  char *body = NULL;
  struct buf sys, url;
  buf_init(&sys, 4u << 20);
  buf_init(&url, 8192);
  json_t *root = json_object();
  json_t *contents = json_array();
  json_object_set_new(root, "contents", contents);
  for (size_t i = 0; rc == 0 && i < prompt->n_history; i++) {
    const struct llm_msg *m = &prompt->history[i];
    if (m->len == 0)
      continue;
    rc = add_msg(contents, m->role == LLM_ROLE_MODEL ? "model" : "user", m->text, m->len);
  }
  if (rc == 0)
    rc = add_msg(contents, "user", prompt->message, prompt->message_len);
  if (rc == 0)
    rc = llm__system_text(prompt, &sys);
  if (rc != 0)
    goto out;
  {
    struct buf clean;
    buf_init(&clean, sys.len * 3 + 8);
    rc = llm__utf8_sanitize(sys.len ? (const char *)sys.data : "", sys.len, &clean);
    if (rc == 0)
      json_object_set_new(
          root, "systemInstruction",
          text_content(NULL, clean.len ? (const char *)clean.data : "", clean.len));
    buf_free(&clean);
    if (rc != 0)
      goto out;
  }
  json_t *gc = json_object();
  json_object_set_new(gc, "candidateCount", json_integer(1));
  if (p->cfg.temperature >= 0)
    json_object_set_new(gc, "temperature", json_real(p->cfg.temperature));
  if (p->cfg.max_output_tokens > 0)
    json_object_set_new(gc, "maxOutputTokens", json_integer(p->cfg.max_output_tokens));
  json_object_set_new(root, "generationConfig", gc);
  body = json_dumps(root, JSON_COMPACT);
  if (body == NULL) {
    rc = EG_ENOMEM;
    goto out;
  }
  const char *base = p->cfg.gemini_base_url;
  size_t blen = strlen(base);
  while (blen > 0 && base[blen - 1] == '/')
    blen--;
  const char *model = p->model;
  if (strncmp(model, "models/", 7) == 0)
    model += 7;
  rc = buf_printf(&url, "%.*s/v1beta/models/%s:%s", (int)blen, base, model,
                  p->cfg.stream ? "streamGenerateContent?alt=sse" : "generateContent");
  if (rc != 0)
    goto out;
  struct httpc_header h[3] = {
      {"Content-Type", "application/json"},
      {"Accept", p->cfg.stream ? "text/event-stream" : "application/json"},
      {"x-goog-api-key", p->cfg.gemini_api_key},
  };
  rc = llm__remote_start(p, &llm__gemini_dialect, (const char *)url.data, h, 3, body,
                         strlen(body), p->cfg.stream, cb, out);
out:
  if (rc == EG_ETOOBIG)
    rc = EG_EINVAL;
  free(body);
  json_decref(root);
  buf_free(&sys);
  buf_free(&url);
  return rc;
}

static void gemini_cancel(struct llm_stream *s) {
  llm__remote_cancel(s);
}

const struct llm_provider_ops llm__gemini_ops = {
    .name = "gemini",
    .start = gemini_start,
    .cancel = gemini_cancel,
    .destroy = NULL,
};
