#!/usr/bin/env bash
# Side-by-side GEMM table: nst (best ISA) vs OpenBLAS vs BLIS, 1 and 2 threads, in one run.
# Builds bench/bench_gemm.c three times: as is, and with -DNST_BENCH_CBLAS linked against -lopenblas and
# -lblis (Debian: libopenblas-dev, libblis-dev). Each library runs ROUNDS times (default 2), alternating,
# and the best GFLOP/s per cell is kept (the machine is shared and noisy: compare within one run).
#   bench/compare.sh [--quick] [--vgg-only]        (extra arguments go to every bench run)
# PAUSE (seconds, default 3) separates the blocks; the last columns give the geometric mean of nst/OpenBLAS.
# BASE=<git revision> adds nst as of that revision (its nst.h, this bench) as one more library, "base",
# so a change is measured against the old code in the same run: BASE=main ROUNDS=3 bench/compare.sh
set -eu
cd "$(dirname "$0")/.."
mkdir -p build/compare
CC=${CC:-gcc}
FLAGS="-std=c99 -O2 -fopenmp -I."
$CC $FLAGS bench/bench_gemm.c -o build/compare/nst -lm
have_ob=0; have_blis=0; have_base=0
if [ -n "${BASE:-}" ]; then
  mkdir -p build/compare/base
  git show "$BASE:nst.h" > build/compare/base/nst.h
  $CC -Ibuild/compare/base $FLAGS bench/bench_gemm.c -o build/compare/basenst -lm   # its nst.h before ./nst.h
  have_base=1
fi
if $CC $FLAGS -DNST_BENCH_CBLAS bench/bench_gemm.c -o build/compare/openblas -lopenblas -lm 2>/dev/null; then have_ob=1; fi
if $CC $FLAGS -DNST_BENCH_CBLAS bench/bench_gemm.c -o build/compare/blis -lblis -lm 2>/dev/null; then have_blis=1; fi
out=build/compare/results.csv
: > "$out"
./build/compare/nst "$@" --quick --threads 1 --isa best >/dev/null 2>&1 || true   # warm-up (page faults, clocks)
for round in $(seq 1 "${ROUNDS:-2}"); do
  for t in 1 2; do
    # each library in its own block with a pause after it: on 2 cores, one library's spinning worker
    # threads (OpenBLAS's, OpenMP's) otherwise slow whichever runs right after
    OMP_NUM_THREADS=$t ./build/compare/nst --csv --isa best --threads "$t" "$@" | sed "s/^/nst,/" >> "$out"
    sleep "${PAUSE:-3}"
    if [ $have_base = 1 ]; then
      OMP_NUM_THREADS=$t ./build/compare/basenst --csv --isa best --threads "$t" "$@" | sed "s/^/base,/" >> "$out"
      sleep "${PAUSE:-3}"
    fi
    if [ $have_ob = 1 ]; then
      OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t ./build/compare/openblas --csv --threads "$t" "$@" | sed "s/^/openblas,/" >> "$out"
      sleep "${PAUSE:-3}"
    fi
    if [ $have_blis = 1 ]; then
      BLIS_NUM_THREADS=$t OMP_NUM_THREADS=$t ./build/compare/blis --csv --threads "$t" "$@" | sed "s/^/blis,/" >> "$out"
      sleep "${PAUSE:-3}"
    fi
  done
done
./build/compare/nst --threads 1 --isa none 2>/dev/null | grep -E "^(cpu|FMA)" || true
# rows: lib,shape,isa,threads,gflops,pct -> best per (lib, shape, threads)
awk -F, -v has_base=$have_base '
  { key = $2 "," $4; if (!(key in seen)) { seen[key] = 1; order[n++] = key }
    v = $5 + 0; if (v > best[$1 "|" key]) { best[$1 "|" key] = v; pct[$1 "|" key] = $6 } }
  END {
    printf "\n%-18s %3s | %9s %6s | %9s %6s | %9s %6s | %6s %6s", "M N K", "thr", "nst", "%peak",
           "OpenBLAS", "%peak", "BLIS", "%peak", "vs OB", "vs BLIS"
    if (has_base) printf " | %9s %6s %6s", "base", "vs OB", "nst/base"
    printf "\n"
    for (i = 0; i < n; i++) {
      split(order[i], f, ","); k = order[i]
      a = best["nst|" k]; o = best["openblas|" k]; b = best["blis|" k]; z = best["base|" k]
      printf "%-18s %3s | %9.1f %5.0f%% | %9.1f %5.0f%% | %9.1f %5.0f%% | %5.2fx %5.2fx", f[1], f[2],
             a, pct["nst|" k], o, pct["openblas|" k], b, pct["blis|" k], (o > 0 ? a / o : 0), (b > 0 ? a / b : 0)
      if (has_base) printf " | %9.1f %5.2fx %5.2fx", z, (o > 0 ? z / o : 0), (z > 0 ? a / z : 0)
      printf "\n"
      if (a > 0 && o > 0) { lg[f[2]] += log(a / o); cnt[f[2]]++; if (!(f[2] in mn) || a / o < mn[f[2]]) mn[f[2]] = a / o }
      if (z > 0 && o > 0) { lgz[f[2]] += log(z / o); if (!(f[2] in mnz) || z / o < mnz[f[2]]) mnz[f[2]] = z / o }
    }
    for (t in cnt) {
      printf "nst / OpenBLAS, %s thread(s): geometric mean %.3f, worst %.3f over %d shapes\n", t,
             exp(lg[t] / cnt[t]), mn[t], cnt[t]
      if (has_base) printf "base / OpenBLAS, %s thread(s): geometric mean %.3f, worst %.3f\n", t, exp(lgz[t] / cnt[t]), mnz[t]
    }
  }' "$out"
