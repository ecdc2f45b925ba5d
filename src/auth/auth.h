/*
 * auth: accounts and sessions, with no I/O of its own beyond the JWT secret file.
 *
 * - Passwords: argon2id through libsodium's crypto_pwhash_str. The default cost
 *   (AUTH_PW_OPS = 3 passes over AUTH_PW_MEM = 24 MiB) takes about 45-50 ms on one core of
 *   the reference machine: above OWASP's argon2id floor (19 MiB, 2 passes), cheap enough
 *   that a login stays well under the 100 ms a person notices, and bounded in memory
 *   (4 thread-pool workers hashing at once use 96 MiB). Hashes carry their own parameters,
 *   so raising the cost later keeps old hashes valid. Hashing and verifying are CPU-bound
 *   and slow on purpose: call them from a worker thread, never from the event loop.
 *   Unknown accounts go through auth_password_dummy_verify() so that a login takes the same
 *   time whether or not the email exists.
 * - Session tokens: JWT HS256 with payload {id, iat, exp} (seconds). Signing uses libjwt;
 *   verification first checks the header (alg must be exactly HS256: "none" and every
 *   other alg are refused), then the signature in constant time (libsodium HMAC-SHA-256
 *   verify), then lets libjwt parse the claims, and requires a valid ObjectId-shaped id
 *   and an exp in the future.
 * - Emails: trimmed, lowercased, shape-checked, at most 254 bytes.
 * - Handshake tokens: cookie `token`, else auth.token, else `Authorization: Bearer`.
 * - Login throttle: fixed-size set-associative table keyed by a keyed hash of the account
 *   or client address; bounded memory whatever the traffic. Thread-safe (a mutex).
 * - Origin check for browser requests (CORS, Socket.IO handshakes).
 *
 * Everything here except the password functions is fast and may run on the loop thread.
 * No libuv, no curl. Return codes are 0 or negative EG_E* codes from base.h.
 */
#ifndef ENGRAM_AUTH_H
#define ENGRAM_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- passwords ------------------------------------------------------------------------- */

#define AUTH_PW_MIN 8    /* bytes */
#define AUTH_PW_MAX 128  /* bytes */
#define AUTH_PW_OPS 3ULL /* argon2id passes */
#define AUTH_PW_MEM (24u * 1024u * 1024u)
#define AUTH_HASH_MAX 128 /* == crypto_pwhash_STRBYTES, NUL included */

/* Checks the length bounds. Returns 0 or EG_EINVAL with *why set to a message for the user
   ("Password must be at least 8 bytes long" / "... at most 128 bytes long"). */
int auth_password_check(size_t len, const char **why);
/* Hashes pw into out (NUL-terminated "$argon2id$..."). ops/mem 0 mean the defaults.
   Returns 0, EG_EINVAL (length out of bounds) or EG_ENOMEM (libsodium could not allocate). */
EG_WUR int auth_password_hash(const char *pw, size_t len, unsigned long long ops, size_t mem,
                              char out[AUTH_HASH_MAX]);
/* Returns 0 when pw matches hash, else EG_EAUTH (also for a malformed hash). */
EG_WUR int auth_password_verify(const char *hash, const char *pw, size_t len);
/* Spends the same time as auth_password_verify against a hash of the default cost. */
void auth_password_dummy_verify(const char *pw, size_t len);

/* ---- JWT ----------------------------------------------------------------------------- */

struct auth_jwt {
  uint8_t *secret; /* owned */
  size_t secret_len;
  int64_t ttl_s; /* token life in seconds */
};

/* Sets up the signing key: `secret` when non-empty, else the environment's JWT_SECRET,
   else JWT_SECRETE, else the text of <data_dir>/jwt.secret, which is created (64 random
   hex characters, mode 0600, atomically) when missing. ttl_s <= 0 means 7 days.
   Returns 0, EG_EIO (cannot create or read the file; the message is logged) or
   EG_EINVAL (file too short). */
EG_WUR int auth_jwt_init(struct auth_jwt *j, const char *secret, const char *data_dir,
                         int64_t ttl_s);
/* Same with an explicit key (tests, fuzzing). */
void auth_jwt_init_key(struct auth_jwt *j, const void *key, size_t len, int64_t ttl_s);
void auth_jwt_free(struct auth_jwt *j);
/* Signs {id, iat: now_s, exp: now_s + ttl}. *out is malloc'ed, free() it. */
EG_WUR int auth_jwt_sign(const struct auth_jwt *j, const char *user_id, int64_t now_s,
                         char **out);
/* Verifies a token. Returns 0 with the user id in id_out, or EG_EAUTH for anything wrong:
   malformed, alg other than HS256, bad signature, expired (exp <= now_s), missing exp,
   missing or malformed id. The token is at most AUTH_TOKEN_MAX bytes. */
#define AUTH_TOKEN_MAX 4096
EG_WUR int auth_jwt_verify(const struct auth_jwt *j, const char *token, size_t len,
                           int64_t now_s, char id_out[ID_LEN + 1]);

/* ---- emails -------------------------------------------------------------------------- */

#define AUTH_EMAIL_MAX 254
/* Trims ASCII whitespace, lowercases ASCII, checks a basic local@domain.tld shape (no
   spaces or control characters, one '@', a dot in the domain, no empty labels).
   Returns 0 with the NUL-terminated address in out, or EG_EINVAL. */
EG_WUR int auth_email_normalize(const char *in, size_t len, char out[AUTH_EMAIL_MAX + 1]);

/* ---- handshake tokens ------------------------------------------------------------------ */

#define AUTH_MSG_NO_TOKEN "Authentication error: No token provided"
#define AUTH_MSG_INVALID_TOKEN "Authentication error: Invalid token"
#define AUTH_MSG_USER_NOT_FOUND "Authentication error: User not found"

enum auth_token_source {
  AUTH_SRC_NONE = 0,
  AUTH_SRC_COOKIE,
  AUTH_SRC_AUTH, /* Socket.IO CONNECT payload auth.token */
  AUTH_SRC_BEARER,
};

/* Finds the value of cookie `name` in a Cookie header ("a=1; token=xyz"). Surrounding
   double quotes are removed. Returns true with *val pointing into header. */
bool auth_cookie_get(struct slice header, const char *name, struct slice *val);
/* Picks the token: cookie `token` (non-empty), else auth_token (non-empty), else the
   credentials of an `Authorization: Bearer <t>` header. Any input may be empty. */
enum auth_token_source auth_token_pick(struct slice cookie_header, struct slice auth_token,
                                       struct slice authorization, struct slice *token);
/* Picks and verifies. Returns 0 with the user id, or EG_EAUTH with *msg set to
   AUTH_MSG_NO_TOKEN or AUTH_MSG_INVALID_TOKEN. The caller then looks the user up and
   answers AUTH_MSG_USER_NOT_FOUND when it is gone. */
int auth_handshake(const struct auth_jwt *j, struct slice cookie_header,
                   struct slice auth_token, struct slice authorization, int64_t now_s,
                   char id_out[ID_LEN + 1], const char **msg);

/* ---- login throttle -------------------------------------------------------------------- */

struct auth_throttle;

/* slots: table size (rounded up to a multiple of 8; 0 means 4096). After max_failures
   failures of one key within window_ms, the key is refused until the window that started
   with its first failure ends. */
struct auth_throttle *auth_throttle_new(size_t slots, unsigned max_failures, int64_t window_ms);
void auth_throttle_free(struct auth_throttle *t);
/* Returns 0 when key may try, or EG_ELIMIT with *retry_after_s (>= 1) set. */
int auth_throttle_check(struct auth_throttle *t, struct slice key, int64_t now_ms,
                        int *retry_after_s);
/* Records a failure of key. */
void auth_throttle_fail(struct auth_throttle *t, struct slice key, int64_t now_ms);
/* Forgets key (after a successful login). */
void auth_throttle_clear(struct auth_throttle *t, struct slice key);

/* ---- origin check ---------------------------------------------------------------------- */

/* True when a browser request may proceed: origin empty (not a browser), origin equal to
   the server's own origin (`scheme://host[:port]` from the Host header, or public_url when
   non-empty), or listed in allow (comma-separated origins, "*" allows any). Compared case-
   insensitively, default ports (80/443) and a trailing '/' normalised. "null" is refused.
   scheme is "http" or "https" (how the client reached us). */
bool auth_origin_allowed(struct slice origin, struct slice host, const char *scheme,
                         const char *public_url, const char *allow);

#endif
