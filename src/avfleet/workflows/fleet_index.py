"""The `fleet-index` WorkflowTemplate: plan -> Spark index job -> verify.

plan      counts the date's recordings and sizes the Spark job (output: executors)
index     a SparkApplication for the spark-operator running jobs/index_recordings.py
verify    checks the commit: every input indexed or quarantined exactly once

The three run as the `index-date` template (input: date), which `main` calls
with the workflow's date and other workflows call by
`templateRef: {name: fleet-index, template: index-date}` (`index_task`).
"""

from __future__ import annotations

import json
import textwrap

from hera.workflows import DAG, Container, Parameter, Resource, Task, WorkflowTemplate
from hera.workflows.models import (
    EnvVar,
    EnvVarSource,
    Mutex,
    ObjectFieldSelector,
    ResourceRequirements,
    Synchronization,
    TemplateRef,
    ValueFrom,
)

from avfleet.core.cliopts import field_doc
from avfleet.core.metrics import MetricsConfig
from avfleet.core.storage import StorageConfig
from avfleet.index import spark_k8s
from avfleet.index.job import IndexConfig
from avfleet.workflows import common as c

NAME = "fleet-index"
# Descriptions of what the job's config documents are its fields' docstrings (as --help's).
PARAMETERS = {
    "recordings": ("s3://avfleet-fleet/fleet", field_doc(IndexConfig, "recordings_uri")),
    "date": ("2026-11-20", field_doc(IndexConfig, "date")),
    "index": ("s3://avfleet-data/index", field_doc(IndexConfig, "out_uri")),
    "s3-endpoint-url": ("", field_doc(StorageConfig, "s3_endpoint_url")),
    "pushgateway": (
        "prometheus-pushgateway.monitoring:9091",
        field_doc(MetricsConfig, "pushgateway_url"),
    ),
    "image": (c.DEFAULT_IMAGE, "avfleet image (CLI steps)"),
    "spark-image": (c.DEFAULT_SPARK_IMAGE, "avfleet Spark image (driver and executors)"),
    "spark-launch": (
        "operator",
        "operator: a SparkApplication for the spark-operator; client: a step of the Spark image "
        "is the driver and Spark's own Kubernetes scheduler makes the executors (no operator)",
    ),
    "executor-cores": ("2", "task slots per Spark executor"),
    "executor-memory": ("4g", "Spark executor heap (Spark's size syntax)"),
    "executor-cpu": ("2", "CPU each executor pod asks for (a Kubernetes quantity)"),
}


INDEX_DATE = "index-date"
"""The template other workflows reference: plan -> index -> verify for its `date` input."""


def plan_template() -> Container:
    w = c.workflow_parameter
    args = [
        "step",
        "plan-index",
        "--recordings",
        w("recordings"),
        "--date",
        c.input_parameter("date"),
    ]
    return c.cli_step(
        "plan-index",
        [*args, "--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()],
        inputs=["date"],
        outputs=["num-files", "executors"],
    )


RESTART_POLICY = {
    "type": "OnFailure",
    "onFailureRetries": 2,
    "onFailureRetryInterval": 30,
    "onSubmissionFailureRetries": 3,
    "onSubmissionFailureRetryInterval": 30,
}
"""The spark-operator restarts a driver that exits non-zero: transient failures (exit 75).
A permanent one exits 0 with its outcome recorded (`outcome_uri`), so it is not restarted."""


def outcome_uri(date: str) -> str:
    """Where the index driver records a permanent failure for `verify-index` (core.outcome)."""
    return f"{c.workflow_parameter('index')}/_outcomes/{{{{workflow.name}}}}-{date}.json"


JOB = f"{c.IMAGE_ROOT}/jobs/index_recordings.py"


def job_args(date: str) -> list[str]:
    """jobs/index_recordings.py's arguments, whichever way Spark is launched."""
    w = c.workflow_parameter
    return [
        "--recordings",
        w("recordings"),
        "--date",
        date,
        "--index",
        w("index"),
        "--s3-endpoint-url",
        w("s3-endpoint-url"),
        "--pushgateway",
        w("pushgateway"),
        "--outcome",
        outcome_uri(date),
    ]


def spark_application_manifest(date: str) -> str:
    """The SparkApplication (spark-operator v1beta2) that runs the index job."""
    w, i = c.workflow_parameter, c.input_parameter
    arg_lines = "\n".join(f'    - "{a}"' for a in job_args(date))
    conf_lines = "\n".join(f'    {k}: "{v}"' for k, v in spark_k8s.SPARK_CONF.items())
    return c.harden(
        textwrap.dedent(
            f"""\
        apiVersion: sparkoperator.k8s.io/v1beta2
        kind: SparkApplication
        metadata:
          generateName: fleet-index-
          labels:
            app.kubernetes.io/part-of: avfleet
            avfleet.io/date: "{date}"
        spec:
          type: Python
          pythonVersion: "3"
          mode: cluster
          image: "{w("spark-image")}"
          imagePullPolicy: IfNotPresent
          mainApplicationFile: "local://{JOB}"
          arguments:
        {{ARGS}}
          sparkVersion: "3.5.3"
          sparkConf:
        {{CONF}}
          restartPolicy: {json.dumps(RESTART_POLICY)}
          volumes:
            - name: tmp
              emptyDir: {{sizeLimit: 4Gi}}
            - name: work
              emptyDir: {{sizeLimit: 1Gi}}
          driver:
            cores: 1
            memory: "2g"
            serviceAccount: {c.SPARK_SERVICE_ACCOUNT}
            labels:
              app.kubernetes.io/part-of: avfleet
              {c.ROLE}: spark
        POD_SECURITY
        VOLUME_MOUNTS
        ENV_FROM
          executor:
            cores: {c.as_int(w("executor-cores"))}
            coreRequest: "{w("executor-cpu")}"
            instances: {c.as_int(i("executors"))}
            memory: "{w("executor-memory")}"
            serviceAccount: {c.SPARK_EXECUTOR_SERVICE_ACCOUNT}
            labels:
              app.kubernetes.io/part-of: avfleet
              {c.ROLE}: spark
        POD_SECURITY
        VOLUME_MOUNTS
        ENV_FROM
        """
        )
        .replace("{ARGS}", arg_lines)
        .replace("{CONF}", conf_lines)
        .replace("POD_SECURITY", _spark_security())
        .replace("VOLUME_MOUNTS", _spark_mounts())
        .replace("ENV_FROM", textwrap.indent(c.S3_ENV_FROM_YAML, "    ").rstrip("\n"))
    )


def _spark_security() -> str:
    """Pod Security "restricted" for the driver and executors (spark-operator v1beta2 fields)."""
    pod = textwrap.indent(c.POD_SECURITY_YAML, "      ")
    container = textwrap.indent(c.CONTAINER_SECURITY_YAML, "      ")
    return f"    podSecurityContext:\n{pod}    securityContext:\n{container}".rstrip("\n")


def _spark_mounts() -> str:
    """A writable /tmp and Spark's work dir on a read-only root filesystem."""
    return (
        "    volumeMounts:\n"
        "      - {name: tmp, mountPath: /tmp}\n"
        "      - {name: work, mountPath: /opt/spark/work-dir}"
    )


def spark_template() -> Resource:
    """The SparkApplication step. One index writer per date at a time (an Argo mutex named
    by the date); the spark-operator restarts a driver that exits non-zero (transient), a
    permanent failure ends the driver with exit 0 and its outcome for `verify-index`."""
    return c.resource_step(
        "spark-index",
        spark_application_manifest(c.input_parameter("date")),
        ["executors", "date"],
        success="status.applicationState.state == COMPLETED",
        failure="status.applicationState.state in (FAILED, SUBMISSION_FAILED)",
        deadline_s=4 * 3600,
        mutex=f"avfleet-index-{c.input_parameter('date')}",
    )


def spark_client_template() -> Container:
    """The index job without the spark-operator (`spark-launch: client`): this step, in the
    Spark image and as the Spark service account, is the driver, and Spark's own Kubernetes
    scheduler makes the executors (avfleet.index.spark_k8s). Its exit code is the driver's,
    so Argo retries a transient failure (75) as for any CLI step; one writer per date."""
    w, i = c.workflow_parameter, c.input_parameter
    date = i("date")
    args = [
        *("step", "spark-driver", "--image", w("spark-image"), "--executors", i("executors")),
        *("--executor-cores", w("executor-cores"), "--executor-memory", w("executor-memory")),
        *("--executor-cpu-request", w("executor-cpu"), "--name", f"fleet-index-{date}"),
        *("--", JOB, *job_args(date)),
    ]
    pod = {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "POD_IP": "status.podIP",
    }
    step = c.cli_step(
        "spark-client",
        args,
        inputs=["executors", "date"],
        env=[
            EnvVar(name=k, value_from=EnvVarSource(field_ref=ObjectFieldSelector(field_path=v)))
            for k, v in pod.items()
        ],
        deadline_s=4 * 3600,
    )
    step.image = w("spark-image")
    step.service_account_name = c.SPARK_SERVICE_ACCOUNT
    step.labels = {c.ROLE: "spark"}  # the NetworkPolicy that lets executors reach the driver
    step.resources = ResourceRequirements(  # the driver: the SparkApplication's 1 core and 2 GiB
        requests={"cpu": "250m", "memory": "2Gi"}, limits={"cpu": "1", "memory": "3Gi"}
    )
    step.synchronization = Synchronization(mutexes=[Mutex(name=f"avfleet-index-{date}")])
    return step


def verify_template() -> Container:
    w = c.workflow_parameter
    args = [
        "step",
        "verify-index",
        "--index",
        w("index"),
        "--date",
        c.input_parameter("date"),
        "--expect-files",
        c.input_parameter("num-files"),
        "--outcome",
        outcome_uri(c.input_parameter("date")),
    ]
    return c.cli_step(
        "verify-index",
        [*args, "--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()],
        inputs=["num-files", "date"],
        outputs=["frames", "quarantined"],
    )


def index_date_template() -> DAG:
    """plan -> SparkApplication -> verify for the `date` input (created in a workflow's context)."""
    plan, spark, verify = plan_template(), spark_template(), verify_template()
    client = spark_client_template()
    launch = c.workflow_parameter("spark-launch")
    date = {"date": c.input_parameter("date")}
    with DAG(
        name=INDEX_DATE,
        inputs=[Parameter(name="date")],
        outputs=[
            Parameter(
                name=n,
                value_from=ValueFrom(parameter=f"{{{{tasks.verify.outputs.parameters.{n}}}}}"),
            )
            for n in ("frames", "quarantined")
        ],
    ) as dag:
        plan_task = plan(name="plan", arguments=date)
        executors = {"executors": plan_task.get_parameter("executors"), **date}
        index = spark(name="index", arguments=executors, when=f"{launch} == operator")
        index_client = client(name="index-client", arguments=executors, when=f"{launch} == client")
        check = verify(
            name="verify", arguments={"num-files": plan_task.get_parameter("num-files"), **date}
        )
        plan_task >> [index, index_client] >> check  # the one that ran (Skipped satisfies)
    return dag


def index_task(name: str, date: str) -> Task:
    """A task (in the DAG being built) that indexes `date` through fleet-index's template.

    The calling workflow declares fleet-index's parameters (recordings, index, ...): a
    referenced template reads the caller's workflow parameters.
    """
    return Task(
        name=name,
        template_ref=TemplateRef(name=NAME, template=INDEX_DATE),
        arguments={"date": date},
    )


def build() -> WorkflowTemplate:
    with c.workflow_template(
        NAME,
        "Index one day of fleet recordings (metadata only) into the frame index.",
        PARAMETERS,
        6 * 3600,
    ) as wt:
        index_date = index_date_template()
        with DAG(name="main"):
            index_date(name="index", arguments={"date": c.workflow_parameter("date")})
    return wt
