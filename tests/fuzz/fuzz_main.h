/* A main() for running a harness without libFuzzer (build with -DNST_FUZZ_MAIN): feeds each file named on
 * the command line to LLVMFuzzerTestOneInput, e.g. to replay a crash under gdb or valgrind. */
#ifdef NST_FUZZ_MAIN
int main(int argc, char **argv) {
    int i;
    for (i = 1; i < argc; i++) {
        unsigned char *b;
        size_t n;
        if (nst__read_file(argv[i], (size_t)1 << 30, &b, &n) != NST_OK) continue;
        LLVMFuzzerTestOneInput(b, n);
        nst__free(b);
    }
    return 0;
}
#endif
