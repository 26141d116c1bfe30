"""`avfleet report --run DIR`: a demo run folder -> report/summary.json and a self-contained report/index.html.

Everything is read back from the run's own files, so the report can be
regenerated at any time from a finished (or partly finished) run:

    runs/round-0/{ensemble,deployable}/   the first training (evaluation.json, arch.json)
    loop/rounds.json, loop-random/rounds.json   the mined rounds and the random arm
    loop/mining/round-N/                   each round's selection and the picked frames
    registry/                              the promoted release and its lineage
    nas/<run>/pareto/pareto.json           the search's candidates and front (--search)

The page embeds every image as a data URI (it opens with no network) and
carries a few lines of script that mark each image as loaded or broken, which
is what the headless-browser test reads back.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import pathlib

from avfleet.core.errors import PermanentError

RARE_NOTE = "rare = every held-out domain but day in clear weather"


def is_rare(domain: str) -> bool:
    tod, weather, _ = domain.split("/")
    return not (tod == "day" and weather == "clear")


def _rare_mean(per_domain: dict[str, float]) -> float | None:
    values = [v for d, v in per_domain.items() if is_rare(d)]
    return sum(values) / len(values) if values else None


def _by_time_of_day(per_domain: dict[str, float]) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for domain, value in per_domain.items():
        groups.setdefault(domain.split("/")[0], []).append(value)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def _read_json(path: pathlib.Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------- summary.json


def build_summary(run: pathlib.Path) -> dict:
    """The numbers of a run (see the module doc for where each comes from)."""
    first = _read_json(run / "runs" / "round-0" / "ensemble" / "model" / "evaluation.json")
    if first is None:
        raise PermanentError(f"{run}: no first training (runs/round-0/ensemble); not a demo run")
    mined = _read_json(run / "loop" / "rounds.json") or {"rounds": []}
    random = _read_json(run / "loop-random" / "rounds.json") or {"rounds": []}
    random_by_round = {r["round"]: r for r in random["rounds"]}
    fleet_share = mined["rounds"][0]["mining"]["fleet_share_per_domain"] if mined["rounds"] else {}
    start = mined.get("start") or {}  # round 0 scored as the rounds score (hazard slice too)
    rounds = [
        {
            "round": 0,
            "miou": first["miou"],
            "hazard_iou": start.get("hazard_iou"),
            "hazard_iou_random": start.get("hazard_iou") if random["rounds"] else None,
            "iou_per_class": start.get("iou_per_class", first.get("iou_per_class", {})),
            "miou_random": first["miou"] if random["rounds"] else None,
            "miou_rare": _rare_mean(first["miou_per_domain"]),
            "miou_random_rare": _rare_mean(first["miou_per_domain"]) if random["rounds"] else None,
            "miou_by_time_of_day": _by_time_of_day(first["miou_per_domain"]),
            "picks_by_domain": {},
            "fleet_share_by_domain": fleet_share,
        }
    ]
    for r in mined["rounds"]:
        other = random_by_round.get(r["round"])
        rounds.append(
            {
                "round": r["round"],
                "miou": r["miou"],
                "miou_random": other["miou"] if other else None,
                "hazard_iou": r.get("hazard_iou"),
                "hazard_iou_random": other.get("hazard_iou") if other else None,
                "iou_per_class": r.get("iou_per_class", {}),
                "iou_per_class_random": other.get("iou_per_class", {}) if other else {},
                "hazard_pick_share": r.get("hazard_pick_share"),
                "hazard_pick_share_random": other.get("hazard_pick_share") if other else None,
                "hazard_pool_share": r.get("hazard_pool_share"),
                "picks_per_hazard": r.get("picks_per_hazard", {}),
                "miou_rare": _rare_mean(r["miou_per_domain"]),
                "miou_random_rare": _rare_mean(other["miou_per_domain"]) if other else None,
                "miou_by_time_of_day": _by_time_of_day(r["miou_per_domain"]),
                "picks_by_domain": r["mining"]["selected_per_domain"],
                "picks_random_by_domain": other["mining"]["selected_per_domain"] if other else {},
                "pseudo_by_domain": r.get("pseudo_per_domain", {}),
                "fleet_share_by_domain": r["mining"]["fleet_share_per_domain"],
                "dataset_frames": r["dataset_frames"],
                "model_ref": r["model_ref"],
            }
        )
    summary: dict = {
        "run": str(run),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rare_domains": RARE_NOTE,
        "selection": mined.get("selection"),
        "training": {k: mined.get(k) for k in ("epochs", "steps", "warm_start", "dpe_strength")},
        "rounds": rounds,
    }
    compression = _compression(run)
    if compression:
        summary["compression"] = compression
    promoted = _promoted(run)
    if promoted:
        summary["promoted"] = promoted
    search = _search(run)
    if search:
        summary["search"] = search
    summary["story"] = story(summary)
    return summary


def _compression_note(c: dict) -> str:
    """What the two rows mean: the dense net trained with the group-sparsity penalty, whose
    removed groups are already (near) zero, against the same net with them cut out."""
    note = (
        "The dense row is the same training before its zeroed channel groups are cut out (the"
        " group-sparsity penalty drives them to zero while it trains), not a net trained"
        " without the penalty; docs/compression.md compares against small nets trained from"
        " scratch."
    )
    if c["miou_before"] is not None and abs(c["miou_before"] - c["miou_after"]) < 5e-4:
        note += " Cutting the zeroed groups changed no prediction."
    return note


def _compression(run: pathlib.Path) -> dict | None:
    model = run / "runs" / "round-0" / "deployable" / "model"
    arch, evaluation = _read_json(model / "arch.json"), _read_json(model / "evaluation.json")
    if not arch or not evaluation or "compression" not in arch:
        return None
    record = arch["compression"]
    dense = model / "dense"
    before = _read_json(dense / "evaluation.json")
    if before is None and (dense / "arch.json").exists():
        heldout = _heldout_uri(run)
        if heldout:
            from avfleet.train.evaluate import evaluate
            from avfleet.train.loop import load_model

            before = {"miou": evaluate(load_model(str(dense)), heldout).miou}
    return {
        "params_before": record["parameters"]["before"],
        "params_after": record["parameters"]["after"],
        "latency_ms_before": record["measured_latency_ms"]["before"],
        "latency_ms_after": record["measured_latency_ms"]["after"],
        "latency_how": record["measured_latency_ms"]["how"],
        "miou_before": before["miou"] if before else None,
        "miou_after": evaluation["miou"],
    }


def _heldout_uri(run: pathlib.Path) -> str | None:
    found = sorted((run / "heldout" / "datasets").glob("ds-*/manifest.json"))
    return str(found[0].parent) if found else None


def _promoted(run: pathlib.Path) -> dict | None:
    registry = run / "registry"
    if not registry.exists():
        return None
    from avfleet.deploy.lineage import lineage, render
    from avfleet.deploy.registry import promoted, release_record

    pointer = promoted(str(registry))
    if pointer is None:
        return None
    record = release_record(str(registry), pointer["release_id"])
    chain = lineage(str(registry))
    return {
        "release": record["release_id"],
        "p50_ms": record["latency"]["p50_ms"],
        "p99_ms": record["latency"]["p99_ms"],
        "miou": record["miou"],
        "model_ref": record["model_ref"],
        "engine": chain["engine"].get("key"),
        "lineage": render(chain, frames=3),
    }


def _search(run: pathlib.Path) -> dict | None:
    found = sorted((run / "nas").glob("*/pareto/pareto.json")) if (run / "nas").exists() else []
    if not found:
        return None
    doc = json.loads(found[-1].read_text())
    front = set(doc["front"])
    return {
        "pareto_uri": str(found[-1]),
        "points": [
            {
                "name": c["name"],
                "target_ms": c.get("target_ms"),
                "p50_ms": c["p50_ms"],
                "p99_ms": c["p99_ms"],
                "miou": c["miou"],
                "parameters": c["parameters"],
                "on_front": c["name"] in front,
            }
            for c in doc["candidates"]
        ],
        "front": doc["front"],
        "plot": str(found[-1].parent / "pareto.png"),
    }


def _share(counts: dict[str, int], test) -> float:  # noqa: ANN001
    total = sum(counts.values())
    return sum(v for d, v in counts.items() if test(d)) / total if total else 0.0


def story(summary: dict) -> list[str]:
    """What the rounds did, in words: the picks' mix against the fleet's, and where mIoU moved."""
    rounds = summary["rounds"]
    if len(rounds) < 2:
        return ["No mining round ran."]
    fleet = rounds[1]["fleet_share_by_domain"]
    rare_fleet = sum(v for d, v in fleet.items() if is_rare(d))
    lines = [
        f"The mined date's frames are {100 * rare_fleet:.0f}% rare conditions "
        f"({RARE_NOTE.split('= ')[1]})."
    ]
    for prev, r in zip(rounds, rounds[1:], strict=False):
        picks = r["picks_by_domain"]
        top = sorted(((v, d) for d, v in picks.items() if is_rare(d)), reverse=True)[:3]
        line = (
            f"Round {r['round']}: mining picked {sum(picks.values())} frames, "
            f"{100 * _share(picks, is_rare):.0f}% rare (the fleet: {100 * rare_fleet:.0f}%)"
            + (f", most of them {', '.join(f'{d} ({v})' for v, d in top)}" if top else "")
            + f"; held-out mIoU {100 * prev['miou']:.1f} -> {100 * r['miou']:.1f}"
        )
        if r.get("miou_rare") is not None and prev.get("miou_rare") is not None:
            line += f" (rare domains {100 * prev['miou_rare']:.1f} -> {100 * r['miou_rare']:.1f})"
        if r.get("miou_random") is not None:
            line += f"; random picks at the same budget: {100 * r['miou_random']:.1f}" + (
                f" (rare {100 * r['miou_random_rare']:.1f})"
                if r.get("miou_random_rare") is not None
                else ""
            )
        if r.get("pseudo_by_domain"):
            line += f"; {sum(r['pseudo_by_domain'].values())} frames pseudo-labeled"
        lines.append(line + ".")
        if r.get("hazard_pick_share") is not None:
            lines.append(hazard_line(prev, r))
    training = summary.get("training") or {}
    if training.get("epochs"):
        how = (
            "fine-tunes the last round's ensemble"
            if training.get("warm_start")
            else "retrains the ensemble from scratch"
        )
        lines.append(
            f"Each round {how} for {training['epochs']} epochs on its grown set (both arms alike, "
            "so a round's difference between them is the picks')."
        )
    ious = [r.get(k) for r in rounds for k in ("hazard_iou", "hazard_iou_random")]
    if any(v is not None for v in ious) and max(v or 0.0 for v in ious) < 0.05:
        lines.append(
            "Neither arm's ensemble learned the hazard classes (hazard IoU under 5% throughout): "
            "the demo's trainings are a few hundred steps, and the hazards need thousands; what "
            "the rounds show of the tail is which frames each arm sent to labeling. "
            "benchmarks/selection_rounds.py trains for thousands of steps (docs/selection.md)."
        )
    last, first = rounds[-1], rounds[0]
    summary_line = (
        f"After {last['round']} rounds: mined {100 * (last['miou'] - first['miou']):+.1f} mIoU "
        f"points over round 0"
    )
    if last.get("miou_random") is not None:
        summary_line += (
            f", random {100 * (last['miou_random'] - first['miou']):+.1f}; mined minus random "
            f"{100 * (last['miou'] - last['miou_random']):+.1f} overall"
        )
        if last.get("miou_rare") is not None and last.get("miou_random_rare") is not None:
            summary_line += (
                f", {100 * (last['miou_rare'] - last['miou_random_rare']):+.1f} on rare domains"
            )
        summary_line += " (one seed: benchmarks/selection_rounds.py measures the spread over seeds)"
    lines.append(summary_line + ".")
    return lines


def hazard_line(prev: dict, r: dict) -> str:
    """One round's hazards in words: what the picks held against the pool, and the hazard IoU."""
    pool = r["hazard_pool_share"]
    line = (
        f"Round {r['round']} hazards: {100 * r['hazard_pick_share']:.0f}% of the mined picks show "
        f"one against {100 * pool:.1f}% of the candidates"
    )
    if pool:
        line += f" ({r['hazard_pick_share'] / pool:.1f}x the base rate)"
    if r.get("hazard_pick_share_random") is not None:
        line += f", random picks {100 * r['hazard_pick_share_random']:.0f}%"
    if r.get("hazard_iou") is not None and prev.get("hazard_iou") is not None:
        line += f"; hazard IoU {100 * prev['hazard_iou']:.1f} -> {100 * r['hazard_iou']:.1f}"
        if r.get("hazard_iou_random") is not None:
            line += f" (random {100 * r['hazard_iou_random']:.1f})"
    return line + "."


# ---------------------------------------------------------------- plots


def _png(fig) -> bytes:  # noqa: ANN001
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rounds_plot(summary: dict) -> bytes:
    """Held-out mIoU per round, mined and random, overall and on the rare domains."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    rounds = summary["rounds"]
    x = [r["round"] for r in rounds]
    fig, ax = plt.subplots(figsize=(7, 4))
    series = [
        ("miou", "mined (DPE): all", "-", "o", "#1f5fbf"),
        ("miou_rare", "mined (DPE): rare", "-", "s", "#bf5b1f"),
        ("miou_random", "random: all", "--", "o", "#7fa8e6"),
        ("miou_random_rare", "random: rare", "--", "s", "#e6a97f"),
    ]
    for key, label, ls, marker, color in series:
        if all(r.get(key) is not None for r in rounds):
            ax.plot(
                x, [100 * r[key] for r in rounds], ls=ls, marker=marker, color=color, label=label
            )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("held-out mIoU (%)")
    ax.set_title("mining rounds vs random picks at the same budget")
    ax.legend(fontsize=8)
    return _png(fig)


def mix_plot(summary: dict) -> bytes:
    """Share of frames by time of day and by weather: the fleet, the mined picks, random picks."""
    plt = _pyplot()
    rounds = summary["rounds"][1:]
    fleet = rounds[0]["fleet_share_by_domain"] if rounds else {}
    mined: dict[str, int] = {}
    random: dict[str, int] = {}
    for r in rounds:
        for d, v in r["picks_by_domain"].items():
            mined[d] = mined.get(d, 0) + v
        for d, v in r.get("picks_random_by_domain", {}).items():
            random[d] = random.get(d, 0) + v
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, part, title in ((axes[0], 0, "time of day"), (axes[1], 1, "weather")):
        keys = sorted({d.split("/")[part] for d in fleet})

        def shares(counts: dict, keys=keys, part=part) -> list[float]:  # noqa: ANN001
            total = sum(counts.values()) or 1
            return [
                100 * sum(v for d, v in counts.items() if d.split("/")[part] == k) / total
                for k in keys
            ]

        xs = range(len(keys))
        bars = [("fleet", fleet, "#999999"), ("mined picks", mined, "#1f5fbf")]
        if random:
            bars.append(("random picks", random, "#7fa8e6"))
        width = 0.8 / len(bars)
        for i, (label, counts, color) in enumerate(bars):
            ax.bar(
                [x + (i - (len(bars) - 1) / 2) * width for x in xs],
                shares(counts),
                width=width,
                label=label,
                color=color,
            )
        ax.set_xticks(list(xs), keys)
        ax.set_ylabel("share of frames (%)")
        ax.set_title(f"by {title}")
        ax.legend(fontsize=8)
    return _png(fig)


def _uncertainty_views(model_dir: pathlib.Path, images):  # noqa: ANN001, ANN202
    """The mining model's mutual-information maps and predicted masks of uint8 frames (N,H,W,3)."""
    import torch

    from avfleet import uncertainty
    from avfleet.train.loop import load_model

    model = load_model(str(model_dir)).eval()
    with torch.no_grad():
        probs = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0).softmax(2)
    return uncertainty.mutual_information(probs).numpy(), probs.mean(1).argmax(1).numpy()


def _grid(rows: list[list[tuple]], title: str) -> bytes:
    """One row of panels (image, title, colour map) per frame, with the class legend."""
    import numpy as np
    from matplotlib.patches import Patch

    from avfleet import taxonomy

    plt = _pyplot()
    cols = len(rows[0])
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(3 * cols, 1.6 * len(rows) + 0.6), squeeze=False
    )
    for i, panels in enumerate(rows):
        for ax, (img, caption, cmap) in zip(axes[i], panels, strict=True):
            ax.imshow(img, cmap=cmap)
            ax.set_title(caption, fontsize=7)
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.legend(
        handles=[Patch(color=np.array(c.color) / 255, label=c.name) for c in taxonomy.CLASSES],
        loc="lower center",
        ncol=(taxonomy.NUM_CLASSES + 1) // 2,
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _frames(folder: pathlib.Path, frame_ids) -> object:  # noqa: ANN001
    import numpy as np
    from PIL import Image

    return np.stack(
        [np.asarray(Image.open(folder / "frames" / f"{f}.jpg").convert("RGB")) for f in frame_ids]
    )


def picks_grid(run: pathlib.Path, count: int = 6) -> bytes | None:
    """Round 1's first picks: the frame, the mining model's mutual-information map, its mask."""
    import numpy as np
    import pandas as pd

    from avfleet import taxonomy

    mined = _read_json(run / "loop" / "rounds.json")
    if not mined or not mined["rounds"]:
        return None
    first = mined["rounds"][0]
    folder = run / "loop" / "mining" / "round-1"
    model_dir = pathlib.Path(first.get("mined_with") or mined["first_run"]) / "model"
    if not (folder / "selection.parquet").exists() or not model_dir.exists():
        return None
    picks = pd.read_parquet(folder / "selection.parquet").sort_values("rank").head(count)
    images = _frames(folder, picks["frame_id"])
    mi, masks = _uncertainty_views(model_dir, images)
    colors = np.array([c.color for c in taxonomy.CLASSES], dtype=np.uint8)
    rows = [
        [
            (images[i], f"{row.domain}", None),
            (mi[i], f"mutual information (frame {row.mutual_information:.3g})", "magma"),
            (colors[masks[i]], "predicted mask", None),
        ]
        for i, row in enumerate(picks.itertuples())
    ]
    return _grid(rows, "round 1: the first picks, as the model that mined them saw them")


def hazard_picks_grid(run: pathlib.Path, count: int = 6) -> bytes | None:
    """Mined picks that show a hazard (every round, best-ranked first): the frame, the mining
    model's mutual-information map, its predicted mask and the true mask (the oracle's)."""
    import numpy as np
    import pandas as pd

    from avfleet import taxonomy
    from avfleet.fleet.oracle import OracleLabeler

    mined = _read_json(run / "loop" / "rounds.json")
    if not mined or not mined["rounds"] or not (run / "fleet").exists():
        return None
    oracle = OracleLabeler.from_uri(str(run / "fleet"))
    colors = np.array([c.color for c in taxonomy.CLASSES], dtype=np.uint8)
    rows: list[list[tuple]] = []
    for r in mined["rounds"]:
        folder = run / "loop" / "mining" / f"round-{r['round']}"
        model_dir = pathlib.Path(r.get("mined_with") or mined["first_run"]) / "model"
        if not (folder / "selection.parquet").exists() or not model_dir.exists():
            continue
        picks = pd.read_parquet(folder / "selection.parquet").sort_values("rank")
        truth = {}
        for row in picks.itertuples():
            if len(truth) + len(rows) == count:
                break
            label = oracle.label(str(row.recording_id), int(row.frame_index))
            if taxonomy.hazards_in(label.mask):
                truth[row.frame_id] = (row, label.mask)
        if not truth:
            continue
        images = _frames(folder, list(truth))
        mi, masks = _uncertainty_views(model_dir, images)
        for i, (row, mask) in enumerate(truth.values()):
            rows.append(
                [
                    (images[i], f"round {r['round']}, pick #{row.rank + 1}: {row.domain}", None),
                    (mi[i], f"mutual information (frame {row.mutual_information:.3g})", "magma"),
                    (colors[masks[i]], "predicted by the mining model", None),
                    (colors[mask], ", ".join(taxonomy.hazards_in(mask)) + " (true mask)", None),
                ]
            )
    if not rows:
        return None
    return _grid(rows, "hazards the mined picks found, as the model that mined them saw them")


def hazard_plot(summary: dict) -> bytes | None:
    """Per round, mined against random: hazard IoU, and the share of picks showing a hazard
    against the candidates' base rate."""
    from matplotlib.ticker import MaxNLocator

    rounds = summary["rounds"]
    if not any(r.get("hazard_pick_share") is not None for r in rounds):
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = [r["round"] for r in rounds]
    for key, label, ls in (("hazard_iou", "mined", "-"), ("hazard_iou_random", "random", "--")):
        if all(r.get(key) is not None for r in rounds):
            left.plot(x, [100 * r[key] for r in rounds], ls=ls, marker="o", label=label)
    top = max(
        [20.0]
        + [100 * (r.get(k) or 0.0) for r in rounds for k in ("hazard_iou", "hazard_iou_random")]
    )
    left.set_ylim(0, top * 1.1)  # at least 0-20%: a few points of noise must not look like a climb
    left.set_xlabel("round")
    left.set_ylabel("held-out hazard IoU (%)")
    left.set_title("mean IoU over the hazard classes")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(fontsize=8)
    mined = [r for r in rounds if r.get("hazard_pick_share") is not None]
    xs = [r["round"] for r in mined]
    width = 0.27
    bars = (
        ("hazard_pick_share", "mined picks", -width),
        ("hazard_pick_share_random", "random picks", 0.0),
        ("hazard_pool_share", "candidates (base rate)", width),
    )
    for key, label, dx in bars:
        if all(r.get(key) is not None for r in mined):
            right.bar([v + dx for v in xs], [100 * r[key] for r in mined], width, label=label)
    right.set_xticks(xs)
    right.set_xlabel("round")
    right.set_ylabel("frames showing a hazard (%)")
    right.set_title("what each arm sent to labeling")
    right.legend(fontsize=7, loc="lower right")
    return _png(fig)


# ---------------------------------------------------------------- the page

_CHECK_IMAGES = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  imgs.forEach(function (i) {
    if (!(i.complete && i.naturalWidth > 0)) { i.alt = 'image failed to load: ' + i.alt; }
  });
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-images-loaded', ok.length);
});
"""

_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; font-size: 0.9em; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
"""


def _img(data: bytes, alt: str) -> str:
    return (
        f'<img alt="{html.escape(alt)}" '
        f'src="data:image/png;base64,{base64.b64encode(data).decode()}">'
    )


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def render_html(summary: dict, images: dict[str, bytes]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>avfleet demo report</title>",
        f"<style>{_STYLE}</style><script>{_CHECK_IMAGES}</script></head><body>",
        "<h1>avfleet demo report</h1>",
        f"<p>run {html.escape(summary['run'])}, generated {summary['generated_at']}</p>",
        "<h2>What the rounds did</h2><ul>",
        *(f"<li>{html.escape(line)}</li>" for line in summary["story"]),
        "</ul>",
    ]
    if "rounds" in images:
        parts.append(_img(images["rounds"], "held-out mIoU per round, mined and random"))
    tods = sorted({k for r in summary["rounds"] for k in r["miou_by_time_of_day"]})
    parts.append(
        _table(
            ["round", "mIoU", "random", "rare", "random rare", *tods, "labeled frames"],
            [
                [
                    r["round"],
                    _pct(r["miou"]),
                    _pct(r.get("miou_random")),
                    _pct(r.get("miou_rare")),
                    _pct(r.get("miou_random_rare")),
                    *(_pct(r["miou_by_time_of_day"].get(t)) for t in tods),
                    r.get("dataset_frames", ""),
                ]
                for r in summary["rounds"]
            ],
        )
    )
    if "hazards" in images:
        from avfleet import taxonomy

        parts += [
            "<h2>The long tail: hazards</h2>",
            "<p>Hazards (" + html.escape(", ".join(taxonomy.HAZARD_NAMES)) + ") are each in a "
            "few percent of the fleet's frames. Left: the ensemble's mean IoU over them on the "
            "held-out set with its hazard-rich slice; right: the share of each round's picks "
            "that show one, against their share of the candidates.</p>",
            _img(images["hazards"], "hazard IoU and hazard share of the picks per round"),
            _table(
                ["round", "hazard IoU", "random", "picks with a hazard", "random", "candidates"],
                [
                    [
                        r["round"],
                        _pct(r.get("hazard_iou")),
                        _pct(r.get("hazard_iou_random")),
                        _pct(r.get("hazard_pick_share")),
                        _pct(r.get("hazard_pick_share_random")),
                        _pct(r.get("hazard_pool_share")),
                    ]
                    for r in summary["rounds"]
                ],
            ),
        ]
    if "hazard_picks" in images:
        parts.append(_img(images["hazard_picks"], "mined hazard frames with their uncertainty"))
    if "mix" in images:
        parts += [
            "<h2>What mining picked vs what the fleet recorded</h2>",
            _img(images["mix"], "domain mix of the picks against the fleet"),
        ]
    if "picks" in images:
        parts += ["<h2>Picked frames</h2>", _img(images["picks"], "picked frames with uncertainty")]
    c = summary.get("compression")
    if c:
        parts += [
            "<h2>Compression (the deployable net)</h2>",
            _table(
                ["", "parameters", "latency ms", "held-out mIoU"],
                [
                    [
                        "dense (as trained)",
                        f"{c['params_before']:,}",
                        f"{c['latency_ms_before']:.2f}",
                        _pct(c["miou_before"]),
                    ],
                    [
                        "pruned",
                        f"{c['params_after']:,}",
                        f"{c['latency_ms_after']:.2f}",
                        _pct(c["miou_after"]),
                    ],
                ],
            ),
            f"<p>latency: {html.escape(c['latency_how'])}. {_compression_note(c)}</p>",
        ]
    s = summary.get("search")
    if s:
        parts += [
            "<h2>Architecture search: the Pareto front</h2>",
            _table(
                ["candidate", "target ms", "p50 ms", "p99 ms", "mIoU", "parameters", "on front"],
                [
                    [
                        p["name"],
                        "" if p["target_ms"] is None else f"{p['target_ms']:g}",
                        f"{p['p50_ms']:.3f}",
                        f"{p['p99_ms']:.3f}",
                        _pct(p["miou"]),
                        f"{p['parameters']:,}",
                        "yes" if p["on_front"] else "",
                    ]
                    for p in s["points"]
                ],
            ),
        ]
        if "search" in images:
            parts.append(_img(images["search"], "search front: measured latency vs mIoU"))
    p = summary.get("promoted")
    if p:
        parts += [
            "<h2>The promoted engine</h2>",
            f"<p>release {html.escape(p['release'])}: p50 {p['p50_ms']:.2f} ms, p99 "
            f"{p['p99_ms']:.2f} ms, held-out mIoU {_pct(p['miou'])}; mining reads "
            f"{html.escape(p['model_ref'])}</p>",
            f"<pre>{html.escape(p['lineage'])}</pre>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str) -> tuple[pathlib.Path, dict]:
    """report/summary.json and report/index.html of a run folder; (index.html path, summary)."""
    run = pathlib.Path(run_dir).resolve()
    summary = build_summary(run)
    images: dict[str, bytes] = {"rounds": rounds_plot(summary)}
    if len(summary["rounds"]) > 1:
        images["mix"] = mix_plot(summary)
        grid = picks_grid(run)
        if grid:
            images["picks"] = grid
        for name, data in (
            ("hazards", hazard_plot(summary)),
            ("hazard_picks", hazard_picks_grid(run)),
        ):
            if data:
                images[name] = data
    if summary.get("search") and pathlib.Path(summary["search"]["plot"]).exists():
        images["search"] = pathlib.Path(summary["search"]["plot"]).read_bytes()
    out = run / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (out / f"{name}.png").write_bytes(data)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    page = out / "index.html"
    page.write_text(render_html(summary, images))
    return page, summary
