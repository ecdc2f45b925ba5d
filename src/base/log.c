/* One line per event on stderr, as text or JSON (see base.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

static enum log_level min_level = LOG_INFO;
static bool json_format;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init_from_env(void) {
  const char *lvl = getenv("ENGRAM_LOG_LEVEL");
  if (lvl) {
    for (int i = 0; i < 4; i++)
      if (strcmp(lvl, level_names[i]) == 0)
        min_level = (enum log_level)i;
  }
  const char *fmt = getenv("ENGRAM_LOG_FORMAT");
  json_format = fmt && strcmp(fmt, "json") == 0;
}

bool log_enabled(enum log_level lvl) { return lvl >= min_level; }

static void json_escape(FILE *f, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
}

void log_msg(enum log_level lvl, const char *fmt, ...) {
  if (!log_enabled(lvl))
    return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char ts[25];
  clock_iso8601(clock_wall_ms(), ts);
  flockfile(stderr);
  if (json_format) {
    fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level_names[lvl]);
    json_escape(stderr, msg);
    fputs("\"}\n", stderr);
  } else {
    fprintf(stderr, "%s %-5s %s\n", ts, level_names[lvl], msg);
  }
  funlockfile(stderr);
}
