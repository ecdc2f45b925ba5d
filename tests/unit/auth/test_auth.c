/* Unit tests for src/auth: JWT, passwords, emails, throttle, token extraction, origins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jwt.h>
#include <sodium.h>

#include "auth/auth.h"

#define KEY "0123456789abcdef0123456789abcdef"
#define UID "5f0000000123456789abcdef"
#define NOW 1700000000

static char *b64(const void *p, size_t n) {
  size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  char *s = malloc(cap);
  sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return s;
}

/* Builds header.payload.signature by hand, HMAC-SHA-256 with key (or no signature when
   key is NULL). */
static char *forge(const char *header, const char *payload, const char *key) {
  char *h = b64(header, strlen(header)), *p = b64(payload, strlen(payload));
  size_t n = strlen(h) + strlen(p) + 2;
  char *msg = malloc(n);
  snprintf(msg, n, "%s.%s", h, p);
  char *sig = strdup("");
  if (key != NULL) {
    uint8_t mac[32];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const uint8_t *)key, strlen(key));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)msg, strlen(msg));
    crypto_auth_hmacsha256_final(&st, mac);
    free(sig);
    sig = b64(mac, sizeof mac);
  }
  size_t tn = strlen(msg) + strlen(sig) + 2;
  char *tok = malloc(tn);
  snprintf(tok, tn, "%s.%s", msg, sig);
  free(h);
  free(p);
  free(msg);
  free(sig);
  return tok;
}

static int verify(const struct auth_jwt *j, const char *tok, char id[ID_LEN + 1]) {
  return auth_jwt_verify(j, tok, strlen(tok), NOW, id);
}

static void test_jwt_roundtrip(void **state) {
  (void)state;
  struct auth_jwt j;
  auth_jwt_init_key(&j, KEY, strlen(KEY), 3600);
  char *tok = NULL, id[ID_LEN + 1];
  assert_int_equal(auth_jwt_sign(&j, UID, NOW, &tok), 0);
  assert_int_equal(verify(&j, tok, id), 0);
  assert_string_equal(id, UID);
  /* libjwt decodes it too, with the claims we promised. */
  jwt_t *t = NULL;
  assert_int_equal(jwt_decode(&t, tok, (const unsigned char *)KEY, (int)strlen(KEY)), 0);
  assert_string_equal(jwt_get_grant(t, "id"), UID);
  assert_int_equal(jwt_get_grant_int(t, "iat"), NOW);
  assert_int_equal(jwt_get_grant_int(t, "exp"), NOW + 3600);
  jwt_free(t);
  /* Expired one second after its life. */
  assert_int_equal(auth_jwt_verify(&j, tok, strlen(tok), NOW + 3599, id), 0);
  assert_int_equal(auth_jwt_verify(&j, tok, strlen(tok), NOW + 3600, id), EG_EAUTH);
  assert_string_equal(id, "");
  /* Bad ids are not signed. */
  char *bad = NULL;
  assert_int_equal(auth_jwt_sign(&j, "nothex", NOW, &bad), EG_EINVAL);
  assert_null(bad);
  free(tok);
  auth_jwt_free(&j);
}

static void test_jwt_speed(void **state) {
  (void)state;
  struct auth_jwt j;
  auth_jwt_init_key(&j, KEY, strlen(KEY), 3600);
  char *tok = NULL, id[ID_LEN + 1];
  assert_int_equal(auth_jwt_sign(&j, UID, NOW, &tok), 0);
  enum { N = 3000 };
  uint64_t t0 = clock_mono_ns();
  for (int i = 0; i < N; i++)
    assert_int_equal(verify(&j, tok, id), 0);
  uint64_t t1 = clock_mono_ns();
  for (int i = 0; i < N; i++) {
    char *t = NULL;
    assert_int_equal(auth_jwt_sign(&j, UID, NOW, &t), 0);
    free(t);
  }
  uint64_t t2 = clock_mono_ns();
  printf("JWT HS256: verify %.2f us, sign %.2f us (one core)\n", (double)(t1 - t0) / N / 1e3,
         (double)(t2 - t1) / N / 1e3);
  free(tok);
  auth_jwt_free(&j);
}

static void test_jwt_refusals(void **state) {
  (void)state;
  struct auth_jwt j;
  auth_jwt_init_key(&j, KEY, strlen(KEY), 3600);
  char id[ID_LEN + 1];
  const char *good = "{\"id\":\"" UID "\",\"iat\":1700000000,\"exp\":1700003600}";
  struct {
    const char *header, *payload, *key;
    int want;
  } cases[] = {
      {"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", good, KEY, 0},
      {"{\"alg\":\"none\",\"typ\":\"JWT\"}", good, NULL, EG_EAUTH},
      {"{\"alg\":\"none\",\"typ\":\"JWT\"}", good, KEY, EG_EAUTH},
      {"{\"alg\":\"NONE\"}", good, NULL, EG_EAUTH},
      {"{\"alg\":\"HS512\"}", good, KEY, EG_EAUTH},
      {"{\"alg\":\"RS256\"}", good, KEY, EG_EAUTH},
      {"{\"typ\":\"JWT\"}", good, KEY, EG_EAUTH},
      {"[\"HS256\"]", good, KEY, EG_EAUTH},
      {"{\"alg\":\"HS256\"}", good, "another secret, same length!!!!!", EG_EAUTH},
      {"{\"alg\":\"HS256\"}", "{\"id\":\"" UID "\",\"exp\":1699999999}", KEY, EG_EAUTH},
      {"{\"alg\":\"HS256\"}", "{\"id\":\"" UID "\",\"exp\":1700000000}", KEY, EG_EAUTH},
      {"{\"alg\":\"HS256\"}", "{\"id\":\"" UID "\"}", KEY, EG_EAUTH},
      {"{\"alg\":\"HS256\"}", "{\"id\":\"" UID "\",\"exp\":\"9999999999\"}", KEY, EG_EAUTH},
      {"{\"alg\":\"HS256\"}", "{\"exp\":1700003600}", KEY, EG_EAUTH},
      {"{\"alg\":\"HS256\"}", "{\"id\":42,\"exp\":1700003600}", KEY, EG_EAUTH},
      {"{\"alg\":\"HS256\"}", "{\"id\":\"5F0000000123456789ABCDEF\",\"exp\":1700003600}", KEY,
       EG_EAUTH},
      {"{\"alg\":\"HS256\"}", "{\"id\":\"admin\",\"exp\":1700003600}", KEY, EG_EAUTH},
      {"{\"alg\":\"HS256\"}", "not json", KEY, EG_EAUTH},
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(cases); i++) {
    char *tok = forge(cases[i].header, cases[i].payload, cases[i].key);
    int rc = verify(&j, tok, id);
    if (rc != cases[i].want)
      fail_msg("case %zu (%s %s): got %d want %d", i, cases[i].header, cases[i].payload, rc,
               cases[i].want);
    free(tok);
  }
  auth_jwt_free(&j);
}

static void test_jwt_tampered(void **state) {
  (void)state;
  struct auth_jwt j;
  auth_jwt_init_key(&j, KEY, strlen(KEY), 3600);
  char *tok = NULL, id[ID_LEN + 1];
  assert_int_equal(auth_jwt_sign(&j, UID, NOW, &tok), 0);
  size_t n = strlen(tok);
  /* Flip every character to another base64url one: never accepted. */
  for (size_t i = 0; i < n; i++) {
    if (tok[i] == '.')
      continue;
    char save = tok[i];
    tok[i] = save == 'A' ? 'B' : 'A';
    assert_int_equal(verify(&j, tok, id), EG_EAUTH);
    tok[i] = save;
  }
  /* Every prefix and a few malformed shapes. */
  for (size_t i = 0; i < n; i++)
    assert_int_equal(auth_jwt_verify(&j, tok, i, NOW, id), EG_EAUTH);
  char *more = malloc(n + 3);
  snprintf(more, n + 3, "%s.x", tok);
  assert_int_equal(verify(&j, more, id), EG_EAUTH);
  snprintf(more, n + 3, "%s=", tok);
  assert_int_equal(verify(&j, more, id), EG_EAUTH);
  free(more);
  assert_int_equal(verify(&j, "..", id), EG_EAUTH);
  assert_int_equal(verify(&j, "a.b.c", id), EG_EAUTH);
  assert_int_equal(verify(&j, "", id), EG_EAUTH);
  /* A payload swapped in from another token of the same key is refused. */
  char *tok2 = NULL;
  assert_int_equal(auth_jwt_sign(&j, "5f00000000000000000000aa", NOW, &tok2), 0);
  char *d1 = strchr(tok, '.'), *d2 = strchr(tok2, '.');
  char *s1 = strrchr(tok, '.'), *s2 = strrchr(tok2, '.');
  char mixed[1024];
  snprintf(mixed, sizeof mixed, "%.*s%.*s%s", (int)(d1 - tok), tok, (int)(s2 - d2), d2, s1);
  assert_int_equal(verify(&j, mixed, id), EG_EAUTH);
  assert_int_equal(verify(&j, tok, id), 0);
  assert_int_equal(verify(&j, tok2, id), 0);
  assert_string_equal(id, "5f00000000000000000000aa");
  free(tok);
  free(tok2);
  /* Re-signed with another secret. */
  struct auth_jwt other;
  auth_jwt_init_key(&other, "x", 1, 3600);
  assert_int_equal(auth_jwt_sign(&other, UID, NOW, &tok), 0);
  assert_int_equal(verify(&j, tok, id), EG_EAUTH);
  assert_int_equal(verify(&other, tok, id), 0);
  free(tok);
  auth_jwt_free(&other);
  auth_jwt_free(&j);
}

static void test_jwt_secret_file(void **state) {
  (void)state;
  char dir[] = "/tmp/engram-auth-XXXXXX";
  assert_non_null(mkdtemp(dir));
  unsetenv("JWT_SECRET");
  unsetenv("JWT_SECRETE");
  struct auth_jwt a, b, c;
  assert_int_equal(auth_jwt_init(&a, "", dir, 0), 0);
  assert_int_equal(a.secret_len, 64);
  assert_int_equal(a.ttl_s, 7 * 24 * 3600);
  char path[300];
  snprintf(path, sizeof path, "%s/jwt.secret", dir);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(auth_jwt_init(&b, NULL, dir, 60), 0); /* reused */
  assert_int_equal(b.secret_len, 64);
  assert_memory_equal(a.secret, b.secret, 64);
  /* Environment beats the file; the misspelt name is accepted. */
  setenv("JWT_SECRETE", "from-the-old-name-0123456789", 1);
  assert_int_equal(auth_jwt_init(&c, NULL, dir, 60), 0);
  assert_memory_equal(c.secret, "from-the-old-name-0123456789", c.secret_len);
  auth_jwt_free(&c);
  setenv("JWT_SECRET", "from-the-right-name-0123456789", 1);
  assert_int_equal(auth_jwt_init(&c, NULL, dir, 60), 0);
  assert_memory_equal(c.secret, "from-the-right-name-0123456789", c.secret_len);
  auth_jwt_free(&c);
  assert_int_equal(auth_jwt_init(&c, "explicit-secret-wins-0123456789", dir, 60), 0);
  assert_memory_equal(c.secret, "explicit-secret-wins-0123456789", c.secret_len);
  auth_jwt_free(&c);
  unsetenv("JWT_SECRET");
  unsetenv("JWT_SECRETE");
  /* A truncated file is refused rather than used. */
  FILE *f = fopen(path, "w");
  fputs("short\n", f);
  fclose(f);
  assert_int_equal(auth_jwt_init(&c, NULL, dir, 60), EG_EINVAL);
  unlink(path);
  rmdir(dir);
  auth_jwt_free(&a);
  auth_jwt_free(&b);
}

static void test_passwords(void **state) {
  (void)state;
  const char *why;
  assert_int_equal(auth_password_check(7, &why), EG_EINVAL);
  assert_non_null(strstr(why, "at least 8"));
  assert_int_equal(auth_password_check(129, &why), EG_EINVAL);
  assert_non_null(strstr(why, "at most 128"));
  assert_int_equal(auth_password_check(8, &why), 0);
  assert_int_equal(auth_password_check(128, &why), 0);

  char h1[AUTH_HASH_MAX], h2[AUTH_HASH_MAX];
  /* Minimal cost keeps the test quick; the parameters travel in the hash. */
  assert_int_equal(auth_password_hash("correct horse", 13, 1, 8192, h1), 0);
  assert_int_equal(strncmp(h1, "$argon2id$", 10), 0);
  assert_int_equal(auth_password_hash("correct horse", 13, 1, 8192, h2), 0);
  assert_string_not_equal(h1, h2); /* salted */
  assert_int_equal(auth_password_verify(h1, "correct horse", 13), 0);
  assert_int_equal(auth_password_verify(h2, "correct horse", 13), 0);
  assert_int_equal(auth_password_verify(h1, "correct horsE", 13), EG_EAUTH);
  assert_int_equal(auth_password_verify(h1, "correct hors", 12), EG_EAUTH);
  assert_int_equal(auth_password_verify("garbage", "correct horse", 13), EG_EAUTH);
  assert_int_equal(auth_password_verify(NULL, "correct horse", 13), EG_EAUTH);
  assert_int_equal(auth_password_hash("short", 5, 1, 8192, h1), EG_EINVAL);
  char big[200];
  memset(big, 'x', sizeof big);
  assert_int_equal(auth_password_hash(big, 129, 1, 8192, h1), EG_EINVAL);
  /* Bytes after a NUL count (the length is explicit). */
  assert_int_equal(auth_password_hash("abc\0defgh", 9, 1, 8192, h1), 0);
  assert_int_equal(auth_password_verify(h1, "abc\0defgh", 9), 0);
  assert_int_equal(auth_password_verify(h1, "abc\0defgX", 9), EG_EAUTH);

  /* Default cost: measure the hash and check the dummy verify costs about the same. */
  uint64_t t0 = clock_mono_ns();
  assert_int_equal(auth_password_hash("correct horse", 13, 0, 0, h1), 0);
  uint64_t t1 = clock_mono_ns();
  assert_non_null(strstr(h1, "m=24576,t=3,p=1"));
  auth_password_dummy_verify("whatever", 8); /* first call builds the dummy hash */
  uint64_t t2 = clock_mono_ns();
  auth_password_dummy_verify("whatever", 8);
  uint64_t t3 = clock_mono_ns();
  assert_int_equal(auth_password_verify(h1, "wrong password", 14), EG_EAUTH);
  uint64_t t4 = clock_mono_ns();
  double hash_ms = (double)(t1 - t0) / 1e6, dummy_ms = (double)(t3 - t2) / 1e6,
         verify_ms = (double)(t4 - t3) / 1e6;
  printf("argon2id default cost: hash %.1f ms, verify %.1f ms, dummy verify %.1f ms\n", hash_ms,
         verify_ms, dummy_ms);
  assert_true(dummy_ms > verify_ms * 0.5 && dummy_ms < verify_ms * 2.0);
}

static void test_emails(void **state) {
  (void)state;
  char out[AUTH_EMAIL_MAX + 1];
  struct {
    const char *in, *want;
  } ok[] = {
      {"a@b.co", "a@b.co"},
      {"  Alice.Smith+tag@Example.COM \t", "alice.smith+tag@example.com"},
      {"x_y-z@sub.domain-x.org", "x_y-z@sub.domain-x.org"},
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(ok); i++) {
    assert_int_equal(auth_email_normalize(ok[i].in, strlen(ok[i].in), out), 0);
    assert_string_equal(out, ok[i].want);
  }
  const char *bad[] = {"",          "   ",         "plain",     "@b.co",     "a@",
                       "a@b",       "a@@b.co",     "a@b@c.co",  "a b@c.co",  "a@b..co",
                       "a@.b.co",   "a@b.co.",     ".a@b.co",   "a.@b.co",   "a..b@c.co",
                       "a@-b.co",   "a@b-.co",     "a@b_c.co",  "a<b>@c.co", "a@b.c\no",
                       "a\"b@c.co", "a@[1.2.3.4]", "a\x01@b.co"};
  for (size_t i = 0; i < EG_ARRAY_LEN(bad); i++)
    if (auth_email_normalize(bad[i], strlen(bad[i]), out) != EG_EINVAL)
      fail_msg("accepted bad email '%s'", bad[i]);
  /* Length: 254 accepted, 255 refused. */
  for (size_t n = 240; n < 260; n++) {
    char tmp[300];
    size_t d = n - 2; /* domain length */
    memset(tmp, 'a', n);
    memcpy(tmp, "x@", 2);
    for (size_t k = 50; k <= 200; k += 50)
      tmp[2 + k] = '.';
    memcpy(tmp + n - 3, ".co", 3);
    (void)d;
    int rc = auth_email_normalize(tmp, n, out);
    assert_int_equal(rc, n <= AUTH_EMAIL_MAX ? 0 : EG_EINVAL);
  }
  /* Local part over 64 bytes. */
  char loc[80];
  memset(loc, 'a', 65);
  memcpy(loc + 65, "@b.co", 6);
  assert_int_equal(auth_email_normalize(loc, strlen(loc), out), EG_EINVAL);
  assert_int_equal(auth_email_normalize(loc + 1, strlen(loc + 1), out), 0);
}

static void test_throttle(void **state) {
  (void)state;
  struct auth_throttle *t = auth_throttle_new(64, 3, 60000);
  int ra;
  struct slice k = SLICE_LIT("e:alice@example.com");
  int64_t now = 1000000;
  assert_int_equal(auth_throttle_check(t, k, now, &ra), 0);
  auth_throttle_fail(t, k, now);
  auth_throttle_fail(t, k, now + 1000);
  assert_int_equal(auth_throttle_check(t, k, now + 1000, &ra), 0);
  auth_throttle_fail(t, k, now + 2000);
  assert_int_equal(auth_throttle_check(t, k, now + 2000, &ra), EG_ELIMIT);
  assert_int_equal(ra, 58); /* window opened at now */
  assert_int_equal(auth_throttle_check(t, SLICE_LIT("e:bob@example.com"), now, &ra), 0);
  assert_int_equal(auth_throttle_check(t, k, now + 59500, &ra), EG_ELIMIT);
  assert_int_equal(ra, 1);
  assert_int_equal(auth_throttle_check(t, k, now + 60000, &ra), 0); /* window over */
  auth_throttle_fail(t, k, now + 60000);                            /* a new window */
  assert_int_equal(auth_throttle_check(t, k, now + 60001, &ra), 0);
  auth_throttle_fail(t, k, now + 60002);
  auth_throttle_fail(t, k, now + 60003);
  assert_int_equal(auth_throttle_check(t, k, now + 60004, &ra), EG_ELIMIT);
  auth_throttle_clear(t, k);
  assert_int_equal(auth_throttle_check(t, k, now + 60005, &ra), 0);

  /* Bounded memory: a flood of other keys leaves a locked key locked (locked entries are
     evicted last) as long as the flooders fail fewer times. */
  for (int i = 0; i < 3; i++)
    auth_throttle_fail(t, k, now + 70000);
  char key[64];
  for (int i = 0; i < 100000; i++) {
    int n = snprintf(key, sizeof key, "ip:10.0.%d.%d", i / 256, i % 256);
    auth_throttle_fail(t, (struct slice){key, (size_t)n}, now + 70001);
  }
  assert_int_equal(auth_throttle_check(t, k, now + 70002, &ra), EG_ELIMIT);
  auth_throttle_free(t);
}

static void test_cookie_and_pick(void **state) {
  (void)state;
  struct slice v;
  assert_true(auth_cookie_get(SLICE_LIT("token=abc"), "token", &v));
  assert_true(slice_eq_cstr(v, "abc"));
  assert_true(auth_cookie_get(SLICE_LIT("a=1; token=x.y.z ;b=2"), "token", &v));
  assert_true(slice_eq_cstr(v, "x.y.z"));
  assert_true(auth_cookie_get(SLICE_LIT("mytoken=no; token=\"q\""), "token", &v));
  assert_true(slice_eq_cstr(v, "q"));
  assert_false(auth_cookie_get(SLICE_LIT("tokens=1; xtoken=2; token"), "token", &v));
  assert_false(auth_cookie_get(SLICE_LIT(""), "token", &v));
  assert_true(auth_cookie_get(SLICE_LIT("token="), "token", &v));
  assert_int_equal(v.len, 0);
  /* Every split point of a longer header finds the same value when whole. */
  const char *hdr = "theme=dark; sid=1; token=aaa.bbb.ccc; z=9";
  for (size_t cut = 0; cut <= strlen(hdr); cut++) {
    bool found = auth_cookie_get((struct slice){hdr, cut}, "token", &v);
    if (cut >= strlen("theme=dark; sid=1; token=aaa.bbb.ccc"))
      assert_true(found && slice_eq_cstr(v, "aaa.bbb.ccc"));
    else if (found)
      assert_true(v.len < 11);
  }

  struct slice tok, none = {"", 0};
  assert_int_equal(
      auth_token_pick(SLICE_LIT("token=C"), SLICE_LIT("A"), SLICE_LIT("Bearer B"), &tok),
      AUTH_SRC_COOKIE);
  assert_true(slice_eq_cstr(tok, "C"));
  assert_int_equal(
      auth_token_pick(SLICE_LIT("token="), SLICE_LIT("A"), SLICE_LIT("Bearer B"), &tok),
      AUTH_SRC_AUTH);
  assert_true(slice_eq_cstr(tok, "A"));
  assert_int_equal(auth_token_pick(SLICE_LIT("x=1"), none, SLICE_LIT("bearer   B  "), &tok),
                   AUTH_SRC_BEARER);
  assert_true(slice_eq_cstr(tok, "B"));
  assert_int_equal(auth_token_pick(none, none, SLICE_LIT("Basic dXNlcjpwYXNz"), &tok),
                   AUTH_SRC_NONE);
  assert_int_equal(auth_token_pick(none, none, SLICE_LIT("Bearer "), &tok), AUTH_SRC_NONE);
  assert_int_equal(auth_token_pick(none, none, SLICE_LIT("BearerX"), &tok), AUTH_SRC_NONE);
  assert_int_equal(auth_token_pick(none, none, none, &tok), AUTH_SRC_NONE);
}

static void test_handshake(void **state) {
  (void)state;
  struct auth_jwt j;
  auth_jwt_init_key(&j, KEY, strlen(KEY), 3600);
  char *tok = NULL, id[ID_LEN + 1], cookie[600], bearer[600];
  const char *msg;
  struct slice none = {"", 0};
  assert_int_equal(auth_jwt_sign(&j, UID, NOW, &tok), 0);
  snprintf(cookie, sizeof cookie, "a=b; token=%s", tok);
  snprintf(bearer, sizeof bearer, "Bearer %s", tok);
  assert_int_equal(auth_handshake(&j, none, none, none, NOW, id, &msg), EG_EAUTH);
  assert_string_equal(msg, AUTH_MSG_NO_TOKEN);
  assert_string_equal(msg, "Authentication error: No token provided");
  assert_int_equal(auth_handshake(&j, slice_from_cstr(cookie), none, none, NOW, id, &msg), 0);
  assert_string_equal(id, UID);
  assert_int_equal(auth_handshake(&j, none, slice_from_cstr(tok), none, NOW, id, &msg), 0);
  assert_int_equal(auth_handshake(&j, none, none, slice_from_cstr(bearer), NOW, id, &msg), 0);
  assert_int_equal(
      auth_handshake(&j, none, SLICE_LIT("junk"), slice_from_cstr(bearer), NOW, id, &msg),
      EG_EAUTH);
  assert_string_equal(msg, "Authentication error: Invalid token");
  assert_int_equal(
      auth_handshake(&j, slice_from_cstr(cookie), none, none, NOW + 7200, id, &msg), EG_EAUTH);
  assert_string_equal(msg, AUTH_MSG_INVALID_TOKEN);
  assert_string_equal(AUTH_MSG_USER_NOT_FOUND, "Authentication error: User not found");
  free(tok);
  auth_jwt_free(&j);
}

static void test_origin(void **state) {
  (void)state;
  struct slice host = SLICE_LIT("localhost:3000");
  assert_true(auth_origin_allowed(SLICE_LIT(""), host, "http", "", ""));
  assert_true(auth_origin_allowed(SLICE_LIT("http://localhost:3000"), host, "http", "", ""));
  assert_true(auth_origin_allowed(SLICE_LIT("HTTP://LocalHost:3000/"), host, "http", "", ""));
  assert_false(auth_origin_allowed(SLICE_LIT("http://localhost:3001"), host, "http", "", ""));
  assert_false(auth_origin_allowed(SLICE_LIT("https://localhost:3000"), host, "http", "", ""));
  assert_false(auth_origin_allowed(SLICE_LIT("http://evil.example"), host, "http", "", ""));
  assert_false(auth_origin_allowed(SLICE_LIT("http://localhost:3000.evil.example"), host,
                                   "http", "", ""));
  assert_false(auth_origin_allowed(SLICE_LIT("null"), host, "http", "", ""));
  assert_false(
      auth_origin_allowed(SLICE_LIT("http://localhost:3000"), SLICE_LIT(""), "http", "", ""));
  /* Default ports. */
  assert_true(auth_origin_allowed(SLICE_LIT("http://chat.example"),
                                  SLICE_LIT("chat.example:80"), "http", "", ""));
  assert_true(auth_origin_allowed(SLICE_LIT("https://chat.example:443"),
                                  SLICE_LIT("chat.example"), "https", "", ""));
  assert_true(auth_origin_allowed(SLICE_LIT("http://[::1]:3000"), SLICE_LIT("[::1]:3000"),
                                  "http", "", ""));
  /* public_url replaces the Host header. */
  assert_true(auth_origin_allowed(SLICE_LIT("https://chat.example"), host, "http",
                                  "https://chat.example/", ""));
  assert_false(auth_origin_allowed(SLICE_LIT("http://localhost:3000"), host, "http",
                                   "https://chat.example", ""));
  /* Allow list. */
  const char *allow = "http://app.example:8080, https://other.example";
  assert_true(
      auth_origin_allowed(SLICE_LIT("http://app.example:8080"), host, "http", "", allow));
  assert_true(auth_origin_allowed(SLICE_LIT("https://other.example"), host, "http", "", allow));
  assert_false(auth_origin_allowed(SLICE_LIT("http://other.example"), host, "http", "", allow));
  assert_false(auth_origin_allowed(SLICE_LIT("http://app.example"), host, "http", "", allow));
  assert_true(auth_origin_allowed(SLICE_LIT("http://anything.example"), host, "http", "", "*"));
  assert_false(auth_origin_allowed(SLICE_LIT("null"), host, "http", "", "*"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_jwt_roundtrip),   cmocka_unit_test(test_jwt_speed),
      cmocka_unit_test(test_jwt_refusals),    cmocka_unit_test(test_jwt_tampered),
      cmocka_unit_test(test_jwt_secret_file), cmocka_unit_test(test_passwords),
      cmocka_unit_test(test_emails),          cmocka_unit_test(test_throttle),
      cmocka_unit_test(test_cookie_and_pick), cmocka_unit_test(test_handshake),
      cmocka_unit_test(test_origin),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
