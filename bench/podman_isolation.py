"""Debian's podman 4.3 kept off the host's own state, for bench/engine.py's
PodmanEngine and tests/runtime/test_dropin_podman.py (which puts bench/ on
sys.path for this module alone).

setup(work) puts everything podman would write under `work`: storage
(--root, --runroot; overlay, or vfs when `work` is itself on overlay), its
tmp dirs (locks, exit files), the network config dir, containers.conf,
storage.conf and an empty auth file; cgroupfs, no events log, file locks
instead of /dev/shm/libpod_lock, the CNI backend so nothing goes under
/run/containers/networks. What podman 4.3 cannot be told: `podman load`
writes containers/image's blob-info cache to /var/lib/containers/cache
whatever --root says, so load_prefix() runs it in a private mount namespace
with a tmpfs there. What still appears on the host is the caller's to find
and remove."""
import os
from pathlib import Path


def fs_type(path):
    """The file system type of the mount holding path."""
    best, fstype = "", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4]
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best, fstype = mp, fields[fields.index("-") + 1]
    return fstype


def containers_conf(work, engine=""):
    """containers.conf for `work`; `engine`: the caller's own lines, first
    in [engine] (which runtime, what it supports)."""
    # rlimits: podman asks for nofile and nproc 1048576, which the runtimes
    # cannot set without CAP_SYS_RESOURCE (not granted on this host); low
    # fixed values keep every runtime on the same spec
    return f"""[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
{engine}cgroup_manager = "cgroupfs"
events_logger = "none"
lock_type = "file"
tmp_dir = "{work}/tmp"
static_dir = "{work}/root/libpod"
volume_path = "{work}/root/volumes"
image_copy_tmp_dir = "{work}/tmpdir"

[network]
network_backend = "cni"
network_config_dir = "{work}/etc/networks"
cni_plugin_dirs = ["{work}/cni-plugins"]
"""


def setup(work, engine_conf="", cli="podman"):
    """Make podman's dirs and config files under `work`; return (storage
    driver, env, the podman argv to put before every subcommand)."""
    w = Path(work)
    for d in ("etc", "tmp", "tmpdir", "root", "runroot", "cni-plugins", "etc/networks"):
        (w / d).mkdir(parents=True, exist_ok=True)
    # overlay layers cannot sit on an overlay file system: vfs there
    driver = "vfs" if fs_type(str(w)) == "overlay" else "overlay"
    (w / "etc" / "containers.conf").write_text(containers_conf(w, engine_conf))
    (w / "etc" / "storage.conf").write_text(
        f'[storage]\ndriver = "{driver}"\nrunroot = "{w}/runroot"\n'
        f'graphroot = "{w}/root"\n')
    (w / "auth.json").write_text('{"auths": {}}\n')
    env = dict(os.environ,
               CONTAINERS_CONF=str(w / "etc" / "containers.conf"),
               CONTAINERS_STORAGE_CONF=str(w / "etc" / "storage.conf"),
               REGISTRY_AUTH_FILE=str(w / "auth.json"),
               TMPDIR=str(w / "tmpdir"))
    base = [cli, "--root", str(w / "root"), "--runroot", str(w / "runroot"),
            "--tmpdir", str(w / "tmp"), "--storage-driver", driver,
            "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    return driver, env, base


def load_prefix():
    """The argv to put before `podman ... load`: containers/image writes its
    blob-info cache to /var/lib/containers/cache whatever --root says, so a
    tmpfs there, in a mount namespace of this one process."""
    target = "/var/lib/containers" if os.path.isdir("/var/lib/containers") else "/var/lib"
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o size=64m podman-blob-cache "$0" && exec "$@"', target]
