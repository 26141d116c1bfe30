"""The one-node cluster the e2e tests share (tests/e2e/cluster.py), started once for this
package and stopped after its last test (not at the end of the whole run: it holds ~11 GB of
images and a dozen processes); when it stops, nothing of it may be left."""

from __future__ import annotations

import pathlib
import subprocess
import time

import pytest

from avfleet.workflows.render import manifests_root
from tests.conftest import TESTDATA
from tests.e2e import images
from tests.e2e.argo import crds_dir
from tests.e2e.cluster import BRIDGE, missing, one_node_cluster
from tests.integration.test_install_cluster import CRD_FILES

NS = "avfleet"
"""avfleet's namespace (manifests/base/namespace.yaml)."""


@pytest.fixture(scope="package")
def cluster(tmp_path_factory):
    lacking = missing()
    if lacking:
        pytest.skip("a one-node cluster needs " + ", ".join(lacking) + " (`make e2e` builds them)")
    workdir = tmp_path_factory.mktemp("e2e") / "cluster"
    started = time.monotonic()
    with one_node_cluster(workdir) as c:
        print(f"e2e: the one-node cluster is up in {time.monotonic() - started:.0f} s")
        yield c
    # nothing of the cluster is left: processes, mounts, the bridge, kube-proxy's chains
    assert not subprocess.run(["pgrep", "-f", c.containerd_socket], capture_output=True).stdout
    assert str(workdir.resolve()) not in pathlib.Path("/proc/mounts").read_text()
    assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0
    nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    assert "KUBE-SERVICES" not in nat


@pytest.fixture(scope="package")
def images_loaded(cluster, tmp_path_factory):
    """avfleet's images (tests/e2e/images.py; built once, then cached) in the cluster's
    containerd, under the names manifests/overlays/local gives them."""
    archive = tmp_path_factory.mktemp("images") / "avfleet.tar"
    started = time.monotonic()
    images.export(list(images.IMAGES.values()), archive)  # shared layers once
    cluster.ctr("images", "import", str(archive))
    archive.unlink()
    print(f"e2e: avfleet's images imported in {time.monotonic() - started:.0f} s")
    return cluster


@pytest.fixture(scope="package")
def installed(images_loaded):
    """avfleet installed as a user installs it (test_install.py says how)."""
    cluster = images_loaded
    cluster.kubectl("apply", "--server-side", "-k", str(crds_dir()))
    for rel in CRD_FILES:
        if not rel.startswith("argo/"):  # Argo's come from the controller's own module
            cluster.kubectl("apply", "--server-side", "-f", str(TESTDATA / rel))
    cluster.wait_established()
    local = manifests_root() / "overlays" / "local"
    cluster.kubectl("apply", "--server-side", "-k", str(local))
    cluster.kubectl("apply", "--server-side", "-k", str(local / "benches"))
    # Triton runs only for the test that mines through it (test_workflows.triton): its pod
    # would hold the CPU it requests, which the PyTorchJobs need on this 2-core node.
    cluster.kubectl("-n", NS, "scale", "deployment/triton", "--replicas=0")
    yield cluster
    # The benches first, while the operator still runs to take its finalizers off them; a
    # namespace deleted with them in it would wait for it forever.
    cluster.kubectl("delete", "-k", str(local / "benches"), "--wait=true", timeout=180)
    cluster.kubectl("delete", "namespace", NS, "--wait=true", timeout=300)
