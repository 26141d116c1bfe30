"""The Triton model repository: versions, config.pbtxt, checked loads; the scoring graph's ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avfleet.bench.engines import ort_session
from avfleet.core.errors import ConfigError, PermanentError
from avfleet.serve import repository as R
from avfleet.serve.graph import OUTPUTS, Reduction, ScoringGraph, export_onnx, score_in_process
from avfleet.taxonomy import NUM_CLASSES
from avfleet.train.models import build, default_arch


@pytest.fixture(scope="module")
def graph_and_onnx():
    torch.manual_seed(0)
    graph = ScoringGraph(build(default_arch(), members=3), Reduction("top", 0.2))
    return graph, export_onnx(graph, 32, 64)


def test_scoring_graph_onnx_matches_in_process(graph_and_onnx):
    graph, onnx = graph_and_onnx
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 64, 3), dtype=np.uint8)
    ref = score_in_process(graph, frames)
    got = dict(zip(OUTPUTS, ort_session(onnx).run(list(OUTPUTS), {"frames": frames}), strict=True))
    for name in OUTPUTS:
        assert np.allclose(got[name], ref[name], atol=1e-5), name
    assert got["class_probability"].shape == (6, NUM_CLASSES)
    assert np.allclose(got["class_probability"].sum(1), 1.0, atol=1e-5)


def test_publish_versions_and_checked_load(graph_and_onnx, tmp_path):
    _, onnx = graph_and_onnx
    repo = str(tmp_path / "repo")
    args = dict(num_classes=8, height=32, width=64)
    assert R.publish(repo, "dpe-scorer", onnx, {"source": "a"}, **args) == 1
    assert R.publish(repo, "dpe-scorer", onnx, {"source": "b"}, **args) == 2
    assert R.versions(repo, "dpe-scorer") == [1, 2]
    assert R.load_version(repo, "dpe-scorer").version == 2
    assert R.load_version(repo, "dpe-scorer:1").info["source"] == "a"
    config = (tmp_path / "repo" / "dpe-scorer" / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config and "dynamic_batching" in config
    assert "dims: [ 32, 64, 3 ]" in config and "KIND_GPU" in config
    with pytest.raises(PermanentError, match="not published"):
        R.load_version(repo, "dpe-scorer:7")
    (tmp_path / "repo" / "dpe-scorer" / "2" / "model.onnx").write_bytes(onnx[:-10])
    with pytest.raises(PermanentError, match="sha256"):
        R.load_version(repo, "dpe-scorer:2")
    (tmp_path / "repo" / "dpe-scorer" / "3").mkdir()  # half-published: no model.onnx yet
    assert R.versions(repo, "dpe-scorer") == [1, 2]
    with pytest.raises(ConfigError, match="NAME:VERSION"):
        R.parse_ref("Bad Name:x")


def test_config_pbtxt_parses_as_tritons_model_config():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(
        R.config_pbtxt("dpe", 8, 64, 128, R.ServingConfig()), model_config_pb2.ModelConfig()
    )
    assert config.backend == "onnxruntime" and config.max_batch_size == 64
    assert [i.name for i in config.input] == ["frames"] and list(config.input[0].dims) == [
        64,
        128,
        3,
    ]
    assert [o.name for o in config.output][-1] == "class_probability"
    assert list(config.dynamic_batching.preferred_batch_size) == [32, 64]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    # Warmed up before it is ready: one zero frame of the model's own shape.
    (warmup,) = config.model_warmup
    assert warmup.batch_size == 1 and warmup.inputs["frames"].zero_data
    assert list(warmup.inputs["frames"].dims) == [64, 128, 3]
    assert list(config.version_policy.specific.versions) == [1]


def parsed_policy(repo: str, name: str) -> list[int]:
    """The versions the repository's config.pbtxt tells Triton to serve (Triton's own proto)."""
    import pathlib

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = (pathlib.Path(repo) / name / R.CONFIG_FILE).read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    return list(config.version_policy.specific.versions)


def test_served_versions_are_the_newest_and_every_pinned_one(graph_and_onnx, tmp_path):
    """A version the registry points at, or a backfill pinned, stays served as newer ones are
    published; unpinned, it goes once it is no longer among the newest."""
    _, onnx = graph_and_onnx
    repo = str(tmp_path / "repo")

    def publish() -> int:
        return R.publish(repo, "dpe", onnx, {}, num_classes=8, height=32, width=64)

    assert publish() == 1 and parsed_policy(repo, "dpe") == [1]
    assert publish() == 2 and parsed_policy(repo, "dpe") == [1, 2]
    assert R.set_pins(repo, "dpe", {1: "promoted release r1"}) == [1, 2]
    assert publish() == 3 and publish() == 4
    assert parsed_policy(repo, "dpe") == [1, 3, 4]  # 1 pinned, 3 and 4 the newest
    assert R.set_pins(repo, "dpe", {2: "backfill 2026-11-01", 1: None}) == [2, 3, 4]
    assert parsed_policy(repo, "dpe") == [2, 3, 4]
    assert R.pins(repo, "dpe") == {2: "backfill 2026-11-01"}
    with pytest.raises(PermanentError, match="not published"):
        R.set_pins(repo, "dpe", {9: "typo"})
    assert R.pins(repo, "dpe") == {2: "backfill 2026-11-01"}  # nothing changed


def test_transport_failures_count_as_unavailable():
    from geventhttpclient.response import HTTPConnectionClosed
    from tritonclient.utils import InferenceServerException

    from avfleet.serve.client import is_unavailable

    assert is_unavailable(HTTPConnectionClosed("connection closed."))
    assert is_unavailable(ConnectionRefusedError(111, "Connection refused"))
    assert is_unavailable(
        InferenceServerException("failed to connect", status="StatusCode.UNAVAILABLE")
    )
    assert not is_unavailable(
        InferenceServerException("unexpected shape for input 'frames'", status="400")
    )
    assert not is_unavailable(ValueError("bad"))


def test_promotion_keeps_the_promoted_and_the_rollback_version_served(tmp_path):
    """Each promotion pins its version; the one it replaces stays pinned (the rollback target);
    older promoted versions are let go; a backfill's pin is never touched by a promotion."""
    from avfleet.deploy.registry import PromoteConfig, _serve

    repo = str(tmp_path / "repo")
    for _ in range(5):
        R.publish(repo, "dpe", b"onnx", {}, num_classes=8, height=32, width=64)
    R.set_pins(repo, "dpe", {1: "backfill 2026-11-01"})
    config = PromoteConfig(release_uri="", report_uri="", registry_uri="", model_repo_uri=repo)
    current = None
    for version, release in ((2, "r2"), (3, "r3"), (4, "r4")):
        _serve(config, f"dpe:{version}", current, release)
        current = {"model_ref": f"dpe:{version}"}
    assert R.pins(repo, "dpe") == {
        1: "backfill 2026-11-01",
        3: "promoted release r3",
        4: "promoted release r4",
    }
    assert parsed_policy(repo, "dpe") == [1, 3, 4, 5]  # pins + the newest two (4, 5)


def test_pin_model_keeps_a_backfills_version_and_names_what_is_wrong(tmp_path, capsys):
    from avfleet.cli import main

    repo = str(tmp_path / "repo")
    for _ in range(3):
        R.publish(repo, "dpe", b"onnx", {}, num_classes=8, height=32, width=64)
    pin = ["pin-model", "--repo", repo, "--model"]
    assert main([*pin, "dpe:1", "--reason", "backfill 2026-11-01"]) == 0
    assert '"served": [1, 2, 3]' in capsys.readouterr().out
    assert parsed_policy(repo, "dpe") == [1, 2, 3]
    assert main([*pin, "dpe:1"]) == 78  # no reason given
    assert main([*pin, "dpe:9", "--reason", "x"]) == 65  # not published
    assert main([*pin, "dpe", "--reason", "x"]) == 78  # no version
    assert R.pins(repo, "dpe") == {1: "backfill 2026-11-01"}  # the refusals changed nothing
    assert main([*pin, "dpe:1", "--unpin"]) == 0 and parsed_policy(repo, "dpe") == [2, 3]
