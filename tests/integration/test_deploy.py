"""Deploy on real components: a torchrun-trained model exported, built and validated by real
bench agents (ONNX Runtime, HTTP), judged, promoted into the registry and the Triton
repository, and traced back to its recordings; broken models rejected; a bench killed."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from avfleet.bench.gates import Gates
from avfleet.bench.local import local_agent, run_validation
from avfleet.core.errors import PermanentError
from avfleet.core.net import free_port
from avfleet.dataset.build import DatasetConfig, build_dataset, read_manifest
from avfleet.dataset.labels import OracleLabels
from avfleet.deploy.export import ExportConfig, export_release, read_export
from avfleet.deploy.lineage import lineage
from avfleet.deploy.registry import NotPromoted, PromoteConfig, promote, promoted
from avfleet.index.job import IndexConfig, LoopEngine, run_index
from avfleet.index.table import IndexTable
from avfleet.mining.job import InProcessScorer, MineConfig, run_mine
from avfleet.mining.plan import plan_mining
from avfleet.mining.select import SelectionConfig
from avfleet.serve.repository import load_version, versions
from tests.integration.conftest import DATE, local_run

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = "bench-token-for-tests-0123456789"


def train(dataset: str, out: str, *args: str) -> None:
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node=1", str(REPO_ROOT / "jobs" / "train.py")]
    cmd += ["--dataset", dataset, "--out", out, "--epochs", "1", "--batch-size", "8", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def trained(clean_fleet, tmp_path_factory):
    """index, a training run (<run>/deployable and <run>/ensemble), a held-out dataset."""
    root = tmp_path_factory.mktemp("deploy")
    index = str(root / "index")
    run_index(IndexConfig(recordings_uri=clean_fleet, date=DATE, out_uri=index), LoopEngine())
    datasets = str(root / "datasets")

    def dataset(selection: str, seed: int) -> str:
        config = DatasetConfig(index_uri=index, selection=selection, out_uri=datasets, seed=seed)
        return build_dataset(config, OracleLabels(clean_fleet)).uri

    train_set, heldout = dataset("random:48", 1), dataset("random:24", 2)
    run = root / "runs" / "r1"
    train(train_set, str(run / "deployable"), "--width", "0.5", "--group-sparsity", "0.01")
    train(train_set, str(run / "ensemble"), "--members", "2", "--width", "0.5")
    return {"root": root, "index": index, "heldout": heldout, "train": train_set, "run": run}


def validation_spec(release: str, report: str, **gates) -> dict:
    info = read_export(release)
    return {
        "modelUri": f"{release}/model.onnx",
        "bundleUri": f"{release}/bundle.npz",
        "reportUri": report,
        "precision": "fp32",
        "warmup": 3,
        "runs": 30,
        "referenceMiou": info["reference_miou"],
        "gates": gates,
    }


def validate(release: str, report: str, cache: str, **gates) -> dict:
    with local_agent(cache, read_prefixes=(release,)) as bench:
        return run_validation(
            "v", validation_spec(release, report, **gates), {"b": bench}, poll_s=0.1
        )


@pytest.fixture(scope="module")
def promoted_release(trained):
    root = trained["root"]
    release = export_release(
        ExportConfig(
            model_uri=str(trained["run"] / "deployable" / "model"),
            validation_uri=trained["heldout"],
            releases_uri=str(root / "releases"),
            validation_frames=16,
            calibration_frames=8,
        )
    )
    report = f"{release}/bench-report.json"
    status = validate(release, report, str(root / "cache"))
    config = PromoteConfig(
        release_uri=release,
        report_uri=report,
        registry_uri=str(root / "registry"),
        model_repo_uri=str(root / "triton"),
    )
    return {"release": release, "status": status, "pointer": promote(config), "config": config}


def test_a_model_is_exported_validated_and_promoted(trained, promoted_release):
    release, status, pointer = (promoted_release[k] for k in ("release", "status", "pointer"))
    info = read_export(release)
    assert info["export_parity"]["max_abs_error"] < 1e-4 and info["members"] == 1
    assert status["phase"] == "Succeeded" and status["summary"]["argmaxAgreement"] == 1.0
    report = json.loads(pathlib.Path(f"{release}/bench-report.json").read_text())
    assert report["latency"]["runs"] == 30 and report["verdict"]["passed"]
    registry = promoted_release["config"].registry_uri
    assert promoted(registry) == pointer and pointer["release_id"] == info["release_id"]
    assert pointer["previous"] is None and pointer["model_ref"] == "dpe-scorer:1"
    # Mining gets the promoted run's DPE ensemble (the net's sibling), not the single net.
    published = load_version(promoted_release["config"].model_repo_uri, "dpe-scorer:1")
    assert published.info["source_model"] == str(trained["run"] / "ensemble" / "model")
    assert published.info["members"] == 2
    # Promoting the same release again changes nothing (a retried step).
    assert promote(promoted_release["config"]) == pointer
    assert versions(promoted_release["config"].model_repo_uri, "dpe-scorer") == [1]
    # The promoted version is pinned, so Triton keeps serving it whatever is published after.
    from avfleet.serve import repository

    repo = promoted_release["config"].model_repo_uri
    assert repository.pins(repo, "dpe-scorer") == {1: f"promoted release {info['release_id']}"}


def test_lineage_goes_from_the_engine_to_frames_and_recordings(trained, promoted_release):
    registry = promoted_release["config"].registry_uri
    chain = lineage(registry)
    assert chain["engine"]["key"] == promoted_release["status"]["summary"]["engineKey"]
    assert chain["model"]["uri"] == str(trained["run"] / "deployable" / "model")
    [dataset] = chain["datasets"]
    assert dataset["uri"] == trained["train"] and dataset["num_frames"] == 48
    assert set(dataset["frame_ids"]) <= set(IndexTable(trained["index"]).read("frames")["frame_id"])
    assert dataset["recordings"] and all(pathlib.Path(r).exists() for r in dataset["recordings"])
    assert dataset["frame_ids"] == read_manifest(trained["train"])["frame_ids"]
    out = subprocess.run(
        [sys.executable, "-m", "avfleet", "lineage", "--registry", registry],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert chain["release_id"] in out and dataset["version"] in out and ".mcap" in out


def test_the_next_mining_run_uses_the_promoted_version(trained, promoted_release, tmp_path):
    config = promoted_release["config"]
    plan = plan_mining(
        "2026-11-21T02:00:00Z", "UTC", str(tmp_path), config.model_repo_uri, "dpe-scorer"
    )
    assert plan["model-ref"] == promoted(config.registry_uri)["model_ref"] and plan["date"] == DATE
    version = load_version(config.model_repo_uri, plan["model-ref"])
    report = run_mine(
        MineConfig(
            index_uri=trained["index"],
            date=plan["date"],
            model=plan["model-ref"],
            out_uri=plan["out"],
            selection=SelectionConfig(budget=4),
        ),
        InProcessScorer(version.onnx),
    )
    summary = json.loads(pathlib.Path(plan["out"], "run.json").read_text())
    assert report.selected == 4 and summary["model"] == "dpe-scorer:1"


def tampered_release(release: str, to: pathlib.Path) -> str:
    """The same release with one weight tensor of model.onnx changed (still a valid model)."""
    shutil.copytree(release, to)
    (to / "bench-report.json").unlink(missing_ok=True)
    model = onnx.load(str(to / "model.onnx"))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array(values * -3.0 + 0.5, init.name))
    onnx.save(model, str(to / "model.onnx"))
    return str(to)


def test_broken_models_are_rejected_and_the_promotion_stays(trained, promoted_release, tmp_path):
    config = promoted_release["config"]
    before = promoted(config.registry_uri)
    cache = str(tmp_path / "cache")
    # Weights changed after export: the engine no longer matches the framework model.
    broken = tampered_release(promoted_release["release"], tmp_path / "tampered")
    status = validate(broken, f"{broken}/bench-report.json", cache)
    assert status["phase"] == "Rejected" and "max abs logit error" in status["message"]
    with pytest.raises(NotPromoted, match="max abs logit error"):
        promote(
            PromoteConfig(
                **{
                    **config.__dict__,
                    "release_uri": broken,
                    "report_uri": f"{broken}/bench-report.json",
                }
            )
        )
    # A report that measured another model: the good release's report, the tampered model.
    shutil.copy(f"{promoted_release['release']}/bench-report.json", f"{broken}/bench-report.json")
    with pytest.raises(PermanentError, match="measured a model with sha256"):
        promote(
            PromoteConfig(
                **{
                    **config.__dict__,
                    "release_uri": broken,
                    "report_uri": f"{broken}/bench-report.json",
                }
            )
        )
    # A latency budget no engine can meet.
    release = promoted_release["release"]
    status = validate(release, str(tmp_path / "slow.json"), cache, latency_p99_ms=0.001)
    assert status["phase"] == "Rejected" and "over the 0.001 ms budget" in status["message"]
    with pytest.raises(NotPromoted, match="budget"):
        slow = {"report_uri": str(tmp_path / "slow.json"), "gates": Gates(latency_p99_ms=0.001)}
        promote(PromoteConfig(**{**config.__dict__, **slow}))
    # Bytes that are not a model at all: refused by the agent.
    garbage = tmp_path / "garbage"
    shutil.copytree(release, garbage)
    (garbage / "model.onnx").write_bytes(b"\x00not onnx")
    status = validate(str(garbage), str(tmp_path / "g.json"), cache)
    assert status["phase"] == "Failed" and "not a valid ONNX model" in status["message"]
    # Corrupted weights never make it past export.
    weights = tmp_path / "model"
    shutil.copytree(trained["run"] / "deployable" / "model", weights)
    raw = bytearray((weights / "weights.pt").read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\xff" * 64
    (weights / "weights.pt").write_bytes(bytes(raw))
    with pytest.raises(PermanentError, match="weights are corrupted"):
        export_release(
            ExportConfig(
                model_uri=str(weights),
                validation_uri=trained["heldout"],
                releases_uri=str(tmp_path / "rel"),
                calibration_uri=trained["train"],
            )
        )
    assert promoted(config.registry_uri) == before
    assert versions(config.model_repo_uri, "dpe-scorer") == [1]


def start_agent(
    cache: str, port: int, *allow: str, token: str = TOKEN, target: str = ""
) -> subprocess.Popen:
    """A bench agent in its own process, reading models under `allow` (default: nowhere useful)."""
    cmd = [sys.executable, "-m", "avfleet", "bench", "agent", "--cache", cache, "--port", str(port)]
    for prefix in allow or (cache,):
        cmd += ["--allow", prefix]
    if target:
        cmd += ["--target", target]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "AVFLEET_BENCH_TOKEN": token},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("bench agent did not start")


def call(port: int, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_agent_refuses_strangers_and_bad_models_and_keeps_serving(promoted_release, tmp_path):
    release = promoted_release["release"]
    port = free_port()
    agent = start_agent(str(tmp_path / "cache"), port, release, str(tmp_path))
    try:
        job = {
            "model_uri": f"{release}/model.onnx",
            "bundle_uri": f"{release}/bundle.npz",
            "runs": 5,
        }
        body = json.dumps(job).encode()
        assert call(port, "POST", "/v1/jobs", body, token=None)[0] == 401
        assert call(port, "POST", "/v1/jobs", body, token="wrong-token-wrong-token")[0] == 401
        assert call(port, "GET", "/v1/jobs/x", token=None)[0] == 401
        code, doc = call(port, "POST", "/v1/jobs", b"{not json")
        assert code == 400 and "not JSON" in doc["error"]
        code, doc = call(port, "POST", "/v1/jobs", json.dumps({"model_uri": "x"}).encode())
        assert code == 400 and "bundle_uri" in doc["error"]
        (tmp_path / "bad.onnx").write_bytes(b"\x08\x07 this is not a model")
        code, doc = call(
            port,
            "POST",
            "/v1/jobs",
            json.dumps({**job, "model_uri": str(tmp_path / "bad.onnx")}).encode(),
        )
        assert code == 422 and "not a valid ONNX model" in doc["error"]
        code, doc = call(
            port, "POST", "/v1/jobs", json.dumps({**job, "precision": "fp16"}).encode()
        )
        assert code == 422 and "fp16" in doc["error"]
        # Still serving: a good job runs to its report, and one job runs at a time.
        assert call(port, "GET", "/healthz", token=None) == (
            200,
            call(port, "GET", "/healthz", token=None)[1],
        )
        long_job = json.dumps({**job, "runs": 3000}).encode()
        code, doc = call(port, "POST", "/v1/jobs", long_job)
        assert code == 202
        code, busy = call(port, "POST", "/v1/jobs", body)
        assert code == 409 and "one job at a time" in busy["error"]
        assert (
            call(port, "POST", "/v1/jobs", long_job)[1]["job_id"] == doc["job_id"]
        )  # same job again
        deadline = time.time() + 120
        while (state := call(port, "GET", f"/v1/jobs/{doc['job_id']}")[1])["state"] == "running":
            assert time.time() < deadline
            time.sleep(0.2)
        assert state["state"] == "succeeded" and state["report"]["latency"]["runs"] == 3000
        assert agent.poll() is None
    finally:
        agent.kill()
        agent.wait()


def test_a_validation_moves_to_another_bench_when_its_bench_dies(promoted_release, tmp_path):
    release = promoted_release["release"]
    ports = {"bench-a": free_port(), "bench-b": free_port()}
    agents = {
        name: start_agent(str(tmp_path / name), port, release) for name, port in ports.items()
    }
    benches = {
        n: {"address": f"127.0.0.1:{p}", "target": "", "token": TOKEN} for n, p in ports.items()
    }
    seen = []

    def kill_first_bench(status: dict) -> None:
        seen.append((status["phase"], status.get("bench")))
        if status["phase"] == "Running" and status["bench"] == "bench-a":
            agents["bench-a"].send_signal(signal.SIGKILL)

    spec = {**validation_spec(release, str(tmp_path / "report.json")), "runs": 3000}
    try:
        status = run_validation("v", spec, benches, poll_s=0.2, on_status=kill_first_bench)
    finally:
        for proc in agents.values():
            proc.kill()
            proc.wait()
    assert ("Running", "bench-a") in seen and status["benchesLost"] == ["bench-a"]
    assert (
        status["phase"] == "Succeeded" and status["bench"] == "bench-b" and status["attempts"] == 2
    )


def test_the_deploy_workflow_runs_locally(trained, tmp_path):
    params = {
        "model-uri": str(trained["run"] / "deployable" / "model"),
        "validation": trained["heldout"],
        "releases": str(tmp_path / "releases"),
        "engine-cache": str(tmp_path / "engines"),
        "registry": str(tmp_path / "registry"),
        "model-repo": str(tmp_path / "triton"),
        "bench-runs": "50",
        "bench-warmup": "5",
        "pushgateway": "",
        "triton-url": "",
    }
    run = local_run("workflows/deploy.yaml", params, tmp_path / "wd")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    pointer = promoted(str(tmp_path / "registry"))
    assert pointer["model_ref"] == "dpe-scorer:1"
    [report] = pathlib.Path(tmp_path / "releases" / pointer["release_id"] / "bench").glob("*.json")
    doc = json.loads(report.read_text())
    assert doc["verdict"]["passed"] and doc["validation"]["precision"] == "fp32"  # fp16 -> ORT fp32
    assert list((tmp_path / "engines").glob("*/engine.json"))  # the build step's engine
