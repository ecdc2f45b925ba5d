/* Error code names and texts from the one table in base.h. */
#include "base.h"

const char *eg_strerror(int code) {
  switch (code) {
  case EG_OK:
    return "ok";
#define EG__ERR_TEXT(name, text)                                                           \
  case EG_E##name:                                                                         \
    return text;
    EG_ERRNO_MAP(EG__ERR_TEXT)
#undef EG__ERR_TEXT
  default:
    return "unknown error";
  }
}

const char *eg_errname(int code) {
  switch (code) {
  case EG_OK:
    return "OK";
#define EG__ERR_NAME(name, text)                                                           \
  case EG_E##name:                                                                         \
    return #name;
    EG_ERRNO_MAP(EG__ERR_NAME)
#undef EG__ERR_NAME
  default:
    return "UNKNOWN";
  }
}
