# earsight — build, test, benchmark, install.  `make check` is the test command, `make demo` the main job.
# Everything is discovered by file name: lib/*.c -> libearsight.a, tools/NAME.c -> bin/NAME,
# tests/*_test.c -> test programs, tests/*_test.sh -> shell tests, bench/*_bench.c -> benchmarks.
PREFIX  ?= /usr/local
BUILD   ?= build
CC      ?= cc
SAN     ?=
PKG_CONFIG ?= pkg-config

PKGS := sox fftw3f libpng libzstd libturbojpeg jansson libzip
# Debian's BLIS ships no .pc file: use one if present, else the Debian include directory.
BLIS_CFLAGS := $(shell $(PKG_CONFIG) --cflags blis 2>/dev/null || \
  for d in /usr/include/x86_64-linux-gnu/blis-openmp /usr/include/blis /usr/include/x86_64-linux-gnu/blis-pthread; do \
    [ -f $$d/blis.h ] && echo -I$$d && break; done)
BLIS_LIBS   := $(shell $(PKG_CONFIG) --libs blis 2>/dev/null || echo -lblis)

WARN     := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS   ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(WARN) -fopenmp -pthread \
              -Iinclude $(BLIS_CFLAGS) $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
LDLIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) $(BLIS_LIBS) -lm -fopenmp -pthread

ifeq ($(SAN),1)
  BUILD := build-san
  ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDLIBS += -fsanitize=address,undefined
endif

# Data-parallel training (dist.h): OpenMPI when libopenmpi-dev is installed, else one process.
# MPI=0 builds the single-process version even when OpenMPI is there.
MPI ?= $(shell $(PKG_CONFIG) --exists ompi-c 2>/dev/null && echo 1 || echo 0)
ifeq ($(MPI),1)
  DIST_SRC := lib/dist/mpi.c
  ALL_CFLAGS += $(shell $(PKG_CONFIG) --cflags ompi-c)
  LDLIBS += $(shell $(PKG_CONFIG) --libs ompi-c)
else
  DIST_SRC := lib/dist/single.c
endif

LIB_SRC   := $(sort $(wildcard lib/*.c)) $(DIST_SRC)
TOOL_SRC  := $(sort $(wildcard tools/*.c))
TEST_SRC  := $(sort $(wildcard tests/*_test.c))
BENCH_SRC := $(sort $(wildcard bench/*_bench.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOLS     := $(TOOL_SRC:tools/%.c=$(BUILD)/bin/%)
TESTS     := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES   := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LIBA      := $(BUILD)/libearsight.a

.PHONY: all check check-san check-fresh bench install uninstall clean deps deps-ok fuzz demo
all: $(TOOLS) $(TESTS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/%: $(BUILD)/tools/%.o $(LIBA)
	@mkdir -p $(@D)
	$(CC) -o $@ $< $(LIBA) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIBA)
	@mkdir -p $(@D)
	$(CC) -o $@ $< $(LIBA) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIBA)
	@mkdir -p $(@D)
	$(CC) -o $@ $< $(LIBA) $(LDLIBS)

-include $(LIB_OBJ:.o=.d) $(TOOL_SRC:%.c=$(BUILD)/%.d) $(TEST_SRC:%.c=$(BUILD)/%.d) $(BENCH_SRC:%.c=$(BUILD)/%.d)

# Install missing Debian packages (apt-get as root or via sudo); quick no-op when all are present.
deps:
	sh .ci/install-deps
deps-ok:
	@sh .ci/install-deps --if-missing

check: deps-ok
	@$(MAKE) --no-print-directory all
	@sh tests/run.sh $(BUILD)

check-san:
	@$(MAKE) --no-print-directory SAN=1 check

# The README's two commands on a pristine Debian 12 tree (mmdebstrap, as root): make check, then make demo.
check-fresh:
	@sh tests/fresh-machine.sh --demo $(FRESH_OPTS)

bench: deps-ok
	@$(MAKE) --no-print-directory all $(BENCHES)
	@sh bench/run.sh $(BUILD)

# libFuzzer targets tests/fuzz/fuzz_*.c, built with clang; FUZZ_TIME seconds each.
FUZZ_TIME ?= 60
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
fuzz: deps-ok
	@sh tests/fuzz/run.sh $(FUZZ_TIME) $(FUZZ_SRC:tests/fuzz/%.c=%)

demo: deps-ok
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory -f pipelines/demo.mk

install: $(TOOLS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 man/man1/*.1 $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 man/man5/*.5 $(DESTDIR)$(PREFIX)/share/man/man5

uninstall:
	rm -f $(TOOL_SRC:tools/%.c=$(DESTDIR)$(PREFIX)/bin/%)

clean:
	rm -rf build build-san build-fuzz
