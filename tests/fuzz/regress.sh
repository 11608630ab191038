#!/usr/bin/env bash
# Replays the saved fuzzer findings: every file under tests/fuzz/regress/<area>/ goes through the harness
# tests/fuzz/fuzz_<area>.c built with -DNST_FUZZ_MAIN (no libFuzzer needed), under ASan + UBSan when the
# compiler has them. A finding is kept there once fixed (tests/fuzz/run.sh saves them as
# build/fuzz/fuzz_<area>-crash-*). Last line: "fuzz_regress: N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/../.." || exit 1
CC=${CC:-cc}
OUT=build/fuzz-regress
mkdir -p "$OUT"
passed=0; failed=0; skipped=0
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
echo 'int main(void){return 0;}' > "$OUT/probe.c"
$CC $SAN "$OUT/probe.c" -o "$OUT/probe" 2>/dev/null || SAN=""
any=0
for dir in tests/fuzz/regress/*/; do
  [ -d "$dir" ] || continue
  area=$(basename "$dir"); src=tests/fuzz/fuzz_$area.c
  files=$(find "$dir" -type f ! -name '*.md' | sort)
  [ -n "$files" ] || continue
  any=1
  if [ ! -f "$src" ]; then echo "FAIL $area: no harness $src"; failed=$((failed + 1)); continue; fi
  if ! $CC -std=c99 -O1 -g $SAN -DNST_FUZZ_MAIN -I. "$src" -o "$OUT/fuzz_$area" -lm 2> "$OUT/$area.log"; then
    cat "$OUT/$area.log"; echo "FAIL $area: build"; failed=$((failed + 1)); continue
  fi
  n=$(wc -l <<<"$files")
  # shellcheck disable=SC2086
  if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$OUT/fuzz_$area" $files > "$OUT/$area.run.log" 2>&1; then
    echo "ok   $area: $n saved inputs"; passed=$((passed + 1))
  else
    tail -n 30 "$OUT/$area.run.log"; echo "FAIL $area"; failed=$((failed + 1))
  fi
done
if [ "$any" = 0 ]; then echo "skip fuzz_regress: no saved findings"; skipped=1; fi
echo "fuzz_regress: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
