"""Walk a rendered workflow and run its steps as local processes.

Supported: WorkflowTemplate, Workflow and CronWorkflow (its workflowSpec, run
now); dag (dependencies / depends with task names and &&, failFast) and steps
templates; container templates; resource templates through
`engines.ENGINES`; input, workflow and task output parameters, and a dag's or
steps template's own outputs (valueFrom.parameter); retryStrategy (limit,
retryPolicy, expression, backoff); `when`; `templateRef` to the
WorkflowTemplates loaded beside the workflow; loops (`withItems`,
`withParam`) with Argo's semantics:

* each item is its own node, `task(i:label)`, with `{{item}}` (and
  `{{item.key}}` for an object item) in its arguments;
* items run concurrently, at most `parallelism` at a time (the template's or
  the workflow's, the tighter); other tasks run one after another here;
* an item retries on its own; the expanded task fails if any item failed,
  and with failFast (the dag default) items not yet started are not started;
* `{{tasks.T.outputs.parameters.P}}` of an expanded task is the JSON list of
  its items' values of P, in item order; `{{tasks.T.outputs.parameters}}`
  the JSON list of each item's parameter map;
* an expanded task with no items is Skipped, as is a task whose `when` is false;
  Skipped satisfies a dependency.

Anything else is refused with a clear error rather than half-run.

Container paths are remapped: the image root (/opt/avfleet) to this checkout
and the outputs folder (/tmp/outputs) to the step's own sandbox, from which
output parameters are read after the step succeeds.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
import logging
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque

import yaml

from avfleet import resources
from avfleet.core.errors import ConfigError, ExitCode, PermanentError
from avfleet.workflows import common
from avfleet.workflows.local import engines
from avfleet.workflows.local.expressions import (
    evaluate_condition,
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
        return all(n.phase in ("Succeeded", "Skipped") for n in self.nodes)

    @property
    def exit_code(self) -> int:
        failed = [n for n in self.nodes if n.phase in ("Failed", "Error")]
        return (failed[-1].exit_code or int(ExitCode.INTERNAL)) if failed else 0

    def node(self, name: str) -> NodeResult:
        return next(n for n in self.nodes if n.name == name)

    def summary(self) -> str:
        lines = [f"workflow {self.name}: {'Succeeded' if self.succeeded else 'Failed'}"]
        for n in self.nodes:
            outs = " ".join(f"{k}={_short(v)}" for k, v in n.outputs.items())
            lines.append(
                f"  {n.name:<24} {n.phase:<10} attempts={n.attempts} exit={n.exit_code} {n.duration_s:6.1f}s {outs}"
            )
        return "\n".join(lines)


def _short(value: str, limit: int = 100) -> str:
    """An output as the summary shows it: long values (a JSON record) cut, the file has it all."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


class LocalExecutor:
    def __init__(
        self,
        *,
        workdir: str | None = None,
        spark_master: str = "local[2]",
        image_root: str | None = None,
        backoff_scale: float = 1.0,
        quiet: bool = False,
        library: dict[str, dict] | None = None,
    ) -> None:
        self.workdir = pathlib.Path(workdir or tempfile.mkdtemp(prefix="avfleet-local-run-"))
        self.ctx = engines.LocalContext(
            image_root=image_root or str(resources.data_root()),
            spark_master=spark_master,
        )
        self.backoff_scale = backoff_scale
        self.quiet = quiet
        self.library: dict[str, dict] = dict(library or {})
        """WorkflowTemplate name -> {template name: template}, for templateRef."""
        self._lock = threading.Lock()
        self._nodes: list[NodeResult] = []
        self._workflow_parallelism: int | None = None

    def load_library(self, folder: str) -> None:
        """Every WorkflowTemplate in the folder's YAML files, as `argo template create` would
        (a name already loaded keeps its first definition)."""
        for path in sorted(pathlib.Path(folder).glob("*.y*ml")):
            try:
                docs = list(yaml.safe_load_all(path.read_text()))
            except yaml.YAMLError as e:
                raise PermanentError(f"{path}: not YAML: {e}") from e
            for doc in docs:
                if isinstance(doc, dict) and doc.get("kind") == "WorkflowTemplate":
                    name = doc.get("metadata", {}).get("name")
                    if name and name not in self.library:
                        templates = doc.get("spec", {}).get("templates", [])
                        self.library[name] = {t["name"]: t for t in templates}

    def run_file(self, path: str, parameters: dict[str, str]) -> RunResult:
        """Run the file's workflow; the WorkflowTemplates beside it join the library first."""
        self.load_library(str(pathlib.Path(path).resolve().parent))
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
        for p in spec.get("arguments", {}).get("parameters", []):
            if p.get("enum") and str(values[p["name"]]) not in p["enum"]:  # as Argo refuses it
                raise ConfigError(
                    f"-p {p['name']}",
                    f"{values[p['name']]!r} is not one of {', '.join(p['enum'])}",
                )
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
        self._nodes = []
        self._workflow_parallelism = spec.get("parallelism")
        self._run_template(
            templates, spec["entrypoint"], scope, {}, spec.get("retryStrategy"), run_name
        )
        return RunResult(run_name, list(self._nodes))

    # --- templates -------------------------------------------------------------------------

    def _run_template(
        self,
        templates: dict,
        name: str,
        scope: dict,
        inputs: dict,
        default_retry: dict | None,
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
        if "dag" in template or "steps" in template:
            run = self._run_dag if "dag" in template else self._run_steps
            result = run(templates, template, local_scope, default_retry, node_name)
            if result.phase == "Succeeded":
                result.outputs = _template_outputs(template, local_scope)
            return result
        if "container" in template or "resource" in template:
            return self._run_leaf(
                template,
                local_scope,
                template.get("retryStrategy") or default_retry,
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

    def _resolve(self, templates: dict, call: dict, where: str) -> tuple[dict, str]:
        """(the templates a call's name is looked up in, the name): its own, or a templateRef's."""
        ref = call.get("templateRef")
        if ref is None:
            return templates, call["template"]
        library = self.library.get(ref.get("name", ""))
        if library is None:
            raise PermanentError(
                f"{where}: templateRef {ref.get('name')!r} is not a loaded WorkflowTemplate "
                f"(loaded: {', '.join(sorted(self.library)) or 'none'}; local-run loads the "
                "templates beside the workflow file, as `argo template create` would)"
            )
        return library, ref["template"]

    def _call(
        self,
        templates: dict,
        call: dict,
        scope: dict,
        default_retry: dict | None,
        node_name: str,
    ) -> NodeResult:
        """One task or step (one item of an expanded one): its arguments, then its template."""
        where = f"{node_name}"
        args = {
            p["name"]: substitute(str(p.get("value", "")), scope, where)
            for p in call.get("arguments", {}).get("parameters", [])
        }
        owner, name = self._resolve(templates, call, where)
        return self._run_template(owner, name, scope, args, default_retry, node_name)

    def _run_call(
        self,
        templates: dict,
        call: dict,
        scope: dict,
        default_retry: dict | None,
        node_name: str,
        prefix: str,
        limit: int | None,
        fail_fast: bool,
    ) -> str:
        """Run a task or step, expanded over its items if it has any; its outputs go into
        `scope` under `prefix` (tasks.NAME or steps.NAME). Returns its phase."""
        where = node_name
        if "when" in call and not evaluate_condition(substitute(str(call["when"]), scope, where)):
            return self._mark(call, node_name, "Skipped")
        items = expand_items(call, scope, where)
        if items is None:
            result = self._call(templates, call, scope, default_retry, node_name)
            for k, v in result.outputs.items():
                scope[f"{prefix}.outputs.parameters.{k}"] = v
            return result.phase
        if not items:  # Argo: an expanded task with no items is Skipped
            return self._mark(call, node_name, "Skipped")
        results = self._fan_out(
            templates, call, scope, items, default_retry, node_name, limit, fail_fast
        )
        names = list(dict.fromkeys(k for r in results if r for k in r.outputs))
        for k in names:  # one JSON list per output, in item order (Argo's aggregated outputs)
            scope[f"{prefix}.outputs.parameters.{k}"] = json.dumps(
                [r.outputs.get(k) if r else None for r in results]
            )
        scope[f"{prefix}.outputs.parameters"] = json.dumps(
            [r.outputs if r else {} for r in results]
        )
        ok = all(r is not None and r.phase == "Succeeded" for r in results)
        return "Succeeded" if ok else "Failed"

    def _fan_out(
        self,
        templates: dict,
        call: dict,
        scope: dict,
        items: list,
        default_retry: dict | None,
        node_name: str,
        limit: int | None,
        fail_fast: bool,
    ) -> list[NodeResult | None]:
        """Each item as its own node `NAME(i:label)`, at most `limit` at a time; with
        fail-fast, items not yet started when one fails are never started (None)."""
        results: list[NodeResult | None] = [None] * len(items)
        failed = threading.Event()

        def one(i: int) -> None:
            if fail_fast and failed.is_set():
                return
            item_scope = dict(scope, **item_values(items[i]))
            result = self._call(
                templates,
                call,
                item_scope,
                default_retry,
                f"{node_name}({i}:{item_label(items[i])})",
            )
            results[i] = result
            if result.phase != "Succeeded":
                failed.set()

        workers = min(limit or len(items), len(items))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(one, i) for i in range(len(items))]:
                future.result()
        return results

    def _run_dag(self, templates, template, scope, default_retry, node_name) -> NodeResult:
        dag = template["dag"]
        tasks = {t["name"]: t for t in dag["tasks"]}
        deps = {n: task_dependencies(t) for n, t in tasks.items()}
        for n, t in tasks.items():
            if "||" in (t.get("depends") or ""):
                raise PermanentError(
                    f"dag task {n!r}: || in depends is not supported by the local executor"
                )
        order = _topological(deps)
        phases: dict[str, str] = {}
        fail_fast = dag.get("failFast", True) is not False
        limit = self._parallelism(template)
        started = time.time()
        for n in order:
            task = tasks[n]
            blocked = any(phases.get(d) not in ("Succeeded", "Skipped") for d in deps[n])
            if blocked or (fail_fast and "Failed" in phases.values()):
                phases[n] = self._mark(task, f"{node_name}.{n}", "Omitted")
                continue
            phases[n] = self._run_call(
                templates,
                task,
                scope,
                default_retry,
                f"{node_name}.{n}",
                f"tasks.{n}",
                limit,
                fail_fast,
            )
        ok = all(p in ("Succeeded", "Skipped") for p in phases.values())
        return NodeResult(
            name=node_name,
            template=template["name"],
            phase="Succeeded" if ok else "Failed",
            duration_s=time.time() - started,
        )

    def _run_steps(self, templates, template, scope, default_retry, node_name) -> NodeResult:
        started = time.time()
        limit = self._parallelism(template)
        for group in template["steps"]:
            for step in group:  # parallel steps of a group run one after another here
                phase = self._run_call(
                    templates,
                    step,
                    scope,
                    default_retry,
                    f"{node_name}.{step['name']}",
                    f"steps.{step['name']}",
                    limit,
                    True,
                )
                if phase not in ("Succeeded", "Skipped"):
                    return NodeResult(
                        name=node_name,
                        template=template["name"],
                        phase="Failed",
                        duration_s=time.time() - started,
                    )
        return NodeResult(
            name=node_name,
            template=template["name"],
            phase="Succeeded",
            duration_s=time.time() - started,
        )

    def _parallelism(self, template: dict) -> int | None:
        """The tightest of the template's and the workflow's `parallelism` (None: no limit)."""
        limits = [int(x) for x in (template.get("parallelism"), self._workflow_parallelism) if x]
        return min(limits) if limits else None

    def _mark(self, call: dict, node_name: str, phase: str) -> str:
        """Record a task or step that did not run (Skipped, Omitted); returns the phase."""
        self._add(NodeResult(name=node_name, template=_template_name(call), phase=phase))
        return phase

    def _add(self, node: NodeResult) -> None:
        with self._lock:
            self._nodes.append(node)

    # --- leaves: one local process per attempt ------------------------------------------------

    def _argv(
        self, template: dict, scope: dict, sandbox: pathlib.Path
    ) -> tuple[list[str], dict[str, str], engines.LocalRun | None]:
        """The leaf's argv and env, and for a resource how its controller restarts it."""
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        where = f"template {template['name']!r}"
        if "container" in template:
            container = substitute_all(template["container"], scope, where)
            for var in container.get("env", []) or []:
                if "value" in var:
                    env[var["name"]] = var["value"]
                elif (var.get("valueFrom") or {}).get("secretKeyRef", {}).get("optional") is True:
                    continue  # an optional Secret: here, as if absent (this process's env stays)
                else:
                    raise PermanentError(
                        f"{where}: env {var.get('name')!r} uses valueFrom, which runs only in a cluster"
                    )
            for source in container.get("envFrom", []) or []:
                ref = source.get("secretRef") or source.get("configMapRef") or {}
                if ref.get("optional") is not True:
                    raise PermanentError(
                        f"{where}: envFrom {ref.get('name')!r} is not optional; it runs only in a cluster"
                    )  # an optional one: here, as if absent (this process's env stays)
            argv = list(container.get("command") or []) + list(container.get("args") or [])
            if not argv:
                raise PermanentError(
                    f"{where}: container has no command; the local executor cannot use an image's entrypoint"
                )
            run = None
        else:
            manifest = yaml.safe_load(substitute(template["resource"]["manifest"], scope, where))
            run = engines.run_for(manifest, self.ctx)
            argv = run.argv
        outputs_dir = str(sandbox / "outputs")
        argv = [self.ctx.map_image_path(a).replace(common.OUTPUTS_DIR, outputs_dir) for a in argv]
        return argv, env, run

    def _run_leaf(
        self, template: dict, scope: dict, retry: dict | None, node_name: str
    ) -> NodeResult:
        sandbox = self.workdir / _safe_folder(node_name)
        sandbox.mkdir(parents=True, exist_ok=True)
        argv, env, run = self._argv(template, scope, sandbox)
        limit = int((retry or {}).get("limit", 0))
        deadline_s = float(template.get("activeDeadlineSeconds") or 0) or None
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
            phase, code = self._attempt(
                argv, env, sandbox / "log.txt", node.attempts, deadline_s, run, node_name
            )
            node.phase, node.exit_code = phase, code
            self._say(
                f"{node_name}: attempt {node.attempts} {phase} (exit {code}) in {time.time() - attempt_started:.1f}s"
            )
            if phase == "Succeeded" or node.attempts > limit:
                break
            # A resource step's exit code is its resource's, which Argo never sees.
            seen_code = None if run is not None else code
            if not _should_retry(retry or {}, phase, seen_code, time.time() - attempt_started):
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
        self._add(node)
        return node

    def _attempt(
        self,
        argv: list[str],
        env: dict,
        log_path: pathlib.Path,
        attempt: int,
        deadline_s: float | None = None,
        run: engines.LocalRun | None = None,
        node_name: str = "",
    ) -> tuple[str, int | None]:
        """One Argo attempt: the process, restarted as the resource's controller would."""
        restarts = 0
        while True:
            phase, code = self._process(argv, env, log_path, attempt, deadline_s)
            if phase == "Succeeded" or run is None or code is None:
                return phase, code
            if restarts >= run.restarts or not run.restart_on(code):
                return phase, code
            restarts += 1
            self._say(
                f"{node_name}: exit {code}; the controller restarts it "
                f"({run.policy}, restart {restarts} of {run.restarts})"
            )

    def _process(
        self,
        argv: list[str],
        env: dict,
        log_path: pathlib.Path,
        attempt: int,
        deadline_s: float | None,
    ) -> tuple[str, int | None]:
        with open(log_path, "a") as log_file:
            log_file.write(f"--- attempt {attempt}: {' '.join(argv)}\n")
            log_file.flush()
            try:
                proc = subprocess.run(
                    argv,
                    env=env,
                    cwd=self.workdir,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    check=False,
                    timeout=deadline_s,
                )
            except OSError as e:
                log_file.write(f"could not start: {e}\n")
                return "Error", None
            except subprocess.TimeoutExpired:  # Argo: "Step exceeded its deadline", Failed
                log_file.write(f"step exceeded its deadline of {deadline_s:.0f} s\n")
                return "Failed", None
        if proc.returncode < 0:  # killed by a signal: what Kubernetes reports as an Error
            return "Error", 128 - proc.returncode
        return ("Succeeded" if proc.returncode == 0 else "Failed"), proc.returncode

    def _say(self, message: str) -> None:
        if self.quiet:
            log.info(message)
        else:
            print(message, file=sys.stderr, flush=True)


def _safe_folder(node_name: str) -> str:
    """A node's sandbox folder name: item labels come from workflow input, so no path tricks."""
    return re.sub(r"[^A-Za-z0-9._:,()=-]", "_", node_name).replace("..", "__")


def _template_name(call: dict) -> str:
    ref = call.get("templateRef")
    return f"{ref['name']}/{ref['template']}" if ref else call["template"]


def _template_outputs(template: dict, scope: dict) -> dict[str, str]:
    """A dag's or steps template's outputs: each `valueFrom.parameter` resolved in its scope."""
    out = {}
    for p in template.get("outputs", {}).get("parameters", []):
        source = p.get("valueFrom", {}).get("parameter")
        if source is None:
            raise PermanentError(
                f"template {template['name']!r}: output {p['name']!r} needs valueFrom.parameter"
            )
        out[p["name"]] = substitute(source, scope, f"template {template['name']!r} outputs")
    return out


def expand_items(call: dict, scope: dict, where: str) -> list | None:
    """A task's or step's items (withItems, or withParam's JSON array); None when it has none."""
    if "withItems" in call:
        items = call["withItems"]
        if not isinstance(items, list):
            raise PermanentError(f"{where}: withItems must be a list")
        return items
    if "withParam" in call:
        text = substitute(str(call["withParam"]), scope, where)
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise PermanentError(f"{where}: withParam is not a JSON array: {text[:200]!r}") from e
        if not isinstance(items, list):
            raise PermanentError(f"{where}: withParam is not a JSON array: {text[:200]!r}")
        return items
    if "withSequence" in call:
        raise PermanentError(f"{where}: withSequence is not supported by the local executor")
    return None


def _text(value: object) -> str:
    """An item value as Argo substitutes it: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def item_values(item: object) -> dict[str, str]:
    """The {{item}} (and {{item.key}}) names of one item."""
    out = {"item": _text(item)}
    if isinstance(item, dict):
        out.update({f"item.{k}": _text(v) for k, v in item.items()})
    return out


def item_label(item: object) -> str:
    """How Argo names an item's node: the value, or key:value pairs of an object by key."""
    if isinstance(item, dict):
        return ",".join(f"{k}:{_text(v)}" for k, v in sorted(item.items()))
    return _text(item)


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
