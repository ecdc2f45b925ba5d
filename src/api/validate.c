/*
 * Request-body validation for the REST routes: pure functions from bytes to a checked
 * struct or a 400 message. jansson parses the JSON (duplicate keys refused, no NUL inside
 * strings); the rules are listed with each function in api.h.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

static json_t *load_object(const char *body, size_t len, const char **msg) {
  if (len == 0) {
    *msg = "Request body must be a JSON object";
    return NULL;
  }
  json_error_t e;
  json_t *j =
      json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
  if (j == NULL) {
    *msg = "Invalid JSON in request body";
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    *msg = "Request body must be a JSON object";
    return NULL;
  }
  return j;
}

/* A string field: absent/null -> EG_ENOTFOUND, not a string or containing NUL ->
   EG_EINVAL. */
static int get_str(json_t *o, const char *key, const char **s, size_t *len) {
  json_t *v = json_object_get(o, key);
  if (v == NULL || json_is_null(v))
    return EG_ENOTFOUND;
  if (!json_is_string(v))
    return EG_EINVAL;
  *s = json_string_value(v);
  *len = json_string_length(v);
  if (strlen(*s) != *len)
    return EG_EINVAL;
  return 0;
}

static bool ws(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trims, checks 1..max code points and no control characters; returns a copy or NULL. */
static char *clean_text(const char *s, size_t len, size_t max_chars) {
  while (len > 0 && ws(s[0])) {
    s++;
    len--;
  }
  while (len > 0 && ws(s[len - 1]))
    len--;
  if (len == 0)
    return NULL;
  size_t chars = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f)
      return NULL;
    if ((c & 0xc0) != 0x80)
      chars++;
  }
  if (chars > max_chars)
    return NULL;
  return xstrndup(s, len);
}

static char *dup_secret(const char *s, size_t len) {
  char *p = xmalloc(len + 1);
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

static void wipe_free(char *p, size_t len) {
  if (p != NULL) {
    sodium_memzero(p, len);
    free(p);
  }
}

void api_register_body_clear(struct api_register_body *b) {
  wipe_free(b->password, b->password_len);
  free(b->first_name);
  free(b->last_name);
  memset(b, 0, sizeof *b);
}

void api_login_body_clear(struct api_login_body *b) {
  wipe_free(b->password, b->password_len);
  memset(b, 0, sizeof *b);
}

int api_parse_register(const char *body, size_t len, struct api_register_body *out,
                       const char **msg) {
  memset(out, 0, sizeof *out);
  json_t *j = load_object(body, len, msg);
  if (j == NULL)
    return EG_EINVAL;
  const char *s;
  size_t n;
  int rc = EG_EINVAL;
  int r = get_str(j, "email", &s, &n);
  if (r == EG_ENOTFOUND) {
    *msg = "email is required";
    goto out;
  }
  if (r != 0) {
    *msg = "email must be a string";
    goto out;
  }
  if (auth_email_normalize(s, n, out->email) != 0) {
    *msg = "email is not a valid email address";
    goto out;
  }
  r = get_str(j, "password", &s, &n);
  if (r == EG_ENOTFOUND) {
    *msg = "password is required";
    goto out;
  }
  if (r != 0) {
    *msg = "password must be a string";
    goto out;
  }
  if (auth_password_check(n, msg) != 0)
    goto out;
  out->password = dup_secret(s, n);
  out->password_len = n;

  json_t *fn = json_object_get(j, "fullName");
  if (fn == NULL || json_is_null(fn)) {
    *msg = "fullName is required";
    goto out;
  }
  if (!json_is_object(fn)) {
    *msg = "fullName must be an object {firstName, lastName}";
    goto out;
  }
  r = get_str(fn, "firstName", &s, &n);
  if (r == EG_ENOTFOUND) {
    *msg = "fullName.firstName is required";
    goto out;
  }
  if (r != 0) {
    *msg = "fullName.firstName must be a string";
    goto out;
  }
  out->first_name = clean_text(s, n, API_NAME_MAX);
  if (out->first_name == NULL) {
    *msg = "fullName.firstName must be 1 to 100 characters";
    goto out;
  }
  r = get_str(fn, "lastName", &s, &n);
  if (r == EG_ENOTFOUND) {
    *msg = "fullName.lastName is required";
    goto out;
  }
  if (r != 0) {
    *msg = "fullName.lastName must be a string";
    goto out;
  }
  out->last_name = clean_text(s, n, API_NAME_MAX);
  if (out->last_name == NULL) {
    *msg = "fullName.lastName must be 1 to 100 characters";
    goto out;
  }
  rc = 0;
  *msg = NULL;
out:
  json_decref(j);
  if (rc != 0)
    api_register_body_clear(out);
  return rc;
}

int api_parse_login(const char *body, size_t len, struct api_login_body *out,
                    const char **msg) {
  memset(out, 0, sizeof *out);
  json_t *j = load_object(body, len, msg);
  if (j == NULL)
    return EG_EINVAL;
  const char *e, *p;
  size_t en, pn;
  int rc = EG_EINVAL;
  int r1 = get_str(j, "email", &e, &en), r2 = get_str(j, "password", &p, &pn);
  if (r1 == EG_ENOTFOUND || r2 == EG_ENOTFOUND) {
    *msg = "email and password are required";
    goto out;
  }
  if (r1 != 0 || r2 != 0) {
    *msg = "email and password must be strings";
    goto out;
  }
  /* A malformed email or an out-of-bounds password cannot match an account: they are
     left for the handler to refuse with the same 401 as a wrong password. */
  if (auth_email_normalize(e, en, out->email) != 0)
    out->email[0] = '\0';
  if (pn > AUTH_PW_MAX)
    pn = AUTH_PW_MAX + 1; /* never matches; bounds the copy */
  out->password = dup_secret(p, pn <= AUTH_PW_MAX ? pn : 0);
  out->password_len = pn <= AUTH_PW_MAX ? pn : 0;
  if (pn > AUTH_PW_MAX || pn < AUTH_PW_MIN)
    out->email[0] = '\0';
  rc = 0;
  *msg = NULL;
out:
  json_decref(j);
  if (rc != 0)
    api_login_body_clear(out);
  return rc;
}

int api_parse_title(const char *body, size_t len, char **title, const char **msg) {
  *title = NULL;
  json_t *j = load_object(body, len, msg);
  if (j == NULL)
    return EG_EINVAL;
  const char *s;
  size_t n;
  int rc = EG_EINVAL;
  int r = get_str(j, "title", &s, &n);
  if (r == EG_ENOTFOUND) {
    *msg = "title is required";
    goto out;
  }
  if (r != 0) {
    *msg = "title must be a string";
    goto out;
  }
  *title = clean_text(s, n, API_TITLE_MAX);
  if (*title == NULL) {
    *msg = "title must be 1 to 200 characters, without control characters";
    goto out;
  }
  rc = 0;
  *msg = NULL;
out:
  json_decref(j);
  return rc;
}

int api_parse_note(const char *body, size_t len, char **text, int64_t *created_at,
                   const char **msg) {
  *text = NULL;
  *created_at = 0;
  json_t *j = load_object(body, len, msg);
  if (j == NULL)
    return EG_EINVAL;
  const char *s;
  size_t n;
  int rc = EG_EINVAL;
  int r = get_str(j, "text", &s, &n);
  if (r == EG_ENOTFOUND) {
    *msg = "text is required";
    goto out;
  }
  if (r != 0) {
    *msg = "text must be a string";
    goto out;
  }
  size_t blank = 0;
  while (blank < n && ws(s[blank]))
    blank++;
  if (blank == n || n > API_NOTE_MAX) {
    *msg = "text must be 1 to 65536 bytes and not only whitespace";
    goto out;
  }
  json_t *c = json_object_get(j, "createdAt");
  int64_t when = 0;
  if (json_is_string(c)) {
    if (clock_parse_iso8601(json_string_value(c), json_string_length(c), &when) != 0) {
      *msg = "createdAt must be an ISO 8601 date";
      goto out;
    }
  } else if (json_is_integer(c)) {
    when = json_integer_value(c);
  } else if (c != NULL && !json_is_null(c)) {
    *msg = "createdAt must be an ISO 8601 date or epoch milliseconds";
    goto out;
  }
  if (c != NULL && !json_is_null(c) &&
      (when <= 0 || when > clock_wall_ms() + 24 * 3600 * 1000)) {
    *msg = "createdAt is out of range";
    goto out;
  }
  *text = xstrndup(s, n);
  *created_at = when;
  rc = 0;
  *msg = NULL;
out:
  json_decref(j);
  return rc;
}
