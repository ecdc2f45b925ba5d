/*
 * Operator commands on memories: `engram memory search|list|forget --user EMAIL` and
 * `engram import --user EMAIL FILE...` (the migration path from the Node design's
 * MongoDB: mongoexport JSON lines, or a JSON array from `mongoexport --jsonArray`).
 * Blocking store calls on the main thread; no event loop.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "memory/memory.h"
#include "recall/recall.h"
#include "store/store.h"

#define IMPORT_BATCH 500
#define IMPORT_LINE_MAX (4u << 20)

static int open_user(const struct cli_env *env, const char *cmd, const char *email,
                     struct store **s, struct store_user *u) {
  char norm[AUTH_EMAIL_MAX + 1];
  if (email == NULL || auth_email_normalize(email, strlen(email), norm) != 0) {
    fprintf(env->err, "engram %s: '%s' is not a valid email address\n", cmd,
            email ? email : "");
    return 2;
  }
  int rc = store_open(env->db, env->data_dir, s);
  if (rc) {
    fprintf(env->err, "engram %s: cannot open the store: %s\n", cmd, eg_strerror(rc));
    return 1;
  }
  rc = store_user_get_by_email(*s, norm, u);
  if (rc) {
    fprintf(env->err, "engram %s: %s\n", cmd,
            rc == EG_ENOTFOUND ? "no such user" : eg_strerror(rc));
    store_close(*s);
    return 1;
  }
  return 0;
}

static json_t *iso(int64_t ms) {
  char t[25];
  clock_iso8601(ms, t);
  return json_string(t);
}

static int print_json(const struct cli_env *env, json_t *doc) {
  int rc =
      json_dumpf(doc, env->out, JSON_INDENT(2)) == 0 && fputc('\n', env->out) != EOF ? 0 : 1;
  json_decref(doc);
  return rc;
}

static json_t *memory_json(const char *id, const char *chat, const char *role, const char *text,
                           double score, int64_t created) {
  json_t *o = json_pack("{s:s,s:s?,s:s,s:s,s:o}", "id", id, "chatId", *chat ? chat : NULL,
                        "role", role, "text", text ? text : "", "createdAt", iso(created));
  json_object_set_new(o, "score", score >= 0 ? json_real(score) : json_null());
  return o;
}

static void usage_memory(FILE *err) {
  fprintf(err, "usage: engram memory search --user EMAIL [--k N] QUERY...\n"
               "       engram memory list --user EMAIL [--limit N] [--before ID]\n"
               "       engram memory forget --user EMAIL (--all | ID...)\n");
}

int cli_memory(int argc, char **argv, const struct cli_env *env) {
  if (argc < 2) {
    usage_memory(env->err);
    return 2;
  }
  const char *sub = argv[1], *email = NULL, *before = NULL;
  long k = 10, limit = 50;
  bool all = false;
  struct buf words;
  buf_init(&words, 64 * 1024);
  const char **ids = xcalloc((size_t)argc, sizeof *ids);
  size_t nids = 0;
  int rc = 0;
  for (int i = 2; i < argc && !rc; i++) {
    if (!strcmp(argv[i], "--user") && i + 1 < argc)
      email = argv[++i];
    else if (!strcmp(argv[i], "--k") && i + 1 < argc)
      k = strtol(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--limit") && i + 1 < argc)
      limit = strtol(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--before") && i + 1 < argc)
      before = argv[++i];
    else if (!strcmp(argv[i], "--all"))
      all = true;
    else if (argv[i][0] == '-')
      rc = 2;
    else if (!strcmp(sub, "search"))
      rc = (words.len && buf_append_byte(&words, ' ')) || buf_append_str(&words, argv[i]) ? 2
                                                                                          : 0;
    else
      ids[nids++] = argv[i];
  }
  bool ok =
      !rc && email && k >= 1 && k <= 100 && limit >= 1 && limit <= STORE_PAGE_MAX &&
      ((!strcmp(sub, "search") && words.len && !nids) || (!strcmp(sub, "list") && !nids) ||
       (!strcmp(sub, "forget") && (all != (nids > 0))));
  if (!ok) {
    usage_memory(env->err);
    buf_free(&words);
    free(ids);
    return 2;
  }
  struct store *s;
  struct store_user u;
  rc = open_user(env, "memory", email, &s, &u);
  if (rc) {
    buf_free(&words);
    free(ids);
    return rc;
  }
  if (!strcmp(sub, "search")) {
    const char *q = (const char *)words.data;
    float *vec = xmalloc(MEM_DIM * sizeof *vec);
    mem_hash_embed(q, words.len, vec);
    struct mem_index *ix = mem_index_new(MEM_DIM, 0);
    struct recall_item *items;
    size_t n;
    rc = recall_search_sync(s, ix, MEM_HASH_MODEL, MEM_DIM, NULL, u.id, q, vec, (size_t)k, NULL,
                            0, &items, &n);
    if (!rc) {
      json_t *a = json_array();
      for (size_t i = 0; i < n; i++)
        json_array_append_new(a,
                              memory_json(items[i].id, items[i].chat_id, items[i].role,
                                          items[i].text, items[i].score, items[i].created_at));
      rc = print_json(env, json_pack("{s:o}", "memories", a));
      recall_items_free(items, n);
    }
    mem_index_free(ix);
    free(vec);
  } else if (!strcmp(sub, "list")) {
    struct store_memories l;
    rc = store_memory_list(s, u.id, before, (size_t)limit, &l);
    if (!rc) {
      json_t *a = json_array();
      for (size_t i = 0; i < l.n; i++)
        json_array_append_new(a, memory_json(l.v[i].id, l.v[i].chat_id, l.v[i].role,
                                             l.v[i].text, -1, l.v[i].created_at));
      rc = print_json(env, json_pack("{s:o}", "memories", a));
      store_memories_free(&l);
    }
  } else if (all) {
    size_t n = 0;
    rc = store_memory_delete_all(s, u.id, &n);
    if (!rc)
      fprintf(env->out, "forgot %zu memories of %s\n", n, u.email);
  } else {
    for (size_t i = 0; i < nids && !rc; i++) {
      rc = id_valid(ids[i], strlen(ids[i])) ? store_memory_delete(s, u.id, ids[i]) : EG_EINVAL;
      if (rc == EG_ENOTFOUND || rc == EG_EINVAL) {
        fprintf(env->err, "engram memory forget: %s: not a memory of %s\n", ids[i], u.email);
        rc = 0;
        continue;
      }
      if (!rc)
        fprintf(env->out, "forgot %s\n", ids[i]);
    }
  }
  if (rc && rc != 1)
    fprintf(env->err, "engram memory %s: %s\n", sub, eg_strerror(rc));
  store_user_clear(&u);
  store_close(s);
  buf_free(&words);
  free(ids);
  return rc ? 1 : 0;
}

/* ---- import ---------------------------------------------------------------------- */

struct imp_chat {
  char id[ID_LEN + 1];
  char *title;
  int64_t last_activity;
  bool create; /* not in the store yet */
};

struct imp_msg {
  char id[ID_LEN + 1];
  char chat[ID_LEN + 1];
  char role[8];
  char *content;
  int64_t created_at;
};

struct importer {
  const struct cli_env *env;
  struct imp_chat *chats;
  size_t nchats, capchats;
  struct imp_msg *msgs;
  size_t nmsgs, capmsgs;
  size_t bad;
};

/* An ObjectId in Extended JSON ({"$oid": "..."}) or as a plain string. */
static bool ext_oid(const json_t *v, char out[ID_LEN + 1]) {
  if (json_is_object(v))
    v = json_object_get(v, "$oid");
  if (!json_is_string(v) || !id_valid(json_string_value(v), json_string_length(v)))
    return false;
  memcpy(out, json_string_value(v), ID_LEN + 1);
  return true;
}

/* A date in Extended JSON: {"$date": "ISO"}, {"$date": {"$numberLong": "ms"}},
   {"$date": ms}, or a bare ISO string or number of milliseconds. */
static bool ext_date(const json_t *v, int64_t *ms) {
  if (json_is_object(v))
    v = json_object_get(v, "$date");
  if (json_is_object(v))
    v = json_object_get(v, "$numberLong");
  if (json_is_integer(v)) {
    *ms = (int64_t)json_integer_value(v);
    return true;
  }
  if (!json_is_string(v))
    return false;
  const char *s = json_string_value(v);
  size_t n = json_string_length(v);
  if (clock_parse_iso8601(s, n, ms) == 0)
    return true;
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (errno || end == s || *end)
    return false;
  *ms = x;
  return true;
}

static void bad_line(struct importer *im, const char *file, size_t line, const char *why) {
  im->bad++;
  fprintf(im->env->err, "%s:%zu: skipped: %s\n", file, line, why);
}

static void take_record(struct importer *im, const char *file, size_t line, json_t *o) {
  if (!json_is_object(o)) {
    bad_line(im, file, line, "not a JSON object");
    return;
  }
  const json_t *content = json_object_get(o, "content");
  const json_t *title = json_object_get(o, "title");
  if (content) { /* a message */
    struct imp_msg m = {0};
    const char *role = json_string_value(json_object_get(o, "role"));
    if (!ext_oid(json_object_get(o, "_id"), m.id)) {
      bad_line(im, file, line, "message without a valid _id");
      return;
    }
    if (!ext_oid(json_object_get(o, "chat"), m.chat)) {
      bad_line(im, file, line, "message without a valid chat id");
      return;
    }
    if (!json_is_string(content) || json_string_length(content) == 0 ||
        strlen(json_string_value(content)) != json_string_length(content)) {
      bad_line(im, file, line, "message content is not a non-empty string");
      return;
    }
    if (role == NULL ||
        (strcmp(role, "user") && strcmp(role, "model") && strcmp(role, "assistant"))) {
      bad_line(im, file, line, "role must be user or model");
      return;
    }
    if (!ext_date(json_object_get(o, "createdAt"), &m.created_at))
      m.created_at = (int64_t)strtoll(m.id, NULL, 16) / (1ll << 32) * 1000; /* the id's time */
    snprintf(m.role, sizeof m.role, "%s", strcmp(role, "user") ? "model" : "user");
    m.content = xstrdup(json_string_value(content));
    if (im->nmsgs == im->capmsgs) {
      im->capmsgs = im->capmsgs ? im->capmsgs * 2 : 256;
      im->msgs = xrealloc(im->msgs, im->capmsgs * sizeof *im->msgs);
    }
    im->msgs[im->nmsgs++] = m;
  } else if (title) { /* a chat */
    struct imp_chat c = {0};
    if (!ext_oid(json_object_get(o, "_id"), c.id)) {
      bad_line(im, file, line, "chat without a valid _id");
      return;
    }
    if (!json_is_string(title)) {
      bad_line(im, file, line, "chat title is not a string");
      return;
    }
    if (!ext_date(json_object_get(o, "lastActivity"), &c.last_activity) &&
        !ext_date(json_object_get(o, "createdAt"), &c.last_activity))
      c.last_activity = (int64_t)strtoll(c.id, NULL, 16) / (1ll << 32) * 1000;
    c.title = xstrdup(json_string_value(title));
    if (im->nchats == im->capchats) {
      im->capchats = im->capchats ? im->capchats * 2 : 64;
      im->chats = xrealloc(im->chats, im->capchats * sizeof *im->chats);
    }
    im->chats[im->nchats++] = c;
  } else {
    bad_line(im, file, line, "neither a chat (title) nor a message (content)");
  }
}

static int read_file(struct importer *im, const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fprintf(im->env->err, "engram import: %s: %s\n", path, strerror(errno));
    return 1;
  }
  int c;
  while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t')
    ;
  if (c == '[') { /* mongoexport --jsonArray */
    ungetc(c, f);
    json_error_t e;
    json_t *a = json_loadf(f, 0, &e);
    fclose(f);
    if (!json_is_array(a)) {
      fprintf(im->env->err, "engram import: %s:%d: %s\n", path, e.line, e.text);
      json_decref(a);
      return 1;
    }
    for (size_t i = 0; i < json_array_size(a); i++)
      take_record(im, path, i + 1, json_array_get(a, i));
    json_decref(a);
    return 0;
  }
  if (c != EOF)
    ungetc(c, f);
  char *line = NULL;
  size_t cap = 0, lineno = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, f)) >= 0) {
    lineno++;
    if (n == 0 || strspn(line, " \t\r\n") == (size_t)n)
      continue;
    if ((size_t)n > IMPORT_LINE_MAX) {
      bad_line(im, path, lineno, "line too long");
      continue;
    }
    json_error_t e;
    json_t *o = json_loadb(line, (size_t)n, 0, &e);
    if (o == NULL) {
      bad_line(im, path, lineno, e.text);
      continue;
    }
    take_record(im, path, lineno, o);
    json_decref(o);
  }
  free(line);
  fclose(f);
  return 0;
}

static struct imp_chat *find_chat(struct importer *im, const char *id) {
  for (size_t i = 0; i < im->nchats; i++)
    if (!strcmp(im->chats[i].id, id))
      return &im->chats[i];
  return NULL;
}

/* Undo: delete the chats this import created (their messages and memories go too). */
static void roll_back(struct store *s, struct importer *im, const char *user, size_t created) {
  for (size_t i = 0; i < im->nchats && created; i++)
    if (im->chats[i].create) {
      if (store_chat_delete(s, user, im->chats[i].id) != 0)
        fprintf(im->env->err, "engram import: could not remove chat %s\n", im->chats[i].id);
      created--;
    }
}

int cli_import(int argc, char **argv, const struct cli_env *env) {
  const char *email = NULL;
  int first_file = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--user") && i + 1 < argc) {
      email = argv[++i];
    } else if (argv[i][0] == '-') {
      first_file = 0;
      break;
    } else if (!first_file) {
      first_file = i;
    }
  }
  if (email == NULL || first_file == 0) {
    fprintf(env->err, "usage: engram import --user EMAIL FILE...\n");
    return 2;
  }
  struct importer im = {.env = env};
  int rc = 0;
  for (int i = first_file; i < argc && !rc; i++)
    if (strcmp(argv[i], "--user") == 0)
      i++;
    else
      rc = read_file(&im, argv[i]);
  struct store *s = NULL;
  struct store_user u = {0};
  size_t created = 0, inserted = 0, skipped = 0, embedded = 0;
  if (!rc)
    rc = open_user(env, "import", email, &s, &u);
  if (rc)
    goto out;
  /* Chats: new ones are created; ones already there must be this user's (a re-import). */
  for (size_t i = 0; i < im.nchats; i++) {
    struct store_chat c;
    int r = store_chat_get(s, u.id, im.chats[i].id, &c);
    if (r == 0) {
      store_chat_clear(&c);
      continue;
    }
    im.chats[i].create = true;
  }
  /* Messages whose chat is neither imported nor the user's are skipped. */
  size_t keep = 0;
  for (size_t i = 0; i < im.nmsgs; i++) {
    struct imp_msg *m = &im.msgs[i];
    bool ok = find_chat(&im, m->chat) != NULL;
    if (!ok) {
      struct store_chat c;
      ok = store_chat_get(s, u.id, m->chat, &c) == 0;
      if (ok)
        store_chat_clear(&c);
    }
    if (!ok) {
      im.bad++;
      fprintf(env->err,
              "engram import: message %s: chat %s is not in the import nor a chat "
              "of this user: skipped\n",
              m->id, m->chat);
      free(m->content);
      continue;
    }
    im.msgs[keep++] = *m;
  }
  im.nmsgs = keep;
  for (size_t i = 0; i < im.nchats && !rc; i++) {
    if (!im.chats[i].create)
      continue;
    struct store_chat c = {.title = im.chats[i].title, .created_at = im.chats[i].last_activity};
    memcpy(c.id, im.chats[i].id, sizeof c.id);
    memcpy(c.user_id, u.id, sizeof c.user_id);
    rc = store_chat_create(s, &c);
    if (rc == EG_EEXISTS)
      fprintf(env->err, "engram import: chat %s belongs to another user\n", im.chats[i].id);
    if (!rc)
      created++;
  }
  struct store_message_new *batch = xcalloc(IMPORT_BATCH, sizeof *batch);
  int *st = xcalloc(IMPORT_BATCH, sizeof *st);
  float *vec = xmalloc(MEM_DIM * sizeof *vec);
  for (size_t off = 0; off < im.nmsgs && !rc; off += IMPORT_BATCH) {
    size_t n = EG_MIN((size_t)IMPORT_BATCH, im.nmsgs - off);
    for (size_t i = 0; i < n; i++) {
      struct imp_msg *m = &im.msgs[off + i];
      batch[i] = (struct store_message_new){.chat_id = m->chat,
                                            .user_id = u.id,
                                            .role = m->role,
                                            .content = m->content,
                                            .created_at = m->created_at};
      memcpy(batch[i].id, m->id, sizeof batch[i].id);
    }
    rc = store_message_insert_batch(s, batch, n, st);
    for (size_t i = 0; i < n && !rc; i++) {
      if (st[i] == EG_EEXISTS) { /* already imported (or taken): left as it is */
        skipped++;
        continue;
      }
      if (st[i]) {
        rc = st[i];
        break;
      }
      inserted++;
      mem_hash_embed(batch[i].content, strlen(batch[i].content), vec);
      if (store_memory_set_vector(s, batch[i].id, MEM_HASH_MODEL, vec, MEM_DIM) == 0)
        embedded++;
    }
    fprintf(env->err, "engram import: %zu/%zu messages (%zu embedded)\n", off + n, im.nmsgs,
            embedded);
  }
  free(batch);
  free(st);
  free(vec);
  if (rc) {
    fprintf(env->err, "engram import: failed (%s): removing what this import added\n",
            eg_strerror(rc));
    roll_back(s, &im, u.id, created);
  } else {
    fprintf(env->out,
            "imported %zu chats and %zu messages for %s (%zu already there, %zu bad records "
            "skipped)\n",
            created, inserted, u.email, skipped, im.bad);
  }
out:
  for (size_t i = 0; i < im.nchats; i++)
    free(im.chats[i].title);
  for (size_t i = 0; i < im.nmsgs; i++)
    free(im.msgs[i].content);
  free(im.chats);
  free(im.msgs);
  if (s) {
    store_user_clear(&u);
    store_close(s);
  }
  return rc ? 1 : 0;
}
