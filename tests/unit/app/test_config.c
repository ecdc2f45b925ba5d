/* Unit tests for the configuration table: defaults, environment, flags, derived values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "app/config.h"
#include "base/base.h"

static const char *const vars[] = {"PORT", "JWT_SECRET", "JWT_SECRETE", "GEMINI_API_KEY",
                                   "OPENAI_BASE_URL", "ENGRAM_LLM", "ENGRAM_DB",
                                   "ENGRAM_DATA_DIR", "PINECONE_API_KEY",
                                   "PINECONE_INDEX_HOST", "ENGRAM_VECTORS"};

static int clean_env(void **state) {
  (void)state;
  for (size_t i = 0; i < EG_ARRAY_LEN(vars); i++)
    unsetenv(vars[i]);
  return 0;
}

static void test_defaults(void **state) {
  (void)state;
  struct config c;
  char *argv[] = {"engram", NULL};
  assert_int_equal(config_load(&c, 1, argv, 1, NULL, NULL, stderr), 0);
  assert_int_equal(c.port, 3000);
  assert_string_equal(c.db, "data/engram.db");
  assert_string_equal(c.llm, "offline");
  assert_string_equal(c.vectors, "builtin");
  assert_string_equal(c.embedder, "hash");
  assert_int_equal(c.recall_k, 3);
  assert_int_equal(c.history, 20);
  assert_int_equal(c.max_content, 65536);
  assert_false(c.cookie_secure);
  config_free(&c);
}

static void test_env_and_flags(void **state) {
  (void)state;
  setenv("PORT", "4000", 1);
  setenv("JWT_SECRETE", "old-spelling", 1);
  setenv("GEMINI_API_KEY", "k", 1);
  struct config c;
  char *argv[] = {"engram", "serve", "--port", "5000", "--data-dir=/tmp/x", "--cookie-secure",
                  "extra", NULL};
  char **rest;
  int nrest;
  assert_int_equal(config_load(&c, 7, argv, 1, &rest, &nrest, stderr), 0);
  assert_int_equal(c.port, 5000); /* the flag beats the environment */
  assert_string_equal(c.jwt_secret, "old-spelling");
  assert_string_equal(c.llm, "gemini");
  assert_string_equal(c.db, "/tmp/x/engram.db");
  assert_true(c.cookie_secure);
  assert_int_equal(nrest, 2);
  assert_string_equal(rest[0], "serve");
  assert_string_equal(rest[1], "extra");
  config_free(&c);
  setenv("JWT_SECRET", "new", 1);
  assert_int_equal(config_load(&c, 1, argv, 1, NULL, NULL, stderr), 0);
  assert_string_equal(c.jwt_secret, "new"); /* JWT_SECRET wins over JWT_SECRETE */
  config_free(&c);
}

static void test_bad_values(void **state) {
  (void)state;
  struct config c;
  FILE *devnull = fopen("/dev/null", "w");
  char *a1[] = {"engram", "--port", "x", NULL};
  assert_int_equal(config_load(&c, 3, a1, 1, NULL, NULL, devnull), EG_EINVAL);
  config_free(&c);
  char *a2[] = {"engram", "--port", "70000", NULL};
  assert_int_equal(config_load(&c, 3, a2, 1, NULL, NULL, devnull), EG_EINVAL);
  config_free(&c);
  char *a3[] = {"engram", "--llm", "gpt", NULL};
  assert_int_equal(config_load(&c, 3, a3, 1, NULL, NULL, devnull), EG_EINVAL);
  config_free(&c);
  char *a4[] = {"engram", "--port", NULL};
  assert_int_equal(config_load(&c, 2, a4, 1, NULL, NULL, devnull), EG_EINVAL);
  config_free(&c);
  fclose(devnull);
}

static void test_pinecone_auto(void **state) {
  (void)state;
  setenv("PINECONE_API_KEY", "k", 1);
  struct config c;
  char *argv[] = {"engram", NULL};
  assert_int_equal(config_load(&c, 1, argv, 1, NULL, NULL, stderr), 0);
  assert_string_equal(c.vectors, "builtin"); /* both are needed */
  config_free(&c);
  setenv("PINECONE_INDEX_HOST", "https://i.example", 1);
  assert_int_equal(config_load(&c, 1, argv, 1, NULL, NULL, stderr), 0);
  assert_string_equal(c.vectors, "pinecone");
  config_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_defaults, clean_env),
      cmocka_unit_test_setup(test_env_and_flags, clean_env),
      cmocka_unit_test_setup(test_bad_values, clean_env),
      cmocka_unit_test_setup(test_pinecone_auto, clean_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
