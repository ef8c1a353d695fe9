"""The legacy image builder behind `POST /build` (DOCKER_BUILDKIT=0 docker
build, docker-py's images.build, docker-compose v1's build:).

No cache: every RUN runs and every COPY copies again (`nocache` is
accepted and changes nothing), and no step ever contacts a registry: FROM
takes an image already in the store, an earlier stage, or `scratch`.

Multi-stage: each FROM (optionally `AS name`) starts a stage with a fresh
config and its own ARGs (the ARGs before the first FROM stay usable in
FROM lines and by `ARG NAME` in a stage). `COPY --from=<stage name | stage
index | image in the store>` reads its sources from that stage's final
image (or the image), resolved inside its rootfs through a created, never
started container, removed after the copy. `target` stops the build after
the stage of that name. Only the last stage built is kept (and tagged);
the other stages' images go with the intermediate images.

Steps, on top of the engine's own container and commit code:
  RUN          a container from the current image with the config so far
               (Env plus the ARG values, WorkingDir, User), the command as
               its Entrypoint-less Cmd, the request's network mode (Docker's
               default network unless `networkmode` says otherwise), is
               started and waited for; its output goes into the build
               stream; a non-zero exit fails the build the way Docker says
               it; otherwise its upper dir becomes a new image (commit.py).
  COPY, ADD    a container is created, never started; the sources, taken
               only from the context (no absolute paths, no `..`, no
               symlink out of it), go in as a tar unpacked by the hardened
               unpacker into the destination, resolved inside the rootfs;
               then commit. ADD of a URL is refused; ADD of a local tar is
               copied as it is, not unpacked (it acts like COPY).
  the others   change the config of the next image; a build that ends on
               them gets a config-only image (no new layer).
The build's containers are removed after each step, also on failure
(`rm`/`forcerm` are accepted; berth always removes them), and the
intermediate images are deleted at the end: only the final image stays,
and a failed build leaves no image."""
import os
import posixpath
import tarfile
import time

from berth.engine.images import commit as C
from berth.engine.images import dockerfile as D
from berth.engine.images import names
from berth.engine.images.build_copy import CopySteps, _mkdirs
from berth.errors import BerthError, ConfigError, NotFound
from berth.oci import jsonio

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(BerthError):
    """A step failed; the message is what the client shows."""


def _line(text):
    return {"stream": text}


def _short(image_id):
    return image_id.split(":", 1)[-1][:12]


class Build(CopySteps):
    def __init__(self, engine, context, instructions, *, buildargs=None, labels=None,
                 tags=(), quiet=False, network="default", target=None):
        self.e = engine
        self.store = engine.store
        self.context = os.path.realpath(context)
        self.ins = list(instructions)
        if target:
            stages = D.stages(self.ins)
            names_ = [name for name, _ in stages]
            if target.lower() not in names_:
                raise ConfigError(f"failed to reach build target {target} in Dockerfile")
            k = names_.index(target.lower())
            if k + 1 < len(stages):
                self.ins = self.ins[:stages[k + 1][1]]
        self.buildargs = dict(buildargs or {})
        self.labels = dict(labels or {})
        self.tags = list(tags)
        self.quiet = quiet
        self.network = network or "default"
        self.image_id = None
        self.config = {}
        self.args = {}          # ARG values in force in this stage
        self.global_args = {}   # ARGs before FROM
        self.used_args = set()
        self.created = []       # images this build made, deleted unless final
        self.dirty = False      # config changed since the last image
        self.workdir_pending = False
        self.containers = []
        self.stages = []        # [(name or None, image id)] of the finished stages
        self.stage_name = None

    # -- the run ------------------------------------------------------
    def run(self):
        """Yields the stream's lines ({"stream": ...}, {"aux": ...}); raises
        on failure after removing what the build made."""
        final = None
        try:
            for line in self._steps():
                # q=1: only the result (and errors, raised) reach the client
                if not (self.quiet and line is not None and "stream" in line):
                    yield line
            final = self.image_id
        finally:
            for cid in self.containers:
                self._remove(cid)
            for image_id in self.created:
                if image_id != final:
                    try:
                        self.store.remove(image_id, force=True)
                    except BerthError:
                        pass
        yield {"aux": {"ID": final}}
        if self.quiet:
            yield _line(final + "\n")
            return
        yield _line(f"Successfully built {_short(final)}\n")
        for t in self.tags:
            yield _line(f"Successfully tagged {names.parse(t).familiar()}\n")

    def _steps(self):
        n = len(self.ins)
        stage = 0
        for i, ins in enumerate(self.ins, 1):
            yield _line(f"Step {i}/{n} : {ins.original}\n")
            if ins.cmd == "FROM":
                if stage:
                    yield from self._end_stage()
                stage += 1
                yield from self._from(ins)
            elif not stage:
                self._arg(ins, self.global_args)
            else:
                # ENV's handler is _env_: _env is the variable lookup
                name = "_env_" if ins.cmd == "ENV" else "_" + ins.cmd.lower()
                yield from getattr(self, name)(ins)
        if self.workdir_pending:
            yield from self._layer_step(None, "#(nop) WORKDIR " + self.config["WorkingDir"])
        if self.labels:
            labels = dict(self.config.get("Labels") or {})
            labels.update(self.labels)
            self.config["Labels"] = labels
            self.dirty = True
        if self.dirty:
            self.image_id = self._config_only("#(nop) config")
            yield _line(f" ---> {_short(self.image_id)}\n")
        unused = sorted(set(self.buildargs) - self.used_args)
        if unused:
            yield _line(f"[Warning] One or more build-args [{' '.join(unused)}] were not "
                        "consumed\n")
        for t in self.tags:
            self.store.tag(self.image_id, t)

    def _end_stage(self):
        """A FROM after a stage: the stage's image is kept until the end of
        the build, for FROM <stage> and COPY --from."""
        if self.workdir_pending:
            yield from self._layer_step(None, "#(nop) WORKDIR " + self.config["WorkingDir"])
        if self.dirty:
            self.image_id = self._config_only("#(nop) config")
            yield _line(f" ---> {_short(self.image_id)}\n")
        self.stages.append((self.stage_name, self.image_id))

    def _stage_image(self, ref):
        """A stage name or index (of a finished stage) -> its image id, or None."""
        for name, image_id in self.stages:
            if name is not None and name == ref.lower():
                return image_id
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)][1]
        return None

    def _env(self):
        """What $VAR means at this step: ARG values under ENV values."""
        env = {k: v for k, v in self.args.items() if v is not None}
        for item in self.config.get("Env") or ():
            k, _, v = item.partition("=")
            env[k] = v
        return env

    def _set(self, key, value):
        """An instruction that only changes the config (no layer to make)."""
        self.config[key] = value
        self.dirty = True
        return iter(())

    # -- instructions ---------------------------------------------------
    def _from(self, ins):
        if "platform" in ins.flags:
            pass  # one platform: the host's
        # a fresh stage: its own config and ARGs
        self.config = {}
        self.args = {}
        self.dirty = False
        self.workdir_pending = False
        self.stage_name = ins.stage
        ref = D.from_image(ins, {k: v for k, v in self.global_args.items() if v is not None})
        if not ref:
            raise ins.error("FROM names no image (an ARG without a value?)")
        earlier = None
        for name, image_id in self.stages:
            if name is not None and name == ref.lower():
                earlier = image_id
        if earlier is not None:
            self.image_id = earlier
        elif ref == "scratch":
            self.image_id = self._scratch()
            self.created.append(self.image_id)
        else:
            try:
                self.image_id = self.store.resolve(ref)
            except NotFound:
                raise BuildError(f"pull access denied for {ref}: berth's builder never pulls; "
                                 f"the image must be in the store (docker pull or docker load "
                                 "it first)") from None
        self.config = dict(self.store.config(self.image_id).get("config") or {})
        self.config.setdefault("Env", [DEFAULT_PATH] if ref == "scratch" else [])
        yield _line(f" ---> {_short(self.image_id)}\n")

    def _arg(self, ins, into=None):
        into = self.args if into is None else into
        for k, v in D.key_values(ins, self._env() if into is self.args else dict(into),
                                 legacy=False):
            if k in self.buildargs:
                v = self.buildargs[k]
                self.used_args.add(k)
            elif v is None and into is self.args and k in self.global_args:
                v = self.global_args[k]
            into[k] = v   # None: declared without a value, not set
        return iter(())

    def _env_(self, ins):
        pairs = D.key_values(ins, self._env())
        env = list(self.config.get("Env") or [])
        for k, v in pairs:
            env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
        return self._set("Env", env)

    def _label(self, ins):
        labels = dict(self.config.get("Labels") or {})
        labels.update(D.key_values(ins, self._env()))
        return self._set("Labels", labels)

    def _maintainer(self, ins):
        return iter(())

    def _workdir(self, ins):
        path = D.expand(ins.args, self._env(), ins)
        base = self.config.get("WorkingDir") or "/"
        self.workdir_pending = True
        return self._set("WorkingDir", posixpath.normpath(posixpath.join(base, path)))

    def _user(self, ins):
        return self._set("User", D.expand(ins.args, self._env(), ins))

    def _cmd(self, ins):
        return self._set("Cmd", D.command(ins, self.config.get("Shell") or DEFAULT_SHELL))

    def _entrypoint(self, ins):
        return self._set("Entrypoint", D.command(ins, self.config.get("Shell") or DEFAULT_SHELL))

    def _shell(self, ins):
        argv = ins.exec_form()
        if not argv:
            raise ins.error("SHELL requires the JSON form, such as [\"/bin/bash\", \"-c\"]")
        return self._set("Shell", argv)

    def _expose(self, ins):
        ports = dict(self.config.get("ExposedPorts") or {})
        for p in D.words(ins.args, self._env(), ins):
            num, _, proto = p.partition("/")
            if not num.replace("-", "").isdigit() or (proto or "tcp") not in ("tcp", "udp", "sctp"):
                raise ins.error(f"invalid port {p!r}")
            ports[f"{num}/{proto or 'tcp'}"] = {}
        return self._set("ExposedPorts", ports)

    def _volume(self, ins):
        argv = ins.exec_form()
        paths = [D.expand(a, self._env(), ins) for a in argv] if argv is not None \
            else D.words(ins.args, self._env(), ins)
        vols = dict(self.config.get("Volumes") or {})
        for p in paths:
            if not p:
                raise ins.error("VOLUME specified can not be an empty string")
            vols[p] = {}
        return self._set("Volumes", vols)

    def _stopsignal(self, ins):
        return self._set("StopSignal", D.expand(ins.args, self._env(), ins))

    def _healthcheck(self, ins):
        return self._set("Healthcheck",
                         D.healthcheck(ins, self.config.get("Shell") or DEFAULT_SHELL))

    def _onbuild(self, ins):
        raise ins.error("ONBUILD is not supported by berth's builder")

    def _run(self, ins):
        argv = D.command(ins, self.config.get("Shell") or DEFAULT_SHELL)
        return self._layer_step(argv, None, ins)

    def _copy(self, ins):
        return self._layer_step(None, f"#(nop) {ins.original}", ins)

    _add = _copy

    # -- steps with a container ---------------------------------------
    def _container(self, argv):
        env = list(self.config.get("Env") or [])
        names = {e.partition("=")[0] for e in env}
        env += [f"{k}={v}" for k, v in sorted(self.args.items())
                if k not in names and v is not None]
        body = {"Image": self.image_id, "Cmd": argv, "Entrypoint": [""], "Env": env,
                "WorkingDir": self.config.get("WorkingDir") or "",
                "User": self.config.get("User") or "",
                "Labels": {"berth.build": "intermediate"},
                "HostConfig": {"NetworkMode": self.network}}
        c = self.e.containers.create(body)
        self.containers.append(c.id)
        root = self.e.containers.rootfs(c)
        if self.workdir_pending:
            fd = _mkdirs(root, self.config["WorkingDir"])
            os.close(fd)
            self.workdir_pending = False
        return c, root

    def _layer_step(self, argv, nop, ins=None):
        """RUN (argv) or COPY/ADD/WORKDIR (nop: a placeholder command, the
        container is never started)."""
        c, root = self._container(argv or DEFAULT_SHELL + [nop])
        yield _line(f" ---> Running in {c.id[:12]}\n")
        if argv is not None:
            yield from self._start_and_wait(c, argv)
        elif ins is not None:
            self._copy_files(ins, root)
        upper = c.data.get("GraphDriver", {}).get("Data", {}).get("UpperDir")
        if not upper:
            raise BuildError("build: only the overlay storage driver keeps a container's "
                             "changes apart, and the builder commits them")
        cfg = dict(self.config)
        new_id = C.commit(self.store, self.image_id, upper, {}, container_id=c.id,
                          changes=cfg)
        self.created.append(new_id)
        self._remove(c.id)
        self.containers.remove(c.id)
        yield _line(f"Removing intermediate container {c.id[:12]}\n")
        self.image_id = new_id
        self.dirty = False
        yield _line(f" ---> {_short(new_id)}\n")

    def _start_and_wait(self, c, argv):
        from berth.engine.containers import logs
        wait = self.e.containers.waiter(c.id, "next-exit")
        self.e.containers.start(c.id)
        for chunk in logs.read(c.data["LogPath"], tty=True, follow=True,
                               running=lambda: c.running):
            # None: an empty chunk, so the HTTP layer notices a client that left
            yield _line(chunk.decode("utf-8", "replace")) if chunk else None
        res = wait()
        code = res.get("StatusCode")
        if code:
            raise BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: {code}")
        if res.get("Error"):
            raise BuildError(f"The command '{' '.join(argv)}' failed: {res['Error']['Message']}")

    def _remove(self, cid):
        try:
            self.e.containers.remove(cid, force=True, volumes=True)
        except NotFound:
            pass
        except BerthError:
            pass

    # -- images without a container ----------------------------------
    def _config_only(self, created_by):
        """The current image with self.config, no new layer."""
        store = self.store
        base = store.config(self.image_id)
        rec = store.record(self.image_id)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        doc = dict(base)
        doc.update({"created": created, "config": dict(self.config),
                    "history": list(base.get("history") or []) + [
                        {"created": created, "created_by": created_by, "empty_layer": True}]})
        with store:
            raw = jsonio.dumps(doc).encode()
            digest = store.put_bytes(raw)
            try:
                store.record(digest)
                existed = True
            except (BerthError, OSError):
                existed = False
            manifest = dict(rec["manifest"])
            manifest["config"] = dict(manifest["config"], size=len(raw), digest=digest)
            new_id = store.add_image(digest, list(rec["layers"]), manifest,
                                     diff_sizes=rec.get("diff_sizes"))
        if not existed:
            self.created.append(new_id)
        self.dirty = False
        return new_id

    def _scratch(self):
        """An image of one empty layer, for FROM scratch."""
        import io
        from berth.engine.images import importer
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w"):
            pass
        buf.seek(0)
        return importer.import_rootfs(self.store, buf, None, config={"Env": [DEFAULT_PATH]},
                                      message="FROM scratch")


def parse_context(path, dockerfile):
    """The Dockerfile inside the unpacked context -> [Instruction]."""
    rel = posixpath.normpath(dockerfile or "Dockerfile")
    if rel.startswith("/") or rel == ".." or rel.startswith("../"):
        raise ConfigError(f"the Dockerfile ({dockerfile}) must be within the build context")
    full = os.path.join(path, rel)
    real = os.path.realpath(full)
    ctx = os.path.realpath(path)
    if not real.startswith(ctx + "/") or not os.path.isfile(real):
        raise ConfigError(f"Cannot locate specified Dockerfile: {dockerfile or 'Dockerfile'}")
    with open(real, "rb") as f:
        return D.parse(f.read(4 << 20))
