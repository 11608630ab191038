# What tests/neon.sh and tests/avx512emu.sh share; sourced by both. The caller sets JOBS (builds and runs at
# once), DIR (where programs, build logs and outputs go), SUF (the programs' suffix: DIR/NAME$SUF), runs
# ("LABEL NAME [filter]" each), and defines build NAME (tests/NAME.c into DIR/NAME$SUF, its exit status into
# DIR/NAME$SUF.rc, its messages into DIR/NAME$SUF.build.log) and go LABEL NAME [args] (one run, its output
# and time into DIR/LABEL.out).
limit() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done; }

# subsuite SUMMARY WHAT SOURCES...: builds SOURCES, runs each entry of runs whose program built, prints the
# outputs in the order of runs and ends with one line "SUMMARY: N passed, N failed, N skipped" that
# tests/run.sh counts (a program that does not build or prints no summary is one failure); returns 1 if
# anything failed. WHAT names the build step in its timing line.
subsuite() {
    local summary=$1 what=$2 t0=$SECONDS r label name out line passed=0 failed=0 skipped=0 src
    shift 2
    for src in "$@"; do limit; build "$src" & done
    wait
    echo "   ($what in $((SECONDS - t0)) s)"
    for r in "${runs[@]}"; do
        set -- $r
        label=$1 name=$2; shift 2
        rm -f "$DIR/$label.out"
        [ "$(cat "$DIR/$name$SUF.rc")" = 0 ] || continue
        limit; go "$label" "$name" "$@" &
    done
    wait
    for r in "${runs[@]}"; do
        set -- $r
        label=$1 name=$2
        if [ "$(cat "$DIR/$name$SUF.rc")" != 0 ]; then
            cat "$DIR/$name$SUF.build.log"
            echo "$label: 0 passed, 1 failed, 0 skipped (does not build)"; failed=$((failed + 1)); continue
        fi
        out=$(cat "$DIR/$label.out")
        echo "$out"
        line=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -n 1)
        if [ -z "$line" ]; then echo "FAIL $label: no summary line"; failed=$((failed + 1)); continue; fi
        passed=$((passed + $(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")))
        failed=$((failed + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")))
        skipped=$((skipped + $(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$line")))
    done
    echo "$summary: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
}
