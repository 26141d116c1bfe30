"""The `train` WorkflowTemplate: dataset -> DPE ensemble and deployable net (PyTorchJobs) -> evaluation.

    dataset            avfleet dataset build (ranged fetches, labels) -> dataset-uri
    train-ensemble     PyTorchJob: E members jointly with the DPE regulariser (mining uses it)
    train-deployable   PyTorchJob: one over-parameterised net with group sparsity, then pruned
    evaluate-*         mIoU overall and per domain on the held-out dataset

Each PyTorchJob runs N nodes x G GPUs under torchrun (through avfleet.train.launch)
with an elastic policy: torchrun restarts the whole worker group when any worker fails
(maxRestarts), and training resumes from the newest complete checkpoint. The launcher
ends a replica with 203 for a transient failure (or a worker killed: OOM, preemption)
and with 65/70/78 for a permanent one; Kubeflow's restartPolicy ExitCode restarts the
pod on 128-255 only (up to backoffLimit), so bad input or config is not retried.
"""

from __future__ import annotations

import textwrap

from hera.workflows import DAG, Container, Resource, WorkflowTemplate

from avfleet.core.cliopts import field_doc
from avfleet.core.metrics import MetricsConfig
from avfleet.dataset.build import DatasetConfig
from avfleet.train.config import TrainConfig
from avfleet.workflows import common as c

NAME = "train"
SIZE = {
    "nodes": ("2", "PyTorchJob nodes (pods)"),
    "gpus-per-node": ("8", "GPUs each node's pod asks for (nvidia.com/gpu); 0 on CPU nodes"),
    "procs-per-node": ("8", "training processes per node (torchrun): one per GPU, or gloo on CPU"),
    "cpu-per-node": ("8", "CPUs each node's pod asks for (a Kubernetes quantity)"),
    "memory-per-node": ("64Gi", "memory each node's pod asks for and may use (a quantity)"),
}
"""A PyTorchJob's size and each node's pod's resources (pytorchjob_manifest)."""
# Descriptions of what TrainConfig and DatasetConfig document are their fields' docstrings.
PARAMETERS = {
    "index": ("s3://avfleet-data/index", field_doc(DatasetConfig, "index_uri")),
    "frames": ("random:2000", field_doc(DatasetConfig, "selection")),
    "labels": (
        "s3://avfleet-data/labels/latest.parquet",
        "labeling tool export (frame_id, mask_png)",
    ),
    "datasets": ("s3://avfleet-data/datasets", field_doc(DatasetConfig, "out_uri")),
    "runs": ("s3://avfleet-data/runs", "training runs root"),
    "heldout": ("s3://avfleet-data/datasets/heldout", "held-out dataset version (evaluation)"),
    "run-name": ("nightly", "name of this training run"),
    "members": ("4", field_doc(TrainConfig, "members")),
    "epochs": ("20", field_doc(TrainConfig, "epochs")),
    **SIZE,
    "group-sparsity": ("0.05", field_doc(TrainConfig, "group_sparsity")),
    "dpe-strength": ("0.02", field_doc(TrainConfig, "dpe_strength")),
    "pseudo-label-weight": ("0.5", field_doc(TrainConfig, "pseudo_label_weight")),
    "low-rank": ("0", field_doc(TrainConfig, "low_rank")),
    "finetune-epochs": ("4", field_doc(TrainConfig, "finetune_epochs")),
    "target-latency-ms": ("0", field_doc(TrainConfig, "target_latency_ms")),
    "target-params": ("0", field_doc(TrainConfig, "target_params")),
    "latency-lut": ("", field_doc(TrainConfig, "latency_lut_uri")),
    "expand-ratio": ("1", field_doc(TrainConfig, "expand_ratio")),
    "width": ("2.0", field_doc(TrainConfig, "width")),
    "pushgateway": (
        "prometheus-pushgateway.monitoring:9091",
        field_doc(MetricsConfig, "pushgateway_url"),
    ),
    "image": (c.DEFAULT_IMAGE, "avfleet image (CLI steps)"),
    "train-image": (c.DEFAULT_TRAIN_IMAGE, "avfleet training image (CUDA, NCCL)"),
}


DEPLOYABLE_ONLY = (
    "group-sparsity",
    "low-rank",
    "finetune-epochs",
    "width",
    "target-latency-ms",
    "target-params",
    "latency-lut",
    "expand-ratio",
)
"""Parameters of the deployable net alone (workflows that train only the ensemble leave them)."""


def dataset_template() -> Container:
    w = c.workflow_parameter
    args = [
        "dataset",
        "build",
        "--index",
        w("index"),
        "--frames",
        w("frames"),
        "--out",
        w("datasets"),
        "--labels",
        w("labels"),
    ]
    return c.cli_step(
        "build-dataset",
        [*args, "--outputs-dir", c.OUTPUTS_DIR],
        outputs=["dataset-uri"],
        deadline_s=6 * 3600,
    )


RESTART_POLICY = "ExitCode"
"""Kubeflow restarts a replica whose exit code is 128-255 (avfleet.train.launch's 203 for a
transient failure), never one of 1-127 (65/70/78: permanent)."""
BACKOFF_LIMIT = 3
"""Pod restarts Kubeflow makes before it fails the job."""
LAUNCH = ["python3", "-m", "avfleet.train.launch"]
"""A replica's command before its script: torchrun under avfleet's exit-code launcher."""


def pytorchjob_manifest(
    kind: str, args: list[str], *, script: str = "train.py", run_label: str | None = None
) -> str:
    """A Kubeflow PyTorchJob (kubeflow.org/v1) running jobs/<script> under torchrun.

    Its size comes from the workflow's SIZE parameters (nodes, GPUs, processes, CPUs and
    memory per node) and the template's `worker-replicas` input (plan-train), its image from
    `train-image`; its pods take the S3 settings from the optional Secret `c.S3_ENV_SECRET`.
    """
    w, i = c.workflow_parameter, c.input_parameter
    run_label = run_label or w("run-name")
    command = "\n".join(
        f'                - "{a}"' for a in [*LAUNCH, f"{c.IMAGE_ROOT}/jobs/{script}", *args]
    )
    replica = textwrap.dedent(
        f"""\
        replicas: REPLICAS
        restartPolicy: {RESTART_POLICY}
        template:
          metadata:
            labels:
              app.kubernetes.io/part-of: avfleet
              {c.ROLE}: train
          spec:
            serviceAccountName: {c.TRAIN_SERVICE_ACCOUNT}
            automountServiceAccountToken: false  # training never talks to the API server
            securityContext:
        POD_SECURITY
            containers:
              - name: pytorch
                image: "{w("train-image")}"
                command:
        {{COMMAND}}
        ENV_FROM
                env:
                  - name: NCCL_DEBUG
                    value: WARN
                  - name: NCCL_IB_DISABLE
                    value: "0"
                  - name: NCCL_SOCKET_IFNAME
                    value: eth0
                  - name: NCCL_ASYNC_ERROR_HANDLING
                    value: "1"
                resources:
                  limits:
                    nvidia.com/gpu: {c.as_int(w("gpus-per-node"))}
                    memory: "{w("memory-per-node")}"
                  requests:
                    cpu: "{w("cpu-per-node")}"
                    memory: "{w("memory-per-node")}"
                securityContext:
        CONTAINER_SECURITY
                volumeMounts:
                  - name: dshm  # NCCL's shared-memory transport between the node's ranks
                    mountPath: /dev/shm
                  - name: tmp
                    mountPath: /tmp
            volumes:
              - name: tmp
                emptyDir:
                  sizeLimit: 8Gi
              - name: dshm
                emptyDir:
                  medium: Memory
        """
    ).replace("{COMMAND}", command)
    replica = replica.replace(
        "POD_SECURITY\n", textwrap.indent(c.POD_SECURITY_YAML, "      ")
    ).replace("CONTAINER_SECURITY\n", textwrap.indent(c.CONTAINER_SECURITY_YAML, "          "))
    replica = replica.replace("ENV_FROM\n", textwrap.indent(c.S3_ENV_FROM_YAML, "        "))
    master = textwrap.indent(replica.replace("REPLICAS", "1"), "      ")
    worker = textwrap.indent(replica.replace("REPLICAS", "NODES_MINUS_ONE"), "      ")
    return c.harden(
        textwrap.dedent(
            f"""\
            apiVersion: kubeflow.org/v1
            kind: PyTorchJob
            metadata:
              generateName: {kind}-
              labels:
                app.kubernetes.io/part-of: avfleet
                avfleet.io/run: "{run_label}"
            spec:
              runPolicy:
                cleanPodPolicy: Running
                backoffLimit: {BACKOFF_LIMIT}
                ttlSecondsAfterFinished: 86400
              elasticPolicy:
                rdzvBackend: c10d
                minReplicas: {c.as_int(w("nodes"))}
                maxReplicas: {c.as_int(w("nodes"))}
                nProcPerNode: {c.as_int(w("procs-per-node"))}
                maxRestarts: 3
              pytorchReplicaSpecs:
                Master:
            MASTER
                Worker:
            WORKER
            """
        )
        .replace("MASTER", master.rstrip("\n"))
        .replace("WORKER", worker.rstrip("\n"))
        .replace("NODES_MINUS_ONE", c.as_int(i("worker-replicas")))
    )


def pytorchjob_resource(
    name: str, manifest: str, inputs: tuple[str, ...] = ("dataset-uri", "worker-replicas")
) -> Resource:
    """A resource template that creates a PyTorchJob and waits for its Master to finish."""
    return c.resource_step(
        name,
        manifest,
        list(inputs),
        success="status.replicaStatuses.Master.succeeded > 0",
        failure="status.replicaStatuses.Master.failed > 0",
        deadline_s=40 * 3600,
    )


def pytorchjob_template(kind: str, train_args: list[str]) -> Resource:
    w, i = c.workflow_parameter, c.input_parameter
    out = f"{w('runs')}/{w('run-name')}/{kind}"
    args = ["--dataset", i("dataset-uri"), "--out", out, "--pushgateway", w("pushgateway")]
    args += train_args
    return pytorchjob_resource(f"train-{kind}", pytorchjob_manifest(f"train-{kind}", args))


def evaluate_template() -> Container:
    w, i = c.workflow_parameter, c.input_parameter
    args = [
        "evaluate",
        "--model",
        i("model-uri"),
        "--dataset",
        w("heldout"),
        "--outputs-dir",
        c.OUTPUTS_DIR,
    ]
    return c.cli_step("evaluate", args, inputs=["model-uri"], outputs=["miou"])


def ensemble_args() -> list[str]:
    w = c.workflow_parameter
    return [
        *("--members", w("members"), "--dpe-strength", w("dpe-strength")),
        *("--pseudo-label-weight", w("pseudo-label-weight"), "--epochs", w("epochs")),
    ]


def plan_train_template() -> Container:
    return c.cli_step(
        "plan-train",
        [
            "step",
            "plan-train",
            "--nodes",
            c.workflow_parameter("nodes"),
            "--outputs-dir",
            c.OUTPUTS_DIR,
        ],
        outputs=["worker-replicas"],
    )


def build() -> WorkflowTemplate:
    w = c.workflow_parameter
    deployable_args = [
        "--members",
        "1",
        "--width",
        w("width"),
        "--group-sparsity",
        w("group-sparsity"),
        "--low-rank",
        w("low-rank"),
        "--epochs",
        w("epochs"),
        "--finetune-epochs",
        w("finetune-epochs"),
        "--target-latency-ms",
        w("target-latency-ms"),
        "--target-params",
        w("target-params"),
        "--latency-lut",
        w("latency-lut"),
        "--expand-ratio",
        w("expand-ratio"),
    ]
    with c.workflow_template(
        NAME,
        "Build a dataset, train the DPE ensemble and the pruned deployable net, evaluate both.",
        PARAMETERS,
        48 * 3600,
    ) as wt:
        dataset = dataset_template()
        ensemble = pytorchjob_template("ensemble", ensemble_args())
        deployable = pytorchjob_template("deployable", deployable_args)
        evaluate = evaluate_template()
        plan = plan_train_template()
        with DAG(name="main"):
            data_task = dataset(name="dataset")
            plan_task = plan(name="plan")
            args = {
                "dataset-uri": data_task.get_parameter("dataset-uri"),
                "worker-replicas": plan_task.get_parameter("worker-replicas"),
            }
            ens = ensemble(name="train-ensemble", arguments=args)
            dep = deployable(name="train-deployable", arguments=args)
            run = f"{w('runs')}/{w('run-name')}"
            eval_ens = evaluate(
                name="evaluate-ensemble", arguments={"model-uri": f"{run}/ensemble/model"}
            )
            eval_dep = evaluate(
                name="evaluate-deployable", arguments={"model-uri": f"{run}/deployable/model"}
            )
            [data_task, plan_task] >> ens >> eval_ens
            [data_task, plan_task] >> dep >> eval_dep
    return wt
