/*
 * JWT HS256 session tokens.
 *
 * A token is base64url(header) "." base64url(payload) "." base64url(signature), no
 * padding. Verification is strict and ordered so that nothing an attacker controls is
 * trusted before the signature is known to be ours:
 *   1. shape: 1..AUTH_TOKEN_MAX bytes of the base64url alphabet with exactly two dots;
 *   2. header: a JSON object whose "alg" is exactly "HS256" (refuses "none", "HS512",
 *      "RS256", a missing alg...);
 *   3. signature: exactly 32 bytes, compared in constant time (libsodium HMAC-SHA-256);
 *   4. claims, parsed by libjwt (which checks the signature again): "id" a 24-hex-char
 *      ObjectId string, "exp" an integer later than now.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"

#define DEFAULT_TTL_S (7 * 24 * 3600)
#define SECRET_FILE "jwt.secret"
#define SECRET_HEX 64

void auth_jwt_init_key(struct auth_jwt *j, const void *key, size_t len, int64_t ttl_s) {
  j->secret = xmemdup(key, len ? len : 1);
  j->secret_len = len;
  j->ttl_s = ttl_s > 0 ? ttl_s : DEFAULT_TTL_S;
}

void auth_jwt_free(struct auth_jwt *j) {
  if (j->secret != NULL) {
    sodium_memzero(j->secret, j->secret_len);
    free(j->secret);
  }
  j->secret = NULL;
  j->secret_len = 0;
}

static int read_secret_file(const char *path, char *out, size_t cap, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0)
    log_warn("auth: %s is readable by other users (chmod 600 it)", path);
  ssize_t n = read(fd, out, cap);
  int e = errno;
  close(fd);
  if (n < 0)
    return -e;
  size_t l = (size_t)n;
  while (l > 0 && (out[l - 1] == '\n' || out[l - 1] == '\r' || out[l - 1] == ' '))
    l--;
  *len = l;
  return 0;
}

/* Reads <dir>/jwt.secret, creating it first when missing: the random text is written to a
   temporary file that is then hard-linked into place, so a concurrent reader never sees a
   half-written secret and two processes starting together agree on one. */
static int secret_from_file(const char *dir, char *out, size_t cap, size_t *len) {
  char path[PATH_MAX], tmp[PATH_MAX];
  int rc = 0;
  if (snprintf(path, sizeof path, "%s/%s", dir, SECRET_FILE) >= (int)sizeof path)
    return EG_EINVAL;
  rc = read_secret_file(path, out, cap, len);
  if (rc == 0)
    goto check;
  if (rc != -ENOENT) {
    log_error("auth: cannot read %s: %s", path, strerror(-rc));
    return EG_EIO;
  }
  (void)mkdir(dir, 0700);
  uint8_t raw[SECRET_HEX / 2];
  char hex[SECRET_HEX + 2];
  rand_bytes(raw, sizeof raw);
  sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
  sodium_memzero(raw, sizeof raw);
  hex[SECRET_HEX] = '\n';
  hex[SECRET_HEX + 1] = '\0';
  uint8_t tag[6];
  char tagx[13];
  rand_bytes(tag, sizeof tag);
  sodium_bin2hex(tagx, sizeof tagx, tag, sizeof tag);
  if (snprintf(tmp, sizeof tmp, "%s/.%s.%s", dir, SECRET_FILE, tagx) >= (int)sizeof tmp)
    return EG_EINVAL;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    log_error("auth: cannot create %s: %s", tmp, strerror(errno));
    return EG_EIO;
  }
  bool ok = write(fd, hex, SECRET_HEX + 1) == SECRET_HEX + 1 && fsync(fd) == 0;
  close(fd);
  sodium_memzero(hex, sizeof hex);
  if (ok && link(tmp, path) != 0 && errno != EEXIST)
    ok = false;
  unlink(tmp);
  if (!ok) {
    log_error("auth: cannot write %s: %s", path, strerror(errno));
    return EG_EIO;
  }
  rc = read_secret_file(path, out, cap, len);
  if (rc != 0) {
    log_error("auth: cannot read %s: %s", path, strerror(-rc));
    return EG_EIO;
  }
  log_info("auth: created a random JWT secret in %s", path);
check:
  if (*len < 32) {
    log_error("auth: %s holds fewer than 32 characters", path);
    return EG_EINVAL;
  }
  return 0;
}

int auth_jwt_init(struct auth_jwt *j, const char *secret, const char *data_dir, int64_t ttl_s) {
  memset(j, 0, sizeof *j);
  const char *s = secret;
  if (s == NULL || *s == '\0')
    s = getenv("JWT_SECRET");
  if (s == NULL || *s == '\0')
    s = getenv("JWT_SECRETE");
  if (s != NULL && *s != '\0') {
    if (strlen(s) < 16)
      log_warn("auth: the JWT secret is short (%zu characters); use 32 or more", strlen(s));
    auth_jwt_init_key(j, s, strlen(s), ttl_s);
    return 0;
  }
  char buf[1024];
  size_t len = 0;
  int rc = secret_from_file(data_dir && *data_dir ? data_dir : ".", buf, sizeof buf, &len);
  if (rc == 0)
    auth_jwt_init_key(j, buf, len, ttl_s);
  sodium_memzero(buf, sizeof buf);
  return rc;
}

int auth_jwt_sign(const struct auth_jwt *j, const char *user_id, int64_t now_s, char **out) {
  jwt_t *t = NULL;
  int rc = EG_EINVAL;
  *out = NULL;
  if (!id_valid(user_id, user_id ? strlen(user_id) : 0) || j->secret_len == 0 ||
      j->secret_len > INT_MAX)
    return EG_EINVAL;
  if (jwt_new(&t) != 0)
    return EG_ENOMEM;
  if (jwt_add_grant(t, "id", user_id) != 0 || jwt_add_grant_int(t, "iat", (long)now_s) != 0 ||
      jwt_add_grant_int(t, "exp", (long)(now_s + j->ttl_s)) != 0 ||
      jwt_set_alg(t, JWT_ALG_HS256, j->secret, (int)j->secret_len) != 0)
    goto out;
  char *s = jwt_encode_str(t);
  if (s == NULL) {
    rc = EG_ENOMEM;
    goto out;
  }
  *out = xstrdup(s);
  free(s);
  rc = 0;
out:
  jwt_free(t);
  return rc;
}

static bool b64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_';
}

/* Decodes one base64url part (no padding, canonical trailing bits) into out. */
static int b64url_decode(const char *p, size_t n, uint8_t *out, size_t cap, size_t *len) {
  const char *end = NULL;
  if (sodium_base642bin(out, cap, p, n, NULL, len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != p + n)
    return EG_EAUTH;
  return 0;
}

static int check_header(const char *p, size_t n) {
  uint8_t raw[512];
  size_t len;
  if (n == 0 || n > 680 || b64url_decode(p, n, raw, sizeof raw, &len) != 0)
    return EG_EAUTH;
  json_t *h = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
  int rc = EG_EAUTH;
  if (json_is_object(h)) {
    json_t *alg = json_object_get(h, "alg");
    if (json_is_string(alg) && strcmp(json_string_value(alg), "HS256") == 0 &&
        json_string_length(alg) == 5)
      rc = 0;
  }
  json_decref(h);
  return rc;
}

int auth_jwt_verify(const struct auth_jwt *j, const char *token, size_t len, int64_t now_s,
                    char id_out[ID_LEN + 1]) {
  id_out[0] = '\0';
  if (token == NULL || len == 0 || len > AUTH_TOKEN_MAX || j->secret_len == 0 ||
      j->secret_len > INT_MAX)
    return EG_EAUTH;
  size_t dot[2], ndots = 0;
  for (size_t i = 0; i < len; i++) {
    if (token[i] == '.') {
      if (ndots == 2)
        return EG_EAUTH;
      dot[ndots++] = i;
    } else if (!b64url_char(token[i])) {
      return EG_EAUTH;
    }
  }
  if (ndots != 2 || dot[0] == 0 || dot[1] == dot[0] + 1 || dot[1] + 1 == len)
    return EG_EAUTH;
  if (check_header(token, dot[0]) != 0)
    return EG_EAUTH;

  uint8_t sig[64], mac[crypto_auth_hmacsha256_BYTES];
  size_t siglen;
  if (b64url_decode(token + dot[1] + 1, len - dot[1] - 1, sig, sizeof sig, &siglen) != 0 ||
      siglen != sizeof mac)
    return EG_EAUTH;
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, j->secret, j->secret_len);
  crypto_auth_hmacsha256_update(&st, (const uint8_t *)token, dot[1]);
  crypto_auth_hmacsha256_final(&st, mac);
  if (sodium_memcmp(mac, sig, sizeof mac) != 0)
    return EG_EAUTH;

  /* The signature is ours: let libjwt parse the claims (it verifies once more). */
  char *copy = xstrndup(token, len);
  jwt_t *t = NULL;
  int rc = EG_EAUTH;
  json_t *claims = NULL;
  if (jwt_decode(&t, copy, j->secret, (int)j->secret_len) != 0 || t == NULL ||
      jwt_get_alg(t) != JWT_ALG_HS256)
    goto out;
  char *cj = jwt_get_grants_json(t, NULL);
  if (cj == NULL)
    goto out;
  claims = json_loads(cj, 0, NULL);
  free(cj);
  json_t *id = json_object_get(claims, "id");
  json_t *exp = json_object_get(claims, "exp");
  if (!json_is_string(id) || !id_valid(json_string_value(id), json_string_length(id)) ||
      !json_is_integer(exp) || json_integer_value(exp) <= now_s)
    goto out;
  memcpy(id_out, json_string_value(id), ID_LEN + 1);
  rc = 0;
out:
  json_decref(claims);
  jwt_free(t);
  free(copy);
  return rc;
}
