"""The mining job on a real index: in-process vs Triton-served, a server killed mid-run, the queue, labels."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from avfleet.core.errors import TransientError
from avfleet.core.storage import read_parquet
from avfleet.dataset.labels import ToolLabels
from avfleet.index.job import IndexConfig, LoopEngine, run_index
from avfleet.mining.entry import label_queue
from avfleet.mining.job import InProcessScorer, MineConfig, run_mine
from avfleet.mining.select import SelectionConfig
from avfleet.serve.client import TritonClientConfig, TritonScorer
from avfleet.serve.graph import ScoringGraph, export_onnx
from avfleet.serve.repository import load_version, publish
from avfleet.taxonomy import NUM_CLASSES
from avfleet.train.models import build, default_arch
from tests.integration.conftest import DATE, free_port
from tests.integration.test_triton import start_server, stop

WINDOW_S = 2.0


@pytest.fixture(scope="module")
def setup(clean_fleet, tmp_path_factory):
    index = str(tmp_path_factory.mktemp("mine-index"))
    run_index(IndexConfig(recordings_uri=clean_fleet, date=DATE, out_uri=index), LoopEngine())
    torch.manual_seed(0)
    graph = ScoringGraph(build(default_arch(), members=2))
    repo = str(tmp_path_factory.mktemp("mine-repo"))
    publish(
        repo, "dpe", export_onnx(graph, 64, 128), {}, num_classes=NUM_CLASSES, height=64, width=128
    )
    return index, repo


def config(index: str, out: str, budget: int = 12) -> MineConfig:
    return MineConfig(
        index_uri=index,
        date=DATE,
        model="dpe:1",
        out_uri=out,
        selection=SelectionConfig(budget=budget, window_s=WINDOW_S),
        shard_recordings=2,
        batch_size=16,
    )


@pytest.fixture(scope="module")
def in_process(setup, tmp_path_factory):
    index, repo = setup
    out = str(tmp_path_factory.mktemp("mine-inproc"))
    report = run_mine(config(index, out), InProcessScorer(load_version(repo, "dpe:1").onnx))
    return out, report


def test_selection_queue_and_labels(in_process, clean_fleet, tmp_path):
    out, report = in_process
    selection = read_parquet(f"{out}/selection.parquet")
    assert report.selected == len(selection) == 12 and selection["frame_id"].is_unique
    assert report.candidates < report.frames_indexed  # temporal de-dup before scoring
    for _, group in selection.groupby("recording_id"):
        assert np.all(np.diff(np.sort(group["log_time_ns"].to_numpy())) >= WINDOW_S * 1e9)
    assert selection["reason"].str.len().min() > 20
    tasks = json.loads(open(f"{out}/queue.json").read())
    assert [t["data"]["frame_id"] for t in tasks] == list(selection["frame_id"])
    for t in tasks:
        assert open(t["data"]["image"], "rb").read(2) == b"\xff\xd8"
    labels = str(tmp_path / "labels.parquet")
    assert label_queue(f"{out}/queue.json", clean_fleet, labels) == 12
    masks = ToolLabels(labels).labels(selection)  # what `dataset build --labels` consumes
    assert set(masks) == set(selection["frame_id"])
    # Rare conditions get more of the budget than their share of the fleet.
    rarest = min(report.fleet_share_per_domain, key=report.fleet_share_per_domain.get)
    if rarest in report.selected_per_domain:
        share = report.selected_per_domain[rarest] / report.selected
        assert share > report.fleet_share_per_domain[rarest]


def test_triton_served_mining_matches_in_process(setup, in_process, tmp_path):
    index, repo = setup
    ref_out, _ = in_process
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    server = start_server_for(repo, ports)
    try:
        scorer = TritonScorer(
            TritonClientConfig(url=f"grpc://127.0.0.1:{ports['grpc']}", model="dpe:1")
        )
        scorer.wait_ready()
        out = str(tmp_path / "served")
        run_mine(config(index, out), scorer)
    finally:
        stop(server)
    a = all_scores(ref_out).set_index("frame_id")
    b = all_scores(out).set_index("frame_id").loc[a.index]
    for name in ("predictive_entropy", "mutual_information", "variation_ratio"):
        assert np.allclose(a[name], b[name], atol=1e-5), name
    ref_sel = read_parquet(f"{ref_out}/selection.parquet")
    got_sel = read_parquet(f"{out}/selection.parquet")
    assert list(ref_sel["frame_id"]) == list(got_sel["frame_id"])


def test_server_killed_mid_run_exits_transient_and_rerun_has_no_duplicates(
    setup, in_process, tmp_path
):
    index, repo = setup
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    server = start_server_for(repo, ports)
    out = str(tmp_path / "killed")
    client = TritonClientConfig(
        url=f"http://127.0.0.1:{ports['http']}", model="dpe:1", retries=2, backoff_s=0.1
    )

    class KillAfterFirstShard(TritonScorer):
        batches = 0

        def score(self, frames):
            KillAfterFirstShard.batches += 1
            if KillAfterFirstShard.batches == 4:
                stop(server)
            return super().score(frames)

    try:
        scorer = KillAfterFirstShard(client)
        scorer.wait_ready()
        with pytest.raises(TransientError):
            run_mine(config(index, out), scorer)
        done = read_parquet_list(out)
        assert 0 < len(done)
        # A rerun with the server back: finished shards are skipped, nothing is written twice.
        server = start_server_for(repo, ports)
        rerun = TritonScorer(client)
        rerun.wait_ready()
        report = run_mine(config(index, out), rerun)
    finally:
        stop(server)
    assert report.shards_skipped == len(done)
    scores = all_scores(out)
    assert scores["frame_id"].is_unique and len(scores) == report.candidates
    ref = all_scores(in_process[0]).set_index("frame_id").loc[scores["frame_id"]]
    assert np.allclose(ref["mutual_information"], scores["mutual_information"], atol=1e-5)


def test_cli_mine_exit_codes(setup, tmp_path):
    index, repo = setup
    base = [sys.executable, "-m", "avfleet", "mine", "--index", index, "--date", DATE]
    base += ["--repo", repo, "--budget", "5", "--out", str(tmp_path / "cli")]
    down = subprocess.run(
        [*base, "--model", "dpe:1", "--triton-url", f"grpc://127.0.0.1:{free_port()}"]
        + ["--ready-timeout-s", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert down.returncode == 75, down.stderr[-2000:]
    missing = subprocess.run([*base, "--model", "dpe:9"], capture_output=True, text=True)
    assert missing.returncode == 65 and "not published" in missing.stderr, missing.stderr[-2000:]


def start_server_for(repo: str, ports: dict) -> subprocess.Popen:
    return start_server(repo, ports, "dpe:1")


def read_parquet_list(out: str) -> list:
    import pathlib

    return sorted(pathlib.Path(out, "scores").glob("shard-*.parquet"))


def all_scores(out: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in read_parquet_list(out)], ignore_index=True)


def test_pseudo_labels_fill_short_domains_with_confident_unlabeled_frames(
    setup, in_process, clean_fleet, tmp_path
):
    from avfleet.dataset.build import DatasetConfig, build_dataset, read_manifest
    from avfleet.dataset.labels import IGNORE, OracleLabels, decode_mask_png
    from avfleet.mining.pseudo import PseudoConfig, pseudo_label, shortfall
    from avfleet.mining.select import domain_of

    index, _ = setup
    out, _ = in_process
    labeled = build_dataset(
        DatasetConfig(index_uri=index, selection="random:40", out_uri=str(tmp_path), seed=2),
        OracleLabels(clean_fleet),
    ).uri
    torch.manual_seed(0)  # the very ensemble the repository's graph was exported from
    model = build(default_arch(), members=2)
    table = pseudo_label(out, labeled, model, index, PseudoConfig(min_labeled_fraction=0.0))
    manifest = read_manifest(labeled)
    scores = all_scores(out)
    short = shortfall(manifest["frames_per_domain"], sorted(set(domain_of(scores))))
    assert len(table) > 0 and set(table["domain"]) <= set(short)
    for domain, n in table["domain"].value_counts().items():
        assert n <= short[domain]
    picked = set(read_parquet(f"{out}/selection.parquet")["frame_id"])
    assert not set(table["frame_id"]) & (picked | set(manifest["frame_ids"]))
    for row in table.itertuples():
        mask = decode_mask_png(row.mask_png)
        assert mask.shape == (64, 128)
        assert abs((mask != IGNORE).mean() - row.labeled_fraction) < 1e-6
        assert "short of the mean labeled per domain" in row.reason
    # a model folder that is not there: a clear error naming it, nothing written
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "avfleet",
            "pseudo-label",
            "--mining",
            out,
            "--labeled",
            labeled,
            "--model",
            str(tmp_path / "no-model"),
            "--index",
            index,
            "--out",
            str(tmp_path / "p.parquet"),
        ],
        capture_output=True,
        text=True,
    )
    assert cli.returncode != 0 and "no-model" in cli.stderr
    assert not (tmp_path / "p.parquet").exists()


@pytest.mark.parametrize("batch_rows", [7, 100, 65_536])
def test_the_day_is_read_in_batches_with_the_same_candidates(setup, batch_rows):
    from avfleet.index.table import IndexTable
    from avfleet.mining.job import day_candidates
    from avfleet.mining.select import domain_of, temporal_dedup

    table = IndexTable(setup[0])
    whole = table.read("frames", [DATE])
    assert len(whole) > 3 * 100  # several batches at 100 rows, recordings split across them
    candidates, indexed, shares = day_candidates(table, DATE, WINDOW_S, batch_rows)
    expected = temporal_dedup(whole, WINDOW_S)
    assert indexed == len(whole)
    assert candidates["frame_id"].tolist() == expected["frame_id"].tolist()
    assert candidates.columns.tolist() == expected.columns.tolist()
    assert shares.to_dict() == pytest.approx(
        domain_of(whole).value_counts(normalize=True).to_dict()
    )
