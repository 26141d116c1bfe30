"""The one-node cluster the e2e tests share (tests/e2e/cluster.py), started once for this
package and stopped after its last test (not at the end of the whole run: it holds ~11 GB of
images and a dozen processes); when it stops, nothing of it may be left."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from tests.e2e import images
from tests.e2e.cluster import BRIDGE, missing, one_node_cluster


@pytest.fixture(scope="package")
def cluster(tmp_path_factory):
    lacking = missing()
    if lacking:
        pytest.skip("a one-node cluster needs " + ", ".join(lacking) + " (`make e2e` builds them)")
    workdir = tmp_path_factory.mktemp("e2e") / "cluster"
    with one_node_cluster(workdir) as c:
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
    for image in images.IMAGES.values():
        archive = images.export(image, tmp_path_factory.mktemp("images") / f"{image.name}.tar")
        cluster.import_image(archive, image.ref)
        archive.unlink()
    return cluster
