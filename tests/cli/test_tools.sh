#!/usr/bin/env bash
# Tests of the tools (build/nst-inspect, build/nst-convert) and of `make install` / `make uninstall`.
# Usage: bash tests/cli/test_tools.sh   (from anywhere; it works in the repository root)
# Ends with "test_tools: N passed, N failed, N skipped" like the C test programs.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
passed=0; failed=0; skipped=0
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
bad()  { failed=$((failed + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/  | /' <<<"$2" | head -20; }
skip() { skipped=$((skipped + 1)); echo "skip $1: $2"; }
W=tests/fixtures/weights/caffe_v1.caffemodel
P=tests/fixtures/jpeg/peacock.ppm

# ---- nst-inspect --dump creates DIR and its parents -------------------------------------------------
if build/nst-inspect "$W" --content "$P" --style "$P" --dump "$T/new/deeper/dump" > "$T/out" 2>&1 &&
   [ -s "$T/new/deeper/dump/act_relu1_1.npy" ] && [ -s "$T/new/deeper/dump/grad_pixels.npy" ]; then
  ok "inspect --dump creates its directory"
else bad "inspect --dump creates its directory" "$(cat "$T/out")"; fi
touch "$T/afile"
if ! build/nst-inspect "$W" --content "$P" --style "$P" --dump "$T/afile/sub" > "$T/out" 2>&1 &&
   grep -q "cannot create directory" "$T/out"; then ok "inspect --dump under a file fails"
else bad "inspect --dump under a file fails" "$(cat "$T/out")"; fi

# ---- a directory where a file is expected is named as one --------------------------------------------
mkdir -p "$T/adir"
if ! build/nst-inspect "$T/adir" > "$T/out" 2>&1 && grep -q "directory" "$T/out"; then ok "inspect: directory"
else bad "inspect: directory" "$(cat "$T/out")"; fi
if ! build/nst-convert "$T/adir" "$T/x.nstw" > "$T/out" 2>&1 && grep -q "is a directory" "$T/out"; then ok "convert: directory"
else bad "convert: directory" "$(cat "$T/out")"; fi
if ! build/nst-inspect "$W" --content "$T/adir" --style "$P" --dump "$T/d2" > "$T/out" 2>&1 &&
   grep -q "is a directory" "$T/out"; then ok "inspect --content directory"
else bad "inspect --content directory" "$(cat "$T/out")"; fi

# ---- make install / uninstall, with PREFIX and DESTDIR -----------------------------------------------
D=$T/dest; PFX=/opt/nst-test
if make -s install PREFIX="$PFX" DESTDIR="$D" > "$T/out" 2>&1; then
  missing=""
  for f in bin/nst bin/nst-convert bin/nst-inspect include/nst.h share/man/man1/nst.1 lib/pkgconfig/nst.pc; do
    [ -f "$D$PFX/$f" ] || missing="$missing $f"
  done
  [ -z "$missing" ] && ok "install: files in place" || bad "install: files in place" "missing:$missing"
  [ -x "$D$PFX/bin/nst" ] && "$D$PFX/bin/nst" --version | grep -q "^nst " && ok "install: nst runs" ||
    bad "install: nst runs"
  grep -q "^prefix=$PFX\$" "$D$PFX/lib/pkgconfig/nst.pc" && grep -q "^Version: [0-9]" "$D$PFX/lib/pkgconfig/nst.pc" &&
    ok "install: nst.pc names PREFIX" || bad "install: nst.pc names PREFIX" "$(cat "$D$PFX/lib/pkgconfig/nst.pc")"
  # the man page is made from --help: every long option of the help is in it
  if grep -q '^\.TH NST 1' "$D$PFX/share/man/man1/nst.1"; then
    miss=$(build/nst --help | grep -oE -- '--[a-z][a-z-]+' | sort -u | while read -r o; do
      grep -qF -- "$(sed 's/-/\\-/g' <<<"$o")" "$D$PFX/share/man/man1/nst.1" || echo "$o"; done)
    [ -z "$miss" ] && ok "install: man page lists every option" || bad "install: man page lists every option" "$miss"
  else bad "install: man page" "$(head -3 "$D$PFX/share/man/man1/nst.1")"; fi
  if command -v groff > /dev/null; then
    warn=$(groff -man -Tutf8 -ww "$D$PFX/share/man/man1/nst.1" 2>&1 > /dev/null)
    [ -z "$warn" ] && ok "install: man page renders cleanly" || bad "install: man page renders cleanly" "$warn"
  else skip "install: man page renders cleanly" "no groff"; fi
  # a program built against the installed header through pkg-config
  if command -v pkg-config > /dev/null; then
    printf '#define NST_IMPLEMENTATION\n#include <nst.h>\n#include <stdio.h>\nint main(void){puts(nst_version());return 0;}\n' > "$T/p.c"
    flags=$(PKG_CONFIG_SYSROOT_DIR="$D" PKG_CONFIG_PATH="$D$PFX/lib/pkgconfig" pkg-config --cflags --libs nst)
    # shellcheck disable=SC2086
    if ${CC:-cc} "$T/p.c" -o "$T/p" $flags > "$T/out" 2>&1 && [ "$("$T/p")" = "$(sed -n 's/^#define NST_VERSION_STRING "\(.*\)"/\1/p' nst.h)" ]; then
      ok "install: pkg-config builds a program"
    else bad "install: pkg-config builds a program" "$flags $(cat "$T/out")"; fi
  else skip "install: pkg-config builds a program" "no pkg-config"; fi
  make -s uninstall PREFIX="$PFX" DESTDIR="$D" > "$T/out" 2>&1
  left=$(find "$D" -type f)
  [ -z "$left" ] && ok "uninstall removes everything" || bad "uninstall removes everything" "$left"
else
  bad "make install" "$(cat "$T/out")"
fi

echo "test_tools: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
