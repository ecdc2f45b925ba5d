/*
 * llm: configuration, the provider vtable dispatch, stream bookkeeping shared by every
 * provider, and prompt text helpers. See llm.h.
 */
#include "llm/llm_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- configuration ------------------------------------------------------------------ */

void llm_config_defaults(struct llm_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->stream = true;
  cfg->temperature = -1;
  cfg->connect_timeout_ms = 10000;
  cfg->first_byte_timeout_ms = 60000;
  cfg->idle_timeout_ms = 60000;
  cfg->total_timeout_ms = 300000;
  cfg->max_tries = 3;
  cfg->backoff_base_ms = 500;
  cfg->backoff_max_ms = 8000;
  cfg->offline_chunk_delay_ms = 15;
}

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static void env_u32(const char *name, uint32_t *out) {
  const char *v = env(name);
  if (v == NULL)
    return;
  char *end;
  unsigned long x = strtoul(v, &end, 10);
  if (*end == 0 && x <= UINT32_MAX)
    *out = (uint32_t)x;
}

void llm_config_from_env(struct llm_config *cfg) {
  llm_config_defaults(cfg);
  cfg->provider = env("ENGRAM_LLM");
  cfg->model = env("ENGRAM_LLM_MODEL");
  cfg->gemini_api_key = env("GEMINI_API_KEY");
  cfg->gemini_base_url = env("ENGRAM_GEMINI_BASE_URL");
  cfg->openai_base_url = env("OPENAI_BASE_URL");
  cfg->openai_api_key = env("OPENAI_API_KEY");
  env_u32("ENGRAM_LLM_TIMEOUT_MS", &cfg->total_timeout_ms);
  uint32_t tries = 0;
  env_u32("ENGRAM_LLM_MAX_TRIES", &tries);
  if (tries > 0 && tries <= 20)
    cfg->max_tries = (int)tries;
}

static char *dup_or_null(const char *s) {
  return s ? xstrdup(s) : NULL;
}

static const char *auto_provider(const struct llm_config *cfg) {
  if (cfg->provider && *cfg->provider)
    return cfg->provider;
  if (cfg->gemini_api_key && *cfg->gemini_api_key)
    return "gemini";
  if (cfg->openai_base_url && *cfg->openai_base_url)
    return "openai";
  return "offline";
}

static bool http_url(const char *u) {
  return u != NULL && (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0);
}

int llm_provider_new(uv_loop_t *loop, struct httpc *http, const struct llm_config *cfg,
                     struct llm_provider **out) {
  const char *name = auto_provider(cfg);
  const struct llm_provider_ops *ops;
  const char *model;
  if (strcasecmp(name, "gemini") == 0) {
    ops = &llm__gemini_ops;
    if (!cfg->gemini_api_key || !*cfg->gemini_api_key || http == NULL)
      return EG_EINVAL;
    if (cfg->gemini_base_url && *cfg->gemini_base_url && !http_url(cfg->gemini_base_url))
      return EG_EINVAL;
    model = cfg->model ? cfg->model : "gemini-2.5-flash";
  } else if (strcasecmp(name, "openai") == 0) {
    ops = &llm__openai_ops;
    if (!http_url(cfg->openai_base_url) || http == NULL)
      return EG_EINVAL;
    model = cfg->model ? cfg->model : "gpt-4o-mini";
  } else if (strcasecmp(name, "offline") == 0) {
    ops = &llm__offline_ops;
    model = "offline";
  } else {
    return EG_EINVAL;
  }
  struct llm_provider *p = xcalloc(1, sizeof *p);
  p->ops = ops;
  p->loop = loop;
  p->http = http;
  p->cfg = *cfg;
  p->cfg.provider = xstrdup(ops->name);
  p->cfg.model = NULL;
  p->cfg.gemini_base_url = xstrdup(cfg->gemini_base_url && *cfg->gemini_base_url
                                       ? cfg->gemini_base_url
                                       : "https://generativelanguage.googleapis.com");
  p->cfg.gemini_api_key = dup_or_null(cfg->gemini_api_key);
  p->cfg.openai_base_url = dup_or_null(cfg->openai_base_url);
  p->cfg.openai_api_key = dup_or_null(cfg->openai_api_key);
  if (p->cfg.max_tries < 1)
    p->cfg.max_tries = 1;
  p->model = xstrdup(model);
  p->refs = 1;
  *out = p;
  return 0;
}

static void provider_destroy(struct llm_provider *p) {
  if (p->ops->destroy)
    p->ops->destroy(p);
  free((char *)p->cfg.provider);
  free((char *)p->cfg.gemini_base_url);
  free((char *)p->cfg.gemini_api_key);
  free((char *)p->cfg.openai_base_url);
  free((char *)p->cfg.openai_api_key);
  free(p->model);
  free(p);
}

static void provider_unref(struct llm_provider *p) {
  if (--p->refs == 0)
    provider_destroy(p);
}

void llm_provider_free(struct llm_provider *p) {
  if (p == NULL || p->closing)
    return;
  p->closing = true;
  for (struct llm_stream *s = p->streams; s != NULL; s = s->next)
    llm_stream_cancel(s);
  provider_unref(p);
}

const char *llm_provider_name(const struct llm_provider *p) {
  return p->ops->name;
}

const char *llm_provider_model(const struct llm_provider *p) {
  return p->model;
}

int llm_stream_start(struct llm_provider *p, const struct llm_prompt *prompt,
                     const struct llm_callbacks *cb, struct llm_stream **out) {
  if (out)
    *out = NULL;
  if (p->closing || cb == NULL || cb->on_done == NULL || prompt == NULL)
    return EG_EINVAL;
  if (prompt->message == NULL || prompt->message_len == 0)
    return EG_EINVAL;
  struct llm_stream *s = NULL;
  int rc = p->ops->start(p, prompt, cb, &s);
  if (rc == 0 && out)
    *out = s;
  return rc;
}

void llm_stream_cancel(struct llm_stream *s) {
  if (s == NULL || s->ended || s->canceled)
    return;
  s->canceled = true;
  s->p->ops->cancel(s);
}

/* ---- stream bookkeeping ------------------------------------------------------------- */

struct llm_stream *llm__stream_new(struct llm_provider *p, const struct llm_callbacks *cb) {
  struct llm_stream *s = xcalloc(1, sizeof *s);
  s->p = p;
  s->cb = *cb;
  s->prompt_tokens = -1;
  s->output_tokens = -1;
  s->next = p->streams;
  if (p->streams)
    p->streams->prev = s;
  p->streams = s;
  p->refs++;
  return s;
}

void llm__emit(struct llm_stream *s, const char *text, size_t len) {
  if (s->canceled || s->ended || s->fail || len == 0)
    return;
  s->text_bytes += len;
  if (s->cb.on_delta)
    s->cb.on_delta(s->cb.ud, text, len);
}

void llm__fail(struct llm_stream *s, int status, const char *fmt, ...) {
  if (s->fail)
    return;
  s->fail = status;
  struct buf b;
  buf_init(&b, 2048);
  va_list ap;
  va_start(ap, fmt);
  if (buf_vprintf(&b, fmt, ap) != 0) {
    buf_reset(&b);
    if (buf_append_str(&b, "The language model failed.") != 0)
      buf_reset(&b);
  }
  va_end(ap);
  size_t n;
  free(s->fail_msg);
  s->fail_msg = buf_steal(&b, &n);
  buf_free(&b);
  /* Belt and braces: upstream text must never carry our keys into logs or to users. */
  const char *keys[2] = {s->p->cfg.gemini_api_key, s->p->cfg.openai_api_key};
  for (int k = 0; k < 2 && s->fail_msg; k++) {
    size_t kl = keys[k] ? strlen(keys[k]) : 0;
    if (kl < 4)
      continue;
    char *hit;
    while ((hit = strstr(s->fail_msg, keys[k])) != NULL) {
      memset(hit, '*', 3);
      memmove(hit + 3, hit + kl, strlen(hit + kl) + 1);
    }
  }
}

void llm__set_finish_reason(struct llm_stream *s, const char *reason) {
  free(s->finish_reason);
  s->finish_reason = reason ? xstrdup(reason) : NULL;
}

void llm__finish(struct llm_stream *s, int status) {
  if (s->ended)
    return;
  s->ended = true;
  struct llm_provider *p = s->p;
  struct llm_result r;
  memset(&r, 0, sizeof r);
  if (s->canceled) {
    status = EG_ECANCELED;
  } else if (s->fail) {
    status = s->fail;
  }
  r.status = status;
  if (status == EG_ECANCELED) {
    r.message = "generation cancelled";
  } else if (status != 0) {
    r.message = s->fail_msg ? s->fail_msg : "The language model failed.";
    switch (status) {
    case EG_EUPSTREAM:
    case EG_ETIMEOUT:
    case EG_ELIMIT:
    case EG_EAUTH:
    case EG_EIO:
      r.code = "llm_unavailable";
      break;
    default:
      r.code = "internal";
    }
  }
  r.finish_reason = s->finish_reason;
  r.prompt_tokens = s->prompt_tokens;
  r.output_tokens = s->output_tokens;
  r.http_status = s->http_status;
  if (status != 0 && status != EG_ECANCELED)
    log_warn("llm %s: %s (%s)", p->ops->name, r.message, eg_errname(status));
  s->cb.on_done(s->cb.ud, &r);
  if (s->prev)
    s->prev->next = s->next;
  else
    p->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  sse_free(&s->sse);
  buf_free(&s->body);
  free(s->fail_msg);
  free(s->finish_reason);
  free(s->text);
  free(s);
  provider_unref(p);
}

/* ---- text helpers ------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p[0..n), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned char c = p[0];
  if (c < 0x80)
    return 1;
  size_t len;
  uint32_t min, cp;
  if ((c & 0xE0) == 0xC0) {
    len = 2, min = 0x80, cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, min = 0x800, cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, min = 0x10000, cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

/* Length of the valid UTF-8 prefix of p[0..n) (n when it is all valid); ASCII 8 bytes at
   a time. */
static size_t utf8_valid_prefix(const unsigned char *u, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, u + i, 8);
      if (w & 0x8080808080808080ull)
        break;
      i += 8;
    }
    if (i >= n)
      break;
    size_t k = utf8_seq(u + i, n - i);
    if (k == 0)
      return i;
    i += k;
  }
  return n;
}

bool llm__utf8_valid(const char *p, size_t n) {
  return utf8_valid_prefix((const unsigned char *)p, n) == n;
}

int llm__utf8_sanitize(const char *p, size_t n, struct buf *out) {
  const unsigned char *u = (const unsigned char *)p;
  size_t i = utf8_valid_prefix(u, n), run = 0;
  while (i < n) {
    size_t k = utf8_seq(u + i, n - i);
    if (k > 0) {
      i += k;
      continue;
    }
    if (buf_append(out, u + run, i - run) != 0 || buf_append(out, "\xEF\xBF\xBD", 3) != 0)
      return EG_ETOOBIG;
    i++;
    run = i;
  }
  return buf_append(out, u + run, n - run);
}

/* Cuts at most max bytes at a UTF-8 boundary. */
static size_t utf8_cut(const char *s, size_t len, size_t max) {
  if (len <= max)
    return len;
  size_t n = max;
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
    n--;
  return n;
}

int llm_format_memories(const struct llm_prompt *prompt, struct buf *out) {
  if (prompt->n_memories == 0)
    return 0;
  int rc = buf_append_str(out, "Relevant memories from earlier conversations:\n");
  for (size_t i = 0; rc == 0 && i < prompt->n_memories; i++) {
    const struct llm_memory *m = &prompt->memories[i];
    char date[16] = "unknown date";
    if (m->created_at_ms > 0) {
      char iso[25];
      clock_iso8601(m->created_at_ms, iso);
      memcpy(date, iso, 10);
      date[10] = 0;
    }
    rc = buf_printf(out, "- [%s] %s: ", date, m->role == LLM_ROLE_MODEL ? "assistant" : "user");
    if (rc == 0)
      rc = buf_append(out, m->text, m->len);
    if (rc == 0)
      rc = buf_append_byte(out, '\n');
  }
  return rc;
}

int llm__system_text(const struct llm_prompt *prompt, struct buf *out) {
  int rc = buf_append_str(out, prompt->system ? prompt->system : LLM_DEFAULT_SYSTEM);
  if (rc == 0 && prompt->n_memories > 0) {
    rc = buf_append_str(out, "\n\n");
    if (rc == 0)
      rc = llm_format_memories(prompt, out);
  }
  return rc;
}

size_t llm__utf8_cut(const char *s, size_t len, size_t max) {
  return utf8_cut(s, len, max);
}
