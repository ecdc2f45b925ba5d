/*
 * pipeline_floor: the floor of the ai-message pipeline benchmark (bench/pipeline.sh
 * SERVER=floor). A server that speaks exactly what chatload speaks to engram, with engram's
 * own modules, and does for each `ai-message` only what the contract requires on the wire,
 * plus, by level, one more piece of engram's real work done with engram's own code:
 *
 *   --level wire   validate the payload; ack {ok:true, messageId}; chat-message to the
 *                  user's other sockets; the model request through src/llm's openai
 *                  provider (src/httpc, libcurl multi on the loop) to bench/fake_model;
 *                  each delta relayed as ai-response-chunk {chat, messageId, seq, delta};
 *                  the final ai-response {chat, content, messageId, memories: []};
 *                  chat-message of the answer to the user's other sockets.
 *   --level store  plus the durable store of the message and of the answer through
 *                  src/store (SQLite) and store_async (its group-commit writer thread and
 *                  syncer): the ack waits for the message to be durable (as engram's),
 *                  the next message of a chat waits for the answer to be stored.
 *   --level embed  plus the hash embedder (src/memory, mem_hash_embed) on both texts, on
 *                  the loop, its vector recorded with the message as engram records it
 *                  (vec_derived: the embedding model and dims are written, not the vector).
 *
 * What engram does that no level does: the user lookup of the handshake (once per
 * connection, not per message), recall (the per-user vector index and its scan), the
 * chat window (the last 20 messages), the prompt's memories and history (the prompt here
 * is the system instruction and the message), recall_remember, the /metrics histograms.
 * --no-fanout leaves out the chat-message fan-out (to see what it costs: with chatload's
 * 10 users x 10 connections each ai-message fans out to 9 sockets twice).
 *
 * Wire shapes and bytes are engram's (src/chat/chat.c): the raw Socket.IO fast path
 * (sio_on_raw / sio_emit_raw / sio_ack_raw / sio_broadcast_raw) with the same JSON text.
 * The payload is read from the raw arguments (sio's jscan validated them) by a small
 * scanner below rather than through a jansson tree (engram builds the tree: the floor
 * takes the cheaper way the transport offers). Errors are engram's: ack {ok:false, error,
 * code} and ai-response {chat, error, code} with bad_request, not_found, too_large,
 * internal, llm_unavailable. Messages of a chat are handled strictly in order (a queue per
 * chat); different chats run concurrently.
 *
 * Handshake: Engine.IO v4 / Socket.IO v5 on "/socket.io/", namespace "/", the JWT from the
 * `token` cookie, auth.token or Authorization: Bearer (auth_handshake, as engram) and the
 * Origin check (auth_origin_allowed with no allow-list: the server's own origin only).
 * Each socket joins "user:<id>".
 *
 * Configuration: engram's environment (PORT, JWT_SECRET, ENGRAM_DB, ENGRAM_DATA_DIR,
 * OPENAI_BASE_URL, ENGRAM_LLM_MODEL, ENGRAM_LOG_LEVEL), flags override:
 *
 *   pipeline_floor --level wire|store|embed [--port P] [--secret S] [--db PATH]
 *                  [--model-url URL] [--no-fanout]
 *
 * Serves GET /healthz and GET /metrics (engram_answers_total, engram_messages_total,
 * engram_errors_total: what pipeline.sh reads). SIGINT/SIGTERM: flush the store, exit 0.
 * Everything on the loop thread except the store writer/syncer threads and the libuv pool.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "api/api.h"
#include "auth/auth.h"
#include "base/base.h"
#include "http/http.h"
#include "httpc/httpc.h"
#include "llm/llm.h"
#include "memory/memory.h"
#include "net/net.h"
#include "proto/ws.h"
#include "sio/sio.h"
#include "store/store.h"
#include "store/store_async.h"

#define MAX_CONTENT (64 * 1024)  /* engram's default max_content */
#define MAX_ANSWER (1024 * 1024) /* bytes of one streamed answer kept (as engram) */
#define CLIENT_ID_MAX 128

enum level { LEVEL_WIRE, LEVEL_STORE, LEVEL_EMBED };

struct fsock;
struct chatq;

/* One ai-message, from receipt to its answer (stored, at the store levels). */
struct job {
  struct floor *f;
  struct chatq *q;
  struct job *qnext;          /* next in the chat's queue */
  struct fsock *sock;         /* NULL once the socket went away */
  struct job *snext, **sprev; /* in the socket's list of jobs */
  int64_t ack;                /* SIO_NO_ACK once answered */
  char user[ID_LEN + 1];
  char chat[ID_LEN + 1];
  char model_id[ID_LEN + 1];
  char *content;
  size_t content_len;
  char *client_id;
  struct store_message_new um, mm; /* the user message, the model message */
  float *uvec, *avec;              /* their hash vectors (level embed) */
  struct buf answer;
  uint32_t seq;
};

struct fsock {
  struct sio_socket *s;
  char user[ID_LEN + 1];
  char room[ID_LEN + 6];
  struct job *jobs;
  struct fsock *pnext, **pprev; /* in the pending list until on_connection */
};

struct chatq {
  char chat[ID_LEN + 1];
  struct job *head, *tail; /* head is the running job */
};

struct floor {
  enum level level;
  bool fanout;
  uv_loop_t *loop;
  struct auth_jwt jwt;
  struct store *store;
  struct store_async *async;
  struct httpc *httpc;
  struct llm_provider *llm;
  struct sio_server *io;
  struct sio_nsp *nsp;
  struct http_router *router;
  struct http_server *http;
  struct hmap queues;    /* chat id -> struct chatq */
  struct fsock *pending; /* accepted sockets before on_connection */
  uv_signal_t sigint, sigterm;
  uint64_t messages, answers, errors;
};

/* ---- the payload ------------------------------------------------------------------- */

/* A string member of the payload object: its raw text between the quotes. */
struct jstr {
  const char *p;
  size_t len;
  bool esc;     /* has backslash escapes */
  bool present; /* the member exists (any type) */
  bool is_str;
  bool is_null;
};

/* Skips one JSON value at p (text that sio's jscan validated or jansson encoded): returns
   the position just after it, or NULL when it runs past end. */
static const char *skip_string(const char *p, const char *end) {
  for (p++; p < end && *p != '"'; p++)
    if (*p == '\\')
      p++;
  return p < end ? p + 1 : NULL;
}

static const char *skip_value(const char *p, const char *end) {
  if (p >= end)
    return NULL;
  if (*p == '"')
    return skip_string(p, end);
  if (*p != '{' && *p != '[') { /* a number or a literal */
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
           *p != '\n' && *p != '\r')
      p++;
    return p;
  }
  int depth = 0;
  while (p < end) {
    if (*p == '"') {
      p = skip_string(p, end);
      if (p == NULL)
        return NULL;
      continue;
    }
    if (*p == '{' || *p == '[')
      depth++;
    else if ((*p == '}' || *p == ']') && --depth == 0)
      return p + 1;
    p++;
  }
  return NULL;
}

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

/* Reads the first argument when it is an object: chatId, content, clientId. Returns false
   when the first argument is not an object. */
static bool scan_payload(struct slice args, struct jstr *chat, struct jstr *content,
                         struct jstr *cid) {
  const char *p = args.p, *end = args.p + args.len;
  memset(chat, 0, sizeof *chat);
  memset(content, 0, sizeof *content);
  memset(cid, 0, sizeof *cid);
  p = skip_ws(p, end);
  if (p >= end || *p != '{')
    return false;
  p = skip_ws(p + 1, end);
  while (p < end && *p == '"') {
    const char *k = ++p;
    while (p < end && *p != '"')
      p += *p == '\\' ? 2 : 1;
    size_t klen = (size_t)(p - k);
    p = skip_ws(p + 1, end);
    if (p >= end || *p != ':')
      return false;
    p = skip_ws(p + 1, end);
    struct jstr *dst = NULL;
    if (klen == 6 && !memcmp(k, "chatId", 6))
      dst = chat;
    else if (klen == 7 && !memcmp(k, "content", 7))
      dst = content;
    else if (klen == 8 && !memcmp(k, "clientId", 8))
      dst = cid;
    const char *v = p;
    p = skip_value(p, end);
    if (p == NULL)
      return false;
    if (dst) { /* a repeated key: the last one wins, as in jansson */
      memset(dst, 0, sizeof *dst);
      dst->present = true;
      if (*v == '"') {
        dst->is_str = true;
        dst->p = v + 1;
        dst->len = (size_t)(p - v - 2);
        dst->esc = memchr(dst->p, '\\', dst->len) != NULL;
      } else {
        dst->is_null = p - v == 4 && !memcmp(v, "null", 4);
      }
    }
    p = skip_ws(p, end);
    if (p < end && *p == ',')
      p = skip_ws(p + 1, end);
  }
  return true;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static bool hex4(const char *p, const char *end, unsigned *out) {
  if (end - p < 4)
    return false;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(p[i]);
    if (h < 0)
      return false;
    v = v << 4 | (unsigned)h;
  }
  *out = v;
  return true;
}

/* The string's value (escapes decoded to UTF-8), NUL-terminated, malloc'ed; *len without
   the NUL (the value may hold a NUL from \u0000: the caller checks). NULL when malformed. */
static char *jstr_value(const struct jstr *s, size_t *len) {
  char *out = xmalloc(s->len + 1);
  if (!s->esc) {
    memcpy(out, s->p, s->len);
    out[s->len] = 0;
    *len = s->len;
    return out;
  }
  const char *p = s->p, *end = s->p + s->len;
  size_t n = 0;
  while (p < end) {
    if (*p != '\\') {
      out[n++] = *p++;
      continue;
    }
    if (++p >= end)
      goto bad;
    char c = *p++;
    switch (c) {
    case '"':
      out[n++] = '"';
      break;
    case '\\':
      out[n++] = '\\';
      break;
    case '/':
      out[n++] = '/';
      break;
    case 'b':
      out[n++] = '\b';
      break;
    case 'f':
      out[n++] = '\f';
      break;
    case 'n':
      out[n++] = '\n';
      break;
    case 'r':
      out[n++] = '\r';
      break;
    case 't':
      out[n++] = '\t';
      break;
    case 'u': {
      unsigned cp;
      if (!hex4(p, end, &cp))
        goto bad;
      p += 4;
      if (cp >= 0xD800 && cp < 0xDC00) {
        unsigned lo;
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, end, &lo) ||
            lo < 0xDC00 || lo >= 0xE000)
          goto bad;
        p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp < 0xE000) {
        goto bad;
      }
      /* Each escape is 6 or 12 input bytes and gives at most 4 output bytes. */
      if (cp < 0x80) {
        out[n++] = (char)cp;
      } else if (cp < 0x800) {
        out[n++] = (char)(0xC0 | cp >> 6);
        out[n++] = (char)(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        out[n++] = (char)(0xE0 | cp >> 12);
        out[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[n++] = (char)(0x80 | (cp & 0x3F));
      } else {
        out[n++] = (char)(0xF0 | cp >> 18);
        out[n++] = (char)(0x80 | (cp >> 12 & 0x3F));
        out[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[n++] = (char)(0x80 | (cp & 0x3F));
      }
      break;
    }
    default:
      goto bad;
    }
  }
  out[n] = 0;
  *len = n;
  return out;
bad:
  free(out);
  return NULL;
}

/* ---- output: engram's JSON text ------------------------------------------------------ */

static void check_rc(int rc, const char *what) {
  if (rc && rc != EG_ECLOSED)
    log_warn("floor: %s failed: %s", what, eg_strerror(rc));
}

static struct sio_socket *job_socket(const struct job *j) {
  return j->sock && sio_socket_connected(j->sock->s) ? j->sock->s : NULL;
}

/* Emits event with b's JSON text as its one argument, then empties b. */
static void emit_buf(struct sio_socket *s, const char *event, struct buf *b, int rc) {
  if (s != NULL)
    check_rc(rc ? rc : sio_emit_raw(s, event, (struct slice){(const char *)b->data, b->len}),
             event);
  buf_reset(b);
}

/* ack {ok:false, error, code} (when one is owed) and ai-response {chat, error, code}. */
static void send_error(struct floor *f, struct sio_socket *s, int64_t *ack, const char *chat,
                       const char *code, const char *msg) {
  f->errors++;
  if (s == NULL)
    return;
  struct buf b;
  buf_init(&b, 4096);
  int rc = 0;
  if (*ack != SIO_NO_ACK) {
    rc = buf_append_str(&b, "{\"ok\":false,\"error\":");
    rc = rc ? rc : buf_append_json_str(&b, msg, strlen(msg));
    rc = rc ? rc : buf_printf(&b, ",\"code\":\"%s\"}", code);
    check_rc(rc ? rc : sio_ack_raw(s, *ack, (struct slice){(const char *)b.data, b.len}),
             "ack");
    *ack = SIO_NO_ACK;
    buf_reset(&b);
  }
  rc = buf_append_str(&b, "{\"chat\":");
  rc = rc ? rc : buf_append_json_str(&b, chat, strlen(chat));
  rc = rc ? rc : buf_append_str(&b, ",\"error\":");
  rc = rc ? rc : buf_append_json_str(&b, msg, strlen(msg));
  rc = rc ? rc : buf_printf(&b, ",\"code\":\"%s\"}", code);
  emit_buf(s, "ai-response", &b, rc);
  buf_free(&b);
}

/* chat-message {chat, message:{id, role, content, createdAt, cancelled?}} to the user's
   other sockets (engram's fan_out). */
static void fan_out(struct job *j, const struct store_message_new *m) {
  if (!j->f->fanout)
    return;
  struct sio_socket *s = job_socket(j);
  char room[ID_LEN + 6];
  snprintf(room, sizeof room, "user:%s", j->user);
  struct sio_bcast to = {.room = room, .except = s};
  size_t clen = strlen(m->content);
  char iso[25];
  clock_iso8601(m->created_at ? m->created_at : clock_wall_ms(), iso);
  struct buf b;
  buf_init(&b, SIZE_MAX / 2);
  int rc = buf_reserve(&b, 160 + clen + clen / 8);
  rc = rc ? rc : buf_append_str(&b, "{\"chat\":");
  rc = rc ? rc : buf_append_json_str(&b, j->chat, strlen(j->chat));
  rc = rc ? rc : buf_append_str(&b, ",\"message\":{\"id\":");
  rc = rc ? rc : buf_append_json_str(&b, m->id, strlen(m->id));
  rc = rc ? rc : buf_append_str(&b, ",\"role\":");
  rc = rc ? rc : buf_append_json_str(&b, m->role, strlen(m->role));
  rc = rc ? rc : buf_append_str(&b, ",\"content\":");
  rc = rc ? rc : buf_append_json_str(&b, m->content, clen);
  rc = rc ? rc : buf_append_str(&b, ",\"createdAt\":");
  rc = rc ? rc : buf_append_json_str(&b, iso, strlen(iso));
  rc = rc ? rc : buf_append_str(&b, m->cancelled ? ",\"cancelled\":true}}" : "}}");
  if (rc == 0) {
    int n = sio_broadcast_raw(j->f->nsp, &to, "chat-message",
                              (struct slice){(const char *)b.data, b.len});
    if (n < 0)
      log_warn("floor: chat-message fan-out failed: %s", eg_strerror(n));
  }
  buf_free(&b);
}

/* ---- jobs and queues ----------------------------------------------------------------- */

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
  free(j->uvec);
  free(j->avec);
  buf_free(&j->answer);
  free(j);
}

static void job_start(struct job *j);

/* The job is done: drop it and start the next of its chat. */
static void job_finish(struct job *j) {
  struct floor *f = j->f;
  struct chatq *q = j->q;
  struct job *next = j->qnext;
  q->head = next;
  if (next == NULL) {
    q->tail = NULL;
    hmap_del(&f->queues, q->chat);
    free(q);
  }
  job_free(j);
  if (next)
    job_start(next);
}

/* Level embed: the text's hash vector on m, as engram's local_embed records it. */
static float *embed(struct job *j, struct store_message_new *m, const char *text, size_t len) {
  if (j->f->level != LEVEL_EMBED)
    return NULL;
  float *v = xmalloc(MEM_DIM * sizeof *v);
  mem_hash_embed(text, len, v);
  m->vec = v;
  m->dims = MEM_DIM;
  m->embed_model = MEM_HASH_MODEL;
  m->vec_derived = true;
  return v;
}

/* ---- the model ----------------------------------------------------------------------- */

static void on_model_stored(void *arg, int status, struct store_message_new *m) {
  struct job *j = arg;
  if (status)
    log_error("floor: storing the answer failed: %s", eg_strerror(status));
  else
    fan_out(j, m);
  job_finish(j);
}

static void on_delta(void *ud, const char *text, size_t len) {
  struct job *j = ud;
  if (buf_append(&j->answer, text, len) != 0)
    return; /* over MAX_ANSWER: the rest is not kept (a benchmark answer never is) */
  struct sio_socket *s = job_socket(j);
  uint32_t seq = j->seq++;
  if (s == NULL)
    return;
  struct buf b;
  buf_init(&b, SIZE_MAX / 2);
  int rc = buf_reserve(&b, 120 + len + len / 8);
  rc = rc ? rc : buf_append_str(&b, "{\"chat\":");
  rc = rc ? rc : buf_append_json_str(&b, j->chat, strlen(j->chat));
  rc = rc ? rc : buf_append_str(&b, ",\"messageId\":");
  rc = rc ? rc : buf_append_json_str(&b, j->model_id, strlen(j->model_id));
  rc = rc ? rc : buf_printf(&b, ",\"seq\":%u,\"delta\":", seq);
  rc = rc ? rc : buf_append_json_str(&b, text, len); /* llm: valid UTF-8 */
  rc = rc ? rc : buf_append_str(&b, "}");
  emit_buf(s, "ai-response-chunk", &b, rc);
  buf_free(&b);
}

/* ai-response {chat, content, messageId, memories: []}. */
static void emit_response(struct job *j) {
  struct sio_socket *s = job_socket(j);
  if (s == NULL)
    return;
  const char *content = j->answer.len ? (const char *)j->answer.data : "";
  struct buf b;
  buf_init(&b, SIZE_MAX / 2);
  int rc = buf_reserve(&b, 160 + j->answer.len * 9 / 8);
  rc = rc ? rc : buf_append_str(&b, "{\"chat\":");
  rc = rc ? rc : buf_append_json_str(&b, j->chat, strlen(j->chat));
  rc = rc ? rc : buf_append_str(&b, ",\"content\":");
  rc = rc ? rc : buf_append_json_str(&b, content, j->answer.len);
  rc = rc ? rc : buf_append_str(&b, ",\"messageId\":");
  rc = rc ? rc : buf_append_json_str(&b, j->model_id, strlen(j->model_id));
  rc = rc ? rc : buf_append_str(&b, ",\"memories\":[]}");
  emit_buf(s, "ai-response", &b, rc);
  buf_free(&b);
}

static void on_llm_done(void *ud, const struct llm_result *res) {
  struct job *j = ud;
  struct floor *f = j->f;
  if (res->status != 0) {
    log_warn("floor: model failed: %s", res->message ? res->message : eg_strerror(res->status));
    send_error(f, job_socket(j), &j->ack, j->chat, res->code ? res->code : "internal",
               res->message ? res->message : "The language model failed");
    job_finish(j);
    return;
  }
  f->answers++;
  emit_response(j);
  struct store_message_new *m = &j->mm;
  memcpy(m->id, j->model_id, sizeof m->id);
  m->chat_id = j->chat;
  m->user_id = j->user;
  m->role = "model";
  m->content = j->answer.len ? (const char *)j->answer.data : "";
  if (m->content[0])
    j->avec = embed(j, m, m->content, j->answer.len);
  if (f->level == LEVEL_WIRE) {
    m->created_at = clock_wall_ms();
    on_model_stored(j, 0, m);
    return;
  }
  int rc = store_async_insert(f->async, m, on_model_stored, j);
  if (rc) {
    log_error("floor: cannot queue the answer: %s", eg_strerror(rc));
    job_finish(j);
  }
}

static void start_model(struct job *j) {
  struct llm_prompt p = {
      .system = LLM_DEFAULT_SYSTEM, .message = j->content, .message_len = j->content_len};
  struct llm_callbacks cb = {.on_delta = on_delta, .on_done = on_llm_done, .ud = j};
  if (llm_stream_start(j->f->llm, &p, &cb, NULL) != 0) {
    send_error(j->f, job_socket(j), &j->ack, j->chat, "internal",
               "The language model could not be started");
    job_finish(j);
  }
}

/* ---- the user message ---------------------------------------------------------------- */

static void ack_ok(struct job *j, const char *id, bool duplicate) {
  struct sio_socket *s = job_socket(j);
  if (s == NULL || j->ack == SIO_NO_ACK)
    return;
  char t[ID_LEN + 64];
  int n = snprintf(t, sizeof t, "{\"ok\":true,\"messageId\":\"%s\"%s}", id,
                   duplicate ? ",\"duplicate\":true" : "");
  check_rc(sio_ack_raw(s, j->ack, (struct slice){t, (size_t)n}), "ack");
  j->ack = SIO_NO_ACK;
}

static void on_user_stored(void *arg, int status, struct store_message_new *m) {
  struct job *j = arg;
  if (status == EG_ENOTFOUND) {
    send_error(j->f, job_socket(j), &j->ack, j->chat, "not_found", "Chat not found");
  } else if (status) {
    log_error("floor: storing a message failed: %s", eg_strerror(status));
    send_error(j->f, job_socket(j), &j->ack, j->chat, "internal",
               "The message could not be stored");
  } else if (m->existed) {
    ack_ok(j, m->id, true); /* an idempotent repeat: not answered again */
  } else {
    ack_ok(j, m->id, false);
    fan_out(j, m);
    start_model(j);
    return;
  }
  job_finish(j);
}

static void job_start(struct job *j) {
  struct store_message_new *m = &j->um;
  m->chat_id = j->chat;
  m->user_id = j->user;
  m->role = "user";
  m->content = j->content;
  m->client_id = j->client_id;
  j->uvec = embed(j, m, j->content, j->content_len);
  if (j->f->level == LEVEL_WIRE) { /* nothing stored: a new id, at once */
    id_new(m->id);
    m->created_at = clock_wall_ms();
    on_user_stored(j, 0, m);
    return;
  }
  int rc = store_async_insert(j->f->async, m, on_user_stored, j);
  if (rc) {
    send_error(j->f, job_socket(j), &j->ack, j->chat, "internal",
               "The server is shutting down");
    job_finish(j);
  }
}

static void on_ai_message(struct sio_socket *s, const char *event, struct slice args,
                          int64_t ack, void *ud) {
  (void)event;
  struct floor *f = ud;
  struct fsock *fs = sio_socket_data(s);
  f->messages++;
  struct jstr chat, content, cid;
  bool obj = scan_payload(args, &chat, &content, &cid);
  char chat_field[ID_LEN + 1] = "";
  if (obj && chat.is_str && !chat.esc && chat.len <= ID_LEN)
    memcpy(chat_field, chat.p, chat.len);
  if (fs == NULL) {
    send_error(f, s, &ack, chat_field, "internal", "Not authenticated");
    return;
  }
  if (!obj || !chat.is_str || !content.is_str || chat.len == 0 || content.len == 0) {
    send_error(f, s, &ack, chat_field, "bad_request", "chatId and content are required");
    return;
  }
  if ((cid.present && !cid.is_str && !cid.is_null) ||
      (cid.is_str && cid.len > CLIENT_ID_MAX * 6)) {
    send_error(f, s, &ack, chat_field, "bad_request",
               "clientId must be a string of at most 128 bytes");
    return;
  }
  if (chat.esc || !id_valid(chat.p, chat.len)) {
    send_error(f, s, &ack, chat_field, "not_found", "Chat not found");
    return;
  }
  if (content.len > MAX_CONTENT * 6) { /* escapes: at most 6 bytes of text per byte */
    send_error(f, s, &ack, chat_field, "too_large", "Message too large (at most 65536 bytes)");
    return;
  }
  size_t clen, cidlen = 0;
  char *text = jstr_value(&content, &clen);
  char *client_id = cid.is_str ? jstr_value(&cid, &cidlen) : NULL;
  const char *why = NULL, *code = "bad_request";
  if (text == NULL || clen == 0 || strlen(text) != clen)
    why = "chatId and content are required";
  else if (cid.is_str &&
           (client_id == NULL || cidlen > CLIENT_ID_MAX || strlen(client_id) != cidlen))
    why = "clientId must be a string of at most 128 bytes";
  else if (clen > MAX_CONTENT)
    why = "Message too large (at most 65536 bytes)", code = "too_large";
  else if (!ws_utf8_validate((const uint8_t *)text, clen))
    why = "chatId and content are required"; /* jansson refuses such text too */
  if (why) {
    free(text);
    free(client_id);
    send_error(f, s, &ack, chat_field, code, why);
    return;
  }
  struct job *j = xcalloc(1, sizeof *j);
  j->f = f;
  j->ack = ack;
  memcpy(j->user, fs->user, sizeof j->user);
  memcpy(j->chat, chat.p, ID_LEN);
  j->content = text;
  j->content_len = clen;
  if (client_id && cidlen == 0) {
    free(client_id);
    client_id = NULL;
  }
  j->client_id = client_id;
  id_new(j->model_id);
  buf_init(&j->answer, MAX_ANSWER);
  j->sock = fs;
  j->snext = fs->jobs;
  j->sprev = &fs->jobs;
  if (fs->jobs)
    fs->jobs->sprev = &j->snext;
  fs->jobs = j;
  struct chatq *q = hmap_get(&f->queues, j->chat);
  if (q == NULL) {
    q = xcalloc(1, sizeof *q);
    memcpy(q->chat, j->chat, sizeof q->chat);
    hmap_put(&f->queues, q->chat, q);
  }
  j->q = q;
  if (q->tail) {
    q->tail->qnext = j;
    q->tail = j;
    return;
  }
  q->head = q->tail = j;
  job_start(j);
}

/* ---- sockets --------------------------------------------------------------------------- */

static void pending_unlink(struct fsock *fs) {
  if (fs->pprev == NULL)
    return;
  *fs->pprev = fs->pnext;
  if (fs->pnext)
    fs->pnext->pprev = fs->pprev;
  fs->pprev = NULL;
  fs->pnext = NULL;
}

/* The JWT check of engram's handshake (cookie `token`, auth.token, Bearer). The user
   lookup engram then makes (once per connection) is left out. */
static void on_handshake(struct sio_socket *s, const json_t *auth, void *ud) {
  struct floor *f = ud;
  struct slice cookie, tok, authz;
  api_sio_credentials(s, auth, &cookie, &tok, &authz);
  char uid[ID_LEN + 1];
  const char *msg;
  if (auth_handshake(&f->jwt, cookie, tok, authz, clock_wall_ms() / 1000, uid, &msg) != 0) {
    sio_refuse(s, msg, NULL);
    return;
  }
  struct fsock *fs = xcalloc(1, sizeof *fs);
  fs->s = s;
  memcpy(fs->user, uid, sizeof fs->user);
  snprintf(fs->room, sizeof fs->room, "user:%s", uid);
  fs->pnext = f->pending;
  fs->pprev = &f->pending;
  if (f->pending)
    f->pending->pprev = &fs->pnext;
  f->pending = fs;
  sio_socket_set_data(s, fs);
  sio_accept(s);
}

static void on_connection(struct sio_socket *s, void *ud) {
  (void)ud;
  struct fsock *fs = sio_socket_data(s);
  if (fs == NULL)
    return;
  pending_unlink(fs);
  check_rc(sio_join(s, fs->room), "join");
}

static void on_disconnect(struct sio_socket *s, const char *reason, void *ud) {
  (void)reason, (void)ud;
  struct fsock *fs = sio_socket_data(s);
  if (fs == NULL)
    return;
  while (fs->jobs)
    job_unlink_socket(fs->jobs);
  pending_unlink(fs);
  sio_socket_set_data(s, NULL);
  free(fs);
}

/* ---- HTTP ------------------------------------------------------------------------------ */

static void on_socketio(struct http_req *req, void *ud) {
  struct floor *f = ud;
  struct slice origin = {"", 0}, host = {"", 0};
  if (http_req_header(req, "Origin", &origin)) {
    (void)http_req_header(req, "Host", &host);
    if (!auth_origin_allowed(origin, host, "http", "", "")) {
      check_rc(http_respond_json(req, 403, "{\"code\":4,\"message\":\"Origin not allowed\"}"),
               "403");
      return;
    }
  }
  sio_http_handler(req, f->io);
}

static void on_healthz(struct http_req *req, void *ud) {
  (void)ud;
  check_rc(http_respond_json(req, 200, "{\"status\":\"ok\"}"), "healthz");
}

static void on_metrics(struct http_req *req, void *ud) {
  struct floor *f = ud;
  char t[512];
  int n = snprintf(t, sizeof t,
                   "# TYPE engram_answers_total counter\nengram_answers_total %llu\n"
                   "# TYPE engram_messages_total counter\nengram_messages_total %llu\n"
                   "# TYPE engram_errors_total counter\nengram_errors_total %llu\n",
                   (unsigned long long)f->answers, (unsigned long long)f->messages,
                   (unsigned long long)f->errors);
  check_rc(http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", t, (size_t)n),
           "metrics");
}

/* ---- start and stop ------------------------------------------------------------------- */

static void on_async_closed(void *arg) {
  (void)arg;
  exit(0);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  struct floor *f = h->data;
  uv_signal_stop(&f->sigint);
  uv_signal_stop(&f->sigterm);
  if (f->async) /* let queued inserts commit */
    store_async_close(f->async, on_async_closed, f);
  else
    exit(0);
}

static const char *env_or(const char *name, const char *dflt) {
  const char *v = getenv(name);
  return v && *v ? v : dflt;
}

static int usage(void) {
  fprintf(stderr, "usage: pipeline_floor --level wire|store|embed [--port P] [--secret S] "
                  "[--db PATH] [--model-url URL] [--no-fanout]\n");
  return 2;
}

int main(int argc, char **argv) {
  log_init_from_env();
  signal(SIGPIPE, SIG_IGN);
  static struct floor f = {.fanout = true};
  const char *level = NULL, *port = env_or("PORT", "3000"), *secret = getenv("JWT_SECRET");
  const char *db = env_or("ENGRAM_DB", NULL), *data_dir = env_or("ENGRAM_DATA_DIR", ".");
  const char *model_url = env_or("OPENAI_BASE_URL", NULL);
  static const struct option lo[] = {
      {"level", 1, 0, 'l'}, {"port", 1, 0, 'p'},      {"secret", 1, 0, 's'},
      {"db", 1, 0, 'd'},    {"model-url", 1, 0, 'm'}, {"no-fanout", 0, 0, 'F'},
      {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (o) {
    case 'l':
      level = optarg;
      break;
    case 'p':
      port = optarg;
      break;
    case 's':
      secret = optarg;
      break;
    case 'd':
      db = optarg;
      break;
    case 'm':
      model_url = optarg;
      break;
    case 'F':
      f.fanout = false;
      break;
    default:
      return usage();
    }
  }
  if (level == NULL || !strcmp(level, "wire"))
    f.level = LEVEL_WIRE;
  else if (!strcmp(level, "store"))
    f.level = LEVEL_STORE;
  else if (!strcmp(level, "embed"))
    f.level = LEVEL_EMBED;
  else
    return usage();
  if (secret == NULL || !*secret || model_url == NULL ||
      (f.level != LEVEL_WIRE && db == NULL)) {
    fprintf(stderr, "pipeline_floor: needs JWT_SECRET (--secret), OPENAI_BASE_URL "
                    "(--model-url) and, above level wire, ENGRAM_DB (--db)\n");
    return 2;
  }
  f.loop = uv_default_loop();
  net_raise_nofile();
  auth_jwt_init_key(&f.jwt, secret, strlen(secret), 0);
  int rc;
  if (f.level != LEVEL_WIRE) {
    if ((rc = store_open(db, data_dir, &f.store)) != 0 ||
        (rc = store_keyword_index(f.store, false)) != 0 || /* as engram: builtin vectors */
        (rc = store_async_new(f.loop, f.store, &f.async)) != 0) {
      log_error("pipeline_floor: the store %s: %s", db, eg_strerror(rc));
      return 1;
    }
  }
  if ((rc = httpc_new(f.loop, &f.httpc)) != 0)
    return 1;
  struct llm_config lc;
  llm_config_defaults(&lc);
  llm_config_from_env(&lc);
  lc.provider = "openai";
  lc.model = env_or("ENGRAM_LLM_MODEL", "fake");
  lc.openai_base_url = model_url;
  lc.openai_api_key = env_or("OPENAI_API_KEY", NULL);
  if ((rc = llm_provider_new(f.loop, f.httpc, &lc, &f.llm)) != 0) {
    log_error("pipeline_floor: the openai provider: %s", eg_strerror(rc));
    return 1;
  }
  struct sio_opts so;
  sio_opts_default(&so);
  if ((rc = sio_server_new(f.loop, &so, &f.io)) != 0)
    return 1;
  f.nsp = sio_of(f.io, "/");
  sio_use(f.nsp, on_handshake, &f);
  sio_on_connection(f.nsp, on_connection, &f);
  sio_on_disconnect(f.nsp, on_disconnect, &f);
  sio_on_raw(f.nsp, "ai-message", on_ai_message, &f);
  f.router = http_router_new();
  if (http_router_add(f.router, HTTP_GET, "/healthz", on_healthz, &f) != 0 ||
      http_router_add(f.router, HTTP_GET, "/metrics", on_metrics, &f) != 0 ||
      http_router_add(f.router, HTTP_METHOD_UNKNOWN, "/socket.io/*", on_socketio, &f) != 0)
    return 1;
  struct http_server_opts ho = {.host = "127.0.0.1", .port = atoi(port)};
  if ((rc = http_server_start(f.loop, &ho, http_router_dispatch, f.router, &f.http)) != 0) {
    log_error("pipeline_floor: cannot listen on 127.0.0.1:%s", port);
    return 1;
  }
  uv_signal_init(f.loop, &f.sigint);
  uv_signal_init(f.loop, &f.sigterm);
  f.sigint.data = f.sigterm.data = &f;
  uv_signal_start(&f.sigint, on_signal, SIGINT);
  uv_signal_start(&f.sigterm, on_signal, SIGTERM);
  printf("port %d\n", http_server_port(f.http));
  fflush(stdout);
  log_info("pipeline_floor: level %s%s, model %s, store %s", level ? level : "wire",
           f.fanout ? "" : " (no fan-out)", model_url, f.store ? store_describe(f.store) : "-");
  uv_run(f.loop, UV_RUN_DEFAULT);
  return 0;
}
