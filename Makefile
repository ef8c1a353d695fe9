# Two entry points do all set-up on a fresh Debian 12 machine: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3)
VENV := $(CURDIR)/.venv
SHARED ?= $(CURDIR)/../shared
# Docker's default seccomp profile is data the project is given, not ours
# to commit: build installs it where the spec generator looks for it
SECCOMP_DEFAULT := src/berth/engine/seccomp_default.json
VPY := $(VENV)/bin/python
APT_PKGS := build-essential runc busybox-static libseccomp2 iproute2 hyperfine skopeo umoci docker.io docker-registry docker-compose containerd tini podman conmon iperf3 uidmap slirp4netns python3 zstd openssl containernetworking-plugins gcc libc6-dev
export PYTHONDONTWRITEBYTECODE :=
# make install: Debian's python3 and its packages run the installed berth
# (no venv to keep in step); DESTDIR stages the tree, as packagers do
INSTALL_PKGS := python3 python3-cryptography python3-pyroute2 python3-h11 nftables iproute2 tini libseccomp2 uidmap
PREFIX ?= /usr/local
BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib/berth
DOCDIR := $(PREFIX)/share/doc/berth
UNITDIR ?= /etc/systemd/system
SYSPY ?= /usr/bin/python3
# the socket's group, made on a real install (none with DESTDIR or BERTH_GROUP=)
BERTH_GROUP ?= berth

.PHONY: all deps venv build monitor test unit demo bench bench-quick conformance dockerpy-conformance clean install uninstall

all: build

# apt-get install whichever of $(1) is missing; dpkg's lock is shared by
# everyone on the machine, so wait for it rather than fail
apt_install = missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get -o DPkg::Lock::Timeout=900 update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq $$missing; fi

deps:
	@$(call apt_install,$(APT_PKGS) $(INSTALL_PKGS))
	@sh scripts/host-paths.sh

$(VPY):
	$(PYTHON) -m venv $(VENV)

venv: $(VPY)
	@$(VPY) -c 'import pytest, cryptography, pyroute2, zstandard, nacl, yaml, grpc, grpc_tools, docker, pytest_timeout, h11' 2>/dev/null || $(VPY) -m pip install -q -r requirements-dev.txt

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
	@# the CRI messages tests/cri speaks to containerd (a subset, written by the project)
	@mkdir -p build/cri && $(VPY) -m grpc_tools.protoc -Itests/cri --python_out=build/cri \
	  --grpc_python_out=build/cri tests/cri/runtime_v1.proto
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

# the package and its launchers under $(LIBDIR), the commands linked into
# $(BINDIR), the systemd units and the docs; the berth group (the socket's)
# only on a real install (no DESTDIR)
install: build
	@$(call apt_install,$(INSTALL_PKGS))
	@rm -rf $(DESTDIR)$(LIBDIR)
	@install -d $(DESTDIR)$(LIBDIR)/bin $(DESTDIR)$(LIBDIR)/python $(DESTDIR)$(BINDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR)
	@cp -r src/berth $(DESTDIR)$(LIBDIR)/python/berth
	@find $(DESTDIR)$(LIBDIR)/python -name __pycache__ -prune -exec rm -rf {} +
	@for tool in berth-runtime berth-shim berthd berth; do \
	  mod=$$(echo $$tool | tr - _); flags=-IS; [ $$tool = berthd ] && flags=-I; \
	  printf '#!%s %s\nimport sys\nsys.path.insert(0, "%s/python")\nfrom berth.cli.%s import main\nsys.exit(main())\n' \
	    "$(SYSPY)" "$$flags" "$(LIBDIR)" "$${mod#berth_}" > $(DESTDIR)$(LIBDIR)/bin/$$tool; chmod 755 $(DESTDIR)$(LIBDIR)/bin/$$tool; \
	  [ $$tool = berth-shim ] || ln -sfn ../lib/berth/bin/$$tool $(DESTDIR)$(BINDIR)/$$tool; done
	@$(SYSPY) -m compileall -q -d $(LIBDIR)/python $(DESTDIR)$(LIBDIR)/python
	@for unit in berth.service berth.socket; do \
	  sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' contrib/systemd/$$unit > $(DESTDIR)$(UNITDIR)/$$unit; \
	  chmod 644 $(DESTDIR)$(UNITDIR)/$$unit; done
	@install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	@if [ -z "$(DESTDIR)" ]; then \
	  if [ -n "$(BERTH_GROUP)" ]; then getent group $(BERTH_GROUP) >/dev/null || groupadd --system $(BERTH_GROUP); fi; \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	  echo "installed; start it with: systemctl enable --now berth.socket berth.service"; fi

# what install put there; the data root, exec root, nft tables, bridge and
# group are the daemon's: docs/install.md says how to remove them
uninstall:
	rm -rf $(DESTDIR)$(LIBDIR) $(DESTDIR)$(DOCDIR)
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,berth berthd berth-runtime) $(addprefix $(DESTDIR)$(UNITDIR)/,berth.service berth.socket)

# runc's own bats suite (Debian's source package) against runc and
# berth-runtime; sources and builds under build/conformance (git ignores it)
conformance: deps build
	bash tests/conformance/prepare.sh $(CURDIR)/build/conformance $(SHARED)/fixtures
	$(VPY) tests/conformance/run_bats.py --suite $(CURDIR)/build/conformance/suite

# docker-py's integration suite against a dockerd of its own and berthd, side
# by side; exits non-zero on a difference dockerpy-expected.txt does not list
dockerpy-conformance: deps build
	$(VPY) tests/conformance/dockerpy_conformance.py

clean:
	rm -rf bin build .venv
