"""Offline checks of Argo manifests: the CRD schemas, and references Hera does not check.

CRD schemas (argoproj.io_*.yaml, openAPIV3Schema) become JSON Schema with two
changes that make them stricter, like the API server is in effect:
`x-kubernetes-int-or-string` accepts an integer or a string, and objects that
list their properties reject unknown keys (the API server would silently prune
them, which hides typos such as `retryStategy`).
"""

from __future__ import annotations

import functools
import pathlib
import re
from typing import Any

import yaml

KIND_TO_CRD = {
    "Workflow": "argoproj.io_workflows.yaml",
    "WorkflowTemplate": "argoproj.io_workflowtemplates.yaml",
    "ClusterWorkflowTemplate": "argoproj.io_clusterworkflowtemplates.yaml",
    "CronWorkflow": "argoproj.io_cronworkflows.yaml",
}
_TOKEN = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
_EXPR_PARAM = re.compile(r"\b(workflow|inputs)\.parameters\['([^']+)'\]")


def _tokens(text: str) -> list[str]:
    """The references in `text`: plain tags as they are, and the parameters an expression tag
    ({{=toJson(workflow.parameters['x'])}}) reads, as the plain tag names them."""
    out = []
    for token in _TOKEN.findall(text):
        if token.startswith("="):
            out += [f"{scope}.parameters.{name}" for scope, name in _EXPR_PARAM.findall(token)]
        else:
            out.append(token)
    return out


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and not preserve and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=8)
def crd_validator(crds_dir: str, kind: str) -> Any:
    import jsonschema

    doc = yaml.safe_load((pathlib.Path(crds_dir) / KIND_TO_CRD[kind]).read_text())
    version = next(v for v in doc["spec"]["versions"] if v.get("served", True))
    schema = _strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def schema_errors(manifest: dict, crds_dir: str) -> list[str]:
    """Messages naming the path of every CRD schema violation."""
    kind = manifest.get("kind")
    if kind not in KIND_TO_CRD:
        return [f"kind {kind!r} is not an Argo workflow kind"]
    validator = crd_validator(str(crds_dir), kind)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(manifest)
    ]


def workflow_spec(manifest: dict) -> dict:
    spec = manifest.get("spec", {})
    return spec.get("workflowSpec", spec) if manifest.get("kind") == "CronWorkflow" else spec


Library = dict[str, dict]
"""WorkflowTemplate name -> its manifest: what `templateRef` can name (the cluster's templates)."""


def _templates_of(manifest: dict) -> dict:
    return {t["name"]: t for t in workflow_spec(manifest).get("templates", [])}


def _called(task: dict, templates: dict, library: Library | None) -> dict | None:
    """The template a task calls: its own workflow's, or a templateRef's (None: not resolvable
    here, a templateRef without a library)."""
    ref = task.get("templateRef")
    if ref is None:
        return templates.get(task.get("template"), {})
    if library is None or ref.get("name") not in library:
        return None
    return _templates_of(library[ref["name"]]).get(ref.get("template"))


def referenced_templates(manifest: dict, library: Library) -> list[tuple[str, dict]]:
    """(WorkflowTemplate name, template) of every template reached through templateRef,
    following the referenced templates' own calls."""
    spec = workflow_spec(manifest)
    queue = [(None, t) for t in spec.get("templates", [])]
    seen: set[tuple[str, str]] = set()
    out = []
    while queue:
        owner, template = queue.pop()
        tasks = template.get("dag", {}).get("tasks", []) or [
            s for group in template.get("steps", []) for s in group
        ]
        for task in tasks:
            ref = task.get("templateRef")
            where = ref.get("name") if ref else owner
            name = ref.get("template") if ref else task.get("template")
            if where is None or (where, name) in seen or where not in library:
                continue
            seen.add((where, name))
            own = _templates_of(library[where])
            if name in own:
                out.append((where, own[name]))
                queue.append((where, own[name]))
    return out


def reference_errors(manifest: dict, library: Library | None = None) -> list[str]:
    """Argo's structural rules (avfleet.workflows.rules), and template references, task
    dependencies and parameter references that do not resolve.

    With a library (the WorkflowTemplates of the cluster), templateRefs are checked too: the
    template exists, gets its inputs, and every workflow parameter it uses is declared here
    (a referenced template reads the *calling* workflow's parameters).
    """
    from avfleet.workflows.rules import rule_errors

    spec = workflow_spec(manifest)
    templates = _templates_of(manifest)
    declared_params = spec.get("arguments", {}).get("parameters")
    # With no declared arguments at all, parameters come from the submitter (or an event binding).
    workflow_params = {p["name"] for p in declared_params} if declared_params is not None else None
    errors = rule_errors(manifest)  # what Argo's own validation rejects (workflows/rules.py)
    entry = spec.get("entrypoint")
    if entry and entry not in templates and "workflowTemplateRef" not in spec:
        errors.append(f"entrypoint {entry!r} is not a template")
    for name, template in templates.items():
        inputs = {p["name"] for p in template.get("inputs", {}).get("parameters", [])}
        tasks = template.get("dag", {}).get("tasks", []) or [
            s for group in template.get("steps", []) for s in group
        ]
        task_names = {t["name"] for t in tasks}

        for task in tasks:
            ref = task.get("template")
            if ref is None and "templateRef" not in task and "inline" not in task:
                errors.append(f"template {name!r} task {task['name']!r} names no template")
            if ref and ref not in templates:
                errors.append(
                    f"template {name!r} task {task['name']!r} calls unknown template {ref!r}"
                )
            tref = task.get("templateRef")
            if tref and library is not None and _called(task, templates, library) is None:
                errors.append(
                    f"task {task['name']!r}: templateRef {tref.get('name')}/{tref.get('template')} "
                    "does not exist"
                )
            for dep in task_dependencies(task):
                if dep not in task_names:
                    errors.append(
                        f"template {name!r} task {task['name']!r} depends on unknown task {dep!r}"
                    )
            called = _called(task, templates, library) or {}
            declared = {p["name"] for p in called.get("inputs", {}).get("parameters", [])}
            given = {p["name"] for p in task.get("arguments", {}).get("parameters", [])}
            for missing in declared - given:
                if not any(
                    p["name"] == missing and ("value" in p or "default" in p)
                    for p in called.get("inputs", {}).get("parameters", [])
                ):
                    errors.append(
                        f"task {task['name']!r} does not pass input {missing!r} of template "
                        f"{ref or task.get('templateRef', {}).get('template')!r}"
                    )
            # Arguments the called template does not declare are ignored by Argo; not an error.
            task_fields = {
                k: v for k, v in task.items() if k in ("arguments", "when", "withParam", "depends")
            }
            errors += _check_fields(
                task_fields,
                f"task {task['name']!r}",
                workflow_params,
                inputs,
                task_names,
                templates,
                tasks,
                library,
            )
            if not any(k in task for k in ("withItems", "withParam", "withSequence")):
                errors += _item_outside_loop(task_fields, f"task {task['name']!r}")
        # metrics use their own variables ({{duration}}, {{status}}); outputs of a DAG name its tasks.
        body = {k: v for k, v in template.items() if k not in ("dag", "steps", "metrics")}
        errors += _item_outside_loop(body, f"template {name!r}")
        errors += _check_fields(
            body,
            f"template {name!r}",
            workflow_params,
            inputs,
            task_names,
            templates,
            tasks,
            library,
        )
    if library is not None and workflow_params is not None:
        for owner, template in referenced_templates(manifest, library):
            for token in _tokens(yaml.safe_dump(template)):
                parts = token.split(".")
                if parts[:2] == ["workflow", "parameters"] and len(parts) == 3:
                    if parts[2] not in workflow_params:
                        errors.append(
                            f"templateRef {owner}/{template['name']} uses workflow parameter "
                            f"{parts[2]!r}, which this workflow does not declare"
                        )
    return errors


def _item_outside_loop(fields: dict, where: str) -> list[str]:
    """{{item}} exists only in a task or step that loops (withItems, withParam, withSequence)."""
    return [
        f"{where}: {{{{{token}}}}} outside a loop (no withItems, withParam or withSequence)"
        for token in _tokens(yaml.safe_dump(fields))
        if token == "item" or token.startswith("item.")
    ]


def unused_parameters(manifest: dict, library: Library | None = None) -> list[str]:
    """Workflow parameters declared but referenced nowhere (here, or in a template it reaches
    through templateRef): a value the submitter sets in vain."""
    spec = workflow_spec(manifest)
    declared = [p["name"] for p in spec.get("arguments", {}).get("parameters", [])]
    reached = [t for _, t in referenced_templates(manifest, library or {})]
    used = {
        token.split(".")[2]
        for token in _tokens(yaml.safe_dump([*spec.get("templates", []), *reached]))
        if token.startswith("workflow.parameters.") and token.count(".") == 2
    }
    return [name for name in declared if name not in used]


_DEPENDS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z]+)?")


def task_dependencies(task: dict) -> list[str]:
    """Task names a DAG task waits for, from `dependencies` or the names in a `depends` expression."""
    names = list(task.get("dependencies") or [])
    for token in _DEPENDS_NAME.findall(task.get("depends") or ""):
        names.append(token.split(".")[0])
    return names


def _check_fields(fields: dict, where: str, *scope: object) -> list[str]:
    """Check every {{...}} reference in `fields` (see `_check_token` for the scope)."""
    return [
        e
        for token in _tokens(yaml.safe_dump(fields))
        for e in _check_token(token, *scope, where=where)
    ]  # type: ignore[arg-type]


def _check_token(
    token: str,
    workflow_params: set[str] | None,
    inputs: set[str],
    task_names: set[str],
    templates: dict,
    tasks: list,
    library: Library | None,
    where: str,
) -> list[str]:
    parts = token.split(".")
    if parts[:2] == ["workflow", "parameters"] and len(parts) == 3:
        return (
            []
            if workflow_params is None or parts[2] in workflow_params or parts[2] == "json"
            else [f"{where}: unknown workflow parameter {parts[2]!r}"]
        )
    if parts[:2] == ["inputs", "parameters"] and len(parts) == 3:
        return [] if parts[2] in inputs else [f"{where}: undeclared input {parts[2]!r}"]
    if parts[0] in ("tasks", "steps") and len(parts) == 2:
        return []  # {{steps.name}}, {{tasks.name}}: the node's own name
    if parts[0] in ("tasks", "steps") and len(parts) >= 3:
        task = next((t for t in tasks if t["name"] == parts[1]), None)
        if task is None:
            return [f"{where}: reference to unknown task {parts[1]!r}"]
        if len(parts) >= 5 and parts[2:4] == ["outputs", "parameters"]:
            called = _called(task, templates, library)
            if called is None:
                return []  # a templateRef checked against its library elsewhere
            outputs = {p["name"] for p in called.get("outputs", {}).get("parameters", [])}
            return (
                []
                if parts[4] in outputs or not outputs and not task.get("template")
                else [f"{where}: task {parts[1]!r} has no output parameter {parts[4]!r}"]
            )
        return []  # outputs.result, artifacts, exitCode, ip, status: Argo's own fields
    if parts[0] in (
        "workflow",
        "item",
        "pod",
        "retries",
        "node",
        "lastRetry",
        "inputs",
        "outputs",
        "cronworkflow",
    ) or parts[0].startswith("="):
        return []
    return [f"{where}: unresolvable reference {{{{{token}}}}}"]
