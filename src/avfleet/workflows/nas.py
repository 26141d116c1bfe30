"""Map jobs: the `nas` and `sweep` WorkflowTemplates, one fan-out shape with two plans.

nas (find the best predictor at each latency target):
    profile      the bench's latency table over the search space (cached per unit)
    plan         the targets -> a JSON list of items
    plan-train   the PyTorchJobs' worker replicas
    candidates   fan-out withParam over the items, at most PARALLELISM at a time; per item:
                   search (PyTorchJob, jobs/search.py) -> derive (arch.json)
                   -> train (PyTorchJob, the derived net from scratch) -> export
                   -> BenchValidation (measured latency, mIoU) -> record
    pareto       fan-in: every item's record -> the front (pareto.json, .md, .png)
    pick         when budget-ms is set: the best net of the front within it (deploy takes it)

sweep (meta-optimise hyperparameters): the same shape; the plan is a grid
(lr x group sparsity x width) and each item trains the family's net with its
settings instead of searching.

    argo submit --from workflowtemplate/nas -p targets=1.0,1.6,2.0
    argo submit --from workflowtemplate/sweep -p grid='lr=0.02,0.05;group_sparsity=0,0.005'
"""

from __future__ import annotations

from hera.workflows import DAG, Container, Parameter, WorkflowTemplate
from hera.workflows.models import ValueFrom

from avfleet.core.cliopts import field_doc
from avfleet.core.storage import StorageConfig
from avfleet.nas.config import SearchConfig
from avfleet.workflows import common as c
from avfleet.workflows import deploy, train

NAS, SWEEP = "nas", "sweep"
PARALLELISM = 2
"""Candidates at a time: each holds a PyTorchJob's GPUs, then a bench."""

COMMON_PARAMETERS = {
    "dataset": ("s3://avfleet-data/datasets/latest", "dataset version to search / train on"),
    "validation": ("s3://avfleet-data/datasets/heldout", "held-out dataset the bench scores"),
    "out": ("s3://avfleet-data/nas", "runs root: a folder per workflow run"),
    "train-epochs": ("40", "epochs training each candidate from scratch"),
    "batch-size": ("16", field_doc(SearchConfig, "batch_size")),
    "seed": ("0", field_doc(SearchConfig, "seed")),
    "budget-ms": ("", "pick the best net within this measured latency ('': no pick)"),
    **train.SIZE,
    "nodes": ("1", "PyTorchJob nodes per candidate"),
    **{k: deploy.PARAMETERS[k] for k in ("bench-target", "bench-precision", "bench-runs")},
    "bench-warmup": deploy.PARAMETERS["bench-warmup"],
    **deploy.GATES,
    "s3-endpoint-url": ("", field_doc(StorageConfig, "s3_endpoint_url")),
    "image": (c.DEFAULT_IMAGE, "avfleet image (CLI steps)"),
    "train-image": train.PARAMETERS["train-image"],
}
NAS_PARAMETERS = {
    "targets": ("1.0,1.6,2.0", "latency targets, ms at batch 1 on the bench, comma-separated"),
    "search-epochs": ("20", field_doc(SearchConfig, "epochs") + " Per target."),
    "bench": ("", "bench agent that profiles the latency table ('': the profile step's pod)"),
    "lut-cache": ("s3://avfleet-data/latency-cache", "unit cache of the profile step"),
    **COMMON_PARAMETERS,
}
SWEEP_PARAMETERS = {
    "grid": (
        "lr=0.02,0.05;group_sparsity=0,0.005",
        "NAME=v1,v2;... over lr, group_sparsity, width",
    ),
    **COMMON_PARAMETERS,
}


def run_folder() -> str:
    return f"{c.workflow_parameter('out')}/{{{{workflow.name}}}}"


def item_folder() -> str:
    return f"{run_folder()}/{c.input_parameter('name')}"


def nas_cli(name: str, args: list[str], *, inputs=(), outputs=(), env=()) -> Container:
    return c.cli_step(
        name,
        ["nas", *args, "--outputs-dir", c.OUTPUTS_DIR, *c.storage_args()],
        inputs=list(inputs),
        outputs=list(outputs),
        env=list(env),
    )


def profile_template() -> Container:
    w = c.workflow_parameter
    args = ["profile", "--out", f"{run_folder()}/lut.json", "--cache", w("lut-cache")]
    return nas_cli(
        "profile", [*args, "--bench", w("bench")], outputs=["lut-uri"], env=[c.bench_token_env()]
    )


def plan_template(kind: str) -> Container:
    flag, param = ("--targets", "targets") if kind == NAS else ("--grid", "grid")
    return nas_cli("plan", ["plan", flag, c.workflow_parameter(param)], outputs=["items"])


def search_template() -> object:
    w, i = c.workflow_parameter, c.input_parameter
    args = ["--dataset", w("dataset"), "--out", f"{item_folder()}/search"]
    args += ["--latency-lut", i("lut-uri"), "--target-latency-ms", i("target-ms")]
    args += ["--epochs", w("search-epochs"), "--batch-size", w("batch-size"), "--seed", w("seed")]
    manifest = train.pytorchjob_manifest(
        "nas-search", args, script="search.py", run_label="{{workflow.name}}"
    )
    return train.pytorchjob_resource(
        "search", manifest, ("name", "target-ms", "lut-uri", "worker-replicas")
    )


def derive_template() -> Container:
    i = c.input_parameter
    args = ["derive", "--search", f"{item_folder()}/search", "--latency-lut", i("lut-uri")]
    args += ["--target-ms", i("target-ms"), "--out", f"{item_folder()}/arch.json"]
    return nas_cli("derive", args, inputs=("name", "target-ms", "lut-uri"), outputs=("arch-uri",))


def train_candidate_template(kind: str) -> object:
    """The candidate trained from scratch: the derived arch (nas) or the item's settings (sweep)."""
    w, i = c.workflow_parameter, c.input_parameter
    args = ["--dataset", w("dataset"), "--out", f"{item_folder()}/train", "--members", "1"]
    args += ["--epochs", w("train-epochs"), "--batch-size", w("batch-size"), "--seed", w("seed")]
    if kind == NAS:
        args += ["--arch", f"{item_folder()}/arch.json"]
        inputs: tuple[str, ...] = ("name", "worker-replicas")
    else:
        args += ["--lr", i("lr"), "--group-sparsity", i("group-sparsity"), "--width", i("width")]
        inputs = ("name", "lr", "group-sparsity", "width", "worker-replicas")
    manifest = train.pytorchjob_manifest(f"{kind}-train", args, run_label="{{workflow.name}}")
    return train.pytorchjob_resource("train-candidate", manifest, inputs)


def export_template() -> Container:
    return deploy.export_template(
        "export-candidate",
        model=f"{item_folder()}/train/model",
        releases=f"{item_folder()}/releases",
        inputs=("name",),
    )


def record_template(kind: str) -> Container:
    i = c.input_parameter
    args = ["record", "--name", i("name"), "--model", f"{item_folder()}/train/model"]
    args += ["--release", i("release-uri"), "--report", deploy.report_uri()]
    args += ["--out", f"{item_folder()}/result.json"]
    inputs = ["name", "release-uri"]
    if kind == NAS:
        args += ["--target-ms", i("target-ms"), "--arch", f"{item_folder()}/arch.json"]
        args += ["--search", f"{item_folder()}/search"]
        inputs.append("target-ms")
    else:
        args += ["--settings", i("settings")]
        inputs.append("settings")
    return nas_cli("record", args, inputs=inputs, outputs=("result",))


def pareto_template() -> Container:
    args = ["pareto", "--results", c.input_parameter("results"), "--out", f"{run_folder()}/pareto"]
    return nas_cli("pareto", args, inputs=("results",), outputs=("pareto-uri",))


def pick_template() -> Container:
    args = ["pick", "--pareto", c.input_parameter("pareto-uri")]
    args += ["--budget-ms", c.workflow_parameter("budget-ms")]
    return nas_cli("pick", args, inputs=("pareto-uri",), outputs=("model-uri", "release-uri"))


def candidate_dag(kind: str) -> DAG:
    """One item's chain; its output `result` is the record the fan-in aggregates."""
    i = c.input_parameter
    if kind == NAS:
        inputs = ["name", "target-ms", "lut-uri", "worker-replicas"]
    else:
        inputs = ["name", "lr", "group-sparsity", "width", "settings", "worker-replicas"]
    passed = {n: i(n) for n in inputs}
    with DAG(
        name="candidate",
        inputs=[Parameter(name=n) for n in inputs],
        outputs=[
            Parameter(
                name="result",
                value_from=ValueFrom(parameter="{{tasks.record.outputs.parameters.result}}"),
            )
        ],
    ) as dag:
        trained = train_candidate_template(kind)(
            name="train",
            arguments={
                k: v for k, v in passed.items() if k not in ("target-ms", "lut-uri", "settings")
            },
        )
        if kind == NAS:
            search = search_template()(name="search", arguments=passed)
            derive = derive_template()(
                name="derive",
                arguments={k: passed[k] for k in ("name", "target-ms", "lut-uri")},
            )
            search >> derive >> trained
        export = export_template()(name="export", arguments={"name": passed["name"]})
        release = {"release-uri": export.get_parameter("release-uri")}
        validate = deploy.validate_template(
            {g.replace("-", "_"): c.as_float(c.workflow_parameter(g)) for g in deploy.GATES}
        )(
            name="validate",
            arguments={**release, "reference-miou": export.get_parameter("reference-miou")},
        )
        extra = (
            {"target-ms": passed["target-ms"]} if kind == NAS else {"settings": passed["settings"]}
        )
        record = record_template(kind)(
            name="record", arguments={"name": passed["name"], **release, **extra}
        )
        trained >> export >> validate >> record
    return dag


def _build(kind: str) -> WorkflowTemplate:
    params = NAS_PARAMETERS if kind == NAS else SWEEP_PARAMETERS
    what = (
        "Search nets at each latency target (FBNet on the bench's table), train and bench them, "
        "and draw the Pareto front."
        if kind == NAS
        else "Train the net at every point of a hyperparameter grid, bench them, draw the front."
    )
    with c.workflow_template(kind, what, params, 72 * 3600) as wt:
        candidate = candidate_dag(kind)
        plan, plan_train = plan_template(kind), train.plan_train_template()
        pareto, pick = pareto_template(), pick_template()
        profile = profile_template() if kind == NAS else None
        with DAG(name="main", parallelism=PARALLELISM):
            plan_task, sizing = plan(name="plan"), plan_train(name="plan-train")
            item_args = {
                "name": "{{item.name}}",
                "worker-replicas": sizing.get_parameter("worker-replicas"),
            }
            if kind == NAS:
                profiled = profile(name="profile")
                item_args.update(
                    {
                        "target-ms": "{{item.target_ms}}",
                        "lut-uri": profiled.get_parameter("lut-uri"),
                    }
                )
            else:
                item_args.update(
                    {
                        "lr": "{{item.lr}}",
                        "group-sparsity": "{{item.group_sparsity}}",
                        "width": "{{item.width}}",
                        "settings": "{{item}}",
                    }
                )
            fanned = candidate(
                name="candidates",
                arguments=item_args,
                with_param=plan_task.get_parameter("items").value,
            )
            front = pareto(
                name="pareto",
                arguments={"results": "{{tasks.candidates.outputs.parameters.result}}"},
            )
            chosen = pick(
                name="pick",
                arguments={"pareto-uri": front.get_parameter("pareto-uri")},
                when=f"'{c.workflow_parameter('budget-ms')}' != ''",
            )
            first = [plan_task, sizing] + ([profiled] if kind == NAS else [])
            first >> fanned >> front >> chosen
    return wt


def build_nas() -> WorkflowTemplate:
    return _build(NAS)


def build_sweep() -> WorkflowTemplate:
    return _build(SWEEP)
