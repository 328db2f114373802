# FlowNexus — build, run, test. See README.md.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
PKG     := github.com/flownexus/flownexus
LDFLAGS := -s -w -X $(PKG)/appliance.Version=$(VERSION)
RUNDIR  ?= .run
GO      ?= go
FUZZTIME ?= 20s

.PHONY: all build run test test-short test-install vet fmt-check bench fuzz soak deb clean

all: build

build:
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/flownexus ./cmd/flownexus
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/flownexus-sim ./cmd/flownexus-sim

# Start the appliance on embedded defaults with a local data dir.
run: build
	@mkdir -p $(RUNDIR)/data
	./bin/flownexus serve --data-dir $(RUNDIR)/data

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test: fmt-check vet
	$(GO) test -race -timeout 20m ./...

# The package tests (build both .debs, inspect them, run arm64 under qemu,
# install into a debootstrap chroot). `make test` runs them only under CI=true.
test-install:
	FLOWNEXUS_DEB_TESTS=1 $(GO) test -count=1 -timeout 30m -v ./packaging/

test-short:
	$(GO) test -short ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

# The long fault tests (docs/RELIABILITY.md): the network-fault scenario
# with 6 devices and 10 rounds, the kill -9 tests repeated SOAKCOUNT
# times. Needs root for the tmpfs, namespace and netem parts.
SOAKCOUNT ?= 20
soak:
	FLOWNEXUS_SOAK=1 $(GO) test -count=1 -timeout 120m -v -run '^(TestNetworkFaults|TestNetworkFaultsUDP)$$' ./appliance/
	$(GO) test -count=$(SOAKCOUNT) -timeout 120m -run '^(TestCrashSafety|TestKillDuringMigration|TestKillDuringBackup|TestKillDuringRetention|TestDiskFullReserve|TestDiskFullSQLite)$$' ./store/
	$(GO) test -count=$(SOAKCOUNT) -timeout 120m -run '^(TestKillAcknowledgedSurvive|TestDiskFullAppliance)$$' ./appliance/

# Run every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

deb:
	./packaging/build-deb.sh $(VERSION)

clean:
	rm -rf bin dist $(RUNDIR)
