/* Small shared helpers: method and status names, percent-decoding, the Date header. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http/http_int.h"

const char *http_method_name(enum http_method m) {
  static const char *const names[] = {"UNKNOWN", "GET",   "HEAD",    "POST",
                                      "PUT",     "DELETE", "PATCH",  "OPTIONS",
                                      "CONNECT", "TRACE"};
  if ((unsigned)m >= EG_ARRAY_LEN(names))
    return "UNKNOWN";
  return names[m];
}

const char *http_status_text(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 417: return "Expectation Failed";
  case 422: return "Unprocessable Entity";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

size_t http__pct_decode(const char *in, size_t n, char *out, bool plus_space) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = in[i];
    if (c == '%' && i + 2 < n) {
      int h = hexval(in[i + 1]);
      int l = hexval(in[i + 2]);
      if (h >= 0 && l >= 0) {
        out[o++] = (char)(h * 16 + l);
        i += 2;
        continue;
      }
    }
    out[o++] = (plus_space && c == '+') ? ' ' : c;
  }
  return o;
}

void http__date(char out[30]) {
  static _Thread_local time_t cached_t;
  static _Thread_local char cached[64];
  static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t now = time(NULL);
  if (now != cached_t || cached[0] == '\0') {
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(cached, sizeof cached, "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday],
             tm.tm_mday % 100, mon[tm.tm_mon], (tm.tm_year + 1900) % 10000, tm.tm_hour % 100,
             tm.tm_min % 100, tm.tm_sec % 100);
    cached_t = now;
  }
  memcpy(out, cached, 29);
  out[29] = '\0';
}
