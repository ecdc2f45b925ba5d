/*
 * chat_prefill: fills a SQLite store for the pipeline benchmark, directly through the
 * storage interface (the server is not running).
 *
 *   chat_prefill --db PATH --users U --chats C --memories M --out PAIRS
 *
 * Creates U users, each with M memories (messages of an "archive" chat, embedded with the
 * hash embedder, recorded as the server does: model and dims, the vector derived again
 * when the user loads) and C empty chats to talk in, and writes one line
 * "<user id> <chat id>" per talking chat to PAIRS (the load generator's input).
 * Deterministic texts: synthetic first-person sentences from a small vocabulary.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "base/base.h"
#include "memory/memory.h"
#include "store/store.h"

/* A vocabulary of 4,096 pseudo-words (two or three syllables): real conversations use
   thousands of distinct words, each in a small share of the messages, and that is what the
   keyword side's cost depends on (a benchmark whose every message shares its words with
   every query would measure a corpus nobody has). chatload draws from the same words. */
static const char *const syl[] = {"ka", "lo", "mi", "ren", "tu", "sa", "vel", "do",
                                  "ni", "par", "go", "ze", "fin", "ha", "bro", "li"};
static void word(uint64_t r, char *out, size_t cap) {
  snprintf(out, cap, "%s%s%s", syl[r & 15], syl[(r >> 4) & 15], (r >> 8) & 1 ? syl[(r >> 9) & 15] : "");
}

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

int main(int argc, char **argv) {
  const char *db = NULL, *out = NULL;
  int users = 10, chats = 10, memories = 10000;
  static const struct option lo[] = {{"db", 1, 0, 'd'},       {"users", 1, 0, 'u'},
                                     {"chats", 1, 0, 'c'},    {"memories", 1, 0, 'm'},
                                     {"out", 1, 0, 'o'},      {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'd': db = optarg; break;
    case 'u': users = atoi(optarg); break;
    case 'c': chats = atoi(optarg); break;
    case 'm': memories = atoi(optarg); break;
    case 'o': out = optarg; break;
    default: return 2;
    }
  }
  if (!db || !out || users < 1 || chats < 1 || memories < 0) {
    fprintf(stderr, "usage: chat_prefill --db PATH --users U --chats C --memories M --out F\n");
    return 2;
  }
  struct store *s;
  if (store_open(db, ".", &s) != 0) {
    fprintf(stderr, "chat_prefill: cannot open %s\n", db);
    return 1;
  }
  FILE *pairs = fopen(out, "w");
  if (!pairs) {
    perror(out);
    return 1;
  }
  char hash[AUTH_HASH_MAX];
  if (auth_password_hash("bench-password", 14, 0, 0, hash) != 0)
    return 1;
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  const size_t batch = 500;
  float *vec = xmalloc(batch * MEM_DIM * sizeof *vec);
  struct store_message_new *m = xcalloc(batch, sizeof *m);
  char(*texts)[160] = xcalloc(batch, sizeof *texts);
  int *st = xcalloc(batch, sizeof *st);
  uint64_t t0 = clock_mono_ms();
  for (int u = 0; u < users; u++) {
    char email[64];
    snprintf(email, sizeof email, "bench%d@example.com", u);
    struct store_user_new nu = {.email = email, .password_hash = hash, .first_name = "Bench",
                                .last_name = "User"};
    if (store_user_create(s, &nu) != 0) {
      fprintf(stderr, "chat_prefill: cannot create %s (is the database new?)\n", email);
      return 1;
    }
    struct store_chat archive = {.title = "archive"};
    memcpy(archive.user_id, nu.id, sizeof archive.user_id);
    if (store_chat_create(s, &archive) != 0)
      return 1;
    int64_t when = clock_wall_ms() - (int64_t)memories * 60000;
    for (int done = 0; done < memories;) {
      size_t n = (size_t)(memories - done) < batch ? (size_t)(memories - done) : batch;
      for (size_t i = 0; i < n; i++) {
        char w[5][16];
        for (int k = 0; k < 5; k++)
          word(rnd(&seed) % 4096, w[k], sizeof w[k]);
        snprintf(texts[i], sizeof texts[i], "I told %s that the %s %s is next to the %s %s.", w[0],
                 w[1], w[2], w[3], w[4]);
        m[i] = (struct store_message_new){.chat_id = archive.id, .user_id = nu.id,
                                          .role = "user", .content = texts[i]};
        when += 60000;
        m[i].created_at = when;
        id_new_at(m[i].id, (uint32_t)(when / 1000));
        /* Embedded with the message (one transaction per batch), like the server's
           messages: the vector itself is not stored (vec_derived). */
        mem_hash_embed(texts[i], strlen(texts[i]), vec + i * MEM_DIM);
        m[i].vec = vec + i * MEM_DIM;
        m[i].dims = MEM_DIM;
        m[i].embed_model = MEM_HASH_MODEL;
        m[i].vec_derived = true;
      }
      if (store_message_insert_batch(s, m, n, st) != 0)
        return 1;
      for (size_t i = 0; i < n; i++)
        if (st[i] != 0)
          return 1;
      done += (int)n;
    }
    for (int k = 0; k < chats; k++) {
      struct store_chat ch = {.title = "bench"};
      memcpy(ch.user_id, nu.id, sizeof ch.user_id);
      if (store_chat_create(s, &ch) != 0)
        return 1;
      fprintf(pairs, "%s %s\n", nu.id, ch.id);
    }
    fprintf(stderr, "chat_prefill: user %d/%d (%d memories) after %.1f s\n", u + 1, users,
            memories, (double)(clock_mono_ms() - t0) / 1000);
  }
  fclose(pairs);
  store_close(s);
  free(vec);
  free(m);
  free(texts);
  free(st);
  return 0;
}
