"""The process half of the spec: args, env, user, cwd, as Docker resolves
them from the image config and the run options."""
import errno
import os

from berth.errors import ConfigError, NotFound

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _argv(value, field):
    if value is None:
        return None
    if isinstance(value, str):
        # the pre-JSON "shell form" some old images still carry
        return ["/bin/sh", "-c", value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) for a in value):
        raise ConfigError(f"{field}: must be a list of strings")
    return list(value)


def args(image_config, opts):
    """Docker's rule: an entrypoint override replaces the image's
    Entrypoint and drops its Cmd; a cmd override replaces Cmd; [""] as
    entrypoint means none."""
    entry = _argv(opts.entrypoint, "entrypoint")
    cmd = _argv(opts.cmd, "cmd") or None
    if entry is not None:
        if entry == [""]:
            entry = []
    else:
        entry = _argv(image_config.get("Entrypoint"), "image config Entrypoint") or []
        if cmd is None:
            cmd = _argv(image_config.get("Cmd"), "image config Cmd")
    out = entry + (cmd or [])
    if not out:
        raise ConfigError("no command specified",
                          hint="the image has no Entrypoint or Cmd; give a command")
    return out


def merge_env(base, override, field):
    """base then override, a later K=V replacing an earlier K; a bare "K"
    in override removes K, as Docker does. Only override is checked: base
    is already a merged list."""
    order = []
    values = {}
    for item in base:
        key = item.partition("=")[0]
        if key not in values:
            order.append(key)
        values[key] = item
    for i, item in enumerate(override):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{field}[{i}]: must be a non-empty \"KEY=value\" string")
        key, sep, _ = item.partition("=")
        if not key:
            raise ConfigError(f"{field}[{i}]: {item!r} has no variable name")
        if not sep:
            values.pop(key, None)
            continue
        if key not in values:
            order.append(key)
        values[key] = item
    return [values[k] for k in dict.fromkeys(order) if k in values]


def env(image_config, opts, hostname, home):
    base = []
    if hostname:
        base.append(f"HOSTNAME={hostname}")
    if opts.tty:
        base.append("TERM=xterm")
    out = merge_env(base, list(image_config.get("Env") or ()), "image config Env")
    out = merge_env(out, list(opts.env or ()), "env")
    keys = {e.partition("=")[0] for e in out}
    if "PATH" not in keys:
        out.insert(0, f"PATH={DEFAULT_PATH}")
    if "HOME" not in keys and home:
        out.append(f"HOME={home}")
    return out


def cwd(image_config, opts):
    path = opts.workdir or image_config.get("WorkingDir") or "/"
    if not path.startswith("/"):
        field = "workdir" if opts.workdir else "image config WorkingDir"
        raise ConfigError(f"{field}: {path!r} is not an absolute path")
    return path


# ---------------------------------------------------------------- users


def _read_in_root(rootfs, rel):
    """Contents of rootfs/rel with symlinks resolved inside rootfs, so an
    image's /etc/passwd -> /host/... link cannot read host files."""
    from berth.errors import SysError
    from berth.sys import libc
    try:
        root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise NotFound(f"rootfs {rootfs}", errno=e.errno) from None
    try:
        fd = libc.openat2(root, rel, os.O_RDONLY | os.O_CLOEXEC, libc.RESOLVE_IN_ROOT)
    except SysError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None  # no such table: numeric ids still work
        raise
    finally:
        os.close(root)
    with os.fdopen(fd, "rb") as f:
        return f.read(4 << 20).decode("utf-8", "replace")


def _table(rootfs, rel):
    text = _read_in_root(rootfs, rel) if rootfs else None
    rows = []
    for line in (text or "").splitlines():
        if not line or line.startswith("#"):
            continue
        rows.append(line.split(":"))
    return rows


def _num(text):
    return int(text) if text.isdigit() else None


def user(spec_user, rootfs, group_add=()):
    """"uid", "uid:gid", "name", "name:group" -> ({"uid","gid",
    "additionalGids"}, home). Names must exist in the rootfs's
    /etc/passwd and /etc/group; a number need not (Docker's rule)."""
    text = spec_user or ""
    name, _, group = text.partition(":")
    if not name:
        name = "0"
    passwd = _table(rootfs, "etc/passwd")
    groups = _table(rootfs, "etc/group")
    entry = None
    for row in passwd:
        if len(row) >= 4 and (row[0] == name or (name.isdigit() and row[2] == name)):
            entry = row
            break
    if entry is None and not name.isdigit():
        # dockerd's wording
        raise NotFound(f"unable to find user {name}: no matching entries in passwd file")
    uid = int(entry[2]) if entry else int(name)
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    home = entry[5] if entry and len(entry) > 5 and entry[5] else "/"
    extra = []
    if group:
        gid = _group_id(group, groups, f"user {text!r}")
        extra.append(gid)
    else:
        # like Docker: the user's supplementary groups from /etc/group
        uname = entry[0] if entry else None
        for row in groups:
            if uname and len(row) >= 4 and uname in row[3].split(",") and row[2].isdigit():
                extra.append(int(row[2]))
    for g in group_add or ():
        extra.append(_group_id(str(g), groups, f"group_add {g!r}"))
    # as dockerd: the primary group too when /etc/group lists the user in it,
    # and the primary group alone when nothing else is found
    extra = [g for i, g in enumerate(extra) if g not in extra[:i]] or [gid]
    return {"uid": uid, "gid": gid, "additionalGids": extra}, home


def _group_id(group, groups, field):
    for row in groups:
        if len(row) >= 3 and (row[0] == group or (group.isdigit() and row[2] == group)):
            return int(row[2])
    if group.isdigit():
        return int(group)
    raise NotFound(f"unable to find group {group}: no matching entries in group file")
