#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_*.c with libFuzzer + ASan + UBSan and runs each for ${FUZZ_SECONDS:-20}
# seconds, seeded with valid files (see seeds() below) and the saved crashers of tests/fuzz/regress/<area>.
# New inputs go to a scratch corpus under build/fuzz/; crashes, leaks and timeouts are saved as
# build/fuzz/<name>-crash-*: copy each one to tests/fuzz/regress/<area>/ once fixed (tests/fuzz/regress.sh
# replays them in `make test`).
# Any build failure or finding fails the run. Last line: "fuzz: N passed, N failed". FUZZ_JOBS (default 2)
# harnesses are built, then run, side by side.
#   FUZZ_SECONDS=60 bash tests/fuzz/run.sh            all harnesses
#   bash tests/fuzz/run.sh png ppm                    only these
#   FUZZ_SECONDS=600 FUZZ_NICE=19 bash tests/fuzz/run.sh pth &   long campaigns on a shared machine: the
#                                                     fuzzer runs niced, the build does not (it would starve);
#                                                     FUZZ_TIMEOUT (s, default 10) for a starved, niced run
# Run from the repository root; needs clang with the libFuzzer runtime (Debian: clang, libclang-rt-14-dev).
set -u
cd "$(dirname "$0")/../.." || exit 1
CC=${FUZZ_CC:-clang}
SECONDS_EACH=${FUZZ_SECONDS:-20}
OUT=build/fuzz
mkdir -p "$OUT"
# Seed files per harness: valid inputs of the format (fixtures), plus the regression files.
seeds() {
  case $1 in
    png|ppm|jpeg) echo tests/fixtures/$1 ;;
    weights) echo tests/fixtures/weights tests/fuzz/seeds/nstw ;;
    pth) echo tests/fixtures/weights/*.pth ;;
    caffe) echo tests/fixtures/weights/*.caffemodel ;;
    npz) echo tests/fixtures/weights/*.npz tests/fixtures/weights/pickled.npy ;;
    *) echo tests/fuzz/seeds/$1 ;;
  esac
  [ -d tests/fuzz/regress/$1 ] && echo tests/fuzz/regress/$1
}
JOBS=${FUZZ_JOBS:-2}   # harnesses built, then run, this many at a time (each build and run is one process)
names=()
for src in tests/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c); area=${name#fuzz_}
  if [ $# -gt 0 ] && [[ " $* " != *" $area "* ]]; then continue; fi
  names+=("$name")
done
build() {   # build NAME: the harness, or its compiler output in $OUT/NAME.build.log
  $CC -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1 -I. "tests/fuzz/$1.c" \
      -o "$OUT/$1" -lm 2> "$OUT/$1.build.log"
}
fuzz() {   # fuzz NAME: its verdict into $OUT/NAME.result (first word ok or FAIL)
  local name=$1 area=${1#fuzz_} corpus="$OUT/$1-corpus" s
  rm -f "$OUT/$name.result"
  mkdir -p "$corpus"
  # libFuzzer takes directories only: copy the seed files (not folders) into the scratch corpus
  for s in $(seeds "$area"); do
    if [ -d "$s" ]; then find "$s" -type f -exec cp -f {} "$corpus/" \; ; elif [ -f "$s" ]; then cp -f "$s" "$corpus/"; fi
  done
  # -timeout: one input taking 10 s counts as a hang; -rss_limit_mb bounds memory per run
  if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
     nice -n "${FUZZ_NICE:-0}" "$OUT/$name" -max_total_time="$SECONDS_EACH" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2560 -max_len=262144 \
     -print_final_stats=1 -artifact_prefix="$OUT/$name-" "$corpus" > "$OUT/$name.log" 2>&1; then
    echo "ok   $name: $(grep -E 'stat::number_of_executed_units' "$OUT/$name.log" | awk '{print $2}') runs," \
         "$(grep -E '^#[0-9]+[[:space:]]+DONE' "$OUT/$name.log" | grep -oE 'cov: [0-9]+ ft: [0-9]+')" > "$OUT/$name.result"
  else
    { tail -n 40 "$OUT/$name.log"; echo "FAIL $name (log: $OUT/$name.log)"; } > "$OUT/$name.result"
  fi
}
limit() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done; }
# the builds (~20 s each) and then the runs, JOBS at a time
for name in "${names[@]}"; do limit; { build "$name"; echo $? > "$OUT/$name.build.rc"; } & done
wait
for name in "${names[@]}"; do
  if [ "$(cat "$OUT/$name.build.rc")" = 0 ]; then limit; fuzz "$name" & fi
done
wait
passed=0; failed=0
for name in "${names[@]}"; do
  echo "== $name (${SECONDS_EACH}s)"
  if [ "$(cat "$OUT/$name.build.rc")" != 0 ]; then
    cat "$OUT/$name.build.log"; echo "FAIL $name: build"; failed=$((failed + 1)); continue
  fi
  cat "$OUT/$name.result"
  if grep -q '^ok ' "$OUT/$name.result"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
