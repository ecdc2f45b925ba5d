/* Settings from defaults, environment and flags (see config.h). */
#include "app/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

enum kind { KIND_STR, KIND_INT, KIND_BOOL };

struct setting {
  const char *env, *flag, *def, *help;
  enum kind kind;
  size_t off;
};

static const struct setting settings[] = {
#define CONFIG__ROW(f, k, e, fl, d, h) {e, fl, d, h, KIND_##k, offsetof(struct config, f)},
    CONFIG_MAP(CONFIG__ROW)
#undef CONFIG__ROW
};

static int parse_bool(const char *v, bool *out) {
  if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
    *out = true;
  else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") ||
           !*v)
    *out = false;
  else
    return EG_EINVAL;
  return 0;
}

static int set_value(struct config *c, const struct setting *s, const char *v, FILE *err,
                     const char *where) {
  char *field = (char *)c + s->off;
  switch (s->kind) {
  case KIND_STR: {
    char **p = (char **)(void *)field;
    free(*p);
    *p = xstrdup(v);
    return 0;
  }
  case KIND_INT: {
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 0) {
      fprintf(err, "engram: %s: '%s' is not a non-negative whole number\n", where, v);
      return EG_EINVAL;
    }
    *(long long *)(void *)field = n;
    return 0;
  }
  case KIND_BOOL:
    if (parse_bool(v, (bool *)(void *)field)) {
      fprintf(err, "engram: %s: '%s' is not a boolean (1/0, true/false)\n", where, v);
      return EG_EINVAL;
    }
    return 0;
  }
  return EG_EINVAL;
}

static const struct setting *find_flag(const char *name, size_t len) {
  for (size_t i = 0; i < EG_ARRAY_LEN(settings); i++)
    if (strlen(settings[i].flag) == len && !strncmp(settings[i].flag, name, len))
      return &settings[i];
  return NULL;
}

int config_load(struct config *c, int argc, char **argv, int first, char ***rest, int *nrest,
                FILE *err) {
  memset(c, 0, sizeof *c);
  int rc = 0;
  for (size_t i = 0; i < EG_ARRAY_LEN(settings) && !rc; i++) {
    const struct setting *s = &settings[i];
    const char *v = getenv(s->env);
    if (v == NULL && !strcmp(s->env, "JWT_SECRET"))
      v = getenv("JWT_SECRETE"); /* the older design's spelling */
    rc = set_value(c, s, s->def, err, s->env);
    if (!rc && v != NULL)
      rc = set_value(c, s, v, err, s->env);
  }
  int n = 0;
  for (int i = first; i < argc && !rc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
      argv[first + n++] = argv[i];
      continue;
    }
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct setting *s = find_flag(name, len);
    if (s == NULL) {
      /* Not a setting: leave it for the subcommand. */
      argv[first + n++] = argv[i];
      continue;
    }
    const char *v = NULL;
    if (eq)
      v = eq + 1;
    else if (s->kind == KIND_BOOL)
      v = "1"; /* a bare boolean flag turns it on; --flag=0 turns it off */
    else if (i + 1 < argc)
      v = argv[++i];
    if (v == NULL) {
      fprintf(err, "engram: --%s needs a value\n", s->flag);
      rc = EG_EINVAL;
      break;
    }
    char where[64];
    snprintf(where, sizeof where, "--%s", s->flag);
    rc = set_value(c, s, v, err, where);
  }
  if (rest)
    *rest = argv + first;
  if (nrest)
    *nrest = n;
  if (rc)
    return rc;

  if (c->port > 65535) {
    fprintf(err, "engram: port %lld is out of range\n", c->port);
    return EG_EINVAL;
  }
  if (!*c->db) {
    free(c->db);
    size_t len = strlen(c->data_dir) + sizeof "/engram.db";
    c->db = xmalloc(len);
    snprintf(c->db, len, "%s/engram.db", c->data_dir);
  }
  if (!*c->llm) {
    free(c->llm);
    c->llm = xstrdup(*c->gemini_api_key ? "gemini" : *c->openai_base_url ? "openai" : "offline");
  }
  if (strcmp(c->llm, "gemini") && strcmp(c->llm, "openai") && strcmp(c->llm, "offline")) {
    fprintf(err, "engram: ENGRAM_LLM must be gemini, openai or offline, not '%s'\n", c->llm);
    return EG_EINVAL;
  }
  if (!*c->vectors) {
    free(c->vectors);
    c->vectors =
        xstrdup(*c->pinecone_api_key && *c->pinecone_index_host ? "pinecone" : "builtin");
  }
  if (strcmp(c->vectors, "builtin") && strcmp(c->vectors, "pinecone")) {
    fprintf(err, "engram: ENGRAM_VECTORS must be builtin or pinecone, not '%s'\n", c->vectors);
    return EG_EINVAL;
  }
  if (strcmp(c->embedder, "hash") && strcmp(c->embedder, "gemini") &&
      strcmp(c->embedder, "openai")) {
    fprintf(err, "engram: ENGRAM_EMBEDDER must be hash, gemini or openai, not '%s'\n",
            c->embedder);
    return EG_EINVAL;
  }
  return 0;
}

void config_free(struct config *c) {
  for (size_t i = 0; i < EG_ARRAY_LEN(settings); i++)
    if (settings[i].kind == KIND_STR) {
      char **p = (char **)(void *)((char *)c + settings[i].off);
      free(*p);
      *p = NULL;
    }
}

void config_print_help(FILE *out) {
  fprintf(out, "Settings (flag, environment variable, default):\n");
  for (size_t i = 0; i < EG_ARRAY_LEN(settings); i++) {
    const struct setting *s = &settings[i];
    const char *help = s->help;
    bool secret = !strncmp(help, "secret: ", 8);
    if (secret)
      help += 8;
    fprintf(out, "  --%-22s %-24s %s\n", s->flag, s->env,
            secret || !*s->def ? "" : s->def);
    fprintf(out, "      %s\n", help);
  }
}
