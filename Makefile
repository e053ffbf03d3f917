# Makefile -- build, install, test and run ferry.
#
#   make              build the extension and the C test programs
#   make deps         install the Debian packages the project needs (scripts/deps.sh)
#   make install      install the extension into the system's PostgreSQL 15, and libferry (header,
#                     ferry.pc, the ferry CLI) under PREFIX (/usr/local) (sudo when not root)
#   make test         the one test command: deps, build, install, a throwaway cluster, every suite
#   make run          a local PostgreSQL with ferry and the demo schema (scripts/run.sh)
#   make run-stop     stop that PostgreSQL (its data stays in .run/pg); run-clean removes it
#   make test-sanitize  make test with the extension built with UBSan and the C tests with ASan+UBSan
#   make bench        the benchmarks (bench/run.sh) against a throwaway cluster
#   make clean        remove build products

# PostgreSQL 15's binaries; the scripts read the same FERRY_PG_BIN.
FERRY_PG_BIN ?= /usr/lib/postgresql/15/bin
PG_CONFIG ?= $(FERRY_PG_BIN)/pg_config
# Recursive (=) on purpose: pg_config is only asked when a rule needs it, so that
# `make deps` works before PostgreSQL is installed.
PG_INCLUDEDIR = $(shell $(PG_CONFIG) --includedir)

ifeq ($(origin CC),default)
CC = gcc
endif
WARNINGS = -Wall -Wextra -Werror
TEST_CFLAGS = $(WARNINGS) -O1 -g -Itest -I$(PG_INCLUDEDIR) $(EXTRA_CFLAGS)
TEST_LDLIBS = -lpq $(EXTRA_LDLIBS)

# SANITIZE=1 (make test-sanitize): UBSan in the extension (it runs inside the server, where
# ASan cannot be the first library loaded), ASan and UBSan in the C test programs.
ifeq ($(SANITIZE),1)
EXT_SAN = PG_CFLAGS="-fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	SHLIB_LINK="-fsanitize=undefined"
TEST_CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
TEST_LDLIBS += -fsanitize=address,undefined
GW_SAN = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
endif

# The extension is built by its own PGXS Makefile; no LLVM bitcode (needs clang).
EXT_MAKE = $(MAKE) -C extension PG_CONFIG=$(PG_CONFIG) with_llvm=no $(EXT_SAN)
HAVE_EXTENSION = $(wildcard extension/Makefile)
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)

.DEFAULT_GOAL := all

# ---- gateway (ferryd) --------------------------------------------------------------
# Every gateway/*.c but ferryd.c (main) is a module; the protocol's C code is generated
# from proto/ferry.proto into build/proto. Test programs test/gateway/<name>.c link all
# modules; fuzzers test/fuzz/<name>.c are built with clang and libFuzzer.
GW_MODULE_SRCS = $(filter-out gateway/ferryd.c,$(wildcard gateway/*.c))
GW_PROTO_SRCS = $(patsubst proto/%.proto,build/proto/%.pb-c.c,$(wildcard proto/*.proto))
GW_OBJS = $(patsubst gateway/%.c,build/gateway/%.o,$(GW_MODULE_SRCS)) \
	$(patsubst %.c,%.o,$(GW_PROTO_SRCS))
GW_PKGS = libwebsockets libjwt libpq jansson
GW_CFLAGS = $(WARNINGS) -std=gnu11 -O2 -g -Igateway -Ibuild/proto -Itest -I$(PG_INCLUDEDIR) \
	$(shell pkg-config --cflags $(GW_PKGS) 2>/dev/null) $(EXTRA_CFLAGS) $(GW_SAN)
# libpg_query carries its own copy of protobuf-c: the system's must come first.
GW_LDLIBS = $(shell pkg-config --libs $(GW_PKGS) 2>/dev/null) -lprotobuf-c -lpg_query -lm -lpthread \
	$(EXTRA_LDLIBS) $(GW_SAN)
HAVE_GATEWAY = $(wildcard gateway/ferryd.c)
GW_TEST_SRCS = $(wildcard test/gateway/*.c)
GW_TEST_BINS = $(patsubst test/gateway/%.c,build/test/gateway/%.t,$(GW_TEST_SRCS))
FUZZ_SRCS = $(wildcard test/fuzz/*.c)
FUZZ_BINS = $(patsubst test/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
FUZZ_CC = clang
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-Igateway -Ibuild/proto -I$(PG_INCLUDEDIR) $(shell pkg-config --cflags $(GW_PKGS) 2>/dev/null)

build/proto/%.pb-c.c build/proto/%.pb-c.h: proto/%.proto
	@mkdir -p build/proto
	protoc-c --proto_path=proto --c_out=build/proto $<

build/proto/%.pb-c.o: build/proto/%.pb-c.c
	$(CC) $(filter-out -Wextra,$(GW_CFLAGS)) -c -o $@ $<

build/gateway/%.o: gateway/%.c $(wildcard gateway/*.h) $(patsubst %.c,%.h,$(GW_PROTO_SRCS))
	@mkdir -p $(@D)
	$(CC) $(GW_CFLAGS) -c -o $@ $<

gateway/ferryd: build/gateway/ferryd.o $(GW_OBJS)
	$(CC) -o $@ $^ $(GW_LDLIBS)

build/test/gateway/%.t: test/gateway/%.c $(GW_OBJS) test/tap.h $(wildcard test/gateway/*.h)
	@mkdir -p $(@D)
	$(CC) $(GW_CFLAGS) -o $@ $< $(GW_OBJS) $(GW_LDLIBS)

build/fuzz/%: test/fuzz/%.c $(GW_MODULE_SRCS) $(GW_PROTO_SRCS) $(wildcard gateway/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(GW_MODULE_SRCS) $(GW_PROTO_SRCS) $(GW_LDLIBS)

gateway: $(if $(HAVE_GATEWAY),gateway/ferryd) $(GW_OBJS)

fuzz: $(FUZZ_BINS)

# ---- client (libferry) --------------------------------------------------------------
# client-sqlite/*.c is libferry: build/client/libferry.a and libferry.so (only ferry_*
# exported), linked with its own copy of the protocol's generated code. The CLI
# client-sqlite/cli/ferry.c is built as build/client/ferry. Test programs
# test/client/<name>.c -> build/test/client/<name>.t link the static library (so unit
# tests can reach internal functions through client-sqlite/internal.h) and libpq. The
# README's example app client-sqlite/example/todo_app.c is built as build/client/todo_app.
CL_SRCS = $(wildcard client-sqlite/*.c)
CL_HDRS = $(wildcard client-sqlite/*.h) client-sqlite/include/ferry.h
CL_OBJS = $(patsubst client-sqlite/%.c,build/client/%.o,$(CL_SRCS)) build/client/ferry.pb-c.o
CL_PKGS = sqlite3 jansson libprotobuf-c openssl
CL_CFLAGS = $(WARNINGS) -std=gnu11 -D_GNU_SOURCE -O2 -g -fPIC -fvisibility=hidden -DFERRY_BUILDING_LIBRARY \
	-Iclient-sqlite/include -Iclient-sqlite -Ibuild/proto $(shell pkg-config --cflags $(CL_PKGS) 2>/dev/null) \
	$(EXTRA_CFLAGS) $(GW_SAN)
CL_LDLIBS = $(shell pkg-config --libs $(CL_PKGS) 2>/dev/null) $(EXTRA_LDLIBS) $(GW_SAN)
CL_TEST_SRCS = $(wildcard test/client/*.c)
CL_TEST_BINS = $(patsubst test/client/%.c,build/test/client/%.t,$(CL_TEST_SRCS))
CL_SOVERSION = 0
CL_VERSION = 0.1.0
PREFIX ?= /usr/local
HAVE_CLIENT = $(wildcard client-sqlite/include/ferry.h)

build/client/%.o: client-sqlite/%.c $(CL_HDRS) build/proto/ferry.pb-c.h
	@mkdir -p $(@D)
	$(CC) $(CL_CFLAGS) -c -o $@ $<

build/client/ferry.pb-c.o: build/proto/ferry.pb-c.c build/proto/ferry.pb-c.h
	@mkdir -p $(@D)
	$(CC) $(filter-out -Wextra,$(CL_CFLAGS)) -c -o $@ $<

build/client/libferry.a: $(CL_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/client/libferry.so: $(CL_OBJS)
	$(CC) -shared -Wl,-soname,libferry.so.$(CL_SOVERSION) -o $@ $^ $(CL_LDLIBS)

build/client/ferry: client-sqlite/cli/ferry.c build/client/libferry.a client-sqlite/include/ferry.h
	$(CC) $(filter-out -DFERRY_BUILDING_LIBRARY -fvisibility=hidden,$(CL_CFLAGS)) -o $@ $< build/client/libferry.a \
		$(CL_LDLIBS)

# The README's example app, built so that it stays true.
build/client/todo_app: client-sqlite/example/todo_app.c build/client/libferry.a client-sqlite/include/ferry.h
	$(CC) $(filter-out -DFERRY_BUILDING_LIBRARY -fvisibility=hidden,$(CL_CFLAGS)) -o $@ $< build/client/libferry.a \
		$(CL_LDLIBS)

build/client/ferry.pc: client-sqlite/ferry.pc.in
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(CL_VERSION)|g' $< > $@

build/test/client/%.t: test/client/%.c build/client/libferry.a test/tap.h $(wildcard test/client/*.h) $(CL_HDRS)
	@mkdir -p $(@D)
	$(CC) $(filter-out -DFERRY_BUILDING_LIBRARY -fvisibility=hidden -fPIC,$(CL_CFLAGS)) -Itest \
		-I$(PG_INCLUDEDIR) -o $@ $< build/client/libferry.a $(CL_LDLIBS) -lpq

client: $(if $(HAVE_CLIENT),build/client/libferry.a build/client/libferry.so build/client/ferry build/client/ferry.pc \
	build/client/todo_app)

install-client: client
ifneq ($(HAVE_CLIENT),)
	$(SUDO) install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include \
		$(DESTDIR)$(PREFIX)/bin
	$(SUDO) install -m 644 build/client/libferry.a $(DESTDIR)$(PREFIX)/lib/libferry.a
	$(SUDO) install -m 755 build/client/libferry.so $(DESTDIR)$(PREFIX)/lib/libferry.so.$(CL_VERSION)
	$(SUDO) ln -sf libferry.so.$(CL_VERSION) $(DESTDIR)$(PREFIX)/lib/libferry.so.$(CL_SOVERSION)
	$(SUDO) ln -sf libferry.so.$(CL_SOVERSION) $(DESTDIR)$(PREFIX)/lib/libferry.so
	$(SUDO) install -m 644 client-sqlite/include/ferry.h $(DESTDIR)$(PREFIX)/include/ferry.h
	$(SUDO) install -m 644 build/client/ferry.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/ferry.pc
	$(SUDO) install -m 755 build/client/ferry $(DESTDIR)$(PREFIX)/bin/ferry
	-$(if $(DESTDIR),,$(SUDO) ldconfig)
endif
# ---- end of client (libferry) -------------------------------------------------------

# ---- offline QA harness (test/qa) ---------------------------------------------------
# test/qa/netproxy.c is the fault-injecting proxy, built as build/test/qa/netproxy; every
# other test/qa/<name>.c is a scenario program build/test/qa/<name>.t, linked like the
# client's end-to-end tests (libferry.a, libpq).
QA_TEST_SRCS = $(filter-out test/qa/netproxy.c,$(wildcard test/qa/*.c))
QA_TEST_BINS = $(patsubst test/qa/%.c,build/test/qa/%.t,$(QA_TEST_SRCS))
QA_BINS = $(if $(wildcard test/qa/netproxy.c),build/test/qa/netproxy) $(QA_TEST_BINS)

build/test/qa/netproxy: test/qa/netproxy.c
	@mkdir -p $(@D)
	$(CC) $(WARNINGS) -std=gnu11 -O2 -g $(EXTRA_CFLAGS) -o $@ $<

build/test/qa/%.t: test/qa/%.c build/client/libferry.a test/tap.h $(wildcard test/qa/*.h) \
		$(wildcard test/client/*.h) $(CL_HDRS)
	@mkdir -p $(@D)
	$(CC) $(filter-out -DFERRY_BUILDING_LIBRARY -fvisibility=hidden -fPIC,$(CL_CFLAGS)) -Itest -Itest/client \
		-I$(PG_INCLUDEDIR) -o $@ $< build/client/libferry.a $(CL_LDLIBS) -lpq

# A scenario test/qa/<name>_wire.c also speaks the protocol by hand (the gateway's test client,
# test/gateway/ferryd_harness.h), so it links the gateway's modules instead.
build/test/qa/%_wire.t: test/qa/%_wire.c $(GW_OBJS) test/tap.h $(wildcard test/qa/*.h) $(wildcard test/client/*.h) \
		$(wildcard test/gateway/*.h)
	@mkdir -p $(@D)
	$(CC) $(GW_CFLAGS) -o $@ $< $(GW_OBJS) $(GW_LDLIBS)

# One program per test/extension/*.c, built as build/test/extension/<name>.t.
EXT_TEST_SRCS = $(wildcard test/extension/*.c)
EXT_TEST_BINS = $(patsubst test/extension/%.c,build/test/extension/%.t,$(EXT_TEST_SRCS))

.PHONY: all extension gateway client install-client fuzz tests deps install test test-full test-sanitize run run-stop run-clean bench clean

all: extension gateway client tests fuzz

extension:
ifneq ($(HAVE_EXTENSION),)
	$(EXT_MAKE)
endif

tests: $(EXT_TEST_BINS) $(GW_TEST_BINS) $(CL_TEST_BINS) $(QA_BINS)

build/test/extension/%.t: test/extension/%.c test/tap.h $(wildcard test/extension/*.h)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -o $@ $< $(TEST_LDLIBS)

deps:
	scripts/deps.sh

install: extension install-client
ifneq ($(HAVE_EXTENSION),)
	$(SUDO) $(EXT_MAKE) install
endif

test:
	test/run.sh

# Every suite, with the long offline QA scenarios (test/qa: all twelve, longer runs).
test-full:
	FERRY_QA_FULL=1 test/run.sh

# Rebuilds everything with sanitizers, runs the suites, and rebuilds without them, so that
# the installed extension is the ordinary one again whatever the outcome.
test-sanitize:
	$(MAKE) clean
	SANITIZE=1 test/run.sh; rc=$$?; $(MAKE) clean; $(MAKE) install >/dev/null; exit $$rc

run:
	scripts/run.sh start

run-stop:
	scripts/run.sh stop

run-clean:
	scripts/run.sh clean

bench:
	test/run.sh --bench

clean:
ifneq ($(HAVE_EXTENSION),)
	-$(EXT_MAKE) clean
endif
	rm -rf build gateway/ferryd
