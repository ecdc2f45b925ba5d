/*
 * api: the REST routes for accounts and chats (ARCHITECTURE.md section 4), the Socket.IO
 * handshake check that looks the user up, and the operator CLI (users, migrate, export).
 *
 * Routes (all JSON; every error is {"message": "..."} with its status):
 *   POST   /api/auth/register  {email, password, fullName:{firstName,lastName}}
 *                              201 {user} + Set-Cookie token; 400, 409, 415
 *   POST   /api/auth/login     {email, password} 200 {user} + cookie; 400, 401, 415, 429
 *   POST   /api/auth/logout    200 {message} and a cookie that expires at once
 *   GET    /api/auth/me        200 {user}; 401
 *   POST   /api/chat           {title} 201 {chat:{_id,title,lastActivity,user,createdAt}}
 *   GET    /api/chat           200 {chats:[chat...]} most recent activity first
 *                              (?limit=1..1000, ?before=<chat id> pages)
 *   GET    /api/chat/messages/:chatId   200 {messages:[{_id,chat,role,content,createdAt}]}
 *                              oldest first; ?before=<message id>, ?limit=1..200 (50;
 *                              larger values are clamped to 200)
 *   PATCH  /api/chat/:id       {title} 200 {chat}
 *   DELETE /api/chat/:id       200 {message, _id}; the chat's messages and memories go too
 *   Memory routes (only when deps.recall is set):
 *   GET    /api/memory?q=&k=   200 {memories:[memory...]} best first (k 1..100, default 10)
 *   GET    /api/memory         200 {memories:[...]} newest first (?before=<id>, ?limit=
 *                              1..200, default 50); score is null
 *   POST   /api/memory         {text, createdAt?} 201 {memory} (a note)
 *   DELETE /api/memory/:id     200 {message, id}; 404 when not the caller's
 *   DELETE /api/memory         200 {message, deleted}: forgets everything about the caller
 *   memory = {id, chatId (null for notes), role, text, score, createdAt}; id is the
 *   message id for memories of messages.
 *   user = {_id, email, fullName:{firstName,lastName}, createdAt}; times are ISO 8601.
 * Ids: a malformed id (not 24 lowercase hex characters) is 400 "Invalid chat id"; a
 * well-formed id that is not a chat of the caller is 404 "Chat not found", whether it
 * exists for someone else or not at all, so other users' chats are never revealed.
 * Auth: the `token` cookie, else `Authorization: Bearer`; the user must still exist.
 * CSRF: state-changing requests carrying an Origin that is neither the server's own nor
 * allowed (auth_origin_allowed) get 403; bodies must be application/json (415).
 *
 * Threads: api_* functions and every handler run on the loop thread. Password hashing
 * and all store calls run on the thread pool through store_async_run(); nothing here
 * blocks the loop. The request structs are kept until the work finishes (the HTTP layer
 * keeps a request valid until it is answered; answering a request whose client left is a
 * no-op).
 *
 * Return codes: 0 or negative EG_E* codes (base.h).
 */
#ifndef ENGRAM_API_H
#define ENGRAM_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "auth/auth.h"
#include "base/base.h"

struct http_router;
struct http_req;
struct store;
struct store_async;
struct sio_socket;
struct sio_server;
struct recall;

#define API_TITLE_MAX 200   /* characters (code points) of a chat title */
#define API_NAME_MAX 100    /* characters of firstName / lastName */
#define API_PAGE_DEFAULT 50 /* messages per page */
#define API_PAGE_MAX 200
#define API_RECALL_DEFAULT 10 /* GET /api/memory?q= results */
#define API_RECALL_MAX 100
#define API_QUERY_MAX 4096 /* bytes of q */
#define API_NOTE_MAX 65536 /* bytes of a note's text */

struct api_deps {
  uv_loop_t *loop;
  struct store *store;
  struct store_async *async;  /* runs the store and hashing work */
  struct sio_server *io;      /* for api_socketio_handler; may be NULL otherwise */
  struct recall *recall;      /* enables the /api/memory routes; may be NULL */
  const struct auth_jwt *jwt; /* signing key and token life */
  bool cookie_secure;         /* add Secure to the cookie (behind TLS) */
  const char *public_url;     /* the server's own origin, "" = from the Host header */
  const char *origins;        /* ENGRAM_ORIGINS: comma list of allowed origins */
  /* Login throttle: failures per account (0 -> 10) within window_ms (0 -> 15 min); a
     client address gets three times as many (several users behind one NAT). */
  unsigned login_max_failures;
  int64_t login_window_ms;
  /* argon2id cost for new hashes; 0 -> AUTH_PW_OPS / AUTH_PW_MEM. */
  unsigned long long pw_ops;
  size_t pw_mem;
  /* Called on the loop thread after a chat was deleted (its messages and memories are
     gone from the store): lets the memory layer drop cached vectors. May be NULL. */
  void (*on_chat_deleted)(void *ud, const char *user_id, const char *chat_id);
  /* Called on the loop thread by api_sio_middleware just before it accepts a socket, with
     the authenticated user's id (e.g. to sio_socket_set_data it). May be NULL. */
  void (*on_socket_user)(void *ud, struct sio_socket *s, const char *user_id);
  void *ud;
};

struct api;

/* Creates the API state (copies deps; the pointers must outlive it). */
EG_WUR int api_new(const struct api_deps *d, struct api **out);
/* Adds the routes listed above to r. EG_EINVAL if the router refuses a pattern. */
EG_WUR int api_register(struct api *a, struct http_router *r);
/* Frees. No request may be in flight (stop the HTTP server and drain the store first). */
void api_free(struct api *a);

/* Counters since api_new (loop thread), for /metrics. */
struct api_stats {
  uint64_t registered;       /* accounts created over REST */
  uint64_t logins_ok;        /* successful logins */
  uint64_t logins_failed;    /* 401s of /api/auth/login */
  uint64_t logins_throttled; /* 429s of /api/auth/login */
  uint64_t handshakes_ok;    /* Socket.IO connects accepted */
  uint64_t handshakes_no_token, handshakes_invalid, handshakes_no_user;
  uint64_t origin_refused; /* 403s for a foreign Origin (REST and Socket.IO) */
  uint64_t busy;           /* 503s: hashing queue full */
  uint64_t hash_queued;    /* hashing jobs waiting now */
};
void api_stats(const struct api *a, struct api_stats *out);

/* Socket.IO handshake check for the connect middleware. Picks the token (cookie header,
   else the CONNECT payload's auth.token, else the Authorization header), verifies it,
   then looks the user up on the thread pool. done(arg, 0, user_id, NULL) on success, or
   done(arg, EG_EAUTH, NULL, message) with message one of AUTH_MSG_NO_TOKEN,
   AUTH_MSG_INVALID_TOKEN, AUTH_MSG_USER_NOT_FOUND (done may run before this returns when
   no lookup is needed). The slices are only read during the call. Returns 0, or
   EG_ECLOSED (shutting down; done will not run). */
typedef void (*api_handshake_cb)(void *arg, int status, const char *user_id,
                                 const char *message);
EG_WUR int api_handshake(struct api *a, struct slice cookie_header, struct slice auth_token,
                         struct slice authorization, api_handshake_cb done, void *arg);

/* Socket.IO wiring (src/api/sio_auth.c):
   - api_socketio_handler: route the Engine.IO path to it instead of sio_http_handler
     (http_router_add(rt, HTTP_METHOD_UNKNOWN, "/socket.io/" "*", api_socketio_handler,
     api); deps.io must be set). A request whose Origin is neither the server's own (Host
     header, or public_url) nor in deps.origins gets 403 {"code":4,"message":"Origin not
     allowed"} (cross-site WebSocket hijacking); the others go to sio_http_handler.
     Requests without Origin (not a browser) pass.
   - api_sio_middleware: the connect middleware of namespace "/" (sio_use, ud = struct
     api *). Reads the `cookie` and `authorization` handshake headers (keep_headers) and
     auth.token, then sio_accept or sio_refuse with exactly AUTH_MSG_NO_TOKEN,
     AUTH_MSG_INVALID_TOKEN or AUTH_MSG_USER_NOT_FOUND. */
void api_socketio_handler(struct http_req *req, void *api);
void api_sio_middleware(struct sio_socket *s, const json_t *auth, void *api);

/* The credentials a Socket.IO handshake may carry, as api_sio_middleware reads them: the
   `cookie` and `authorization` headers (empty when absent; the namespace must keep them)
   and auth.token (empty unless a string). The slices point into s and auth. */
void api_sio_credentials(struct sio_socket *s, const json_t *auth, struct slice *cookie,
                         struct slice *token, struct slice *authorization);

/* ---- request bodies (pure; exposed for tests and fuzzing) ------------------------------ */

struct api_register_body {
  char email[AUTH_EMAIL_MAX + 1];
  char *password; /* heap, wiped by api_register_body_clear */
  size_t password_len;
  char *first_name, *last_name;
};
void api_register_body_clear(struct api_register_body *b);
/* Parses and validates a register body. Returns 0, or EG_EINVAL with *msg set to the
   400 message. */
int api_parse_register(const char *body, size_t len, struct api_register_body *out,
                       const char **msg);

struct api_login_body {
  char email[AUTH_EMAIL_MAX + 1]; /* "" when the email is malformed (cannot match) */
  char *password;
  size_t password_len;
};
void api_login_body_clear(struct api_login_body *b);
int api_parse_login(const char *body, size_t len, struct api_login_body *out, const char **msg);

/* {title}: trimmed, 1..API_TITLE_MAX characters, no control characters. *title is
   malloc'ed. */
int api_parse_title(const char *body, size_t len, char **title, const char **msg);

/* {text, createdAt?}: text 1..API_NOTE_MAX bytes, not only whitespace, no NUL; createdAt
   an ISO 8601 string or epoch milliseconds, not more than a day ahead (absent: 0 = now).
   *text is malloc'ed. */
int api_parse_note(const char *body, size_t len, char **text, int64_t *created_at,
                   const char **msg);

/* ---- CLI ------------------------------------------------------------------------------- */

struct cli_env {
  const char *db;       /* ENGRAM_DB ("" = <data_dir>/engram.db) */
  const char *data_dir; /* ENGRAM_DATA_DIR */
  FILE *in, *out, *err; /* stdin, stdout, stderr (tests pass others) */
};

/* `engram user add EMAIL (--password-file F | --password-stdin) [--first X] [--last Y]`,
   `engram user list`, `engram user delete EMAIL`. argv[0] is "user". Returns the exit
   status (0 ok, 1 failure, 2 usage). */
int cli_user(int argc, char **argv, const struct cli_env *env);
/* `engram migrate`: applies pending migrations, prints the schema version. */
int cli_migrate(int argc, char **argv, const struct cli_env *env);
/* `engram memory search --user EMAIL [--k N] QUERY...` (hash-embedder vectors + keywords,
   fused as the server does), `engram memory list --user EMAIL [--limit N] [--before ID]`,
   `engram memory forget --user EMAIL (--all | ID...)` (src/api/cli_memory.c). JSON on out. */
int cli_memory(int argc, char **argv, const struct cli_env *env);
/* `engram import --user EMAIL FILE...`: chats and messages exported from the Node design's
   MongoDB with mongoexport (JSON lines, or --jsonArray), Extended JSON ids and dates
   (`_id.$oid`, `chat.$oid`, `createdAt.$date`; chats have `title`, `lastActivity`). All of
   it becomes the named user's; ids and dates are kept; messages are embedded (hash) as
   memories in batches with a progress line on err; bad records are reported with their
   line number and skipped; a re-import skips what is there; on a storage failure the
   chats this import created are removed again. */
int cli_import(int argc, char **argv, const struct cli_env *env);
/* `engram export --user EMAIL`: {user, chats:[{..., messages:[...]}]} as JSON on out. */
int cli_export(int argc, char **argv, const struct cli_env *env);

#endif
