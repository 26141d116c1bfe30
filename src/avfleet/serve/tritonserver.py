"""`avfleet tritonserver`: Triton's own server binary (PyTriton's build) serving a model repository.

Where NVIDIA's image cannot run (no registry access, no GPU: the one-node cluster of
`make e2e`, a laptop), the local overlay's Triton Deployment runs this in avfleet's image with
the base Deployment's arguments unchanged: `--model-repository=s3://...`,
`--model-control-mode=explicit`, `--load-model=*`. It assembles a backend directory from
PyTriton's distribution (its Python backend and the stub for this interpreter) plus
serve/onnx_backend.py as the `onnxruntime` backend, and then replaces itself with tritonserver.

PyTriton's own Python API (serve/local.py, `avfleet serve`) binds Python callables and owns
the repository; this path keeps Triton's repository, so publish-model, pin-model and promote
drive it with the load API exactly as they drive NVIDIA's server.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Mapping

from avfleet.core.errors import ConfigError

BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
STUB = "triton_python_backend_stub"


def distribution() -> tuple[pathlib.Path, pathlib.Path]:
    """PyTriton's tritonserver folder and its bundled libraries."""
    try:
        import pytriton
    except ImportError as e:
        raise ConfigError("tritonserver", "PyTriton (nvidia-pytriton) is not installed") from e
    root = pathlib.Path(pytriton.__file__).parent
    return root / "tritonserver", root.parent / "nvidia_pytriton.libs"


def prepare_backends(folder: pathlib.Path) -> pathlib.Path:
    """`folder`/python (Triton's Python backend with the stub built for this interpreter's
    Python) and `folder`/onnxruntime/model.py; returns `folder`."""
    dist, _ = distribution()
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / STUB
    if not stub.exists():
        raise ConfigError(
            "tritonserver", f"PyTriton has no Python backend stub for Python {version}"
        )
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    for name in BACKEND_FILES:
        shutil.copy2(dist / "backends" / "python" / name, python / name)
    shutil.copy2(stub, python / STUB)
    onnx = folder / "onnxruntime"
    onnx.mkdir(exist_ok=True)
    shutil.copy2(pathlib.Path(__file__).with_name("onnx_backend.py"), onnx / "model.py")
    return folder


def prepend(current: str, *paths: str) -> str:
    """A ':'-separated search path with `paths` first, each entry once."""
    return ":".join(dict.fromkeys(p for p in [*paths, *current.split(":")] if p))


def stub_libdir() -> str:
    """Where this interpreter's libpython is: Triton's Python stub embeds it, and must load it
    rather than another one on the system."""
    return sysconfig.get_config_var("LIBDIR") or ""


def server_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment tritonserver and its Python stubs need: this interpreter's libpython,
    PyTriton's bundled libraries, and this interpreter first on PATH (the embedded Python finds
    its prefix, a virtual environment's included, from the `python3` on PATH, as PyTriton
    does)."""
    _, libs = distribution()
    return {
        **environ,
        "LD_LIBRARY_PATH": prepend(environ.get("LD_LIBRARY_PATH", ""), stub_libdir(), str(libs)),
        "PATH": prepend(
            environ.get("PATH", "/usr/bin:/bin"), str(pathlib.Path(sys.executable).parent)
        ),
    }


def command(args: list[str], backends: pathlib.Path) -> list[str]:
    """tritonserver's command line: `args` as given, with the assembled backend directory."""
    if any(a.startswith("--backend-directory") for a in args):
        raise ConfigError(
            "tritonserver", "--backend-directory is avfleet's to set (its onnxruntime backend)"
        )
    dist, _ = distribution()
    return [str(dist / "bin" / "tritonserver"), f"--backend-directory={backends}", *args]


def exec_server(args: list[str], backends_dir: str = "") -> None:
    """Assemble the backends (in `backends_dir`, or a new folder under TMPDIR) and replace this
    process with tritonserver, so it gets the pod's signals and its exit code is the pod's."""
    folder = pathlib.Path(backends_dir or tempfile.mkdtemp(prefix="tritonserver-backends-"))
    cmd = command(args, prepare_backends(folder))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, server_env(os.environ))
