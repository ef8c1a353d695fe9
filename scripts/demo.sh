#!/usr/bin/env bash
# Runs a real container from the alpine fixture with berth-runtime and
# removes everything it made.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rt="$here/bin/berth-runtime"
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
root="$work/state"
id="berth-demo-$$"
cleanup() { "$rt" --root "$root" delete -f "$id" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
image="$here/../shared/fixtures/images/alpine-3.20.tar"
mkdir -p "$work/bundle/rootfs" "$work/img"
tar -xf "$image" -C "$work/img"
for layer in $("$here/.venv/bin/python" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))[0]["Layers"]))' "$work/img/manifest.json"); do
  tar -xf "$work/img/$layer" -C "$work/bundle/rootfs"
done
cd "$work/bundle"
"$rt" spec
PYTHONPATH="$here/src" "$here/.venv/bin/python" - "$here/../shared/fixtures/docker-default-seccomp.json" <<'PY'
import json, sys
from berth.runtime.security.seccomp import from_docker_profile
c = json.load(open("config.json"))
c["process"]["terminal"] = False
# Docker's default seccomp profile, converted by berth for these capabilities
c["linux"]["seccomp"] = from_docker_profile(json.load(open(sys.argv[1])),
                                            capabilities=c["process"]["capabilities"]["bounding"])
c["process"]["args"] = ["sh", "-c", "echo hello from $(cat /etc/alpine-release) in $(hostname), pid $$; id; grep -E 'Cap(Eff|Bnd)|NoNewPrivs|Seccomp:' /proc/self/status; unshare -U true 2>&1 || echo '(unshare refused by seccomp, as with Docker)'"]
json.dump(c, open("config.json", "w"), indent=2)
PY
echo "+ berth-runtime run $id"
"$rt" --root "$root" run "$id"
