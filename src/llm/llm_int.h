/*
 * llm internals shared by the provider files (llm.c, remote.c, gemini.c, openai.c,
 * offline.c). Not for use outside src/llm.
 *
 * A stream is owned by its provider (p->streams list, p->refs). It ends exactly once in
 * llm__finish(), which calls on_done, unlinks and frees it and drops the provider ref.
 */
#ifndef ENGRAM_LLM_INT_H
#define ENGRAM_LLM_INT_H

#include <jansson.h>

#include "httpc/httpc.h"
#include "llm/llm.h"
#include "proto/sse.h"

struct llm_stream;

/* What differs between the HTTP dialects. */
struct llm__dialect {
  const char *name;
  /* One parsed event (or a whole non-streamed response / JSON-array element).
     Calls llm__emit for text, sets s->finished when a finish marker is seen, may call
     llm__fail. Returns 0 or a negative code to stop reading. */
  int (*event)(struct llm_stream *s, json_t *obj);
  /* Optional: the same from the event's text (valid UTF-8) without a jansson tree, for
     the shapes it knows; returns LLM_EVENT_FALLBACK for the rest, which then go to
     `event` through jansson (and the "error" checks of remote.c). */
  int (*event_text)(struct llm_stream *s, const char *p, size_t n);
  /* At the end of a transfer that completed: decide success (may call llm__fail). */
  void (*end)(struct llm_stream *s);
  /* Classifies an HTTP error body: returns the EG_* status (ELIMIT, EAUTH, EUPSTREAM)
     and writes a short human-readable reason into msg. */
  int (*http_error)(struct llm_stream *s, int status, json_t *body, struct buf *msg);
  /* Retry hint from an error body: -1 = do not retry, 0 = default, > 0 = delay in ms. */
  int64_t (*retry_hint)(int status, json_t *body);
};

struct llm_stream {
  struct llm_provider *p;
  struct llm_stream *next, *prev;
  struct llm_callbacks cb;
  bool canceled;
  bool ended;
  size_t text_bytes; /* answer bytes delivered through on_delta */
  int fail;          /* first failure, 0 if none */
  char *fail_msg;
  char *finish_reason;
  int64_t prompt_tokens, output_tokens;
  int http_status;
  /* remote */
  const struct llm__dialect *d;
  struct httpc_req *req;
  bool streaming; /* asked for a stream */
  int mode;       /* 0 = before the response, 1 = SSE, 2 = buffered JSON, 3 = error */
  struct sse_parser sse;
  struct buf body;  /* buffered JSON or error body */
  bool finished;    /* finish marker seen */
  bool done_marker; /* [DONE] seen */
  /* offline */
  uv_timer_t *timer;
  char *text;
  size_t len, pos;
};

#define LLM_EVENT_FALLBACK 1

/* openai.c: one chat.completion.chunk (or chat.completion) read without jansson: what
   openai_event would do with it, as steps in order (a text to emit, or a non-empty
   finish_reason), the strings decoded into scratch (each NUL-terminated at off + len).
   Returns 0, or LLM_EVENT_FALLBACK when the text is outside what it reads: not an object
   that sio/jscan accepts (so ASCII only, no \u escapes), an "error" key, "object":"error",
   a "usage" object, a repeated key it reads, an index beyond 18 digits, or more than
   LLM_OAI_STEPS steps. */
#define LLM_OAI_STEPS 8
struct llm__oai_step {
  bool finish; /* else a text */
  size_t off, len;
};
struct llm__oai_chunk {
  size_t n;
  struct llm__oai_step step[LLM_OAI_STEPS];
};
int llm__openai_chunk_fast(const char *p, size_t n, struct buf *scratch,
                           struct llm__oai_chunk *out);

/* llm.c */
struct llm_stream *llm__stream_new(struct llm_provider *p, const struct llm_callbacks *cb);
void llm__emit(struct llm_stream *s, const char *text, size_t len);
void llm__fail(struct llm_stream *s, int status, const char *fmt, ...) EG_PRINTF(3, 4);
void llm__finish(struct llm_stream *s, int status);
void llm__set_finish_reason(struct llm_stream *s, const char *reason);
/* Replaces invalid UTF-8 sequences with U+FFFD; appends to out. */
EG_WUR int llm__utf8_sanitize(const char *p, size_t n, struct buf *out);
/* True when p[0..n) is valid UTF-8 (what llm__utf8_sanitize would copy unchanged). */
bool llm__utf8_valid(const char *p, size_t n);
/* Largest n <= max (and <= len) that does not cut a UTF-8 sequence of s. */
size_t llm__utf8_cut(const char *s, size_t len, size_t max);
/* Appends the system text + memories block (the "system" part of every prompt). */
EG_WUR int llm__system_text(const struct llm_prompt *prompt, struct buf *out);

/* remote.c: starts a JSON POST whose answer is parsed with dialect d. */
EG_WUR int llm__remote_start(struct llm_provider *p, const struct llm__dialect *d,
                             const char *url, const struct httpc_header *headers,
                             size_t n_headers, const char *body, size_t body_len,
                             bool streaming, const struct llm_callbacks *cb,
                             struct llm_stream **out);
void llm__remote_cancel(struct llm_stream *s);
/* Short text of an error envelope's message (Google, OpenAI, vLLM legacy, Ollama). */
const char *llm__error_text(json_t *body);
/* Reads "Ns" / "N.Ns" durations (Gemini retryDelay) into ms; -1 if not one. */
int64_t llm__parse_duration_ms(const char *s);

/* Replays a response body through a dialect's parsing without any network: `data` is
   fed in pieces of `chunk` bytes (0 = whole) as a 200 response with the given
   Content-Type; the answer is appended to `text` and the final status / finish reason
   returned through *status and *finished. For the fuzz target and tests. */
void llm__replay(const struct llm__dialect *d, const char *content_type, bool streaming,
                 const uint8_t *data, size_t n, size_t chunk, struct buf *text, int *status,
                 bool *finished);

extern const struct llm__dialect llm__gemini_dialect;
extern const struct llm__dialect llm__openai_dialect;
extern const struct llm_provider_ops llm__gemini_ops;
extern const struct llm_provider_ops llm__openai_ops;
extern const struct llm_provider_ops llm__offline_ops;

#endif
