/*
 * chat internals: the cache of chat windows (window.c).
 *
 * The prompt's window is the last messages of a chat (store_message_last). While a chat is
 * in use its window is kept here, appended to as its messages are stored, so the next
 * ai-message needs no history query. Only for one node (chat_deps.lock == NULL): with
 * several nodes another node may have written to the chat in between. (Messages that
 * another process adds to a chat in use, e.g. `engram import` into a running server's
 * data, reach the window when the chat is evicted or the server restarts.)
 * Bounded: at most per_chat messages per chat, budget bytes in all (least recently used
 * chats go first). Loop thread only.
 */
#ifndef ENGRAM_CHAT_INT_H
#define ENGRAM_CHAT_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

struct chat_windows;

struct chat_windows *chat_windows_new(size_t per_chat, size_t budget);
void chat_windows_free(struct chat_windows *w);
/* Copies chat's window (oldest first) into *out, in one allocation (free it with
   chat_windows_release, not store_messages_free), and returns true; false (out empty)
   when it is not cached. */
bool chat_windows_get(struct chat_windows *w, const char *chat, struct store_messages *out);
void chat_windows_release(struct store_messages *m);
/* Caches the window just read from the store (copied). */
void chat_windows_put(struct chat_windows *w, const char *chat, const struct store_messages *m);
/* A message of chat was stored: appended to its window when cached. */
void chat_windows_append(struct chat_windows *w, const struct store_message_new *m);
void chat_windows_drop(struct chat_windows *w, const char *chat);

#endif
