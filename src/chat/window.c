/* The cache of chat windows (see chat_int.h): a map chat id -> ring of its newest
   messages, with an LRU list over the chats and a byte total. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_int.h"

struct win {
  char chat[ID_LEN + 1];
  struct store_message *m; /* ring of per_chat slots; m[(head + i) % per_chat] */
  size_t head, n, bytes;
  struct win *prev, *next; /* LRU: most recent at w->first */
};

struct chat_windows {
  size_t per_chat, budget, bytes;
  struct hmap map;
  struct win *first, *last;
};

static size_t msg_bytes(const struct store_message *m) {
  return sizeof *m + (m->content ? strlen(m->content) + 1 : 0) +
         (m->client_id ? strlen(m->client_id) + 1 : 0);
}

static void msg_copy(struct store_message *dst, const struct store_message *src) {
  *dst = *src;
  dst->content = xstrdup(src->content ? src->content : "");
  dst->client_id = src->client_id ? xstrdup(src->client_id) : NULL;
}

static void lru_unlink(struct chat_windows *w, struct win *x) {
  if (x->prev)
    x->prev->next = x->next;
  else
    w->first = x->next;
  if (x->next)
    x->next->prev = x->prev;
  else
    w->last = x->prev;
  x->prev = x->next = NULL;
}

static void lru_front(struct chat_windows *w, struct win *x) {
  x->next = w->first;
  if (w->first)
    w->first->prev = x;
  w->first = x;
  if (!w->last)
    w->last = x;
}

static void win_free(struct chat_windows *w, struct win *x) {
  for (size_t i = 0; i < x->n; i++)
    store_message_clear(&x->m[(x->head + i) % w->per_chat]);
  w->bytes -= x->bytes;
  free(x->m);
  free(x);
}

static void drop(struct chat_windows *w, struct win *x) {
  lru_unlink(w, x);
  hmap_del(&w->map, x->chat);
  win_free(w, x);
}

struct chat_windows *chat_windows_new(size_t per_chat, size_t budget) {
  struct chat_windows *w = xcalloc(1, sizeof *w);
  w->per_chat = per_chat ? per_chat : 1;
  w->budget = budget;
  return w;
}

void chat_windows_free(struct chat_windows *w) {
  if (!w)
    return;
  while (w->first)
    drop(w, w->first);
  hmap_free(&w->map);
  free(w);
}

/* Appends a copy of m (the oldest goes when the ring is full). */
static void push(struct chat_windows *w, struct win *x, const struct store_message *m) {
  size_t slot;
  if (x->n == w->per_chat) {
    slot = x->head;
    x->bytes -= msg_bytes(&x->m[slot]);
    w->bytes -= msg_bytes(&x->m[slot]);
    store_message_clear(&x->m[slot]);
    x->head = (x->head + 1) % w->per_chat;
  } else {
    slot = (x->head + x->n++) % w->per_chat;
  }
  msg_copy(&x->m[slot], m);
  x->bytes += msg_bytes(m);
  w->bytes += msg_bytes(m);
}

static void trim(struct chat_windows *w, const struct win *keep) {
  while (w->bytes > w->budget && w->last && w->last != keep)
    drop(w, w->last);
}

bool chat_windows_get(struct chat_windows *w, const char *chat, struct store_messages *out) {
  memset(out, 0, sizeof *out);
  struct win *x = hmap_get(&w->map, chat);
  if (!x)
    return false;
  lru_unlink(w, x);
  lru_front(w, x);
  /* One block: the messages, then their strings (chat_windows_release frees it). */
  size_t bytes = (x->n ? x->n : 1) * sizeof *out->v;
  for (size_t i = 0; i < x->n; i++) {
    const struct store_message *m = &x->m[(x->head + i) % w->per_chat];
    bytes += strlen(m->content) + 1 + (m->client_id ? strlen(m->client_id) + 1 : 0);
  }
  char *block = xmalloc(bytes);
  out->v = (struct store_message *)(void *)block;
  char *p = block + (x->n ? x->n : 1) * sizeof *out->v;
  for (size_t i = 0; i < x->n; i++) {
    const struct store_message *m = &x->m[(x->head + i) % w->per_chat];
    out->v[i] = *m;
    size_t n = strlen(m->content) + 1;
    memcpy(p, m->content, n);
    out->v[i].content = p;
    p += n;
    if (m->client_id) {
      n = strlen(m->client_id) + 1;
      memcpy(p, m->client_id, n);
      out->v[i].client_id = p;
      p += n;
    }
  }
  out->n = x->n;
  return true;
}

void chat_windows_release(struct store_messages *m) {
  free(m->v);
  m->v = NULL;
  m->n = 0;
}

void chat_windows_put(struct chat_windows *w, const char *chat,
                      const struct store_messages *m) {
  struct win *x = hmap_get(&w->map, chat);
  if (x)
    drop(w, x);
  if (strlen(chat) != ID_LEN)
    return;
  x = xcalloc(1, sizeof *x);
  memcpy(x->chat, chat, ID_LEN + 1);
  x->m = xcalloc(w->per_chat, sizeof *x->m);
  size_t from = m->n > w->per_chat ? m->n - w->per_chat : 0;
  for (size_t i = from; i < m->n; i++)
    push(w, x, &m->v[i]);
  hmap_put(&w->map, x->chat, x);
  lru_front(w, x);
  trim(w, x);
}

void chat_windows_append(struct chat_windows *w, const struct store_message_new *m) {
  struct win *x = hmap_get(&w->map, m->chat_id);
  if (!x)
    return;
  struct store_message s = {.content = (char *)m->content,
                            .client_id =
                                m->client_id && *m->client_id ? (char *)m->client_id : NULL,
                            .created_at = m->created_at,
                            .cancelled = m->cancelled};
  memcpy(s.id, m->id, sizeof s.id);
  memcpy(s.chat_id, x->chat, sizeof s.chat_id);
  snprintf(s.user_id, sizeof s.user_id, "%s", m->user_id);
  snprintf(s.role, sizeof s.role, "%s", m->role);
  push(w, x, &s);
  lru_unlink(w, x);
  lru_front(w, x);
  trim(w, x);
}

void chat_windows_drop(struct chat_windows *w, const char *chat) {
  struct win *x = hmap_get(&w->map, chat);
  if (x)
    drop(w, x);
}
