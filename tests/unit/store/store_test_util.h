/*
 * Helpers shared by the store tests: where PostgreSQL is (from the file named by
 * ENGRAM_SERVICES_ENV), private schemas so the suite never sees other tests' rows, and
 * small constructors. Header-only (static functions): each test executable includes it.
 */
#ifndef ENGRAM_TEST_STORE_UTIL_H
#define ENGRAM_TEST_STORE_UTIL_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "store/store.h"

/* Value of KEY in the services env file (quotes stripped) into out; false when absent. */
static bool svc_get(const char *key, char *out, size_t cap) {
  const char *file = getenv("ENGRAM_SERVICES_ENV");
  if (!file)
    return false;
  FILE *f = fopen(file, "r");
  if (!f)
    return false;
  char line[1024];
  bool found = false;
  size_t kl = strlen(key);
  while (!found && fgets(line, sizeof(line), f)) {
    if (strncmp(line, key, kl) != 0 || line[kl] != '=')
      continue;
    char *v = line + kl + 1;
    v[strcspn(v, "\r\n")] = 0;
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
      v[n - 1] = 0;
      v++;
    }
    size_t vl = strlen(v);
    if (vl >= cap)
      vl = cap - 1;
    memcpy(out, v, vl);
    out[vl] = 0;
    found = vl != 0;
  }
  fclose(f);
  return found;
}

static void pg_quiet(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

/* Creates schema `name` on the server of base_url and writes into url a connection URL
   whose search_path is that schema. Returns false when PostgreSQL is not available. */
static bool pg_private_url(const char *base_url, const char *name, char *url, size_t cap) {
  PGconn *c = PQconnectdb(base_url);
  PQsetNoticeProcessor(c, pg_quiet, NULL);
  bool ok = PQstatus(c) == CONNECTION_OK;
  if (ok) {
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", name,
             name);
    PGresult *r = PQexec(c, sql);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
      fprintf(stderr, "schema: %s", PQerrorMessage(c));
    PQclear(r);
  } else {
    fprintf(stderr, "postgres: %s", PQerrorMessage(c));
  }
  PQfinish(c);
  snprintf(url, cap, "%s%coptions=-csearch_path%%3D%s", base_url,
           strchr(base_url, '?') ? '&' : '?', name);
  return ok;
}

static void pg_drop_schema(const char *base_url, const char *name) {
  PGconn *c = PQconnectdb(base_url);
  PQsetNoticeProcessor(c, pg_quiet, NULL);
  if (PQstatus(c) == CONNECTION_OK) {
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", name);
    PQclear(PQexec(c, sql));
  }
  PQfinish(c);
}

#endif
