"""Turns the calling process into the spec's process: shared by the
container's init and by `exec`. Runs inside the container's namespaces.

Order matters and follows the kernel's rules: rlimits and oom score while
still privileged; seccomp early only when no_new_privs is off (loading it
then needs CAP_SYS_ADMIN, which the user switch drops); bounding set, then
keep-caps across the uid switch, then the final capability sets."""
import os

from berth.errors import BerthError
from berth.oci.spec import RLIMITS
from berth.sys import libc as L

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def env_path(env):
    for e in env:
        if e.startswith("PATH="):
            return e[5:]
    return _DEFAULT_PATH


def lookup(arg0, env):
    """Resolves the program like execvp does, inside the current root, so a
    missing binary is reported at create time as runc does."""
    if "/" in arg0:
        if os.access(arg0, os.X_OK) and not os.path.isdir(arg0):
            return arg0
        raise BerthError(f'exec: "{arg0}": {"permission denied" if os.path.exists(arg0) else "no such file or directory"}')
    for d in env_path(env).split(":"):
        p = os.path.join(d or ".", arg0)
        if os.access(p, os.X_OK) and not os.path.isdir(p):
            return p
    raise BerthError(f'exec: "{arg0}": executable file not found in $PATH')


def rlimits(proc):
    import resource
    for r in proc.get("rlimits") or ():
        try:
            resource.setrlimit(RLIMITS[r["type"]], (r["soft"], r["hard"]))
        except (ValueError, OSError) as e:
            cur = resource.getrlimit(RLIMITS[r["type"]])
            hint = None
            if r["hard"] > cur[1] and r["hard"] != -1:
                hint = (f"the hard limit is {cur[1]}; raising it needs CAP_SYS_RESOURCE, "
                        "which this host does not grant")
            raise BerthError(f'process.rlimits: cannot set {r["type"]} to soft {r["soft"]} '
                             f'hard {r["hard"]}: {e}', hint=hint) from None


def oom_score(proc):
    adj = proc.get("oomScoreAdj")
    if adj is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(adj))
    except OSError as e:
        raise BerthError(f"process.oomScoreAdj: cannot set {adj}", errno=e.errno) from None


def chdir(cwd):
    try:
        os.chdir(cwd)
    except OSError as e:
        raise BerthError(f"process.cwd: cannot enter {cwd}", errno=e.errno) from None
    # a leaked host directory fd used as cwd (CVE-2024-21626) leaves the cwd
    # outside the root, which getcwd reports as unreachable
    try:
        os.getcwd()
    except OSError:
        raise BerthError(f"process.cwd: {cwd} is outside the container's root") from None


def switch_user(proc, caps):
    user = proc.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    from berth.runtime.security import caps as C
    if caps is not None:
        C.drop_bounding(caps)
    L.prctl(L.PR_SET_KEEPCAPS, 1)
    try:
        groups = user.get("additionalGids")
        if groups is not None or not _setgroups_denied():
            os.setgroups(list(groups or ()))
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise BerthError(f"process.user: cannot switch to uid {uid} gid {gid}",
                         errno=e.errno) from None
    if caps is not None:
        C.apply(caps)
    L.prctl(L.PR_SET_KEEPCAPS, 0)
    if "umask" in user:
        os.umask(user["umask"])
    else:
        os.umask(0o022)


def _setgroups_denied():
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "deny"
    except OSError:
        return False


def close_fds(preserve):
    """Nothing but stdio and the preserved fds may reach the program."""
    keep = 3 + preserve
    for fd in range(3, keep):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    L.close_range(keep, 0xFFFFFFFF, 4)  # CLOSE_RANGE_CLOEXEC: the trampoline fd stays usable


def user_env(proc):
    env = list(proc.get("env") or ())
    if not any(e.startswith("HOME=") for e in env):
        home = "/"
        uid = (proc.get("user") or {}).get("uid", 0)
        try:
            with open("/etc/passwd") as f:
                for line in f:
                    parts = line.rstrip("\n").split(":")
                    if len(parts) > 5 and parts[2] == str(uid):
                        home = parts[5] or "/"
                        break
        except OSError:
            pass
        env.append("HOME=" + home)
    return env
