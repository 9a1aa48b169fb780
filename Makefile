# pathtrace: set-up (idempotent), the main job, tests and benchmarks.
# Everything runs as root: the lab needs namespaces, the probes need BPF.

VENV        := .venv
PY          := $(VENV)/bin/python
STAMPS      := .setup-stamps
# The second kernel (kprobes, fentry; KERNEL.md) and what boots it under test.
VM_KERNEL_PKG := linux-image-6.1.0-47-amd64-unsigned
VM_KERNEL   := /boot/vmlinuz-6.1.0-47-amd64
DEB_PACKAGES := iproute2 nftables iptables conntrack tcpdump tshark iputils-ping iperf3 \
                util-linux clang llvm libbpf-dev bpftool bpftrace make python3-venv \
                qemu-system-x86 busybox-static tmux containernetworking-plugins netavark dnsmasq-base \
                docker.io $(VM_KERNEL_PKG)
PYTHON      ?= python3

.PHONY: setup run test test-host test-vm lint bench probes examples clean

setup: $(STAMPS)/deb $(STAMPS)/venv probes

# Installs only what is missing, so a second run costs a dpkg query. No service
# may start on install (docker.io's would make docker0 and rules in the root
# namespace): a policy-rc.d that says no, for the install only, where none exists.
$(STAMPS)/deb: Makefile
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; \
	    guard=/usr/sbin/policy-rc.d; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  status=$$?; [ -z "$$guard" ] || rm -f "$$guard"; [ $$status -eq 0 ]; \
	fi
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
	@mkdir -p $(STAMPS) && touch $@

probes:
	@$(MAKE) -s -C probes

# The main job: a traced ping from container1 to 8.8.8.8 (brings the lab up if needed).
run: setup
	$(VENV)/bin/pathtrace run ping 8.8.8.8

lint:
	$(VENV)/bin/ruff check pathtrace tests
	$(VENV)/bin/ruff format --check pathtrace tests
	$(VENV)/bin/mypy

# Everything: lint, the suite on this kernel, then the vm tests in the second kernel.
test: test-host test-vm

test-host: setup lint
	$(PY) -m pytest -q

# Boots Debian's 6.1 kernel (TCG: about a minute) on this machine's own files.
# vng reopens its output (truncating a log file it was redirected to): collect it
# in a file of its own and print it, so the host suite's lines stay in CI's log.
test-vm: setup
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/vng --run $(VM_KERNEL) --disable-kvm \
	  --memory 2G -- bash tests/vm/guest.sh > .vm-test.log 2>&1; status=$$?; \
	  cat .vm-test.log; rm -f .vm-test.log; exit $$status

bench: setup
	$(PY) -m tests.bench.bench_lab_up
	$(PY) -m tests.bench.bench_probes
	$(PY) -m tests.bench.bench_traced_throughput
	$(PY) -m tests.bench.bench_run
	$(PY) -m tests.bench.bench_capture
	$(PY) -m tests.bench.bench_tui
	$(PY) -m tests.bench.bench_scale
	$(PY) -m tests.bench.bench_side_by_side
	$(PY) -m tests.bench.bench_overlay

# The example bundles in captures/examples, made by the tool itself.
examples: setup
	bash captures/examples/make.sh

clean:
	rm -rf $(STAMPS) pathtrace/kernel/bpf probes/vmlinux.h
