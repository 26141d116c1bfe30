"""Architecture search and sweeps as map jobs (wired into `avfleet` by avfleet.cli).

avfleet nas profile     the bench's latency table over the search space (cached per unit)
avfleet nas plan        the items to fan out: --targets (nas) or --grid (sweep)
avfleet nas derive      a finished search -> arch.json (argmax, then the latency target)
avfleet nas record      one candidate's measured latency and mIoU -> its record (the fan-in's input)
avfleet nas pareto      the records -> the Pareto front (table, plot, JSON)
avfleet nas pick        the best net of a front under a latency budget (what deploy takes)

The search itself is a torchrun job, jobs/search.py (a PyTorchJob in the cluster).
"""

from __future__ import annotations

import argparse
import json

from avfleet.core.cliopts import add_input_hw, add_outputs_dir, emit


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from avfleet.core.storage import add_storage_arguments

    nas = sub.add_parser("nas", help="latency-aware architecture search, sweeps").add_subparsers(
        dest="nas_cmd", required=True
    )
    prof = nas.add_parser("profile", help="the bench's latency table over the search space")
    prof.add_argument("--out", required=True, help="the table file to write (lut.json)")
    prof.add_argument("--bench", default="", help="a bench agent's address; '': this machine")
    prof.add_argument("--cache", default="", help="unit cache here (default: beside --out)")
    add_input_hw(prof)

    plan = nas.add_parser("plan", help="the items a map job fans out over (a JSON list)")
    what = plan.add_mutually_exclusive_group(required=True)
    what.add_argument("--targets", help="latency targets in ms, comma-separated (nas)")
    what.add_argument("--grid", help="NAME=v1,v2;NAME=v1,v2 over lr, group_sparsity, width (sweep)")

    derive = nas.add_parser("derive", help="a finished search -> the arch.json to retrain")
    derive.add_argument("--search", required=True, help="the search folder (search.json)")
    derive.add_argument(
        "--latency-lut", required=True, help="the latency table the search used (lut.json)"
    )
    derive.add_argument("--target-ms", type=float, default=0.0, help="0: take the argmax as it is")
    derive.add_argument("--out", required=True, help="arch.json to write")

    rec = nas.add_parser("record", help="one candidate's measurements -> its record")
    rec.add_argument("--name", required=True, help="the candidate's name in the front")
    rec.add_argument("--model", required=True, help="the trained model folder")
    rec.add_argument("--release", required=True, help="its release folder (avfleet deploy export)")
    rec.add_argument("--report", required=True, help="the bench's report of the release")
    rec.add_argument(
        "--target-ms", type=float, default=0.0, help="the latency target it was searched for"
    )
    rec.add_argument("--arch", default="", help="the derived arch.json (its predicted latency)")
    rec.add_argument("--search", default="", help="the search folder (its cost)")
    rec.add_argument("--settings", default="{}", help="the item's settings (JSON object)")
    rec.add_argument("--out", required=True, help="where the record goes (result.json)")

    par = nas.add_parser("pareto", help="candidate records -> the Pareto front")
    par.add_argument("--results", required=True, help="JSON list of records (the fan-in)")
    par.add_argument("--out", required=True, help="folder for pareto.json, .md and .png")

    pick = nas.add_parser("pick", help="the best net of a front under a latency budget")
    pick.add_argument("--pareto", required=True, help="pareto.json")
    pick.add_argument(
        "--budget-ms", type=float, required=True, help="the latency the picked net must meet"
    )

    for p in (prof, plan, derive, rec, par, pick):
        add_outputs_dir(p)
        add_storage_arguments(p)


def _cmd_nas(args: argparse.Namespace) -> None:
    from avfleet.core import storage
    from avfleet.core.storage import storage_from_args
    from avfleet.workflows.outputs import write_outputs

    st = storage_from_args(args)
    if args.nas_cmd == "profile":
        _profile(args)
    elif args.nas_cmd == "plan":
        from avfleet.nas.plan import plan_grid, plan_targets

        items = plan_targets(args.targets) if args.targets else plan_grid(args.grid)
        text = json.dumps(items)
        write_outputs(args.outputs_dir, {"items": text, "count": len(items)})
        emit(args, items, text)
    elif args.nas_cmd == "derive":
        from avfleet.latency.lut import load_table
        from avfleet.nas.derive import derive, entropy_bits
        from avfleet.nas.space import default_space

        search = json.loads(storage.read_bytes(storage.join(args.search, "search.json"), st))
        space = default_space()
        table = load_table(args.latency_lut, st)
        result = derive(space, search["alpha"], table, args.target_ms or None)
        doc = {
            "arch": result.arch,
            "choice": result.choice,
            "predicted_ms": result.predicted_ms,
            "target_ms": result.target_ms,
            "met": result.met,
            "changes": result.changes,
            "entropy_bits": entropy_bits(space, search["alpha"]),
            "bench": table.bench,
            "search": args.search,
        }
        storage.atomic_write_text(args.out, json.dumps(doc, indent=2), st)
        write_outputs(
            args.outputs_dir, {"arch-uri": args.out, "predicted-ms": f"{result.predicted_ms:.4f}"}
        )
        how = "" if result.met else f" (over the {args.target_ms} ms target: nothing faster left)"
        emit(
            args,
            {
                "arch": args.out,
                "choice": result.choice,
                "predicted_ms": result.predicted_ms,
                "met": result.met,
                "changes": len(result.changes),
            },
            f"{args.out}: {result.choice}, {result.predicted_ms:.3f} ms predicted{how}, "
            f"{len(result.changes)} change(s) to the argmax",
        )
    elif args.nas_cmd == "record":
        from avfleet.nas.pareto import record

        predicted = None
        if args.arch:
            predicted = json.loads(storage.read_bytes(args.arch, st)).get("predicted_ms")
        try:
            settings = json.loads(args.settings)
        except ValueError as e:
            from avfleet.core.errors import ConfigError

            raise ConfigError("settings", f"not JSON: {e}") from e
        rec = record(
            name=args.name,
            model_uri=args.model,
            release_uri=args.release,
            report_uri=args.report,
            target_ms=args.target_ms or None,
            predicted_ms=predicted,
            search_uri=args.search,
            settings=settings if isinstance(settings, dict) else {},
            config=st,
        )
        storage.atomic_write_text(args.out, json.dumps(rec, indent=2), st)
        write_outputs(args.outputs_dir, {"result": json.dumps(rec, separators=(",", ":"))})
        emit(
            args,
            rec,
            f"{args.name}: p50 {rec['p50_ms']:.3f} ms on {rec['bench']}, mIoU {100 * rec['miou']:.1f}",
        )
    elif args.nas_cmd == "pareto":
        from avfleet.nas.pareto import parse_results, table, write_front

        records = parse_results(args.results)
        doc = write_front(records, args.out, st)
        write_outputs(args.outputs_dir, {"pareto-uri": storage.join(args.out, "pareto.json")})
        emit(
            args,
            doc,
            table(records, set(doc["front"]))
            + f"front: {', '.join(doc['front'])} (written to {args.out})",
        )
    else:
        from avfleet.nas.pareto import pick

        doc = json.loads(storage.read_bytes(args.pareto, st))
        best = pick(doc, args.budget_ms)
        write_outputs(
            args.outputs_dir,
            {"model-uri": best["model_uri"], "release-uri": best["release_uri"]},
        )
        emit(
            args,
            best,
            f"{best['name']}: p50 {best['p50_ms']:.3f} ms <= {args.budget_ms} ms, "
            f"mIoU {100 * best['miou']:.1f}; model {best['model_uri']}",
        )


def _profile(args: argparse.Namespace) -> None:
    import time

    from avfleet.latency.lut import profile_to_file
    from avfleet.nas.latency import search_units
    from avfleet.nas.space import default_space
    from avfleet.workflows.outputs import write_outputs

    input_hw = tuple(args.input_hw)
    started = time.time()
    table = profile_to_file(
        search_units(default_space(), input_hw),
        input_hw,
        args.out,
        bench=args.bench,
        cache=args.cache,
    )
    write_outputs(args.outputs_dir, {"lut-uri": args.out})
    emit(
        args,
        {"lut": args.out, "units": len(table.entries), "bench": table.bench},
        f"{args.out}: {len(table.entries)} units of the search space on {table.bench} "
        f"in {time.time() - started:.1f} s",
    )


COMMANDS = {"nas": _cmd_nas}
