"""The structural rules Argo's own validation (argo-workflows workflow/validate) applies, offline.

The CRD schema says which fields exist; the controller and `argo lint` reject
more than that. These are the rules that avfleet's manifests could break,
written from Argo's validation code (behaviour, not code, is what is shared):

- names: templates, DAG tasks and steps are non-empty, unique in their list, at
  most 128 characters of `[a-zA-Z0-9][-a-zA-Z0-9]*`; parameter names are
  `[-a-zA-Z0-9_]+` and unique; a DAG task name may not begin with a digit;
- a template has exactly one type (container, script, resource, dag, steps,
  suspend, data, http, containerSet, plugin); a container or script names an
  image; a resource has a known action and a manifest that parses as YAML;
- a DAG has tasks, no dependency cycle (a task depending on itself included),
  does not mix `depends` with `dependencies`, nor `continueOn` with `depends`,
  and its `target` names tasks;
- a task or step loops over at most one of withItems, withParam, withSequence;
- an output parameter has exactly one of value and valueFrom, and a container
  output reads a path, a resource output a jsonPath or jqFilter;
- `timeout` only on leaf templates and never a bare number;
- a Workflow or CronWorkflow names an entrypoint; podGC strategies, CronWorkflow
  schedules and concurrency policies are ones Argo knows.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

FIELD_NAME = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
PARAM_NAME = re.compile(r"^[-a-zA-Z0-9_]+$")
MAX_NAME = 128
TEMPLATE_TYPES = (
    "container",
    "script",
    "resource",
    "dag",
    "steps",
    "suspend",
    "data",
    "http",
    "containerSet",
    "plugin",
)
RESOURCE_ACTIONS = ("get", "create", "apply", "delete", "replace", "patch")
POD_GC = ("", "OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess")
CONCURRENCY = ("", "Allow", "Forbid", "Replace")
_TOKEN = re.compile(r"\{\{[^}]*\}\}")


def rule_errors(manifest: dict) -> list[str]:
    """Every rule above that `manifest` (a Workflow, WorkflowTemplate or CronWorkflow) breaks."""
    kind = manifest.get("kind")
    spec = manifest.get("spec") or {}
    errors: list[str] = []
    if kind == "CronWorkflow":
        errors += _cron_errors(spec)
        spec = spec.get("workflowSpec") or {}
    if kind in ("Workflow", "CronWorkflow") and not spec.get("entrypoint"):
        if "workflowTemplateRef" not in spec:
            errors.append("spec.entrypoint is required")
    templates = spec.get("templates") or []
    errors += _names("spec.templates", [t.get("name") for t in templates], FIELD_NAME)
    params = (spec.get("arguments") or {}).get("parameters") or []
    errors += _names("spec.arguments.parameters", [p.get("name") for p in params], PARAM_NAME)
    strategy = (spec.get("podGC") or {}).get("strategy", "")
    if strategy not in POD_GC:
        errors.append(f"podGC.strategy unknown strategy {strategy!r}")
    for template in templates:
        errors += [f"templates.{template.get('name')}: {e}" for e in _template_errors(template)]
    return errors


def _names(where: str, names: list[Any], pattern: re.Pattern) -> list[str]:
    errors, seen = [], set()
    for i, name in enumerate(names):
        if not name:
            errors.append(f"{where}[{i}].name is required")
            continue
        if len(str(name)) > MAX_NAME or not pattern.match(str(name)):
            errors.append(f"{where}[{i}].name {name!r} is invalid")
        if name in seen:
            errors.append(f"{where}[{i}].name {name!r} is not unique")
        seen.add(name)
    return errors


def _template_errors(template: dict) -> list[str]:
    types = [t for t in TEMPLATE_TYPES if template.get(t) is not None]
    if len(types) != 1:
        return [
            "template type unspecified" if not types else f"has multiple template types {types}"
        ]
    kind = types[0]
    errors = []
    inputs = (template.get("inputs") or {}).get("parameters") or []
    errors += _names("inputs.parameters", [p.get("name") for p in inputs], PARAM_NAME)
    outputs = (template.get("outputs") or {}).get("parameters") or []
    errors += _names("outputs.parameters", [p.get("name") for p in outputs], PARAM_NAME)
    errors += _output_errors(kind, outputs)
    if kind in ("container", "script") and not (template[kind] or {}).get("image"):
        errors.append(f"{kind}.image may not be empty")
    if kind == "resource":
        errors += _resource_errors(template["resource"])
    if kind == "dag":
        errors += _dag_errors(template["dag"])
    if kind == "steps":
        steps = [s for group in template["steps"] or [] for s in (group or [])]
        errors += _names("steps", [s.get("name") for s in steps], FIELD_NAME)
        errors += [e for s in steps for e in _loop_errors(f"steps.{s.get('name')}", s)]
    timeout = template.get("timeout")
    if timeout is not None:
        if kind in ("dag", "steps"):
            errors.append(f"{kind} template doesn't support the timeout field")
        elif str(timeout).strip().isdigit():
            errors.append(f"timeout {timeout!r} is not a duration (e.g. 10m)")
    return errors


def _output_errors(kind: str, outputs: list[dict]) -> list[str]:
    errors = []
    for p in outputs:
        where = f"outputs.parameters.{p.get('name')}"
        has_value, value_from = "value" in p, p.get("valueFrom")
        if has_value == (value_from is not None):
            errors.append(f"{where} needs exactly one of value and valueFrom")
            continue
        if value_from is None:
            continue
        if kind in ("container", "script") and not value_from.get("path"):
            errors.append(f"{where}.path must be specified for {kind} templates")
        if kind == "resource" and not (value_from.get("jsonPath") or value_from.get("jqFilter")):
            errors.append(f"{where}: jqFilter or jsonPath must be specified for resource templates")
    return errors


def _resource_errors(resource: dict) -> list[str]:
    errors = []
    action = resource.get("action", "")
    if action not in RESOURCE_ACTIONS and not _TOKEN.search(action):
        errors.append(f"resource.action {action!r} is not one of {RESOURCE_ACTIONS}")
    manifest = resource.get("manifest")
    if manifest is None and resource.get("manifestFrom") is None and action != "delete":
        errors.append("resource.manifest or manifestFrom is required")
    if manifest is not None:
        # Argo substitutes placeholders first; a parameter standing for a whole value parses.
        try:
            doc = yaml.safe_load(_TOKEN.sub("placeholder", manifest))
        except yaml.YAMLError as e:
            errors.append(f"resource.manifest is not valid YAML: {str(e).splitlines()[0]}")
        else:
            if not isinstance(doc, dict) and not (action == "patch" and isinstance(doc, list)):
                errors.append("resource.manifest is not a Kubernetes object")
    return errors


def _dag_errors(dag: dict) -> list[str]:
    tasks = dag.get("tasks") or []
    if not tasks:
        return ["dag must have at least one task"]
    errors = _names("dag.tasks", [t.get("name") for t in tasks], FIELD_NAME)
    from avfleet.workflows.validate import task_dependencies

    using_depends = any(t.get("depends") for t in tasks)
    deps = {}
    for task in tasks:
        name = str(task.get("name") or "")
        if name[:1].isdigit():
            errors.append(f"dag.tasks.{name} name cannot begin with a digit")
        if using_depends and task.get("dependencies"):
            errors.append("cannot use both 'depends' and 'dependencies' in the same DAG template")
        if using_depends and task.get("continueOn") is not None:
            errors.append(f"dag.tasks.{name}: cannot use 'continueOn' when using 'depends'")
        errors += _loop_errors(f"dag.tasks.{name}", task)
        deps[name] = [d for d in task_dependencies(task) if d]
    cycle = find_cycle(deps)
    if cycle:
        errors.append("dag.tasks dependency cycle detected: " + "->".join(cycle))
    target = dag.get("target") or ""
    for name in target.split():
        if name not in deps and not _TOKEN.search(name):
            errors.append(f"dag.target: target {name!r} is not defined")
    return sorted(set(errors), key=errors.index)


def find_cycle(deps: dict[str, list[str]]) -> list[str]:
    """A dependency cycle as [a, b, ..., a] (a task depending on itself: [a, a]); [] if none."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for dep in deps.get(name, []):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep in deps and state.get(dep) is None:
                found = visit(dep)
                if found:
                    return found
        state[name] = 2
        path.pop()
        return []

    for name in deps:
        if state.get(name) is None:
            found = visit(name)
            if found:
                return found
    return []


def _loop_errors(where: str, task: dict) -> list[str]:
    loops = [k for k in ("withItems", "withParam", "withSequence") if task.get(k)]
    if len(loops) > 1:
        return [f"{where}: only one of withItems, withParam, withSequence can be specified"]
    seq = task.get("withSequence") or {}
    if "count" in seq and "end" in seq:
        return [f"{where}: only one of count or end can be defined in withSequence"]
    return []


def _cron_errors(spec: dict) -> list[str]:
    errors = []
    schedules = list(spec.get("schedules") or []) + (
        [spec["schedule"]] if spec.get("schedule") else []
    )
    if not schedules:
        errors.append("cron schedule is required (schedules)")
    for s in schedules:
        if not _valid_cron(str(s)):
            errors.append(f"cron schedule {s!r} is malformed")
    if spec.get("concurrencyPolicy", "") not in CONCURRENCY:
        errors.append(f"{spec.get('concurrencyPolicy')!r} is not a valid concurrencyPolicy")
    if int(spec.get("startingDeadlineSeconds") or 0) < 0:
        errors.append("startingDeadlineSeconds must be positive")
    return errors


_CRON_FIELD = re.compile(
    r"^(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*$"
)


def _valid_cron(schedule: str) -> bool:
    """A standard 5-field schedule, or a @descriptor (robfig/cron's ParseStandard)."""
    if schedule.startswith("@"):
        return schedule in (
            "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
        ) or schedule.startswith("@every ")  # fmt: skip
    fields = schedule.split()
    if fields and fields[0].startswith(("CRON_TZ=", "TZ=")):
        fields = fields[1:]
    return len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)
