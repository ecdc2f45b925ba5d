/* A string-keyed chained hash map (see base.h). FNV-1a hashing; doubles at load 1. */
#include <stdlib.h>
#include <string.h>

#include "base.h"

static uint64_t hash_key(const char *k, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)k[i];
    h *= 1099511628211ull;
  }
  return h;
}

void hmap_free(struct hmap *m) {
  for (size_t i = 0; i < m->nslots; i++) {
    struct hmap_entry *e = m->slots[i];
    while (e) {
      struct hmap_entry *next = e->next;
      free(e);
      e = next;
    }
  }
  free(m->slots);
  memset(m, 0, sizeof *m);
}

static struct hmap_entry **find(const struct hmap *m, const char *key, size_t klen,
                                uint64_t h) {
  if (m->nslots == 0)
    return NULL;
  struct hmap_entry **pp = &m->slots[h & (m->nslots - 1)];
  while (*pp && ((*pp)->hash != h || (*pp)->klen != klen || memcmp((*pp)->key, key, klen)))
    pp = &(*pp)->next;
  return pp;
}

void *hmap_get(const struct hmap *m, const char *key) {
  size_t klen = strlen(key);
  struct hmap_entry **pp = find(m, key, klen, hash_key(key, klen));
  return pp && *pp ? (*pp)->value : NULL;
}

static void grow(struct hmap *m) {
  size_t n = m->nslots ? m->nslots * 2 : 16;
  struct hmap_entry **slots = xcalloc(n, sizeof *slots);
  for (size_t i = 0; i < m->nslots; i++) {
    struct hmap_entry *e = m->slots[i];
    while (e) {
      struct hmap_entry *next = e->next;
      e->next = slots[e->hash & (n - 1)];
      slots[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(m->slots);
  m->slots = slots;
  m->nslots = n;
}

void *hmap_put(struct hmap *m, const char *key, void *value) {
  size_t klen = strlen(key);
  uint64_t h = hash_key(key, klen);
  struct hmap_entry **pp = find(m, key, klen, h);
  if (pp && *pp) {
    void *old = (*pp)->value;
    (*pp)->value = value;
    return old;
  }
  if (m->count >= m->nslots)
    grow(m);
  struct hmap_entry *e = xmalloc(sizeof *e + klen + 1);
  e->hash = h;
  e->value = value;
  e->klen = klen;
  memcpy(e->key, key, klen + 1);
  e->next = m->slots[h & (m->nslots - 1)];
  m->slots[h & (m->nslots - 1)] = e;
  m->count++;
  return NULL;
}

void *hmap_del(struct hmap *m, const char *key) {
  size_t klen = strlen(key);
  struct hmap_entry **pp = find(m, key, klen, hash_key(key, klen));
  if (pp == NULL || *pp == NULL)
    return NULL;
  struct hmap_entry *e = *pp;
  void *v = e->value;
  *pp = e->next;
  free(e);
  m->count--;
  return v;
}

struct hmap_entry *hmap_first(const struct hmap *m, size_t *slot) {
  for (*slot = 0; *slot < m->nslots; (*slot)++)
    if (m->slots[*slot])
      return m->slots[*slot];
  return NULL;
}

struct hmap_entry *hmap_next(const struct hmap *m, struct hmap_entry *e, size_t *slot) {
  if (e->next)
    return e->next;
  for ((*slot)++; *slot < m->nslots; (*slot)++)
    if (m->slots[*slot])
      return m->slots[*slot];
  return NULL;
}
