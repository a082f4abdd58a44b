# cproxy — plain make. `make` builds ./cproxy; `make check` runs every test.
# User CPPFLAGS/CXXFLAGS/LDFLAGS are appended last so distribution flags win;
# `make ARCH=` drops -march=native for portable packages.

CXX        ?= g++
ARCH       ?= -march=native
OPT        ?= -O3
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
DESTDIR    ?=
VERSION    := 0.1.0

WARNINGS   := -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align -Wformat=2
BASEFLAGS  := -std=c++20 $(WARNINGS) -Iinclude -MMD -MP -pthread \
              -DCPROXY_VERSION='"$(VERSION)"'
RELFLAGS   := $(OPT) $(ARCH) $(BASEFLAGS)
SANFLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=all $(BASEFLAGS)

ifeq ($(V),1)
Q :=
else
Q := @
endif

SRC        := $(wildcard src/*.cpp)
LIB_SRC    := $(filter-out src/main.cpp,$(SRC))
TEST_SRC   := $(wildcard test/unit/*.cpp test/integration/*.cpp)

REL_OBJ    := $(SRC:%.cpp=build/release/%.o)
SAN_OBJ    := $(SRC:%.cpp=build/asan/%.o)
SAN_LIB    := $(LIB_SRC:%.cpp=build/asan/%.o)
TEST_OBJ   := $(TEST_SRC:%.cpp=build/asan/%.o) build/asan/test/catch_main.o

.PHONY: all check bench bench-deps clean install uninstall help
all: cproxy

cproxy: $(REL_OBJ)
	@echo "  LD      $@"
	$(Q)$(CXX) $(RELFLAGS) $(CXXFLAGS) -o $@ $^ $(LDFLAGS)

build/release/%.o: %.cpp
	@mkdir -p $(@D)
	@echo "  CXX     $<"
	$(Q)$(CXX) $(RELFLAGS) $(CPPFLAGS) $(CXXFLAGS) -c -o $@ $<

build/asan/%.o: %.cpp
	@mkdir -p $(@D)
	@echo "  CXX     $< (asan)"
	$(Q)$(CXX) $(SANFLAGS) $(CPPFLAGS) $(CXXFLAGS) -c -o $@ $<

# Catch2's own header trips g++ 12's -Wmaybe-uninitialized; our code is not in it.
build/asan/test/catch_main.o: SANFLAGS += -w

build/asan/cproxy: $(SAN_OBJ)
	@echo "  LD      $@"
	$(Q)$(CXX) $(SANFLAGS) $(CXXFLAGS) -o $@ $^ $(LDFLAGS)

build/asan/cproxy-tests: $(SAN_LIB) $(TEST_OBJ)
	@echo "  LD      $@"
	$(Q)$(CXX) $(SANFLAGS) $(CXXFLAGS) -o $@ $^ $(LDFLAGS)

check: cproxy build/asan/cproxy build/asan/cproxy-tests
	$(Q)CPROXY_BIN=build/asan/cproxy test/run build/asan/cproxy-tests

# The benchmark's own load generator (CONNECT tunnels, per-client accounting).
build/loadgen: bench/loadgen.cpp
	@mkdir -p $(@D)
	@echo "  CXX     $<"
	$(Q)$(CXX) $(RELFLAGS) $(CPPFLAGS) $(CXXFLAGS) -o $@ $< $(LDFLAGS)

# BENCH_QUICK=1, BENCH_RUNS=N and the other BENCH_* variables pass through
# the environment; bench/run lists them.
bench: cproxy build/loadgen
	$(Q)bench/run

bench-deps:
	$(Q)bench/deps

install: cproxy
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8
	install -m 0755 cproxy $(DESTDIR)$(SBINDIR)/cproxy
	install -m 0644 man/cproxy.8 $(DESTDIR)$(MANDIR)/man8/cproxy.8

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/cproxy $(DESTDIR)$(MANDIR)/man8/cproxy.8

clean:
	rm -rf build cproxy

help:
	@echo "targets: all (default) check bench bench-deps install uninstall clean"
	@echo "vars:    ARCH=$(ARCH) OPT=$(OPT) PREFIX=$(PREFIX) SBINDIR=$(SBINDIR)"
	@echo "         MANDIR=$(MANDIR) DESTDIR V=1"

-include $(REL_OBJ:.o=.d) $(SAN_OBJ:.o=.d) $(TEST_OBJ:.o=.d) build/loadgen.d
