"""OCI hooks: each gets the container's state JSON on stdin, runs with
exactly the env the spec gives, and is killed when its timeout passes.
A failing hook fails the step that ran it (poststop only warns)."""
import os

from berth.errors import BerthError, ConfigError

PHASES = ("prestart", "createRuntime", "createContainer", "startContainer",
          "poststart", "poststop")


def validate(hooks):
    if hooks is None:
        return
    if not isinstance(hooks, dict):
        raise ConfigError("hooks: must be an object")
    for phase, entries in hooks.items():
        if phase not in PHASES:
            raise ConfigError(f'hooks.{phase}: unknown hook phase "{phase}"',
                              hint="one of " + ", ".join(PHASES))
        if not isinstance(entries, list):
            raise ConfigError(f"hooks.{phase}: must be a list")
        for i, h in enumerate(entries):
            field = f"hooks.{phase}[{i}]"
            if not isinstance(h, dict) or not isinstance(h.get("path"), str) \
                    or not h["path"].startswith("/"):
                raise ConfigError(f"{field}.path: must be an absolute path")
            t = h.get("timeout")
            if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t <= 0):
                raise ConfigError(f"{field}.timeout: {t!r} must be a positive number of seconds")
            for key in ("args", "env"):
                v = h.get(key)
                if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
                    raise ConfigError(f"{field}.{key}: must be a list of strings")


def run(hooks, state, phase, field_prefix="hooks"):
    if not hooks:
        return
    import subprocess
    from berth.oci import jsonio
    data = jsonio.dumps(state).encode()
    for i, h in enumerate(hooks):
        field = f"{field_prefix}.{phase}[{i}]"
        path = h["path"]
        args = h.get("args") or [path]
        env = {}
        for e in h.get("env") or ():
            k, _, v = e.partition("=")
            env[k] = v
        try:
            p = subprocess.run(args, executable=path, input=data, env=env, capture_output=True,
                               timeout=h.get("timeout"), close_fds=True, cwd="/")
        except subprocess.TimeoutExpired:
            raise BerthError(f"{field} {path}: timed out after {h['timeout']}s and was killed") from None
        except OSError as e:
            raise BerthError(f"{field} {path}: cannot run", errno=e.errno) from None
        if p.returncode != 0:
            how = f"exit status {p.returncode}" if p.returncode > 0 else f"killed by signal {-p.returncode}"
            err = p.stderr.decode(errors="replace").strip().splitlines()
            raise BerthError(f"{field} {path}: {how}" + (f": {err[0]}" if err else ""))
        if p.stdout:
            os.write(2, p.stdout)
