#!/usr/bin/env bash
# Starts berthd on /run/berth/berth.sock (unless one is running), loads the
# alpine fixture and runs a real container with the berth CLI and with the
# docker CLI. berthd keeps running afterwards, as an engine does:
#   kill $(cat /run/berth/berthd.pid)     stops it (containers keep running)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sock=/run/berth/berth.sock
export DOCKER_HOST=unix://$sock BERTH_HOST=unix://$sock
berth="$here/bin/berth"
image="$here/../shared/fixtures/images/alpine-3.20.tar"

# the socket's group, as docker's packages make "docker"
getent group berth >/dev/null || groupadd --system berth
if ! "$berth" version >/dev/null 2>&1; then
  mkdir -p /var/log/berth
  echo "+ berthd (log: /var/log/berth/berthd.log)"
  setsid "$here/bin/berthd" >>/var/log/berth/berthd.log 2>&1 < /dev/null &
  # a busy machine may take a while; berth version below says why if it never came up
  for _ in $(seq 600); do "$berth" version >/dev/null 2>&1 && break; sleep 0.1; done
fi
"$berth" version
echo "+ berth load -i alpine-3.20.tar"
"$berth" load -i "$image"
echo "+ berth run --rm alpine ..."
"$berth" run --rm alpine sh -c 'echo hello from alpine $(cat /etc/alpine-release) in $(hostname), pid $$; id; grep -E "Cap(Eff|Bnd)|NoNewPrivs|Seccomp:" /proc/self/status; unshare -U true 2>&1 || echo "(unshare refused by seccomp, as with Docker)"'
if command -v docker >/dev/null; then
  echo "+ docker run --rm alpine (the real docker CLI against berthd)"
  docker run --rm alpine sh -c 'echo hello again from $(hostname)'
fi
echo
echo "berthd is running (pid $(cat /run/berth/berthd.pid)); try:"
echo "  DOCKER_HOST=$DOCKER_HOST docker run -it --rm alpine sh"
echo "  $berth ps -a; $berth images"
echo "stop it with: kill \$(cat /run/berth/berthd.pid)"
echo "next: README.md's first session; docs/install.md to install it as a service"
