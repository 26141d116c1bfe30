"""The `fleet-index` WorkflowTemplate: plan -> Spark index job -> verify.

plan      counts the date's recordings and sizes the Spark job (output: executors)
index     a SparkApplication for the spark-operator running jobs/index_recordings.py
verify    checks the commit: every input indexed or quarantined exactly once
"""

from __future__ import annotations

import textwrap
from typing import Any

from hera.workflows import DAG, Container, Parameter, Resource, WorkflowTemplate

from avfleet.workflows import common as c

NAME = "fleet-index"
PARAMETERS = {
    "recordings": ("s3://avfleet-fleet/fleet", "fleet root holding raw/date=D/vehicle=V/*.mcap"),
    "date": ("2026-11-20", "day to index, YYYY-MM-DD"),
    "index": ("s3://avfleet-data/index", "index root"),
    "s3-endpoint-url": ("", "S3 endpoint override; empty uses AWS's"),
    "pushgateway": ("prometheus-pushgateway.monitoring:9091", "Pushgateway for job metrics"),
    "image": (c.DEFAULT_IMAGE, "avfleet image (CLI steps)"),
    "spark-image": (c.DEFAULT_SPARK_IMAGE, "avfleet Spark image (driver and executors)"),
}


def _date(from_input: bool) -> tuple[str, list[str]]:
    """(how a template reads the date, its extra inputs): the workflow's date, or an input."""
    if from_input:
        return c.input_parameter("date"), ["date"]
    return c.workflow_parameter("date"), []


def plan_template(date_from_input: bool = False) -> Container:
    w = c.workflow_parameter
    date, inputs = _date(date_from_input)
    args = ["plan-index", "--recordings", w("recordings"), "--date", date]
    return c.cli_step(
        "plan-index",
        [*args, "--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()],
        inputs=inputs,
        outputs=["num-files", "executors"],
    )


def spark_application_manifest(date: str) -> str:
    """The SparkApplication (spark-operator v1beta2) that runs the index job."""
    w, i = c.workflow_parameter, c.input_parameter
    args = [
        "--recordings",
        w("recordings"),
        "--date",
        date,
        "--out",
        w("index"),
        "--s3-endpoint-url",
        w("s3-endpoint-url"),
        "--pushgateway",
        w("pushgateway"),
    ]
    arg_lines = "\n".join(f'    - "{a}"' for a in args)
    return textwrap.dedent(
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
          mainApplicationFile: "local://{c.IMAGE_ROOT}/jobs/index_recordings.py"
          arguments:
        {{ARGS}}
          sparkVersion: "3.5.3"
          sparkConf:
            spark.executor.pyspark.memory: "1g"
            spark.python.worker.reuse: "true"
            spark.ui.showConsoleProgress: "false"
          restartPolicy:
            type: OnFailure
            onFailureRetries: 2
            onFailureRetryInterval: 30
            onSubmissionFailureRetries: 3
            onSubmissionFailureRetryInterval: 30
          driver:
            cores: 1
            memory: "2g"
            serviceAccount: {c.SPARK_SERVICE_ACCOUNT}
            labels:
              app.kubernetes.io/part-of: avfleet
          executor:
            cores: 2
            instances: {i("executors")}
            memory: "4g"
            labels:
              app.kubernetes.io/part-of: avfleet
        """
    ).replace("{ARGS}", arg_lines)


def spark_template(date_from_input: bool = False) -> Resource:
    date, inputs = _date(date_from_input)
    return Resource(
        name="spark-index",
        inputs=[Parameter(name=n) for n in ["executors", *inputs]],
        action="create",
        set_owner_reference=True,
        manifest=spark_application_manifest(date),
        success_condition="status.applicationState.state == COMPLETED",
        failure_condition="status.applicationState.state in (FAILED, SUBMISSION_FAILED)",
    )


def verify_template(date_from_input: bool = False) -> Container:
    w = c.workflow_parameter
    date, inputs = _date(date_from_input)
    args = [
        "verify-index",
        "--out",
        w("index"),
        "--date",
        date,
        "--expect-files",
        c.input_parameter("num-files"),
    ]
    return c.cli_step(
        "verify-index",
        [*args, "--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()],
        inputs=["num-files", *inputs],
        outputs=["frames", "quarantined"],
    )


class IndexTemplates:
    """plan -> SparkApplication -> verify, for any workflow that indexes a date."""

    def __init__(self, date_from_input: bool = False) -> None:
        """Create the templates (inside a workflow's context)."""
        self.date_from_input = date_from_input
        self.plan = plan_template(date_from_input)
        self.spark = spark_template(date_from_input)
        self.verify = verify_template(date_from_input)

    def tasks(self, prefix: str = "", date: str | None = None) -> tuple[Any, Any]:
        """Add the three tasks to the DAG being built; (first, last) for chaining."""
        extra = {"date": date} if self.date_from_input else {}
        plan = self.plan(name=f"{prefix}plan", **({"arguments": extra} if extra else {}))
        index = self.spark(
            name=f"{prefix}index",
            arguments={"executors": plan.get_parameter("executors"), **extra},
        )
        verify = self.verify(
            name=f"{prefix}verify",
            arguments={"num-files": plan.get_parameter("num-files"), **extra},
        )
        plan >> index >> verify
        return plan, verify


def build() -> WorkflowTemplate:
    with c.workflow_template(
        NAME,
        "Index one day of fleet recordings (metadata only) into the frame index.",
        PARAMETERS,
        6 * 3600,
    ) as wt:
        templates = IndexTemplates()
        with DAG(name="main"):
            templates.tasks()
    return wt
