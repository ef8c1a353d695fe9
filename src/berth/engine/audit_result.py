"""One audit check's result, its title rules and the score (berth.engine.audit
has the whole picture)."""

PASS, WARN, FAIL, INFO = "PASS", "WARN", "FAIL", "INFO"
SCORED = (PASS, WARN, FAIL)
BENCHMARK = "CIS Docker Benchmark v1.2.0 (B.x: berth's own checks)"

# the title of a check that WARNs or FAILs: what was found, not the goal
FINDINGS = {
    "2.1": "Containers on the default bridge reach each other (icc on)",
    "2.8": "No user namespace remapping: root in a container is root on the host",
    "4.1": "Image runs as root",
    "4.5": "No signature policy: unsigned images run",
    "4.6": "Image has no HEALTHCHECK",
    "4.8": "Image has setuid/setgid files",
    "4.10": "Secrets in the image's environment",
    "5.3": "Container has capabilities beyond berth's defaults",
    "5.4": "Container is privileged",
    "5.5": "Sensitive host directories are mounted",
    "5.9": "Host network namespace is shared",
    "5.10": "Memory is not limited",
    "5.13": "Published ports listen on every host interface",
    "5.14": "Restart policy restarts without bound",
    "5.15": "Host pid namespace is shared",
    "5.16": "Host ipc namespace is shared",
    "5.20": "Host uts namespace is shared",
    "5.21": "No seccomp profile: every system call is allowed",
    "5.25": "no-new-privileges is off",
    "5.28": "PIDs are not limited",
    "5.31": "A container engine's socket is mounted",
    "B.0": "Image is unreadable",
    "B.1": "Data root is open to others",
    "B.2": "Image has world-writable files, devices or private keys",
    "B.3": "Container runs as root on the host",
    "B.5": "Default runtime is missing",
}


def check(id, title, level, target, result, detail, fix="", finding=None):
    """title: what holds when it passes; finding (else FINDINGS[id]): the
    title when it does not (an INFO takes only an explicit finding)."""
    if result in (WARN, FAIL):
        title = finding or FINDINGS.get(id, title)
    elif result == INFO and finding:
        title = finding
    return {"ID": id, "Title": title, "Level": level, "Target": target, "Result": result,
            "Detail": detail, "Fix": fix if result != PASS else ""}


def score(checks):
    scored = [c for c in checks if c["Result"] in SCORED]
    if not scored:
        return 100
    return sum(c["Result"] == PASS for c in scored) * 100 // len(scored)


def summary(checks):
    out = {r: 0 for r in (PASS, WARN, FAIL, INFO)}
    for c in checks:
        out[c["Result"]] = out.get(c["Result"], 0) + 1
    return out
