"""Render the Hera builders into manifests/base/ (and the install files, see install.py)
and detect drift.

`avfleet workflows render` (check) exits 1 when a committed file differs from
what the builders produce; `--write` regenerates them (`make render`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import yaml

from avfleet import dashboards, resources
from avfleet.workflows import deploy, fleet_index, mining, nas, train

HEADER = (
    "# Rendered from src/avfleet/workflows by `avfleet workflows render --write`. Do not edit.\n"
)

BUILDERS: dict[str, Callable[[], object]] = {
    "workflows/fleet-index.yaml": fleet_index.build,
    "workflows/train.yaml": train.build,
    "workflows/nightly-mining.yaml": mining.build_nightly,
    "workflows/data-engine.yaml": mining.build_data_engine,
    "workflows/deploy.yaml": deploy.build,
    "workflows/nas.yaml": nas.build_nas,
    "workflows/sweep.yaml": nas.build_sweep,
}


def manifests_root() -> pathlib.Path:
    """manifests/: base/, components/, overlays/{local,staging,prod}/ (package data)."""
    return resources.manifests_dir()


def default_manifests_dir() -> pathlib.Path:
    """manifests/base: the kustomize base the overlays build on (workflows/ inside)."""
    return manifests_root() / "base"


def render_all() -> dict[str, str]:
    """Relative path -> YAML text of every rendered manifest."""
    out = {}
    for rel, build in BUILDERS.items():
        doc = build().to_dict()  # type: ignore[attr-defined]
        out[rel] = HEADER + yaml.safe_dump(doc, sort_keys=False, width=120)
    return out


def render_install() -> dict[str, str]:
    """Path relative to manifests/ -> text of the rendered install files (site values,
    their kustomize Component, the PrometheusRule)."""
    from avfleet.workflows import install

    workflows = {rel: build().to_dict() for rel, build in BUILDERS.items()}  # type: ignore[attr-defined]
    return {
        "base/site.yaml": install.site_configmap(),
        "components/site/kustomization.yaml": install.site_component(workflows),
        "base/monitoring/prometheus-rules.yaml": install.prometheus_rule(
            resources.infra_dir() / "prometheus" / "avfleet-rules.yaml"
        ),
        "base/monitoring/grafana-dashboards.yaml": install.grafana_dashboards(dashboards.render()),
    }


def render_infra() -> dict[str, str]:
    """Path relative to the package data (the repository in a checkout) -> text of the files
    rendered outside manifests/: the
    Grafana dashboards' JSON (for a Grafana without kube-prometheus-stack's sidecar) and the
    Label Studio project's labeling config (the taxonomy's classes)."""
    from avfleet import taxonomy

    out = {f"infra/grafana/{uid}.json": text for uid, text in dashboards.render().items()}
    out["infra/label-studio/label-config.xml"] = taxonomy.label_studio_config()
    return out


def check_or_write(manifests_dir: str | None, *, write: bool) -> list[str]:
    """Paths that differ from the builders (written when `write`). `manifests_dir` is the
    manifests/ root (base/ and components/ inside)."""
    root = pathlib.Path(manifests_dir) if manifests_dir else manifests_root()
    rendered = {f"base/{rel}": text for rel, text in render_all().items()}
    changed = []
    paths = {root / rel: text for rel, text in {**rendered, **render_install()}.items()}
    paths.update({resources.data_root() / rel: text for rel, text in render_infra().items()})
    for path, text in paths.items():
        if not path.exists() or path.read_text() != text:
            changed.append(str(path))
            if write:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return changed
