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

/* The civil date of a count of days since 1970-01-01 (Howard Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);                          /* [0, 146096] */
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
  unsigned mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void put2(char *o, unsigned v) {
  o[0] = (char)('0' + v / 10 % 10);
  o[1] = (char)('0' + v % 10);
}

/* Without gmtime_r and snprintf (on every chat event's path); the same characters as
   gmtime_r + "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ" of the fields bounded as before. */
void clock_iso8601(int64_t wall_ms, char out[25]) {
  int64_t secs = wall_ms >= 0 ? wall_ms / 1000 : (wall_ms - 999) / 1000;
  unsigned ms = (unsigned)(wall_ms - secs * 1000);
  int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  unsigned sod = (unsigned)(secs - days * 86400);
  int64_t y;
  unsigned mo, d;
  civil_from_days(days, &y, &mo, &d);
  unsigned yy = (unsigned)(int)y % 10000u;
  put2(out, yy / 100);
  put2(out + 2, yy % 100);
  out[4] = '-';
  put2(out + 5, mo);
  out[7] = '-';
  put2(out + 8, d);
  out[10] = 'T';
  put2(out + 11, sod / 3600);
  out[13] = ':';
  put2(out + 14, sod / 60 % 60);
  out[16] = ':';
  put2(out + 17, sod % 60);
  out[19] = '.';
  out[20] = (char)('0' + ms / 100);
  put2(out + 21, ms % 100);
  out[23] = 'Z';
  out[24] = 0;
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
