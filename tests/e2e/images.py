"""avfleet's images, built on this machine without a Docker engine or a registry:
`python -m tests.e2e.images` (or `make images`) builds them into a cache; the e2e tests import
them into the cluster's containerd.

images/*.Dockerfile stay the source of truth for registries that can build them. Here each
layer is a command run in a chroot over an overlay mount of the layers below it (the way
buildah builds without a daemon), its upper folder tarred and appended with umoci:

    base    debootstrap --variant=minbase bookworm, python3 (3.11), libpython3.11 (the shared
            library Triton's Python backend stub embeds; python:3.11 images carry it),
            ca-certificates, passwd
    deps    torch==2.13.0, then requirements.txt                      (uv, in the chroot)
    app     /opt/avfleet (pyproject.toml, README.md, src, jobs, manifests, infra), installed
            with --no-deps as the Dockerfiles' `pip install --no-deps .`; user avfleet (10001)
    ├── avfleet   + operators/                 ENTRYPOINT ["avfleet"]
    └── train     (no layer of its own)        ENTRYPOINT ["python3", "-m", "avfleet.train.launch"]
    jdk     over deps: Debian's openjdk-17-jre-headless and procps; user spark (185)
    └── spark the app layer again + images/spark-entrypoint.sh as /opt/entrypoint.sh, with
              /opt/spark and /opt/java/openjdk linked to pip's pyspark and Debian's JDK
                                               ENTRYPOINT ["/opt/entrypoint.sh"]

Each image's Env, User, WorkingDir and Entrypoint are read from its Dockerfile, and
tests/unit/test_image_specs.py checks that the two describe the same contents. What differs,
because this machine reaches Debian and PyPI but not Docker Hub or download.pytorch.org:

- Python is Debian bookworm's python3.11 (3.11.2, /usr/bin) where python:3.11.7-slim-bookworm
  builds 3.11.7 into /usr/local; the same minor version on the same Debian release.
- torch 2.13.0 is PyPI's standard (CUDA) build where avfleet.Dockerfile asks for the CPU wheel;
  both run on a CPU, the CUDA one is ~3 GB larger.
- The Spark image's Spark is pip's pyspark (requirements.txt's 3.5.9) and its Java Debian's
  OpenJDK 17, where spark.Dockerfile copies Spark 3.5.3 and Eclipse Temurin 17 from Apache's
  image (Docker Hub) and adds the hadoop-aws jars (Maven Central; avfleet's own S3 reads and
  writes go through fsspec, not s3a).

Caching: a layer's key hashes its inputs and its parent's key; a built layer keeps its tar (for
umoci) and its upper folder (the lower folder of the layers above it). Changing avfleet's source
rebuilds the app layer only (seconds); the deps layer takes minutes once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import io
import json
import os
import pathlib
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator

REPO = pathlib.Path(__file__).resolve().parents[2]
CACHE = (
    pathlib.Path(os.environ.get("AVFLEET_TOOLS", pathlib.Path.home() / ".cache" / "avfleet-tools"))
    / "images"
)
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "libpython3.11", "ca-certificates", "passwd")
PYTHON = "/usr/bin/python3.11"
APP_FILES = ("pyproject.toml", "README.md", "src", "jobs", "manifests", "infra")
TAG = "dev"
REGISTRY = "avfleet.local"


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer: what it runs (shell lines in the chroot) and copies in, over `parent`."""

    name: str
    parent: Layer | None
    run: tuple[str, ...] = ()
    copy: tuple[str, ...] = ()  # repository paths copied to /opt/avfleet/<path> first
    inputs: tuple[str, ...] = ()  # repository files whose contents key the layer

    @functools.cache  # noqa: B019 - a handful of module-level layers, each keyed once
    def key(self) -> str:
        """Its inputs' hash (the sources it copies, re-read only once per process)."""
        h = hashlib.sha256()
        root = f"{SUITE} {MIRROR} {','.join(BASE_PACKAGES)}"  # what debootstrap is given
        h.update((self.parent.key() if self.parent else root).encode())
        h.update(json.dumps([self.name, self.run, self.copy]).encode())
        for rel in source_files(self.copy + self.inputs):
            path = REPO / rel
            h.update(rel.encode())
            h.update(os.readlink(path).encode() if path.is_symlink() else path.read_bytes())
        return h.hexdigest()[:16]

    def chain(self) -> list[Layer]:
        return ([*self.parent.chain()] if self.parent else []) + [self]


_UV = "/tmp/uv pip install --system --break-system-packages --compile-bytecode --python " + PYTHON
BASE = Layer("base", None)
DEPS = Layer(
    "deps",
    BASE,
    run=(f"{_UV} torch==2.13.0", f"{_UV} -r /tmp/requirements.txt"),
    inputs=("requirements.txt",),
)
APP = Layer(
    "app",
    DEPS,
    copy=APP_FILES,
    run=(
        f"{_UV} --no-deps /opt/avfleet",
        "useradd --uid 10001 --create-home --shell /usr/sbin/nologin avfleet",
    ),
)
OPERATORS = Layer("operators", APP, copy=("operators",))
JDK = Layer(
    "jdk",
    DEPS,
    run=(
        "apt-get update",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends"
        " openjdk-17-jre-headless procps",
        "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin",
        "useradd --uid 185 --no-create-home --shell /usr/sbin/nologin spark",
    ),
)
SPARK = Layer(
    "spark",
    JDK,
    copy=(*APP_FILES, "images/spark-entrypoint.sh"),
    run=(
        *APP.run,
        "install -m 0755 /opt/avfleet/images/spark-entrypoint.sh /opt/entrypoint.sh",
        # where spark.Dockerfile's ENV looks: Spark is pip's pyspark (the same 3.5 line as
        # Apache's image), Java is Debian's 17
        "mkdir -p /opt/java && ln -s /usr/lib/jvm/java-17-openjdk-amd64 /opt/java/openjdk",
        f"ln -s \"$({PYTHON} -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')\""
        " /opt/spark",
    ),
)


@dataclasses.dataclass(frozen=True)
class Image:
    name: str  # images/<name>.Dockerfile
    top: Layer

    @property
    def ref(self) -> str:
        """The name manifests/overlays/local gives it (its avfleet-site ConfigMap)."""
        repository = "avfleet" if self.name == "avfleet" else f"avfleet-{self.name}"
        return f"{REGISTRY}/{repository}:{TAG}"

    @property
    def dockerfile(self) -> pathlib.Path:
        return REPO / "images" / f"{self.name}.Dockerfile"


IMAGES = {
    "avfleet": Image("avfleet", OPERATORS),
    "train": Image("train", APP),
    "spark": Image("spark", SPARK),
}


def dockerfile_config(path: pathlib.Path) -> dict:
    """The final stage's ENV, USER, WORKDIR, ENTRYPOINT and CMD, as an OCI image config holds them."""
    text = path.read_text().replace("\\\n", " ")
    stages = text.split("\nFROM ")
    last = stages[-1]
    env: dict[str, str] = {}
    config: dict = {}
    for line in last.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            for item in shlex.split(rest):
                k, _, v = item.partition("=")
                env[k] = v.replace("$PATH", env.get("PATH", DEFAULT_PATH))
        elif word == "USER":
            config["User"] = rest.strip()
        elif word == "WORKDIR":
            config["WorkingDir"] = rest.strip()
        elif word in ("ENTRYPOINT", "CMD"):
            config[word.title() if word == "ENTRYPOINT" else "Cmd"] = json.loads(rest)
    config["Env"] = env
    return config


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sh(*argv: str, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
    return subprocess.run(argv, check=True, **kw)


@contextlib.contextmanager
def _overlay(lowers: list[pathlib.Path], upper: pathlib.Path) -> Iterator[pathlib.Path]:
    """`upper` over `lowers` (top first), mounted with what a chroot needs: /proc, /dev, the host's
    resolv.conf (name lookups for uv and apt) and uv's download cache."""
    work, merged = upper.parent / "work", upper.parent / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    _sh("mount", "-t", "overlay", "overlay", "-o", opts, str(merged))
    mounts = [merged]
    try:
        for kind, src, dest in (
            ("proc", "proc", "proc"),
            ("bind", "/dev", "dev"),
            ("bind", "/etc/resolv.conf", "etc/resolv.conf"),
        ):
            target = merged / dest
            args = ["-t", "proc"] if kind == "proc" else ["--bind"]
            _sh("mount", *args, src, str(target))
            mounts.append(target)
        yield merged
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], check=False)
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            merged.rmdir()


def _layer_tar(upper: pathlib.Path, tar_path: pathlib.Path) -> None:
    """The upper folder as an OCI layer: overlayfs's whiteouts (0/0 character devices) and
    opaque folders become `.wh.` entries; owners stay numeric."""
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(upper):
            rel = pathlib.Path(root).relative_to(upper)
            if rel != pathlib.Path(".") and _opaque(root):
                tar.addfile(tarfile.TarInfo(str(rel / ".wh..wh..opq")))
            for name in sorted(dirs) + sorted(files):
                path = pathlib.Path(root, name)
                st = path.lstat()
                arc = str(rel / name) if rel != pathlib.Path(".") else name
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    info = tarfile.TarInfo(str(pathlib.Path(arc).parent / f".wh.{name}"))
                    tar.addfile(info)
                    continue
                info = tar.gettarinfo(str(path), arcname=arc)
                info.uname = info.gname = ""
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
            dirs.sort()


def _opaque(path: str) -> bool:
    """Whether overlayfs marked this folder opaque (deleted and made again in this layer)."""
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def source_files(paths: tuple[str, ...]) -> list[str]:
    """The repository files under `paths` that git tracks or would (not ignored), sorted."""
    if not paths:
        return []
    done = _sh(
        "git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "-z",
        "--", *paths, capture_output=True,
    )  # fmt: skip
    return sorted({f for f in done.stdout.decode().split("\0") if f and (REPO / f).exists()})


def layer_dir(layer: Layer) -> pathlib.Path:
    """The layer's cache folder: its overlay `upper/` (the lower folder of the layers above it),
    built first if missing."""
    out = CACHE / "layers" / f"{layer.name}-{layer.key()}"
    if (out / ".done").exists():
        return out
    parents = [layer_dir(p) for p in layer.chain()[:-1]]
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        _umount_below(tmp)
        shutil.rmtree(tmp)
    upper = tmp / "upper"
    started = time.monotonic()
    print(f"image layer {layer.name}: building...", file=sys.stderr, flush=True)
    if layer.parent is None:
        _debootstrap(upper)
    else:
        with _overlay([p / "upper" for p in reversed(parents)], upper) as root:
            _run_in(root, layer)
    (tmp / ".done").write_text(f"{time.monotonic() - started:.0f} s\n")
    tmp.rename(out)
    print(f"image layer {layer.name}: built in {time.monotonic() - started:.0f} s",
          file=sys.stderr, flush=True)  # fmt: skip
    return out


def _debootstrap(rootfs: pathlib.Path) -> None:
    _sh(
        "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE,
        str(rootfs), MIRROR, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
    for f in (rootfs / "var/lib/apt/lists").glob("*_Packages"):
        f.unlink()  # as the python:*-slim images leave them: apt-get update fetches them again
    # The runtime mounts its own resolv.conf here; the layers above bind the host's over it.
    (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
    (rootfs / "etc/resolv.conf").write_text("")
    (rootfs / "usr/local/bin/python3").symlink_to(PYTHON)  # where python:3.11 images keep it


def _run_in(root: pathlib.Path, layer: Layer) -> None:
    """Copy `layer.copy` to /opt/avfleet and run `layer.run` in a chroot at `root`, with uv and
    its download cache (the host's) at hand under /tmp, removed again before the layer is taken."""
    for rel in source_files(layer.copy):
        dest = root / "opt/avfleet" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest, follow_symlinks=False)
    if not layer.run:
        return
    helpers = [root / "tmp/uv", root / "tmp/requirements.txt", root / "tmp/build-ca.crt"]
    shutil.copy2(shutil.which("uv") or REPO / ".venv/bin/uv", helpers[0])
    shutil.copy2(REPO / "requirements.txt", helpers[1])
    # The host's CA bundle, for the build only (like a build secret, not in the layer): where
    # egress goes through a TLS-inspecting proxy, its CA is in the host's bundle, not Debian's.
    shutil.copy2(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"), helpers[2])
    cache = root / "tmp/uv-cache"
    cache.mkdir()
    host_cache = pathlib.Path(os.environ.get("UV_CACHE_DIR", pathlib.Path.home() / ".cache/uv"))
    host_cache.mkdir(parents=True, exist_ok=True)
    _sh("mount", "--bind", str(host_cache), str(cache))
    try:
        env = {"PATH": DEFAULT_PATH, "HOME": "/root", "UV_CACHE_DIR": "/tmp/uv-cache",
               "UV_LINK_MODE": "copy", "LANG": "C.UTF-8", "SSL_CERT_FILE": "/tmp/build-ca.crt"}  # fmt: skip
        for line in layer.run:
            print(f"  {layer.name}: {line}", file=sys.stderr, flush=True)
            _sh("chroot", str(root), "/bin/sh", "-c", line, env=env)
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)
        cache.rmdir()
        for h in helpers:
            h.unlink()


def _umount_below(path: pathlib.Path) -> None:
    """Unmount whatever an interrupted build left mounted under `path` (deepest first)."""
    prefix = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in pathlib.Path("/proc/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)


LAYOUT = CACHE / "oci"
"""One OCI layout holding every layer as a tag (`<layer>-<key>`) and every image
(`<image>-<key>`): images share their lower layers' blobs."""


def _umoci(*args: str) -> None:
    _sh("umoci", *args, stdout=subprocess.DEVNULL)


def _tags() -> set[str]:
    index = json.loads((LAYOUT / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}


def layer_tag(layer: Layer) -> str:
    """The layout's tag for `layer` and the layers under it, appended (and tarred) if missing."""
    tag = f"{layer.name}-{layer.key()}"
    if not (LAYOUT / "index.json").exists():
        _umoci("init", "--layout", str(LAYOUT))
        _umoci("new", "--image", f"{LAYOUT}:scratch")
    if tag in _tags():
        return tag
    parent = layer_tag(layer.parent) if layer.parent else "scratch"
    upper = layer_dir(layer) / "upper"
    started = time.monotonic()
    tar = LAYOUT.parent / f"{tag}.tar"
    try:
        _layer_tar(upper, tar)
        _umoci("raw", "add-layer", "--image", f"{LAYOUT}:{parent}", "--tag", tag,
               "--history.created_by", f"tests/e2e/images.py: {layer.name}", str(tar))  # fmt: skip
    finally:
        tar.unlink(missing_ok=True)
    print(f"image layer {layer.name}: packed in {time.monotonic() - started:.0f} s",
          file=sys.stderr, flush=True)  # fmt: skip
    return tag


def image_tag(image: Image) -> str:
    """The layout's tag for `image`: its layers with its Dockerfile's config."""
    config = dockerfile_config(image.dockerfile)
    top = layer_tag(image.top)
    tag = f"{image.name}-{hashlib.sha256(json.dumps([top, config]).encode()).hexdigest()[:16]}"
    if tag in _tags():
        return tag
    argv = ["config", "--image", f"{LAYOUT}:{top}", "--tag", tag, "--os", "linux",
            "--architecture", "amd64", "--config.user", config.get("User", "0"),
            "--config.workingdir", config.get("WorkingDir", "/")]  # fmt: skip
    env = {"PATH": DEFAULT_PATH, **config["Env"]}
    argv += [a for k, v in env.items() for a in ("--config.env", f"{k}={v}")]
    argv += [a for arg in config.get("Entrypoint", []) for a in ("--config.entrypoint", arg)]
    argv += [a for arg in config.get("Cmd", []) for a in ("--config.cmd", arg)]
    _umoci(*argv)
    return tag


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """One build at a time in the cache: a second `make images` (or an e2e run's export) waits.
    Two at once corrupt the layout (one's `umoci gc` drops the blobs the other just added)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def export(images: list[Image], out: pathlib.Path) -> pathlib.Path:
    """One OCI archive of `images` (what `ctr images import` loads), each named by its `ref`
    (containerd's image-name annotation), every shared layer in it once."""
    with cache_lock():
        return _export(images, out)


def _export(images: list[Image], out: pathlib.Path) -> pathlib.Path:
    tags = [image_tag(image) for image in images]  # built first: they add to the index
    index = json.loads((LAYOUT / "index.json").read_text())
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    blob = lambda d: LAYOUT / "blobs" / d["digest"].replace(":", "/")  # noqa: E731
    descs, blobs = [], {}
    for image, tag in zip(images, tags, strict=True):
        desc = by_tag[tag]
        manifest = json.loads(blob(desc).read_text())
        names = {"io.containerd.image.name": image.ref, "org.opencontainers.image.ref.name": TAG}
        descs.append({**desc, "annotations": names})
        for d in (desc, manifest["config"], *manifest["layers"]):
            blobs[d["digest"]] = d
    with tarfile.open(out, "w") as tar:
        for name, data in (
            ("oci-layout", (LAYOUT / "oci-layout").read_bytes()),
            ("index.json", json.dumps({"schemaVersion": 2, "manifests": descs}).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for d in blobs.values():
            tar.add(blob(d), arcname=str(blob(d).relative_to(LAYOUT)))
    return out


def prune() -> None:
    """Forget layers and images the current sources no longer build (tags, blobs, folders)."""
    keep = {layer_tag(layer) for image in IMAGES.values() for layer in image.top.chain()}
    keep |= {image_tag(image) for image in IMAGES.values()} | {"scratch"}
    for tag in _tags() - keep:
        _umoci("rm", "--image", f"{LAYOUT}:{tag}")
    _umoci("gc", "--layout", str(LAYOUT))
    for d in (CACHE / "layers").iterdir():
        if d.name not in {t for t in keep}:
            _umount_below(d)
            shutil.rmtree(d)


def main(argv: list[str]) -> None:
    with cache_lock():
        for name in argv or list(IMAGES):
            started = time.monotonic()
            tag = image_tag(IMAGES[name])
            print(f"{IMAGES[name].ref}: {LAYOUT}:{tag} ({time.monotonic() - started:.0f} s)")
        prune()


if __name__ == "__main__":
    main(sys.argv[1:])
