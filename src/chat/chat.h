/*
 * chat: the ai-message pipeline (ARCHITECTURE.md sections 3 and 5) on the Socket.IO
 * namespace "/".
 *
 *   1 validate -> 2 store the user message (group commit) and embed it, concurrently ->
 *   ack {ok, messageId} -> 3 recall memories and load the last `history` messages,
 *   concurrently -> 4 build the prompt -> 5 stream the model's answer (ai-response-chunk)
 *   -> 6 emit ai-response {chat, content, messageId, memories} -> 7 store the answer,
 *   embed it, add it to memory.
 *
 * Order: the messages of one chat are handled strictly one after the other (a queue per
 * chat; the next starts once the previous answer is stored, so its history holds that
 * answer). Different chats and users run concurrently.
 * Idempotency: a clientId seen before in the chat is acked with the stored message's id
 * ({ok:true, messageId, duplicate:true}) and not answered again.
 * Fan-out: every authenticated socket is in the room "user:<id>"; the user's other
 * sockets get `chat-message` {chat, message:{id, role, content, createdAt}} for both the
 * user's message and the answer.
 * Errors: ack {ok:false, error, code} when an ack was asked and not given yet, and
 * `ai-response` {chat, error, code}: bad_request ("chatId and content are required", the
 * older design's words), not_found, too_large, rate_limited, llm_unavailable, internal.
 * A model failure leaves the user message stored; a storage failure of the user message
 * means the model is not called.
 * `ai-cancel` {chatId}: stops the caller's running generation in that chat; what was
 * streamed so far is stored as the model message, marked cancelled, and the final
 * ai-response carries `cancelled: true`.
 *
 * Answers of the offline responder are stored as messages but not kept as memories: they
 * only restate memories, and remembering them would echo memories back as new ones.
 *
 * Threads: everything on the loop thread; store work goes through store_async.
 * Lifetime: chat_shutdown() refuses new messages, lets running answers finish until the
 * deadline (then cancels them: their partial answers are stored), then calls back; only
 * then chat_free().
 */
#ifndef ENGRAM_CHAT_H
#define ENGRAM_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/base.h"

struct store_async;
struct recall;
struct mem_embedder;
struct llm_provider;
struct sio_nsp;
struct sio_socket;

/* Cross-node order (optional; src/cluster implements it with a Redis lock). Before a
   chat's next message starts, acquire(ud, chat_id, granted, arg) is called; it must call
   granted(arg) exactly once, now or later on the loop, when this node may handle that
   chat. release(ud, chat_id) follows once the message is finished (answer stored or
   failed). At most one acquire per chat is outstanding per node (the in-process queue
   still orders a node's own messages). NULL = in-process order only. */
struct chat_lock_ops {
  void (*acquire)(void *ud, const char *chat_id, void (*granted)(void *arg), void *arg);
  void (*release)(void *ud, const char *chat_id);
  void *ud;
};

struct chat_deps {
  uv_loop_t *loop;
  struct store_async *async;
  struct recall *recall;
  struct mem_embedder *embedder; /* the recall's embedder (the query is embedded once) */
  struct llm_provider *llm;
  const char *system_prompt;        /* NULL or "" = LLM_DEFAULT_SYSTEM; copied */
  size_t recall_k;                  /* 0 = 3 */
  size_t history;                   /* 0 = 20 */
  size_t context_chars;             /* 0 = 24000 */
  size_t max_content;               /* 0 = 64 KiB */
  unsigned rate_per_min;            /* ai-messages per user per minute; 0 = no limit */
  const struct chat_lock_ops *lock; /* NULL = none; must outlive the chat */
};

struct chat;

EG_WUR int chat_new(const struct chat_deps *d, struct chat **out);
/* Registers ai-message, ai-cancel, connection and disconnect handlers on nsp. */
void chat_attach(struct chat *c, struct sio_nsp *nsp);
/* Records the authenticated user of a socket (from the connect middleware, before the
   connection handler). Sockets without a user get an error for every ai-message. */
void chat_socket_user(struct chat *c, struct sio_socket *s, const char *user_id);
/* The user id of an authenticated socket, or NULL. */
const char *chat_socket_user_id(const struct sio_socket *s);
/* A chat was deleted (DELETE /api/chat/:id): its cached window goes too, so deleted
   chats neither hold their messages in memory nor grow the cache up to its budget. */
void chat_forget_chat(struct chat *c, const char *chat_id);
/* See "Lifetime". on_idle runs once, on the loop, when no generation runs any more. */
void chat_shutdown(struct chat *c, uint32_t deadline_ms, void (*on_idle)(void *ud), void *ud);
void chat_free(struct chat *c);

struct chat_stats {
  uint64_t messages;   /* ai-messages received */
  uint64_t answers;    /* answers completed */
  uint64_t cancelled;  /* answers cancelled */
  uint64_t duplicates; /* idempotent repeats */
  uint64_t errors_bad_request, errors_not_found, errors_too_large, errors_rate_limited,
      errors_llm_unavailable, errors_internal;
  uint64_t running;            /* generations running now */
  uint64_t queued;             /* ai-messages waiting behind another of their chat */
  struct histo llm_first_byte; /* model: request to first delta */
  struct histo llm_total;      /* model: request to end */
  struct histo recall;         /* recall search (embedding done) */
  struct histo overhead;       /* server time of an answered ai-message, model time
                                  excluded: receive -> model start, plus model end ->
                                  answer stored */
  struct histo latency;        /* the same up to ai-response written (what the client
                                  waits for; the answer is stored after it) */
};
void chat_stats(const struct chat *c, struct chat_stats *st);

#endif
