# scstd - usermode SCST. `make help` lists the targets.
GO       ?= go
BIN      := bin/scstd
# Demo: `make run` serves DEMO_DIR/disk0.img (1 GiB, sparse) as LUN 0 of iqn.2026-11.org.scstd:demo.
DEMO_DIR ?= $(CURDIR)/.demo
ADDR     ?= 127.0.0.1
PORT     ?= 3260
# Fuzzing: each fuzz target runs this long (go test -fuzztime syntax: 10m, 30s, 1000x).
FUZZTIME ?= 10m
FUZZJOBS ?= 1
# Soak: every timed phase of test/reliability runs this many seconds (600: about 1h45).
SOAK_SECS ?= 600
# End-to-end load tests: seconds of iscsi-perf and of fio (SCSTD_E2E_LOAD_SECS, default 60);
# SCSTD_E2E_RACE=1 builds the daemon under test with the race detector.
E2E_TIMEOUT ?= 40m
UNIT_TIMEOUT ?= 5m
# RBD: scratch directory of the private Ceph cluster of `make ceph-up` (tests: test/rbd, vdisk/rbd).
CEPH_DIR ?= $(CURDIR)/.ceph

.PHONY: all build run test unit e2e vet bench fuzz soak clean help ceph-up ceph-down test-rbd

all: build

help:
	@echo "make build   build $(BIN)"
	@echo "make run     one-time host setup (or print what root must run), then scstd -f on the demo image"
	@echo "make test    vet, unit tests of every package, then the end-to-end tests (run as root)"
	@echo "make bench   scstd vs tgt side by side over loopback (scripts/bench.sh; BENCH_MODE=single|multi|direct|go|all)"
	@echo "make fuzz    every fuzz target for FUZZTIME each (default $(FUZZTIME))"
	@echo "make soak    test/reliability with every timed phase SOAK_SECS long (default $(SOAK_SECS))"
	@echo "make vet     go vet and gofmt check"
	@echo "make ceph-up / ceph-down   private single-node Ceph cluster in CEPH_DIR (image rbd/lun0)"
	@echo "make test-rbd  RBD backend and end-to-end tests (build tag rbd; cgo, librbd; root)"

build:
	$(GO) build -o $(BIN) ./cmd/scstd

# As root: apply the one-time setup and run (the daemon drops to nobody after start).
# As a user: use the setup if root already did it; otherwise print the command for root and
# serve the demo without the control tree, keeping state in the demo directory.
run: build
	@set -e; extra=""; \
	if [ "$$(id -u)" = 0 ]; then \
	  scripts/setup-host.sh; \
	elif ! scripts/setup-host.sh -c -u "$$(id -un)"; then \
	  echo "Starting without the /fuse/scst/proc control tree until then."; \
	  extra="--no-mount --state-dir $(DEMO_DIR)/state"; \
	fi; \
	echo; echo "Try:  iscsi-inq iscsi://$(ADDR):$(PORT)/iqn.2026-11.org.scstd:demo/0"; \
	echo "      iscsi-ls -s iscsi://$(ADDR):$(PORT)"; echo "Ctrl-C stops the daemon."; echo; \
	exec $(BIN) -f --demo $(DEMO_DIR) -a $(ADDR) -p $(PORT) $$extra

vet:
	$(GO) vet ./...
	@files=$$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path '*/testdata/*'); \
	out=$$(gofmt -l $$files </dev/null); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }

# Unit tests first (all packages but those under test/), then the end-to-end and reliability
# tests one package at a time (-p 1), so that load tests never share the 2 CPUs with other
# tests. Both always run; the exit status is non-zero if either failed.
test:
	@status=0; \
	$(MAKE) --no-print-directory vet || status=1; \
	$(GO) test -count=1 -timeout $(UNIT_TIMEOUT) $$($(GO) list ./... | grep -v '/test/') || status=1; \
	rm -rf out/conformance; \
	SCSTD_CONFORMANCE_OUT=$(CURDIR)/out/conformance $(GO) test -count=1 -p 1 -timeout $(E2E_TIMEOUT) ./test/... || status=1; \
	if [ -f out/conformance/summary.txt ]; then echo "== libiscsi conformance summary"; cat out/conformance/summary.txt; fi; \
	exit $$status

unit:
	$(GO) test -count=1 -timeout $(UNIT_TIMEOUT) $$($(GO) list ./... | grep -v '/test/')

e2e:
	$(GO) test -count=1 -p 1 -v -timeout $(E2E_TIMEOUT) ./test/...

# scstd against tgt on loopback (scripts/bench.sh; BENCH_MODE=single|multi|direct|go|all, default
# single; BENCH_SECS, BENCH_RUNS); BENCH_MODE=go runs the data-path Go benchmarks only.
bench:
	scripts/bench.sh $(if $(BENCH_MODE),-m $(BENCH_MODE))

soak:
	SCSTD_SOAK=1 SCSTD_SOAK_SECS=$(SOAK_SECS) $(GO) test -count=1 -v -timeout 6h ./test/reliability/...

# Runs each FuzzXxx of each package for FUZZTIME, FUZZJOBS at a time (scripts/fuzz.sh); a crasher is
# left in <pkg>/testdata/fuzz and fails the run; the table is in out/fuzz/summary.txt.
fuzz:
	scripts/fuzz.sh -t $(FUZZTIME) -j $(FUZZJOBS) $(if $(FUZZWORKERS),-w $(FUZZWORKERS))

ceph-up:
	scripts/ceph-up.sh -d $(CEPH_DIR)

ceph-down:
	scripts/ceph-down.sh -d $(CEPH_DIR)

# Each test package brings its own cluster up and down in a temporary directory, unless
# SCSTD_CEPH_CONF names a running one (e.g. SCSTD_CEPH_CONF=$(CEPH_DIR)/ceph.conf after make ceph-up).
test-rbd:
	$(GO) test -count=1 -p 1 -tags rbd -timeout 15m ./vdisk/rbd/ ./test/rbd/

clean:
	rm -rf bin
