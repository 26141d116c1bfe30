"""Profiling on the bench: the latency of one operator unit, measured on this bench's runtime.

A unit is the smallest piece of a network the runtime executes as one kernel
after its own graph optimisation: a convolution with its BatchNorm folded in
and its activation fused (ONNX Runtime's FusedConv), an add, a bilinear resize,
a concat. A latency lookup table (avfleet.latency) is a set of measured units;
a whole net's latency is predicted as the sum of its units plus the runtime's
fixed cost of one call (`{"op": "call"}`: an identity model).

Where the sum of units alone goes wrong, and what is measured instead: ONNX
Runtime runs convolutions in a blocked channel layout (NCHWc). A conv timed
alone pays a reorder into that layout and one out of it; inside a net, a chain
of convs stays blocked and pays them only where the chain meets an op that is
not blocked (Resize, Concat). Summing units timed alone overestimated whole
nets by 7% on average (19 of 24 sampled nets within +-10%, worst +14%). So the profile of
a conv records which reorders its own graph had (`blocked_in`: it reads the
blocked layout, `blocked_out`: it writes it), times those
reorders (`{"op": "reorder"}`: a ReorderInput -> ReorderOutput pair in the
runtime's own nchwc ops), and reports the conv's time without them; the net's
real reorders are units of their own (avfleet.latency.units), counted where
the chain breaks.

A unit is a small JSON object, checked here before anything runs:

    {"op": "conv", "cin": 32, "cout": 64, "kernel": [3, 3], "stride": 2, "dilation": 1,
     "groups": 1, "act": true, "hw": [64, 128]}
    {"op": "add", "channels": 48, "hw": [4, 8]}
    {"op": "resize", "channels": 8, "hw": [32, 64], "out_hw": [64, 128]}
    {"op": "concat", "channels": [32, 16], "hw": [32, 64]}
    {"op": "call"}

Each unit becomes a one-node ONNX model with random weights, run through the
same ONNX Runtime session (and graph optimisation) that engines use. The input
and output live in buffers bound once (IO binding), so the time is the kernel's
and one call's, not numpy copies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable

import numpy as np

from avfleet.core import storage
from avfleet.core.errors import NotFoundError, PermanentError
from avfleet.core.progress import Progress

log = logging.getLogger(__name__)

MAX_CHANNELS = 4096
MAX_SIDE = 4096
MAX_KERNEL = 11
NCHWC = "com.microsoft.nchwc"  # ONNX Runtime's blocked-layout ops
MAX_ELEMENTS = 1 << 26  # one tensor of a unit: 64 Mi floats (256 MiB)
OPS = ("conv", "add", "resize", "concat", "reorder", "call")
FIELDS = {
    "reorder": ("channels", "hw"),
    "conv": ("cin", "cout", "kernel", "stride", "dilation", "groups", "act", "hw"),
    "add": ("channels", "hw"),
    "resize": ("channels", "hw", "out_hw"),
    "concat": ("channels", "hw"),
    "call": (),
}


class BadUnit(PermanentError):
    """A unit that is not one of the shapes above, or is out of bounds."""


def _int(unit: dict, name: str, low: int, high: int) -> int:
    value = unit.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadUnit(f"unit field {name!r} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _pair(unit: dict, name: str, high: int) -> tuple[int, int]:
    value = unit.get(name)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= high for v in value)
    ):
        raise BadUnit(f"unit field {name!r} must be two integers in [1, {high}], got {value!r}")
    return value[0], value[1]


def check_unit(unit: object) -> dict:
    """The unit, canonical (sorted fields, known ops, bounded sizes); BadUnit naming what is wrong."""
    if not isinstance(unit, dict):
        raise BadUnit(f"a unit must be a JSON object, got {type(unit).__name__}")
    op = unit.get("op")
    if op not in OPS:
        raise BadUnit(f"unit op must be one of {list(OPS)}, got {op!r}")
    unknown = sorted(set(unit) - {"op", *FIELDS[op]})
    if unknown:
        raise BadUnit(f"unknown fields {unknown} for a {op!r} unit (known: {list(FIELDS[op])})")
    if op == "call":
        return {"op": "call"}
    h, w = _pair(unit, "hw", MAX_SIDE)
    if op == "conv":
        cin = _int(unit, "cin", 1, MAX_CHANNELS)
        cout = _int(unit, "cout", 1, MAX_CHANNELS)
        groups = _int(unit, "groups", 1, MAX_CHANNELS)
        if cin % groups or cout % groups:
            raise BadUnit(f"groups {groups} must divide cin {cin} and cout {cout}")
        if not isinstance(unit.get("act"), bool):
            raise BadUnit(f"unit field 'act' must be true or false, got {unit.get('act')!r}")
        out = {
            "op": op,
            "cin": cin,
            "cout": cout,
            "kernel": list(_pair(unit, "kernel", MAX_KERNEL)),
            "stride": _int(unit, "stride", 1, 4),
            "dilation": _int(unit, "dilation", 1, 8),
            "groups": groups,
            "act": unit["act"],
            "hw": [h, w],
        }
        channels = max(cin, cout)
    elif op == "concat":
        parts = unit.get("channels")
        if not isinstance(parts, list) or not 2 <= len(parts) <= 8:
            raise BadUnit(f"concat 'channels' must be a list of 2 to 8 integers, got {parts!r}")
        for c in parts:
            _int({"channels": c}, "channels", 1, MAX_CHANNELS)
        out = {"op": op, "channels": list(parts), "hw": [h, w]}
        channels = sum(parts)
    else:
        channels = _int(unit, "channels", 1, MAX_CHANNELS)
        out = {"op": op, "channels": channels, "hw": [h, w]}
        if op == "reorder" and channels % 4:
            raise BadUnit(f"a reorder's channels must be a multiple of 4, got {channels}")
        if op == "resize":
            oh, ow = _pair(unit, "out_hw", MAX_SIDE)
            out["out_hw"] = [oh, ow]
            h, w = max(h, oh), max(w, ow)
    if channels * h * w > MAX_ELEMENTS:
        raise BadUnit(f"unit tensors of {channels}x{h}x{w} are over {MAX_ELEMENTS} elements")
    return out


def unit_key(unit: dict) -> str:
    """The canonical text of a checked unit: its identity in a lookup table."""
    return json.dumps(unit, sort_keys=True, separators=(",", ":"))


def conv_out_size(size: int, k: int, stride: int, dilation: int) -> int:
    """One side of a 'same'-padded conv's output, as models.ConvBNAct pads it."""
    pad = dilation * (k - 1) // 2
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def reorder_unit(channels: int, hw: tuple[int, int] | list[int]) -> dict:
    """The reorder pair of a tensor, its channels rounded up to a multiple of 4 (blocked tensors
    pad them; ReorderInput needs it)."""
    return {"op": "reorder", "channels": -(-channels // 4) * 4, "hw": list(hw)}


def unit_model(unit: dict) -> tuple[bytes, dict[str, tuple[int, ...]], tuple[int, ...]]:
    """(ONNX bytes, input name -> shape, output shape) of a checked unit, batch 1."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    op = unit["op"]
    nodes, inits = [], []
    if op == "call":
        inputs = {"x": (1, 1)}
        nodes.append(helper.make_node("Identity", ["x"], ["y"]))
        out_shape: tuple[int, ...] = (1, 1)
    elif op == "conv":
        (h, w), (kh, kw) = unit["hw"], unit["kernel"]
        s, d, g = unit["stride"], unit["dilation"], unit["groups"]
        inputs = {"x": (1, unit["cin"], h, w)}
        weight = rng.standard_normal((unit["cout"], unit["cin"] // g, kh, kw), dtype=np.float32)
        inits += [
            numpy_helper.from_array(weight * 0.1, "w"),
            numpy_helper.from_array(np.zeros(unit["cout"], np.float32), "b"),
        ]
        pads = [d * (kh - 1) // 2, d * (kw - 1) // 2] * 2
        conv_out = "c" if unit["act"] else "y"
        nodes.append(
            helper.make_node(
                "Conv",
                ["x", "w", "b"],
                [conv_out],
                kernel_shape=[kh, kw],
                strides=[s, s],
                dilations=[d, d],
                group=g,
                pads=pads,
            )
        )
        if unit["act"]:  # ReLU6, as torch exports it; ORT fuses it into the conv
            inits += [
                numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
                numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
            ]
            nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"]))
        out_shape = (1, unit["cout"], conv_out_size(h, kh, s, d), conv_out_size(w, kw, s, d))
    elif op == "add":
        shape = (1, unit["channels"], *unit["hw"])
        inputs = {"x": shape, "x2": shape}
        nodes.append(helper.make_node("Add", ["x", "x2"], ["y"]))
        out_shape = shape
    elif op == "resize":
        inputs = {"x": (1, unit["channels"], *unit["hw"])}
        out_shape = (1, unit["channels"], *unit["out_hw"])
        inits.append(numpy_helper.from_array(np.array(out_shape, np.int64), "sizes"))
        nodes.append(
            helper.make_node(
                "Resize",
                ["x", "", "", "sizes"],
                ["y"],
                mode="linear",
                coordinate_transformation_mode="half_pixel",
            )
        )
    elif op == "reorder":  # into the blocked layout and back: both directions, one call
        shape = (1, unit["channels"], *unit["hw"])
        inputs, out_shape = {"x": shape}, shape
        nodes.append(helper.make_node("ReorderInput", ["x"], ["t"], domain=NCHWC))
        nodes.append(
            helper.make_node("ReorderOutput", ["t"], ["y"], domain=NCHWC, channels=unit["channels"])
        )
    else:  # concat
        inputs = {f"x{i}": (1, c, *unit["hw"]) for i, c in enumerate(unit["channels"])}
        nodes.append(helper.make_node("Concat", list(inputs), ["y"], axis=1))
        out_shape = (1, sum(unit["channels"]), *unit["hw"])
    graph = helper.make_graph(
        nodes,
        "unit",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", 17)]
    if op == "reorder":
        opsets.append(helper.make_opsetid(NCHWC, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString(), inputs, out_shape


def ort_unit_timer(unit: dict, threads: int = 1) -> tuple[Callable[[], None], tuple[bool, bool]]:
    """(a function that runs the unit once through ONNX Runtime, buffers bound once;
    (blocked in, blocked out): which layout reorders the runtime put around it, for a conv)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    from avfleet.bench.engines import ort_session

    model, inputs, out_shape = unit_model(unit)
    layout = (False, False)
    if unit["op"] == "conv":  # the session saves the graph it optimised: read its reorders
        with tempfile.TemporaryDirectory() as tmp:
            session = ort_session(model, threads, save_to=f"{tmp}/optimized.onnx")
            graph = onnx.load(f"{tmp}/optimized.onnx").graph
        ops = {n.op_type for n in graph.node if n.domain == NCHWC}
        layout = ("ReorderInput" in ops, "ReorderOutput" in ops)
    else:  # the reorder pair is what optimisation removes: run it as written
        session = ort_session(model, threads, optimized=unit["op"] == "reorder")
    rng = np.random.default_rng(1)
    binding = session.io_binding()
    keep = []  # the bound OrtValues must outlive the binding
    for name, shape in inputs.items():
        value = ort.OrtValue.ortvalue_from_numpy(rng.random(shape, dtype=np.float32))
        keep.append(value)
        binding.bind_ortvalue_input(name, value)
    output = ort.OrtValue.ortvalue_from_numpy(np.empty(out_shape, np.float32))
    keep.append(output)
    binding.bind_ortvalue_output("y", output)

    def run() -> None:
        session.run_with_iobinding(binding)

    run.keep = keep  # type: ignore[attr-defined]
    return run, layout


def time_ms(run: Callable[[], None], warmup: int, runs: int) -> float:
    """Median milliseconds of `runs` calls after `warmup` untimed ones."""
    from avfleet.bench.measure import call_times_ms

    return float(np.median(call_times_ms(run, warmup, runs)))


def _adaptive_runs(run: Callable[[], None], budget_ms: float, lo: int, hi: int) -> int:
    """How many timed calls fit in about budget_ms (a 2 ms conv gets fewer than a 20 us one)."""
    started = time.perf_counter()
    run()
    once_ms = (time.perf_counter() - started) * 1000.0
    return int(min(hi, max(lo, budget_ms / max(once_ms, 1e-3))))


def _reorders(unit: dict, layout: tuple[bool, bool]) -> list[dict]:
    """The reorder pairs a conv timed alone paid for: of its input, of its output."""
    if unit["op"] != "conv":
        return []
    (h, w), (kh, kw) = unit["hw"], unit["kernel"]
    out_hw = [conv_out_size(x, k, unit["stride"], unit["dilation"]) for x, k in ((h, kh), (w, kw))]
    into, out = layout
    return [reorder_unit(unit["cin"], (h, w))] * into + [reorder_unit(unit["cout"], out_hw)] * out


def profile_units(
    units: Iterable[dict],
    *,
    threads: int = 1,
    warmup: int = 5,
    runs: int = 50,
    rounds: int = 2,
    chunk: int = 64,
    progress: Progress | None = None,
) -> dict[str, dict]:
    """unit key -> {"ms", "blocked_in", "blocked_out"}: best of `rounds` medians, each unit alone.

    A conv's "ms" leaves out the reorders it paid alone (half a timed pair each:
    a pair is one reorder in and one out, the same bytes moved); "blocked_in"
    and "blocked_out" say which side of it ran in the blocked layout. Every "ms" includes one call.
    At most `runs` timed calls a round, fewer for a slow unit (about 25 ms of
    timing a round, at least 10 calls). Rounds interleave over a chunk of units
    rather than repeating one unit, so a burst of noise from other processes
    lands on different units' rounds, and the best of the rounds is the least
    disturbed. Sessions live one chunk at a time (bounded memory).
    """
    checked = {unit_key(u): u for u in map(check_unit, units)}
    keys = list(checked)
    call_key = unit_key({"op": "call"})
    best: dict[str, float] = {}
    reorders: dict[str, list[dict]] = {}
    layout: dict[str, tuple[bool, bool]] = {}
    pending = {call_key: {"op": "call"}}  # reorders and the call, timed with the next chunk
    for start in range(0, len(keys), chunk):
        part = {k: checked[k] for k in keys[start : start + chunk] if k not in best}
        timers = {key: ort_unit_timer(unit, threads) for key, unit in {**part, **pending}.items()}
        pending = {}
        for key in part:
            layout[key] = timers[key][1]
            reorders[key] = _reorders(checked[key], layout[key])
            for r in reorders[key]:
                if unit_key(r) not in best and unit_key(r) not in timers:
                    timers[unit_key(r)] = ort_unit_timer(r, threads)
        counts = {key: _adaptive_runs(run, 25.0, 10, runs) for key, (run, _) in timers.items()}
        for r in range(rounds):
            for key, (run, _) in timers.items():
                ms = time_ms(run, warmup if r == 0 else 1, counts[key])
                best[key] = min(best.get(key, ms), ms)
        del timers
        if progress:
            progress.advance(len(keys[start : start + chunk]))
    call = best[call_key]
    out = {}
    for key in keys:
        into, outof = layout.get(key, (False, False))
        ms = best[key] - sum(0.5 * (best[unit_key(r)] - call) for r in reorders.get(key, []))
        out[key] = {"ms": max(ms, call + 1e-4), "blocked_in": into, "blocked_out": outof}
    return out


# The cache of measured units ----------------------------------------------------------------


def bench_id(runtime: str, version: str, target: str, threads: int) -> str:
    """Which bench a latency was measured on: a unit's time means nothing elsewhere."""
    return f"{runtime}-{version}-{target}-t{threads}"


def _entry_uri(cache_uri: str, bench: str, key: str) -> str:
    return storage.join(cache_uri, bench, hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def _read_entry(uri: str, key: str, config: storage.StorageConfig | None) -> dict | None:
    """The cached {"ms", "blocked_in", "blocked_out"}, or None for a missing or torn entry (it is
    measured again)."""
    try:
        doc = json.loads(storage.read_bytes(uri, config))
        ms = doc["ms"]
        if unit_key(doc["unit"]) != key or not isinstance(ms, float) or not ms > 0:
            raise ValueError("entry for another unit, or not a latency")
        if not isinstance(doc["blocked_in"], bool) or not isinstance(doc["blocked_out"], bool):
            raise ValueError("no layout flags")
    except NotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as e:
        log.warning("latency cache entry %s is torn (%s): measuring it again", uri, e)
        return None
    return {"ms": ms, "blocked_in": doc["blocked_in"], "blocked_out": doc["blocked_out"]}


def cached_profile(
    units: Iterable[dict],
    cache_uri: str,
    bench: str,
    *,
    threads: int = 1,
    config: storage.StorageConfig | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, dict], int]:
    """(unit key -> {"ms", "blocked_in", "blocked_out"}, how many measured now): cache, then bench."""
    checked = {unit_key(u): u for u in map(check_unit, units)}
    found = {}
    for key in checked:
        entry = _read_entry(_entry_uri(cache_uri, bench, key), key, config)
        if entry is not None:
            found[key] = entry
    missing = [checked[k] for k in checked if k not in found]
    if progress:
        progress.advance(len(found))
    measured = profile_units(missing, threads=threads, progress=progress) if missing else {}
    for key, entry in measured.items():
        doc = {"unit": checked[key], **entry, "bench": bench}
        storage.atomic_write_text(_entry_uri(cache_uri, bench, key), json.dumps(doc), config)
    return {**found, **measured}, len(measured)
