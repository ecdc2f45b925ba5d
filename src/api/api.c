/*
 * REST handlers for accounts and chats, and the handshake user check.
 *
 * Every route follows the same path: the handler (loop thread) does the cheap checks that
 * need no I/O (method, Origin, Content-Type, body validation, token signature), fills a
 * struct job and submits it with store_async_run(). job_work() runs on a pool thread:
 * it does the store calls and the password hashing, and builds the whole response (status,
 * JSON body, Set-Cookie) so the loop only writes it out. job_done() (loop thread) updates
 * the login throttle, sends the response and frees the job.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_int.h"
#include "http/http.h"
#include "recall/recall.h"
#include "store/store.h"
#include "store/store_async.h"

#define JSON_TYPE "application/json; charset=utf-8"
/* Password hashing runs on the libuv pool that the store shares (4 threads by default).
   At most HASH_SLOTS hashing jobs (register, login) run at once so that a burst of logins
   leaves threads for the store; the next HASH_QUEUE_MAX wait in FIFO order on the loop,
   and any beyond get 503. */
#define HASH_SLOTS 2
#define HASH_QUEUE_MAX 512

struct api {
  struct api_deps d;
  struct auth_throttle *by_account;
  struct auth_throttle *by_addr;
  unsigned hashing; /* hashing jobs submitted to the pool */
  size_t queued;    /* hashing jobs waiting for a slot */
  struct job *qhead, *qtail;
  struct api_stats st;
};

enum job_kind {
  JOB_REGISTER,
  JOB_LOGIN,
  JOB_ME,
  JOB_CHAT_CREATE,
  JOB_CHAT_LIST,
  JOB_MSG_LIST,
  JOB_CHAT_RENAME,
  JOB_CHAT_DELETE,
  JOB_HANDSHAKE,
  JOB_WARM, /* builds the dummy hash before the first unknown-email login */
  JOB_MEM_LIST,
  /* These check the user on the pool, then continue on the loop with recall. */
  JOB_MEM_SEARCH,
  JOB_MEM_NOTE,
  JOB_MEM_DELETE,
  JOB_MEM_DELETE_ALL,
};

struct job {
  struct api *api;
  struct http_req *req;
  enum job_kind kind;
  char user_id[ID_LEN + 1];
  char chat_id[ID_LEN + 1];
  char before[ID_LEN + 1];
  size_t limit;
  struct api_register_body reg;
  struct api_login_body login;
  char *title;
  char *text; /* memory query or note */
  int64_t created_at;
  char addr_key[80];
  /* Results, built by job_work. */
  int status;
  char *body;   /* JSON text */
  char *cookie; /* Set-Cookie value or NULL */
  bool login_failed, login_ok;
  struct job *next; /* in the hashing queue */
  bool hashing;     /* holds a hashing slot */
  /* Handshake. */
  api_handshake_cb hs_done;
  void *hs_arg;
};

static void submit(struct job *j);
static struct job *job_new(struct api *a, struct http_req *r, enum job_kind kind);

int api_new(const struct api_deps *d, struct api **out) {
  if (d == NULL || d->store == NULL || d->async == NULL || d->jwt == NULL)
    return EG_EINVAL;
  struct api *a = xcalloc(1, sizeof *a);
  a->d = *d;
  unsigned max = d->login_max_failures ? d->login_max_failures : 10;
  int64_t win = d->login_window_ms > 0 ? d->login_window_ms : 15 * 60 * 1000;
  a->by_account = auth_throttle_new(8192, max, win);
  a->by_addr = auth_throttle_new(8192, max * 3, win);
  submit(job_new(a, NULL, JOB_WARM));
  *out = a;
  return 0;
}

void api_free(struct api *a) {
  if (a == NULL)
    return;
  auth_throttle_free(a->by_account);
  auth_throttle_free(a->by_addr);
  free(a);
}

static void job_free(struct job *j) {
  api_register_body_clear(&j->reg);
  api_login_body_clear(&j->login);
  free(j->title);
  free(j->text);
  free(j->body);
  free(j->cookie);
  free(j);
}

/* ---- responses ------------------------------------------------------------------- */

static void check_sent(int rc) {
  if (rc != 0 && rc != EG_ECLOSED)
    log_warn("api: response failed: %s", eg_strerror(rc));
}

static void send_error(struct http_req *r, int status, const char *msg) {
  check_sent(http_respond_error(r, status, msg));
}

/* Encodes and releases j. NULL when j is NULL (json_pack refused a value, e.g. text that
   is not UTF-8 in a row written by another tool): the caller answers 500 then. */
static char *dump(json_t *j) {
  if (j == NULL) {
    log_error("api: a response could not be encoded as JSON");
    return NULL;
  }
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

static void set_error(struct job *j, int status, const char *msg) {
  j->status = status;
  free(j->body);
  j->body = dump(json_pack("{s:s}", "message", msg));
  if (j->body == NULL)
    j->body = xstrdup("{\"message\":\"Internal server error\"}");
}

static json_t *iso(int64_t ms) {
  char t[25];
  clock_iso8601(ms, t);
  return json_string(t);
}

static json_t *user_json(const struct store_user *u) {
  return json_pack("{s:s,s:s,s:{s:s,s:s},s:o}", "_id", u->id, "email", u->email, "fullName",
                   "firstName", u->first_name ? u->first_name : "", "lastName",
                   u->last_name ? u->last_name : "", "createdAt", iso(u->created_at));
}

static json_t *chat_json(const struct store_chat *c) {
  return json_pack("{s:s,s:s,s:o,s:s,s:o}", "_id", c->id, "title", c->title ? c->title : "",
                   "lastActivity", iso(c->last_activity), "user", c->user_id, "createdAt",
                   iso(c->created_at));
}

static json_t *message_json(const struct store_message *m) {
  json_t *o =
      json_pack("{s:s,s:s,s:s,s:s,s:o}", "_id", m->id, "chat", m->chat_id, "role", m->role,
                "content", m->content ? m->content : "", "createdAt", iso(m->created_at));
  if (m->cancelled)
    json_object_set_new(o, "cancelled", json_true());
  return o;
}

/* {id, chatId, role, text, score, createdAt}: chatId is null for notes, score null in
   listings. */
static json_t *memory_json(const char *id, const char *chat_id, const char *role,
                           const char *text, int64_t created_at, json_t *score) {
  return json_pack("{s:s,s:o,s:s,s:s,s:o,s:o}", "id", id, "chatId",
                   chat_id[0] ? json_string(chat_id) : json_null(), "role", role, "text",
                   text ? text : "", "score", score, "createdAt", iso(created_at));
}

/* Builds the session cookie value for token (max_age 0 with an empty token: the logout
   cookie, which the browser drops at once). */
static char *session_cookie(const struct api *a, const char *token, int64_t max_age) {
  struct buf b;
  buf_init(&b, 8192);
  struct http_set_cookie c = {
      .name = "token",
      .value = token,
      .path = "/",
      .max_age = max_age,
      .http_only = true,
      .secure = a->d.cookie_secure,
      .same_site = HTTP_SAMESITE_LAX,
  };
  if (http_set_cookie_build(&c, &b) != 0 || buf_append_byte(&b, 0) != 0) {
    buf_free(&b);
    return NULL;
  }
  size_t n;
  return buf_steal(&b, &n);
}

static void user_with_cookie(struct job *j, const struct store_user *u, int status) {
  char *tok = NULL;
  if (auth_jwt_sign(j->api->d.jwt, u->id, clock_wall_ms() / 1000, &tok) != 0) {
    set_error(j, 500, "Internal server error");
    return;
  }
  j->cookie = session_cookie(j->api, tok, j->api->d.jwt->ttl_s);
  free(tok);
  if (j->cookie == NULL) {
    set_error(j, 500, "Internal server error");
    return;
  }
  j->status = status;
  j->body = dump(json_pack("{s:o}", "user", user_json(u)));
}

/* ---- work (pool thread) ---------------------------------------------------------- */

static int db_error(struct job *j, int rc) {
  log_error("api: store: %s", eg_strerror(rc));
  set_error(j, 500, "Internal server error");
  return 0;
}

static void work_register(struct store *s, struct job *j) {
  struct store_user u;
  int rc = store_user_get_by_email(s, j->reg.email, &u);
  if (rc == 0) {
    store_user_clear(&u);
    set_error(j, 409, "User already exists");
    return;
  }
  if (rc != EG_ENOTFOUND) {
    db_error(j, rc);
    return;
  }
  char hash[AUTH_HASH_MAX];
  rc = auth_password_hash(j->reg.password, j->reg.password_len, j->api->d.pw_ops,
                          j->api->d.pw_mem, hash);
  if (rc != 0) {
    db_error(j, rc);
    return;
  }
  struct store_user_new nu = {.email = j->reg.email,
                              .password_hash = hash,
                              .first_name = j->reg.first_name,
                              .last_name = j->reg.last_name};
  rc = store_user_create(s, &nu);
  if (rc == EG_EEXISTS) {
    set_error(j, 409, "User already exists");
    return;
  }
  if (rc != 0) {
    db_error(j, rc);
    return;
  }
  struct store_user made = {.email = (char *)j->reg.email,
                            .first_name = j->reg.first_name,
                            .last_name = j->reg.last_name,
                            .created_at = nu.created_at};
  memcpy(made.id, nu.id, sizeof made.id);
  user_with_cookie(j, &made, 201);
}

static void work_login(struct store *s, struct job *j) {
  struct store_user u = {0};
  int rc = j->login.email[0] ? store_user_get_by_email(s, j->login.email, &u) : EG_ENOTFOUND;
  if (rc != 0 && rc != EG_ENOTFOUND) {
    db_error(j, rc);
    return;
  }
  if (rc == EG_ENOTFOUND) {
    /* Same work as a wrong password, so the time does not tell whether the email exists. */
    auth_password_dummy_verify(j->login.password, j->login.password_len);
    j->login_failed = true;
    set_error(j, 401, "Invalid email or password");
    return;
  }
  if (auth_password_verify(u.password_hash, j->login.password, j->login.password_len) != 0) {
    j->login_failed = true;
    set_error(j, 401, "Invalid email or password");
  } else {
    j->login_ok = true;
    user_with_cookie(j, &u, 200);
  }
  store_user_clear(&u);
}

static void work_chat(struct store *s, struct job *j) {
  struct store_chat c;
  int rc;
  switch (j->kind) {
  case JOB_CHAT_CREATE:
    memset(&c, 0, sizeof c);
    memcpy(c.user_id, j->user_id, sizeof c.user_id);
    c.title = j->title;
    rc = store_chat_create(s, &c);
    if (rc != 0) {
      db_error(j, rc);
      return;
    }
    j->status = 201;
    j->body = dump(json_pack("{s:o}", "chat", chat_json(&c)));
    return;
  case JOB_CHAT_LIST: {
    struct store_chats l;
    rc = store_chat_list(s, j->user_id, j->before, j->limit, &l);
    if (rc == EG_ENOTFOUND) {
      set_error(j, 400, "before must be a chat of yours");
      return;
    }
    if (rc != 0) {
      db_error(j, rc);
      return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < l.n; i++)
      json_array_append_new(arr, chat_json(&l.v[i]));
    store_chats_free(&l);
    j->status = 200;
    j->body = dump(json_pack("{s:o}", "chats", arr));
    return;
  }
  case JOB_MSG_LIST: {
    rc = store_chat_get(s, j->user_id, j->chat_id, &c);
    if (rc == EG_ENOTFOUND) {
      set_error(j, 404, "Chat not found");
      return;
    }
    if (rc != 0) {
      db_error(j, rc);
      return;
    }
    store_chat_clear(&c);
    struct store_messages l;
    struct store_page pg = {.before_id = j->before, .limit = j->limit};
    rc = store_message_list(s, j->user_id, j->chat_id, &pg, &l);
    if (rc == EG_ENOTFOUND) {
      set_error(j, 400, "before must be a message of this chat");
      return;
    }
    if (rc != 0) {
      db_error(j, rc);
      return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < l.n; i++)
      json_array_append_new(arr, message_json(&l.v[i]));
    store_messages_free(&l);
    j->status = 200;
    j->body = dump(json_pack("{s:o}", "messages", arr));
    return;
  }
  case JOB_CHAT_RENAME:
    rc = store_chat_rename(s, j->user_id, j->chat_id, j->title);
    if (rc == 0)
      rc = store_chat_get(s, j->user_id, j->chat_id, &c);
    if (rc == EG_ENOTFOUND) {
      set_error(j, 404, "Chat not found");
      return;
    }
    if (rc != 0) {
      db_error(j, rc);
      return;
    }
    j->status = 200;
    j->body = dump(json_pack("{s:o}", "chat", chat_json(&c)));
    store_chat_clear(&c);
    return;
  case JOB_CHAT_DELETE:
    rc = store_chat_delete(s, j->user_id, j->chat_id);
    if (rc == EG_ENOTFOUND) {
      set_error(j, 404, "Chat not found");
      return;
    }
    if (rc != 0) {
      db_error(j, rc);
      return;
    }
    j->status = 200;
    j->body = dump(json_pack("{s:s,s:s}", "message", "Chat deleted", "_id", j->chat_id));
    return;
  default:
    set_error(j, 500, "Internal server error");
  }
}

static void work_memory_list(struct store *s, struct job *j) {
  struct store_memories l;
  int rc = store_memory_list(s, j->user_id, j->before, j->limit, &l);
  if (rc == EG_ENOTFOUND) {
    set_error(j, 400, "before must be a memory of yours");
    return;
  }
  if (rc != 0) {
    db_error(j, rc);
    return;
  }
  json_t *arr = json_array();
  for (size_t i = 0; i < l.n; i++) {
    const struct store_memory *m = &l.v[i];
    json_array_append_new(
        arr, memory_json(m->id, m->chat_id, m->role, m->text, m->created_at, json_null()));
  }
  store_memories_free(&l);
  j->status = 200;
  j->body = dump(json_pack("{s:o}", "memories", arr));
}

static int job_work(struct store *s, void *arg) {
  struct job *j = arg;
  switch (j->kind) {
  case JOB_WARM:
    auth_password_dummy_verify("warm-up password", 16);
    return 0;
  case JOB_REGISTER:
    work_register(s, j);
    return 0;
  case JOB_LOGIN:
    work_login(s, j);
    return 0;
  default:
    break;
  }
  /* Every other job acts for a signed-in user who must still exist. */
  struct store_user u;
  int rc = store_user_get(s, j->user_id, &u);
  if (rc == EG_ENOTFOUND) {
    set_error(j, 401, j->kind == JOB_HANDSHAKE ? AUTH_MSG_USER_NOT_FOUND : "Unauthorized");
    return EG_EAUTH;
  }
  if (rc != 0)
    return db_error(j, rc), rc;
  if (j->kind == JOB_ME) {
    j->status = 200;
    j->body = dump(json_pack("{s:o}", "user", user_json(&u)));
  } else if (j->kind == JOB_HANDSHAKE) {
    j->status = 200;
  } else if (j->kind == JOB_MEM_LIST) {
    work_memory_list(s, j);
  } else if (j->kind >= JOB_MEM_SEARCH && j->kind <= JOB_MEM_DELETE_ALL) {
    j->status = 0; /* continue on the loop */
  } else {
    work_chat(s, j);
  }
  store_user_clear(&u);
  return 0;
}

/* ---- done (loop thread) ---------------------------------------------------------- */

static void pump(struct api *a);
static bool memory_continue(struct job *j);

static void job_done(void *arg, int status) {
  struct job *j = arg;
  struct api *a = j->api;
  if (j->hashing) {
    a->hashing--;
    j->hashing = false;
  }
  if (j->kind == JOB_WARM) {
    job_free(j);
    pump(a);
    return;
  }
  if (j->kind == JOB_HANDSHAKE) {
    if (status == 0 && j->status == 200)
      j->hs_done(j->hs_arg, 0, j->user_id, NULL);
    else if (status == EG_EAUTH)
      j->hs_done(j->hs_arg, EG_EAUTH, NULL, AUTH_MSG_USER_NOT_FOUND);
    else
      j->hs_done(j->hs_arg, status ? status : EG_EINTERNAL, NULL, "Internal server error");
    job_free(j);
    return;
  }
  int64_t now = clock_wall_ms();
  if (j->kind == JOB_REGISTER && j->status == 201)
    a->st.registered++;
  if (j->login_failed)
    a->st.logins_failed++;
  if (j->login_ok)
    a->st.logins_ok++;
  if (j->login_failed) {
    if (j->login.email[0])
      auth_throttle_fail(a->by_account, slice_from_cstr(j->login.email), now);
    auth_throttle_fail(a->by_addr, slice_from_cstr(j->addr_key), now);
  } else if (j->login_ok) {
    auth_throttle_clear(a->by_account, slice_from_cstr(j->login.email));
  }
  if (status == 0 && j->status == 0 && memory_continue(j))
    return;
  if (j->kind == JOB_CHAT_DELETE && j->status == 200 && a->d.on_chat_deleted != NULL)
    a->d.on_chat_deleted(a->d.ud, j->user_id, j->chat_id);
  if (j->body == NULL) {
    set_error(j, 500, "Internal server error");
    free(j->cookie);
    j->cookie = NULL;
  }
  struct http_header h[1];
  size_t nh = 0;
  if (j->cookie != NULL)
    h[nh++] = (struct http_header){"Set-Cookie", j->cookie};
  check_sent(http_respond_ex(j->req, j->status, JSON_TYPE, h, nh, j->body, strlen(j->body)));
  job_free(j);
  pump(a);
}

static bool hashes(const struct job *j) {
  return j->kind == JOB_REGISTER || j->kind == JOB_LOGIN || j->kind == JOB_WARM;
}

/* Starts queued hashing jobs while slots are free. */
static void pump(struct api *a) {
  while (a->hashing < HASH_SLOTS && a->qhead != NULL) {
    struct job *j = a->qhead;
    a->qhead = j->next;
    if (a->qhead == NULL)
      a->qtail = NULL;
    a->queued--;
    j->next = NULL;
    submit(j);
  }
}

static void submit(struct job *j) {
  struct api *a = j->api;
  if (hashes(j)) {
    if (a->hashing >= HASH_SLOTS) {
      if (a->queued >= HASH_QUEUE_MAX) {
        a->st.busy++;
        send_error(j->req, 503, "Server busy, try again shortly");
        job_free(j);
        return;
      }
      if (a->qtail != NULL)
        a->qtail->next = j;
      else
        a->qhead = j;
      a->qtail = j;
      a->queued++;
      return;
    }
    a->hashing++;
    j->hashing = true;
  }
  if (store_async_run(j->api->d.async, job_work, job_done, j) != 0) {
    if (j->hashing)
      a->hashing--;
    if (j->kind == JOB_HANDSHAKE)
      j->hs_done(j->hs_arg, EG_ECLOSED, NULL, "Server shutting down");
    else if (j->req != NULL)
      send_error(j->req, 503, "Server shutting down");
    job_free(j);
  }
}

static struct job *job_new(struct api *a, struct http_req *r, enum job_kind kind) {
  struct job *j = xcalloc(1, sizeof *j);
  j->api = a;
  j->req = r;
  j->kind = kind;
  return j;
}

/* ---- request checks (loop thread) ------------------------------------------------ */

/* Refuses cross-site state changes: an Origin that is not ours nor allowed -> 403. */
static bool origin_ok(struct api *a, struct http_req *r) {
  struct slice origin = {"", 0}, host = {"", 0};
  if (!http_req_header(r, "Origin", &origin))
    return true;
  (void)http_req_header(r, "Host", &host);
  if (auth_origin_allowed(origin, host, a->d.cookie_secure ? "https" : "http", a->d.public_url,
                          a->d.origins))
    return true;
  a->st.origin_refused++;
  send_error(r, 403, "Origin not allowed");
  return false;
}

/* The body must be JSON (415 otherwise; an empty body falls through to the 400 of the
   validator). */
static bool json_body_ok(struct http_req *r) {
  struct slice ct;
  if (http_req_body(r).len == 0)
    return true;
  if (http_req_header(r, "Content-Type", &ct)) {
    size_t n = 0;
    while (n < ct.len && ct.p[n] != ';' && ct.p[n] != ' ')
      n++;
    struct slice mt = {ct.p, n};
    if (slice_case_eq_cstr(mt, "application/json"))
      return true;
  }
  send_error(r, 415, "Content-Type must be application/json");
  return false;
}

/* Reads and verifies the session token (cookie, else Bearer); 401 when absent or bad. */
static bool signed_in(struct api *a, struct http_req *r, char user_id[ID_LEN + 1]) {
  struct slice cookie = {"", 0}, authz = {"", 0}, tok;
  if (!http_req_cookie(r, "token", &cookie))
    cookie.len = 0;
  (void)http_req_header(r, "Authorization", &authz);
  if (cookie.len > 0)
    tok = cookie;
  else if (auth_token_pick((struct slice){"", 0}, (struct slice){"", 0}, authz, &tok) ==
           AUTH_SRC_NONE) {
    send_error(r, 401, "Unauthorized");
    return false;
  }
  if (auth_jwt_verify(a->d.jwt, tok.p, tok.len, clock_wall_ms() / 1000, user_id) != 0) {
    send_error(r, 401, "Unauthorized");
    return false;
  }
  return true;
}

/* :id / :chatId -> chat_id, or 400 for a malformed id. */
static bool chat_param(struct http_req *r, const char *name, char out[ID_LEN + 1]) {
  struct slice v;
  if (!http_req_param(r, name, &v) || !id_valid(v.p, v.len)) {
    send_error(r, 400, "Invalid chat id");
    return false;
  }
  memcpy(out, v.p, ID_LEN);
  out[ID_LEN] = '\0';
  return true;
}

/* ?limit: absent -> def; not a positive integer -> 400; above max -> max. */
static bool limit_param(struct http_req *r, size_t def, size_t max, size_t *out) {
  struct slice v;
  *out = def;
  if (!http_req_query(r, "limit", &v))
    return true;
  size_t n = 0;
  if (v.len == 0 || v.len > 9)
    goto bad;
  for (size_t i = 0; i < v.len; i++) {
    if (v.p[i] < '0' || v.p[i] > '9')
      goto bad;
    n = n * 10 + (size_t)(v.p[i] - '0');
  }
  if (n == 0)
    goto bad;
  *out = n > max ? max : n;
  return true;
bad:
  send_error(r, 400, "limit must be a positive integer");
  return false;
}

static bool before_param(struct http_req *r, char out[ID_LEN + 1]) {
  struct slice v;
  out[0] = '\0';
  if (!http_req_query(r, "before", &v) || v.len == 0)
    return true;
  if (!id_valid(v.p, v.len)) {
    send_error(r, 400, "Invalid before id");
    return false;
  }
  memcpy(out, v.p, ID_LEN);
  out[ID_LEN] = '\0';
  return true;
}

static void addr_key(struct http_req *r, char out[80]) {
  const char *remote = http_req_remote(r);
  size_t n = remote ? strlen(remote) : 0;
  const char *colon = n ? strrchr(remote, ':') : NULL;
  if (colon != NULL && !(remote[0] == '[' && colon < strchr(remote, ']')))
    n = (size_t)(colon - remote);
  if (n > 70)
    n = 70;
  snprintf(out, 80, "ip:%.*s", (int)n, remote ? remote : "");
}

/* ---- handlers (loop thread) ------------------------------------------------------ */

static void h_register(struct http_req *r, void *ud) {
  struct api *a = ud;
  if (!origin_ok(a, r) || !json_body_ok(r))
    return;
  struct slice b = http_req_body(r);
  struct job *j = job_new(a, r, JOB_REGISTER);
  const char *msg;
  if (api_parse_register(b.p, b.len, &j->reg, &msg) != 0) {
    send_error(r, 400, msg);
    job_free(j);
    return;
  }
  submit(j);
}

static void h_login(struct http_req *r, void *ud) {
  struct api *a = ud;
  if (!origin_ok(a, r) || !json_body_ok(r))
    return;
  struct slice b = http_req_body(r);
  struct job *j = job_new(a, r, JOB_LOGIN);
  const char *msg;
  if (api_parse_login(b.p, b.len, &j->login, &msg) != 0) {
    send_error(r, 400, msg);
    job_free(j);
    return;
  }
  addr_key(r, j->addr_key);
  int64_t now = clock_wall_ms();
  int ra1 = 0, ra2 = 0;
  bool limited = auth_throttle_check(a->by_addr, slice_from_cstr(j->addr_key), now, &ra1) != 0;
  if (j->login.email[0] &&
      auth_throttle_check(a->by_account, slice_from_cstr(j->login.email), now, &ra2) != 0)
    limited = true;
  if (limited) {
    int ra = EG_MAX(ra1, ra2);
    a->st.logins_throttled++;
    log_info("api: login throttled (%s%s), retry in %d s", ra1 > 0 ? j->addr_key : "",
             ra2 > 0 ? (ra1 > 0 ? " and account" : "account") : "", ra);
    char secs[16], msgbuf[128];
    snprintf(secs, sizeof secs, "%d", ra);
    snprintf(msgbuf, sizeof msgbuf,
             "{\"message\":\"Too many failed login attempts; try again in %d seconds\"}", ra);
    struct http_header h = {"Retry-After", secs};
    check_sent(http_respond_ex(r, 429, JSON_TYPE, &h, 1, msgbuf, strlen(msgbuf)));
    job_free(j);
    return;
  }
  submit(j);
}

static void h_logout(struct http_req *r, void *ud) {
  struct api *a = ud;
  if (!origin_ok(a, r))
    return;
  char *c = session_cookie(a, "", 0);
  struct http_header h = {"Set-Cookie", c ? c : ""};
  const char *body = "{\"message\":\"Logged out\"}";
  check_sent(http_respond_ex(r, 200, JSON_TYPE, &h, c ? 1 : 0, body, strlen(body)));
  free(c);
}

static void h_me(struct http_req *r, void *ud) {
  struct api *a = ud;
  char uid[ID_LEN + 1];
  if (!signed_in(a, r, uid))
    return;
  struct job *j = job_new(a, r, JOB_ME);
  memcpy(j->user_id, uid, sizeof uid);
  submit(j);
}

static void h_chat_create(struct http_req *r, void *ud) {
  struct api *a = ud;
  char uid[ID_LEN + 1];
  if (!origin_ok(a, r) || !signed_in(a, r, uid) || !json_body_ok(r))
    return;
  struct slice b = http_req_body(r);
  struct job *j = job_new(a, r, JOB_CHAT_CREATE);
  memcpy(j->user_id, uid, sizeof uid);
  const char *msg;
  if (api_parse_title(b.p, b.len, &j->title, &msg) != 0) {
    send_error(r, 400, msg);
    job_free(j);
    return;
  }
  submit(j);
}

static void h_chat_list(struct http_req *r, void *ud) {
  struct api *a = ud;
  char uid[ID_LEN + 1], before[ID_LEN + 1];
  size_t limit;
  if (!signed_in(a, r, uid) || !before_param(r, before) ||
      !limit_param(r, STORE_PAGE_MAX, STORE_PAGE_MAX, &limit))
    return;
  struct job *j = job_new(a, r, JOB_CHAT_LIST);
  memcpy(j->user_id, uid, sizeof uid);
  memcpy(j->before, before, sizeof before);
  j->limit = limit;
  submit(j);
}

static void h_messages(struct http_req *r, void *ud) {
  struct api *a = ud;
  char uid[ID_LEN + 1], chat[ID_LEN + 1], before[ID_LEN + 1];
  size_t limit;
  if (!signed_in(a, r, uid) || !chat_param(r, "chatId", chat) || !before_param(r, before) ||
      !limit_param(r, API_PAGE_DEFAULT, API_PAGE_MAX, &limit))
    return;
  struct job *j = job_new(a, r, JOB_MSG_LIST);
  memcpy(j->user_id, uid, sizeof uid);
  memcpy(j->chat_id, chat, sizeof chat);
  memcpy(j->before, before, sizeof before);
  j->limit = limit;
  submit(j);
}

static void h_chat_rename(struct http_req *r, void *ud) {
  struct api *a = ud;
  char uid[ID_LEN + 1], chat[ID_LEN + 1];
  if (!origin_ok(a, r) || !signed_in(a, r, uid) || !chat_param(r, "id", chat) ||
      !json_body_ok(r))
    return;
  struct slice b = http_req_body(r);
  struct job *j = job_new(a, r, JOB_CHAT_RENAME);
  memcpy(j->user_id, uid, sizeof uid);
  memcpy(j->chat_id, chat, sizeof chat);
  const char *msg;
  if (api_parse_title(b.p, b.len, &j->title, &msg) != 0) {
    send_error(r, 400, msg);
    job_free(j);
    return;
  }
  submit(j);
}

static void h_chat_delete(struct http_req *r, void *ud) {
  struct api *a = ud;
  char uid[ID_LEN + 1], chat[ID_LEN + 1];
  if (!origin_ok(a, r) || !signed_in(a, r, uid) || !chat_param(r, "id", chat))
    return;
  struct job *j = job_new(a, r, JOB_CHAT_DELETE);
  memcpy(j->user_id, uid, sizeof uid);
  memcpy(j->chat_id, chat, sizeof chat);
  submit(j);
}

/* ---- memory routes (recall on the loop thread) ----------------------------------- */

static void mem_reply(struct job *j) {
  if (j->body == NULL)
    set_error(j, 500, "Internal server error");
  check_sent(http_respond_json(j->req, j->status, j->body));
  job_free(j);
}

static void on_searched(void *ud, int status, const struct recall_item *items, size_t n) {
  struct job *j = ud;
  if (status != 0) {
    log_error("api: memory search: %s", eg_strerror(status));
    set_error(j, 500, "Internal server error");
  } else {
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
      json_array_append_new(arr, memory_json(items[i].id, items[i].chat_id, items[i].role,
                                             items[i].text, items[i].created_at,
                                             json_real(items[i].score)));
    j->status = 200;
    j->body = dump(json_pack("{s:o}", "memories", arr));
  }
  mem_reply(j);
}

static void on_noted(void *ud, int status, const char *id, int64_t created_at) {
  struct job *j = ud;
  if (status != 0) {
    log_error("api: memory note: %s", eg_strerror(status));
    set_error(j, 500, "Internal server error");
  } else {
    j->status = 201;
    j->body = dump(json_pack("{s:o}", "memory",
                             memory_json(id, "", "note", j->text, created_at, json_null())));
  }
  mem_reply(j);
}

static void on_forgot(void *ud, int status) {
  struct job *j = ud;
  if (status == EG_ENOTFOUND) {
    set_error(j, 404, "Memory not found");
  } else if (status != 0) {
    log_error("api: memory delete: %s", eg_strerror(status));
    set_error(j, 500, "Internal server error");
  } else {
    j->status = 200;
    j->body = dump(json_pack("{s:s,s:s}", "message", "Memory deleted", "id", j->chat_id));
  }
  mem_reply(j);
}

static void on_forgot_all(void *ud, int status, size_t n) {
  struct job *j = ud;
  if (status != 0) {
    log_error("api: memory delete all: %s", eg_strerror(status));
    set_error(j, 500, "Internal server error");
  } else {
    j->status = 200;
    j->body = dump(
        json_pack("{s:s,s:I}", "message", "All memories deleted", "deleted", (json_int_t)n));
  }
  mem_reply(j);
}

/* After the user check: hands the job to recall. Returns false when the job is not a
   memory continuation (job_done then answers as usual). */
static bool memory_continue(struct job *j) {
  struct recall *rc = j->api->d.recall;
  int r;
  switch (j->kind) {
  case JOB_MEM_SEARCH:
    r = recall_search(rc, j->user_id, j->text, NULL, j->limit, NULL, 0, on_searched, j);
    break;
  case JOB_MEM_NOTE:
    r = recall_note(rc, j->user_id, j->text, j->created_at, on_noted, j);
    break;
  case JOB_MEM_DELETE:
    r = recall_forget(rc, j->user_id, j->chat_id, on_forgot, j);
    break;
  case JOB_MEM_DELETE_ALL:
    r = recall_forget_all(rc, j->user_id, on_forgot_all, j);
    break;
  default:
    return false;
  }
  if (r != 0) {
    set_error(j, r == EG_ECLOSED ? 503 : 500,
              r == EG_ECLOSED ? "Server shutting down" : "Internal server error");
    mem_reply(j);
  }
  return true;
}

static void h_memory_get(struct http_req *r, void *ud) {
  struct api *a = ud;
  char uid[ID_LEN + 1], before[ID_LEN + 1];
  struct slice q;
  if (!signed_in(a, r, uid))
    return;
  bool search = http_req_query(r, "q", &q) && q.len > 0;
  struct job *j;
  if (search) {
    size_t k;
    if (q.len > API_QUERY_MAX) {
      send_error(r, 400, "q must be at most 4096 bytes");
      return;
    }
    if (memchr(q.p, '\0', q.len) != NULL) {
      send_error(r, 400, "q must not contain NUL");
      return;
    }
    struct slice kv;
    k = API_RECALL_DEFAULT;
    if (http_req_query(r, "k", &kv)) {
      size_t n = 0;
      bool ok = kv.len > 0 && kv.len <= 4;
      for (size_t i = 0; ok && i < kv.len; i++) {
        ok = kv.p[i] >= '0' && kv.p[i] <= '9';
        n = n * 10 + (size_t)(kv.p[i] - '0');
      }
      if (!ok || n == 0) {
        send_error(r, 400, "k must be a positive integer");
        return;
      }
      k = n > API_RECALL_MAX ? API_RECALL_MAX : n;
    }
    j = job_new(a, r, JOB_MEM_SEARCH);
    j->text = xstrndup(q.p, q.len);
    j->limit = k;
  } else {
    size_t limit;
    if (!before_param(r, before) || !limit_param(r, API_PAGE_DEFAULT, API_PAGE_MAX, &limit))
      return;
    j = job_new(a, r, JOB_MEM_LIST);
    memcpy(j->before, before, sizeof before);
    j->limit = limit;
  }
  memcpy(j->user_id, uid, sizeof uid);
  submit(j);
}

static void h_memory_post(struct http_req *r, void *ud) {
  struct api *a = ud;
  char uid[ID_LEN + 1];
  if (!origin_ok(a, r) || !signed_in(a, r, uid) || !json_body_ok(r))
    return;
  struct slice b = http_req_body(r);
  char *text;
  int64_t created_at;
  const char *msg;
  if (api_parse_note(b.p, b.len, &text, &created_at, &msg) != 0) {
    send_error(r, 400, msg);
    return;
  }
  struct job *j = job_new(a, r, JOB_MEM_NOTE);
  memcpy(j->user_id, uid, sizeof uid);
  j->text = text;
  j->created_at = created_at;
  submit(j);
}

static void h_memory_delete(struct http_req *r, void *ud) {
  struct api *a = ud;
  char uid[ID_LEN + 1];
  struct slice v;
  if (!origin_ok(a, r) || !signed_in(a, r, uid))
    return;
  if (!http_req_param(r, "id", &v) || !id_valid(v.p, v.len)) {
    send_error(r, 400, "Invalid memory id");
    return;
  }
  struct job *j = job_new(a, r, JOB_MEM_DELETE);
  memcpy(j->user_id, uid, sizeof uid);
  memcpy(j->chat_id, v.p, ID_LEN); /* the memory id */
  submit(j);
}

static void h_memory_delete_all(struct http_req *r, void *ud) {
  struct api *a = ud;
  char uid[ID_LEN + 1];
  if (!origin_ok(a, r) || !signed_in(a, r, uid))
    return;
  struct job *j = job_new(a, r, JOB_MEM_DELETE_ALL);
  memcpy(j->user_id, uid, sizeof uid);
  submit(j);
}

int api_register(struct api *a, struct http_router *rt) {
  static const struct {
    enum http_method m;
    const char *pattern;
    http_handler_fn fn;
  } routes[] = {
      {HTTP_POST, "/api/auth/register", h_register},
      {HTTP_POST, "/api/auth/login", h_login},
      {HTTP_POST, "/api/auth/logout", h_logout},
      {HTTP_GET, "/api/auth/me", h_me},
      {HTTP_POST, "/api/chat", h_chat_create},
      {HTTP_GET, "/api/chat", h_chat_list},
      {HTTP_GET, "/api/chat/messages/:chatId", h_messages},
      {HTTP_PATCH, "/api/chat/:id", h_chat_rename},
      {HTTP_DELETE, "/api/chat/:id", h_chat_delete},
  };
  static const struct {
    enum http_method m;
    const char *pattern;
    http_handler_fn fn;
  } memory_routes[] = {
      {HTTP_GET, "/api/memory", h_memory_get},
      {HTTP_POST, "/api/memory", h_memory_post},
      {HTTP_DELETE, "/api/memory/:id", h_memory_delete},
      {HTTP_DELETE, "/api/memory", h_memory_delete_all},
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(routes); i++) {
    int rc = http_router_add(rt, routes[i].m, routes[i].pattern, routes[i].fn, a);
    if (rc != 0)
      return rc;
  }
  for (size_t i = 0; a->d.recall != NULL && i < EG_ARRAY_LEN(memory_routes); i++) {
    int rc = http_router_add(rt, memory_routes[i].m, memory_routes[i].pattern,
                             memory_routes[i].fn, a);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* ---- handshake ------------------------------------------------------------------- */

int api_handshake(struct api *a, struct slice cookie_header, struct slice auth_token,
                  struct slice authorization, api_handshake_cb done, void *arg) {
  char uid[ID_LEN + 1];
  const char *msg;
  if (auth_handshake(a->d.jwt, cookie_header, auth_token, authorization, clock_wall_ms() / 1000,
                     uid, &msg) != 0) {
    done(arg, EG_EAUTH, NULL, msg);
    return 0;
  }
  struct job *j = job_new(a, NULL, JOB_HANDSHAKE);
  memcpy(j->user_id, uid, sizeof uid);
  j->hs_done = done;
  j->hs_arg = arg;
  if (store_async_run(a->d.async, job_work, job_done, j) != 0) {
    job_free(j);
    return EG_ECLOSED;
  }
  return 0;
}

const struct api_deps *api__deps(const struct api *a) {
  return &a->d;
}

struct api_stats *api__stats(struct api *a) {
  return &a->st;
}

void api_stats(const struct api *a, struct api_stats *out) {
  *out = a->st;
  out->hash_queued = a->queued;
}
