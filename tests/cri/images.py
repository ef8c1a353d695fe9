"""Images for the CRI node, made here with nothing downloaded: docker-archives
(what `docker save` writes, what `ctr images import` and skopeo read) of
tiny static programs built with gcc, alone or as a layer over the busybox
fixture. The pause image is the node's sandbox image; the others stand in
for the images critest pulls (critest.py)."""
import hashlib
import io
import json
import subprocess
import tarfile

PAUSE_C = r"""
/* the pod sandbox's process: holds the namespaces, reaps what is
   reparented to it, ends on SIGINT/SIGTERM */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    struct sigaction a = {0};
    a.sa_handler = quit;
    sigaction(SIGINT, &a, 0);
    sigaction(SIGTERM, &a, 0);
    a.sa_handler = reap;
    a.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &a, 0);
    for (;;)
        pause();
}
"""


def gcc_static(dest, source):
    """dest, built from C source with gcc -static (no libc needed in the image)."""
    src = dest.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(dest), str(src)], check=True,
                   capture_output=True)
    return dest


def _layer(files):
    """A layer tar of {path: (bytes, mode)}; bytes None makes a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, (data, mode) in files.items():
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            if data is None:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def docker_archive(path, name, files, config, base=None):
    """A docker-archive named name (or untagged: None) with one layer of
    files over base's layers (a docker-archive too, or nothing); config's
    keys replace base's in the image config."""
    layers, cfg = [], {"architecture": "amd64", "os": "linux", "config": {},
                       "rootfs": {"type": "layers", "diff_ids": []}}
    if base is not None:
        with tarfile.open(base) as t:
            man = json.load(t.extractfile("manifest.json"))[0]
            cfg = json.load(t.extractfile(man["Config"]))
            layers = [t.extractfile(n).read() for n in man["Layers"]]
    if files:
        layers.append(_layer(files))
        cfg["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(layers[-1]).hexdigest())
    cfg["config"] = dict(cfg.get("config") or {}, **config)
    members = [(f"{i}.tar", data) for i, data in enumerate(layers)]
    manifest = [{"Config": "config.json", "RepoTags": [name] if name else [],
                 "Layers": [n for n, _ in members]}]
    members += [("config.json", json.dumps(cfg).encode()),
                ("manifest.json", json.dumps(manifest).encode())]
    with tarfile.open(path, "w") as t:
        for fname, data in members:
            ti = tarfile.TarInfo(fname)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return path


def pause_image(work, name):
    pause = gcc_static(work / "pause", PAUSE_C)
    return docker_archive(work / "pause.tar", name, {"pause": (pause.read_bytes(), 0o755)},
                          {"Entrypoint": ["/pause"]})
