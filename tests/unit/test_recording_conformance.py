"""avfleet's hardened reader against the MCAP conformance corpus (foxglove/mcap).

Each .json lists what a streamed reader must return for its .mcap, with
MessageIndex records left out, fields sorted by name, integers as decimal
strings and bytes as lists of decimal strings.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from mcap import records as mr

from avfleet.core.storage import ByteSource
from avfleet.recording.reader import iter_records
from tests.conftest import TESTDATA, shared_testdata


def as_expected(record: mr.McapRecord) -> dict:
    def value(v):
        if isinstance(v, bool):
            raise TypeError("no booleans in MCAP records")
        if isinstance(v, int):
            return str(v)
        if isinstance(v, (bytes, bytearray, memoryview)):
            return [str(b) for b in bytes(v)]
        if isinstance(v, dict):
            return {str(k): value(x) for k, x in v.items()}
        return v

    fields = sorted((f.name, value(getattr(record, f.name))) for f in dataclasses.fields(record))
    return {"type": type(record).__name__, "fields": [list(f) for f in fields]}


def conformance_files():
    return sorted((TESTDATA / "mcap-conformance").glob("*/*.mcap"))


def test_corpus_is_complete():
    shared_testdata("mcap-conformance")
    assert len(conformance_files()) == 416


@pytest.mark.parametrize("path", conformance_files(), ids=lambda p: p.name)
def test_reads_as_expected(path):
    expected = json.loads(path.with_suffix(".json").read_text())["records"]
    with ByteSource(str(path)) as source:
        got = [as_expected(r) for r in iter_records(source) if not isinstance(r, mr.MessageIndex)]
    assert got == expected
