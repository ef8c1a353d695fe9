"""critest (kubernetes-sigs/cri-tools' CRI validation suite) against the
node of node.py, once per runtime handler, and the specs compared:

    .venv/bin/python tests/cri/critest.py /path/to/critest [runc berth]

critest is not part of the project: build it from cri-tools v1.26.1 (the
release of containerd 1.6's time) with its vendored modules,
`go test -c -o critest ./cmd/critest`. Keep the tree unchanged while it
runs (about 5 minutes): the berth handler runs this checkout.

critest pulls its images. They are made here (images.py) from the busybox
fixture and small static programs standing in for nginx and the
nonewprivs image, pushed to a docker-registry on the node's own
127.0.0.1:5000, which containerd takes as the mirror of registry.k8s.io,
gcr.io and docker.io; the node has no route out, so nothing is fetched.
Two specs cannot pass this way, with either handler: the image pinned by a
digest of the real registry's, and MaskedPaths, which wants the error
wording of the shell of busybox 1.29 (the fixture's 1.38 words it
"line 0: ...")."""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import images as I  # noqa: E402
import node as N  # noqa: E402

K8S = "registry.k8s.io/e2e-test-images/"
CT = "gcr.io/k8s-staging-cri-tools/"
BUSYBOX = N.FIXTURES / "images" / "busybox-1.38.tar"
MIRRORS = "".join(f"""
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."{host}"]
  endpoint = ["http://127.0.0.1:5000"]
""" for host in ("registry.k8s.io", "gcr.io", "docker.io"))

# critest looks for a process named nginx with "master process" in pid 1's
# command line, its pid in /var/run/nginx.pid, and HTTP 200 on its port
NGINX_C = r"""
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#define TITLE "nginx: master process nginx"
int main(int argc, char **argv) {
    if (strcmp(argv[0], TITLE) != 0) {
        char *again[] = {TITLE, argc > 1 ? argv[1] : "80", 0};
        execv("/proc/self/exe", again);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    FILE *f = fopen("/var/run/nginx.pid", "w");
    if (f) { fprintf(f, "%d\n", getpid()); fclose(f); }
    int s = socket(AF_INET6, SOCK_STREAM, 0), on = 1, off = 0;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(atoi(argv[1]))};
    if (bind(s, (void *)&a, sizeof a) || listen(s, 16)) { perror("listen"); return 1; }
    printf("listening on %s\n", argv[1]);
    fflush(stdout);
    const char *reply = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
    for (;;) {
        char buf[4096];
        int c = accept(s, 0, 0);
        if (c < 0) continue;
        if (read(c, buf, sizeof buf) > 0) write(c, reply, strlen(reply));
        close(c);
    }
}
"""
NNP_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("Effective uid: %d\n", (int)geteuid()); return 0; }
"""


def critest_images(d):
    """{reference: docker-archive} of every image critest v1.26.1 pulls."""
    def image(tag, files=None, **config):
        return I.docker_archive(d / f"{tag}.tar", None, files or {}, config, base=BUSYBOX)

    def marked(n):  # a distinct image: critest checks each one's tags
        return image(f"m{n}", {f"image-{n}": (b"%d\n" % n, 0o644)})
    nginx = I.gcc_static(d / "nginx", NGINX_C).read_bytes()
    nnp = I.gcc_static(d / "nnp", NNP_C).read_bytes()
    www = {"var/run": (None, 0o755), "usr/sbin/nginx": (nginx, 0o755)}
    out = {K8S + "busybox:1.29-2": image("busybox"), N.BUSYBOX: image("plain")}
    for n, ref in enumerate(("test-image-latest:latest", "test-image-tag:test", "test-image-tag:all",
                             "test-image-1:latest", "test-image-2:latest", "test-image-3:latest")):
        out[CT + ref] = marked(n)
    tags = marked(99)
    out.update({CT + f"test-image-tags:{i}": tags for i in (1, 2, 3)})
    for ref, user in (("test-image-user-uid", "1002"), ("test-image-user-username", "www-data"),
                      ("test-image-user-uid-group", "1003:users"),
                      ("test-image-user-username-group", "www-data:www-data")):
        out[CT + ref + ":latest"] = image(ref, User=user)
    passwd = b"root:x:0:0:root:/root:/bin/sh\ndefault-user:x:1000:1000::/home/default-user:/bin/sh\n"
    group = b"root:x:0:root\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"
    out[CT + "test-image-predefined-group:latest"] = image(
        "predefined-group", {"etc/passwd": (passwd, 0o644), "etc/group": (group, 0o644)},
        User="1000")
    out[K8S + "nonewprivs:1.3"] = image("nnp", {"usr/local/bin/nnp": (nnp, 0o4755)},
                                        Cmd=["/usr/local/bin/nnp"])
    out[K8S + "nginx:1.14-2"] = image("nginx", www, Cmd=["/usr/sbin/nginx", "80"])
    out[CT + "hostnet-nginx-amd64:latest"] = image("hostnet", www, Cmd=["/usr/sbin/nginx", "12003"])
    out[K8S + "httpd:2.4.39-4"] = image("httpd", {"www/index.html": (b"ok\n", 0o644)}, Cmd=[
        "sh", "-c", "echo 'Command line: httpd -D FOREGROUND'; exec httpd -f -p 80 -h /www"])
    return out


def results(report):
    """{spec: (state, seconds)} from ginkgo's JSON report."""
    out = {}
    for s in json.loads(report.read_text())[0]["SpecReports"]:
        if s["LeafNodeType"] == "It":
            name = " ".join(s["ContainerHierarchyTexts"][1:] + [s["LeafNodeText"]])
            out[name] = (s["State"], round(s["RunTime"] / 1e9, 1))
    return out


def main(argv):
    critest, handlers = argv[0], argv[1:] or list(N.HANDLERS)
    work = Path(tempfile.mkdtemp(prefix="berth-critest-"))
    node = N.Node(work / "node", config_extra=MIRRORS)
    registry = None
    got = {}
    try:
        node.start()
        (work / "registry").mkdir()
        (work / "registry.yml").write_text(
            f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {work}/registry\nhttp:\n  addr: 127.0.0.1:5000\n")
        registry = subprocess.Popen(
            ["nsenter", f"--net=/proc/{node.proc.pid}/ns/net", "docker-registry", "serve",
             str(work / "registry.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (work / "images").mkdir()
        for ref, archive in critest_images(work / "images").items():
            for _ in range(50):  # the registry takes a moment to listen
                r = node.in_netns(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                                   f"docker-archive:{archive}",
                                   f"docker://127.0.0.1:5000/{ref.split('/', 1)[1]}"],
                                  capture_output=True, text=True)
                if r.returncode == 0:
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"push {ref}: {r.stderr.strip()}")
        for h in handlers:
            t0 = time.monotonic()
            with open(work / f"{h}.log", "w") as log:
                node.in_netns([critest, f"--runtime-endpoint=unix://{node.sock}",
                               f"--image-endpoint=unix://{node.sock}", f"--runtime-handler={h}",
                               "--ginkgo.no-color", f"--ginkgo.json-report={work / h}.json"],
                              stdout=log, stderr=subprocess.STDOUT)
            got[h] = results(work / f"{h}.json")
            states = [s for s, _ in got[h].values()]
            print(f"{h}: {states.count('passed')} passed, {states.count('failed')} failed, "
                  f"{states.count('skipped')} skipped in {time.monotonic() - t0:.0f} s "
                  f"(log {work / h}.log)", flush=True)
    finally:
        if registry is not None:
            registry.terminate()
            registry.wait()
        for p in node.stop():
            print("node:", p)
    for spec in sorted(set().union(*got.values())):
        row = {h: got[h].get(spec, ("-", 0)) for h in got}
        if len({s for s, _ in row.values()}) > 1 or any(s == "failed" for s, _ in row.values()):
            print("  " + "  ".join(f"{h}={s}" for h, (s, _) in row.items()) + f"  {spec}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
