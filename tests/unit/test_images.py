"""Every image that installs avfleet runs it on a Python its pyproject accepts."""

from __future__ import annotations

import pathlib
import re
import tomllib

import pytest

from tests.conftest import REPO_ROOT

IMAGES = REPO_ROOT / "images"


def final_base(dockerfile: str) -> str:
    """The image the last stage builds on (what the container runs)."""
    return re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)[-1]


@pytest.mark.parametrize("name", ["avfleet", "spark", "train"])
def test_images_run_a_python_that_requires_python_accepts(name):
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    minimum = tuple(int(x) for x in re.findall(r"\d+", pyproject["project"]["requires-python"]))
    text = (IMAGES / f"{name}.Dockerfile").read_text()
    assert "pip install --no-deps ." in text  # it installs avfleet
    base = final_base(text)
    match = re.match(r"python:(\d+)\.(\d+)", base)
    assert match, f"{name}: final base {base} is not a python:X.Y image"
    assert tuple(int(g) for g in match.groups()) >= minimum[:2], base


def test_the_spark_image_keeps_spark_and_java_and_runs_avfleets_entrypoint():
    text = (IMAGES / "spark.Dockerfile").read_text()
    for path in ("/opt/spark", "/opt/java/openjdk"):
        assert re.search(rf"^COPY --from=spark .*{re.escape(path)}", text, re.MULTILINE), path
    assert "COPY images/spark-entrypoint.sh /opt/entrypoint.sh" in text
    assert 'ENTRYPOINT ["/opt/entrypoint.sh"]' in text


def test_the_spark_entrypoint_runs_drivers_executors_and_commands(tmp_path):
    """images/spark-entrypoint.sh, with stand-ins for spark-submit and java that print their
    argv: the contract Spark's Kubernetes scheduler relies on for its pods."""
    import os
    import subprocess

    for tool in ("bin/spark-submit", "jdk/bin/java"):
        path = tmp_path / tool
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('#!/bin/sh\necho "$0" "$@"\n')
        path.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"], "SPARK_HOME": str(tmp_path), "JAVA_HOME": str(tmp_path / "jdk"),
        "SPARK_DRIVER_BIND_ADDRESS": "10.0.0.7", "SPARK_DRIVER_URL": "spark://d:7078",
        "SPARK_EXECUTOR_ID": "3", "SPARK_EXECUTOR_CORES": "2", "SPARK_APPLICATION_ID": "app-1",
        "SPARK_EXECUTOR_POD_IP": "10.0.0.9", "SPARK_EXECUTOR_MEMORY": "1g",
        "SPARK_EXECUTOR_POD_NAME": "exec-3", "SPARK_JAVA_OPT_0": "-Dspark.a=1",
        "SPARK_JAVA_OPT_1": "-Dspark.b=two words",
    }  # fmt: skip
    entry = str(IMAGES / "spark-entrypoint.sh")

    def run(*args: str) -> str:
        return subprocess.run([entry, *args], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    driver = run("driver", "--properties-file", "/x.conf", "local:///job.py", "--date", "d")
    assert driver.split()[1:] == ["--conf", "spark.driver.bindAddress=10.0.0.7", "--deploy-mode",
                                  "client", "--properties-file", "/x.conf", "local:///job.py",
                                  "--date", "d"]  # fmt: skip
    executor = run("executor")
    assert "-Dspark.a=1 -Dspark.b=two words -Xms1g -Xmx1g" in executor
    assert "KubernetesExecutorBackend --driver-url spark://d:7078 --executor-id 3" in executor
    assert executor.endswith("--resourceProfileId 0 --podName exec-3")
    assert run("echo", "as", "given") == "as given"


def avfleet_imports(module: str) -> set[str]:
    """`module` and every avfleet module it imports, at the top or inside a function, all the
    way down (read from the source, so lazy imports count)."""
    import ast

    src = REPO_ROOT / "src"
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = src / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = src / name.replace(".", "/") / "__init__.py"
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("avfleet")
            ):
                todo.append(node.module)
                for alias in node.names:  # `from avfleet.bench import agent`
                    sub = f"{node.module}.{alias.name}"
                    if (src / (sub.replace(".", "/") + ".py")).exists():
                        todo.append(sub)
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("avfleet")]
    return seen


def test_the_bench_agent_runs_on_jetpacks_python():
    """The Xavier bench image runs the agent on JetPack 5's Python 3.8 (its TensorRT bindings
    exist for no other): vermin finds nothing newer in any module the agent can import."""
    import subprocess
    import sys

    modules = avfleet_imports("avfleet.bench.agent_main")
    assert {"avfleet.bench.agent", "avfleet.bench.engines", "avfleet.core.storage"} <= modules
    src = REPO_ROOT / "src"
    files = []
    for name in sorted(modules):
        path = src / (name.replace(".", "/") + ".py")
        files.append(str(path if path.exists() else src / name.replace(".", "/") / "__init__.py"))
    for path in files:  # annotations stay strings, so `list[str]` and `X | None` cost nothing
        text = pathlib.Path(path).read_text()
        assert "from __future__ import annotations" in text or "->" not in text, path
    vermin = pathlib.Path(sys.executable).parent / "vermin"
    done = subprocess.run(
        [str(vermin), "--no-tips", "--violations", "-t=3.8-", *files],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = (IMAGES / "bench.Dockerfile").read_text()
    assert "python3 -m avfleet.bench.agent_main" in text or '"avfleet.bench.agent_main"' in text
    assert "pip install --no-deps ." not in text  # requires-python would refuse 3.8
