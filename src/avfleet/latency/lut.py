"""The latency lookup table: measured units of one bench, and whole-net predictions from them.

    predicted(net) = call + sum over the net's units u of (ms(u) - call)
                   + half a reorder pair at each layout edge the net has

Each unit was timed alone, in a model of its own, so each time includes one
call of the runtime (`call`: an identity model); the net pays that once. A
conv's time leaves out the layout reorders it paid alone (bench.profile), and
the net's own reorders are counted where its blocked chain of convs meets an
op that is not blocked (latency.units.net_plan); a residual add that the
runtime fuses into its conv costs nothing of its own. The
prediction is checked against whole-net measurements on the same bench
(`benchmarks/latency_lut.py`): where it stays within the stated error, the
table may stand in for the bench in training and search, which ask for
thousands of predictions.

A table file (`lut.json`) is written by `avfleet latency profile` and read by
training; it names the bench it was measured on and the input size.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterable

from avfleet.bench.profile import bench_id, cached_profile, check_unit, unit_key
from avfleet.core import storage
from avfleet.core.errors import PermanentError
from avfleet.core.progress import Progress
from avfleet.latency.units import Arch, net_plan, net_units
from avfleet.latency.widths import width_choices, width_variables, with_widths

CALL = unit_key({"op": "call"})


class MissingUnits(PermanentError):
    """The table lacks units a prediction needs (profile them on the bench first)."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    total_ms: float
    parts_ms: dict[str, float]
    """Milliseconds per part of the net (stem, blocks.i, decoder, head, call)."""


@dataclasses.dataclass(frozen=True)
class LatencyTable:
    bench: str
    """Where the units were measured (runtime, version, target, threads)."""
    input_hw: tuple[int, int]
    entries: dict[str, float]
    """unit key -> milliseconds (one call included)."""
    blocked_in: frozenset[str] = frozenset()
    """Keys of the convs that read the runtime's blocked layout."""
    blocked_out: frozenset[str] = frozenset()
    """Keys of the convs that write it."""

    def predict(self, arch: Arch) -> Prediction:
        """The net's latency at batch 1 on the table's bench; MissingUnits if a unit is absent."""
        parts: dict[str, float] = {}
        call = self.entries.get(CALL)
        missing = []
        for part, unit, when in net_plan(arch, self.input_hw):
            ms = self.entries.get(unit_key(unit))  # net_plan's units are canonical already
            if ms is None or call is None:
                missing.append(unit)
                continue
            if part == "call":
                share = ms
            elif when is None:
                share = ms - call
            elif when[0] == "edge":  # one direction of a timed pair, where the layout changes
                changes = self._writes_blocked(when[1]) != self._reads_blocked(when[2])
                share = 0.5 * (ms - call) if changes else 0.0
            else:  # "unfused": an add the runtime did not fold into its conv
                share = 0.0 if self._writes_blocked(when[1]) else ms - call
            parts[part] = parts.get(part, 0.0) + share
        if missing:
            raise MissingUnits(
                f"the latency table ({self.bench}) lacks {len(missing)} unit(s) of this net, "
                f"e.g. {unit_key(missing[0])}: profile it with `avfleet latency profile`"
            )
        return Prediction(sum(parts.values()), parts)

    def _reads_blocked(self, unit: dict | None) -> bool:
        return unit is not None and unit_key(unit) in self.blocked_in

    def _writes_blocked(self, unit: dict | None) -> bool:
        return unit is not None and unit_key(unit) in self.blocked_out

    def to_json(self) -> str:
        entries = [
            {
                "unit": json.loads(k),
                "ms": ms,
                "blocked_in": k in self.blocked_in,
                "blocked_out": k in self.blocked_out,
            }
            for k, ms in sorted(self.entries.items())
        ]
        doc = {"bench": self.bench, "input_hw": list(self.input_hw), "entries": entries}
        return json.dumps(doc, indent=1)


def load_table(uri: str, config: storage.StorageConfig | None = None) -> LatencyTable:
    """A table file, checked: every entry a valid unit with a positive time."""
    try:
        doc = json.loads(storage.read_bytes(uri, config))
        entries, blocked_in, blocked_out = {}, set(), set()
        for entry in doc["entries"]:
            ms = entry["ms"]
            if not isinstance(ms, int | float) or not ms > 0:
                raise ValueError(f"latency {ms!r} is not a positive number")
            key = unit_key(check_unit(entry["unit"]))
            entries[key] = float(ms)
            if entry.get("blocked_in") is True:
                blocked_in.add(key)
            if entry.get("blocked_out") is True:
                blocked_out.add(key)
        h, w = doc["input_hw"]
        return LatencyTable(
            str(doc["bench"]),
            (int(h), int(w)),
            entries,
            frozenset(blocked_in),
            frozenset(blocked_out),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise PermanentError(f"{uri}: not a latency table: {e}") from e


def save_table(table: LatencyTable, uri: str, config: storage.StorageConfig | None = None) -> None:
    storage.atomic_write_text(uri, table.to_json(), config)


# Which units a pruning (or search) may ask about ------------------------------------------


def pruning_units(arch: Arch, input_hw: tuple[int, int]) -> list[dict]:
    """Every unit of every net that pruning `arch` on the width grid can produce.

    A unit depends on at most a few width variables (a conv on its input's and
    output's, the decoder's fuse on three); which ones is found by changing each
    variable and seeing which units change, and each unit is then listed for
    every combination of its variables' choices, the others at full size.
    """
    variables = width_variables(arch)
    base = net_units(arch, input_hw)
    depends: list[list[str]] = [[] for _ in base]
    for var in variables:
        choices = width_choices(var.size)
        if len(choices) < 2:
            continue
        changed = net_units(with_widths(arch, {var.name: choices[0]}), input_hw)
        if len(changed) != len(base):
            raise AssertionError(f"changing {var.name} changed the net's structure")
        for i, (a, b) in enumerate(zip(base, changed, strict=True)):
            if a != b:
                depends[i].append(var.name)
    choices_of = {v.name: width_choices(v.size) for v in variables}
    out = {}
    for i, deps in enumerate(depends):
        for combo in itertools.product(*(choices_of[d] for d in deps)):
            unit = net_units(with_widths(arch, dict(zip(deps, combo, strict=True))), input_hw)[i][1]
            out[unit_key(check_unit(unit))] = unit
    return list(out.values())


# Building a table ------------------------------------------------------------------------


Profiler = Callable[[list[dict]], tuple[str, dict[str, dict]]]
"""units -> (bench id, unit key -> {"ms", "blocked_in", "blocked_out"}): a bench, here or an agent."""


def local_profiler(
    cache_uri: str,
    *,
    threads: int = 1,
    target: str = "",
    progress: Progress | None = None,
) -> Profiler:
    """This machine as the bench (ONNX Runtime), with the same unit cache the agent keeps."""
    import platform

    import onnxruntime

    bench = bench_id(
        "onnxruntime",
        onnxruntime.__version__,
        target or f"{platform.machine()}-onnxruntime",
        threads,
    )

    def profile(units: list[dict]) -> tuple[str, dict[str, dict]]:
        found, _ = cached_profile(units, cache_uri, bench, threads=threads, progress=progress)
        return bench, found

    return profile


def agent_profiler(address: str, token: str, timeout_s: float = 1800.0) -> Profiler:
    """A bench agent measures the units (POST /v1/profile); its own cache skips known ones."""
    from avfleet.bench.client import BenchClient

    client = BenchClient(address, token, timeout_s=60.0)

    def profile(units: list[dict]) -> tuple[str, dict[str, dict]]:
        report = client.wait(client.submit_profile(units), timeout_s)
        entries = {
            unit_key(check_unit(e["unit"])): {
                "ms": float(e["ms"]),
                "blocked_in": e.get("blocked_in") is True,
                "blocked_out": e.get("blocked_out") is True,
            }
            for e in report["entries"]
        }
        return report["bench"], entries

    return profile


def build_table(
    units: Iterable[dict], input_hw: tuple[int, int], profiler: Profiler
) -> LatencyTable:
    units = [{"op": "call"}, *units]
    bench, found = profiler(units)
    wanted = {unit_key(check_unit(u)) for u in units}
    if wanted - set(found):
        raise PermanentError(
            f"the bench {bench} returned {len(wanted - set(found))} units fewer than asked"
        )
    return LatencyTable(
        bench,
        (int(input_hw[0]), int(input_hw[1])),
        {k: e["ms"] for k, e in found.items()},
        frozenset(k for k, e in found.items() if e["blocked_in"]),
        frozenset(k for k, e in found.items() if e["blocked_out"]),
    )


def profile_to_file(
    units: list[dict], input_hw: tuple[int, int], out_uri: str, *, bench: str = "", cache: str = ""
) -> LatencyTable:
    """The table of `units`, measured on a bench agent (`bench`: its address, the token from the
    environment) or on this machine (unit cache `cache`, default beside the file), saved to
    out_uri; a progress bar while this machine measures."""
    from avfleet.core.progress import progress

    with progress("profiling units", len(units) + 1, enabled=False if bench else None) as bar:
        if bench:
            from avfleet.bench.client import token_from_env

            profiler = agent_profiler(bench, token_from_env())
        else:
            out_dir = out_uri.rsplit("/", 1)[0] if "/" in out_uri else "."
            profiler = local_profiler(cache or storage.join(out_dir, "latency-cache"), progress=bar)
        table = build_table(units, input_hw, profiler)
    save_table(table, out_uri)
    return table
