/* A QEMU TCG plugin (plugin API version 1, QEMU 7.2) that counts the guest instructions an aarch64 program
 * retires per translation block, so bench/neon_profile.sh can add them up per function: an exact,
 * host-independent profile of the NEON path where no ARM machine is at hand. Each block's instructions are
 * classed once at translation (all, vector = Advanced SIMD on V registers, of which fmla/fmls, loads/stores)
 * and one inline add per class runs each time the block executes. Blocks are keyed by their start address
 * (a block re-translated at the same address adds to the same row), and bench/neon_profile.sh gives each
 * row to the function symbol at or below it: a block that runs on past a function's end is counted in the
 * function it starts in (blocks end at branches, so this is rare). Run the guest on one thread: the inline
 * counters are not atomic.
 *   gcc -shared -fPIC -O2 bench/qemu_prof.c -o qemu_prof.so
 *   OMP_NUM_THREADS=1 qemu-aarch64 -plugin ./qemu_prof.so,out=FILE ./prog
 * Writes FILE at exit: one line per block start, "address insns vector vfma mem" (address in 16 hex digits, as nm prints them). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct { const char *target_name; int min, cur; int system_emulation; int pad[8]; } qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*udata_cb)(qemu_plugin_id_t, void *);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
extern struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op, void *, uint64_t);
extern char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb, void *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

enum { INSNS, VECTOR, VFMA, MEM, NCLASS };
typedef struct { uint64_t addr, n[NCLASS]; } row;
static row *rows;
static size_t cap, used;
static const char *out_path = "qemu_prof.txt";

static int vector_operand(const char *ops) {   /* NEON "v3.4s"; not scalar "s0" */
    const char *p;
    for (p = ops; *p; p++)
        if (*p == 'v' && p[1] >= '0' && p[1] <= '9' && (p == ops || p[-1] == ' ' || p[-1] == '{' || p[-1] == ','))
            return 1;
    return 0;
}

/* Open addressing over a table sized once (blocks' inline adds point into it, so it never moves). */
static row *slot(uint64_t addr) {
    size_t i;
    if (2 * (used + 1) > cap) { fprintf(stderr, "qemu_prof: more than %zu blocks\n", cap / 2); exit(1); }
    for (i = (size_t)(addr * 0x9E3779B97F4A7C15ull >> 20) & (cap - 1); rows[i].addr && rows[i].addr != addr;
         i = (i + 1) & (cap - 1)) {}
    if (!rows[i].addr) { rows[i].addr = addr; used++; }
    return &rows[i];
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t n = qemu_plugin_tb_n_insns(tb), i;
    uint64_t c[NCLASS] = {0};
    row *r = slot(qemu_plugin_tb_vaddr(tb));
    int k;
    (void)id;
    c[INSNS] = n;
    for (i = 0; i < n; i++) {
        char *d = qemu_plugin_insn_disas(qemu_plugin_tb_get_insn(tb, i));
        if (d) {
            size_t m = strcspn(d, " \t");
            int vec = vector_operand(d + m);
            c[VECTOR] += vec;
            c[VFMA] += vec && (!strncmp(d, "fmla", 4) || !strncmp(d, "fmls", 4));
            c[MEM] += !strncmp(d, "ld", 2) || !strncmp(d, "st", 2);
            free(d);
        }
    }
    for (k = 0; k < NCLASS; k++)
        if (c[k]) qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &r->n[k], c[k]);
}

static void on_exit_cb(qemu_plugin_id_t id, void *u) {
    FILE *f = fopen(out_path, "w");
    size_t i;
    (void)id; (void)u;
    if (!f) { fprintf(stderr, "qemu_prof: cannot write %s\n", out_path); return; }
    for (i = 0; i < cap; i++)
        if (rows[i].addr && rows[i].n[INSNS])
            fprintf(f, "%016llx %llu %llu %llu %llu\n", (unsigned long long)rows[i].addr,
                    (unsigned long long)rows[i].n[INSNS], (unsigned long long)rows[i].n[VECTOR],
                    (unsigned long long)rows[i].n[VFMA], (unsigned long long)rows[i].n[MEM]);
    fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                               int argc, char **argv) {
    int i;
    (void)info;
    for (i = 0; i < argc; i++)
        if (!strncmp(argv[i], "out=", 4)) out_path = argv[i] + 4;
    cap = (size_t)1 << 20;   /* 512K blocks: a static nst binary translates a few tens of thousands */
    rows = calloc(cap, sizeof *rows);
    if (!rows) return -1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
