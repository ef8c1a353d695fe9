"""The kubelet's side of CRI, as much as the tests need: gRPC calls to
containerd with the messages of runtime_v1.proto (compiled into build/cri
by `make build`), a pod helper, and exec with a terminal over the stream
server's websocket protocol (wsexec.py)."""
import time

import grpc

import runtime_v1_pb2 as pb
import runtime_v1_pb2_grpc as pb_grpc

DEADLINE_S = 120


class Cri:
    def __init__(self, sock):
        self.channel = grpc.insecure_channel(f"unix://{sock}")
        self.rt = pb_grpc.RuntimeServiceStub(self.channel)

    def close(self):
        self.channel.close()

    def call(self, method, **fields):
        """One RPC; fields make its request (a `timeout` field is the
        request's own, as in StopContainer, not the call's deadline)."""
        return getattr(self.rt, method)(_REQUESTS[method](**fields), timeout=DEADLINE_S)

    def version(self):
        return self.call("Version", version="v1")

    def remove_all_pods(self):
        for pod in self.call("ListPodSandbox").items:
            self.call("StopPodSandbox", pod_sandbox_id=pod.id)
            self.call("RemovePodSandbox", pod_sandbox_id=pod.id)

    def pod(self, handler, name, log_dir, cgroup_parent, security=None, sysctls=None):
        return Pod(self, handler, name, log_dir, cgroup_parent, security, sysctls)


_REQUESTS = {
    "Version": pb.VersionRequest,
    "RunPodSandbox": pb.RunPodSandboxRequest,
    "StopPodSandbox": pb.StopPodSandboxRequest,
    "RemovePodSandbox": pb.RemovePodSandboxRequest,
    "PodSandboxStatus": pb.PodSandboxStatusRequest,
    "ListPodSandbox": pb.ListPodSandboxRequest,
    "CreateContainer": pb.CreateContainerRequest,
    "StartContainer": pb.ContainerIdRequest,
    "StopContainer": pb.StopContainerRequest,
    "RemoveContainer": pb.ContainerIdRequest,
    "ContainerStatus": pb.ContainerStatusRequest,
    "ExecSync": pb.ExecSyncRequest,
    "Exec": pb.ExecRequest,
}


class Pod:
    """A pod sandbox run with one runtime handler, and its containers."""

    def __init__(self, cri, handler, name, log_dir, cgroup_parent, security, sysctls):
        self.cri = cri
        self.handler = handler
        self.log_dir = log_dir
        self.config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="berth-test"),
            hostname=name, log_directory=str(log_dir),
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=cgroup_parent, sysctls=sysctls or {},
                security_context=security or pb.LinuxSandboxSecurityContext()))
        self.id = cri.call("RunPodSandbox", config=self.config,
                           runtime_handler=handler).pod_sandbox_id

    def status(self):
        return self.cri.call("PodSandboxStatus", pod_sandbox_id=self.id).status

    def create(self, name, command, image, mounts=(), resources=None, security=None,
               tty=False):
        sc = pb.LinuxContainerSecurityContext()
        if security is not None:
            sc.CopyFrom(security)
        if not sc.HasField("namespace_options"):
            # the kubelet gives each container the pod's namespace modes
            sc.namespace_options.CopyFrom(self.config.linux.security_context.namespace_options)
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=image),
            command=list(command), mounts=list(mounts), log_path=f"{name}.log", tty=tty,
            linux=pb.LinuxContainerConfig(
                resources=resources or pb.LinuxContainerResources(),
                security_context=sc))
        return self.cri.call("CreateContainer", pod_sandbox_id=self.id, config=cfg,
                             sandbox_config=self.config).container_id

    def run(self, name, command, image, **kw):
        cid = self.create(name, command, image, **kw)
        self.cri.call("StartContainer", container_id=cid)
        return cid

    def container(self, cid):
        return self.cri.call("ContainerStatus", container_id=cid).status

    def wait_state(self, cid, state, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            st = self.container(cid)
            if st.state == state:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"container {st.metadata.name} ({self.handler}) is "
                                     f"{pb.ContainerState.Name(st.state)}, not "
                                     f"{pb.ContainerState.Name(state)}, after {timeout}s")
            time.sleep(0.1)

    def exec_sync(self, cid, *cmd, timeout=30):
        r = self.cri.call("ExecSync", container_id=cid, cmd=list(cmd), timeout=timeout)
        return r.exit_code, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    def sh(self, cid, script):
        """stdout of `sh -c script`, which must succeed."""
        code, out, err = self.exec_sync(cid, "sh", "-c", script)
        assert code == 0, f"{script!r} in {self.handler}: exit {code}: {err}"
        return out

    def exec_url(self, cid, *cmd, tty=False):
        # with a terminal, containerd 1.6 copies the output only if stdin is
        # attached too (runc or berth alike), as `kubectl exec -it` has it
        return self.cri.call("Exec", container_id=cid, cmd=list(cmd), tty=tty, stdin=tty,
                             stdout=True, stderr=not tty).url

    def logs(self, cid):
        """The container's log lines, "stream text" each, from the CRI log
        file containerd writes ("<time> <stream> <F|P> <text>")."""
        out = []
        with open(self.container(cid).log_path) as f:
            for line in f:
                _, stream, _, text = line.rstrip("\n").split(" ", 3)
                out.append(f"{stream} {text}")
        return out

    def stop_container(self, cid, timeout=0):
        self.cri.call("StopContainer", container_id=cid, timeout=timeout)

    def remove_container(self, cid):
        self.cri.call("RemoveContainer", container_id=cid)

    def stop(self):
        self.cri.call("StopPodSandbox", pod_sandbox_id=self.id)

    def remove(self):
        self.cri.call("RemovePodSandbox", pod_sandbox_id=self.id)
