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

#include "sio/jscan.h"

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

/* ---- the common chunk without jansson ------------------------------------------------ */

/* A cursor over text that sio/jscan accepted: valid JSON, ASCII, no \u escapes. The
   checks below still keep every read in bounds. */
struct oscan {
  const char *p;
  size_t n, i;
  struct buf *sb;
  struct llm__oai_chunk *out;
};

static void o_ws(struct oscan *o) {
  while (o->i < o->n &&
         (o->p[o->i] == ' ' || o->p[o->i] == '\t' || o->p[o->i] == '\n' || o->p[o->i] == '\r'))
    o->i++;
}

static bool o_eat(struct oscan *o, char c) {
  o_ws(o);
  if (o->i < o->n && o->p[o->i] == c) {
    o->i++;
    return true;
  }
  return false;
}

static char o_peek(struct oscan *o) {
  o_ws(o);
  return o->i < o->n ? o->p[o->i] : 0;
}

/* The string at the cursor, decoded into sb (NUL-terminated). */
static int o_str(struct oscan *o, size_t *off, size_t *len) {
  if (!o_eat(o, '"'))
    return -1;
  *off = o->sb->len;
  for (;;) {
    size_t run = o->i;
    while (o->i < o->n && o->p[o->i] != '"' && o->p[o->i] != '\\')
      o->i++;
    if (o->i >= o->n || buf_append(o->sb, o->p + run, o->i - run) != 0)
      return -1;
    if (o->p[o->i] == '"')
      break;
    if (o->i + 1 >= o->n)
      return -1;
    char c;
    switch (o->p[o->i + 1]) {
    case '"':
      c = '"';
      break;
    case '\\':
      c = '\\';
      break;
    case '/':
      c = '/';
      break;
    case 'b':
      c = '\b';
      break;
    case 'f':
      c = '\f';
      break;
    case 'n':
      c = '\n';
      break;
    case 'r':
      c = '\r';
      break;
    case 't':
      c = '\t';
      break;
    default:
      return -1;
    }
    if (buf_append_byte(o->sb, (uint8_t)c) != 0)
      return -1;
    o->i += 2;
  }
  o->i++;
  *len = o->sb->len - *off;
  return buf_append_byte(o->sb, 0) == 0 ? 0 : -1;
}

/* A key without escapes and its colon: k, kl point into the text. */
static int o_key(struct oscan *o, const char **k, size_t *kl) {
  if (!o_eat(o, '"'))
    return -1;
  size_t start = o->i;
  while (o->i < o->n && o->p[o->i] != '"' && o->p[o->i] != '\\')
    o->i++;
  if (o->i >= o->n || o->p[o->i] != '"')
    return -1;
  *k = o->p + start;
  *kl = o->i - start;
  o->i++;
  return o_eat(o, ':') ? 0 : -1;
}

static bool key_is(const char *k, size_t kl, const char *name) {
  return strlen(name) == kl && memcmp(k, name, kl) == 0;
}

/* Skips one value. */
static int o_skip(struct oscan *o) {
  o_ws(o);
  int depth = 0;
  while (o->i < o->n) {
    char c = o->p[o->i];
    if (c == '"') {
      o->i++;
      while (o->i < o->n && o->p[o->i] != '"')
        o->i += o->p[o->i] == '\\' ? 2 : 1;
      if (o->i >= o->n)
        return -1;
      o->i++;
    } else if (c == '{' || c == '[') {
      depth++;
      o->i++;
      continue;
    } else if (c == '}' || c == ']') {
      if (depth == 0)
        return 0; /* the end of the enclosing container: the value was a scalar */
      depth--;
      o->i++;
    } else if (c == ',' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (depth == 0)
        return 0;
      o->i++;
      continue;
    } else {
      o->i++;
      continue;
    }
    if (depth == 0)
      return 0;
  }
  return depth == 0 ? 0 : -1;
}

static int o_step(struct oscan *o, bool finish, size_t off, size_t len) {
  if (o->out->n >= LLM_OAI_STEPS)
    return -1;
  o->out->step[o->out->n++] = (struct llm__oai_step){finish, off, len};
  return 0;
}

/* "delta" or "message": an object's string "content" and "refusal". */
struct otexts {
  bool obj, has_c, has_r, seen_c, seen_r;
  size_t c_off, c_len, r_off, r_len;
};

static int o_texts(struct oscan *o, struct otexts *t) {
  if (o_peek(o) != '{')
    return o_skip(o);
  t->obj = true;
  o->i++;
  if (o_eat(o, '}'))
    return 0;
  for (;;) {
    const char *k;
    size_t kl;
    if (o_key(o, &k, &kl) != 0)
      return -1;
    bool c = key_is(k, kl, "content"), r = key_is(k, kl, "refusal");
    if ((c && t->seen_c) || (r && t->seen_r))
      return -1; /* jansson keeps the last: leave it to jansson */
    t->seen_c |= c;
    t->seen_r |= r;
    int rc;
    if ((c || r) && o_peek(o) == '"') {
      rc = c ? o_str(o, &t->c_off, &t->c_len) : o_str(o, &t->r_off, &t->r_len);
      if (c)
        t->has_c = true;
      else
        t->has_r = true;
    } else {
      rc = o_skip(o);
    }
    if (rc != 0)
      return -1;
    if (o_eat(o, ','))
      continue;
    return o_eat(o, '}') ? 0 : -1;
  }
}

/* One element of "choices", as openai_event reads it. */
static int o_choice(struct oscan *o) {
  if (o_peek(o) != '{')
    return o_skip(o); /* not an object: nothing to read in it */
  o->i++;
  struct otexts delta = {0}, msg = {0};
  bool seen_idx = false, seen_delta = false, seen_msg = false, seen_fr = false;
  bool skip = false, has_fr = false;
  size_t fr_off = 0, fr_len = 0;
  if (!o_eat(o, '}')) {
    for (;;) {
      const char *k;
      size_t kl;
      if (o_key(o, &k, &kl) != 0)
        return -1;
      int rc;
      if (key_is(k, kl, "index")) {
        if (seen_idx)
          return -1;
        seen_idx = true;
        char c = o_peek(o);
        if (c == '-' || (c >= '0' && c <= '9')) {
          size_t start = o->i, digits = 0;
          bool integer = true, nonzero = false;
          while (o->i < o->n && o->p[o->i] != ',' && o->p[o->i] != '}' && o->p[o->i] != ' ' &&
                 o->p[o->i] != '\t' && o->p[o->i] != '\n' && o->p[o->i] != '\r') {
            char d = o->p[o->i++];
            if (d >= '0' && d <= '9') {
              digits++;
              nonzero |= d != '0';
            } else if (!(d == '-' && o->i - 1 == start)) {
              integer = false; /* a fraction or an exponent: a real, not skipped */
            }
          }
          if (digits > 18)
            return -1;
          skip = integer && nonzero;
          rc = 0;
        } else {
          rc = o_skip(o);
        }
      } else if (key_is(k, kl, "delta")) {
        if (seen_delta)
          return -1;
        seen_delta = true;
        rc = o_texts(o, &delta);
      } else if (key_is(k, kl, "message")) {
        if (seen_msg)
          return -1;
        seen_msg = true;
        rc = o_texts(o, &msg);
      } else if (key_is(k, kl, "finish_reason")) {
        if (seen_fr)
          return -1;
        seen_fr = true;
        if (o_peek(o) == '"') {
          has_fr = true;
          rc = o_str(o, &fr_off, &fr_len);
        } else {
          rc = o_skip(o);
        }
      } else {
        rc = o_skip(o);
      }
      if (rc != 0)
        return -1;
      if (o_eat(o, ','))
        continue;
      if (o_eat(o, '}'))
        break;
      return -1;
    }
  }
  if (skip)
    return 0; /* only the first choice is used */
  const struct otexts *t = delta.obj ? &delta : &msg;
  if (t->obj && t->has_c && o_step(o, false, t->c_off, t->c_len) != 0)
    return -1;
  if (t->obj && t->has_r && o_step(o, false, t->r_off, t->r_len) != 0)
    return -1;
  if (has_fr && fr_len > 0 && o_step(o, true, fr_off, fr_len) != 0)
    return -1;
  return 0;
}

int llm__openai_chunk_fast(const char *p, size_t n, struct buf *scratch,
                           struct llm__oai_chunk *out) {
  out->n = 0;
  if (jscan_validate((const uint8_t *)p, n, 64) != 0)
    return LLM_EVENT_FALLBACK;
  struct oscan o = {p, n, 0, scratch, out};
  if (!o_eat(&o, '{'))
    return LLM_EVENT_FALLBACK;
  if (o_eat(&o, '}'))
    return 0;
  bool seen_choices = false, seen_object = false, seen_usage = false;
  for (;;) {
    const char *k;
    size_t kl;
    if (o_key(&o, &k, &kl) != 0)
      return LLM_EVENT_FALLBACK;
    int rc;
    if (key_is(k, kl, "error")) {
      return LLM_EVENT_FALLBACK;
    } else if (key_is(k, kl, "object")) {
      if (seen_object)
        return LLM_EVENT_FALLBACK;
      seen_object = true;
      size_t off, len;
      if (o_peek(&o) == '"') {
        rc = o_str(&o, &off, &len);
        if (rc == 0 && strcmp((const char *)scratch->data + off, "error") == 0)
          return LLM_EVENT_FALLBACK;
      } else {
        rc = o_skip(&o);
      }
    } else if (key_is(k, kl, "usage")) {
      if (seen_usage || o_peek(&o) == '{')
        return LLM_EVENT_FALLBACK;
      seen_usage = true;
      rc = o_skip(&o);
    } else if (key_is(k, kl, "choices")) {
      if (seen_choices)
        return LLM_EVENT_FALLBACK;
      seen_choices = true;
      if (o_peek(&o) == '[') {
        o.i++;
        rc = 0;
        if (!o_eat(&o, ']')) {
          for (;;) {
            rc = o_choice(&o);
            if (rc != 0)
              break;
            if (o_eat(&o, ','))
              continue;
            if (!o_eat(&o, ']'))
              rc = -1;
            break;
          }
        }
      } else {
        rc = o_skip(&o);
      }
    } else {
      rc = o_skip(&o);
    }
    if (rc != 0)
      return LLM_EVENT_FALLBACK;
    if (o_eat(&o, ','))
      continue;
    return o_eat(&o, '}') ? 0 : LLM_EVENT_FALLBACK;
  }
}

static int openai_event_text(struct llm_stream *s, const char *p, size_t n) {
  struct buf scratch;
  buf_init(&scratch, n + 64);
  struct llm__oai_chunk ch;
  int rc = llm__openai_chunk_fast(p, n, &scratch, &ch);
  for (size_t i = 0; rc == 0 && i < ch.n; i++) {
    const char *t = (const char *)scratch.data + ch.step[i].off;
    if (!ch.step[i].finish) {
      llm__emit(s, t, ch.step[i].len);
      continue;
    }
    s->finished = true;
    llm__set_finish_reason(s, t);
    if (strcmp(t, "content_filter") == 0) {
      llm__fail(s, EG_EUPSTREAM,
                "The answer was blocked by the model's content filter (finish_reason "
                "content_filter).");
      rc = EG_EUPSTREAM;
    }
  }
  buf_free(&scratch);
  return rc;
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
    .event_text = openai_event_text,
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
