# Waybill. `make test` and `make demo` are the two commands a newcomer needs; see README.md.
SHELL := /bin/bash
# Debian installs mosquitto, gpsd and mkfs.ext4 in the sbin directories, which a user's PATH lacks.
export PATH := $(PATH):/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
DIST := dist
# Packages whose tests also run as linux/arm (GOARM=7) binaries under qemu-user: the code that ships to trucks.
# Every sdk package but the office and its storage engines (sdk/dispatch/office, sdk/dispatch/storage).
ARM_PKGS := ./store/... ./gps/... ./sdk ./sdk/brokeradmin/... ./sdk/brokerconf/... ./sdk/devbroker/... ./sdk/dispatch ./sdk/dispatch/archive \
	./sdk/pki/... ./sdk/sdktest/... ./sdk/transport/... ./sdk/truck/... ./agent/button/...
# Debian package:command pairs the tests and the demo need (.ci/ensure-deps installs what is missing).
TEST_DEPS := mosquitto:mosquitto mosquitto-clients:mosquitto_pub qemu-user-static:qemu-arm-static \
	gpsd:gpsd gpsd-clients:gpsfake chromium:chromium systemd:systemd-analyze \
	qemu-system-arm:qemu-system-aarch64 e2fsprogs:mkfs.ext4 postgresql:/usr/lib/postgresql/15/bin/initdb
TEST_TIMEOUT ?= 12m

.PHONY: all build test test-native test-arm vm-test vm-test-arm32 vm-bench soak deps lint vet fmt cross bench demo dist clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/ ./cmd/...

deps:
	@.ci/ensure-deps $(TEST_DEPS)

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go' 2>/dev/null)); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

test: deps lint vm-test test-native test-arm

# ./cmd/waybill/vm boots the virtual truck; vm-test runs it (with its cycle count), so it is not run twice.
test-native:
	$(GO) test -race -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v '/vm$$')

# Everything must compile for every CPU we ship to (a constant that overflows a 32-bit int fails here), and
# the tests of the code that ships to trucks run as ARM binaries. Tests that start child processes read
# WAYBILL_TEST_EXEC to run them under the same emulator.
test-arm:
	@for t in arm/6 arm/7 arm64/; do IFS=/ read -r arch arm <<< "$$t"; \
		echo "build ./... for linux/$$arch$${arm:+ GOARM=$$arm}"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm $(GO) build ./... || exit 1; done
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 WAYBILL_TEST_EXEC=qemu-arm-static \
		$(GO) test -exec qemu-arm-static -timeout $(TEST_TIMEOUT) $(ARM_PKGS)

# The virtual truck (cmd/waybill/vm/): the agent on Debian's arm64 kernel under qemu-system-aarch64, through real power
# cuts (SIGKILL of QEMU) with the disk on cache=none and cache=writeback, then a drain and the tally. The
# kernel and busybox are fetched once into /var/cache/waybill-vm (root) or ~/.cache/waybill-vm.
# VM_CYCLES=n sets the number of power cuts (go test ./cmd/waybill/vm alone makes 2); make soak makes 1,000.
VM_CYCLES ?= 5
vm-test:
	WAYBILL_VM_CYCLES=$(VM_CYCLES) $(GO) test -count=1 -timeout 20m -v ./cmd/waybill/vm

# SOAK_TIMEOUT bounds the soak: near it the cycles stop, the queue drains and the tally still prints.
SOAK_TIMEOUT ?= 48h
soak:
	WAYBILL_VM_CYCLES=1000 $(GO) test -count=1 -timeout $(SOAK_TIMEOUT) -run TestPowerCuts -v ./cmd/waybill/vm

# The same virtual-truck tests on the 32-bit truck (Debian's armmp kernel, the agent GOARM=7), and the
# agent's footprint on the 256 MB unit (5 minutes at 1 Hz in real time; WAYBILL_VM_FOOTPRINT=1h for longer).
vm-test-arm32:
	WAYBILL_VM_ARCH=armhf WAYBILL_VM_CYCLES=$(VM_CYCLES) $(GO) test -count=1 -timeout 30m -v ./cmd/waybill/vm

vm-bench:
	$(GO) test -run '^$$' -bench Footprint -timeout 30m ./cmd/waybill/vm

# Static binaries for every architecture we ship to.
cross:
	@set -e; for t in linux/arm/6 linux/arm/7 linux/arm64/ linux/amd64/; do \
		IFS=/ read -r os arch arm <<< "$$t"; \
		suffix=$$os-$$arch$${arm:+v$$arm}; \
		for cmd in waybill-agent waybill; do \
			echo "build $(DIST)/$$cmd-$$suffix"; \
			CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
				-o $(DIST)/$$cmd-$$suffix ./cmd/$$cmd; \
		done; \
	done

# Benchmarks: prints the table and writes dist/bench.json. Micro-benchmarks (signing, decoding) run for a
# second each; the system benchmarks (durable appends, wire bytes, backlog drain, agent resources) do a fixed
# amount of work once.
MICRO_BENCH_PKGS := ./sdk ./gps
# The office: ingest on both engines, the fleet map's p50/p99 (200 requests).
OFFICE_BENCH_PKGS := ./sdk/dispatch/storage/embedded ./sdk/dispatch/storage/postgres ./sdk/dispatch/office
SYSTEM_BENCH_PKGS := ./store ./sdk/transport ./sdk/truck ./sdk/brokeradmin ./cmd/waybill-agent ./sdk/pki ./cmd/waybill/fleetsim
bench:
	@mkdir -p $(DIST)
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -benchtime 1s -timeout 30m $(MICRO_BENCH_PKGS) | tee $(DIST)/bench.txt
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -benchtime 1x -timeout 90m $(SYSTEM_BENCH_PKGS) | tee -a $(DIST)/bench.txt
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchtime 200x -timeout 30m $(OFFICE_BENCH_PKGS) | tee -a $(DIST)/bench.txt
	$(GO) run .ci/benchjson.go < $(DIST)/bench.txt > $(DIST)/bench.json
	@echo "wrote $(DIST)/bench.json"

# The whole system on one machine, in under two minutes; DEMO_KEEP=1 keeps it running (see README).
demo: build
	$(DIST)/waybill demo --dir $(DIST)/demo

clean:
	rm -rf $(DIST)

# A tarball for one board, waybill-agent-<board>-<version>.tar.gz: waybill-agent and the waybill tool (for
# `waybill store inspect` on the unit) built for the board's CPU, agent.toml naming the board, the service
# file (with the GPIO drop-in and udev rule when the board has a button or LED) and INSTALL.md.
# make dist BOARD=rpi4   (boards: ls boards/*/profile.toml; VERSION=... overrides git describe)
dist:
	@test -n "$(BOARD)" -a -f boards/$(BOARD)/profile.toml || \
		{ echo "usage: make dist BOARD=name   (one of: $$(ls -d boards/*/ | xargs -n1 basename | tr '\n' ' '))" >&2; exit 2; }
	@set -e; p=boards/$(BOARD)/profile.toml; \
	arch=$$(sed -n 's/^goarch *= *"\(.*\)".*/\1/p' $$p); arm=$$(sed -n 's/^goarm *= *\([0-9]\).*/\1/p' $$p); \
	svc=$$(sed -n 's/^service *= *"\(.*\)".*/\1/p' $$p); \
	gpio=$$(sed -n 's/^\(button\|led\)_line *= *\([0-9][0-9]*\).*/\2/p' $$p); \
	name=waybill-agent-$(BOARD)-$(VERSION); out=$(DIST)/$$name; \
	rm -rf $$out $$out.tar.gz && mkdir -p $$out; \
	for cmd in waybill-agent waybill; do \
		echo "build $$cmd for linux/$$arch$${arm:+ GOARM=$$arm} ($(BOARD))"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out/$$cmd ./cmd/$$cmd; \
	done; \
	sed 's/^board = "BOARD"/board = "$(BOARD)"/' boards/agent.example.toml > $$out/agent.toml; \
	grep -q '^board = "$(BOARD)"$$' $$out/agent.toml || { echo "boards/agent.example.toml lost its board = \"BOARD\" line" >&2; exit 1; }; \
	if [ "$$svc" = procd ]; then cp boards/waybill-agent.init $$out/; else \
		cp boards/waybill-agent.service $$out/; \
		if [ -n "$$gpio" ]; then cp boards/waybill-agent-gpio.conf boards/90-waybill-gpio.rules $$out/; fi; \
	fi; \
	sed -e "s/BOARD/$(BOARD)/g" -e "s/VERSION/$(VERSION)/g" boards/INSTALL.md > $$out/INSTALL.md; \
	tar -C $(DIST) -czf $$out.tar.gz $$name; \
	echo "wrote $$out.tar.gz"
