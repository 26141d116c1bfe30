"""The command line: every option documented with its default, help from the configs' docstrings."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from avfleet.cli import build_parser
from avfleet.core.cliopts import Parser, add_field, field_doc
from avfleet.core.storage import StorageConfig
from avfleet.dataset.build import DatasetConfig
from avfleet.index.job import IndexConfig
from avfleet.train import entry as train_entry
from avfleet.train.loop import TrainConfig


def every_option(parser: argparse.ArgumentParser, path=()):  # noqa: ANN001, ANN201
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_option(sub, (*path, name))
        elif action.dest != "help":
            yield " ".join(path), action


def test_every_option_has_help():
    options = list(every_option(build_parser()))
    assert len(options) > 250
    undocumented = [(cmd, a.option_strings or a.dest) for cmd, a in options if not a.help]
    assert undocumented == []


def test_help_is_the_config_fields_docstring_and_shows_the_default():
    parser = build_parser()
    actions = {(cmd, a.option_strings[0]): a for cmd, a in every_option(parser) if a.option_strings}
    assert actions[("index", "--recordings")].help == field_doc(IndexConfig, "recordings_uri")
    assert actions[("dataset build", "--spark-min-frames")].help == field_doc(
        DatasetConfig, "spark_min_frames"
    )
    assert actions[("mine", "--s3-region")].help == field_doc(StorageConfig, "s3_region")
    formatter = Parser().formatter_class(prog="x")
    shown = formatter._get_help_string(actions[("dataset build", "--spark-min-frames")])
    assert shown.endswith("(default: %(default)s)")
    assert actions[("dataset build", "--spark-min-frames")].default == 20_000


def test_the_s3_options_say_what_storage_config_says():
    from avfleet.core.storage import STORAGE_OPTIONS

    for name, text in STORAGE_OPTIONS.items():
        assert text == field_doc(StorageConfig, name), name


def test_the_training_job_takes_every_option_from_train_config():
    parser = Parser()
    train_entry.add_arguments(parser)
    for name, flag in train_entry.TRAIN_OPTIONS.items():
        action = next(
            a
            for a in parser._actions
            if (flag or f"--{name.replace('_', '-')}") in a.option_strings
        )
        assert action.help == field_doc(TrainConfig, name).replace("%", "%%"), name


def test_field_options_type_and_require_as_the_field_says():
    parser = Parser()
    add_field(parser, DatasetConfig, "index_uri", "--index")
    add_field(parser, DatasetConfig, "dates")
    add_field(parser, DatasetConfig, "seed")
    args = parser.parse_args(["--index", "i", "--dates", "a", "b", "--seed", "3"])
    assert (args.index, args.dates, args.seed) == ("i", ["a", "b"], 3)
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --index is required: the field has no default
    with pytest.raises(KeyError):
        field_doc(DatasetConfig, "no_such_field")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "avfleet", *args], capture_output=True, text=True, timeout=120
    )


def test_version_and_log_level():
    assert cli("--version").stdout.startswith("avfleet ")
    bad = cli("--log-level", "loud", "workflows", "render")
    assert bad.returncode == 2 and "invalid choice: 'LOUD'" in bad.stderr
    assert cli("--log-level", "debug", "workflows", "render").returncode == 0


def test_json_output_is_one_document_on_stdout(tmp_path):
    import json

    plan = cli("step", "plan-train", "--nodes", "3", "--json")
    assert plan.returncode == 0 and json.loads(plan.stdout) == {"worker-replicas": 2}
    render = cli("workflows", "render", "--json")
    assert render.returncode == 0 and json.loads(render.stdout) == {"drift": []}
    out = tmp_path / "fleet"
    gen = cli(
        "fleet", "generate", "--out", str(out), "--vehicles", "1", "--minutes-per-day", "0.1",
        "--segment-s", "6", "--workers", "1", "--json",
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    assert [p.endswith(".mcap") for p in json.loads(gen.stdout)["recordings"]] == [True]
