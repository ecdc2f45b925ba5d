/* Password hashing (argon2id via libsodium) and email normalisation. */
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "auth.h"

_Static_assert(AUTH_HASH_MAX == crypto_pwhash_STRBYTES, "hash buffer size");

static void sodium_ready(void) {
  uint8_t b;
  rand_bytes(&b, 1); /* base initialises libsodium once */
}

int auth_password_check(size_t len, const char **why) {
  if (len < AUTH_PW_MIN) {
    *why = "Password must be at least 8 bytes long";
    return EG_EINVAL;
  }
  if (len > AUTH_PW_MAX) {
    *why = "Password must be at most 128 bytes long";
    return EG_EINVAL;
  }
  *why = NULL;
  return 0;
}

int auth_password_hash(const char *pw, size_t len, unsigned long long ops, size_t mem,
                       char out[AUTH_HASH_MAX]) {
  const char *why;
  if (auth_password_check(len, &why) != 0)
    return EG_EINVAL;
  sodium_ready();
  if (ops == 0)
    ops = AUTH_PW_OPS;
  if (mem == 0)
    mem = AUTH_PW_MEM;
  if (ops < crypto_pwhash_OPSLIMIT_MIN)
    ops = crypto_pwhash_OPSLIMIT_MIN;
  if (mem < crypto_pwhash_MEMLIMIT_MIN)
    mem = crypto_pwhash_MEMLIMIT_MIN;
  if (crypto_pwhash_str_alg(out, pw, len, ops, mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
    return EG_ENOMEM;
  return 0;
}

int auth_password_verify(const char *hash, const char *pw, size_t len) {
  sodium_ready();
  if (hash == NULL || len > AUTH_PW_MAX || strncmp(hash, "$argon2id$", 10) != 0)
    return EG_EAUTH;
  if (crypto_pwhash_str_verify(hash, pw, len) != 0)
    return EG_EAUTH;
  return 0;
}

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[AUTH_HASH_MAX];

static void dummy_init(void) {
  char pw[33];
  uint8_t raw[16];
  rand_bytes(raw, sizeof raw);
  sodium_bin2hex(pw, sizeof pw, raw, sizeof raw);
  if (auth_password_hash(pw, 32, 0, 0, dummy_hash) != 0)
    dummy_hash[0] = '\0';
}

void auth_password_dummy_verify(const char *pw, size_t len) {
  pthread_once(&dummy_once, dummy_init);
  if (len > AUTH_PW_MAX)
    len = AUTH_PW_MAX;
  if (dummy_hash[0] != '\0')
    (void)!crypto_pwhash_str_verify(dummy_hash, pw, len);
}

/* ---- emails ---------------------------------------------------------------------------- */

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

int auth_email_normalize(const char *in, size_t len, char out[AUTH_EMAIL_MAX + 1]) {
  if (in == NULL)
    return EG_EINVAL;
  while (len > 0 && is_space(in[0])) {
    in++;
    len--;
  }
  while (len > 0 && is_space(in[len - 1]))
    len--;
  if (len < 3 || len > AUTH_EMAIL_MAX)
    return EG_EINVAL;
  size_t at = len;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '(' || c == ')' || c == ',' || c == ':' ||
        c == ';' || c == '<' || c == '>' || c == '[' || c == '\\' || c == ']')
      return EG_EINVAL;
    if (c == '@') {
      if (at != len)
        return EG_EINVAL; /* a second '@' */
      at = i;
    }
    out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : (char)c;
  }
  out[len] = '\0';
  if (at == len || at == 0 || at > 64 || at + 1 == len)
    return EG_EINVAL;
  /* Local part: no leading, trailing or doubled dot. */
  if (out[0] == '.' || out[at - 1] == '.' || memmem(out, at, "..", 2) != NULL)
    return EG_EINVAL;
  /* Domain: labels separated by single dots, at least two labels, none starting or ending
     with '-'. */
  const char *d = out + at + 1;
  size_t dlen = len - at - 1, label = 0, labels = 1;
  for (size_t i = 0; i < dlen; i++) {
    char c = d[i];
    if (c == '.') {
      if (label == 0 || d[i - 1] == '-')
        return EG_EINVAL;
      labels++;
      label = 0;
      continue;
    }
    if (c == '-' && label == 0)
      return EG_EINVAL;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
          (unsigned char)c >= 0x80))
      return EG_EINVAL;
    label++;
    if (label > 63)
      return EG_EINVAL;
  }
  if (label == 0 || d[dlen - 1] == '-' || labels < 2)
    return EG_EINVAL;
  return 0;
}
