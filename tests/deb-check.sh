#!/usr/bin/env bash
# Packages the app the test build made (target/debug/confer, built with the workspace
# and the `custom-protocol` feature by scripts/test.sh) as a Debian package with the
# Tauri bundler, and checks it: the package holds the binary and a desktop entry, and the
# entry registers the confer:// scheme (MimeType=x-scheme-handler/confer). `tauri bundle`
# compiles nothing: `tauri build` would build the app once more, on features of its own.
#
#   tests/deb-check.sh        prints "deb: N passed, M failed" last
set -uo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
passed=0
failed=0
check() { # description, then a command that succeeds when the check holds
  local what="$1"
  shift
  if "$@"; then
    echo "deb: ok: $what"
    passed=$((passed + 1))
  else
    echo "deb: FAIL: $what" >&2
    failed=$((failed + 1))
  fi
}

rm -rf "$target/debug/bundle/deb"
if ! ui/node_modules/.bin/tauri bundle --debug --bundles deb --ci >"${ARTIFACTS_DIR:-test-artifacts}/deb-build.log" 2>&1; then
  tail -n 30 "${ARTIFACTS_DIR:-test-artifacts}/deb-build.log" >&2
  echo "deb: FAIL: the bundler did not build the package" >&2
  echo "deb: 0 passed, 1 failed"
  exit 1
fi
deb=$(ls "$target"/debug/bundle/deb/*.deb 2>/dev/null | head -n1)
check "the bundler wrote a .deb ($deb)" test -f "$deb"
listing=$(dpkg-deb -c "$deb" 2>/dev/null)
grep -v '^d' <<<"$listing" | sed 's/^/deb:   /'
check "the package holds the binary /usr/bin/confer" grep -Eq ' (\./)?usr/bin/confer$' <<<"$listing"
entry=$(grep -Eo '(\./)?usr/share/applications/[^ ]*\.desktop$' <<<"$listing" | head -n1)
check "the package holds a desktop entry" test -n "$entry"
desktop=""
[ -n "$entry" ] && desktop=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO "$entry" 2>/dev/null)
echo "$desktop" | sed 's/^/deb:   /'
check "the desktop entry registers confer://" grep -q '^MimeType=.*x-scheme-handler/confer' <<<"$desktop"
check "the desktop entry passes the link to the app (%U or %u)" grep -Eq '^Exec=.*%[uU]' <<<"$desktop"
echo "deb: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
