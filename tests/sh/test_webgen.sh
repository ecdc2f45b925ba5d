#!/usr/bin/env bash
# cmake/webgen.c, the build step that compiles web/ into the binary, on small made-up
# files: the signed-in variant of an HTML file with <html data-screen="auth"> (the same
# bytes but that attribute, its templates untouched), the versioned script reference and
# the CSP hash of the inline script, the same for both variants.
set -euo pipefail
B=${ENGRAM_BUILD:-build}
WG=$B/webgen
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
pass=0
ok() { pass=$((pass + 1)); echo "ok $pass - $*"; }

cat >"$TMP/a.js" <<'JS'
export const a = 1;
JS
page() { # $1: the body's markup
  printf '<!doctype html>\n<html lang="en" data-screen="auth">\n<body>\n%s\n<script>import("/a.js");</script>\n</body>\n</html>\n' "$1" >"$TMP/index.html"
}
gen() { "$WG" "$TMP/out.c" "/index.html=$TMP/index.html" "/a.js=$TMP/a.js" 2>"$TMP/err"; }
# The bytes of the asset at path $1 from the generated C source, as text.
asset() {
  python3 - "$TMP/out.c" "$1" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
rows = re.findall(r'\{"([^"]*)", "[^"]*", (f\d+), \d+,', src)
name = dict(rows)[sys.argv[2]]
body = re.search(r"static const uint8_t %s\[\d+\] = \{([^}]*)\}" % name, src).group(1)
sys.stdout.write(bytes(int(x) for x in body.split(",") if x.strip()).decode())
PY
}

page '<template data-screen="auth"><main id="auth"><form><input id="email"></form></main></template>
<template data-screen="app"><div id="app"><p>chats</p><template id="memory-tpl"><section id="memory-view"><input id="q"></section></template><p>end of app</p></div></template>'
gen || fail "webgen failed: $(cat "$TMP/err")"
auth=$(asset /index.html)
app=$(asset "/index.html?signed-in")
[[ $auth == *'data-screen="auth">'* && $app == "${auth/data-screen=\"auth\"/data-screen=\"app\"}" ]] ||
  fail "the signed-in variant is not the same page with data-screen=\"app\": $app"
[[ $auth == *'<template data-screen="auth"><main id="auth"><form>'* ]] || fail "signed-out variant: $auth"
ok "signed in: the same page but <html data-screen=\"app\">, the screen templates as written"
[[ $auth == *'import("/a.js?v='* ]] || fail "the script reference is not versioned"
h=$(printf '%s' "$(python3 -c 'import re,sys; print(re.search(r"<script>(.*?)</script>", open(sys.argv[1]).read(), re.S).group(1), end="")' <(echo "$auth"))" | openssl dgst -sha256 -binary | base64)
grep -q "web__csp_script\[\] = \" 'sha256-$h'\"" "$TMP/out.c" || fail "CSP hash of the inline script ($h) not in $(grep csp_script "$TMP/out.c")"
ok "the inline script's hash (after versioning) is in the CSP, the same for both variants"

echo "$pass passed, 0 failed"
