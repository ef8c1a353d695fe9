#!/bin/bash
# Gets runc's own integration suite and everything it needs from Debian alone,
# into a build directory git ignores: the source package of the runc that is
# installed (apt-get source, through a deb-src entry added here and removed
# again, also on failure), the suite's helper programs (recvtty, sd-helper,
# seccompagent) built with Debian's Go and Debian's packaged Go libraries in
# GOPATH mode, and the two rootfs tarballs get-images.sh would download.
# Usage: prepare.sh BUILD_DIR FIXTURES_DIR; BUILD_DIR/suite then links to
# the suite's tests/integration.
set -euo pipefail

build=$(realpath -m "$1")
fixtures=$(realpath "$2")
here=$(dirname "$(readlink -f "$0")")
apt=(apt-get -o DPkg::Lock::Timeout=900)
export DEBIAN_FRONTEND=noninteractive

# bats runs the suite; gawk, jq, gcc, nsenter, xz are what its helpers call
pkgs=(bats golang-go dpkg-dev gawk jq gcc util-linux xz-utils iproute2 runc libseccomp-dev pkg-config)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
	"${apt[@]}" update -qq
	"${apt[@]}" install -y -qq "${missing[@]}" >/dev/null
fi

version=$(dpkg-query -W -f '${Version}' runc)
upstream=${version#*:}
upstream=${upstream%-*}
src="$build/runc-$upstream"
mkdir -p "$build"

if [ ! -e "$src/.berth-fetched" ]; then
	# the same mirrors and suites as the binary entries, for sources
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		list=/etc/apt/sources.list.d/berth-conformance-src.sources
		entries=$(sed -n 's/^Types: deb$/Types: deb-src/; /^#/d; p' /etc/apt/sources.list.d/debian.sources)
	else
		list=/etc/apt/sources.list.d/berth-conformance-src.list
		entries=$(sed -n 's/^deb /deb-src /p' /etc/apt/sources.list 2>/dev/null)
	fi
	grep -q 'deb-src' <<<"$entries" || {
		echo "prepare: no Debian entry in /etc/apt/sources.list{,.d/debian.sources} to derive a deb-src entry from" >&2
		exit 1
	}
	lists_before=$(mktemp)
	LC_ALL=C ls /var/lib/apt/lists >"$lists_before"
	cleanup() {
		rm -f "$list"
		# the Sources indexes only this entry brought in go with it
		LC_ALL=C ls /var/lib/apt/lists | LC_ALL=C comm -13 "$lists_before" - | while read -r f; do
			[ -f "/var/lib/apt/lists/$f" ] && rm -f "/var/lib/apt/lists/$f"
		done
		rm -f "$lists_before"
	}
	trap cleanup EXIT
	echo "$entries" >"$list"
	one_list=(-o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0)
	"${apt[@]}" "${one_list[@]}" update -qq
	rm -rf "$src"
	(cd "$build" && "${apt[@]}" source -qq "runc=$version" 2>&1 |
		grep -v -e '^W: Download is performed unsandboxed' -e '^dpkg-source: info:' || true)
	[ -d "$src/tests/integration" ] || { echo "prepare: apt-get source runc=$version gave no $src/tests/integration" >&2; exit 1; }
	"${apt[@]}" build-dep -y -qq "runc=$version" >/dev/null
	rm -f "$build"/runc_*.dsc "$build"/runc_*.tar.*
	touch "$src/.berth-fetched"
	cleanup
	trap - EXIT
fi

# GOPATH mode over Debian's /usr/share/gocode: no module proxy, no network
gopath="$build/gopath"
mkdir -p "$gopath/src/github.com/opencontainers"
ln -sfn "$src" "$gopath/src/github.com/opencontainers/runc"
export GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$gopath:/usr/share/gocode" GOCACHE="$build/gocache"
for cmd in recvtty sd-helper seccompagent; do
	out="$src/contrib/cmd/$cmd/$cmd"
	[ -x "$out" ] && continue
	(cd "$gopath/src/github.com/opencontainers/runc" && go build -tags seccomp -o "$out" "./contrib/cmd/$cmd")
done

# the images get-images.sh would fetch, made from the fixture and the host
testdata="$src/tests/integration/testdata"
arch=$(go env GOARCH)
[ -s "$testdata/busybox-$arch.tar.xz" ] ||
	python3 "$here/images.py" busybox "$fixtures/images/busybox-1.38.tar" "$testdata/busybox-$arch.tar.xz"
[ -s "$testdata/debian-$arch.tar.xz" ] ||
	python3 "$here/images.py" debian - "$testdata/debian-$arch.tar.xz"
ln -sfn "$src/tests/integration" "$build/suite"
