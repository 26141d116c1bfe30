"""Grafana dashboards as code: one per stage, built with grafana-foundation-sdk.

`make render` writes them to infra/grafana/<uid>.json and, for kube-prometheus-stack's
Grafana sidecar (it loads every ConfigMap labelled `grafana_dashboard: "1"`), to
manifests/base/monitoring/grafana-dashboards.yaml; the drift test fails when either is stale.
A Grafana without the sidecar imports the JSON files (Dashboards > New > Import, or a
file provisioning provider pointed at infra/grafana/). Every panel reads the Prometheus
data source chosen in the dashboard's `datasource` variable.

Where each figure comes from: docs/operations.md (Metrics). Each panel's query is executed
against a real Prometheus fed by real runs of the stages in
tests/integration/test_dashboards.py, which requires data for every one.
"""

from __future__ import annotations

import dataclasses
import json

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["avfleet"]


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    kind: str = "timeseries"  # timeseries | stat | bargauge | table
    unit: str = "short"
    legend: str = ""
    description: str = ""
    width: int = 8


@dataclasses.dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    rows: dict[str, list[Panel]]


HOURS_SINCE = "(time() - max({metric})) / 3600"

INDEX = Board(
    "avfleet-index",
    "avfleet / Index",
    "The nightly Spark index of fleet recordings (Pushgateway job avfleet-index, one group a date).",
    {
        "Freshness": [
            Panel(
                "Hours since an index run completed",
                HOURS_SINCE.format(metric="avfleet_index_last_completion_timestamp_seconds"),
                "stat",
                "h",
                description="AvfleetIndexStale fires past 36 h.",
            ),
            Panel(
                "Frames indexed", "sum by (date) (avfleet_index_frames)", "stat", legend="{{date}}"
            ),
            Panel(
                "Run duration",
                "max by (date) (avfleet_index_duration_seconds)",
                "stat",
                "s",
                "{{date}}",
            ),
        ],
        "Outcome": [
            Panel(
                "Recordings by outcome",
                "sum by (date, status) (avfleet_index_files)",
                legend="{{date}} {{status}}",
            ),
            Panel(
                "Quarantine ratio",
                "avfleet:index_quarantine_ratio",
                unit="percentunit",
                legend="{{date}}",
                description="AvfleetIndexQuarantineHigh fires above 5%.",
            ),
            Panel(
                "Bytes read / bytes stored",
                "max by (date) (avfleet_index_read_fraction)",
                unit="percentunit",
                legend="{{date}}",
                description="A metadata-only scan reads under 2% (AvfleetIndexReadFractionHigh).",
            ),
        ],
        "Fleet": [
            Panel(
                "Frames per time of day and weather",
                "sum by (time_of_day, weather) (avfleet_index_domain_frames)",
                "bargauge",
                legend="{{time_of_day}} / {{weather}}",
                width=12,
            ),
            Panel(
                "Peak scan worker memory",
                "max by (date) (avfleet_index_peak_worker_rss_bytes)",
                unit="bytes",
                legend="{{date}}",
                width=12,
            ),
        ],
    },
)

MINING = Board(
    "avfleet-mining",
    "avfleet / Mining and Triton",
    "Nightly mining (Pushgateway job avfleet-mine, one group a date) and the Triton server that "
    "scores the frames (its own nv_inference_* metrics).",
    {
        "Mining": [
            Panel(
                "Hours since a mining run completed",
                HOURS_SINCE.format(metric="avfleet_mine_last_completion_timestamp_seconds"),
                "stat",
                "h",
                description="AvfleetNightlyMiningLate fires past 30 h.",
            ),
            Panel(
                "Frames scored per second",
                "max by (date) (avfleet_mine_frames_scored_per_second)",
                legend="{{date}}",
            ),
            Panel(
                "Frames selected by domain",
                "sum by (domain) (avfleet_mine_selected_frames)",
                "bargauge",
                legend="{{domain}}",
            ),
            Panel(
                "Uncertainty score quantiles",
                "max by (score, quantile) (avfleet_mine_score)",
                legend="{{score}} q{{quantile}}",
                width=12,
            ),
            Panel(
                "Triton latency seen by mining",
                "max by (quantile) (avfleet_mine_triton_latency_seconds)",
                unit="s",
                legend="q{{quantile}}",
                width=12,
            ),
        ],
        "Triton": [
            Panel("Triton up", 'up{job="triton"}', "stat", legend="{{instance}}", width=6),
            Panel(
                "Requests per second",
                "sum by (model) (rate(nv_inference_request_success[5m]))",
                unit="reqps",
                legend="{{model}}",
                width=6,
            ),
            Panel(
                "Failed requests per second",
                "sum by (model) (rate(nv_inference_request_failure[5m]))",
                unit="reqps",
                legend="{{model}}",
                width=6,
            ),
            Panel(
                "Average request latency",
                "avfleet:triton_request_latency_seconds:avg5m",
                unit="s",
                legend="{{model}}",
                width=6,
                description="AvfleetTritonSlow fires above 0.5 s for 15 minutes.",
            ),
            Panel(
                "Average queue time",
                "sum by (model) (rate(nv_inference_queue_duration_us[5m])) / "
                "clamp_min(sum by (model) (rate(nv_inference_request_success[5m])), 1e-9) / 1e6",
                unit="s",
                legend="{{model}}",
                width=12,
            ),
            Panel(
                "Average batch size (inferences per execution)",
                "sum by (model) (rate(nv_inference_count[5m])) / "
                "clamp_min(sum by (model) (rate(nv_inference_exec_count[5m])), 1e-9)",
                legend="{{model}}",
                width=12,
            ),
        ],
    },
)

TRAINING = Board(
    "avfleet-training",
    "avfleet / Training",
    "PyTorchJob training runs (Pushgateway job avfleet-train, one group a run: "
    "<run-name>-<ensemble|deployable>), progress pushed at every checkpoint.",
    {
        "Progress": [
            Panel(
                "Progress",
                "max by (run) (avfleet_train_step) / max by (run) (avfleet_train_total_steps)",
                "bargauge",
                "percentunit",
                "{{run}}",
            ),
            Panel(
                "Seconds since the last checkpoint",
                "time() - max by (run) (avfleet_train_last_checkpoint_timestamp_seconds)",
                "table",
                "s",
                "{{run}}",
                description="AvfleetTrainingStalled fires for an unfinished run past 2 h.",
            ),
            Panel("Steps done", "max by (run) (avfleet_train_step)", legend="{{run}}"),
        ],
        "Results": [
            Panel("Last training loss", "max by (run) (avfleet_train_loss)", legend="{{run}}"),
            Panel(
                "Training throughput",
                "max by (run) (avfleet_train_samples_per_second)",
                unit="short",
                legend="{{run}} frames/s",
            ),
            Panel(
                "Run duration",
                "max by (run) (avfleet_train_duration_seconds)",
                "stat",
                "s",
                "{{run}}",
            ),
        ],
    },
)

DEPLOY = Board(
    "avfleet-deploy",
    "avfleet / Deploy and benches",
    "Promotions (Pushgateway job avfleet-deploy, one group a model) and the Xavier benches and "
    "BenchValidations the bench operator leases (its own metrics).",
    {
        "Promoted engine": [
            Panel(
                "Promoted release",
                "max by (model, release) (avfleet_deploy_promoted_release_info)",
                "table",
                legend="{{model}} {{release}}",
                width=6,
            ),
            Panel(
                "Bench latency p50 / p99",
                'label_replace(max by (model) (avfleet_deploy_latency_p50_ms), "q", "p50", "", "") or '
                'label_replace(max by (model) (avfleet_deploy_latency_p99_ms), "q", "p99", "", "")',
                "stat",
                "ms",
                "{{model}} {{q}}",
                width=6,
            ),
            Panel(
                "Held-out mIoU",
                "max by (model) (avfleet_deploy_miou)",
                "stat",
                legend="{{model}}",
                width=6,
            ),
            Panel(
                "Hours since the last promotion",
                "(time() - max by (model) (avfleet_deploy_last_promotion_timestamp_seconds)) / 3600",
                "stat",
                "h",
                "{{model}}",
                width=6,
            ),
            Panel(
                "Held-out IoU per class (hazards: the long tail)",
                "max by (model, class, hazard) (avfleet_deploy_class_iou)",
                "bargauge",
                legend="{{class}} (hazard {{hazard}})",
                width=24,
            ),
            Panel(
                "Gates of the last release judged",
                "min by (model, gate) (avfleet_deploy_gate_passed)",
                "bargauge",
                legend="{{model}} {{gate}}",
                width=24,
            ),
        ],
        "Benches and validations": [
            Panel(
                "Bench healthy",
                "max by (namespace, bench) (avfleet_bench_healthy)",
                "stat",
                legend="{{bench}}",
                width=6,
                description="AvfleetBenchUnhealthy / AvfleetNoHealthyBench.",
            ),
            Panel(
                "Bench busy",
                "max by (namespace, bench) (avfleet_bench_busy)",
                legend="{{bench}}",
                width=6,
            ),
            Panel(
                "Seconds since each bench was probed",
                "time() - max by (namespace, bench) (avfleet_bench_last_probe_timestamp_seconds)",
                "table",
                "s",
                "{{bench}}",
                width=6,
            ),
            Panel(
                "Validations finished, last day",
                "sum by (phase) (increase(avfleet_validations_finished_total[1d]))",
                "bargauge",
                legend="{{phase}}",
                width=6,
            ),
            Panel(
                "Unfinished validations by age",
                "max by (namespace, validation, phase) (avfleet_validation_age_seconds)",
                "table",
                "s",
                "{{validation}} {{phase}}",
                width=24,
                description="AvfleetValidationStuck fires past 3 h.",
            ),
        ],
    },
)

WORKFLOWS = Board(
    "avfleet-workflows",
    "avfleet / Argo workflows",
    "Argo's workflow-controller: its own metrics and the templates' metrics.prometheus "
    "(avfleet_step_*, avfleet_workflow_*; Argo prefixes them with argo_workflows_).",
    {
        "Workflows": [
            Panel(
                "Workflows by phase now",
                "sum by (phase) (argo_workflows_gauge)",
                "bargauge",
                legend="{{phase}}",
            ),
            Panel(
                "Workflows started from each template, last day",
                "sum by (name, phase) (increase(argo_workflows_workflowtemplate_triggered_total[1d]))",
                "table",
                legend="{{name}} {{phase}}",
            ),
            Panel(
                "CronWorkflow runs, last day",
                "sum by (name) (increase(argo_workflows_cronworkflows_triggered_total[1d]))",
                "stat",
                legend="{{name}}",
            ),
            Panel(
                "avfleet workflows ended, last day",
                "sum by (workflow, status) (increase(argo_workflows_avfleet_workflow_results_total[1d]))",
                "table",
                legend="{{workflow}} {{status}}",
                width=12,
                description="AvfleetWorkflowFailing fires for two failures of one template a day.",
            ),
            Panel(
                "avfleet steps ended, last day",
                "sum by (template, status) (increase(argo_workflows_avfleet_step_results_total[1d]))",
                "table",
                legend="{{template}} {{status}}",
                width=12,
                description="AvfleetStepFailingRepeatedly fires for three failures in 6 h.",
            ),
        ],
        "Controller": [
            Panel(
                "Pods by phase",
                "sum by (phase) (argo_workflows_pods_gauge)",
                legend="{{phase}}",
            ),
            Panel(
                "Busy workers",
                "sum by (worker_type) (argo_workflows_workers_busy_count)",
                legend="{{worker_type}}",
            ),
            Panel(
                "Queue depth",
                "sum by (queue_name) (argo_workflows_queue_depth_gauge)",
                legend="{{queue_name}}",
            ),
        ],
    },
)

BOARDS = [INDEX, MINING, TRAINING, DEPLOY, WORKFLOWS]

_PANELS = {"timeseries": timeseries, "stat": stat, "bargauge": bargauge, "table": table}


def _panel(p: Panel, panel_id: int) -> object:
    query = prometheus.Dataquery().expr(p.expr).ref_id("A")
    if p.legend:
        query = query.legend_format(p.legend)
    if p.kind in ("stat", "bargauge", "table"):
        query = query.instant()  # the latest value of each series
        if p.kind == "table":
            query = query.format("table")
    builder = (
        _PANELS[p.kind]
        .Panel()
        .id(panel_id)
        .title(p.title)
        .datasource(DATASOURCE)
        .with_target(query)
        .unit(p.unit)
        .height(8 if p.kind != "stat" else 5)
        .span(p.width)
    )
    if p.description:
        builder = builder.description(p.description)
    return builder


def build(board: Board) -> dict:
    """The dashboard's JSON model, as Grafana's import and provisioning take it."""
    b = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(TAGS)
        .refresh("1m")
        .time("now-7d", "now")
        .timezone("utc")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
    )
    panel_id = 1
    for row, panels in board.rows.items():
        b = b.with_row(dashboard.Row(row).id(panel_id))
        panel_id += 1
        for p in panels:
            b = b.with_panel(_panel(p, panel_id))
            panel_id += 1
    return json.loads(JSONEncoder(sort_keys=True, indent=2).encode(b.build()))


def render() -> dict[str, str]:
    """uid -> the dashboard's JSON text."""
    return {
        board.uid: json.dumps(build(board), indent=2, sort_keys=True) + "\n" for board in BOARDS
    }


def panel_queries(doc: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel of a dashboard JSON model."""
    out = []
    for panel in doc.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets") or []:
                if target.get("expr"):
                    out.append((inner["title"], target["expr"]))
    return out
