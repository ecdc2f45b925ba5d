/* sio/jscan: incremental subset-JSON validator (see jscan.h for the states). */
#include "sio/jscan.h"

enum {
  S_VALUE,
  S_ARR_FIRST,
  S_OBJ_FIRST,
  S_OBJ_KEY,
  S_KEY,
  S_KEY_ESC,
  S_STR,
  S_STR_ESC,
  S_COLON,
  S_AFTER,
  S_NUM_MINUS, /* after '-': a digit */
  S_NUM_ZERO,  /* a leading 0: '.', 'e' or the end */
  S_NUM_INT,   /* integer digits */
  S_NUM_DOT,   /* after '.': a digit */
  S_NUM_FRAC,  /* fraction digits */
  S_NUM_E,     /* after 'e': sign or digit */
  S_NUM_ESIGN, /* after the exponent sign: a digit */
  S_NUM_EXP,   /* exponent digits */
  S_LIT,
  S_ERR,
};

static const char *const lits[] = {"true", "false", "null"};
static const uint8_t lit_len[] = {4, 5, 4};

#define MAX_NUM_DIGITS 15
#define MAX_EXP_DIGITS 2

void jscan_init(struct jscan *j, uint32_t max_depth) {
  j->stack = 0;
  j->depth = 0;
  j->max_depth = max_depth > 64 ? 64 : max_depth;
  j->state = S_VALUE;
  j->lit = j->lit_pos = j->digits = 0;
  j->err = 0;
}

static int fail(struct jscan *j, int err) {
  j->state = S_ERR;
  j->err = err;
  return err;
}

static bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static int push(struct jscan *j, bool object) {
  if (j->depth >= j->max_depth)
    return fail(j, EG_ETOOBIG);
  if (object)
    j->stack |= 1ull << j->depth;
  else
    j->stack &= ~(1ull << j->depth);
  j->depth++;
  j->state = object ? S_OBJ_FIRST : S_ARR_FIRST;
  return 0;
}

static bool top_is_object(const struct jscan *j) {
  return (j->stack >> (j->depth - 1)) & 1u;
}

/* Starts a value at byte c (state VALUE or ARR_FIRST). */
static int value_start(struct jscan *j, uint8_t c) {
  switch (c) {
  case '{':
    return push(j, true);
  case '[':
    return push(j, false);
  case '"':
    j->state = S_STR;
    return 0;
  case '-':
    j->state = S_NUM_MINUS;
    j->digits = 0;
    return 0;
  case 't':
  case 'f':
  case 'n':
    j->lit = c == 't' ? 0 : c == 'f' ? 1 : 2;
    j->lit_pos = 1;
    j->state = S_LIT;
    return 0;
  default:
    if (c == '0') {
      j->state = S_NUM_ZERO;
      return 0;
    }
    if (is_digit(c)) {
      j->state = S_NUM_INT;
      j->digits = 1;
      return 0;
    }
    return fail(j, EG_EPROTO);
  }
}

/* Byte c right after a complete value (state AFTER). */
static int after(struct jscan *j, uint8_t c) {
  if (is_ws(c))
    return 0;
  if (j->depth == 0)
    return fail(j, EG_EPROTO); /* trailing garbage */
  bool obj = top_is_object(j);
  if (c == ',') {
    j->state = obj ? S_OBJ_KEY : S_VALUE;
    return 0;
  }
  if ((obj && c == '}') || (!obj && c == ']')) {
    j->depth--;
    j->state = S_AFTER;
    return 0;
  }
  return fail(j, EG_EPROTO);
}

/* Ends a number at byte c that is not part of it. */
static int num_end(struct jscan *j, uint8_t c) {
  j->state = S_AFTER;
  return after(j, c);
}

static int step(struct jscan *j, uint8_t c) {
  if (c == 0)
    return fail(j, EG_EUNSUPPORTED); /* jansson stops at a NUL: let it decide */
  switch (j->state) {
  case S_VALUE:
    if (is_ws(c))
      return 0;
    return value_start(j, c);
  case S_ARR_FIRST:
    if (is_ws(c))
      return 0;
    if (c == ']') {
      j->depth--;
      j->state = S_AFTER;
      return 0;
    }
    return value_start(j, c);
  case S_OBJ_FIRST:
  case S_OBJ_KEY:
    if (is_ws(c))
      return 0;
    if (c == '}' && j->state == S_OBJ_FIRST) {
      j->depth--;
      j->state = S_AFTER;
      return 0;
    }
    if (c == '"') {
      j->state = S_KEY;
      return 0;
    }
    return fail(j, EG_EPROTO);
  case S_KEY:
  case S_STR:
    if (c == '"') {
      j->state = j->state == S_KEY ? S_COLON : S_AFTER;
      return 0;
    }
    if (c == '\\') {
      j->state = j->state == S_KEY ? S_KEY_ESC : S_STR_ESC;
      return 0;
    }
    if (c < 0x20)
      return fail(j, EG_EPROTO);
    if (c >= 0x80)
      return fail(j, EG_EUNSUPPORTED);
    return 0;
  case S_KEY_ESC:
  case S_STR_ESC:
    switch (c) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
      j->state = j->state == S_KEY_ESC ? S_KEY : S_STR;
      return 0;
    case 'u':
      return fail(j, EG_EUNSUPPORTED);
    default:
      return fail(j, EG_EPROTO);
    }
  case S_COLON:
    if (is_ws(c))
      return 0;
    if (c == ':') {
      j->state = S_VALUE;
      return 0;
    }
    return fail(j, EG_EPROTO);
  case S_AFTER:
    return after(j, c);
  case S_NUM_MINUS:
    if (c == '0') {
      j->state = S_NUM_ZERO;
      return 0;
    }
    if (is_digit(c)) {
      j->state = S_NUM_INT;
      j->digits = 1;
      return 0;
    }
    return fail(j, EG_EPROTO);
  case S_NUM_ZERO:
    if (is_digit(c))
      return fail(j, EG_EPROTO); /* leading zero */
    /* fall through */
  case S_NUM_INT:
    if (is_digit(c)) {
      if (++j->digits > MAX_NUM_DIGITS)
        return fail(j, EG_EUNSUPPORTED);
      return 0;
    }
    if (c == '.') {
      j->state = S_NUM_DOT;
      return 0;
    }
    if (c == 'e' || c == 'E') {
      j->state = S_NUM_E;
      return 0;
    }
    return num_end(j, c);
  case S_NUM_DOT:
    if (!is_digit(c))
      return fail(j, EG_EPROTO);
    j->state = S_NUM_FRAC;
    /* digits counts integer and fraction digits together */
    if (++j->digits > MAX_NUM_DIGITS)
      return fail(j, EG_EUNSUPPORTED);
    return 0;
  case S_NUM_FRAC:
    if (is_digit(c)) {
      if (++j->digits > MAX_NUM_DIGITS)
        return fail(j, EG_EUNSUPPORTED);
      return 0;
    }
    if (c == 'e' || c == 'E') {
      j->state = S_NUM_E;
      return 0;
    }
    return num_end(j, c);
  case S_NUM_E:
    if (c == '+' || c == '-') {
      j->state = S_NUM_ESIGN;
      return 0;
    }
    /* fall through */
  case S_NUM_ESIGN:
    if (!is_digit(c))
      return fail(j, EG_EPROTO);
    j->state = S_NUM_EXP;
    j->digits = 1;
    return 0;
  case S_NUM_EXP:
    if (is_digit(c)) {
      if (++j->digits > MAX_EXP_DIGITS)
        return fail(j, EG_EUNSUPPORTED);
      return 0;
    }
    return num_end(j, c);
  case S_LIT:
    if (c != (uint8_t)lits[j->lit][j->lit_pos])
      return fail(j, EG_EPROTO);
    if (++j->lit_pos == lit_len[j->lit])
      j->state = S_AFTER;
    return 0;
  default:
    return j->err;
  }
}

int jscan_feed(struct jscan *j, const uint8_t *p, size_t n) {
  if (j->state == S_ERR)
    return j->err;
  for (size_t i = 0; i < n; i++) {
    int rc = step(j, p[i]);
    if (rc != 0)
      return rc;
  }
  return 0;
}

int jscan_finish(struct jscan *j) {
  if (j->state == S_ERR)
    return j->err;
  if (j->depth == 0) {
    switch (j->state) {
    case S_AFTER:
    case S_NUM_ZERO:
    case S_NUM_INT:
    case S_NUM_FRAC:
    case S_NUM_EXP:
      return 0;
    default:
      break;
    }
  }
  return fail(j, EG_EPROTO);
}

int jscan_validate(const uint8_t *p, size_t n, uint32_t max_depth) {
  struct jscan j;
  jscan_init(&j, max_depth);
  int rc = jscan_feed(&j, p, n);
  return rc != 0 ? rc : jscan_finish(&j);
}
