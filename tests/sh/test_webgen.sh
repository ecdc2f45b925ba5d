#!/usr/bin/env bash
# cmake/webgen.c, the build step that compiles web/ into the binary, on small made-up
# files: the screen templates of an HTML file with <html data-screen="auth"> (each variant
# has its own screen's markup live and keeps the other screen's template, nested templates
# included), the CSP hash of the inline script, and its refusals (a missing or unclosed
# screen template).
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
[[ $auth == *'<body>
<main id="auth"><form><input id="email"></form></main>
<template data-screen="app"><div id="app"><p>chats</p><template id="memory-tpl"><section id="memory-view"><input id="q"></section></template><p>end of app</p></div></template>
<script>'* ]] || fail "signed-out variant: $auth"
ok "signed out: the sign-in screen live, the app screen (with its nested template) kept"
[[ $app == *'data-screen="app">'* && $app == *'<body>
<template data-screen="auth"><main id="auth"><form><input id="email"></form></main></template>
<div id="app"><p>chats</p><template id="memory-tpl"><section id="memory-view"><input id="q"></section></template><p>end of app</p></div>
<script>'* ]] || fail "signed-in variant: $app"
ok "signed in: the app screen live up to its own closing tag (not the nested one's)"
[[ $auth == *'import("/a.js?v='* ]] || fail "the script reference is not versioned"
h=$(printf '%s' "$(python3 -c 'import re,sys; print(re.search(r"<script>(.*?)</script>", open(sys.argv[1]).read(), re.S).group(1), end="")' <(echo "$auth"))" | openssl dgst -sha256 -binary | base64)
grep -q "web__csp_script\[\] = \" 'sha256-$h'\"" "$TMP/out.c" || fail "CSP hash of the inline script ($h) not in $(grep csp_script "$TMP/out.c")"
ok "the inline script's hash (after versioning) is in the CSP, the same for both variants"

page '<main id="auth"></main><template data-screen="app"><div id="app"></div></template>'
if gen; then fail "a page without its sign-in template was accepted"; fi
grep -q 'no <template data-screen="auth">' "$TMP/err" || fail "message: $(cat "$TMP/err")"
[[ ! -e $TMP/out.c.tmp ]] || fail "a half-written output was left"
ok "a missing screen template is refused, naming it"

page '<template data-screen="auth"><main id="auth"></main></template><template data-screen="app"><div id="app"><template id="x"></template>'
if gen; then fail "an unclosed app template was accepted"; fi
grep -q 'without </template>' "$TMP/err" || fail "message: $(cat "$TMP/err")"
ok "an unclosed screen template is refused"

echo "$pass passed, 0 failed"
