"""Pieces every avfleet workflow shares: image, retries, security, outputs convention.

Conventions the local executor relies on too:
* steps write output parameters as files under OUTPUTS_DIR (`valueFrom.path`);
* the image holds the repository at IMAGE_ROOT (jobs/ at IMAGE_ROOT/jobs);
* a step exits 75 (ExitCode.TRANSIENT) for failures worth retrying.

The failure contract (docs/operations.md): a transient failure is retried and a permanent
one is not, by whichever controller runs the work. A container step: Argo's retryStrategy,
on exit 75. A resource step (SparkApplication, PyTorchJob, BenchValidation): the resource's
own controller retries what it runs, by its own rules (the spark-operator's OnFailure
restarts, Kubeflow's ExitCode restart policy, the bench operator's attempts), and the Argo
step retries only its own infrastructure failing (phase Error: the API server, an evicted
executor pod), never a resource that failed. Every resource step has a deadline.
"""

from __future__ import annotations

import re

from hera.workflows import (
    Container,
    Counter,
    Gauge,
    Histogram,
    Label,
    Metrics,
    Parameter,
    Resource,
    RetryStrategy,
    WorkflowTemplate,
)
from hera.workflows.models import (
    Backoff,
    Capabilities,
    EmptyDirVolumeSource,
    EnvFromSource,
    EnvVar,
    EnvVarSource,
    Metadata,
    Mutex,
    PodGC,
    PodSecurityContext,
    ResourceRequirements,
    SeccompProfile,
    SecretEnvSource,
    SecretKeySelector,
    SecurityContext,
    Synchronization,
    TTLStrategy,
    ValueFrom,
    Volume,
    VolumeMount,
)

from avfleet.core import storage
from avfleet.core.errors import ExitCode

IMAGE_ROOT = "/opt/avfleet"
OUTPUTS_DIR = "/tmp/outputs"
DEFAULT_IMAGE = "ghcr.io/avfleet/avfleet:0.1.0"
DEFAULT_SPARK_IMAGE = "ghcr.io/avfleet/avfleet-spark:0.1.0"
DEFAULT_TRAIN_IMAGE = "ghcr.io/avfleet/avfleet-train:0.1.0"
TRITON_INSTANCE_KIND = (
    "KIND_GPU",
    "where Triton runs the versions this workflow publishes: KIND_GPU, or KIND_CPU where it "
    "has no GPU (a site value: avfleet-site's triton-instance-kind)",
)
"""The parameter of every workflow that publishes to the model repository."""
WORKFLOW_SERVICE_ACCOUNT = "avfleet-workflow"
SPARK_SERVICE_ACCOUNT = "avfleet-spark"
SPARK_EXECUTOR_SERVICE_ACCOUNT = "avfleet-spark-executor"
TRAIN_SERVICE_ACCOUNT = "avfleet-train"
UID = 10001
"""The images' non-root user (images/*.Dockerfile); a high UID never maps to a host account."""
ROLE = "avfleet.io/role"
"""Pod label the NetworkPolicies select on (manifests/base/network-policies.yaml)."""
LABELS = {"app.kubernetes.io/part-of": "avfleet"}

# Retry a step only when it says the failure may pass (exit 75), or when Kubernetes
# failed it (phase Error: eviction, preemption, node loss). Bad input is not retried.
RETRY_EXPRESSION = (
    f'asInt(lastRetry.exitCode) == {int(ExitCode.TRANSIENT)} || lastRetry.status == "Error"'
)


def retry_on_transient(limit: int = 3) -> RetryStrategy:
    return _retry(limit, RETRY_EXPRESSION, first_delay="30s")


def _retry(limit: int, expression: str, first_delay: str) -> RetryStrategy:
    return RetryStrategy(
        limit=limit,
        retry_policy="Always",
        expression=expression,
        backoff=Backoff(duration=first_delay, factor=2, max_duration="10m"),
    )


RESOURCE_RETRY_EXPRESSION = 'lastRetry.status == "Error"'
"""A resource step is retried only when Argo's own part failed (phase Error); a resource
that failed (phase Failed) was already retried by its controller as far as it should be."""


def retry_on_error(limit: int = 2) -> RetryStrategy:
    return _retry(limit, RESOURCE_RETRY_EXPRESSION, first_delay="1m")


def resource_step(
    name: str,
    manifest: str,
    inputs: list[str],
    *,
    success: str,
    failure: str,
    deadline_s: int,
    mutex: str | None = None,
) -> Resource:
    """A resource template that creates `manifest` (owned by the workflow, deleted with it)
    and waits for its success or failure condition, for at most `deadline_s`."""
    return Resource(
        name=name,
        inputs=[Parameter(name=n) for n in inputs],
        action="create",
        set_owner_reference=True,
        manifest=manifest,
        success_condition=success,
        failure_condition=failure,
        retry_strategy=retry_on_error(),
        active_deadline_seconds=deadline_s,
        synchronization=Synchronization(mutexes=[Mutex(name=mutex)]) if mutex else None,
        metrics=step_metrics(name),
    )


def step_metrics(template: str) -> object:
    """Argo `metrics.prometheus` on a template: how long it took and how it ended, per
    workflow template and step template (served by the workflow-controller's /metrics)."""
    labels = [Label(key="template", value=template)]
    return Metrics(
        metrics=[
            Histogram(
                name="avfleet_step_duration_seconds",
                help="Duration of an avfleet workflow step, by template",
                labels=labels,
                buckets=[10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 48 * 3600],
                value="{{duration}}",
            ),
            Counter(
                name="avfleet_step_results_total",
                help="avfleet workflow steps that ended, by template and status",
                labels=[*labels, Label(key="status", value="{{status}}")],
                value="1",
            ),
        ]
    )


def workflow_metrics(workflow: str) -> object:
    labels = [Label(key="workflow", value=workflow)]
    return Metrics(
        metrics=[
            Counter(
                name="avfleet_workflow_results_total",
                help="avfleet workflows that ended, by workflow template and status",
                labels=[*labels, Label(key="status", value="{{workflow.status}}")],
                value="1",
            ),
            Gauge(
                name="avfleet_workflow_duration_seconds",
                help="Duration of the last avfleet workflow run, by workflow template",
                labels=labels,
                realtime=False,
                value="{{workflow.duration}}",
            ),
        ]
    )


def output_parameter(name: str) -> Parameter:
    return Parameter(name=name, value_from=ValueFrom(path=f"{OUTPUTS_DIR}/{name}"))


def workflow_parameter(name: str) -> str:
    return f"{{{{workflow.parameters.{name}}}}}"


def input_parameter(name: str) -> str:
    return f"{{{{inputs.parameters.{name}}}}}"


_PLAIN_TAG = re.compile(r"\{\{\s*([A-Za-z][\w.-]*)\s*\}\}")
_QUOTED = re.compile(r'"([^"\n]*\{\{[^"\n]*)"')


def _expr_ref(name: str) -> str:
    """workflow.parameters.x -> workflow.parameters['x'] (expr-lang: hyphens are minus signs)."""
    for scope in ("workflow.parameters.", "inputs.parameters."):
        if name.startswith(scope):
            return f"{scope[:-1]}[{name[len(scope) :]!r}]"
    if name in ("workflow.name", "workflow.namespace", "workflow.uid"):
        return name
    raise ValueError(f"{name}: not a parameter a manifest may use")


def as_int(tag: str) -> str:
    """`{{workflow.parameters.x}}` as an integer in a manifest: Argo's asInt fails the step on
    anything else, so a value never becomes YAML structure."""
    return f"{{{{=asInt({_expr_ref(_PLAIN_TAG.fullmatch(tag).group(1))})}}}}"


def as_float(tag: str) -> str:
    return f"{{{{=asFloat({_expr_ref(_PLAIN_TAG.fullmatch(tag).group(1))})}}}}"


def harden(manifest: str) -> str:
    """A resource manifest in which no parameter value can become structure.

    Argo pastes `{{...}}` values into a resource manifest's text before parsing it,
    so a value holding a newline and `  volumes:` adds keys (a hostPath volume in
    the SparkApplication). Here every double-quoted scalar that holds tags becomes
    one `{{=toJson(...)}}` expression tag: Argo renders it as a JSON string, which
    YAML reads back as exactly that string, newlines and quotes included. Numbers
    go through `as_int` / `as_float`. A plain tag left anywhere else is a bug here.
    """

    def quoted(match: re.Match[str]) -> str:
        text, terms, at = match.group(1), [], 0
        for tag in _PLAIN_TAG.finditer(text):
            if tag.start() > at:
                terms.append(repr(text[at : tag.start()]))
            terms.append(_expr_ref(tag.group(1)))
            at = tag.end()
        if at < len(text):
            terms.append(repr(text[at:]))
        return f"{{{{=toJson({' + '.join(terms)})}}}}"

    out = _QUOTED.sub(quoted, manifest)
    left = _PLAIN_TAG.findall(out)
    if left:
        raise ValueError(f"unquoted parameters in a resource manifest: {left}")
    return out


def pod_security() -> PodSecurityContext:
    """Pod Security "restricted" at pod level: non-root, the runtime's default seccomp profile."""
    return PodSecurityContext(
        run_as_non_root=True,
        run_as_user=UID,
        run_as_group=UID,
        fs_group=UID,
        seccomp_profile=SeccompProfile(type="RuntimeDefault"),
    )


POD_SECURITY_YAML = f"""\
runAsNonRoot: true
runAsUser: {UID}
runAsGroup: {UID}
fsGroup: {UID}
seccompProfile:
  type: RuntimeDefault
"""
"""`pod_security` as the text resource manifests (SparkApplication, PyTorchJob) embed."""

CONTAINER_SECURITY_YAML = """\
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
"""
"""`container_security` as text, likewise."""


def container_security() -> SecurityContext:
    return SecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=Capabilities(drop=["ALL"]),
    )


def scratch_volume() -> tuple[Volume, VolumeMount]:
    """A writable /tmp on a read-only root filesystem (outputs, temp files)."""
    return Volume(name="tmp", empty_dir=EmptyDirVolumeSource(size_limit="1Gi")), VolumeMount(
        name="tmp", mount_path="/tmp"
    )


def small_resources() -> ResourceRequirements:
    return ResourceRequirements(
        requests={"cpu": "250m", "memory": "512Mi"}, limits={"cpu": "1", "memory": "1Gi"}
    )


S3_ENV_SECRET = storage.S3_ENV_SECRET


def s3_env_from() -> EnvFromSource:
    return EnvFromSource(secret_ref=SecretEnvSource(name=S3_ENV_SECRET, optional=True))


S3_ENV_FROM_YAML = f"""\
envFrom:
  - secretRef:
      name: {S3_ENV_SECRET}
      optional: true
"""
"""`s3_env_from` as the text resource manifests (SparkApplication, PyTorchJob) embed."""


def bench_token_env() -> EnvVar:
    """$AVFLEET_BENCH_TOKEN for a step that talks to a bench agent itself (not through the
    operator): the token of the one bench such steps use, in the fixed Secret
    avfleet-profile-bench-token (never a parameter: a submitter must not pick which Secret a
    pod reads). Optional: without the Secret it is unset and the step measures in its pod."""
    return EnvVar(
        name="AVFLEET_BENCH_TOKEN",
        value_from=EnvVarSource(
            secret_key_ref=SecretKeySelector(
                name="avfleet-profile-bench-token", key="token", optional=True
            )
        ),
    )


def cli_step(
    name: str,
    args: list[str],
    *,
    inputs: list[str] = (),
    outputs: list[str] = (),
    env: list[EnvVar] = (),
    deadline_s: int = 2 * 3600,
) -> Container:
    """A container template that runs one `avfleet` subcommand in the CLI image.

    Retried on the transient exit code, a deadline per attempt, small resources,
    read-only root with a writable /tmp, outputs written under OUTPUTS_DIR.
    """
    volume, mount = scratch_volume()
    return Container(
        env=list(env) or None,
        env_from=[s3_env_from()],
        name=name,
        image=workflow_parameter("image"),
        inputs=[Parameter(name=n) for n in inputs] or None,
        command=["avfleet"],
        args=args,
        outputs=[output_parameter(n) for n in outputs] or None,
        retry_strategy=retry_on_transient(),
        active_deadline_seconds=deadline_s,
        metrics=step_metrics(name),
        resources=small_resources(),
        security_context=container_security(),
        volumes=[volume],
        volume_mounts=[mount],
    )


ENUMS = {
    "runtime": ["onnxruntime", "tensorrt"],
    "precision": ["fp32", "fp16", "int8"],
    "bench-precision": ["fp32", "fp16", "int8"],
    "spark-launch": ["operator", "client"],
    # Images are not a submitter's choice: the one the release ships (an install overlay pins
    # it by digest, value and enum together).
    "image": [DEFAULT_IMAGE],
    "spark-image": [DEFAULT_SPARK_IMAGE],
    "train-image": [DEFAULT_TRAIN_IMAGE],
}
"""Closed sets: Argo refuses a submission with any other value (`enum`), as the local executor does."""


def parameters(declared: dict[str, tuple[str, str]]) -> list[Parameter]:
    """Workflow parameters from {name: (default value, description)}; closed sets get an enum."""
    return [
        Parameter(name=k, value=v, description=d, enum=ENUMS.get(k))
        for k, (v, d) in declared.items()
    ]


def storage_args() -> list[str]:
    """The CLI's storage flags, from the workflow's `s3-endpoint-url` parameter."""
    return ["--s3-endpoint-url", workflow_parameter("s3-endpoint-url")]


TTL = TTLStrategy(seconds_after_success=24 * 3600, seconds_after_failure=7 * 24 * 3600)
"""Finished workflows are deleted a day after success, a week after failure (time to look)."""
POD_GC = PodGC(strategy="OnPodSuccess", delete_delay_duration="10m")
"""Pods of steps that succeeded go 10 minutes after; failed ones stay for their logs until
the workflow itself is deleted (TTL)."""


def workflow_settings(
    name: str, description: str, parameters_: dict[str, tuple[str, str]], deadline_s: int
) -> dict:
    """What every avfleet workflow spec sets: labels, service account, pod security, `main`,
    a deadline, TTL and pod GC, metrics.

    `parameters_` maps each workflow parameter to (default value, description).
    """
    return {
        "labels": LABELS,
        "annotations": {"workflows.argoproj.io/description": description},
        "entrypoint": "main",
        "service_account_name": WORKFLOW_SERVICE_ACCOUNT,
        "security_context": pod_security(),
        "pod_metadata": Metadata(labels={**LABELS, ROLE: "workflow-step"}),
        "arguments": parameters(parameters_),
        "active_deadline_seconds": deadline_s,
        "ttl_strategy": TTL,
        "pod_gc": POD_GC,
        "metrics": workflow_metrics(name),
    }


def workflow_template(
    name: str, description: str, parameters_: dict[str, tuple[str, str]], deadline_s: int
) -> WorkflowTemplate:
    """An avfleet WorkflowTemplate (see `workflow_settings`)."""
    return WorkflowTemplate(
        name=name, **workflow_settings(name, description, parameters_, deadline_s)
    )
