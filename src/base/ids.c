/* ObjectId-shaped ids, CSPRNG bytes and clocks. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base.h"

void rand_bytes(void *out, size_t n) {
  static int ready;
  if (!ready) {
    if (sodium_init() < 0) {
      fprintf(stderr, "engram: libsodium failed to initialise\n");
      abort();
    }
    ready = 1;
  }
  randombytes_buf(out, n);
}

void id_new_at(char out[ID_LEN + 1], uint32_t seconds) {
  static const char hex[] = "0123456789abcdef";
  uint8_t raw[12];
  raw[0] = (uint8_t)(seconds >> 24);
  raw[1] = (uint8_t)(seconds >> 16);
  raw[2] = (uint8_t)(seconds >> 8);
  raw[3] = (uint8_t)seconds;
  rand_bytes(raw + 4, 8);
  for (int i = 0; i < 12; i++) {
    out[2 * i] = hex[raw[i] >> 4];
    out[2 * i + 1] = hex[raw[i] & 15];
  }
  out[ID_LEN] = '\0';
}

void id_new(char out[ID_LEN + 1]) { id_new_at(out, (uint32_t)(clock_wall_ms() / 1000)); }

bool id_valid(const char *s, size_t len) {
  if (s == NULL || len != ID_LEN)
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  }
  return true;
}

uint64_t clock_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t clock_mono_ms(void) { return clock_mono_ns() / 1000000u; }

int64_t clock_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void clock_iso8601(int64_t wall_ms, char out[25]) {
  int64_t secs = wall_ms >= 0 ? wall_ms / 1000 : (wall_ms - 999) / 1000;
  int ms = (int)(wall_ms - secs * 1000);
  time_t t = (time_t)secs;
  struct tm tm;
  gmtime_r(&t, &tm);
  /* The casts bound every field, so the 24 characters always fit. */
  snprintf(out, 25, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
           (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
           (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
           (unsigned)ms % 1000u);
}

static int digits(const char *s, size_t n, int *out) {
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return EG_EINVAL;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int clock_parse_iso8601(const char *s, size_t len, int64_t *wall_ms) {
  int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
  if (len < 10 || s[4] != '-' || s[7] != '-' || digits(s, 4, &y) || digits(s + 5, 2, &mo) ||
      digits(s + 8, 2, &d))
    return EG_EINVAL;
  size_t i = 10;
  if (i < len && (s[i] == 'T' || s[i] == ' ')) {
    if (len < i + 9 || s[i + 3] != ':' || s[i + 6] != ':' || digits(s + i + 1, 2, &h) ||
        digits(s + i + 4, 2, &mi) || digits(s + i + 7, 2, &sec))
      return EG_EINVAL;
    i += 9;
    if (i < len && s[i] == '.') {
      i++;
      int nd = 0;
      ms = 0;
      while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (nd < 3)
          ms = ms * 10 + (s[i] - '0');
        nd++;
        i++;
      }
      if (nd == 0)
        return EG_EINVAL;
      for (; nd < 3; nd++)
        ms *= 10;
    }
  }
  int64_t offset_min = 0;
  if (i < len) {
    if (s[i] == 'Z' && i + 1 == len) {
      i++;
    } else if ((s[i] == '+' || s[i] == '-') && len == i + 6 && s[i + 3] == ':') {
      int oh, om;
      if (digits(s + i + 1, 2, &oh) || digits(s + i + 4, 2, &om))
        return EG_EINVAL;
      offset_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
      i = len;
    } else {
      return EG_EINVAL;
    }
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
    return EG_EINVAL;
  int64_t days = days_from_civil(y, mo, d);
  *wall_ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + ms;
  return 0;
}
