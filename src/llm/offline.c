/*
 * Offline provider: the default when no model is configured. It does not pretend to be a
 * model: it says so plainly, shows what engram recalled (the memories with their dates
 * and the last thing the user said in this chat), echoes the new message, and explains
 * how to configure a real model. Deterministic: the same prompt gives the same bytes.
 * The text is streamed in word-sized chunks from a uv timer (cfg.offline_chunk_delay_ms
 * apart), so callers exercise the same streaming path as with a real model.
 */
#include "llm/llm_int.h"

#include <stdlib.h>
#include <string.h>

#define QUOTE_MAX 240
#define CHUNK_MIN 24
#define CHUNK_MAX 48

static int quote(struct buf *b, const char *t, size_t len) {
  /* Collapse line breaks so each quote stays on one line. */
  size_t n = llm__utf8_cut(t, len, QUOTE_MAX);
  int rc = buf_append_byte(b, '"');
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = buf_append_byte(b, (t[i] == '\n' || t[i] == '\r') ? ' ' : (uint8_t)t[i]);
  if (rc == 0 && n < len)
    rc = buf_append_str(b, "...");
  if (rc == 0)
    rc = buf_append_byte(b, '"');
  return rc;
}

/* Builds the whole answer. */
static int compose(const struct llm_prompt *pr, struct buf *b) {
  int rc = buf_append_str(b, "No language model is configured on this server, so this is an "
                             "automatic answer built only from what I remember.\n\n");
  if (rc == 0 && pr->n_memories > 0) {
    rc = buf_append_str(b, "Relevant memories from earlier conversations:\n");
    for (size_t i = 0; rc == 0 && i < pr->n_memories; i++) {
      const struct llm_memory *m = &pr->memories[i];
      char date[16] = "an unknown date";
      if (m->created_at_ms > 0) {
        char iso[25];
        clock_iso8601(m->created_at_ms, iso);
        memcpy(date, iso, 10);
        date[10] = 0;
      }
      rc = buf_printf(b, "- On %s %s: ", date,
                      m->role == LLM_ROLE_MODEL ? "I said" : "you said");
      if (rc == 0)
        rc = quote(b, m->text, m->len);
      if (rc == 0)
        rc = buf_append_byte(b, '\n');
    }
    if (rc == 0)
      rc = buf_append_byte(b, '\n');
  } else if (rc == 0) {
    rc = buf_append_str(b, "I found nothing related in your earlier conversations.\n\n");
  }
  const struct llm_msg *last_user = NULL;
  for (size_t i = pr->n_history; i > 0; i--) {
    if (pr->history[i - 1].role == LLM_ROLE_USER && pr->history[i - 1].len > 0) {
      last_user = &pr->history[i - 1];
      break;
    }
  }
  if (rc == 0 && last_user != NULL) {
    rc = buf_printf(b, "This chat has %zu earlier message%s; the last thing you said here was ",
                    pr->n_history, pr->n_history == 1 ? "" : "s");
    if (rc == 0)
      rc = quote(b, last_user->text, last_user->len);
    if (rc == 0)
      rc = buf_append_str(b, ".\n\n");
  }
  if (rc == 0)
    rc = buf_append_str(b, "You wrote: ");
  if (rc == 0)
    rc = quote(b, pr->message, pr->message_len);
  if (rc == 0)
    rc = buf_append_str(
        b, "\n\nTo get real answers, set GEMINI_API_KEY (Google Gemini) or OPENAI_BASE_URL "
           "(any OpenAI-compatible server, for example Ollama at http://localhost:11434/v1, "
           "with ENGRAM_LLM_MODEL naming the model) and restart engram.");
  return rc;
}

static void timer_close_cb(uv_handle_t *h) {
  free(h);
}

static void end_stream(struct llm_stream *s, int status) {
  uv_timer_t *t = s->timer;
  s->timer = NULL;
  uv_timer_stop(t);
  uv_close((uv_handle_t *)t, timer_close_cb);
  llm__finish(s, status);
}

static void tick(uv_timer_t *t) {
  struct llm_stream *s = t->data;
  if (s->canceled) {
    end_stream(s, EG_ECANCELED);
    return;
  }
  if (s->pos >= s->len) {
    s->finished = true;
    llm__set_finish_reason(s, "STOP");
    s->output_tokens = (int64_t)(s->len + 3) / 4;
    end_stream(s, 0);
    return;
  }
  /* Next chunk: at least CHUNK_MIN bytes, then up to the next space, at most CHUNK_MAX. */
  const char *p = s->text + s->pos;
  size_t left = s->len - s->pos;
  size_t n = EG_MIN(left, (size_t)CHUNK_MIN);
  while (n < left && n < CHUNK_MAX && p[n] != ' ' && p[n] != '\n')
    n++;
  if (n < left && (p[n] == ' ' || p[n] == '\n'))
    n++;
  if (n < left)
    n = llm__utf8_cut(p, left, n);
  if (n == 0)
    n = EG_MIN(left, (size_t)4); /* cannot happen with valid UTF-8 */
  s->pos += n;
  llm__emit(s, p, n);
  /* on_delta may have cancelled: the next tick handles it. */
  uv_timer_start(t, tick, s->canceled ? 0 : s->p->cfg.offline_chunk_delay_ms, 0);
}

static int offline_start(struct llm_provider *p, const struct llm_prompt *prompt,
                         const struct llm_callbacks *cb, struct llm_stream **out) {
  struct buf raw, clean;
  buf_init(&raw, 1u << 20);
  buf_init(&clean, 3u << 20);
  int rc = compose(prompt, &raw);
  if (rc == 0)
    rc = llm__utf8_sanitize((const char *)raw.data, raw.len, &clean);
  buf_free(&raw);
  if (rc != 0) {
    buf_free(&clean);
    return EG_EINVAL;
  }
  struct llm_stream *s = llm__stream_new(p, cb);
  s->text = buf_steal(&clean, &s->len);
  buf_free(&clean);
  s->prompt_tokens = (int64_t)(prompt->message_len + 3) / 4;
  s->timer = xmalloc(sizeof *s->timer);
  uv_timer_init(p->loop, s->timer);
  s->timer->data = s;
  uv_timer_start(s->timer, tick, p->cfg.offline_chunk_delay_ms, 0);
  *out = s;
  return 0;
}

static void offline_cancel(struct llm_stream *s) {
  if (s->timer)
    uv_timer_start(s->timer, tick, 0, 0);
}

const struct llm_provider_ops llm__offline_ops = {
    .name = "offline",
    .start = offline_start,
    .cancel = offline_cancel,
    .destroy = NULL,
};
