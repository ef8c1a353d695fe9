# Two entry points do all set-up on a fresh Debian 12 machine: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3)
VENV := $(CURDIR)/.venv
SHARED ?= $(CURDIR)/../shared
# Docker's default seccomp profile is data the project is given, not ours
# to commit: build installs it where the spec generator looks for it
SECCOMP_DEFAULT := src/berth/engine/seccomp_default.json
VPY := $(VENV)/bin/python
APT_PKGS := build-essential runc busybox-static libseccomp2 iproute2 hyperfine skopeo umoci docker.io docker-registry docker-compose containerd tini podman conmon iperf3 uidmap slirp4netns python3
export PYTHONDONTWRITEBYTECODE :=

.PHONY: all deps venv build monitor test unit demo bench bench-quick clean

all: build

deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

$(VPY):
	$(PYTHON) -m venv $(VENV)

venv: $(VPY)
	@$(VPY) -c 'import pytest, cryptography, pyroute2' 2>/dev/null || $(VPY) -m pip install -q -r requirements-dev.txt

# bin/ holds launchers that run python with -IS: site and the pyenv shim
# cost 30-70 ms per start, more than the runtime's own work. berthd starts
# once and needs the venv's packages (cryptography, pyroute2): it keeps site.
# berth-runtime and berth-shim need the standard library only, and run on
# Debian's python3.11 where there is one: a static, PGO+LTO build that starts
# and runs with ~21% fewer instructions than a --enable-shared one (the
# exec'd runtime's start is a benchmark figure; bench/README.md).
RUNTIME_PY ?= $(shell /usr/bin/python3.11 -IS -c 'import sys; print(sys.executable if sys.version_info[:2] == (3, 11) else "")' 2>/dev/null)
LEAN_PY := $(or $(RUNTIME_PY),$(VPY))
build: venv monitor
	@mkdir -p bin
	@for tool in berth-runtime berth-shim berthd berth; do \
	  mod=$$(echo $$tool | tr - _); flags=-IS; py="$(VPY)"; \
	  case $$tool in berthd) flags=-I;; berth-runtime|berth-shim) py="$(LEAN_PY)";; esac; \
	  printf '#!%s %s\nimport sys\nsys.path.insert(0, "%s/src")\nfrom berth.cli.%s import main\nsys.exit(main())\n' \
	    "$$py" "$$flags" "$(CURDIR)" "$${mod#berth_}" > bin/$$tool; chmod 755 bin/$$tool; done
	@install -m 0644 $(SHARED)/fixtures/docker-default-seccomp.json $(SECCOMP_DEFAULT)
	@# bytecode for every interpreter of bin/ (3.11 both: one cache, checked by mtime)
	@$(VPY) -m compileall -q src
	@[ "$(LEAN_PY)" = "$(VPY)" ] || $(LEAN_PY) -m compileall -q src

# berth-monitor, the one program in C (src/berth/monitor/): each container's
# long-lived monitor. Without a C compiler berthd uses the Python shim
# (docker info says so), so a missing gcc is a note, not a failure. Linked
# statically: its exec is on the path from a container's exit to its wait
# answer, and measured with 10 containers a static monitor is 0.15 MB PSS,
# 0.07 MB private (dynamic: 0.16 / 0.12) and its exec a third of the work.
CC ?= cc
MONITOR_SRC := $(wildcard src/berth/monitor/*.c)
MONITOR_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -D_FORTIFY_SOURCE=2 -fstack-protector-strong -static

monitor: bin/berth-monitor

bin/berth-monitor: $(MONITOR_SRC) src/berth/monitor/monitor.h
	@mkdir -p bin
	@if command -v $(CC) >/dev/null; then \
	  $(CC) $(MONITOR_CFLAGS) -o $@.tmp $(MONITOR_SRC) && mv $@.tmp $@; \
	else echo "note: no C compiler ($(CC)): containers get the Python berth-shim as monitor"; fi

unit: build
	$(VPY) -m pytest -q tests/unit

test: deps build
	$(VPY) -m pytest -q tests

demo: deps build
	bash scripts/demo.sh

bench: deps build
	$(VPY) bench/all.py

bench-quick: deps build
	$(VPY) bench/all.py --quick

clean:
	rm -rf bin build .venv
