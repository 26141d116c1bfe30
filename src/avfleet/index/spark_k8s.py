"""A Spark job run by Spark's own Kubernetes scheduler, without the spark-operator:
`avfleet step spark-driver [options] -- SCRIPT ARGS...` in a workflow step of the Spark image.

The step's pod is the driver (`spark-submit --master k8s://... --deploy-mode client`); Spark
creates the executors as pods from the same image (images/spark-entrypoint.sh runs them), owned
by the driver's pod so that they go when it goes, replaces an executor that dies and retries its
tasks. The step ends with the driver's exit code, so the workflow's failure contract is the
CLI steps' one: 75 is retried by Argo, a permanent failure is not (with `--outcome`, the job
records it and exits 0, as under the operator).

fleet-index runs this when its `spark-launch` parameter is `client` (a cluster without the
spark-operator); `operator` (the default) creates a SparkApplication instead. Both run the same
jobs/index_recordings.py with the same Spark settings (SPARK_CONF).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil

import yaml

from avfleet.core.errors import PermanentError
from avfleet.core.storage import S3_ENV_SECRET

SPARK_CONF = {
    "spark.executor.pyspark.memory": "1g",
    "spark.python.worker.reuse": "true",
    "spark.ui.showConsoleProgress": "false",
}
"""Settings both launches give the index job (the SparkApplication's sparkConf too)."""
EXECUTOR_CONTAINER = "spark-executor"
WORK_DIR = "/opt/spark/work-dir"


def executor_pod_template(service_account: str, s3_secret: str, uid: int) -> dict:
    """The executors' pod template: Pod Security "restricted", a writable /tmp and work dir on
    a read-only root, the site's S3 environment, no API token (executors never call it)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "labels": {"app.kubernetes.io/part-of": "avfleet", "avfleet.io/role": "spark"}
        },
        "spec": {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": uid,
                "runAsGroup": uid,
                "fsGroup": uid,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": EXECUTOR_CONTAINER,
                    "envFrom": [{"secretRef": {"name": s3_secret, "optional": True}}],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "work", "mountPath": WORK_DIR},
                    ],
                }
            ],
            "volumes": [
                {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
                {"name": "work", "emptyDir": {"sizeLimit": "1Gi"}},
            ],
        },
    }


def driver_argv(args: argparse.Namespace, env: dict[str, str], template: pathlib.Path) -> list[str]:
    """spark-submit's argv for a client-mode driver in this pod (POD_NAME, POD_IP,
    POD_NAMESPACE from the downward API; the API server from the service environment)."""
    needed = ("POD_NAME", "POD_IP", "POD_NAMESPACE", "KUBERNETES_SERVICE_HOST")
    lacking = [k for k in needed if not env.get(k)]
    if lacking:
        raise PermanentError(
            f"spark-driver runs in a Kubernetes pod; {', '.join(lacking)} unset "
            "(the workflow step sets POD_* from the downward API)"
        )
    if not args.job or not args.job[0].endswith(".py"):
        raise PermanentError(f"spark-driver: expected `-- SCRIPT.py ARGS...`, got {args.job!r}")
    if args.executors < 1:
        raise PermanentError(f"--executors must be at least 1, got {args.executors}")
    host, port = env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", "443")
    conf = {
        **SPARK_CONF,
        "spark.kubernetes.namespace": env["POD_NAMESPACE"],
        "spark.kubernetes.container.image": args.image,
        "spark.kubernetes.container.image.pullPolicy": "IfNotPresent",
        # executors owned by this pod: deleted with it, whatever ends the step
        "spark.kubernetes.driver.pod.name": env["POD_NAME"],
        "spark.driver.host": env["POD_IP"],
        "spark.driver.bindAddress": "0.0.0.0",
        "spark.executor.instances": str(args.executors),
        "spark.executor.cores": str(args.executor_cores),
        "spark.executor.memory": args.executor_memory,
        "spark.kubernetes.executor.request.cores": args.executor_cpu_request,
        "spark.kubernetes.executor.podTemplateFile": str(template),
        "spark.kubernetes.executor.podTemplateContainerName": EXECUTOR_CONTAINER,
        "spark.kubernetes.executor.deleteOnTermination": "true",
    }
    spark_submit = shutil.which("spark-submit") or "spark-submit"
    argv = [spark_submit, "--master", f"k8s://https://{host}:{port}", "--deploy-mode", "client"]
    argv += ["--name", args.name]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return [*argv, *args.job]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, help="the executors' image (the Spark image)")
    parser.add_argument("--executors", type=int, required=True, help="executor pods")
    parser.add_argument("--executor-cores", type=int, default=2, help="task slots per executor")
    parser.add_argument(
        "--executor-memory", default="4g", help="executor JVM heap (Spark's size syntax)"
    )
    parser.add_argument(
        "--executor-cpu-request", default="2", help="CPU each executor pod asks for (a quantity)"
    )
    parser.add_argument("--name", default="avfleet-spark", help="the Spark application's name")
    parser.add_argument(
        "--service-account",
        default="avfleet-spark-executor",
        help="the executors' service account",
    )
    parser.add_argument("job", nargs=argparse.REMAINDER, help="-- SCRIPT.py ARGS...")


def run(args: argparse.Namespace) -> None:
    """Write the executors' pod template and become spark-submit (its exit code is the step's)."""
    if args.job and args.job[0] == "--":
        args.job = args.job[1:]
    template = pathlib.Path(os.environ.get("TMPDIR", "/tmp"), "spark-executor-pod.yaml")
    argv = driver_argv(args, dict(os.environ), template)
    doc = executor_pod_template(args.service_account, S3_ENV_SECRET, os.getuid())
    template.write_text(yaml.safe_dump(doc))
    os.execv(argv[0], argv)
