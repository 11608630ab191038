#!/usr/bin/env bash
# Per-function instruction profile of the NEON path: one objective evaluation of the random VGG-19 (to
# relu5_1, content + style + TV losses, backward to the pixels, 1 thread) cross-compiled for aarch64 and run
# under qemu-aarch64 with bench/qemu_prof.c, which counts the instructions each translation block retires.
# Counts are exact and host-independent (no ARM machine needed, no noise), so two builds compare function
# by function: what a kernel change costs on ARM, where the NEON time goes.
#   bench/neon_profile.sh [--size N] [--rev REV] [--top N] [-- EXTRA_CFLAGS...]
# --size (default 128): image side; --rev: profile nst.h as of git revision REV instead of the working
# tree; --top (default 25): rows printed. The evaluation's figures are half the difference of a run with
# 3 evaluations and one with 1 (setup and the first evaluation's allocations cancel).
# Prints per function: instructions, share, vector (Advanced SIMD) instructions, of which fmla/fmls,
# loads/stores; then the totals. Needs gcc, gcc-aarch64-linux-gnu, qemu-user (QEMU 7.2's plugin API).
# Takes 2-10 minutes at 128 px.
set -eu
cd "$(dirname "$0")/.."
size=128; rev=""; top=25
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --rev) rev=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--size N] [--rev REV] [--top N] [-- CFLAGS...]" >&2; exit 2 ;;
  esac
done
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
if [ -n "$rev" ]; then git show "$rev:nst.h" > "$t/nst.h"; else cp nst.h "$t/nst.h"; fi
cat > "$t/eval.c" <<'EOF'
#define NST_IMPLEMENTATION
#include "nst.h"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {   /* eval SIZE EVALS */
    int size = atoi(argv[1]), evals = atoi(argv[2]), e;
    size_t i, n = (size_t)3 * size * size;
    nst_model *m = NULL; nst_image c, s; nst_options o; nst_objective *obj = NULL; nst_losses l;
    float *x = (float *)malloc(sizeof(float) * n), *g = (float *)malloc(sizeof(float) * n);
    if (!x || !g || nst_image_alloc(&c, size, size, 3) || nst_image_alloc(&s, size, size, 3)) return 1;
    for (i = 0; i < n; i++) {
        c.pixels[i] = (float)(i * 7919 % 1000) / 1000.0f;
        s.pixels[i] = (float)(i * 104729 % 1000) / 1000.0f;
        x[i] = (float)(i * 2654435761u % 256);
    }
    nst_options_init(&o); o.threads = 1; o.image_size = size;
    if (nst_model_random(1, &m) || nst_objective_create(m, &c, &s, NULL, 1, &o, &obj)) {
        fprintf(stderr, "%s\n", nst_last_error()); return 1;
    }
    for (e = 0; e < evals; e++)
        if (nst_objective_eval(obj, x, &l, g)) { fprintf(stderr, "%s\n", nst_last_error()); return 1; }
    printf("loss %.6g\n", l.total);
    return 0;
}
EOF
gcc -shared -fPIC -O2 bench/qemu_prof.c -o "$t/prof.so"
aarch64-linux-gnu-gcc -std=c99 -O2 -static -I"$t" "$@" "$t/eval.c" -o "$t/eval" -lm
OMP_NUM_THREADS=1 qemu-aarch64 -plugin "$t/prof.so,out=$t/p1" "$t/eval" "$size" 1 > "$t/o1" &
OMP_NUM_THREADS=1 qemu-aarch64 -plugin "$t/prof.so,out=$t/p3" "$t/eval" "$size" 3 > "$t/o3" &
wait %1 && wait %2
echo "nst.h ${rev:-(working tree)}, ${size} px, $(cat "$t/o3")"
# one stream sorted by address (16 hex digits sort as numbers): each symbol line (0) before the blocks (1)
# at and above it until the next symbol; the 3-evaluation run's counts add, the 1-evaluation run's subtract
{ aarch64-linux-gnu-nm -n --defined-only "$t/eval" | awk '$2 ~ /^[tTwW]$/ { print $1, 0, $3 }'
  awk '{ print $1, 1, -0.5, $2, $3, $4, $5 }' "$t/p1"
  awk '{ print $1, 1, 0.5, $2, $3, $4, $5 }' "$t/p3"; } | LC_ALL=C sort -k1,1 -k2,2n |
awk -v top="$top" '
  $2 == 0 { f = $3; next }
  { if (f == "") f = "?"; for (k = 4; k <= 7; k++) v[f, k] += $3 * $k; fn[f] = 1 }
  END {
    for (f in fn) { tot += v[f, 4]; for (k = 5; k <= 7; k++) sum[k] += v[f, k] }
    printf "%-40s %12s %6s %12s %12s %12s\n", "function", "insns", "%", "vector", "vfma", "ld/st"
    n = 0; for (f in fn) if (v[f, 4] >= 0.5) { n++; key[n] = f }
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[key[j], 4] > v[key[i], 4]) { x = key[i]; key[i] = key[j]; key[j] = x }
    for (i = 1; i <= n && i <= top; i++) { f = key[i]
      printf "%-40s %12.0f %5.1f%% %12.0f %12.0f %12.0f\n", substr(f, 1, 40), v[f, 4], 100 * v[f, 4] / tot, v[f, 5], v[f, 6], v[f, 7] }
    printf "%-40s %12.0f %5.1f%% %12.0f %12.0f %12.0f\n", "total per evaluation", tot, 100, sum[5], sum[6], sum[7]
  }'
