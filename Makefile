# kato-manager build, test, benchmark and install entry points.
#
# On a fresh Debian 12 machine, as root: `make demo` and `make test` first
# install the Debian packages they need and the machine lacks
# (packaging/deps.sh), then do their job.

# One version string for the binaries and the packages: packaging's, from
# `git describe --tags --always` (0.0.0~gitN.HASH before the first tag).
# Asked once, when a target needs it.
VERSION  ?= $(eval VERSION := $(shell $(GO) run ./packaging/cmd/build -print-version 2>/dev/null || echo dev))$(VERSION)
PREFIX   ?= /usr/local
DESTDIR  ?=
LIBEXEC  := /usr/libexec/kato-manager
GO       ?= go
# The toolchain every build and test uses; the module proxy serves it.
export GOTOOLCHAIN := go1.27.3
LDFLAGS   = -X main.version=$(VERSION)

# One build configuration for build, demo, test and packages (cgo, C flags,
# -trimpath -buildmode=pie): the SQLite driver's C compiles once per machine.
include packaging/build.env
export CGO_ENABLED CGO_CFLAGS CGO_LDFLAGS GOFLAGS

BINARIES := bin/kato-manager bin/kg-worker

# staticcheck, pinned, installed from the module proxy into bin/tools.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := bin/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck
# gotestsum, pinned, the same way: `make test` names each test as it ends,
# so a long integration package shows where it is.
GOTESTSUM_VERSION := v1.13.0
GOTESTSUM := bin/tools/gotestsum-$(GOTESTSUM_VERSION)/gotestsum

.PHONY: all build demo test lint fuzz unit-test bench install packages man deps-build deps-test clean

all: build

build: $(BINARIES)

bin/%: FORCE
	$(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/$*

FORCE:

# The Debian packages a job needs, installed when missing.
deps-build:
	@sh packaging/deps.sh build

deps-test:
	@sh packaging/deps.sh test

# The main job end to end, in a throwaway systemd (root needed): the three
# instances of the KATO multi-instance guide and a KG worker pool draining a
# queue of sample documents, with the stand-ins of this repository.
demo: deps-build
	$(GO) run ./internal/programs/demo

# The whole suite: lint, unit tests, and the integration tests that boot a
# real systemd in throwaway namespaces (root needed; with CI=true a harness
# that cannot boot fails the run instead of skipping).
test: deps-test lint $(GOTESTSUM)
	$(GOTESTSUM) --format testname --format-hide-empty-pkg -- -count=1 -timeout 60m ./...
	$(MAKE) fuzz

lint: $(STATICCHECK)
	$(GO) vet ./...
	$(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(CURDIR)/$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(GOTESTSUM):
	GOBIN=$(CURDIR)/$(dir $@) $(GO) install gotest.tools/gotestsum@$(GOTESTSUM_VERSION)

# A short fuzzing run of each parser and renderer that takes input from
# files or the command line; the starting corpus is under each package's
# testdata/fuzz. `make fuzz FUZZTIME=10m` digs deeper.
FUZZTIME ?= 3s
FUZZ_TARGETS := config:FuzzLoad config:FuzzDecodeRegistry fleet:FuzzParseFleet units:FuzzRenderInstanceDropIn units:FuzzRenderEnvironment kgworker:FuzzDecodeResultAgreesWithTheOldDecoder
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($(FUZZTIME))"; \
		out=$$($(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 0 ./$${t%%:*}/ 2>&1); rc=$$?; \
		echo "$$out"; [ $$rc -eq 0 ] || exit 1; \
		case "$$out" in *"no fuzz tests to fuzz"*) echo "fuzz: no $${t#*:} in ./$${t%%:*}/: fix FUZZ_TARGETS"; exit 1;; esac; \
	done

# Unit tests only: no root, no systemd.
unit-test:
	$(GO) test -count=1 -short ./...

# Benchmarks against a real systemd, each beside its baseline, as ratios.
bench:
	$(GO) run ./internal/programs/bench

# The man pages, one per command, generated from the command tree into man/.
man: bin/kato-manager
	rm -rf man
	bin/kato-manager __man man
	@echo "man pages in man/: man -l man/kato-manager.1"

# The binaries, kato.toml (kept if it exists), the man pages (one per
# command, so `man kato-manager` works) and the bash, zsh and fish
# completions, where the packages put them but under $(PREFIX).
install: build
	install -D -m 0755 bin/kato-manager $(DESTDIR)$(PREFIX)/bin/kato-manager
	install -D -m 0755 bin/kg-worker $(DESTDIR)$(LIBEXEC)/kg-worker
	rm -rf bin/man && bin/kato-manager __man bin/man
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 bin/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	bin/kato-manager completion bash >bin/kato-manager.bash
	bin/kato-manager completion zsh >bin/kato-manager.zsh
	bin/kato-manager completion fish >bin/kato-manager.fish
	install -D -m 0644 bin/kato-manager.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/kato-manager
	install -D -m 0644 bin/kato-manager.zsh $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_kato-manager
	install -D -m 0644 bin/kato-manager.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/kato-manager.fish
	@# kato.toml holds the MongoDB URL: root and the kato group (the workers)
	@# read it; install-units gives it to the group if it does not exist yet.
	@if [ ! -e $(DESTDIR)/etc/kato/kato.toml ]; then \
		install -D -m 0640 config/kato.toml $(DESTDIR)/etc/kato/kato.toml; \
		if [ -z "$(DESTDIR)" ] && getent group kato >/dev/null; then chgrp kato /etc/kato/kato.toml; fi; \
	fi

# The deb and rpm packages, in dist/. The version comes from
# `git describe --tags --always` (0.0.0~gitN.HASH before the first tag);
# `make packages VERSION=1.2.3` sets it.
packages:
	$(GO) run ./packaging/cmd/build -out dist -version '$(VERSION)'

clean:
	rm -rf bin dist man
