"""The engine as one object the API layer is handed (no global state)."""
import os
import shutil
import sys

from berth.engine.events import Events
from berth.engine.images.store import Store
from berth.engine.storage.snapshots import pick_driver

REPO_BIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "bin")


def _binary(name):
    local = os.path.join(REPO_BIN, name)
    return local if os.access(local, os.X_OK) else (shutil.which(name) or name)


def _own_launchers(run_root):
    """Rootless: launchers for the runtime and the shim that use this
    daemon's interpreter and package (the repo's bin/ may point at a
    python the user cannot run). -> {tool: path}"""
    d = os.path.join(run_root, "bin")
    os.makedirs(d, mode=0o700, exist_ok=True)
    pkg = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = {}
    for tool, mod in (("berth-runtime", "runtime"), ("berth-shim", "shim")):
        path = os.path.join(d, tool)
        text = (f"#!{sys.executable} -IS\nimport sys\nsys.path.insert(0, {pkg!r})\n"
                f"from berth.cli.{mod} import main\nsys.exit(main())\n")
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.chmod(path + ".tmp", 0o700)
        os.rename(path + ".tmp", path)
        out[tool] = path
    return out


class Config:
    """Daemon options that reach the engine."""

    def __init__(self, runtimes=None, default_runtime="berth", storage_driver=None,
                 log_max_size=0, log_max_files=1, trust_policy=None, shim=None,
                 init_path=None, cgroup_parent="/berth", userns_remap=None,
                 rootless=False, run_root=None, monitor=""):
        self.rootless = rootless
        own = _own_launchers(run_root) if rootless and run_root else {}
        # berth's own runtime: the shim may run it in its own forked
        # interpreter instead of exec'ing a new one per verb
        self.builtin_runtime = own.get("berth-runtime") or _binary("berth-runtime")
        self.runtimes = {"berth": self.builtin_runtime, "runc": "runc", "crun": "crun"}
        self.runtimes.update(runtimes or {})
        self.default_runtime = default_runtime
        self.storage_driver = storage_driver
        self.log_max_size = log_max_size
        self.log_max_files = log_max_files
        self.trust_policy = trust_policy
        self.shim = shim or own.get("berth-shim") or _binary("berth-shim")
        # each container's monitor after its create: berth-monitor (C), or
        # the Python shim itself where that is not built or monitor="none"
        from berth.engine.containers.shimctl import probe_monitor
        self.monitor = None if monitor == "none" else probe_monitor(
            monitor or _binary("berth-monitor"))
        self.init_path = init_path
        # rootless: no cgroup is delegated to the user, none is written
        self.cgroup_parent = None if rootless else cgroup_parent
        # None | "auto" (a range per container) | (uid, gid, size) for all
        self.userns_remap = userns_remap


class NoNetwork:
    """Before the network driver: a private namespace with loopback only."""

    def setup(self, container, pid):
        pass

    def teardown(self, container):
        pass

    def restore(self, running):
        pass

    def connect(self, container, network):
        pass

    def disconnect(self, container, network_id):
        pass

    def close(self):
        pass


def _network_driver(engine):
    if engine.config.rootless:
        from berth.engine.network.slirp import SlirpDriver
        return SlirpDriver(engine)
    try:
        from berth.engine.network.driver import Driver
    except ImportError:
        return NoNetwork()
    return Driver(engine)


class Engine:
    def __init__(self, paths, config=None):
        self.paths = paths
        self.config = config or Config()
        paths.make()
        self.store = Store(paths.images)
        self.driver = pick_driver(paths.storage, self.config.storage_driver)
        self.events = Events()
        from berth.engine.containers.shimctl import Zygote
        self.zygote = Zygote(self.config.shim, os.path.join(paths.run, "shim-zygote.sock"))
        from berth.engine.volumes import Volumes
        from berth.engine.networks import Networks
        from berth.engine.containers.manager import Containers
        from berth.engine.containers import netattach
        self.volumes = Volumes(paths.volumes, self.events)
        self.networks = Networks(os.path.join(paths.root, "networks"), self.events)
        self.containers = Containers(self)
        self.volumes.in_use = self.containers.volume_users
        netattach.wire(self.containers, self.networks)
        self.network = _network_driver(self)
        self.networks.driver = self.network

    def restore(self):
        """After a (crash-)restart: find containers, reattach their shims,
        repair what a crash left half-done."""
        self.containers.restore()
        # build contexts of builds a crash cut short (api/routes/build.py)
        import glob
        for d in glob.glob(os.path.join(self.paths.root, "build-*")):
            shutil.rmtree(d, ignore_errors=True)

    def close(self):
        self.containers.close()
        self.network.close()
        self.zygote.close()
