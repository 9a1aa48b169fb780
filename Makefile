# pathtrace: set-up (idempotent), the main job, tests and benchmarks.
# Everything runs as root: the lab needs namespaces, the probes need BPF.

VENV        := .venv
PY          := $(VENV)/bin/python
STAMPS      := .setup-stamps
DEB_PACKAGES := iproute2 nftables iptables conntrack tcpdump tshark iputils-ping iperf3 \
                util-linux clang llvm libbpf-dev bpftool bpftrace make python3-venv
PYTHON      ?= python3

.PHONY: setup run test lint bench probes clean

setup: $(STAMPS)/deb $(STAMPS)/venv probes

# Installs only what is missing, so a second run costs a dpkg query.
$(STAMPS)/deb: Makefile
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
	@mkdir -p $(STAMPS) && touch $@

probes:
	@$(MAKE) -s -C probes

# The main job: the lab, up and drawn.
run: setup
	$(VENV)/bin/pathtrace lab up
	$(VENV)/bin/pathtrace lab show

lint:
	$(VENV)/bin/ruff check pathtrace tests
	$(VENV)/bin/ruff format --check pathtrace tests
	$(VENV)/bin/mypy

test: setup lint
	$(PY) -m pytest -q

bench: setup
	$(PY) -m tests.bench.bench_lab_up

clean:
	rm -rf $(STAMPS) probes/.output probes/vmlinux.h
