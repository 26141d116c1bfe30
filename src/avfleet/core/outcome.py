"""A job's permanent failure, kept for the step after it: the exit-code contract where a
controller cannot tell permanent from transient.

The spark-operator restarts a SparkApplication whose driver exits non-zero
(`restartPolicy: OnFailure`), whatever the code, so a driver that hit bad input would be
run again for nothing. Such a driver (jobs/index_recordings.py) runs its job through
`run_with_outcome`: a transient failure exits 75 (the operator restarts it), a permanent
one is written as an outcome record and the driver exits 0 (nothing to restart); the
next step of the workflow (`avfleet verify-index --outcome ...`) calls `raise_recorded`
and ends with the recorded code and message, which Argo does not retry.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from avfleet.core import storage
from avfleet.core.entry import run_main
from avfleet.core.errors import AvfleetError, ExitCode

RESTARTED = (int(ExitCode.OK), int(ExitCode.TRANSIENT), int(ExitCode.RESTARTABLE))


class RecordedFailure(AvfleetError):
    """A permanent failure an earlier step recorded; ends with its code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = ExitCode(code) if code in ExitCode._value2member_map_ else code  # type: ignore[assignment]


def run_with_outcome(
    job: Callable[[], object], outcome_uri: str | None, st: storage.StorageConfig
) -> int:
    """run_main(job), with a permanent failure recorded at `outcome_uri` and exit 0."""
    failure: dict = {}

    def record(code: int, message: str) -> None:
        failure.update(exit_code=code, message=message)

    code = run_main(job, on_error=record)
    if not outcome_uri or code in RESTARTED:
        return code
    storage.atomic_write_text(outcome_uri, json.dumps(failure), st)
    return int(ExitCode.OK)


def raise_recorded(outcome_uri: str | None, st: storage.StorageConfig) -> None:
    """Raise the failure recorded at `outcome_uri`, if one was."""
    if not outcome_uri or not storage.exists(outcome_uri, st):
        return
    try:
        doc = json.loads(storage.read_bytes(outcome_uri, st))
        code, message = int(doc["exit_code"]), str(doc["message"])
    except (ValueError, KeyError, TypeError) as e:
        raise RecordedFailure(
            int(ExitCode.INTERNAL), f"{outcome_uri}: unreadable outcome record ({e})"
        ) from e
    raise RecordedFailure(code, f"the job before this step failed: {message}")
