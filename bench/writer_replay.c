/*
 * writer_replay: the store writer's CPU per ai-message, without the server around it.
 *
 *   writer_replay --db FILE --pairs FILE [--answers N] [--batch B] [--repeat R]
 *
 * Replays what the chat pipeline's group-commit writer does at saturation on a copy of a
 * prefilled store (bench/pipeline.sh's PREFILL_DIR): batches of B messages (half questions,
 * half answers, with their memories, vec_derived like the hash embedder's), each committed
 * with store_message_insert_batch_nosync and made durable with store_sync, over the chats of
 * the pairs file in turn. Prints the calling thread's CPU microseconds per ai-message (one
 * question and one answer; its user/system split from getrusage), which holds on a loaded
 * machine better than a rate. The store
 * file is modified: run it on a copy. R > 1 repeats the measure (a fresh window each time).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/base.h"
#include "store/store.h"

/* The calling thread's user and system CPU seconds (getrusage: tick-accounted, so only the
   split is taken from it; the total comes from CLOCK_THREAD_CPUTIME_ID). */
static void thread_rusage(double *user, double *sys) {
  struct rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
  *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  const char *db = NULL, *pairs = NULL;
  size_t answers = 20000, batch = 22;
  int repeat = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--db") == 0)
      db = argv[i + 1];
    else if (strcmp(argv[i], "--pairs") == 0)
      pairs = argv[i + 1];
    else if (strcmp(argv[i], "--answers") == 0)
      answers = (size_t)strtoul(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--batch") == 0)
      batch = (size_t)strtoul(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--repeat") == 0)
      repeat = atoi(argv[i + 1]);
  }
  if (!db || !pairs || batch < 2) {
    fprintf(stderr, "usage: writer_replay --db FILE --pairs FILE [--answers N] [--batch B]\n");
    return 2;
  }
  FILE *f = fopen(pairs, "r");
  if (!f) {
    perror(pairs);
    return 1;
  }
  char(*users)[ID_LEN + 1] = NULL, (*chats)[ID_LEN + 1] = NULL;
  size_t n = 0, cap = 0;
  char u[64], c[64];
  while (fscanf(f, "%63s %63s", u, c) == 2) {
    if (n == cap) {
      cap = cap ? cap * 2 : 128;
      users = xrealloc(users, cap * sizeof(*users));
      chats = xrealloc(chats, cap * sizeof(*chats));
    }
    snprintf(users[n], ID_LEN + 1, "%.24s", u);
    snprintf(chats[n], ID_LEN + 1, "%.24s", c);
    n++;
  }
  fclose(f);
  if (n == 0) {
    fprintf(stderr, "no pairs in %s\n", pairs);
    return 1;
  }
  struct store *s = NULL;
  if (store_open(db, NULL, &s) != 0) {
    fprintf(stderr, "cannot open %s\n", db);
    return 1;
  }
  static const float one = 1.0f;
  struct store_message_new *m = xcalloc(batch, sizeof(*m));
  int *status = xcalloc(batch, sizeof(*status));
  char(*text)[160] = xcalloc(batch, sizeof(*text));
  size_t chat = 0;
  uint64_t seq = 0;
  for (int r = 0; r < repeat; r++) {
    size_t msgs = 0;
    double u0, s0;
    thread_rusage(&u0, &s0);
    double t0 = thread_cpu_s(), w0 = (double)clock_mono_ns() / 1e9;
    while (msgs < answers * 2) {
      for (size_t i = 0; i < batch; i++, seq++) {
        bool question = (i & 1) == 0;
        chat = (chat + 7) % n; /* each row its own chat, like 100 connections */
        memset(&m[i], 0, sizeof(m[i]));
        if (question)
          snprintf(text[i], sizeof(text[i]),
                   "Where did I put the kalo mipar that veldo gave me? (question %llu)",
                   (unsigned long long)seq);
        else
          snprintf(text[i], sizeof(text[i]), "Noted. I will remember that.");
        m[i].chat_id = chats[chat];
        m[i].user_id = users[chat];
        m[i].role = question ? "user" : "model";
        m[i].content = text[i];
        m[i].vec = &one;
        m[i].dims = 768;
        m[i].embed_model = "hash-v1/768";
        m[i].vec_derived = true;
        status[i] = 0;
      }
      if (store_message_insert_batch_nosync(s, m, batch, status) != 0 || store_sync(s) != 0) {
        fprintf(stderr, "insert failed\n");
        return 1;
      }
      for (size_t i = 0; i < batch; i++)
        if (status[i] != 0) {
          fprintf(stderr, "row %zu: %s\n", i, eg_strerror(status[i]));
          return 1;
        }
      msgs += batch;
    }
    double cpu = thread_cpu_s() - t0, wall = (double)clock_mono_ns() / 1e9 - w0;
    double u1, s1;
    thread_rusage(&u1, &s1);
    double per = 1e6 / (double)(msgs / 2);
    printf("writer_replay: %zu ai-messages in batches of %zu: %.1f us of CPU per ai-message "
           "(user %.1f + system %.1f), %.0f ai-messages/s on one thread\n",
           msgs / 2, batch, cpu * per, (u1 - u0) * per, (s1 - s0) * per,
           (double)(msgs / 2) / wall);
  }
  store_close(s);
  free(m);
  free(status);
  free(text);
  free(users);
  free(chats);
  return 0;
}
