/*
 * Login throttle: a fixed-size, 8-way set-associative table of failure counters.
 *
 * A key (an account email or a client address, prefixed by the caller) is hashed with
 * SipHash under a random per-process key, so an attacker cannot aim many keys at one set.
 * Only the 64-bit hash is stored: memory is slots * 32 bytes, whatever the traffic.
 * Each entry counts failures in a window that opens with its first failure. A new key
 * takes the set's free or expired way, else the way with the fewest failures (oldest
 * first), so locked-out keys are the last to be evicted.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

#define WAYS 8

struct entry {
  uint64_t h; /* 0: free */
  uint32_t count;
  int64_t first_ms; /* start of the window */
  int64_t last_ms;
};

struct auth_throttle {
  pthread_mutex_t mu;
  struct entry *e;
  size_t sets;
  unsigned max;
  int64_t window_ms;
  uint8_t key[crypto_shorthash_KEYBYTES];
};

struct auth_throttle *auth_throttle_new(size_t slots, unsigned max_failures,
                                        int64_t window_ms) {
  struct auth_throttle *t = xcalloc(1, sizeof *t);
  if (slots == 0)
    slots = 4096;
  t->sets = (slots + WAYS - 1) / WAYS;
  t->e = xcalloc(t->sets * WAYS, sizeof *t->e);
  t->max = max_failures ? max_failures : 10;
  t->window_ms = window_ms > 0 ? window_ms : 15 * 60 * 1000;
  rand_bytes(t->key, sizeof t->key);
  pthread_mutex_init(&t->mu, NULL);
  return t;
}

void auth_throttle_free(struct auth_throttle *t) {
  if (t == NULL)
    return;
  pthread_mutex_destroy(&t->mu);
  free(t->e);
  free(t);
}

static uint64_t hash_key(const struct auth_throttle *t, struct slice k) {
  uint64_t h;
  crypto_shorthash((unsigned char *)&h, (const unsigned char *)k.p, k.len, t->key);
  return h ? h : 1;
}

static struct entry *find(struct auth_throttle *t, uint64_t h) {
  struct entry *set = t->e + (h % t->sets) * WAYS;
  for (int i = 0; i < WAYS; i++)
    if (set[i].h == h)
      return &set[i];
  return NULL;
}

static bool expired(const struct auth_throttle *t, const struct entry *e, int64_t now) {
  return e->h == 0 || now - e->first_ms >= t->window_ms;
}

int auth_throttle_check(struct auth_throttle *t, struct slice key, int64_t now_ms,
                        int *retry_after_s) {
  int rc = 0;
  *retry_after_s = 0;
  pthread_mutex_lock(&t->mu);
  struct entry *e = find(t, hash_key(t, key));
  if (e != NULL && !expired(t, e, now_ms) && e->count >= t->max) {
    int64_t left = e->first_ms + t->window_ms - now_ms;
    *retry_after_s = (int)((left + 999) / 1000);
    if (*retry_after_s < 1)
      *retry_after_s = 1;
    rc = EG_ELIMIT;
  }
  pthread_mutex_unlock(&t->mu);
  return rc;
}

void auth_throttle_fail(struct auth_throttle *t, struct slice key, int64_t now_ms) {
  uint64_t h = hash_key(t, key);
  pthread_mutex_lock(&t->mu);
  struct entry *e = find(t, h);
  if (e == NULL) {
    struct entry *set = t->e + (h % t->sets) * WAYS;
    e = &set[0];
    for (int i = 0; i < WAYS; i++) {
      struct entry *c = &set[i];
      if (expired(t, c, now_ms)) {
        e = c;
        break;
      }
      if (c->count < e->count || (c->count == e->count && c->last_ms < e->last_ms))
        e = c;
    }
    memset(e, 0, sizeof *e);
    e->h = h;
  }
  if (expired(t, e, now_ms) || e->count == 0) {
    e->count = 0;
    e->first_ms = now_ms;
  }
  if (e->count < UINT32_MAX)
    e->count++;
  e->last_ms = now_ms;
  pthread_mutex_unlock(&t->mu);
}

void auth_throttle_clear(struct auth_throttle *t, struct slice key) {
  pthread_mutex_lock(&t->mu);
  struct entry *e = find(t, hash_key(t, key));
  if (e != NULL)
    memset(e, 0, sizeof *e);
  pthread_mutex_unlock(&t->mu);
}
