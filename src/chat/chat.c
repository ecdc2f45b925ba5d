/*
 * The ai-message pipeline (see chat.h). A struct job carries one ai-message through its
 * stages; each stage that waits on two things at once counts them down in job->pending.
 *
 *   on_ai_message -> enqueue (per-chat queue) -> job_start
 *     job_start: store_async_insert(user message) || mem_embed(content)  -> stage1_done
 *     stage1_done: ack; chat-message fan-out; recall_remember(user message);
 *                  recall_search || load history                           -> stage2_done
 *     stage2_done: prompt -> llm_stream_start -> on_delta* -> on_llm_done
 *     on_llm_done: ai-response; store_async_insert(model message)          -> on_model_stored
 *     on_model_stored: chat-message fan-out; recall_remember(answer); job_finish -> next
 */
#include "chat/chat.h"
#include "chat/chat_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "llm/llm.h"
#include "memory/memory.h"
#include "proto/sio.h"
#include "proto/ws.h"
#include "recall/recall.h"
#include "sio/sio.h"
#include "store/store.h"
#include "store/store_async.h"

#define MAX_ANSWER (1024 * 1024) /* bytes of one streamed answer kept */
#define CLIENT_ID_MAX 128
#define WINDOWS_BUDGET (32u << 20) /* bytes of cached chat windows (chat_int.h) */

struct csock;
struct chatq;

struct job {
  struct chat *c;
  struct chatq *q;
  struct job *qnext;          /* next in the chat's queue */
  struct csock *sock;         /* NULL once the socket went away */
  struct job *snext, **sprev; /* in the socket's list of jobs */
  int64_t ack;                /* SIO_NO_ACK once answered */
  char user[ID_LEN + 1];
  char chat[ID_LEN + 1];
  char *content;
  size_t content_len;
  char *client_id;
  int pending;
  int status; /* first failure (EG_E*) */
  const char *err_code, *err_msg;
  bool duplicate, cancel_requested;
  struct store_message_new um; /* the user message */
  float *qvec;                 /* the content's embedding, or NULL */
  float *avec;                 /* the answer's (hash embedder), or NULL */
  struct recall_item *mem;     /* recalled memories (copied) */
  size_t nmem;
  struct store_messages hist;
  bool hist_cached, hist_loaded; /* the window came from the cache / from the store */
  char model_id[ID_LEN + 1];
  struct buf answer;
  uint32_t seq;
  struct llm_stream *stream;
  struct store_message_new mm; /* the model message */
  bool llm_cancelled;
  uint64_t t_recv, t_recall, t_llm_start, t_first_byte, t_llm_end;
};

struct csock {
  struct chat *c;
  struct sio_socket *s;
  char user[ID_LEN + 1];
  char room[ID_LEN + 6];
  struct job *jobs;
  /* Until on_connection: in the chat's pending list (a socket refused or gone before it
     connected is freed by sio without a disconnect callback; its csock is swept later
     without touching the socket). */
  struct csock *pnext, **pprev;
  uint64_t created_ms;
};

struct chatq {
  char chat[ID_LEN + 1];
  struct job *head, *tail; /* head is the running job */
};

struct rate {
  double tokens;
  uint64_t last_ms;
};

struct chat {
  struct chat_deps d;
  char *system;
  struct hmap queues;           /* chat id -> struct chatq */
  struct hmap rates;            /* user id -> struct rate */
  struct chat_windows *windows; /* NULL with a cross-node lock */
  struct chat_stats st;
  struct sio_nsp *nsp;   /* where the user rooms are */
  struct csock *pending; /* csocks whose socket has not connected yet, oldest last */
  bool closing;
  uv_timer_t deadline;
  bool deadline_on;
  void (*on_idle)(void *ud);
  void *idle_ud;
};

/* ---- helpers --------------------------------------------------------------------- */

static struct sio_socket *job_socket(const struct job *j) {
  return j->sock && sio_socket_connected(j->sock->s) ? j->sock->s : NULL;
}

static void emit(struct sio_socket *s, const char *event, json_t *payload) {
  if (s == NULL) {
    json_decref(payload);
    return;
  }
  int rc = sio_emit(s, event, json_pack("[o]", payload));
  if (rc && rc != EG_ECLOSED)
    log_warn("chat: emit %s failed: %s", event, eg_strerror(rc));
}

static void ack(struct sio_socket *s, int64_t *ackid, json_t *payload) {
  if (s == NULL || *ackid == SIO_NO_ACK) {
    json_decref(payload);
    return;
  }
  int rc = sio_ack(s, *ackid, json_pack("[o]", payload));
  *ackid = SIO_NO_ACK;
  if (rc && rc != EG_ECLOSED)
    log_warn("chat: ack failed: %s", eg_strerror(rc));
}

/* JSON text (for sio_emit_raw) of the fixed-shape events on every ai-message's path (chunks,
   ai-response, the ack): the bytes sio_encode writes for the json_pack objects they replace
   (same key order, escaping and reals), without building them. Strings of unknown origin are
   checked for UTF-8 first; if one is not valid the caller falls back to jansson. */
struct jw {
  struct buf b;
  int rc;
};

/* An empty writer with room for about hint bytes (one allocation, not a chain of
   doublings from 64). */
static void jw_init(struct jw *w, size_t hint) {
  buf_init(&w->b, SIZE_MAX / 2);
  w->rc = buf_reserve(&w->b, hint);
}

static void jw_raw(struct jw *w, const char *s) {
  if (w->rc == 0)
    w->rc = buf_append_str(&w->b, s);
}

static void jw_str(struct jw *w, const char *s, size_t n) {
  if (w->rc == 0)
    w->rc = buf_append_json_str(&w->b, s, n);
}

static void jw_int(struct jw *w, long long v) {
  if (w->rc == 0)
    w->rc = buf_printf(&w->b, "%lld", v);
}

static void jw_real(struct jw *w, double v) {
  char t[SIO_REAL_MAX];
  size_t n = sio_format_real(v, t);
  if (w->rc == 0)
    w->rc = buf_append(&w->b, t, n);
}

static void jw_iso(struct jw *w, int64_t ms) {
  char t[25];
  clock_iso8601(ms, t);
  jw_str(w, t, strlen(t));
}

static bool utf8_ok(const char *s, size_t n) {
  return ws_utf8_validate((const uint8_t *)s, n);
}

static void emit_jw(struct sio_socket *s, const char *event, struct jw *w) {
  int rc =
      w->rc ? w->rc : sio_emit_raw(s, event, (struct slice){(const char *)w->b.data, w->b.len});
  if (rc && rc != EG_ECLOSED)
    log_warn("chat: emit %s failed: %s", event, eg_strerror(rc));
  buf_free(&w->b);
}

/* The ack {ok: true, messageId} (an id: ASCII). */
static void ack_ok(struct sio_socket *s, int64_t *ackid, const char *id) {
  if (s == NULL || *ackid == SIO_NO_ACK)
    return;
  char t[ID_LEN + 40];
  int n = snprintf(t, sizeof t, "{\"ok\":true,\"messageId\":\"%s\"}", id);
  int rc = sio_ack_raw(s, *ackid, (struct slice){t, (size_t)n});
  *ackid = SIO_NO_ACK;
  if (rc && rc != EG_ECLOSED)
    log_warn("chat: ack failed: %s", eg_strerror(rc));
}

static json_t *iso(int64_t ms) {
  char t[25];
  clock_iso8601(ms, t);
  return json_string(t);
}

static void count_error(struct chat *c, const char *code) {
  if (!strcmp(code, "bad_request"))
    c->st.errors_bad_request++;
  else if (!strcmp(code, "not_found"))
    c->st.errors_not_found++;
  else if (!strcmp(code, "too_large"))
    c->st.errors_too_large++;
  else if (!strcmp(code, "rate_limited"))
    c->st.errors_rate_limited++;
  else if (!strcmp(code, "llm_unavailable"))
    c->st.errors_llm_unavailable++;
  else
    c->st.errors_internal++;
}

/* Tells the client an ai-message failed: error ack (if one is owed) and ai-response. */
static void send_error(struct chat *c, struct sio_socket *s, int64_t *ackid, const char *chat,
                       const char *code, const char *msg) {
  count_error(c, code);
  ack(s, ackid, json_pack("{s:b,s:s,s:s}", "ok", 0, "error", msg, "code", code));
  emit(s, "ai-response",
       json_pack("{s:s,s:s,s:s}", "chat", chat ? chat : "", "error", msg, "code", code));
}

/* chat-message to the user's sockets other than the sender's: {chat, message: {id, role,
   content, createdAt, cancelled?}} as JSON text (the bytes the jansson tree it replaces
   encoded to), or through jansson when the content is not valid UTF-8. */
static void fan_out(struct job *j, const struct store_message_new *m) {
  struct sio_socket *s = job_socket(j);
  struct sio_nsp *nsp = j->c->nsp;
  if (nsp == NULL)
    return;
  struct sio_bcast to = {.room = j->sock ? j->sock->room : NULL, .except = s};
  char room[ID_LEN + 6];
  if (to.room == NULL) {
    snprintf(room, sizeof room, "user:%s", j->user);
    to.room = room;
  }
  size_t clen = strlen(m->content);
  int rc;
  if (utf8_ok(m->content, clen)) {
    struct jw w;
    jw_init(&w, 160 + clen + clen / 8);
    jw_raw(&w, "{\"chat\":");
    jw_str(&w, j->chat, strlen(j->chat));
    jw_raw(&w, ",\"message\":{\"id\":");
    jw_str(&w, m->id, strlen(m->id));
    jw_raw(&w, ",\"role\":");
    jw_str(&w, m->role, strlen(m->role));
    jw_raw(&w, ",\"content\":");
    jw_str(&w, m->content, clen);
    jw_raw(&w, ",\"createdAt\":");
    jw_iso(&w, m->created_at);
    jw_raw(&w, m->cancelled ? ",\"cancelled\":true}}" : "}}");
    rc = w.rc ? w.rc
              : sio_broadcast_raw(nsp, &to, "chat-message",
                                  (struct slice){(const char *)w.b.data, w.b.len});
    buf_free(&w.b);
  } else {
    json_t *msg = json_pack("{s:s,s:s,s:s,s:o}", "id", m->id, "role", m->role, "content",
                            m->content, "createdAt", iso(m->created_at));
    if (m->cancelled)
      json_object_set_new(msg, "cancelled", json_true());
    rc = sio_broadcast(nsp, &to, "chat-message",
                       json_pack("[{s:s,s:o}]", "chat", j->chat, "message", msg));
  }
  if (rc < 0)
    log_warn("chat: chat-message fan-out failed: %s", eg_strerror(rc));
}

/* ---- jobs and queues ------------------------------------------------------------- */

static void job_unlink_socket(struct job *j) {
  if (j->sock == NULL)
    return;
  *j->sprev = j->snext;
  if (j->snext)
    j->snext->sprev = j->sprev;
  j->sock = NULL;
}

static void job_free(struct job *j) {
  job_unlink_socket(j);
  free(j->content);
  free(j->client_id);
  free(j->qvec);
  free(j->avec);
  for (size_t i = 0; i < j->nmem; i++) {
    free(j->mem[i].text);
    free(j->mem[i].context);
  }
  free(j->mem);
  if (j->hist_cached)
    chat_windows_release(&j->hist);
  else
    store_messages_free(&j->hist);
  buf_free(&j->answer);
  free(j);
}

static void job_start(struct job *j);

/* The head of a chat's queue starts once the cross-node lock (chat.h) is granted. */
static void job_granted(void *arg) {
  job_start(arg);
}
static void job_begin(struct job *j) {
  const struct chat_lock_ops *l = j->c->d.lock;
  if (l)
    l->acquire(l->ud, j->chat, job_granted, j);
  else
    job_start(j);
}

static void maybe_idle(struct chat *c) {
  if (!c->closing || c->st.running || c->queues.count)
    return;
  if (c->deadline_on) {
    uv_timer_stop(&c->deadline);
    c->deadline_on = false;
  }
  if (c->on_idle) {
    void (*cb)(void *) = c->on_idle;
    c->on_idle = NULL;
    cb(c->idle_ud);
  }
}

/* The job is done: drop it and start the next of its chat. */
static void job_finish(struct job *j) {
  struct chat *c = j->c;
  struct chatq *q = j->q;
  struct job *next = j->qnext;
  c->st.running--;
  if (c->d.lock)
    c->d.lock->release(c->d.lock->ud, j->chat);
  q->head = next;
  if (next == NULL) {
    q->tail = NULL;
    hmap_del(&c->queues, q->chat);
    free(q);
  }
  job_free(j);
  if (next) {
    c->st.queued--;
    job_begin(next);
  }
  maybe_idle(c);
}

static void fail(struct job *j, int status, const char *code, const char *msg) {
  if (j->status)
    return;
  j->status = status ? status : EG_EINTERNAL;
  j->err_code = code;
  j->err_msg = msg;
}

/* With the hash embedder (pure, a few microseconds): the text's vector now, set on m so
   that the writer records the memory as embedded with the message (no separate vector
   update; the vector itself is not stored: vec_derived). Returns the
   vector (the caller frees it), or NULL for the other embedders. */
static float *local_embed(struct chat *c, struct store_message_new *m, const char *text,
                          size_t len) {
  if (strcmp(c->d.embedder->name, "hash") != 0 || c->d.embedder->dim != MEM_DIM ||
      !recall_builtin(c->d.recall))
    return NULL; /* (with Pinecone, a stored vector means "upserted") */
  float *v = xmalloc(MEM_DIM * sizeof *v);
  mem_hash_embed(text, len, v);
  m->vec = v;
  m->dims = MEM_DIM;
  m->embed_model = c->d.embedder->model;
  m->vec_derived = true; /* recomputed when the user's memories are loaded, not stored */
  return v;
}

/* ---- stage 3: model, answer, store ----------------------------------------------- */

static void on_model_stored(void *arg, int status, struct store_message_new *m) {
  struct job *j = arg;
  if (status) {
    log_error("chat: storing the answer failed: %s", eg_strerror(status));
  } else {
    uint64_t now = clock_mono_ns();
    histo_add(&j->c->st.overhead, ((j->t_llm_start - j->t_recv) + (now - j->t_llm_end)) / 1000);
    fan_out(j, m);
    if (j->c->windows)
      chat_windows_append(j->c->windows, m);
    if (!strcmp(llm_provider_name(j->c->d.llm), "offline")) {
      /* The offline responder only restates memories: remembering its answers would echo
         memories back as new ones. They stay in the chat, not in the memory. */
      if (m->content[0] && recall_forget(j->c->d.recall, j->user, m->id, NULL, NULL) != 0)
        log_warn("chat: could not keep an offline answer out of the memory");
    } else if (m->content[0]) {
      struct recall_memory mem = {.user_id = j->user,
                                  .id = m->id,
                                  .chat_id = j->chat,
                                  .role = "model",
                                  .text = m->content,
                                  .created_at = m->created_at,
                                  .vec = m->vec,
                                  .vec_stored = m->vec != NULL};
      int rc = recall_remember(j->c->d.recall, &mem, NULL, NULL);
      if (rc)
        log_warn("chat: answer not embedded now (%s); left for the backfill", eg_strerror(rc));
    }
  }
  job_finish(j);
}

static json_t *memories_json(const struct job *j) {
  json_t *a = json_array();
  for (size_t i = 0; i < j->nmem; i++) {
    const struct recall_item *m = &j->mem[i];
    json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:s,s:f,s:o}", "id", m->id, "chatId",
                                       m->chat_id, "role", m->role, "text", m->text, "score",
                                       (double)m->score, "createdAt", iso(m->created_at)));
  }
  return a;
}

/* ai-response {chat, content, messageId, memories, cancelled?}. */
static void emit_response(struct job *j, bool cancelled) {
  struct sio_socket *s = job_socket(j);
  if (s == NULL)
    return;
  const char *content = j->answer.len ? (const char *)j->answer.data : "";
  bool ok = utf8_ok(content, j->answer.len);
  size_t texts = 0;
  for (size_t i = 0; ok && i < j->nmem; i++) {
    size_t tl = strlen(j->mem[i].text);
    texts += tl;
    ok = utf8_ok(j->mem[i].text, tl) && utf8_ok(j->mem[i].role, strlen(j->mem[i].role));
  }
  if (!ok) {
    json_t *r =
        json_pack("{s:s,s:s%,s:s,s:o}", "chat", j->chat, "content", content, j->answer.len,
                  "messageId", j->model_id, "memories", memories_json(j));
    if (cancelled)
      json_object_set_new(r, "cancelled", json_true());
    emit(s, "ai-response", r);
    return;
  }
  struct jw w;
  jw_init(&w, 160 + (j->answer.len + texts) * 9 / 8 + 160 * j->nmem);
  jw_raw(&w, "{\"chat\":");
  jw_str(&w, j->chat, strlen(j->chat));
  jw_raw(&w, ",\"content\":");
  jw_str(&w, content, j->answer.len);
  jw_raw(&w, ",\"messageId\":");
  jw_str(&w, j->model_id, strlen(j->model_id));
  jw_raw(&w, ",\"memories\":[");
  for (size_t i = 0; i < j->nmem; i++) {
    const struct recall_item *m = &j->mem[i];
    jw_raw(&w, i ? ",{\"id\":" : "{\"id\":");
    jw_str(&w, m->id, strlen(m->id));
    jw_raw(&w, ",\"chatId\":");
    jw_str(&w, m->chat_id, strlen(m->chat_id));
    jw_raw(&w, ",\"role\":");
    jw_str(&w, m->role, strlen(m->role));
    jw_raw(&w, ",\"text\":");
    jw_str(&w, m->text, strlen(m->text));
    jw_raw(&w, ",\"score\":");
    jw_real(&w, (double)m->score);
    jw_raw(&w, ",\"createdAt\":");
    jw_iso(&w, m->created_at);
    jw_raw(&w, "}");
  }
  jw_raw(&w, cancelled ? "],\"cancelled\":true}" : "]}");
  emit_jw(s, "ai-response", &w);
}

static void store_answer(struct job *j, bool cancelled) {
  struct store_message_new *m = &j->mm;
  memcpy(m->id, j->model_id, sizeof m->id);
  m->chat_id = j->chat;
  m->user_id = j->user;
  m->role = "model";
  m->content = j->answer.len ? (const char *)j->answer.data : "";
  m->cancelled = cancelled;
  if (m->content[0] && strcmp(llm_provider_name(j->c->d.llm), "offline") != 0)
    j->avec = local_embed(j->c, m, m->content, strlen(m->content));
  int rc = store_async_insert(j->c->d.async, m, on_model_stored, j);
  if (rc) {
    log_error("chat: cannot queue the answer: %s", eg_strerror(rc));
    job_finish(j);
  }
}

static void on_delta(void *ud, const char *text, size_t len) {
  struct job *j = ud;
  if (j->t_first_byte == 0) {
    j->t_first_byte = clock_mono_ns();
    histo_add(&j->c->st.llm_first_byte, (j->t_first_byte - j->t_llm_start) / 1000);
  }
  if (buf_append(&j->answer, text, len) != 0) {
    log_warn("chat: answer over %d bytes: stopped", MAX_ANSWER);
    llm_stream_cancel(j->stream);
    return;
  }
  struct sio_socket *s = job_socket(j);
  if (s == NULL) {
    j->seq++;
    return;
  }
  if (!utf8_ok(text, len)) {
    emit(s, "ai-response-chunk",
         json_pack("{s:s,s:s,s:i,s:s%}", "chat", j->chat, "messageId", j->model_id, "seq",
                   (json_int_t)j->seq++, "delta", text, len));
    return;
  }
  struct jw w;
  jw_init(&w, 120 + len + len / 8);
  jw_raw(&w, "{\"chat\":");
  jw_str(&w, j->chat, strlen(j->chat));
  jw_raw(&w, ",\"messageId\":");
  jw_str(&w, j->model_id, strlen(j->model_id));
  jw_raw(&w, ",\"seq\":");
  jw_int(&w, (long long)j->seq++);
  jw_raw(&w, ",\"delta\":");
  jw_str(&w, text, len);
  jw_raw(&w, "}");
  emit_jw(s, "ai-response-chunk", &w);
}

static void on_llm_done(void *ud, const struct llm_result *res) {
  struct job *j = ud;
  struct chat *c = j->c;
  j->stream = NULL;
  j->t_llm_end = clock_mono_ns();
  histo_add(&c->st.llm_total, (j->t_llm_end - j->t_llm_start) / 1000);
  bool cancelled = res->status == EG_ECANCELED;
  if (res->status == 0 || cancelled) {
    if (cancelled)
      c->st.cancelled++;
    else
      c->st.answers++;
    emit_response(j, cancelled);
    if (!cancelled) /* what the client waits for: the answer is stored after it */
      histo_add(&c->st.latency,
                ((j->t_llm_start - j->t_recv) + (clock_mono_ns() - j->t_llm_end)) / 1000);
    store_answer(j, cancelled);
    return;
  }
  log_warn("chat: model failed: %s", res->message ? res->message : eg_strerror(res->status));
  send_error(c, job_socket(j), &j->ack, j->chat, res->code ? res->code : "internal",
             res->message ? res->message : "The language model failed");
  job_finish(j);
}

/* Keeps the newest history messages that fit the budget left after the rest. */
static size_t history_start(const struct job *j, const struct llm_msg *h, size_t n,
                            size_t used) {
  size_t budget = j->c->d.context_chars;
  size_t start = n;
  while (start > 0 && used + h[start - 1].len <= budget) {
    used += h[start - 1].len;
    start--;
  }
  return start;
}

static void start_model(struct job *j) {
  struct chat *c = j->c;
  if (j->cancel_requested) {
    j->t_llm_start = clock_mono_ns();
    struct llm_result r = {.status = EG_ECANCELED};
    on_llm_done(j, &r);
    return;
  }
  size_t used = strlen(c->system) + j->content_len;
  struct llm_memory *mems = xcalloc(j->nmem + 1, sizeof *mems);
  char **texts = xcalloc(j->nmem + 1, sizeof *texts); /* memory + its neighbouring turns */
  size_t nm = 0;
  for (size_t i = 0; i < j->nmem; i++) {
    const char *ctx = j->mem[i].context;
    if (ctx && *ctx) {
      size_t n = strlen(j->mem[i].text) + strlen(ctx) + 32;
      texts[nm] = xmalloc(n);
      snprintf(texts[nm], n, "%s\n  (around it in that chat:\n%s)", j->mem[i].text, ctx);
    }
    const char *text = texts[nm] ? texts[nm] : j->mem[i].text;
    size_t len = strlen(text);
    if (used + len > c->d.context_chars / 2 && nm > 0) {
      free(texts[nm]);
      texts[nm] = NULL;
      break; /* memories may take half the budget at most (the best one always goes) */
    }
    mems[nm].role = !strcmp(j->mem[i].role, "model") ? LLM_ROLE_MODEL : LLM_ROLE_USER;
    mems[nm].text = text;
    mems[nm].len = len;
    mems[nm].created_at_ms = j->mem[i].created_at;
    mems[nm].score = j->mem[i].score;
    used += len;
    nm++;
  }
  struct llm_msg *h = xcalloc(j->hist.n + 1, sizeof *h);
  size_t nh = 0;
  for (size_t i = 0; i < j->hist.n; i++) {
    const struct store_message *m = &j->hist.v[i];
    if (!strcmp(m->id, j->um.id))
      continue; /* the new message goes last, on its own */
    h[nh].role = !strcmp(m->role, "model") ? LLM_ROLE_MODEL : LLM_ROLE_USER;
    h[nh].text = m->content;
    h[nh].len = strlen(m->content);
    h[nh].created_at_ms = m->created_at;
    nh++;
  }
  size_t hs = history_start(j, h, nh, used);
  struct llm_prompt p = {
      .system = c->system,
      .memories = mems,
      .n_memories = nm,
      .history = h + hs,
      .n_history = nh - hs,
      .message = j->content,
      .message_len = j->content_len,
  };
  struct llm_callbacks cb = {.on_delta = on_delta, .on_done = on_llm_done, .ud = j};
  j->t_llm_start = clock_mono_ns();
  int rc = llm_stream_start(c->d.llm, &p, &cb, &j->stream);
  for (size_t i = 0; i < nm; i++)
    free(texts[i]);
  free(texts);
  free(mems);
  free(h);
  if (rc) {
    send_error(c, job_socket(j), &j->ack, j->chat, "internal",
               "The language model could not be started");
    job_finish(j);
  }
}

/* ---- stage 2: recall || history -------------------------------------------------- */

static void stage2_done(struct job *j) {
  if (--j->pending > 0)
    return;
  /* Drop recalled memories already in the window, keep the best recall_k. */
  size_t k = 0;
  for (size_t i = 0; i < j->nmem; i++) {
    bool in_window = false;
    for (size_t h = 0; h < j->hist.n && !in_window; h++)
      in_window = !strcmp(j->hist.v[h].id, j->mem[i].id);
    if (in_window || k >= j->c->d.recall_k) {
      free(j->mem[i].text);
      free(j->mem[i].context);
      continue;
    }
    j->mem[k++] = j->mem[i];
  }
  j->nmem = k;
  start_model(j);
}

static void on_recalled(void *ud, int status, const struct recall_item *items, size_t n) {
  struct job *j = ud;
  histo_add(&j->c->st.recall, (clock_mono_ns() - j->t_recall) / 1000);
  if (status) {
    log_warn("chat: recall failed (%s): answering without memories", eg_strerror(status));
  } else {
    j->mem = xcalloc(n + 1, sizeof *j->mem);
    for (size_t i = 0; i < n; i++) {
      j->mem[i] = items[i];
      j->mem[i].text = xstrdup(items[i].text);
      j->mem[i].context = items[i].context ? xstrdup(items[i].context) : NULL;
    }
    j->nmem = n;
  }
  stage2_done(j);
}

static int load_history(struct store *s, void *arg) {
  struct job *j = arg;
  return store_message_last(s, j->chat, j->c->d.history + 1, &j->hist);
}

static void on_history(void *arg, int status) {
  struct job *j = arg;
  if (status)
    log_warn("chat: loading the history failed (%s): answering without it",
             eg_strerror(status));
  stage2_done(j);
}

/* The builtin index: the last messages, then the memories that are not among them (so
   exactly recall_k come back), on a pool thread. */
static int window_and_recall(struct store *s, void *arg) {
  struct job *j = arg;
  struct chat *c = j->c;
  int rc = 0;
  if (!j->hist_cached) {
    rc = store_message_last(s, j->chat, c->d.history + 1, &j->hist);
    j->hist_loaded = rc == 0;
  }
  if (rc)
    log_warn("chat: loading the history failed (%s): answering without it", eg_strerror(rc));
  const char **ex = xcalloc(j->hist.n + 1, sizeof *ex);
  size_t nex = 0;
  ex[nex++] = j->um.id;
  for (size_t i = 0; i < j->hist.n; i++)
    if (strcmp(j->hist.v[i].id, j->um.id) != 0)
      ex[nex++] = j->hist.v[i].id;
  struct recall_item *items = NULL;
  size_t n = 0;
  rc = recall_search_blocking(c->d.recall, s, j->user, j->content, j->qvec, c->d.recall_k, ex,
                              nex, &items, &n);
  free(ex);
  if (rc) {
    log_warn("chat: recall failed (%s): answering without memories", eg_strerror(rc));
    return 0;
  }
  j->mem = items;
  j->nmem = n;
  return 0;
}

static void on_window_and_recall(void *arg, int status) {
  struct job *j = arg;
  (void)status;
  if (j->hist_loaded && j->c->windows)
    chat_windows_put(j->c->windows, j->chat, &j->hist);
  histo_add(&j->c->st.recall, (clock_mono_ns() - j->t_recall) / 1000);
  stage2_done(j);
}

/* ---- stage 1: store || embed ----------------------------------------------------- */

static void stage1_done(struct job *j) {
  if (--j->pending > 0)
    return;
  struct chat *c = j->c;
  if (j->status) {
    send_error(c, job_socket(j), &j->ack, j->chat, j->err_code, j->err_msg);
    job_finish(j);
    return;
  }
  if (j->duplicate) {
    c->st.duplicates++;
    ack(job_socket(j), &j->ack,
        json_pack("{s:b,s:s,s:b}", "ok", 1, "messageId", j->um.id, "duplicate", 1));
    job_finish(j);
    return;
  }
  /* The hash embedder gives queries and documents the same vector: reuse it (it was
     stored with the message). */
  bool same = !strcmp(c->d.embedder->name, "hash");
  struct recall_memory mem = {.user_id = j->user,
                              .id = j->um.id,
                              .chat_id = j->chat,
                              .role = "user",
                              .text = j->content,
                              .created_at = j->um.created_at,
                              .vec = same ? j->qvec : NULL,
                              .vec_stored = j->um.vec != NULL};
  int rc = recall_remember(c->d.recall, &mem, NULL, NULL);
  if (rc)
    log_warn("chat: message not embedded now (%s); left for the backfill", eg_strerror(rc));
  j->t_recall = clock_mono_ns();
  if (recall_builtin(c->d.recall)) {
    /* One trip to the thread pool: the window (unless cached), then the memories outside
       it. */
    j->pending = 1;
    if (c->windows)
      j->hist_cached = chat_windows_get(c->windows, j->chat, &j->hist);
    rc = store_async_run(c->d.async, window_and_recall, on_window_and_recall, j);
    if (rc) {
      log_warn("chat: history and recall not started (%s)", eg_strerror(rc));
      stage2_done(j);
    }
    return;
  }
  j->pending = 2;
  const char *exclude[1] = {j->um.id};
  rc = recall_search(c->d.recall, j->user, j->content, j->qvec, c->d.recall_k + c->d.history,
                     exclude, 1, on_recalled, j);
  if (rc) {
    log_warn("chat: recall not started (%s)", eg_strerror(rc));
    j->pending--;
  }
  rc = store_async_run(c->d.async, load_history, on_history, j);
  if (rc) {
    log_warn("chat: history not loaded (%s)", eg_strerror(rc));
    j->pending++;
    stage2_done(j);
  }
}

static void on_user_stored(void *arg, int status, struct store_message_new *m) {
  struct job *j = arg;
  if (status == EG_ENOTFOUND) {
    fail(j, status, "not_found", "Chat not found");
  } else if (status) {
    log_error("chat: storing a message failed: %s", eg_strerror(status));
    fail(j, status, "internal", "The message could not be stored");
  } else if (m->existed) {
    j->duplicate = true;
  } else {
    ack_ok(job_socket(j), &j->ack, m->id);
    fan_out(j, m);
    if (j->c->windows)
      chat_windows_append(j->c->windows, m);
  }
  stage1_done(j);
}

static void on_query_vec(void *ud, int status, const float *vecs, size_t n, int dim) {
  struct job *j = ud;
  if (status == 0 && n == 1 && dim == j->c->d.embedder->dim)
    j->qvec = xmemdup(vecs, (size_t)dim * sizeof *vecs);
  else
    log_warn("chat: embedding failed (%s): recall by keywords only",
             eg_strerror(status ? status : EG_EUPSTREAM));
  stage1_done(j);
}

static void job_start(struct job *j) {
  struct chat *c = j->c;
  j->pending = 2;
  struct store_message_new *m = &j->um;
  m->chat_id = j->chat;
  m->user_id = j->user;
  m->role = "user";
  m->content = j->content;
  m->client_id = j->client_id;
  j->qvec = local_embed(c, m, j->content, j->content_len);
  int rc = store_async_insert(c->d.async, m, on_user_stored, j);
  if (rc) {
    fail(j, rc, "internal", "The server is shutting down");
    j->pending--;
  }
  if (j->qvec) {
    j->pending--; /* embedded already */
  } else {
    const char *t = j->content;
    size_t len = j->content_len;
    rc = mem_embed(c->d.embedder, &t, &len, 1, MEM_TASK_QUERY, on_query_vec, j);
    if (rc) {
      log_warn("chat: embedding not started (%s)", eg_strerror(rc));
      j->pending--;
    }
  }
  if (j->pending == 0) {
    j->pending = 1;
    stage1_done(j);
  }
}

/* ---- events ---------------------------------------------------------------------- */

static bool rate_ok(struct chat *c, const char *user) {
  if (c->d.rate_per_min == 0)
    return true;
  struct rate *r = hmap_get(&c->rates, user);
  uint64_t now = clock_mono_ms();
  double cap = c->d.rate_per_min;
  if (r == NULL) {
    r = xcalloc(1, sizeof *r);
    r->tokens = cap;
    r->last_ms = now;
    hmap_put(&c->rates, user, r);
  }
  r->tokens += (double)(now - r->last_ms) * cap / 60000.0;
  if (r->tokens > cap)
    r->tokens = cap;
  r->last_ms = now;
  if (r->tokens < 1.0)
    return false;
  r->tokens -= 1.0;
  return true;
}

static const char *obj_str(const json_t *o, const char *key, size_t *len) {
  const json_t *v = json_object_get(o, key);
  if (!json_is_string(v))
    return NULL;
  if (len)
    *len = json_string_length(v);
  return json_string_value(v);
}

static void on_ai_message(struct sio_socket *s, const char *event, json_t *args, int64_t ackid,
                          void *ud) {
  (void)event;
  struct chat *c = ud;
  struct csock *cs = sio_socket_data(s);
  c->st.messages++;
  const json_t *body = json_array_get(args, 0);
  size_t clen = 0, chat_len = 0, cid_len = 0;
  const char *chat = json_is_object(body) ? obj_str(body, "chatId", &chat_len) : NULL;
  const char *content = json_is_object(body) ? obj_str(body, "content", &clen) : NULL;
  const json_t *cidv = json_is_object(body) ? json_object_get(body, "clientId") : NULL;
  const char *cid = json_is_string(cidv) ? json_string_value(cidv) : NULL;
  cid_len = cid ? json_string_length(cidv) : 0;
  const char *chat_field = chat && chat_len <= ID_LEN ? chat : "";
  if (cs == NULL) {
    send_error(c, s, &ackid, chat_field, "internal", "Not authenticated");
    return;
  }
  if (chat == NULL || content == NULL || chat_len == 0 || clen == 0 ||
      strlen(content) != clen) {
    send_error(c, s, &ackid, chat_field, "bad_request", "chatId and content are required");
    return;
  }
  if ((cidv && !json_is_null(cidv) && !cid) || cid_len > CLIENT_ID_MAX ||
      (cid && strlen(cid) != cid_len)) {
    send_error(c, s, &ackid, chat_field, "bad_request",
               "clientId must be a string of at most 128 bytes");
    return;
  }
  if (!id_valid(chat, chat_len)) {
    send_error(c, s, &ackid, chat_field, "not_found", "Chat not found");
    return;
  }
  if (clen > c->d.max_content) {
    char msg[96];
    snprintf(msg, sizeof msg, "Message too large (at most %zu bytes)", c->d.max_content);
    send_error(c, s, &ackid, chat, "too_large", msg);
    return;
  }
  if (c->closing) {
    send_error(c, s, &ackid, chat, "internal", "The server is shutting down");
    return;
  }
  if (!rate_ok(c, cs->user)) {
    send_error(c, s, &ackid, chat, "rate_limited", "Too many messages: slow down a little");
    return;
  }
  struct job *j = xcalloc(1, sizeof *j);
  j->c = c;
  j->t_recv = clock_mono_ns();
  j->ack = ackid;
  memcpy(j->user, cs->user, sizeof j->user);
  memcpy(j->chat, chat, ID_LEN);
  j->content = xstrndup(content, clen);
  j->content_len = clen;
  j->client_id = cid && cid_len ? xstrndup(cid, cid_len) : NULL;
  id_new(j->model_id);
  buf_init(&j->answer, MAX_ANSWER);
  j->sock = cs;
  j->snext = cs->jobs;
  j->sprev = &cs->jobs;
  if (cs->jobs)
    cs->jobs->sprev = &j->snext;
  cs->jobs = j;
  struct chatq *q = hmap_get(&c->queues, j->chat);
  c->st.running++;
  if (q == NULL) {
    q = xcalloc(1, sizeof *q);
    memcpy(q->chat, j->chat, sizeof q->chat);
    hmap_put(&c->queues, q->chat, q);
  }
  j->q = q;
  if (q->tail) {
    q->tail->qnext = j;
    q->tail = j;
    c->st.queued++;
    return;
  }
  q->head = q->tail = j;
  job_begin(j);
}

static void on_ai_cancel(struct sio_socket *s, const char *event, json_t *args, int64_t ackid,
                         void *ud) {
  (void)event;
  struct chat *c = ud;
  struct csock *cs = sio_socket_data(s);
  const json_t *body = json_array_get(args, 0);
  const char *chat = json_is_object(body) ? obj_str(body, "chatId", NULL) : NULL;
  struct chatq *q = chat ? hmap_get(&c->queues, chat) : NULL;
  struct job *j = q ? q->head : NULL;
  bool found = cs && j && !strcmp(j->user, cs->user);
  if (found) {
    j->cancel_requested = true;
    if (j->stream)
      llm_stream_cancel(j->stream);
  }
  if (ackid != SIO_NO_ACK)
    ack(s, &ackid, json_pack("{s:b}", "ok", found));
}

static void pending_unlink(struct csock *cs) {
  if (cs->pprev == NULL)
    return;
  *cs->pprev = cs->pnext;
  if (cs->pnext)
    cs->pnext->pprev = cs->pprev;
  cs->pprev = NULL;
  cs->pnext = NULL;
}

/* Frees the csocks of sockets that never connected (longer ago than any connect takes). */
static void pending_sweep(struct chat *c, uint64_t older_than_ms) {
  uint64_t now = clock_mono_ms();
  struct csock **pp = &c->pending;
  while (*pp) {
    struct csock *cs = *pp;
    if (now - cs->created_ms < older_than_ms) {
      pp = &cs->pnext;
      continue;
    }
    pending_unlink(cs);
    free(cs);
  }
}

static void on_connection(struct sio_socket *s, void *ud) {
  (void)ud;
  struct csock *cs = sio_socket_data(s);
  if (cs == NULL)
    return;
  pending_unlink(cs);
  if (sio_join(s, cs->room) != 0)
    log_warn("chat: joining %s failed", cs->room);
}

static void on_disconnect(struct sio_socket *s, const char *reason, void *ud) {
  (void)reason, (void)ud;
  struct csock *cs = sio_socket_data(s);
  if (cs == NULL)
    return;
  while (cs->jobs)
    job_unlink_socket(cs->jobs);
  pending_unlink(cs);
  sio_socket_set_data(s, NULL);
  free(cs);
}

/* ---- public ---------------------------------------------------------------------- */

int chat_new(const struct chat_deps *d, struct chat **out) {
  if (d == NULL || d->loop == NULL || d->async == NULL || d->recall == NULL ||
      d->embedder == NULL || d->llm == NULL)
    return EG_EINVAL;
  struct chat *c = xcalloc(1, sizeof *c);
  c->d = *d;
  c->system =
      xstrdup(d->system_prompt && *d->system_prompt ? d->system_prompt : LLM_DEFAULT_SYSTEM);
  c->d.system_prompt = c->system;
  if (!c->d.recall_k)
    c->d.recall_k = 3;
  if (!c->d.history)
    c->d.history = 20;
  if (d->lock == NULL)
    c->windows = chat_windows_new(c->d.history + 1, WINDOWS_BUDGET);
  if (!c->d.context_chars)
    c->d.context_chars = 24000;
  if (!c->d.max_content)
    c->d.max_content = 64 * 1024;
  uv_timer_init(d->loop, &c->deadline);
  c->deadline.data = c;
  *out = c;
  return 0;
}

void chat_attach(struct chat *c, struct sio_nsp *nsp) {
  c->nsp = nsp;
  sio_on(nsp, "ai-message", on_ai_message, c);
  sio_on(nsp, "ai-cancel", on_ai_cancel, c);
  sio_on_connection(nsp, on_connection, c);
  sio_on_disconnect(nsp, on_disconnect, c);
}

void chat_forget_chat(struct chat *c, const char *chat_id) {
  if (c->windows && chat_id != NULL)
    chat_windows_drop(c->windows, chat_id);
}

void chat_socket_user(struct chat *c, struct sio_socket *s, const char *user_id) {
  struct csock *cs = sio_socket_data(s);
  if (cs == NULL) {
    pending_sweep(c, 120000);
    cs = xcalloc(1, sizeof *cs);
    cs->c = c;
    cs->s = s;
    cs->created_ms = clock_mono_ms();
    cs->pnext = c->pending;
    cs->pprev = &c->pending;
    if (c->pending)
      c->pending->pprev = &cs->pnext;
    c->pending = cs;
    sio_socket_set_data(s, cs);
  }
  snprintf(cs->user, sizeof cs->user, "%s", user_id);
  snprintf(cs->room, sizeof cs->room, "user:%s", cs->user);
}

const char *chat_socket_user_id(const struct sio_socket *s) {
  const struct csock *cs = sio_socket_data(s);
  return cs ? cs->user : NULL;
}

static void on_deadline(uv_timer_t *t) {
  struct chat *c = t->data;
  c->deadline_on = false;
  size_t slot;
  for (struct hmap_entry *e = hmap_first(&c->queues, &slot); e;
       e = hmap_next(&c->queues, e, &slot)) {
    struct chatq *q = e->value;
    for (struct job *j = q->head; j; j = j->qnext) {
      j->cancel_requested = true;
      if (j->stream)
        llm_stream_cancel(j->stream);
    }
  }
}

void chat_shutdown(struct chat *c, uint32_t deadline_ms, void (*on_idle)(void *ud), void *ud) {
  c->closing = true;
  c->on_idle = on_idle;
  c->idle_ud = ud;
  if (c->st.running || c->queues.count) {
    uv_timer_start(&c->deadline, on_deadline, deadline_ms, 0);
    c->deadline_on = true;
  }
  maybe_idle(c);
}

static void on_timer_closed(uv_handle_t *h) {
  struct chat *c = h->data;
  pending_sweep(c, 0);
  size_t slot;
  for (struct hmap_entry *e = hmap_first(&c->rates, &slot); e;
       e = hmap_next(&c->rates, e, &slot))
    free(e->value);
  hmap_free(&c->rates);
  hmap_free(&c->queues);
  chat_windows_free(c->windows);
  free(c->system);
  free(c);
}

void chat_free(struct chat *c) {
  if (c == NULL)
    return;
  uv_close((uv_handle_t *)&c->deadline, on_timer_closed);
}

void chat_stats(const struct chat *c, struct chat_stats *st) {
  *st = c->st;
}
