"""images/*.Dockerfile and the local image builder (tests/e2e/images.py) describe the same
images: base release, Python, packages, files, user and configuration. The builder runs in
tests/e2e; this checks the two descriptions without building anything."""

from __future__ import annotations

import re

import pytest

from tests.e2e import images

each_image = pytest.mark.parametrize("name", sorted(images.IMAGES))


def dockerfile(name: str) -> str:
    return images.IMAGES[name].dockerfile.read_text().replace("\\\n", " ")


def layers(name: str) -> list[images.Layer]:
    return images.IMAGES[name].top.chain()


@each_image
def test_same_debian_release_and_python_minor(name):
    base = re.findall(r"^FROM\s+(\S+)", dockerfile(name), re.MULTILINE)[-1]
    match = re.fullmatch(r"python:(\d+\.\d+)\.\d+-slim-(\w+)", base)
    assert match, base
    assert match.group(2) == images.SUITE
    assert images.PYTHON == f"/usr/bin/python{match.group(1)}"
    assert "python3" in images.BASE_PACKAGES


@each_image
def test_same_python_packages(name):
    """Each pip install in the Dockerfile has its uv install in the deps layer: the same torch
    pin and the same requirements file (the index differs: see the builder's docstring)."""
    text = dockerfile(name)
    runs = " ".join(line for layer in layers(name) for line in layer.run)
    torch = re.findall(r"pip install (?:--index-url \S+ )?(torch==\S+)", text)
    assert torch and all(t in runs for t in torch)
    # the Spark image's Dockerfile leaves pyspark out (Apache's image brings Spark); here Spark
    # is pyspark's, from the same requirements file (tests/e2e/images.py's docstring)
    spark_set = "grep -v '^pyspark' requirements.txt > /tmp/requirements-spark.txt"
    assert "pip install -r requirements.txt" in text or (
        name == "spark" and spark_set in text and "-r /tmp/requirements-spark.txt" in text
    )
    assert "-r /tmp/requirements.txt" in runs
    assert "requirements.txt" in images.DEPS.inputs
    assert "pip install --no-deps ." in text and "--no-deps /opt/avfleet" in runs


@each_image
def test_same_files_under_opt_avfleet(name):
    text = dockerfile(name)
    copied = set()
    for args in re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.MULTILINE):
        *sources, dest = args.split()
        entrypoint = (sources, dest) == (["images/spark-entrypoint.sh"], "/opt/entrypoint.sh")
        assert dest.startswith("./") or dest.startswith("/opt/avfleet") or entrypoint, dest
        copied |= set(sources)
    assert re.search(r"^WORKDIR /opt/avfleet$", text, re.MULTILINE)
    built = {p for layer in layers(name) for p in layer.copy} | {"requirements.txt"}
    assert copied == built


@each_image
def test_same_user(name):
    text = dockerfile(name)
    runs = " ".join(line for layer in layers(name) for line in layer.run)
    for useradd in re.findall(r"useradd [^&\n]+", text):
        assert useradd.strip() in runs


@each_image
def test_the_image_config_is_the_dockerfiles(name):
    config = images.dockerfile_config(images.IMAGES[name].dockerfile)
    assert config["User"] == "10001:10001"
    assert config["WorkingDir"] == "/opt/avfleet"
    assert config["Env"]["PYTHONUNBUFFERED"] == "1"
    expected = {
        "avfleet": ["avfleet"],
        "train": ["python3", "-m", "avfleet.train.launch"],
        "spark": ["/opt/entrypoint.sh"],
    }
    assert config["Entrypoint"] == expected[name]


def test_an_overlay_upper_folder_becomes_an_oci_layer(tmp_path):
    """Files, links and hard links go in as they are; overlayfs's whiteouts (0/0 character
    devices) and opaque folders become the `.wh.` entries OCI layers use for deletions."""
    import os
    import tarfile

    if os.geteuid() != 0:
        pytest.skip("whiteouts are character devices: making one needs root")
    upper = tmp_path / "upper"
    (upper / "etc" / "fresh").mkdir(parents=True)
    (upper / "etc" / "a.conf").write_text("a\n")
    os.link(upper / "etc" / "a.conf", upper / "etc" / "b.conf")
    (upper / "etc" / "link").symlink_to("a.conf")
    os.mknod(upper / "etc" / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    os.setxattr(upper / "etc" / "fresh", "trusted.overlay.opaque", b"y")
    images._layer_tar(upper, tmp_path / "layer.tar")
    with tarfile.open(tmp_path / "layer.tar") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["etc/a.conf"].isreg() and members["etc/a.conf"].size == 2
    assert members["etc/b.conf"].islnk() and members["etc/b.conf"].linkname == "etc/a.conf"
    assert members["etc/link"].issym() and members["etc/link"].linkname == "a.conf"
    assert "etc/.wh.gone" in members and "etc/gone" not in members
    assert "etc/fresh/.wh..wh..opq" in members
    assert members["etc/a.conf"].uname == ""  # numeric owners only


def test_the_local_overlay_names_the_images_built_here():
    """`kubectl apply -k manifests/overlays/local` runs what tests/e2e/images.py builds."""
    import yaml

    from avfleet.workflows.render import manifests_root

    overlay = yaml.safe_load((manifests_root() / "overlays/local/kustomization.yaml").read_text())
    (site,) = [g for g in overlay["configMapGenerator"] if g["name"] == "avfleet-site"]
    literals = dict(item.split("=", 1) for item in site["literals"])
    assert literals["image"] == images.IMAGES["avfleet"].ref
    assert literals["train-image"] == images.IMAGES["train"].ref
