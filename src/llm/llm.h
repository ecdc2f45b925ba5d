/*
 * llm: language-model providers behind one vtable, streaming answers as text deltas.
 *
 * Providers (chosen by llm_config.provider, see llm_config_from_env):
 *   gemini   POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse
 *            (or :generateContent when cfg.stream is false), header x-goog-api-key,
 *            contents with roles user/model, systemInstruction, generationConfig.
 *   openai   POST {base}/chat/completions (base includes /v1, as Ollama's
 *            http://localhost:11434/v1), stream:true, optional Bearer key, a system
 *            message first, roles user/assistant, [DONE] sentinel. Works with Ollama,
 *            llama.cpp server and vLLM quirks (PROVIDER-CONTRACTS.md section 3).
 *   offline  built in, the default when nothing is configured: answers from the recalled
 *            memories and the recent history, says plainly that no language model is
 *            configured and how to configure one, deterministic, streamed in chunks from
 *            a uv timer like the others.
 *
 * Prompt: the caller (the chat pipeline) fills struct llm_prompt; the provider lays it
 * out for its wire format: the system instruction, then a block "Relevant memories from
 * earlier conversations:" listing each memory with its date (see llm_format_memories),
 * then the recent messages oldest first, then the new user message. Gemini gets the
 * system text + memories block as systemInstruction (consecutive messages of one role
 * become one turn with several parts); OpenAI-compatible servers get them as the first
 * `system` message. llm_stream_start copies what it needs: the prompt may be
 * freed as soon as it returns.
 *
 * Streaming: on_delta(text, len) is called with each new slice of the answer, in order,
 * valid UTF-8 (invalid bytes from upstream are replaced with U+FFFD), never empty. Then
 * on_done(result) is called exactly once, never from inside llm_stream_start or
 * llm_stream_cancel. After on_done the stream handle is gone.
 *
 * result->status:
 *   0             complete answer (Gemini: a finishReason; OpenAI: finish_reason or [DONE])
 *   EG_ECANCELED  llm_stream_cancel() or llm_provider_free(); code NULL, message
 *                 "generation cancelled"
 *   EG_EUPSTREAM  the model failed: HTTP error status (after retries for 429/5xx), in-band
 *                 error event, truncated stream, malformed JSON, blocked prompt or answer,
 *                 empty answer; code "llm_unavailable"
 *   EG_ETIMEOUT   connect / first byte / idle / total timeout; code "llm_unavailable"
 *   EG_ELIMIT     still rate limited after the last try, or quota exhausted (not
 *                 retried); code "llm_unavailable"
 *   EG_EAUTH      the key was refused (400 API_KEY_INVALID, 401, 403); "llm_unavailable"
 *   EG_EIO        the server could not be reached (after retries); "llm_unavailable"
 *   other         a local failure (out of memory, request too large to build); code
 *                 "internal"
 * result->message is a clear sentence for the user and the log, never containing the key.
 * Text already delivered through on_delta before a failure is not a complete answer.
 *
 * Cancellation: llm_stream_cancel(s) may be called any time before on_done, also from
 * inside on_delta; no on_delta follows, then on_done(EG_ECANCELED).
 *
 * Thread: the loop thread only. Providers share one struct httpc (the app creates it).
 */
#ifndef ENGRAM_LLM_H
#define ENGRAM_LLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/base.h"

struct httpc;
struct llm_provider;
struct llm_stream;

enum llm_role { LLM_ROLE_USER = 0, LLM_ROLE_MODEL = 1 };

/* One message of the recent history. */
struct llm_msg {
  enum llm_role role;
  const char *text; /* UTF-8, need not be NUL-terminated */
  size_t len;
  int64_t created_at_ms; /* wall clock, 0 = unknown */
};

/* One recalled long-term memory. */
struct llm_memory {
  enum llm_role role; /* who said it */
  const char *text;
  size_t len;
  int64_t created_at_ms; /* shown as a date in the memories block; 0 = unknown */
  double score;
};

struct llm_prompt {
  const char *system; /* system instruction, NUL-terminated; NULL = LLM_DEFAULT_SYSTEM */
  const struct llm_memory *memories; /* best first */
  size_t n_memories;
  const struct llm_msg *history; /* oldest first, without the new message */
  size_t n_history;
  const char *message; /* the new user message */
  size_t message_len;
};

#define LLM_DEFAULT_SYSTEM                                                                     \
  "You are a helpful assistant with long-term memory. Use the relevant memories from "         \
  "earlier conversations when they help answer the user, and say so when you do."

struct llm_result {
  int status;                /* 0 or EG_E* (see above) */
  const char *message;       /* NULL on success */
  const char *code;          /* NULL on success and cancel, else "llm_unavailable"/"internal" */
  const char *finish_reason; /* upstream's finish reason when known ("STOP", "stop"), or NULL */
  int64_t prompt_tokens;     /* -1 when unknown */
  int64_t output_tokens;     /* -1 when unknown */
  int http_status;           /* last upstream HTTP status, 0 if none */
};

struct llm_callbacks {
  void (*on_delta)(void *ud, const char *text, size_t len);
  void (*on_done)(void *ud, const struct llm_result *res);
  void *ud;
};

struct llm_config {
  const char *provider;        /* "gemini", "openai", "offline"; NULL/"" = auto (see below) */
  const char *model;           /* NULL = provider default */
  const char *gemini_base_url; /* NULL = https://generativelanguage.googleapis.com */
  const char *gemini_api_key;
  const char *openai_base_url;     /* includes /v1 */
  const char *openai_api_key;      /* optional */
  bool stream;                     /* false = non-streamed call, one delta */
  double temperature;              /* < 0 = not sent */
  int max_output_tokens;           /* 0 = not sent */
  uint32_t connect_timeout_ms;     /* default 10000 */
  uint32_t first_byte_timeout_ms;  /* default 60000 */
  uint32_t idle_timeout_ms;        /* default 60000 */
  uint32_t total_timeout_ms;       /* default 300000 */
  int max_tries;                   /* default 3 */
  uint32_t backoff_base_ms;        /* default 500 */
  uint32_t backoff_max_ms;         /* default 8000 */
  uint32_t offline_chunk_delay_ms; /* offline streaming pace, default 15 */
};

/* Defaults, then the environment: ENGRAM_LLM (provider), ENGRAM_LLM_MODEL,
   GEMINI_API_KEY, ENGRAM_GEMINI_BASE_URL, OPENAI_BASE_URL, OPENAI_API_KEY,
   ENGRAM_LLM_TIMEOUT_MS (total), ENGRAM_LLM_MAX_TRIES. Strings point into the
   environment (getenv); they stay valid while the environment is unchanged.
   Auto choice: gemini when GEMINI_API_KEY is set, else openai when OPENAI_BASE_URL is
   set, else offline. */
void llm_config_defaults(struct llm_config *cfg);
void llm_config_from_env(struct llm_config *cfg);

/* Creates the configured provider. `http` is required for gemini/openai (may be NULL
   for offline). Returns 0, EG_EINVAL (unknown provider name, gemini without a key,
   openai without a base URL, a base URL that is not http:// or https://). The config's
   strings are copied. */
EG_WUR int llm_provider_new(uv_loop_t *loop, struct httpc *http, const struct llm_config *cfg,
                            struct llm_provider **out);
/* Frees the provider. Streams still running are cancelled first (their on_done runs with
   EG_ECANCELED from the loop later; the memory is released after that). */
void llm_provider_free(struct llm_provider *p);

const char *llm_provider_name(const struct llm_provider *p);  /* "gemini", ... */
const char *llm_provider_model(const struct llm_provider *p); /* model id or "offline" */

/* Starts a streamed completion. Returns 0 and sets *out (may be NULL), or EG_EINVAL
   (empty message, missing on_done, a prompt over the 4 MiB request limit). On error no
   callback is called. */
EG_WUR int llm_stream_start(struct llm_provider *p, const struct llm_prompt *prompt,
                            const struct llm_callbacks *cb, struct llm_stream **out);
void llm_stream_cancel(struct llm_stream *s);

/* Appends the memories block ("Relevant memories from earlier conversations:\n- [date]
   text\n...") to out; nothing when there are no memories. Returns 0 or EG_ETOOBIG. */
EG_WUR int llm_format_memories(const struct llm_prompt *prompt, struct buf *out);

/* ---- provider vtable (for the implementations in this module) ---------------------- */

struct llm_provider_ops {
  const char *name;
  int (*start)(struct llm_provider *p, const struct llm_prompt *prompt,
               const struct llm_callbacks *cb, struct llm_stream **out);
  void (*cancel)(struct llm_stream *s);
  void (*destroy)(struct llm_provider *p);
};

struct llm_provider {
  const struct llm_provider_ops *ops;
  uv_loop_t *loop;
  struct httpc *http;
  struct llm_config cfg; /* strings owned (copied) */
  char *model;
  void *impl;
  int refs;                   /* 1 for the owner + 1 per running stream */
  bool closing;               /* llm_provider_free was called */
  struct llm_stream *streams; /* running streams (for cancel on free) */
};

#endif
