"""The `deploy` WorkflowTemplate: export -> build -> bench validation -> promote.

    export     avfleet deploy export: ONNX + parity with PyTorch + the bench's bundle
    build      avfleet deploy build: the engine for this cluster's runtime (cached); a
               model that does not compile fails here, before it takes a scarce bench
    validate   a BenchValidation resource; the bench operator leases it a Xavier, whose
               agent builds the engine on the device and measures it; the step waits for
               status.phase (Succeeded, or Rejected / Failed)
    promote    avfleet deploy promote: the gates again, the Triton repository version that
               mining reads, then the registry pointer (one promotion at a time: an
               Argo mutex, and a compare-and-swap on the pointer)

The deploy workflow's gates are the reviewed promotion policy
(avfleet/deploy/promotion-policy.yaml), written into the BenchValidation when
the template is rendered: no submitter parameter loosens a gate. The NAS map
job, which promotes nothing, takes its candidates' gates as parameters.

The local executor runs the validation step through a bench agent on localhost
(ONNX Runtime) with the same operator logic.
"""

from __future__ import annotations

import dataclasses
import textwrap

from hera.workflows import DAG, Container, Resource, WorkflowTemplate
from hera.workflows.models import Mutex, Synchronization

from avfleet.workflows import common as c

NAME = "deploy"
PROMOTION_MUTEX = "avfleet-promotion"
GATES = {
    "latency-p99-ms": ("50", "gate: p99 latency budget on the bench, ms"),
    "max-abs-error": ("0.05", "gate: max absolute logit error vs the framework model"),
    "min-argmax-agreement": ("0.99", "gate: share of pixels with the framework model's class"),
    "max-miou-drop": ("0.01", "gate: largest mIoU drop vs the framework model (0.01 = 1 point)"),
}
"""The NAS candidates' gates (parameters there: a candidate is measured, never promoted)."""
PARAMETERS = {
    "model-uri": ("s3://avfleet-data/runs/nightly/deployable/model", "the trained model to deploy"),
    "validation": ("s3://avfleet-data/datasets/heldout", "dataset the bench scores"),
    "releases": ("s3://avfleet-data/releases", "release folders (ONNX, bundle, reports)"),
    "engine-cache": ("s3://avfleet-data/engines", "engine cache of the build step"),
    "runtime": ("onnxruntime", "the build step's engine runtime (onnxruntime or tensorrt)"),
    "precision": ("fp32", "the build step's precision"),
    "bench-target": ("xavier-agx-jp5", "which benches may validate (XavierBench spec.target)"),
    "bench-precision": ("fp16", "precision of the engine built on the bench"),
    "bench-runs": ("500", "timed runs on the bench after warm-up"),
    "bench-warmup": ("50", "untimed warm-up runs on the bench"),
    "registry": ("s3://avfleet-data/registry", "model registry (promotion pointer)"),
    "model-repo": ("s3://avfleet-data/models/triton", "Triton model repository mining reads"),
    "model-name": ("dpe-scorer", "model name mining scores with"),
    "s3-endpoint-url": ("", "S3 endpoint override ('' = AWS)"),
    "pushgateway": (
        "prometheus-pushgateway.monitoring:9091",
        "Pushgateway the promote step pushes its verdict to; '': none",
    ),
    "triton-url": (
        "grpc://triton.avfleet.svc.cluster.local:8001",
        "the serving Triton, told to load the promoted version before the pointer moves; '': none",
    ),
    "triton-instance-kind": c.TRITON_INSTANCE_KIND,
    "image": (c.DEFAULT_IMAGE, "avfleet image"),
}


def report_uri() -> str:
    """Where the operator writes this run's bench report (the promote step reads it)."""
    return f"{c.input_parameter('release-uri')}/bench/{{{{workflow.name}}}}.json"


def export_template(
    name: str = "export",
    model: str = c.workflow_parameter("model-uri"),
    releases: str = c.workflow_parameter("releases"),
    inputs: tuple[str, ...] = (),
) -> Container:
    """avfleet deploy export of `model` into a release under `releases` (the deploy workflow's
    parameters by default; map jobs pass each item's folders)."""
    args = [
        "deploy",
        "export",
        "--model",
        model,
        "--validation",
        c.workflow_parameter("validation"),
    ]
    args += ["--releases", releases, "--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()]
    return c.cli_step(name, args, inputs=list(inputs), outputs=["release-uri", "reference-miou"])


def build_template() -> Container:
    w, i = c.workflow_parameter, c.input_parameter
    args = ["deploy", "build", "--release", i("release-uri"), "--cache", w("engine-cache")]
    args += ["--runtime", w("runtime"), "--precision", w("precision")]
    args += ["--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()]
    return c.cli_step("build", args, inputs=["release-uri"], outputs=["engine-key"])


def bench_validation_manifest(gates: dict[str, str] | None = None) -> str:
    """A BenchValidation (avfleet.dev/v1alpha1) for the bench operator; `gates` maps each gate
    to its value in the manifest (default: the promotion policy's, as literals)."""
    w, i = c.workflow_parameter, c.input_parameter
    if gates is None:
        from avfleet.deploy.registry import promotion_policy

        gates = {k: f"{v:g}" for k, v in dataclasses.asdict(promotion_policy()).items()}
    return c.harden(
        textwrap.dedent(
            f"""\
        apiVersion: avfleet.dev/v1alpha1
        kind: BenchValidation
        metadata:
          generateName: validate-
          labels:
            app.kubernetes.io/part-of: avfleet
            avfleet.io/workflow: "{{{{workflow.name}}}}"
        spec:
          modelUri: "{i("release-uri")}/model.onnx"
          bundleUri: "{i("release-uri")}/bundle.npz"
          reportUri: "{report_uri()}"
          target: "{w("bench-target")}"
          precision: "{w("bench-precision")}"
          warmup: {c.as_int(w("bench-warmup"))}
          runs: {c.as_int(w("bench-runs"))}
          referenceMiou: {c.as_float(i("reference-miou"))}
          maxAttempts: 3
          gates:
            latency_p99_ms: {gates["latency_p99_ms"]}
            max_abs_error: {gates["max_abs_error"]}
            min_argmax_agreement: {gates["min_argmax_agreement"]}
            max_miou_drop: {gates["max_miou_drop"]}
        """
        )
    )


def validate_template(gates: dict[str, str] | None = None) -> Resource:
    """The bench operator retries a validation on another bench itself (maxAttempts, its
    timeout); Rejected (a gate failed) and Failed (attempts spent) are final."""
    return c.resource_step(
        "bench-validation",
        bench_validation_manifest(gates),
        ["release-uri", "reference-miou"],
        success="status.phase == Succeeded",
        failure="status.phase in (Rejected,Failed)",
        deadline_s=2 * 3600,
    )


def promote_template() -> Container:
    w, i = c.workflow_parameter, c.input_parameter
    args = ["deploy", "promote", "--release", i("release-uri"), "--report", report_uri()]
    args += ["--registry", w("registry"), "--repo", w("model-repo"), "--name", w("model-name")]
    args += ["--pushgateway", w("pushgateway"), "--triton-url", w("triton-url")]
    args += ["--instance-kind", w("triton-instance-kind")]
    args += ["--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()]
    step = c.cli_step("promote", args, inputs=["release-uri"], outputs=["release-id", "model-ref"])
    # One promotion at a time in the namespace (the pointer's compare-and-swap backs it up).
    step.synchronization = Synchronization(mutexes=[Mutex(name=PROMOTION_MUTEX)])
    return step


def build() -> WorkflowTemplate:
    with c.workflow_template(
        NAME,
        "Export a trained model, build its engine, validate it on a Xavier bench, promote it.",
        PARAMETERS,
        6 * 3600,
    ) as wt:
        export, build_engine = export_template(), build_template()
        validate, promote = validate_template(), promote_template()
        with DAG(name="main"):
            export_task = export(name="export")
            release = {"release-uri": export_task.get_parameter("release-uri")}
            build_task = build_engine(name="build", arguments=release)
            validate_task = validate(
                name="validate",
                arguments={
                    **release,
                    "reference-miou": export_task.get_parameter("reference-miou"),
                },
            )
            promote_task = promote(name="promote", arguments=release)
            export_task >> build_task >> validate_task >> promote_task
    return wt
