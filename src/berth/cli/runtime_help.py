"""berth-runtime's help pages, in the layout of runc's (urfave/cli's NAME,
USAGE, COMMANDS, OPTIONS sections) under berth's own name. Only loaded for
-h/--help, so the verbs' start-up does not pay for the text."""

NAME = "berth-runtime"
ABOUT = "Open Container Initiative runtime (runc compatible), by berth"

GLOBAL_FLAGS = (
    ("--debug", "log each setup step at debug level"),
    ("--log value", "write log lines to this file instead of stderr"),
    ("--log-format value", "log line format: text (the default) or json"),
    ("--root value", "where container state is kept (default: /run/berth-runtime)"),
    ("--criu value", "accepted for runc's sake; checkpoint/restore is not supported"),
    ("--systemd-cgroup", "refused: berth-runtime has the cgroupfs driver only"),
    ("--rootless value", "accepted for runc's sake; rootless is detected"),
    ("--help, -h", "show help"),
    ("--version, -v", "print the version"),
)

# verb -> (summary, arguments, ((flag, usage), ...))
VERBS = {
    "checkpoint": ("checkpoint a container (not supported)", "<container-id>", ()),
    "create": ("create a container", "<container-id>", (
        ("--bundle value, -b value", "the bundle: a directory with config.json (default: .)"),
        ("--console-socket value", "unix socket that is sent the terminal's master fd"),
        ("--pid-file value", "write the process's pid (as the host sees it) here"),
        ("--no-pivot", "chroot into the rootfs instead of pivot_root (for ramfs roots)"),
        ("--no-new-keyring", "keep the caller's session keyring"),
        ("--preserve-fds value", "hand fds 3 .. 3+N-1 on to the process (default: 0)"))),
    "delete": ("remove a container and everything it holds", "<container-id>", (
        ("--force, -f", "kill (SIGKILL) a container that still runs, then delete it"),)),
    "events": ("print a container's OOM events and resource statistics", "<container-id>", (
        ("--interval value", "time between two statistics (default: 5s)"),
        ("--stats", "print the statistics once and exit"))),
    "exec": ("run another process in a running container", "<container-id> <command> "
             "[command options]  || -p process.json <container-id>", (
        ("--console-socket value", "unix socket that is sent the terminal's master fd"),
        ("--cwd value", "the process's working directory"),
        ("--env value, -e value", "add an environment variable (KEY=value)"),
        ("--tty, -t", "give the process a terminal"),
        ("--user value, -u value", "run as <uid>[:<gid>]"),
        ("--additional-gids value, -g value", "add a supplementary group id"),
        ("--process value, -p value", "take the whole process from this JSON file"),
        ("--detach, -d", "return once the process runs"),
        ("--pid-file value", "write the process's pid (as the host sees it) here"),
        ("--process-label value", "SELinux label of the process"),
        ("--apparmor value", "AppArmor profile of the process"),
        ("--no-new-privs", "set no_new_privs on the process"),
        ("--cap value, -c value", "grant the process this capability too"),
        ("--preserve-fds value", "hand fds 3 .. 3+N-1 on to the process (default: 0)"),
        ("--cgroup value", "join an existing sub-cgroup of the container: "
                           "[<controller>[,<controller>]:]<path>"),
        ("--ignore-paused", "exec even when the container is paused"))),
    "features": ("print what this runtime supports, as JSON", "", ()),
    "kill": ("send a signal (default TERM) to the container's init", "<container-id> [signal]", (
        ("--all, -a", "signal every process of the container"),)),
    "list": ("list the containers under --root", "", (
        ("--format value, -f value", "table (the default) or json"),
        ("--quiet, -q", "print the ids only"))),
    "pause": ("freeze every process of the container", "<container-id>", ()),
    "ps": ("list the processes of a container",
           "<container-id> [ps options]", (
               ("--format value, -f value", "table (the default) or json"),)),
    "restore": ("restore a checkpoint (not supported)",
                "<container-id>", ()),
    "resume": ("thaw a paused container", "<container-id>", ()),
    "run": ("create and start a container", "<container-id>", (
        ("--bundle value, -b value", "the bundle: a directory with config.json (default: .)"),
        ("--console-socket value", "unix socket that is sent the terminal's master fd"),
        ("--detach, -d", "return once the process runs"),
        ("--keep", "leave the container in place when it exits"),
        ("--pid-file value", "write the process's pid (as the host sees it) here"),
        ("--no-pivot", "chroot into the rootfs instead of pivot_root (for ramfs roots)"),
        ("--no-new-keyring", "keep the caller's session keyring"),
        ("--preserve-fds value", "hand fds 3 .. 3+N-1 on to the process (default: 0)"))),
    "spec": ("write a default config.json", "", (
        ("--bundle value, -b value", "the bundle directory to write config.json into"),
        ("--rootless", "a config for an unprivileged caller"))),
    "start": ("start a created container's process", "<container-id>", ()),
    "state": ("print a container's state as JSON", "<container-id>", ()),
    "update": ("change a container's resource limits", "<container-id>", (
        ("--resources value, -r value", "a linux.resources JSON file, or - for stdin"),
        ("--blkio-weight value", "block I/O weight, 10 to 1000"),
        ("--cpu-period value", "CFS period in µs"),
        ("--cpu-quota value", "CFS quota in µs, -1 for none"),
        ("--cpu-share value", "relative CPU weight (shares)"),
        ("--cpu-rt-period value", "realtime period in µs"),
        ("--cpu-rt-runtime value", "realtime runtime in µs"),
        ("--cpuset-cpus value", "cpus the container may run on"),
        ("--cpuset-mems value", "memory nodes the container may use"),
        ("--memory value", "memory limit in bytes (k, m, g suffixes)"),
        ("--memory-reservation value", "memory soft limit in bytes"),
        ("--memory-swap value", "memory plus swap in bytes, -1 for no limit"),
        ("--pids-limit value", "most processes the container may have"))),
}


def _flags(flags):
    width = max((len(f) for f, _ in flags), default=0)
    return [f"   {f:<{width}}  {u}" for f, u in flags]


def main_page(version):
    lines = ["NAME:", f"   {NAME} - {ABOUT}", "", "USAGE:",
             f"   {NAME} [global options] command [command options] [arguments...]", "",
             "VERSION:", f"   {version}", "", "COMMANDS:"]
    width = max(len(v) for v in VERBS)
    lines += [f"   {v:<{width}}  {VERBS[v][0]}" for v in sorted(VERBS)]
    lines += [f"   {'help, h':<{width}}  shows a list of commands or help for one command",
              "", "GLOBAL OPTIONS:"] + _flags(GLOBAL_FLAGS)
    return "\n".join(lines) + "\n"


def verb_page(verb):
    summary, arguments, flags = VERBS[verb]
    lines = ["NAME:", f"   {NAME} {verb} - {summary}", "", "USAGE:",
             f"   {NAME} {verb} [command options] {arguments}".rstrip()]
    if flags:
        lines += ["", "OPTIONS:"] + _flags(flags + (("--help, -h", "show help"),))
    return "\n".join(lines) + "\n"
