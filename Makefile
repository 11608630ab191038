# nst: `make` builds the CLI, tools, examples and benches into build/; `make test` runs the tests;
# `make demo` paints the repo's photo in the repo's painting. CC, CFLAGS overridable; OPENMP=0 builds
# without OpenMP. `make install PREFIX=/usr/local` (DESTDIR honoured) installs nst.h, the programs, the
# nst(1) man page and nst.pc; `make uninstall` removes them.
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

.PHONY: all test test-asan bench bench-compare demo clean weights install uninstall
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
build/bench_%: bench/bench_%.c bench/bench_clock.h $(HDRS) | build
	$(CC) $(ALL_CFLAGS) $< -o $@ $(LDLIBS)

build:
	@mkdir -p build

# NEON kernels: cross-compiled for aarch64 and run under qemu when both are installed (.ci/run installs them).
ifneq ($(shell command -v aarch64-linux-gnu-gcc 2>/dev/null),)
ifneq ($(shell command -v qemu-aarch64 2>/dev/null),)
EXTRA_TESTS += tests/neon.sh
endif
endif

# AVX-512 kernels on any x86-64: built with tests/avx512_emu.h (the intrinsics in C) and run with NST_ARCH=avx512,
# so they are tested here as well as natively where the CPU has AVX-512.
ifneq ($(filter x86_64 amd64,$(shell uname -m)),)
EXTRA_TESTS += tests/avx512emu.sh
endif

# The CLI's end-to-end checks (exit codes, errors, atomic output, Ctrl-C); the tools and make install.
EXTRA_TESTS += tests/cli/test_cli.sh tests/cli/test_tools.sh
# Saved fuzzer findings, replayed (tests/fuzz/regress/<area>/; none so far).
EXTRA_TESTS += tests/fuzz/regress.sh

test: $(TESTS) build/nst build/nst-convert build/nst-inspect
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

# Installation. The header is the library: pkg-config nst gives -I and -lm (add -fopenmp for threads).
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
INCDIR  ?= $(PREFIX)/include
MANDIR  ?= $(PREFIX)/share/man
PCDIR   ?= $(PREFIX)/lib/pkgconfig
INSTALL_PROGRAMS := nst nst-convert nst-inspect
NST_VERSION = $(shell sed -n 's/^\#define NST_VERSION_STRING "\(.*\)"/\1/p' nst.h)

build/nst.1: build/nst tools/help2man.sh
	sh tools/help2man.sh build/nst > $@.tmp && mv $@.tmp $@

# nst.pc is written at install time: it names PREFIX, which may differ from one install to the next.
install: $(addprefix build/,$(INSTALL_PROGRAMS)) build/nst.1
	mkdir -p $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(PCDIR)
	cp $(addprefix build/,$(INSTALL_PROGRAMS)) $(DESTDIR)$(BINDIR)/
	cd $(DESTDIR)$(BINDIR) && chmod 755 $(INSTALL_PROGRAMS)
	cp nst.h $(DESTDIR)$(INCDIR)/nst.h && chmod 644 $(DESTDIR)$(INCDIR)/nst.h
	cp build/nst.1 $(DESTDIR)$(MANDIR)/man1/nst.1 && chmod 644 $(DESTDIR)$(MANDIR)/man1/nst.1
	printf '%s\n' 'prefix=$(PREFIX)' 'includedir=$(INCDIR)' '' 'Name: nst' \
	    'Description: neural style transfer in one C header (define NST_IMPLEMENTATION in one file)' \
	    'Version: $(NST_VERSION)' 'Cflags: -I$${includedir}' 'Libs: -lm' > $(DESTDIR)$(PCDIR)/nst.pc
	chmod 644 $(DESTDIR)$(PCDIR)/nst.pc

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(INSTALL_PROGRAMS)) $(DESTDIR)$(INCDIR)/nst.h \
	    $(DESTDIR)$(MANDIR)/man1/nst.1 $(DESTDIR)$(PCDIR)/nst.pc

clean:
	rm -rf build
