"""The legacy image builder behind `POST /build` (DOCKER_BUILDKIT=0 docker
build, docker-py's images.build, docker-compose v1's build:), as dockerd's.

Every instruction after FROM makes an image of its own on top of the one
before (its Parent), with dockerd's words in the history (`/bin/sh -c
#(nop)  ENV A=1`, `|1 A=1 /bin/sh -c make`); those intermediate images
are the cache (buildcache.py): a step already built on the same parent
with the same command and config is reused ("Using cache") unless
`nocache`; with `cachefrom`, the steps of those images are reused
instead. They are not listed and go with the last image made from them.
No step ever contacts a registry: FROM takes an image already in the
store, an earlier stage, or `scratch`.

Multi-stage: each FROM (optionally `AS name`) starts a stage with a fresh
config and its own ARGs (the ARGs before the first FROM stay usable in
FROM lines and by `ARG NAME` in a stage). `COPY --from=<stage name | stage
index | image in the store>` reads its sources from that stage's final
image (or the image), resolved inside its rootfs through a created, never
started container, removed after the copy. `target` stops the build after
the stage of that name.

Steps, on top of the engine's own container and commit code:
  RUN          a container from the current image with the config so far
               (Env plus the ARG values, WorkingDir, User), the command as
               its Entrypoint-less Cmd, the request's network mode and
               extra hosts, is started and waited for; its output goes
               into the build stream (stderr in red, as dockerd marks it);
               a non-zero exit fails the build the way Docker says it;
               otherwise its upper dir becomes the step's image (commit.py).
  COPY, ADD    a container is created, never started; the sources, taken
               only from the context (no absolute paths, no `..`, no
               symlink out of it), go in as a tar unpacked by the hardened
               unpacker into the destination, resolved inside the rootfs;
               then commit. ADD of a URL is refused; ADD of a local tar is
               copied as it is, not unpacked (it acts like COPY).
  WORKDIR      a container that makes the directory, committed.
  the others   an image with the new config and no new layer.
The build's containers are removed after each step, also on failure
(`rm`/`forcerm` are accepted; berth always removes them)."""
import os
import posixpath
import tarfile
import time

from berth.engine.images import buildcache as K
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
                 tags=(), quiet=False, network="default", target=None, nocache=False,
                 cache_from=(), extra_hosts=()):
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
        self.extra_hosts = list(extra_hosts)
        self.nocache = nocache
        self.cache = K.Cache(self.store, engine.paths.root)
        self.cache_from = []
        for ref in cache_from:
            try:
                self.cache_from.append(self.store.resolve(ref))
            except BerthError:
                pass  # as dockerd: a cache-from image that is not there is no cache
        self.image_id = None
        self.scratch_id = None
        self.author = None
        self.config = {}
        self.args = {}          # ARG values in force in this stage
        self.global_args = {}   # ARGs before FROM
        self.used_args = set()
        self.containers = []
        self.stages = []        # [(name or None, image id)] of the finished stages
        self.stage_name = None

    # -- the run ------------------------------------------------------
    def run(self):
        """Yields the stream's lines ({"stream": ...}, {"aux": ...}); raises
        on failure after removing what the build made."""
        done = False
        try:
            for line in self._steps():
                # q=1: only the result (and errors, raised) reach the client
                if not (self.quiet and line is not None and "stream" in line):
                    yield line
            done = True
        finally:
            for cid in self.containers:
                self._remove(cid)
            if self.scratch_id and (not done or self.scratch_id != self.image_id):
                try:
                    self.store.remove(self.scratch_id, force=True)
                except BerthError:
                    pass
        final = self.image_id
        self._keep(final)
        for t in self.tags:
            self.store.tag(final, t)
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
                    self.stages.append((self.stage_name, self.image_id))
                stage += 1
                yield from self._from(ins)
            elif not stage:
                self._arg(ins, self.global_args)
            else:
                # ENV's handler is _env_: _env is the variable lookup
                name = "_env_" if ins.cmd == "ENV" else "_" + ins.cmd.lower()
                yield from getattr(self, name)(ins)
        if self.labels:
            labels = dict(self.config.get("Labels") or {})
            labels.update(self.labels)
            self.config["Labels"] = labels
            yield from self._step(K.nop("LABEL " + " ".join(f"{k}={v}" for k, v in
                                                            sorted(self.labels.items()))))
        unused = sorted(set(self.buildargs) - self.used_args)
        if unused:
            yield _line(f"[Warning] One or more build-args [{' '.join(unused)}] were not "
                        "consumed\n")

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

    def _set(self, key, value, text):
        """An instruction that only changes the config: an image with no
        new layer, its history entry dockerd's #(nop) text."""
        self.config[key] = value
        return self._step(K.nop(text))

    # -- instructions ---------------------------------------------------
    def _from(self, ins):
        if "platform" in ins.flags:
            pass  # one platform: the host's
        # a fresh stage: its own config and ARGs
        self.config = {}
        self.args = {}
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
            self.image_id = self.scratch_id = self._scratch()
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
        shown = []
        for k, v in D.key_values(ins, self._env() if into is self.args else dict(into),
                                 legacy=False):
            default = v
            if k in self.buildargs:
                v = self.buildargs[k]
                self.used_args.add(k)
            elif v is None and into is self.args and k in self.global_args:
                v = self.global_args[k]
            into[k] = v   # None: declared without a value, not set
            shown.append(k if default is None else f"{k}={default}")
        if into is not self.args:
            return iter(())   # before the first FROM: no image yet
        return self._step(K.nop("ARG " + " ".join(shown)))

    def _env_(self, ins):
        pairs = D.key_values(ins, self._env())
        env = list(self.config.get("Env") or [])
        for k, v in pairs:
            env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
        return self._set("Env", env, "ENV " + " ".join(f"{k}={v}" for k, v in pairs))

    def _label(self, ins):
        labels = dict(self.config.get("Labels") or {})
        pairs = D.key_values(ins, self._env())
        labels.update(pairs)
        return self._set("Labels", labels, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))

    def _maintainer(self, ins):
        self.author = D.expand(ins.args, self._env(), ins)
        return self._step(K.nop("MAINTAINER " + self.author))

    def _workdir(self, ins):
        path = D.expand(ins.args, self._env(), ins)
        base = self.config.get("WorkingDir") or "/"
        self.config["WorkingDir"] = posixpath.normpath(posixpath.join(base, path))
        # as dockerd: a container makes the directory, and is committed
        return self._step(["/bin/sh", "-c", "#(nop) WORKDIR " + self.config["WorkingDir"]],
                          kind="workdir")

    def _user(self, ins):
        user = D.expand(ins.args, self._env(), ins)
        return self._set("User", user, "USER " + user)

    def _cmd(self, ins):
        cmd = D.command(ins, self.config.get("Shell") or DEFAULT_SHELL)
        return self._set("Cmd", cmd, "CMD " + K.go_quote(cmd))

    def _entrypoint(self, ins):
        entry = D.command(ins, self.config.get("Shell") or DEFAULT_SHELL)
        return self._set("Entrypoint", entry, "ENTRYPOINT " + K.go_quote(entry))

    def _shell(self, ins):
        argv = ins.exec_form()
        if not argv:
            raise ins.error("SHELL requires the JSON form, such as [\"/bin/bash\", \"-c\"]")
        return self._set("Shell", argv, "SHELL " + K.go_list(argv))

    def _expose(self, ins):
        ports = dict(self.config.get("ExposedPorts") or {})
        given = D.words(ins.args, self._env(), ins)
        for p in given:
            num, _, proto = p.partition("/")
            if not num.replace("-", "").isdigit() or (proto or "tcp") not in ("tcp", "udp", "sctp"):
                raise ins.error(f"invalid port {p!r}")
            ports[f"{num}/{proto or 'tcp'}"] = {}
        return self._set("ExposedPorts", ports, "EXPOSE " + " ".join(given))

    def _volume(self, ins):
        argv = ins.exec_form()
        paths = [D.expand(a, self._env(), ins) for a in argv] if argv is not None \
            else D.words(ins.args, self._env(), ins)
        vols = dict(self.config.get("Volumes") or {})
        for p in paths:
            if not p:
                raise ins.error("VOLUME specified can not be an empty string")
            vols[p] = {}
        return self._set("Volumes", vols, "VOLUME " + K.go_list(paths))

    def _stopsignal(self, ins):
        sig = D.expand(ins.args, self._env(), ins)
        return self._set("StopSignal", sig, "STOPSIGNAL " + sig)

    def _healthcheck(self, ins):
        hc = D.healthcheck(ins, self.config.get("Shell") or DEFAULT_SHELL)
        return self._set("Healthcheck", hc, K.healthcheck_text(hc))

    def _onbuild(self, ins):
        raise ins.error("ONBUILD is not supported by berth's builder")

    def _run(self, ins):
        argv = D.command(ins, self.config.get("Shell") or DEFAULT_SHELL)
        # dockerd's record of the build args in force: |2 A=1 B=2 <command>
        args = sorted(f"{k}={v}" for k, v in self.args.items() if v is not None)
        cmd = ([f"|{len(args)}"] + args if args else []) + argv
        return self._step(cmd, kind="run", argv=argv)

    def _copy(self, ins):
        digest = self._copy_digest(ins)
        _, dest = D.source_paths(ins, self._env())
        return self._step(["/bin/sh", "-c", f"#(nop) {ins.cmd} {digest} in {dest} "],
                          kind="copy", ins=ins)

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
                "HostConfig": {"NetworkMode": self.network, "ExtraHosts": self.extra_hosts}}
        c = self.e.containers.create(body)
        self.containers.append(c.id)
        return c, self.e.containers.rootfs(c)

    def _step(self, cmd, kind="config", argv=None, ins=None):
        """The image of one step: the cache's, or made now."""
        # a scratch base is made anew each build: the cache knows it by name
        k = K.key("scratch" if self.image_id == self.scratch_id else self.image_id, cmd,
                  self.config)
        hit = self._cached(k, cmd)
        if hit:
            yield _line(" ---> Using cache\n")
            self.image_id = hit
            yield _line(f" ---> {_short(hit)}\n")
            return
        if kind == "config":
            new_id = self._config_only(cmd)
        else:
            c, root = self._container(argv or DEFAULT_SHELL + [cmd[-1]])
            if kind != "copy":
                yield _line(f" ---> Running in {c.id[:12]}\n")
            if kind == "run":
                yield from self._start_and_wait(c, argv)
            elif kind == "workdir":
                os.close(_mkdirs(root, self.config["WorkingDir"]))
            else:
                self._copy_files(ins, root)
            new_id = self._commit(c, cmd)
            self._remove(c.id)
            self.containers.remove(c.id)
            if kind != "copy":
                yield _line(f"Removing intermediate container {c.id[:12]}\n")
        self.cache.put(k, new_id)
        self.image_id = new_id
        yield _line(f" ---> {_short(new_id)}\n")

    def _cached(self, k, cmd):
        if self.nocache:
            return None
        if not self.cache_from:
            return self.cache.get(k)
        got = K.from_images(self.store, self.cache_from, self.image_id, cmd)
        if got is None:
            return None
        return self._make_image(*got, cmd)

    def _commit(self, c, cmd):
        upper = c.data.get("GraphDriver", {}).get("Data", {}).get("UpperDir")
        if not upper:
            raise BuildError("build: only the overlay storage driver keeps a container's "
                             "changes apart, and the builder commits them")
        return C.commit(self.store, self.image_id, upper, {"Cmd": cmd}, container_id=c.id,
                        changes=dict(self.config), created_by=K.created_by(cmd),
                        intermediate=True)

    def _start_and_wait(self, c, argv):
        from berth.engine.containers import logs
        wait = self.e.containers.waiter(c.id, "next-exit")
        self.e.containers.start(c.id)
        for chunk in logs.read(c.data["LogPath"], follow=True, running=lambda: c.running):
            if not chunk:
                # an empty chunk, so the HTTP layer notices a client that left
                yield None
                continue
            text = chunk[8:].decode("utf-8", "replace")  # a stdout or stderr frame
            # dockerd marks RUN's stderr in red
            yield _line(f"\x1b[91m{text}\x1b[0m" if chunk[0] == 2 else text)
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
    def _config_only(self, cmd):
        """The current image with self.config, no new layer."""
        rec = self.store.record(self.image_id)
        hist = list(self.store.config(self.image_id).get("history") or [])
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return self._make_image(list(rec["layers"]), list(rec["diff_ids"]), hist + [
            {"created": created, "created_by": K.created_by(cmd), "empty_layer": True}],
            rec.get("diff_sizes"), list(rec["manifest"]["layers"]), cmd)

    def _make_image(self, layers, diff_ids, history, sizes, manifest_layers, cmd):
        """An intermediate image on the current one: these layers and
        history, self.config, the step's command as its container config."""
        store = self.store
        base = store.config(self.image_id)
        rec = store.record(self.image_id)
        doc = dict(base)
        doc.update({"created": history[-1].get("created") or base.get("created"),
                    "config": dict(self.config), "history": history,
                    "container_config": dict(self.config, Cmd=cmd, Image=self.image_id),
                    "rootfs": {"type": "layers", "diff_ids": diff_ids}})
        if self.author:
            doc["author"] = self.author
        with store:
            raw = jsonio.dumps(doc).encode()
            digest = store.put_bytes(raw)
            manifest = dict(rec["manifest"], layers=manifest_layers)
            manifest["config"] = dict(manifest["config"], size=len(raw), digest=digest)
            return store.add_image(digest, layers, manifest, diff_sizes=sizes,
                                   parent=self.image_id, intermediate=True)

    def _keep(self, image_id):
        """The build's result is an image of its own, not a cache entry."""
        rec = self.store.record(image_id)
        self.store.add_image(image_id, rec["layers"], rec["manifest"],
                             diff_sizes=rec.get("diff_sizes"), parent=rec.get("parent", ""))

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
