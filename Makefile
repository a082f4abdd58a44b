# cproxy — plain make. `make` builds ./cproxy; `make check` runs every test.
# User CPPFLAGS/CXXFLAGS/LDFLAGS are appended last so distribution flags win;
# `make ARCH=` drops -march=native for portable packages.
#
# The binary reads SYSCONFDIR/cproxy/cproxy.conf by default, so the install
# directories are compile-time settings too: give `make install` the same
# PREFIX/SYSCONFDIR as the build. Objects record their flags in
# $(BUILDDIR)/flags and are rebuilt when the flags change.

CXX        ?= g++
ARCH       ?= -march=native
OPT        ?= -O3
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
# With PREFIX=/usr (a distribution package) the config and the unit go where
# the system keeps them, not under /usr.
ifeq ($(PREFIX),/usr)
SYSCONFDIR ?= /etc
UNITDIR    ?= /lib/systemd/system
else
SYSCONFDIR ?= $(PREFIX)/etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
endif
DESTDIR    ?=
# Where the release objects and the binary go; `make deb` uses its own.
BUILDDIR   ?= build/release
BIN        ?= cproxy
VERSION    := 0.1.0

WARNINGS   := -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align -Wformat=2
BASEFLAGS  := -std=c++20 $(WARNINGS) -Iinclude -MMD -MP -pthread \
              -DCPROXY_VERSION='"$(VERSION)"' -DCPROXY_SYSCONFDIR='"$(SYSCONFDIR)"'
RELFLAGS   := $(OPT) $(ARCH) $(BASEFLAGS)
SANFLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=all $(BASEFLAGS)

# Each object directory holds the flags its objects were compiled with; the
# file is rewritten only when they change (another ARCH, SYSCONFDIR, CXXFLAGS),
# and the objects depend on it, so they are rebuilt exactly then.
REL_STAMP  := $(BUILDDIR)/flags
SAN_STAMP  := build/asan/flags
REL_ALL    := $(CXX) $(RELFLAGS) $(CPPFLAGS) $(CXXFLAGS) $(LDFLAGS)
SAN_ALL    := $(CXX) $(SANFLAGS) $(CPPFLAGS) $(CXXFLAGS) $(LDFLAGS)
quote       = '$(subst ','\'',$(strip $(1)))'
write_flags = @mkdir -p $(@D); printf '%s\n' $(call quote,$(1)) >$@.new; \
              if cmp -s $@.new $@; then rm -f $@.new; else mv -f $@.new $@; fi

ifeq ($(V),1)
Q :=
else
Q := @
endif

SRC        := $(wildcard src/*.cpp)
LIB_SRC    := $(filter-out src/main.cpp,$(SRC))
TEST_SRC   := $(wildcard test/unit/*.cpp test/integration/*.cpp)

REL_OBJ    := $(SRC:%.cpp=$(BUILDDIR)/%.o)
SAN_OBJ    := $(SRC:%.cpp=build/asan/%.o)
SAN_LIB    := $(LIB_SRC:%.cpp=build/asan/%.o)
TEST_OBJ   := $(TEST_SRC:%.cpp=build/asan/%.o) build/asan/test/catch_main.o

.PHONY: all check check-build test-deps bench bench-deps clean install uninstall dist deb help fuzz fuzz-merge FORCE
all: $(BIN)

$(BIN): $(REL_OBJ)
	@echo "  LD      $@"
	$(Q)$(CXX) $(RELFLAGS) $(CXXFLAGS) -o $@ $^ $(LDFLAGS)

$(BUILDDIR)/%.o: %.cpp $(REL_STAMP)
	@mkdir -p $(@D)
	@echo "  CXX     $<"
	$(Q)$(CXX) $(RELFLAGS) $(CPPFLAGS) $(CXXFLAGS) -c -o $@ $<

build/asan/%.o: %.cpp $(SAN_STAMP)
	@mkdir -p $(@D)
	@echo "  CXX     $< (asan)"
	$(Q)$(CXX) $(SANFLAGS) $(CPPFLAGS) $(CXXFLAGS) -c -o $@ $<

$(REL_STAMP): FORCE
	$(call write_flags,$(REL_ALL))

$(SAN_STAMP): FORCE
	$(call write_flags,$(SAN_ALL))

# Catch2's own header trips g++ 12's -Wmaybe-uninitialized; our code is not in it.
build/asan/test/catch_main.o: SANFLAGS += -w

build/asan/cproxy: $(SAN_OBJ)
	@echo "  LD      $@"
	$(Q)$(CXX) $(SANFLAGS) $(CXXFLAGS) -o $@ $^ $(LDFLAGS)

build/asan/cproxy-tests: $(SAN_LIB) $(TEST_OBJ)
	@echo "  LD      $@"
	$(Q)$(CXX) $(SANFLAGS) $(CXXFLAGS) -o $@ $^ $(LDFLAGS)

# Fuzzing. Each harness in test/fuzz/ is built twice: with clang's libFuzzer
# for `make fuzz` (each runs FUZZ_SECONDS, growing build/fuzz/corpus/NAME from
# the committed test/fuzz/corpus/NAME), and with g++ and the sanitizers as a
# replay of the committed corpus that `make check` runs. `make fuzz-merge`
# adds the inputs that reach new code to the committed corpus, minimised.
FUZZ_NAMES   := request response chunked config dns proxy_protocol
FUZZ_SECONDS ?= 60
FUZZ_CXX     ?= clang++
FUZZ_FLAGS   := -MMD -MP -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
                -std=c++20 -Iinclude -pthread -DCPROXY_VERSION='"$(VERSION)"' \
                -DCPROXY_SYSCONFDIR='"$(SYSCONFDIR)"'
FUZZ_LIB     := $(LIB_SRC:%.cpp=build/fuzz/%.o)
FUZZ_BIN     := $(FUZZ_NAMES:%=build/fuzz/%)
FUZZ_REPLAY  := $(FUZZ_NAMES:%=build/asan/fuzz/%-replay)
# Kept after the build (not deleted as intermediates): make would otherwise
# print its "rm" after the test summary line, which must end the output.
.SECONDARY: $(FUZZ_NAMES:%=build/asan/test/fuzz/%_fuzz.o) build/asan/test/fuzz/replay.o

# The test tools are checked (and, as root, installed) before anything is
# compiled, so a machine without them learns it in a second, not after the
# build; test/packages lists them. The build takes one job per CPU unless
# -j says otherwise.
CHECK_JOBS  = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(shell nproc))
check:
	$(Q)test/deps check
	$(Q)$(MAKE) --no-print-directory $(CHECK_JOBS) check-build
	$(Q)CPROXY_BIN=build/asan/cproxy test/run build/asan/cproxy-tests

check-build: cproxy build/asan/cproxy build/asan/cproxy-tests $(FUZZ_REPLAY)

test-deps:
	$(Q)test/deps check

build/fuzz/%.o: %.cpp
	@mkdir -p $(@D)
	@echo "  CXX     $< (fuzz)"
	$(Q)$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/%: test/fuzz/%_fuzz.cpp $(FUZZ_LIB)
	@echo "  LD      $@"
	$(Q)$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $^

build/asan/fuzz/%-replay: build/asan/test/fuzz/%_fuzz.o build/asan/test/fuzz/replay.o $(SAN_LIB)
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CXX) $(SANFLAGS) $(CXXFLAGS) -o $@ $^ $(LDFLAGS)

fuzz: $(FUZZ_BIN)
	$(Q)for name in $(FUZZ_NAMES); do \
	    dict=test/fuzz/http.dict; [ -e test/fuzz/$$name.dict ] && dict=test/fuzz/$$name.dict; \
	    mkdir -p build/fuzz/corpus/$$name; \
	    echo "fuzz $$name: $(FUZZ_SECONDS) s"; \
	    build/fuzz/$$name -max_total_time=$(FUZZ_SECONDS) -dict=$$dict -print_final_stats=1 \
	        -artifact_prefix=build/fuzz/$$name- build/fuzz/corpus/$$name test/fuzz/corpus/$$name \
	        >build/fuzz/$$name.log 2>&1 || { tail -40 build/fuzz/$$name.log; exit 1; }; \
	    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' build/fuzz/$$name.log; \
	    grep -E '^#[0-9]+' build/fuzz/$$name.log | tail -1; \
	done

fuzz-merge: $(FUZZ_BIN)
	$(Q)for name in $(FUZZ_NAMES); do \
	    build/fuzz/$$name -merge=1 test/fuzz/corpus/$$name build/fuzz/corpus/$$name 2>&1 | tail -1; \
	done

# The benchmark's own load generator (CONNECT tunnels, per-client accounting).
build/loadgen: bench/loadgen.cpp
	@mkdir -p $(@D)
	@echo "  CXX     $<"
	$(Q)$(CXX) $(RELFLAGS) $(CPPFLAGS) $(CXXFLAGS) -o $@ $< $(LDFLAGS)

# The benchmark's DNS server, for the resolved-name case.
build/dns-responder: bench/dns_responder.cpp
	@mkdir -p $(@D)
	@echo "  CXX     $<"
	$(Q)$(CXX) $(RELFLAGS) $(CPPFLAGS) $(CXXFLAGS) -o $@ $< $(LDFLAGS)

# BENCH_QUICK=1, BENCH_RUNS=N and the other BENCH_* variables pass through
# the environment; bench/run lists them.
bench: cproxy build/loadgen build/dns-responder
	$(Q)bench/run

bench-deps:
	$(Q)test/deps bench

# Installs like a package: the config file is installed once and never
# overwritten; the unit gets the configured paths. The unit runs as user
# cproxy, which `make deb`'s postinst creates; a source install needs it made
# by hand (the note below says how).
install: $(BIN)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(SYSCONFDIR)/cproxy $(DESTDIR)$(SYSCONFDIR)/logrotate.d $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/cproxy
	install -m 0644 man/cproxy.8 $(DESTDIR)$(MANDIR)/man8/cproxy.8
	install -m 0644 man/cproxy.conf.5 $(DESTDIR)$(MANDIR)/man5/cproxy.conf.5
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    etc/cproxy.service >$(DESTDIR)$(UNITDIR)/cproxy.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cproxy.service
	install -m 0644 etc/cproxy.logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/cproxy
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/cproxy/cproxy.conf ]; then \
	    echo "note: kept the existing $(DESTDIR)$(SYSCONFDIR)/cproxy/cproxy.conf;" \
	         "the shipped one is etc/cproxy.conf"; \
	else \
	    echo "install -m 0644 etc/cproxy.conf $(DESTDIR)$(SYSCONFDIR)/cproxy/cproxy.conf"; \
	    install -m 0644 etc/cproxy.conf $(DESTDIR)$(SYSCONFDIR)/cproxy/cproxy.conf; \
	fi
	@if [ -z "$(DESTDIR)" ] && ! id cproxy >/dev/null 2>&1; then \
	    echo "note: cproxy.service runs as user cproxy; create it with"; \
	    echo "  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin cproxy"; \
	fi

# Removes what install put there except the config file, as a package does.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/cproxy $(DESTDIR)$(MANDIR)/man8/cproxy.8 \
	    $(DESTDIR)$(MANDIR)/man5/cproxy.conf.5 $(DESTDIR)$(UNITDIR)/cproxy.service \
	    $(DESTDIR)$(SYSCONFDIR)/logrotate.d/cproxy
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/cproxy/cproxy.conf ]; then \
	    echo "note: kept $(DESTDIR)$(SYSCONFDIR)/cproxy/cproxy.conf"; \
	fi

# The tracked files (all files but build output without git) under
# cproxy-VERSION/, owners and times fixed so the same tree gives the same bytes.
DIST       := cproxy-$(VERSION)
dist:
	@echo "  DIST    $(DIST).tar.gz"
	$(Q)if [ -e .git ] && git ls-files >/dev/null 2>&1; then \
	    list="git ls-files"; mtime=$$(git log -1 --format=%ct 2>/dev/null || date +%s); \
	else \
	    list="find . -type f ! -path ./.git/* ! -path ./build/* ! -path ./cproxy \
	        ! -path ./bench/results/*-quick.* ! -name cproxy-*.tar.gz* ! -name cproxy_*.deb"; \
	    mtime=$$(date +%s); \
	fi; \
	set -f; $$list | sed 's|^\./||' | LC_ALL=C sort \
	  | while read -r f; do [ -e "$$f" ] && echo "$$f"; done \
	  | tar -c --no-recursion --verbatim-files-from -T - --owner=0 --group=0 \
	        --numeric-owner --mode=u+w,go-w,go+r --mtime=@$$mtime \
	        --transform='flags=r;s|^|$(DIST)/|' -f - \
	  | gzip -9n >$(DIST).tar.gz.new && mv -f $(DIST).tar.gz.new $(DIST).tar.gz

# A binary package for this machine's Debian: a portable build (no
# -march=native) with Debian's hardening flags and paths, in build/deb/ so the
# ./cproxy of `make` is left alone; etc/debian/build-deb packs the staged tree.
# DEB_CXXFLAGS_APPEND and the other dpkg-buildflags variables apply.
DEB_DIR    := build/deb
DEB_VARS    = ARCH= PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/lib/systemd/system \
              BUILDDIR=$(DEB_DIR)/obj BIN=$(DEB_DIR)/cproxy
deb:
	$(Q)command -v dpkg-buildflags >/dev/null || { echo "make deb needs dpkg-dev" >&2; exit 1; }
	$(Q)rm -rf $(DEB_DIR)/root
	$(Q)export DEB_BUILD_MAINT_OPTIONS=hardening=+all; \
	  $(MAKE) --no-print-directory $(DEB_VARS) \
	    CPPFLAGS="$$(dpkg-buildflags --get CPPFLAGS)" \
	    CXXFLAGS="$$(dpkg-buildflags --get CXXFLAGS)" \
	    LDFLAGS="$$(dpkg-buildflags --get LDFLAGS)" \
	    DESTDIR=$(CURDIR)/$(DEB_DIR)/root install
	$(Q)etc/debian/build-deb $(DEB_DIR)/root $(VERSION) .

clean:
	rm -rf build cproxy cproxy-*.tar.gz cproxy_*.deb

help:
	@echo "targets: all (default) check test-deps bench bench-deps install uninstall dist deb fuzz fuzz-merge clean"
	@echo "  check      every test; first installs test/packages' check lines if root (test-deps)"
	@echo "  fuzz       each libFuzzer harness for FUZZ_SECONDS=$(FUZZ_SECONDS) (needs clang)"
	@echo "  install    binary, man pages, unit, logrotate file; config only if absent"
	@echo "  uninstall  removes them, keeps the config"
	@echo "  dist       $(DIST).tar.gz of the tracked files"
	@echo "  deb        cproxy_$(VERSION)-1_ARCH.deb (portable, hardened; needs dpkg-dev)"
	@echo "vars:    ARCH=$(ARCH) OPT=$(OPT) PREFIX=$(PREFIX) SBINDIR=$(SBINDIR)"
	@echo "         SYSCONFDIR=$(SYSCONFDIR) MANDIR=$(MANDIR) UNITDIR=$(UNITDIR)"
	@echo "         BUILDDIR=$(BUILDDIR) DESTDIR V=1"
	@echo "Install with the PREFIX/SYSCONFDIR you built with: the default config"
	@echo "path is compiled in ($(SYSCONFDIR)/cproxy/cproxy.conf)."

-include $(REL_OBJ:.o=.d) $(SAN_OBJ:.o=.d) $(TEST_OBJ:.o=.d) build/loadgen.d build/dns-responder.d $(FUZZ_LIB:.o=.d) \
         $(FUZZ_REPLAY:build/asan/fuzz/%-replay=build/asan/test/fuzz/%_fuzz.d)
