/*
 * Fuzzes the REST request-body validation (register, login, chat title, memory note) and the
 * small text checks behind it (emails, cookies, origins). Any input must give either a checked
 * struct or a 400 message, never a crash or a leak; accepted values must obey the rules.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  const char *msg;
  struct api_register_body r;
  if (api_parse_register(s, size, &r, &msg) == 0) {
    if (r.password_len < AUTH_PW_MIN || r.password_len > AUTH_PW_MAX || r.email[0] == '\0' ||
        r.first_name[0] == '\0' || r.last_name[0] == '\0')
      abort();
    api_register_body_clear(&r);
  } else if (msg == NULL) {
    abort();
  }
  struct api_login_body l;
  if (api_parse_login(s, size, &l, &msg) == 0)
    api_login_body_clear(&l);
  else if (msg == NULL)
    abort();
  char *title;
  if (api_parse_title(s, size, &title, &msg) == 0) {
    if (title[0] == '\0' || strlen(title) > 4 * API_TITLE_MAX)
      abort();
    free(title);
  } else if (title != NULL || msg == NULL) {
    abort();
  }
  char *note;
  int64_t at;
  if (api_parse_note(s, size, &note, &at, &msg) == 0) {
    if (strlen(note) == 0 || strlen(note) > API_NOTE_MAX || at < 0)
      abort();
    free(note);
  } else if (note != NULL || msg == NULL) {
    abort();
  }
  char email[AUTH_EMAIL_MAX + 1];
  if (auth_email_normalize(s, size, email) == 0 && strchr(email, '@') == NULL)
    abort();
  struct slice v;
  if (auth_cookie_get((struct slice){s, size}, "token", &v) &&
      (v.p < s || v.p + v.len > s + size))
    abort();
  (void)auth_origin_allowed((struct slice){s, size}, (struct slice){s, size / 2}, "http", "",
                            "http://a.example, https://b.example:8443");
  return 0;
}
