/*
 * Fuzzes JWT verification (auth_jwt_verify) and the handshake token picking.
 * Input modes, chosen by the first byte:
 *   even: the rest is a token as received (cookie value, auth.token, Bearer credentials);
 *   odd:  the rest is "HEADER_JSON\nPAYLOAD_JSON"; the fuzzer's JSON is encoded and signed
 *         with the right key, so the claim checks behind the signature get exercised.
 * A token the verifier accepts must carry a well-formed id.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

#define KEY "fuzzing-key-0123456789abcdef0123"

static char *b64(const uint8_t *p, size_t n) {
  size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  char *s = malloc(cap);
  sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return s;
}

static void check(const struct auth_jwt *j, const char *tok, size_t len) {
  char id[ID_LEN + 1];
  if (auth_jwt_verify(j, tok, len, 1700000000, id) == 0 && !id_valid(id, strlen(id)))
    abort();
  struct slice t;
  const char *msg;
  (void)auth_token_pick((struct slice){tok, len}, (struct slice){"", 0},
                        (struct slice){tok, len}, &t);
  (void)auth_handshake(j, (struct slice){tok, len}, (struct slice){tok, len},
                       (struct slice){"", 0}, 1700000000, id, &msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct auth_jwt j;
  if (j.secret == NULL)
    auth_jwt_init_key(&j, KEY, strlen(KEY), 3600);
  if (size == 0 || size > 8192)
    return 0;
  if ((data[0] & 1) == 0) {
    check(&j, (const char *)data + 1, size - 1);
    return 0;
  }
  const uint8_t *p = data + 1, *nl = memchr(p, '\n', size - 1);
  if (nl == NULL)
    return 0;
  char *h = b64(p, (size_t)(nl - p));
  char *pl = b64(nl + 1, size - 1 - (size_t)(nl + 1 - p));
  size_t n = strlen(h) + strlen(pl) + 1;
  char *tok = malloc(n + 50);
  memcpy(tok, h, strlen(h));
  tok[strlen(h)] = '.';
  memcpy(tok + strlen(h) + 1, pl, strlen(pl));
  uint8_t mac[32];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, (const uint8_t *)KEY, strlen(KEY));
  crypto_auth_hmacsha256_update(&st, (const uint8_t *)tok, n);
  crypto_auth_hmacsha256_final(&st, mac);
  char *sig = b64(mac, sizeof mac);
  tok[n] = '.';
  memcpy(tok + n + 1, sig, strlen(sig) + 1);
  check(&j, tok, strlen(tok));
  free(h);
  free(pl);
  free(sig);
  free(tok);
  return 0;
}
