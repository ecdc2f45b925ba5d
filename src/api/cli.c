/*
 * Operator commands: `engram user add|list|delete`, `engram migrate`, `engram export`.
 * They run before (or beside) a server, on the main thread, with the blocking store API:
 * there is no event loop here.
 */
#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "store/store.h"

static int open_store(const struct cli_env *env, struct store **s) {
  int rc = store_open(env->db, env->data_dir, s);
  if (rc != 0)
    fprintf(env->err, "engram: cannot open the store: %s\n", eg_strerror(rc));
  return rc;
}

/* Reads a password from f: the first line, without its line ending. */
static int read_password(FILE *f, char *out, size_t cap, size_t *len) {
  size_t n = 0;
  int c;
  while ((c = fgetc(f)) != EOF && c != '\n') {
    if (n + 1 >= cap)
      return EG_ETOOBIG;
    out[n++] = (char)c;
  }
  if (n > 0 && out[n - 1] == '\r')
    n--;
  out[n] = '\0';
  *len = n;
  return 0;
}

static void usage_user(FILE *err) {
  fprintf(err, "usage: engram user add EMAIL (--password-file FILE | --password-stdin) "
               "[--first NAME] [--last NAME]\n"
               "       engram user list\n"
               "       engram user delete EMAIL\n");
}

static int user_add(int argc, char **argv, const struct cli_env *env) {
  const char *email = NULL, *pwfile = NULL, *first = "", *last = "";
  bool pwstdin = false;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--password-file") == 0 && i + 1 < argc)
      pwfile = argv[++i];
    else if (strcmp(a, "--password-stdin") == 0)
      pwstdin = true;
    else if (strcmp(a, "--first") == 0 && i + 1 < argc)
      first = argv[++i];
    else if (strcmp(a, "--last") == 0 && i + 1 < argc)
      last = argv[++i];
    else if (a[0] != '-' && email == NULL)
      email = a;
    else {
      fprintf(env->err, "engram user add: unexpected argument '%s'\n", a);
      usage_user(env->err);
      return 2;
    }
  }
  if (email == NULL || (pwfile == NULL) == !pwstdin) {
    usage_user(env->err);
    return 2;
  }
  char norm[AUTH_EMAIL_MAX + 1];
  if (auth_email_normalize(email, strlen(email), norm) != 0) {
    fprintf(env->err, "engram user add: '%s' is not a valid email address\n", email);
    return 1;
  }
  json_t *fj = json_string(first), *lj = json_string(last);
  bool names_ok = fj != NULL && lj != NULL && strlen(first) <= 4 * API_NAME_MAX &&
                  strlen(last) <= 4 * API_NAME_MAX;
  json_decref(fj);
  json_decref(lj);
  if (!names_ok) {
    fprintf(env->err, "engram user add: names must be UTF-8, at most 100 characters\n");
    return 1;
  }
  char pw[AUTH_PW_MAX + 2];
  size_t pwlen = 0;
  int rc;
  if (pwstdin) {
    rc = read_password(env->in, pw, sizeof pw, &pwlen);
  } else {
    FILE *f = fopen(pwfile, "r");
    if (f == NULL) {
      fprintf(env->err, "engram user add: cannot read %s: %s\n", pwfile, strerror(errno));
      return 1;
    }
    rc = read_password(f, pw, sizeof pw, &pwlen);
    fclose(f);
  }
  const char *why = NULL;
  if (rc != 0 || auth_password_check(pwlen, &why) != 0) {
    fprintf(env->err, "engram user add: %s\n",
            why ? why : "Password must be at most 128 bytes long");
    sodium_memzero(pw, sizeof pw);
    return 1;
  }
  char hash[AUTH_HASH_MAX];
  rc = auth_password_hash(pw, pwlen, 0, 0, hash);
  sodium_memzero(pw, sizeof pw);
  if (rc != 0) {
    fprintf(env->err, "engram user add: hashing failed: %s\n", eg_strerror(rc));
    return 1;
  }
  struct store *s;
  if (open_store(env, &s) != 0)
    return 1;
  struct store_user_new u = {
      .email = norm, .password_hash = hash, .first_name = first, .last_name = last};
  rc = store_user_create(s, &u);
  store_close(s);
  if (rc == EG_EEXISTS) {
    fprintf(env->err, "engram user add: %s already exists\n", norm);
    return 1;
  }
  if (rc != 0) {
    fprintf(env->err, "engram user add: %s\n", eg_strerror(rc));
    return 1;
  }
  fprintf(env->out, "%s %s\n", u.id, norm);
  return 0;
}

static int user_list(const struct cli_env *env) {
  struct store *s;
  if (open_store(env, &s) != 0)
    return 1;
  char after[ID_LEN + 1] = "";
  int rc;
  size_t total = 0;
  for (;;) {
    struct store_users l;
    rc = store_user_list(s, after, 500, &l);
    if (rc != 0)
      break;
    for (size_t i = 0; i < l.n; i++) {
      char t[25];
      clock_iso8601(l.v[i].created_at, t);
      fprintf(env->out, "%s\t%s\t%s\t%s\t%s\n", l.v[i].id, l.v[i].email,
              l.v[i].first_name ? l.v[i].first_name : "",
              l.v[i].last_name ? l.v[i].last_name : "", t);
    }
    total += l.n;
    size_t n = l.n;
    if (n > 0)
      memcpy(after, l.v[n - 1].id, sizeof after);
    store_users_free(&l);
    if (n < 500)
      break;
  }
  store_close(s);
  if (rc != 0) {
    fprintf(env->err, "engram user list: %s\n", eg_strerror(rc));
    return 1;
  }
  fprintf(env->err, "%zu user%s\n", total, total == 1 ? "" : "s");
  return 0;
}

static int user_delete(int argc, char **argv, const struct cli_env *env) {
  if (argc != 3) {
    usage_user(env->err);
    return 2;
  }
  char norm[AUTH_EMAIL_MAX + 1];
  if (auth_email_normalize(argv[2], strlen(argv[2]), norm) != 0) {
    fprintf(env->err, "engram user delete: '%s' is not a valid email address\n", argv[2]);
    return 1;
  }
  struct store *s;
  if (open_store(env, &s) != 0)
    return 1;
  struct store_user u;
  int rc = store_user_get_by_email(s, norm, &u);
  if (rc == 0) {
    rc = store_user_delete(s, u.id);
    if (rc == 0)
      fprintf(env->out, "deleted %s %s\n", u.id, norm);
    store_user_clear(&u);
  }
  store_close(s);
  if (rc == EG_ENOTFOUND) {
    fprintf(env->err, "engram user delete: no user %s\n", norm);
    return 1;
  }
  if (rc != 0) {
    fprintf(env->err, "engram user delete: %s\n", eg_strerror(rc));
    return 1;
  }
  return 0;
}

int cli_user(int argc, char **argv, const struct cli_env *env) {
  if (argc < 2) {
    usage_user(env->err);
    return 2;
  }
  if (strcmp(argv[1], "add") == 0)
    return user_add(argc, argv, env);
  if (strcmp(argv[1], "list") == 0 && argc == 2)
    return user_list(env);
  if (strcmp(argv[1], "delete") == 0)
    return user_delete(argc, argv, env);
  usage_user(env->err);
  return 2;
}

int cli_migrate(int argc, char **argv, const struct cli_env *env) {
  (void)argv;
  if (argc != 1) {
    fprintf(env->err, "usage: engram migrate\n");
    return 2;
  }
  struct store *s;
  if (open_store(env, &s) != 0)
    return 1;
  int version = 0;
  int rc = store_migrate(s, &version);
  if (rc == 0)
    fprintf(env->out, "%s schema version %d (latest %d)\n", store_describe(s), version,
            store_schema_latest());
  else
    fprintf(env->err, "engram migrate: %s\n", eg_strerror(rc));
  store_close(s);
  return rc == 0 ? 0 : 1;
}

static json_t *iso(int64_t ms) {
  char t[25];
  clock_iso8601(ms, t);
  return json_string(t);
}

/* All messages of a chat, oldest first: pages are fetched newest-first and spliced in
   front. */
static int export_messages(struct store *s, const char *uid, const char *chat, json_t *arr) {
  char before[ID_LEN + 1] = "";
  for (;;) {
    struct store_messages l;
    struct store_page pg = {.before_id = before, .limit = 500};
    int rc = store_message_list(s, uid, chat, &pg, &l);
    if (rc != 0)
      return rc;
    for (size_t i = l.n; i > 0; i--) {
      const struct store_message *m = &l.v[i - 1];
      json_t *o = json_pack("{s:s,s:s,s:s,s:o}", "_id", m->id, "role", m->role, "content",
                            m->content ? m->content : "", "createdAt", iso(m->created_at));
      if (m->cancelled)
        json_object_set_new(o, "cancelled", json_true());
      if (m->client_id != NULL)
        json_object_set_new(o, "clientId", json_string(m->client_id));
      json_array_insert_new(arr, 0, o);
    }
    size_t n = l.n;
    if (n > 0)
      memcpy(before, l.v[0].id, sizeof before);
    store_messages_free(&l);
    if (n < 500)
      return 0;
  }
}

int cli_export(int argc, char **argv, const struct cli_env *env) {
  if (argc != 3 || strcmp(argv[1], "--user") != 0) {
    fprintf(env->err, "usage: engram export --user EMAIL\n");
    return 2;
  }
  char norm[AUTH_EMAIL_MAX + 1];
  if (auth_email_normalize(argv[2], strlen(argv[2]), norm) != 0) {
    fprintf(env->err, "engram export: '%s' is not a valid email address\n", argv[2]);
    return 1;
  }
  struct store *s;
  if (open_store(env, &s) != 0)
    return 1;
  struct store_user u;
  json_t *chats = json_array(), *doc = NULL;
  int rc = store_user_get_by_email(s, norm, &u);
  if (rc == EG_ENOTFOUND) {
    fprintf(env->err, "engram export: no user %s\n", norm);
    json_decref(chats);
    store_close(s);
    return 1;
  }
  if (rc != 0)
    goto out;
  char before[ID_LEN + 1] = "";
  for (;;) {
    struct store_chats l;
    rc = store_chat_list(s, u.id, before, 500, &l);
    if (rc != 0)
      break;
    for (size_t i = 0; i < l.n && rc == 0; i++) {
      const struct store_chat *c = &l.v[i];
      json_t *msgs = json_array();
      rc = export_messages(s, u.id, c->id, msgs);
      json_array_append_new(chats, json_pack("{s:s,s:s,s:o,s:o,s:o}", "_id", c->id, "title",
                                             c->title ? c->title : "", "lastActivity",
                                             iso(c->last_activity), "createdAt",
                                             iso(c->created_at), "messages", msgs));
    }
    size_t n = l.n;
    if (n > 0)
      memcpy(before, l.v[n - 1].id, sizeof before);
    store_chats_free(&l);
    if (rc != 0 || n < 500)
      break;
  }
  if (rc == 0) {
    doc = json_pack("{s:{s:s,s:s,s:{s:s,s:s},s:o},s:O}", "user", "_id", u.id, "email", u.email,
                    "fullName", "firstName", u.first_name ? u.first_name : "", "lastName",
                    u.last_name ? u.last_name : "", "createdAt", iso(u.created_at), "chats",
                    chats);
    if (json_dumpf(doc, env->out, JSON_INDENT(2)) != 0 || fputc('\n', env->out) == EOF)
      rc = EG_EIO;
  }
  store_user_clear(&u);
out:
  json_decref(doc);
  json_decref(chats);
  store_close(s);
  if (rc != 0) {
    fprintf(env->err, "engram export: %s\n", eg_strerror(rc));
    return 1;
  }
  return 0;
}
