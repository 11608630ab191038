#!/usr/bin/env bash
# A/B of nst's GEMM in one process: REV's nst.h (side a) against the working tree's (side b), calls
# alternated (see bench/ab_gemm.c). M = syrk times nst__ssyrk_ex of N x K.
#   bench/ab_gemm.sh REV M N K [REPS [THREADS]]        e.g. bench/ab_gemm.sh HEAD~3 64 64 262144 20
# REPS pairs of single calls (default 20); THREADS (default 1) > 1 is timed by the wall clock.
set -eu
cd "$(dirname "$0")/.."
if [ $# -lt 4 ]; then echo "usage: $0 REV M|syrk N K [REPS [THREADS]]" >&2; exit 2; fi
rev=$1; shift
CC=${CC:-gcc}
FLAGS="-std=c99 -O2 -fopenmp"
d=build/ab
mkdir -p "$d/base"
git show "$rev:nst.h" > "$d/base/nst.h"
$CC $FLAGS -I"$d/base" -DAB_SIDE=a -c bench/ab_gemm.c -o "$d/a.o"
$CC $FLAGS -I. -DAB_SIDE=b -c bench/ab_gemm.c -o "$d/b.o"
$CC $FLAGS bench/ab_gemm.c "$d/a.o" "$d/b.o" -o "$d/ab_gemm" -lm
threads=${5:-1}
OMP_NUM_THREADS=$threads "$d/ab_gemm" "$1" "$2" "$3" "${4:-20}" "$threads"
