/* The cache of chat windows (src/chat/window.c): what it returns is what the store would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chat/chat_int.h"

static const char *const CHAT = "0123456789abcdef01234567";
static const char *const USER = "aaaaaaaaaaaaaaaaaaaaaaaa";

static struct store_message_new msg(int i, const char *content, char id[ID_LEN + 1]) {
  snprintf(id, ID_LEN + 1, "%024x", i);
  struct store_message_new m = {.chat_id = CHAT,
                                .user_id = USER,
                                .role = i % 2 ? "model" : "user",
                                .content = content,
                                .created_at = 1000 + i};
  memcpy(m.id, id, ID_LEN + 1);
  return m;
}

static void test_put_get_append_ring(void **state) {
  (void)state;
  struct chat_windows *w = chat_windows_new(3, 1 << 20);
  struct store_messages out;
  assert_false(chat_windows_get(w, CHAT, &out));
  assert_int_equal(out.n, 0);
  char id[ID_LEN + 1];
  struct store_message_new m = msg(1, "one", id);
  chat_windows_append(w, &m); /* not cached: ignored */
  assert_false(chat_windows_get(w, CHAT, &out));

  /* A window of 4 from the store keeps the newest 3. */
  struct store_message v[4];
  memset(v, 0, sizeof v);
  for (int i = 0; i < 4; i++) {
    snprintf(v[i].id, sizeof v[i].id, "%024x", 10 + i);
    memcpy(v[i].chat_id, CHAT, ID_LEN + 1);
    snprintf(v[i].role, sizeof v[i].role, "user");
    v[i].content = i == 2 ? "" : "text";
    v[i].created_at = 10 + i;
  }
  struct store_messages loaded = {v, 4};
  chat_windows_put(w, CHAT, &loaded);
  assert_true(chat_windows_get(w, CHAT, &out));
  assert_int_equal(out.n, 3);
  assert_string_equal(out.v[0].id, v[1].id);
  assert_string_equal(out.v[2].id, v[3].id);
  assert_string_equal(out.v[1].content, "");
  chat_windows_release(&out);

  /* Appends push the oldest out, in order; the copies are the cache's own. */
  char c1[] = "first new", c2[] = "second new";
  m = msg(20, c1, id);
  chat_windows_append(w, &m);
  m = msg(21, c2, id);
  m.cancelled = true;
  chat_windows_append(w, &m);
  c1[0] = 'X';
  assert_true(chat_windows_get(w, CHAT, &out));
  assert_int_equal(out.n, 3);
  assert_string_equal(out.v[0].id, v[3].id);
  assert_string_equal(out.v[1].content, "first new");
  assert_string_equal(out.v[2].content, "second new");
  assert_string_equal(out.v[2].role, "model");
  assert_true(out.v[2].cancelled);
  assert_int_equal(out.v[2].created_at, 1021);
  /* The copy is the caller's: pushing the window on (freeing its oldest) leaves it. */
  char c3[] = "third new";
  m = msg(22, c3, id);
  m.client_id = "client-22";
  chat_windows_append(w, &m);
  assert_string_equal(out.v[0].content, "text");
  assert_string_equal(out.v[1].content, "first new");
  assert_null(out.v[1].client_id);
  chat_windows_release(&out);
  assert_true(chat_windows_get(w, CHAT, &out));
  assert_string_equal(out.v[2].content, "third new");
  assert_string_equal(out.v[2].client_id, "client-22");
  assert_string_equal(out.v[1].content, "second new");
  chat_windows_release(&out);

  chat_windows_drop(w, CHAT);
  assert_false(chat_windows_get(w, CHAT, &out));
  chat_windows_free(w);
}

/* Over the byte budget the least recently used chats go; the one just used stays. */
static void test_budget(void **state) {
  (void)state;
  struct chat_windows *w = chat_windows_new(4, 4096);
  static char big[1500];
  memset(big, 'x', sizeof big - 1);
  char chats[5][ID_LEN + 1];
  struct store_message one;
  memset(&one, 0, sizeof one);
  one.content = big;
  one.created_at = 1;
  snprintf(one.role, sizeof one.role, "user");
  struct store_messages l = {&one, 1};
  for (int i = 0; i < 5; i++) {
    snprintf(chats[i], sizeof chats[i], "%024x", 100 + i);
    snprintf(one.id, sizeof one.id, "%024x", 200 + i);
    memcpy(one.chat_id, chats[i], ID_LEN + 1);
    chat_windows_put(w, chats[i], &l);
  }
  struct store_messages out;
  int kept = 0;
  for (int i = 0; i < 5; i++) {
    if (chat_windows_get(w, chats[i], &out))
      kept++;
    chat_windows_release(&out);
  }
  assert_true(kept >= 1 && kept <= 2);
  assert_true(chat_windows_get(w, chats[4], &out)); /* the newest */
  chat_windows_release(&out);
  assert_false(chat_windows_get(w, chats[0], &out));
  chat_windows_put(w, "short", &l); /* not a chat id: not cached */
  assert_false(chat_windows_get(w, "short", &out));
  chat_windows_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_put_get_append_ring),
      cmocka_unit_test(test_budget),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
