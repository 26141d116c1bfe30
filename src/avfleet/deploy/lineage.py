"""Lineage: from the promoted engine back to its model, dataset, frames and recordings.

Every link is a record some stage wrote when it ran; nothing is inferred:
registry pointer -> release record (engine, bench report, Triton version)
-> export.json (model, its sha256, the training run) -> the run's config
(dataset) -> the dataset manifest (frames, label version, base version)
-> the recordings those frames came from.
"""

from __future__ import annotations

from avfleet.core import storage
from avfleet.core.errors import PermanentError
from avfleet.dataset.build import read_manifest
from avfleet.deploy.registry import promoted, release_record


def lineage(
    registry_uri: str, release_id: str = "", config: storage.StorageConfig | None = None
) -> dict:
    """The chain for `release_id` (default: the promoted release)."""
    if not release_id:
        pointer = promoted(registry_uri, config)
        if pointer is None:
            raise PermanentError(f"{registry_uri}: nothing has been promoted yet")
        release_id = pointer["release_id"]
    record = release_record(registry_uri, release_id, config)
    export = record["export"]
    datasets = []
    dataset_uri = export.get("dataset_uri")
    while dataset_uri:  # a dataset grown with --base names its base version
        manifest = read_manifest(dataset_uri, config)
        datasets.append(
            {
                "uri": dataset_uri,
                "version": manifest["version"],
                "label_version": manifest["label_version"],
                "num_frames": manifest["num_frames"],
                "frame_ids": manifest["frame_ids"],
                "recordings": manifest["recordings"],
                "index_uri": manifest["index_uri"],
                "selection": manifest["selection"],
            }
        )
        dataset_uri = manifest.get("base")
    return {
        "release_id": release_id,
        "promoted_at": record["promoted_at"],
        "engine": record["engine"],
        "bench": {
            "report_uri": record["bench_report_uri"],
            "p50_ms": record["latency"]["p50_ms"],
            "p99_ms": record["latency"]["p99_ms"],
            "miou": record["miou"],
        },
        "triton": {"repo": record["model_repo_uri"], "model": record["model_ref"]},
        "model": {
            "uri": export["model_uri"],
            "sha256": export["model_sha256"],
            "onnx_sha256": export["onnx_sha256"],
            "parameters": export["parameters"],
            "scorer_uri": record["scorer_model_uri"],
        },
        "training_run": export.get("training_run", {}),
        "datasets": datasets,
    }


def render(chain: dict, frames: int = 5) -> str:
    """A readable tree (`avfleet lineage`); --json prints the whole dict."""
    engine, model = chain["engine"], chain["model"]
    lines = [
        f"release {chain['release_id']} (promoted {chain['promoted_at']})",
        f"└─ engine {engine['key']}: {engine['runtime']} {engine['runtime_version']} "
        f"{engine['precision']} for {engine['target']} (sha256 {engine['engine_sha256'][:12]})",
        f"   bench: p50 {chain['bench']['p50_ms']:.2f} ms, p99 {chain['bench']['p99_ms']:.2f} ms, "
        f"mIoU {100 * chain['bench']['miou']:.1f}  ({chain['bench']['report_uri']})",
        f"   triton: {chain['triton']['model']} in {chain['triton']['repo']}",
        f"   └─ model {model['uri']} ({model['parameters']:,} parameters, sha256 {model['sha256'][:12]})",
    ]
    run = chain["training_run"]
    if run:
        lines.append(
            f"      └─ training run {run.get('out_uri')}: {run.get('epochs')} epochs, "
            f"members {run.get('members')}, group sparsity {run.get('group_sparsity')}"
        )
    indent = "         "
    for ds in chain["datasets"]:
        shown = ", ".join(ds["frame_ids"][:frames])
        more = ds["num_frames"] - min(frames, ds["num_frames"])
        lines += [
            f"{indent}└─ dataset {ds['version']} ({ds['num_frames']} frames, labels "
            f"{ds['label_version']}, selection {ds['selection']})  {ds['uri']}",
            f"{indent}   frames: {shown}{f' (+{more} more)' if more > 0 else ''}",
            f"{indent}   recordings ({len(ds['recordings'])}): "
            + ", ".join(r.rsplit("/", 1)[-1] for r in ds["recordings"][:3])
            + (" ..." if len(ds["recordings"]) > 3 else ""),
        ]
        indent += "   "
    return "\n".join(lines)
