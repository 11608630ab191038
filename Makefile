# nst: `make` builds the CLI, tools, examples and benches into build/; `make test` runs the tests;
# `make demo` paints the repo's photo in the repo's painting. CC, CFLAGS overridable; OPENMP=0 builds
# without OpenMP.
CC      ?= cc
CFLAGS  ?= -O2 -g
OPENMP  ?= 1
WARN    := -std=c99 -Wall -Wextra -Wpedantic
ifeq ($(OPENMP),1)
OMPFLAG := -fopenmp
endif
ALL_CFLAGS := $(WARN) $(CFLAGS) $(OMPFLAG) -I.
LDLIBS  := -lm
HDRS    := nst.h

EXAMPLES := $(patsubst examples/%.c,build/%,$(wildcard examples/*.c))
TOOLS    := $(patsubst tools/%.c,build/%,$(wildcard tools/*.c))
TESTS    := $(patsubst tests/%.c,build/tests/%,$(wildcard tests/test_*.c))
BENCHES  := $(patsubst bench/%.c,build/%,$(wildcard bench/bench_*.c))

.PHONY: all test test-asan bench bench-compare demo clean weights
all: $(EXAMPLES) $(TOOLS) $(BENCHES)

build/nst.o: nst.c $(HDRS) | build
	$(CC) $(ALL_CFLAGS) -c nst.c -o $@

# Programs using only the public API link against one compiled copy of the implementation.
build/%: examples/%.c build/nst.o | build
	$(CC) $(ALL_CFLAGS) $< build/nst.o -o $@ $(LDLIBS)
build/%: tools/%.c build/nst.o | build
	$(CC) $(ALL_CFLAGS) $< build/nst.o -o $@ $(LDLIBS)
# Tests and benches include the implementation themselves: they reach the internal kernels.
build/tests/%: tests/%.c tests/nst_test.h $(HDRS) | build
	@mkdir -p build/tests
	$(CC) $(ALL_CFLAGS) $< -o $@ $(LDLIBS)
build/bench_%: bench/bench_%.c $(HDRS) | build
	$(CC) $(ALL_CFLAGS) $< -o $@ $(LDLIBS)

build:
	@mkdir -p build

# NEON kernels: cross-compiled for aarch64 and run under qemu when both are installed (.ci/run installs them).
ifneq ($(shell command -v aarch64-linux-gnu-gcc 2>/dev/null),)
ifneq ($(shell command -v qemu-aarch64 2>/dev/null),)
EXTRA_TESTS += tests/neon.sh
endif
endif

# The CLI's end-to-end checks (exit codes, errors, atomic output, Ctrl-C).
EXTRA_TESTS += tests/cli/test_cli.sh

test: $(TESTS) build/nst
	@bash tests/run.sh $(TESTS) $(EXTRA_TESTS)

# The parsers and kernels under AddressSanitizer + UndefinedBehaviorSanitizer (no OpenMP: its runtime
# is not instrumented). CI runs this before `make test`.
SAN_TESTS := $(patsubst %,build/asan/%,test_image test_jpeg test_import test_gemm)
build/asan/%: tests/%.c tests/nst_test.h $(HDRS)
	@mkdir -p build/asan
	$(CC) -std=c99 -Wall -Wextra -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	    -fno-sanitize-recover=undefined -I. $< -o $@ $(LDLIBS)
test-asan: $(SAN_TESTS)
	@bash tests/run.sh $(SAN_TESTS)

bench: $(BENCHES)
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

# GEMM side by side with OpenBLAS and BLIS (Debian's libopenblas-dev, libblis-dev); not part of the tests.
bench-compare:
	bash bench/compare.sh

demo: build/nst
	./build/nst examples/images/tubingen.jpg examples/images/vangogh_starry_night.jpg \
	    -o build/demo.png --size 256 --iterations 100 --print-every 10

# Downloads VGG-19 (Caffe by default; WEIGHTS_SOURCE=torchvision|gatys), checks it, converts it to
# weights/vgg19.nstw. Needs network access; see weights/README.md for placing a file by hand.
weights: build/nst-convert
	sh weights/fetch.sh $(WEIGHTS_SOURCE)

clean:
	rm -rf build
