"""Mining workflows: the `nightly-mining` CronWorkflow and the `data-engine` WorkflowTemplate.

nightly-mining (every night, one run at a time):
    plan-mining     yesterday's date in the fleet's timezone, the run folder, the model version
    index           plan -> SparkApplication -> verify for that date
                    (templateRef: fleet-index/index-date)
    mine            score through Triton, select K frames, write the labeling queue
    publish-queue   the queue where labelers pick it up, and a `latest.json` pointer

data-engine (on demand: one turn of the loop):
    index -> dataset -> plan-train -> train-ensemble (PyTorchJob) -> evaluate
          -> publish-model (the ensemble's scoring graph as a new repository version)
          -> mine -> publish-queue
                  -> pseudo-label (when pseudo-labels is 'true': the ensemble labels confident
                     frames of under-represented domains; the next turn's dataset build adds
                     them with --labels pseudo:URI --base <its human-labeled version>)
    index, dataset, plan-train, train-ensemble and evaluate are the fleet-index and
    train WorkflowTemplates' own templates (templateRef), not copies: both must be
    installed (`kubectl apply -k manifests/overlays/<site>`), and these workflows declare the
    parameters those templates read.
"""

from __future__ import annotations

from hera.workflows import DAG, Container, CronWorkflow, Task, WorkflowTemplate
from hera.workflows.models import TemplateRef

from avfleet.core.cliopts import field_doc
from avfleet.mining.job import MineConfig
from avfleet.mining.select import SelectionConfig
from avfleet.workflows import common as c
from avfleet.workflows import fleet_index, train

NIGHTLY = "nightly-mining"
DATA_ENGINE = "data-engine"

MINING_PARAMETERS = {
    "model-repo": ("s3://avfleet-data/models/triton", "Triton model repository"),
    "model": ("dpe-scorer", "model name (its newest version) or " + field_doc(MineConfig, "model")),
    "triton-url": (
        "grpc://triton.avfleet.svc.cluster.local:8001",
        "Triton endpoint; empty scores in process",
    ),
    "budget": ("2000", field_doc(SelectionConfig, "budget") + " Per night."),
    "mining-root": ("s3://avfleet-data/mining", "mining runs root (<root>/<date>/<model>)"),
    "queues": ("s3://avfleet-data/labeling/queues", "where labelers pick up queues"),
}


def plan_mining_template() -> Container:
    w = c.workflow_parameter
    args = ["step", "plan-mining", "--now", "{{workflow.creationTimestamp}}"]
    args += ["--timezone", w("timezone"), "--mining-root", w("mining-root")]
    args += ["--repo", w("model-repo"), "--model", w("model"), "--date", w("date")]
    return c.cli_step(
        "plan-mining",
        [*args, "--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()],
        outputs=["date", "out", "model-ref"],
    )


def mine_template() -> Container:
    w, i = c.workflow_parameter, c.input_parameter
    args = ["mine", "--index", w("index"), "--date", i("date"), "--model", i("model-ref")]
    args += ["--repo", w("model-repo"), "--budget", w("budget"), "--out", i("out")]
    args += ["--triton-url", w("triton-url"), "--pushgateway", w("pushgateway")]
    return c.cli_step(
        "mine",
        [*args, "--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()],
        inputs=["date", "model-ref", "out"],
        outputs=["selection", "queue"],
        deadline_s=12 * 3600,  # scoring a night's frames through Triton
    )


def publish_queue_template() -> Container:
    i = c.input_parameter
    args = ["step", "publish-queue", "--queue", i("queue"), "--to", c.workflow_parameter("queues")]
    args += ["--date", i("date")]
    return c.cli_step(
        "publish-queue",
        [*args, "--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()],
        inputs=["queue", "date"],
        outputs=["published"],
    )


def forget_metrics_template() -> Container:
    """Delete avfleet's Pushgateway groups pushed more than 8 days ago, so a date or a run
    that finished long ago stops feeding alerts (docs/operations.md, Metrics)."""
    args = ["metrics", "forget", "--pushgateway", c.workflow_parameter("pushgateway")]
    return c.cli_step("forget-stale-metrics", [*args, "--max-age-hours", "192"])


def pseudo_label_template() -> Container:
    w, i = c.workflow_parameter, c.input_parameter
    args = ["pseudo-label", "--mining", i("mining"), "--labeled", i("labeled")]
    args += ["--model", i("model-uri"), "--index", w("index"), "--out", i("out")]
    return c.cli_step(
        "pseudo-label",
        [*args, "--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()],
        inputs=["mining", "labeled", "model-uri", "out"],
        outputs=["pseudo-labels"],
        deadline_s=6 * 3600,
    )


def publish_model_template() -> Container:
    w, i = c.workflow_parameter, c.input_parameter
    args = ["publish-model", "--model-uri", i("model-uri"), "--repo", w("model-repo")]
    args += ["--name", w("model"), "--triton-url", w("triton-url")]
    args += ["--instance-kind", w("triton-instance-kind")]
    return c.cli_step(
        "publish-model",
        [*args, "--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()],
        inputs=["model-uri"],
        outputs=["model-ref"],
    )


def _train_ref(name: str, template: str, arguments: dict | None = None) -> Task:
    """A task running one of the train WorkflowTemplate's templates (templateRef)."""
    return Task(
        name=name,
        template_ref=TemplateRef(name=train.NAME, template=template),
        arguments=arguments or {},
    )


def build_nightly() -> CronWorkflow:
    parameters = {
        **{k: fleet_index.PARAMETERS[k] for k in fleet_index.PARAMETERS if k != "date"},
        **MINING_PARAMETERS,
        "timezone": ("UTC", "the fleet's timezone: 'yesterday' is a date there"),
        "date": ("", "day to mine, YYYY-MM-DD; empty: yesterday (set it to backfill)"),
    }
    with CronWorkflow(
        name=NIGHTLY,
        schedules=["0 2 * * *"],
        timezone="UTC",
        concurrency_policy="Forbid",
        starting_deadline_seconds=3600,
        successful_jobs_history_limit=7,
        failed_jobs_history_limit=14,
        **c.workflow_settings(
            NIGHTLY,
            "Index and mine yesterday's recordings; publish the labeling queue.",
            parameters,
            20 * 3600,
        ),
    ) as cron:
        plan = plan_mining_template()
        mine, publish = mine_template(), publish_queue_template()
        forget = forget_metrics_template()
        with DAG(name="main"):
            plan_task = plan(name="plan-mining")
            date = plan_task.get_parameter("date")
            indexed = fleet_index.index_task(
                "index", "{{tasks.plan-mining.outputs.parameters.date}}"
            )
            mine_task = mine(
                name="mine",
                arguments={
                    "date": date,
                    "model-ref": plan_task.get_parameter("model-ref"),
                    "out": plan_task.get_parameter("out"),
                },
            )
            publish_task = publish(
                name="publish-queue",
                arguments={"queue": mine_task.get_parameter("queue"), "date": date},
            )
            forget_task = forget(name="forget-stale-metrics")
            plan_task >> indexed >> mine_task >> publish_task >> forget_task
    return cron


def build_data_engine() -> WorkflowTemplate:
    parameters = {
        **fleet_index.PARAMETERS,
        **{k: v for k, v in train.PARAMETERS.items() if k not in train.DEPLOYABLE_ONLY},
        **MINING_PARAMETERS,
        "triton-instance-kind": c.TRITON_INSTANCE_KIND,
        "pseudo-labels": (
            "false",
            "'true': pseudo-label confident frames of under-represented domains after mining",
        ),
    }
    w = c.workflow_parameter
    with c.workflow_template(
        DATA_ENGINE,
        "One turn of the loop: index a date, build a dataset, train the DPE ensemble, "
        "publish it and mine the date with it.",
        parameters,
        48 * 3600,
    ) as wt:
        publish_model, mine, publish, pseudo = (
            publish_model_template(),
            mine_template(),
            publish_queue_template(),
            pseudo_label_template(),
        )
        run = f"{w('runs')}/{w('run-name')}"
        with DAG(name="main"):
            indexed = fleet_index.index_task("index", w("date"))
            data_task = _train_ref("dataset", "build-dataset")
            plan_task = _train_ref("plan-train", "plan-train")
            ens = _train_ref(
                "train-ensemble",
                "train-ensemble",
                {
                    "dataset-uri": "{{tasks.dataset.outputs.parameters.dataset-uri}}",
                    "worker-replicas": "{{tasks.plan-train.outputs.parameters.worker-replicas}}",
                },
            )
            eval_task = _train_ref(
                "evaluate-ensemble", "evaluate", {"model-uri": f"{run}/ensemble/model"}
            )
            pub_model = publish_model(
                name="publish-model", arguments={"model-uri": f"{run}/ensemble/model"}
            )
            mine_task = mine(
                name="mine",
                arguments={
                    "date": w("date"),
                    "model-ref": pub_model.get_parameter("model-ref"),
                    "out": f"{w('mining-root')}/{w('date')}/{w('run-name')}",
                },
            )
            publish_task = publish(
                name="publish-queue",
                arguments={"queue": mine_task.get_parameter("queue"), "date": w("date")},
            )
            out = f"{w('mining-root')}/{w('date')}/{w('run-name')}"
            pseudo_task = pseudo(
                name="pseudo-label",
                arguments={
                    "mining": out,
                    "labeled": "{{tasks.dataset.outputs.parameters.dataset-uri}}",
                    "model-uri": f"{run}/ensemble/model",
                    "out": f"{out}/pseudo-labels.parquet",
                },
                when=f"'{w('pseudo-labels')}' == 'true'",
            )
            indexed >> data_task
            [data_task, plan_task] >> ens >> [eval_task, pub_model]
            pub_model >> mine_task >> [publish_task, pseudo_task]
    return wt
