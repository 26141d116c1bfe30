"""Walk a rendered workflow and run its steps as local processes.

Supported: WorkflowTemplate, Workflow and CronWorkflow (its workflowSpec, run
now); dag (dependencies / depends with task names and &&) and steps
templates; container templates; resource templates through
`engines.ENGINES`; input, workflow and task output parameters; retryStrategy
(limit, retryPolicy, expression, backoff). Anything else is refused with a
clear error rather than half-run.

Container paths are remapped: the image root (/opt/avfleet) to this checkout
and the outputs folder (/tmp/outputs) to the step's own sandbox, from which
output parameters are read after the step succeeds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque

import yaml

from avfleet.core.errors import ConfigError, ExitCode, PermanentError
from avfleet.workflows import common
from avfleet.workflows.local import engines
from avfleet.workflows.local.expressions import (
    evaluate_retry_expression,
    substitute,
    substitute_all,
)
from avfleet.workflows.validate import task_dependencies, workflow_spec

log = logging.getLogger(__name__)

RUNNABLE_KINDS = ("Workflow", "WorkflowTemplate", "CronWorkflow")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError("-p", f"{pair!r} is not name=value")
        name, value = pair.split("=", 1)
        out[name] = value
    return out


def parse_duration_s(text: str | int | None) -> float:
    if text is None:
        return 0.0
    match = _DURATION.match(str(text).strip())
    if not match:
        raise PermanentError(f"cannot parse duration {text!r}")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


@dataclasses.dataclass
class NodeResult:
    name: str
    template: str
    phase: str  # Succeeded | Failed | Error | Omitted
    attempts: int = 0
    exit_code: int | None = None
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    duration_s: float = 0.0
    log_path: str | None = None


@dataclasses.dataclass
class RunResult:
    name: str
    nodes: list[NodeResult]

    @property
    def succeeded(self) -> bool:
        return all(n.phase == "Succeeded" for n in self.nodes)

    @property
    def exit_code(self) -> int:
        failed = [n for n in self.nodes if n.phase in ("Failed", "Error")]
        return (failed[-1].exit_code or int(ExitCode.INTERNAL)) if failed else 0

    def node(self, name: str) -> NodeResult:
        return next(n for n in self.nodes if n.name == name)

    def summary(self) -> str:
        lines = [f"workflow {self.name}: {'Succeeded' if self.succeeded else 'Failed'}"]
        for n in self.nodes:
            outs = " ".join(f"{k}={v}" for k, v in n.outputs.items())
            lines.append(
                f"  {n.name:<24} {n.phase:<10} attempts={n.attempts} exit={n.exit_code} {n.duration_s:6.1f}s {outs}"
            )
        return "\n".join(lines)


class LocalExecutor:
    def __init__(
        self,
        *,
        workdir: str | None = None,
        spark_master: str = "local[2]",
        repo_root: str | None = None,
        backoff_scale: float = 1.0,
        quiet: bool = False,
    ) -> None:
        self.workdir = pathlib.Path(workdir or tempfile.mkdtemp(prefix="avfleet-local-run-"))
        self.ctx = engines.LocalContext(
            repo_root=repo_root or str(pathlib.Path(__file__).resolve().parents[4]),
            spark_master=spark_master,
        )
        self.backoff_scale = backoff_scale
        self.quiet = quiet

    def run_file(self, path: str, parameters: dict[str, str]) -> RunResult:
        docs = [
            d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if isinstance(d, dict)
        ]
        runnable = [d for d in docs if d.get("kind") in RUNNABLE_KINDS]
        if len(runnable) != 1:
            raise PermanentError(
                f"{path}: expected one of {RUNNABLE_KINDS}, found {[d.get('kind') for d in docs]}"
            )
        return self.run_manifest(runnable[0], parameters)

    def run_manifest(self, manifest: dict, parameters: dict[str, str]) -> RunResult:
        spec = workflow_spec(manifest)
        name = manifest.get("metadata", {}).get("name") or manifest.get("metadata", {}).get(
            "generateName", "workflow"
        )
        declared = {
            p["name"]: p.get("value") for p in spec.get("arguments", {}).get("parameters", [])
        }
        unknown = set(parameters) - set(declared)
        if unknown:
            raise ConfigError(
                f"-p {sorted(unknown)[0]}",
                f"workflow {name} declares no such parameter (has: {', '.join(declared)})",
            )
        values = {**declared, **parameters}
        missing = [k for k, v in values.items() if v is None]
        if missing:
            raise ConfigError(f"-p {missing[0]}", "required parameter has no value")
        run_name = f"{name.rstrip('-')}-local-{uuid.uuid4().hex[:5]}"
        scope = {f"workflow.parameters.{k}": str(v) for k, v in values.items()}
        scope.update(
            {
                "workflow.name": run_name,
                "workflow.namespace": "local",
                "workflow.uid": uuid.uuid4().hex,
                # A CronWorkflow's run is created now (run on demand, as `argo submit --from`).
                "workflow.creationTimestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )
        templates = {t["name"]: t for t in spec.get("templates", [])}
        nodes: list[NodeResult] = []
        self._run_template(
            templates, spec["entrypoint"], scope, {}, spec.get("retryStrategy"), nodes, run_name
        )
        return RunResult(run_name, nodes)

    # --- templates -------------------------------------------------------------------------

    def _run_template(
        self,
        templates: dict,
        name: str,
        scope: dict,
        inputs: dict,
        default_retry: dict | None,
        nodes: list,
        node_name: str,
    ) -> NodeResult:
        template = templates.get(name)
        if template is None:
            raise PermanentError(f"template {name!r} does not exist")
        local_scope = dict(scope)
        for p in template.get("inputs", {}).get("parameters", []):
            if p["name"] in inputs:
                local_scope[f"inputs.parameters.{p['name']}"] = inputs[p["name"]]
            elif "value" in p or "default" in p:
                local_scope[f"inputs.parameters.{p['name']}"] = str(
                    p.get("value", p.get("default"))
                )
            else:
                raise PermanentError(f"template {name!r}: input {p['name']!r} was not passed")
        if "dag" in template:
            return self._run_dag(templates, template, local_scope, default_retry, nodes, node_name)
        if "steps" in template:
            return self._run_steps(
                templates, template, local_scope, default_retry, nodes, node_name
            )
        if "container" in template or "resource" in template:
            return self._run_leaf(
                template,
                local_scope,
                template.get("retryStrategy") or default_retry,
                nodes,
                node_name,
            )
        kinds = [
            k
            for k in ("script", "suspend", "http", "plugin", "containerSet", "data")
            if k in template
        ]
        raise PermanentError(
            f"template {name!r}: {kinds or 'this template type'} is not supported by the local executor"
        )

    def _run_dag(self, templates, template, scope, default_retry, nodes, node_name) -> NodeResult:
        tasks = {t["name"]: t for t in template["dag"]["tasks"]}
        deps = {n: task_dependencies(t) for n, t in tasks.items()}
        for n, t in tasks.items():
            if (
                t.get("when")
                or t.get("withItems")
                or t.get("withParam")
                or ("||" in (t.get("depends") or ""))
            ):
                raise PermanentError(
                    f"dag task {n!r}: when/withItems/withParam/|| are not supported by the local executor"
                )
        order = _topological(deps)
        phases: dict[str, str] = {}
        started = time.time()
        for n in order:
            task = tasks[n]
            if any(phases.get(d) != "Succeeded" for d in deps[n]):
                phases[n] = "Omitted"
                nodes.append(
                    NodeResult(name=f"{node_name}.{n}", template=task["template"], phase="Omitted")
                )
                continue
            args = {
                p["name"]: substitute(str(p.get("value", "")), scope, f"task {n!r}")
                for p in task.get("arguments", {}).get("parameters", [])
            }
            result = self._run_template(
                templates, task["template"], scope, args, default_retry, nodes, f"{node_name}.{n}"
            )
            phases[n] = result.phase
            for k, v in result.outputs.items():
                scope[f"tasks.{n}.outputs.parameters.{k}"] = v
        phase = "Succeeded" if all(p == "Succeeded" for p in phases.values()) else "Failed"
        return NodeResult(
            name=node_name, template=template["name"], phase=phase, duration_s=time.time() - started
        )

    def _run_steps(self, templates, template, scope, default_retry, nodes, node_name) -> NodeResult:
        started = time.time()
        for group in template["steps"]:
            for step in group:  # parallel groups run one after another here
                args = {
                    p["name"]: substitute(str(p.get("value", "")), scope, f"step {step['name']!r}")
                    for p in step.get("arguments", {}).get("parameters", [])
                }
                result = self._run_template(
                    templates,
                    step["template"],
                    scope,
                    args,
                    default_retry,
                    nodes,
                    f"{node_name}.{step['name']}",
                )
                if result.phase != "Succeeded":
                    return NodeResult(
                        name=node_name,
                        template=template["name"],
                        phase="Failed",
                        duration_s=time.time() - started,
                    )
                for k, v in result.outputs.items():
                    scope[f"steps.{step['name']}.outputs.parameters.{k}"] = v
        return NodeResult(
            name=node_name,
            template=template["name"],
            phase="Succeeded",
            duration_s=time.time() - started,
        )

    # --- leaves: one local process per attempt ------------------------------------------------

    def _argv(
        self, template: dict, scope: dict, sandbox: pathlib.Path
    ) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        where = f"template {template['name']!r}"
        if "container" in template:
            container = substitute_all(template["container"], scope, where)
            for var in container.get("env", []) or []:
                if "value" not in var:
                    raise PermanentError(
                        f"{where}: env {var.get('name')!r} uses valueFrom, which runs only in a cluster"
                    )
                env[var["name"]] = var["value"]
            argv = list(container.get("command") or []) + list(container.get("args") or [])
            if not argv:
                raise PermanentError(
                    f"{where}: container has no command; the local executor cannot use an image's entrypoint"
                )
        else:
            manifest = yaml.safe_load(substitute(template["resource"]["manifest"], scope, where))
            argv = engines.command_for(manifest, self.ctx)
        outputs_dir = str(sandbox / "outputs")
        argv = [self.ctx.map_image_path(a).replace(common.OUTPUTS_DIR, outputs_dir) for a in argv]
        return argv, env

    def _run_leaf(
        self, template: dict, scope: dict, retry: dict | None, nodes: list, node_name: str
    ) -> NodeResult:
        sandbox = self.workdir / node_name
        sandbox.mkdir(parents=True, exist_ok=True)
        argv, env = self._argv(template, scope, sandbox)
        limit = int((retry or {}).get("limit", 0))
        node = NodeResult(
            name=node_name,
            template=template["name"],
            phase="Failed",
            log_path=str(sandbox / "log.txt"),
        )
        started = time.time()
        waited = 0.0
        while True:
            node.attempts += 1
            attempt_started = time.time()
            phase, code = self._attempt(argv, env, sandbox / "log.txt", node.attempts)
            node.phase, node.exit_code = phase, code
            self._say(
                f"{node_name}: attempt {node.attempts} {phase} (exit {code}) in {time.time() - attempt_started:.1f}s"
            )
            if phase == "Succeeded" or node.attempts > limit:
                break
            if not _should_retry(retry or {}, phase, code, time.time() - attempt_started):
                break
            delay = _backoff_s(retry or {}, node.attempts - 1) * self.backoff_scale
            max_total = (
                parse_duration_s((retry or {}).get("backoff", {}).get("maxDuration"))
                * self.backoff_scale
            )
            if max_total and waited + delay > max_total:
                break
            waited += delay
            time.sleep(delay)
        if node.phase == "Succeeded":
            for p in template.get("outputs", {}).get("parameters", []):
                path = p.get("valueFrom", {}).get("path")
                if path:
                    local = pathlib.Path(path.replace(common.OUTPUTS_DIR, str(sandbox / "outputs")))
                    if not local.exists():
                        node.phase = "Failed"
                        self._say(
                            f"{node_name}: output parameter {p['name']!r} was not written to {path}"
                        )
                        break
                    node.outputs[p["name"]] = local.read_text().strip()
        node.duration_s = time.time() - started
        nodes.append(node)
        return node

    def _attempt(
        self, argv: list[str], env: dict, log_path: pathlib.Path, attempt: int
    ) -> tuple[str, int | None]:
        with open(log_path, "a") as log_file:
            log_file.write(f"--- attempt {attempt}: {' '.join(argv)}\n")
            log_file.flush()
            try:
                proc = subprocess.run(
                    argv,
                    env=env,
                    cwd=self.ctx.repo_root,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            except OSError as e:
                log_file.write(f"could not start: {e}\n")
                return "Error", None
        if proc.returncode < 0:  # killed by a signal: what Kubernetes reports as an Error
            return "Error", 128 - proc.returncode
        return ("Succeeded" if proc.returncode == 0 else "Failed"), proc.returncode

    def _say(self, message: str) -> None:
        if self.quiet:
            log.info(message)
        else:
            print(message, file=sys.stderr, flush=True)


def _should_retry(retry: dict, phase: str, exit_code: int | None, duration_s: float) -> bool:
    policy = retry.get("retryPolicy", "OnFailure")
    allowed = {
        "Always": ("Failed", "Error"),
        "OnFailure": ("Failed",),
        "OnError": ("Error",),
        "OnTransientError": ("Error",),
    }.get(policy)
    if allowed is None:
        raise PermanentError(f"retryPolicy {policy!r} is not known")
    if phase not in allowed:
        return False
    expression = retry.get("expression")
    if not expression:
        return True
    last = {
        "exitCode": "" if exit_code is None else str(exit_code),
        "status": phase,
        "duration": str(int(duration_s)),
    }
    return evaluate_retry_expression(expression, last)


def _backoff_s(retry: dict, retry_index: int) -> float:
    backoff = retry.get("backoff") or {}
    base = parse_duration_s(backoff.get("duration"))
    factor = float(backoff.get("factor", 1) or 1)
    return base * factor**retry_index


def _topological(deps: dict[str, list[str]]) -> list[str]:
    indegree = {n: 0 for n in deps}
    children: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in ds:
            if d not in deps:
                raise PermanentError(f"dag task {n!r} depends on unknown task {d!r}")
            indegree[n] += 1
            children[d].append(n)
    queue = deque(sorted(n for n, k in indegree.items() if k == 0))
    order = []
    while queue:
        n = queue.popleft()
        order.append(n)
        for c in children[n]:
            indegree[c] -= 1
            if indegree[c] == 0:
                queue.append(c)
    if len(order) != len(deps):
        raise PermanentError("dag has a dependency cycle")
    return order
