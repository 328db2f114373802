# FlowNexus — build, run, test. See README.md.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
PKG     := github.com/flownexus/flownexus
LDFLAGS := -s -w -X $(PKG)/appliance.Version=$(VERSION)
RUNDIR  ?= .run
GO      ?= go
FUZZTIME ?= 20s

.PHONY: all build run test test-short test-install vet fmt-check tidy-check bench bench-micro bench-profile fuzz soak deb clean

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

# go.mod lists what the code imports directly and nothing else: tidy must
# have nothing to change (it prints the diff and fails when it would).
tidy-check:
	$(GO) mod tidy -diff

test: fmt-check tidy-check vet
	$(GO) test -race -timeout 20m ./...

# The package tests (build both .debs, inspect them, run arm64 under qemu,
# install into a debootstrap chroot). `make test` runs them only under CI=true.
test-install:
	FLOWNEXUS_DEB_TESTS=1 $(GO) test -count=1 -timeout 30m -v ./packaging/

test-short:
	$(GO) test -short ./...

# The whole-appliance benchmark (issue 15, docs/PERFORMANCE.md): builds the
# binaries, runs `flownexus serve` pinned to core 0 beside a go-coap server,
# libcoap's coap-server and a UDP echo, drives them from core 1 and writes
# $(RUNDIR)/bench/bench.{json,md}. Small sizes by default; longer and larger
# runs with e.g. BENCHFLAGS='-fnbench.phase=60s -fnbench.fleet=10000'.
# Needs taskset (util-linux) and coap-server-notls (libcoap3-bin).
BENCHFLAGS ?=
bench: build
	FLOWNEXUS_BENCH=1 $(GO) test -count=1 -run '^TestBench$$' -v -timeout 60m ./appliance \
	  -args -fnbench.bin=$(CURDIR)/bin -fnbench.out=$(CURDIR)/$(RUNDIR)/bench $(BENCHFLAGS)

# A CPU profile of one request kind on the appliance run in-process
# (PROFILE=update|send|notification|register|psk), printed by go tool pprof.
PROFILE ?= update
bench-profile:
	@mkdir -p $(RUNDIR)/bench
	cd appliance && $(GO) test -count=1 -run '^$$' -bench 'BenchmarkApplianceInProcess/$(PROFILE)$$' -benchtime $(or $(BENCHN),4000)x -timeout 10m \
	  -cpuprofile $(CURDIR)/$(RUNDIR)/bench/$(PROFILE).cpu.out -o $(CURDIR)/$(RUNDIR)/bench/appliance.test .
	$(GO) tool pprof -top -cum -nodecount=40 $(RUNDIR)/bench/appliance.test $(RUNDIR)/bench/$(PROFILE).cpu.out

# The micro-benchmarks of the layers (Benchmark* in every package).
bench-micro:
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
