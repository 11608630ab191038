/* libFuzzer harness for the CLI's argument parser (cli_parse in examples/nst.c). The input is split at
 * NUL bytes into argv[1..]; the parser must either accept the line or reject it through its usage error.
 * The CLI ends a bad command line with exit(2) and --help/--version with exit(0): here exit() is a
 * longjmp back into the harness, the parser's allocations are tracked so the jump does not leak them,
 * and its output goes to /dev/null.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_cli.c -o build/fuzz/fuzz_cli -lm
 *
 * Seeds: tests/fuzz/seeds/cli (command lines, one argument per NUL-terminated string). Without
 * -fsanitize=fuzzer, define NST_FUZZ_MAIN to get a main() that runs the harness over files. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#define NST_IMPLEMENTATION
#define NST_STATIC
#include "nst.h"
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static jmp_buf nst_fuzz_jmp;
static FILE *nst_fuzz_null;
#define NST_FUZZ_MAX_ALLOCS 64
static void *nst_fuzz_allocs[NST_FUZZ_MAX_ALLOCS];

static void nst_fuzz_exit(int code) __attribute__((noreturn));
static void nst_fuzz_exit(int code) { longjmp(nst_fuzz_jmp, 1 + (code & 0xff)); }
static void nst_fuzz_track(void *p) {
    int i;
    if (!p) return;
    for (i = 0; i < NST_FUZZ_MAX_ALLOCS; i++)
        if (!nst_fuzz_allocs[i]) { nst_fuzz_allocs[i] = p; return; }
    abort();   /* the parser allocates a handful of blocks; more means a leak in a loop */
}
static void nst_fuzz_untrack(void *p) {
    int i;
    for (i = 0; p && i < NST_FUZZ_MAX_ALLOCS; i++)
        if (nst_fuzz_allocs[i] == p) { nst_fuzz_allocs[i] = NULL; return; }
}
static void *nst_fuzz_malloc(size_t n) { void *p = malloc(n); nst_fuzz_track(p); return p; }
static void *nst_fuzz_calloc(size_t n, size_t s) { void *p = calloc(n, s); nst_fuzz_track(p); return p; }
static void nst_fuzz_free(void *p) { nst_fuzz_untrack(p); free(p); }

#define exit nst_fuzz_exit
#define main nst_fuzz_cli_main
#define malloc nst_fuzz_malloc
#define calloc nst_fuzz_calloc
#define free nst_fuzz_free
#undef stdout
#undef stderr
#define stdout nst_fuzz_null
#define stderr nst_fuzz_null
#define printf(...) fprintf(nst_fuzz_null, __VA_ARGS__)
#include "../../examples/nst.c"
#undef exit
#undef main
#undef malloc
#undef calloc
#undef free
#undef printf

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf, **argv;
    int argc = 1, i;
    size_t k;
    cli c;
    if (size > 4096) return 0;
    if (!nst_fuzz_null && !(nst_fuzz_null = fopen("/dev/null", "w"))) abort();
    buf = (char *)malloc(size + 1);
    argv = (char **)calloc(size + 3, sizeof *argv);
    if (!buf || !argv) abort();
    memcpy(buf, data, size);
    buf[size] = 0;
    argv[0] = (char *)"nst";
    for (k = 0; k <= size; k++)   /* every NUL ends an argument; the final one only if non-empty */
        if (k == 0 || buf[k - 1] == 0) {
            if (k == size && k > 0) break;
            argv[argc++] = buf + k;
        }
    argv[argc] = NULL;
    memset(&c, 0, sizeof c);
    nst_options_init(&c.o);
    c.print_every = CLI_AUTO;
    for (i = 0; i < NST_FUZZ_MAX_ALLOCS; i++) nst_fuzz_allocs[i] = NULL;
    if (setjmp(nst_fuzz_jmp) == 0) {
        cli_parse(&c, argc, argv);
        if (!c.content_path || !c.out_path || c.nstyles < 1) abort();   /* accepted means complete */
        for (i = 0; i < c.nstyles; i++)
            if (!c.style_paths[i]) abort();
    }
    for (i = 0; i < NST_FUZZ_MAX_ALLOCS; i++) { free(nst_fuzz_allocs[i]); nst_fuzz_allocs[i] = NULL; }
    free(argv);
    free(buf);
    return 0;
}

#include "fuzz_main.h"
