#!/usr/bin/env bash
# Runs test programs (arguments: executables, or scripts ending in .sh, run with bash),
# echoes their output, and ends with the summed "total: N passed, N failed, N skipped" line.
# A program that crashes or prints no summary counts as one failure.
passed=0; failed=0; skipped=0
for t in "$@"; do
  echo "== $t"
  out=$(mktemp)
  label=$(basename "$t")
  t0=$SECONDS
  if [[ "$t" == *.sh ]]; then bash "$t" >"$out" 2>&1; rc=$?; else "$t" >"$out" 2>&1; rc=$?; fi
  cat "$out"
  echo "   ($label: $((SECONDS - t0)) s)"
  line=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  if [ -z "$line" ]; then
    echo "FAIL $label: no summary line (exit code $rc)"; failed=$((failed + 1))
  else
    p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line"); f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
    s=$(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$line"); s=${s:-0}
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "FAIL $label: exit code $rc"; failed=$((failed + 1)); fi
  fi
  rm -f "$out"
done
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
