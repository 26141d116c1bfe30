"""The bench agent's profiling job over real HTTP: bad requests get 4xx, a table built through the
agent equals what its cache holds, and a whole net's prediction is near its measured latency."""

from __future__ import annotations

import json

import pytest

from avfleet.core.errors import ConfigError
from avfleet.core.net import free_port
from avfleet.latency.lut import agent_profiler, build_table, load_table, save_table
from avfleet.latency.units import conv, net_units
from avfleet.train.models import default_arch
from tests.integration.test_deploy import TOKEN, call, start_agent

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    port = free_port()
    proc = start_agent(str(tmp_path_factory.mktemp("bench-cache")), port)
    yield port
    proc.kill()
    proc.wait()


def post(port: int, doc: object) -> tuple[int, dict]:
    return call(port, "POST", "/v1/profile", json.dumps(doc).encode())


def test_bad_profiling_requests_get_4xx_and_the_agent_keeps_serving(agent):
    good = conv(8, 16, (16, 32))
    assert (
        call(agent, "POST", "/v1/profile", json.dumps({"units": [good]}).encode(), token=None)[0]
        == 401
    )
    cases = [
        (b"{not json", "not JSON"),
        ([good], "JSON object"),
        ({"units": []}, "list of 1 to"),
        ({"units": [{"op": "call"}] * 4097}, "list of 1 to"),
        ({"units": [good], "runs": 10**9}, "unknown request fields"),
        ({"units": [{**good, "cin": -1}]}, "units[0]: unit field 'cin'"),
        ({"units": [{**good, "hw": [4096, 4096], "cin": 4096}]}, "over"),
        ({"units": [{"op": "system", "cmd": "rm -rf /"}]}, "op must be one of"),
        ({"units": [{"op": "reorder", "channels": 6, "hw": [4, 4]}]}, "multiple of 4"),
    ]
    for body, words in cases:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        code, doc = call(agent, "POST", "/v1/profile", raw)
        assert code == 400 and words in doc["error"], (body, code, doc)
    assert call(agent, "GET", "/healthz", token=None)[0] == 200


def test_a_table_built_through_the_agent_predicts_a_net(agent, tmp_path):
    arch = default_arch(width=0.5)
    units = [u for _, u in net_units(arch, (64, 128))]
    table = build_table(units, (64, 128), agent_profiler(f"127.0.0.1:{agent}", TOKEN))
    assert table.bench.startswith("onnxruntime-")
    again = build_table(units, (64, 128), agent_profiler(f"127.0.0.1:{agent}", TOKEN))
    assert again.entries == table.entries  # the agent's cache answered the second time
    save_table(table, str(tmp_path / "lut.json"))
    loaded = load_table(str(tmp_path / "lut.json"))
    assert loaded == table
    assert 0 < loaded.predict(arch).total_ms < 50
    (tmp_path / "torn.json").write_text((tmp_path / "lut.json").read_text()[:500])
    with pytest.raises(Exception, match="not a latency table"):
        load_table(str(tmp_path / "torn.json"))


def test_training_refuses_a_table_that_lacks_the_pruning_units(tmp_path, agent):
    from avfleet.train import compress
    from avfleet.train.models import build

    arch = default_arch(width=0.5)
    units = [u for _, u in net_units(arch, (64, 128))]  # the net alone, not its pruning grid
    table = build_table(units, (64, 128), agent_profiler(f"127.0.0.1:{agent}", TOKEN))
    with pytest.raises(ConfigError, match="lacks"):
        compress.Controller(build(arch), 0.1, table, compress.Budget(target_latency_ms=1.0), 10)
